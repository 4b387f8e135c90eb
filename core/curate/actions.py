"""Accept, reject and relabel one example or every example of a filter; every change undoable.

Each action writes one CurationDecision per example with the state it replaced, under one
batch id. Undo marks the batch's decisions undone and recomputes each touched example's status
from the decisions that remain, so undoing an older batch never clobbers a newer decision.
Labels need no restoring at all: current_labels() ignores undone relabels.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from core import inline, jobs
from core.auth import Actor, require_admin
from core.curate import filters
from core.curate.filters import CurationFilter
from core.curate.labels import chunks, current_labels
from db.models import CurationDecision, Example, Label, User, utcnow
from db.session import read_session, write_session

ACTIONS = ("accept", "reject", "relabel")
STATUS_OF = {"accept": "accepted", "reject": "rejected"}


class CurationError(ValueError):
    """An action that cannot be applied; the message says why."""


@dataclass(frozen=True)
class DecisionReport:
    batch_id: str
    action: str
    count: int


@dataclass(frozen=True)
class BatchView:
    batch_id: str
    action: str
    count: int
    by: str | None
    at: datetime
    undone: bool
    reason: str


def decide(actor: Actor | None, action: str, *, example_ids: list[int] | None = None,
           selection: CurationFilter | None = None, labels: list[str] | None = None,
           reason: str = "", batch_id: str | None = None) -> DecisionReport:
    """Apply `action` to the given examples, or to every example matching `selection`, in one transaction.

    (`batch_id`: the worker's bulk job names its batch, so a batch id that already has decisions is
    not applied twice.)
    """
    user_id = require_admin(actor).id
    if action not in ACTIONS:
        raise CurationError(f"Unknown action {action!r}; one of {', '.join(ACTIONS)}.")
    if (example_ids is None) == (selection is None):
        raise CurationError("Give either example ids or a filter.")
    batch_id = batch_id or str(uuid.uuid4())
    with write_session() as session:
        done = session.scalar(select(func.count(CurationDecision.id)).where(CurationDecision.batch_id == batch_id))
        if done:
            return DecisionReport(batch_id, action, int(done))
        new_labels = _check_labels(session, labels) if action == "relabel" else None
        ids = sorted(set(example_ids)) if example_ids is not None else filters.matching_ids(session, selection)
        if not ids:
            raise CurationError("No example matches: nothing changed.")
        for part in chunks(ids):
            _apply(session, user_id, action, part, new_labels, batch_id, reason)
    return DecisionReport(batch_id, action, len(ids))




def enqueue_decision(actor: Actor | None, action: str, selection: CurationFilter, *,
                     labels: list[str] | None = None, reason: str = "") -> tuple[int, str]:
    """Queue a bulk action over a filter; returns (job id, batch id: what Undo takes once it ran)."""
    require_admin(actor)
    if action not in ACTIONS:
        raise CurationError(f"Unknown action {action!r}; one of {', '.join(ACTIONS)}.")
    if action == "relabel":
        with read_session() as session:
            labels = _check_labels(session, labels)
    batch_id = str(uuid.uuid4())
    payload = {"action": action, "selection": selection.to_dict(), "labels": labels, "reason": reason,
               "batch_id": batch_id}
    return jobs.enqueue(actor, "curate_bulk", payload, title=f"{action} every match of: {selection.describe()}"[:300]), \
        batch_id


def decide_or_enqueue(actor: Actor | None, action: str, selection: CurationFilter, *,
                      labels: list[str] | None = None, reason: str = "") -> inline.Outcome[DecisionReport]:
    """What the Curate page's "Apply to all matches" does: up to `inline.EXAMPLES` matches are decided now
    (the report), more by the worker, since a long write transaction belongs there (the job id; the
    batch id that Undo takes is in `detail`)."""
    require_admin(actor)
    with read_session() as session:
        count = filters.count(session, selection)
    if inline.examples_run_now(count):
        return inline.Outcome(report=decide(actor, action, selection=selection, labels=labels, reason=reason))
    job_id, batch_id = enqueue_decision(actor, action, selection, labels=labels, reason=reason)
    return inline.Outcome(job_ids=(job_id,), detail={"batch_id": batch_id, "matches": count})


@jobs.handler("curate_bulk")
def run_bulk_job(ctx: jobs.JobContext) -> dict[str, Any]:
    p = ctx.payload
    ctx.set_total(1, note="applying")
    try:
        report = decide(ctx.actor, p["action"], selection=CurationFilter.from_dict(p["selection"]),
                        labels=p.get("labels"), reason=p.get("reason", ""), batch_id=p["batch_id"])
    except CurationError as error:
        raise jobs.JobFailed(str(error)) from None
    ctx.set_progress(1, 1, note=f"{report.count:,} examples")
    return {"batch_id": report.batch_id, "action": report.action, "count": report.count}


def _check_labels(session: Session, labels: list[str] | None) -> list[str]:
    from core.taxonomy import normalise_label

    names = sorted({normalise_label(n) for n in labels or [] if normalise_label(n)})
    known = set(session.scalars(select(Label.name).where(Label.name.in_(names)))) if names else set()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CurationError(f"Unknown label(s): {', '.join(unknown)}.")
    return names


def _apply(session: Session, user_id: int | None, action: str, ids: list[int], labels: list[str] | None,
           batch_id: str, reason: str) -> None:
    statuses = dict(session.execute(select(Example.id, Example.status).where(Example.id.in_(ids))).tuples().all())
    missing = [i for i in ids if i not in statuses]
    if missing:
        raise CurationError(f"No example with id {missing[0]}.")
    before = current_labels(ids, session)
    now = utcnow()
    rows = [{
        "example_id": i, "action": action, "labels": labels, "batch_id": batch_id, "reason": reason,
        "previous": {"status": statuses[i], "labels": list(before[i].labels)},
        "decided_by_id": user_id, "decided_at": now,
    } for i in ids]
    session.execute(insert(CurationDecision), rows)
    if action in STATUS_OF:
        session.execute(update(Example).where(Example.id.in_(ids)).values(status=STATUS_OF[action]))


def undo(actor: Actor | None, batch_id: str) -> int:
    """Undo one batch; returns how many decisions were undone (0 when it was undone already)."""
    require_admin(actor)
    with write_session() as session:
        ids = list(session.scalars(select(CurationDecision.example_id).where(
            CurationDecision.batch_id == batch_id, CurationDecision.undone_at.is_(None))))
        if not ids:
            if session.scalar(select(func.count()).where(CurationDecision.batch_id == batch_id)):
                return 0
            raise CurationError(f"No curation batch {batch_id}.")
        session.execute(update(CurationDecision).where(
            CurationDecision.batch_id == batch_id, CurationDecision.undone_at.is_(None)).values(undone_at=utcnow()))
        for part in chunks(sorted(set(ids))):
            _restore_statuses(session, part)
        return len(ids)


def _restore_statuses(session: Session, ids: list[int]) -> None:
    """Status = the last remaining accept/reject, else the status before the first decision."""
    latest = (select(func.max(CurationDecision.id)).where(
        CurationDecision.example_id.in_(ids), CurationDecision.action.in_(list(STATUS_OF)),
        CurationDecision.undone_at.is_(None)).group_by(CurationDecision.example_id))
    decided = dict(session.execute(select(CurationDecision.example_id, CurationDecision.action).where(
        CurationDecision.id.in_(latest))).tuples().all())
    first = select(func.min(CurationDecision.id)).where(CurationDecision.example_id.in_(ids)).group_by(
        CurationDecision.example_id)
    original = {example_id: (previous or {}).get("status", "pending") for example_id, previous in session.execute(
        select(CurationDecision.example_id, CurationDecision.previous).where(CurationDecision.id.in_(first))).tuples()}
    by_status: dict[str, list[int]] = {}
    for example_id in ids:
        status = STATUS_OF[decided[example_id]] if example_id in decided else original.get(example_id, "pending")
        by_status.setdefault(status, []).append(example_id)
    for status, members in by_status.items():
        session.execute(update(Example).where(Example.id.in_(members)).values(status=status))


def list_batches(actor: Actor | None, limit: int = 50) -> list[BatchView]:
    """The latest curation batches, newest first."""
    require_admin(actor)
    query = (
        select(CurationDecision.batch_id, func.min(CurationDecision.action), func.count(CurationDecision.id),
               func.min(User.username), func.min(CurationDecision.decided_at),
               func.count(CurationDecision.undone_at), func.min(CurationDecision.reason))
        .outerjoin(User, User.id == CurationDecision.decided_by_id)
        .group_by(CurationDecision.batch_id)
        .order_by(func.max(CurationDecision.id).desc()).limit(limit)
    )
    with read_session() as session:
        return [BatchView(b, a, int(n), u, at, int(undone) > 0, r or "")
                for b, a, n, u, at, undone, r in session.execute(query).tuples()]


def example_history(actor: Actor | None, example_id: int) -> list[BatchView]:
    """Every decision about one example, oldest first."""
    require_admin(actor)
    query = (select(CurationDecision, User.username).outerjoin(User, User.id == CurationDecision.decided_by_id)
             .where(CurationDecision.example_id == example_id).order_by(CurationDecision.id))
    with read_session() as session:
        return [BatchView(d.batch_id or "", d.action + (f" {', '.join(d.labels)}" if d.labels else ""), 1, u,
                          d.decided_at, d.undone_at is not None, d.reason)
                for d, u in session.execute(query).tuples()]
