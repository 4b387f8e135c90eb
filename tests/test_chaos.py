"""The chaos bench, short: 3 SIGKILLs of workers running real jobs (the real engine behind a vLLM server)."""

from __future__ import annotations

import os

import pytest

from bench.chaos import ChaosSettings, run_chaos

pytestmark = pytest.mark.slow


# A vLLM server of its own (about 1 minute to start, then about 3 on an idle 2-core machine). The limit leaves
# room for a busy CI host: each restarted worker re-imports torch and the student model.
@pytest.mark.timeout(900)
def test_three_kills_lose_and_duplicate_nothing(monkeypatch):
    backend = "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
    if backend == "postgresql":
        monkeypatch.setenv("CHAOS_DATABASE_URL", os.environ["TEST_DATABASE_URL"])
    settings = ChaosSettings(kills=3, stories=1, characters=1, emotional=1, neutral=1, import_stories=300,
                             import_batch=10, min_gap_s=0.3, max_gap_s=1.5, timeout_s=600, backend=backend)
    figures = run_chaos(settings)
    assert figures["backend"] == backend
    assert (figures["kills"], figures["lost"], figures["duplicated"], figures["jobs_failed"]) == (3, 0, 0, 0), figures
    assert figures["export_identical"] is True, figures
    details = figures["details"]
    assert details["examples"] == details["reference_examples"] > 0
    assert details["inline_import_stories"] == 2 and details["positions_twice"] == 0
    assert details["workers_started"] == 3 + 3 and details["worker_exit_codes"] == [0, 0, 0]
