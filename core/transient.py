"""Transient database errors: which errors pass by themselves, and retrying through them with backoff.

A worker meets them in normal life: SQLite answers "database is locked" when a writer held the lock past
the busy timeout, PostgreSQL drops every connection when it restarts. Such an error says nothing about the
job, so the worker waits and tries again instead of failing the job or stopping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, TimeoutError

log = logging.getLogger("emoforge.worker")
T = TypeVar("T")

# Words of the driver messages that mean "try again later", not "this statement is wrong".
TRANSIENT_MESSAGES = (
    "database is locked", "database table is locked", "database is busy",
    "server closed the connection", "terminating connection", "connection refused", "could not connect",
    "the database system is starting up", "the database system is shutting down",
    "the database system is in recovery mode", "connection is closed", "connection already closed",
    "ssl connection has been closed", "consuming input failed", "connection timed out",
)
FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 30.0


def is_transient(error: BaseException) -> bool:
    """True for a lost connection, a restarting server or a busy lock: worth retrying unchanged."""
    if isinstance(error, (DisconnectionError, TimeoutError)):
        return True
    if isinstance(error, InterfaceError) or (isinstance(error, DBAPIError) and error.connection_invalidated):
        return True  # the connection itself is gone; a new one from the pool will do
    if isinstance(error, OperationalError):
        return any(words in str(error).lower() for words in TRANSIENT_MESSAGES)
    return False


def backoff(attempt: int) -> float:
    """Seconds to wait before try `attempt + 1`: doubling from FIRST_WAIT_S up to LONGEST_WAIT_S."""
    return min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** max(0, attempt))


def retrying(action: Callable[[], T], what: str, *, give_up_after_s: float | None = None,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `action`, retrying transient database errors with backoff (each one logged).

    Other errors pass through at once. With `give_up_after_s`, the last transient error is raised
    once that much time has gone by; without it, retries go on until the database answers.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return action()
        except Exception as error:
            if not is_transient(error):
                raise
            wait = backoff(attempt)
            if give_up_after_s is not None and time.monotonic() - started + wait > give_up_after_s:
                log.error("%s: giving up after %d tries: %s", what, attempt + 1, _first_line(error))
                raise
            log.warning("%s: transient database error (%s); retry %d in %.1f s",
                        what, _first_line(error), attempt + 1, wait)
            sleep(wait)
            attempt += 1


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
