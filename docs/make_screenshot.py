"""Take the README's screenshot from the real app: `.venv/bin/python -m docs.make_screenshot`.

Starts `streamlit run serve.py` on a fresh database with the demo corpus, logs in as admin in
headless Chromium, opens the Corpus page and saves docs/screenshot.png.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.browser_support import ADMIN, chromium, log_in, served_app

OUT = Path(__file__).resolve().parent / "screenshot.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as home, served_app(Path(home)) as base, chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1500}).new_page()
        page.set_default_timeout(30_000)
        log_in(page, base, *ADMIN, path="corpus")
        page.get_by_role("heading", name="Corpora").first.wait_for()
        page.wait_for_timeout(1500)  # let the tables paint
        page.screenshot(path=str(OUT))
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
