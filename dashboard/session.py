"""The signed-in browser session (Streamlit edge): the sign-in form, the idle timeout, the
sign-in kept across reloads (a cookie holding the database-signed token, dashboard/cookie.py),
and the user's own database connections carrying their session token (migration 0060), from
which the database decides what each statement may see (row-level security, migration 0061).
Every connection runs in the village's time zone (DashboardSettings.time_zone)."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import streamlit as st

from dashboard import cookie, pool
from dashboard.auth import Refused, User, bind, resume, sign_in
from dashboard.settings import DashboardSettings


def conn(dsn: str) -> psycopg.Connection:
    """The signed-in user's own connection, carrying their session token: the database
    decides what it returns (row-level security, migration 0061). Stops the page and shows
    the sign-in form when the session has timed out, here or in the database."""
    still_signed_in()
    return lent(dsn, DashboardSettings(dashboard_dsn=dsn))


def writer(settings: DashboardSettings) -> psycopg.Connection:
    """The signed-in user's connection to the primary for their writes and reveals, carrying
    their session token: this page view's, lent by the pool (dashboard/pool.py) and given back
    when the view ends, where the pool's ``DISCARD ALL`` drops the token."""
    return lent(settings.writer_dsn(), settings)


def lent(dsn: str, settings: DashboardSettings) -> psycopg.Connection:
    """A connection to ``dsn`` lent by the pool for this page view, bound to the signed-in
    user's session token (the primary's, or the read replica's: VT_REPLICA_DSN)."""
    found = pool.lent(dsn, settings)
    user: User | None = st.session_state.get("user")
    bind(found, user.token if user is not None else "", settings.time_zone)
    return found


def token() -> str:
    """The signed-in user's session token ("" when signed out)."""
    user: User | None = st.session_state.get("user")
    return user.token if user else ""


def timed_out() -> None:
    st.session_state.clear()
    st.session_state["timed_out"] = True
    st.session_state[FORGET] = True
    st.session_state[RESUME_TRIED] = True  # the cookie this page was opened with is spent
    st.rerun(scope="app")


OFFER = "cookie-offer"  # session state: a one-time code the page exchanges for the cookie
FORGET = "cookie-forget"  # session state: the page should make the browser drop the cookie
RESUME_TRIED = "cookie-tried"  # session state: this browser session's cookie was tried


def _cookie_script(settings: DashboardSettings) -> None:
    """The page's part of dashboard/cookie.py: post the one-time code (the route's response
    sets the HttpOnly cookie) or ask the route to drop the cookie. Nothing else is sent."""
    code = st.session_state.pop(OFFER, None)
    forget = st.session_state.pop(FORGET, False)
    if code is None and not forget:
        return
    method = "DELETE" if forget else "POST"
    body = "" if forget else str(code)
    st.html(
        "<script>fetch(new URL('/" + cookie.ROUTE + "', window.location.origin),"
        f" {{method: '{method}', body: '{body}', credentials: 'same-origin'}});</script>",
        unsafe_allow_javascript=True,
    )


def _resumed(settings: DashboardSettings) -> User | None:
    """The user of the sign-in cookie this browser sent, once per browser session, if the
    database still holds that session live (auth.resume); else the cookie is dropped."""
    if st.session_state.get(RESUME_TRIED):
        return None
    st.session_state[RESUME_TRIED] = True
    token = st.context.cookies.get(cookie.NAME)
    if not isinstance(token, str) or not token:
        return None
    conn = pool.lent(settings.writer_dsn(), settings)
    user = resume(conn, str(token))
    if user is None:
        st.session_state[FORGET] = True
        return None
    _keep(settings, user)
    return user


def _keep(settings: DashboardSettings, user: User) -> None:
    st.session_state["user"] = user
    st.session_state["seen"] = time.monotonic()
    st.session_state["timeout_s"] = settings.session_timeout_minutes * 60


def still_signed_in() -> None:
    """Inside auto-refreshing fragments too: past the idle timeout nothing more is read."""
    if "user" not in st.session_state:
        return
    idle = time.monotonic() - st.session_state.get("seen", 0.0)
    if idle > st.session_state.get("timeout_s", 0.0):
        timed_out()


def client_address() -> str:
    """The browser's address, as the reverse proxy forwards it or as Streamlit saw it."""
    forwarded = st.context.headers.get("X-Forwarded-For")
    if isinstance(forwarded, str) and forwarded.strip():
        return forwarded.split(",")[0].strip()
    seen = st.context.ip_address
    return seen if isinstance(seen, str) and seen else "unknown"


def signed_in(settings: DashboardSettings) -> User | None:
    """The signed-in user (from this browser session, or resumed from the sign-in cookie after
    a reload), or None after drawing the sign-in form (and its refusal)."""
    _cookie_script(settings)
    user: User | None = st.session_state.get("user")
    if user is None:
        try:
            user = _resumed(settings)
        except psycopg.OperationalError as exc:  # the form below, for when it is back
            st.error(f"无法连接数据库 Cannot reach the database: {exc}")
        if user is not None:
            return user
    if user is not None:
        still_signed_in()
        try:  # a user action: the database restarts the session's idle clock, if still live
            writer(settings).execute("SELECT vt_session_touch()")
        except psycopg.errors.InvalidAuthorizationSpecification:
            timed_out()
        st.session_state["seen"] = time.monotonic()
        return user
    if st.session_state.pop("timed_out", False):
        st.warning("会话已超时，请重新登录 Session timed out: sign in again.")
    with st.form("login"):
        st.markdown("### 登录 Sign in")
        username = st.text_input("用户名 Username")
        password = st.text_input("密码 Password", type="password")
        submitted = st.form_submit_button("登录 Sign in")
    if submitted:
        try:
            found = start_session(settings, username, password)
        except psycopg.OperationalError as exc:
            st.error(f"无法连接数据库 Cannot reach the database: {exc}")
            return None
        if isinstance(found, Refused):
            st.error(found.message)
            return None
        st.rerun()
    return None


def start_session(settings: DashboardSettings, username: str, password: str) -> User | Refused:
    """Sign in through the database and keep the user, their connection and their idle clock
    in this browser session (the sign-in form calls it; so do page tests)."""
    idle = timedelta(minutes=settings.session_timeout_minutes)
    first = psycopg.connect(settings.writer_dsn(), autocommit=True, connect_timeout=5)
    found = sign_in(first, username, password, client_address(), idle)
    first.close()  # later statements go through the pool (writer), carrying the token
    if isinstance(found, Refused):
        return found
    _keep(settings, found)
    st.session_state[OFFER] = cookie.offer(found.token)
    return found


def sign_out(settings: DashboardSettings) -> None:
    """Ends the session in the database and in this browser session."""
    writer(settings).execute("SELECT vt_sign_out()")
    st.session_state.clear()
    st.session_state[FORGET] = True
    st.session_state[RESUME_TRIED] = True  # the cookie this page was opened with is spent
    st.rerun()
