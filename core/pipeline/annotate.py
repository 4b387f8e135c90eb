"""The teacher side of contrastive distillation: free-text emotion descriptors for imported texts.

For each text the teacher writes a short description of the emotions expressed ("relieved but
still wary of her brother") and soft scores over the selected taxonomy. On a labelled set (gold
suggestions, agent 'gold:<source>') the teacher's labels are compared with the human ones per label.
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
from core.llm.runner import run_requests
from core.llm.structured import bounded_schema
from core.llm.types import ChatRequest, Sampling
from core.pipeline import templates
from core.pipeline.plan import request_seed
from core.pipeline.schemas import MAX_TOKENS, OUTPUTS
from core.taxonomy import get_taxonomy
from db.models import Descriptor, Example, ExampleKind, Suggestion
from db.session import read_session

JOB_KIND = "annotate_texts"
GOLD_PREFIX = "gold:"
TEACHER_PREFIX = "teacher:"


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


def enqueue_annotation(actor: Actor | None, source: str, taxonomy_id: int, *, limit: int | None = None,
                       seed: int = 0) -> int:
    """Queue the teacher's descriptors and scores for the first `limit` texts of an imported set."""
    actor = require_admin(actor)
    get_taxonomy(taxonomy_id)
    with read_session() as session:
        count = session.scalar(select(func.count()).select_from(Example).where(
            Example.kind == ExampleKind.imported, Example.source == source))
    if not count:
        raise ValueError(f"No imported texts from {source!r}.")
    payload = {"source": source, "taxonomy_id": taxonomy_id, "limit": limit, "seed": seed}
    return jobs.enqueue(actor, JOB_KIND, payload,
                        title=f"Describe emotions: {min(count, limit or count)} texts of {source}")


def _texts(source: str, limit: int | None) -> list[tuple[int, str]]:
    with read_session() as session:
        query = (select(Example.id, Example.text).where(Example.kind == ExampleKind.imported, Example.source == source)
                 .order_by(Example.id))
        if limit:
            query = query.limit(limit)
        return list(session.execute(query).tuples())


def describe_requests(texts: list[tuple[int, str]], label_lines: str, template: templates.TemplateView,
                      engine: Engine, sampling: Sampling, seed: int) -> dict[int, ChatRequest]:
    schema = bounded_schema(OUTPUTS["describe"])
    requests = {}
    for example_id, text in texts:
        messages = template.render(text=text, labels=label_lines, max_emotions=3)
        request = ChatRequest(messages, Sampling(sampling.temperature, sampling.top_p, MAX_TOKENS["describe"],
                                                 request_seed(seed, "describe", text)), schema)
        requests[example_id] = request.with_key(engine.name, engine.model)
    return requests


@jobs.handler(JOB_KIND)
def run_annotation_job(ctx: jobs.JobContext) -> dict[str, Any]:
    source, taxonomy_id = ctx.payload["source"], int(ctx.payload["taxonomy_id"])
    try:
        engine = current_engine()
    except Exception as error:
        raise jobs.JobFailed(f"the engine could not start: {type(error).__name__}: {error}") from None
    settings = engine_settings.load()
    detail = get_taxonomy(taxonomy_id)
    lines = "\n".join(f"- {label.name}: {label.description}" if label.description else f"- {label.name}"
                      for label in detail.labels)
    template = templates.active_templates()["describe"]
    requests = describe_requests(_texts(source, ctx.payload.get("limit")), lines, template, engine,
                                 settings.default_sampling(), int(ctx.payload.get("seed") or 0))
    report = run_requests(ctx, engine, list(requests.values()), output_model=OUTPUTS["describe"], stage="describe",
                          batch_size=settings.batch_size, validation_attempts=settings.validation_attempts)
    agent = f"{TEACHER_PREFIX}{engine.model}"
    with ctx.batch() as session:
        stored = store_descriptors(session, requests, taxonomy_id, agent, template.version)
        ctx.advance(session, 0, note=f"{stored} texts described")
    if report.total and not (report.answered + report.cached):
        raise jobs.JobFailed(f"none of the {report.total} requests was answered")
    return {**report.as_dict(), "described": stored, "template_version": template.version}


def store_descriptors(session, requests: dict[int, ChatRequest], taxonomy_id: int, agent: str,
                      template_version: int) -> int:
    """A Descriptor and soft-label Suggestions per answered text (once per agent)."""
    from core.pipeline.stages import answers

    found = answers(session, list(requests.values()))
    already = set(session.scalars(select(Descriptor.example_id).where(
        Descriptor.example_id.in_(list(requests)), Descriptor.agent == agent)))
    stored = 0
    for example_id, request in requests.items():
        answer = found.get(request.key)
        if answer is None or example_id in already:
            continue
        session.add(Descriptor(example_id=example_id, text=" ".join(answer.parsed["description"].split()),
                               agent=agent, llm_request_id=answer.request_id))
        scored = [label_store.ScoredName(e["name"], e["score"]) for e in answer.parsed.get("emotions", [])]
        label_store.add_suggestions(session, example_id, taxonomy_id, scored, agent=agent,
                                    llm_request_id=answer.request_id)
        stored += 1
    session.flush()
    label_store.refresh_oot_counts(session, taxonomy_id)
    return stored


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
            found.update(session.scalars(select(Descriptor.example_id).where(
                Descriptor.example_id.in_(example_ids[start:start + 500]),
                Descriptor.agent.startswith(TEACHER_PREFIX))))
    return found


def _kappa(human: np.ndarray, model: np.ndarray) -> float:
    if len(set(human.tolist()) | set(model.tolist())) < 2:
        return 1.0 if (human == model).all() else 0.0  # one class only: kappa is undefined
    return float(cohen_kappa_score(human, model))
