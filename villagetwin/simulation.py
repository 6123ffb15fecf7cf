"""Simulated devices of the loaded village publishing over MQTT (``villagetwin simulate``):
a uniform stream at a rate, or realistic days replayed with their ground truth. The command
parses and calls; this module reads the registry and runs the simulators of ``devices``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from devices.day import plan_days, replay
from devices.mqtt import MqttError
from devices.settings import MqttSettings, SimulatorSettings
from devices.simulator import SimulationReport, run
from villagetwin.village_devices import sim_village

Progress = Callable[[int, int], None]


class SimulationError(RuntimeError):
    """The simulation could not start or stopped: no devices, an unreadable registry, a
    broker that refused; the message says which."""


def stream(
    dsn: str,
    mqtt: MqttSettings,
    rate: float,
    duration_s: float,
    seed: int,
    progress: Progress | None = None,
) -> SimulationReport:
    """Publishes events of the registered devices at ``rate`` per second for ``duration_s``
    seconds (QoS 1), each device continuing after its last stored sequence number, its door
    readers seeing the registered residents. Raises SimulationError."""
    try:
        with psycopg.connect(dsn) as conn:
            village = sim_village(conn)
            last_seq: dict[str, int] = dict(
                conn.execute(
                    "SELECT device_id, last_seq FROM devices WHERE last_seq IS NOT NULL"
                ).fetchall()
            )
    except psycopg.Error as exc:
        raise SimulationError(f"cannot read the device registry: {exc}") from None
    devices = list(village.devices)
    if not devices:
        raise SimulationError("no devices registered: run `villagetwin village generate` first")
    try:
        return run(
            SimulatorSettings(mqtt=mqtt),
            devices,
            rate=rate,
            duration_s=duration_s,
            seed=seed,
            progress=progress,
            residents=village.residents,
            start_seq=last_seq,
        )
    except MqttError as exc:
        raise SimulationError(str(exc)) from None


def days(
    dsn: str,
    mqtt: MqttSettings,
    seed: int,
    count: int,
    speed: float,
    max_rate: float,
    truth: Path,
    log: Callable[[str], None],
    progress: Progress | None = None,
) -> int:
    """Plans ``count`` realistic days ending now (village-local hours, the simulator's
    ``time_zone``), writes their ground truth (JSON) to ``truth``, and replays them ``speed``
    times faster than real time, at most ``max_rate`` events per second. Returns the number
    of events published. Raises SimulationError."""
    try:
        with psycopg.connect(dsn) as conn:
            village = sim_village(conn)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=count)
        zone = ZoneInfo(SimulatorSettings().time_zone)
        plan = plan_days(village, seed, start, count, zone=zone)
    except (psycopg.Error, ValueError) as exc:
        raise SimulationError(f"cannot plan the simulation: {exc}") from None
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_text(json.dumps(plan.truth, ensure_ascii=False, indent=2))
    real = max(count * 86400 / speed, len(plan.events) / max_rate)
    log(
        f"replaying {len(plan.events)} events of {count} day(s) in about {real:.0f}s;"
        f" ground truth in {truth}"
    )
    try:
        return replay(
            SimulatorSettings(mqtt=mqtt), plan, speed=speed, max_rate=max_rate, progress=progress
        )
    except MqttError as exc:
        raise SimulationError(str(exc)) from None
