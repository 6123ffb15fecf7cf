"""The rules worker's database edge: what the rules read (new events by arrival through the
``events_rule_inbox`` partial index, windows of the derived tables) and the alert records they
write. Every read is bounded by a window or a cursor; none scans the event history."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rules.logic import (
    CATALOGUE,
    CST,
    DeviceInfo,
    DeviceState,
    Fact,
    Finding,
    OfflinePeriod,
    Poi,
    Tenant,
)
from rules.settings import RuleParams

# The index predicate of events_rule_inbox (migration 0040), repeated so the planner uses it.
INBOX = (
    "(kind IN ('access.alarm', 'access.door', 'gate.alarm')"
    " OR (kind = 'camera.detection' AND payload ->> 'cls' IN ('smoke', 'fire', 'ebike', 'crowd')))"
)
EVIDENCE_KEPT = 50
# The channel on which the database announces committed events (migration 0112's trigger).
EVENTS_STORED = "vt_events_stored"


@dataclass
class Context:
    """Devices, buildings' grids and points of interest: what places a finding."""

    devices: dict[str, DeviceInfo] = field(default_factory=dict)
    device_grid: dict[str, str | None] = field(default_factory=dict)
    building_grid: dict[str, str | None] = field(default_factory=dict)
    building_point: dict[str, tuple[float, float]] = field(default_factory=dict)
    pois: list[Poi] = field(default_factory=list)

    def grid_of(self, f: Finding) -> str | None:
        if f.building_id and self.building_grid.get(f.building_id):
            return self.building_grid[f.building_id]
        return self.device_grid.get(f.device_id or "")


def load_context(conn: psycopg.Connection) -> Context:
    ctx = Context()
    for device_id, kind, building, grid, lon, lat in conn.execute(
        "SELECT device_id, kind, building_id, grid_code, lon, lat FROM devices"
        " WHERE revoked_at IS NULL"
    ):
        ctx.devices[device_id] = DeviceInfo(device_id, kind, building, lon, lat)
        ctx.device_grid[device_id] = grid
    for building, grid, lon, lat in conn.execute(
        "SELECT building_id, grid_code, lon, lat FROM buildings"
    ):
        ctx.building_grid[building] = grid
        ctx.building_point[building] = (lon, lat)
    ctx.pois = [
        Poi(poi_id, name, lon, lat)
        for poi_id, name, lon, lat in conn.execute(
            "SELECT poi_id, name, lon, lat FROM points_of_interest"
        )
    ]
    return ctx


def new_events(
    conn: psycopg.Connection, after: datetime, max_age_days: int, limit: int
) -> list[tuple[datetime, Fact]]:
    """Rule-relevant events stored after ``after`` (``stored_at``), oldest first."""
    rows = conn.execute(
        f"SELECT stored_at, event_id::text, ts, device_id, kind, building_id, unit_id, payload"
        f" FROM events WHERE stored_at > %s AND ts > now() - %s * interval '1 day' AND {INBOX}"
        f" ORDER BY stored_at LIMIT %s",
        (after, max_age_days, limit),
    ).fetchall()
    return [(r[0], Fact(r[1], r[2], r[3], r[4], r[5], r[6], r[7])) for r in rows]


def offline_since(conn: psycopg.Connection, after: datetime) -> list[OfflinePeriod]:
    """Offline status changes received after ``after``, each with the first online change
    that followed it (through the device_status_history_at index and the primary key)."""
    rows = conn.execute(
        "SELECT h.device_id, d.kind, d.building_id, h.at,"
        " (SELECT min(b.at) FROM device_status_history b WHERE b.device_id = h.device_id"
        "  AND b.at > h.at AND b.online), d.lon, d.lat"
        " FROM device_status_history h JOIN devices d USING (device_id)"
        " WHERE h.at > %s AND NOT h.online ORDER BY h.at",
        (after,),
    ).fetchall()
    return [OfflinePeriod(*r) for r in rows]


@dataclass
class Window:
    """The window rules' inputs, read from the derived tables and the registry."""

    current: list[Tenant]
    ended: list[Tenant]
    care: list[Tenant]
    unit_building: dict[str, str]
    seen_occupancy: dict[str, dict[str, datetime]]
    seen_never: dict[str, dict[str, datetime]]
    seen_after: dict[str, dict[str, datetime]]
    last_activity: dict[str, datetime]
    coverage_days: dict[str, int]
    observed_since: dict[str, datetime]
    never_window_start: date
    devices: list[DeviceState]


def local_day(now: datetime) -> date:
    return now.astimezone(CST).date()


def read_window(conn: psycopg.Connection, now: datetime, params: RuleParams) -> Window:
    today = local_day(now)
    care_days = int(params.care_inactive_hours // 24) + 2
    days = {
        "occ": today - timedelta(days=params.occupancy_days - 1),
        "never": today - timedelta(days=params.never_seen_days - 1),
        "after": today - timedelta(days=params.after_tenancy_days - 1),
        "care": today - timedelta(days=care_days - 1),
    }
    days["min"] = min(days.values())
    current, care = [], []
    for unit, building, person, name, cred, start, end, care_target in conn.execute(
        "SELECT t.unit_id, u.building_id, p.person_id, p.name, p.credential_ref, t.start_date,"
        " t.end_date, p.care_target FROM tenancies t JOIN units u USING (unit_id)"
        " JOIN people_masked p USING (person_id) WHERE p.credential_ref IS NOT NULL"
        " AND t.start_date <= %(today)s AND (t.end_date IS NULL OR t.end_date >= %(today)s)",
        {"today": today},
    ):
        tenant = Tenant(unit, building, person, name or "—", cred, start, end)
        current.append(tenant)
        if care_target:
            care.append(tenant)
    # Ended tenancies whose credential the unit's door saw after the end, in the window.
    ended = [
        Tenant(unit, building, person, name or "—", cred, start, end)
        for unit, building, person, name, cred, start, end in conn.execute(
            "SELECT DISTINCT t.unit_id, u.building_id, p.person_id, p.name, p.credential_ref,"
            " t.start_date, t.end_date FROM unit_daily_credentials c"
            " JOIN people_masked p ON p.credential_ref = c.credential_ref"
            " JOIN tenancies t ON t.person_id = p.person_id AND t.unit_id = c.unit_id"
            " JOIN units u ON u.unit_id = t.unit_id"
            " WHERE c.day >= %(after)s AND t.end_date < c.day",
            {"after": days["after"]},
        )
    ]
    unit_building: dict[str, str] = dict(
        conn.execute("SELECT unit_id, building_id FROM units").fetchall()
    )
    seen: dict[str, dict[str, dict[str, datetime]]] = {k: defaultdict(dict) for k in days}
    last_activity: dict[str, datetime] = {}
    for unit, cred, occ, never, after, care_seen in conn.execute(
        "SELECT unit_id, credential_ref, max(last_seen) FILTER (WHERE day >= %(occ)s),"
        " max(last_seen) FILTER (WHERE day >= %(never)s),"
        " max(last_seen) FILTER (WHERE day >= %(after)s),"
        " max(last_seen) FILTER (WHERE day >= %(care)s)"
        " FROM unit_daily_credentials WHERE day >= %(min)s GROUP BY 1, 2",
        days,
    ):
        for key, value in (("occ", occ), ("never", never), ("after", after)):
            if value is not None:
                seen[key][unit][cred] = value
        if care_seen is not None:
            last_activity[cred] = max(care_seen, last_activity.get(cred, care_seen))
    coverage, observed = {}, {}
    for building, n, first in conn.execute(
        "SELECT building_id, count(DISTINCT (hour AT TIME ZONE 'Asia/Shanghai')::date)"
        "   FILTER (WHERE hour >= %(never)s::date::timestamp AT TIME ZONE 'Asia/Shanghai'),"
        " min(hour) FROM building_hourly WHERE kind = 'access.unlock'"
        " AND hour >= %(min)s::date::timestamp AT TIME ZONE 'Asia/Shanghai' GROUP BY 1",
        days,
    ):
        coverage[building] = int(n)
        observed[building] = first
    devices = [
        DeviceState(*row)
        for row in conn.execute(
            "SELECT device_id, kind, building_id, online, status_changed_at, last_seen, lon, lat"
            " FROM devices WHERE revoked_at IS NULL"
        )
    ]
    return Window(
        current,
        ended,
        care,
        unit_building,
        seen["occ"],
        seen["never"],
        seen["after"],
        last_activity,
        coverage,
        observed,
        days["never"],
        devices,
    )


def sample_evidence(
    conn: psycopg.Connection, f: Finding, since: datetime, limit: int = 5
) -> list[str]:
    """A few event ids behind a window finding (a unit's door events), read through the
    building's index over a bounded time."""
    if not f.building_id or not f.unit_id:
        return []
    rows = conn.execute(
        "SELECT event_id::text FROM events WHERE building_id = %s AND ts >= %s AND unit_id = %s"
        " AND kind = 'access.unlock' ORDER BY ts DESC LIMIT %s",
        (f.building_id, since, f.unit_id, limit),
    ).fetchall()
    return [r[0] for r in rows]


def upsert(
    conn: psycopg.Connection, f: Finding, grid: str | None, reraise_after: timedelta
) -> tuple[int, bool] | None:
    """One open alert per rule and subject: a new finding opens one, a repeat with new evidence
    (or a changed title) updates it. Returns (alert id, opened) or None when nothing changed.

    An event already in the evidence of an alert of the same rule and subject is never counted
    again (a reread after a restart); a window finding is not raised again within
    ``reraise_after`` of its alert being closed."""
    rule = CATALOGUE[f.rule]
    if f.evidence:
        seen = conn.execute(
            "SELECT 1 FROM alerts WHERE rule = %s AND subject = %s AND evidence @> %s::text[]"
            " LIMIT 1",
            (f.rule, f.subject, list(f.evidence)),
        ).fetchone()
        if seen:
            return None
    if rule.window and not f.evidence:
        row = conn.execute(
            "SELECT status IN ('open', 'acknowledged'), closed_at FROM alerts"
            " WHERE rule = %s AND subject = %s ORDER BY alert_id DESC LIMIT 1",
            (f.rule, f.subject),
        ).fetchone()
        if row and not row[0] and row[1] and row[1] > f.ts - reraise_after:
            return None
    lon, lat = f.lon, f.lat
    row = conn.execute(
        """
        INSERT INTO alerts AS a (rule, severity, subject, grid_code, building_id, unit_id,
            device_id, poi_id, lon, lat, title, detail, evidence, first_seen, last_seen)
        VALUES (%(rule)s, %(severity)s, %(subject)s, %(grid)s, %(building)s, %(unit)s,
            %(device)s, %(poi)s, %(lon)s, %(lat)s, %(title)s, %(detail)s, %(evidence)s,
            %(ts)s, %(ts)s)
        ON CONFLICT (rule, subject) WHERE status IN ('open', 'acknowledged') DO UPDATE SET
            last_seen = greatest(a.last_seen, EXCLUDED.last_seen),
            title = EXCLUDED.title, detail = EXCLUDED.detail,
            occurrences = a.occurrences + (SELECT count(*) FROM unnest(EXCLUDED.evidence) e
                                           WHERE e <> ALL(a.evidence)),
            evidence = (SELECT coalesce(array_agg(e ORDER BY n), '{}') FROM (
                SELECT e, n FROM unnest(a.evidence || EXCLUDED.evidence) WITH ORDINALITY AS x(e, n)
                ORDER BY n DESC LIMIT %(kept)s) AS kept),
            updated_at = now(), version = a.version + 1
        WHERE a.title IS DISTINCT FROM EXCLUDED.title OR NOT (EXCLUDED.evidence <@ a.evidence)
        RETURNING alert_id, (xmax = 0)
        """,
        {
            "rule": f.rule,
            "severity": rule.severity,
            "subject": f.subject,
            "grid": grid,
            "building": f.building_id,
            "unit": f.unit_id,
            "device": f.device_id,
            "poi": f.poi_id,
            "lon": lon,
            "lat": lat,
            "title": f.title,
            "detail": Jsonb(dict(f.detail)),
            "evidence": list(f.evidence),
            "ts": f.ts,
            "kept": EVIDENCE_KEPT,
        },
    ).fetchone()
    if row is None:
        return None
    if row[1]:
        conn.execute(
            "INSERT INTO alert_history (alert_id, actor, action, note) VALUES (%s, 'rules',"
            " 'opened', %s)",
            (row[0], f.title),
        )
    return int(row[0]), bool(row[1])


def clear(conn: psycopg.Connection, rule: str, still: Sequence[str], note: str) -> list[int]:
    """Resolves the open alerts of ``rule`` whose subject no longer holds (a device back
    online), as the actor 'rules'."""
    rows = conn.execute(
        "UPDATE alerts SET status = 'resolved', closed_at = now(), updated_at = now(),"
        " version = version + 1 WHERE rule = %s AND status IN ('open', 'acknowledged')"
        " AND subject <> ALL(%s::text[]) RETURNING alert_id",
        (rule, list(still)),
    ).fetchall()
    for (alert_id,) in rows:
        conn.execute(
            "INSERT INTO alert_history (alert_id, actor, action, note)"
            " VALUES (%s, 'rules', 'resolved', %s)",
            (alert_id, note),
        )
    return [r[0] for r in rows]


def load_state(conn: psycopg.Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM rule_state WHERE name = %s", (name,)).fetchone()
    return dict(row[0]) if row else None


def save_state(conn: psycopg.Connection, name: str, value: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO rule_state (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
        " SET value = EXCLUDED.value, updated_at = now()",
        (name, Jsonb(value)),
    )


_ALERT_COLUMNS = (
    "alert_id, version, rule, severity, status, subject, title, grid_code, building_id,"
    " unit_id, device_id, first_seen, last_seen, occurrences, evidence"
)


def unpublished(conn: psycopg.Connection, limit: int = 1000) -> list[dict[str, Any]]:
    """Alerts changed since they were last published (a new version), oldest first."""
    cur = conn.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE published_version < version"
        " ORDER BY alert_id LIMIT %s",
        (limit,),
    )
    names = [c.name for c in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def mark_published(conn: psycopg.Connection, versions: Sequence[tuple[int, int]]) -> None:
    conn.execute(
        "UPDATE alerts a SET published_version = greatest(a.published_version, v.version)"
        " FROM unnest(%s::bigint[], %s::int[]) AS v(alert_id, version)"
        " WHERE a.alert_id = v.alert_id",
        ([a for a, _ in versions], [v for _, v in versions]),
    )


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
