"""Adapters from real vendor formats to the v1 contract, for devices that cannot speak it.

A bridge next to the vendor's equipment (an HTTP listener for a Hikvision or Dahua terminal,
Frigate's own MQTT output) republishes the vendor's payload unchanged on
``vt/bridge/<vendor>/<device_id>``; the ingester turns it into v1 events here and then
validates them exactly like native ones. Pure functions: bytes in, event dicts out.

A face, a card number, a person's name or a plate is never kept: it becomes a keyed hash,
``cred:``/``face:``/``plate:`` + HMAC-SHA256(key, value), so the same person or vehicle is
recognisable across events without being readable (plates have too little entropy for an
unkeyed hash). Vendor formats that carry no sequence number get ``seq`` 0, which the gap
report leaves out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

BRIDGE_NAMESPACE = uuid.UUID("0d6d1f5e-3c0b-4f0e-9a57-3a2f7d3c1b90")
UNNUMBERED = 0

# Hikvision ISAPI AccessControllerEvent, major type 5 (access events): minor codes used here.
HIK_MINOR_FACE_PASS = 75
HIK_MINOR_FACE_FAIL = 76
HIK_MINOR_CARD_PASS = 1
HIK_MINOR_CARD_FAIL = 9
HIK_MINOR_DOOR_UNLOCKED = 21
HIK_MINOR_DOOR_LOCKED = 22
# Dahua AccessControl "Method": how the person was verified.
DAHUA_METHODS = {1: "card", 0: "pin", 15: "face", 2: "pin", 6: "app"}
# Frigate labels to our detection classes.
FRIGATE_CLASSES = {
    "person": "person",
    "car": "vehicle",
    "truck": "vehicle",
    "bus": "vehicle",
    "motorcycle": "ebike",
    "bicycle": "ebike",
    "fire": "fire",
    "smoke": "smoke",
}


class AdapterError(ValueError):
    """The payload is not the vendor format this bridge expects; says what was missing."""


Adapter = Callable[[str, bytes, bytes], list[dict[str, Any]]]


def reference(prefix: str, key: bytes, value: object) -> str:
    digest = hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:20]
    return f"{prefix}:{digest}"


def _event_id(vendor: str, device: str, *parts: object) -> str:
    return str(uuid.uuid5(BRIDGE_NAMESPACE, "/".join([vendor, device, *map(str, parts)])))


def _epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdapterError(f"not JSON: {exc}") from None


def hikvision(device: str, payload: bytes, key: bytes) -> list[dict[str, Any]]:
    """ISAPI event notifications (``AccessControllerEvent``) and ``AcsEvent`` search items."""
    data = _json(payload)
    if not isinstance(data, dict):
        raise AdapterError("expected a JSON object")
    if "AccessControllerEvent" in data:
        event, when = data["AccessControllerEvent"], data.get("dateTime")
        major, minor = event.get("majorEventType"), event.get("subEventType")
        serial = event.get("serialNo")
    elif "major" in data and "minor" in data:
        event, when = data, data.get("time")
        major, minor, serial = data["major"], data["minor"], None
    else:
        raise AdapterError("neither an AccessControllerEvent nor an AcsEvent item")
    if major != 5:
        raise AdapterError(f"major event type {major} is not an access event (5)")
    if not when:
        raise AdapterError("no dateTime")
    seq = int(serial) if isinstance(serial, int) else UNNUMBERED
    person = event.get("employeeNoString") or event.get("cardNo")
    door = "unit" if event.get("doorNo", 1) > 1 else "building"
    base = {
        "v": 1,
        "id": _event_id("hikvision", device, serial if serial is not None else when, minor),
        "device": device,
        "seq": seq,
        "ts": when,
    }
    if minor in (
        HIK_MINOR_FACE_PASS,
        HIK_MINOR_FACE_FAIL,
        HIK_MINOR_CARD_PASS,
        HIK_MINOR_CARD_FAIL,
    ):
        face = minor in (HIK_MINOR_FACE_PASS, HIK_MINOR_FACE_FAIL)
        granted = minor in (HIK_MINOR_FACE_PASS, HIK_MINOR_CARD_PASS)
        credential = reference("face" if face else "cred", key, person) if person else (
            "face:unmatched" if face else "cred:unknown"
        )  # fmt: skip
        method = "face" if face else "card"
        return [{**base, "type": "access.unlock", "door": door, "method": method,
                 "credential": credential, "granted": granted}]  # fmt: skip
    if minor in (HIK_MINOR_DOOR_UNLOCKED, HIK_MINOR_DOOR_LOCKED):
        state = "unlocked" if minor == HIK_MINOR_DOOR_UNLOCKED else "locked"
        return [{**base, "type": "access.door", "door": door, "state": state}]
    raise AdapterError(f"access event minor type {minor} is not mapped")


def dahua(device: str, payload: bytes, key: bytes) -> list[dict[str, Any]]:
    """Dahua access control: the HTTP upload JSON (``Events``) or an eventManager line."""
    text = payload.decode("utf-8", errors="replace").strip()
    if text.startswith("Code="):
        fields = dict(part.split("=", 1) for part in text.split(";", 3) if "=" in part)
        if fields.get("Code") != "AccessControl":
            raise AdapterError(f"event code {fields.get('Code')!r} is not AccessControl")
        items: Any = [{"Code": "AccessControl", "Data": _json(fields.get("data", "").encode())}]
    else:
        data = _json(payload)
        items = data.get("Events") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise AdapterError("no Events list")
    events = []
    for item in items:
        if item.get("Code") != "AccessControl":
            raise AdapterError(f"event code {item.get('Code')!r} is not AccessControl")
        d = item.get("Data") or {}
        seconds = d.get("RealUTC") or d.get("UTC")
        if not isinstance(seconds, int | float):
            raise AdapterError("no UTC time")
        person = d.get("UserID") or d.get("CardNo")
        method = DAHUA_METHODS.get(d.get("Method", 1), "card")
        credential = (
            reference("face" if method == "face" else "cred", key, person)
            if person
            else "cred:unknown"
        )
        events.append(
            {
                "v": 1,
                "type": "access.unlock",
                "id": _event_id(
                    "dahua", device, seconds, person, d.get("ReaderID"), d.get("RecNo")
                ),
                "device": device,
                "seq": int(d["RecNo"]) if isinstance(d.get("RecNo"), int) else UNNUMBERED,
                "ts": _epoch(seconds),
                "door": "unit" if int(d.get("Door", 0) or 0) > 0 else "building",
                "method": method,
                "credential": credential,
                "granted": d.get("Status", 1) == 1 and not d.get("ErrorCode"),
            }
        )  # fmt: skip
    return events


def alphadigi(device: str, payload: bytes, key: bytes) -> list[dict[str, Any]]:
    """AlphaDigi/Vzenith ``AlarmInfoPlate``: a vehicle gate camera read a plate."""
    data = _json(payload)
    try:
        info = data["AlarmInfoPlate"]
        plate = info["result"]["PlateResult"]
        seconds = plate["timeStamp"]["Timeval"]["sec"]
    except (KeyError, TypeError):
        raise AdapterError("no AlarmInfoPlate.result.PlateResult with a timeStamp") from None
    license_plate = plate.get("license")
    if not license_plate:
        raise AdapterError("no plate was read")
    # Vzenith's direction: 4 is a vehicle moving away from the camera (leaving).
    return [
        {
            "v": 1,
            "type": "gate.pass",
            "id": _event_id("alphadigi", device, info.get("serialno"), seconds, license_plate),
            "device": device,
            "seq": UNNUMBERED,
            "ts": _epoch(seconds),
            "direction": "out" if plate.get("direction") == 4 else "in",
            "method": "plate",
            "granted": True,
            "credential": reference("plate", key, license_plate),
        }
    ]


def frigate(device: str, payload: bytes, key: bytes) -> list[dict[str, Any]]:
    """Frigate's ``frigate/events`` (new/update/end) and its tracked-object updates (face,
    plate). The camera's name becomes the detection's zone; images stay in Frigate."""
    data = _json(payload)
    if not isinstance(data, dict):
        raise AdapterError("expected a JSON object")
    kind = data.get("type")
    if kind in ("new", "update", "end") and isinstance(data.get("after"), dict):
        after = data["after"]
        label = after.get("label")
        cls = FRIGATE_CLASSES.get(label)
        if cls is None:
            raise AdapterError(f"label {label!r} is not a class this platform records")
        sub = after.get("sub_label")
        name = sub[0] if isinstance(sub, list) and sub else sub
        zones = after.get("current_zones") or [after.get("camera") or "none"]
        event = {
            "v": 1,
            "type": "camera.detection",
            "id": _event_id("frigate", device, after.get("id"), after.get("frame_time")),
            "device": device,
            "seq": UNNUMBERED,
            "ts": _epoch(float(after["frame_time"])),
            "cls": cls,
            "count": 1,
            "confidence": float(after.get("top_score") or after.get("score") or 0),
            "zone": str(zones[-1])[:64],
        }
        if after.get("has_snapshot"):
            event["snapshot"] = f"frigate/{after.get('id')}"
        if name:
            event["credential"] = reference("face", key, name)
        return [event]
    if kind in ("face", "lpr"):
        value = data.get("name") if kind == "face" else data.get("plate")
        if not value:
            raise AdapterError(f"a {kind} update with nothing recognised")
        return [
            {
                "v": 1,
                "type": "camera.detection",
                "id": _event_id("frigate", device, data.get("id"), kind, data.get("timestamp")),
                "device": device,
                "seq": UNNUMBERED,
                "ts": _epoch(float(data["timestamp"])),
                "cls": "person" if kind == "face" else "vehicle",
                "count": 1,
                "confidence": float(data.get("score") or 0),
                "zone": str(data.get("camera") or "none")[:64],
                "credential": reference("face" if kind == "face" else "plate", key, value),
            }
        ]
    raise AdapterError(f"Frigate message type {kind!r} is not mapped")


ADAPTERS: dict[str, Adapter] = {
    "hikvision": hikvision,
    "dahua": dahua,
    "alphadigi": alphadigi,
    "frigate": frigate,
}
