"""The session cookie in a real browser: a login survives a reload, a logout does not, and page
scripts cannot read the cookie (Chromium driven by Playwright against `streamlit run serve.py`)."""

from __future__ import annotations

import time

import pytest

from core.sessions import COOKIE_NAME
from tests.browser_support import ANNOTATOR, chromium, log_in, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 30_000


def session_cookie(context, wait_s: float = 10.0) -> dict | None:
    """The browser's session cookie, waiting a little for the page's request that sets it."""
    deadline = time.monotonic() + wait_s
    while True:
        found = [c for c in context.cookies() if c["name"] == COOKIE_NAME]
        if found or time.monotonic() > deadline:
            return found[0] if found else None
        time.sleep(0.2)


def main_heading(page, name: str):
    return page.get_by_test_id("stMain").get_by_role("heading", name=name).first


def test_a_login_survives_a_reload_and_a_logout_does_not(tmp_path):
    with served_app(tmp_path / "home") as base, chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        logged_in = page.get_by_text(f"Logged in as {ANNOTATOR[0]} (annotator)")

        log_in(page, base, *ANNOTATOR, path="review")
        logged_in.wait_for()
        cookie = session_cookie(context)
        assert cookie is not None, "the page did not get its session cookie"
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert cookie["expires"] > time.time() + 11 * 3600  # lasts as long as its 12-hour session
        assert COOKIE_NAME not in page.evaluate("document.cookie")  # out of reach of page scripts

        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Playground").click()
        main_heading(page, "Playground").wait_for()
        page.reload()
        main_heading(page, "Playground").wait_for()  # still logged in, in the same place
        logged_in.wait_for()
        assert page.url.rstrip("/").endswith("/playground")
        assert page.get_by_role("textbox", name="Password").count() == 0

        page.get_by_role("button", name="Log out").click()
        page.get_by_role("textbox", name="Password").wait_for()
        deadline = time.monotonic() + 10
        while session_cookie(context, wait_s=0) is not None and time.monotonic() < deadline:
            time.sleep(0.2)  # the page asks the browser to drop the cookie
        assert session_cookie(context, wait_s=0) is None

        page.reload()
        page.get_by_role("textbox", name="Password").wait_for()  # asked for the password again
        assert logged_in.count() == 0
        context.close()
