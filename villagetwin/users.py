"""Dashboard users: adding or resetting one (``villagetwin users add``, the demo's sign-ins).

The password is checked against the policy in ``access_settings`` (minimum length, the list of
common passwords, not the user name) and hashed by the database (``vt_set_password``: bcrypt
through pgcrypto, or PBKDF2-SHA256 where pgcrypto is missing, villagetwin/compat/pgcrypto.sql).
"""

from __future__ import annotations

import psycopg

from dashboard.auth import password_problems
from devices.provisioning import new_password


class PasswordRefused(ValueError):
    """The password breaks the policy; the message lists each problem."""


def add_user(
    conn: psycopg.Connection,
    username: str,
    role: str,
    grids: list[str],
    password: str | None,
    villages: list[str] | None = None,
) -> str:
    """Adds or resets ``username`` with ``role`` (admin, manager, inspector), limited to
    ``grids`` (grid codes) and ``villages`` (village keys; None: every village), and enables
    it again if it was disabled. Returns the password: ``password``, or a new random one.

    Raises PasswordRefused when the password breaks the policy, and psycopg.Error when the
    database refuses the row (an unknown role, grid or village)."""
    password = password or new_password()
    row = conn.execute("SELECT password_min_length FROM access_settings").fetchone()
    problems = password_problems(password, username, int(row[0]) if row else 12)
    if problems:
        raise PasswordRefused(f"password refused: {', '.join(problems)}")
    conn.execute(
        "INSERT INTO app_users (username, role, grids, villages) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (username) DO UPDATE SET role = EXCLUDED.role,"
        " grids = EXCLUDED.grids, villages = EXCLUDED.villages, disabled_at = NULL",
        (username, role, grids, villages),
    )
    conn.execute("SELECT vt_set_password(%s, %s)", (username, password))
    return password
