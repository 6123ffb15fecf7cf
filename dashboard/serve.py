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


SCRIPT = Path(__file__).with_name("entry") / "app.py"  # why not app.py: entry/app.py's docstring
app = st.App(str(SCRIPT), middleware=[Middleware(SecurityHeaders)])
