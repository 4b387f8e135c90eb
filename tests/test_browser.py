"""The real flows in a real browser: Chromium driven by Playwright against `streamlit run serve.py`."""

from __future__ import annotations


import pytest

from tests.browser_support import ADMIN, ANNOTATOR, chromium, log_in, served_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("app-home")) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def sidebar_links(page) -> list[str]:
    nav = page.get_by_test_id("stSidebarNav")
    nav.wait_for()
    # Each link's text is "<icon name>\n\n<title>": keep the title.
    return [text.strip().split("\n")[-1] for text in nav.get_by_role("link").all_inner_texts()]


def test_a_wrong_password_is_refused(page, app_url):
    log_in(page, app_url, ADMIN[0], "not-the-password")
    page.get_by_text("Wrong username or password.").wait_for()
    assert page.get_by_test_id("stSidebarNav").count() == 0


def test_admin_logs_in_uploads_a_story_file_and_sees_it_listed(page, app_url, tmp_path):
    story = tmp_path / "lighthouse.txt"
    story.write_text("The Lighthouse Keeper\n\nMara kept the light on the cliff for forty winters. "
                     "When the supply boat did not come, she rationed the oil and sang to the gulls.\n")
    log_in(page, app_url, *ADMIN)
    assert "Admin" in sidebar_links(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Corpus").click()
    page.get_by_role("heading", name="Corpus").first.wait_for()
    page.locator("input[type=file]").first.set_input_files(str(story))
    page.get_by_text("lighthouse.txt").wait_for()  # the upload is done
    box = page.get_by_role("textbox", name="Name of the new corpus")
    box.fill("Browser corpus")
    box.press("Enter")  # commit the value before the click: a click right after fill can beat it
    page.get_by_role("button", name="Import").click()
    page.get_by_text("1 story added").first.wait_for()
    # Tables are canvas grids: their cells are in the DOM (for screen readers) but not "visible".
    page.locator("[role=gridcell]", has_text="Browser corpus").first.wait_for(state="attached")
    page.locator("[role=gridcell]", has_text="The Lighthouse Keeper").first.wait_for(state="attached")
    page.screenshot(path=str(tmp_path / "corpus.png"), full_page=True)


def test_an_annotator_cannot_open_an_admin_page_by_its_url(page, app_url):
    log_in(page, app_url, *ANNOTATOR)
    links = sidebar_links(page)
    assert "Review" in links and not {"Admin", "Generate", "Train", "Export", "Jobs"} & set(links)

    # Typing the admin page's address (still logged in by the session cookie): no admin content.
    log_in(page, app_url, *ANNOTATOR, path="admin")
    page.get_by_text("Page not found: the admin page is not open to the annotator role.").wait_for()
    assert sidebar_links(page)[0] == "Review"
    main_heading(page, "Review").wait_for()
    assert page.get_by_text("Create user").count() == 0
    assert page.get_by_role("tab", name="Users").count() == 0


def main_heading(page, name: str):
    return page.get_by_test_id("stMain").get_by_role("heading", name=name).first


def test_a_deep_link_survives_the_login_even_on_a_fresh_server(browser, tmp_path):
    # A fresh server matters: its first session is routed differently (Streamlit's pages/ folder).
    with served_app(tmp_path / "home") as base:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        log_in(page, base, *ADMIN, path="corpus")
        main_heading(page, "Corpus").wait_for()
        main_heading(page, "Corpora").wait_for()
        page.close()
