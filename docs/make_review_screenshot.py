"""Take the annotation view's screenshot: `.venv/bin/python -m docs.make_review_screenshot`.

Starts `streamlit run serve.py` on a fresh database, seeds a verification campaign over contextual
examples (tests.review_support), logs in as the annotator 'ann' in headless Chromium, selects two
labels (fear and nervousness, among the item's own choices), and saves docs/review.png.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.browser_support import ANNOTATOR, chromium, log_in, served_app
from tests.review_support import SCRIPT_UTTERANCE, seed_served_app

OUT = Path(__file__).resolve().parent / "review.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as home, served_app(Path(home)) as base, chromium() as browser:
        seed_served_app(home)
        page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        page.set_default_timeout(30_000)
        log_in(page, base, *ANNOTATOR, path="review")
        page.get_by_text(SCRIPT_UTTERANCE).wait_for()
        for label in ("fear", "nervousness"):  # the keys follow each item's own (shuffled) order of choices
            page.locator("button", has_text=label).first.click()
            page.locator("button[kind=primary]", has_text=label).wait_for()
        page.wait_for_timeout(2500)  # the rerun after the last key settles (no stale-page overlay)
        page.screenshot(path=str(OUT), full_page=True)
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
