"""What every review task module defines, and the plain data it exchanges with the rest of review.

A task module (`core/review/tasks/<name>.py`) holds one `TASK = SomeTask()`: its title, its default
questions, how it chooses items from a Selection, what an item shows, the extra rule a submission
must meet, and its results beside the paper's figures. Campaigns, the queue, the answers, the
results and the page read the registry (`core.review.tasks`), never the task's name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from core.review.questions import QuestionSpec
from core.review.selection import Selection, select_example_ids

@dataclass(frozen=True)
class ShownExample:
    """An example as the queue loads it (the task decides which parts are shown)."""

    id: int
    kind: str
    text: str
    context: str | None
    character_name: str | None
    character_description: str | None
    story_title: str | None = None
    story_summary: str | None = None


@dataclass(frozen=True)
class Shown:
    """One block of what an item shows, top to bottom. kind: caption | text | box | code.
    Text from data is always shown as plain text (never markdown)."""

    kind: str
    text: str


@dataclass(frozen=True)
class Figure:
    """One result, with the paper's figure for the same measure when the paper reports one."""

    name: str
    value: float | None
    paper: str | None = None
    note: str = ""


@dataclass(frozen=True)
class TaskResults:
    figures: tuple[Figure, ...] = ()
    tables: tuple[tuple[str, tuple[dict[str, Any], ...]], ...] = ()  # (title, rows)


@dataclass(frozen=True)
class AnsweredItem:
    """An item with its submitted answers: annotator -> {question name: value}."""

    item_id: int
    example_id: int | None
    payload: dict[str, Any]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)


def seeded(seed: int, *keys: Any) -> random.Random:
    """A generator that depends only on the campaign's seed and the given keys (an item's example)."""
    return random.Random(f"{seed}:" + ":".join(map(str, keys)))


def sample(ids: list[int], n: int | None, seed: int) -> list[int]:
    """Up to n of ids, seeded, in their original order."""
    if n is None or n >= len(ids):
        return list(ids)
    keep = set(random.Random(seed).sample(ids, n))
    return [i for i in ids if i in keep]


class ReviewTask:
    """Defaults: one example per item, its character and context shown, no extra submission rule."""

    name = ""
    title = ""
    summary = ""  # one line for the admin choosing a task
    order = 100  # place in the task list
    needs_story = False  # the queue loads the story's title and summary
    default_kind: str | None = None  # the example kind chosen when the selection names none
    admin_decides = False  # the Results view offers an admin decision per item (OOT labels)
    guidelines = ""

    def questions(self) -> list[QuestionSpec]:
        return []

    def items(self, session: Session, selection: Selection, taxonomy_id: int | None) -> list[dict[str, Any]]:
        """Each item's example_id and payload, in queue order."""
        ids = select_example_ids(session, self.selection(selection), taxonomy_id)
        return [{"example_id": i, "payload": {}} for i in ids]

    def selection(self, selection: Selection) -> Selection:
        """The selection with the task's default kind of example, unless it names one (or lists ids)."""
        if selection.kind is None and self.default_kind and selection.example_ids is None:
            return replace(selection, kind=self.default_kind)
        return selection

    def example_ids(self, example_id: int | None, payload: dict[str, Any]) -> list[int]:
        """The examples an item shows, in order."""
        return list(payload.get("example_ids") or ([example_id] if example_id else []))

    def shown(self, examples: list[ShownExample], payload: dict[str, Any], show_teacher: bool) -> list[Shown]:
        blocks: list[Shown] = []
        for example in examples:
            blocks.extend(character_and_context(example))
            blocks.append(Shown("box", example.text))
        return blocks

    def check_submission(self, answers: dict[str, Any], payload: dict[str, Any]) -> None:
        """Raise core.review.questions.AnswerError when a complete submission still breaks a task rule."""

    def results(self, items: list[AnsweredItem], annotators: list[str]) -> TaskResults:
        return TaskResults()


def character_and_context(example: ShownExample) -> list[Shown]:
    blocks = []
    if example.character_description:
        blocks += [Shown("caption", "Character"),
                   Shown("text", f"{example.character_name or ''}: {example.character_description}")]
    if example.context:
        blocks += [Shown("caption", "Context"), Shown("text", example.context)]
    return blocks


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
