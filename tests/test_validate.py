"""The ingester's judgement of messages, as pure functions: every refusal and its reason."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devices.payloads import AccessUnlock, CameraDetection, DeviceKind, Heartbeat, encode
from devices.topics import (
    DeviceTopic,
    TopicError,
    config_topic,
    event_topic,
    status_topic,
    subscription,
)
from ingest.batching import Batcher
from ingest.validate import ConfigUpdate, KnownDevice, Limits, Reason, Received, judge

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REGISTRY = {
    "acc-lh00001": KnownDevice("acc-lh00001", DeviceKind.ACCESS, "LH00001"),
    "cam-001": KnownDevice("cam-001", DeviceKind.CAMERA),
    "acc-old": KnownDevice("acc-old", DeviceKind.ACCESS, "LH00002", revoked=True),
}


def unlock(seq: int = 1, device: str = "acc-lh00001", ts: datetime = NOW) -> dict[str, object]:
    event = AccessUnlock(
        id=uuid.uuid4(),
        device=device,
        seq=seq,
        ts=ts,
        door="unit",
        unit="LH00001-301",
        method="card",
        credential="cred:0011aabb",
        granted=True,
    )
    return json.loads(encode(event))


def received(
    payload: bytes | dict[str, object], topic: str = event_topic("acc-lh00001")
) -> Received:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Received(topic, raw, NOW)


def reasons(
    payload: bytes | dict[str, object], topic: str = event_topic("acc-lh00001")
) -> list[str]:
    return [r.reason.value for r in judge(received(payload, topic), REGISTRY).refusals]


def test_a_good_event_becomes_one_row_with_its_building_and_unit() -> None:
    verdict = judge(received(unlock()), REGISTRY)
    assert verdict.refusals == ()
    (row,) = verdict.events
    assert row.building_id == "LH00001"
    assert row.unit_id == "LH00001-301"
    assert row.credential_ref == "cred:0011aabb"
    assert row.kind == "access.unlock"
    assert row.received_at == NOW


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not utf-8", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[1, 2, 3]", "schema_invalid"),
        (b'{"v": 1, "type": "access.unlock"}', "schema_invalid"),
        (b'{"v": 7, "type": "access.unlock"}', "unknown_schema_version"),
        (b'{"type": "access.unlock"}', "unknown_schema_version"),
        (b"[" * 40 + b"]" * 40, "too_deep"),
        (b'{"v": 1, "pad": "' + b"x" * 300_000 + b'"}', "oversized"),
    ],
)
def test_malformed_messages_are_refused_with_their_reason(payload: bytes, reason: str) -> None:
    assert reasons(payload) == [reason]


def test_json_postgresql_cannot_store_is_refused() -> None:
    nul = unlock()
    nul["credential"] = "cred:\u0000"
    assert reasons(json.dumps(nul).encode()) == ["unstorable_json"]
    surrogate = json.dumps(unlock()).replace('"cred:0011aabb"', '"\\ud800"').encode()
    assert reasons(surrogate) == ["unstorable_json"]


def test_deep_nesting_beyond_the_parser_is_refused_not_crashed() -> None:
    limits = Limits(max_payload_bytes=10_000_000)
    verdict = judge(received(b"[" * 200_000 + b"]" * 200_000), REGISTRY, limits)
    assert [r.reason for r in verdict.refusals] == [Reason.TOO_DEEP]


def test_device_rules() -> None:
    assert reasons(unlock(device="acc-unknown"), event_topic("acc-unknown")) == ["unknown_device"]
    assert reasons(unlock(device="acc-old"), event_topic("acc-old")) == ["revoked_device"]
    # A payload naming another device than its topic.
    assert reasons(unlock(device="cam-001")) == ["device_mismatch"]
    # A camera cannot send door events.
    assert reasons(unlock(device="cam-001"), event_topic("cam-001")) == ["wrong_event_for_kind"]


def test_absurd_timestamps_are_refused() -> None:
    assert reasons(unlock(ts=NOW + timedelta(hours=1))) == ["timestamp_future"]
    assert reasons(unlock(ts=NOW - timedelta(days=400))) == ["timestamp_too_old"]
    naive = unlock()
    naive["ts"] = "2026-11-26T12:00:00"
    assert reasons(naive) == ["schema_invalid"]


def test_a_timestamp_with_an_offset_is_kept_as_the_same_instant() -> None:
    local = unlock()
    local["ts"] = "2026-11-26T20:00:00+08:00"
    (row,) = judge(received(local), REGISTRY).events
    assert row.ts == NOW


def test_topics_outside_the_contract_are_refused() -> None:
    assert reasons(unlock(), "vt/v1/acc-lh00001/other") == ["bad_topic"]
    assert reasons(unlock(), "vt/v2/acc-lh00001/event") == ["bad_topic"]
    assert reasons(unlock(), "elsewhere") == ["bad_topic"]
    with pytest.raises(TopicError):
        DeviceTopic.parse("vt/v1/BAD ID/event")


def test_a_batch_stores_its_good_events_and_refuses_only_the_bad_one() -> None:
    good = [unlock(seq) for seq in range(1, 4)]
    bad = unlock(4)
    bad["granted"] = "perhaps"
    batch = {"v": 1, "type": "batch", "device": "acc-lh00001", "events": [*good, bad]}
    verdict = judge(received(batch), REGISTRY)
    assert len(verdict.events) == 3
    (refusal,) = verdict.refusals
    assert refusal.reason is Reason.SCHEMA_INVALID
    assert "granted" in refusal.detail
    assert json.loads(refusal.payload)["seq"] == 4


def test_a_batch_for_another_device_is_refused_whole() -> None:
    batch = {"v": 1, "type": "batch", "device": "cam-001", "events": [unlock()]}
    assert reasons(batch) == ["device_mismatch"]


def test_status_messages_change_availability() -> None:
    verdict = judge(received({"v": 1, "state": "offline"}, status_topic("cam-001")), REGISTRY)
    assert verdict.status is not None
    assert verdict.status.online is False
    assert reasons({"v": 1, "state": "sleepy"}, status_topic("cam-001")) == ["schema_invalid"]


def test_refusals_keep_the_payload_and_its_size() -> None:
    (refusal,) = judge(received(b"{not json"), REGISTRY).refusals
    assert refusal.payload == b"{not json"
    assert refusal.payload_size == 9
    assert refusal.device_id == "acc-lh00001"
    assert refusal.topic == event_topic("acc-lh00001")


def test_subscription_filters() -> None:
    assert subscription() == "vt/v1/+/+"
    assert subscription(share_group="ingest") == "$share/ingest/vt/v1/+/+"


def test_every_device_kind_may_send_heartbeats() -> None:
    beat = Heartbeat(id=uuid.uuid4(), device="cam-001", seq=9, ts=NOW, uptime_s=5)
    detection = CameraDetection(
        id=uuid.uuid4(), device="cam-001", seq=10, ts=NOW, cls="ebike", count=1,
        confidence=0.9, zone="z1",
    )  # fmt: skip
    for event in (beat, detection):
        verdict = judge(received(json.loads(encode(event)), event_topic("cam-001")), REGISTRY)
        assert verdict.refusals == () and len(verdict.events) == 1


def test_batcher_flushes_on_size_and_on_age() -> None:
    batcher = Batcher(max_rows=3, max_wait_s=0.5)
    verdict = judge(received(unlock()), REGISTRY)
    assert not batcher.due(0.0)
    batcher.add(received(unlock()), verdict, now=10.0)
    assert not batcher.due(10.1)
    assert batcher.due(10.5)  # old enough
    batcher.add(received(unlock()), verdict, now=10.2)
    batcher.add(received(unlock()), verdict, now=10.3)
    assert batcher.due(10.3)  # big enough
    batch = batcher.take()
    assert len(batch.messages) == 3 and len(batch.events) == 3
    assert len(batcher) == 0 and not batcher.due(100.0)


def _config(**changes: object) -> dict[str, object]:
    config: dict[str, object] = {
        "v": 1, "device": "acc-lh00001", "kind": "access", "building": "LH00003", "floor": 2,
        "door": "unit", "availability_topic": status_topic("acc-lh00001"),
    }  # fmt: skip
    return {**config, **changes}


def test_a_config_message_says_where_a_registered_device_is() -> None:
    verdict = judge(received(_config(), config_topic("acc-lh00001")), REGISTRY)
    assert verdict.refusals == () and verdict.events == ()
    assert verdict.config == ConfigUpdate("acc-lh00001", "LH00003", 2, "unit", NOW)


@pytest.mark.parametrize(
    ("changes", "topic_device", "reason"),
    [
        ({"device": "cam-001"}, "acc-lh00001", "device_mismatch"),  # names another device
        ({"kind": "camera"}, "acc-lh00001", "device_mismatch"),  # not what the registry has
        ({"device": "acc-nobody"}, "acc-nobody", "unknown_device"),  # never registers one
        ({"floor": 999}, "acc-lh00001", "out_of_range"),
        ({"v": 2}, "acc-lh00001", "unknown_schema_version"),
    ],
)
def test_a_bad_config_message_is_refused_with_its_reason(
    changes: dict[str, object], topic_device: str, reason: str
) -> None:
    verdict = judge(received(_config(**changes), config_topic(topic_device)), REGISTRY)
    assert verdict.config is None
    assert [r.reason.value for r in verdict.refusals] == [reason]


def test_a_unit_outside_the_devices_scope_is_refused_and_its_batch_neighbours_kept() -> None:
    """Issue 12: a door reader writes only for its building's units (a gate or a device with
    no building: the village's); the check is skipped where no units are known."""
    scoped = {
        "acc-lh00001": KnownDevice(
            "acc-lh00001", DeviceKind.ACCESS, "LH00001", units=frozenset({"LH00001-301"})
        )
    }
    assert judge(received(unlock()), scoped).events  # LH00001-301: its own building
    other = {**unlock(), "unit": "LH00002-101"}
    verdict = judge(received(other), scoped)
    assert [r.reason for r in verdict.refusals] == [Reason.UNIT_OUTSIDE_DEVICE_SCOPE]
    assert "LH00002-101" in verdict.refusals[0].detail and verdict.events == ()
    batch = {"v": 1, "type": "batch", "device": "acc-lh00001",
             "events": [unlock(1), {**unlock(2), "unit": "LH00002-101"}, unlock(3)]}  # fmt: skip
    verdict = judge(received(batch), scoped)
    assert [e.seq for e in verdict.events] == [1, 3]
    assert [r.reason for r in verdict.refusals] == [Reason.UNIT_OUTSIDE_DEVICE_SCOPE]
    assert judge(received(other), REGISTRY).events  # no units known: not checked
