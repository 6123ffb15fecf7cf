"""Access-control tunables (VT_ACCESS__*) and the jobs that apply them: writing them into the
database's access_settings row (done by `villagetwin migrate`), and the retention pass
(`villagetwin maintain`). The database enforces them (migrations 0060-0063)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from pydantic import BaseModel, Field


class AccessSettings(BaseModel):
    reveals_per_hour: int = Field(default=10, ge=1)
    reveal_reason_min_chars: int = Field(default=10, ge=4)
    sign_in_window_minutes: float = Field(default=15, gt=0)
    account_failures_max: int = Field(default=5, ge=1)
    address_failures_max: int = Field(default=20, ge=1)
    address_lockout_minutes: float = Field(default=15, gt=0)
    # The database's cap on a session's idle time; the dashboard's own timeout may be shorter.
    session_idle_max_minutes: float = Field(default=30, gt=0)
    password_min_length: int = Field(default=12, ge=8)
    # Retention, in days (GB/T 35273-2020 6.1: no longer than the purpose needs).
    audit_days: int = Field(default=365, ge=1)
    reveal_audit_days: int = Field(default=1095, ge=1)
    sign_in_days: int = Field(default=180, ge=1)
    tenancy_anonymise_days: int = Field(default=365, ge=0)


def write_access_settings(conn: psycopg.Connection, s: AccessSettings) -> None:
    """Store the tunables the database enforces (as the owner)."""
    conn.execute(
        "UPDATE access_settings SET reveals_per_hour = %s, reveal_reason_min_chars = %s,"
        " sign_in_window = %s, account_failures_max = %s, address_failures_max = %s,"
        " address_lockout = %s, session_idle_max = %s, password_min_length = %s",
        (
            s.reveals_per_hour,
            s.reveal_reason_min_chars,
            timedelta(minutes=s.sign_in_window_minutes),
            s.account_failures_max,
            s.address_failures_max,
            timedelta(minutes=s.address_lockout_minutes),
            timedelta(minutes=s.session_idle_max_minutes),
            s.password_min_length,
        ),
    )


def apply_retention(conn: psycopg.Connection, s: AccessSettings) -> dict[str, int]:
    """Delete audit rows, sign-in attempts and sessions past their periods and anonymise the
    people of tenancies ended long enough ago; returns rows removed per kind."""
    rows = conn.execute(
        "SELECT kind, removed FROM vt_apply_retention(%s, %s, %s, %s)",
        (s.audit_days, s.reveal_audit_days, s.sign_in_days, s.tenancy_anonymise_days),
    ).fetchall()
    return {str(k): int(n) for k, n in rows}
