"""Real vendor formats from ../shared/data/payloads, mapped onto the contract through bridge
topics, with the same validation and dead-lettering as native messages."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from support import SHARED_DATA, count, wait_until

from devices.adapters import reference
from devices.payloads import DeviceKind
from ingest.validate import KnownDevice, Limits, Received, judge

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
       "credential_ref": reference("plate", KEY, "251-WW-2075")}]),
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
        rows += verdict.events
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
        ("vt/bridge/hikvision/acc-hik1", b'{"eventType": "videoloss"}', "vendor_format"),
        ("vt/bridge/dahua/acc-dahua1", b"Code=VideoMotion;action=Start;index=0", "vendor_format"),
        ("vt/bridge/frigate/cam-frigate1", b'{"type": "new", "after": {"label": "dog"}}', "vendor_format"),  # noqa: E501
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
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == expected, 20)
    with psycopg.connect(db) as conn:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    assert kinds == {"access.door": 1, "access.unlock": 4, "gate.pass": 1, "camera.detection": 4}
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
