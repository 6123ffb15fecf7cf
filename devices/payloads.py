"""Typed payloads of the device contract, schema version 1.

Devices send JSON. Every event names its schema version (``v``), its type, a globally unique
id chosen by the device (so a retry is recognisable), the device's own per-device sequence
number (so the platform can see gaps) and the device's timestamp, which must carry a UTC
offset: a naive local time would be ambiguous across devices.

A face, a card or a plate is never sent as an image or a raw number: devices send an opaque
credential reference (``credential``), and cameras a snapshot reference, never image bytes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

from devices.topics import DEVICE_ID_PATTERN

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
MAX_BATCH_EVENTS = 1000

DeviceId = Annotated[str, StringConstraints(pattern=f"^{DEVICE_ID_PATTERN}$")]
# An opaque reference (hash, token, registry key), never the personal datum itself.
Reference = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9:_.\-/]{1,128}$")]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# What the database can hold: integers that go into a bigint column (or may be read as one)
# are signed 64-bit. Floats are bounded by their fields, and a number written so that
# PostgreSQL's jsonb cannot hold it (1e-20000) is refused before validation (ingest/validate.py).
INT64_MAX = 2**63 - 1


class DeviceKind(StrEnum):
    GATE = "gate"
    CAMERA = "camera"
    ACCESS = "access"
    APP = "app"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Event(_Message):
    v: Literal[1] = 1
    id: UUID
    device: DeviceId
    seq: int = Field(
        ge=0, le=INT64_MAX, description="per-device sequence number, +1 for every event"
    )
    ts: AwareDatetime = Field(description="device time, ISO 8601 with a UTC offset")


class GatePass(_Event):
    """A person or vehicle passing a village gate (闸口)."""

    type: Literal["gate.pass"] = "gate.pass"
    direction: Literal["in", "out"]
    method: Literal["face", "card", "qr", "plate"]
    granted: bool
    credential: Reference | None = None
    unlicensed: bool | None = Field(
        default=None, description="a vehicle without a readable plate: no credential, flagged"
    )
    pictures: int | None = Field(default=None, ge=0, le=100, description="images taken, not sent")


class GateAlarm(_Event):
    type: Literal["gate.alarm"] = "gate.alarm"
    alarm: Literal["tailgating", "forced"]


class CameraDetection(_Event):
    """What a camera (摄像头) saw in one zone; the image stays on the camera or NVR."""

    type: Literal["camera.detection"] = "camera.detection"
    cls: Literal["person", "vehicle", "ebike", "smoke", "fire", "crowd"]
    count: int = Field(ge=0, le=10_000)
    confidence: float = Field(ge=0, le=1)
    zone: Code
    snapshot: Reference | None = None
    credential: Reference | None = Field(
        default=None, description="plate or face match reference, when the camera recognises one"
    )
    track: Reference | None = Field(
        default=None,
        description="the tracker's object id: a later message with the same event id replaces"
        " this one (one detection kept current, not one per message)",
    )
    until: AwareDatetime | None = Field(
        default=None, description="when the tracked object was last seen, or its track ended"
    )
    unlicensed: bool | None = Field(
        default=None, description="a vehicle without a readable plate: no credential, flagged"
    )


class AccessUnlock(_Event):
    """A door reader (门禁) at a building or unit door."""

    type: Literal["access.unlock"] = "access.unlock"
    door: Literal["building", "unit"]
    unit: Code | None = None
    method: Literal["card", "face", "pin", "app", "fingerprint", "qr"]
    credential: Reference
    granted: bool
    pictures: int | None = Field(default=None, ge=0, le=100, description="images taken, not sent")


class AccessAlarm(_Event):
    type: Literal["access.alarm"] = "access.alarm"
    alarm: Literal["held_open", "forced_open"]
    door: Literal["building", "unit"]
    unit: Code | None = None


class AccessDoor(_Event):
    """A door's lock changed state (locked, unlocked), whoever or whatever caused it."""

    type: Literal["access.door"] = "access.door"
    door: Literal["building", "unit"]
    state: Literal["unlocked", "locked", "open", "closed"] = Field(
        description="the lock (unlocked, locked) or the door contact (open, closed)"
    )
    unit: Code | None = None
    cause: Literal["exit_button", "remote"] | None = Field(
        default=None, description="what unlocked it, when no credential did"
    )


class AccessVendor(_Event):
    """An access event the vendor's code table has but the contract does not name: stored with
    the vendor's own code (e.g. Hikvision ``5/112``), never refused, so nothing is lost."""

    type: Literal["access.vendor"] = "access.vendor"
    vendor: Code
    code: Code
    door: Literal["building", "unit"] | None = None
    unit: Code | None = None
    granted: bool | None = None
    credential: Reference | None = None
    pictures: int | None = Field(default=None, ge=0, le=100, description="images taken, not sent")


class AppCheckIn(_Event):
    """A tenant checking in to a rental unit through the resident app (靠埔通)."""

    type: Literal["app.checkin"] = "app.checkin"
    unit: Code
    credential: Reference


class AppCheckOut(_Event):
    type: Literal["app.checkout"] = "app.checkout"
    unit: Code
    credential: Reference


class AppVisitor(_Event):
    type: Literal["app.visitor"] = "app.visitor"
    unit: Code
    credential: Reference = Field(description="the visitor's reference")
    host: Reference | None = None


class AppIncident(_Event):
    """An incident a resident reports; it then moves through reported → assigned → resolved."""

    type: Literal["app.incident"] = "app.incident"
    category: Literal["fire_hazard", "ebike_charging", "sanitation", "security", "noise", "other"]
    text: str = Field(max_length=2000)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    building: Code | None = None
    photo: Reference | None = None


class Heartbeat(_Event):
    type: Literal["heartbeat"] = "heartbeat"
    uptime_s: int = Field(ge=0, le=INT64_MAX)
    firmware: str | None = Field(default=None, max_length=64)


EventModel = (
    GatePass
    | GateAlarm
    | CameraDetection
    | AccessUnlock
    | AccessAlarm
    | AccessDoor
    | AccessVendor
    | AppCheckIn
    | AppCheckOut
    | AppVisitor
    | AppIncident
    | Heartbeat
)
Event = Annotated[EventModel, Field(discriminator="type")]


# "Batch" in the contract (its schema title); not ingest.batching.Batch, the ingester's unit
# of commit.
class BatchEnvelope(_Message):
    """A gateway's many events in one message; each event is judged on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Batch")

    v: Literal[1] = 1
    type: Literal["batch"] = "batch"
    device: DeviceId
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class TypedBatch(_Message):
    """The batch envelope with every event typed: validated in one pass when all are good."""

    v: Literal[1] = 1
    type: Literal["batch"] = "batch"
    device: DeviceId
    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class DeviceConfig(_Message):
    """A device's self-description, retained on ``vt/v1/<id>/config`` in the manner of Home
    Assistant's MQTT discovery. The platform's registry stays the authority: a config message
    updates where a registered device is, it never registers one."""

    v: Literal[1] = 1
    device: DeviceId
    kind: DeviceKind
    building: Code | None = None
    floor: int | None = Field(default=None, ge=-5, le=200)
    door: Literal["building", "unit", "entrance", "none"] | None = None
    availability_topic: str = Field(max_length=128)
    model: str | None = Field(default=None, max_length=64)
    firmware: str | None = Field(default=None, max_length=64)


class Status(_Message):
    """Availability, retained; the same payload with state=offline is the MQTT last will."""

    v: Literal[1] = 1
    state: Literal["online", "offline"]


class AlertMessage(_Message):
    """An alert the platform's rules raised or changed (published on
    ``vt/v1/alerts/<severity>/<rule>``); a new version of the same ``alert_id`` replaces the
    last one a subscriber saw."""

    v: Literal[1] = 1
    type: Literal["alert"] = "alert"
    alert_id: int
    version: int = Field(ge=1, description="+1 on every change of the alert")
    rule: str
    severity: Literal["critical", "high", "medium", "low"]
    status: Literal["open", "acknowledged", "resolved", "false_alarm"]
    subject: str = Field(description="what it is about: unit:…, building:…, device:…, poi:…")
    title: str = Field(description="Chinese first, English beside")
    grid_code: str | None = None
    building_id: str | None = None
    unit_id: str | None = None
    device_id: str | None = None
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    occurrences: int = Field(ge=1)
    evidence: list[str] = Field(default_factory=list, description="latest event ids, at most 10")


# Which event types each kind may send: devices/kinds.py (the device kind registry).

EVENT_ADAPTER: TypeAdapter[EventModel] = TypeAdapter(Event)
TYPED_BATCH_ADAPTER: TypeAdapter[TypedBatch] = TypeAdapter(TypedBatch)


def encode(message: BaseModel) -> bytes:
    """The wire form: compact JSON, UTF-8, timestamps ISO 8601."""
    return message.model_dump_json(exclude_none=True).encode()


def parse_event(data: dict[str, Any]) -> EventModel:
    """One event dict (JSON already decoded) as its typed model, chosen by its ``type`` field.

    Raises pydantic.ValidationError when the type is unknown or a field is missing, of the wrong
    type or out of its bounds."""
    return EVENT_ADAPTER.validate_python(data)
