"""What a batch of new events adds to the derived tables, summed in Python.

When none of a batch's events was stored before (the common case), the ingester copies them
straight into the hypertable and sends the database these few summary rows instead of asking
it to group thousands of returned rows. The rules are the same as the SQL path's in store.py,
and tests/test_ingest_state.py checks both against a recount from the raw events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from ingest.validate import EventRow

# Days in the derived tables are local days in China Standard Time (Asia/Shanghai in
# migration 0002): UTC+8, with no daylight saving since 1991, and the ingester refuses device
# times older than its max age (30 days by default).
LOCAL_OFFSET_S = 8 * 3600
_EPOCH_DAY = date(1970, 1, 1)
# Kinds that say a resident was at their unit's door.
PRESENCE_KINDS = frozenset({"access.unlock", "app.checkin"})


@dataclass
class Summary:
    # (building or '' for none, UTC hour, kind) -> events
    hourly: dict[tuple[str, datetime, str], int] = field(default_factory=dict)
    # (unit, local day, credential) -> [first seen, last seen, events]
    presence: dict[tuple[str, date, str], tuple[datetime, datetime, int]] = field(
        default_factory=dict
    )
    # device -> its latest event (by device time, then sequence number)
    latest: dict[str, EventRow] = field(default_factory=dict)
    # device -> (latest reception, highest sequence number)
    seen: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    incidents: list[EventRow] = field(default_factory=list)


def summarise(events: Sequence[EventRow]) -> Summary:
    out = Summary()
    hourly, presence, latest, seen = out.hourly, out.presence, out.latest, out.seen
    # Keys use whole hours and local days since the epoch (cheap integer arithmetic on the
    # POSIX time), turned into datetimes and dates once per key at the end.
    hours: dict[tuple[str, int, str], int] = {}
    days: dict[tuple[str, int, str], tuple[datetime, datetime, int]] = {}
    for e in events:
        ts, received_at, _, device, seq, kind, building, unit, credential, _, granted = e
        posix = ts.timestamp()
        key = (building or "", int(posix // 3600), kind)
        hours[key] = hours.get(key, 0) + 1
        if (
            kind in PRESENCE_KINDS
            and unit is not None
            and credential is not None
            and granted is not False
        ):
            pkey = (unit, int((posix + LOCAL_OFFSET_S) // 86400), credential)
            found = days.get(pkey)
            days[pkey] = (
                (ts, ts, 1)
                if found is None
                else (min(found[0], ts), max(found[1], ts), found[2] + 1)
            )
        before = latest.get(device)
        if before is None or (ts, seq) > (before.ts, before.seq):
            latest[device] = e
        was = seen.get(device)
        if was is None:
            seen[device] = (received_at, seq)
        elif received_at > was[0] or seq > was[1]:
            seen[device] = (max(was[0], received_at), max(was[1], seq))
        if kind == "app.incident":
            out.incidents.append(e)
    for (building, hour, kind), n in hours.items():
        hourly[(building, datetime.fromtimestamp(hour * 3600, UTC), kind)] = n
    for (unit, day, credential), value in days.items():
        presence[(unit, _EPOCH_DAY + timedelta(days=day), credential)] = value
    return out


def columns(summary: Summary) -> dict[str, Sequence[object]]:
    """The summary as one array per column: the parameters of store.py's ``_DERIVE``. Counter
    rows are sorted, so concurrent ingesters lock shared rows in the same order."""
    hourly = sorted(summary.hourly.items())
    village: dict[tuple[datetime, str], int] = {}
    for (_, hour, kind), n in hourly:
        village[(hour, kind)] = village.get((hour, kind), 0) + n
    by_hour = sorted(village.items())
    presence = sorted(summary.presence.items())
    latest = [summary.latest[d] for d in sorted(summary.latest)]
    seen = sorted(summary.seen.items())
    incidents = summary.incidents
    return {
        "h_building": [k[0] for k, _ in hourly],
        "h_hour": [k[1] for k, _ in hourly],
        "h_kind": [k[2] for k, _ in hourly],
        "h_events": [n for _, n in hourly],
        "v_hour": [k[0] for k, _ in by_hour],
        "v_kind": [k[1] for k, _ in by_hour],
        "v_events": [n for _, n in by_hour],
        "p_unit": [k[0] for k, _ in presence],
        "p_day": [k[1] for k, _ in presence],
        "p_credential": [k[2] for k, _ in presence],
        "p_first": [v[0] for _, v in presence],
        "p_last": [v[1] for _, v in presence],
        "p_events": [v[2] for _, v in presence],
        "l_device": [e.device_id for e in latest],
        "l_ts": [e.ts for e in latest],
        "l_received": [e.received_at for e in latest],
        "l_kind": [e.kind for e in latest],
        "l_seq": [e.seq for e in latest],
        "l_payload": [e.payload for e in latest],
        "s_device": [d for d, _ in seen],
        "s_seen": [v[0] for _, v in seen],
        "s_seq": [v[1] for _, v in seen],
        "i_id": [e.event_id for e in incidents],
        "i_ts": [e.ts for e in incidents],
        "i_device": [e.device_id for e in incidents],
        "i_building": [e.building_id for e in incidents],
        "i_payload": [e.payload for e in incidents],
    }
