"""The CURRENT labels of examples: the one place that decides them.

An example's labels are those of its last relabel decision that was not undone; without one,
the teacher's (or an import's gold) suggestions that reach the presence threshold. Soft scores
are the highest score per label over all agents; a relabel sets its labels to 1.0 and every other
label to 0.0 (a person said so). Everything is read in chunks of ids, so a call for 400,000
examples makes a few hundred queries, not one per example.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.labels import shown_by, threshold  # the one presence-threshold reader (also imported from here)
from db.models import CurationDecision, Example, Label, Suggestion
from db.session import read_session

CHUNK = 900  # ids per IN (...): under SQLite's and PostgreSQL's parameter limits


class CurrentLabels(NamedTuple):  # a tuple, not a dataclass: 400,000 of them are made in one freeze
    labels: tuple[str, ...]
    scores: dict[str, float]
    relabelled: bool = False


def chunks(ids: Sequence[int], size: int = CHUNK):
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def suggestion_scores(session: Session, example_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """example id -> {label name: highest score over all agents} (suggestions mapped onto a label)."""
    scores: dict[int, dict[str, float]] = defaultdict(dict)
    for part in chunks(example_ids):
        query = (
            select(Example.id, Label.name, func.max(Suggestion.score))
            .join(Suggestion, shown_by()).join(Label, Label.id == Suggestion.label_id)
            .where(Example.id.in_(part))
            .group_by(Example.id, Label.name)
        )
        for example_id, name, score in session.execute(query).tuples():
            scores[example_id][name] = float(score)
    return scores


def latest_relabels(session: Session, example_ids: Sequence[int]) -> dict[int, list[str]]:
    """example id -> labels of its last relabel decision that was not undone."""
    found: dict[int, list[str]] = {}
    for part in chunks(example_ids):
        latest = (
            select(func.max(CurationDecision.id))
            .where(CurationDecision.example_id.in_(part), CurationDecision.action == "relabel",
                   CurationDecision.undone_at.is_(None))
            .group_by(CurationDecision.example_id)
        )
        query = select(CurationDecision.example_id, CurationDecision.labels).where(CurationDecision.id.in_(latest))
        for example_id, labels in session.execute(query).tuples():
            found[example_id] = sorted(labels or [])
    return found


WINDOW = 50_000  # ids per range scan when many examples are asked for


def id_windows(ids: Sequence[int], size: int | None = None):
    """(lowest, highest, the ids) of consecutive slices of the sorted ids: for range scans."""
    size = size or WINDOW
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), size):
        part = ordered[start:start + size]
        yield part[0], part[-1], part


def _scores_by_range(session: Session, example_ids: Sequence[int]) -> tuple[dict, dict]:
    """Many examples: scan suggestions and relabels by id range (an index range scan, no IN list)."""
    from core.curate.sql import raw_rows

    names = dict(session.execute(select(Label.id, Label.name)).tuples().all())
    wanted = set(example_ids)
    holder = label_holders(session, example_ids)
    holders = set(holder.values())  # suggestions are stored on these
    held_by: dict[int, dict[str, float]] = defaultdict(dict)
    relabels: dict[int, tuple[int, str]] = {}
    for low, high, _ in id_windows(list(holders)):
        rows = raw_rows(session, select(Suggestion.example_id, Suggestion.label_id, func.max(Suggestion.score))
                        .where(Suggestion.example_id.between(low, high), Suggestion.label_id.is_not(None))
                        .group_by(Suggestion.example_id, Suggestion.label_id))
        for holder_id, label_id, score in rows:
            if holder_id not in holders:
                continue
            held = held_by[holder_id]
            name = names[label_id]
            if score > held.get(name, -1.0):  # two labels of one name (two taxonomies): the higher
                held[name] = score
    scores = {example_id: held_by[held_id] for example_id, held_id in holder.items() if held_id in held_by}
    for low, high, _ in id_windows(example_ids):
        for example_id, decision_id, labels in raw_rows(session, select(
                CurationDecision.example_id, CurationDecision.id, CurationDecision.labels).where(
                CurationDecision.example_id.between(low, high), CurationDecision.action == "relabel",
                CurationDecision.undone_at.is_(None))):
            if example_id in wanted and decision_id > relabels.get(example_id, (-1, ""))[0]:
                relabels[example_id] = (decision_id, labels)
    return scores, {e: sorted(json.loads(text) if isinstance(text, str) else (text or []))
                    for e, (_, text) in relabels.items()}


def label_holders(session: Session, example_ids: Sequence[int]) -> dict[int, int]:
    """example id -> the id its suggestions are stored on (core.labels.shown_by): the example itself,
    or a contextual variant's parent. Read by id range, for the many-examples path."""
    from core.curate.sql import raw_rows

    holder = {example_id: example_id for example_id in example_ids}
    for low, high, _ in id_windows(example_ids):
        for example_id, parent_id in raw_rows(session, select(Example.id, Example.parent_id).where(
                Example.id.between(low, high), Example.parent_id.is_not(None))):
            if example_id in holder:
                holder[example_id] = parent_id
    return holder


def current_labels(example_ids: Sequence[int], session: Session | None = None,
                   at: float | None = None) -> dict[int, CurrentLabels]:
    """example id -> its current labels and soft scores (every id given gets an entry)."""
    if session is None:
        with read_session() as own:
            return current_labels(example_ids, own, at)
    cut = threshold(session) if at is None else at
    if len(example_ids) > 4 * CHUNK:
        scores, relabels = _scores_by_range(session, example_ids)
    else:
        scores, relabels = suggestion_scores(session, example_ids), latest_relabels(session, example_ids)
    result: dict[int, CurrentLabels] = {}
    for example_id in example_ids:  # the hot loop of a 400,000-example freeze: kept plain
        teacher = scores.get(example_id)
        if teacher is None:
            teacher = {}
        chosen = relabels.get(example_id)
        if chosen is None:
            present = [name for name, score in teacher.items() if score >= cut]
            present.sort()
            result[example_id] = CurrentLabels(tuple(present), teacher, False)
        else:
            soft = {name: 0.0 for name in teacher} | {name: 1.0 for name in chosen}
            result[example_id] = CurrentLabels(tuple(chosen), soft, True)
    return result
