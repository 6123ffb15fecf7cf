"""What the ingester maintains besides events: derived tables, device state, gaps,
retention, and scale-out over a shared subscription."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from support import ROOT, SQUARE_FOOTPRINT, Fleet, count, register_gates, wait_until

from devices.payloads import AccessUnlock, DeviceKind, Heartbeat, Status, encode
from devices.topics import status_topic
from ingest import derived_tables, store
from ingest.maintenance import RetentionPlan, backend, run_retention
from ingest.validate import (
    ConfigUpdate,
    EventRow,
    KnownDevice,
    Received,
    StatusChange,
    judge,
)

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def db(any_db: str) -> str:
    """The store suite runs on TimescaleDB and on plain PostgreSQL (conftest.any_db)."""
    return any_db


def _access_db(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO grid_cells VALUES ('G1', 'grid', NULL, %s)", (SQUARE_FOOTPRINT,))
        conn.execute(
            "INSERT INTO buildings (building_id, address, grid_code, storeys, height_m, footprint,"
            " lon, lat) VALUES ('B1', 'addr', 'G1', 5, 15, %s, 113.45, 23.16)",
            (SQUARE_FOOTPRINT,),
        )
        conn.execute(
            "INSERT INTO devices (device_id, kind, building_id) VALUES ('acc-b1', 'access', 'B1')"
        )


def _unlock(seq: int, credential: str, ts: datetime, granted: bool = True) -> Received:
    event = AccessUnlock(
        id=uuid.uuid4(), device="acc-b1", seq=seq, ts=ts, door="unit", unit="B1-301",
        method="card", credential=credential, granted=granted,
    )  # fmt: skip
    return Received("vt/v1/acc-b1/event", encode(event), ts)


def test_derived_tables_count_each_event_once(db: str) -> None:
    _access_db(db)
    registry = {"acc-b1": KnownDevice("acc-b1", DeviceKind.ACCESS, "B1")}
    messages = [
        _unlock(1, "cred:aa", NOW - timedelta(minutes=3)),
        _unlock(2, "cred:bb", NOW - timedelta(minutes=2)),
        _unlock(3, "cred:aa", NOW - timedelta(minutes=1)),
        _unlock(4, "cred:cc", NOW, granted=False),  # a refused card is not a resident seen
    ]
    rows = [row for m in messages for row in judge(m, registry).events]
    with psycopg.connect(db) as conn:
        store.prepare(conn)
        first = store.store(conn, rows, [])
        again = store.store(conn, rows, [])  # a redelivery of the whole batch
        hourly = conn.execute(
            "SELECT sum(events) FROM building_hourly WHERE building_id = 'B1'"
        ).fetchone()
        creds = conn.execute(
            "SELECT credential_ref, events FROM unit_daily_credentials WHERE unit_id = 'B1-301'"
            " ORDER BY 1"
        ).fetchall()
        latest = conn.execute(
            "SELECT seq, kind FROM device_latest WHERE device_id = 'acc-b1'"
        ).fetchone()
        device = conn.execute("SELECT last_seq, last_seen IS NOT NULL FROM devices").fetchone()
    assert (first.inserted, first.duplicates) == (4, 0)
    assert (again.inserted, again.duplicates) == (0, 4)
    assert hourly == (4,)
    assert creds == [("cred:aa", 2), ("cred:bb", 1)]
    assert latest == (4, "access.unlock")
    assert device == (4, True)


# The derived tables' definition (a recount from the raw events, ingest/derived_tables.py):
# what both store paths and a rebuild must agree with.
_EVER = derived_tables.params(datetime(1970, 1, 1, tzinfo=UTC))


def _assert_derived_equal_recount(conn: psycopg.Connection) -> None:
    for table in derived_tables.ALL:
        kept = conn.execute(table.kept()).fetchall()
        assert kept == conn.execute(table.recount, _EVER).fetchall(), table.name


def _mixed_rows(n: int, seed: int) -> list[EventRow]:
    """Events of every derived rule, around an hour boundary and a Shanghai midnight (16:00
    UTC), with device times written in UTC and in +08:00."""
    import json
    import random

    rng = random.Random(seed)
    midnight = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    cst = timezone(timedelta(hours=8))
    rows = []
    for i in range(n):
        ts = midnight + timedelta(seconds=rng.randint(-5400, 5400))
        if rng.random() < 0.5:
            ts = ts.astimezone(cst)
        device, kind = rng.choice(
            [("acc-b1", "access.unlock"), ("gate-w", "gate.pass"), ("app", "app.checkin"),
             ("app", "app.incident"), ("acc-b1", "heartbeat")]
        )  # fmt: skip
        unit = rng.choice(["B1-301", "B1-302", None]) if kind != "gate.pass" else None
        credential = rng.choice(["cred:aa", "cred:bb", "cred:cc", None])
        granted = rng.choice([True, True, False, None])
        payload: dict[str, object] = {"v": 1, "type": kind, "seq": i}
        if granted is not None:
            payload["granted"] = granted
        if kind == "app.incident":
            payload |= {"category": "noise", "text": f"n{i}", "lon": 113.4, "lat": 23.1}
            if rng.random() < 0.5:
                payload |= {"building": "B1", "photo": f"photo:{i}"}
        rows.append(
            EventRow(
                ts,
                ts + timedelta(seconds=1),
                uuid.uuid4(),
                device,
                rng.randint(1, 50),
                kind,
                "B1" if device == "acc-b1" else None,
                unit,
                credential,
                json.dumps(payload),
                granted,
            )
        )
    return rows


def test_both_store_paths_keep_derived_tables_equal_to_a_recount(db: str) -> None:
    _access_db(db)
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, kind) VALUES ('gate-w', 'gate'), ('app', 'app')"
        )
        store.prepare(conn)
        rows = _mixed_rows(1200, seed=5)
        direct = [store.store(conn, rows[k : k + 200], []) for k in range(0, 600, 200)]
        # Half already stored, half new: the direct copy conflicts, the staging path stores.
        mixed = store.store(conn, rows[400:800], [])
        staged = store.store(conn, rows[800:], [], direct=False)
        _assert_derived_equal_recount(conn)
        assert count(db, "SELECT count(*) FROM incidents") > 0
    assert [r.conflicted for r in direct] == [False] * 3
    assert (mixed.inserted, mixed.duplicates, mixed.conflicted) == (200, 200, True)
    assert (staged.inserted, staged.conflicted) == (400, False)


def test_a_batch_holding_an_event_twice_stores_its_first_copy_once(db: str) -> None:
    _access_db(db)
    registry = {"acc-b1": KnownDevice("acc-b1", DeviceKind.ACCESS, "B1")}
    message = _unlock(1, "cred:aa", NOW)
    others = [_unlock(seq, f"cred:{seq:02x}", NOW) for seq in range(2, 40)]
    (first,) = judge(message, registry).events
    later = first._replace(received_at=NOW + timedelta(seconds=9))  # the same event, redelivered
    rows = [r for m in others[:20] for r in judge(m, registry).events]
    rows += [first] + [r for m in others[20:] for r in judge(m, registry).events] + [later]
    with psycopg.connect(db) as conn:
        store.prepare(conn)
        for direct in (True, False):
            result = store.store(conn, rows, [], direct=direct)
            received = conn.execute(
                "SELECT received_at FROM events WHERE event_id = %s", (first.event_id,)
            ).fetchall()
            assert (result.inserted, result.duplicates) == (39, 1)
            assert received == [(NOW,)]
            hourly = conn.execute("SELECT sum(events) FROM building_hourly").fetchone()
            assert hourly == (39,)
            conn.execute("TRUNCATE events, building_hourly, village_hourly,"
                         " unit_daily_credentials, device_latest")  # fmt: skip
            conn.commit()


def test_an_older_status_committed_later_does_not_win(db: str) -> None:
    """Writers and ingesters commit batches out of order: the newest change stays."""
    _access_db(db)
    went_offline = StatusChange("acc-b1", False, NOW)
    came_online = StatusChange("acc-b1", True, NOW - timedelta(seconds=5))
    with psycopg.connect(db) as conn:
        store.prepare(conn)
        store.store(conn, [], [], [went_offline])
        store.store(conn, [], [], [came_online])  # older, committed second
        online, changed = conn.execute(
            "SELECT online, status_changed_at FROM devices WHERE device_id = 'acc-b1'"
        ).fetchone() or (None, None)
        history = conn.execute(
            "SELECT online FROM device_status_history WHERE device_id = 'acc-b1' ORDER BY at"
        ).fetchall()
    assert (online, changed) == (False, NOW)
    assert [h[0] for h in history] == [True, False]


def test_a_config_claiming_another_place_waits_for_an_operator(db: str) -> None:
    """Issue 12: the device's place is the operator's. A differing claim is recorded once as a
    pending change (also when the retained config comes again, or a writer commits an older
    one later); the device stays where the registry has it."""
    _access_db(db)
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO buildings (building_id, address, grid_code, storeys, height_m, footprint,"
            " lon, lat) VALUES ('B2', 'addr', 'G1', 5, 15, %s, 113.45, 23.16)",
            (SQUARE_FOOTPRINT,),
        )
        store.prepare(conn)
        before = conn.execute(
            "SELECT building_id, floor, door FROM devices WHERE device_id = 'acc-b1'"
        ).fetchone()
        newer = ConfigUpdate("acc-b1", "B2", 3, "unit", NOW)
        older = ConfigUpdate("acc-b1", "B2", 3, "unit", NOW - timedelta(seconds=5))
        unknown = ConfigUpdate("acc-b1", "B404", None, None, NOW + timedelta(seconds=1))
        same = ConfigUpdate("acc-b1", None, None, None, NOW)  # says nothing of its place
        for config in (newer, older, unknown, same):
            store.store(conn, [], [], configs=[config])
        after = conn.execute(
            "SELECT building_id, floor, door, config_at FROM devices WHERE device_id = 'acc-b1'"
        ).fetchone()
        claims = conn.execute(
            "SELECT building_id, floor, door FROM device_place_changes"
            " WHERE status = 'pending' ORDER BY change_id"
        ).fetchall()
    assert after is not None and after[:3] == before and after[3] == NOW + timedelta(seconds=1)
    assert before is not None
    assert claims == [("B2", 3, "unit"), ("B404", before[1], before[2])]


def test_a_deadlock_with_another_writer_is_retried_at_once(db: str, broker, start_ingester) -> None:  # type: ignore[no-untyped-def]
    """Another transaction holds one of a batch's events and then wants another the batch
    holds: PostgreSQL rolls the ingester's batch back, which is a conflict, not an outage.

    It once counted 2 conflicts on an idle machine: the batch was retried the instant it was
    rolled back, took y again before the other backend (woken by the rollback) had inserted
    it, and deadlocked with it a second time. Retries now wait a jittered pause first (at
    least conflict_backoff_ms, here 500 ms, far more than the other backend needs to take y),
    so the retry finds y taken, then committed, and stores the batch as duplicates."""
    import json

    from devices.topics import event_topic

    register_gates(db, ["gate-dl"])
    running = start_ingester(db, broker.settings, conflict_backoff_ms=500)
    y, x = (json.loads(Fleet.payload("gate-dl", seq)) for seq in (1, 2))
    other = psycopg.connect(db)
    insert = (
        "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, payload)"
        " VALUES (%(ts)s, now(), %(id)s, %(device)s, %(seq)s, %(type)s, '{}')"
    )
    # Its deadlock check waits longer than the ingester's (1 s), so the batch is the one
    # rolled back; and the chunk exists, so that nobody waits on its creation instead.
    other.execute("SET deadlock_timeout = '10s'")
    other.execute(insert, {**x, "id": uuid.uuid4()})
    other.commit()
    other.execute(insert, x)  # held, not committed
    fleet = Fleet(broker.settings, ["gate-dl"], client_id="fleet-dl")
    assert wait_until(fleet.client.is_connected, 10)
    batch = {"v": 1, "type": "batch", "device": "gate-dl", "events": [y, x]}
    fleet.client.publish(event_topic("gate-dl"), json.dumps(batch), qos=1).wait_for_publish(5)
    waiting = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    assert wait_until(lambda: count(db, waiting) == 1, 10)  # the batch waits for x
    other.execute(insert, y)  # waits for the batch's y: a deadlock, and the batch gives way
    other.commit()
    other.close()
    fleet.close()
    assert wait_until(lambda: running.ingester.totals["duplicates"] == 2, 15)
    sample = running.ingester.metrics.registry.get_sample_value
    assert sample("vt_batch_conflicts_total") == 1
    assert sample("vt_database_errors_total") == 0
    assert running.ingester.totals["stored"] == 0
    assert count(db, "SELECT count(*) FROM events") == 3


def test_last_will_marks_a_vanished_device_offline(db: str, broker, start_ingester) -> None:  # type: ignore[no-untyped-def]
    register_gates(db, ["gate-lwt"])
    start_ingester(db, broker.settings)
    topic, port = status_topic("gate-lwt"), broker.settings.port
    offline, online = encode(Status(state="offline")), encode(Status(state="online"))
    device = textwrap.dedent(f"""
        import time, paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gate-lwt")
        c.will_set("{topic}", {offline!r}, qos=1, retain=True)
        c.connect("127.0.0.1", {port}, keepalive=5)
        c.loop_start()
        c.publish("{topic}", {online!r}, qos=1, retain=True).wait_for_publish()
        print("online", flush=True)
        time.sleep(60)
    """)  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", device], stdout=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None and process.stdout.readline().strip() == b"online"
    assert wait_until(lambda: count(db, "SELECT count(*) FROM devices WHERE online") == 1, 10)
    process.kill()  # no DISCONNECT: the broker publishes the will
    process.wait()
    assert wait_until(
        lambda: count(db, "SELECT count(*) FROM devices WHERE online = false") == 1, 15
    )
    with psycopg.connect(db) as conn:
        history = [
            r[0] for r in conn.execute("SELECT online FROM device_status_history ORDER BY at")
        ]
    assert history == [True, False]  # kept for the replay


def test_heartbeats_keep_last_seen_current(db: str, broker, start_ingester) -> None:  # type: ignore[no-untyped-def]
    register_gates(db, ["gate-hb"])
    start_ingester(db, broker.settings)
    fleet = Fleet(broker.settings, ["gate-hb"], client_id="hb")
    beat = Heartbeat(id=uuid.uuid4(), device="gate-hb", seq=1, ts=datetime.now(UTC), uptime_s=12)
    fleet.client.publish("vt/v1/gate-hb/event", encode(beat), qos=1).wait_for_publish(10)
    fleet.close()
    assert wait_until(
        lambda: (
            count(db, "SELECT count(*) FROM devices WHERE last_seen > now() - interval '1 minute'")
            == 1
        ),
        10,
    )
    assert count(db, "SELECT count(*) FROM device_latest WHERE kind = 'heartbeat'") == 1


def test_two_ingesters_split_one_stream_exactly_once(db: str, broker, start_ingester) -> None:  # type: ignore[no-untyped-def]
    devices = [f"gate-sh{i}" for i in range(10)]
    register_gates(db, devices)
    a = start_ingester(db, broker.settings, share_group="ingest", client_id="vt-share-a")
    b = start_ingester(db, broker.settings, share_group="ingest", client_id="vt-share-b")
    fleet = Fleet(broker.settings, devices, client_id="share")
    fleet.publish(200)
    fleet.wait_acknowledged()
    fleet.close()
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 2000, 30)
    assert count(db, "SELECT count(DISTINCT event_id) FROM events") == 2000
    received = (a.ingester.totals["received"], b.ingester.totals["received"])
    assert sum(received) == 2000 and min(received) > 0, received  # each took a share


def test_gaps_command_names_missing_ranges(db: str) -> None:
    register_gates(db, ["gate-gap"])
    with psycopg.connect(db) as conn:
        for seq in [1, 2, 3, 7, 8, 12]:
            conn.execute(
                "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, payload)"
                " VALUES (now(), now(), %s, 'gate-gap', %s, 'gate.pass', '{}')",
                (uuid.uuid4(), seq),
            )
    result = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "gaps", "--since", "24h"],
        capture_output=True, text=True, cwd=ROOT, env={"VT_DB_DSN": db, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "gate-gap\t4-6\t3" in result.stdout
    assert "gate-gap\t9-11\t3" in result.stdout


def test_retention_by_kind(db: str) -> None:
    register_gates(db, ["gate-old"])
    with psycopg.connect(db) as conn:
        for kind, age in [
            ("heartbeat", 40),
            ("heartbeat", 5),
            ("gate.pass", 40),
            ("gate.pass", 400),
        ]:
            conn.execute(
                "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, payload)"
                " VALUES (now() - %s::interval, now(), %s, 'gate-old', 1, %s, '{}')",
                (timedelta(days=age), uuid.uuid4(), kind),
            )
        plan = RetentionPlan(default_days=365, by_kind={"heartbeat": 30}, dead_letter_days=90)
        plain = backend(conn) == "postgres"
        removed = run_retention(conn, plan, community=False, plain=plain)
        left = conn.execute("SELECT kind, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall()
    assert removed["heartbeat"] == 1
    if plain:  # no partition was made 400 days back: the row waited in the default one
        assert (removed["chunks"], removed["default_partition"]) == (0, 1)
    else:
        assert removed["chunks"] >= 1  # the 400-day-old chunk was dropped whole
    assert left == [("gate.pass", 1), ("heartbeat", 1)]
    assert plan.shorter_kinds() == {"heartbeat": timedelta(days=30)}


def test_community_policies_reach_timescaledbs_license_check(timescale_db: str) -> None:
    """Only the Apache edition builds here, so the Community edition's policies cannot run.
    PostgreSQL resolves a function's name, argument names and types before TimescaleDB checks
    the license: a statement refused for the license alone is one the Community edition would
    run. (The compression options of ALTER TABLE are checked after the license.)"""
    from ingest.maintenance import edition, policy_statements

    plan = RetentionPlan(default_days=1095, by_kind={"heartbeat": 30}, dead_letter_days=180)
    with psycopg.connect(timescale_db) as conn:
        assert edition(conn) == "apache"
        for statement, params in policy_statements(plan, compress_after_days=7):
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(statement, params)
            conn.rollback()
            assert 'not supported under the current "apache" license' in str(refused.value)


def test_health_and_metrics_endpoints(db: str, broker, start_ingester) -> None:  # type: ignore[no-untyped-def]
    import json
    import urllib.request

    from support import free_port

    port = free_port()
    start_ingester(db, broker.settings, http_port=port)
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read())
    assert health["ok"] and health["subscribed"] and health["database_ok"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    for name in ("vt_messages_received_total", "vt_events_stored_total", "vt_dead_letters",
                 "vt_queue_depth", "vt_batch_commit_seconds", "vt_seconds_since_last_commit",
                 "vt_event_lag_seconds"):  # fmt: skip
        assert name in metrics, name
