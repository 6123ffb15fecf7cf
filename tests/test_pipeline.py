"""Simulated devices → a real Mosquitto → the ingester → rows in TimescaleDB."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import psycopg
from support import Fleet, count, register_gates, wait_until

from devices.mqtt import connect, new_client
from devices.payloads import AccessUnlock, encode
from devices.settings import SimulatorSettings
from devices.simulator import run
from devices.topics import event_topic
from mapping.db import load_village
from mapping.generate import generate
from villagetwin.village_devices import sim_devices


def _village_db(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        load_village(conn, generate(seed=3, size="small"))


def test_simulated_events_are_all_stored(db, broker, start_ingester) -> None:  # type: ignore[no-untyped-def]
    _village_db(db)
    running = start_ingester(db, broker.settings)
    with psycopg.connect(db) as conn:
        devices = sim_devices(conn)
    report = run(
        SimulatorSettings(mqtt=broker.settings, simulator_client_id="sim-test"),
        devices,
        rate=400,
        duration_s=3,
        seed=5,
    )
    assert report.published == 1200
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == report.published, 30)
    with psycopg.connect(db) as conn:
        by_kind = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
        online = conn.execute("SELECT count(*) FROM devices WHERE online").fetchone()
    assert by_kind == report.by_type
    assert online == (len(devices),)  # every simulated device announced itself online
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
    running.stop()
    assert running.ingester.totals["stored"] == report.published
    assert running.ingester.totals["duplicates"] == 0


def _unlock(device: str, seq: int) -> bytes:
    return encode(
        AccessUnlock(
            id=uuid.uuid4(), device=device, seq=seq, ts=datetime.now(UTC), door="building",
            method="card", credential="cred:feedbeef", granted=True,
        )
    )  # fmt: skip


def test_a_malformed_message_is_dead_lettered_and_its_neighbours_stored(  # type: ignore[no-untyped-def]
    db, broker, start_ingester
) -> None:
    _village_db(db)
    start_ingester(db, broker.settings)
    device = "acc-lh00001"
    client = new_client(broker.settings, "test-publisher")
    connect(client, broker.settings)
    client.loop_start()
    infos = [
        client.publish(event_topic(device), _unlock(device, 1), qos=1),
        client.publish(event_topic(device), b'{"v": 1, "type": "access.unlock", oops', qos=1),
        client.publish(event_topic(device), _unlock(device, 2), qos=1),
        client.publish(event_topic("acc-nobody"), _unlock("acc-nobody", 1), qos=1),
        client.publish(event_topic(device), _unlock(device, 3), qos=1),
    ]
    for info in infos:
        info.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    assert wait_until(lambda: count(db, "SELECT count(*) FROM dead_letters") == 2, 15)
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 3, 15)
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT reason, device_id, topic, payload FROM dead_letters ORDER BY reason"
        ).fetchall()
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == [1, 2, 3]
    assert [(r[0], r[1]) for r in rows] == [("not_json", device), ("unknown_device", "acc-nobody")]
    assert bytes(rows[0][3]).startswith(b'{"v": 1, "type": "access.unlock", oops')
    assert json.loads(bytes(rows[1][3]))["device"] == "acc-nobody"


def test_the_ingester_survives_a_flood_of_garbage(db, broker, start_ingester) -> None:  # type: ignore[no-untyped-def]
    _village_db(db)
    running = start_ingester(db, broker.settings)
    client = new_client(broker.settings, "test-garbage")
    connect(client, broker.settings)
    client.loop_start()
    garbage = [b"", b"\x00\x01", b"null", b"{}", b'{"v":1}', b"[" * 5000, "名字".encode("gbk")]
    infos = [client.publish(event_topic("acc-lh00002"), g, qos=1) for g in garbage * 20]
    infos.append(client.publish(event_topic("acc-lh00002"), _unlock("acc-lh00002", 1), qos=1))
    for info in infos:
        info.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 1, 15)
    assert wait_until(
        lambda: count(db, "SELECT count(*) FROM dead_letters") == len(garbage) * 20, 15
    )
    assert running.thread.is_alive()
    assert running.ingester.health()["ok"]


def test_mqtt_client_edge_reports_an_unreachable_broker() -> None:
    from devices.mqtt import MqttError
    from devices.settings import MqttSettings

    settings = MqttSettings(host="127.0.0.1", port=1)
    client = new_client(settings, "nobody")
    try:
        connect(client, settings)
    except MqttError as exc:
        assert "cannot reach the MQTT broker at 127.0.0.1:1" in str(exc)
    else:
        raise AssertionError("connecting to a closed port must fail")
    assert isinstance(client, mqtt.Client)


def test_a_device_registered_while_running_is_accepted_without_a_restart(  # type: ignore[no-untyped-def]
    db, broker, start_ingester
) -> None:
    """Its first event makes the ingester reload the registry (at most every
    unknown_device_reload_s, here always), long before the periodic reload."""
    _village_db(db)
    start_ingester(db, broker.settings, registry_refresh_s=3600, unknown_device_reload_s=0)
    device = "acc-newcomer"
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'access')", (device,))
    client = new_client(broker.settings, "test-newcomer")
    connect(client, broker.settings)
    client.loop_start()
    client.publish(event_topic(device), _unlock(device, 1), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 1, 15)
    assert count(db, "SELECT count(*) FROM dead_letters") == 0


def test_over_mqtt5_the_ingesters_session_outlives_it(db, broker, start_ingester) -> None:  # type: ignore[no-untyped-def]
    """MQTT 5 has no clean_session flag: without a session expiry interval the broker drops
    the session at disconnect, and what devices publish meanwhile is lost."""
    devices = [f"gate-five{i}" for i in range(5)]
    register_gates(db, devices)
    v5 = broker.settings.model_copy(update={"protocol": "5"})
    start_ingester(db, v5, client_id="vt-five").stop()  # subscribed, then gone
    fleet = Fleet(broker.settings, devices, client_id="fleet-five")
    assert wait_until(fleet.client.is_connected, 10)
    fleet.publish(20)
    fleet.wait_acknowledged()
    fleet.close()
    back = start_ingester(db, v5, client_id="vt-five")
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 100, 20)
    back.stop()  # everything committed and acknowledged: nothing comes again
    again = start_ingester(db, v5, client_id="vt-five")
    # A probe published now comes after anything the broker still held for the session.
    probe = new_client(broker.settings, "test-five-probe")
    connect(probe, broker.settings)
    probe.loop_start()
    probe.publish(event_topic("gate-unknown"), _unlock("gate-unknown", 1), qos=1).wait_for_publish(
        5
    )
    probe.loop_stop()
    probe.disconnect()
    assert wait_until(lambda: again.ingester.totals["received"] >= 1, 15)
    again.stop()
    assert again.ingester.totals["received"] == 1  # the probe alone
    assert count(db, "SELECT count(*) FROM events") == 100
