"""SIGKILL a worker in the middle of an LLM job; another worker resumes: every request answered once."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import func, select

from core import jobs
from core.llm import settings as engine_settings
from core.llm.jobs import enqueue_generation
from db.models import JobStatus, LLMRequest
from db.session import read_session
from tests.llm_support import SERVED_NAME
from tests.test_worker_processes import start_worker, wait_for

pytestmark = pytest.mark.slow


def test_sigkill_mid_llm_job_then_resume_answers_every_request_exactly_once(admin, openai_url, tmp_path):
    engine_settings.save(admin, engine_settings.EngineSettings(engine="openai", base_url=openai_url,
                                                               model=SERVED_NAME, max_concurrency=8))
    n = 48
    items = [{"messages": [{"role": "user", "content": f"Write one short sentence about a fox, number {i}."}],
              "sampling": {"max_tokens": 32, "seed": i}} for i in range(n)]
    job_id = enqueue_generation(admin, items, stage="kill-test", batch_size=8)

    first = start_worker(tmp_path / "worker-a.log", lease_seconds=3)
    try:
        wait_for(lambda: jobs.get_job(admin, job_id).done >= 8, 120, "a first committed batch", interval=0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    killed_at = jobs.get_job(admin, job_id)
    assert killed_at.status == JobStatus.running and 8 <= killed_at.done < n, killed_at
    with read_session() as session:
        answered_before = session.scalar(select(func.count()).select_from(LLMRequest))
    assert answered_before == killed_at.done  # answers and progress committed together

    second = start_worker(tmp_path / "worker-b.log", lease_seconds=3)
    try:
        final = wait_for(lambda: (j := jobs.get_job(admin, job_id)).is_finished and j, 180, "the job", interval=0.3)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker-*.log")))
    assert final.status == JobStatus.succeeded, logs
    assert final.result["cached"] == answered_before  # the resumed attempt re-asked none of them
    assert final.result["cached"] + final.result["answered"] == n
    with read_session() as session:
        rows = session.execute(select(LLMRequest.status, LLMRequest.attempts)).all()
    assert len(rows) == n and {status for status, _ in rows} == {"ok"}
    assert {attempts for _, attempts in rows} == {1}, "a committed answer was asked for again"
