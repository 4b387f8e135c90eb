"""Filters over all examples, built as SQL conditions so that only one page leaves the database.

A `CurationFilter` is plain data (it is stored as a dataset version's `selection`), turned into
SQLAlchemy conditions on `Example` by `conditions()`. The label filter follows the same rule as
core.curate.labels.current_labels: the last relabel that was not undone, else the suggestions at
the threshold.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import Float, Text, and_, cast, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from core.labels import shown_by, threshold
from db.models import (
    CampaignItem, CurationDecision, Example, Label, OOTAction, OOTMapping, Question, Response,
    ResponseStatus, Signal, Suggestion,
)

REVIEW_STATES = ("unreviewed", "in_review", "reviewed")
OOT_STATES = ("any", "pending", "none")
SORTS = ("oldest", "newest", "longest", "shortest", "top_score", "signal")
AGREEMENT_SIGNAL = "review_agreement"
# Flags the generation pipeline sets in an example's meta, and how each is found in the stored JSON text.
FLAGS = {
    "names_emotion": '%_names_emotion"%',  # the emotion-word check: context or utterance names its emotion
    "context_names_emotion": '%"context_names_emotion"%',
    "utterance_names_emotion": '%"utterance_names_emotion"%',
    "utterance_repeats_context": '%"utterance_repeats_context"%',
    "gate": '%"gate: %',  # kept after its content gates rejected it on every try
}


@dataclass(frozen=True)
class CurationFilter:
    labels: tuple[str, ...] = ()  # any of these current labels
    score_min: float | None = None  # score of the chosen labels (else the top score)
    score_max: float | None = None
    kinds: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # pending | accepted | rejected | evaluation
    run_ids: tuple[int, ...] = ()
    story_ids: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()  # imported data set names
    review: tuple[str, ...] = ()  # unreviewed | in_review | reviewed
    rating_min: float | None = None  # mean submitted rating (1..5)
    rating_max: float | None = None
    agreement_min: float | None = None  # the review_agreement signal (0..1)
    agreement_max: float | None = None
    oot: str = ""  # '' | any | pending | none
    length_min: int | None = None  # characters of the utterance
    length_max: int | None = None
    search: str = ""  # in the utterance and its context
    signal_kind: str = ""  # any signal: label_issue, near_dup_cluster, exact_dup_cluster...
    signal_min: float | None = None
    signal_max: float | None = None
    example_ids: tuple[int, ...] = ()
    flags: tuple[str, ...] = ()  # any of these pipeline flags (FLAGS)

    def to_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults, as JSON-ready values."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "CurationFilter":
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in (data or {}).items():
            if key not in known:
                raise ValueError(f"unknown filter field {key!r}")
            values[key] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.to_dict().items()]
        return ", ".join(parts) or "all examples"


def _like_pattern(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def latest_relabel_id():
    """Correlated: id of the example's last relabel decision that was not undone (or NULL)."""
    return (
        select(func.max(CurationDecision.id))
        .where(CurationDecision.example_id == Example.id, CurationDecision.action == "relabel",
               CurationDecision.undone_at.is_(None))
        .correlate(Example).scalar_subquery()
    )


def has_current_label(names: tuple[str, ...], cut: float):
    """SQL: the example's current labels include one of `names`."""
    relabel_id = latest_relabel_id()
    teacher = exists(
        select(Suggestion.id).join(Label, Label.id == Suggestion.label_id)
        .where(shown_by(), Label.name.in_(names), Suggestion.score >= cut)
    )
    # Relabel labels are a JSON list of names: '["joy", "love"]' on both backends.
    decision = aliased(CurationDecision)
    relabelled = exists(
        select(decision.id).where(
            decision.id == relabel_id,
            or_(*[cast(decision.labels, Text).like(_like_pattern(f'"{n}"'), escape="\\") for n in names]),
        )
    )
    return or_(and_(relabel_id.is_(None), teacher), and_(relabel_id.is_not(None), relabelled))


def top_score():
    return (select(func.max(Suggestion.score)).where(shown_by())
            .correlate(Example).scalar_subquery())


def mean_rating():
    value = cast(cast(Response.value, Text), Float)
    return (
        select(func.avg(value))
        .join(CampaignItem, CampaignItem.id == Response.item_id)
        .join(Question, Question.id == Response.question_id)
        .where(CampaignItem.example_id == Example.id, Question.kind == "rating",
               Response.status == ResponseStatus.submitted)
        .correlate(Example).scalar_subquery()
    )


def signal_value(kind: str):
    return (select(func.max(Signal.value)).where(Signal.example_id == Example.id, Signal.kind == kind)
            .correlate(Example).scalar_subquery())


def _range(expr, low, high) -> list:
    out = []
    if low is not None:
        out.append(expr >= low)
    if high is not None:
        out.append(expr <= high)
    return out


def _review_condition(states: tuple[str, ...]):
    in_campaign = exists(select(CampaignItem.id).where(CampaignItem.example_id == Example.id))
    submitted = exists(
        select(Response.id).join(CampaignItem, CampaignItem.id == Response.item_id)
        .where(CampaignItem.example_id == Example.id, Response.status == ResponseStatus.submitted)
    )
    by_state = {"unreviewed": ~in_campaign, "in_review": and_(in_campaign, ~submitted), "reviewed": submitted}
    unknown = set(states) - set(by_state)
    if unknown:
        raise ValueError(f"unknown review state(s): {', '.join(sorted(unknown))}")
    return or_(*[by_state[s] for s in states])


def _oot_condition(state: str):
    any_oot = exists(select(Suggestion.id).where(shown_by(), Suggestion.oot_name.is_not(None)))
    decided = exists(select(OOTMapping.id).where(
        OOTMapping.taxonomy_id == Example.taxonomy_id, OOTMapping.source_name == Suggestion.oot_name,
        OOTMapping.action != OOTAction.pending))
    pending = exists(select(Suggestion.id).where(
        shown_by(), Suggestion.oot_name.is_not(None), Suggestion.label_id.is_(None), ~decided))
    if state == "any":
        return any_oot
    if state == "pending":
        return pending
    if state == "none":
        return ~any_oot
    raise ValueError(f"unknown OOT state {state!r} (one of {', '.join(OOT_STATES)})")


def conditions(f: CurationFilter, cut: float) -> list:
    """The SQL conditions on Example for one filter."""
    out: list = []
    if f.labels:
        out.append(has_current_label(tuple(f.labels), cut))
    if f.score_min is not None or f.score_max is not None:
        if f.labels:
            scored = select(Suggestion.id).join(Label, Label.id == Suggestion.label_id).where(
                shown_by(), Label.name.in_(f.labels),
                *_range(Suggestion.score, f.score_min, f.score_max))
            out.append(exists(scored))
        else:
            out.extend(_range(top_score(), f.score_min, f.score_max))
    simple = ((Example.kind, f.kinds), (Example.status, f.statuses), (Example.run_id, f.run_ids),
              (Example.story_id, f.story_ids), (Example.source, f.sources), (Example.id, f.example_ids))
    out.extend(column.in_(list(values)) for column, values in simple if values)
    if f.review:
        out.append(_review_condition(tuple(f.review)))
    out.extend(_range(mean_rating(), f.rating_min, f.rating_max))
    out.extend(_range(signal_value(AGREEMENT_SIGNAL), f.agreement_min, f.agreement_max))
    if f.oot:
        out.append(_oot_condition(f.oot))
    out.extend(_range(func.length(Example.text), f.length_min, f.length_max))
    if f.search.strip():
        pattern = _like_pattern(f.search.strip())
        out.append(or_(Example.text.ilike(pattern, escape="\\"),
                       func.coalesce(Example.context, literal("")).ilike(pattern, escape="\\")))
    if f.flags:
        unknown = set(f.flags) - set(FLAGS)
        if unknown:
            raise ValueError(f"unknown flag(s) {', '.join(sorted(unknown))} (known: {', '.join(FLAGS)})")
        meta = cast(Example.meta, Text)
        out.append(or_(*(meta.like(FLAGS[flag]) for flag in f.flags)))
    if f.signal_kind:
        has_signal = exists(select(Signal.id).where(
            Signal.example_id == Example.id, Signal.kind == f.signal_kind,
            *_range(Signal.value, f.signal_min, f.signal_max)))
        out.append(has_signal)
    return out


def order_by(sort: str, signal_kind: str = "") -> list:
    if sort == "oldest":
        return [Example.id]
    if sort == "newest":
        return [Example.id.desc()]
    if sort == "longest":
        return [func.length(Example.text).desc(), Example.id]
    if sort == "shortest":
        return [func.length(Example.text), Example.id]
    if sort == "top_score":
        return [func.coalesce(top_score(), -1.0).desc(), Example.id]
    if sort == "signal":
        if not signal_kind:
            raise ValueError("Sorting by a signal needs a signal kind in the filter.")
        return [func.coalesce(signal_value(signal_kind), -1e30).desc(), Example.id]
    raise ValueError(f"unknown sort {sort!r} (one of {', '.join(SORTS)})")


def count(session: Session, f: CurationFilter) -> int:
    cut = threshold(session)
    return int(session.scalar(select(func.count(Example.id)).where(*conditions(f, cut))) or 0)


def matching_ids(session: Session, f: CurationFilter) -> list[int]:
    """Every matching example id, in id order (ids only: 400,000 of them are a few MB)."""
    cut = threshold(session)
    return list(session.scalars(select(Example.id).where(*conditions(f, cut)).order_by(Example.id)))


def page_ids(session: Session, f: CurationFilter, sort: str = "oldest", offset: int = 0, limit: int = 50) -> list[int]:
    cut = threshold(session)
    query = (select(Example.id).where(*conditions(f, cut)).order_by(*order_by(sort, f.signal_kind))
             .offset(max(0, offset)).limit(max(1, min(limit, 500))))
    return list(session.scalars(query))


def as_dict(f: CurationFilter) -> dict[str, Any]:
    return asdict(f)
