"""The login flow in the app (AppTest): the session is checked on every run, a cookie logs a new
tab in, and the rate limit's message reaches the login form. The real browser and its cookie:
tests/test_session_browser.py."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from core import auth, sessions
from db.models import AuthSession, Role, User, utcnow
from db.session import write_session
from tests.test_pages import (  # noqa: F401 (fixtures)
    app,
    cookie_requests,
    navigation_steady_state,
    shared_component_registry,
)
from ui.plain import md_escape
from ui.session import SESSION_KEY, TICKET_KEY


def log_in_through_the_form(at, username: str, password: str):
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def shows_the_login_form(at) -> bool:
    return SESSION_KEY not in at.session_state and bool(at.text_input(key="login_username"))


def test_a_role_change_logs_the_tab_out_on_its_next_run(admin, annotator):
    at = app(annotator).run()
    assert at.title[0].value == "Review"
    auth.update_user(admin, annotator.id, role=Role.admin)
    at.run()
    assert not at.exception, at.exception
    assert shows_the_login_form(at)


def test_a_deactivated_user_is_logged_out_on_the_next_run(admin, annotator):
    at = app(annotator).run()
    auth.update_user(admin, annotator.id, active=False)
    at.run()
    assert shows_the_login_form(at)


def test_the_role_comes_from_the_database_on_every_run(annotator):
    at = app(annotator).run()
    assert at.title[0].value == "Review"
    assert [t.value for t in at.sidebar.text][0] == "Logged in as ann (annotator)"
    with write_session() as db:  # no revocation here: only the stored role changes
        db.execute(update(User).where(User.id == annotator.id).values(role=Role.admin))
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.sidebar.text][0] == "Logged in as ann (admin)"
    at.switch_page("pages/admin.py").run()  # an admin's page opens now
    assert not at.exception and not at.error and at.title[0].value == "Admin"


def test_an_expired_session_asks_for_the_password_again(admin):
    at = app(admin).run()
    with write_session() as db:
        db.execute(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    at.run()
    assert shows_the_login_form(at)


def test_a_new_tab_with_the_browser_cookie_is_logged_in_without_the_password(admin, monkeypatch):
    first = log_in_through_the_form(app().run(), "admin", "admin-pass-123")
    ticket, _ = first.session_state[TICKET_KEY]
    cookie = sessions.redeem_ticket(ticket).value  # what the browser's fetch() to /_emoforge/session gets
    # AppTest has no browser to send the cookie: hand it to the app where it reads the browser's cookie.
    monkeypatch.setattr("ui.cookies.browser_cookie", lambda: cookie)

    reloaded = app().run()
    assert not reloaded.exception, reloaded.exception
    assert reloaded.title[0].value == "Dashboard"
    assert reloaded.session_state[SESSION_KEY] == first.session_state[SESSION_KEY]
    assert TICKET_KEY not in reloaded.session_state and cookie_requests(reloaded) == []

    reloaded.button(key="logout").click().run()  # logging out in one tab ends the browser's session
    assert shows_the_login_form(reloaded)
    assert shows_the_login_form(app().run())
    first.run()
    assert shows_the_login_form(first)


def test_the_login_form_says_when_there_were_too_many_failures(admin):
    at = app().run()
    for _ in range(sessions.MAX_FAILURES_PER_USERNAME):
        log_in_through_the_form(at, "admin", "not-the-password")
        assert [e.value for e in at.error] == [md_escape("Wrong username or password.")]
    log_in_through_the_form(at, "admin", "admin-pass-123")
    assert [e.value for e in at.error] == [md_escape("Too many failed logins for this username. Try again in 15 minutes.")]
    assert shows_the_login_form(at)
