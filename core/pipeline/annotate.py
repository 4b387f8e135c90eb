"""The teacher on texts outside a generation run: free-text descriptors and soft labels.

Two steps of the pipeline's registry: `describe` (a few descriptors per text, each a word or short
phrase with an intensity; the prompt does not list the taxonomy) for contrastive distillation, and
`text_labels` (soft scores over a taxonomy) for the comparison with human labels. They run on imported
texts (labelled or not, plain text uploads included) and on a generation run's examples. On a labelled
set (gold suggestions, agent 'gold:<source>') the teacher's labels are compared with the human ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score, f1_score, precision_recall_fscore_support
from sqlalchemy import func, select

from core import jobs
from core import labels as label_store
from core.auth import Actor, require_admin
from core.llm import settings as engine_settings
from core.llm.engines import Engine
from core.llm.factory import current_engine  # the one engine factory (tests patch this name)
from core.llm.types import ChatRequest, Sampling
from core.pipeline import gating, templates
from core.pipeline import steps as registry
from core.pipeline.steps.base import StepContext
from core.taxonomy import get_taxonomy
from db.models import Descriptor, Example, ExampleKind, Suggestion
from db.session import read_session

JOB_KIND = "annotate_texts"
GOLD_PREFIX = "gold:"
TEACHER_PREFIX = "teacher:"
TEXT_STEPS = ("describe", "text_labels")


@dataclass(frozen=True)
class SourceRow:
    source: str
    taxonomy_id: int | None
    texts: int
    gold_labelled: int
    described: int


def list_sources(actor: Actor | None) -> list[SourceRow]:
    """Imported data sets: how many texts, how many with human labels, how many the teacher described."""
    require_admin(actor)
    with read_session() as session:
        rows = session.execute(select(Example.source, Example.taxonomy_id, func.count())
                               .where(Example.kind == ExampleKind.imported)
                               .group_by(Example.source, Example.taxonomy_id).order_by(Example.source)).tuples().all()
        gold = dict(session.execute(select(Example.source, func.count(func.distinct(Suggestion.example_id)))
                                    .join(Suggestion, Suggestion.example_id == Example.id)
                                    .where(Example.kind == ExampleKind.imported, Suggestion.agent.startswith(GOLD_PREFIX))
                                    .group_by(Example.source)).tuples().all())
        described = dict(session.execute(select(Example.source, func.count(func.distinct(Descriptor.example_id)))
                                         .join(Descriptor, Descriptor.example_id == Example.id)
                                         .where(Example.kind == ExampleKind.imported)
                                         .group_by(Example.source)).tuples().all())
    return [SourceRow(source, taxonomy_id, count, gold.get(source, 0), described.get(source, 0))
            for source, taxonomy_id, count in rows]


def enqueue_annotation(actor: Actor | None, source: str | None, taxonomy_id: int, *, limit: int | None = None,
                       seed: int = 0, steps: tuple[str, ...] = TEXT_STEPS, run_id: int | None = None) -> int:
    """Queue the teacher's descriptors (and soft labels) for the first `limit` texts of an imported set,
    or of a generation run's examples (`run_id`)."""
    actor = require_admin(actor)
    get_taxonomy(taxonomy_id)
    unknown = set(steps) - set(TEXT_STEPS)
    if not steps or unknown:
        raise ValueError(f"Steps for texts: one or both of {', '.join(TEXT_STEPS)}.")
    count = len(_texts(source, run_id, None))
    if not count:
        raise ValueError(f"No texts in generation run #{run_id}." if run_id else f"No imported texts from {source!r}.")
    payload = {"source": source, "run_id": run_id, "taxonomy_id": taxonomy_id, "limit": limit, "seed": seed,
               "steps": list(steps)}
    where = f"run #{run_id}" if run_id else str(source)
    return jobs.enqueue(actor, JOB_KIND, payload,
                        title=f"Describe emotions: {min(count, limit or count)} texts of {where}")


def _texts(source: str | None, run_id: int | None, limit: int | None) -> list[tuple[int, str]]:
    with read_session() as session:
        query = select(Example.id, Example.text).order_by(Example.id)
        if run_id:
            query = query.where(Example.run_id == run_id)
        else:
            query = query.where(Example.kind == ExampleKind.imported, Example.source == source)
        if limit:
            query = query.limit(limit)
        return list(session.execute(query).tuples())


def text_context(engine: Engine, taxonomy_labels: list[tuple[str, str]], taxonomy_id: int | None, sampling: Sampling,
                 seed: int, stages: tuple[str, ...] = TEXT_STEPS) -> StepContext:
    """A step context for texts outside a run (no run, no run settings)."""
    chosen = templates.active_templates()
    return StepContext(None, None, taxonomy_id, taxonomy_labels, {}, {s: chosen[s] for s in stages}, engine,
                       sampling, seed)


def describe_requests(texts: list[tuple[int, str]], ctx: StepContext, step: str = "text_labels") -> dict[int, ChatRequest]:
    """example (or row) id -> its request, for one of the text steps."""
    return {item.subject[0]: item.request
            for item in registry.get(step).items(ctx, None, {"texts": list(texts)})}


@jobs.handler(JOB_KIND)
def run_annotation_job(ctx: jobs.JobContext) -> dict[str, Any]:
    taxonomy_id = int(ctx.payload["taxonomy_id"])
    try:
        engine = current_engine()
    except Exception as error:
        raise jobs.JobFailed(f"the engine could not start: {type(error).__name__}: {error}") from None
    settings = engine_settings.load()
    detail = get_taxonomy(taxonomy_id)
    stages = tuple(ctx.payload.get("steps") or TEXT_STEPS)
    sctx = text_context(engine, [(label.name, label.description) for label in detail.labels], taxonomy_id,
                        settings.default_sampling(), int(ctx.payload.get("seed") or 0), stages)
    texts = _texts(ctx.payload.get("source"), ctx.payload.get("run_id"), ctx.payload.get("limit"))
    options = {"batch_size": settings.batch_size, "validation_attempts": settings.validation_attempts}
    result: dict[str, Any] = {"templates": {s: sctx.templates[s].version for s in stages}}
    for number, name in enumerate(stages, start=1):
        step = registry.get(name)
        items = step.items(sctx, None, {"texts": texts})
        outcome = gating.ask_gated(ctx, sctx, step, items, options, f"{number}/{len(stages)} {name}: ")
        with ctx.batch() as session:
            produced = step.store(sctx, session, items)
            ctx.advance(session, 0, note=", ".join(f"{k.replace('_', ' ')} {v}" for k, v in produced.items()))
        report = outcome.report
        if report.total and not (report.answered + report.cached):
            raise jobs.JobFailed(f"{name}: none of the {report.total} requests was answered")
        result[name] = {**report.as_dict(), **outcome.figures(), **produced}
    return result


# --------------------------------------------------------------------------- agreement with humans


@dataclass(frozen=True)
class LabelAgreement:
    label: str
    human: int  # texts the humans gave this label
    teacher: int  # texts the teacher gave it (at the threshold)
    precision: float
    recall: float
    f1: float
    kappa: float


@dataclass(frozen=True)
class Agreement:
    source: str
    texts: int
    threshold: float
    macro_f1: float
    micro_f1: float
    per_label: list[LabelAgreement]


def agreement(actor: Actor | None, source: str, taxonomy_id: int, at: float | None = None) -> Agreement:
    """Teacher vs human labels per label, over the texts of `source` that have both."""
    require_admin(actor)
    names = [label.name for label in get_taxonomy(taxonomy_id).labels]
    cut = label_store.threshold() if at is None else at
    with read_session() as session:
        ids = list(session.scalars(select(Example.id).where(Example.kind == ExampleKind.imported,
                                                            Example.source == source).order_by(Example.id)))
    teacher = label_store.teacher_scores(ids, agent_prefix=TEACHER_PREFIX)
    gold = label_store.teacher_scores(ids, agent_prefix=GOLD_PREFIX, exclude_agent_prefix=None)
    described = _described(ids)
    both = [i for i in ids if i in described and i in gold]
    index = {name: column for column, name in enumerate(names)}
    human = np.zeros((len(both), len(names)), dtype=int)
    model = np.zeros_like(human)
    for row, example_id in enumerate(both):
        for name, score in gold[example_id].items():
            if name in index and score >= 0.5:
                human[row, index[name]] = 1
        for name, score in teacher.get(example_id, {}).items():
            if name in index and score >= cut:
                model[row, index[name]] = 1
    if not both:
        return Agreement(source, 0, cut, 0.0, 0.0, [])
    precision, recall, f1, _ = precision_recall_fscore_support(human, model, average=None, zero_division=0)
    per_label = [LabelAgreement(name, int(human[:, i].sum()), int(model[:, i].sum()), float(precision[i]),
                                float(recall[i]), float(f1[i]), _kappa(human[:, i], model[:, i]))
                 for i, name in enumerate(names)]
    return Agreement(source, len(both), cut, float(f1_score(human, model, average="macro", zero_division=0)),
                     float(f1_score(human, model, average="micro", zero_division=0)), per_label)


def _described(example_ids: list[int]) -> set[int]:
    found: set[int] = set()
    with read_session() as session:
        for start in range(0, len(example_ids), 500):
            chunk = example_ids[start:start + 500]
            found.update(session.scalars(select(Descriptor.example_id).where(
                Descriptor.example_id.in_(chunk), Descriptor.agent.startswith(TEACHER_PREFIX))))
            found.update(session.scalars(select(Example.id).join(Suggestion, label_store.shown_by()).where(  # teacher labels
                Example.id.in_(chunk), Suggestion.agent.startswith(TEACHER_PREFIX))))
    return found


def _kappa(human: np.ndarray, model: np.ndarray) -> float:
    if len(set(human.tolist()) | set(model.tolist())) < 2:
        return 1.0 if (human == model).all() else 0.0  # one class only: kappa is undefined
    return float(cohen_kappa_score(human, model))
