"""Writes docs/mqtt.md from the pydantic models, so the document cannot drift from the code:
a test regenerates it and compares."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter

from devices import payloads as p
from devices.kinds import EVENT_TYPES_BY_KIND
from devices.topics import ALERTS, CONTRACT_VERSION, DEVICE_ID_PATTERN, ROOT, alert_topic

_TS = datetime(2026, 11, 26, 20, 15, 0, tzinfo=timezone(timedelta(hours=8)))


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=0x9B2F8C1E1D7A4A558D6C3F0D9E1B0000 + n)


EXAMPLES: dict[str, tuple[str, BaseModel]] = {
    "gate.pass": ("gate-west", p.GatePass(id=_id(1), device="gate-west", seq=1021, ts=_TS,
                  direction="in", method="face", granted=True, credential="cred:5f1c09a2e4b7d3c8")),
    "gate.alarm": ("gate-west", p.GateAlarm(id=_id(2), device="gate-west", seq=1022, ts=_TS,
                   alarm="tailgating")),
    "camera.detection": ("cam-007", p.CameraDetection(id=_id(3), device="cam-007", seq=88, ts=_TS,
                         cls="ebike", count=1, confidence=0.91, zone="z2",
                         snapshot="snap/cam-007/88.jpg")),
    "access.unlock": ("acc-lh00001", p.AccessUnlock(id=_id(4), device="acc-lh00001", seq=301,
                      ts=_TS, door="unit", unit="LH00001-301", method="card",
                      credential="cred:0011aabb", granted=True)),
    "access.alarm": ("acc-lh00001", p.AccessAlarm(id=_id(5), device="acc-lh00001", seq=302, ts=_TS,
                     alarm="held_open", door="building")),
    "access.door": ("acc-lh00001", p.AccessDoor(id=_id(11), device="acc-lh00001", seq=303, ts=_TS,
                    door="building", state="unlocked")),
    "access.vendor": ("acc-lh00001", p.AccessVendor(id=_id(12), device="acc-lh00001", seq=304,
                      ts=_TS, vendor="hikvision", code="5/112", door="building", granted=False)),
    "app.checkin": ("app-kaobutong", p.AppCheckIn(id=_id(6), device="app-kaobutong", seq=5001,
                    ts=_TS, unit="LH00001-301", credential="cred:77aa01")),
    "app.checkout": ("app-kaobutong", p.AppCheckOut(id=_id(7), device="app-kaobutong", seq=5002,
                     ts=_TS, unit="LH00001-301", credential="cred:77aa01")),
    "app.visitor": ("app-kaobutong", p.AppVisitor(id=_id(8), device="app-kaobutong", seq=5003,
                    ts=_TS, unit="LH00001-301", credential="visitor:0a1b2c3d", host="cred:77aa01")),
    "app.incident": ("app-kaobutong", p.AppIncident(id=_id(9), device="app-kaobutong", seq=5004,
                     ts=_TS, category="ebike_charging", text="楼道内电动车充电 e-bike charging",
                     lon=113.4501, lat=23.1602, building="LH00001", photo="photo/5004.jpg")),
    "heartbeat": ("gate-west", p.Heartbeat(id=_id(10), device="gate-west", seq=1023, ts=_TS,
                  uptime_s=86400, firmware="2.4.1")),
}  # fmt: skip


def _schema(model: Any) -> str:
    return json.dumps(TypeAdapter(model).json_schema(), ensure_ascii=False, indent=2)


def _example(message: BaseModel) -> str:
    return json.dumps(json.loads(p.encode(message)), ensure_ascii=False, indent=2)


def render() -> str:
    """The whole of ``docs/mqtt.md`` as Markdown text: topics, the rules every event follows, the
    batch envelope, one section per event model (its first docstring line, the kinds that send it,
    an example as a ``mosquitto_pub`` command, its JSON Schema), status, config and alerts.

    Raises KeyError when an event model of ``devices.payloads.EventModel`` has no entry in
    ``EXAMPLES``: add one there."""
    event_models = get_args(p.EventModel)
    out = [
        "# The villagetwin MQTT contract, v1",
        "",
        "Generated from `devices/payloads.py` by `villagetwin devices docs`; a test fails when",
        "this file and the models disagree. Do not edit by hand.",
        "",
        "## Topics",
        "",
        f"Every device owns `{ROOT}/{CONTRACT_VERSION}/<device_id>/…`; device ids match",
        f"`{DEVICE_ID_PATTERN}`. A device connects with its id as both username and client id,",
        "publishes only under its own id and may subscribe only to its own config topic (the",
        "broker refuses anything else; see docs/security.md). Devices connect over TLS (8883).",
        "",
        "| topic | what | QoS | retained |",
        "| --- | --- | --- | --- |",
        f"| `{ROOT}/{CONTRACT_VERSION}/<id>/event` | one event, or a batch envelope | 1 | no |",
        f"| `{ROOT}/{CONTRACT_VERSION}/<id>/status` | `online` / `offline`; the MQTT last will"
        " publishes `offline` | 1 | yes |",
        f"| `{ROOT}/{CONTRACT_VERSION}/<id>/config` | the device's self-description | 1 | yes |",
        "",
        "Connect with your device id as both client id and username, a persistent session is not",
        "needed. Set the last will to the `offline` status message (QoS 1, retained) and publish",
        "the `online` one, retained, after connecting.",
        "",
        "## Every event",
        "",
        "- `v`: the schema version, `1`. Any other version is refused with the reason",
        "  `unknown_schema_version`.",
        "- `type`: what happened (below).",
        "- `id`: a UUID the device chooses. A retry of the same event carries the same `id` and",
        "  `ts`, and is stored once.",
        "- `seq`: the device's own counter, +1 for every event, never reset (keep it across",
        "  reboots). The platform reports the exact missing ranges per device",
        "  (`villagetwin gaps`).",
        "- `ts`: the device's time, ISO 8601 with a UTC offset (`2026-11-26T20:15:00+08:00` or",
        "  `…Z`). A time without an offset is refused; so is one more than 5 minutes ahead of",
        "  reception or more than 30 days old. The platform also records when it received it.",
        "- Personal data never travels: a card, face, phone or plate is an opaque `credential`",
        "  reference, and an image is a `snapshot`/`photo` reference, never bytes.",
        "",
        "Messages of at most 256 KiB, nested at most 32 levels. A refused message is kept with its",
        "reason in the platform's dead letters; the rest of its batch is stored.",
        "",
        "## Batch envelope",
        "",
        "A gateway may send up to 1000 events of its own in one message:",
        "",
        "```json",
        json.dumps({"v": 1, "type": "batch", "device": "app-kaobutong",
                    "events": [json.loads(p.encode(EXAMPLES["app.checkin"][1])),
                               json.loads(p.encode(EXAMPLES["app.checkout"][1]))]},
                   ensure_ascii=False, indent=2),
        "```",
        "",
        "```json",
        _schema(p.BatchEnvelope),
        "```",
        "",
        "## Event types",
        "",
    ]  # fmt: skip
    kinds = {t: sorted(str(k) for k, ts in EVENT_TYPES_BY_KIND.items() if t in ts)
             for t in EXAMPLES}  # fmt: skip
    for model in event_models:
        type_name = model.model_fields["type"].default
        device, example = EXAMPLES[type_name]
        doc = (model.__doc__ or "").strip().split("\n")[0]
        out += [
            f"### `{type_name}`",
            "",
            *([doc, ""] if doc else []),
            f"Sent by: {', '.join(kinds[type_name])} devices.",
            "",
            "Example, and how to publish it with `mosquitto_pub`:",
            "",
            "```sh",
            f"mosquitto_pub -q 1 -t {ROOT}/{CONTRACT_VERSION}/{device}/event"
            f" -u {device} -P <password> \\",
            f"  -m '{p.encode(example).decode()}'",
            "```",
            "",
            "JSON Schema:",
            "",
            "```json",
            _schema(model),
            "```",
            "",
        ]  # fmt: skip
    status_online = p.encode(p.Status(state="online")).decode()
    config = p.DeviceConfig(device="acc-lh00001", kind=p.DeviceKind.ACCESS, building="LH00001",
                            floor=1, door="building", availability_topic="vt/v1/acc-lh00001/status",
                            model="DS-K1T671", firmware="3.2.0")  # fmt: skip
    out += [
        "## Status",
        "",
        "```sh",
        f"mosquitto_pub -q 1 -r -t {ROOT}/{CONTRACT_VERSION}/gate-west/status"
        f" -u gate-west -P <password> -m '{status_online}'",
        "```",
        "",
        "```json",
        _schema(p.Status),
        "```",
        "",
        "## Config",
        "",
        "```json",
        _example(config),
        "```",
        "",
        "```json",
        _schema(p.DeviceConfig),
        "```",
        "",
    ]  # fmt: skip
    alert = p.AlertMessage(alert_id=42, version=1, rule="smoke_fire", severity="critical",
                           status="open", subject="building:LH00012",
                           title="烟雾 smoke · LH00012 (stairwell:LH00012, 91%)",
                           grid_code="LH-G01", building_id="LH00012", device_id="cam-007",
                           first_seen=_TS, last_seen=_TS, occurrences=1,
                           evidence=[str(_id(3))])  # fmt: skip
    out += [
        "## Alerts (the platform publishes; devices do not)",
        "",
        "The rules worker (`villagetwin rules`) publishes every new alert and every change of",
        f"one (a repeat, acknowledged, resolved) on `{alert_topic('<severity>', '<rule>')}`,",
        "QoS 1, not retained, at least once: a subscriber keeps the highest `version` per",
        "`alert_id`. Severities: `critical`, `high`, `medium`, `low`. Subscribe to",
        f"`{ROOT}/{CONTRACT_VERSION}/{ALERTS}/critical/#` for smoke and fire only. No device may",
        f"take the id `{ALERTS}`; platform accounts may write under it.",
        "",
        "```sh",
        f"mosquitto_sub -q 1 -t '{ROOT}/{CONTRACT_VERSION}/{ALERTS}/#' -u <platform account>"
        " -P <password>",
        "```",
        "",
        "```json",
        _example(alert),
        "```",
        "",
        "```json",
        _schema(p.AlertMessage),
        "```",
        "",
    ]  # fmt: skip
    return "\n".join(out)
