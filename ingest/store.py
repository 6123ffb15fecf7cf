"""The database edge of the ingester: one batch, one transaction.

Two ways in, both storing a redelivered or retried event once and counting it as a duplicate:

- direct: binary ``COPY`` straight into the hypertable inside a savepoint, then the derived
  tables get the batch's summary (ingest/derive.py: a few rows, summed in Python). This is
  the common case, and the fastest way PostgreSQL takes rows.
- staging: when the direct copy meets an event already stored (a redelivery after a crash or
  reconnect), the savepoint is rolled back and the batch goes through a per-connection staging
  table and one ``INSERT … ON CONFLICT DO NOTHING`` that returns the keys it stored. The
  ingester stays on this path for a while after a conflict, since redeliveries come in runs.

Either way the derived tables are fed by one statement (``_DERIVE``) from the summary of the
events stored by this batch alone, so a redelivery can never count twice.

Dead letters, device last-seen times and availability changes commit in the same transaction,
so an acknowledged message is always fully stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import errors, postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from devices.payloads import DeviceKind
from ingest import derive
from ingest.validate import (
    ConfigUpdate,
    EventRow,
    KnownDevice,
    Liveness,
    Refusal,
    Retraction,
    StatusChange,
)

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging_events (
    position int,  -- in the batch: what the move returns for each event it stored
    ts timestamptz, received_at timestamptz, event_id uuid, device_id text, seq bigint,
    kind text, building_id text, unit_id text, credential_ref text, payload text
) ON COMMIT DELETE ROWS
"""
_COPIED = 10  # EventRow's first fields are the events table's columns, in this order
_EVENT_COLUMNS = ", ".join(EventRow._fields[:_COPIED])
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
# The direct path writes the payload (JSON text, already validated) as jsonb.
_DIRECT_TYPES = [*_EVENT_TYPES[:-1], "jsonb"]


class _JsonTextDumper(Dumper):
    """jsonb's binary form is a version byte, then the JSON text: no re-serialising."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


_DERIVE = """
WITH hourly AS (
    INSERT INTO building_hourly AS h (building_id, hour, kind, events)
    SELECT * FROM unnest(%(h_building)s::text[], %(h_hour)s::timestamptz[], %(h_kind)s::text[],
                         %(h_events)s::int8[])
    ON CONFLICT (building_id, hour, kind) DO UPDATE SET events = h.events + EXCLUDED.events
), village AS (
    INSERT INTO village_hourly AS v (hour, kind, events)
    SELECT * FROM unnest(%(v_hour)s::timestamptz[], %(v_kind)s::text[], %(v_events)s::int8[])
    ON CONFLICT (hour, kind) DO UPDATE SET events = v.events + EXCLUDED.events
), seen AS (
    INSERT INTO unit_daily_credentials AS u
        (unit_id, day, credential_ref, first_seen, last_seen, events)
    SELECT * FROM unnest(%(p_unit)s::text[], %(p_day)s::date[], %(p_credential)s::text[],
                         %(p_first)s::timestamptz[], %(p_last)s::timestamptz[],
                         %(p_events)s::int4[])
    ON CONFLICT (unit_id, day, credential_ref) DO UPDATE SET
        first_seen = least(u.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(u.last_seen, EXCLUDED.last_seen),
        events = u.events + EXCLUDED.events
), latest AS (
    INSERT INTO device_latest AS l (device_id, ts, received_at, kind, seq, payload)
    SELECT device_id, ts, received_at, kind, seq, payload::jsonb
    FROM unnest(%(l_device)s::text[], %(l_ts)s::timestamptz[], %(l_received)s::timestamptz[],
                %(l_kind)s::text[], %(l_seq)s::int8[], %(l_payload)s::text[])
         AS n(device_id, ts, received_at, kind, seq, payload)
    ON CONFLICT (device_id) DO UPDATE SET
        ts = EXCLUDED.ts, received_at = EXCLUDED.received_at, kind = EXCLUDED.kind,
        seq = EXCLUDED.seq, payload = EXCLUDED.payload
    WHERE EXCLUDED.ts >= l.ts
), opened AS (
    INSERT INTO incidents (incident_id, reported_at, device_id, building_id, category,
                           description, lon, lat, photo_ref)
    SELECT event_id, ts, device_id, coalesce(p ->> 'building', building_id), p ->> 'category',
           coalesce(p ->> 'text', ''), (p ->> 'lon')::double precision,
           (p ->> 'lat')::double precision, p ->> 'photo'
    FROM unnest(%(i_id)s::uuid[], %(i_ts)s::timestamptz[], %(i_device)s::text[],
                %(i_building)s::text[], %(i_payload)s::text[])
         AS n(event_id, ts, device_id, building_id, payload),
         LATERAL (SELECT payload::jsonb AS p) AS parsed
    ON CONFLICT (incident_id) DO NOTHING
)
UPDATE devices AS d
SET last_seen = greatest(d.last_seen, s.seen), last_seq = greatest(d.last_seq, s.seq)
FROM unnest(%(s_device)s::text[], %(s_seen)s::timestamptz[], %(s_seq)s::int8[])
     AS s(device_id, seen, seq)
WHERE d.device_id = s.device_id
"""
# The staging path: events not stored before go into the hypertable, and their positions in
# the batch come back, so that only they (not duplicates) feed the derived tables. Rows go in
# key order: two writers holding the same redelivered events then wait for each other in one
# order, instead of deadlocking (the first copy of a key the batch holds twice still wins).
_MOVE = f"""
WITH new AS (
    INSERT INTO events ({_EVENT_COLUMNS})
    SELECT ts, received_at, event_id, device_id, seq, kind, building_id, unit_id,
           credential_ref, payload::jsonb
    FROM staging_events ORDER BY event_id, ts, position
    ON CONFLICT ON CONSTRAINT events_once DO NOTHING
    RETURNING event_id, ts
)
-- The first copy of an event the batch holds twice is the one stored.
SELECT min(s.position) FROM new JOIN staging_events s USING (event_id, ts) GROUP BY event_id, ts
"""
# Batches may commit out of order (several writers, several ingesters): an older change
# never overwrites a newer one.
_STATUS = """
UPDATE devices SET
    online = CASE WHEN status_changed_at IS NULL OR status_changed_at <= %(at)s
                  THEN %(online)s ELSE online END,
    status_changed_at = GREATEST(status_changed_at, %(at)s),
    last_seen = GREATEST(last_seen, %(at)s)
WHERE device_id = %(device_id)s
"""

# A device's place is the operator's (issue 12): a config claiming another place is recorded
# as a pending change (migration 0031), never applied; fields the config leaves out are the
# registry's. The same claim is one pending row, and a rejected one is not reopened.
_CONFIG = """
WITH claim AS (
    SELECT d.device_id, coalesce(%(building)s::text, d.building_id) AS building_id,
           coalesce(%(floor)s::int, d.floor) AS floor, coalesce(%(door)s::text, d.door) AS door,
           d.building_id AS was_building, d.floor AS was_floor, d.door AS was_door
    FROM devices d WHERE d.device_id = %(device_id)s
), seen AS (
    UPDATE devices SET config_at = greatest(config_at, %(at)s) WHERE device_id = %(device_id)s
)
INSERT INTO device_place_changes (device_id, building_id, floor, door, claimed_at)
SELECT device_id, building_id, floor, door, %(at)s FROM claim c
WHERE (building_id, floor, door) IS DISTINCT FROM (was_building, was_floor, was_door)
  AND NOT EXISTS (
      SELECT 1 FROM device_place_changes r WHERE r.device_id = c.device_id
      AND r.status = 'rejected' AND (r.building_id, r.floor, r.door)
          IS NOT DISTINCT FROM (c.building_id, c.floor, c.door))
ON CONFLICT DO NOTHING
"""

_STATUS_HISTORY = """
INSERT INTO device_status_history (device_id, at, online)
SELECT %(device_id)s, %(at)s, %(online)s WHERE EXISTS (
    SELECT 1 FROM devices WHERE device_id = %(device_id)s)
ON CONFLICT DO NOTHING
"""


# A retained status replayed at (re)subscription is old news: it fills what is unknown and
# nothing else (no last seen, no history row). A replayed config is a claim like any other
# (``_CONFIG``): recorded once as a pending change, never applied.
_STATUS_REPLAYED = """
UPDATE devices SET online = %(online)s
WHERE device_id = %(device_id)s AND online IS NULL AND status_changed_at IS NULL
"""

# A detection kept current (Frigate's new -> update -> end of one tracked object): one row per
# event id, replaced by a later message, never by an older one (``until`` orders them); what an
# earlier message learnt (a plate, a face) stays unless a later one says otherwise.
_TRACKED = f"""
INSERT INTO events AS e ({_EVENT_COLUMNS})
SELECT ts, received_at, event_id, device_id, seq, kind, building_id, unit_id, credential_ref,
       payload::jsonb
FROM unnest(%(ts)s::timestamptz[], %(received)s::timestamptz[], %(id)s::uuid[],
            %(device)s::text[], %(seq)s::int8[], %(kind)s::text[], %(building)s::text[],
            %(unit)s::text[], %(credential)s::text[], %(payload)s::text[])
     AS n(ts, received_at, event_id, device_id, seq, kind, building_id, unit_id,
          credential_ref, payload)
ORDER BY event_id, ts
ON CONFLICT ON CONSTRAINT events_once DO UPDATE SET
    payload = CASE WHEN EXCLUDED.payload ? 'until' THEN e.payload || EXCLUDED.payload
                   ELSE e.payload || jsonb_strip_nulls(jsonb_build_object(
                       'credential', EXCLUDED.payload -> 'credential',
                       'unlicensed', EXCLUDED.payload -> 'unlicensed')) END,
    received_at = greatest(e.received_at, EXCLUDED.received_at),
    credential_ref = coalesce(EXCLUDED.credential_ref, e.credential_ref)
-- A partial update (a face or plate recognised later: no ``until``) adds its credential only.
WHERE NOT EXCLUDED.payload ? 'until'
   OR coalesce((EXCLUDED.payload ->> 'until')::timestamptz, EXCLUDED.ts)
   >= coalesce((e.payload ->> 'until')::timestamptz, e.ts)
RETURNING event_id, ts, (xmax = 0) AS inserted
"""
_TRACKED_SEEN = """
UPDATE devices AS d SET last_seen = greatest(d.last_seen, s.seen)
FROM unnest(%(device)s::text[], %(seen)s::timestamptz[]) AS s(device_id, seen)
WHERE d.device_id = s.device_id
"""
# A vendor heartbeat or status message: the device is alive (online, unless a newer status
# says otherwise; a history row only when that is a change), and its flags are recorded.
_LIVENESS = """
WITH before AS (
    SELECT device_id, online FROM devices WHERE device_id = %(device_id)s FOR UPDATE
), updated AS (
    UPDATE devices AS d SET
        last_seen = greatest(d.last_seen, %(at)s),
        -- Flag by flag, the later report wins, whichever batch commits first.
        vendor_status = d.vendor_status || coalesce((
            SELECT jsonb_object_agg(n.key, n.value)
            FROM jsonb_each(%(status)s::jsonb) AS n(key, value)
            WHERE NOT d.vendor_status ? n.key
               OR (n.value ->> 'at')::timestamptz
                  >= (d.vendor_status -> n.key ->> 'at')::timestamptz), '{}'::jsonb),
        online = CASE WHEN d.status_changed_at IS NULL OR d.status_changed_at <= %(at)s
                      THEN true ELSE d.online END,
        status_changed_at = CASE
            WHEN d.online IS DISTINCT FROM true
             AND (d.status_changed_at IS NULL OR d.status_changed_at <= %(at)s)
            THEN %(at)s ELSE d.status_changed_at END
    FROM before AS b WHERE d.device_id = b.device_id
    RETURNING d.device_id, b.online AS was, d.online AS is_online
)
INSERT INTO device_status_history (device_id, at, online)
SELECT device_id, %(at)s, true FROM updated WHERE is_online AND was IS DISTINCT FROM true
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class StoreResult:
    inserted: int
    duplicates: int
    dead_letters: int
    # The direct copy met an event already stored: redeliveries are arriving.
    conflicted: bool = False


def prepare(conn: psycopg.Connection) -> None:
    """Per-connection set-up; call again after every reconnect."""
    conn.adapters.register_dumper(None, _JsonTextDumper)  # used where COPY says jsonb
    conn.execute(_STAGING)
    conn.commit()


def _copy_direct(cur: psycopg.Cursor[Any], events: Sequence[EventRow]) -> None:
    with cur.copy(f"COPY events ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_DIRECT_TYPES)
        for event in events:
            copy.write_row(event[:_COPIED])


def _copy_staged(cur: psycopg.Cursor[Any], events: Sequence[EventRow]) -> list[EventRow]:
    """Stores the events not stored before; returns them."""
    with cur.copy(
        f"COPY staging_events (position, {_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", *_EVENT_TYPES])
        for position, event in enumerate(events):
            copy.write_row((position, *event[:_COPIED]))
    stored = sorted(position for (position,) in cur.execute(_MOVE))
    return [events[position] for position in stored]


def _store_events(
    conn: psycopg.Connection, cur: psycopg.Cursor[Any], events: Sequence[EventRow], direct: bool
) -> tuple[Sequence[EventRow], bool]:
    """The events that were not stored before, now stored; and whether the direct copy met
    one that was."""
    if direct:
        try:
            with conn.transaction():  # a savepoint: a conflict undoes only the copy
                _copy_direct(cur, events)
            return events, False
        except errors.UniqueViolation:
            pass
    return _copy_staged(cur, events), direct


def store(
    conn: psycopg.Connection,
    events: Sequence[EventRow],
    refusals: Sequence[Refusal],
    statuses: Sequence[StatusChange] = (),
    configs: Sequence[ConfigUpdate] = (),
    *,
    direct: bool = True,
    tracked: Sequence[EventRow] = (),
    sightings: Sequence[Liveness] = (),
    retracted: Sequence[Retraction] = (),
) -> StoreResult:
    """Writes one batch atomically; raises on failure with nothing written. ``direct=False``
    goes the staging way at once (when redeliveries are expected)."""
    inserted = 0
    conflicted = False
    with conn.transaction(), conn.cursor() as cur:
        if events:
            new, conflicted = _store_events(conn, cur, events, direct)
            if new:
                cur.execute(_DERIVE, derive.columns(derive.summarise(new)))
            inserted = len(new)
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
            cur.execute(_CONFIG, {
                "floor": config.floor, "door": config.door, "building": config.building_id,
                "device_id": config.device_id, "at": config.at,
            })  # fmt: skip
        for status in statuses:
            params = {"online": status.online, "at": status.at, "device_id": status.device_id}
            if status.replayed:
                cur.execute(_STATUS_REPLAYED, params)
                continue
            cur.execute(_STATUS, params)
            cur.execute(_STATUS_HISTORY, params)
        if tracked:
            inserted += store_tracked(cur, tracked)
        store_liveness(cur, sightings)
        if retracted:
            store_retractions(cur, retracted)
    total = len(events) + len(tracked)
    return StoreResult(inserted, total - inserted, len(refusals), conflicted)


def store_tracked(cur: psycopg.Cursor[Any], rows: Sequence[EventRow]) -> int:
    """Upserts detections kept current (``Verdict.tracked``); returns how many were new. Only
    new ones feed the derived tables (a track is one detection); every one moves last seen."""
    latest: dict[tuple[object, object], EventRow] = {}
    for row in rows:  # several messages of one track in a batch: merged as the upsert would
        key = (row.event_id, row.ts)
        before = latest.get(key)
        latest[key] = row if before is None else _merge_track(before, row)
    unique = list(latest.values())
    names = ("ts", "received", "id", "device", "seq", "kind", "building", "unit", "credential")
    params: dict[str, list[Any]] = {
        name: [row[i] for row in unique] for i, name in enumerate((*names, "payload"))
    }
    returned = cur.execute(_TRACKED, params).fetchall()
    new_keys = {(event_id, ts) for event_id, ts, inserted in returned if inserted}
    new = [row for row in unique if (row.event_id, row.ts) in new_keys]
    if new:
        cur.execute(_DERIVE, derive.columns(derive.summarise(new)))
    seen: dict[str, Any] = {}
    for row in unique:
        seen[row.device_id] = max(seen.get(row.device_id, row.received_at), row.received_at)
    cur.execute(_TRACKED_SEEN, {"device": list(seen), "seen": list(seen.values())})
    return len(new)


def _merge_track(a: EventRow, b: EventRow) -> EventRow:
    """Two messages of one track: the later one (by ``until``) wins field by field, and what
    only the other knows (a plate, a face) stays."""
    pa, pb = json.loads(a.payload), json.loads(b.payload)
    if "until" in pa and "until" not in pb:  # b adds a credential to a's detection
        learnt = {k: pb[k] for k in ("credential", "unlicensed") if k in pb}
        return a._replace(
            payload=json.dumps({**pa, **learnt}, ensure_ascii=False),
            credential_ref=b.credential_ref or a.credential_ref,
            received_at=max(a.received_at, b.received_at),
        )
    if "until" in pa and str(pb.get("until") or "") < str(pa.get("until") or ""):
        a, b, pa, pb = b, a, pb, pa
    return b._replace(
        payload=json.dumps({**pa, **pb}, ensure_ascii=False),
        credential_ref=b.credential_ref or a.credential_ref,
        received_at=max(a.received_at, b.received_at),
    )


# A withdrawn detection (a Frigate false positive): its row goes, and the hourly counts it
# added (store_tracked fed _DERIVE once, when the track was new) go down by one.
_RETRACT = """
WITH gone AS (
    DELETE FROM events AS e
    USING unnest(%(device)s::text[], %(id)s::uuid[], %(ts)s::timestamptz[]) AS r(device, id, ts)
    WHERE e.device_id = r.device AND e.event_id = r.id AND e.ts = r.ts
      AND e.kind = 'camera.detection'
    RETURNING coalesce(e.building_id, '') AS building_id,
              time_bucket('1 hour', e.ts) AS hour, e.kind
), by_building AS (
    UPDATE building_hourly AS h SET events = greatest(h.events - g.n, 0)
    FROM (SELECT building_id, hour, kind, count(*) AS n FROM gone GROUP BY 1, 2, 3) AS g
    WHERE h.building_id = g.building_id AND h.hour = g.hour AND h.kind = g.kind
)
UPDATE village_hourly AS v SET events = greatest(v.events - g.n, 0)
FROM (SELECT hour, kind, count(*) AS n FROM gone GROUP BY 1, 2) AS g
WHERE v.hour = g.hour AND v.kind = g.kind
"""


def store_retractions(cur: psycopg.Cursor[Any], retracted: Sequence[Retraction]) -> None:
    """Deletes withdrawn detections (after this batch's upserts, so a track and its false
    positive in one batch leave nothing) and takes them out of the hourly counts."""
    cur.execute(_RETRACT, {
        "device": [r.device_id for r in retracted], "id": [r.event_id for r in retracted],
        "ts": [r.ts for r in retracted],
    })  # fmt: skip


def store_liveness(cur: psycopg.Cursor[Any], sightings: Sequence[Liveness]) -> None:
    """Vendor heartbeats and status messages; a replayed (retained) one changes nothing."""
    for sighting in sightings:
        if sighting.replayed:
            continue
        at = sighting.at.isoformat()
        flags = {name: {"active": active, "at": at} for name, active in sighting.status.items()}
        # Marks a device that reports its liveness: silent for too long, it goes offline
        # (mark_silent_offline).
        flags["heartbeat"] = {"active": True, "at": at}
        cur.execute(_LIVENESS, {
            "at": sighting.at, "status": json.dumps(flags), "device_id": sighting.device_id,
        })  # fmt: skip


# Bridged devices that send vendor heartbeats have no MQTT will of their own: silent for longer
# than the configured time, they are offline (a history row, as a native will would add). Their
# next heartbeat brings them back (_LIVENESS: a later time wins).
_SILENT = """
WITH silent AS (
    UPDATE devices SET online = false, status_changed_at = now()
    WHERE online IS TRUE AND revoked_at IS NULL AND vendor_status ? 'heartbeat'
      AND last_seen < now() - %(silence)s::interval
    RETURNING device_id, status_changed_at
)
INSERT INTO device_status_history (device_id, at, online)
SELECT device_id, status_changed_at, false FROM silent
ON CONFLICT DO NOTHING
RETURNING device_id
"""


def mark_silent_offline(conn: psycopg.Connection, silence: timedelta) -> list[str]:
    """Marks offline the devices whose vendor heartbeats stopped ``silence`` ago; returns
    their ids."""
    with conn.transaction():
        return [row[0] for row in conn.execute(_SILENT, {"silence": silence}).fetchall()]


def load_registry(conn: psycopg.Connection) -> dict[str, KnownDevice]:
    """Every registered device with the units it may write events for: a device placed in a
    building, its building's units; a gate, or a device with no building, the village's
    (issue 12). With no units loaded at all, units are not checked (``units=None``)."""
    rows = conn.execute(
        "SELECT device_id, kind, building_id, revoked_at IS NOT NULL, time_zone, text_encoding"
        " FROM devices"
    ).fetchall()
    by_building: dict[str, set[str]] = {}
    for unit_id, building_id in conn.execute("SELECT unit_id, building_id FROM units"):
        by_building.setdefault(building_id, set()).add(unit_id)
    conn.commit()
    village = frozenset(u for units in by_building.values() for u in units) or None
    scopes = {b: frozenset(units) for b, units in by_building.items()}

    def scope(kind: DeviceKind, building_id: str | None) -> frozenset[str] | None:
        if village is None:
            return None
        if building_id is None or kind is DeviceKind.GATE:
            return village
        return scopes.get(building_id, frozenset())

    return {
        device_id: KnownDevice(
            device_id,
            DeviceKind(kind),
            building_id,
            revoked,
            zone,
            encoding,
            units=scope(DeviceKind(kind), building_id),
        )
        for device_id, kind, building_id, revoked, zone, encoding in rows
    }
