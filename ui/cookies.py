"""The session cookie's two HTTP routes, and the one-line requests a page makes to them.

A Streamlit page talks to the browser over a websocket, so it cannot set a cookie, and a cookie
that page JavaScript could write could also be read by any injected script. So the cookie is set
and deleted by HTTP responses from two routes served by Streamlit's own server: `serve.py` adds
them with st.App's `routes` (Streamlit's public way to add routes; `streamlit run serve.py`).

- POST {base}/_emoforge/session with {"ticket": ...}: trades a login's one-time ticket
  (core.sessions.redeem_ticket) for the signed session cookie: HttpOnly, SameSite=Strict,
  Secure over HTTPS, expiring with its session.
- POST {base}/_emoforge/logout: ends the cookie's session and deletes the cookie.

Both answer only requests from the app's own pages (no login or logout from another site).
Served by a bare `streamlit run app.py`, logins still work, but only in the tab: the fetch gets a
404 and a reload asks for the password again.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core import sessions

SESSION_PATH = "_emoforge/session"
LOGOUT_PATH = "_emoforge/logout"


def routes() -> list[Route]:
    return [Route(_url(SESSION_PATH), issue_cookie, methods=["POST"]),
            Route(_url(LOGOUT_PATH), remove_cookie, methods=["POST"])]


def browser_cookie() -> str | None:
    """The session cookie the browser sent when it opened this tab's connection."""
    value = st.context.cookies.get(sessions.COOKIE_NAME)
    return value if isinstance(value, str) else None  # no browser (AppTest): no cookie


def client_address() -> str | None:
    """The browser's IP address; None when local (Streamlit reports none for 127.0.0.1) or unknown."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def request_cookie(ticket: str) -> None:
    """Have the browser trade `ticket` for the session cookie (an empty element that runs one fetch)."""
    _post_from_browser(SESSION_PATH, {"ticket": ticket})


def request_cookie_removal() -> None:
    _post_from_browser(LOGOUT_PATH, {})


# --------------------------------------------------------------------------- the routes


async def issue_cookie(request: Request) -> Response:
    if not _from_our_pages(request):
        return Response("Cross-site request refused.", status_code=403)
    ticket = (await _json_body(request)).get("ticket")
    issued = await run_in_threadpool(sessions.redeem_ticket, ticket if isinstance(ticket, str) else None)
    if issued is None:
        return Response("Unknown, used or expired ticket.", status_code=403)
    response = _no_store(Response(status_code=204))
    response.set_cookie(sessions.COOKIE_NAME, issued.value, max_age=issued.max_age, path=_cookie_path(),
                        httponly=True, samesite="strict", secure=_over_https(request))
    return response


async def remove_cookie(request: Request) -> Response:
    if not _from_our_pages(request):
        return Response("Cross-site request refused.", status_code=403)
    await run_in_threadpool(sessions.log_out_cookie, request.cookies.get(sessions.COOKIE_NAME))
    response = _no_store(Response(status_code=204))
    response.delete_cookie(sessions.COOKIE_NAME, path=_cookie_path(), httponly=True, samesite="strict",
                           secure=_over_https(request))
    return response


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _from_our_pages(request: Request) -> bool:
    """A fetch from the app's own page: same-origin by the browser's word (or by Origin and Host)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == request.headers.get("host")


def _over_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# --------------------------------------------------------------------------- paths


def _base() -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def _url(path: str) -> str:
    return f"{_base()}/{path}"


def _cookie_path() -> str:
    return _base() or "/"


def _post_from_browser(path: str, body: dict) -> None:
    # json.dumps quotes the values; "<" is escaped so no value can close the script element.
    url, payload = (json.dumps(v).replace("<", "\\u003c") for v in (_url(path), json.dumps(body)))
    st.html(
        f"<script>fetch({url}, {{method: 'POST', credentials: 'same-origin', "
        f"headers: {{'Content-Type': 'application/json'}}, body: {payload}}});</script>",
        unsafe_allow_javascript=True,
    )
