"""Every read query of the dashboard, parameterised, in one place."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import psycopg


def event_counts_by_building(conn: psycopg.Connection, window: timedelta) -> dict[str, int]:
    rows = conn.execute(
        "SELECT building_id, count(*) FROM events"
        " WHERE ts > now() - %s AND building_id IS NOT NULL GROUP BY building_id",
        (window,),
    ).fetchall()
    return {building_id: int(n) for building_id, n in rows}


def recent_event_points(conn: psycopg.Connection, window: timedelta, limit: int) -> pd.DataFrame:
    """Latest events placed at their building's centre, or at their device."""
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
        " WHERE building_id = %s ORDER BY ts DESC LIMIT %s",
        (building_id, limit),
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["ts", "kind", "device_id", "unit_id", "credential_ref", "received_at"]
    )


def event_totals(conn: psycopg.Connection, window: timedelta) -> dict[str, int]:
    rows = conn.execute(
        "SELECT kind, count(*) FROM events WHERE ts > now() - %s GROUP BY kind ORDER BY kind",
        (window,),
    ).fetchall()
    return {kind: int(n) for kind, n in rows}


def dead_letter_count(conn: psycopg.Connection, window: timedelta) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dead_letters WHERE received_at > now() - %s", (window,)
    ).fetchone()
    return int(row[0]) if row else 0
