"""A realistic day (or several) of a village's devices, with planted anomalies and the
ground truth of what was planted, for testing what the platform finds.

Pure: given the village as plain values, a seed and a start time, it returns the events in
time order, the devices' availability changes and the ground truth. Residents are tied to
their units: they leave in the morning and come back in the evening through their building's
door and a village gate; visitors are registered in the app; vehicles pass the gates; cameras
see people and e-bikes. Planted anomalies:

- overcrowded units: more people come and go than are registered (possible 群租);
- registered tenants who are never seen (空挂);
- a care target (elderly, living alone) with no activity for the last two days;
- e-bikes carried into buildings (fire risk), seen by a stairwell or lift camera, or charging
  in a corridor;
- doors held or forced open;
- people using vacant units (nobody registered), and former tenants' credentials still used;
- smoke or fire seen by a camera, tailgating at a gate, a crowd at a camera.

Care targets (elderly, living alone) keep daytime hours: they come and go between 08:00 and
18:00 local time, two or three times a day, unless planted inactive.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from devices.payloads import (
    AccessAlarm,
    AccessUnlock,
    AppIncident,
    AppVisitor,
    CameraDetection,
    DeviceKind,
    EventModel,
    GateAlarm,
    GatePass,
)
from devices.simulator import SimDevice, event_id, incident_report

# Share of a day's comings and goings in each hour: morning and evening peaks.
HOURLY_PROFILE = [1, 1, 1, 1, 1, 2, 5, 12, 14, 7, 4, 4, 5, 4, 4, 4, 5, 8, 13, 12, 8, 5, 3, 2]


@dataclass(frozen=True)
class SimVillage:
    """What the simulator needs to know: devices, and who is registered in which unit."""

    devices: Sequence[SimDevice]
    residents: Mapping[str, Sequence[str]]  # unit_id -> registered credentials
    care_targets: Sequence[tuple[str, str]] = ()  # (unit_id, credential)
    former: Sequence[tuple[str, str]] = ()  # (unit_id, credential) of ended tenancies


@dataclass
class DayPlan:
    events: list[EventModel] = field(default_factory=list)
    availability: list[tuple[datetime, str, bool]] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)


def plan_days(
    village: SimVillage, seed: int, start: datetime, days: int = 1, *, zone: tzinfo
) -> DayPlan:
    """``days`` realistic days of the village's devices, deterministic for ``seed``, with
    planted anomalies and their ground truth (``DayPlan.truth``). Hours of day are local to
    ``zone`` (the village's); every event is before ``start + days``. Raises ValueError when
    the village has no residents, door readers or gates."""
    rng = random.Random(seed)
    readers = {
        d.building_code: d
        for d in village.devices
        if d.kind is DeviceKind.ACCESS and d.building_code is not None
    }
    gates = [d for d in village.devices if d.kind is DeviceKind.GATE]
    cameras = [d for d in village.devices if d.kind is DeviceKind.CAMERA]
    apps = [d for d in village.devices if d.kind is DeviceKind.APP]
    unit_building = {u: b for b, d in readers.items() for u in d.units}
    units = sorted(u for u in village.residents if u in unit_building and village.residents[u])
    if not units or not gates:
        raise ValueError("the village needs registered residents, door readers and gates")
    seq: dict[str, int] = {}  # provisional; renumbered in time order at the end
    plan = DayPlan()
    end = start + timedelta(days=days)
    # Hours are the village's local hours: day 0 begins at the local midnight at or before
    # ``start`` (the first hours may fall before ``start``); nothing is at or after ``end``.
    local = start.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(start.tzinfo)

    def at(day: int, hour: int) -> datetime:
        return midnight + timedelta(days=day, hours=hour, seconds=rng.randint(0, 3599))

    def emit(factory: Any, device: SimDevice, ts: datetime, **fields: Any) -> None:
        if ts >= end:
            return  # the local day that ``end`` falls in is lived up to ``end`` only
        n = seq.get(device.device_id, 0) + 1
        seq[device.device_id] = n
        plan.events.append(
            factory(
                id=event_id(device.device_id, n), device=device.device_id, seq=n, ts=ts, **fields
            )
        )

    def hour() -> int:
        return rng.choices(range(24), weights=HOURLY_PROFILE)[0]

    # Plant the anomalies first, so ordinary life can be drawn around them.
    pool = list(units)
    rng.shuffle(pool)
    overcrowded = sorted(pool[:3])
    ghosts = [(u, village.residents[u][-1]) for u in pool[3:6] if len(village.residents[u]) > 1]
    ghost_credentials = {c for _, c in ghosts}
    care = [(u, c) for u, c in village.care_targets if u in unit_building][:1]
    inactive_since = max(start, end - timedelta(days=2))
    extra = {u: [f"cred:x{rng.randrange(16**12):012x}" for _ in range(4)] for u in overcrowded}
    vacant = sorted(u for u in unit_building if not village.residents.get(u))
    squatted = sorted(rng.sample(vacant, k=min(2, len(vacant))))
    for u in squatted:
        extra[u] = [f"cred:x{rng.randrange(16**12):012x}" for _ in range(rng.randint(2, 3))]
    planted = set(overcrowded) | {u for u, _ in ghosts}
    former = sorted(
        (u, c) for u, c in village.former if u in unit_building and u in village.residents
        and u not in planted
    )  # fmt: skip
    former = rng.sample(former, k=min(3, len(former)))
    care_credentials = {c for _, c in village.care_targets}

    # Routine life goes on to ``end``: when day 0 began before ``start``, the local day that
    # ``end`` falls in is lived too, up to ``end``, so that the last daytime before ``end`` has
    # its residents (planted cases stay on the last whole day, ``days - 1``).
    for day in range(days + (1 if midnight < start else 0)):
        for unit in [*units, *squatted]:
            building = unit_building[unit]
            reader = readers[building]
            people = [c for c in village.residents.get(unit, ()) if c not in ghost_credentials]
            people += extra.get(unit, [])
            for credential in people:
                quiet = any(c == credential for _, c in care)
                elderly = credential in care_credentials
                for _ in range(rng.randint(2, 3) if elderly else rng.randint(1, 3)):
                    ts = at(day, rng.randint(8, 17) if elderly else hour())
                    if quiet and ts >= inactive_since:
                        continue
                    emit(AccessUnlock, reader, ts, door="unit", unit=unit, method="card",
                         credential=credential, granted=True)  # fmt: skip
                    if rng.random() < 0.6:
                        gate = rng.choice(gates)
                        emit(GatePass, gate, ts + timedelta(minutes=rng.randint(1, 9)),
                             direction="out" if ts.hour < 14 else "in", method="face",
                             granted=True, credential=credential)  # fmt: skip
        # Visitors, vehicles, cameras.
        for _ in range(len(units) // 20):
            unit = rng.choice(units)
            visitor = f"visitor:{rng.randrange(16**10):010x}"
            ts = at(day, hour())
            if apps:
                emit(AppVisitor, apps[0], ts, unit=unit, credential=visitor)
            emit(GatePass, rng.choice(gates), ts + timedelta(minutes=2), direction="in",
                 method="qr", granted=True, credential=visitor)  # fmt: skip
        # Residents' reports through the app: about one per 300 units a day, at buildings.
        if apps:
            for _ in range(max(1, len(units) // 300)):
                place = readers[rng.choice(sorted(readers))]
                n = seq.get(apps[0].device_id, 0) + 1
                emit(AppIncident, apps[0], at(day, rng.randint(7, 22)),
                     **incident_report(rng, place, n))  # fmt: skip
        for _ in range(len(gates) * 30):
            plate = f"plate:{rng.randrange(16**8):08x}"
            emit(GatePass, rng.choice(gates), at(day, hour()), direction=rng.choice(["in", "out"]),
                 method="plate", granted=True, credential=plate)  # fmt: skip
        for camera in cameras:
            for _ in range(40):
                cls = rng.choices(["person", "ebike", "vehicle"], weights=[70, 20, 10])[0]
                emit(CameraDetection, camera, at(day, hour()), cls=cls, count=rng.randint(1, 4),
                     confidence=round(rng.uniform(0.6, 0.98), 2), zone="alley")  # fmt: skip

    # Former tenants whose cards still open the door, on the last day.
    for unit, credential in former:
        emit(AccessUnlock, readers[unit_building[unit]], at(days - 1, hour()), door="unit",
             unit=unit, method="card", credential=credential, granted=True)  # fmt: skip

    # E-bikes carried into buildings (stairwell or lift cameras) or charging in a corridor,
    # smoke and fire, crowds, tailgating, and doors left open.
    ebike_cases, door_cases, smoke_cases, crowd_cases, gate_cases = [], [], [], [], []
    if cameras:
        for n, building in enumerate(rng.sample(sorted(readers), k=min(4, len(readers)))):
            ts = at(days - 1, rng.choice([19, 20, 21, 22]))
            camera_zone = f"{['stairwell', 'lift', 'stairwell', 'corridor'][n]}:{building}"
            emit(CameraDetection, rng.choice(cameras), ts, cls="ebike", count=1, confidence=0.93,
                 zone=camera_zone)  # fmt: skip
            ebike_cases.append({"building_id": building, "zone": camera_zone, "ts": ts.isoformat()})
        for building in rng.sample(sorted(readers), k=min(2, len(readers))):
            ts = at(days - 1, rng.randint(0, 23))
            cls = rng.choice(["smoke", "fire"])
            camera = rng.choice(cameras)
            emit(CameraDetection, camera, ts, cls=cls, count=1, confidence=0.88,
                 zone=f"stairwell:{building}")  # fmt: skip
            smoke_cases.append({"building_id": building, "device_id": camera.device_id,
                                "cls": cls, "ts": ts.isoformat()})  # fmt: skip
        for camera in rng.sample(cameras, k=min(2, len(cameras))):
            ts = at(days - 1, rng.choice([10, 15, 19]))
            emit(CameraDetection, camera, ts, cls="crowd", count=rng.randint(30, 60),
                 confidence=0.8, zone="square")  # fmt: skip
            crowd_cases.append({"device_id": camera.device_id, "ts": ts.isoformat()})
    for gate in rng.sample(gates, k=min(2, len(gates))):
        ts = at(days - 1, rng.randint(0, 23))
        emit(GateAlarm, gate, ts, alarm="tailgating")
        gate_cases.append({"device_id": gate.device_id, "ts": ts.isoformat()})
    for building in rng.sample(sorted(readers), k=min(4, len(readers))):
        alarm = rng.choice(["held_open", "forced_open"])
        ts = at(days - 1, rng.randint(0, 23))
        emit(AccessAlarm, readers[building], ts, alarm=alarm, door="building")
        door_cases.append({"building_id": building, "alarm": alarm, "ts": ts.isoformat()})

    # A few devices drop off for part of the last day.
    for device in rng.sample(list(village.devices), k=min(3, len(village.devices))):
        off = at(days - 1, rng.randint(8, 16))
        plan.availability.append((off, device.device_id, False))
        plan.availability.append((off + timedelta(hours=rng.randint(1, 3)), device.device_id, True))

    # Number each device's events in time order, as a real device would.
    plan.events.sort(key=lambda e: e.ts)
    numbered: list[EventModel] = []
    counter: dict[str, int] = {}
    for event in plan.events:
        if event.ts >= end:
            continue
        n = counter.get(event.device, 0) + 1
        counter[event.device] = n
        numbered.append(event.model_copy(update={"seq": n, "id": event_id(event.device, n)}))
    plan.events = numbered
    plan.availability.sort()
    plan.truth = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "overcrowded_units": [
            {"unit_id": u, "registered": len(village.residents[u]), "extra_people": len(extra[u])}
            for u in overcrowded
        ],
        "never_seen_tenants": [{"unit_id": u, "credential": c} for u, c in ghosts],
        "inactive_care_targets": [
            {"unit_id": u, "credential": c, "inactive_since": inactive_since.isoformat()}
            for u, c in care
        ],
        "ebike_into_building": ebike_cases,
        "doors_left_open": door_cases,
        "unregistered_units": [{"unit_id": u, "people": len(extra[u])} for u in squatted],
        "used_after_tenancy": [{"unit_id": u, "credential": c} for u, c in former],
        "smoke_fire": smoke_cases,
        "crowding": crowd_cases,
        "gate_tailgating": gate_cases,
        "devices_offline": [
            {"device_id": d, "at": t.isoformat()}
            for t, d, online in plan.availability
            if not online
        ],
    }
    return plan


def replay(
    settings: Any,
    plan: DayPlan,
    *,
    speed: float,
    max_rate: float,
    progress: Any = None,
) -> int:
    """Publishes the plan on an accelerated clock (``speed`` simulated seconds per real one),
    never faster than ``max_rate`` events per second. Returns how many were published."""
    import time

    from devices.mqtt import connect, new_client
    from devices.payloads import Status, encode
    from devices.topics import event_topic, status_topic

    if not plan.events:
        return 0
    client = new_client(settings.mqtt, settings.simulator_client_id)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connect(client, settings.mqtt)
    client.loop_start()
    sim_start = datetime.fromisoformat(plan.truth["start"])
    real_start = time.monotonic()
    availability = list(plan.availability)
    pending = []
    try:
        for n, event in enumerate(plan.events):
            due = real_start + max((event.ts - sim_start).total_seconds() / speed, n / max_rate)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            while availability and availability[0][0] <= event.ts:
                _, device, online = availability.pop(0)
                state = Status(state="online" if online else "offline")
                client.publish(status_topic(device), encode(state), qos=1, retain=True)
            pending.append(client.publish(event_topic(event.device), encode(event), qos=1))
            if len(pending) >= 5000:
                for info in pending:
                    info.wait_for_publish(60)
                pending.clear()
            if progress and n % 1000 == 0:
                progress(n, len(plan.events))
        for info in pending:
            info.wait_for_publish(60)
    finally:
        client.loop_stop()
        client.disconnect()
    return len(plan.events)
