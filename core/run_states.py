"""The way out for a run that did not succeed: discard it (final), the other choice next to resume / retry.

A generation or training run follows its job (`jobs.end_runs_of_job`): when the job fails, is cancelled or
runs out of attempts, the run ends `failed` or `cancelled`. From there the Generate and Train pages offer
resume / retry (the run's own module queues its job again, resuming from what was committed) or discard:
the run is closed for good and offered no more resume. Nothing it produced is deleted: examples, metrics
and checkpoints stay, as everywhere in EmoForge, for a curator to keep or drop.
"""

from __future__ import annotations

from sqlalchemy import select

from core.auth import Actor, require_admin
from db.models import GenerationRun, Job, JobStatus, RunStatus, TrainingRun, utcnow
from db.session import write_session

DISCARDABLE = (RunStatus.failed, RunStatus.cancelled)
ACTIVE_JOB = (JobStatus.queued, JobStatus.running)


class RunStateError(ValueError):
    """The run is not in a state that allows this (shown to the user as is)."""


def discard_generation_run(actor: Actor | None, run_id: int) -> None:
    _discard(actor, GenerationRun, run_id, "generation run")


def discard_training_run(actor: Actor | None, run_id: int) -> None:
    _discard(actor, TrainingRun, run_id, "training run")


def _discard(actor: Actor | None, table, run_id: int, what: str) -> None:
    require_admin(actor)
    with write_session() as session:
        run = session.scalar(select(table).where(table.id == run_id).with_for_update())
        if run is None:
            raise RunStateError(f"No {what} with id {run_id}.")
        job_status = session.scalar(select(Job.status).where(Job.id == run.job_id)) if run.job_id else None
        if job_status in ACTIVE_JOB:
            raise RunStateError(f"The {what} {run_id} still has a job {job_status.value}: stop it first.")
        if RunStatus(run.status) not in DISCARDABLE + (RunStatus.queued, RunStatus.running):
            raise RunStateError(f"The {what} {run_id} is {RunStatus(run.status).value}: only a failed or stopped "
                                "run can be discarded.")
        # queued / running with no live job: its job ended without the run hearing of it (an old database).
        run.status, run.finished_at = RunStatus.discarded, run.finished_at or utcnow()
