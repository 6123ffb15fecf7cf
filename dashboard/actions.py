"""What the dashboard writes, through database functions that check the signed-in session's
user, role and grids (migrations 0062 and 0110): inspections, moving incidents, revealing one
person's record (audited and committed before the values are returned), and moving alerts and
cases."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from rules import cases
from rules.settings import CaseParams


def record_inspection(
    conn: psycopg.Connection,
    building_id: str,
    time_zone: str,
    findings: str,
    hazards: list[str],
    photo_refs: list[str],
    next_visit: date | None,
) -> int:
    """Recorded under the session's user, dated by the database with the local date in
    ``time_zone`` (IANA name; migration 0162); returns the inspection's id. Raises
    psycopg.errors.InsufficientPrivilege for a building outside the user's grids,
    psycopg.errors.InvalidParameterValue for empty findings or an unknown time zone."""
    row = conn.execute(
        "SELECT record_inspection(%s, %s, %s, %s, %s, %s)",
        (building_id, time_zone, findings, hazards, photo_refs, next_visit),
    ).fetchone()
    assert row is not None
    return int(row[0])


def reveal_person(
    conn: psycopg.Connection, person_id: str, category: str, reason: str
) -> tuple[str, str, str] | None:
    """One person's clear name, ID number and phone. The request (person, reason category,
    reason text) is audited and committed first; then the values are read with its ticket.
    ``conn`` must be in autocommit mode. Raises psycopg.errors.RaiseException (bad reason,
    limit reached) or InsufficientPrivilege (outside the user's grids)."""
    if not conn.autocommit:
        raise ValueError("reveal_person needs an autocommit connection (the audit commits first)")
    ticket = conn.execute(
        "SELECT request_reveal(%s, %s, %s)", (person_id, category, reason)
    ).fetchone()
    assert ticket is not None
    row = conn.execute("SELECT * FROM reveal_person(%s)", (UUID(str(ticket[0])),)).fetchone()
    return (row[0], row[1], row[2]) if row else None


def move_incident(
    conn: psycopg.Connection, incident_id: str, status: str, assigned_to: str | None
) -> bool:
    """reported -> assigned (to someone) -> resolved; returns False if nothing matched."""
    if status not in ("assigned", "resolved"):
        raise ValueError(f"an incident moves to assigned or resolved, not {status!r}")
    if status == "assigned" and not (assigned_to or "").strip():
        raise ValueError("say who the incident is assigned to")
    row = conn.execute(
        "SELECT move_incident(%s, %s, %s)", (UUID(incident_id), status, assigned_to)
    ).fetchone()
    return bool(row and row[0])


def lift_lockout(conn: psycopg.Connection, kind: str, subject: str) -> None:
    """An admin lifts a sign-in lockout: ``kind`` ``account`` (a username) or ``address`` (a
    client address); audited as ``lockout_lifted`` under the session's user (migration 0060's
    vt_lift_lockout, migration 0111). Raises ValueError for another kind,
    psycopg.errors.InvalidParameterValue when it is not locked out, InsufficientPrivilege for
    a session that is not an admin's."""
    if kind not in ("account", "address"):
        raise ValueError(f"a lockout is of an account or an address, not {kind!r}")
    user, address = (subject, None) if kind == "account" else (None, subject)
    conn.execute("SELECT vt_lift_lockout(%s, %s)", (user, address))


# --- alerts and cases (issue 13) ---------------------------------------------------------------
# Each move is one call of a function of migration 0110: the database takes the user from the
# session, refuses an alert or case outside the user's grids, checks the move, and writes the
# history under that user. The dashboard's role cannot write these tables itself.


def _call(
    conn: psycopg.Connection, query: str, params: tuple[object, ...], refusal: type[ValueError]
) -> Any:
    """Runs one checked write; its refusals (bad move, missing note, outside the user's grids)
    are raised as ``refusal`` (a ValueError) with the database's message."""
    try:
        with conn.transaction():
            return conn.execute(query, params).fetchall()
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.InsufficientPrivilege) as exc:
        raise refusal(exc.diag.message_primary or str(exc)) from exc


def move_alert(conn: psycopg.Connection, alert_id: int, action: str, note: str = "") -> str:
    """open -> acknowledged (``acknowledge``) -> resolved / false_alarm (``resolve``,
    ``false_alarm``, with a note), recorded in the alert's history under the session's user;
    returns the new status. Raises ValueError naming why a move is refused."""
    rows = _call(conn, "SELECT vt_move_alert(%s, %s, %s)", (alert_id, action, note), ValueError)
    return str(rows[0][0])


def assign_alert(conn: psycopg.Connection, alert_id: int, assignee: str, note: str = "") -> None:
    """Names who follows an open or acknowledged alert up (it is acknowledged by that); the
    assignee is a dashboard user or grid worker. Raises ValueError if refused."""
    _call(conn, "SELECT vt_assign_alert(%s, %s, %s)", (alert_id, assignee, note), ValueError)


def case_from_alert(
    conn: psycopg.Connection, alert_id: int, note: str = "", params: CaseParams | None = None
) -> tuple[int, str]:
    """Turns an alert into a case (上报), or returns the case it already became: (case id,
    case number). Category by rule (rules/cases.py), priority by severity and deadline by
    priority (``params``, VT_CASES__*). Raises rules.cases.CaseError if refused."""
    params = params or CaseParams()
    rows = _call(
        conn,
        "SELECT * FROM vt_case_from_alert(%s, %s, %s, %s, %s)",
        (
            alert_id,
            note,
            Jsonb(cases.CATEGORY_OF_RULE),
            Jsonb(params.priority_of_severity),
            Jsonb(params.deadline_hours),
        ),
        cases.CaseError,
    )
    return int(rows[0][0]), str(rows[0][1])


def move_case(
    conn: psycopg.Connection,
    case_id: int,
    action: str,
    assignee: str | None = None,
    note: str = "",
    params: CaseParams | None = None,
) -> str:
    """dispatch / handle / close / reopen (rules/cases.py MOVES, table case_moves) under the
    session's user; a reopened case gets a new deadline by its priority (``params``). Returns
    the new status; raises rules.cases.CaseError (a ValueError) naming why a move is refused."""
    params = params or CaseParams()
    rows = _call(
        conn,
        "SELECT vt_move_case(%s, %s, %s, %s, %s)",
        (case_id, action, assignee, note, Jsonb(params.deadline_hours)),
        cases.CaseError,
    )
    return str(rows[0][0])
