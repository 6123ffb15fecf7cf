"""What a batch of new events adds to the derived tables, summed in Python.

When none of a batch's events was stored before (the common case), the ingester copies them
straight into the hypertable and sends the database these few summary rows instead of asking
it to group thousands of returned rows. The rules are the same as the SQL path's in store.py,
and tests/test_ingest_state.py checks both against a recount from the raw events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ingest.validate import EventRow

# Days in the derived tables are local days in China Standard Time (migration 0002).
LOCAL_DAY = ZoneInfo("Asia/Shanghai")
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
    for e in events:
        utc = e.ts.astimezone(UTC)
        key = (e.building_id or "", utc.replace(minute=0, second=0, microsecond=0), e.kind)
        hourly[key] = hourly.get(key, 0) + 1
        if (
            e.kind in PRESENCE_KINDS
            and e.unit_id is not None
            and e.credential_ref is not None
            and e.granted is not False
        ):
            pkey = (e.unit_id, e.ts.astimezone(LOCAL_DAY).date(), e.credential_ref)
            found = presence.get(pkey)
            presence[pkey] = (
                (e.ts, e.ts, 1)
                if found is None
                else (min(found[0], e.ts), max(found[1], e.ts), found[2] + 1)
            )
        before = latest.get(e.device_id)
        if before is None or (e.ts, e.seq) > (before.ts, before.seq):
            latest[e.device_id] = e
        was = seen.get(e.device_id)
        seen[e.device_id] = (
            (e.received_at, e.seq)
            if was is None
            else (max(was[0], e.received_at), max(was[1], e.seq))
        )
        if e.kind == "app.incident":
            out.incidents.append(e)
    return out


def columns(summary: Summary) -> dict[str, Sequence[object]]:
    """The summary as one array per column: the parameters of store.py's ``_DERIVE``."""
    hourly = list(summary.hourly.items())
    presence = list(summary.presence.items())
    latest = list(summary.latest.values())
    seen = list(summary.seen.items())
    incidents = summary.incidents
    return {
        "h_building": [k[0] for k, _ in hourly],
        "h_hour": [k[1] for k, _ in hourly],
        "h_kind": [k[2] for k, _ in hourly],
        "h_events": [n for _, n in hourly],
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
