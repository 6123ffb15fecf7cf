"""The database edge of the ingester: one batch, one transaction.

Events go in through binary ``COPY`` into a per-connection staging table, then one
``INSERT … ON CONFLICT DO NOTHING`` moves them into the hypertable, so a redelivered or
retried event is stored once and counted as a duplicate. Dead letters, device last-seen times
and availability changes commit in the same transaction, so an acknowledged message is
always fully stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from devices.payloads import DeviceKind
from ingest.validate import ConfigUpdate, EventRow, KnownDevice, Refusal, StatusChange

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging_events (
    ts timestamptz, received_at timestamptz, event_id uuid, device_id text, seq bigint,
    kind text, building_id text, unit_id text, credential_ref text, payload text
) ON COMMIT DELETE ROWS
"""
_EVENT_COLUMNS = ", ".join(EventRow._fields)
_EVENT_TYPES = [
    "timestamptz",
    "timestamptz",
    "uuid",
    "text",
    "int8",
    "text",
    "text",
    "text",
    "text",
    "text",
]
# One statement: new events go into the hypertable, and only those (not duplicates) update
# the derived tables, so a redelivery can never count twice.
_MOVE = f"""
WITH new AS (
    INSERT INTO events ({_EVENT_COLUMNS})
    SELECT ts, received_at, event_id, device_id, seq, kind, building_id, unit_id,
           credential_ref, payload::jsonb
    FROM staging_events
    ON CONFLICT ON CONSTRAINT events_once DO NOTHING
    RETURNING ts, received_at, event_id, device_id, seq, kind, building_id, unit_id,
              credential_ref, payload
), opened AS (
    INSERT INTO incidents (incident_id, reported_at, device_id, building_id, category,
                           description, lon, lat, photo_ref)
    SELECT event_id, ts, device_id, coalesce(payload ->> 'building', building_id),
           payload ->> 'category', coalesce(payload ->> 'text', ''),
           (payload ->> 'lon')::double precision, (payload ->> 'lat')::double precision,
           payload ->> 'photo'
    FROM new WHERE kind = 'app.incident'
    ON CONFLICT (incident_id) DO NOTHING
), hourly AS (
    -- Events with no building (gates, alley cameras, the app) count under ''.
    INSERT INTO building_hourly AS h (building_id, hour, kind, events)
    SELECT coalesce(building_id, ''), time_bucket(INTERVAL '1 hour', ts), kind, count(*)
    FROM new
    GROUP BY 1, 2, 3
    ON CONFLICT (building_id, hour, kind) DO UPDATE SET events = h.events + EXCLUDED.events
), seen AS (
    INSERT INTO unit_daily_credentials AS u
        (unit_id, day, credential_ref, first_seen, last_seen, events)
    SELECT unit_id, (ts AT TIME ZONE 'Asia/Shanghai')::date, credential_ref, min(ts), max(ts),
           count(*)
    FROM new
    WHERE unit_id IS NOT NULL AND credential_ref IS NOT NULL
      AND kind IN ('access.unlock', 'app.checkin')
      AND coalesce((payload ->> 'granted')::boolean, true)
    GROUP BY 1, 2, 3
    ON CONFLICT (unit_id, day, credential_ref) DO UPDATE SET
        first_seen = least(u.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(u.last_seen, EXCLUDED.last_seen),
        events = u.events + EXCLUDED.events
), latest AS (
    INSERT INTO device_latest AS l (device_id, ts, received_at, kind, seq, payload)
    SELECT DISTINCT ON (device_id) device_id, ts, received_at, kind, seq, payload
    FROM new ORDER BY device_id, ts DESC, seq DESC
    ON CONFLICT (device_id) DO UPDATE SET
        ts = EXCLUDED.ts, received_at = EXCLUDED.received_at, kind = EXCLUDED.kind,
        seq = EXCLUDED.seq, payload = EXCLUDED.payload
    WHERE EXCLUDED.ts >= l.ts
), devices_seen AS (
    UPDATE devices AS d
    SET last_seen = greatest(d.last_seen, s.seen), last_seq = greatest(d.last_seq, s.seq)
    FROM (SELECT device_id, max(received_at) AS seen, max(seq) AS seq FROM new GROUP BY 1) AS s
    WHERE d.device_id = s.device_id
)
SELECT count(*) FROM new
"""
_STATUS = """
UPDATE devices SET online = %(online)s, status_changed_at = %(at)s,
                   last_seen = GREATEST(last_seen, %(at)s)
WHERE device_id = %(device_id)s
"""


_STATUS_HISTORY = """
INSERT INTO device_status_history (device_id, at, online)
SELECT %(device_id)s, %(at)s, %(online)s WHERE EXISTS (
    SELECT 1 FROM devices WHERE device_id = %(device_id)s)
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class StoreResult:
    inserted: int
    duplicates: int
    dead_letters: int


def prepare(conn: psycopg.Connection) -> None:
    """Per-connection set-up; call again after every reconnect."""
    conn.execute(_STAGING)
    conn.commit()


def store(
    conn: psycopg.Connection,
    events: Sequence[EventRow],
    refusals: Sequence[Refusal],
    statuses: Sequence[StatusChange] = (),
    configs: Sequence[ConfigUpdate] = (),
) -> StoreResult:
    """Writes one batch atomically; raises on failure with nothing written."""
    inserted = 0
    with conn.transaction(), conn.cursor() as cur:
        if events:
            with cur.copy(
                f"COPY staging_events ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(_EVENT_TYPES)
                for event in events:
                    copy.write_row(event)  # EventRow's fields are _EVENT_COLUMNS, in order
            row = cur.execute(_MOVE).fetchone()
            inserted = int(row[0]) if row else 0
        if refusals:
            with cur.copy(
                "COPY dead_letters (received_at, topic, device_id, reason, detail, payload,"
                " payload_size) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["timestamptz", "text", "text", "text", "text", "bytea", "int4"])
                for r in refusals:
                    copy.write_row(
                        (
                            r.received_at,
                            r.topic,
                            r.device_id,
                            r.reason.value,
                            r.detail,
                            r.payload,
                            r.payload_size,
                        )
                    )
        for config in configs:
            cur.execute(
                "UPDATE devices SET floor = %(floor)s, door = %(door)s, building_id = coalesce("
                " (SELECT building_id FROM buildings WHERE building_id = %(building)s),"
                " building_id) WHERE device_id = %(device_id)s",
                {"floor": config.floor, "door": config.door, "building": config.building_id,
                 "device_id": config.device_id},
            )  # fmt: skip
        for status in statuses:
            params = {"online": status.online, "at": status.at, "device_id": status.device_id}
            cur.execute(_STATUS, params)
            cur.execute(_STATUS_HISTORY, params)
    return StoreResult(inserted, len(events) - inserted, len(refusals))


def load_registry(conn: psycopg.Connection) -> dict[str, KnownDevice]:
    rows = conn.execute(
        "SELECT device_id, kind, building_id, revoked_at IS NOT NULL FROM devices"
    ).fetchall()
    conn.commit()
    return {
        device_id: KnownDevice(device_id, DeviceKind(kind), building_id, revoked)
        for device_id, kind, building_id, revoked in rows
    }
