"""From teacher scores to labels: the presence threshold and the out-of-taxonomy (OOT) dictionary.

Soft scores are always kept (one Suggestion per emotion name the teacher gave). Labels are derived
when read: a suggestion counts for a taxonomy label when its score reaches the threshold (default
0.3, as in Emo Pillars), so changing the threshold changes every example's labels at once and loses
nothing.

A name outside the taxonomy ('anxiety') is stored in `Suggestion.oot_name`. The OOT dictionary
(OOTMapping, per taxonomy) says what to do with it: map it onto a label (the suggestion's `label_id`
then points at that label), drop it, propose it as a new label, or leave it pending for a human.
Deciding a mapping re-applies it to every stored suggestion of that name in one UPDATE.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.auth import Actor, require_admin
from core.taxonomy import normalise_label
from db.models import Example, Label, OOTAction, OOTMapping, Setting, Suggestion, utcnow
from db.session import insert_rows, read_session, write_session

THRESHOLD_KEY = "labels.threshold"
DEFAULT_THRESHOLD = 0.3


class LabelError(ValueError):
    """A decision or setting that cannot be applied; the message says why."""


# --------------------------------------------------------------------------- threshold


def threshold(session: Session | None = None) -> float:
    """The presence threshold: the `labels.threshold` setting, 0.3 when nobody set it. The one reader:
    the pipeline, Curate, review and the dashboards all count a label present from this score."""
    if session is None:
        with read_session() as own:
            return threshold(own)
    row = session.get(Setting, THRESHOLD_KEY)
    return float(row.value) if row is not None and row.value is not None else DEFAULT_THRESHOLD


def set_threshold(actor: Actor | None, value: float) -> float:
    require_admin(actor)
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise LabelError(f"The threshold must be above 0 and at most 1 (got {value}).")
    with write_session() as session:
        row = session.get(Setting, THRESHOLD_KEY)
        if row is None:
            session.add(Setting(key=THRESHOLD_KEY, value=value, updated_by_id=actor.id))
        else:
            row.value, row.updated_by_id = value, actor.id
    return value


# --------------------------------------------------------------------------- storing teacher labels


@dataclass(frozen=True)
class ScoredName:
    name: str
    score: float


def resolve_names(session: Session, taxonomy_id: int, names: Iterable[str]) -> dict[str, tuple[int | None, str | None]]:
    """normalised name -> (label id it counts for, OOT name or None); unknown names become pending.

    Creates the pending OOTMapping rows for names never seen before (their counts are refreshed by
    `refresh_oot_counts` once the suggestions are stored).
    """
    wanted = {normalise_label(n) for n in names if normalise_label(n)}
    labels = dict(session.execute(select(Label.name, Label.id).where(Label.taxonomy_id == taxonomy_id)).tuples().all())
    mappings = {m.source_name: m for m in session.scalars(
        select(OOTMapping).where(OOTMapping.taxonomy_id == taxonomy_id, OOTMapping.source_name.in_(wanted)))}
    resolved: dict[str, tuple[int | None, str | None]] = {}
    for name in sorted(wanted):
        if name in labels:
            resolved[name] = (labels[name], None)
            continue
        mapping = mappings.get(name)
        if mapping is None:
            mapping = OOTMapping(taxonomy_id=taxonomy_id, source_name=name, action=OOTAction.pending, occurrences=0)
            session.add(mapping)
            session.flush()
        target = mapping.target_label_id if OOTAction(mapping.action) == OOTAction.map else None
        resolved[name] = (target, name)
    return resolved


@dataclass(frozen=True)
class Scored:
    """One example's teacher answer to store: its names with scores, and the request they came from."""

    example_id: int
    names: Sequence[ScoredName]
    llm_request_id: int | None = None


def _best_scores(scored: Sequence[ScoredName]) -> dict[str, float]:
    """normalised name -> its highest score, clipped to [0, 1]."""
    best: dict[str, float] = {}
    for item in scored:
        name = normalise_label(item.name)
        if name:
            best[name] = max(best.get(name, 0.0), min(1.0, max(0.0, float(item.score))))
    return best


def add_suggestions_many(session: Session, taxonomy_id: int, entries: Sequence[Scored], *, agent: str) -> int:
    """Store one suggestion per distinct name of each entry (highest score wins), all names resolved and
    all rows inserted together (a stage stores thousands); returns how many suggestions are OOT."""
    best = [(entry, _best_scores(entry.names)) for entry in entries]
    resolved = resolve_names(session, taxonomy_id, {name for _, scores in best for name in scores})
    rows = [{"example_id": entry.example_id, "label_id": resolved[name][0], "oot_name": resolved[name][1],
             "score": score, "agent": agent, "llm_request_id": entry.llm_request_id, "created_at": utcnow()}
            for entry, scores in best for name, score in scores.items()]
    insert_rows(session, Suggestion, rows)
    return sum(1 for row in rows if row["oot_name"] is not None)


def add_suggestions(session: Session, example_id: int, taxonomy_id: int, scored: Sequence[ScoredName], *,
                    agent: str, llm_request_id: int | None = None) -> int:
    """Store one suggestion per distinct name (highest score wins); returns how many are OOT."""
    return add_suggestions_many(session, taxonomy_id, [Scored(example_id, scored, llm_request_id)], agent=agent)


def refresh_oot_counts(session: Session, taxonomy_id: int, names: Iterable[str] | None = None) -> None:
    """OOTMapping.occurrences = how many stored suggestions carry the name (for this taxonomy)."""
    query = (select(Suggestion.oot_name, func.count())
             .join(Example, Example.id == Suggestion.example_id)
             .where(Example.taxonomy_id == taxonomy_id, Suggestion.oot_name.is_not(None))
             .group_by(Suggestion.oot_name))
    mappings = select(OOTMapping).where(OOTMapping.taxonomy_id == taxonomy_id)
    if names is not None:
        names = list(names)
        query = query.where(Suggestion.oot_name.in_(names))
        mappings = mappings.where(OOTMapping.source_name.in_(names))
    counts = dict(session.execute(query).tuples().all())
    for mapping in session.scalars(mappings):
        mapping.occurrences = counts.get(mapping.source_name, 0)


# --------------------------------------------------------------------------- the OOT dictionary


def decide_oot(actor: Actor | None, taxonomy_id: int, source_name: str, action: str,
               target_label: str | None = None, note: str = "") -> int:
    """Record what to do with an OOT name and re-apply it everywhere; returns suggestions updated."""
    actor = require_admin(actor)
    name = normalise_label(source_name)
    try:
        chosen = OOTAction(action)
    except ValueError:
        raise LabelError(f"Unknown action {action!r}: use map, drop, propose or pending.") from None
    with write_session() as session:
        target_id = _target_label_id(session, taxonomy_id, chosen, target_label)
        if session.scalar(select(Label.id).where(Label.taxonomy_id == taxonomy_id, Label.name == name)):
            raise LabelError(f"{name!r} is a label of this taxonomy, not an out-of-taxonomy name.")
        mapping = session.scalar(select(OOTMapping).where(OOTMapping.taxonomy_id == taxonomy_id,
                                                          OOTMapping.source_name == name))
        if mapping is None:
            mapping = OOTMapping(taxonomy_id=taxonomy_id, source_name=name, occurrences=0)
            session.add(mapping)
        mapping.action, mapping.target_label_id = chosen, target_id
        mapping.decided_by_id, mapping.decided_at = actor.id, utcnow()
        mapping.note = note or mapping.note or ""
        updated = _reapply(session, taxonomy_id, name, target_id)
        session.flush()
        refresh_oot_counts(session, taxonomy_id, [name])
    return updated


def _target_label_id(session: Session, taxonomy_id: int, action: OOTAction, target_label: str | None) -> int | None:
    if action != OOTAction.map:
        return None
    if not target_label:
        raise LabelError("Mapping needs the taxonomy label to map onto.")
    label_id = session.scalar(select(Label.id).where(Label.taxonomy_id == taxonomy_id,
                                                    Label.name == normalise_label(target_label)))
    if label_id is None:
        raise LabelError(f"{target_label!r} is not a label of this taxonomy.")
    return label_id


def _reapply(session: Session, taxonomy_id: int, name: str, target_id: int | None) -> int:
    examples = select(Example.id).where(Example.taxonomy_id == taxonomy_id)
    result = session.execute(update(Suggestion)
                             .where(Suggestion.oot_name == name, Suggestion.example_id.in_(examples))
                             .values(label_id=target_id)
                             .execution_options(synchronize_session=False))
    return result.rowcount or 0


def reapply_all(actor: Actor | None, taxonomy_id: int) -> int:
    """Re-apply every mapping of a taxonomy (after a bulk edit of the dictionary)."""
    require_admin(actor)
    with write_session() as session:
        mappings = list(session.scalars(select(OOTMapping).where(OOTMapping.taxonomy_id == taxonomy_id)))
        updated = sum(_reapply(session, taxonomy_id, m.source_name,
                               m.target_label_id if OOTAction(m.action) == OOTAction.map else None)
                      for m in mappings)
        refresh_oot_counts(session, taxonomy_id)
    return updated


# --------------------------------------------------------------------------- reading labels


def shown_by(example=Example):
    """Join condition: the suggestions `example` shows. A contextual variant shows its context-less
    parent's (the paper gives both variants the parent's labels): they are stored once, on the parent,
    and a fixed OOT mapping or a new threshold reaches the variants with it. Every reader of an
    example's suggestions joins through this."""
    return Suggestion.example_id == func.coalesce(example.parent_id, example.id)


def teacher_scores(example_ids: Sequence[int], agent_prefix: str | None = None,
                   exclude_agent_prefix: str | None = "gold:") -> dict[int, dict[str, float]]:
    """example id -> {taxonomy label: best score} over mapped suggestions (OOT names left out)."""
    scores: dict[int, dict[str, float]] = defaultdict(dict)
    with read_session() as session:
        for start in range(0, len(example_ids), 500):
            query = (select(Example.id, Label.name, Suggestion.score).join(Suggestion, shown_by())
                     .join(Label, Label.id == Suggestion.label_id)
                     .where(Example.id.in_(list(example_ids[start:start + 500]))))
            if agent_prefix:
                query = query.where(Suggestion.agent.startswith(agent_prefix))
            if exclude_agent_prefix:
                query = query.where(~Suggestion.agent.startswith(exclude_agent_prefix))
            for example_id, label, score in session.execute(query).tuples():
                if score > scores[example_id].get(label, -1.0):
                    scores[example_id][label] = score
    return dict(scores)


def labels_from_scores(scores: dict[str, float], at: float | None = None) -> list[str]:
    cut = threshold() if at is None else at
    return sorted(name for name, score in scores.items() if score >= cut)


def example_labels(example_ids: Sequence[int], at: float | None = None) -> dict[int, list[str]]:
    """example id -> the teacher's labels at the threshold (current setting unless `at` is given)."""
    cut = threshold() if at is None else at
    scores = teacher_scores(example_ids)
    return {example_id: labels_from_scores(scores.get(example_id, {}), cut) for example_id in example_ids}


def oot_names(example_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
    """example id -> [(OOT name, its action)] for display."""
    found: dict[int, list[tuple[str, str]]] = defaultdict(list)
    with read_session() as session:
        for start in range(0, len(example_ids), 500):
            query = (select(Example.id, Suggestion.oot_name, OOTMapping.action).join(Suggestion, shown_by())
                     .outerjoin(OOTMapping, (OOTMapping.source_name == Suggestion.oot_name)
                                & (OOTMapping.taxonomy_id == Example.taxonomy_id))
                     .where(Example.id.in_(list(example_ids[start:start + 500])),
                            Suggestion.oot_name.is_not(None)))
            for example_id, name, action in session.execute(query).tuples():
                found[example_id].append((name, OOTAction(action).value if action else "pending"))
    return dict(found)
