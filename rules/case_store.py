"""The case workflow's database edge for the rules worker (the table owner): opening cases from
resident-app incidents, escalating overdue ones, grid staff. Each function runs in its caller's
transaction and records history. People move cases and turn alerts into cases only through the
checked functions of migration 0110 (dashboard/actions.py), under their session's user."""

from __future__ import annotations

from datetime import datetime

import psycopg

from rules import cases
from rules.settings import CaseParams

SYSTEM = "rules"


def staff(conn: psycopg.Connection) -> list[cases.Staff]:
    return [
        cases.Staff(g, u, d, tuple(c))
        for g, u, d, c in conn.execute(
            "SELECT grid_code, username, duty, categories FROM grid_staff"
        )
    ]


def _history(
    conn: psycopg.Connection,
    case_id: int,
    actor: str,
    action: str,
    before: str | None,
    after: str | None,
    note: str = "",
) -> None:
    conn.execute(
        "INSERT INTO case_history (case_id, actor, action, from_status, to_status, note)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (case_id, actor, action, before, after, note),
    )


def _open(
    conn: psycopg.Connection,
    actor: str,
    params: CaseParams,
    *,
    source: str,
    category: str,
    priority: str,
    reported_at: datetime,
    description: str,
    grid_code: str | None,
    building_id: str | None,
    unit_id: str | None = None,
    lon: float | None = None,
    lat: float | None = None,
    photo_refs: list[str] | None = None,
    incident_id: str | None = None,
    alert_id: int | None = None,
) -> tuple[int, str] | None:
    due = cases.due_at(reported_at, priority, params.deadline_hours)
    row = conn.execute(
        "INSERT INTO cases (case_no, category, priority, source, incident_id, alert_id, grid_code,"
        " building_id, unit_id, lon, lat, description, photo_refs, reported_at, due_at)"
        " VALUES (new_case_no(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING case_id, case_no",
        (
            reported_at,
            category,
            priority,
            source,
            incident_id,
            alert_id,
            grid_code,
            building_id,
            unit_id,
            lon,
            lat,
            description,
            photo_refs or [],
            reported_at,
            due,
        ),
    ).fetchone()
    if row is None:
        return None
    _history(conn, row[0], actor, "reported", None, "reported", description[:200])
    return int(row[0]), str(row[1])


def cases_from_incidents(conn: psycopg.Connection, params: CaseParams, limit: int = 500) -> int:
    """A case (上报) for each resident-app incident that has none yet; returns how many."""
    rows = conn.execute(
        "SELECT i.incident_id::text, i.reported_at, i.category, i.description, i.building_id,"
        " b.grid_code, coalesce(i.lon, b.lon), coalesce(i.lat, b.lat), i.photo_ref"
        " FROM incidents i LEFT JOIN buildings b USING (building_id)"
        " WHERE i.reported_at > now() - interval '30 days'"
        " AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.incident_id = i.incident_id)"
        " ORDER BY i.reported_at LIMIT %s",
        (limit,),
    ).fetchall()
    made = 0
    for incident, at, category, text, building, grid, lon, lat, photo in rows:
        priority = params.priority_of_category.get(category, "normal")
        made += bool(
            _open(
                conn,
                SYSTEM,
                params,
                source="app",
                category=category,
                priority=priority,
                reported_at=at,
                description=text or "—",
                grid_code=grid,
                building_id=building,
                lon=lon,
                lat=lat,
                photo_refs=[photo] if photo else [],
                incident_id=incident,
            )
        )
    return made


def escalate_overdue(conn: psycopg.Connection, now: datetime, params: CaseParams) -> list[int]:
    """Open cases past their deadline escalate to their grid's manager (or, for a grid without
    one, to ``VT_CASES__FALLBACK_MANAGER``), once each."""
    rows = conn.execute(
        "SELECT case_id, grid_code, category, status, due_at FROM cases"
        " WHERE status IN ('reported', 'dispatched') AND escalated_at IS NULL AND due_at < %s"
        " FOR UPDATE SKIP LOCKED",
        (now,),
    ).fetchall()
    if not rows:
        return []
    team = staff(conn)
    done = []
    for case_id, grid, category, status, due in rows:
        _, manager = cases.route(grid, category, team)
        manager = manager or params.fallback_manager
        conn.execute(
            "UPDATE cases SET escalated_to = %s, escalated_at = %s, updated_at = now()"
            " WHERE case_id = %s",
            (manager, now, case_id),
        )
        _history(
            conn,
            case_id,
            SYSTEM,
            "escalated",
            status,
            status,
            f"超期 overdue since {due:%Y-%m-%d %H:%M %Z} → {manager}",
        )
        done.append(case_id)
    return done


def add_staff(
    conn: psycopg.Connection, grid_code: str, username: str, duty: str,
    categories: tuple[str, ...] = (),
) -> None:  # fmt: skip
    """Puts a user on a grid as its worker (for some categories, or all) or its manager."""
    if duty not in ("worker", "manager"):
        raise cases.CaseError(f"duty is worker or manager, not {duty!r}")
    conn.execute(
        "INSERT INTO grid_staff (grid_code, username, duty, categories) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (grid_code, username, duty) DO UPDATE SET categories = EXCLUDED.categories",
        (grid_code, username, duty, list(categories)),
    )
