"""Label verification as Emo Pillars ran it: each item offers the teacher's top 5 emotions, one
seeded distractor and "none"; neutral items can be upsampled to a set share (the paper: 10%).

Results (beside the paper's): Krippendorff's alpha and mean pairwise Cohen's kappa over the
(item, offered emotion) yes/no decisions; majority-vote accuracy of the teacher's labels, on the
decisions all annotators agree on and on those where at least 2 of 3 do (the majority's yes/no
against the teacher's: an offered emotion is the teacher's when its score reaches the presence
threshold; the distractor never is); neutral recall (of the items whose majority chose "neutral",
the share the teacher labelled neutral).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.labels import shown_by
from core.review.measures import alpha, pairwise_kappas
from core.review.questions import CHOICES_FROM_ITEM, AnswerError, QuestionSpec
from core.review.selection import CHUNK, Selection, presence_threshold, select_example_ids
from core.review.tasks.base import (
    AnsweredItem, Figure, ReviewTask, Shown, ShownExample, TaskResults, character_and_context, sample, seeded, share,
)
from db.models import Example, Label, Suggestion

NONE = "none"
NEUTRAL = "neutral"
TOP = 5
PAPER_NEUTRAL_SHARE = 0.10
PAPER = {"kappa": "0.365", "all_agree": "0.86", "two_of_three": "0.70", "neutral_recall": "0.9"}


class Verification(ReviewTask):
    name = "verification"
    title = "Label verification"
    summary = "Which of these emotions does the speaker express? (teacher's top 5, a distractor, none)"
    order = 10
    guidelines = ("Mark every emotion the speaker expresses, not the ones the reader feels. "
                  "Choose 'none' when no offered emotion fits.")

    def questions(self) -> list[QuestionSpec]:
        return [
            QuestionSpec("emotions", "Which emotions does the speaker express?", "multi_label",
                         {"choices_from": CHOICES_FROM_ITEM, "required": True}),
            QuestionSpec("comment", "Comment (optional)", "text"),
        ]

    def items(self, session: Session, selection: Selection, taxonomy_id: int | None) -> list[dict[str, Any]]:
        if taxonomy_id is None:
            raise ValueError("A verification campaign needs a taxonomy.")
        labels = list(session.scalars(select(Label.name).where(Label.taxonomy_id == taxonomy_id)
                                      .order_by(Label.position)))
        if len(labels) < 2:
            raise ValueError("Verification offers the teacher's emotions and a distractor: the taxonomy needs "
                             "at least 2 labels.")
        upsample = selection.neutral_share is not None and selection.limit and selection.example_ids is None
        ids = select_example_ids(session, replace(selection, limit=None) if upsample else selection, taxonomy_id)
        scores = _scores(session, ids, taxonomy_id)
        if upsample:
            ids = _with_neutral_share(ids, scores, selection.limit, selection.neutral_share, selection.seed)
        threshold = presence_threshold()
        return [{"example_id": i, "payload": _choices(scores.get(i, {}), labels, threshold, selection.seed, i)}
                for i in ids]

    def shown(self, examples: list[ShownExample], payload: dict[str, Any], show_teacher: bool) -> list[Shown]:
        blocks: list[Shown] = []
        for example in examples:
            blocks += character_and_context(example) + [Shown("box", example.text)]
        scores, present = payload.get("scores", {}), payload.get("teacher", [])
        if show_teacher and present:
            blocks.append(Shown("text", "Teacher: " + ", ".join(f"{n} {scores.get(n, 0.0):.2f}" for n in present)))
        return blocks

    def check_submission(self, answers: dict[str, Any], payload: dict[str, Any]) -> None:
        picked = answers.get("emotions") or []
        if NONE in picked and len(picked) > 1:
            raise AnswerError("'none' means no offered emotion fits: it cannot go with an emotion.")

    def results(self, items: list[AnsweredItem], annotators: list[str]) -> TaskResults:
        return verification_results(items, annotators)


def _scores(session: Session, ids: list[int], taxonomy_id: int) -> dict[int, dict[str, float]]:
    scores: dict[int, dict[str, float]] = defaultdict(dict)
    for start in range(0, len(ids), CHUNK):
        for example_id, name, score in session.execute(
            select(Example.id, Label.name, Suggestion.score).join(Suggestion, shown_by())
            .join(Label, Label.id == Suggestion.label_id)
            .where(Example.id.in_(ids[start:start + CHUNK]), Label.taxonomy_id == taxonomy_id)
        ).tuples():
            scores[example_id][name] = max(float(score), scores[example_id].get(name, 0.0))
    return scores


def top_label(scores: dict[str, float]) -> str | None:
    return min(scores, key=lambda n: (-scores[n], n)) if scores else None


def _with_neutral_share(ids: list[int], scores: dict[int, dict[str, float]], size: int, neutral_share: float,
                        seed: int) -> list[int]:
    """`size` items of which round(size * neutral_share) have neutral as the teacher's top label (as
    many as there are), the rest drawn from the others; both seeded, in id order."""
    if not 0.0 <= neutral_share <= 1.0:
        raise ValueError("The neutral share is between 0 and 1.")
    neutral = [i for i in ids if top_label(scores.get(i, {})) == NEUTRAL]
    others = [i for i in ids if top_label(scores.get(i, {})) != NEUTRAL]
    wanted = min(round(size * neutral_share), len(neutral))
    chosen = set(sample(neutral, wanted, seed)) | set(sample(others, size - wanted, seed + 1))
    return [i for i in ids if i in chosen]


def _choices(scores: dict[str, float], labels: list[str], threshold: float, seed: int, example_id: int) -> dict:
    """The teacher's top 5 (labels it did not score count as 0, ties broken by the seed), one distractor
    outside them, shuffled by the seed, then "none". A taxonomy of 6 labels or fewer keeps one back
    as the distractor."""
    rng = seeded(seed, example_id)
    tie = {name: rng.random() for name in labels}
    ranked = sorted(labels, key=lambda n: (-scores.get(n, 0.0), tie[n]))
    top = ranked[:min(TOP, len(labels) - 1)]
    distractor = rng.choice(ranked[len(top):])
    offered = top + [distractor]
    rng.shuffle(offered)
    return {"choices": offered + [NONE], "distractor": distractor,
            "teacher": [n for n in top if scores.get(n, 0.0) >= threshold],
            "scores": {n: round(scores[n], 4) for n in top if n in scores},
            "teacher_top": top_label({n: s for n, s in scores.items() if n in labels})}


# --------------------------------------------------------------------------- results


def _decisions(items: list[AnsweredItem], annotators: list[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """annotators x (item, offered emotion): 1 chosen, 0 not, NaN not answered; and the columns."""
    columns = [(k, name) for k, item in enumerate(items) for name in item.payload.get("choices", []) if name != NONE]
    matrix = np.full((len(annotators), len(columns)), np.nan)
    row = {name: u for u, name in enumerate(annotators)}
    for c, (k, name) in enumerate(columns):
        for annotator, answer in items[k].answers.items():
            if "emotions" in answer and annotator in row:
                matrix[row[annotator], c] = 1.0 if name in (answer["emotions"] or []) else 0.0
    return matrix, columns


def majority_accuracy(items: list[AnsweredItem], annotators: list[str]) -> dict[str, Any]:
    """Majority-vote accuracy of the teacher's labels at full agreement and at 2-of-3 or more."""
    matrix, columns = _decisions(items, annotators)
    full = [0, 0]  # [agreeing with the teacher, decisions]
    majority = [0, 0]
    for c, (k, name) in enumerate(columns):
        votes = matrix[:, c][~np.isnan(matrix[:, c])]
        n, yes = len(votes), int(votes.sum())
        if n < 2 or yes * 2 == n:
            continue  # one answer is no vote; a tie has no majority
        verdict = yes * 2 > n
        teacher = name in items[k].payload.get("teacher", [])
        majority[0] += verdict == teacher
        majority[1] += 1
        if yes in (0, n):
            full[0] += verdict == teacher
            full[1] += 1
    return {"all_agree": share(*full), "all_agree_decisions": full[1],
            "two_of_three": share(*majority), "two_of_three_decisions": majority[1]}


def neutral_recall(items: list[AnsweredItem]) -> tuple[float | None, int]:
    """Of the items whose majority (2 of 3) chose neutral, the share the teacher labelled neutral."""
    hits = total = 0
    for item in items:
        answers = [a.get("emotions") or [] for a in item.answers.values() if "emotions" in a]
        if len(answers) < 2 or sum(NEUTRAL in a for a in answers) * 2 <= len(answers):
            continue
        total += 1
        hits += NEUTRAL in item.payload.get("teacher", [])
    return share(hits, total), total


def verification_results(items: list[AnsweredItem], annotators: list[str]) -> TaskResults:
    matrix, _columns = _decisions(items, annotators)
    kappas = [k for _a, _b, k, _n in pairwise_kappas(matrix) if k is not None]
    accuracy = majority_accuracy(items, annotators)
    recall, neutral_items = neutral_recall(items)
    figures = (
        Figure("Krippendorff's alpha (item x offered emotion)", alpha(matrix, "nominal")),
        Figure("Mean pairwise Cohen's kappa", float(np.mean(kappas)) if kappas else None, PAPER["kappa"]),
        Figure("Majority-vote accuracy of the teacher's labels, all annotators agree", accuracy["all_agree"],
               PAPER["all_agree"], f"{accuracy['all_agree_decisions']} decisions"),
        Figure("Majority-vote accuracy of the teacher's labels, at least 2 of 3 agree", accuracy["two_of_three"],
               PAPER["two_of_three"], f"{accuracy['two_of_three_decisions']} decisions"),
        Figure("Neutral recall", recall, PAPER["neutral_recall"], f"{neutral_items} items the majority calls neutral"),
    )
    pairs = tuple({"annotators": f"{annotators[a]} / {annotators[b]}", "kappa": k, "decisions": n}
                  for a, b, k, n in pairwise_kappas(matrix))
    return TaskResults(figures, (("Pairwise Cohen's kappa", pairs),))


TASK = Verification()
