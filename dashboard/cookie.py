"""Keeping the sign-in across reloads (issue 15): the database-signed session token of
migration 0060 in a cookie the browser keeps, ``Secure``, ``HttpOnly``, ``SameSite=Strict``, for
the session's lifetime. Its end stays the database's: sign-out (vt_sign_out) and the idle
timeout make the token worthless, whatever the cookie says.

Why a cookie of our own rather than a Streamlit cookie component: Streamlit's script cannot
send HTTP headers, and the components that set cookies do it from the page's JavaScript,
which cannot make a cookie HttpOnly, so any script in the page could read the token. Here the
script hands the token to the dashboard's own HTTP route (dashboard/serve.py, same process)
under a one-time, short-lived code; the page posts only that code, and the route's response
sets the cookie. Streamlit reads it back on the next page load (``st.context.cookies``).

Sources: RFC 6265bis (cookie attributes), OWASP Session Management Cheat Sheet (Secure,
HttpOnly, SameSite, no token in URLs).
"""

from __future__ import annotations

import secrets
import threading
import time

NAME = "vt_session"
ROUTE = "_vt/session"  # POST a code: sets the cookie; DELETE: drops it (dashboard/serve.py)
_LOCK = threading.Lock()
_OFFERS: dict[str, tuple[str, float]] = {}  # code -> (token, monotonic expiry)


def offer(token: str, ttl_s: float = 60.0, now: float | None = None) -> str:
    """A one-time code (43 URL-safe characters) the page exchanges for the cookie within
    ``ttl_s`` seconds. Expired offers are dropped."""
    at = time.monotonic() if now is None else now
    code = secrets.token_urlsafe(32)
    with _LOCK:
        for stale in [c for c, (_, until) in _OFFERS.items() if until < at]:
            del _OFFERS[stale]
        _OFFERS[code] = (token, at + ttl_s)
    return code


def claim(code: str, now: float | None = None) -> str | None:
    """The token offered under ``code``, once; None when unknown, used or expired."""
    at = time.monotonic() if now is None else now
    with _LOCK:
        found = _OFFERS.pop(code, None)
    if found is None or found[1] < at:
        return None
    return found[0]


def set_cookie_header(token: str, secure: bool) -> str:
    """The ``Set-Cookie`` value keeping ``token`` (RFC 6265bis §4.1): no Max-Age, so the
    browser keeps it until it closes; the database ends the session before that on sign-out
    or idleness. ``secure``: DashboardSettings.cookie_secure."""
    return f"{NAME}={token}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")


def clear_cookie_header(secure: bool) -> str:
    """The ``Set-Cookie`` value that makes the browser drop the cookie."""
    return f"{NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
