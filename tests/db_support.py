"""Database helpers shared by conftest and tests."""

from __future__ import annotations

from pathlib import Path


def use_new_sqlite(path: Path, monkeypatch) -> str:
    """Point the app at a new, migrated SQLite database at `path`; returns its URL."""
    from db.migrate import upgrade
    from db.session import dispose_engines

    url = f"sqlite:///{path}"
    monkeypatch.setenv("DATABASE_URL", url)
    dispose_engines()
    upgrade(url)
    return url
