"""What the Generate page shows about runs: the list, one run's stages and examples, comparisons."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select

from core import labels as label_store
from core.auth import Actor, require_admin
from core.pipeline import steps as registry
from core.pipeline.plan import RunConfig, off_by, spent_totals
from db.models import (Character, Example, ExampleKind, Expressiveness, GenerationRun, Job, Label, LLMRequest,
                       Suggestion, User)
from db.session import read_session


@dataclass(frozen=True)
class RunRow:
    id: int
    name: str
    status: str
    created_at: datetime
    created_by: str | None
    stories: int
    seed: int
    examples_contextless: int
    examples_contextual: int
    current_stage: str | None


@dataclass(frozen=True)
class StageRow:
    stage: str
    state: str  # done | running | waiting
    requests: int
    cached: int
    answered: int
    invalid: int
    failed: int
    produced: str
    failure_reasons: dict[str, int]
    rejected: int = 0  # answers the content gates rejected (asked again, or kept with the reason after the last try)
    kept_with_reason: int = 0
    rejection_reasons: dict[str, int] | None = None
    estimated_calls: int | None = None  # the estimate the run was launched (or last extended) with


@dataclass(frozen=True)
class RunDetail:
    id: int
    name: str
    status: str
    config: dict[str, Any]
    template_versions: dict[str, Any]
    engine: str
    model: str
    sampling: dict[str, Any]
    stats: dict[str, Any]
    job_id: int | None
    job_status: str | None
    job_progress: tuple[int, int, str]
    characters: int
    examples_contextless: int
    examples_contextual: int
    flagged: int

    def stage_rows(self) -> list[StageRow]:
        rows = []
        current = self.stats.get("current_stage")
        for name in RunConfig.from_dict(self.config).steps:
            stage = registry.get(name).stage
            entry = self.stats.get(stage) or {}
            state = "running" if stage == current and self.job_status == "running" else (
                "done" if entry else "waiting")
            produced = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in entry.items()
                                 if k in PRODUCED_KEYS)
            rows.append(StageRow(stage, state, entry.get("total", 0), entry.get("cached", 0), entry.get("answered", 0),
                                 entry.get("invalid", 0), entry.get("failed", 0), produced,
                                 entry.get("failure_reasons", {}), entry.get("rejected", 0),
                                 entry.get("kept_with_reason", 0), entry.get("rejection_reasons", {}),
                                 (self.estimate.get("stages", {}).get(stage) or {}).get("calls")))
        return rows

    @property
    def estimate(self) -> dict[str, Any]:
        """The cost estimate the run was launched with (core.pipeline.plan.Estimate.as_record); {} for older runs."""
        return dict(self.stats.get("estimate") or {})

    def estimate_error(self) -> dict[str, float] | None:
        """|estimated - spent| / spent, in calls and in tokens, once the run has spent something (else None)."""
        calls, tokens = spent_totals(self.spent)
        if not self.estimate or not calls:
            return None
        return {"calls": off_by(self.estimate["calls"], calls), "tokens": off_by(self.estimate["tokens"], tokens) or 0.0,
                "spent_calls": calls, "spent_tokens": tokens}

    @property
    def quality(self) -> dict[str, Any]:
        """Similarity raw vs cleaned context, overlap original vs rewritten utterance, flagged count, context share."""
        return dict(self.stats.get("quality") or {})

    @property
    def spent(self) -> dict[str, Any]:
        """Calls and tokens per stage (re-asks and validation retries included)."""
        return dict(self.stats.get("spent") or {})


EMOTION_FLAGS = {"context_names_emotion", "utterance_names_emotion"}  # the emotion-word check's flags
PRODUCED_KEYS = tuple(dict.fromkeys(key for step in registry.STEPS.values() for key in step.produced))


def effective_status(run_status, job_status) -> str:
    """The run's status, unless its job ended without the run hearing of it (cancelled on the Jobs page)."""
    run_value = getattr(run_status, "value", str(run_status))
    job_value = getattr(job_status, "value", job_status)
    if run_value in ("queued", "running") and job_value in ("cancelled", "failed"):
        return job_value
    return run_value


def _counts(session, run_ids: list[int]) -> dict[int, tuple[int, int]]:
    query = (select(Example.run_id,
                    func.sum(case((Example.kind == ExampleKind.contextless, 1), else_=0)),
                    func.sum(case((Example.kind == ExampleKind.contextual, 1), else_=0)))
             .where(Example.run_id.in_(run_ids)).group_by(Example.run_id))
    return {run_id: (int(a or 0), int(b or 0)) for run_id, a, b in session.execute(query).tuples()}


def list_runs(actor: Actor | None, limit: int = 50) -> list[RunRow]:
    require_admin(actor)
    with read_session() as session:
        rows = session.execute(select(GenerationRun, User.username, Job.status)
                               .outerjoin(User, User.id == GenerationRun.created_by_id)
                               .outerjoin(Job, Job.id == GenerationRun.job_id)
                               .order_by(GenerationRun.id.desc()).limit(limit)).tuples().all()
        counts = _counts(session, [run.id for run, _, _ in rows])
    return [RunRow(run.id, run.name, effective_status(run.status, job_status),
                   run.created_at, username, len(run.config.get("story_ids", [])), run.config.get("seed", 0),
                   *counts.get(run.id, (0, 0)), (run.stats or {}).get("current_stage"))
            for run, username, job_status in rows]


def run_detail(actor: Actor | None, run_id: int) -> RunDetail:
    require_admin(actor)
    with read_session() as session:
        run = session.get(GenerationRun, run_id)
        if run is None:
            raise ValueError(f"No generation run with id {run_id}.")
        job = session.get(Job, run.job_id) if run.job_id else None
        characters = session.scalar(select(func.count()).select_from(Character).where(Character.run_id == run_id))
        plain, contextual = _counts(session, [run_id]).get(run_id, (0, 0))
        flagged = sum(1 for meta in session.scalars(select(Example.meta).where(
            Example.run_id == run_id, Example.kind == ExampleKind.contextual))
            if EMOTION_FLAGS & set((meta or {}).get("flags", [])))
        return RunDetail(run.id, run.name, effective_status(run.status, job.status if job else None), dict(run.config),
                         dict(run.template_versions), run.engine, run.model, dict(run.sampling), dict(run.stats or {}),
                         run.job_id, getattr(job.status, "value", None) if job else None,
                         (job.progress_done, job.progress_total, job.progress_note or "") if job else (0, 0, ""),
                         characters, plain, contextual, flagged)


@dataclass(frozen=True)
class ExampleRow:
    id: int
    kind: str
    character: str
    target: str | None
    text: str
    context: str | None
    labels: list[str]
    scores: dict[str, float]
    oot: list[str]
    expressiveness: float | None
    flags: list[str]
    provenance: str  # story, template versions, model and seed that made it


def run_examples(actor: Actor | None, run_id: int, kind: str | None = None, offset: int = 0,
                 limit: int = 50, emotion: str | None = None) -> tuple[list[ExampleRow], int]:
    """One page of a run's examples with their labels (at the current threshold).

    `emotion` keeps the examples the teacher gave that label at or above the current threshold.
    """
    require_admin(actor)
    where = [Example.run_id == run_id]
    if kind:
        where.append(Example.kind == ExampleKind(kind))
    if emotion:
        where.append(select(Suggestion.id).join(Label, Label.id == Suggestion.label_id)
                     .where(label_store.shown_by(), Label.name == emotion,
                            Suggestion.score >= label_store.threshold()).exists())
    with read_session() as session:
        total = session.scalar(select(func.count()).select_from(Example).where(*where))
        rows = session.execute(select(Example, Character.name, LLMRequest.model)
                               .outerjoin(Character, Character.id == Example.character_id)
                               .outerjoin(LLMRequest, LLMRequest.id == Example.llm_request_id)
                               .where(*where).order_by(Example.id).offset(offset).limit(limit)).tuples().all()
        run = session.get(GenerationRun, run_id)
        versions = template_versions_of(run)
        rated = expressiveness_of(session, [e.parent_id or e.id for e, _, _ in rows])
    ids = [example.id for example, _, _ in rows]
    scores = label_store.teacher_scores(ids)
    oot = label_store.oot_names(ids)
    cut = label_store.threshold()
    return [ExampleRow(e.id, e.kind.value, name or "", e.target_emotion, e.text, e.context,
                       label_store.labels_from_scores(scores.get(e.id, {}), cut), scores.get(e.id, {}),
                       [f"{n} ({a})" for n, a in oot.get(e.id, [])], rated.get(e.parent_id or e.id),
                       (e.meta or {}).get("flags", []), _provenance(e, model, versions))
            for e, name, model in rows], total


def expressiveness_of(session, example_ids: list[int]) -> dict[int, float]:
    """example id -> the teacher's expressiveness (rated with the context-less example's labels; a
    contextual example shows its parent's)."""
    wanted = sorted(set(example_ids))
    rated: dict[int, float] = {}
    for start in range(0, len(wanted), 1000):
        rated.update(session.execute(select(Expressiveness.example_id, Expressiveness.value).where(
            Expressiveness.example_id.in_(wanted[start:start + 1000]))).tuples().all())
    return rated


def template_versions_of(run: GenerationRun | None) -> dict[str, int]:
    """stage -> the template version a run asked with (recorded when it was created)."""
    return {stage: v.get("version") for stage, v in ((run.template_versions if run else None) or {}).items()}


def _provenance(example: Example, model: str | None, run_versions: dict[str, int]) -> str:
    """Story, model, seed and template versions (the row's own meta for rows stored before they moved to
    the LLM request and the run)."""
    meta = example.meta or {}
    versions = ", ".join(f"{stage} v{v}" for stage, v in sorted((meta.get("templates") or run_versions).items()))
    return (f"story {example.story_id} · {meta.get('model') or model or '?'} · seed {meta.get('seed', '?')} · {versions}"
            + (f" · {meta.get('variant', 'rewritten')} utterance + context, from #{example.parent_id}"
               if example.parent_id else ""))


def example_source(actor: Actor | None, example_id: int) -> dict[str, Any]:
    """Where a generated example came from: the teacher's raw answer, engine, model, sampling and prompt (its
    LLM request's) and the template versions (its run's). Rows keep only what is their own, these once."""
    from core.llm.stored import full_messages, stored_sampling

    require_admin(actor)
    with read_session() as session:
        example = session.get(Example, example_id)
        if example is None:
            raise ValueError(f"No example with id {example_id}.")
        request = session.get(LLMRequest, example.llm_request_id) if example.llm_request_id else None
        run = session.get(GenerationRun, example.run_id) if example.run_id else None
        meta = example.meta or {}
        return {
            "raw_output": request.raw_text if request else example.raw_output,
            "engine": request.engine if request else meta.get("engine"),
            "model": request.model if request else meta.get("model"),
            "sampling": stored_sampling(request.request) if request else meta.get("sampling"),
            "messages": full_messages(session, [request.request])[0] if request else [],
            "templates": meta.get("templates") or template_versions_of(run),
            "seed": meta.get("seed"),
        }


# --------------------------------------------------------------------------- comparing runs


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams (Li et al. 2016): a cheap lexical diversity figure."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = text.lower().split()
        grams.extend(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def compare_runs(actor: Actor | None, run_ids: list[int]) -> list[dict[str, Any]]:
    """Side-by-side figures of runs (e.g. two seeds or two template versions)."""
    require_admin(actor)
    figures = []
    for run_id in run_ids:
        detail = run_detail(actor, run_id)
        with read_session() as session:
            steered = Counter(session.scalars(select(Example.target_emotion).where(
                Example.run_id == run_id, Example.kind == ExampleKind.contextless)))
            plain = session.execute(select(Example.id, Example.text, Expressiveness.value)
                                    .outerjoin(Expressiveness, Expressiveness.example_id == Example.id).where(
                Example.run_id == run_id, Example.kind == ExampleKind.contextless)).tuples().all()
            oot = session.scalar(select(func.count()).select_from(Suggestion).join(Example).where(
                Example.run_id == run_id, Example.kind == ExampleKind.contextless, Suggestion.oot_name.is_not(None)))
            suggestions = session.scalar(select(func.count()).select_from(Suggestion).join(Example).where(
                Example.run_id == run_id, Example.kind == ExampleKind.contextless))
        labels = label_store.example_labels([i for i, _, _ in plain])
        distribution = Counter(label for names in labels.values() for label in names)
        texts = [t for _, t, _ in plain]
        expressiveness = [x for _, _, x in plain if x is not None]
        figures.append({
            "run": run_id, "name": detail.name, "seed": detail.config.get("seed"),
            "templates": {k: v.get("version") for k, v in detail.template_versions.items()},
            "characters": detail.characters, "contextless": detail.examples_contextless,
            "contextual": detail.examples_contextual,
            "near_duplicates_removed": (detail.stats.get("utterances") or {}).get("near_duplicates_removed", 0),
            "flagged_share": round(detail.flagged / detail.examples_contextual, 3) if detail.examples_contextual else 0.0,
            "oot_share": round(oot / suggestions, 3) if suggestions else 0.0,
            "unlabelled_share": round(sum(1 for v in labels.values() if not v) / len(labels), 3) if labels else 0.0,
            "distinct_1": round(distinct_n(texts, 1), 3), "distinct_2": round(distinct_n(texts, 2), 3),
            "mean_expressiveness": round(sum(expressiveness) / len(expressiveness), 3) if expressiveness else None,
            "labels": dict(distribution.most_common()),
            "steered": {k: v for k, v in steered.most_common() if k},
        })
    return figures
