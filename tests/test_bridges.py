"""Vendor messages as devices really send them, on the real ingest path: a private Mosquitto,
the ingester and a fresh TimescaleDB. Inputs are written here (issue #11 §2 and §3): a multipart
post with a picture, a Dahua upload mixing door status and a card entry, vendor heartbeats,
one Frigate track told in four messages, and retained messages replayed at subscription."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
import support
from support import (
    count,
    frigate_event,
    publish,
    register_devices,
    rows,
    wait_until,
)

from devices.adapters import reference
from devices.mqtt import connect, new_client
from devices.settings import MqttSettings
from devices.topics import config_topic, status_topic
from ingest.guard import OVERFLOW_LABEL

KEY = "bridge-test-key"
DEVICES = {"acc-hik7": "access", "acc-dahua7": "access", "cam-frigate7": "camera"}
SENTINEL = "gate-sentinel"
CST = timezone(timedelta(hours=8))
JPEG = b"\xff\xd8\xff\xe0JFIF-PIXELS-OF-A-FACE\xff\xd9"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def register(db: str) -> None:
    register_devices(db, DEVICES, SENTINEL)


def stored_after(db: str, client: mqtt.Client, seq: int) -> None:
    support.stored_after(db, client, seq, SENTINEL)


def test_a_multipart_post_is_stored_with_no_picture_bytes(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    start_ingester(db, broker.settings, credential_key=KEY, writers=1)
    event = {"majorEventType": 5, "subEventType": 75, "serialNo": 901, "employeeNoString": "E42",
             "name": "赵六", "picturesNumber": 1}  # fmt: skip
    when = now().isoformat()
    body = json.dumps({"eventType": "AccessControllerEvent", "dateTime": when,
                       "AccessControllerEvent": event}, ensure_ascii=False).encode()  # fmt: skip
    post = (
        b"--7d9a1f\r\nContent-Disposition: form-data; name=\"event_log\"\r\n"
        b"Content-Type: application/json; charset=utf-8\r\n\r\n" + body
        + b"\r\n--7d9a1f\r\nContent-Disposition: form-data; name=\"Picture\";"
        b" filename=\"Picture.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n" + JPEG
        + b"\r\n--7d9a1f--\r\n"
    )  # fmt: skip
    publish(publisher, "vt/bridge/hikvision/acc-hik7", post)
    # The same post with a time two years old: refused, and its dead letter keeps no bytes of
    # the picture and no name.
    old = post.replace(when.encode(), b"2024-01-01T08:00:00+08:00")
    publish(publisher, "vt/bridge/hikvision/acc-hik7", old)
    stored_after(db, publisher, 1)
    got = rows(db, "SELECT kind, credential_ref, payload FROM events WHERE device_id = 'acc-hik7'")
    assert len(got) == 1
    kind, credential, payload = got[0]
    assert (kind, payload["method"], payload["granted"], payload["pictures"]) == (
        "access.unlock", "face", True, 1)  # fmt: skip
    assert credential == reference("face", KEY.encode(), "E42")
    letters = rows(db, "SELECT reason, payload FROM dead_letters")
    assert [reason for reason, _ in letters] == ["timestamp_too_old"]
    for _, kept in letters:
        assert b"PIXELS" not in bytes(kept) and "赵六".encode() not in bytes(kept)
    assert count(db, "SELECT count(*) FROM events WHERE payload::text LIKE %s", "%PIXELS%") == 0


def test_a_mixed_dahua_upload_stores_each_event_as_what_it_is(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    running = start_ingester(db, broker.settings, credential_key=KEY, writers=1)
    t = int(now().timestamp())
    upload = {"Events": [
        {"Code": "DoorStatus", "Action": "Pulse", "Index": 0, "Data": {"Status": "Open", "UTC": t}},
        {"Code": "AccessControl", "Action": "Pulse", "Index": 0,
         "Data": {"CardNo": "5D00FF12", "Method": 1, "Status": 1, "ErrorCode": 0, "UTC": t,
                  "RecNo": 12, "ReaderID": "1", "Door": 0}},
        {"Code": "SomethingNew", "Action": "Pulse", "Index": 0, "Data": {"UTC": t}},
        {"Code": "AccessControl", "Action": "Pulse", "Index": 0,
         "Data": {"UserID": "U5", "Method": 99, "Status": 1, "UTC": t, "RecNo": 13}},
    ]}  # fmt: skip
    publish(publisher, "vt/bridge/dahua/acc-dahua7", json.dumps(upload).encode())
    stored_after(db, publisher, 1)
    got = rows(db, "SELECT kind, payload->>'state', credential_ref, seq, payload->>'code'"
                   " FROM events WHERE device_id = 'acc-dahua7' ORDER BY kind, seq")  # fmt: skip
    assert got == [
        ("access.door", "open", None, 0, None),
        ("access.unlock", None, reference("cred", KEY.encode(), "5D00FF12"), 12, None),
        ("access.vendor", None, None, 0, "SomethingNew/Pulse"),
        ("access.vendor", None, reference("cred", KEY.encode(), "U5"), 13,
         "AccessControl/Method=99"),
    ]  # fmt: skip
    samples = running.ingester.metrics.registry.get_sample_value
    for note in ("dahua unmapped AccessControl/Method=99", "dahua unmapped SomethingNew/Pulse"):
        assert samples("vt_bridge_notes_total", {"note": note}) == 1
    # An unmapped code is stored with the vendor's code and counted, never refused (§2).
    assert rows(db, "SELECT reason, detail FROM dead_letters") == []


def test_ever_new_vendor_codes_are_stored_but_grow_no_metric_series(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    """A device that invents a new code in every message (a bug, or an attack on the
    ingester's memory): every event is stored with its code, and the metric keeps at most
    metric_label_limit series, the rest counted under one overflow label."""
    register(db)
    running = start_ingester(
        db, broker.settings, credential_key=KEY, writers=1, metric_label_limit=3
    )
    t = int(now().timestamp())
    for i in range(8):
        upload = {"Code": f"Invented{i}", "Action": "Pulse", "Index": 0, "Data": {"UTC": t}}
        publish(publisher, "vt/bridge/dahua/acc-dahua7", json.dumps(upload).encode())
    stored_after(db, publisher, 1)
    codes = rows(db, "SELECT payload->>'code' FROM events WHERE kind = 'access.vendor'")
    assert sorted(c for (c,) in codes) == [f"Invented{i}/Pulse" for i in range(8)]
    series = {
        s.labels["note"]: s.value
        for metric in running.ingester.metrics.registry.collect()
        if metric.name == "vt_bridge_notes"
        for s in metric.samples
        if s.name == "vt_bridge_notes_total"
    }
    assert series == {
        "dahua unmapped Invented0/Pulse": 1,
        "dahua unmapped Invented1/Pulse": 1,
        "dahua unmapped Invented2/Pulse": 1,
        OVERFLOW_LABEL: 5,
    }


def test_vendor_heartbeats_move_last_seen_and_are_not_dead_letters(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    yesterday = now() - timedelta(days=1)
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE devices SET last_seen = %s", (yesterday,))
    start_ingester(db, broker.settings, credential_key=KEY, writers=1)
    local = now().astimezone(CST).isoformat()
    publish(publisher, "vt/bridge/hikvision/acc-hik7", json.dumps(
        {"ipAddress": "10.1.1.9", "dateTime": local, "eventType": "heartBeat",
         "eventState": "active", "activePostCount": 1}).encode())  # fmt: skip
    publish(publisher, "vt/bridge/hikvision/acc-hik7", json.dumps(
        {"dateTime": local, "eventType": "videoloss", "eventState": "inactive",
         "channelID": 1}).encode())  # fmt: skip
    publish(publisher, "vt/bridge/dahua/acc-dahua7", b"Code=HeartBeat;action=Pulse;index=0")
    stored_after(db, publisher, 1)
    seen = dict(rows(db, "SELECT device_id, last_seen FROM devices"))
    assert seen["acc-hik7"] > yesterday + timedelta(hours=23)
    assert seen["acc-dahua7"] > yesterday + timedelta(hours=23)
    assert seen["cam-frigate7"] == yesterday  # not heard from
    status, online = rows(
        db, "SELECT vendor_status, online FROM devices WHERE device_id = 'acc-hik7'"
    )[0]
    assert status["videoloss"]["active"] is False and online is True
    # Heard from again: online once, one status change in the history (not one per heartbeat).
    history = rows(db, "SELECT device_id, online FROM device_status_history ORDER BY device_id")
    assert history == [("acc-dahua7", True), ("acc-hik7", True)]
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
    assert count(db, "SELECT count(*) FROM events WHERE device_id <> %s", SENTINEL) == 0


def frigate(kind: str, object_id: str, start: float, frame: float, **after: Any) -> bytes:
    return frigate_event(kind, object_id, start, frame, "west_gate", "lane_1", **after)


def test_one_frigate_track_is_one_detection_kept_current(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    start_ingester(db, broker.settings, credential_key=KEY, writers=1)
    start = now().timestamp() - 60
    person, car, ghost = f"{start:.6f}-p1", f"{start + 1:.6f}-c1", f"{start + 2:.6f}-g1"
    topic = "vt/bridge/frigate/cam-frigate7"
    for kind, dt, score in [("new", 1, 0.62), ("update", 5, 0.81), ("update", 9, 0.9),
                            ("end", 14, 0.9)]:  # fmt: skip
        publish(publisher, topic, frigate(kind, person, start, start + dt, top_score=score))
        stored_after(db, publisher, int(dt))  # each message committed on its own
    # A car whose plate is read in one update and not repeated in the next, and a false positive.
    publish(publisher, topic, frigate("new", car, start + 1, start + 2, label="car"))
    publish(publisher, topic, frigate("update", car, start + 1, start + 3, label="car",
                                      recognized_license_plate="粤B·7C123"))  # fmt: skip
    publish(publisher, topic, frigate("update", car, start + 1, start + 4, label="car"))
    publish(publisher, topic, frigate("new", ghost, start + 2, start + 3, false_positive=True))
    # frigate/tracked_object_update: a face recognised on the person's track, after its end.
    face = {"type": "face", "id": person, "name": "Wang Wu", "score": 0.91, "camera": "west_gate",
            "timestamp": start + 20}  # fmt: skip
    publish(publisher, topic, json.dumps(face).encode())
    stored_after(db, publisher, 100)
    got = rows(db, "SELECT payload, credential_ref FROM events WHERE device_id = 'cam-frigate7'"
                   " ORDER BY ts")  # fmt: skip
    assert len(got) == 2
    (track, face_ref), (vehicle, plate) = got
    assert track["track"] == f"frigate/{person}"
    assert face_ref == track["credential"] == reference("face", KEY.encode(), "Wang Wu")
    assert track["confidence"] == 0.9
    assert datetime.fromisoformat(track["until"]).timestamp() == pytest.approx(start + 14)
    assert plate == reference("plate", KEY.encode(), "粤B7C123")  # what a plate gate gives
    assert vehicle["credential"] == plate
    assert datetime.fromisoformat(vehicle["until"]).timestamp() == pytest.approx(start + 4)
    # The derived tables count each track once.
    assert count(db, "SELECT coalesce(sum(events), 0) FROM village_hourly"
                     " WHERE kind = 'camera.detection'") == 2  # fmt: skip
    assert count(db, "SELECT count(*) FROM dead_letters") == 0


def test_retained_messages_replayed_at_subscription_are_not_news(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    device = "acc-hik7"
    yesterday = now() - timedelta(days=1)
    with psycopg.connect(db) as conn:
        # What the platform knows: heard yesterday, offline, and an operator's correction of
        # where it is (floor 3, unit door).
        conn.execute(
            "UPDATE devices SET last_seen = %s, online = false, status_changed_at = %s,"
            " floor = 3, door = 'unit' WHERE device_id = %s",
            (yesterday, yesterday, device),
        )
    config = {"v": 1, "device": device, "kind": "access", "floor": 9, "door": "building",
              "availability_topic": status_topic(device)}  # fmt: skip
    # Retained before the ingester exists: the broker replays them at each subscription.
    publish(publisher, status_topic(device), b'{"v": 1, "state": "online"}', retain=True)
    publish(publisher, config_topic(device), json.dumps(config).encode(), retain=True)
    publish(publisher, "vt/bridge/hikvision/acc-hik7", b'{"eventType": "heartBeat"}', retain=True)
    publish(publisher, status_topic("acc-dahua7"), b'{"v": 1, "state": "online"}', retain=True)
    for restart in range(2):  # the first subscription, then an ingester restart
        running = start_ingester(db, broker.settings, credential_key=KEY, writers=1)
        stored_after(db, publisher, restart + 1)
        assert running.ingester.totals["received"] >= 5
        running.stop()
        state = rows(db, "SELECT last_seen, online, status_changed_at, floor, door FROM devices"
                         " WHERE device_id = %s", device)[0]  # fmt: skip
        assert state == (yesterday, False, yesterday, 3, "unit"), state
        assert count(db, "SELECT count(*) FROM device_status_history") == 0
    # A device whose state was never known learns it from the replay, and nothing else.
    fresh = rows(db, "SELECT online, last_seen FROM devices WHERE device_id = 'acc-dahua7'")
    assert fresh == [(True, None)]
    # Clearing a retained message (an empty retained publish, which the broker forwards to
    # subscribers) is no dead letter.
    running = start_ingester(db, broker.settings, credential_key=KEY, writers=1)
    publish(publisher, status_topic(device), b"", retain=True)
    publish(publisher, config_topic(device), b"", retain=True)
    publish(publisher, "vt/bridge/hikvision/acc-hik7", b"", retain=True)
    publish(publisher, status_topic(device), b'{"v": 1, "state": "online"}')  # live: news
    stored_after(db, publisher, 10)
    running.stop()
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
    state = rows(db, "SELECT online, last_seen FROM devices WHERE device_id = %s", device)[0]
    assert state[0] is True and state[1] > yesterday
    assert count(db, "SELECT count(*) FROM device_status_history") == 1


def test_the_bulk_client_carries_the_retain_flag(broker: Any, publisher: mqtt.Client) -> None:
    from ingest.mqtt_client import BulkClient

    publish(publisher, "vt/v1/gate-x1/status", b'{"v": 1, "state": "online"}', retain=True)
    got: list[tuple[str, bool]] = []
    client = new_client(MqttSettings(host="127.0.0.1", port=broker.settings.port), "bulk-retain",
                        client_class=BulkClient)  # fmt: skip
    client.on_message = lambda _c, _u, m: got.append((m.topic, m.retain))
    connect(client, broker.settings)
    client.subscribe("vt/v1/+/status", qos=1)
    client.loop_start()
    try:
        assert wait_until(lambda: len(got) == 1, 10)
        publish(publisher, "vt/v1/gate-x1/status", b'{"v": 1, "state": "offline"}')
        assert wait_until(lambda: len(got) == 2, 10)
    finally:
        client.loop_stop()
        client.disconnect()
    assert got == [("vt/v1/gate-x1/status", True), ("vt/v1/gate-x1/status", False)]


def test_a_devices_zone_and_encoding_are_set_in_the_registry(db: str) -> None:
    from ingest.store import load_registry
    from villagetwin.provision import ProvisioningError, set_bridge

    register(db)
    with psycopg.connect(db) as conn:
        set_bridge(conn, "acc-dahua7", "Europe/Berlin", "gbk")
        set_bridge(conn, "acc-hik7", "UTC", None)
        set_bridge(conn, "acc-hik7", "", None)  # back to the village's zone
        for zone, encoding in [("Mars/Olympus", None), (None, "klingon-8")]:
            with pytest.raises(ProvisioningError):
                set_bridge(conn, "acc-dahua7", zone, encoding)
        with pytest.raises(ProvisioningError, match="no device"):
            set_bridge(conn, "acc-nobody", "UTC", None)
        conn.commit()
        registry = load_registry(conn)
    assert (registry["acc-dahua7"].time_zone, registry["acc-dahua7"].text_encoding) == (
        "Europe/Berlin", "gbk")  # fmt: skip
    assert (registry["acc-hik7"].time_zone, registry["acc-hik7"].text_encoding) == (None, None)
