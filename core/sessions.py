"""Login sessions: what keeps a browser logged in across reloads, for how long, and what ends it.

`log_in` checks the rate limit, then the password (core.auth.authenticate), and opens a session:
a row of `auth_sessions` that expires after `config.session_hours()`. The browser tab that
logged in keeps the row's id in its Streamlit session state (which lives on the server). The
browser keeps a signed, HttpOnly cookie for reloads and new tabs; a Streamlit page cannot set a
cookie, so it hands the browser a one-time ticket that the browser trades for the cookie at a
small route (`redeem_ticket`, served by ui/cookies.py).

Every run of a page asks `actor_for_session` again: an expired or revoked session or a
deactivated user is logged out there, and the role is the one in the users table now, never the
one from the moment of login. core.auth revokes a user's sessions when their role changes, when
they are deactivated and when their password changes; logging out revokes one session.

Only hashes of tickets and tokens are stored. The cookie value is `token.signature` (HMAC-SHA256
under a key derived from the installation's secret), so a forged or mangled cookie is refused
before any database lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from core import auth, config
from db.models import AuthSession, LoginFailure, Role, User, utcnow
from db.session import read_session, write_session

COOKIE_NAME = "emoforge_session"
TICKET_LIFETIME = timedelta(minutes=2)  # from the page that logged in to the browser's cookie request
RATE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USERNAME = 5  # within RATE_WINDOW: then that username is refused until the window moves
MAX_FAILURES_PER_ADDRESS = 20  # within RATE_WINDOW, over all usernames tried from one address
KEEP_ENDED_SESSIONS = timedelta(days=30)  # expired and revoked rows are deleted after this


@dataclass(frozen=True)
class Login:
    """A successful login: who, their session, and the one-time ticket the browser trades for its cookie."""

    actor: auth.Actor
    session_id: int
    ticket: str
    ticket_expires_at: datetime


@dataclass(frozen=True)
class IssuedCookie:
    value: str
    max_age: int  # seconds: the cookie ends when its session expires


# --------------------------------------------------------------------------- logging in and out


def log_in(username: str, password: str, address: str | None = None) -> Login:
    """Check the rate limit and the password, then open a session. auth.AuthError (auth.LoginThrottled) if not.

    `address` is the client's IP address (None when unknown or local: no per-address limit then).
    """
    username = username.strip()[:64]
    _check_rate_limit(username, address)
    try:
        actor = auth.authenticate(username, password)
    except auth.AuthError:
        _record_failure(username, address)
        raise
    return start_session(actor, address)


def start_session(actor: auth.Actor, address: str | None = None) -> Login:
    """Open a session for an authenticated actor (log_in's last step; tests start one directly)."""
    now = utcnow()
    ticket = secrets.token_urlsafe(32)
    with write_session() as db:
        user = db.get(User, actor.id)
        if user is None or not user.active:
            raise auth.AuthError("Wrong username or password.")
        _purge(db, now)
        # A login that worked forgets the username's failed attempts (the address keeps its own).
        db.execute(delete(LoginFailure).where(LoginFailure.username == user.username))
        row = AuthSession(
            user_id=user.id, ticket_hash=_digest(ticket), ticket_expires_at=now + TICKET_LIFETIME,
            address=address, created_at=now, expires_at=now + timedelta(hours=config.session_hours()),
        )
        db.add(row)
        db.flush()
        return Login(actor, row.id, ticket, row.ticket_expires_at)


def log_out(session_id: int | None) -> None:
    """End one session (a browser tab's); already ended or unknown sessions are left as they are."""
    if session_id is None:
        return
    with write_session() as db:
        _revoke(db, AuthSession.id == session_id, "logout")


def log_out_cookie(cookie: str | None) -> None:
    """End the session a cookie points at (the browser's logout request)."""
    token = _verified_token(cookie)
    if token is None:
        return
    with write_session() as db:
        _revoke(db, AuthSession.token_hash == _digest(token), "logout")


def revoke_user_sessions(db: Session, user_id: int, reason: str) -> None:
    """End every session of a user, inside the caller's transaction (core.auth's user changes)."""
    _revoke(db, AuthSession.user_id == user_id, reason)


def _revoke(db: Session, which, reason: str) -> None:
    db.execute(
        update(AuthSession).where(which, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )


# --------------------------------------------------------------------------- who is asking


def actor_for_session(session_id: int | None) -> auth.Actor | None:
    """The actor of a live session with their role as stored now; None once it expired or ended."""
    if session_id is None:
        return None
    with read_session() as db:
        row = db.execute(
            select(User.id, User.username, User.role)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(AuthSession.id == session_id, *_live(utcnow()), User.active.is_(True))
        ).first()
    return auth.Actor(id=row.id, username=row.username, role=Role(row.role)) if row else None


def session_for_cookie(cookie: str | None) -> int | None:
    """The id of the live session a cookie belongs to, or None (missing, forged, expired, revoked)."""
    token = _verified_token(cookie)
    if token is None:
        return None
    with read_session() as db:
        return db.scalar(select(AuthSession.id).where(AuthSession.token_hash == _digest(token), *_live(utcnow())))


def redeem_ticket(ticket: str | None) -> IssuedCookie | None:
    """Trade a login's one-time ticket for the session cookie's value; None if unknown, used or late."""
    if not ticket:
        return None
    now = utcnow()
    token = secrets.token_urlsafe(32)
    with write_session() as db:
        row = db.scalar(
            select(AuthSession).where(AuthSession.ticket_hash == _digest(ticket), *_live(now),
                                      AuthSession.ticket_expires_at > now)
        )
        if row is None:
            return None
        row.token_hash, row.ticket_hash, row.ticket_expires_at = _digest(token), None, None
        return IssuedCookie(_signed(token), max(1, int((row.expires_at - now).total_seconds())))


def _live(now: datetime) -> tuple:
    return AuthSession.revoked_at.is_(None), AuthSession.expires_at > now


# --------------------------------------------------------------------------- rate limit


def _check_rate_limit(username: str, address: str | None) -> None:
    since = utcnow() - RATE_WINDOW
    with read_session() as db:
        by_name = db.execute(
            select(func.count(), func.min(LoginFailure.at))
            .where(LoginFailure.username == username, LoginFailure.at > since)
        ).one()
        by_address = db.execute(
            select(func.count(), func.min(LoginFailure.at))
            .where(LoginFailure.address == address, LoginFailure.at > since)
        ).one() if address else (0, None)
    if by_name[0] >= MAX_FAILURES_PER_USERNAME:
        raise auth.LoginThrottled(f"Too many failed logins for this username. Try again in {_wait(by_name[1])}.")
    if by_address[0] >= MAX_FAILURES_PER_ADDRESS:
        raise auth.LoginThrottled(f"Too many failed logins from your address. Try again in {_wait(by_address[1])}.")


def _wait(oldest: datetime) -> str:
    minutes = max(1, math.ceil((oldest + RATE_WINDOW - utcnow()).total_seconds() / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _record_failure(username: str, address: str | None) -> None:
    now = utcnow()
    with write_session() as db:
        db.execute(delete(LoginFailure).where(LoginFailure.at < now - RATE_WINDOW))
        db.add(LoginFailure(username=username, address=address, at=now))


def _purge(db: Session, now: datetime) -> None:
    """Delete sessions that ended long ago (kept a while to show when and why they ended)."""
    cutoff = now - KEEP_ENDED_SESSIONS
    db.execute(delete(AuthSession).where(or_(AuthSession.expires_at < cutoff, AuthSession.revoked_at < cutoff)))


# --------------------------------------------------------------------------- cookie values


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _signing_key() -> bytes:
    # Derived, so the cookie signature and the stored-key encryption never share a key.
    return hmac.new(config.secret_key(), b"emoforge session cookie", hashlib.sha256).digest()


def _signature(token: str) -> str:
    mac = hmac.new(_signing_key(), token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _signed(token: str) -> str:
    return f"{token}.{_signature(token)}"


def _verified_token(cookie: str | None) -> str | None:
    """The token of a correctly signed cookie value, else None."""
    if not cookie or cookie.count(".") != 1:
        return None
    token, signature = cookie.split(".")
    if not token or not hmac.compare_digest(signature.encode(), _signature(token).encode()):
        return None
    return token
