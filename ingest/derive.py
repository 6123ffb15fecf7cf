"""What a batch of new events adds to the derived tables, summed in Python.

The ingester sends the database these few summary rows of the events a batch newly stored,
instead of asking it to group thousands of rows. tests/test_ingest_state.py checks the derived
tables against their definition (ingest/derived_tables.py, a recount from the raw events),
through both of store.py's ways in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from devices.kinds import PRESENCE_TYPES
from ingest.types import EventRow

# Days in the derived tables are local days in China Standard Time (Asia/Shanghai in
# migration 0002): UTC+8, with no daylight saving since 1991, and the ingester refuses device
# times older than its max age (30 days by default).
LOCAL_OFFSET_S = 8 * 3600
LOCAL_TIMEZONE = "Asia/Shanghai"  # the same days, named for SQL (ingest/derived_tables.py)
_EPOCH_DAY = date(1970, 1, 1)
# Event types that say a resident was at their unit's door (the device kind registry's).
PRESENCE_KINDS = PRESENCE_TYPES


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
    """What ``events`` (stored event rows, any order) add to the derived tables:

    - ``hourly``: events per (building or ``''``, UTC hour start, event type); - ``presence``:
    (first, last, count) per (unit, local day in China Standard Time, UTC+8, credential), for
    presence types with a unit and a credential that were not refused (``granted`` not False); -
    ``latest``: each device's latest event by (device time, seq); ``seen``: each device's latest
    reception time and highest seq; ``incidents``: the ``app.incident`` rows.

    The definition these sums must match is ``ingest/derived_tables.py``. Pure; never raises for
    well-formed rows (aware ``ts``/``received_at``)."""
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
    hourly = sorted((*key, n) for key, n in summary.hourly.items())
    village: dict[tuple[datetime, str], int] = {}
    for _, hour, kind, n in hourly:
        village[(hour, kind)] = village.get((hour, kind), 0) + n
    latest = [summary.latest[device] for device in sorted(summary.latest)]
    return {
        **_arrays("h", "building hour kind events", hourly),
        **_arrays("v", "hour kind events", sorted((*key, n) for key, n in village.items())),
        **_arrays(
            "p",
            "unit day credential first last events",
            sorted((*key, *value) for key, value in summary.presence.items()),
        ),
        **_arrays(
            "l",
            "device ts received kind seq payload",
            [(e.device_id, e.ts, e.received_at, e.kind, e.seq, e.payload) for e in latest],
        ),
        **_arrays("s", "device seen seq", sorted((d, *v) for d, v in summary.seen.items())),
        **_arrays(
            "i",
            "id ts device building payload",
            [(e.event_id, e.ts, e.device_id, e.building_id, e.payload) for e in summary.incidents],
        ),
    }


def _arrays(prefix: str, names: str, rows: Sequence[tuple[object, ...]]) -> dict[str, list[object]]:
    """Rows as one list per column, named ``<prefix>_<name>``."""
    keys = [f"{prefix}_{name}" for name in names.split()]
    values = list(zip(*rows, strict=True)) or [()] * len(keys)
    return {key: list(column) for key, column in zip(keys, values, strict=True)}
