"""Login sessions (core/sessions.py) and the cookie routes (ui/cookies.py): expiry, revocation,
the role read from the database, the login rate limit, equal work for unknown usernames."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core import auth, sessions
from db.models import AuthSession, LoginFailure, Role, User, utcnow
from db.session import read_session, write_session

ADMIN_PASSWORD = "admin-pass-123"
ANN_PASSWORD = "ann-pass-1234"


def cookie_of(login: sessions.Login) -> str:
    issued = sessions.redeem_ticket(login.ticket)
    assert issued is not None
    return issued.value


def session_row(session_id: int) -> AuthSession:
    with read_session() as db:
        return db.get(AuthSession, session_id)


def move_back(model, column, by: timedelta) -> None:
    """Shift every row's timestamp `column` into the past (time passing, without sleeping)."""
    with write_session() as db:
        for row in db.scalars(select(model)):
            if getattr(row, column) is not None:
                setattr(row, column, getattr(row, column) - by)


# --------------------------------------------------------------------------- sessions and cookies


def test_a_login_opens_a_session_that_its_cookie_finds_again(admin):
    login = sessions.log_in("admin", ADMIN_PASSWORD, "10.0.0.1")
    assert login.actor == admin
    assert sessions.actor_for_session(login.session_id) == admin

    issued = sessions.redeem_ticket(login.ticket)
    assert issued is not None and 11.9 * 3600 < issued.max_age <= 12 * 3600  # ends with its session
    assert sessions.session_for_cookie(issued.value) == login.session_id
    assert sessions.redeem_ticket(login.ticket) is None  # a ticket is good for one cookie only

    row = session_row(login.session_id)
    assert row.address == "10.0.0.1" and row.ticket_hash is None
    # Only hashes are stored: neither the ticket nor the cookie's token is in the row.
    assert login.ticket not in (row.token_hash, row.ticket_hash) and issued.value.split(".")[0] != row.token_hash


def test_forged_mangled_and_foreign_cookies_are_refused(admin, monkeypatch):
    login = sessions.log_in("admin", ADMIN_PASSWORD)
    cookie = cookie_of(login)
    token, signature = cookie.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (None, "", token, f"{token}.", f".{signature}", f"{token}.{flipped}", f"x{token}.{signature}",
                f"{cookie}.more", "é.ü"):
        assert sessions.session_for_cookie(bad) is None, bad
    # The right token signed under another installation's key is refused too.
    monkeypatch.setenv("EMOFORGE_SECRET_KEY", "another-installation-key")
    assert sessions.session_for_cookie(cookie) is None


def test_sessions_and_tickets_expire(admin, monkeypatch):
    monkeypatch.setenv("EMOFORGE_SESSION_HOURS", "2")
    login = sessions.log_in("admin", ADMIN_PASSWORD)
    row = session_row(login.session_id)
    assert row.expires_at - row.created_at == timedelta(hours=2)
    cookie = cookie_of(login)

    move_back(AuthSession, "expires_at", timedelta(hours=2, seconds=1))
    assert sessions.actor_for_session(login.session_id) is None
    assert sessions.session_for_cookie(cookie) is None

    late = sessions.log_in("admin", ADMIN_PASSWORD)
    move_back(AuthSession, "ticket_expires_at", sessions.TICKET_LIFETIME)
    assert sessions.redeem_ticket(late.ticket) is None  # the browser came too late for its cookie
    assert sessions.actor_for_session(late.session_id) == admin  # the tab itself stays logged in


def test_logging_out_ends_the_session_for_the_tab_and_the_cookie(admin):
    tab = sessions.log_in("admin", ADMIN_PASSWORD)
    cookie = cookie_of(tab)
    sessions.log_out(tab.session_id)
    assert sessions.actor_for_session(tab.session_id) is None
    assert sessions.session_for_cookie(cookie) is None
    assert session_row(tab.session_id).revoked_reason == "logout"

    other = sessions.log_in("admin", ADMIN_PASSWORD)
    sessions.log_out_cookie(cookie_of(other))  # the browser's logout request, by its cookie
    assert sessions.actor_for_session(other.session_id) is None


def test_the_role_is_read_from_the_database_on_every_check(admin, annotator):
    login = sessions.log_in("ann", ANN_PASSWORD)
    assert sessions.actor_for_session(login.session_id).role == Role.annotator
    with write_session() as db:  # changed behind core.auth's back: nothing was cached at login
        db.execute(update(User).where(User.id == annotator.id).values(role=Role.admin))
    assert sessions.actor_for_session(login.session_id).role == Role.admin
    with write_session() as db:
        db.execute(update(User).where(User.id == annotator.id).values(active=False))
    assert sessions.actor_for_session(login.session_id) is None


@pytest.mark.parametrize("change, reason", [
    ({"role": Role.admin}, "role change"),
    ({"active": False}, "deactivated"),
])
def test_a_role_change_or_deactivation_ends_every_session_of_the_user(admin, annotator, change, reason):
    logins = [sessions.log_in("ann", ANN_PASSWORD) for _ in range(2)]
    cookie = cookie_of(logins[0])
    admin_login = sessions.log_in("admin", ADMIN_PASSWORD)
    auth.update_user(admin, annotator.id, **change)
    for login in logins:
        assert sessions.actor_for_session(login.session_id) is None
        assert session_row(login.session_id).revoked_reason == reason
    assert sessions.session_for_cookie(cookie) is None
    assert sessions.actor_for_session(admin_login.session_id) == admin  # other users keep theirs


def test_saving_a_user_unchanged_keeps_their_sessions(admin, annotator):
    login = sessions.log_in("ann", ANN_PASSWORD)
    auth.update_user(admin, annotator.id, role=Role.annotator, active=True)
    assert sessions.actor_for_session(login.session_id) == annotator


def test_a_password_change_ends_every_session_of_the_user(admin, annotator):
    login = sessions.log_in("ann", ANN_PASSWORD)
    auth.set_password(admin, annotator.id, "brand-new-pass-1")
    assert sessions.actor_for_session(login.session_id) is None
    assert session_row(login.session_id).revoked_reason == "password change"


def test_sessions_that_ended_long_ago_are_deleted_at_the_next_login(admin):
    old = sessions.log_in("admin", ADMIN_PASSWORD)
    recent = sessions.log_in("admin", ADMIN_PASSWORD)
    sessions.log_out(old.session_id)
    with write_session() as db:
        db.execute(update(AuthSession).where(AuthSession.id == old.session_id)
                   .values(revoked_at=utcnow() - sessions.KEEP_ENDED_SESSIONS - timedelta(minutes=1)))
    sessions.log_in("admin", ADMIN_PASSWORD)
    assert session_row(old.session_id) is None
    assert session_row(recent.session_id) is not None


# --------------------------------------------------------------------------- rate limit


def failed_logins(username: str, count: int, address: str | None = None) -> None:
    for _ in range(count):
        with pytest.raises(auth.AuthError, match="Wrong username or password"):
            sessions.log_in(username, "not-the-password", address)


def test_too_many_failures_for_a_username_refuse_it_for_a_while(admin, monkeypatch):
    failed_logins("admin", sessions.MAX_FAILURES_PER_USERNAME, "10.0.0.1")
    checks = []
    real = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda *args: checks.append(args) or True)
    with pytest.raises(auth.LoginThrottled, match=r"^Too many failed logins for this username\. Try again in 15 minutes\.$"):
        sessions.log_in("admin", ADMIN_PASSWORD, "10.0.0.2")  # the right password, from anywhere
    assert checks == []  # refused before any password work
    monkeypatch.setattr(auth, "verify_password", real)

    failed_logins("ghost", sessions.MAX_FAILURES_PER_USERNAME)
    with pytest.raises(auth.LoginThrottled, match="for this username"):  # unknown usernames alike
        sessions.log_in("ghost", "not-the-password")

    move_back(LoginFailure, "at", sessions.RATE_WINDOW - timedelta(minutes=3))
    with pytest.raises(auth.LoginThrottled, match="Try again in 3 minutes"):
        sessions.log_in("admin", ADMIN_PASSWORD)
    move_back(LoginFailure, "at", timedelta(minutes=3, seconds=1))
    assert sessions.log_in("admin", ADMIN_PASSWORD).actor == admin
    with read_session() as db:  # a login that worked forgets the failures (and old rows are gone)
        assert db.scalar(select(LoginFailure.id).where(LoginFailure.username == "admin")) is None


def test_a_success_before_the_limit_starts_the_count_again(admin):
    failed_logins("admin", sessions.MAX_FAILURES_PER_USERNAME - 1)
    sessions.log_in("admin", ADMIN_PASSWORD)
    failed_logins("admin", sessions.MAX_FAILURES_PER_USERNAME - 1)
    assert sessions.log_in("admin", ADMIN_PASSWORD).actor == admin


def test_too_many_failures_from_an_address_refuse_it_for_every_username(admin, annotator):
    per_name = sessions.MAX_FAILURES_PER_USERNAME - 1  # stay under the per-username limit
    for i in range(0, sessions.MAX_FAILURES_PER_ADDRESS, per_name):
        failed_logins(f"guess{i}", min(per_name, sessions.MAX_FAILURES_PER_ADDRESS - i), "203.0.113.7")
    with pytest.raises(auth.LoginThrottled, match=r"^Too many failed logins from your address\. Try again in"):
        sessions.log_in("ann", ANN_PASSWORD, "203.0.113.7")
    assert sessions.log_in("ann", ANN_PASSWORD, "203.0.113.8").actor == annotator
    assert sessions.log_in("ann", ANN_PASSWORD, None).actor == annotator  # unknown address: no address limit


# --------------------------------------------------------------------------- password checks


def test_an_unknown_username_is_checked_against_a_dummy_hash(admin, monkeypatch):
    checked = []
    real = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda stored, password: checked.append(stored) or real(stored, password))
    with pytest.raises(auth.AuthError, match="Wrong username or password"):
        auth.authenticate("nobody-by-this-name", ADMIN_PASSWORD)
    assert checked == [auth._dummy_hash()]  # the same Argon2 work as for a real user
    assert checked[0].startswith("$argon2id$")

    with read_session() as db:
        stored = db.scalar(select(User.password_hash).where(User.username == "admin"))
    checked.clear()
    with pytest.raises(auth.AuthError, match="Wrong username or password"):
        auth.authenticate("admin", "wrong-password")
    assert checked == [stored]

    user = auth.create_user(admin, "gone", "gone-pass-123")
    auth.update_user(admin, user.id, active=False)
    checked.clear()
    with pytest.raises(auth.AuthError, match="Wrong username or password"):  # same answer, same work
        auth.authenticate("gone", "gone-pass-123")
    assert len(checked) == 1 and checked[0] != auth._dummy_hash()


def test_password_checks_run_outside_the_write_lock(sqlite_database, monkeypatch):
    """While Argon2 works on a login, another writer (a worker's heartbeat) gets the lock at once."""
    auth.ensure_admin("admin", ADMIN_PASSWORD)
    writes: list[str] = []
    real = auth.verify_password

    def other_writer():
        with write_session() as db:
            db.execute(update(User).values(last_login_at=None))
        writes.append("done")

    def verify_while_someone_writes(stored, password):
        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(timeout=5)  # would wait for the lock (30 s busy timeout) if login held it
        writes.append("joined" if not thread.is_alive() else "blocked")
        return real(stored, password)

    monkeypatch.setattr(auth, "verify_password", verify_while_someone_writes)
    sessions.log_in("admin", ADMIN_PASSWORD)
    assert writes == ["done", "joined"]


# --------------------------------------------------------------------------- the cookie routes


@pytest.fixture
def client(database):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from ui import cookies

    with TestClient(Starlette(routes=cookies.routes())) as client:
        yield client


SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


def test_the_session_route_trades_a_ticket_for_an_httponly_cookie(admin, client):
    login = sessions.log_in("admin", ADMIN_PASSWORD)
    refused = client.post("/_emoforge/session", json={"ticket": login.ticket}, headers={"sec-fetch-site": "cross-site"})
    assert refused.status_code == 403  # another site cannot log a browser in
    refused = client.post("/_emoforge/session", json={"ticket": login.ticket}, headers={"origin": "http://evil.example"})
    assert refused.status_code == 403

    answer = client.post("/_emoforge/session", json={"ticket": login.ticket}, headers=SAME_ORIGIN)
    assert answer.status_code == 204
    set_cookie = answer.headers["set-cookie"]
    assert set_cookie.startswith(f"{sessions.COOKIE_NAME}=")
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= attributes and "samesite=strict" in set_cookie.lower()
    assert "secure" not in attributes  # plain http here; https gets Secure
    assert answer.headers["cache-control"] == "no-store"
    assert sessions.session_for_cookie(client.cookies[sessions.COOKIE_NAME]) == login.session_id

    again = client.post("/_emoforge/session", json={"ticket": login.ticket}, headers=SAME_ORIGIN)
    assert again.status_code == 403
    for body in ({}, {"ticket": 7}, [1]):
        assert client.post("/_emoforge/session", json=body, headers=SAME_ORIGIN).status_code == 403
    assert client.post("/_emoforge/session", content=b"not json", headers=SAME_ORIGIN).status_code == 403


def test_the_session_route_accepts_a_matching_origin_and_marks_https_cookies_secure(admin, client):
    login = sessions.log_in("admin", ADMIN_PASSWORD)
    answer = client.post("/_emoforge/session", json={"ticket": login.ticket},
                         headers={"origin": "http://testserver", "x-forwarded-proto": "https"})
    assert answer.status_code == 204
    assert "secure" in {part.strip().lower() for part in answer.headers["set-cookie"].split(";")}


def test_the_logout_route_ends_the_session_and_deletes_the_cookie(admin, client):
    login = sessions.log_in("admin", ADMIN_PASSWORD)
    client.post("/_emoforge/session", json={"ticket": login.ticket}, headers=SAME_ORIGIN)
    assert client.post("/_emoforge/logout", headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert sessions.actor_for_session(login.session_id) == admin

    answer = client.post("/_emoforge/logout", headers=SAME_ORIGIN)
    assert answer.status_code == 204
    assert sessions.actor_for_session(login.session_id) is None
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    assert sessions.COOKIE_NAME not in client.cookies


def test_the_secret_key_is_made_once_readable_by_its_owner_only(tmp_path, monkeypatch):
    from core import config

    monkeypatch.setenv("EMOFORGE_HOME", str(tmp_path))
    monkeypatch.delenv("EMOFORGE_SECRET_KEY", raising=False)
    key = config.secret_key()
    path = tmp_path / "secret.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert config.secret_key() == key and sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]
    monkeypatch.setenv("EMOFORGE_SECRET_KEY", "from-the-environment")
    assert config.secret_key() == b"from-the-environment"
