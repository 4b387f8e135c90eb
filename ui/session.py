"""Who is logged in, and the guard every page calls first."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.auth import Actor, PermissionDenied, require_page
from ui.plain import md_escape

ACTOR_KEY = "actor"
REQUESTED_KEY = "requested_page"  # the page a logged-out visitor asked for (a fixed page id)


def current_actor(page_id: str | None = None) -> Actor:
    """The logged-in Actor; without one, a login prompt and st.stop()."""
    actor = st.session_state.get(ACTOR_KEY)
    if not isinstance(actor, Actor):
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


def log_in(actor: Actor) -> None:
    st.session_state[ACTOR_KEY] = actor


def log_out() -> None:
    st.session_state.pop(ACTOR_KEY, None)


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
