"""Rewrite check: the original utterance and its rewrite (a contextual example whose text differs
from its context-less parent, linked by parent_id), shown side by side without context, in a
seeded order: "Which expresses its emotion less explicitly?" (A, B, both, neither).

The paper reports, per annotator, the share of pairs where the rewrite is the less explicit one
(67 / 71 / 92%).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from core.review.questions import QuestionSpec
from core.review.selection import CHUNK, Selection, select_example_ids
from core.review.tasks.base import (
    AnsweredItem, Figure, ReviewTask, Shown, ShownExample, TaskResults, sample, seeded, share,
)
from db.models import Example

CHOICES = ["A", "B", "both", "neither"]
PAPER_SHARES = "0.67 / 0.71 / 0.92"


class RewriteCheck(ReviewTask):
    name = "rewrite"
    title = "Rewrite check"
    summary = "Original vs rewritten utterance, without context: which is less explicit about its emotion?"
    order = 20
    default_kind = "contextual"
    guidelines = ("Two utterances say the same thing. Which one states its emotion less explicitly "
                  "(leaves more to the situation)? 'both' if both are equally implicit, 'neither' if "
                  "neither is.")

    def questions(self) -> list[QuestionSpec]:
        return [QuestionSpec("less_explicit", "Which expresses its emotion less explicitly?", "single_label",
                             {"choices": list(CHOICES)})]

    def items(self, session: Session, selection: Selection, taxonomy_id: int | None) -> list[dict[str, Any]]:
        ids = select_example_ids(session, replace(self.selection(selection), limit=None), taxonomy_id)
        parent = aliased(Example)
        pairs: dict[int, int] = {}
        for start in range(0, len(ids), CHUNK):
            pairs.update(session.execute(
                select(Example.id, Example.parent_id).join(parent, parent.id == Example.parent_id)
                .where(Example.id.in_(ids[start:start + CHUNK]), parent.text != Example.text)
            ).tuples().all())
        chosen = sample([i for i in ids if i in pairs], selection.limit, selection.seed)
        items = []
        for rewritten in chosen:
            order = [pairs[rewritten], rewritten]
            seeded(selection.seed, rewritten).shuffle(order)
            items.append({"example_id": rewritten, "payload": {
                "example_ids": order, "original": pairs[rewritten], "rewritten": rewritten}})
        return items

    def shown(self, examples: list[ShownExample], payload: dict[str, Any], show_teacher: bool) -> list[Shown]:
        blocks = []
        for letter, example in zip("AB", examples):
            blocks += [Shown("caption", letter), Shown("box", example.text)]
        return blocks

    def results(self, items: list[AnsweredItem], annotators: list[str]) -> TaskResults:
        rows = []
        for annotator in annotators:
            counts = {"rewrite": 0, "original": 0, "both": 0, "neither": 0}
            for item in items:
                picked = item.answers.get(annotator, {}).get("less_explicit")
                if picked in ("A", "B"):
                    shown_id = item.payload["example_ids"]["AB".index(picked)]
                    counts["rewrite" if shown_id == item.payload["rewritten"] else "original"] += 1
                elif picked in counts:
                    counts[picked] += 1
            answered = sum(counts.values())
            if answered:
                rows.append({"annotator": annotator, "pairs": answered,
                             **{f"share {k}": share(v, answered) for k, v in counts.items()}})
        figures = tuple(Figure(f"{r['annotator']}: rewrite less explicit", r["share rewrite"], PAPER_SHARES,
                               f"{r['pairs']} pairs") for r in rows)
        return TaskResults(figures, (("Answers per annotator", tuple(rows)),))


TASK = RewriteCheck()
