"""Engine set-up and transactions.

SQLite (the default) gets WAL, a busy timeout and foreign keys on every connection, and write
transactions start with `BEGIN IMMEDIATE`: the write lock is taken up front, so two writers queue
on the busy timeout instead of failing half-way with "database is locked" when a read transaction
tries to upgrade. Reads start a plain deferred transaction and never block the worker.
PostgreSQL is used as it comes, through DATABASE_URL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

from core import config

BUSY_TIMEOUT_MS = 30_000
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def sqlite_module():
    """The DB-API module for SQLite: a wheel that bundles a current SQLite when installed.

    Python's own sqlite3 links the system library (3.40 here); SQLite before 3.51.3 has a WAL
    bug that can corrupt a database when two processes write and checkpoint at once, which is
    exactly what the app and the worker do.
    """
    try:
        import pysqlite3.dbapi2 as module  # type: ignore[import-not-found]
    except ImportError:
        import sqlite3 as module
    return module


def compact_json(value) -> str:
    """JSON columns without the spaces json.dumps puts after each comma and colon, and with text as
    text (not \\u escapes): every stored request, meta and stats value is that much smaller."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _make_sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, json_serializer=compact_json)


def _make_sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        module=sqlite_module(),
        json_serializer=compact_json,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def get_engine(url: str | None = None) -> Engine:
    url = url or config.database_url()
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
        return _engines[url]


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def read_session(engine: Engine | None = None) -> Iterator[Session]:
    """A read-only unit of work; nothing is committed."""
    session = Session(engine or get_engine(), expire_on_commit=False)
    try:
        yield session
    finally:
        # close() ends the transaction without expiring what was loaded: objects read here stay
        # readable (detached) after the block.
        session.close()


# Checks every write transaction of this thread runs just before it commits (a worker's job lease: see
# core.jobs.JobContext.lease_bound). A check raises to roll the transaction back. Threads start with an
# empty context, so a check set in a worker's main thread never reaches its heartbeat thread.
_commit_checks: ContextVar[tuple[Callable[[Session], None], ...]] = ContextVar("commit_checks", default=())


@contextmanager
def commit_check(check: Callable[[Session], None]) -> Iterator[None]:
    """Run `check(session)` inside every write transaction of this thread (in this block) before it commits."""
    token = _commit_checks.set(_commit_checks.get() + (check,))
    try:
        yield
    finally:
        _commit_checks.reset(token)


@contextmanager
def write_session(engine: Engine | None = None) -> Iterator[Session]:
    """One write transaction: committed when the block ends, rolled back on any error."""
    engine = engine or get_engine()
    bind = engine.execution_options(sqlite_begin="IMMEDIATE") if is_sqlite(engine) else engine
    session = Session(bind, expire_on_commit=False)
    try:
        yield session
        for check in _commit_checks.get():
            check(session)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_rows(session, target, rows: list[dict]) -> None:
    """Many new rows in one executemany, their ids not read back. `target`: a model, or an INSERT statement
    (an upsert). Every row spells the same columns, and None means NULL, never the column's default.

    Two ORM habits make bulk inserts slow, both measured on 10,000 examples on PostgreSQL:
    - `session.add` asks for every new id (INSERT ... RETURNING over VALUES lists of 1,000 rows, which the
      driver parses placeholder by placeholder): 1.9 s, against 0.3 s here;
    - an ORM bulk insert leaves out the None values, so rows that differ in which values are None (a
      suggestion's label or OOT name, an example's target emotion) go in as many small batches: 1.5 s with
      the target emotion None in half the rows, against 0.33 s with `render_nulls`.
    """
    from sqlalchemy import insert

    if rows:
        session.execute(insert(target) if isinstance(target, type) else target, rows,
                        execution_options={"render_nulls": True})


def dialect_insert(session, table):
    """INSERT for `table` with the dialect's ON CONFLICT clauses (PostgreSQL and SQLite spell them alike)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(table)
