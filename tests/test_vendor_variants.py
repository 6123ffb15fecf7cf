"""A second round of vendor messages as devices and bridges really send them (issue #11 §2-§4),
each written here as a new instance of a kind the field samples show: the HTTP request a bridge
kept whole, Hikvision's XML part named as a file, UTF-16 text, pretty-printed Dahua event
streams, local times in other spellings, plate readers' colour prefixes and failed reads,
ZKTeco's push protocol, Frigate's dedicated plate cameras, availability and false positives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from devices.adapters import device_time, plate_text, reference
from devices.payloads import DeviceKind
from ingest.validate import KnownDevice, Limits, Received, Verdict, judge

KEY = b"variant-key"
LIMITS = Limits(max_age=timedelta(days=3650), max_future=timedelta(days=3650), credential_key=KEY)
REGISTRY = {
    "acc-v1": KnownDevice("acc-v1", DeviceKind.ACCESS, "LH00009"),
    "gate-v1": KnownDevice("gate-v1", DeviceKind.GATE),
    "cam-v1": KnownDevice("cam-v1", DeviceKind.CAMERA),
}
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CST = timezone(timedelta(hours=8))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00A-FACE-IN-PIXELS\xff\xd9"
HIK_JSON = json.dumps({
    "ipAddress": "10.0.0.5", "portNo": 80, "protocol": "HTTP",
    "dateTime": "2026-11-29T20:15:00+08:00",
    "activePostCount": 1, "eventType": "AccessControllerEvent", "eventState": "active",
    "AccessControllerEvent": {"deviceName": "Door", "majorEventType": 5, "subEventType": 75,
                              "name": "张三", "employeeNoString": "1024", "serialNo": 881,
                              "picturesNumber": 1}}, ensure_ascii=False)  # fmt: skip
HIK_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n<EventNotificationAlert version="2.0" '
    'xmlns="http://www.isapi.org/ver20/XMLSchema"><dateTime>2026-11-29T20:15:00+08:00</dateTime>'
    "<eventType>AccessControllerEvent</eventType><eventState>active</eventState>"
    "<AccessControllerEvent><majorEventType>5</majorEventType><subEventType>1</subEventType>"
    "<cardNo>1234567890</cardNo><name>李四</name><doorNo>1</doorNo><serialNo>77</serialNo>"
    "</AccessControllerEvent></EventNotificationAlert>"
)


def judged(vendor: str, device: str, payload: bytes | str, retain: bool = False) -> Verdict:
    data = payload.encode() if isinstance(payload, str) else payload
    return judge(Received(f"vt/bridge/{vendor}/{device}", data, NOW, retain=retain), REGISTRY,
                 LIMITS)  # fmt: skip


def payloads(verdict: Verdict) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in (*verdict.events, *verdict.tracked)]


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"MIME_boundary") -> bytes:
    out = b""
    for head, body in parts:
        out += b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + body + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


PICTURE = (b'Content-Disposition: form-data; name="Picture"; filename="Picture.jpg"\r\n'
           b"Content-Type: image/jpeg", JPEG)  # fmt: skip


# --- transport ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        # The bridge kept the whole HTTP request: request line, headers, body.
        b"POST /isapi/event HTTP/1.1\r\nHost: 10.0.0.9\r\n"
        b"Content-Type: multipart/form-data; boundary=MIME_boundary\r\nContent-Length: 999\r\n\r\n"
        + multipart([(b'Content-Disposition: form-data; name="AccessControllerEvent"\r\n'
                      b"Content-Type: application/json", HIK_JSON.encode()), PICTURE]),
        # Hikvision names its event part as a file (filename="MoveDetection.xml" in the field).
        multipart([(b'Content-Disposition: form-data; name="AccessControllerEvent";'
                    b' filename="AccessControllerEvent.json"\r\nContent-Type: application/json',
                    HIK_JSON.encode()), PICTURE]),
        # A MIME preamble before the first boundary.
        b"This is a multi-part message in MIME format.\r\n"
        + multipart([(b'Content-Disposition: form-data; name="event_log"\r\n'
                      b'Content-Type: application/json; charset="UTF-8"', HIK_JSON.encode()),
                     PICTURE], b"----WebKitFormBoundary7MA4YWxkTrZu0gW"),
        # A request kept whole whose body is the JSON alone (its picture counted by the device).
        b"POST /event HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\r\n"
        + HIK_JSON.encode(),
    ],
    ids=["request-line-kept", "json-part-named-as-a-file", "preamble", "request-line-json-body"],
)  # fmt: skip
def test_a_multipart_post_in_other_wrappings_is_read(payload: bytes) -> None:
    verdict = judged("hikvision", "acc-v1", payload)
    assert verdict.refusals == ()
    [event] = payloads(verdict)
    assert (event["type"], event["method"], event["granted"], event["pictures"]) == (
        "access.unlock", "face", True, 1)  # fmt: skip
    assert event["credential"] == reference("face", KEY, "1024")
    assert "PIXELS" not in verdict.events[0].payload


def test_an_xml_part_named_as_a_file_is_the_event_not_a_picture() -> None:
    payload = multipart([(b'Content-Disposition: form-data; name="AccessControllerEvent.xml";'
                          b' filename="AccessControllerEvent.xml"\r\n'
                          b'Content-Type: application/xml; charset="UTF-8"', HIK_XML.encode()),
                         PICTURE])  # fmt: skip
    [event] = payloads(judged("hikvision", "acc-v1", payload))
    assert (event["method"], event["seq"], event["pictures"]) == ("card", 77, 1)
    assert event["credential"] == reference("cred", KEY, "1234567890")


def alphadigi(plate: str, sec: object = 1795000000) -> str:
    return json.dumps({"AlarmInfoPlate": {"channel": 0, "deviceName": "IVS", "result": {
        "PlateResult": {"license": plate, "direction": 0,
                        "timeStamp": {"Timeval": {"sec": sec, "usec": 0}}}},
        "serialno": "a1b2c3d4"}}, ensure_ascii=False)  # fmt: skip


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: b"\xff\xfe" + text.encode("utf-16-le"),
        lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
        lambda text: text.encode("utf-16-le"),  # no byte-order mark: NULs give it away
        lambda text: text.encode("gb18030"),
    ],
    ids=["utf16le-bom", "utf16be-bom", "utf16le-bare", "gb18030"],
)
def test_text_in_utf16_or_gb18030_is_read(encode: Any) -> None:
    verdict = judged("alphadigi", "gate-v1", encode(alphadigi("粤B67890")))
    assert verdict.refusals == ()
    assert verdict.events[0].credential_ref == reference("plate", KEY, "粤B67890")


# --- time ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "local"),
    [
        ("2026-11-29 20:15:00", True),
        ("20261129201500", True),  # compact
        ("20261129201500000", True),  # Hikvision's absTime, with milliseconds
        ("2026/11/29 20:15:00", True),
        ("2026-11-29T20:15:00+0800", False),
        (1795954500000, False),  # epoch milliseconds
        ("1795954500", False),  # epoch seconds as a digit string
    ],
)
def test_device_times_in_other_spellings(value: object, local: bool) -> None:
    ts, was_local = device_time(value, CST)
    assert datetime.fromisoformat(ts) == datetime(2026, 11, 29, 20, 15, tzinfo=CST)
    assert was_local is local


# --- Dahua ----------------------------------------------------------------------------------------

PRETTY = (
    'Code=AccessControl;action=Pulse;index=0;data={\n   "CardName" : "王五",\n'
    '   "CardNo" : "A1B2C3D4",\n   "Door" : 0,\n   "ErrorCode" : 0,\n   "Method" : 1,\n'
    '   "RecNo" : 5123,\n   "Status" : 1,\n   "UTC" : 1795436100,\n   "UserID" : "3301"\n}\n'
)


def test_a_pretty_printed_dahua_event_stream_is_read_record_by_record() -> None:
    status = 'Code=DoorStatus;action=Pulse;index=0;data={\n   "Status" : "Close",\n   "UTC" : 1795436110\n}\n'  # noqa: E501
    parts = "".join(f"--myboundary\r\nContent-Type: text/plain\r\nContent-Length: {len(p)}\r\n\r\n"
                    f"{p}\r\n" for p in ("Heartbeat", PRETTY, status))  # fmt: skip
    verdict = judged("dahua", "acc-v1", parts)
    assert verdict.refusals == ()
    got = [(e["type"], e.get("method"), e.get("state")) for e in payloads(verdict)]
    assert got == [("access.unlock", "card", None), ("access.door", None, "closed")]
    assert verdict.events[0].credential_ref == reference("cred", KEY, "3301")
    assert verdict.events[0].seq == 5123
    assert len(verdict.sightings) == 1  # the keep-alive part
    assert "王五" not in verdict.events[0].payload


def test_dahua_door_alarms_unmapped_codes_and_string_numbers() -> None:
    t = 1795436100
    upload = {"Events": [
        {"Code": "DoorNotClosed", "Action": "Start", "Index": 0,
         "Data": {"UTC": t, "Name": "Door1"}},
        {"Code": "DoorNotClosed", "Action": "Stop", "Index": 0, "Data": {"UTC": t + 30}},
        {"Code": "BreakIn", "Action": "Pulse", "Index": 0, "Data": {"UTC": t + 40}},
        {"Code": "BackKeyLight", "Action": "Pulse", "Index": -1,
         "Data": {"UTC": t + 50, "State": 8}},
        # Firmware that sends numbers as strings: a granted face entry, not a refusal.
        {"Code": "AccessControl", "Action": "Pulse", "Index": 0,
         "Data": {"Method": "15", "Status": "1", "UTC": str(t + 60), "UserID": "77"}},
        {"Code": "AccessControl", "Action": "Pulse", "Index": 0,
         "Data": {"Method": 4, "Status": 1, "UTC": t + 70, "Name": "OpenDoor", "CardNo": ""}},
    ]}  # fmt: skip
    verdict = judged("dahua", "acc-v1", json.dumps(upload))
    assert verdict.refusals == ()
    got = [(e["type"], e.get("alarm") or e.get("code") or e.get("method") or e.get("cause"),
            e.get("granted")) for e in payloads(verdict)]  # fmt: skip
    assert got == [
        ("access.alarm", "held_open", None),
        ("access.alarm", "forced_open", None),
        ("access.vendor", "BackKeyLight/Pulse", None),
        ("access.unlock", "face", True),
        ("access.door", "remote", None),
    ]
    assert set(verdict.notes) == {"dahua skipped DoorNotClosed Stop",
                                  "dahua unmapped BackKeyLight/Pulse"}  # fmt: skip


def test_a_dahua_rpc_event_stream_is_read() -> None:
    rpc = {"id": 2, "method": "client.notifyEventStream", "params": {"SID": 513, "eventList": [
        {"Action": "Pulse", "Code": "AccessControl", "Index": 0,
         "Data": {"CardNo": "7a087d0f", "LocaleTime": "2026-11-29 20:15:00", "Method": 1,
                  "Status": 1, "UserID": "9901"}}]}}  # fmt: skip
    verdict = judged("dahua", "acc-v1", json.dumps(rpc))
    [event] = payloads(verdict)
    assert event["method"] == "card" and event["credential"] == reference("cred", KEY, "9901")
    assert verdict.events[0].ts == datetime(2026, 11, 29, 20, 15, tzinfo=CST)


def test_a_camera_motion_code_without_data_is_skipped_and_counted() -> None:
    verdict = judged("dahua", "acc-v1", "Code=VideoMotion;action=Start;index=0")
    assert verdict.refusals == () and verdict.events == ()
    assert verdict.notes == ("dahua skipped VideoMotion Start",)


# --- plates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "placeholder",
    ["無牌車", "未識別", "车牌识别失败", "粤A*****", "???????", "京A", "XXXXXXX", "Unlicensed",
     "车牌号码未知", "新能源", "粤0000000", "粤A00000", "NO_PLATE", "  "],
)  # fmt: skip
def test_more_no_plate_placeholders_give_no_credential(placeholder: str) -> None:
    assert plate_text(placeholder) is None
    verdict = judged("alphadigi", "gate-v1", alphadigi(placeholder))
    [event] = payloads(verdict)
    assert "credential" not in event and event["unlicensed"] is True


@pytest.mark.parametrize("spelling", ["蓝粤A12345", "粤A·12345", "粤Ａ１２３４５", "黄粤A12345"])
def test_a_plate_with_its_colour_first_is_the_same_plate(spelling: str) -> None:
    assert plate_text(spelling) == "粤A12345"
    assert plate_text("黑A12345") == "黑A12345"  # 黑 is also Heilongjiang's province


def test_a_hikvision_anpr_plate_with_a_colour_equals_frigates() -> None:
    xml = ('<?xml version="1.0" encoding="GB2312"?><EventNotificationAlert version="2.0">'
           "<dateTime>2026-11-29T20:15:00+08:00</dateTime><eventType>ANPR</eventType>"
           "<ANPR><licensePlate>蓝粤B12345</licensePlate><direction>forward</direction></ANPR>"
           "<UUID>u-1</UUID></EventNotificationAlert>")  # fmt: skip
    gate = judged("hikvision", "gate-v1", xml.encode("gb2312")).events[0].credential_ref
    start = 1795436100.5
    after = {"id": f"{start}-lpr1", "camera": "lpr", "label": "license_plate", "start_time": start,
             "frame_time": start + 1, "top_score": 0.9, "false_positive": False,
             "recognized_license_plate": "粤B12345", "current_zones": []}  # fmt: skip
    camera = judged("frigate", "cam-v1", json.dumps({"type": "new", "after": after}))
    [detection] = payloads(camera)  # a dedicated LPR camera's object is a vehicle, not skipped
    assert detection["cls"] == "vehicle"
    assert gate == detection["credential"] == reference("plate", KEY, "粤B12345")


# --- ZKTeco ---------------------------------------------------------------------------------------


def test_zkteco_push_attendance_lines_are_credential_uses() -> None:
    body = (b"POST /iclock/cdata?SN=CKJH201260011&table=ATTLOG&Stamp=123 HTTP/1.1\r\n"
            b"Host: 10.0.0.2\r\nContent-Length: 80\r\n\r\n"
            b"1001\t2026-11-29 20:15:00\t0\t15\t0\t0\r\n"
            b"1002\t2026-11-29 20:16:10\t1\t1\t0\t0\r\n"
            b"1003\t2026-11-29 20:17:00\t0\t25\t0\t0\r\n"
            b"1004\tyesterday\t0\t2\t0\t0\r\n")  # fmt: skip
    verdict = judged("zkteco", "acc-v1", body)
    got = [(e["type"], e.get("method") or e.get("code")) for e in payloads(verdict)]
    assert got == [("access.unlock", "face"), ("access.unlock", "fingerprint"),
                   ("access.vendor", "ATTLOG/verify=25")]  # fmt: skip
    assert verdict.events[0].credential_ref == reference("face", KEY, "1001")
    assert verdict.events[0].ts == datetime(2026, 11, 29, 20, 15, tzinfo=CST)  # the zone's
    [refused] = verdict.refusals  # the one unreadable line alone, without its PIN
    assert refused.reason.value == "vendor_format" and b"1004" not in refused.payload
    poll = judged("zkteco", "acc-v1", "GET /iclock/getrequest?SN=CKJH201260011")
    assert len(poll.sightings) == 1 and poll.refusals == ()
    oplog = judged("zkteco", "acc-v1", "POST /iclock/cdata?SN=X&table=OPERLOG\n\nOPLOG 4\t0")
    assert oplog.notes == ("zkteco skipped table OPERLOG",) and oplog.refusals == ()


# --- Frigate --------------------------------------------------------------------------------------


def test_frigate_availability_stats_and_unknown_faces() -> None:
    online = judged("frigate", "cam-v1", "online")
    assert [dict(s.status) for s in online.sightings] == [{"available": True}]
    offline = judged("frigate", "cam-v1", "offline")
    assert offline.status is not None and offline.status.online is False
    assert offline.sightings == () and offline.refusals == ()
    replayed = judged("frigate", "cam-v1", "online", retain=True)
    assert replayed.sightings[0].replayed is True
    stats = {"service": {"uptime": 3600, "version": "0.14.1"}, "cameras": {"gate": {}}}
    assert len(judged("frigate", "cam-v1", json.dumps(stats)).sightings) == 1
    assert judged("frigate", "cam-v1", "2").notes == ("frigate skipped object count",)
    start = 1795436100.25
    face = {"type": "face", "id": f"{start}-f1", "name": "unknown", "score": 0.4,
            "camera": "gate", "timestamp": start + 1}  # fmt: skip
    assert judged("frigate", "cam-v1", json.dumps(face)).notes == (
        "frigate skipped face not recognised",)  # fmt: skip
    after = {
        "id": f"{start}-p1",
        "camera": "gate",
        "label": "person",
        "start_time": start,
        "frame_time": start + 1,
        "sub_label": ["unknown", 0.3],
        "false_positive": False,
    }
    [person] = payloads(judged("frigate", "cam-v1", json.dumps({"type": "new", "after": after})))
    assert "credential" not in person  # an unrecognised face is nobody's identity


# --- dead letters ---------------------------------------------------------------------------------


def test_a_refused_multipart_post_keeps_no_name_card_or_picture() -> None:
    event = json.loads(HIK_JSON)
    event["dateTime"] = "the day after tomorrow"
    event["AccessControllerEvent"].update(cardNo="99887766", name="赵六")
    payload = multipart([(b'Content-Disposition: form-data; name="AccessControllerEvent";'
                          b' filename="event.json"\r\nContent-Type: application/json',
                          json.dumps(event, ensure_ascii=False).encode()), PICTURE])  # fmt: skip
    [refused] = judged("hikvision", "acc-v1", payload).refusals
    kept = refused.payload
    for secret in (b"PIXELS", "赵六".encode(), b"99887766", b"1024"):
        assert secret not in kept
    assert json.loads(kept)["pictures_dropped"] == 1
    assert reference("cred", KEY, "99887766").encode() in kept


def test_a_refused_bridged_message_keeps_no_id_number_address_or_embedded_picture() -> None:
    picture = "/9j/4AAQSkZJRgABAQ" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 8  # base64 JPEG
    hik = {"dateTime": "garbage", "eventType": "AccessControllerEvent", "AccessControllerEvent": {
        "majorEventType": 5, "subEventType": 1, "cardNo": "8877665544",
        "IDCardInfo": {"name": "孙八", "birth": "1990-01-02", "addr": "海珠区某村12号",
                       "IDCardNo": "440105199001021234"},
        "faceImage": picture, "snapshotBlob": picture}}  # fmt: skip
    dahua = {"Events": [{"Code": "AccessControl", "Data": {
        "UTC": "bad", "CitizenIDNo": "440105199001021234", "Address": "海珠区某村12号",
        "Number": "7a087d0f"}}]}  # fmt: skip
    plate = json.loads(alphadigi("粤A99999", sec="never"))
    plate["AlarmInfoPlate"]["result"]["PlateResult"]["imageFile"] = picture
    kept: dict[str, str] = {}
    for vendor, device, body in [("hikvision", "acc-v1", hik), ("dahua", "acc-v1", dahua),
                                 ("alphadigi", "gate-v1", plate)]:  # fmt: skip
        [refused] = judged(vendor, device, json.dumps(body, ensure_ascii=False)).refusals
        kept[vendor] = refused.payload.decode()
        for secret in ("440105199001021234", "海珠区", "1990-01-02", "7a087d0f", picture[:40],
                       "孙八", "8877665544", "粤A99999"):  # fmt: skip
            assert secret not in kept[vendor], (vendor, secret)
    # The same keyed reference accepted events would carry, so an operator can match them.
    assert reference("cred", KEY, "440105199001021234") in kept["dahua"]
    assert reference("plate", KEY, "粤A99999") in kept["alphadigi"]


def test_unmapped_hikvision_alerts_are_vendor_events_on_readers_and_counted_on_cameras() -> None:
    alert = {"dateTime": "2026-11-29T20:15:00+08:00", "eventType": "doorbellRinging",
             "eventState": "active", "activePostCount": 2}  # fmt: skip
    verdict = judged("hikvision", "acc-v1", json.dumps(alert))
    [event] = payloads(verdict)
    assert (event["type"], event["code"]) == ("access.vendor", "doorbellRinging/active")
    assert verdict.notes == ("hikvision unmapped doorbellRinging/active",)
    vmd = (
        "<EventNotificationAlert><dateTime>2026-11-29T20:15:00+08:00</dateTime>"
        "<eventType>VMD</eventType><eventState>active</eventState></EventNotificationAlert>"
    )
    motion = judged("hikvision", "cam-v1", vmd)
    assert motion.refusals == () and motion.notes == ("hikvision skipped VMD active",)


def test_plate_cameras_form_encoded_poll_is_a_heartbeat_and_io_pushes_are_counted() -> None:
    poll = (
        "device_name=IVS&ipaddr=192.168.1.100&port=80&user_name=admin&pass_wd=s3cret"
        "&serialno=a1b2c3d4-e5f60718&channel_num=1"
    )
    verdict = judged("alphadigi", "gate-v1", poll)
    assert len(verdict.sightings) == 1 and verdict.refusals == ()
    gio = {
        "AlarmGioIn": {"deviceName": "IVS", "result": {"TriggerResult": {"source": 0, "value": 1}}}
    }
    assert judged("alphadigi", "gate-v1", json.dumps(gio)).notes == (
        "alphadigi skipped AlarmGioIn",
    )


def test_plate_reads_inside_other_event_types_are_plate_reads() -> None:
    its = {"dateTime": "2026-11-29T20:15:00+08:00", "eventType": "vehicleDetection",
           "eventState": "active", "UUID": "its-1",
           "ANPR": {"licensePlate": "粤C·5N123", "direction": "reverse"}}  # fmt: skip
    [passed] = payloads(judged("hikvision", "gate-v1", json.dumps(its, ensure_ascii=False)))
    assert (passed["type"], passed["direction"]) == ("gate.pass", "out")
    assert passed["credential"] == reference("plate", KEY, "粤C5N123")
    itc = {"Code": "TrafficVehiclePosition", "Action": "Pulse", "Index": 0,
           "Data": {"UTC": 1795954500, "EventID": 88,
                    "TrafficCar": {"PlateNumber": "粤C5N123", "PlateColor": "Blue"}}}  # fmt: skip
    [camera] = payloads(judged("dahua", "gate-v1", json.dumps(itc, ensure_ascii=False)))
    assert camera["credential"] == passed["credential"]


def test_zkteco_access_panel_realtime_log_is_kept_with_its_event_number() -> None:
    body = ("POST /iclock/cdata?SN=C3PANEL01&table=rtlog&Stamp=9 HTTP/1.1\r\nHost: x\r\n\r\n"
            "time=2026-11-29 20:15:00\tpin=1001\tcardno=3344\teventaddr=1\tevent=0\t"
            "inoutstatus=0\tverifytype=4\tindex=17\r\n")  # fmt: skip
    verdict = judged("zkteco", "acc-v1", body)
    [event] = payloads(verdict)
    assert (event["type"], event["code"]) == ("access.vendor", "rtlog/event=0")
    assert event["credential"] == reference("cred", KEY, "1001")
    assert verdict.notes == ("zkteco unmapped rtlog/event=0",)


def test_a_whole_hikvision_acsevent_search_result_is_judged_item_by_item() -> None:
    result = {"AcsEvent": {"searchID": "s1", "responseStatusStrg": "OK", "numOfMatches": 3,
                           "totalMatches": 3, "InfoList": [
        {"major": 5, "minor": 38, "time": "2026-11-29T20:15:00+08:00", "cardReaderNo": 1,
         "doorNo": 1, "employeeNoString": "E1", "name": "钱七", "serialNo": 501},
        {"major": 5, "minor": 23, "time": "2026-11-29T20:16:00+08:00", "doorNo": 1,
         "serialNo": 502},
        {"major": 5, "minor": 75, "time": "not a time", "employeeNoString": "E2", "name": "孙八"},
    ]}}  # fmt: skip
    verdict = judged("hikvision", "acc-v1", json.dumps(result, ensure_ascii=False))
    got = [(e["type"], e.get("method") or e.get("cause")) for e in payloads(verdict)]
    assert got == [("access.unlock", "fingerprint"), ("access.door", "exit_button")]
    [refused] = verdict.refusals
    assert "孙八" not in refused.payload.decode() and b"E2" not in refused.payload


def test_a_frigate_plate_given_with_its_score_is_still_the_plate() -> None:
    start = 1795954500.25
    after = {"id": f"{start}-c9", "camera": "gate", "label": "car", "start_time": start,
             "frame_time": start + 1, "false_positive": False,
             "recognized_license_plate": ["粤B 12345", 0.93]}  # fmt: skip
    [car] = payloads(judged("frigate", "cam-v1", json.dumps({"type": "update", "after": after},
                                                            ensure_ascii=False)))  # fmt: skip
    assert car["credential"] == reference("plate", KEY, "粤B12345") and "unlicensed" not in car


def test_device_health_alerts_are_status_flags_not_events() -> None:
    disk = {"dateTime": "2026-11-29T20:15:00+08:00", "eventType": "diskfull",
            "eventState": "active", "channelID": 1}  # fmt: skip
    verdict = judged("hikvision", "acc-v1", json.dumps(disk))
    assert [dict(s.status) for s in verdict.sightings] == [{"diskfull": True}]
    assert verdict.events == () and verdict.refusals == ()
    stream = "Code=StorageLowSpace;action=Start;index=0\nCode=NetAbort;action=Stop;index=0\n"
    dahua = judged("dahua", "acc-v1", stream)
    assert [dict(s.status) for s in dahua.sightings] == [{"storagelowspace": True},
                                                         {"netabort": False}]  # fmt: skip


@pytest.mark.parametrize(
    "tail",
    ["\r\n\r\n--myboundary\r\n",  # cut at the next part's boundary
     "\r\n--myboundary\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nHeartbeat\r\n"],
    ids=["trailing-boundary", "next-part-follows"],
)  # fmt: skip
def test_a_dahua_stream_cut_mid_part_keeps_its_first_record(tail: str) -> None:
    record = (
        'Code=AccessControl;action=Pulse;index=0;data={"UserID":"1001","UTC":1795954500,"Method":1}'
    )
    verdict = judged("dahua", "acc-v1", record + tail)
    assert verdict.refusals == ()
    assert verdict.events[0].credential_ref == reference("cred", KEY, "1001")


def test_a_bom_before_gbk_text_is_dropped_and_the_text_still_detected() -> None:
    verdict = judged("alphadigi", "gate-v1", b"\xef\xbb\xbf" + alphadigi("粤A12345").encode("gbk"))
    assert verdict.events[0].credential_ref == reference("plate", KEY, "粤A12345")


def test_zkteco_attendance_lines_with_spaces_for_tabs() -> None:
    verdict = judged("zkteco", "acc-v1", "78979877 2026-11-29 20:15:00 0 15 0")
    [event] = payloads(verdict)
    assert event["method"] == "face" and event["credential"] == reference("face", KEY, "78979877")


def test_a_bare_picture_on_a_bridge_topic_is_skipped_and_not_kept() -> None:
    verdict = judged("frigate", "cam-v1", JPEG)
    assert verdict.refusals == () and verdict.events == ()
    assert verdict.notes == ("frigate skipped picture",)
