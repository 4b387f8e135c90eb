"""Out-of-taxonomy labels: each item is a name the teacher gave outside the taxonomy, with a few
of its examples; reviewers vote map / propose / drop (and the label it maps to). Their votes are
suggestions: the admin's decision (core.review.results.decide_oot_item) changes the dictionary."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.review.questions import CHOICES_FROM_TAXONOMY, AnswerError, QuestionSpec
from core.review.selection import Selection
from core.review.tasks.base import ReviewTask, Shown, ShownExample
from db.models import Example, OOTAction, OOTMapping, Suggestion

ACTIONS = ("map", "propose", "drop")
EXAMPLES_SHOWN = 5


class OutOfTaxonomy(ReviewTask):
    name = "oot"
    title = "Out-of-taxonomy labels"
    summary = "Should this label outside the taxonomy be mapped onto one, proposed as new, or dropped?"
    order = 50
    admin_decides = True

    def questions(self) -> list[QuestionSpec]:
        return [
            QuestionSpec("action", "What should happen to this label?", "single_label", {"choices": list(ACTIONS)}),
            QuestionSpec("target", "Taxonomy label it maps to (for 'map')", "single_label",
                         {"choices_from": CHOICES_FROM_TAXONOMY, "required": False}),
            QuestionSpec("note", "Note (optional)", "text"),
        ]

    def items(self, session: Session, selection: Selection, taxonomy_id: int | None) -> list[dict[str, Any]]:
        if taxonomy_id is None:
            raise ValueError("An out-of-taxonomy campaign needs a taxonomy.")
        # The examples shown are chosen now: the queue then needs no query of its own for them.
        return [{"example_id": None, "payload": {**p, "examples": [t for _i, t in oot_examples(session, p["oot_name"])],
                                                   "example_count": count_oot_examples(session, p["oot_name"])}}
                for p in pending_oot(session, taxonomy_id, selection.limit)]

    def shown(self, examples: list[ShownExample], payload: dict[str, Any], show_teacher: bool) -> list[Shown]:
        blocks = [Shown("caption", "Out-of-taxonomy label"), Shown("code", payload.get("oot_name", "")),
                  Shown("text", f"Given {payload.get('occurrences', 0)} times; {payload.get('example_count', 0)} "
                                "examples. Some of them:")]
        return blocks + [Shown("box", text) for text in payload.get("examples", [])]

    def check_submission(self, answers: dict[str, Any], payload: dict[str, Any]) -> None:
        if answers.get("action") == "map" and not answers.get("target"):
            raise AnswerError("Choose the taxonomy label this one maps to.")


def pending_oot(session: Session, taxonomy_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Pending out-of-taxonomy names of a taxonomy, most frequent first."""
    query = (
        select(OOTMapping.id, OOTMapping.source_name, OOTMapping.occurrences)
        .where(OOTMapping.taxonomy_id == taxonomy_id, OOTMapping.action == OOTAction.pending)
        .order_by(OOTMapping.occurrences.desc(), OOTMapping.source_name)
    )
    if limit:
        query = query.limit(limit)
    return [{"mapping_id": mid, "oot_name": name, "occurrences": int(count or 0)}
            for mid, name, count in session.execute(query).tuples()]


def oot_examples(session: Session, oot_name: str, limit: int = EXAMPLES_SHOWN) -> list[tuple[int, str]]:
    """(example id, utterance) of a few examples the teacher gave this OOT name."""
    ids = select(Suggestion.example_id).where(Suggestion.oot_name == oot_name).distinct().limit(limit).subquery()
    query = select(Example.id, Example.text).where(Example.id.in_(select(ids.c.example_id))).order_by(Example.id)
    return list(session.execute(query).tuples())


def count_oot_examples(session: Session, oot_name: str) -> int:
    return int(session.scalar(select(func.count(func.distinct(Suggestion.example_id)))
                              .where(Suggestion.oot_name == oot_name)) or 0)


TASK = OutOfTaxonomy()
