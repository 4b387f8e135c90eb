"""Workers under faults: a lost lease stops the handler and every write it tries, a transient database error
is retried and never ends the worker, runs end in a state the pages can act on, a supervisor restarts a
dead worker, and an import job shares its corpus with an inline import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from core import corpus, jobs, run_states, transient, worker
from core.supervisor import Supervisor, restart_delay
from db.models import Corpus, GenerationRun, Job, JobStatus, RunStatus, Story, TrainingRun, utcnow
from db.session import read_session, write_session

ROOT = Path(__file__).resolve().parent.parent
STARTED: list[int] = []  # the batches the "steal" handler began computing


def _corpus() -> int:
    with write_session() as session:
        row = Corpus(name=f"faults {time.monotonic_ns()}")
        session.add(row)
        session.flush()
        return row.id


def _stories(corpus_id: int) -> list[int]:
    with read_session() as session:
        return list(session.scalars(select(Story.position).where(Story.corpus_id == corpus_id).order_by(Story.position)))


def _take_over(job_id: int, new_owner: str = "thief") -> None:
    """What another worker does when this one's lease has run out: the job is its now.

    Run in a thread of its own: the handler's thread has its writes bound to its own lease.
    """
    claimed = []

    def other_worker():
        with write_session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1)))
        claimed.append(jobs.claim(new_owner, 60))

    thread = threading.Thread(target=other_worker)
    thread.start()
    thread.join()
    assert claimed == [job_id]


def _locked() -> OperationalError:
    return OperationalError("UPDATE jobs ...", {}, Exception("database is locked"))


@jobs.handler("test_steal")
def _steal(ctx: jobs.JobContext):
    """Writes one story per batch; after batch `after`, another worker takes the job over."""
    for i in range(ctx.payload["n"]):
        ctx.check_cancel()
        STARTED.append(i)
        with ctx.batch() as session:
            session.add(Story(corpus_id=ctx.payload["corpus"], position=i, text=f"s{i}", content_hash=str(i)))
            ctx.advance(session, 1, checkpoint={"next": i + 1})
        if i + 1 == ctx.payload["after"]:
            _take_over(ctx.job_id)
            if ctx.payload.get("write_directly"):
                # A write outside batch(), like a model registration or a run status: tied to the lease too.
                with write_session() as session:
                    session.add(Story(corpus_id=ctx.payload["corpus"], position=100, text="late", content_hash="x"))
            if ctx.payload.get("return_now"):
                return {"claims": "success"}
    return {"written": ctx.payload["n"]}


def test_a_handler_that_lost_its_lease_stops_at_the_next_batch_boundary(admin):
    corpus_id = _corpus()
    job_id = jobs.enqueue(admin, "test_steal", {"n": 6, "after": 2, "corpus": corpus_id})
    assert jobs.claim("me", 60) == job_id
    STARTED.clear()
    assert worker.run_job(job_id, "me", 60) is None  # not a success: the job is someone else's
    assert STARTED == [0, 1], "the handler went on computing a batch it could not commit"
    assert _stories(corpus_id) == [0, 1]
    job = jobs.get_job(admin, job_id)
    assert (job.status, job.lease_owner, job.done) == (JobStatus.running, "thief", 2)


def test_every_write_of_a_handler_is_tied_to_the_lease_not_only_batches(admin):
    corpus_id = _corpus()
    job_id = jobs.enqueue(admin, "test_steal", {"n": 6, "after": 1, "corpus": corpus_id, "write_directly": True})
    assert jobs.claim("me", 60) == job_id
    assert worker.run_job(job_id, "me", 60) is None
    assert _stories(corpus_id) == [0]  # the late write (position 100) was rolled back
    with pytest.raises(jobs.LeaseLost):  # progress, events and totals are guarded too
        jobs.JobContext(job_id, "me").set_progress(5, 6)
    assert jobs.get_job(admin, job_id).done == 1


def test_run_job_does_not_report_success_when_finish_found_the_job_taken(admin):
    corpus_id = _corpus()
    job_id = jobs.enqueue(admin, "test_steal", {"n": 3, "after": 1, "corpus": corpus_id, "return_now": True})
    assert jobs.claim("me", 60) == job_id
    assert worker.run_job(job_id, "me", 60) is None
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.running and job.lease_owner == "thief" and job.result == {}


def test_the_heartbeat_noticing_a_lost_lease_stops_the_handler_without_asking_the_database(admin):
    job_id = jobs.enqueue(admin, "test_steal", {"n": 1, "corpus": 0, "after": None})
    assert jobs.claim("me", 60) == job_id
    ctx = jobs.JobContext(job_id, "me")
    assert ctx.cancel_requested() is False
    ctx.lease_lost.set()
    with pytest.raises(jobs.LeaseLost):
        ctx.check_cancel()


def test_transient_errors_are_told_apart_from_real_ones():
    assert transient.is_transient(_locked())
    assert transient.is_transient(OperationalError("SELECT 1", {}, Exception(
        "terminating connection due to administrator command")))
    assert not transient.is_transient(OperationalError("SELECT x", {}, Exception("no such column: x")))
    assert not transient.is_transient(ValueError("database is locked"))
    assert [transient.backoff(i) for i in range(3)] == [0.5, 1.0, 2.0] and transient.backoff(20) == 30.0


def test_retrying_waits_out_transient_errors_and_passes_others_through():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _locked()
        return "ok"

    assert transient.retrying(flaky, "test", sleep=waits.append) == "ok" and waits == [0.5, 1.0]
    with pytest.raises(KeyError):
        transient.retrying(lambda: {}["x"], "test", sleep=waits.append)
    with pytest.raises(OperationalError):
        transient.retrying(lambda: (_ for _ in ()).throw(_locked()), "test", give_up_after_s=0.0,
                           sleep=waits.append)


def test_a_transient_error_in_claim_or_finish_does_not_end_serve(admin, monkeypatch):
    corpus_id = _corpus()
    job_id = jobs.enqueue(admin, "test_steal", {"n": 2, "corpus": corpus_id, "after": None})
    real_claim, real_finish = jobs.claim, jobs.finish
    failures = {"claim": 2, "finish": 1}

    def claim(*args, **kwargs):
        if failures["claim"]:
            failures["claim"] -= 1
            raise _locked()
        return real_claim(*args, **kwargs)

    def finish(*args, **kwargs):
        if failures["finish"]:
            failures["finish"] -= 1
            raise _locked()
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(jobs, "claim", claim)
    monkeypatch.setattr(jobs, "finish", finish)
    monkeypatch.setattr(worker.time, "sleep", lambda _s: None)
    monkeypatch.setattr(transient.time, "sleep", lambda _s: None)
    assert worker.serve(once=True, lease_seconds=30) == 1
    assert failures == {"claim": 0, "finish": 0}
    assert jobs.get_job(admin, job_id).status == JobStatus.succeeded and _stories(corpus_id) == [0, 1]


@jobs.handler("test_flaky_db")
def _flaky_db(ctx: jobs.JobContext):
    if not ctx.checkpoint.get("survived"):
        with ctx.batch() as session:
            ctx.advance(session, 1, checkpoint={"survived": True})
        raise _locked()
    return {"resumed": True}


def test_a_transient_error_in_a_handler_gives_the_job_back_to_resume_from_its_checkpoint(admin):
    job_id = jobs.enqueue(admin, "test_flaky_db", {})
    assert worker.serve(once=True, lease_seconds=30) == 2
    job = jobs.get_job(admin, job_id)
    assert (job.status, job.result, job.attempts) == (JobStatus.succeeded, {"resumed": True}, 2)
    assert any("transient database error" in e.message for e in jobs.job_events(admin, job_id))


def _runs_for(admin, job_id: int) -> tuple[int, int]:
    with write_session() as session:
        generation = GenerationRun(name="g", status=RunStatus.running, job_id=job_id)
        training = TrainingRun(kind="classifier", base_model="m", status=RunStatus.running, job_id=job_id)
        session.add_all([generation, training])
        session.flush()
        return generation.id, training.id


def _statuses(generation_id: int, training_id: int) -> tuple[RunStatus, RunStatus]:
    with read_session() as session:
        return session.get(GenerationRun, generation_id).status, session.get(TrainingRun, training_id).status


def test_runs_whose_job_ran_out_of_attempts_end_failed_and_can_be_discarded(admin, annotator):
    job_id = jobs.enqueue(admin, "test_steal", {"n": 1, "corpus": 0, "after": None}, max_attempts=1)
    generation_id, training_id = _runs_for(admin, job_id)
    assert jobs.claim("dies", 60) == job_id  # ...and the worker dies: its lease runs out
    with write_session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert jobs.claim("next", 60) is None
    assert jobs.get_job(admin, job_id).status == JobStatus.failed
    assert _statuses(generation_id, training_id) == (RunStatus.failed, RunStatus.failed)

    with pytest.raises(Exception, match="admin"):
        run_states.discard_generation_run(annotator, generation_id)
    run_states.discard_generation_run(admin, generation_id)
    run_states.discard_training_run(admin, training_id)
    assert _statuses(generation_id, training_id) == (RunStatus.discarded, RunStatus.discarded)
    with pytest.raises(run_states.RunStateError, match="only a failed or stopped run"):
        run_states.discard_training_run(admin, training_id)


def test_a_run_with_a_live_job_cannot_be_discarded_and_follows_a_cancel(admin):
    job_id = jobs.enqueue(admin, "test_steal", {"n": 1, "corpus": 0, "after": None})
    generation_id, training_id = _runs_for(admin, job_id)
    with pytest.raises(run_states.RunStateError, match="stop it first"):
        run_states.discard_generation_run(admin, generation_id)
    jobs.cancel(admin, job_id)
    assert _statuses(generation_id, training_id) == (RunStatus.cancelled, RunStatus.cancelled)


def test_an_import_job_and_an_inline_import_into_one_corpus_both_finish(admin, monkeypatch):
    lines = "\n".join(json.dumps({"text": f"Job story {i} of the fox."}) for i in range(9)).encode()
    job_id = corpus.enqueue_import(admin, "Shared", "job.jsonl", lines, batch_size=3)
    assert jobs.claim("w", 60) == job_id
    ctx = jobs.JobContext(job_id, "w")
    real_batch = corpus._import_batch
    inline = []

    def batch_then_inline_import(ctx, stories, size):
        real_batch(ctx, stories, size)
        if not inline:  # an admin imports into the same corpus while the job is half-way
            inline.append(corpus.import_files(admin, "Shared", [("inline.txt", b"Inline one.\n---\nInline two.")]))

    monkeypatch.setattr(corpus, "_import_batch", batch_then_inline_import)
    result = corpus.run_import_job(ctx)
    assert result["stories_added"] == 9 and inline[0].stories_added == 2
    rows, total = corpus.list_stories(result["corpus_id"])
    positions = [row.position for row in rows]
    assert total == 11 and len(set(positions)) == 11
    assert [row.position for row in rows if row.preview.startswith("Inline")] == [9, 10]


def test_supervisor_restart_waits_grow_after_quick_deaths_only():
    assert [restart_delay(n) for n in range(5)] == [0.0, 1.0, 2.0, 4.0, 8.0] and restart_delay(30) == 60.0


@pytest.mark.slow
def test_supervisor_restarts_a_worker_killed_with_sigkill(admin, tmp_path):
    log_path = tmp_path / "supervisor.log"
    process = subprocess.Popen([sys.executable, "-m", "core.supervisor", "--workers", "2", "--", "--poll", "0.2"],
                               cwd=ROOT, env=dict(os.environ), stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    try:
        first = _wait_for_pids(log_path, 2)
        os.kill(first[0], signal.SIGKILL)
        pids = _wait_for_pids(log_path, 3)
        assert pids[2] not in first
        job_id = corpus.enqueue_import(admin, "Supervised", "s.txt", b"One tale.\n---\nAnother tale.")
        deadline = time.monotonic() + 60  # the workers, the restarted one among them, serve jobs
        while not jobs.get_job(admin, job_id).is_finished and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jobs.get_job(admin, job_id).status == JobStatus.succeeded, log_path.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    text = log_path.read_text()
    assert "exited with SIGKILL" in text
    for pid in _wait_for_pids(log_path, 3):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every worker stopped with the supervisor


def _wait_for_pids(log_path: Path, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in log_path.read_text().splitlines()
                if "started (pid" in line]
        if len(pids) >= count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} workers started:\n{log_path.read_text()}")


def test_an_export_job_killed_after_recording_its_export_returns_it_instead_of_exporting_again(admin):
    from core.datasets import export, importing, versions
    from db.models import Export
    from tests.curate_support import goemotions_id

    data = b'{"text": "hi there", "labels": ["joy"]}\n{"text": "so long", "labels": ["sadness"]}\n'
    importing.import_file(admin, "x.jsonl", data, source="src", taxonomy_id=goemotions_id())
    version = versions.freeze(admin, "v")
    job_id = export.enqueue_export(admin, version.id, ("jsonl",))
    assert jobs.claim("dies", 60) == job_id
    first = export.run_export_job(jobs.JobContext(job_id, "dies"))  # ...then SIGKILL before finish()
    with write_session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert jobs.claim("next", 60) == job_id
    assert worker.run_job(job_id, "next", 60) == JobStatus.succeeded
    assert jobs.get_job(admin, job_id).result == first
    with read_session() as session:
        assert session.scalar(select(func.count(Export.id))) == 2  # jsonl + zip, once
