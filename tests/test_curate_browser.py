"""Curation in a real browser: import a labelled file, curate every match, freeze a version."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from tests.browser_support import ADMIN, ROOT, chromium, log_in, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 30_000


def test_import_curate_in_bulk_and_freeze(tmp_path):
    labelled = tmp_path / "tiny.csv"
    labelled.write_text("text,labels\nWhat a lovely day!,joy\nLeave me alone.,\"anger, annoyance\"\n"
                        "I miss you.,sadness\n")
    with served_app(tmp_path / "home") as base, chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        log_in(page, base, *ADMIN, path="export")
        page.get_by_role("heading", name="Export").first.wait_for()
        page.get_by_text("Import a labelled data set").click()
        page.locator("input[type=file]").first.set_input_files(str(labelled))
        page.get_by_text("tiny.csv").wait_for()
        box = page.get_by_role("textbox", name="Data set name")
        box.fill("tiny")
        box.press("Enter")  # commit the value before the click: a click right after fill can beat it
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("3 examples added from").first.wait_for()

        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Curate").click()
        page.get_by_text("3 matching examples").first.wait_for()
        page.get_by_role("textbox", name="Text search (utterance or context)").fill("miss")
        page.keyboard.press("Enter")
        page.get_by_text("1 matching examples").first.wait_for()
        page.get_by_text("reject", exact=True).first.click()
        page.get_by_text("Yes, reject all 1 matching examples").click()
        page.get_by_role("button", name="Apply to all matches").click()
        page.get_by_text("reject: 1 examples changed").first.wait_for()

        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Export").click()
        box = page.get_by_role("textbox", name="Version name")
        box.fill("browser version")
        box.press("Enter")  # commit the value before the click: a click right after fill can beat it
        page.get_by_role("button", name="Freeze version").click()
        page.get_by_text("frozen: 2 examples").first.wait_for()  # the rejected one stays out

        page.get_by_role("button", name="Export (worker job)").click()
        page.get_by_text("queued").first.wait_for()
        env = {**os.environ, "EMOFORGE_HOME": str(tmp_path / "home"),
               "DATABASE_URL": f"sqlite:///{tmp_path / 'home' / 'emoforge.db'}", "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-m", "core.worker", "--once"], cwd=ROOT, env=env, check=True, timeout=120)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Curate").click()  # a rerun, same session
        page.get_by_text("matching examples").first.wait_for()
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Export").click()
        page.get_by_role("button", name="Download zip").wait_for()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download zip").click()
        saved = tmp_path / "download.zip"
        download.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            assert {"README.md", "jsonl/train.jsonl", "hf_datasets/dataset_dict.json"} <= set(archive.namelist())
            assert "# browser version" in archive.read("README.md").decode()
        context.close()
