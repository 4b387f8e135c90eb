"""The project at a glance: plain figures for the Dashboard page (charts are the page's business)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from core.auth import Actor, require_page
from core.curate.diversity import reviewed_label_counts, teacher_label_counts
from core.curate.signals import AGREEMENT
from db.models import (
    Campaign, CampaignItem, DatasetVersion, Evaluation, Example, GenerationRun, Job, JobStatus, Model, OOTAction,
    OOTMapping, Response, ResponseStatus, Signal, Story, utcnow,
)
from db.session import read_session


@dataclass(frozen=True)
class Dashboard:
    stories: int
    runs_by_status: dict[str, int]
    examples: list[dict[str, Any]]  # kind, stage, status, count
    teacher_labels: dict[str, int]
    reviewed_labels: dict[str, int]
    oot_pending: list[dict[str, Any]]  # name, occurrences
    campaigns: list[dict[str, Any]]  # name, items, completed, submitted responses
    mean_agreement: float | None
    agreement_examples: int
    versions: list[dict[str, Any]]
    models: list[dict[str, Any]]
    throughput: list[dict[str, Any]] = field(default_factory=list)  # hour, kind, jobs, units


def dashboard(actor: Actor | None) -> Dashboard:
    require_page(actor, "dashboard")
    with read_session() as session:
        return Dashboard(
            stories=int(session.scalar(select(func.count(Story.id))) or 0),
            runs_by_status={getattr(s, "value", s): int(n) for s, n in session.execute(
                select(GenerationRun.status, func.count()).group_by(GenerationRun.status)).tuples()},
            examples=_examples(session),
            teacher_labels=teacher_label_counts(session, ("contextless", "contextual")),
            reviewed_labels=reviewed_label_counts(session),
            oot_pending=[{"name": n, "occurrences": int(o)} for n, o in session.execute(
                select(OOTMapping.source_name, OOTMapping.occurrences).where(OOTMapping.action == OOTAction.pending)
                .order_by(OOTMapping.occurrences.desc()).limit(30)).tuples()],
            campaigns=_campaigns(session),
            **_agreement(session),
            versions=[{"id": v.id, "name": v.name, "size": v.size, "evaluation": v.is_evaluation_set,
                       "created": v.created_at} for v in session.scalars(
                select(DatasetVersion).order_by(DatasetVersion.id.desc()).limit(30))],
            models=_models(session),
            throughput=_throughput(session),
        )


def _examples(session) -> list[dict[str, Any]]:
    query = (select(Example.kind, Example.stage, Example.status, func.count())
             .group_by(Example.kind, Example.stage, Example.status))
    return [{"kind": getattr(k, "value", k), "stage": stage or "-", "status": status, "count": int(n)}
            for k, stage, status, n in session.execute(query).tuples()]


def _campaigns(session) -> list[dict[str, Any]]:
    items = dict(session.execute(select(CampaignItem.campaign_id, func.count()).group_by(
        CampaignItem.campaign_id)).tuples().all())
    done = dict(session.execute(select(CampaignItem.campaign_id, func.count()).where(
        CampaignItem.status == "completed").group_by(CampaignItem.campaign_id)).tuples().all())
    submitted = dict(session.execute(
        select(CampaignItem.campaign_id, func.count(Response.id)).join(Response, Response.item_id == CampaignItem.id)
        .where(Response.status == ResponseStatus.submitted).group_by(CampaignItem.campaign_id)).tuples().all())
    return [{"campaign": c.name, "task": c.task, "items": items.get(c.id, 0), "completed": done.get(c.id, 0),
             "submitted responses": submitted.get(c.id, 0)}
            for c in session.scalars(select(Campaign).order_by(Campaign.id))]


def _agreement(session) -> dict[str, Any]:
    mean, n = session.execute(select(func.avg(Signal.value), func.count(Signal.id)).where(
        Signal.kind == AGREEMENT)).one()
    return {"mean_agreement": float(mean) if mean is not None else None, "agreement_examples": int(n)}


def _models(session) -> list[dict[str, Any]]:
    rows = []
    evaluations = defaultdict(list)
    for e in session.scalars(select(Evaluation).order_by(Evaluation.id)):
        evaluations[e.model_id].append(e)
    for m in session.scalars(select(Model).order_by(Model.id.desc()).limit(30)):
        figures = {k: v for k, v in (m.metrics or {}).items() if isinstance(v, (int, float))}
        for e in evaluations[m.id]:
            figures.update({f"{e.benchmark}: {k}": v for k, v in (e.figures or {}).items()
                            if isinstance(v, (int, float))})
        rows.append({"model": m.name, "kind": m.kind, "created": m.created_at, **figures})
    return rows


def _throughput(session) -> list[dict[str, Any]]:
    """Finished jobs and the units they processed, per hour and kind, over the last day."""
    since = utcnow() - timedelta(hours=24)
    query = select(Job.kind, Job.finished_at, Job.progress_done).where(
        Job.status == JobStatus.succeeded, Job.finished_at.is_not(None), Job.finished_at >= since)
    buckets: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for kind, finished, done in session.execute(query).tuples():
        hour = finished.replace(minute=0, second=0, microsecond=0)
        buckets[(hour, kind)][0] += 1
        buckets[(hour, kind)][1] += int(done or 0)
    return [{"hour": h, "kind": k, "jobs": v[0], "units": v[1]} for (h, k), v in sorted(buckets.items())]
