"""The derived tables, defined once: what each holds, as a recount from the raw events.

Each ``DerivedTable`` here is THE definition of its table: ``recount`` computes its rows from
``events`` (every event with ``ts >= %(since)s``), with the same filters the ingester applies
(``derive.PRESENCE_KINDS``, the ``granted`` rule, local days in ``derive.LOCAL_TIMEZONE``).
Three things use it:

- the ingester keeps the tables incrementally, per batch (``derive.summarise`` + store.py's
  ``_DERIVE``), for speed; ``tests/test_ingest_state.py`` checks it against ``recount`` through
  both store paths, so the fast path cannot drift from this definition;
- ``villagetwin derive rebuild --since …`` (``rebuild`` below) recomputes the tables from the
  raw events, for the day a derivation bug is found;
- ``bench/queries_bench.py`` fills the tables of its synthetic village with ``rebuild``.

``ALL`` is every table here plus ``DEVICES_SEEN`` (columns of ``devices``).

Adding a derived table: see "How to add a derived table" in DEVELOPERS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from ingest.derive import LOCAL_TIMEZONE, PRESENCE_KINDS

# Events with ts >= %(since)s; presence events count unless the device said "not granted".
_PRESENCE = (
    "unit_id IS NOT NULL AND credential_ref IS NOT NULL AND kind = ANY(%(presence_kinds)s)"
    " AND coalesce((payload ->> 'granted')::boolean, true)"
)


@dataclass(frozen=True)
class DerivedTable:
    """One derived table: ``columns`` (``key`` first) and the recount that defines them.

    ``recount`` selects ``columns`` from the events since ``%(since)s`` in key order.
    ``since`` is the SQL for the table's first row a rebuild from ``%(since)s`` replaces
    (``None``: rows are merged, never deleted: see ``merge``). ``merge`` is the ``ON CONFLICT``
    clause a rebuild inserts with (the same rule the ingester's ``_DERIVE`` applies)."""

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    recount: str
    since: str | None
    merge: str
    kept_where: str = "true"  # which of the table's rows are derived

    def kept(self) -> str:
        """The table's rows (``columns``), in key order, for comparison with ``recount``."""
        order = ", ".join(str(n + 1) for n in range(len(self.key)))
        return (
            f"SELECT {', '.join(self.columns)} FROM {self.name} WHERE {self.kept_where}"
            f" ORDER BY {order}"
        )


TABLES: tuple[DerivedTable, ...] = (
    DerivedTable(
        name="building_hourly",
        key=("building_id", "hour", "kind"),
        columns=("building_id", "hour", "kind", "events"),
        recount="SELECT coalesce(building_id, ''), time_bucket(interval '1 hour', ts), kind,"
        " count(*) FROM events WHERE ts >= %(since)s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        since="hour >= time_bucket(interval '1 hour', %(since)s::timestamptz)",
        merge="ON CONFLICT (building_id, hour, kind) DO UPDATE SET events = EXCLUDED.events",
    ),
    DerivedTable(
        name="village_hourly",
        key=("hour", "kind"),
        columns=("hour", "kind", "events"),
        recount="SELECT time_bucket(interval '1 hour', ts), kind, count(*) FROM events"
        " WHERE ts >= %(since)s GROUP BY 1, 2 ORDER BY 1, 2",
        since="hour >= time_bucket(interval '1 hour', %(since)s::timestamptz)",
        merge="ON CONFLICT (hour, kind) DO UPDATE SET events = EXCLUDED.events",
    ),
    DerivedTable(
        name="unit_daily_credentials",
        key=("unit_id", "day", "credential_ref"),
        columns=("unit_id", "day", "credential_ref", "first_seen", "last_seen", "events"),
        recount=f"SELECT unit_id, (ts AT TIME ZONE '{LOCAL_TIMEZONE}')::date, credential_ref,"
        f" min(ts), max(ts), count(*) FROM events WHERE ts >= %(since)s AND {_PRESENCE}"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        # Whole local days: a rebuild starts at the local midnight before since.
        since=f"day >= (%(since)s::timestamptz AT TIME ZONE '{LOCAL_TIMEZONE}')::date",
        merge="ON CONFLICT (unit_id, day, credential_ref) DO UPDATE SET"
        " first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen,"
        " events = EXCLUDED.events",
    ),
    DerivedTable(
        name="device_latest",
        key=("device_id",),
        columns=("device_id", "ts", "received_at", "kind", "seq", "payload"),
        recount="SELECT DISTINCT ON (device_id) device_id, ts, received_at, kind, seq, payload"
        " FROM events WHERE ts >= %(since)s ORDER BY device_id, ts DESC, seq DESC",
        since="ts >= %(since)s",
        merge="ON CONFLICT (device_id) DO UPDATE SET ts = EXCLUDED.ts,"
        " received_at = EXCLUDED.received_at, kind = EXCLUDED.kind, seq = EXCLUDED.seq,"
        " payload = EXCLUDED.payload WHERE EXCLUDED.ts >= device_latest.ts",
    ),
    # Incidents reported by app.incident events: their workflow columns belong to people, so
    # a rebuild adds missing ones and never rewrites or deletes.
    DerivedTable(
        name="incidents",
        key=("incident_id",),
        columns=(
            "incident_id",
            "reported_at",
            "device_id",
            "building_id",
            "category",
            "description",
            "lon",
            "lat",
            "photo_ref",
        ),
        recount="SELECT event_id, ts, device_id, coalesce(payload ->> 'building', building_id),"
        " payload ->> 'category', coalesce(payload ->> 'text', ''),"
        " (payload ->> 'lon')::double precision, (payload ->> 'lat')::double precision,"
        " payload ->> 'photo' FROM events WHERE ts >= %(since)s AND kind = 'app.incident'"
        " ORDER BY 1",
        since=None,
        merge="ON CONFLICT (incident_id) DO NOTHING",
    ),
)

DEVICE_LATEST = TABLES[3]

# Not a table of its own, but derived the same way: a device's highest sequence number and
# latest reception (devices.last_seq, last_seen: availability messages move last_seen too, so
# a rebuild only raises them).
DEVICES_SEEN = DerivedTable(
    name="devices",
    key=("device_id",),
    columns=("device_id", "last_seq", "last_seen"),
    recount="SELECT device_id, max(seq), max(received_at) FROM events WHERE ts >= %(since)s"
    " GROUP BY 1 ORDER BY 1",
    since=None,
    merge="",
    kept_where="last_seq IS NOT NULL",
)
# Everything derived from the events, for comparing with the recount.
ALL = (*TABLES, DEVICES_SEEN)
_DEVICES_SEEN_REBUILD = f"""
UPDATE devices AS d
SET last_seq = greatest(d.last_seq, s.seq), last_seen = greatest(d.last_seen, s.seen)
FROM ({DEVICES_SEEN.recount}) AS s(device_id, seq, seen)
WHERE d.device_id = s.device_id
"""


def params(since: datetime) -> dict[str, object]:
    """The parameters every statement here takes."""
    return {"since": since, "presence_kinds": sorted(PRESENCE_KINDS)}


class RebuildRefused(ValueError):
    """A rebuild from before the oldest raw events kept would lose counts it cannot recount."""


def rebuild(
    conn: psycopg.Connection, since: datetime, kept_since: datetime | None = None
) -> dict[str, int]:
    """Recomputes every derived table from the raw events with ``ts >= since`` (an aware
    datetime), in one transaction that the caller commits: rows from ``since`` on (whole hours,
    whole local days) are deleted and recounted; device_latest, devices.last_seq/last_seen and
    incidents are merged. Returns the rows written per table.

    ``kept_since``: the oldest time from which every kind's raw events are still kept
    (retention); raises ``RebuildRefused`` when ``since`` is earlier, since the counts of
    events retention has removed would be deleted and not recounted. Raises
    ``psycopg.Error`` on database errors (nothing is changed then)."""
    if since.tzinfo is None:
        raise ValueError("since must be an aware datetime")
    if kept_since is not None and since < kept_since:
        raise RebuildRefused(
            f"rebuild since {since.isoformat()} refused: raw events are kept only from"
            f" {kept_since.isoformat()} (retention); rebuild from then or later"
        )
    # Whole buckets: start at the earlier of the hour and the local day that hold since.
    start = conn.execute(
        "SELECT least(time_bucket(interval '1 hour', %(s)s::timestamptz),"
        f" date_trunc('day', %(s)s::timestamptz AT TIME ZONE '{LOCAL_TIMEZONE}')"
        f" AT TIME ZONE '{LOCAL_TIMEZONE}')",
        {"s": since},
    ).fetchone()
    assert start is not None
    values = params(start[0])
    written: dict[str, int] = {}
    for table in TABLES:
        recount = table.recount
        if table.since is not None:
            cur = conn.execute(
                f"DELETE FROM {table.name} WHERE {table.since} RETURNING {table.key[0]}", values
            )
            if table is DEVICE_LATEST:
                # A device whose latest row went, but with no event since: its latest is older.
                values["gone"] = sorted({row[0] for row in cur.fetchall()})
                recount = recount.replace(
                    "WHERE ts >= %(since)s", "WHERE (ts >= %(since)s OR device_id = ANY(%(gone)s))"
                )
        cur = conn.execute(
            f"INSERT INTO {table.name} ({', '.join(table.columns)}) {recount} {table.merge}",
            values,
        )
        written[table.name] = cur.rowcount
    written["devices"] = conn.execute(_DEVICES_SEEN_REBUILD, values).rowcount
    return written


def kept_since(now: datetime, retention_days: int) -> datetime:
    """The oldest time from which raw events of every kind are kept, for ``rebuild``."""
    return now - timedelta(days=retention_days)


def rebuild_database(dsn: str, since: datetime, shortest_retention_days: int) -> dict[str, int]:
    """``rebuild`` on the database at ``dsn``, committed: what ``villagetwin derive rebuild``
    runs. ``shortest_retention_days``: the shortest time any kind's raw events are kept
    (ingest settings' retention), which bounds ``since``. Raises ``RebuildRefused`` and
    ``psycopg.Error``."""
    with psycopg.connect(dsn) as conn:
        now = conn.execute("SELECT now()").fetchone()
        assert now is not None
        return rebuild(conn, since, kept_since(now[0], shortest_retention_days))
