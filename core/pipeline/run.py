"""Generation runs: create, estimate, stop, resume, extend and repeat; the worker job that drives them.

A run is a row (its settings, template versions, engine and sampling) plus the jobs that work on
it. The job runs the six stages in order; each stage asks only what the cache lacks and stores only
what is missing, so resuming, extending (more stories, more utterances) or re-running after a
crash all are "run the job again".
"""

from __future__ import annotations

import random
import time
from typing import Any

from sqlalchemy import select

from core import jobs
from core.auth import Actor, require_admin
from core.llm import settings as engine_settings
from core.llm.engines import Engine
from core.llm.factory import current_engine  # the one engine factory (tests patch this name)
from core.llm.runner import RunReport
from core.llm.types import Sampling
from core.pipeline import gating, templates
from core.pipeline import steps as registry
from core.pipeline.plan import PRESETS, Estimate, PlanError, RunConfig, estimate, sample_stories  # noqa: F401
from core.pipeline.steps.base import StepContext, label_lines
from core.taxonomy import get_taxonomy
from db.models import (Character, Example, ExampleKind, GenerationRun, Job, JobStatus, Label, OOTAction, OOTMapping,
                       RunStatus, Story, utcnow)
from db.session import read_session, write_session

JOB_KIND = "pipeline_run"
ACTIVE_JOB = (JobStatus.queued, JobStatus.running)


# --------------------------------------------------------------------------- creating and planning


def prepare_config(config: RunConfig, sample_size: int | None = None) -> RunConfig:
    """Fill in the stories (a seeded sample when asked) and the quota stride, then check."""
    if sample_size:
        config.story_ids = sample_stories(config.corpus_id, sample_size, config.seed)
    with read_session() as session:
        known = set(session.scalars(select(Story.id).where(Story.corpus_id == config.corpus_id,
                                                           Story.id.in_(config.story_ids or [-1]))))
    missing = set(config.story_ids) - known
    if missing:
        raise PlanError(f"Stories {sorted(missing)} are not in this corpus.")
    config.stride = config.stride or config.emotional
    config.check()
    return config


def chosen_templates(template_ids: dict[str, int] | None = None,
                     recorded: bool = False) -> dict[str, templates.TemplateView]:
    """The active templates, with the chosen versions instead. `recorded`: ids a run stored earlier,
    keyed by the stage of their time (a renamed step's versions moved with it: trust the template's own stage)."""
    chosen = templates.active_templates()
    for stage, template_id in (template_ids or {}).items():
        view = templates.get_template(int(template_id))
        if view.stage != stage and not recorded:
            raise PlanError(f"Template {template_id} belongs to stage {view.stage}, not {stage}.")
        chosen[view.stage] = view
    return chosen


def run_sampling(config: RunConfig) -> Sampling:
    """The engine's sampling settings, made greedy and given the repetition penalty when the run asks."""
    base = engine_settings.load().default_sampling()
    return Sampling(0.0 if config.greedy else base.temperature, 1.0 if config.greedy else base.top_p,
                    base.max_tokens, base.seed, config.repetition_penalty)


def estimate_run(config: RunConfig, template_ids: dict[str, int] | None = None, recorded: bool = False) -> Estimate:
    """Calls and tokens before launch (measured ratios of the engine model's earlier runs when there are some).
    `recorded`: the template ids a run stored (see chosen_templates)."""
    return estimate(config, chosen_templates(template_ids, recorded), _label_lines(config),
                    model=engine_settings.load().resolved_model)


def _label_lines(config: RunConfig) -> str:
    """The taxonomy's lines as the prompts list them (the same text the steps render)."""
    return label_lines([(label.name, label.description) for label in get_taxonomy(config.taxonomy_id).labels])


def create_run(actor: Actor | None, config: RunConfig, *, name: str = "", sample_size: int | None = None,
               template_ids: dict[str, int] | None = None) -> int:
    """Record the run with its settings, template versions, engine and sampling; queue its job."""
    actor = require_admin(actor)
    config = prepare_config(config, sample_size)
    detail = get_taxonomy(config.taxonomy_id)
    if not detail.labels:
        raise PlanError(f"Taxonomy {detail.name} has no labels.")
    chosen = chosen_templates(template_ids)
    settings = engine_settings.load()
    launch_estimate = estimate_run(config, template_ids).as_record()  # kept, so the run shows estimate vs spent
    with write_session() as session:
        run = GenerationRun(
            name=name.strip() or f"{detail.name} · {len(config.story_ids)} stories · seed {config.seed}",
            corpus_id=config.corpus_id, taxonomy_id=config.taxonomy_id, config=config.as_dict(),
            template_versions={stage: {"id": t.id, "version": t.version} for stage, t in chosen.items()},
            engine=settings.engine, model=settings.resolved_model, stats={"estimate": launch_estimate},
            sampling=run_sampling(config).as_dict(), status=RunStatus.queued, created_by_id=actor.id)
        session.add(run)
        session.flush()
        run_id = run.id
    _enqueue(actor, run_id)
    return run_id


def _enqueue(actor: Actor, run_id: int) -> int:
    with read_session() as session:
        run = session.get(GenerationRun, run_id)
        name = run.name
    job_id = jobs.enqueue(actor, JOB_KIND, {"run_id": run_id}, title=f"Generate: {name}")
    with write_session() as session:
        run = session.get(GenerationRun, run_id)
        run.job_id, run.status, run.finished_at = job_id, RunStatus.queued, None
    return job_id


def _run_or_error(session, run_id: int) -> GenerationRun:
    run = session.get(GenerationRun, run_id)
    if run is None:
        raise PlanError(f"No generation run with id {run_id}.")
    return run


def _job_active(run_id: int) -> bool:
    with read_session() as session:
        run = _run_or_error(session, run_id)
        if run.job_id is None:
            return False
        return session.scalar(select(Job.status).where(Job.id == run.job_id)) in ACTIVE_JOB


def stop_run(actor: Actor | None, run_id: int) -> None:
    """Ask the run's job to stop after its current batch (what is answered stays)."""
    require_admin(actor)
    with read_session() as session:
        job_id = _run_or_error(session, run_id).job_id
    if job_id is None or not _job_active(run_id):
        raise PlanError("This run is not running.")
    if jobs.cancel(actor, job_id).status == JobStatus.cancelled:  # it had not started
        _set_run(run_id, status=RunStatus.cancelled, finished_at=utcnow())


def resume_run(actor: Actor | None, run_id: int) -> int:
    """Run the stages again: cached answers are reused, missing ones asked, failed ones retried."""
    actor = require_admin(actor)
    if _job_active(run_id):
        raise PlanError("This run already has a job queued or running.")
    with read_session() as session:
        if _run_or_error(session, run_id).status == RunStatus.discarded:
            raise PlanError("This run was discarded; repeat it to run it again.")
    return _enqueue(actor, run_id)


def extend_run(actor: Actor | None, run_id: int, *, add_story_ids: list[int] | None = None, sample_more: int = 0,
               emotional: int | None = None, neutral: int | None = None, max_characters: int | None = None) -> int:
    """Grow a run (more stories, characters or utterances) and resume it; what exists is kept."""
    actor = require_admin(actor)
    if _job_active(run_id):
        raise PlanError("Stop the run (or let it finish) before extending it.")
    with read_session() as session:
        config = RunConfig.from_dict(_run_or_error(session, run_id).config)
    stories = set(config.story_ids) | set(add_story_ids or [])
    if sample_more:
        with read_session() as session:
            rest = list(session.scalars(select(Story.id).where(Story.corpus_id == config.corpus_id,
                                                               Story.id.not_in(stories)).order_by(Story.position)))
        stories |= set(random.Random(config.seed + len(stories)).sample(rest, min(sample_more, len(rest))))
    for name, value in (("emotional", emotional), ("neutral", neutral), ("max_characters", max_characters)):
        if value is not None:
            if value < getattr(config, name):
                raise PlanError(f"Extending cannot lower {name.replace('_', ' ')} ({getattr(config, name)}).")
            setattr(config, name, value)
    config.story_ids = sorted(stories)
    prepare_config(config)
    with read_session() as session:
        template_ids = recorded_template_ids(_run_or_error(session, run_id))
    # The grown run's whole cost (answers it already has count as spent, as the run's figures count them).
    launch_estimate = estimate_run(config, template_ids, recorded=True).as_record()
    with write_session() as session:
        run = _run_or_error(session, run_id)
        run.config, run.stats = config.as_dict(), {**(run.stats or {}), "estimate": launch_estimate}
    return _enqueue(actor, run_id)


def repeat_run(actor: Actor | None, run_id: int, *, seed: int | None = None,
               template_ids: dict[str, int] | None = None, name: str = "") -> int:
    """A new run with the same stories and counts, another seed and/or other template versions."""
    require_admin(actor)
    with read_session() as session:
        source = _run_or_error(session, run_id)
        config = RunConfig.from_dict(source.config)
        kept = recorded_template_ids(source)
    if seed is not None:
        config.seed = seed
    with read_session() as session:  # ids recorded under a stage name of their time: key them by today's
        kept = {templates_stage(session, template_id): template_id for template_id in kept.values()}
    return create_run(actor, config, name=name, template_ids={**kept, **(template_ids or {})})


def recorded_template_ids(run: GenerationRun) -> dict[str, int]:
    """stage -> template id, as the run recorded them (keyed by the stage names of its time)."""
    return {stage: v["id"] for stage, v in (run.template_versions or {}).items()}


def templates_stage(session, template_id: int) -> str:
    from db.models import PromptTemplate

    return session.get(PromptTemplate, int(template_id)).stage


# --------------------------------------------------------------------------- the worker job


def _stage_context(run_id: int, engine: Engine) -> StepContext:
    with read_session() as session:
        run = _run_or_error(session, run_id)
        config = RunConfig.from_dict(run.config)
        template_ids = recorded_template_ids(run)
        sampling = Sampling(**{k: run.sampling[k] for k in ("temperature", "top_p", "max_tokens", "seed",
                                                            "repetition_penalty") if k in (run.sampling or {})})
        synonyms = dict(session.execute(
            select(OOTMapping.source_name, Label.name).join(Label, Label.id == OOTMapping.target_label_id)
            .where(OOTMapping.taxonomy_id == run.taxonomy_id, OOTMapping.action == OOTAction.map)).tuples().all())
    detail = get_taxonomy(config.taxonomy_id)
    return StepContext(run_id=run_id, config=config, taxonomy_id=detail.id,
                       labels=[(label.name, label.description) for label in detail.labels], synonyms=synonyms,
                       templates=chosen_templates(template_ids, recorded=True), engine=engine, sampling=sampling,
                       seed=config.seed)


def _set_run(run_id: int, **values: Any) -> None:
    with write_session() as session:
        run = _run_or_error(session, run_id)
        for key, value in values.items():
            setattr(run, key, value)


def _record(session, run_id: int, stage: str, entry: dict[str, Any]) -> None:
    run = _run_or_error(session, run_id)
    run.stats = {**(run.stats or {}), stage: {**entry, "finished_at": utcnow().isoformat()}, "current_stage": None}


@jobs.handler(JOB_KIND)
def run_pipeline_job(ctx: jobs.JobContext) -> dict[str, Any]:
    run_id = int(ctx.payload["run_id"])
    try:
        engine = current_engine()
    except Exception as error:
        _set_run(run_id, status=RunStatus.failed)
        raise jobs.JobFailed(f"the engine could not start: {type(error).__name__}: {error}") from None
    _set_run(run_id, status=RunStatus.running, engine=engine.name, model=engine.model)
    try:
        stats = execute(ctx, run_id, engine)
    except jobs.JobCancelled:
        _set_run(run_id, status=RunStatus.cancelled, finished_at=utcnow())
        raise
    except jobs.JobFailed:
        _set_run(run_id, status=RunStatus.failed, finished_at=utcnow())
        raise
    _set_run(run_id, status=RunStatus.succeeded, finished_at=utcnow())
    return stats


def execute(ctx: jobs.JobContext, run_id: int, engine: Engine) -> dict[str, Any]:
    """The preset's steps in order; per-step figures land in the run's stats as each one ends."""
    sctx = _stage_context(run_id, engine)
    settings = engine_settings.load()
    options = {"batch_size": settings.batch_size, "validation_attempts": settings.validation_attempts}
    state: dict[str, list] = {}
    spent: dict[str, dict[str, int]] = {}
    names = sctx.config.steps
    for number, name in enumerate(names, start=1):
        step = registry.get(name)
        _set_stage(run_id, step.stage)
        started = time.monotonic()
        with read_session() as session:
            items = step.items(sctx, session, state)
        outcome = gating.ask_gated(ctx, sctx, step, items, options, f"Stage {number}/{len(names)} {step.stage}: ")
        state[step.stage] = items
        step.prepare(sctx, items)
        with ctx.batch() as session:
            produced = step.store(sctx, session, items)
            spent[step.stage] = outcome.spent
            _record(session, run_id, step.stage, {**outcome.report.as_dict(), **outcome.figures(), **produced})
            ctx.advance(session, 0, note=f"Stage {number}/{len(names)} {step.stage}: "
                                         + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in produced.items()))
        sctx.vectors.clear()  # a step's embeddings serve its own store only
        ctx.log(f"stage {step.stage}: {outcome.report.as_dict()} in {time.monotonic() - started:.1f} s")
        _fail_if_nothing_answered(step.stage, outcome.report)
    with ctx.batch() as session:
        _record_measures(session, run_id, spent)
    with read_session() as session:
        return dict(_run_or_error(session, run_id).stats)


def _set_stage(run_id: int, stage: str) -> None:
    with write_session() as session:
        run = _run_or_error(session, run_id)
        run.stats = {**(run.stats or {}), "current_stage": stage}


def _fail_if_nothing_answered(stage: str, report: RunReport) -> None:
    if report.total and not (report.cached + report.answered):
        reason = report.failure_reasons.most_common(1)[0][0] if report.failure_reasons else "no answer"
        raise jobs.JobFailed(f"stage {stage}: none of its {report.total} requests was answered ({reason})")


def _record_measures(session, run_id: int, spent: dict[str, dict[str, int]]) -> None:
    """What the run spent per stage and the counts it reached: the next estimate's ratios, the page's figures."""
    from sqlalchemy import func

    run = _run_or_error(session, run_id)
    config = RunConfig.from_dict(run.config)
    characters = session.execute(select(func.count(), func.coalesce(func.sum(func.length(Character.description)), 0))
                                 .where(Character.run_id == run_id)).one()
    plain = session.execute(select(func.count(), func.coalesce(func.sum(func.length(Example.text)), 0))
                            .where(Example.run_id == run_id, Example.kind == ExampleKind.contextless)).one()
    contextual = session.scalars(select(Example.meta).where(Example.run_id == run_id,
                                                            Example.kind == ExampleKind.contextual)).all()
    parents = session.execute(select(func.count(func.distinct(Example.parent_id)),
                                     func.coalesce(func.sum(func.length(Example.raw_context)), 0))
                              .where(Example.run_id == run_id, Example.kind == ExampleKind.contextual)).one()
    variants = sum(1 for meta in contextual if (meta or {}).get("context_similarity") is not None)
    measured = {
        "stories": len(config.story_ids), "characters": characters[0], "description_chars": characters[1],
        "contextless": plain[0], "utterance_chars": plain[1], "contexts": parents[0],
        "context_chars": parents[1] / max(1, len(contextual)) * parents[0],
    }
    run.stats = {**(run.stats or {}), "spent": spent, "measured": measured,
                 "quality": quality_figures(contextual, plain[0], parents[0], variants)}


def quality_figures(metas: list[dict | None], contextless: int, contexts: int, measured: int) -> dict[str, Any]:
    """Per run: how close cleaned contexts stay to the raw ones, how much wording a rewrite keeps, what got flagged."""
    metas = [m or {} for m in metas]
    mean = lambda values: round(sum(values) / len(values), 4) if values else None  # noqa: E731
    return {
        "context_similarity": mean([m["context_similarity"] for m in metas if m.get("context_similarity") is not None]),
        "utterance_overlap": mean([m["utterance_overlap"] for m in metas if m.get("utterance_overlap") is not None]),
        "flagged_names_emotion": sum(1 for m in metas if {"context_names_emotion", "utterance_names_emotion"}
                                     & set(m.get("flags", []))),
        "context_share": round(contexts / contextless, 4) if contextless else None,
    }
