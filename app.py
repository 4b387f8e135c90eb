"""EmoForge's app script.

Logs the user in, makes sure the database is migrated and seeded (once per process), and builds
the navigation from the pages the user's role may open (core.auth decides; the pages check again).
Serve it with `streamlit run serve.py`, which adds the session cookie's routes (ui/cookies.py).
"""

from __future__ import annotations

import streamlit as st

from core import config
from core.auth import PAGE_ROLES, AuthError, can_open
from ui.jobs import live_jobs_panel
from ui.nav import visible_sections
from ui.session import REQUESTED_KEY, log_in, log_out, signed_in_actor, sync_cookie
from ui.plain import md_escape

st.set_page_config(page_title="EmoForge", page_icon=":material/psychology:", layout="wide")


@st.cache_resource(show_spinner="Preparing the database…")
def prepare_database(url: str) -> str:
    """Migrate and seed the database at `url` once per process (keyed by URL: tests use many)."""
    try:
        from core.bootstrap import prepare_database as prepare
    except ModuleNotFoundError as exc:
        if exc.name != "core.bootstrap":
            raise
        from core.taxonomy import seed_defaults
        from db.migrate import upgrade

        upgrade(url)
        seed_defaults()
    else:
        prepare(url)
    return url


def login_page() -> None:
    st.title("EmoForge")
    st.caption("Build emotion-classification data sets with LLMs and distil them into small models.")
    with st.form("login", enter_to_submit=True):
        username = st.text_input("Username", key="login_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        try:
            log_in(username or "", password or "")
        except AuthError as refusal:  # wrong credentials, or too many failures (the message says which)
            st.error(md_escape(refusal))
        else:
            st.rerun()


def no_pages() -> None:
    st.info("Your role has no pages yet.")


prepare_database(config.database_url())

actor = signed_in_actor()  # checked against the database on every run: role, expiry, revocation
if actor is None:
    # Every page address shows the login form (hidden pages with the pages' url paths), so a link
    # to /jobs keeps its address through the login and opens the Jobs page afterwards.
    login = st.Page(login_page, title="Log in", icon=":material/login:", url_path="login", default=True)
    placeholders = [st.Page(login_page, title="Log in", url_path=page_id, visibility="hidden")
                    for page_id in PAGE_ROLES]
    page = st.navigation([login, *placeholders], position="hidden")
    if page.url_path in PAGE_ROLES:
        st.session_state[REQUESTED_KEY] = page.url_path
    sync_cookie()
else:
    sections = {
        name: [st.Page(p.path, title=p.title, icon=p.icon, url_path=p.page_id) for p in pages]
        for name, pages in visible_sections(actor).items()
    }
    with st.sidebar:
        st.text(f"Logged in as {actor.username} ({actor.role.value})")
        if st.button("Log out", icon=":material/logout:", key="logout"):
            log_out()
            st.rerun()
        sync_cookie()
        if actor.is_admin:
            live_jobs_panel(actor)
    if sections:
        # The addresses of the pages this role cannot open are hidden pages too: typed by someone
        # already logged in (the session cookie skips the login form), they end in the warning below.
        closed = [st.Page(no_pages, title="Page not found", url_path=page_id, visibility="hidden")
                  for page_id in PAGE_ROLES if not can_open(actor, page_id)]
        first_section = next(iter(sections.values()))
        page = st.navigation({**sections, next(iter(sections)): [*first_section, *closed]})
        if page.url_path in {c.url_path for c in closed}:
            st.session_state[REQUESTED_KEY] = page.url_path
            st.switch_page(first_section[0])
    else:  # a role without pages: nothing to show but the sidebar
        page = st.navigation([st.Page(no_pages, title="Home", url_path="home")])
    requested = st.session_state.pop(REQUESTED_KEY, None)
    if requested and not can_open(actor, requested):
        # `requested` is one of the fixed page ids (never raw URL text).
        st.warning(f"Page not found: the {md_escape(requested)} page is not open to the {md_escape(actor.role.value)} role.")
    elif requested and requested != page.url_path:
        # The address was lost on the way to the login (a typed URL on a fresh server): go there now.
        # The role's first page is the default one, whose url_path reads "": it is already open.
        target = next((p for pages in sections.values() for p in pages if p.url_path == requested), None)
        if target is not None:
            st.switch_page(target)
page.run()
