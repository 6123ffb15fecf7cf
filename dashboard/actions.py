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
