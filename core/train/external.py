"""Evaluation sets read from files: the published benchmarks and the user's own labelled files.

An `EvalSet` is plain data (texts, optional contexts, a 0/1 matrix over its label set, the labels'
descriptions) so that every model and baseline is scored the same way by core.train.evaluate.

Built in (read from `../shared/data` by default, or any folder holding the same files):
- `goemotions` (28 labels), `goemotions-ekman` (Ekman 6 + neutral) and `goemotions-sentiment`
  (positive / negative / ambiguous / neutral), with the groupings of the GoEmotions paper;
- `emotion6`, the single-label "emotion" set of Saravia et al. (2018): sadness, joy, love, anger, fear, surprise;
- `semeval-ec`, SemEval-2018 Task 1 E-c: 11 emotions, multi-label tweets (descriptions from the task's guidelines).
A user's own file (GoEmotions TSV, CSV / TSV / JSONL with a label column) is read by `read_file`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.config import ROOT
from core.datasets.readers import LabelledRecord, parse_labelled_file
from core.taxonomy import (
    EKMAN_GROUPING,
    EKMAN_LABELS,
    GOEMOTIONS_LABELS,
    SENTIMENT_GROUPING,
    SENTIMENT_LABELS,
    normalise_label,
)

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"

EMOTION6_LABELS: list[tuple[str, str]] = [
    ("sadness", "Unhappiness, sorrow, hurt, loneliness or feeling low."),
    ("joy", "Happiness, delight, contentment or pleasure."),
    ("love", "Affection, tenderness, caring or romantic longing for someone."),
    ("anger", "Irritation, annoyance, resentment or rage at something felt as a wrong."),
    ("fear", "Being afraid, anxious, nervous or threatened."),
    ("surprise", "Amazement or astonishment at something unexpected."),
]

# SemEval-2018 Task 1 E-c: the emotions and the related words its annotation guidelines give.
SEMEVAL_EC_LABELS: list[tuple[str, str]] = [
    ("anger", "Anger, also annoyance and rage."),
    ("anticipation", "Anticipation, also interest and vigilance: looking forward to something."),
    ("disgust", "Disgust, also disinterest, dislike and loathing."),
    ("fear", "Fear, also apprehension, anxiety and terror."),
    ("joy", "Joy, also serenity and ecstasy."),
    ("love", "Love, also affection."),
    ("optimism", "Optimism, also hopefulness and confidence."),
    ("pessimism", "Pessimism, also cynicism and no confidence."),
    ("sadness", "Sadness, also pensiveness and grief."),
    ("surprise", "Surprise, also distraction and amazement."),
    ("trust", "Trust, also acceptance, liking and admiration."),
]


@dataclass
class EvalSet:
    name: str
    labels: list[str]
    descriptions: list[str]
    texts: list[str]
    y: np.ndarray  # (n, labels) of 0/1
    multi_label: bool = True
    contexts: list[str | None] | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> EvalSet:
        """The first n examples (quick evaluations, tests)."""
        contexts = self.contexts[:n] if self.contexts is not None else None
        return EvalSet(self.name, self.labels, self.descriptions, self.texts[:n], self.y[:n], self.multi_label,
                       contexts, dict(self.meta))

    def subset(self, index: Sequence[int], **meta) -> EvalSet:
        contexts = [self.contexts[i] for i in index] if self.contexts is not None else None
        return EvalSet(self.name, self.labels, self.descriptions, [self.texts[i] for i in index],
                       self.y[np.asarray(index, dtype=np.int64)], self.multi_label, contexts, {**self.meta, **meta})

    def sample(self, n: int, seed: int = 0) -> EvalSet:
        return self.sample_and_rest(n, seed)[0]

    def sample_and_rest(self, n: int, seed: int = 0) -> tuple[EvalSet, EvalSet]:
        """A random sample of n examples and the examples left out of it (disjoint: calibrate on one, select on
        the other)."""
        if n >= len(self):
            return self, self.subset([], rest_of_sample=n, seed=seed)
        index = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        rest = np.setdiff1d(np.arange(len(self)), index)
        return (self.subset(index.tolist(), sample=n, seed=seed),
                self.subset(rest.tolist(), rest_of_sample=n, seed=seed))


BUILTIN = {
    "goemotions": "GoEmotions, 28 labels (27 emotions + neutral), multi-label Reddit comments",
    "goemotions-ekman": "GoEmotions grouped into Ekman's 6 emotions + neutral",
    "goemotions-sentiment": "GoEmotions grouped into positive / negative / ambiguous / neutral",
    "emotion6": "'emotion' (Saravia et al. 2018): 6 classes, single-label tweets",
    "semeval-ec": "SemEval-2018 Task 1 E-c: 11 emotions, multi-label tweets",
}
# Regression sets: gold scores on one dimension, scored by core.train.dimensions (Pearson r, MAE).
REGRESSION = {"emobank-valence": "EmoBank (Buechel & Hahn 2017): sentences rated for valence on 1-5"}
SPLITS = {"goemotions": ("train", "dev", "test"), "goemotions-ekman": ("train", "dev", "test"),
          "goemotions-sentiment": ("train", "dev", "test"), "emotion6": ("train", "dev", "test"),
          "semeval-ec": ("train", "dev"), "emobank-valence": ("train", "dev", "test")}


def data_dir(path: str | Path | None = None) -> Path:
    return Path(path) if path else DEFAULT_DATA_DIR


def available(path: str | Path | None = None) -> dict[str, bool]:
    """Which built-in sets have their files under the data folder."""
    base = data_dir(path)
    goemotions = any((base / "goemotions" / f"{split}.tsv").exists() for split in ("dev", "test"))
    return {"goemotions": goemotions, "goemotions-ekman": goemotions, "goemotions-sentiment": goemotions,
            "emotion6": (base / "emotion_dairai" / "test.txt").exists(),
            "semeval-ec": (base / "semeval2018_ec" / "2018-E-c-En-dev.txt").exists(),
            "emobank-valence": (base / "emobank" / "emobank.csv").exists()}


def load(name: str, split: str = "test", path: str | Path | None = None) -> EvalSet:
    """A built-in evaluation set (see BUILTIN) from the data folder."""
    if name not in BUILTIN:
        raise ValueError(f"unknown evaluation set {name!r}; one of {', '.join(BUILTIN)}")
    if split not in SPLITS[name]:
        raise ValueError(f"{name} has no {split!r} split; it has {', '.join(SPLITS[name])}")
    base = data_dir(path)
    if name.startswith("goemotions"):
        records = goemotions_records(base / "goemotions" / f"{split}.tsv")
        if name == "goemotions":
            return from_records(f"{name}/{split}", records, GOEMOTIONS_LABELS, multi_label=True)
        groups = EKMAN_GROUPING if name == "goemotions-ekman" else SENTIMENT_GROUPING
        labels = EKMAN_LABELS if name == "goemotions-ekman" else SENTIMENT_LABELS
        return from_records(f"{name}/{split}", group_records(records, groups), labels, multi_label=True)
    if name == "emotion6":
        return emotion6(base / "emotion_dairai" / f"{'val' if split == 'dev' else split}.txt", f"{name}/{split}")
    return semeval_ec(base / "semeval2018_ec" / f"2018-E-c-En-{split}.txt", f"{name}/{split}")


def goemotions_records(file: Path) -> list[LabelledRecord]:
    return parse_labelled_file(file.name, _read(file), "goemotions")


def group_records(records: list[LabelledRecord], groups: dict[str, list[str]]) -> list[LabelledRecord]:
    """GoEmotions labels replaced by their group (Ekman, sentiment), each group once."""
    target = {source: group for group, sources in groups.items() for source in sources}
    out = []
    for record in records:
        grouped = tuple(dict.fromkeys(target[label] for label in record.labels if label in target))
        out.append(LabelledRecord(record.text, grouped, record.context, record.ref, record.split))
    return out


def emotion6(file: Path, name: str = "emotion6") -> EvalSet:
    rows = list(csv.reader(io.StringIO(_read(file).decode("utf-8"), newline=""), delimiter=";"))
    if not rows or [c.strip() for c in rows[0]] != ["text", "label_name"]:
        raise ValueError(f"{file}: expected the header 'text;label_name'")
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise ValueError(f"{file}, line {line}: expected 2 fields separated by ';'")
        records.append(LabelledRecord(row[0].strip(), (row[1].strip(),), None, str(line)))
    return from_records(name, records, EMOTION6_LABELS, multi_label=False)


def semeval_ec(file: Path, name: str = "semeval-ec") -> EvalSet:
    reader = csv.reader(io.StringIO(_read(file).decode("utf-8"), newline=""), delimiter="\t",
                        quoting=csv.QUOTE_NONE)
    header = next(reader)
    names = [normalise_label(h) for h in header[2:]]
    expected = [n for n, _ in SEMEVAL_EC_LABELS]
    if names != expected:
        raise ValueError(f"{file}: expected the label columns {expected}, found {names}")
    records = []
    for row in reader:
        if not row:
            continue
        flags = row[2:]
        records.append(LabelledRecord(row[1].strip(), tuple(n for n, f in zip(names, flags) if f.strip() == "1"),
                                      None, row[0]))
    return from_records(name, records, SEMEVAL_EC_LABELS, multi_label=True)


def read_file(filename: str, data: bytes, labels: list[tuple[str, str]], *, multi_label: bool = True,
              fmt: str = "auto", name: str | None = None) -> EvalSet:
    """A user's labelled file (formats of core.datasets.readers) scored over `labels` (name, description).

    Labels in the file that are not in the label set are counted in `meta['unknown_labels']`."""
    records = parse_labelled_file(filename, data, fmt, label_names=[n for n, _ in labels])
    return from_records(name or Path(filename).stem, records, labels, multi_label=multi_label)


def from_records(name: str, records: list[LabelledRecord], labels: list[tuple[str, str]], *,
                 multi_label: bool) -> EvalSet:
    names = [normalise_label(n) for n, _ in labels]
    index = {n: i for i, n in enumerate(names)}
    y = np.zeros((len(records), len(names)), dtype=np.int8)
    unknown: dict[str, int] = {}
    for row, record in enumerate(records):
        for label in record.labels:
            key = normalise_label(label)
            if key in index:
                y[row, index[key]] = 1
            else:
                unknown[key] = unknown.get(key, 0) + 1
    contexts = [r.context for r in records] if any(r.context for r in records) else None
    return EvalSet(name, names, [d for _, d in labels], [r.text for r in records], y, multi_label, contexts,
                   {"unknown_labels": unknown} if unknown else {})


def _read(file: Path) -> bytes:
    if not file.exists():
        raise FileNotFoundError(f"evaluation file not found: {file}")
    return file.read_bytes()


def emobank(split: str = "test", path: str | Path | None = None, dimension=None):
    """EmoBank's sentences of one split with their valence (mean of readers and writers, 1-5)."""
    from core.train.dimensions import VALENCE, RegressionSet

    if split not in SPLITS["emobank-valence"]:
        raise ValueError(f"EmoBank has no {split!r} split")
    file = data_dir(path) / "emobank" / "emobank.csv"
    rows = [row for row in csv.DictReader(io.StringIO(_read(file).decode("utf-8"), newline=""))
            if row.get("split") == split and (row.get("text") or "").strip()]
    if not rows:
        raise ValueError(f"{file}: no {split!r} rows with the header id,split,V,A,D,text")
    return RegressionSet(f"emobank-valence/{split}", dimension or VALENCE, [r["text"].strip() for r in rows],
                         np.array([float(r["V"]) for r in rows]))
