"""Context personalization: "Is this context specific to this character and story?" (1-5, plus
"generic"), with the story's summary and the character's description at hand."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.review.measures import alpha
from core.review.questions import RATING_VALUES, QuestionSpec
from core.review.tasks.base import (
    AnsweredItem, Figure, ReviewTask, Shown, ShownExample, TaskResults, share,
)

ANCHORS = {
    "1": "Generic: it would fit almost any character and story.",
    "2": "Mostly generic, a faint link to this story.",
    "3": "Fits this story's situation, not this character in particular.",
    "4": "Fits this story and this character.",
    "5": "Only this character, in this story, is in this situation.",
}


class Personalization(ReviewTask):
    name = "personalization"
    title = "Context personalization"
    summary = "Is this context specific to this character and story? (1-5, or generic)"
    order = 30
    needs_story = True
    default_kind = "contextual"
    guidelines = "Read the story and the character first; then judge the context, not the utterance."

    def questions(self) -> list[QuestionSpec]:
        return [
            QuestionSpec("specificity", "Is this context specific to this character and story?", "rating",
                         {"anchors": ANCHORS}),
            QuestionSpec("generic", "Generic: this context would fit any character and story", "flag"),
        ]

    def shown(self, examples: list[ShownExample], payload: dict[str, Any], show_teacher: bool) -> list[Shown]:
        blocks: list[Shown] = []
        for example in examples:
            if example.story_summary:
                blocks += [Shown("caption", f"Story: {example.story_title or ''}".strip()),
                           Shown("text", example.story_summary)]
            if example.character_description or example.character_name:
                blocks += [Shown("caption", "Character"),
                           Shown("text", f"{example.character_name or ''}: {example.character_description or ''}")]
            blocks += [Shown("caption", "Context"), Shown("box", example.context or "(no context)"),
                       Shown("caption", "Utterance"), Shown("text", example.text)]
        return blocks

    def results(self, items: list[AnsweredItem], annotators: list[str]) -> TaskResults:
        matrix = np.full((len(annotators), len(items)), np.nan)
        rows = []
        for u, annotator in enumerate(annotators):
            ratings, generic = [], 0
            for k, item in enumerate(items):
                answer = item.answers.get(annotator)
                if not answer:
                    continue
                if answer.get("specificity") in RATING_VALUES:
                    matrix[u, k] = answer["specificity"]
                    ratings.append(answer["specificity"])
                generic += bool(answer.get("generic"))
            answered = sum(1 for item in items if item.answers.get(annotator))
            if answered:
                rows.append({"annotator": annotator, "items": answered,
                             "mean rating": float(np.mean(ratings)) if ratings else None,
                             "share generic": share(generic, answered)})
        rated = matrix[~np.isnan(matrix)]
        generic_all = sum(bool(a.get("generic")) for item in items for a in item.answers.values())
        answers = sum(len(item.answers) for item in items)
        figures = (
            Figure("Mean specificity (1-5)", float(rated.mean()) if rated.size else None),
            Figure("Share marked generic", share(generic_all, answers)),
            Figure("Krippendorff's alpha (ordinal)", alpha(matrix, "ordinal", list(RATING_VALUES))),
        )
        return TaskResults(figures, (("Per annotator", tuple(rows)),))


TASK = Personalization()
