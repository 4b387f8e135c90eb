"""Which examples become a campaign's items.

A selection is an explicit list of example ids (e.g. the top label-issue scores, or any Curate
filter's result), a generation run, a simple filter, or a stratified sample of N examples per
emotion. What a task makes of the chosen examples (groups, pairs, per-item choices) is the
task's own business (core/review/tasks/).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import labels
from db.models import Example, Label, Signal, Suggestion

DEFAULT_GROUP_SIZE = 5
CHUNK = 500  # ids per IN (...) list


def presence_threshold() -> float:
    """Score from which a teacher suggestion counts as present (the setting core.labels owns)."""
    return labels.threshold()


@dataclass(frozen=True)
class Selection:
    """How to choose examples. Fields combine: the filter narrows, then per_emotion samples."""

    example_ids: list[int] | None = None
    top_signal: str | None = None  # e.g. 'label_issue': the examples with the highest signal values...
    top_n: int = 100  # ...this many of them
    run_id: int | None = None
    kind: str | None = None  # contextless | contextual | imported
    status: str | None = None  # curation status: pending | accepted | rejected
    text_contains: str | None = None
    label: str | None = None  # teacher label present (score >= threshold)
    per_emotion: int | None = None  # stratified: N examples per present emotion
    limit: int | None = None
    random_sample: bool = False  # the limit takes a seeded random sample instead of the first ones
    seed: int = 0
    group_by: str = "character_emotion"  # diversity: character_emotion | emotion | both
    neutral_share: float | None = None  # verification: share of items whose teacher's top label is neutral
    group_size: int = DEFAULT_GROUP_SIZE
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, [])}


def _filtered_query(selection: Selection, taxonomy_id: int | None, threshold: float):
    query = select(Example.id)
    if selection.run_id is not None:
        query = query.where(Example.run_id == selection.run_id)
    if selection.kind:
        query = query.where(Example.kind == selection.kind)
    if selection.status:
        query = query.where(Example.status == selection.status)
    if selection.text_contains:
        query = query.where(Example.text.contains(selection.text_contains, autoescape=True))
    if selection.label:
        present = (
            select(Suggestion.id).join(Label, Label.id == Suggestion.label_id)
            .where(labels.shown_by(), Label.name == selection.label, Suggestion.score >= threshold)
        )
        if taxonomy_id is not None:
            present = present.where(Label.taxonomy_id == taxonomy_id)
        query = query.where(present.exists())
    return query


def select_example_ids(session: Session, selection: Selection, taxonomy_id: int | None) -> list[int]:
    """The chosen example ids, in a stable order (the given order for an explicit list)."""
    threshold = presence_threshold()
    if selection.example_ids is not None:
        ids = _existing(session, selection.example_ids)
    elif selection.top_signal:
        ids = top_signal_ids(session, selection.top_signal, selection.top_n)
    else:
        ids = list(session.scalars(_filtered_query(selection, taxonomy_id, threshold).order_by(Example.id)))
    if selection.per_emotion:
        ids = _stratified(session, ids, selection.per_emotion, taxonomy_id, threshold, selection.seed)
    if selection.limit and selection.random_sample and len(ids) > selection.limit:
        keep = set(random.Random(selection.seed).sample(ids, selection.limit))
        return [i for i in ids if i in keep]
    return ids[: selection.limit] if selection.limit else ids


def top_signal_ids(session: Session, kind: str, n: int) -> list[int]:
    """The n examples with the highest value of a signal (label_issue: most suspicious first)."""
    best = func.max(Signal.value)
    query = (select(Signal.example_id).where(Signal.kind == kind, Signal.value.is_not(None))
             .group_by(Signal.example_id).order_by(best.desc(), Signal.example_id).limit(n))
    return list(session.scalars(query))


def _existing(session: Session, wanted: list[int]) -> list[int]:
    found: set[int] = set()
    unique = list(dict.fromkeys(int(i) for i in wanted))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start:start + CHUNK]
        found.update(session.scalars(select(Example.id).where(Example.id.in_(chunk))))
    return [i for i in unique if i in found]


def _stratified(session: Session, ids: list[int], per_emotion: int, taxonomy_id: int | None,
                threshold: float, seed: int) -> list[int]:
    """Up to `per_emotion` examples for each emotion present, each example used once.

    Rare emotions pick first, so a frequent one cannot use up the examples a rare one needs.
    """
    by_label = _present_labels(session, ids, taxonomy_id, threshold)
    rng = random.Random(seed)
    chosen: list[int] = []
    taken: set[int] = set()
    for _label, members in sorted(by_label.items(), key=lambda kv: (len(kv[1]), kv[0])):
        pool = [i for i in sorted(members) if i not in taken]
        picked = rng.sample(pool, min(per_emotion, len(pool)))
        taken.update(picked)
        chosen.extend(sorted(picked))
    return chosen


def _present_labels(session: Session, ids: list[int], taxonomy_id: int | None,
                    threshold: float) -> dict[str, set[int]]:
    wanted = set(ids)
    query = (
        select(Label.name, Example.id).join(Suggestion, labels.shown_by()).join(Label, Label.id == Suggestion.label_id)
        .where(Suggestion.score >= threshold)
    )
    if taxonomy_id is not None:
        query = query.where(Label.taxonomy_id == taxonomy_id)
    by_label: dict[str, set[int]] = defaultdict(set)
    for name, example_id in session.execute(query).tuples():
        if example_id in wanted:
            by_label[name].add(example_id)
    return by_label


def top_labels(session: Session, ids: list[int], taxonomy_id: int | None) -> dict[int, str]:
    """Each example's emotion: the generation target, else its highest-scored teacher label."""
    targets: dict[int, str] = {}
    best: dict[int, tuple[float, str]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        targets.update(session.execute(
            select(Example.id, Example.target_emotion)
            .where(Example.id.in_(chunk), Example.target_emotion.is_not(None))
        ).tuples().all())
        query = (
            select(Example.id, Label.name, Suggestion.score).join(Suggestion, labels.shown_by())
            .join(Label, Label.id == Suggestion.label_id).where(Example.id.in_(chunk))
        )
        if taxonomy_id is not None:
            query = query.where(Label.taxonomy_id == taxonomy_id)
        for example_id, name, score in session.execute(query).tuples():
            if example_id not in best or score > best[example_id][0]:
                best[example_id] = (score, name)
    return {**{i: name for i, (_s, name) in best.items()}, **targets}
