"""What the dashboard writes, each in its own transaction on the signed-in user's session
connection: inspections, and revealing one person's record (audited by the database)."""

from __future__ import annotations

from datetime import date

import psycopg


def record_inspection(
    conn: psycopg.Connection,
    inspector: str,
    building_id: str,
    inspected_on: date,
    findings: str,
    hazards: list[str],
    photo_refs: list[str],
    next_visit: date | None,
) -> int:
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO inspections (building_id, inspector, inspected_on, findings, hazards,"
            " photo_refs, next_visit) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " RETURNING inspection_id",
            (building_id, inspector, inspected_on, findings, hazards, photo_refs, next_visit),
        ).fetchone()
    assert row is not None
    return int(row[0])


def reveal_person(
    conn: psycopg.Connection, reader: str, person_id: str, reason: str
) -> tuple[str, str, str] | None:
    """The database records who, what, when and why before it returns anything."""
    with conn.transaction():
        conn.execute("SELECT set_config('vt.user', %s, true)", (reader,))
        row = conn.execute("SELECT * FROM reveal_person(%s, %s)", (person_id, reason)).fetchone()
    return (row[0], row[1], row[2]) if row else None


def move_incident(
    conn: psycopg.Connection, user: str, incident_id: str, status: str, assigned_to: str | None
) -> bool:
    """reported -> assigned (to someone) -> resolved; returns False if nothing matched."""
    if status not in ("assigned", "resolved"):
        raise ValueError(f"an incident moves to assigned or resolved, not {status!r}")
    if status == "assigned" and not (assigned_to or "").strip():
        raise ValueError("say who the incident is assigned to")
    with conn.transaction():
        cur = conn.execute(
            "UPDATE incidents SET status = %s, assigned_to = coalesce(%s, assigned_to),"
            " resolved_at = CASE WHEN %s = 'resolved' THEN now() END, updated_by = %s,"
            " updated_at = now() WHERE incident_id = %s AND status <> 'resolved'",
            (status, (assigned_to or "").strip() or None, status, user, incident_id),
        )
    return cur.rowcount == 1
