"""Generate from the browser, for real: Chromium -> Streamlit -> job -> worker -> vLLM -> database -> page."""

from __future__ import annotations

import re

import pytest

from tests.browser_support import ADMIN, chromium, log_in, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]


def test_admin_plans_launches_and_follows_a_run_to_its_examples(tmp_path):
    with served_app(tmp_path / "home", with_worker=True) as base, chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(30_000)
        log_in(page, base, *ADMIN, path="generate")
        page.get_by_role("heading", name="Generate").first.wait_for()
        for label, value in (("How many stories", "1"), ("Characters per story", "1"),
                             ("Emotional utterances per character", "2"), ("Neutral utterances per character", "0")):
            box = page.get_by_label(label, exact=True).first
            box.fill(value)
            box.press("Enter")
        # The default preset (Emo Pillars, paper): one character call, ONE utterance call, 2 label calls and a
        # context, clean and rewrite call for a third of the utterances (rounded): 7 at most, before any run
        # of this model has been measured.
        page.get_by_text(re.compile(r"\b7 LLM calls")).wait_for()
        page.get_by_role("button", name="Launch").click()
        page.get_by_text(re.compile(r"Run #1 queued")).wait_for()
        page.get_by_role("tab", name="Runs", exact=True).click()
        # the worker loads vLLM and runs the six stages; the stage table refreshes itself
        try:
            page.get_by_text("Status: succeeded").wait_for(timeout=600_000)
        except Exception:
            log = (tmp_path / "home" / "worker.log").read_text(errors="replace")[-3000:]
            status = page.get_by_text(re.compile("^Status:")).all_inner_texts()
            raise AssertionError(f"run did not succeed; page says {status}; worker log ends:\n{log}") from None
        # the run kept the estimate it was launched with, and says how far off it was
        page.get_by_text(re.compile(r"Estimated before launch: 7 calls, .* spent: \d+ calls")).wait_for()
        page.get_by_role("radio", name="Contextual").check(force=True)
        grid = page.locator("[data-testid=stDataFrame]").last
        grid.wait_for()
        assert page.get_by_text("Contextual examples").count() >= 1
