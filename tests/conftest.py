"""Shared fixtures: every test gets a fresh, migrated database of its own.

Core tests run on SQLite, and on PostgreSQL too when TEST_DATABASE_URL is set (`.ci/run` sets it
when a server answers on 127.0.0.1:5432). Each PostgreSQL test gets its own schema.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.db_support import use_new_sqlite

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


def _postgres_schema_url(base_url: str, schema: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}"


def _drop_postgres_schema(base_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """Argon2 at production cost takes ~50 ms a hash; tests are not about its cost, only its use."""
    from argon2 import PasswordHasher

    from core import auth

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path, monkeypatch) -> str:
    """A migrated, empty database; DATABASE_URL and EMOFORGE_HOME point at it. Yields the URL."""
    from db.migrate import upgrade
    from db.session import dispose_engines

    monkeypatch.setenv("EMOFORGE_HOME", str(tmp_path / "home"))
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        url = _postgres_schema_url(os.environ["TEST_DATABASE_URL"], schema)
    monkeypatch.setenv("DATABASE_URL", url)
    dispose_engines()
    upgrade(url)
    yield url
    dispose_engines()
    if schema:
        _drop_postgres_schema(os.environ["TEST_DATABASE_URL"], schema)


@pytest.fixture
def sqlite_database(tmp_path, monkeypatch) -> str:
    """SQLite only, for tests of SQLite-specific behaviour."""
    from db.session import dispose_engines

    monkeypatch.setenv("EMOFORGE_HOME", str(tmp_path / "home"))
    yield use_new_sqlite(tmp_path / "test.db", monkeypatch)
    dispose_engines()


@pytest.fixture
def admin(database):
    """An admin actor in the test database (password 'admin-pass-123')."""
    from core import auth

    auth.ensure_admin("admin", "admin-pass-123")
    return auth.authenticate("admin", "admin-pass-123")


@pytest.fixture
def annotator(admin):
    from core import auth

    auth.create_user(admin, "ann", "ann-pass-1234", "annotator")
    return auth.authenticate("ann", "ann-pass-1234")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with a clear message when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


# --------------------------------------------------------------------------- real LLM engines


@pytest.fixture(scope="session")
def vllm_engine():
    """vLLM in this process on the default teacher (loaded once for the whole run)."""
    from core.llm.engines import VLLMEngine
    from tests.llm_support import teacher_dir

    engine = VLLMEngine(teacher_dir(), max_model_len=2048)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def openai_url(tmp_path_factory):
    """A real vLLM OpenAI-compatible server on a free 127.0.0.1 port; yields its /v1 base URL."""
    from tests.llm_support import running_server, teacher_dir

    with running_server(tmp_path_factory.mktemp("vllm-server") / "server.log", model=teacher_dir()) as url:
        yield url
