"""Real vendor formats from ../shared/data/payloads, mapped onto the contract through bridge
topics, with the same validation and dead-lettering as native messages."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings, strategies as st
from support import SHARED_DATA, count, wait_until

from devices.adapters import (
    ADAPTERS,
    Adapted,
    Item,
    VendorMessage,
    bridge_vendor,
    device_time,
    event_id,
    reference,
)
from devices.payloads import DeviceKind
from devices.topics import BRIDGE_VENDORS, BridgeTopic
from ingest.validate import KnownDevice, Limits, Received, Verdict, judge

PAYLOADS = SHARED_DATA / "payloads"
KEY = b"test-key"
LIMITS = Limits(max_age=timedelta(days=3650), credential_key=KEY)
REGISTRY = {
    "acc-hik1": KnownDevice("acc-hik1", DeviceKind.ACCESS, "LH00001"),
    "acc-dahua1": KnownDevice("acc-dahua1", DeviceKind.ACCESS, "LH00002"),
    "gate-plate1": KnownDevice("gate-plate1", DeviceKind.GATE),
    "cam-frigate1": KnownDevice("cam-frigate1", DeviceKind.CAMERA),
}
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

# (sample file, bridge topic, what each line must become)
CASES: list[tuple[str, str, list[dict[str, object]]]] = [
    ("hikvision_acs_event_httphost.json", "vt/bridge/hikvision/acc-hik1",
     [{"kind": "access.door", "seq": 1187, "state": "unlocked"}]),
    ("hikvision_acs_event_face.json", "vt/bridge/hikvision/acc-hik1",
     [{"kind": "access.unlock", "seq": 7675, "method": "face", "granted": False,
       "credential_ref": "face:unmatched"}]),
    ("hikvision_acsevent_search_infolist_item.json", "vt/bridge/hikvision/acc-hik1",
     [{"kind": "access.unlock", "seq": 0, "method": "face", "granted": True,
       "credential_ref": reference("face", KEY, "[redacted]")}]),
    ("dahua_accesscontrol_httpupload.json", "vt/bridge/dahua/acc-dahua1",
     [{"kind": "access.unlock", "method": "face", "granted": True,
       "credential_ref": reference("face", KEY, "REDACTED_USER_ID")}]),
    ("dahua_eventmanager_attach.txt", "vt/bridge/dahua/acc-dahua1",
     [{"kind": "access.unlock", "method": "face", "credential_ref": reference("face", KEY, "1001")}]),  # noqa: E501
    ("alphadigi_vzenith_alarminfoplate.json", "vt/bridge/alphadigi/gate-plate1",
     [{"kind": "gate.pass", "method": "plate", "credential_ref": reference("plate", KEY, "OTM2022")}]),  # noqa: E501
    ("frigate_events_update.json", "vt/bridge/frigate/cam-frigate1",
     [{"kind": "camera.detection", "cls": "person", "zone": "driveway",
       "credential_ref": reference("face", KEY, "John Smith")}]),
    ("frigate_tracked_object_update.jsonl", "vt/bridge/frigate/cam-frigate1",
     [{"kind": "camera.detection", "cls": "person", "credential_ref": reference("face", KEY, "John")},  # noqa: E501
      {"kind": "camera.detection", "cls": "vehicle", "credential_ref": reference("plate", KEY, "123ABC")},  # noqa: E501
      {"kind": "camera.detection", "cls": "vehicle",
       "credential_ref": reference("plate", KEY, "251WW2075")}]),
]  # fmt: skip


def messages(name: str) -> list[bytes]:
    raw = (PAYLOADS / name).read_bytes()
    return [line for line in raw.splitlines() if line.strip()] if name.endswith(".jsonl") else [raw]


@pytest.mark.parametrize(("name", "topic", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_vendor_sample_becomes_the_right_event(
    name: str, topic: str, expected: list[dict[str, object]]
) -> None:
    rows = []
    for payload in messages(name):
        verdict = judge(Received(topic, payload, NOW), REGISTRY, LIMITS)
        assert verdict.refusals == (), verdict.refusals
        rows += verdict.events + verdict.tracked
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        stored = json.loads(row.payload)
        got = {"kind": row.kind, "seq": row.seq, "credential_ref": row.credential_ref, **stored}
        for key, value in want.items():
            assert got[key] == value, (key, got)
        # A face, a name, a card or a plate never reaches the database in the clear.
        for secret in ("OTM2022", "John", "123ABC", "REDACTED_USER_ID", "1001", "251-WW-2075"):
            assert secret not in row.payload


def test_a_bridged_event_is_idempotent_and_keeps_its_device_time() -> None:
    payload = (PAYLOADS / "hikvision_acs_event_face.json").read_bytes()
    first = judge(Received("vt/bridge/hikvision/acc-hik1", payload, NOW), REGISTRY, LIMITS).events
    again = judge(Received("vt/bridge/hikvision/acc-hik1", payload, NOW), REGISTRY, LIMITS).events
    assert first[0].event_id == again[0].event_id
    assert first[0].ts == datetime(2026, 6, 17, 17, 2, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("vt/bridge/hikvision/acc-hik1", b'{"eventType": "VMD", "dateTime": "x"}', "vendor_format"),
        ("vt/bridge/dahua/acc-dahua1", b"Code=AccessControl;action=Pulse;index=0", "vendor_format"),
        ("vt/bridge/alphadigi/gate-plate1", b"not json", "vendor_format"),
        ("vt/bridge/acme/acc-hik1", b"{}", "bad_topic"),
        ("vt/bridge/hikvision/acc-nobody", b"{}", "unknown_device"),
        # A plate camera's events on a door reader's bridge: the kind rule still holds.
        ("vt/bridge/alphadigi/acc-hik1", (PAYLOADS / "alphadigi_vzenith_alarminfoplate.json").read_bytes(),  # noqa: E501
         "wrong_event_for_kind"),
    ],
)  # fmt: skip
def test_what_an_adapter_cannot_map_is_dead_lettered(
    topic: str, payload: bytes, reason: str
) -> None:
    verdict = judge(Received(topic, payload, NOW), REGISTRY, LIMITS)
    assert [r.reason.value for r in verdict.refusals] == [reason]
    assert verdict.events == ()


def test_vendor_samples_through_a_real_broker_land_as_rows(
    db: str, broker, start_ingester, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(db) as conn:
        for device in REGISTRY.values():
            conn.execute(
                "INSERT INTO devices (device_id, kind) VALUES (%s, %s)",
                (device.device_id, device.kind.value),
            )
    start_ingester(db, broker.settings, max_age_days=3650, credential_key="test-key")
    expected = 0
    for name, topic, want in CASES:
        for i, payload in enumerate(messages(name)):
            file = tmp_path / f"{name}.{i}"
            file.write_bytes(payload)
            subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.settings.port), "-q", "1",
                 "-t", topic, "-f", str(file)],
                check=True,
            )  # fmt: skip
        expected += len(want)
    expected -= 2  # Frigate's face and plate updates of one tracked object join its detection
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == expected, 20)
    with psycopg.connect(db) as conn:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    assert kinds == {"access.door": 1, "access.unlock": 4, "gate.pass": 1, "camera.detection": 2}
    assert count(db, "SELECT count(*) FROM dead_letters") == 0


# --- the kinds of issue #11 §2-§4, with inputs written here ----------------------------------

ZONE_LIMITS = Limits(credential_key=KEY)  # the default village zone, Asia/Shanghai
LIVE = {
    **REGISTRY,
    "acc-gbk1": KnownDevice("acc-gbk1", DeviceKind.ACCESS, text_encoding="gbk"),
    "acc-utc1": KnownDevice("acc-utc1", DeviceKind.ACCESS, time_zone="UTC"),
    "acc-badzone": KnownDevice("acc-badzone", DeviceKind.ACCESS, time_zone="Mars/Olympus"),
    "cam-plate1": KnownDevice("cam-plate1", DeviceKind.CAMERA),
}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def bridged(vendor: str, device: str, payload: bytes | str, **kw: Any) -> Verdict:
    raw = payload.encode() if isinstance(payload, str) else payload
    limits = kw.pop("limits", ZONE_LIMITS)
    return judge(Received(f"vt/bridge/{vendor}/{device}", raw, now(), **kw), LIVE, limits)


def hik_event(minor: int, major: int = 5, **fields: Any) -> bytes:
    when = fields.pop("when", now().astimezone(timezone(timedelta(hours=8))).isoformat())
    event = {"majorEventType": major, "subEventType": minor, "serialNo": 42, **fields}
    return json.dumps(
        {"eventType": "AccessControllerEvent", "dateTime": when, "AccessControllerEvent": event}
    ).encode()


def one(verdict: Verdict) -> dict[str, Any]:
    assert verdict.refusals == (), verdict.refusals
    rows = verdict.events + verdict.tracked
    assert len(rows) == 1, rows
    return {"kind": rows[0].kind, "credential_ref": rows[0].credential_ref,
            **json.loads(rows[0].payload)}  # fmt: skip


@pytest.fixture
def toy_vendor() -> Iterator[str]:
    """A vendor added in ONE place: an adapter function registered with @bridge_vendor."""

    @bridge_vendor("toyco")
    def toyco(message: VendorMessage) -> list[Item]:
        fields = dict(part.split("=", 1) for part in message.text.split(","))
        if fields.get("boom"):
            raise ZeroDivisionError("toy adapter bug")
        ts, local = device_time(int(fields["t"]), message.zone)
        return [Adapted({"v": 1, "type": "access.unlock", "seq": 0, "ts": ts,
                         "id": event_id("toyco", message.device_id, fields["t"]),
                         "device": message.device_id, "door": "building", "method": "card",
                         "credential": message.reference("cred", fields["card"]),
                         "granted": True}, local)]  # fmt: skip

    yield "toyco"
    del ADAPTERS["toyco"]


def test_a_new_vendor_needs_one_registration(toy_vendor: str) -> None:
    assert "toyco" in BRIDGE_VENDORS
    assert str(BridgeTopic.parse("vt/bridge/toyco/acc-hik1")) == "vt/bridge/toyco/acc-hik1"
    got = one(bridged("toyco", "acc-hik1", f"t={int(now().timestamp())},card=C77"))
    assert got["credential_ref"] == reference("cred", KEY, "C77")
    bug = bridged("toyco", "acc-hik1", "t=1,card=C77,boom=1")
    assert [(r.reason.value, r.detail) for r in bug.refusals] == [
        ("vendor_format", "ZeroDivisionError: toy adapter bug")
    ]
    with pytest.raises(ValueError, match="already has an adapter"):
        bridge_vendor("toyco")(ADAPTERS["toyco"])


MALFORMED = [
    ("hikvision", "acc-hik1", b'{"AccessControllerEvent": 5, "dateTime": "2026-11-26"}'),
    ("hikvision", "acc-hik1", b'{"AccessControllerEvent": {"majorEventType": "5"}}'),
    ("hikvision", "acc-hik1", b'{"major": 5, "minor": 1, "time": [12]}'),
    ("hikvision", "acc-hik1", b"<EventNotificationAlert><eventType>x</eventType>"),
    ("hikvision", "acc-hik1", b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'),
    ("dahua", "acc-dahua1", b'{"Events": [1, "two", null]}'),
    ("dahua", "acc-dahua1", b"Code=AccessControl;action=Pulse;index=0;data={oops"),
    ("dahua", "acc-dahua1", b'{"Events": {"Code": "AccessControl"}}'),
    ("alphadigi", "gate-plate1", b'{"AlarmInfoPlate": {"result": {"PlateResult": []}}}'),
    (
        "alphadigi",
        "gate-plate1",
        b'{"AlarmInfoPlate": {"result": {"PlateResult": {"timeStamp": {"Timeval": {"sec": 1e300}}}}}}',  # noqa: E501
    ),
    ("frigate", "cam-frigate1", b'{"type": "new", "after": {"label": "person", "id": {}}}'),
    (
        "frigate",
        "cam-frigate1",
        b'{"type": "end", "after": {"label": "car", "id": "x", "frame_time": "soon"}}',
    ),
    ("frigate", "cam-frigate1", b'{"type": "lpr", "plate": "A1", "timestamp": "yesterday"}'),
    ("frigate", "cam-frigate1", b"[]"),
]


@pytest.mark.parametrize(("vendor", "device", "payload"), MALFORMED)
def test_no_malformed_vendor_payload_raises_out_of_judge(
    vendor: str, device: str, payload: bytes
) -> None:
    verdict = bridged(vendor, device, payload)
    assert verdict.events == ()
    assert {r.reason.value for r in verdict.refusals} == {"vendor_format"}
    assert all(r.detail for r in verdict.refusals)


@pytest.mark.parametrize(
    ("minor", "major", "want"),
    [
        (0x01, 5, {"kind": "access.unlock", "method": "card", "granted": True}),
        (0x09, 5, {"kind": "access.unlock", "method": "card", "granted": False}),
        (0x26, 5, {"kind": "access.unlock", "method": "fingerprint", "granted": True}),
        (0x27, 5, {"kind": "access.unlock", "method": "fingerprint", "granted": False}),
        (0x4B, 5, {"kind": "access.unlock", "method": "face", "granted": True}),
        (0x3C, 5, {"kind": "access.unlock", "method": "face", "granted": True}),
        (0xB5, 5, {"kind": "access.unlock", "method": "pin", "granted": True}),
        (0x96, 5, {"kind": "access.unlock", "method": "pin", "granted": False}),
        (0x9C, 5, {"kind": "access.unlock", "method": "qr", "granted": True}),
        (0x17, 5, {"kind": "access.door", "state": "unlocked", "cause": "exit_button",
                   "credential_ref": None}),
        (0x400, 5, {"kind": "access.door", "state": "unlocked", "cause": "remote"}),
        (0x400, 3, {"kind": "access.door", "state": "unlocked", "cause": "remote"}),
        (0x19, 5, {"kind": "access.door", "state": "open"}),
        (0x1A, 5, {"kind": "access.door", "state": "closed"}),
        (0x1C, 5, {"kind": "access.alarm", "alarm": "held_open"}),
        (0x71, 5, {"kind": "access.vendor", "vendor": "hikvision", "code": "5/113"}),
        (0x70, 2, {"kind": "access.vendor", "code": "2/112"}),
    ],
)  # fmt: skip
def test_hikvision_code_table(minor: int, major: int, want: dict[str, object]) -> None:
    verdict = bridged("hikvision", "acc-hik1", hik_event(minor, major, employeeNoString="E7"))
    got = one(verdict)
    for key, value in want.items():
        assert got.get(key) == value, (key, got)
    if got["kind"] == "access.unlock":
        prefix = "face" if got["method"] == "face" else "cred"
        assert got["credential_ref"] == reference(prefix, KEY, "E7")
    if got["kind"] == "access.vendor":
        assert verdict.notes == (f"hikvision unmapped {got['code']}",)


def test_an_exit_button_release_is_skipped_not_refused() -> None:
    verdict = bridged("hikvision", "acc-hik1", hik_event(0x18))
    assert verdict.events == verdict.refusals == ()
    assert verdict.notes == ("hikvision skipped exit button released",)


def dahua_access(method: int, utc: int, **data: Any) -> dict[str, Any]:
    fields = {"Method": method, "UTC": utc, "Status": 1, "ErrorCode": 0, **data}
    return {"Code": "AccessControl", "Action": "Pulse", "Index": 0, "Data": fields}


@pytest.mark.parametrize(
    ("method", "want"),
    [
        (0, {"kind": "access.unlock", "method": "pin"}),
        (1, {"kind": "access.unlock", "method": "card"}),
        (6, {"kind": "access.unlock", "method": "fingerprint"}),
        (14, {"kind": "access.unlock", "method": "qr"}),
        (15, {"kind": "access.unlock", "method": "face"}),
        (4, {"kind": "access.door", "cause": "remote", "credential_ref": None}),
        (5, {"kind": "access.door", "cause": "exit_button", "credential_ref": None}),
        (99, {"kind": "access.vendor", "vendor": "dahua", "code": "AccessControl/Method=99"}),
    ],
)
def test_dahua_method_table(method: int, want: dict[str, object]) -> None:
    upload = {"Events": [dahua_access(method, int(now().timestamp()), UserID="U9", CardNo="C9")]}
    got = one(bridged("dahua", "acc-dahua1", json.dumps(upload)))
    for key, value in want.items():
        assert got.get(key) == value, (key, got)


def test_a_mixed_dahua_upload_is_judged_event_by_event() -> None:
    t = int(now().timestamp())
    upload = {"Events": [
        {"Code": "DoorStatus", "Action": "Pulse", "Index": 0,
         "Data": {"Status": "Close", "UTC": t}},
        dahua_access(1, t, CardNo="7F00AA11", RecNo=88),
        {"Code": "AlarmLocal", "Action": "Start", "Index": 0,
         "Data": {"UTC": t, "Name": "王五"}},
        {"Code": "VideoLoss", "Action": "Start", "Index": 0},
    ]}  # fmt: skip
    verdict = bridged("dahua", "acc-dahua1", json.dumps(upload, ensure_ascii=False))
    kinds = [(r.kind, json.loads(r.payload).get("state")) for r in verdict.events]
    assert kinds == [("access.door", "closed"), ("access.unlock", None), ("access.vendor", None)]
    assert verdict.events[1].credential_ref == reference("cred", KEY, "7F00AA11")
    assert verdict.events[1].seq == 88
    # An unmapped code is stored with the vendor's code and counted, not refused (§2).
    assert json.loads(verdict.events[2].payload)["code"] == "AlarmLocal/Start"
    assert "王五" not in verdict.events[2].payload
    assert verdict.refusals == () and verdict.notes == ("dahua unmapped AlarmLocal/Start",)
    assert [dict(s.status) for s in verdict.sightings] == [{"videoloss": True}]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"eventType": "heartBeat", "dateTime": "2026-11-26T20:15:10+08:00"}',
        b"<EventNotificationAlert><eventType>heartBeat</eventType></EventNotificationAlert>",
        b'{"eventType": "videoloss", "eventState": "inactive", "channelID": 2}',
        b'{"eventType": "shelteralarm", "eventState": "active"}',
    ],
)
def test_hikvision_heartbeats_and_video_status_are_liveness(payload: bytes) -> None:
    verdict = bridged("hikvision", "acc-hik1", payload)
    assert verdict.events == verdict.refusals == ()
    assert [s.device_id for s in verdict.sightings] == ["acc-hik1"]


@pytest.mark.parametrize(
    ("vendor", "device", "payload"),
    [
        ("dahua", "acc-dahua1", b"Code=HeartBeat;action=Pulse;index=0"),
        ("dahua", "acc-dahua1", b'{"Events": [{"Code": "VideoBlind", "Action": "Stop"}]}'),
        ("alphadigi", "gate-plate1", b'{"heartbeat": {"countid": 3, "serialno": "ab12"}}'),
    ],
)
def test_other_vendors_heartbeats_are_liveness(vendor: str, device: str, payload: bytes) -> None:
    verdict = bridged(vendor, device, payload)
    assert verdict.events == verdict.refusals == ()
    assert len(verdict.sightings) == 1


def plate_push(license: object, sec: int, plateid: int = 1) -> bytes:
    result = {"license": license, "plateid": plateid, "direction": 1,
              "timeStamp": {"Timeval": {"sec": sec, "usec": 0}}}  # fmt: skip
    push = {"AlarmInfoPlate": {"serialno": "cam0001", "result": {"PlateResult": result}}}
    return json.dumps(push, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "placeholder",
    ["无牌车", "_无_", "未识别", "", "  ", "00000000", "粤000000", "无车牌", "NONE", "***", "车牌"],
)
def test_no_plate_placeholders_give_no_credential_and_are_flagged(placeholder: str) -> None:
    sec = int(now().timestamp())
    first = one(bridged("alphadigi", "gate-plate1", plate_push(placeholder, sec, 1)))
    second = one(bridged("alphadigi", "gate-plate1", plate_push(placeholder, sec, 2)))
    for got in (first, second):
        assert got["credential_ref"] is None and "credential" not in got
        assert got["unlicensed"] is True and got["method"] == "plate"
    assert first["id"] != second["id"]  # two cars in one second are two passes


def test_a_plate_is_the_same_credential_from_a_gate_and_from_frigate() -> None:
    sec = int(now().timestamp())
    gate = one(bridged("alphadigi", "gate-plate1", plate_push("粤A·88K21", sec)))
    camera = one(bridged("alphadigi", "cam-plate1", plate_push("粤A 88K21", sec)))
    car = {"id": f"{sec}.5-car9", "label": "car", "camera": "west", "frame_time": sec + 1,
           "start_time": sec, "top_score": 0.9, "false_positive": False,
           "sub_label": ["Landlord van", 0.95], "recognized_license_plate": "粤A88K21"}  # fmt: skip
    frigate_row = one(
        bridged("frigate", "cam-frigate1", json.dumps({"type": "update", "after": car}))
    )
    lpr = {"type": "lpr", "id": car["id"], "plate": "粤a88k21", "camera": "lprcam",
           "timestamp": sec, "score": 0.9}  # fmt: skip
    lpr_row = one(bridged("frigate", "cam-frigate1", json.dumps(lpr)))
    expected = reference("plate", KEY, "粤A88K21")
    assert {gate["credential_ref"], camera["credential_ref"], frigate_row["credential_ref"],
            lpr_row["credential_ref"]} == {expected}  # fmt: skip
    assert camera["kind"] == "camera.detection" and gate["kind"] == "gate.pass"
    # A vehicle's sub_label without a read plate is a plate credential, never a face.
    known = {**car, "recognized_license_plate": None, "sub_label": ["粤B12345", 0.9]}
    got = one(bridged("frigate", "cam-frigate1", json.dumps({"type": "update", "after": known})))
    assert got["credential_ref"] == reference("plate", KEY, "粤B12345")


def frigate_message(kind: str, object_id: str, start: float, frame: float, **after: Any) -> bytes:
    body = {"id": object_id, "camera": "lane", "label": "person", "start_time": start,
            "frame_time": frame, "top_score": 0.7, "false_positive": False,
            "current_zones": ["gate_lane"], "end_time": frame if kind == "end" else None,
            **after}  # fmt: skip
    return json.dumps({"type": kind, "before": body, "after": body}).encode()


def test_a_frigate_track_is_one_detection_and_false_positives_none() -> None:
    start = now().timestamp() - 30
    oid = f"{start:.6f}-zz9"
    rows = []
    for kind, frame, score in [("new", 1, 0.6), ("update", 4, 0.8), ("end", 9, 0.8)]:
        message = frigate_message(kind, oid, start, start + frame, top_score=score)
        verdict = bridged("frigate", "cam-frigate1", message)
        assert verdict.events == () and verdict.refusals == ()
        rows += verdict.tracked
    assert len({(r.event_id, r.ts) for r in rows}) == 1
    last = json.loads(rows[-1].payload)
    assert last["track"] == f"frigate/{oid}" and last["confidence"] == 0.8
    assert datetime.fromisoformat(last["until"]).timestamp() == pytest.approx(start + 9)
    false_positive = frigate_message("new", oid + "x", start, start + 1, false_positive=True)
    fp = bridged("frigate", "cam-frigate1", false_positive)
    assert fp.events == fp.tracked == fp.refusals == ()
    assert fp.notes == ("frigate retracted false_positive",) and len(fp.retracted) == 1
    dog = bridged("frigate", "cam-frigate1", frigate_message("new", oid, start, start, label="dog"))
    assert dog.events == dog.tracked == dog.refusals == ()
    assert dog.notes == ("frigate skipped label dog",)


JPEG = b"\xff\xd8\xff\xe0JFIF-SECRET-FACE-PIXELS\xff\xd9"


def multipart(json_part: bytes, boundary: str = "MIME_boundary") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="AccessControllerEvent"\r\n'
        f"Content-Type: application/json\r\nContent-Length: {len(json_part)}\r\n\r\n".encode()
        + json_part
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="Picture";'
        f' filename="face.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
        + JPEG
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_a_multipart_post_gives_its_json_part_and_keeps_no_picture() -> None:
    body = multipart(hik_event(0x4B, employeeNoString="E5", name="张三"), "boundary-9x")
    got = one(bridged("hikvision", "acc-hik1", body))
    assert got["method"] == "face" and got["pictures"] == 1
    assert got["credential_ref"] == reference("face", KEY, "E5")
    # Refused (too old), the dead letter keeps neither the picture nor the name.
    old = multipart(hik_event(0x4B, employeeNoString="E5", name="张三", when="2001-01-01T00:00:00"))
    refused = bridged("hikvision", "acc-hik1", old).refusals
    assert [r.reason.value for r in refused] == ["timestamp_too_old"]
    assert b"SECRET" not in refused[0].payload and "张三".encode() not in refused[0].payload


def test_gbk_text_is_detected_or_taken_from_the_registry() -> None:
    sec = int(now().timestamp())
    gbk = plate_push("粤A12345", sec).decode().encode("gbk")
    got = one(bridged("alphadigi", "gate-plate1", gbk))
    assert got["credential_ref"] == reference("plate", KEY, "粤A12345")
    named = hik_event(0x01, cardNo="卡123").decode().encode("gbk")
    assert one(bridged("hikvision", "acc-gbk1", named))["credential_ref"] == reference(
        "cred", KEY, "卡123"
    )


def test_a_utf8_bom_is_the_same_on_native_and_bridge_topics() -> None:
    from devices.payloads import AccessUnlock, encode

    unlock = AccessUnlock(id=uuid.uuid4(), device="acc-hik1", seq=3, ts=now(), door="unit",
                          method="card", credential="cred:ab", granted=True)  # fmt: skip
    native = judge(Received("vt/v1/acc-hik1/event", b"\xef\xbb\xbf" + encode(unlock), now()),
                   LIVE, ZONE_LIMITS)  # fmt: skip
    assert [r.event_id for r in native.events] == [unlock.id] and native.refusals == ()
    bom = b"\xef\xbb\xbf" + hik_event(0x01, cardNo="C1")
    assert one(bridged("hikvision", "acc-hik1", bom))["method"] == "card"


def test_local_time_is_read_in_the_devices_zone_and_the_reason_says_how_to_set_it() -> None:
    local = now().astimezone(timezone(timedelta(hours=8))).replace(tzinfo=None)
    naive = hik_event(0x01, cardNo="C1", when=local.isoformat())
    got = one(bridged("hikvision", "acc-hik1", naive))  # village zone: Asia/Shanghai
    assert datetime.fromisoformat(got["ts"]).utcoffset() == timedelta(hours=8)
    # The same wall-clock time from a device registered as UTC is 8 hours in the future.
    refused = bridged("hikvision", "acc-utc1", naive).refusals
    assert [r.reason.value for r in refused] == ["timestamp_future"]
    assert "without a UTC offset" in refused[0].detail
    assert "villagetwin devices bridge acc-utc1 --time-zone" in refused[0].detail
    bad = bridged("hikvision", "acc-badzone", naive).refusals
    assert "Mars/Olympus" in bad[0].detail and "--time-zone" in bad[0].detail


def test_a_refused_bridged_message_keeps_references_not_personal_data() -> None:
    payload = hik_event(0x01, cardNo="CARD-991", name="李四", employeeNoString="E991",
                        when="not a time")  # fmt: skip
    refusal = bridged("hikvision", "acc-hik1", payload).refusals[0]
    assert refusal.reason.value == "vendor_format" and refusal.payload_size == len(payload)
    kept = json.loads(refusal.payload)["redacted"]["AccessControllerEvent"]
    assert kept["cardNo"] == reference("cred", KEY, "CARD-991")
    assert kept["employeeNoString"] == reference("cred", KEY, "E991")  # as accepted events get
    for secret in (b"CARD-991", "李四".encode(), b"E991"):
        assert secret not in refusal.payload
    plate = bridged("alphadigi", "acc-hik1", plate_push("粤A12345", int(now().timestamp())))
    assert [r.reason.value for r in plate.refusals] == ["wrong_event_for_kind"]
    assert "粤A12345".encode() not in plate.refusals[0].payload
    garbage = bridged("dahua", "acc-dahua1", b"\xff\xfe card 12345 \x00").refusals[0]
    assert b"12345" not in garbage.payload and json.loads(garbage.payload)["unreadable"]
    stranger = judge(Received("vt/bridge/dahua/acc-nobody", payload, now()), LIVE, ZONE_LIMITS)
    assert [r.reason.value for r in stranger.refusals] == ["unknown_device"]
    assert b"CARD-991" not in stranger.refusals[0].payload


def test_retained_replays_are_marked_and_an_empty_retained_publish_is_no_dead_letter() -> None:
    status = judge(Received("vt/v1/acc-hik1/status", b'{"v":1,"state":"online"}', now(),
                            retain=True), LIVE, ZONE_LIMITS)  # fmt: skip
    assert status.status is not None and status.status.replayed
    live = judge(Received("vt/v1/acc-hik1/status", b'{"v":1,"state":"online"}', now()),
                 LIVE, ZONE_LIMITS)  # fmt: skip
    assert live.status is not None and not live.status.replayed
    for topic in ("vt/v1/acc-hik1/status", "vt/v1/acc-hik1/config", "vt/bridge/hikvision/acc-hik1"):
        assert judge(Received(topic, b"", now(), retain=True), LIVE, ZONE_LIMITS) == Verdict()
    beat = bridged("hikvision", "acc-hik1", b'{"eventType": "heartBeat"}', retain=True)
    assert [s.replayed for s in beat.sightings] == [True]
    # A live empty event is still a refusal (a device sending nothing is a fault).
    empty = judge(Received("vt/v1/acc-hik1/event", b"", now()), LIVE, ZONE_LIMITS)
    assert [r.reason.value for r in empty.refusals] == ["not_json"]


# --- the shared field samples (one instance of each kind; read by path, never copied) --------

FIELD = SHARED_DATA / "field"
FIELD_NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
FIELD_LIMITS = Limits(max_age=timedelta(days=3650), credential_key=KEY)
FIELD_REGISTRY = {
    "acc-lh00001": KnownDevice("acc-lh00001", DeviceKind.ACCESS),
    "gate-west1": KnownDevice("gate-west1", DeviceKind.GATE),
    **REGISTRY,
}


def field_verdicts(name: str, topic: str) -> list[Verdict]:
    raw = (FIELD / name).read_bytes()
    lines = [line for line in raw.splitlines() if line.strip()] if name.endswith("l") else [raw]
    return [judge(Received(topic, line, FIELD_NOW), FIELD_REGISTRY, FIELD_LIMITS) for line in lines]


def test_the_field_samples_read_as_a_user_expects() -> None:
    (h01,) = field_verdicts("H01-hikvision-multipart-json-plus-picture.bin",
                            "vt/bridge/hikvision/acc-hik1")  # fmt: skip
    got = json.loads(h01.events[0].payload)
    assert (got["method"], got["granted"], got["pictures"]) == ("face", True, 1)
    (h02,) = field_verdicts(
        "H02-hikvision-fingerprint-minor38.json", "vt/bridge/hikvision/acc-hik1"
    )
    assert json.loads(h02.events[0].payload)["method"] == "fingerprint" and h02.refusals == ()
    h04 = field_verdicts(
        "H04-hikvision-heartbeat-and-videoloss.jsonl", "vt/bridge/hikvision/acc-hik1"
    )
    assert all(v.sightings and not v.refusals and not v.events for v in h04)
    (d01,) = field_verdicts("D01-dahua-doorstatus-beside-accesscontrol.json",
                            "vt/bridge/dahua/acc-dahua1")  # fmt: skip
    assert [e.kind for e in d01.events] == ["access.door", "access.unlock"] and not d01.refusals
    a01 = field_verdicts("A01-plate-unlicensed-vehicles.jsonl", "vt/bridge/alphadigi/gate-plate1")
    assert all(v.events[0].credential_ref is None for v in a01)
    assert all(json.loads(v.events[0].payload)["unlicensed"] for v in a01)
    f01 = field_verdicts("F01-frigate-one-person-new-update-end.jsonl",
                         "vt/bridge/frigate/cam-frigate1")  # fmt: skip
    assert len({(r.event_id, r.ts) for v in f01 for r in v.tracked}) == 1
    f03 = field_verdicts("F03-frigate-car-recognized-license-plate.jsonl",
                         "vt/bridge/frigate/cam-frigate1")  # fmt: skip
    assert [v.tracked[0].credential_ref for v in f03] == [
        reference("plate", KEY, "粤A88K21"),
        reference("plate", KEY, "粤A12345"),
    ]
    (v01,) = field_verdicts("V01-native-event-utf8-bom.json", "vt/v1/acc-lh00001/event")
    assert len(v01.events) == 1 and v01.refusals == ()


def test_vendor_text_postgresql_cannot_hold_is_refused_by_name() -> None:
    start = now().timestamp()
    body = {"id": f"{start:.3f}-n1", "label": "person", "start_time": start,
            "frame_time": start, "current_zones": ["lane\u0000x"]}  # fmt: skip
    verdict = bridged("frigate", "cam-frigate1", json.dumps({"type": "new", "after": body}))
    assert [r.reason.value for r in verdict.refusals] == ["unstorable_json"]
    upload = {"Events": [{"Code": "X\u0000\udc00", "Data": {"UTC": start}}]}
    bad_code = bridged("dahua", "acc-dahua1", json.dumps(upload))
    detail = bad_code.refusals[0].detail
    assert "\x00" not in detail and detail.encode("utf-8")
    assert bad_code.refusals[0].payload.decode("utf-8")  # storable, the surrogate escaped


def test_dahua_event_stream_parts_keepalives_and_plate_cameras() -> None:
    t = int(now().timestamp())
    lines = [
        "Code=AccessControl;action=Pulse;index=0;data="
        + json.dumps({"UserID": user, "UTC": t, "Method": 6})
        for user in ("77", "78")
    ]
    stream = (
        "".join(f"--myboundary\r\nContent-Type: text/plain\r\n\r\n{line}\r\n" for line in lines)
        + "--myboundary--\r\n"
    )
    verdict = bridged("dahua", "acc-dahua1", stream)
    assert [json.loads(e.payload)["method"] for e in verdict.events] == ["fingerprint"] * 2
    assert len(bridged("dahua", "acc-dahua1", b"Heartbeat\r\n").sightings) == 1
    junction = {"Events": [{"Code": "TrafficJunction", "Action": "Pulse", "Data": {
        "UTC": t, "EventID": 516, "TrafficCar": {"PlateNumber": "粤A·88K21"}}}]}  # fmt: skip
    got = one(bridged("dahua", "gate-plate1", json.dumps(junction, ensure_ascii=False)))
    assert (got["kind"], got["method"]) == ("gate.pass", "plate")
    assert got["credential_ref"] == reference("plate", KEY, "粤A88K21")
    nothing = {"Events": [{"Code": "TrafficJunction", "Data": {
        "UTC": t, "EventID": 517, "TrafficCar": {"PlateNumber": "无车牌"}}}]}  # fmt: skip
    got = one(bridged("dahua", "gate-plate1", json.dumps(nothing, ensure_ascii=False)))
    assert got["credential_ref"] is None and got["unlicensed"] is True


def test_more_transport_variants_of_the_same_kinds() -> None:
    when = now().astimezone(timezone(timedelta(hours=8))).isoformat()
    xml = (
        '<?xml version="1.0" encoding="GB2312"?>'
        '<EventNotificationAlert xmlns="http://www.isapi.org/ver20/XMLSchema">'
        f"<dateTime>{when}</dateTime><eventType>AccessControllerEvent</eventType>"
        "<AccessControllerEvent><majorEventType>5</majorEventType>"
        "<subEventType>38</subEventType><serialNo>77</serialNo>"
        "<employeeNoString>工号9</employeeNoString></AccessControllerEvent>"
        "</EventNotificationAlert>"
    ).encode("gb2312")
    got = one(bridged("hikvision", "acc-hik1", xml))
    assert (got["method"], got["seq"]) == ("fingerprint", 77)
    assert got["credential_ref"] == reference("cred", KEY, "工号9")
    # A picture part with no filename and a generic type, and the HTTP header kept in front.
    json_part = hik_event(0x01, cardNo="C3")
    body = (
        b"Content-Type: multipart/form-data; boundary=xYz\r\n\r\n--xYz\r\n"
        b"Content-Type: application/json\r\n\r\n" + json_part + b"\r\n--xYz\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" + JPEG + b"\r\n--xYz--\r\n"
    )
    got = one(bridged("hikvision", "acc-hik1", body))
    assert (got["method"], got["pictures"]) == ("card", 1)
    # A Dahua Method as a string, and "no plate" words with separators.
    upload = {"Events": [dahua_access(1, int(now().timestamp()), CardNo="C8")]}
    upload["Events"][0]["Data"]["Method"] = "6"
    assert one(bridged("dahua", "acc-dahua1", json.dumps(upload)))["method"] == "fingerprint"
    sec = int(now().timestamp())
    for word in ("NO PLATE", "n/a", "Unknown", "— —"):
        assert one(bridged("alphadigi", "gate-plate1", plate_push(word, sec)))["unlicensed"]


def test_a_motorcycles_plate_is_a_plate_credential() -> None:
    start = now().timestamp()
    bike = frigate_message("update", f"{start:.3f}-m1", start, start, label="motorcycle",
                           sub_label=["粤A·D1234", 0.9])  # fmt: skip
    got = one(bridged("frigate", "cam-frigate1", bike))
    assert got["cls"] == "ebike" and got["credential_ref"] == reference("plate", KEY, "粤AD1234")


def test_an_oversized_or_deep_bridged_message_keeps_no_bytes() -> None:
    big = b'{"cardNo": "C1", "pad": "' + b"x" * 300_000 + b'"}'
    refusal = bridged("hikvision", "acc-hik1", big).refusals[0]
    assert refusal.reason.value == "oversized" and b"C1" not in refusal.payload
    deep = b'{"cardNo": "C2", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    refusal = bridged("hikvision", "acc-hik1", deep).refusals[0]
    assert refusal.reason.value == "vendor_format" and b"C2" not in refusal.payload


# --- totality, by property: whatever a bridge sends, judge() returns ------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12)
)
_keys = st.sampled_from(
    ["AccessControllerEvent", "majorEventType", "subEventType", "dateTime", "eventType",
     "serialNo", "employeeNoString", "cardNo", "doorNo", "picturesNumber", "major", "minor",
     "time", "Events", "Code", "Data", "Method", "UTC", "RealUTC", "Status", "UserID", "RecNo",
     "TrafficCar", "PlateNumber", "AlarmInfoPlate", "result", "PlateResult", "license",
     "timeStamp", "Timeval", "sec", "heartbeat", "type", "after", "id", "label", "start_time",
     "frame_time", "end_time", "sub_label", "recognized_license_plate", "false_positive",
     "current_zones", "top_score", "name", "plate", "timestamp", "ANPR", "licensePlate"]
)  # fmt: skip
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(
    vendor=st.sampled_from(["hikvision", "dahua", "alphadigi", "frigate", "zkteco"]),
    payload=st.one_of(
        _json.map(lambda d: json.dumps(d, allow_nan=True).encode()),
        st.binary(max_size=200),
        _json.map(lambda d: ("Code=AccessControl;action=Pulse;data=" + json.dumps(d)).encode()),
        # ZKTeco's push protocol: a request line, then tab-separated lines of anything.
        st.tuples(
            st.sampled_from(["ATTLOG", "rtlog", "OPERLOG", ""]),
            st.lists(st.lists(st.text(max_size=20), max_size=6), max_size=4),
        ).map(
            lambda t: (
                f"POST /iclock/cdata?SN=Z1&table={t[0]}\r\n\r\n"
                + "\r\n".join("\t".join(f) for f in t[1])
            ).encode("utf-8", "replace")
        ),
    ),
    retain=st.booleans(),
)
def test_judge_returns_for_anything_on_a_bridge_topic(
    vendor: str, payload: bytes, retain: bool
) -> None:
    device = {"alphadigi": "gate-plate1", "frigate": "cam-frigate1"}.get(vendor, "acc-hik1")
    verdict = bridged(vendor, device, payload, retain=retain)
    assert all("Error:" not in refusal.detail for refusal in verdict.refusals), verdict.refusals
    for refusal in verdict.refusals:
        assert refusal.reason.value and refusal.detail.encode("utf-8")
        assert "\x00" not in refusal.detail
        refusal.payload.decode("utf-8")  # storable
    for row in verdict.events + verdict.tracked:
        json.loads(row.payload)
        assert "\x00" not in row.payload
