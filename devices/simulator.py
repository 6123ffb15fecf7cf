"""Simulated devices of a village: plausible events at a controlled rate.

The generator is pure and deterministic by seed (it is given the clock); the publisher is the
MQTT edge that paces it. The simulator knows the village only as a list of ``SimDevice``
values, so the device contract stays independent of the village model.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from devices.kinds import REGISTRY
from devices.mqtt import connect, new_client
from devices.payloads import (
    AccessAlarm,
    AccessUnlock,
    AppCheckIn,
    AppCheckOut,
    AppIncident,
    AppVisitor,
    CameraDetection,
    DeviceKind,
    EventModel,
    GateAlarm,
    GatePass,
    Heartbeat,
    Status,
    encode,
)
from devices.settings import SimulatorSettings
from devices.topics import event_topic, status_topic

# Namespace for event ids: uuid5(namespace, "<device>/<seq>") makes a retry carry the same id.
EVENT_ID_NAMESPACE = uuid.UUID("6f6b3c1e-8a57-4d1c-9a3b-2f1f5f0c9e11")


@dataclass(frozen=True, slots=True)
class SimDevice:
    device_id: str
    kind: DeviceKind
    units: tuple[str, ...] = ()
    lon: float = 0.0
    lat: float = 0.0
    building_code: str | None = None


# What residents write when they report through the app: a few ways of saying each problem,
# and where in the building it is.
INCIDENT_TEXTS: dict[str, list[str]] = {
    "fire_hazard": ["楼道堆满杂物，消防通道堵塞 junk blocks the stairwell",
                    "电线私拉乱接，插排冒火花 unsafe wiring, a power strip sparks",
                    "灭火器过期了 the extinguisher is out of date",
                    "有人在楼道里烧东西 someone is burning things in the stairwell"],
    "ebike_charging": ["电动车推进电梯上楼充电 an e-bike taken up in the lift to charge",
                       "楼道里有电动车整夜充电 an e-bike charges overnight in the corridor",
                       "飞线充电，从窗口拉电线 a charging cable hangs from a window"],
    "sanitation": ["垃圾两天没人清运 rubbish not collected for two days",
                   "下水道堵塞，污水外溢 a blocked drain overflows",
                   "巷子里有死老鼠 a dead rat in the alley"],
    "security": ["单元门锁坏了，一直关不上 the entrance lock is broken, the door stays open",
                 "陌生人反复敲门推销 strangers knock on doors selling things",
                 "有人撬电动车锁 someone is forcing e-bike locks"],
    "noise": ["深夜装修噪音 renovation noise late at night",
              "楼上麻将声到凌晨 mahjong upstairs until the small hours"],
    "other": ["路灯不亮 the street light is out", "井盖松动 a loose manhole cover"],
}  # fmt: skip
INCIDENT_WHERE = ["一楼 ground floor", "楼道 stairwell", "{floor}楼 floor {floor}",
                  "门口 at the door", "天台 roof", "巷口 alley entrance"]  # fmt: skip
# Categories by how often residents report them.
INCIDENT_WEIGHTS = {"sanitation": 30, "noise": 20, "security": 15, "fire_hazard": 12,
                    "ebike_charging": 15, "other": 8}  # fmt: skip


def incident_report(rng: random.Random, building: SimDevice, seq: int) -> dict[str, object]:
    """A resident's report at a building: a category by how often each is reported, one of
    several texts for it, where in the building, a point a few metres off the door, and a
    photo about half the time. The fields of ``AppIncident`` except the envelope."""
    category = rng.choices(list(INCIDENT_WEIGHTS), weights=list(INCIDENT_WEIGHTS.values()))[0]
    where = rng.choice(INCIDENT_WHERE).format(floor=rng.randint(2, 8))
    text = f"{building.building_code} {where}：{rng.choice(INCIDENT_TEXTS[category])}"
    report: dict[str, object] = {
        "category": category,
        "text": text,
        "lon": round(building.lon + rng.uniform(-4e-5, 4e-5), 6),
        "lat": round(building.lat + rng.uniform(-4e-5, 4e-5), 6),
        "building": building.building_code,
    }
    if rng.random() < 0.5:
        report["photo"] = f"photo/{building.building_code}/{seq}.jpg"
    return report


def credential_ref(unit: str, resident: int) -> str:
    """A stable opaque credential reference for the n-th resident of a unit."""
    digest = hashlib.sha256(f"{unit}#{resident}".encode()).hexdigest()[:16]
    return f"cred:{digest}"


def event_id(device_id: str, seq: int) -> uuid.UUID:
    """The event id of a device's ``seq``-th event: UUID version 5 (RFC 4122 §4.3, SHA-1) of
    ``"<device_id>/<seq>"`` in ``EVENT_ID_NAMESPACE``, so a replayed or retried event keeps its
    id."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{device_id}/{seq}")


@dataclass
class EventGenerator:
    """Draws events for a village's devices; deterministic for a seed and a clock."""

    devices: Sequence[SimDevice]
    seed: int = 0
    # unit -> registered credentials: with them, door readers see the registered residents
    # (so the rules see ordinary life), without them made-up ones.
    residents: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Each device's last sequence number already used (a replayed day before): continue after.
    start_seq: Mapping[str, int] = field(default_factory=dict)
    _rng: random.Random = field(init=False)
    _seq: dict[str, int] = field(init=False, default_factory=dict)
    _weights: list[float] = field(init=False)
    _all_units: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("the simulator needs at least one device; load a village first")
        self._rng = random.Random(self.seed)
        self._seq.update(self.start_seq)
        self._weights = [REGISTRY[d.kind].simulator_weight for d in self.devices]
        self._all_units = sorted({u for d in self.devices for u in d.units}) or ["unknown"]
        self._buildings = [d for d in self.devices if d.building_code is not None]

    def next_seq(self, device_id: str) -> int:
        """The device's next sequence number: one more than the last used (``start_seq`` or 0 for a
        device not seen yet), remembered."""
        seq = self._seq.get(device_id, 0) + 1
        self._seq[device_id] = seq
        return seq

    def event(self, now: datetime) -> EventModel:
        """One event at ``now`` from a device drawn by its kind's ``simulator_weight``; see
        ``event_for`` (and its ValueError)."""
        device = self._rng.choices(self.devices, weights=self._weights)[0]
        return self.event_for(device, now)

    def heartbeat(self, device: SimDevice, now: datetime, uptime_s: int) -> Heartbeat:
        """The next heartbeat of ``device`` at ``now``, reporting ``uptime_s`` (seconds since the
        simulated device started); it takes the device's next ``seq``."""
        seq = self.next_seq(device.device_id)
        return Heartbeat(
            id=event_id(device.device_id, seq),
            device=device.device_id,
            seq=seq,
            ts=now,
            uptime_s=uptime_s,
            firmware="sim-1.0",
        )

    def event_for(self, device: SimDevice, now: datetime) -> EventModel:
        """The next event of ``device`` at ``now`` (an aware datetime), drawn from this generator's
        seeded random stream: what its kind sends (access unlock or, 1 in 1000, alarm; gate pass or
        alarm; camera detection; app check-in, check-out, visitor or, rarely, an incident near one
        of the village's buildings), with a unit and credential of the device's units (registered
        residents' credentials when ``residents`` has them). It takes the device's next ``seq``.

        Raises ValueError for a kind the simulator has no events for."""
        rng = self._rng
        seq = self.next_seq(device.device_id)
        common = {"id": event_id(device.device_id, seq), "device": device.device_id, "seq": seq}
        units = device.units or tuple(self._all_units)
        if self.residents:
            units = tuple(u for u in units if self.residents.get(u)) or units
        unit = rng.choice(units)
        registered = self.residents.get(unit)
        cred = rng.choice(registered) if registered else credential_ref(unit, rng.randrange(3))
        if device.kind is DeviceKind.ACCESS:
            if rng.random() < 0.001:
                return AccessAlarm(
                    **common,
                    ts=now,
                    alarm=rng.choice(["held_open", "forced_open"]),
                    door="building",
                )
            if not device.units:
                # A door of a building without rental units (a hall, a shop): its users are
                # nobody's tenants, and naming another building's unit is refused by the
                # ingester (unit_outside_device_scope).
                return AccessUnlock(
                    **common,
                    ts=now,
                    door="building",
                    method=rng.choice(["card", "face", "app"]),
                    credential=f"visitor:{rng.randrange(16**8):08x}",
                    granted=rng.random() > 0.03,
                )
            return AccessUnlock(
                **common,
                ts=now,
                door=rng.choice(["building", "unit"]),
                unit=unit,
                method=rng.choice(["card", "card", "face", "app"]),
                credential=cred,
                granted=rng.random() > 0.03,
            )
        if device.kind is DeviceKind.GATE:
            if rng.random() < 0.002:
                return GateAlarm(**common, ts=now, alarm=rng.choice(["tailgating", "forced"]))
            method = rng.choice(["face", "card", "qr", "plate"])
            return GatePass(
                **common,
                ts=now,
                direction=rng.choice(["in", "out"]),
                method=method,
                granted=rng.random() > 0.05,
                credential=f"plate:{rng.randrange(16**8):08x}" if method == "plate" else cred,
            )
        if device.kind is DeviceKind.CAMERA:
            cls = rng.choices(
                ["person", "vehicle", "ebike", "crowd", "smoke"], weights=[60, 15, 20, 0.5, 0.01]
            )[0]
            return CameraDetection(
                **common,
                ts=now,
                cls=cls,
                count=rng.randint(8, 40) if cls == "crowd" else rng.randint(1, 3),
                confidence=round(rng.uniform(0.55, 0.99), 2),
                zone=f"z{rng.randint(1, 4)}",
                snapshot=f"snap/{device.device_id}/{seq}.jpg",
            )
        if device.kind is not DeviceKind.APP:
            raise ValueError(
                f"the simulator does not know what a {device.kind} device sends: add it to"
                " EventGenerator.event_for (devices/simulator.py)"
            )
        # About one report in 200 app events: a few an hour at the demo's rate.
        kind = rng.choices(["checkin", "checkout", "visitor", "incident"],
                           weights=[4, 3, 6, 0.065])[0]  # fmt: skip
        if kind == "checkin":
            return AppCheckIn(**common, ts=now, unit=unit, credential=cred)
        if kind == "checkout":
            return AppCheckOut(**common, ts=now, unit=unit, credential=cred)
        if kind == "visitor":
            return AppVisitor(
                **common, ts=now, unit=unit, credential=f"visitor:{rng.randrange(16**8):08x}"
            )
        if not self._buildings:
            return AppVisitor(**common, ts=now, unit=unit, credential=f"visitor:{seq:08x}")
        place = rng.choice(self._buildings)
        return AppIncident(**common, ts=now, **incident_report(rng, place, seq))


def paced(rate: float, duration_s: float, clock: Callable[[], float]) -> Iterator[float]:
    """Yields at ``rate`` per second for ``duration_s``; yields the time each tick is due, so the
    caller can sleep until then (a token bucket without drift): ``int(rate * duration_s)``
    ticks, ``clock`` in seconds. Raises ValueError (at the first ``next``) when ``rate`` is not
    positive."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    start = clock()
    total = int(rate * duration_s)
    for n in range(total):
        yield start + n / rate


@dataclass(frozen=True, slots=True)
class SimulationReport:
    published: int
    by_type: dict[str, int]
    seconds: float


def run(
    settings: SimulatorSettings,
    devices: Sequence[SimDevice],
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    residents: Mapping[str, Sequence[str]] | None = None,
    start_seq: Mapping[str, int] | None = None,
) -> SimulationReport:
    """Publishes QoS 1 events from ``devices`` for ``duration_s`` at ``rate`` per second and
    waits until the broker has acknowledged every one."""
    generator = EventGenerator(
        devices, seed=seed, residents=residents or {}, start_seq=start_seq or {}
    )
    client = new_client(settings.mqtt, settings.simulator_client_id)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connect(client, settings.mqtt)
    client.loop_start()
    by_type: dict[str, int] = {}
    started = time.monotonic()
    pending: list[mqtt.MQTTMessageInfo] = []
    try:
        for device in devices:
            client.publish(
                status_topic(device.device_id), encode(Status(state="online")), qos=1, retain=True
            )
        total = int(rate * duration_s)
        next_heartbeat = started + settings.heartbeat_interval_s
        for n, due in enumerate(paced(rate, duration_s, time.monotonic)):
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = datetime.now(UTC)
            if time.monotonic() >= next_heartbeat:
                next_heartbeat += settings.heartbeat_interval_s
                uptime = int(time.monotonic() - started)
                for device in devices:
                    beat = generator.heartbeat(device, now, uptime)
                    pending.append(
                        client.publish(event_topic(device.device_id), encode(beat), qos=1)
                    )
                    by_type["heartbeat"] = by_type.get("heartbeat", 0) + 1
            event = generator.event(now)
            pending.append(client.publish(event_topic(event.device), encode(event), qos=1))
            by_type[event.type] = by_type.get(event.type, 0) + 1
            if len(pending) >= 5000:
                for info in pending:
                    info.wait_for_publish(timeout=30)
                pending.clear()
            if progress and (n + 1) % max(1, int(rate)) == 0:
                progress(n + 1, total)
        for info in pending:
            info.wait_for_publish(timeout=30)
    finally:
        client.loop_stop()
        client.disconnect()
    published = sum(by_type.values())
    return SimulationReport(published, by_type, time.monotonic() - started)
