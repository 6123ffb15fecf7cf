"""What the dashboard writes, through database functions that check the signed-in session's
user, role and grids (migration 0062): inspections, moving incidents, and revealing one
person's record (audited and committed before the values are returned)."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import psycopg


def record_inspection(
    conn: psycopg.Connection,
    building_id: str,
    inspected_on: date,
    findings: str,
    hazards: list[str],
    photo_refs: list[str],
    next_visit: date | None,
) -> int:
    """Recorded under the session's user; raises psycopg.errors.InsufficientPrivilege for a
    building outside the user's grids."""
    row = conn.execute(
        "SELECT record_inspection(%s, %s, %s, %s, %s, %s)",
        (building_id, inspected_on, findings, hazards, photo_refs, next_visit),
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


# --- alerts and cases (issue 13) ---------------------------------------------------------------

ALERT_MOVES = {
    "acknowledge": ({"open"}, "acknowledged"),
    "resolve": ({"open", "acknowledged"}, "resolved"),
    "false_alarm": ({"open", "acknowledged"}, "false_alarm"),
}


def move_alert(
    conn: psycopg.Connection, user: str, alert_id: int, action: str, note: str = ""
) -> str:
    """open -> acknowledged -> resolved / false_alarm, with the user and a note in the alert's
    history; returns the new status. Raises ValueError naming why a move is refused."""
    if action not in ALERT_MOVES:
        raise ValueError(f"unknown alert action {action!r}")
    allowed, target = ALERT_MOVES[action]
    if action != "acknowledge" and len(note.strip()) < 2:
        raise ValueError("请写处理说明 write a note saying what was found or done")
    with conn.transaction():
        row = conn.execute(
            "UPDATE alerts SET status = %s, updated_at = now(), version = version + 1,"
            " closed_at = CASE WHEN %s IN ('resolved', 'false_alarm') THEN now() END"
            " WHERE alert_id = %s AND status = ANY(%s) RETURNING alert_id",
            (target, target, alert_id, sorted(allowed)),
        ).fetchone()
        if row is None:
            raise ValueError(f"alert {alert_id} is not {' or '.join(sorted(allowed))}")
        conn.execute(
            "INSERT INTO alert_history (alert_id, actor, action, note) VALUES (%s, %s, %s, %s)",
            (alert_id, user, target, note.strip()),
        )
    return target


def assign_alert(
    conn: psycopg.Connection, user: str, alert_id: int, assignee: str, note: str = ""
) -> None:
    """Names who follows an open or acknowledged alert up (it is acknowledged by that)."""
    if not assignee.strip():
        raise ValueError("say who the alert is assigned to")
    with conn.transaction():
        row = conn.execute(
            "UPDATE alerts SET assigned_to = %s, status = 'acknowledged', updated_at = now(),"
            " version = version + 1 WHERE alert_id = %s"
            " AND status IN ('open', 'acknowledged') RETURNING alert_id",
            (assignee.strip(), alert_id),
        ).fetchone()
        if row is None:
            raise ValueError(f"alert {alert_id} is closed")
        conn.execute(
            "INSERT INTO alert_history (alert_id, actor, action, note) VALUES (%s, %s,"
            " 'assigned', %s)",
            (alert_id, user, f"→ {assignee.strip()} {note.strip()}".strip()),
        )


def case_from_alert(
    conn: psycopg.Connection, user: str, alert_id: int, note: str = ""
) -> tuple[int, str]:
    """Turns an alert into a case (上报); returns (case id, case number)."""
    from rules import case_store
    from rules.settings import CaseParams

    with conn.transaction():
        return case_store.case_from_alert(conn, user, alert_id, CaseParams(), note)


def move_case(
    conn: psycopg.Connection,
    user: str,
    case_id: int,
    action: str,
    assignee: str | None = None,
    note: str = "",
) -> str:
    """dispatch / handle / close / reopen (rules/cases.py); returns the new status. Raises
    rules.cases.CaseError (a ValueError) naming why a move is refused."""
    from rules import case_store

    with conn.transaction():
        return case_store.move(conn, user, case_id, action, assignee=assignee, note=note)
