"""Question kinds and the values they accept (the review tasks, in core/review/tasks/, choose theirs).

Stored values (a contract with the curation pages): rating -> int 1..5; single_label -> a choice
name (str); multi_label -> a JSON list of choice names; text -> str; flag -> bool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("rating", "single_label", "multi_label", "text", "flag")
RATING_VALUES = (1, 2, 3, 4, 5)
MAX_TEXT_CHARS = 5000

# Where a label question takes its choices from, when not listed in options["choices"].
CHOICES_FROM_TAXONOMY = "taxonomy"  # the campaign taxonomy's label names
CHOICES_FROM_GROUP = "group"  # "1".."n": the utterances of a diversity group
CHOICES_FROM_ITEM = "item"  # the item's own list, payload["choices"] (verification: top 5 + distractor + none)


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


def choices(question: QuestionView, taxonomy_labels: list[str], payload: dict[str, Any] | None = None) -> list[str]:
    """The names a label question offers for one item (its payload holds per-item choices)."""
    source = question.options.get("choices_from")
    payload = payload or {}
    if source == CHOICES_FROM_TAXONOMY:
        return list(taxonomy_labels)
    if source == CHOICES_FROM_GROUP:
        return [str(i) for i in range(1, len(payload.get("example_ids") or []) + 1)]
    if source == CHOICES_FROM_ITEM:
        return [str(c) for c in payload.get("choices", [])]
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
