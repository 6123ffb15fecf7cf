"""Alert rules: each rule on planted data (pure), then the worker against the real database and
broker: a replayed two days raise the planted alerts, a restart mid-day duplicates nothing,
and alerts are published over MQTT."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
import psycopg
import pytest
from support import count, wait_until

from devices.day import DayPlan, plan_days, replay
from devices.payloads import AlertMessage, CameraDetection, encode
from devices.settings import SimulatorSettings
from devices.topics import event_topic
from mapping.db import load_village
from mapping.generate import generate
from mapping.model import Village
from rules import logic
from rules.logic import CST, DeviceInfo, DeviceState, Fact, Poi, Tenant
from rules.settings import RuleParams, RulesSettings, WorkerOptions
from rules.truth import expected_subjects
from rules.worker import RulesWorker
from villagetwin.village_devices import sim_village

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=CST)
P = RuleParams()


def fact(kind: str, device: str = "cam-001", **payload: Any) -> Fact:
    return Fact(f"id-{kind}-{len(payload)}", NOW, device, kind, None, None, payload)


# --- each rule on planted values -------------------------------------------------------------


def test_smoke_is_critical_and_placed_at_the_building_its_zone_names() -> None:
    cam = DeviceInfo("cam-001", "camera", None, 113.0, 23.0)
    (f,) = logic.event_findings(
        fact("camera.detection", cls="smoke", zone="stairwell:LH00012", confidence=0.9, count=1),
        cam, [], P,
    )  # fmt: skip
    assert (f.rule, f.severity, f.subject, f.building_id) == (
        "smoke_fire", "critical", "building:LH00012", "LH00012",
    )  # fmt: skip
    assert "烟雾 smoke" in f.title
    low = fact("camera.detection", cls="fire", zone="z1", confidence=0.2, count=1)
    assert logic.event_findings(low, cam, [], P) == []
    (alley,) = logic.event_findings(
        fact("camera.detection", cls="fire", zone="z1", confidence=0.7, count=1), cam, [], P
    )
    assert alley.subject == "device:cam-001"


def test_ebike_entering_or_charging_indoors_but_not_in_an_alley() -> None:
    cam = DeviceInfo("cam-001", "camera")
    kinds = {}
    for zone in ("lift:LH1", "corridor:LH2", "alley", "z3"):
        found = logic.event_findings(
            fact("camera.detection", cls="ebike", zone=zone, confidence=0.9, count=1), cam, [], P
        )
        kinds[zone] = [(f.rule, f.detail["charging"]) for f in found]
    assert kinds == {
        "lift:LH1": [("ebike_indoor", False)], "corridor:LH2": [("ebike_indoor", True)],
        "alley": [], "z3": [],
    }  # fmt: skip


def test_doors_tailgating_and_crowding_at_the_nearest_point_of_interest() -> None:
    acc = DeviceInfo("acc-lh1", "access", "LH1")
    rules = [
        f.rule
        for kind, dev, payload in (
            ("access.alarm", "acc-lh1", {"alarm": "forced_open", "door": "building"}),
            ("access.alarm", "acc-lh1", {"alarm": "held_open", "door": "unit", "unit": "LH1-101"}),
            ("gate.alarm", "gate-1", {"alarm": "tailgating"}),
            ("gate.alarm", "gate-1", {"alarm": "forced"}),
        )
        for f in logic.event_findings(fact(kind, dev, **payload), acc, [], P)
    ]
    assert rules == ["door_forced", "door_held_open", "gate_tailgating", "door_forced"]
    cam = DeviceInfo("cam-002", "camera", None, 113.0, 23.0)
    square = Poi("poi-1", "文化广场", 113.0003, 23.0002)  # about 40 m away
    far = Poi("poi-2", "far", 113.01, 23.01)
    (crowd,) = logic.event_findings(
        fact("camera.detection", cls="crowd", count=35, zone="z1", confidence=0.8),
        cam, [far, square], P,
    )  # fmt: skip
    assert (crowd.subject, crowd.poi_id) == ("poi:poi-1", "poi-1")
    small = fact("camera.detection", cls="crowd", count=5, zone="z1", confidence=0.8)
    assert logic.event_findings(small, cam, [square], P) == []


def test_a_door_left_unlocked_is_held_open_once_and_its_state_survives_json() -> None:
    tracker = logic.DoorTracker()
    opened = Fact("e1", NOW, "acc-lh1", "access.door", "LH1", None,
                  {"door": "building", "state": "unlocked"})  # fmt: skip
    tracker.observe(opened, None)
    assert tracker.due(NOW + timedelta(seconds=60), P) == []
    restored = logic.DoorTracker(json.loads(json.dumps(tracker.unlocked)))
    tracker.observe(opened, None)  # a reread of the same event changes nothing
    (f,) = restored.due(NOW + timedelta(seconds=P.door_held_open_s + 1), P)
    assert (f.rule, f.evidence, f.building_id) == ("door_held_open", ("e1",), "LH1")
    assert restored.due(NOW + timedelta(hours=1), P) == []  # reported once per opening
    shut = logic.DoorTracker()
    shut.observe(opened, None)
    shut.observe(Fact("e2", NOW, "acc-lh1", "access.door", "LH1", None,
                      {"door": "building", "state": "locked"}), None)  # fmt: skip
    assert shut.due(NOW + timedelta(hours=1), P) == []


def tenant(unit: str, person: str, cred: str, **kw: Any) -> Tenant:
    return Tenant(unit, unit.split("-")[0], person, "张*", cred, date(2026, 1, 1), **kw)


def test_occupancy_unregistered_never_seen_and_after_tenancy() -> None:
    seen = {
        "LH1-101": {f"c{i}": NOW for i in range(5)},  # 5 seen, 2 registered
        "LH1-102": {"a": NOW, "b": NOW},  # 2 seen, 2 registered
        "LH1-103": {"x": NOW},  # nobody registered
        "LH2-101": {"old": NOW},
    }
    registered = {"LH1-101": {"c0", "c1"}, "LH1-102": {"a", "b"}, "LH2-101": {"new"}}
    units = {u: u.split("-")[0] for u in seen}
    found = {(f.rule, f.subject) for f in logic.occupancy(registered, seen, units, NOW, P)}
    assert found == {("occupancy", "unit:LH1-101"), ("unregistered_occupancy", "unit:LH1-103")}

    tenants = [tenant("LH1-102", "P1", "a"), tenant("LH1-102", "P2", "ghost"),
               tenant("LH3-101", "P3", "ghost2")]  # fmt: skip
    # LH3's reader reported on one day only: its tenants are not judged.
    coverage = {"LH1": 7, "LH3": 1}
    (ghost,) = logic.never_seen(tenants, seen, coverage, date(2026, 11, 20), NOW, P)
    assert ghost.subject == "tenant:LH1-102/P2" and "张*" in ghost.title
    assert "ghost" not in ghost.title  # the masked name, not the credential

    ended = [tenant("LH2-101", "P9", "old", end_date=date(2026, 11, 1)),
             tenant("LH2-101", "P8", "gone", end_date=date(2026, 11, 1))]  # fmt: skip
    (after,) = logic.after_tenancy(ended, seen, current={("LH2-101", "new")})
    assert after.subject == "tenant:LH2-101/P9"
    assert logic.after_tenancy(ended, seen, current={("LH2-101", "old")}) == []


def test_care_target_36_hours_daytime_window_and_quiet_hours() -> None:
    t = tenant("LH1-101", "P1", "elder")
    targets = [t]
    observed = {"LH1": NOW - timedelta(days=5)}
    # Seen this morning: nothing.
    assert logic.care_inactive(targets, {"elder": NOW - timedelta(hours=3)}, observed, NOW, P) == []
    # Not seen for 40 h: raised at any hour, even in quiet hours.
    night = datetime(2026, 11, 28, 2, 0, tzinfo=CST)
    (f,) = logic.care_inactive(targets, {"elder": night - timedelta(hours=40)}, observed, night, P)
    assert f.detail["daytime"] is False and f.severity == "high"
    # Last seen yesterday 07:00, now 21:00: the whole daytime window passed without activity.
    evening = datetime(2026, 11, 28, 21, 0, tzinfo=CST)
    last = datetime(2026, 11, 28, 7, 0, tzinfo=CST)
    (day,) = logic.care_inactive(targets, {"elder": last}, observed, evening, P)
    assert day.detail["daytime"] is True
    # The same at 23:00 is in quiet hours: held until morning.
    late = datetime(2026, 11, 28, 23, 0, tzinfo=CST)
    assert logic.care_inactive(targets, {"elder": last}, observed, late, P) == []
    # A reader that never reported judges nobody.
    assert logic.care_inactive(targets, {}, {}, NOW, P) == []


def test_devices_offline_per_kind_and_silent() -> None:
    devices = [
        DeviceState("gate-1", "gate", None, False, NOW - timedelta(seconds=90), NOW),
        DeviceState("cam-1", "camera", None, False, NOW - timedelta(seconds=90), NOW),
        DeviceState("acc-1", "access", "LH1", True, None, NOW - timedelta(hours=1)),
        DeviceState("acc-2", "access", "LH2", True, None, NOW - timedelta(minutes=5)),
    ]
    found = {f.subject for f in logic.device_offline(devices, NOW, P)}
    # gate grace 60 s < 90 s; camera grace 120 s > 90 s; acc-1 silent 1 h > 30 min.
    assert found == {"device:gate-1", "device:acc-1"}


def test_every_rule_has_severity_and_both_languages() -> None:
    for rule in logic.CATALOGUE.values():
        assert rule.severity in logic.SEVERITIES
        assert any("\u4e00" <= ch <= "\u9fff" for ch in rule.explanation)
        assert any(ch.isascii() and ch.isalpha() for ch in rule.explanation)


# --- the worker against the real services -----------------------------------------------------


@pytest.fixture(scope="module")
def village() -> Village:
    return generate(seed=4, size="small")


class Alerts:
    """A subscriber on vt/v1/alerts/#, as another system would be."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, AlertMessage]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="alert-listener")
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("vt/v1/alerts/#", qos=1)
        self.client.loop_start()

    def _on(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, AlertMessage.model_validate_json(msg.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def listener(broker: Any) -> Iterator[Alerts]:
    a = Alerts(broker.settings.port)
    yield a
    a.close()


def worker_for(db: str, broker: Any) -> RulesWorker:
    settings = RulesSettings(
        db_dsn=db, mqtt=broker.settings,
        rules=RuleParams(silent_s={}, offline_grace_s={"gate": 0, "camera": 0, "access": 0}),
        worker=WorkerOptions(start_lookback_s=86400 * 3),
    )  # fmt: skip
    w = RulesWorker(settings)
    w.connect_mqtt()
    return w


def cycle(w: RulesWorker, db: str, now: datetime | None = None) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        w.refresh_context(conn, every_s=0)
        while w.poll_events(conn, now):
            pass
        w.window_cycle(conn, now)
        w.publish(conn)


def replay_until(plan: DayPlan, end: datetime, broker: Any) -> DayPlan:
    part = DayPlan([e for e in plan.events if e.ts < end],
                   [a for a in plan.availability if a[0] < end], plan.truth)  # fmt: skip
    replay(SimulatorSettings(mqtt=broker.settings), part, speed=1e9, max_rate=20000)
    return part


def test_two_replayed_days_raise_the_planted_alerts_once_across_a_restart(
    db: str, broker: Any, start_ingester: Any, village: Village, listener: Alerts
) -> None:
    with psycopg.connect(db) as conn:
        load_village(conn, village)
        sim = sim_village(conn)
    running = start_ingester(db, broker.settings)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    plan = plan_days(sim, seed=5, start=start, days=2, zone=CST)
    truth = plan.truth

    # The first day and a half, then the worker; then it restarts mid-day and sees the rest.
    middle = start + timedelta(hours=36)
    first = replay_until(plan, middle, broker)
    assert wait_until(lambda: running.ingester.totals["stored"] >= len(first.events), 120, 0.2)
    first_worker = worker_for(db, broker)
    cycle(first_worker, db, middle)
    before = count(db, "SELECT count(*) FROM alerts")
    first_worker.client.disconnect()

    rest = DayPlan([e for e in plan.events if e.ts >= middle],
                   [a for a in plan.availability if a[0] >= middle], truth)  # fmt: skip
    replay(SimulatorSettings(mqtt=broker.settings), rest, speed=1e9, max_rate=20000)
    assert wait_until(lambda: running.ingester.totals["stored"] >= len(plan.events), 120, 0.2)
    restarted = worker_for(db, broker)
    cycle(restarted, db)
    cycle(restarted, db)  # a second pass finds nothing new
    again = worker_for(db, broker)  # and a third worker, from the saved cursor
    cycle(again, db)
    assert count(db, "SELECT count(*) FROM alerts") >= before

    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT rule, subject, building_id, unit_id, device_id, detail, status FROM alerts"
        ).fetchall()
        ids = [r[0] for r in conn.execute("SELECT alert_id FROM alerts")]
        person_of = dict(conn.execute("SELECT credential_ref, person_id FROM people").fetchall())
        dupes = conn.execute(
            "SELECT rule, subject, count(*) FROM alerts GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall()
    assert dupes == [], f"duplicate alerts: {dupes}"
    by_rule: dict[str, set[str]] = {}
    for rule, subject, *_ in rows:
        by_rule.setdefault(rule, set()).add(subject)

    planted = expected_subjects(truth, person_of)
    expected = {
        rule: planted[rule]
        for rule in (
            "occupancy",
            "unregistered_occupancy",
            "never_seen",
            "after_tenancy",
            "care_inactive",
            "ebike_indoor",
            "smoke_fire",
            "gate_tailgating",
            "device_offline",
        )
    }
    for rule, subjects in expected.items():
        assert subjects, f"nothing planted for {rule}"
        assert subjects == by_rule.get(rule, set()), rule
    doors = {(r[0], r[2]) for r in rows if r[0] in ("door_forced", "door_held_open")}
    rule_of = {"forced_open": "door_forced", "held_open": "door_held_open"}
    planted = {(rule_of[c["alarm"]], c["building_id"]) for c in truth["doors_left_open"]}
    assert doors == planted
    crowds = {r[4] for r in rows if r[0] == "crowding"}
    assert crowds == {c["device_id"] for c in truth["crowding"]}

    # Every alert went out over MQTT, on its severity and rule.
    assert wait_until(lambda: {m.alert_id for _, m in listener.messages} >= set(ids), 10)
    smoke = [(t, m) for t, m in listener.messages if m.rule == "smoke_fire"]
    assert smoke and all(t == "vt/v1/alerts/critical/smoke_fire" for t, _ in smoke)
    assert all(m.evidence for _, m in smoke)


def test_a_committed_event_wakes_the_worker_without_waiting_for_its_poll(
    db: str, village: Village
) -> None:
    """The database announces committed events (migration 0112) and the running worker reads
    them then: with a poll of an hour, the alert still comes."""
    with psycopg.connect(db) as conn:
        load_village(conn, village)
        (camera,) = conn.execute(
            "SELECT device_id FROM devices WHERE kind = 'camera' ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        (building,) = conn.execute(
            "SELECT building_id FROM buildings ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
    settings = RulesSettings(
        db_dsn=db, worker=WorkerOptions(event_poll_s=3600, window_interval_s=3600)
    )
    worker = RulesWorker(settings, mqtt=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        # The first pass is done: the worker now waits for a notification (or an hour).
        assert wait_until(lambda: "events_s" in worker.timing, 60)
        with psycopg.connect(db) as conn:
            conn.execute(
                "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind,"
                " building_id, payload) VALUES (now(), now(), gen_random_uuid(), %s, 1,"
                " 'camera.detection', %s, %s)",
                (camera, building, json.dumps({"cls": "smoke", "confidence": 0.9,
                                               "zone": f"stairwell:{building}", "count": 1})),
            )  # fmt: skip
        smoke = "SELECT count(*) FROM alerts WHERE rule = 'smoke_fire' AND subject = %s"
        assert wait_until(lambda: count(db, smoke, f"building:{building}") == 1, 60)
    finally:
        worker.stopping.set()
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("NOTIFY vt_events_stored")  # wake it to see that it stops
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_smoke_detection_raises_its_alert_before_it_is_stored_and_counts_once(
    db: str, broker: Any, village: Village, listener: Alerts
) -> None:
    """The fast path: the worker hears a camera's smoke detection on the broker (no ingester
    runs here), raises and publishes the alert; when the event is stored later, the database
    path finds it in the evidence, and so does a restarted worker: one alert, one occurrence."""
    with psycopg.connect(db) as conn:
        load_village(conn, village)
        (camera,) = conn.execute(
            "SELECT device_id FROM devices WHERE kind = 'camera' ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        (building,) = conn.execute(
            "SELECT building_id FROM buildings ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
    settings = RulesSettings(db_dsn=db, mqtt=broker.settings,
                             worker=WorkerOptions(window_interval_s=3600))  # fmt: skip
    event = CameraDetection(
        id=uuid.uuid4(),
        device=camera,
        seq=1,
        ts=datetime.now(UTC),
        cls="smoke",
        count=1,
        confidence=0.9,
        zone=f"stairwell:{building}",
    )
    smoke = "SELECT count(*) FROM alerts WHERE rule = 'smoke_fire' AND subject = %s"
    subject = f"building:{building}"

    def run_worker() -> tuple[RulesWorker, threading.Thread]:
        w = RulesWorker(settings)
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        assert wait_until(lambda: f"vt/v1/{camera}/event" in w.subscribed, 60)
        assert wait_until(lambda: "events_s" in w.timing, 60)  # its first pass is done
        return w, t

    def stop(w: RulesWorker, t: threading.Thread) -> None:
        w.stopping.set()
        t.join(timeout=30)
        assert not t.is_alive()

    worker, thread = run_worker()
    try:
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="camera")
        publisher.connect("127.0.0.1", broker.settings.port)
        publisher.loop_start()
        publisher.publish(event_topic(camera), encode(event), qos=1).wait_for_publish(10)
        publisher.loop_stop()
        publisher.disconnect()
        assert wait_until(lambda: count(db, smoke, subject) == 1, 60)
        assert wait_until(
            lambda: any(m.subject == subject and str(event.id) in m.evidence
                        for _, m in listener.messages), 30,
        )  # fmt: skip
        assert count(db, "SELECT count(*) FROM events") == 0  # not stored: the fast path
        # Now the ingester's commit, as it would store it; the database path reads it.
        with psycopg.connect(db) as conn:
            (stored_at,) = conn.execute(
                "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind,"
                " building_id, payload) VALUES (%s, now(), %s, %s, 1, 'camera.detection', %s,"
                " %s) RETURNING stored_at",
                (event.ts, event.id, camera, building, event.model_dump_json(exclude_none=True)),
            ).fetchone()  # type: ignore[misc]
        cursor = "SELECT count(*) FROM rule_state WHERE name = 'events'" \
                 " AND (value ->> 'after')::timestamptz >= %s"  # fmt: skip
        assert wait_until(lambda: count(db, cursor, stored_at) == 1, 60)
    finally:
        stop(worker, thread)
    stop(*run_worker())  # a restart rereads behind its cursor (overlap_s)
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT occurrences, evidence FROM alerts WHERE subject = %s", (subject,)
        ).fetchall()
    assert rows == [(1, [str(event.id)])]


def test_the_inspector_reads_the_rules_and_needs_reader_coverage_for_never_seen() -> None:
    """The seed flagged 77 of 77 registered tenants as never seen when the door reader had
    barely reported: never-seen now needs the reader's coverage, and names the masked tenant."""
    import pandas as pd

    from dashboard import inspection

    registered = pd.DataFrame({
        "unit_id": [f"LH1-{n}" for n in range(77)], "credential_ref": [f"c{n}" for n in range(77)],
        "person_id": [f"P{n}" for n in range(77)], "name": ["李*"] * 77,
        "start_date": [date(2025, 1, 1)] * 77,
    })  # fmt: skip
    observed = pd.DataFrame({"unit_id": ["LH1-0"], "credential_ref": ["c0"], "last_seen": [NOW]})
    ended = pd.DataFrame({"unit_id": [], "credential_ref": [], "end_date": []})
    barely = inspection.discrepancies(registered, observed, ended, reader_days=1)
    assert [d for d in barely if d.kind == inspection.NEVER_SEEN] == []
    covered = inspection.discrepancies(registered, observed, ended, reader_days=7)
    never = [d for d in covered if d.kind == inspection.NEVER_SEEN]
    assert len(never) == 76 and all("李*" in d.detail and "c1" not in d.detail for d in never)
    assert all("reader coverage 7/7" in d.detail for d in never)


def test_no_device_may_take_the_alerts_subtree(db: str) -> None:
    """A device named 'alerts' would write vt/v1/alerts/... under the broker's per-device ACL
    pattern: the id is refused, and only platform accounts may write alerts."""
    from devices.payloads import DeviceKind
    from devices.provisioning import device_role, ingester_role
    from devices.topics import alert_topic, is_device_id
    from villagetwin.provision import ProvisioningError, add_device

    assert not is_device_id("alerts")
    with psycopg.connect(db) as conn, pytest.raises(ProvisioningError, match="reserved"):
        add_device(conn, "alerts", DeviceKind.CAMERA)
    platform = ingester_role()["acls"]
    assert {"acltype": "publishClientSend", "topic": "vt/v1/alerts/#", "allow": True} in platform
    device_topics = [str(a["topic"]) for a in device_role("acc-lh00001")["acls"]]  # type: ignore[union-attr]
    assert not any(t.startswith("vt/v1/alerts") for t in device_topics)
    assert alert_topic("critical", "smoke_fire") == "vt/v1/alerts/critical/smoke_fire"
