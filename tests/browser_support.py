"""Serve the real app (`streamlit run serve.py`) on a free 127.0.0.1 port and drive it with Chromium.

Playwright drives Debian's /usr/bin/chromium; it never downloads a browser of its own.
Used by tests/test_browser.py and docs/make_screenshot.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from core.processes import free_port, stop, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ADMIN = ("admin", "admin-pass-123")
ANNOTATOR = ("ann", "ann-pass-1234")


def prepare_home(home: Path) -> dict[str, str]:
    """A fresh database with the defaults, an admin and an annotator; returns the app's environment."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EMOFORGE_HOME": str(home), "DATABASE_URL": f"sqlite:///{home / 'emoforge.db'}",
           "HF_HUB_OFFLINE": "1"}
    script = (
        "from core import auth, bootstrap\n"
        "bootstrap.prepare_database()\n"
        f"auth.ensure_admin({ADMIN[0]!r}, {ADMIN[1]!r})\n"
        f"admin = auth.authenticate({ADMIN[0]!r}, {ADMIN[1]!r})\n"
        f"auth.create_user(admin, {ANNOTATOR[0]!r}, {ANNOTATOR[1]!r}, 'annotator')\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True)
    return env


@contextmanager
def served_app(home: Path, with_worker: bool = False):
    """Yield the base URL of a running app on a fresh database (and a worker); stop them afterwards."""
    env = prepare_home(home)
    if with_worker:  # the default teacher, converted once for the whole test run (not per home)
        from tests.llm_support import teacher_dir

        env["EMOFORGE_TEACHER_DIR"] = teacher_dir()
    worker_log = (home / "worker.log").open("wb") if with_worker else None
    worker = subprocess.Popen([sys.executable, "-m", "core.worker"], cwd=ROOT, env=env, stdout=worker_log,
                              stderr=subprocess.STDOUT) if with_worker else None
    port = free_port()
    log = (home / "streamlit.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/_stcore/health", process, home / "streamlit.log", timeout=60,
                           what="streamlit", interval=0.3)
        yield base
    finally:
        stop(process, timeout=10)
        log.close()
        if worker is not None:
            stop(worker, timeout=30)
            worker_log.close()


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page, base: str, username: str, password: str, path: str = "") -> None:
    """Open `path` as `username`: through the login form, unless the browser's session cookie
    already logs that user in (another user's session is logged out first)."""
    page.goto(f"{base}/{path}")
    form = page.get_by_role("textbox", name="Username")
    signed_in = page.get_by_test_id("stSidebar").get_by_text("Logged in as ")
    form.or_(signed_in).first.wait_for()
    if form.count() == 0:
        if signed_in.inner_text().startswith(f"Logged in as {username} ("):
            return
        page.get_by_role("button", name="Log out").click()
        form.wait_for()
        page.goto(f"{base}/{path}")
    form.fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
