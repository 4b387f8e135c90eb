"""`python -m core.worker`: runs queued jobs until stopped. Start as many as you like.

Each worker claims one job at a time under a lease, keeps the lease alive from a heartbeat
thread, and hands the job to its handler, whose writes all commit only while the lease holds
(`JobContext.lease_bound`). If this process dies (even SIGKILL), the lease runs out and another
worker resumes the job from its last committed checkpoint; `python -m core.supervisor` starts
a new worker in its place. A transient database error (a busy SQLite lock, a PostgreSQL restart)
is logged and retried with backoff: it never stops the worker.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid

from core import jobs
from core.transient import backoff, is_transient, retrying
from db.models import Job, JobStatus
from db.session import write_session

log = logging.getLogger("emoforge.worker")

# Modules whose import registers job handlers (`@jobs.handler("kind")`).
HANDLER_MODULES = ["core.corpus", "core.llm.jobs", "core.pipeline.run", "core.pipeline.annotate",
                   "core.review.campaigns", "core.curate.signals", "core.datasets.importing",
                   "core.datasets.export", "core.datasets.versions", "core.curate.actions",
                   "core.train.jobs", "core.train.label_issues", "core.train.contrastive",
                   "core.train.evaluate", "core.train.baselines"]


class WorkerStopping(Exception):
    """SIGTERM / SIGINT: give the job back and leave."""


# Set by the signal handler. The handler raises WorkerStopping wherever the main thread happens to be; inside a
# database driver call that exception can come out as another one (psycopg, for one, then fails the pool's
# ping with "connection in transaction status ACTIVE"), so a requested stop is honoured whatever surfaces.
_stop_requested = threading.Event()


def load_handlers() -> None:
    for name in HANDLER_MODULES:
        importlib.import_module(name)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Heartbeat(threading.Thread):
    """Extends the lease every third of its length while the handler works."""

    def __init__(self, ctx: jobs.JobContext, lease_seconds: float):
        super().__init__(daemon=True, name=f"heartbeat-{ctx.job_id}")
        self.job_id, self.worker_id, self.lease_seconds = ctx.job_id, ctx.worker_id, lease_seconds
        self.lost = ctx.lease_lost  # the handler's next lease check sees it and stops
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.lease_seconds / 3):
            try:
                if not jobs.heartbeat(self.job_id, self.worker_id, self.lease_seconds):
                    log.warning("job %s: lease lost (another worker took it over); the handler stops", self.job_id)
                    self.lost.set()
                    return
            except Exception:  # a busy database must not kill the thread; the next beat retries
                log.exception("heartbeat for job %s failed", self.job_id)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


# How long the worker keeps retrying its own bookkeeping (finish, give back) through transient errors before
# leaving the job to its lease: when the lease runs out, another worker resumes it from the checkpoint.
BOOKKEEPING_RETRY_S = 120.0


def release(job_id: int, worker_id: str, *, reason: str = "worker stopped", count_attempt: bool = False) -> bool:
    """Put a job we were running back in the queue (on a polite shutdown, or after a transient error)."""
    with write_session() as session:
        job = session.get(Job, job_id)
        if job is None or job.lease_owner != worker_id or job.status != JobStatus.running:
            return False
        job.status, job.lease_owner, job.lease_until = JobStatus.queued, None, None
        if not count_attempt:
            job.attempts = max(0, job.attempts - 1)  # a shutdown is not a failed attempt
        jobs._event(session, job_id, f"{reason}; job put back in the queue", "warning", worker_id)
        return True


def _finish(job_id: int, worker_id: str, status: JobStatus, **details) -> JobStatus | None:
    """`jobs.finish` through transient errors; the status only when it was recorded (None: the lease was lost)."""
    try:
        recorded = retrying(lambda: jobs.finish(job_id, worker_id, status, **details), f"job {job_id}: finish",
                            give_up_after_s=BOOKKEEPING_RETRY_S)
    except Exception as error:
        if not is_transient(error):
            raise
        log.error("job %s: its end (%s) could not be recorded; its lease will run out and another worker resumes it",
                  job_id, status.value)
        return None
    if not recorded:
        log.warning("job %s: ended %s here, but another worker holds it now; nothing recorded", job_id, status.value)
        return None
    return status


def _give_back(job_id: int, worker_id: str, error: BaseException) -> None:
    """After a transient database error in a handler: wait it out, then requeue the job for any worker.

    It counts as an attempt (a database that never recovers must not loop forever); the next attempt
    resumes from the last committed checkpoint, so nothing is lost.
    """
    log.warning("job %s: transient database error in the handler (%s); giving the job back", job_id, error)
    try:
        retrying(lambda: release(job_id, worker_id, reason=f"transient database error ({type(error).__name__})",
                                 count_attempt=True), f"job {job_id}: give back", give_up_after_s=BOOKKEEPING_RETRY_S)
    except Exception:
        log.exception("job %s: could not give it back; its lease will run out instead", job_id)


def run_job(job_id: int, worker_id: str, lease_seconds: float) -> JobStatus | None:
    """Run one claimed job to its end. Returns the final status as recorded (None when the lease was lost,
    the job was given back after a transient error, or its end could not be recorded)."""
    ctx = retrying(lambda: jobs.JobContext(job_id, worker_id), f"job {job_id}: load")
    handler = jobs.HANDLERS.get(ctx.kind)
    if handler is None:
        return _finish(job_id, worker_id, JobStatus.failed, error=f"no handler for job kind {ctx.kind!r}")
    beat = Heartbeat(ctx, lease_seconds)
    beat.start()
    try:
        with ctx.lease_bound():
            result = handler(ctx)
    except jobs.JobCancelled:
        return _finish(job_id, worker_id, JobStatus.cancelled)
    except jobs.LeaseLost as lost:
        log.warning("%s", lost)
        return None
    except jobs.JobFailed as failure:
        return _finish(job_id, worker_id, JobStatus.failed, error=str(failure))
    except WorkerStopping:
        release(job_id, worker_id)
        raise
    except Exception as error:  # the reason goes to the user; the traceback to the log and events
        if _stop_requested.is_set():  # the signal interrupted a call that re-raised it as another error
            release(job_id, worker_id)
            raise WorkerStopping(f"stop requested; the job was interrupted by {type(error).__name__}") from error
        if is_transient(error):
            _give_back(job_id, worker_id, error)
            return None
        log.exception("job %s failed", job_id)
        try:
            ctx.log(traceback.format_exc(limit=8), level="debug")
        except jobs.LeaseLost:
            return None
        return _finish(job_id, worker_id, JobStatus.failed, error=f"{type(error).__name__}: {error}")
    finally:
        beat.stop()
    return _finish(job_id, worker_id, JobStatus.succeeded, result=result or {})


def serve(*, once: bool = False, poll_seconds: float = 1.0, lease_seconds: float = jobs.DEFAULT_LEASE_SECONDS,
          kinds: list[str] | None = None, worker_id: str | None = None) -> int:
    """Claim and run jobs until stopped; with `once`, until the queue is empty. Returns jobs run."""
    load_handlers()
    worker_id = worker_id or new_worker_id()
    log.info("worker %s started", worker_id)
    ran = failures = 0
    while True:
        if _stop_requested.is_set():  # a handler that swallowed the WorkerStopping must not lead to a new claim
            raise WorkerStopping("stop requested")
        try:
            job_id = jobs.claim(worker_id, lease_seconds, kinds)
            if job_id is None:
                if once:
                    return ran
                failures = 0
                time.sleep(poll_seconds)
                continue
            log.info("job %s claimed", job_id)
            status = run_job(job_id, worker_id, lease_seconds)
            log.info("job %s ended: %s", job_id, status.value if status else "not recorded here (lease lost or given back)")
            ran += 1
            failures = 0
        except WorkerStopping:
            raise
        except Exception as error:
            if _stop_requested.is_set():
                raise WorkerStopping(f"stop requested; interrupted by {type(error).__name__}") from error
            if once and not is_transient(error):
                raise  # a one-shot run (tests, scripts) reports a bug instead of retrying it
            # A database that is restarting or locked must not end the worker: wait, then go on serving.
            wait = backoff(failures)
            if is_transient(error):
                log.warning("transient database error (%s: %s); retrying in %.1f s", type(error).__name__,
                            str(error).strip().splitlines()[0] if str(error).strip() else "", wait)
            else:
                log.exception("unexpected error in the serve loop; retrying in %.1f s", wait)
            failures += 1
            time.sleep(wait)


def _raise_stopping(signum, _frame):
    _stop_requested.set()
    raise WorkerStopping(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.worker", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls when idle")
    parser.add_argument("--lease", type=float, default=float(os.environ.get("EMOFORGE_LEASE_SECONDS",
                                                                          jobs.DEFAULT_LEASE_SECONDS)),
                        help="lease length in seconds; a dead worker's job is taken over after it")
    parser.add_argument("--kinds", default="", help="comma-separated job kinds to run (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _raise_stopping)
    signal.signal(signal.SIGINT, _raise_stopping)
    try:
        serve(once=args.once, poll_seconds=args.poll, lease_seconds=args.lease,
              kinds=[k for k in args.kinds.split(",") if k] or None)
    except WorkerStopping as stop:
        log.info("stopping on %s", stop)
    except Exception as error:
        if not _stop_requested.is_set():
            raise
        log.info("stopping on a signal (it interrupted a call, which raised %s: %s)", type(error).__name__, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
