"""Does a text still name an emotion? Label names, their inflections and known synonyms.

Emo Pillars cleans explicit emotion words out of the contexts so that a classifier has to read the
situation, not spot the word. The teacher does the cleaning; this check verifies it. Words are
compared by Snowball stem ('disappointed' ~ 'disappointment'), by stem prefix for longer stems
('optimistic' ~ 'optimism'), and through a small table of irregular forms ('afraid' ~ 'fear').
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from nltk.stem.snowball import SnowballStemmer

# Forms a stemmer cannot connect to the label name.
IRREGULAR: dict[str, tuple[str, ...]] = {
    "anger": ("angry", "angrily"),
    "fear": ("afraid", "scared", "frightened", "terrified"),
    "joy": ("joyous", "happy", "happiness", "glad"),
    "sadness": ("sad", "sadly", "saddened", "unhappy", "sorrow"),
    "surprise": ("amazed", "astonished"),
    "gratitude": ("grateful", "thankful"),
    "pride": ("proud", "proudly"),
    "relief": ("relieved",),
    "curiosity": ("curious", "curiously"),
    "realization": ("realize", "realise", "realised"),
    "disgust": ("disgusting",),
    "grief": ("grieve", "grieving", "grieved"),
    "nervousness": ("anxious", "anxiety"),
    "excitement": ("thrilled",),
    "caring": ("care", "cared", "cares"),
    "love": ("loving",),
}
WORD = re.compile(r"[A-Za-z']+")
MIN_PREFIX_STEM = 5  # shorter stems ('care') would match unrelated words ('career')


@lru_cache(maxsize=1)
def _stemmer() -> SnowballStemmer:
    return SnowballStemmer("english")


@lru_cache(maxsize=100_000)  # a run's texts share most of their words: stem each once
def stem(word: str) -> str:
    return _stemmer().stem(word.lower().strip("'"))


class EmotionWords:
    """The words that name each label of a taxonomy (plus synonyms mapped onto it)."""

    def __init__(self, labels: Iterable[str], synonyms: dict[str, str] | None = None):
        self.stems: dict[str, set[str]] = {}
        for label in labels:
            if label == "neutral":
                continue
            forms = {label, *IRREGULAR.get(label, ())}
            self.stems[label] = {stem(part) for form in forms for part in form.split()}
        for synonym, label in (synonyms or {}).items():
            if label in self.stems:
                self.stems[label].update(stem(part) for part in synonym.split())
        self._labels_of: dict[str, str | None] = {}

    def _label_of(self, word_stem: str) -> str | None:
        if word_stem not in self._labels_of:
            self._labels_of[word_stem] = self._match(word_stem)
        return self._labels_of[word_stem]

    def _match(self, word_stem: str) -> str | None:
        for label, stems in self.stems.items():
            for known in stems:
                if word_stem == known:
                    return label
                if len(known) >= MIN_PREFIX_STEM and (word_stem.startswith(known) or
                                                      (len(word_stem) >= MIN_PREFIX_STEM and known.startswith(word_stem))):
                    return label
        return None

    def find(self, text: str) -> dict[str, list[str]]:
        """label -> the words of `text` that name it."""
        found: dict[str, list[str]] = {}
        for word in WORD.findall(text or ""):
            label = self._label_of(stem(word))
            if label is not None:
                found.setdefault(label, []).append(word)
        return found
