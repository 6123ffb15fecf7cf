"""A realistic simulated day with planted anomalies, and the platform seeing them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from support import ROOT, count, wait_until

from devices.day import SimVillage, plan_days
from devices.payloads import DeviceKind
from devices.simulator import EventGenerator, SimDevice
from mapping.db import load_village
from mapping.generate import generate
from mapping.model import Village

START = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def village() -> Village:
    return generate(seed=4, size="small")


def sim_village(village: Village) -> SimVillage:
    units = village.units.groupby("building_id").unit_id.apply(tuple).to_dict()
    devices = [
        SimDevice(d.device_id, DeviceKind(d.kind),
                  units.get(d.building_id, ()) if isinstance(d.building_id, str) else (),
                  building_code=d.building_id if isinstance(d.building_id, str) else None)
        for d in village.devices.itertuples()
    ]  # fmt: skip
    people = village.people.set_index("person_id")
    residents: dict[str, list[str]] = defaultdict(list)
    care = []
    for t in village.tenancies.itertuples():
        if t.end_date is None:
            credential = people.loc[t.person_id, "credential_ref"]
            residents[t.unit_id].append(credential)
            if people.loc[t.person_id, "care_target"]:
                care.append((t.unit_id, credential))
    return SimVillage(devices, dict(residents), care)


def test_the_day_is_deterministic_and_plants_what_it_says(village: Village) -> None:
    sim = sim_village(village)
    plan = plan_days(sim, seed=9, start=START, days=2, zone=UTC)
    again = plan_days(sim, seed=9, start=START, days=2, zone=UTC)
    assert [e.id for e in plan.events] == [e.id for e in again.events]
    truth = plan.truth
    seen: dict[str, set[str]] = defaultdict(set)
    everyone: set[str] = set()
    for e in plan.events:
        credential = getattr(e, "credential", None)
        if credential:
            everyone.add(credential)
        if e.type == "access.unlock" and e.unit:
            seen[e.unit].add(e.credential)
    for case in truth["overcrowded_units"]:
        assert len(seen[case["unit_id"]]) > case["registered"]
    assert truth["never_seen_tenants"]
    for case in truth["never_seen_tenants"]:
        assert case["credential"] not in everyone
    (care,) = truth["inactive_care_targets"]
    since = datetime.fromisoformat(care["inactive_since"])
    assert not any(getattr(e, "credential", None) == care["credential"] and e.ts >= since
                   for e in plan.events)  # fmt: skip
    doors = {(c["building_id"], c["alarm"]) for c in truth["doors_left_open"]}
    alarms = {(f"{e.device}", e.alarm) for e in plan.events if e.type == "access.alarm"}
    assert {(f"acc-{b.lower()}", a) for b, a in doors} == alarms
    zones = {e.zone for e in plan.events if e.type == "camera.detection" and e.cls == "ebike"}
    assert {c["zone"] for c in truth["ebike_into_building"]} <= zones
    assert len(truth["devices_offline"]) == 3


def test_peaks_and_per_device_order(village: Village) -> None:
    plan = plan_days(sim_village(village), seed=1, start=START, days=1, zone=UTC)
    hours = Counter(e.ts.hour for e in plan.events)
    assert hours[8] > 3 * hours[3] and hours[19] > 3 * hours[3]
    last: dict[str, tuple[int, datetime]] = {}
    for e in plan.events:
        if e.device in last:
            assert e.seq == last[e.device][0] + 1 and e.ts >= last[e.device][1]
        last[e.device] = (e.seq, e.ts)
    assert all(START <= e.ts < START + timedelta(days=1) for e in plan.events)


def test_a_replayed_day_shows_the_overcrowded_units(
    db: str, broker, start_ingester, tmp_path: Path, village: Village
) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(db) as conn:
        load_village(conn, village)
    running = start_ingester(db, broker.settings)
    truth_file = tmp_path / "truth.json"
    env = {"VT_DB_DSN": db, "VT_MQTT__PORT": str(broker.settings.port), "PATH": "/usr/bin:/bin",
           "VT_STATE_DIR": str(tmp_path)}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "simulate", "--day", "--days", "1",
         "--speed", "1000000", "--rate", "20000", "--seed", "3", "--truth", str(truth_file)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    published = int(result.stderr.strip().splitlines()[-1].split()[1])
    assert wait_until(lambda: running.ingester.totals["stored"] >= published, 120, 0.5)
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
    truth = json.loads(truth_file.read_text())
    with psycopg.connect(db) as conn:
        for case in truth["overcrowded_units"]:
            row = conn.execute(
                "SELECT count(DISTINCT credential_ref) FROM unit_daily_credentials"
                " WHERE unit_id = %s",
                (case["unit_id"],),
            ).fetchone()
            assert row is not None and row[0] == case["registered"] + case["extra_people"]


@pytest.mark.parametrize("end_hour", range(0, 24, 3))
def test_care_targets_are_seen_in_local_daytime_whatever_the_hour_the_plan_ends(
    village: Village, end_hour: int
) -> None:
    """The simulator's hours are the village's local hours, as the care rule's daytime window
    is: replayed days ending at any hour raise the planted inactive care target only (they
    raised others when the days began at the hour the replay was started)."""
    from rules.logic import CST, Tenant, care_inactive
    from rules.settings import RuleParams

    sim = sim_village(village)
    end = datetime(2026, 11, 29, 16, tzinfo=UTC) + timedelta(hours=end_hour)  # 00:00 CST + h
    start = end - timedelta(days=2)
    plan = plan_days(sim, seed=5, start=start, days=2, zone=CST)
    assert all(e.ts < end for e in plan.events)
    planted = {c["credential"] for c in plan.truth["inactive_care_targets"]}
    targets = [Tenant(u, "", c, c, c, start.date()) for u, c in sim.care_targets]
    for now in (start + timedelta(hours=36), end):
        last: dict[str, datetime] = {}
        for e in plan.events:
            credential = getattr(e, "credential", None)
            if credential is not None and e.ts <= now:
                last[credential] = max(last.get(credential, e.ts), e.ts)
        found = care_inactive(targets, last, {"": start}, now, RuleParams())
        assert {f.subject.rsplit("/", 1)[1] for f in found} <= planted, now


def test_simulated_devices_name_only_units_of_their_own_building(village: Village) -> None:
    """The ingester refuses an event naming a unit outside its device's building
    (unit_outside_device_scope): the simulators must not send one, also from the door of a
    building without rental units (the demo's log filled with such refusals)."""
    sim = sim_village(village)
    scope = {d.device_id: set(d.units) for d in sim.devices}
    assert any(d.kind is DeviceKind.ACCESS and not d.units for d in sim.devices)
    generator = EventGenerator(sim.devices, seed=3, residents=sim.residents)
    now = START + timedelta(hours=10)
    live = [generator.event(now) for _ in range(20_000)]
    planned = plan_days(sim, 4, START, 1, zone=ZoneInfo("Asia/Shanghai")).events
    for event in live + planned:
        unit = getattr(event, "unit", None)
        if unit is not None and scope[event.device]:
            assert unit in scope[event.device], (event.device, unit)
        if unit is not None and event.type == "access.unlock":
            assert unit in scope[event.device], (event.device, unit)
