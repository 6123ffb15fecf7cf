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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

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


# How often each kind speaks relative to the others: door readers are the busiest.
KIND_WEIGHT: dict[DeviceKind, float] = {
    DeviceKind.ACCESS: 1.0,
    DeviceKind.GATE: 6.0,
    DeviceKind.CAMERA: 2.0,
    DeviceKind.APP: 40.0,  # one backend speaks for every resident
}


def credential_ref(unit: str, resident: int) -> str:
    """A stable opaque credential reference for the n-th resident of a unit."""
    digest = hashlib.sha256(f"{unit}#{resident}".encode()).hexdigest()[:16]
    return f"cred:{digest}"


def event_id(device_id: str, seq: int) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{device_id}/{seq}")


@dataclass
class EventGenerator:
    """Draws events for a village's devices; deterministic for a seed and a clock."""

    devices: Sequence[SimDevice]
    seed: int = 0
    _rng: random.Random = field(init=False)
    _seq: dict[str, int] = field(init=False, default_factory=dict)
    _weights: list[float] = field(init=False)
    _all_units: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("the simulator needs at least one device; load a village first")
        self._rng = random.Random(self.seed)
        self._weights = [KIND_WEIGHT[d.kind] for d in self.devices]
        self._all_units = sorted({u for d in self.devices for u in d.units}) or ["unknown"]

    def next_seq(self, device_id: str) -> int:
        seq = self._seq.get(device_id, 0) + 1
        self._seq[device_id] = seq
        return seq

    def event(self, now: datetime) -> EventModel:
        device = self._rng.choices(self.devices, weights=self._weights)[0]
        return self.event_for(device, now)

    def heartbeat(self, device: SimDevice, now: datetime, uptime_s: int) -> Heartbeat:
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
        rng = self._rng
        seq = self.next_seq(device.device_id)
        common = {"id": event_id(device.device_id, seq), "device": device.device_id, "seq": seq}
        units = device.units or tuple(self._all_units)
        unit = rng.choice(units)
        cred = credential_ref(unit, rng.randrange(3))
        if device.kind is DeviceKind.ACCESS:
            if rng.random() < 0.01:
                return AccessAlarm(
                    **common,
                    ts=now,
                    alarm=rng.choice(["held_open", "forced_open"]),
                    door="building",
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
            if rng.random() < 0.01:
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
                ["person", "vehicle", "ebike", "crowd", "smoke"], weights=[60, 15, 20, 4, 1]
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
        kind = rng.choices(["checkin", "checkout", "visitor", "incident"], weights=[4, 3, 6, 1])[0]
        if kind == "checkin":
            return AppCheckIn(**common, ts=now, unit=unit, credential=cred)
        if kind == "checkout":
            return AppCheckOut(**common, ts=now, unit=unit, credential=cred)
        if kind == "visitor":
            return AppVisitor(
                **common, ts=now, unit=unit, credential=f"visitor:{rng.randrange(16**8):08x}"
            )
        return AppIncident(
            **common,
            ts=now,
            category=rng.choice(["fire_hazard", "ebike_charging", "sanitation", "security"]),
            text="居民上报 / reported by a resident",
            lon=device.lon,
            lat=device.lat,
            photo=f"photo/{seq}.jpg",
        )


def paced(rate: float, duration_s: float, clock: Callable[[], float]) -> Iterator[float]:
    """Yields at ``rate`` per second for ``duration_s``; yields the time each tick is due, so the
    caller can sleep until then (a token bucket without drift)."""
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
) -> SimulationReport:
    """Publishes QoS 1 events from ``devices`` for ``duration_s`` at ``rate`` per second and
    waits until the broker has acknowledged every one."""
    generator = EventGenerator(devices, seed=seed)
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
