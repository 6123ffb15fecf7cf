"""The dashboard as Streamlit's ASGI app (``st.App``), so that every HTTP response carries
security headers: the page may not be framed by another site (X-Frame-Options: DENY and CSP
``frame-ancestors 'none'``, against clickjacking), no MIME sniffing, no referrer.

``villagetwin dashboard`` runs ``streamlit run dashboard/serve.py``; Streamlit finds ``app``
below and serves ``dashboard/entry/app.py`` through it (Starlette, uvicorn).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import streamlit as st
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dashboard import cookie
from dashboard.settings import DashboardSettings

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Message = MutableMapping[str, Any]


class SecurityHeaders:
    """ASGI middleware: adds SECURITY_HEADERS to every HTTP response."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def session_cookie(request: Request) -> Response:
    """``POST /_vt/session`` with a one-time code (cookie.offer) as the body: 204 and the
    sign-in cookie; an unknown, used or expired code: 403. ``DELETE``: 204 and the cookie
    dropped. Requests from another origin are refused (403)."""
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        return Response(status_code=403)
    secure = DashboardSettings().cookie_secure
    response = Response(status_code=204)
    if request.method == "DELETE":
        response.headers["Set-Cookie"] = cookie.clear_cookie_header(secure)
        return response
    token = cookie.claim((await request.body())[:200].decode("ascii", "replace"))
    if token is None:
        return Response(status_code=403)
    response.headers["Set-Cookie"] = cookie.set_cookie_header(token, secure)
    response.headers["Cache-Control"] = "no-store"
    return response


SCRIPT = Path(__file__).with_name("entry") / "app.py"  # why not app.py: entry/app.py's docstring
app = st.App(
    str(SCRIPT),
    routes=[Route(f"/{cookie.ROUTE}", session_cookie, methods=["POST", "DELETE"])],
    middleware=[Middleware(SecurityHeaders)],
)
