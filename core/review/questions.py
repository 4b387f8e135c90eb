"""Question kinds, the values they accept, and the question sets of the four review tasks.

Stored values (a contract with the curation pages): rating -> int 1..5; single_label -> a choice
name (str); multi_label -> a JSON list of choice names; text -> str; flag -> bool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("rating", "single_label", "multi_label", "text", "flag")
TASKS = ("verification", "personalization", "diversity", "oot", "custom")
RATING_VALUES = (1, 2, 3, 4, 5)
MAX_TEXT_CHARS = 5000

# Where a label question takes its choices from, when not listed in options["choices"].
CHOICES_FROM_TAXONOMY = "taxonomy"  # the campaign taxonomy's label names
CHOICES_FROM_GROUP = "group"  # "1".."n": the utterances of a diversity group
OOT_ACTIONS = ("map", "propose", "drop")


class AnswerError(ValueError):
    """An answer that does not fit its question; the message names the question."""


@dataclass(frozen=True)
class QuestionSpec:
    """A question as an admin configures it (before it is stored)."""

    name: str
    title: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown question kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        if not self.name.strip() or not self.title.strip():
            raise ValueError("A question needs a name and a title.")


@dataclass(frozen=True)
class QuestionView:
    id: int
    name: str
    title: str
    kind: str
    options: dict[str, Any]
    position: int

    @property
    def required(self) -> bool:
        """Ratings and labels must be answered to submit; text and flags may stay empty."""
        return bool(self.options.get("required", self.kind in ("rating", "single_label")))

    @property
    def anchors(self) -> dict[str, str]:
        return dict(self.options.get("anchors", {}))


def choices(question: QuestionView, taxonomy_labels: list[str], group_size: int = 0) -> list[str]:
    """The names a label question offers for one item."""
    source = question.options.get("choices_from")
    if source == CHOICES_FROM_TAXONOMY:
        return list(taxonomy_labels)
    if source == CHOICES_FROM_GROUP:
        return [str(i) for i in range(1, group_size + 1)]
    return [str(c) for c in question.options.get("choices", [])]


def clean_value(question: QuestionView, value: Any, allowed: list[str]) -> Any:
    """The value to store for `question`, or AnswerError. None means 'not answered'."""
    if value is None or value == "" or value == []:
        return None
    kind = question.kind
    if kind == "rating":
        if isinstance(value, bool) or not isinstance(value, int) or value not in RATING_VALUES:
            raise AnswerError(f"{question.title}: a rating is a whole number from 1 to 5.")
        return value
    if kind == "flag":
        if not isinstance(value, bool):
            raise AnswerError(f"{question.title}: a flag is true or false.")
        return value
    if kind == "text":
        if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
            raise AnswerError(f"{question.title}: text of at most {MAX_TEXT_CHARS} characters.")
        return value.strip() or None
    if kind == "single_label":
        if value not in allowed:
            raise AnswerError(f"{question.title}: {value!r} is not one of the choices.")
        return value
    picked = set(value) if isinstance(value, (list, tuple, set)) else {object()}
    unknown = picked - set(allowed)
    if unknown:
        raise AnswerError(f"{question.title}: not among the choices: {sorted(map(str, unknown))}.")
    return [name for name in allowed if name in picked]  # the choices' order: stable to compare


RATING_ANCHORS = {
    "personalization": {
        "1": "Generic: anyone could say it anywhere.",
        "2": "Mostly generic, a faint link to the situation.",
        "3": "Fits the situation but not this character.",
        "4": "Fits the situation and the character.",
        "5": "Only this character could say it in this situation.",
    },
    "diversity": {
        "1": "Near copies of each other.",
        "2": "Same wording with small changes.",
        "3": "Some variety in wording, same ideas.",
        "4": "Varied wording and ideas, a few overlaps.",
        "5": "Every utterance is distinct in wording and idea.",
    },
}


def task_questions(task: str) -> list[QuestionSpec]:
    """The default questions of a review task (admins may leave some out or add their own)."""
    if task == "verification":
        return [
            QuestionSpec("emotions", "Which emotions does the speaker express?", "multi_label",
                         {"choices_from": CHOICES_FROM_TAXONOMY, "required": True}),
            QuestionSpec("comment", "Comment (optional)", "text"),
        ]
    if task == "personalization":
        return [
            QuestionSpec("specificity", "How specific is the utterance to this character and situation?",
                         "rating", {"anchors": RATING_ANCHORS["personalization"]}),
            QuestionSpec("generic", "Generic: it would fit any character", "flag"),
        ]
    if task == "diversity":
        return [
            QuestionSpec("diversity", "How diverse are these utterances?", "rating",
                         {"anchors": RATING_ANCHORS["diversity"]}),
            QuestionSpec("repeated", "Which utterances repeat another one?", "multi_label",
                         {"choices_from": CHOICES_FROM_GROUP}),
        ]
    if task == "oot":
        return [
            QuestionSpec("action", "What should happen to this label?", "single_label",
                         {"choices": list(OOT_ACTIONS)}),
            QuestionSpec("target", "Taxonomy label it maps to (for 'map')", "single_label",
                         {"choices_from": CHOICES_FROM_TAXONOMY, "required": False}),
            QuestionSpec("note", "Note (optional)", "text"),
        ]
    if task == "custom":
        return []
    raise ValueError(f"Unknown review task {task!r}; use one of {', '.join(TASKS)}.")
