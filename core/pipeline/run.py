"""Generation runs: create, estimate, stop, resume, extend and repeat; the worker job that drives them.

A run is a row (its settings, template versions, engine and sampling) plus the jobs that work on
it. The job runs the six stages in order; each stage asks only what the cache lacks and stores only
what is missing, so resuming, extending (more stories, more utterances) or re-running after a
crash all are "run the job again".
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from core import jobs
from core.auth import Actor, require_admin
from core.llm import settings as engine_settings
from core.llm.engines import Engine
from core.llm.factory import current_engine  # the one engine factory (tests patch this name)
from core.llm.runner import RunReport, run_requests
from core.llm.types import Sampling
from core.pipeline import stages, templates
from core.pipeline.plan import SYNTHESIS_STAGES, Estimate, PlanError, RunConfig, estimate, sample_stories
from core.pipeline.schemas import OUTPUTS
from core.taxonomy import get_taxonomy
from db.models import GenerationRun, Job, JobStatus, OOTAction, OOTMapping, Label, RunStatus, Story, utcnow
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


def chosen_templates(template_ids: dict[str, int] | None = None) -> dict[str, templates.TemplateView]:
    chosen = templates.active_templates()
    for stage, template_id in (template_ids or {}).items():
        view = templates.get_template(int(template_id))
        if view.stage != stage:
            raise PlanError(f"Template {template_id} belongs to stage {view.stage}, not {stage}.")
        chosen[stage] = view
    return chosen


def estimate_run(config: RunConfig, template_ids: dict[str, int] | None = None) -> Estimate:
    detail = get_taxonomy(config.taxonomy_id)
    lines = "\n".join(f"- {label.name}: {label.description}" for label in detail.labels)
    return estimate(config, chosen_templates(template_ids), lines)


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
    with write_session() as session:
        run = GenerationRun(
            name=name.strip() or f"{detail.name} · {len(config.story_ids)} stories · seed {config.seed}",
            corpus_id=config.corpus_id, taxonomy_id=config.taxonomy_id, config=config.as_dict(),
            template_versions={stage: {"id": t.id, "version": t.version} for stage, t in chosen.items()},
            engine=settings.engine, model=settings.resolved_model,
            sampling=settings.default_sampling().as_dict(), status=RunStatus.queued, created_by_id=actor.id)
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
    with write_session() as session:
        _run_or_error(session, run_id).config = config.as_dict()
    return _enqueue(actor, run_id)


def repeat_run(actor: Actor | None, run_id: int, *, seed: int | None = None,
               template_ids: dict[str, int] | None = None, name: str = "") -> int:
    """A new run with the same stories and counts, another seed and/or other template versions."""
    require_admin(actor)
    with read_session() as session:
        source = _run_or_error(session, run_id)
        config = RunConfig.from_dict(source.config)
        kept = {stage: v["id"] for stage, v in (source.template_versions or {}).items()}
    if seed is not None:
        config.seed = seed
    return create_run(actor, config, name=name, template_ids={**kept, **(template_ids or {})})


# --------------------------------------------------------------------------- the worker job


def _stage_context(run_id: int, engine: Engine) -> stages.StageContext:
    with read_session() as session:
        run = _run_or_error(session, run_id)
        config = RunConfig.from_dict(run.config)
        template_ids = {stage: v["id"] for stage, v in (run.template_versions or {}).items()}
        sampling = Sampling(**{k: run.sampling[k] for k in ("temperature", "top_p", "max_tokens", "seed")
                               if k in (run.sampling or {})})
        synonyms = dict(session.execute(
            select(OOTMapping.source_name, Label.name).join(Label, Label.id == OOTMapping.target_label_id)
            .where(OOTMapping.taxonomy_id == run.taxonomy_id, OOTMapping.action == OOTAction.map)).tuples().all())
    detail = get_taxonomy(config.taxonomy_id)
    return stages.StageContext(run_id=run_id, config=config, taxonomy_id=detail.id,
                               labels=[(label.name, label.description) for label in detail.labels],
                               synonyms=synonyms, templates=chosen_templates(template_ids), engine=engine,
                               sampling=sampling)


def _set_run(run_id: int, **values: Any) -> None:
    with write_session() as session:
        run = _run_or_error(session, run_id)
        for key, value in values.items():
            setattr(run, key, value)


def _record(session, run_id: int, stage: str, report: RunReport | None, **produced: int) -> None:
    run = _run_or_error(session, run_id)
    entry = {**(report.as_dict() if report else {}), **produced, "finished_at": utcnow().isoformat()}
    run.stats = {**(run.stats or {}), stage: entry, "current_stage": None}


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
    """The six stages in order; per-stage figures land in the run's stats as each one ends."""
    sctx = _stage_context(run_id, engine)
    settings = engine_settings.load()
    options = {"batch_size": settings.batch_size, "validation_attempts": settings.validation_attempts}
    state = StageState()
    for number, stage in enumerate(SYNTHESIS_STAGES, start=1):
        _set_stage(run_id, stage)
        started = time.monotonic()
        STAGE_STEPS[stage](ctx, sctx, state, options, f"Stage {number}/6 {stage}: ")
        ctx.log(f"stage {stage}: {state.reports[stage].as_dict()} in {time.monotonic() - started:.1f} s")
        _fail_if_nothing_answered(stage, state.reports[stage])
    with read_session() as session:
        return dict(_run_or_error(session, run_id).stats)


@dataclass
class StageState:
    """What one stage hands the next within a job: its report, and the chains under way."""

    reports: dict[str, RunReport] = field(default_factory=dict)
    chains: list[stages.ContextChain] = field(default_factory=list)


def _set_stage(run_id: int, stage: str) -> None:
    with write_session() as session:
        run = _run_or_error(session, run_id)
        run.stats = {**(run.stats or {}), "current_stage": stage}


def _fail_if_nothing_answered(stage: str, report: RunReport) -> None:
    if report.total and not (report.cached + report.answered):
        reason = report.failure_reasons.most_common(1)[0][0] if report.failure_reasons else "no answer"
        raise jobs.JobFailed(f"stage {stage}: none of its {report.total} requests was answered ({reason})")


def _ask(ctx, sctx, requests, stage, options, prefix) -> RunReport:
    return run_requests(ctx, sctx.engine, requests, output_model=OUTPUTS[stage], stage=stage, run_id=sctx.run_id,
                        note_prefix=prefix, **options)


def _characters(ctx, sctx, state: "StageState", options, prefix) -> None:
    with read_session() as session:
        requests = stages.character_requests(sctx, session)
    state.reports["characters"] = _ask(ctx, sctx, list(requests.values()), "characters", options, prefix)
    with ctx.batch() as session:
        added = stages.store_characters(sctx, session, requests)
        _record(session, sctx.run_id, "characters", state.reports["characters"], characters_added=added)
        ctx.advance(session, 0, note=f"{prefix}{added} characters added")


def _utterances(ctx, sctx, state: "StageState", options, prefix) -> None:
    with read_session() as session:
        slots = stages.utterance_slots(sctx, session)
    requests = stages.utterance_requests(sctx, slots)
    state.reports["utterances"] = _ask(ctx, sctx, requests, "utterances", options, prefix)
    with ctx.batch() as session:
        added, removed = stages.store_utterances(sctx, session, slots, requests)
        # Repeats never become examples, so each pass finds all of them again: `removed` is the total.
        _record(session, sctx.run_id, "utterances", state.reports["utterances"], examples_added=added,
                near_duplicates_removed=removed)
        ctx.advance(session, 0, note=f"{prefix}{added} utterances added, {removed} near-duplicates removed")


def _labels(ctx, sctx, state: "StageState", options, prefix) -> None:
    with read_session() as session:
        requests = stages.label_requests(sctx, session)
    state.reports["labels"] = _ask(ctx, sctx, list(requests.values()), "labels", options, prefix)
    with ctx.batch() as session:
        labelled, oot = stages.store_labels(sctx, session, requests)
        _record(session, sctx.run_id, "labels", state.reports["labels"], examples_labelled=labelled, oot_names=oot)
        ctx.advance(session, 0, note=f"{prefix}{labelled} utterances labelled")


def _context(ctx, sctx, state: "StageState", options, prefix) -> None:
    with read_session() as session:
        chains = stages.context_chains(sctx, session)
    state.reports["context"] = _ask(ctx, sctx, [c.context for c in chains], "context", options, prefix)
    with ctx.batch() as session:
        _record(session, sctx.run_id, "context", state.reports["context"])
    state.chains = chains


def _clean(ctx, sctx, state: "StageState", options, prefix) -> None:
    with read_session() as session:
        chains = stages.add_clean_requests(sctx, session, state.chains)
    state.reports["clean"] = _ask(ctx, sctx, [c.clean for c in chains], "clean", options, prefix)
    with ctx.batch() as session:
        _record(session, sctx.run_id, "clean", state.reports["clean"])
    state.chains = chains


def _rewrite(ctx, sctx, state: "StageState", options, prefix) -> None:
    with read_session() as session:
        chains = stages.add_rewrite_requests(sctx, session, state.chains)
    state.reports["rewrite"] = _ask(ctx, sctx, [c.rewrite for c in chains], "rewrite", options, prefix)
    with ctx.batch() as session:
        added, flagged = stages.store_contextual(sctx, session, chains)
        _record(session, sctx.run_id, "rewrite", state.reports["rewrite"], contextual_added=added,
                flagged_names_emotion=flagged)
        ctx.advance(session, 0, note=f"{prefix}{added} contextual examples added, {flagged} flagged")



STAGE_STEPS = {"characters": _characters, "utterances": _utterances, "labels": _labels,
               "context": _context, "clean": _clean, "rewrite": _rewrite}

