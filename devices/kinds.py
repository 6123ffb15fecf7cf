"""The device kind registry: the one place a kind of device and its event types are declared.

Everything else that depends on the kinds derives from :data:`REGISTRY`:

- the contract: :data:`EVENT_TYPES_BY_KIND` (which event types a kind may send; the ingester
  refuses the others as ``wrong_kind``) and ``docs/mqtt.md``;
- the database: ``villagetwin.migrate`` writes the kinds into ``device_kinds``, which
  ``devices.kind`` references (migration 0140), after every migration run;
- the simulator's share of traffic per kind (:attr:`Kind.simulator_weight`);
- the rules' default offline thresholds per kind (:attr:`Kind.offline_grace_s`,
  :attr:`Kind.silent_s`, read by ``rules.settings``);
- the derived tables' presence types (:data:`PRESENCE_TYPES`) and the dashboard's alarm types
  (:data:`ALARM_TYPES`);
- the map's colours (:data:`EVENT_COLOURS`) and the labels shown to users (:func:`label`).

What a kind *does* stays code where it belongs: its pydantic event models in
``devices/payloads.py``, what the simulator sends in ``devices/simulator.py``, where the sample
village places it in ``mapping/generate.py``. ``tests/test_device_kinds.py`` fails naming the
place a new kind was not added to, and adds a toy kind through this registry alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from pydantic import BaseModel

from devices import payloads as p
from devices.payloads import DeviceKind

RGB = tuple[int, int, int]


def type_of(model: type[BaseModel]) -> str:
    """The ``type`` literal of an event model (``GatePass`` → ``"gate.pass"``).

    Raises TypeError when the model's ``type`` field is not a single ``Literal`` string."""
    annotation = model.model_fields["type"].annotation
    args = get_args(annotation)
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f"{model.__name__}.type must be one Literal string, not {annotation!r}")
    return args[0]


@dataclass(frozen=True, slots=True)
class EventType:
    """One event type of the contract.

    ``alarm``: the dashboard lists it among alarms. ``presence``: it says a resident was at
    their own door (the derived tables count it as presence; see ``ingest/derived_tables.py``).
    ``colour``: its colour on the map when not its kind's (RGB, 0–255)."""

    model: type[BaseModel]
    zh: str
    en: str
    alarm: bool = False
    presence: bool = False
    colour: RGB | None = None

    @property
    def name(self) -> str:
        """The contract's ``type`` string of this event type (``"gate.pass"``); TypeError as
        ``type_of``."""
        return type_of(self.model)


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of device.

    ``simulator_weight``: its relative share of the simulated traffic. ``offline_grace_s``: the
    seconds after its last will before the rules call it offline; ``silent_s``: the seconds
    without any message after which it counts as offline (missed heartbeats). ``colour``: the
    map colour of its events (RGB, 0–255)."""

    kind: str  # a DeviceKind value (the contract's enum); a plain string for a toy kind
    zh: str
    en: str
    events: tuple[EventType, ...]
    simulator_weight: float
    offline_grace_s: float
    silent_s: float
    colour: RGB
    sends_heartbeats: bool = field(default=True)


HEARTBEAT = EventType(p.Heartbeat, "心跳", "heartbeat", colour=(140, 140, 140))

REGISTRY: Mapping[str, Kind] = {
    DeviceKind.GATE: Kind(
        DeviceKind.GATE,
        "出入口闸机",
        "gate",
        (
            EventType(p.GatePass, "闸机通行", "gate pass"),
            EventType(p.GateAlarm, "闸机告警", "gate alarm", alarm=True),
        ),
        simulator_weight=6.0,
        offline_grace_s=60,
        silent_s=300,
        colour=(0, 160, 120),
    ),
    DeviceKind.CAMERA: Kind(
        DeviceKind.CAMERA,
        "摄像机",
        "camera",
        (EventType(p.CameraDetection, "摄像机识别", "camera detection"),),
        simulator_weight=2.0,
        offline_grace_s=120,
        silent_s=600,
        colour=(130, 80, 220),
    ),
    DeviceKind.ACCESS: Kind(
        DeviceKind.ACCESS,
        "门禁",
        "door access",
        (
            EventType(p.AccessUnlock, "门禁开门", "door unlock", presence=True),
            EventType(p.AccessAlarm, "门禁告警", "door alarm", alarm=True),
            EventType(p.AccessDoor, "门状态", "door state"),
            EventType(p.AccessVendor, "门禁其他事件", "other door event"),
        ),
        simulator_weight=1.0,
        offline_grace_s=300,
        silent_s=1800,
        colour=(240, 120, 0),
    ),
    DeviceKind.APP: Kind(
        DeviceKind.APP,
        "居民应用",
        "resident app",
        (
            EventType(p.AppCheckIn, "入住登记", "check-in", presence=True),
            EventType(p.AppCheckOut, "退房登记", "check-out"),
            EventType(p.AppVisitor, "访客登记", "visitor"),
            EventType(p.AppIncident, "居民上报", "resident report"),
        ),
        simulator_weight=40.0,  # one backend speaks for every resident
        offline_grace_s=60,
        silent_s=600,
        colour=(30, 130, 230),
    ),
}


def event_types(kind: Kind) -> tuple[EventType, ...]:
    """The event types ``kind`` may send, its heartbeat included."""
    return kind.events + ((HEARTBEAT,) if kind.sends_heartbeats else ())


@dataclass(frozen=True, slots=True)
class Derived:
    """What the rest of the platform reads from a registry (see the module docstring)."""

    event_types: Mapping[str, EventType]
    event_types_by_kind: Mapping[str, frozenset[str]]
    alarm_types: frozenset[str]
    presence_types: frozenset[str]
    event_colours: Mapping[str, RGB]  # by event family: "gate" of "gate.pass"


def derive(registry: Mapping[str, Kind]) -> Derived:
    """The tables the platform uses, derived from ``registry`` (kind value → Kind).

    Raises ValueError when a registry key is not its entry's kind, or when two kinds declare
    the same event type differently."""
    by_name: dict[str, EventType] = {}
    for key, kind in registry.items():
        if key != kind.kind:
            raise ValueError(f"registry key {key!r} holds kind {kind.kind!r}")
        for event_type in event_types(kind):
            if by_name.setdefault(event_type.name, event_type) != event_type:
                raise ValueError(f"event type {event_type.name!r} is declared twice, differently")
    return Derived(
        event_types=by_name,
        event_types_by_kind={
            k: frozenset(e.name for e in event_types(spec)) for k, spec in registry.items()
        },
        alarm_types=frozenset(n for n, e in by_name.items() if e.alarm),
        presence_types=frozenset(n for n, e in by_name.items() if e.presence),
        event_colours={
            **{str(spec.kind): spec.colour for spec in registry.values()},
            **{n.split(".")[0]: e.colour for n, e in by_name.items() if e.colour is not None},
        },
    )


DERIVED = derive(REGISTRY)
EVENT_TYPES = DERIVED.event_types
EVENT_TYPES_BY_KIND = DERIVED.event_types_by_kind
ALARM_TYPES = DERIVED.alarm_types
PRESENCE_TYPES = DERIVED.presence_types
EVENT_COLOURS = DERIVED.event_colours


def label(code: str, lang: Literal["both", "zh", "en"] = "both") -> str:
    """The user-facing name of an event type (``"gate.pass"``) or a device kind (``"gate"``):
    ``"闸机通行 gate pass"``, Chinese first. An unknown code is returned as given (a vendor's
    newer type stays readable rather than vanishing)."""
    entry: EventType | Kind | None = EVENT_TYPES.get(code) or REGISTRY.get(code)
    if entry is None:
        return code
    if lang == "zh":
        return entry.zh
    if lang == "en":
        return entry.en
    return f"{entry.zh} {entry.en}"
