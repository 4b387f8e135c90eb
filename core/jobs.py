"""The job queue: what the app enqueues and the worker runs.

A job is claimed under a lease (`lease_owner`, `lease_until`) that the worker's heartbeat keeps
extending. A handler writes its results in batches; each batch commits together with the job's
progress and checkpoint, and only while the worker still owns the lease. So a worker killed
mid-job loses at most the batch it had not committed, and the next worker to claim the expired
lease resumes from the checkpoint: no row twice, no row missing.

The lease guard is one rule (`assert_lease`), checked in the same transaction as the write. While
a handler runs, the worker binds it to every write transaction of the handler's thread
(`JobContext.lease_bound`), so models, evaluations, exports, run statuses and progress written
through plain `write_session()` calls are tied to the lease too; `ctx.batch()` is the one helper
handlers use for their results. A worker that lost its lease stops at its next batch boundary
(`ctx.check_cancel()` / `ctx.cancel_requested()` raise `LeaseLost`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.auth import Actor, require_admin, system_actor
from db.models import GenerationRun, Job, JobEvent, JobStatus, RunStatus, TrainingRun, User, utcnow
from db.session import commit_check, get_engine, is_sqlite, read_session, write_session

DEFAULT_LEASE_SECONDS = 60.0
FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class JobCancelled(Exception):
    """Raised inside a handler when a user asked to cancel; the worker marks the job cancelled."""


class LeaseLost(Exception):
    """This worker no longer owns the job (its lease expired and another worker took it)."""


class JobFailed(Exception):
    """A handler's way to fail with a message meant for the user (no traceback shown)."""


Handler = Callable[["JobContext"], dict[str, Any] | None]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register a job handler: `@handler("import_corpus") def run(ctx): ...`."""

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


# --------------------------------------------------------------------------- views for pages


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    title: str
    status: JobStatus
    done: int
    total: int | None
    rate: float | None
    note: str
    error: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None
    result: dict[str, Any]

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @property
    def eta_seconds(self) -> float | None:
        if self.status != JobStatus.running or not self.total or not self.rate:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class JobEventView:
    at: datetime
    level: str
    message: str
    worker: str | None


def _view(job: Job, username: str | None) -> JobView:
    return JobView(
        id=job.id, kind=job.kind, title=job.title or job.kind, status=JobStatus(job.status),
        done=job.progress_done, total=job.progress_total, rate=job.rate, note=job.progress_note,
        error=job.error, attempts=job.attempts, max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested, created_by=username, created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at, lease_owner=job.lease_owner,
        result=job.result or {},
    )


def _event(session: Session, job_id: int, message: str, level: str = "info", worker: str | None = None) -> None:
    session.add(JobEvent(job_id=job_id, message=message, level=level, worker=worker))


# A run (generation or training) follows its latest job: when that job ends failed or cancelled, whatever
# ended it (the handler, a user, or a claim that found it out of attempts), the run ends in the same state in
# the same transaction, so the Generate and Train pages can offer resume / retry / discard on it.
RUN_TABLES = (GenerationRun, TrainingRun)
OPEN_RUN_STATES = (RunStatus.draft, RunStatus.queued, RunStatus.running)


def end_runs_of_job(session: Session, job_id: int, status: JobStatus) -> None:
    if status not in (JobStatus.failed, JobStatus.cancelled):
        return
    final = RunStatus.failed if status == JobStatus.failed else RunStatus.cancelled
    for table in RUN_TABLES:
        session.execute(update(table).where(table.job_id == job_id, table.status.in_(OPEN_RUN_STATES))
                        .values(status=final, finished_at=utcnow()))


# --------------------------------------------------------------------------- app side


def enqueue(
    actor: Actor | None,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    title: str = "",
    max_attempts: int = 3,
    session: Session | None = None,
) -> int:
    """Queue a job and return its id. Pass `session` to enqueue inside a caller's transaction."""
    require_admin(actor)
    if session is None:
        with write_session() as own:
            return enqueue(actor, kind, payload, title=title, max_attempts=max_attempts, session=own)
    job = Job(kind=kind, payload=payload or {}, title=title or kind, max_attempts=max_attempts,
              created_by_id=actor.id)
    session.add(job)
    session.flush()
    _event(session, job.id, f"queued by {actor.username}")
    return job.id


def list_jobs(actor: Actor | None, limit: int = 50, kinds: list[str] | None = None) -> list[JobView]:
    require_admin(actor)
    with read_session() as session:
        query = (
            select(Job, User.username).outerjoin(User, User.id == Job.created_by_id)
            .order_by(Job.id.desc()).limit(limit)
        )
        if kinds:
            query = query.where(Job.kind.in_(kinds))
        return [_view(job, name) for job, name in session.execute(query)]


def get_job(actor: Actor | None, job_id: int) -> JobView:
    require_admin(actor)
    with read_session() as session:
        row = session.execute(
            select(Job, User.username).outerjoin(User, User.id == Job.created_by_id).where(Job.id == job_id)
        ).first()
        if row is None:
            raise ValueError(f"No job {job_id}.")
        return _view(*row)


def job_events(actor: Actor | None, job_id: int) -> list[JobEventView]:
    require_admin(actor)
    with read_session() as session:
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [JobEventView(e.at, e.level, e.message, e.worker) for e in events]


def cancel(actor: Actor | None, job_id: int) -> JobView:
    """A queued job is cancelled at once; a running one stops after its current batch."""
    require_admin(actor)
    with write_session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ValueError(f"No job {job_id}.")
        if job.status == JobStatus.queued:
            job.status, job.finished_at = JobStatus.cancelled, utcnow()
            _event(session, job.id, f"cancelled by {actor.username} before it started")
            end_runs_of_job(session, job.id, JobStatus.cancelled)
        elif job.status == JobStatus.running:
            job.cancel_requested = True
            _event(session, job.id, f"cancel requested by {actor.username}; stops after the current batch")
        else:
            raise ValueError(f"Job {job_id} has already {job.status.value}.")
    return get_job(actor, job_id)


def retry(actor: Actor | None, job_id: int) -> JobView:
    """Queue a failed or cancelled job again; it resumes from its checkpoint."""
    require_admin(actor)
    with write_session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ValueError(f"No job {job_id}.")
        if job.status not in (JobStatus.failed, JobStatus.cancelled):
            raise ValueError(f"Only failed or cancelled jobs can be retried; job {job_id} is {job.status.value}.")
        previous = job.error or job.status.value
        job.status, job.cancel_requested, job.finished_at = JobStatus.queued, False, None
        job.attempts, job.lease_owner, job.lease_until = 0, None, None
        job.error = None
        _event(session, job.id, f"retried by {actor.username} (was: {previous})")
    return get_job(actor, job_id)


# --------------------------------------------------------------------------- worker side


def claim(worker_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS, kinds: list[str] | None = None) -> int | None:
    """Take the next queued job, or one whose lease expired, and return its id (None when idle).

    PostgreSQL: `FOR UPDATE SKIP LOCKED` lets several workers claim side by side. SQLite: the
    write transaction starts with BEGIN IMMEDIATE, so claims are serialised by the database lock.
    """
    now = utcnow()
    engine = get_engine()
    with write_session(engine) as session:
        query = (
            select(Job)
            .where(or_(Job.status == JobStatus.queued,
                       (Job.status == JobStatus.running) & (Job.lease_until < now)))
            .order_by(Job.priority.desc(), Job.id)
            .limit(1)
        )
        if kinds:
            query = query.where(Job.kind.in_(kinds))
        if not is_sqlite(engine):
            query = query.with_for_update(skip_locked=True)
        job = session.scalars(query).first()
        if job is None:
            return None
        resumed = job.status == JobStatus.running
        if resumed:
            _event(session, job.id, f"lease of {job.lease_owner} expired; taken over", "warning", worker_id)
        if job.attempts >= job.max_attempts:
            job.status, job.finished_at, job.lease_owner, job.lease_until = JobStatus.failed, now, None, None
            job.error = f"gave up after {job.attempts} attempts: the worker running it died or lost its lease each time"
            _event(session, job.id, job.error, "error", worker_id)
            end_runs_of_job(session, job.id, JobStatus.failed)
            return None
        job.status, job.attempts = JobStatus.running, job.attempts + 1
        job.lease_owner, job.lease_until, job.heartbeat_at = worker_id, now + timedelta(seconds=lease_seconds), now
        job.started_at = job.started_at or now
        job.rate = None
        _event(session, job.id, f"{'resumed' if resumed else 'started'} (attempt {job.attempts})", worker=worker_id)
        return job.id


def heartbeat(job_id: int, worker_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
    """Extend the lease; False when this worker no longer owns the job."""
    now = utcnow()
    with write_session() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == JobStatus.running)
            .values(lease_until=now + timedelta(seconds=lease_seconds), heartbeat_at=now)
        )
        return result.rowcount == 1


def assert_lease(session: Session, job_id: int, worker_id: str) -> None:
    """The lease guard: raise LeaseLost unless `worker_id` still runs the job, checked in `session`'s transaction.

    The UPDATE takes the job row's write lock (PostgreSQL) or runs under the database lock (SQLite) until
    the transaction commits, so no other worker can take the job over between this check and the commit.
    """
    owned = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == JobStatus.running)
        .values(heartbeat_at=utcnow())
    ).rowcount
    if owned != 1:
        raise LeaseLost(f"job {job_id}: {worker_id} lost its lease; nothing of this transaction was committed")


def finish(job_id: int, worker_id: str, status: JobStatus, *, error: str | None = None,
           result: dict[str, Any] | None = None) -> bool:
    """Record the job's end; False (nothing written) when this worker no longer owns the job."""
    with write_session() as session:
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "lease_until": None, "error": error}
        if result is not None:
            values["result"] = result
        updated = session.execute(
            update(Job).where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == JobStatus.running)
            .values(**values)
        ).rowcount
        if updated:
            message = {JobStatus.succeeded: "finished", JobStatus.cancelled: "cancelled",
                       JobStatus.failed: f"failed: {error}"}[status]
            _event(session, job_id, message, "error" if status == JobStatus.failed else "info", worker_id)
            end_runs_of_job(session, job_id, status)
        return updated == 1


class JobContext:
    """What a handler sees: its payload and checkpoint, and transactions tied to the lease."""

    def __init__(self, job_id: int, worker_id: str):
        self.job_id = job_id
        self.worker_id = worker_id
        with read_session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            self.kind = job.kind
            self.payload: dict[str, Any] = dict(job.payload or {})
            self.checkpoint: dict[str, Any] = dict(job.checkpoint or {})
            self.done = job.progress_done
            self.total = job.progress_total
            self.created_by_id = job.created_by_id
        self._started = time.monotonic()
        self._done_at_start = self.done
        # Set by the worker's heartbeat thread when a beat found the job taken: the next check stops the handler.
        self.lease_lost = threading.Event()

    def assert_lease(self, session: Session) -> None:
        """The lease guard for this job, in `session`'s transaction (once per transaction is enough)."""
        if session.info.get("lease_checked") == self.job_id:
            return
        if self.lease_lost.is_set():
            raise LeaseLost(f"job {self.job_id}: {self.worker_id} lost its lease (heartbeat)")
        assert_lease(session, self.job_id, self.worker_id)
        session.info["lease_checked"] = self.job_id

    @contextmanager
    def lease_bound(self) -> Iterator[None]:
        """Within this block, every write transaction of this thread commits only while the lease is ours.

        The worker wraps the handler in it, so a write a handler makes outside `batch()` (a model registered,
        an evaluation stored, a run's status) is tied to the lease as well.
        """
        with commit_check(self.assert_lease):
            yield

    @property
    def actor(self) -> Actor:
        """Who a handler acts as when it calls core functions: the system, for the user who queued the job."""
        return system_actor(self.created_by_id)

    @contextmanager
    def batch(self) -> Iterator[Session]:
        """A write transaction that commits only while this worker still owns the job.

        Call `advance()` inside it so the results and the progress commit together.
        """
        with write_session() as session:
            yield session
            self.assert_lease(session)

    def advance(self, session: Session, n: int, checkpoint: dict[str, Any] | None = None, note: str | None = None):
        """Record n more units done (and the resume state) in the batch's transaction."""
        self.done += n
        if checkpoint is not None:
            self.checkpoint = checkpoint
        elapsed = time.monotonic() - self._started
        rate = (self.done - self._done_at_start) / elapsed if elapsed > 0 else None
        values: dict[str, Any] = {"progress_done": self.done, "checkpoint": self.checkpoint, "rate": rate}
        if note is not None:
            values["progress_note"] = note
        session.execute(update(Job).where(Job.id == self.job_id).values(**values))

    def show_progress(self, done: int, note: str | None = None) -> None:
        """Show work finished but not yet committed (answers of a batch still running); the next
        `advance` sets the committed count again. Writes only while this worker owns the job."""
        values: dict[str, Any] = {"progress_done": done}
        if note is not None:
            values["progress_note"] = note
        with write_session() as session:
            session.execute(update(Job).where(Job.id == self.job_id, Job.lease_owner == self.worker_id,
                                              Job.status == JobStatus.running).values(**values))

    def set_total(self, total: int, note: str | None = None) -> None:
        self.total = total
        with self.batch() as session:
            values: dict[str, Any] = {"progress_total": total}
            if note is not None:
                values["progress_note"] = note
            session.execute(update(Job).where(Job.id == self.job_id).values(**values))

    def set_progress(self, done: int, total: int, note: str | None = None) -> None:
        """Set where the job stands (e.g. requests already answered by an earlier attempt)."""
        self.done, self.total, self._done_at_start = done, total, done
        self._started = time.monotonic()
        with self.batch() as session:
            values: dict[str, Any] = {"progress_done": done, "progress_total": total}
            if note is not None:
                values["progress_note"] = note
            session.execute(update(Job).where(Job.id == self.job_id).values(**values))

    def log(self, message: str, level: str = "info") -> None:
        with self.batch() as session:
            _event(session, self.job_id, message, level, self.worker_id)

    def cancel_requested(self) -> bool:
        """True when a user asked to stop; raises LeaseLost when another worker has the job now.

        Handlers call it (or `check_cancel`) between batches: that is where a worker that lost its
        lease stops, before it computes another batch it could not commit anyway.
        """
        if self.lease_lost.is_set():
            raise LeaseLost(f"job {self.job_id}: {self.worker_id} lost its lease (heartbeat)")
        with read_session() as session:
            row = session.execute(select(Job.cancel_requested, Job.lease_owner, Job.status)
                                  .where(Job.id == self.job_id)).first()
        if row is None or row.lease_owner != self.worker_id or row.status != JobStatus.running:
            self.lease_lost.set()
            raise LeaseLost(f"job {self.job_id}: {self.worker_id} no longer holds the lease; stopping")
        return bool(row.cancel_requested)

    def check_cancel(self) -> None:
        """Call between batches: raises JobCancelled when a user asked to stop, LeaseLost when the job moved on."""
        if self.cancel_requested():
            raise JobCancelled()
