"""Every read query of the dashboard, parameterised, in one place. The common views read the
derived tables the ingester maintains (building_hourly, village_hourly,
unit_daily_credentials, device_latest), not raw events."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import psycopg

from devices.kinds import ALARM_TYPES

ALARM_KINDS = sorted(ALARM_TYPES)  # the device kind registry's (devices/kinds.py)


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
        "SELECT ts, kind, device_id, unit_id, credential_ref, received_at, payload FROM events"
        " WHERE building_id = %s AND ts > now() - interval '7 days' ORDER BY ts DESC LIMIT %s",
        (building_id, limit),
    ).fetchall()
    return pd.DataFrame(
        [(*r[:2], describe(r[1], r[6]), *r[2:6]) for r in rows],
        columns=["ts", "kind", "what", "device_id", "unit_id", "credential_ref", "received_at"],
    )


def events_today(conn: psycopg.Connection, village: str | None = None) -> dict[str, int]:
    """Events since local midnight by kind, heartbeats aside, each village's midnight in its
    own time zone (villages.time_zone): of ``village`` (a village key), else of every village
    the session sees, from building_hourly. A session that sees everything (and the owner)
    reads the whole platform from village_hourly instead (a few hundred rows a day, not one
    per building), midnight in the villages' common zone (the column's default,
    Asia/Shanghai, when they have several)."""
    limited = conn.execute(
        # CASE: vt_sees_all() needs a session, which the owner (row security off) has not.
        "SELECT CASE WHEN row_security_active('village_hourly') THEN NOT vt_sees_all()"
        " ELSE false END"
    ).fetchone()
    if village is not None or (limited is not None and limited[0]):
        rows = conn.execute(
            "SELECT h.kind, sum(h.events) FROM building_hourly h"
            " JOIN buildings b USING (building_id) JOIN villages v USING (village_key)"
            " WHERE (%(v)s::text IS NULL OR v.village_key = %(v)s) AND h.kind <> 'heartbeat'"
            # the earliest village midnight first: a bound the (hour DESC) index can use
            " AND h.hour >= (SELECT min(date_trunc('day', now() AT TIME ZONE z.time_zone)"
            "   AT TIME ZONE z.time_zone) FROM villages z)"
            " AND h.hour >= date_trunc('day', now() AT TIME ZONE v.time_zone)"
            "   AT TIME ZONE v.time_zone GROUP BY h.kind ORDER BY h.kind",
            {"v": village},
        ).fetchall()
        return {kind: int(n) for kind, n in rows}
    rows = conn.execute(
        "WITH zone AS (SELECT coalesce((SELECT min(time_zone) FROM villages"
        "   HAVING count(DISTINCT time_zone) = 1), 'Asia/Shanghai') AS name)"
        " SELECT kind, sum(events) FROM village_hourly, zone"
        " WHERE hour >= date_trunc('day', now() AT TIME ZONE zone.name) AT TIME ZONE zone.name"
        " AND kind <> 'heartbeat' GROUP BY kind ORDER BY kind"
    ).fetchall()
    return {kind: int(n) for kind, n in rows}


def devices_online(conn: psycopg.Connection, village: str | None = None) -> tuple[int, int]:
    """(online, registered) devices, revoked ones aside: of ``village`` (a village key: its
    devices by building, else grid cell, migration 0150's village_of_device) or of all."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE online), count(*) FROM devices WHERE revoked_at IS NULL"
        " AND (%(v)s::text IS NULL OR village_of_device(device_id) = %(v)s)",
        {"v": village},
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
    """Ended tenancies of the building's units: unit_id, credential_ref, end_date, person_id,
    name (masked)."""
    rows = conn.execute(
        "SELECT t.unit_id, p.credential_ref, t.end_date, p.person_id, p.name FROM tenancies t"
        " JOIN units u USING (unit_id) JOIN people_masked p USING (person_id)"
        " WHERE u.building_id = %s AND t.end_date < current_date",
        (building_id,),
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["unit_id", "credential_ref", "end_date", "person_id", "name"]
    )


def observed_credentials(conn: psycopg.Connection, building_id: str, days: int) -> pd.DataFrame:
    """Cards the building's unit doors saw over the last ``days`` local days: unit_id,
    credential_ref, last_seen (timestamptz), days (distinct local days seen)."""
    rows = conn.execute(
        "SELECT c.unit_id, c.credential_ref, max(c.last_seen), count(DISTINCT c.day)"
        " FROM unit_daily_credentials c JOIN units u USING (unit_id)"
        " WHERE u.building_id = %s AND c.day > current_date - %s GROUP BY 1, 2",
        (building_id, days),
    ).fetchall()
    return pd.DataFrame(rows, columns=["unit_id", "credential_ref", "last_seen", "days"])


def names_by_credential(conn: psycopg.Connection, refs: list[str]) -> dict[str, str]:
    """credential_ref -> masked name, of the people holding ``refs`` whom the session may
    see (people_masked under row-level security); others are left out."""
    if not refs:
        return {}
    found = conn.execute(
        "SELECT credential_ref, name FROM people_masked WHERE credential_ref = ANY(%s)", (refs,)
    ).fetchall()
    return {str(ref): str(name) for ref, name in found if name}


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


def reveal_categories(conn: psycopg.Connection) -> dict[str, str]:
    """The reasons one may reveal a person for: category code → its bilingual label."""
    return dict(conn.execute("SELECT category, label FROM reveal_categories").fetchall())


def audit_actions(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT action FROM audit_log ORDER BY 1")]


def audit_log_filtered(
    conn: psycopg.Connection,
    username: str | None,
    action: str | None,
    within: timedelta,
    subject: str | None,
    limit: int = 5000,
) -> pd.DataFrame:
    """Audit rows newest first, filtered by user, action, age and subject (person, account or
    address). Only admins get rows: the database filters the rest (row-level security)."""
    rows = conn.execute(
        "SELECT at, username, action, subject, category, reason, address FROM audit_log"
        " WHERE at > now() - %(within)s"
        " AND (%(user)s::text IS NULL OR username = %(user)s)"
        " AND (%(action)s::text IS NULL OR action = %(action)s)"
        " AND (%(subject)s::text IS NULL OR subject = %(subject)s)"
        " ORDER BY at DESC LIMIT %(limit)s",
        {"within": within, "user": username, "action": action, "subject": subject,
         "limit": limit},
    ).fetchall()  # fmt: skip
    return pd.DataFrame(
        rows, columns=["at", "username", "action", "subject", "category", "reason", "address"]
    )


def lockouts(conn: psycopg.Connection) -> pd.DataFrame:
    """Current sign-in lockouts (migration 0111; admins only, others get
    psycopg.errors.InsufficientPrivilege): kind ``account`` (locked after wrong passwords,
    until an admin lifts it: ``until`` is NaT) or ``address`` (blocked until ``until``),
    subject (username or client address), since (timestamptz)."""
    rows = conn.execute("SELECT kind, subject, since, until FROM vt_lockouts()").fetchall()
    return pd.DataFrame(rows, columns=["kind", "subject", "since", "until"])


_DAY_START = """
    (date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') - %(days)s * interval '1 day')
    AT TIME ZONE 'Asia/Shanghai'
"""


def replay_hours(conn: psycopg.Connection, days_ago: int) -> pd.DataFrame:
    """The hours of one local day that had events, with their totals (24 rows at most)."""
    rows = conn.execute(
        f"""
        SELECT hour, sum(events) FROM building_hourly
        WHERE hour >= {_DAY_START} AND hour < {_DAY_START} + interval '1 day'
          AND building_id <> '' AND kind <> 'heartbeat'
        GROUP BY 1 ORDER BY 1
        """,
        {"days": days_ago},
    ).fetchall()
    return pd.DataFrame(rows, columns=["hour", "events"])


def replay_hour(conn: psycopg.Connection, hour: datetime) -> dict[str, float]:
    """Events per building in one hour: what the replay map draws for that slider step."""
    rows = conn.execute(
        "SELECT building_id, sum(events) FROM building_hourly"
        " WHERE hour = %s AND building_id <> '' AND kind <> 'heartbeat' GROUP BY 1",
        (hour,),
    ).fetchall()
    return {b: float(n) for b, n in rows}


def events_page(
    conn: psycopg.Connection,
    since: timedelta,
    kinds: list[str],
    grid: str | None,
    building_id: str | None,
    limit: int = 2000,
) -> pd.DataFrame:
    """Filtered events, newest first, placed at their building or device."""
    rows = conn.execute(
        """
        SELECT e.ts, e.kind, e.device_id, e.building_id, e.unit_id, e.credential_ref,
               coalesce(b.lon, d.lon) AS lon, coalesce(b.lat, d.lat) AS lat,
               coalesce(b.height_m, 0) + 1.5 AS elevation, e.payload
        FROM events e JOIN devices d USING (device_id)
        LEFT JOIN buildings b ON b.building_id = e.building_id
        WHERE e.ts > now() - %(since)s
          AND (cardinality(%(kinds)s::text[]) = 0 OR e.kind = ANY(%(kinds)s))
          AND (%(grid)s::text IS NULL OR coalesce(b.grid_code, d.grid_code) = %(grid)s)
          AND (%(building)s::text IS NULL OR e.building_id = %(building)s)
        ORDER BY e.ts DESC LIMIT %(limit)s
        """,
        {"since": since, "kinds": kinds, "grid": grid, "building": building_id, "limit": limit},
    ).fetchall()
    return pd.DataFrame(
        [(r[0], r[1], describe(r[1], r[9]), *r[2:9]) for r in rows],
        columns=["ts", "kind", "what", "device_id", "building_id", "unit_id", "credential_ref",
                 "lon", "lat", "elevation"],
    ).dropna(subset=["lon", "lat"])  # fmt: skip


def devices_page(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute(
        """
        SELECT d.device_id, d.kind, d.building_id, d.grid_code, d.online, d.last_seen,
               d.last_seq, l.kind AS last_event, coalesce(x.dead_letters, 0) AS dead_letters_24h,
               d.lon, d.lat, d.status_changed_at
        FROM devices d
        LEFT JOIN device_latest l USING (device_id)
        LEFT JOIN (SELECT device_id, count(*) AS dead_letters FROM dead_letters
                   WHERE received_at > now() - interval '24 hours' GROUP BY 1) x USING (device_id)
        WHERE d.revoked_at IS NULL ORDER BY d.device_id
        """
    ).fetchall()
    return pd.DataFrame(
        rows,
        columns=["device_id", "kind", "building_id", "grid_code", "online", "last_seen",
                 "last_seq", "last_event", "dead_letters_24h", "lon", "lat", "status_changed_at"],
    )  # fmt: skip


def dead_letters_by(conn: psycopg.Connection, column: str, since: timedelta) -> pd.DataFrame:
    if column not in {"reason", "device_id"}:
        raise ValueError(f"cannot group dead letters by {column!r}")
    rows = conn.execute(
        f"SELECT coalesce({column}, '—'), count(*), max(received_at) FROM dead_letters"
        " WHERE received_at > now() - %s GROUP BY 1 ORDER BY 2 DESC LIMIT 100",
        (since,),
    ).fetchall()
    return pd.DataFrame(rows, columns=[column, "count", "latest"])


def latest_dead_letters(conn: psycopg.Connection, limit: int = 50) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT received_at, topic, device_id, reason, detail, payload_size FROM dead_letters"
        " ORDER BY received_at DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["received_at", "topic", "device_id", "reason", "detail", "bytes"]
    )


def sequence_gaps(conn: psycopg.Connection, since: timedelta) -> pd.DataFrame:
    rows = conn.execute("SELECT * FROM sequence_gaps(now() - %s::interval)", (since,)).fetchall()
    return pd.DataFrame(rows, columns=["device_id", "first_missing", "last_missing", "missing"])


def ingest_lag(conn: psycopg.Connection, since: timedelta) -> dict[str, float]:
    """Seconds from device time to reception and from reception to storage (p50, p95)."""
    row = conn.execute(
        """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY network),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY network),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY batching),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY batching)
        FROM (SELECT extract(epoch FROM received_at - ts) AS network,
                     extract(epoch FROM stored_at - received_at) AS batching
              FROM events WHERE received_at > now() - %s) AS lag
        """,
        (since,),
    ).fetchone()
    keys = ["network_p50", "network_p95", "batching_p50", "batching_p95"]
    return {
        k: float(v) if v is not None else float("nan")
        for k, v in zip(keys, row or (), strict=False)
    }


def inspections_due(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(DISTINCT building_id) FROM inspections i WHERE next_visit <= current_date"
        " AND NOT EXISTS (SELECT 1 FROM inspections j WHERE j.building_id = i.building_id"
        " AND j.inspected_on >= i.next_visit)"
    ).fetchone()
    return int(row[0]) if row else 0


def open_incidents(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT incident_id::text, reported_at, category, description, building_id, status,"
        " assigned_to, photo_ref FROM incidents WHERE status <> 'resolved'"
        " ORDER BY reported_at DESC LIMIT 500"
    ).fetchall()
    return pd.DataFrame(
        rows,
        columns=["incident_id", "reported_at", "category", "description", "building_id",
                 "status", "assigned_to", "photo_ref"],
    )  # fmt: skip


def open_incident_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM incidents WHERE status <> 'resolved'").fetchone()
    return int(row[0]) if row else 0


def device_states_at(conn: psycopg.Connection, days_ago: int, hour: int) -> pd.DataFrame:
    """Each device as it was at the end of a local hour: its last availability change by then
    (devices that never reported one are left as they are now)."""
    rows = conn.execute(
        """
        WITH moment AS (
            SELECT ((date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai')
                    - %s * interval '1 day' + %s * interval '1 hour' + interval '1 hour')
                   AT TIME ZONE 'Asia/Shanghai') AS at
        )
        SELECT d.device_id, d.kind, d.lon, d.lat,
               (SELECT h.online FROM device_status_history h, moment
                WHERE h.device_id = d.device_id AND h.at < moment.at
                ORDER BY h.at DESC LIMIT 1) AS online
        FROM devices d WHERE d.revoked_at IS NULL AND d.lon IS NOT NULL
        """,
        (days_ago, hour),
    ).fetchall()
    return pd.DataFrame(rows, columns=["device_id", "kind", "lon", "lat", "online"])


# --- alerts and cases (issue 13) ---------------------------------------------------------------

SEVERITY_ORDER = "array_position(ARRAY['critical','high','medium','low'], a.severity)"
OPEN = "a.status IN ('open', 'acknowledged')"
ALERT_COLUMNS = [
    "alert_id", "severity", "rule", "title", "status", "assigned_to", "grid_code",
    "building_id", "unit_id", "device_id", "first_seen", "last_seen", "occurrences", "lon",
    "lat", "elevation", "evidence",
]  # fmt: skip


def alerts_page(
    conn: psycopg.Connection,
    severities: list[str],
    rules: list[str],
    grids: list[str],
    statuses: list[str],
    max_age: timedelta | None,
    limit: int = 2000,
    village: str | None = None,
) -> pd.DataFrame:
    """Alerts by the alarm centre's filters (an empty list is no filter; ``village``, a
    village key: its alerts, by their building, else their grid cell), most severe first,
    then newest; placed at their building's roof, or their own point."""
    rows = conn.execute(
        f"""
        SELECT a.alert_id, a.severity, a.rule, a.title, a.status, a.assigned_to, a.grid_code,
               a.building_id, a.unit_id, a.device_id, a.first_seen, a.last_seen, a.occurrences,
               coalesce(a.lon, b.lon), coalesce(a.lat, b.lat), coalesce(b.height_m, 0) + 4,
               array_to_string(a.evidence[greatest(1, cardinality(a.evidence) - 4):], ' ')
        FROM alerts a LEFT JOIN buildings b USING (building_id)
            LEFT JOIN grid_cells g ON g.grid_code = a.grid_code
        WHERE (cardinality(%(sev)s::text[]) = 0 OR a.severity = ANY(%(sev)s))
          AND (%(village)s::text IS NULL OR coalesce(b.village_key, g.village_key) = %(village)s)
          AND (cardinality(%(rules)s::text[]) = 0 OR a.rule = ANY(%(rules)s))
          AND (cardinality(%(grids)s::text[]) = 0 OR a.grid_code = ANY(%(grids)s))
          AND (cardinality(%(status)s::text[]) = 0 OR a.status = ANY(%(status)s))
          AND (%(age)s::interval IS NULL OR a.last_seen > now() - %(age)s::interval)
        ORDER BY {SEVERITY_ORDER}, a.last_seen DESC LIMIT %(limit)s
        """,
        {"sev": severities, "rules": rules, "grids": grids, "status": statuses, "age": max_age,
         "limit": limit, "village": village},
    ).fetchall()  # fmt: skip
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


def open_alerts_by_severity(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        f"SELECT a.severity, count(*) FROM alerts a WHERE {OPEN} GROUP BY 1"
    ).fetchall()
    return {s: int(n) for s, n in rows}


def open_alerts_by_building(conn: psycopg.Connection) -> dict[str, float]:
    """Per building, the most severe open alert as 4 (critical) … 1 (low)."""
    rows = conn.execute(
        f"SELECT a.building_id, max(5 - {SEVERITY_ORDER}) FROM alerts a"
        f" WHERE {OPEN} AND a.building_id IS NOT NULL GROUP BY 1"
    ).fetchall()
    return {b: float(n) for b, n in rows}


def open_alert_markers(conn: psycopg.Connection, limit: int = 500) -> pd.DataFrame:
    return alerts_page(conn, [], [], [], ["open", "acknowledged"], None, limit).dropna(
        subset=["lon", "lat"]
    )


def offline_devices(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT device_id, kind, building_id, status_changed_at, last_seen, lon, lat"
        " FROM devices WHERE revoked_at IS NULL AND online = false ORDER BY status_changed_at"
    ).fetchall()
    return pd.DataFrame(
        rows,
        columns=["device_id", "kind", "building_id", "status_changed_at", "last_seen", "lon",
                 "lat"],
    )  # fmt: skip


CASE_COLUMNS = [
    "case_id", "case_no", "priority", "status", "category", "grid_code", "building_id",
    "unit_id", "description", "assigned_to", "reported_at", "due_at", "overdue", "escalated_to",
    "source", "alert_id", "photo_refs", "feedback", "lon", "lat", "elevation",
]  # fmt: skip
_CASES = """
    SELECT c.case_id, c.case_no, c.priority, c.status, c.category, c.grid_code, c.building_id,
           c.unit_id, c.description, c.assigned_to, c.reported_at, c.due_at,
           c.status IN ('reported', 'dispatched') AND c.due_at < now(), c.escalated_to,
           c.source, c.alert_id, array_to_string(c.photo_refs, ' '), c.feedback,
           coalesce(c.lon, b.lon), coalesce(c.lat, b.lat), coalesce(b.height_m, 0) + 3
    FROM cases c LEFT JOIN buildings b USING (building_id)
"""
_PRIORITY_ORDER = "array_position(ARRAY['urgent','high','normal','low'], c.priority)"


def cases_page(
    conn: psycopg.Connection,
    grids: list[str],
    statuses: list[str],
    limit: int = 2000,
    village: str | None = None,
) -> pd.DataFrame:
    """Cases (CASE_COLUMNS) of ``grids`` with ``statuses`` (an empty list is no filter) and of
    ``village`` (a village key: by their building, else their grid cell; None: all), most
    urgent first, then by due time; at most ``limit``."""
    rows = conn.execute(
        _CASES + "LEFT JOIN grid_cells g ON g.grid_code = c.grid_code"
        " WHERE (cardinality(%(grids)s::text[]) = 0 OR c.grid_code = ANY(%(grids)s))"
        " AND (cardinality(%(status)s::text[]) = 0 OR c.status = ANY(%(status)s))"
        " AND (%(village)s::text IS NULL OR coalesce(b.village_key, g.village_key) = %(village)s)"
        f" ORDER BY {_PRIORITY_ORDER}, c.due_at LIMIT %(limit)s",
        {"grids": grids, "status": statuses, "limit": limit, "village": village},
    ).fetchall()
    return pd.DataFrame(rows, columns=CASE_COLUMNS)


def case_queue(conn: psycopg.Connection, username: str) -> pd.DataFrame:
    """A grid worker's open cases (assigned, or escalated to them as manager), due first."""
    rows = conn.execute(
        _CASES + "WHERE c.status <> 'closed' AND (c.assigned_to = %(u)s OR c.escalated_to = %(u)s)"
        f" ORDER BY c.due_at, {_PRIORITY_ORDER}",
        {"u": username},
    ).fetchall()
    return pd.DataFrame(rows, columns=CASE_COLUMNS)


def overdue_case_count(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM cases WHERE status IN ('reported', 'dispatched') AND due_at < now()"
    ).fetchone()
    return int(row[0]) if row else 0


def case_history(conn: psycopg.Connection, case_id: int) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT at, actor, action, from_status, to_status, note FROM case_history"
        " WHERE case_id = %s ORDER BY history_id",
        (case_id,),
    ).fetchall()
    return pd.DataFrame(rows, columns=["at", "actor", "action", "from", "to", "note"])


def alert_history(conn: psycopg.Connection, alert_id: int) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT at, actor, action, note FROM alert_history WHERE alert_id = %s ORDER BY history_id",
        (alert_id,),
    ).fetchall()
    return pd.DataFrame(rows, columns=["at", "actor", "action", "note"])


def grid_staff(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT grid_code, username, duty, categories FROM grid_staff ORDER BY 1, 3, 2"
    ).fetchall()
    return pd.DataFrame(rows, columns=["grid_code", "username", "duty", "categories"])


def event_details(conn: psycopg.Connection, event_ids: list[str]) -> pd.DataFrame:
    """The events behind an alert, each saying what happened (rules' evidence)."""
    rows = conn.execute(
        "SELECT ts, kind, device_id, building_id, unit_id, payload FROM events"
        " WHERE event_id = ANY(%s::uuid[]) AND ts > now() - interval '31 days' ORDER BY ts",
        ([e for e in event_ids if len(e) == 36],),
    ).fetchall()
    return pd.DataFrame(
        [(*r[:5], describe(r[1], r[5])) for r in rows],
        columns=["ts", "kind", "device_id", "building_id", "unit_id", "what"],
    )


def describe(kind: str, payload: dict[str, object]) -> str:
    """What an event says happened, in words: 烟雾 smoke, 强行开门 forced open, 尾随 tailgating,
    车牌 plate … (Chinese first, English beside)."""
    p = payload or {}
    if kind == "camera.detection":
        names = {"smoke": "烟雾 smoke", "fire": "明火 fire", "ebike": "电动车 e-bike",
                 "person": "行人 person", "vehicle": "车辆 vehicle",
                 "crowd": "人群 crowd"}  # fmt: skip
        return f"{names.get(str(p.get('cls')), p.get('cls'))} ×{p.get('count')} @ {p.get('zone')}"
    if kind in ("access.alarm", "gate.alarm"):
        names = {"held_open": "门未关 held open", "forced_open": "强行开门 forced open",
                 "tailgating": "尾随 tailgating", "forced": "强行闯闸 forced"}  # fmt: skip
        return f"{names.get(str(p.get('alarm')), p.get('alarm'))} ({p.get('door', 'gate')})"
    if kind == "gate.pass":
        how = "车牌 plate" if p.get("method") == "plate" else str(p.get("method"))
        ok = "" if p.get("granted", True) else " 拒绝 refused"
        return f"{'进 in' if p.get('direction') == 'in' else '出 out'} · {how}{ok}"
    if kind == "access.unlock":
        ok = "开门 opened" if p.get("granted") else "拒绝 refused"
        return f"{ok} · {p.get('door')} {p.get('unit') or ''} · {p.get('method')}".strip()
    if kind == "access.door":
        return f"门 door {p.get('state')} ({p.get('door')})"
    if kind == "app.incident":
        return f"上报 report: {p.get('category')} · {str(p.get('text', ''))[:40]}"
    if kind in ("app.checkin", "app.checkout", "app.visitor"):
        return {"app.checkin": "入住登记 check-in", "app.checkout": "退房 check-out",
                "app.visitor": "访客登记 visitor"}[kind] + f" · {p.get('unit')}"  # fmt: skip
    if kind == "heartbeat":
        return f"心跳 heartbeat · up {p.get('uptime_s')} s"
    return kind


def reader_days(conn: psycopg.Connection, building_id: str, days: int) -> int:
    """On how many local days of the last ``days`` the building's door reader reported."""
    row = conn.execute(
        "SELECT count(DISTINCT (hour AT TIME ZONE 'Asia/Shanghai')::date) FROM building_hourly"
        " WHERE building_id = %s AND kind LIKE 'access.%%'"
        " AND hour > now() - %s * interval '1 day'",
        (building_id, days),
    ).fetchone()
    return int(row[0]) if row else 0


# --- villages (issue 16: several villages on one district platform) ----------------------------

VILLAGE_FIGURES = [
    "village_key", "name", "time_zone", "buildings", "units", "events_today", "open_alerts",
    "offline_devices",
]  # fmt: skip


def village_figures(conn: psycopg.Connection) -> pd.DataFrame:
    """One row per village the session sees (row-level security, migration 0150), with its
    key figures (VILLAGE_FIGURES): buildings, rental units, events since the village's own
    local midnight (its ``time_zone``; building_hourly, heartbeats aside), open or acknowledged
    alerts and offline devices (``online = false``, not revoked). Alerts and devices belong to
    the village of their building, else of their grid cell. Ordered by name."""
    rows = conn.execute(
        """
        SELECT v.village_key, v.name, v.time_zone,
            (SELECT count(*) FROM buildings b WHERE b.village_key = v.village_key),
            (SELECT count(*) FROM units u JOIN buildings b USING (building_id)
             WHERE b.village_key = v.village_key),
            (SELECT coalesce(sum(h.events), 0) FROM building_hourly h
             JOIN buildings b USING (building_id)
             WHERE b.village_key = v.village_key AND h.kind <> 'heartbeat'
               AND h.hour >= now() - interval '1 day'  -- for the (hour DESC) index
               AND h.hour >= date_trunc('day', now() AT TIME ZONE v.time_zone)
                             AT TIME ZONE v.time_zone),
            (SELECT count(*) FROM alerts a LEFT JOIN buildings b USING (building_id)
             LEFT JOIN grid_cells g ON g.grid_code = a.grid_code
             WHERE coalesce(b.village_key, g.village_key) = v.village_key
               AND a.status IN ('open', 'acknowledged')),
            (SELECT count(*) FROM devices d LEFT JOIN buildings b USING (building_id)
             LEFT JOIN grid_cells g ON g.grid_code = d.grid_code
             WHERE coalesce(b.village_key, g.village_key) = v.village_key
               AND d.revoked_at IS NULL AND d.online = false)
        FROM villages v ORDER BY v.name
        """
    ).fetchall()
    frame = pd.DataFrame(rows, columns=VILLAGE_FIGURES)
    for column in VILLAGE_FIGURES[3:]:
        frame[column] = frame[column].astype(int)
    return frame
