"""The job queue: claim, lease, batches tied to the lease, cancel, retry, take-over."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core import jobs, worker
from core.auth import PermissionDenied
from db.models import Corpus, Job, JobStatus, Story, utcnow
from db.session import read_session, write_session


@jobs.handler("test_fill")
def _fill(ctx: jobs.JobContext):
    """Writes payload['n'] stories in batches, resuming from the checkpoint, like real handlers do."""
    n, size = ctx.payload["n"], ctx.payload.get("batch", 5)
    ctx.set_total(n)
    start = ctx.checkpoint.get("next", 0)
    for first in range(start, n, size):
        ctx.check_cancel()
        last = min(n, first + size)
        with ctx.batch() as session:
            session.add_all(Story(corpus_id=ctx.payload["corpus"], position=i, text=f"s{i}", content_hash=str(i))
                            for i in range(first, last))
            ctx.advance(session, last - first, checkpoint={"next": last})
        if ctx.payload.get("fail_at") == last:
            raise jobs.JobFailed(f"stopped on purpose at {last}")
    return {"written": n}


def _corpus() -> int:
    with write_session() as session:
        corpus = Corpus(name=f"c{time.monotonic_ns()}")
        session.add(corpus)
        session.flush()
        return corpus.id


def _positions(corpus_id: int) -> list[int]:
    with read_session() as session:
        return list(session.scalars(select(Story.position).where(Story.corpus_id == corpus_id).order_by(Story.position)))


def test_a_job_runs_to_success_with_progress_and_events(admin):
    corpus = _corpus()
    job_id = jobs.enqueue(admin, "test_fill", {"n": 12, "corpus": corpus}, title="fill")
    assert jobs.get_job(admin, job_id).status == JobStatus.queued
    assert worker.serve(once=True, lease_seconds=5) == 1
    view = jobs.get_job(admin, job_id)
    assert (view.status, view.done, view.total, view.attempts) == (JobStatus.succeeded, 12, 12, 1)
    assert view.result == {"written": 12} and view.fraction == 1.0 and view.rate > 0
    assert _positions(corpus) == list(range(12))
    messages = [e.message for e in jobs.job_events(admin, job_id)]
    assert messages[0].startswith("queued by admin") and messages[-1] == "finished"


def test_claim_returns_none_when_idle_and_never_hands_one_job_to_two_workers(admin):
    assert jobs.claim("w1") is None
    ids = {jobs.enqueue(admin, "test_fill", {"n": 1, "corpus": 0}) for _ in range(6)}
    claimed: list[int] = []
    lock = threading.Lock()

    def grab(name: str):
        while (job_id := jobs.claim(name, 30)) is not None:
            with lock:
                claimed.append(job_id)

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def test_expired_lease_is_taken_over_and_the_old_worker_cannot_commit(admin):
    corpus = _corpus()
    job_id = jobs.enqueue(admin, "test_fill", {"n": 10, "corpus": corpus, "batch": 4})
    assert jobs.claim("old", lease_seconds=30) == job_id
    old = jobs.JobContext(job_id, "old")
    with old.batch() as session:  # one batch lands while "old" holds the lease
        session.add_all(Story(corpus_id=corpus, position=i, text="x", content_hash="h") for i in range(4))
        old.advance(session, 4, checkpoint={"next": 4})
    with write_session() as session:  # "old" goes silent; its lease runs out
        session.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert jobs.claim("new", lease_seconds=30) == job_id
    with pytest.raises(jobs.LeaseLost):
        with old.batch() as session:
            session.add(Story(corpus_id=corpus, position=99, text="late", content_hash="h"))
    assert not jobs.heartbeat(job_id, "old")
    assert worker.run_job(job_id, "new", 30) == JobStatus.succeeded
    assert _positions(corpus) == list(range(10))
    view = jobs.get_job(admin, job_id)
    assert view.attempts == 2 and view.done == 10
    assert any("expired; taken over" in e.message for e in jobs.job_events(admin, job_id))


def test_cancel_queued_and_running_jobs_then_retry_resumes_from_checkpoint(admin):
    queued = jobs.enqueue(admin, "test_fill", {"n": 3, "corpus": 0})
    assert jobs.cancel(admin, queued).status == JobStatus.cancelled
    with pytest.raises(ValueError, match="already cancelled"):
        jobs.cancel(admin, queued)

    corpus = _corpus()
    job_id = jobs.enqueue(admin, "test_fill", {"n": 20, "corpus": corpus, "batch": 5})
    assert jobs.claim("w", 30) == job_id
    ctx = jobs.JobContext(job_id, "w")
    with ctx.batch() as session:
        session.add_all(Story(corpus_id=corpus, position=i, text="x", content_hash="h") for i in range(5))
        ctx.advance(session, 5, checkpoint={"next": 5})
    jobs.cancel(admin, job_id)
    assert jobs.get_job(admin, job_id).cancel_requested
    assert worker.run_job(job_id, "w", 30) == JobStatus.cancelled  # stops before its next batch
    assert _positions(corpus) == list(range(5))

    assert jobs.retry(admin, job_id).status == JobStatus.queued
    worker.serve(once=True, lease_seconds=5)
    assert jobs.get_job(admin, job_id).status == JobStatus.succeeded
    assert _positions(corpus) == list(range(20))


def test_failure_reason_is_kept_and_shown_and_retry_finishes(admin):
    corpus = _corpus()
    job_id = jobs.enqueue(admin, "test_fill", {"n": 10, "corpus": corpus, "batch": 5, "fail_at": 5})
    worker.serve(once=True, lease_seconds=5)
    view = jobs.get_job(admin, job_id)
    assert view.status == JobStatus.failed and view.error == "stopped on purpose at 5"
    with write_session() as session:  # the user fixes the cause, then retries
        job = session.get(Job, job_id)
        job.payload = {**job.payload, "fail_at": None}
    jobs.retry(admin, job_id)
    worker.serve(once=True, lease_seconds=5)
    assert jobs.get_job(admin, job_id).status == JobStatus.succeeded
    assert _positions(corpus) == list(range(10))
    assert any("retried by admin (was: stopped on purpose at 5)" in e.message for e in jobs.job_events(admin, job_id))


def test_unknown_kind_and_crashing_handler_fail_with_a_reason(admin):
    unknown = jobs.enqueue(admin, "no_such_kind", {})
    crashing = jobs.enqueue(admin, "test_fill", {"corpus": 0})  # KeyError: 'n'
    worker.serve(once=True, lease_seconds=5)
    assert jobs.get_job(admin, unknown).error == "no handler for job kind 'no_such_kind'"
    assert jobs.get_job(admin, crashing).error == "KeyError: 'n'"


def test_a_job_whose_workers_keep_dying_gives_up(admin):
    job_id = jobs.enqueue(admin, "test_fill", {"n": 1, "corpus": 0}, max_attempts=2)
    for name in ("a", "b"):
        assert jobs.claim(name, lease_seconds=30) == job_id
        with write_session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert jobs.claim("c", 30) is None
    view = jobs.get_job(admin, job_id)
    assert view.status == JobStatus.failed and "gave up after 2 attempts" in view.error


def test_eta_from_rate(admin):
    view = jobs.get_job(admin, jobs.enqueue(admin, "test_fill", {}))
    running = view.__class__(**{**view.__dict__, "status": JobStatus.running, "done": 30, "total": 90, "rate": 2.0})
    assert running.eta_seconds == 30.0 and running.fraction == pytest.approx(1 / 3)


def test_annotators_cannot_see_or_steer_jobs(admin, annotator):
    job_id = jobs.enqueue(admin, "test_fill", {})
    for call in (lambda: jobs.list_jobs(annotator), lambda: jobs.get_job(annotator, job_id),
                 lambda: jobs.cancel(annotator, job_id), lambda: jobs.retry(annotator, job_id)):
        with pytest.raises(PermissionDenied):
            call()
    with read_session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


@jobs.handler("test_interrupted")
def _interrupted(ctx: jobs.JobContext):
    """What a SIGTERM inside a driver call looks like: the stop is requested, another error comes out."""
    worker._stop_requested.set()
    raise RuntimeError("can't change 'autocommit' now: connection in transaction status ACTIVE")


@pytest.fixture
def stop_flag():
    worker._stop_requested.clear()
    yield worker._stop_requested
    worker._stop_requested.clear()


def test_a_stop_that_surfaces_as_another_error_gives_the_job_back(admin, stop_flag):
    job_id = jobs.enqueue(admin, "test_interrupted", {})
    assert jobs.claim("w1", 30) == job_id
    with pytest.raises(worker.WorkerStopping):
        worker.run_job(job_id, "w1", 30)
    job = jobs.get_job(admin, job_id)
    assert (job.status, job.error) == (JobStatus.queued, None)  # back in the queue, not failed


def test_the_same_error_without_a_stop_fails_the_job(admin, stop_flag):
    job_id = jobs.enqueue(admin, "test_fill", {"corpus": 0})  # KeyError: 'n'
    assert jobs.claim("w1", 30) == job_id
    assert worker.run_job(job_id, "w1", 30) == JobStatus.failed
    assert not stop_flag.is_set()


def test_a_signal_during_the_idle_poll_exits_cleanly_whatever_the_driver_raises(monkeypatch, stop_flag):
    signalled = [True]

    def interrupted_poll(**_):
        if signalled[0]:
            stop_flag.set()
        raise RuntimeError("connection in transaction status ACTIVE")

    monkeypatch.setattr(worker, "serve", interrupted_poll)
    monkeypatch.setattr(worker.signal, "signal", lambda *_: None)  # leave pytest's own handlers alone
    assert worker.main([]) == 0
    stop_flag.clear()
    signalled[0] = False
    with pytest.raises(RuntimeError):  # a real error, with no stop asked for, still fails the worker
        worker.main([])


def test_a_stopping_worker_claims_no_new_job(admin, stop_flag):
    job_id = jobs.enqueue(admin, "test_fill", {"corpus": _corpus(), "n": 3})
    stop_flag.set()  # e.g. a handler caught the WorkerStopping itself and its job ended normally
    with pytest.raises(worker.WorkerStopping):
        worker.serve(once=True, lease_seconds=5)
    assert jobs.get_job(admin, job_id).status == JobStatus.queued
