"""Vendor variants on the real ingest path (a private Mosquitto, the ingester, a fresh
TimescaleDB), with inputs written here: a bridge that kept the whole HTTP request, a
pretty-printed Dahua event stream, ZKTeco's push protocol, a Frigate track later marked a false
positive, Frigate's availability, and a bridged device whose heartbeats stop (issue #11 §2-§3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
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

KEY = "variant-bridge-key"
DEVICES = {"acc-hik8": "access", "acc-dahua8": "access", "acc-zk8": "access",
           "cam-frigate8": "camera"}  # fmt: skip
SENTINEL = "gate-sentinel8"
JPEG = b"\xff\xd8\xff\xe0JFIF-PIXELS-OF-A-FACE\xff\xd9"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def register(db: str) -> None:
    register_devices(db, DEVICES, SENTINEL)


def stored_after(db: str, client: mqtt.Client, seq: int) -> None:
    support.stored_after(db, client, seq, SENTINEL)


def test_requests_kept_whole_pretty_streams_and_zkteco_are_stored(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    start_ingester(db, broker.settings, credential_key=KEY, writers=1)
    local = now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    stamp = now().isoformat()
    xml = (f"<EventNotificationAlert><dateTime>{stamp}</dateTime>"
           "<eventType>AccessControllerEvent</eventType><AccessControllerEvent>"
           "<majorEventType>5</majorEventType><subEventType>38</subEventType>"
           "<employeeNoString>E77</employeeNoString><name>钱七</name><serialNo>4101</serialNo>"
           "</AccessControllerEvent></EventNotificationAlert>")  # fmt: skip
    body = (b"--MIME_boundary\r\nContent-Disposition: form-data; name=\"AccessControllerEvent\";"
            b" filename=\"AccessControllerEvent.xml\"\r\nContent-Type: application/xml\r\n\r\n"
            + xml.encode() + b"\r\n--MIME_boundary\r\nContent-Disposition: form-data;"
            b" name=\"Picture\"; filename=\"Picture.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            + JPEG + b"\r\n--MIME_boundary--\r\n")  # fmt: skip
    request = (
        b"POST /ISAPI/Event/notification HTTP/1.1\r\nHost: 10.0.0.9\r\n"
        b"Content-Type: multipart/form-data; boundary=MIME_boundary\r\n\r\n" + body
    )
    publish(publisher, "vt/bridge/hikvision/acc-hik8", request)
    t = int(now().timestamp())
    stream = ("--myboundary\r\nContent-Type: text/plain\r\n\r\nHeartbeat\r\n"
              "--myboundary\r\nContent-Type: text/plain\r\n\r\n"
              "Code=AccessControl;action=Pulse;index=0;data={\n"
              f'   "CardNo" : "C0FFEE01",\n   "Method" : 6,\n   "RecNo" : 61,\n'
              f'   "Status" : 1,\n   "UTC" : {t},\n   "UserID" : "U61"\n}}\r\n')  # fmt: skip
    publish(publisher, "vt/bridge/dahua/acc-dahua8", stream.encode())
    attlog = f"POST /iclock/cdata?SN=ZK001&table=ATTLOG&Stamp=1\r\n\r\n5001\t{local}\t0\t2\t0\r\n"
    publish(publisher, "vt/bridge/zkteco/acc-zk8", attlog.encode("gbk"))
    stored_after(db, publisher, 1)
    got = dict(rows(db, "SELECT device_id, (kind, payload->>'method', credential_ref) FROM events"
                        " WHERE device_id <> %s", SENTINEL))  # fmt: skip
    k = KEY.encode()
    assert got == {
        "acc-hik8": ("access.unlock", "fingerprint", reference("cred", k, "E77")),
        "acc-dahua8": ("access.unlock", "fingerprint", reference("cred", k, "U61")),
        "acc-zk8": ("access.unlock", "card", reference("cred", k, "5001")),
    }
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
    assert count(db, "SELECT count(*) FROM events WHERE payload::text LIKE %s", "%PIXELS%") == 0


def frigate(kind: str, object_id: str, start: float, frame: float, **after: Any) -> bytes:
    return frigate_event(kind, object_id, start, frame, "east_gate", "lane_2", **after)


def test_a_frigate_track_later_marked_false_positive_is_removed_with_its_counts(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    start_ingester(db, broker.settings, credential_key=KEY, writers=1)
    start = now().timestamp() - 30
    kept, ghost = f"{start:.6f}-k1", f"{start + 1:.6f}-g1"
    topic = "vt/bridge/frigate/cam-frigate8"
    publish(publisher, topic, frigate("new", kept, start, start + 1))
    publish(publisher, topic, frigate("new", ghost, start + 1, start + 2))
    stored_after(db, publisher, 1)  # both stored, both counted
    detections = "SELECT count(*) FROM events WHERE kind = 'camera.detection'"
    counted = "SELECT coalesce(sum(events), 0) FROM village_hourly WHERE kind = 'camera.detection'"
    assert count(db, detections) == 2 and count(db, counted) == 2
    # Frigate changes its mind about the second: a false positive after all.
    publish(publisher, topic, frigate("update", ghost, start + 1, start + 4, false_positive=True))
    stored_after(db, publisher, 2)
    assert count(db, detections) == 1 and count(db, counted) == 1
    left = rows(db, "SELECT payload->>'track' FROM events WHERE kind = 'camera.detection'")
    assert left == [(f"frigate/{kept}",)]
    assert count(db, "SELECT count(*) FROM dead_letters") == 0


def test_a_bridged_device_whose_heartbeats_stop_goes_offline_and_comes_back(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    start_ingester(db, broker.settings, credential_key=KEY, writers=1, bridge_silence_s=2)
    beat = json.dumps({"eventType": "heartBeat", "dateTime": now().isoformat()}).encode()
    publish(publisher, "vt/bridge/hikvision/acc-hik8", beat)
    publish(publisher, "vt/bridge/frigate/cam-frigate8", b"online")
    stored_after(db, publisher, 1)
    state = "SELECT online FROM devices WHERE device_id = %s"
    assert rows(db, state, "acc-hik8") == [(True,)]
    # Silent for longer than bridge_silence_s: offline, with a history row.
    assert wait_until(lambda: rows(db, state, "acc-hik8") == [(False,)], 15)
    # Frigate's will (offline) is a status change at once; a device never heard stays unknown.
    publish(publisher, "vt/bridge/frigate/cam-frigate8", b"offline")
    stored_after(db, publisher, 2)
    assert rows(db, state, "cam-frigate8") == [(False,)]
    assert rows(db, state, "acc-dahua8") == [(None,)]
    publish(publisher, "vt/bridge/hikvision/acc-hik8", beat)
    stored_after(db, publisher, 3)
    assert rows(db, state, "acc-hik8") == [(True,)]
    history = rows(db, "SELECT online FROM device_status_history WHERE device_id = 'acc-hik8'"
                       " ORDER BY at")  # fmt: skip
    assert history == [(True,), (False,), (True,)]
    assert count(db, "SELECT count(*) FROM dead_letters") == 0


def test_frigates_retained_availability_replayed_is_not_a_sighting(
    db: str, broker: Any, start_ingester: Any, publisher: mqtt.Client
) -> None:
    register(db)
    yesterday = now() - timedelta(days=1)
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE devices SET last_seen = %s, online = false, status_changed_at = %s"
                     " WHERE device_id = 'cam-frigate8'", (yesterday, yesterday))  # fmt: skip
    # Frigate publishes frigate/available retained; the bridge keeps the flag.
    publish(publisher, "vt/bridge/frigate/cam-frigate8", b"online", retain=True)
    running = start_ingester(db, broker.settings, credential_key=KEY, writers=1)
    stored_after(db, publisher, 1)
    running.stop()
    state = rows(db, "SELECT last_seen, online FROM devices WHERE device_id = 'cam-frigate8'")
    assert state == [(yesterday, False)]
    assert count(db, "SELECT count(*) FROM device_status_history") == 0
    publish(publisher, "vt/bridge/frigate/cam-frigate8", b"", retain=True)  # cleared


def test_vendor_status_flags_keep_the_later_report_whatever_the_commit_order(db: str) -> None:
    from ingest.store import store
    from ingest.validate import Liveness

    register(db)
    t = now()
    with psycopg.connect(db) as conn:
        # Two writers: the later videoloss report (it ended) commits first, the earlier after.
        store(conn, [], [], sightings=[Liveness("acc-hik8", t, {"videoloss": False})])
        store(conn, [], [], sightings=[Liveness("acc-hik8", t - timedelta(seconds=5),
                                                {"videoloss": True, "tamper": True})])  # fmt: skip
    [(status,)] = rows(db, "SELECT vendor_status FROM devices WHERE device_id = 'acc-hik8'")
    assert status["videoloss"]["active"] is False  # not undone by the older report
    assert status["tamper"]["active"] is True  # what only the older one knew is kept
    assert datetime.fromisoformat(status["heartbeat"]["at"]) == t
