"""The OpenAI-compatible engine over a list of endpoints: two real vLLM servers, one worker, both kept busy."""

from __future__ import annotations

import re
import urllib.request

import pytest
from sqlalchemy import select

from core import jobs, worker
from core.llm import factory
from core.llm import settings as engine_settings
from core.llm.jobs import enqueue_generation
from core.llm.runner import unanswered_requests
from db.models import JobStatus, LLMRequest
from db.session import read_session
from tests.llm_support import SERVED_NAME, running_server, teacher_dir

pytestmark = pytest.mark.slow

SUCCESS = re.compile(r'^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$', re.MULTILINE)


def answered_by(base_url: str) -> int:
    """Requests the server itself counts as finished (its Prometheus metrics), whatever the client says."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=10) as response:
        return int(sum(float(value) for value in SUCCESS.findall(response.read().decode())))


@pytest.fixture(scope="module")
def second_url(tmp_path_factory):
    """A second real vLLM server, started once for both databases' runs of the test (counts are taken as deltas)."""
    with running_server(tmp_path_factory.mktemp("vllm-second") / "second.log", model=teacher_dir()) as url:
        yield url


def test_one_worker_keeps_two_vllm_servers_busy_and_stores_each_answer_once(admin, openai_url, second_url):
    before = {url: answered_by(url) for url in (openai_url, second_url)}
    engine_settings.save(admin, engine_settings.EngineSettings(
        engine="openai", base_url=f"{openai_url}\n{second_url}", model=SERVED_NAME, max_concurrency=4))
    sent_before = factory.current_engine().requests_per_endpoint()  # the engine is kept while its settings are
    n = 24
    items = [{"messages": [{"role": "user", "content": f"Name one animal, number {i}."}],
              "sampling": {"max_tokens": 8, "seed": i}} for i in range(n)]
    job_id = enqueue_generation(admin, items, stage="endpoints")
    worker.serve(once=True)
    view = jobs.get_job(admin, job_id)
    served = {url: answered_by(url) - before[url] for url in (openai_url, second_url)}
    sent = {url: count - sent_before.get(url, 0)
            for url, count in factory.current_engine().requests_per_endpoint().items()}

    assert view.status == JobStatus.succeeded, view.error
    assert (view.result["answered"], view.done, view.total) == (n, n, n)
    assert sum(served.values()) == n and min(served.values()) >= n // 4, served  # both servers worked
    assert sent == {url.rstrip("/"): count for url, count in served.items()}  # what the engine says it sent
    with read_session() as session:
        rows = session.execute(select(LLMRequest.status, LLMRequest.attempts)).all()
    assert len(rows) == n and {status for status, _ in rows} == {"ok"} and {a for _, a in rows} == {1}
    assert unanswered_requests(admin, job_id) == []
