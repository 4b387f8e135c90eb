"""Classifier training runs: started from the Train page or the CLI, run by the worker.

A run is a `training_runs` row (configuration, status, checkpoint path, latest job) whose files live
in `$EMOFORGE_HOME/runs/<run id>/`. The worker job streams the loss and dev metrics into
`training_metrics` (the Train page draws them live), writes a checkpoint at every evaluation and
when cancelled, and registers the trained model at the end. Resuming a cancelled or failed run
queues its job again; the handler finds the checkpoint and continues from its step. A worker that
dies mid-run loses at most the steps since the last checkpoint: the next worker to claim the
expired lease resumes the same way.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from core import config, jobs
from core.auth import Actor, require_admin, require_page
from core.train import registry
from core.train.classifier import (
    ClassifierConfig,
    Hooks,
    TrainingCancelled,
    default_base_model,
    parent_head,
    train_classifier,
)
from db.models import DatasetMember, DatasetVersion, Job, JobStatus, RunStatus, TrainingMetric, TrainingRun, utcnow
from db.session import read_session, write_session

TRAIN_JOB = "train_classifier"
CANCEL_POLL_SECONDS = 2.0


def run_dir(run_id: int) -> Path:
    path = config.home() / "runs" / str(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class RunView:
    id: int
    kind: str
    version_id: int | None
    version_name: str
    base_model: str
    config: dict[str, Any]
    status: str
    job_id: int | None
    job_status: str | None
    progress_done: int
    progress_total: int | None
    progress_note: str
    error: str | None
    model_id: int | None
    model_name: str | None
    metrics: dict[str, Any]
    has_checkpoint: bool
    created_at: datetime
    finished_at: datetime | None

    @property
    def can_cancel(self) -> bool:
        return self.job_status in ("queued", "running")

    @property
    def can_resume(self) -> bool:
        return self.status in ("cancelled", "failed") and self.job_id is not None


# --------------------------------------------------------------------------- app side


def start_classifier_run(actor: Actor | None, version_id: int, settings: dict[str, Any] | None = None,
                         model_name: str = "", parent_model_id: int | None = None) -> int:
    """Check the settings and the version now, queue the training job; returns the run id.

    With `parent_model_id` the run continues from that registered model's weights (adaptation: a model trained
    on synthetic data tuned further on another version): its encoder, and its head when the label sets match
    (`adaptation_note` says which). The registered result records the parent."""
    actor = require_admin(actor)
    cfg = ClassifierConfig.from_dict(settings)
    if parent_model_id is not None:
        parent = registry.get_model(parent_model_id)
        if parent.kind not in ("classifier", "contrastive"):
            raise ValueError(f"model {parent.name!r} is a {parent.kind}: start from a classifier or a zero-shot model")
        cfg.base_model = parent.path
    base = cfg.base_model or default_base_model()
    if not Path(base).is_dir():
        raise ValueError(f"the base model folder {base} does not exist")
    with write_session() as s:
        version = s.get(DatasetVersion, version_id)
        if version is None:
            raise ValueError(f"no dataset version {version_id}")
        counts = dict(s.execute(select(DatasetMember.split, func.count()).where(
            DatasetMember.version_id == version_id).group_by(DatasetMember.split)).tuples().all())
        if not counts.get("train") or not counts.get("dev"):
            raise ValueError(f"dataset version {version.name!r} needs train and dev examples "
                             f"(it has {counts.get('train', 0)} and {counts.get('dev', 0)})")
        stored = cfg.to_dict()
        stored["model_name"] = model_name.strip() or f"classifier {version.name}"
        if parent_model_id is not None:
            stored["parent_model_id"] = int(parent_model_id)
        run = TrainingRun(kind="classifier", version_id=version_id, base_model=base, config=stored,
                          status=RunStatus.queued, created_by_id=actor.id)
        s.add(run)
        s.flush()
        run.checkpoint_path = str(run_dir(run.id) / "checkpoint.pt")
        run.job_id = jobs.enqueue(actor, TRAIN_JOB, {"run_id": run.id}, title=f"Train classifier (run {run.id})",
                                  session=s)
        return run.id


def adaptation_note(actor: Actor | None, model_id: int, version_id: int) -> str:
    """What a run on `version_id` started from registered model `model_id` keeps of it (shown before starting)."""
    from core.train.classifier import parent_head
    from core.train.data import version_labels

    require_page(actor, "train")
    parent = registry.get_model(model_id)
    _, note = parent_head(parent.path, version_labels(version_id))
    return f"Starting from model {parent.id} ({parent.name}): {note}."


def cancel_run(actor: Actor | None, run_id: int) -> None:
    """Stop a run: a queued job is cancelled at once, a running one writes a checkpoint and stops."""
    require_admin(actor)
    with read_session() as s:
        run = s.get(TrainingRun, run_id)
        if run is None or run.job_id is None:
            raise ValueError(f"no training run {run_id} with a job")
        job_id = run.job_id
    view = jobs.cancel(actor, job_id)
    if view.status == JobStatus.cancelled:
        _set_status(run_id, RunStatus.cancelled)


def resume_run(actor: Actor | None, run_id: int) -> None:
    """Queue a cancelled or failed run again: it continues from its last checkpoint."""
    require_admin(actor)
    with read_session() as s:
        run = s.get(TrainingRun, run_id)
        if run is None or run.job_id is None:
            raise ValueError(f"no training run {run_id} with a job")
        if run.status not in (RunStatus.cancelled, RunStatus.failed):
            raise ValueError(f"run {run_id} is {run.status.value}: only a cancelled or failed run can resume")
        job_id = run.job_id
    jobs.retry(actor, job_id)
    _set_status(run_id, RunStatus.queued)


def list_runs(actor: Actor | None, kind: str | None = None, limit: int = 50) -> list[RunView]:
    require_page(actor, "train")
    with read_session() as s:
        query = select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)
        if kind:
            query = query.where(TrainingRun.kind == kind)
        return [_view(s, run) for run in s.scalars(query)]


def get_run(actor: Actor | None, run_id: int) -> RunView:
    require_page(actor, "train")
    with read_session() as s:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise ValueError(f"no training run {run_id}")
        return _view(s, run)


def run_metrics(actor: Actor | None, run_id: int) -> list[dict[str, Any]]:
    """Every logged figure of a run: step, epoch, split, name, value (the page's curves)."""
    require_page(actor, "train")
    with read_session() as s:
        rows = s.execute(select(TrainingMetric.step, TrainingMetric.epoch, TrainingMetric.split,
                                TrainingMetric.name, TrainingMetric.value)
                         .where(TrainingMetric.run_id == run_id).order_by(TrainingMetric.step, TrainingMetric.id))
        return [{"step": r[0], "epoch": r[1], "split": r[2], "name": r[3], "value": r[4]} for r in rows]


def _view(s, run: TrainingRun) -> RunView:
    from db.models import Model

    job = s.get(Job, run.job_id) if run.job_id else None
    version = s.get(DatasetVersion, run.version_id) if run.version_id else None
    model = s.scalar(select(Model).where(Model.run_id == run.id).order_by(Model.id.desc()).limit(1))
    path = Path(run.checkpoint_path) if run.checkpoint_path else None
    return RunView(
        id=run.id, kind=run.kind, version_id=run.version_id, version_name=version.name if version else "",
        base_model=run.base_model, config=dict(run.config or {}), status=RunStatus(run.status).value,
        job_id=run.job_id, job_status=JobStatus(job.status).value if job else None,
        progress_done=job.progress_done if job else 0, progress_total=job.progress_total if job else None,
        progress_note=job.progress_note if job else "", error=job.error if job else None,
        model_id=model.id if model else None, model_name=model.name if model else None,
        metrics=dict(model.metrics or {}) if model else {}, has_checkpoint=bool(path and path.exists()),
        created_at=run.created_at, finished_at=run.finished_at)


def _set_status(run_id: int, status: RunStatus, **values: Any) -> None:
    with write_session() as s:
        run = s.get(TrainingRun, run_id)
        if run is not None:
            run.status = status
            for key, value in values.items():
                setattr(run, key, value)


# --------------------------------------------------------------------------- worker side


class JobHooks(Hooks):
    """Metrics rows and progress in the job's lease-checked transactions; cancel from the job row."""

    def __init__(self, ctx: jobs.JobContext, run_id: int):
        self.ctx, self.run_id = ctx, run_id
        self._checked = 0.0
        self._total = ctx.total or 0

    def on_log(self, step: int, epoch: float, split: str, values: dict[str, float]) -> None:
        with self.ctx.batch() as s:
            s.add_all([TrainingMetric(run_id=self.run_id, step=step, epoch=epoch, split=split, name=name,
                                      value=float(value)) for name, value in values.items()])
            self.ctx.advance(s, max(0, step - self.ctx.done), checkpoint={"step": step},
                             note=_note(split, step, self._total, values))

    def on_progress(self, step: int, total: int, note: str) -> None:
        if total != self._total:
            self._total = total
            self.ctx.set_progress(step, total, note)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self._checked < CANCEL_POLL_SECONDS:
            return False
        self._checked = now
        return self.ctx.cancel_requested()


def _note(split: str, step: int, total: int, values: dict[str, float]) -> str:
    shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "learning_rate")
    return f"step {step}/{total}: {split} {shown}"


@jobs.handler(TRAIN_JOB)
def run_training_job(ctx: jobs.JobContext) -> dict[str, Any]:
    from core.train.data import load_version

    run_id = int(ctx.payload["run_id"])
    done = registry.model_of_run(run_id)
    if done is not None:  # registered by an earlier attempt that died before finishing the job
        _set_status(run_id, RunStatus.succeeded, finished_at=utcnow())
        return {"run_id": run_id, "model_id": done.id, "threshold": done.thresholds.get("global")}
    with write_session() as s:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise jobs.JobFailed(f"training run {run_id} was deleted")
        run.status = RunStatus.running
        stored = dict(run.config or {})
        version_id, base = run.version_id, run.base_model
    if version_id is None:
        _set_status(run_id, RunStatus.failed, finished_at=utcnow())
        raise jobs.JobFailed("the dataset version of this run was deleted")
    model_name = stored.pop("model_name", f"classifier run {run_id}")
    parent_id = stored.pop("parent_model_id", None)
    cfg = ClassifierConfig.from_dict({**stored, "base_model": base})
    folder = run_dir(run_id)
    try:
        data = load_version(version_id)
        train, dev = data.split("train", cfg.soft_labels), data.split("dev")
        test = data.splits.get("test")
        head, head_note = parent_head(base, data.labels) if parent_id is not None else (None, "")
        ctx.set_progress(ctx.done, ctx.total or 1, note=f"{len(train):,} train / {len(dev):,} dev examples"
                         + (f"; from model {parent_id}: {head_note}" if parent_id is not None else ""))
        result = train_classifier(data.labels, train, dev, folder, cfg, JobHooks(ctx, run_id),
                                  test=test if test is not None and len(test) else None, resume=True,
                                  initial_head=head)
    except TrainingCancelled:
        _set_status(run_id, RunStatus.cancelled)
        raise jobs.JobCancelled() from None
    except jobs.LeaseLost:
        raise
    except Exception:
        _set_status(run_id, RunStatus.failed, finished_at=utcnow())
        raise
    except BaseException:
        # A stopping worker puts the job back in the queue: the run waits for the next worker.
        _set_status(run_id, RunStatus.queued)
        raise
    thresholds = {"global": result.threshold}
    if result.per_label_thresholds:
        thresholds["per_label"] = result.per_label_thresholds
    metrics = {k: v for k, v in result.metrics.items() if k != "details"}
    metrics.update(steps=result.steps, epochs=round(result.epochs_done, 3), stopped_early=result.stopped_early,
                   train_examples_per_s=round(result.train_examples_per_s, 2), train_seconds=round(result.seconds, 1),
                   per_label=result.metrics["details"]["dev"]["per_label"])
    if result.metrics["details"].get("test"):
        metrics["test_per_label"] = result.metrics["details"]["test"]["per_label"]
    lineage = {"parent_model_id": parent_id, "head": "kept" if head is not None else "new"} if parent_id else {}
    model_id = registry.register_model(
        ctx.actor, "classifier", registry.free_name(model_name), result.path, data.labels, thresholds,
        {**cfg.to_dict(), "version_id": version_id, "version_name": data.name, **lineage}, metrics, run_id=run_id,
        dataset_hash=data.content_hash, parent_id=parent_id)
    _set_status(run_id, RunStatus.succeeded, finished_at=utcnow())
    for leftover in ("best.pt", "checkpoint.pt"):  # the model is saved: nothing left to resume
        (folder / leftover).unlink(missing_ok=True)
    return {"run_id": run_id, "model_id": model_id, "threshold": result.threshold,
            **{k: v for k, v in metrics.items() if isinstance(v, (int, float, bool))}}


def remove_run_files(run_id: int) -> None:
    shutil.rmtree(config.home() / "runs" / str(run_id), ignore_errors=True)
