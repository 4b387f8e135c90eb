"""Who is logged in, and the guard every page calls first.

The login is a server-side session (core/sessions.py). This tab remembers its session's id in
st.session_state (which lives on the server); a new tab or a reload finds it again through the
browser's HttpOnly session cookie (ui/cookies.py). Either way the session is checked against the
database on every run, so a logout, an expiry, a role change or a deactivation takes effect on
the very next click, and the role used is the one stored now.
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import sessions
from core.auth import Actor, PermissionDenied, require_page
from db.models import utcnow
from ui import cookies
from ui.plain import md_escape

SESSION_KEY = "auth_session_id"
TICKET_KEY = "auth_cookie_ticket"  # (ticket, expires at): offered to the browser until it expires
COOKIE_REMOVAL_KEY = "auth_cookie_removal"  # set by log_out: the browser is asked to drop its cookie
REQUESTED_KEY = "requested_page"  # the page a logged-out visitor asked for (a fixed page id)


def signed_in_actor() -> Actor | None:
    """The actor of this tab's session, else of the browser's cookie, as stored now; None if neither."""
    session_id = st.session_state.get(SESSION_KEY)
    actor = sessions.actor_for_session(session_id)
    if actor is None:
        st.session_state.pop(TICKET_KEY, None)  # the tab's session ended: nothing left to trade
        session_id = sessions.session_for_cookie(cookies.browser_cookie())
        actor = sessions.actor_for_session(session_id)
    if actor is None:
        st.session_state.pop(SESSION_KEY, None)
    else:
        st.session_state[SESSION_KEY] = session_id
    return actor


def current_actor(page_id: str | None = None) -> Actor:
    """The logged-in Actor; without one, a login prompt and st.stop()."""
    actor = signed_in_actor()
    if actor is None:
        if page_id:
            st.session_state[REQUESTED_KEY] = page_id
        # Only reachable when Streamlit runs a pages/ file straight from a typed URL (its MPA v1
        # routing, before app.py's st.navigation took over): send the visitor to the login.
        try:
            st.switch_page("app.py")
        except StreamlitAPIException:
            # app.py is no page here (a page file run on its own, as in tests): just refuse.
            pass
        st.warning("Please log in.")
        st.stop()
    return actor


def guard(page_id: str) -> Actor:
    """The actor, when their role may open `page_id` (checked by core.auth); else an error and st.stop()."""
    actor = current_actor(page_id)
    try:
        return require_page(actor, page_id)
    except PermissionDenied as exc:
        st.error(md_escape(exc))
        st.stop()
        raise  # unreachable: st.stop() raises


def log_in(username: str, password: str) -> Actor:
    """Log this tab in (core.sessions.log_in: AuthError with the reason to show if refused)."""
    login = sessions.log_in(username, password, address=cookies.client_address())
    st.session_state[SESSION_KEY] = login.session_id
    st.session_state[TICKET_KEY] = (login.ticket, login.ticket_expires_at)
    return login.actor


def log_out() -> None:
    """End this tab's session; the browser is asked to drop its cookie on the next run."""
    sessions.log_out(st.session_state.pop(SESSION_KEY, None))
    st.session_state.pop(TICKET_KEY, None)
    st.session_state[COOKIE_REMOVAL_KEY] = True


def sync_cookie() -> None:
    """Ask the browser for what the session cookie needs after a login or a logout (app.py, each run)."""
    if st.session_state.pop(COOKIE_REMOVAL_KEY, False):
        cookies.request_cookie_removal()
    pending: tuple[str, datetime] | None = st.session_state.get(TICKET_KEY)
    if pending is None:
        return
    ticket, expires_at = pending
    if expires_at <= utcnow():
        st.session_state.pop(TICKET_KEY)
    else:
        # Shown on every run until the ticket expires: a run cut short by a page switch would
        # otherwise lose it. A second trade of a used ticket is refused and changes nothing.
        cookies.request_cookie(ticket)


FLASH_KEY = "_flash"


def flash(message: str, kind: str = "success", scope: str = "page") -> None:
    """A message for the next run (to survive an st.rerun()). Keep it to text the app wrote."""
    st.session_state.setdefault(FLASH_KEY, []).append((scope, kind, message))


def show_flashes(scope: str = "page") -> None:
    """Show (and forget) the flashed messages of `scope`."""
    pending = st.session_state.get(FLASH_KEY, [])
    for _, kind, message in [m for m in pending if m[0] == scope]:
        getattr(st, kind)(message)
    st.session_state[FLASH_KEY] = [m for m in pending if m[0] != scope]
