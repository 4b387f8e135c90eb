"""The Review page in a real browser: two annotators in two browser contexts answer the same
campaign with the keyboard; generated text stays text; an annotator is refused on an admin URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.browser_support import ANNOTATOR, ROOT, chromium, log_in, served_app
from tests.review_support import SCRIPT_UTTERANCE, seed_served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 30_000
EVE = ("eve", "eve-pass-1234")


def in_app_db(home, body: str):
    """Run `body` (which sets `result`) against the served app's database; its JSON result."""
    env = dict(os.environ)
    env.update({"EMOFORGE_HOME": str(home), "DATABASE_URL": f"sqlite:///{home / 'emoforge.db'}"})
    script = ("import json\nfrom sqlalchemy import select, func\nfrom db.session import read_session\n"
              "from db.models import CampaignItem, Response, ResponseVersion\nwith read_session() as s:\n"
              + "".join(f"    {line}\n" for line in body.splitlines()) + "print(json.dumps(result))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def submitted_counts(home) -> list[tuple[int, str]]:
    rows = in_app_db(home, "result = [list(r) for r in s.execute(select(CampaignItem.submitted_count, "
                           "CampaignItem.status).order_by(CampaignItem.position))]")
    return [tuple(row) for row in rows]


def first_item_choices(home) -> list[str]:
    return in_app_db(home, "result = s.scalar(select(CampaignItem.payload).where(CampaignItem.position == 0))['choices']")


def response_states(home) -> tuple[list[str], int]:
    """(the distinct statuses of every response, how many replaced versions the history holds)."""
    return tuple(in_app_db(home, "result = [sorted({str(getattr(x, 'value', x)) for x in s.scalars(select(Response.status))}), "
                                 "s.scalar(select(func.count()).select_from(ResponseVersion))]"))


def key_of(choices: list[str], name: str) -> str:
    """The digit that toggles `name`: keys 1-9 follow the item's own order of choices."""
    return str(choices.index(name) + 1)


def open_queue(browser, base: str, user: tuple[str, str]):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, base, *user, path="review")
    page.get_by_text(SCRIPT_UTTERANCE).wait_for()
    return context, page, dialogs


def press(page, key: str) -> None:
    page.get_by_test_id("stMain").get_by_role("heading", name="Review").first.click()  # focus on the page
    page.keyboard.press(key)


def test_two_annotators_answer_with_the_keyboard(tmp_path):
    home = tmp_path / "home"
    with served_app(home) as base, chromium() as browser:
        seed_served_app(home)
        ann_context, ann, ann_dialogs = open_queue(browser, base, ANNOTATOR)
        eve_context, eve, eve_dialogs = open_queue(browser, base, EVE)

        # The script tag is shown as text and never runs.
        assert ann.locator("script", has_text="alert(1)").count() == 0 and not ann_dialogs and not eve_dialogs

        # Per-item choices: the teacher's top 5, a distractor and "none"; keys 1-9 follow their order.
        choices = first_item_choices(home)
        assert len(choices) == 7 and choices[-1] == "none" and {"fear", "nervousness", "pride"} <= set(choices)
        for name in choices:
            ann.locator("button", has_text=name).first.wait_for()
        press(ann, key_of(choices, "fear"))
        ann.locator("button[kind=primary]", has_text="fear").wait_for()
        press(ann, key_of(choices, "nervousness"))
        ann.locator("button[kind=primary]", has_text="nervousness").wait_for()
        press(ann, "S")
        ann.get_by_text("Forty winters, and the sea still surprises me.").wait_for()

        press(eve, key_of(choices, "fear"))
        eve.locator("button[kind=primary]", has_text="fear").wait_for()
        press(eve, "S")
        eve.get_by_text("Forty winters, and the sea still surprises me.").wait_for()
        assert submitted_counts(home)[0] == (2, "completed")

        # → skips, ← goes back to the submitted item with its answers.
        press(eve, "ArrowRight")
        eve.get_by_text("Thank you for coming all this way.").wait_for()
        press(eve, "ArrowLeft")
        eve.get_by_text("Forty winters, and the sea still surprises me.").wait_for()
        press(eve, "ArrowLeft")
        eve.get_by_text(SCRIPT_UTTERANCE).wait_for()
        eve.get_by_text("a change is saved as a new version").wait_for()
        eve.locator("button[kind=primary]", has_text="fear").wait_for()

        # A toggle on the submitted item is a new submitted version; Skip and Back never make it a draft.
        press(eve, key_of(choices, "pride"))
        eve.locator("button[kind=primary]", has_text="pride").wait_for()
        eve.get_by_text("Saved as a new version of your submitted answer.").wait_for()
        press(eve, "ArrowRight")  # the submitted item stays submitted; the queue's next item opens
        eve.get_by_text("Thank you for coming all this way.").wait_for()
        press(eve, "ArrowLeft")
        eve.get_by_text("Forty winters, and the sea still surprises me.").wait_for()
        press(eve, "ArrowLeft")
        eve.get_by_text(SCRIPT_UTTERANCE).wait_for()
        eve.locator("button[kind=primary]", has_text="pride").wait_for()
        statuses, history = response_states(home)
        assert "submitted" in statuses and history == 1
        drafts = in_app_db(home, "result = [r.item_id for r in s.scalars(select(Response).where(Response.status == 'draft'))]")
        first_id = in_app_db(home, "result = s.scalar(select(CampaignItem.id).where(CampaignItem.position == 0))")
        assert first_id not in drafts  # the submitted item has no draft answer
        assert submitted_counts(home)[0] == (2, "completed")
        assert submitted_counts(home)[1:] == [(0, "pending"), (0, "pending")]
        assert not ann_dialogs and not eve_dialogs
        ann_context.close()

        # An annotator typing an admin address gets no admin content.
        log_in(eve, base, *EVE, path="admin")
        eve.get_by_text("Page not found: the admin page is not open to the annotator role.").wait_for()
        assert eve.get_by_text("Create user").count() == 0
        eve_context.close()
