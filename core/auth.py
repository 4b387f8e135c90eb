"""Users, passwords and roles. Every rule about who may do what lives here, not in the pages.

Passwords are hashed with Argon2id (argon2-cffi); the clear text is never stored or logged.
Core functions take an `Actor` (who is asking) and call `require_*` before they act, so hiding a
menu entry is a convenience, never the protection. Logins from the browser go through
core.sessions (rate limit, session, cookie); changing a user's role, active flag or password here
ends their sessions. Every public core function that changes data
takes an actor first (tests/test_roles.py enumerates them). Code that runs on its own (a worker's
job handler, set-up) passes `system_actor(...)`: an admin-role actor flagged `system`, acting on
behalf of the user who asked (the job's creator), so rows it writes are still credited to them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from core import sessions  # imports this module back: both read each other's names only at call time
from db.models import Role, User, utcnow
from db.session import read_session, write_session

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 8


class AuthError(Exception):
    """Login refused (same message for unknown users and wrong passwords)."""


class LoginThrottled(AuthError):
    """Too many failed logins for a username or from an address (core.sessions); says when to retry."""


class PermissionDenied(Exception):
    """The actor's role does not allow this."""


@dataclass(frozen=True)
class Actor:
    """Who is asking: a plain value handed from the page to core functions."""

    id: int | None
    username: str
    role: Role
    system: bool = False  # a worker or set-up acting on its own; `id` is who it acts for (may be None)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


def system_actor(on_behalf_of: int | None = None) -> Actor:
    """The actor of internal work (job handlers, set-up). Only code constructs it: no login returns it."""
    return Actor(id=on_behalf_of, username="system", role=Role.admin, system=True)


@dataclass(frozen=True)
class UserView:
    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None


# Pages each role may open. Keys are the page ids used by app.py's navigation.
PAGE_ROLES: dict[str, frozenset[Role]] = {
    "dashboard": frozenset({Role.admin}),
    "corpus": frozenset({Role.admin}),
    "generate": frozenset({Role.admin}),
    "review": frozenset({Role.admin, Role.annotator}),
    "curate": frozenset({Role.admin}),
    "export": frozenset({Role.admin}),
    "train": frozenset({Role.admin}),
    "playground": frozenset({Role.admin, Role.annotator}),
    "jobs": frozenset({Role.admin}),
    "admin": frozenset({Role.admin}),
}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _to_actor(user: User) -> Actor:
    return Actor(id=user.id, username=user.username, role=Role(user.role))


def _to_view(user: User) -> UserView:
    return UserView(user.id, user.username, Role(user.role), user.active, user.created_at, user.last_login_at)


def can_open(actor: Actor | None, page: str) -> bool:
    return actor is not None and actor.role in PAGE_ROLES.get(page, frozenset())


def require_page(actor: Actor | None, page: str) -> Actor:
    if actor is None:
        raise PermissionDenied("Please log in.")
    if not can_open(actor, page):
        raise PermissionDenied(f"The {actor.role.value} role cannot open the {page} page.")
    return actor


def require_admin(actor: Actor | None) -> Actor:
    if actor is None or not actor.is_admin:
        raise PermissionDenied("Only an admin can do this.")
    return actor


def _check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def _check_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 64 or any(ch.isspace() for ch in username):
        raise ValueError("A username is 1 to 64 characters without spaces.")
    return username


def authenticate(username: str, password: str) -> Actor:
    """The actor for a username and password, or AuthError. Rehashes on a parameter upgrade.

    Argon2 (tens of milliseconds of CPU by design) runs outside any transaction: inside a write
    transaction it would hold SQLite's write lock, so a burst of logins would stall every other
    writer, worker heartbeats included. An unknown username is checked against a dummy hash, so
    it costs the same work as a known one and the answer's timing says nothing about who exists.
    """
    username = username.strip()
    with read_session() as session:
        user = session.scalar(select(User).where(User.username == username))
        known = (user.id, user.password_hash, user.active) if user is not None else None
    if known is None:
        verify_password(_dummy_hash(), password)
        raise AuthError("Wrong username or password.")
    user_id, stored_hash, active = known
    if not verify_password(stored_hash, password) or not active:
        raise AuthError("Wrong username or password.")
    upgraded = hash_password(password) if _hasher.check_needs_rehash(stored_hash) else None
    with write_session() as session:
        user = session.get(User, user_id)
        if user is None or not user.active:  # removed or deactivated while we were hashing
            raise AuthError("Wrong username or password.")
        if upgraded is not None and user.password_hash == stored_hash:
            user.password_hash = upgraded
        user.last_login_at = utcnow()
        return _to_actor(user)


_dummy: tuple[PasswordHasher, str] | None = None


def _dummy_hash() -> str:
    """A hash of a random password made with the current hasher's parameters (so checking it costs
    what checking a real one does). Made once per hasher."""
    global _dummy
    if _dummy is None or _dummy[0] is not _hasher:
        _dummy = (_hasher, _hasher.hash(secrets.token_urlsafe(16)))
    return _dummy[1]


def create_user(actor: Actor | None, username: str, password: str, role: Role | str = Role.annotator) -> UserView:
    require_admin(actor)
    return _insert_user(username, password, Role(role))


def _insert_user(username: str, password: str, role: Role) -> UserView:
    username = _check_username(username)
    _check_password_strength(password)
    password_hash = hash_password(password)  # outside the write transaction (see authenticate)
    with write_session() as session:
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise ValueError(f"The username {username!r} is taken.")
        user = User(username=username, password_hash=password_hash, role=role)
        session.add(user)
        session.flush()
        return _to_view(user)


def list_users(actor: Actor | None) -> list[UserView]:
    require_admin(actor)
    with read_session() as session:
        return [_to_view(u) for u in session.scalars(select(User).order_by(User.username))]


def update_user(
    actor: Actor | None, user_id: int, *, role: Role | str | None = None, active: bool | None = None
) -> UserView:
    require_admin(actor)
    with write_session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise ValueError(f"No user with id {user_id}.")
        new_role = Role(role) if role is not None else Role(user.role)
        new_active = user.active if active is None else active
        if user.role == Role.admin and (new_role != Role.admin or not new_active):
            other_admins = session.scalar(
                select(func.count()).select_from(User).where(
                    User.role == Role.admin, User.active.is_(True), User.id != user.id
                )
            )
            if not other_admins:
                raise ValueError("The last active admin cannot be demoted or deactivated.")
        if new_role != user.role:
            sessions.revoke_user_sessions(session, user.id, "role change")
        elif user.active and not new_active:
            sessions.revoke_user_sessions(session, user.id, "deactivated")
        user.role, user.active = new_role, new_active
        return _to_view(user)


def set_password(actor: Actor | None, user_id: int, new_password: str) -> None:
    """Admins reset anyone's password; everyone may change their own."""
    if actor is None or (actor.id != user_id and not actor.is_admin):
        raise PermissionDenied("You can only change your own password.")
    _check_password_strength(new_password)
    new_hash = hash_password(new_password)  # outside the transaction, as in authenticate
    with write_session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise ValueError(f"No user with id {user_id}.")
        user.password_hash = new_hash
        # Whoever knew the old password may hold a session: every session of the user ends.
        sessions.revoke_user_sessions(session, user.id, "password change")


def ensure_admin(username: str, password: str | None) -> str | None:
    """Create the first admin if there is no admin yet.

    Returns the generated password (to be printed once) when none was given, else None.
    Does nothing, and returns None, when an admin already exists.
    """
    with read_session() as session:
        if session.scalar(select(User.id).where(User.role == Role.admin).limit(1)) is not None:
            return None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    _insert_user(username, password, Role.admin)
    return generated
