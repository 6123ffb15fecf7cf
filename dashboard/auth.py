"""Signing in, done by the database: vt_sign_in() checks the password (bcrypt, pgcrypto),
throttles failures per account and per address, audits failed attempts and returns a session
token. Every later statement carries that token (setting ``vt.session``), from which the
database, not the client, knows who the user is (migration 0060, docs/privacy.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from importlib import resources

import psycopg

ROLES = ("admin", "manager", "inspector")
# What vt_sign_in's refusals mean, for the sign-in form (Chinese first, English beside).
REFUSALS = {
    "wrong_credentials": "用户名或密码错误 Wrong username or password.",
    "account_locked": "账号已锁定，请联系管理员 Account locked: ask an admin.",
    "address_blocked": "此地址失败过多，请稍后再试 Too many failures from here: try later.",
    "reset_required": "密码需要重置 The password must be reset by an admin (users add).",
}


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    grids: tuple[str, ...]
    token: str = ""

    def may_see_grid(self, grid_code: str | None) -> bool:
        """Admins and managers see every grid; an inspector only the ones assigned."""
        return self.role != "inspector" or (grid_code is not None and grid_code in self.grids)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str  # one of REFUSALS

    @property
    def message(self) -> str:
        return REFUSALS.get(self.reason, self.reason)


def sign_in(
    conn: psycopg.Connection, username: str, password: str, address: str, idle: timedelta
) -> User | Refused:
    """Signs in through the database; ``conn`` is a connection as the dashboard's role. The
    token it returns is bound to ``conn`` (``vt.session``) so the user's own queries can use it.
    Raises psycopg.Error when the database cannot be reached."""
    row = conn.execute(
        "SELECT token, refusal FROM vt_sign_in(%s, %s, %s, %s)", (username, password, address, idle)
    ).fetchone()
    if row is None or row[0] is None:
        return Refused(str(row[1]) if row else "wrong_credentials")
    token = str(row[0])
    bind(conn, token)
    who = conn.execute("SELECT username, role, grids FROM vt_session()").fetchone()
    assert who is not None
    return User(str(who[0]), str(who[1]), tuple(who[2]), token)


def resume(conn: psycopg.Connection, token: str) -> User | None:
    """The user of an earlier sign-in's ``token`` (kept in the sign-in cookie), if the database
    still holds that session live: not signed out, not idle past its limit, the user neither
    disabled nor locked (vt_session, migration 0060). Restarts the session's idle clock, as any
    user action does. ``conn`` is a connection as the dashboard's role; the token stays bound
    to it. Raises psycopg.OperationalError when the database cannot be reached."""
    bind(conn, token)
    try:
        conn.execute("SELECT vt_session_touch()")
        who = conn.execute("SELECT username, role, grids FROM vt_session()").fetchone()
    except psycopg.errors.InvalidAuthorizationSpecification:
        return None
    if who is None:
        return None
    return User(str(who[0]), str(who[1]), tuple(who[2]), token)


def bind(conn: psycopg.Connection, token: str, time_zone: str | None = None) -> None:
    """Carry ``token`` on every later statement of ``conn`` (session-level setting), and run
    the session in ``time_zone`` (an IANA name) when given: ``current_date`` is then the
    village's local date and times come back in its offset."""
    if time_zone is None:
        conn.execute("SELECT set_config('vt.session', %s, false)", (token,))
        return
    conn.execute(
        "SELECT set_config('vt.session', %s, false), set_config('TimeZone', %s, false)",
        (token, time_zone),
    )


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (dashboard/common-passwords.txt: the most common
    passwords of public leak lists, Chinese sites included), lower-cased."""
    text = resources.files("dashboard").joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def password_problems(password: str, username: str, min_length: int) -> list[str]:
    """Why a password is refused (empty: accepted): shorter than ``min_length`` characters,
    on the common-password list, or the username itself."""
    problems = []
    if len(password) < min_length:
        problems.append(f"at least {min_length} characters")
    lowered = password.lower()
    if lowered in common_passwords() or lowered.rstrip("0123456789!") in common_passwords():
        problems.append("a common password")
    if username and username.lower() in lowered:
        problems.append("contains the username")
    return problems
