"""The ingester's value types: what judging produces and batching, derive and store consume.

Plain immutable values (named tuples where one is built per message or per event, for speed;
frozen dataclasses elsewhere), no logic. ``ingest.validate`` re-exports them, so imports from
there keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

from devices.payloads import DeviceKind

if TYPE_CHECKING:
    from ingest.validate import Reason

__all__ = [
    "ConfigUpdate",
    "EventRow",
    "KnownDevice",
    "Liveness",
    "Received",
    "Refusal",
    "Retraction",
    "StatusChange",
    "Verdict",
]


@dataclass(frozen=True, slots=True)
class KnownDevice:
    device_id: str
    kind: DeviceKind
    building_id: str | None = None
    revoked: bool = False
    # Bridged devices only: the zone of vendor times without an offset (None: the village's),
    # and the payload's text encoding (None: UTF-8, else GB18030, detected).
    time_zone: str | None = None
    text_encoding: str | None = None
    # The units this device may write events for: its building's, or the village's for gates
    # and devices without a building (ingest/store.py load_registry). None: not checked (a
    # village with no units loaded).
    units: frozenset[str] | None = None


class Received(NamedTuple):
    """One MQTT message as the broker delivered it; built in the paho callback, nothing more
    (a tuple: the cheapest immutable value to build once per message)."""

    topic: str
    payload: bytes
    received_at: datetime
    mid: int = 0
    qos: int = 0
    generation: int = 0  # which broker connection delivered it (acks go back on that one only)
    # The broker's retain flag: set only on a retained message replayed because the ingester
    # (re)subscribed, never on a live one (MQTT 3.1.1 §3.3.1.3), so it marks old news.
    retain: bool = False


class EventRow(NamedTuple):
    """An accepted event, flattened into the columns of the events table, in their order
    (a tuple: cheap to build per event, and written to COPY as it is)."""

    ts: datetime
    received_at: datetime
    event_id: UUID
    device_id: str
    seq: int
    kind: str
    building_id: str | None
    unit_id: str | None
    credential_ref: str | None
    payload: str  # the event as JSON text
    # Not a column: whether the reader let them in (None: the event does not say), which the
    # derived tables need without parsing the payload again.
    granted: bool | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    received_at: datetime
    topic: str
    device_id: str | None
    reason: Reason
    detail: str
    payload: bytes
    payload_size: int


@dataclass(frozen=True, slots=True)
class StatusChange:
    device_id: str
    online: bool
    at: datetime
    # A retained status replayed at (re)subscription: fills an unknown state only, moves no
    # last-seen time and adds no history row.
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Liveness:
    """A bridged device was heard (a vendor heartbeat or status message): last seen moves
    (unless ``replayed``), and its vendor status flags (e.g. videoloss) are recorded."""

    device_id: str
    at: datetime
    status: Mapping[str, bool]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """Where a registered device claims to be (its retained config message); the registry's
    place is the operator's, so a differing claim waits for one (ingest/store.py)."""

    device_id: str
    building_id: str | None
    floor: int | None
    door: str | None
    at: datetime  # received: a later commit of an older config does not overwrite a newer one
    # A retained config replayed at (re)subscription. Like a live one it never moves the
    # device (issue 12): a differing place is recorded once as a pending change.
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Retraction:
    """A bridged detection withdrawn by its vendor (a Frigate false positive): the events row
    ``(event_id, ts)`` of ``device_id`` is deleted, and its hourly counts with it."""

    device_id: str
    event_id: UUID
    ts: datetime


class Verdict(NamedTuple):
    events: tuple[EventRow, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    status: StatusChange | None = None
    config: ConfigUpdate | None = None
    # Bridged only: detections a later message keeps current (upserted by event id), vendor
    # liveness, and notes counted in metrics (unmapped vendor codes, skipped messages).
    tracked: tuple[EventRow, ...] = ()
    sightings: tuple[Liveness, ...] = ()
    notes: tuple[str, ...] = ()
    retracted: tuple[Retraction, ...] = ()  # bridged detections withdrawn (false positives)
