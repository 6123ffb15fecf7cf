"""Every read query of the dashboard, parameterised, in one place. The common views read the
derived tables the ingester maintains (building_hourly, unit_daily_credentials,
device_latest), not raw events."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import psycopg

ALARM_KINDS = ["gate.alarm", "access.alarm"]


def events_by_building(conn: psycopg.Connection, window: timedelta) -> dict[str, float]:
    rows = conn.execute(
        "SELECT building_id, sum(events) FROM building_hourly"
        " WHERE hour > now() - %s - interval '1 hour' AND kind <> 'heartbeat'"
        " AND building_id <> '' GROUP BY building_id",
        (window,),
    ).fetchall()
    return {b: float(n) for b, n in rows}


def alarms_by_building(conn: psycopg.Connection, window: timedelta) -> dict[str, float]:
    rows = conn.execute(
        "SELECT building_id, sum(events) FROM building_hourly"
        " WHERE hour > now() - %s AND kind = ANY(%s) GROUP BY building_id",
        (window, ALARM_KINDS),
    ).fetchall()
    return {b: float(n) for b, n in rows}


def residents_seen_by_building(conn: psycopg.Connection, days: int) -> dict[str, float]:
    """Distinct credentials the door readers saw per building over the last ``days`` days."""
    rows = conn.execute(
        "SELECT u.building_id, count(DISTINCT c.credential_ref) FROM unit_daily_credentials c"
        " JOIN units u USING (unit_id) WHERE c.day > current_date - %s GROUP BY u.building_id",
        (days,),
    ).fetchall()
    return {b: float(n) for b, n in rows}


def registered_by_building(conn: psycopg.Connection) -> dict[str, float]:
    """Tenants with a current tenancy, per building."""
    rows = conn.execute(
        "SELECT u.building_id, count(*) FROM tenancies t JOIN units u USING (unit_id)"
        " WHERE t.start_date <= current_date AND (t.end_date IS NULL OR t.end_date >= current_date)"
        " GROUP BY u.building_id"
    ).fetchall()
    return {b: float(n) for b, n in rows}


def units_by_building(conn: psycopg.Connection) -> dict[str, float]:
    rows = conn.execute("SELECT building_id, count(*) FROM units GROUP BY building_id").fetchall()
    return {b: float(n) for b, n in rows}


def residents_seen_by_unit(conn: psycopg.Connection, building_id: str, days: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT c.unit_id, count(DISTINCT c.credential_ref) FROM unit_daily_credentials c"
        " JOIN units u USING (unit_id)"
        " WHERE u.building_id = %s AND c.day > current_date - %s GROUP BY c.unit_id",
        (building_id, days),
    ).fetchall()
    return {u: int(n) for u, n in rows}


def recent_event_points(conn: psycopg.Connection, window: timedelta, limit: int) -> pd.DataFrame:
    """Latest events placed on their building's roof, or at their device."""
    rows = conn.execute(
        """
        SELECT e.ts, e.kind, e.device_id, e.building_id,
               coalesce(b.lon, d.lon) AS lon, coalesce(b.lat, d.lat) AS lat,
               coalesce(b.height_m, 0) + 1.5 AS elevation
        FROM events e
        JOIN devices d USING (device_id)
        LEFT JOIN buildings b ON b.building_id = e.building_id
        WHERE e.ts > now() - %s AND e.kind <> 'heartbeat'
        ORDER BY e.ts DESC
        LIMIT %s
        """,
        (window, limit),
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["ts", "kind", "device_id", "building_id", "lon", "lat", "elevation"]
    ).dropna(subset=["lon", "lat"])


def building_events(conn: psycopg.Connection, building_id: str, limit: int = 200) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT ts, kind, device_id, unit_id, credential_ref, received_at FROM events"
        " WHERE building_id = %s AND ts > now() - interval '7 days' ORDER BY ts DESC LIMIT %s",
        (building_id, limit),
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["ts", "kind", "device_id", "unit_id", "credential_ref", "received_at"]
    )


def events_today(conn: psycopg.Connection) -> dict[str, int]:
    """Events since local midnight (China Standard Time) by kind, heartbeats aside."""
    rows = conn.execute(
        "SELECT kind, sum(events) FROM building_hourly"
        " WHERE hour >= date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai')"
        "   AT TIME ZONE 'Asia/Shanghai' AND kind <> 'heartbeat'"
        " GROUP BY kind ORDER BY kind"
    ).fetchall()
    return {kind: int(n) for kind, n in rows}


def devices_online(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE online), count(*) FROM devices WHERE revoked_at IS NULL"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def dead_letter_count(conn: psycopg.Connection, window: timedelta) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dead_letters WHERE received_at > now() - %s", (window,)
    ).fetchone()
    return int(row[0]) if row else 0


# --- building inspector ------------------------------------------------------------------------


def registered_tenants(conn: psycopg.Connection, building_id: str) -> pd.DataFrame:
    """Current tenants per unit, masked by the database (people_masked)."""
    rows = conn.execute(
        "SELECT t.unit_id, p.person_id, p.name, p.id_number, p.phone, p.care_target,"
        " p.credential_ref, t.start_date FROM tenancies t JOIN units u USING (unit_id)"
        " JOIN people_masked p USING (person_id) WHERE u.building_id = %s"
        " AND t.start_date <= current_date AND (t.end_date IS NULL OR t.end_date >= current_date)"
        " ORDER BY t.unit_id, p.person_id",
        (building_id,),
    ).fetchall()
    return pd.DataFrame(
        rows,
        columns=["unit_id", "person_id", "name", "id_number", "phone", "care_target",
                 "credential_ref", "start_date"],
    )  # fmt: skip


def ended_tenancies(conn: psycopg.Connection, building_id: str) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT t.unit_id, p.credential_ref, t.end_date FROM tenancies t"
        " JOIN units u USING (unit_id) JOIN people_masked p USING (person_id)"
        " WHERE u.building_id = %s AND t.end_date < current_date",
        (building_id,),
    ).fetchall()
    return pd.DataFrame(rows, columns=["unit_id", "credential_ref", "end_date"])


def observed_credentials(conn: psycopg.Connection, building_id: str, days: int) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT c.unit_id, c.credential_ref, max(c.last_seen) FROM unit_daily_credentials c"
        " JOIN units u USING (unit_id) WHERE u.building_id = %s AND c.day > current_date - %s"
        " GROUP BY 1, 2",
        (building_id, days),
    ).fetchall()
    return pd.DataFrame(rows, columns=["unit_id", "credential_ref", "last_seen"])


def inspections(conn: psycopg.Connection, building_id: str) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT inspected_on, inspector, findings, hazards, photo_refs, next_visit"
        " FROM inspections WHERE building_id = %s ORDER BY inspected_on DESC, inspection_id DESC",
        (building_id,),
    ).fetchall()
    return pd.DataFrame(
        rows,
        columns=["inspected_on", "inspector", "findings", "hazards", "photo_refs", "next_visit"],
    )


def audit_log(conn: psycopg.Connection, limit: int = 500) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT at, username, action, subject, reason FROM audit_log ORDER BY at DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return pd.DataFrame(rows, columns=["at", "username", "action", "subject", "reason"])


def app_user(conn: psycopg.Connection, username: str) -> tuple[str, str, list[str]] | None:
    row = conn.execute(
        "SELECT role, password_hash, grids FROM app_users"
        " WHERE username = %s AND disabled_at IS NULL",
        (username,),
    ).fetchone()
    return (row[0], row[1], list(row[2])) if row else None
