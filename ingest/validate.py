"""Judging what devices send: every message becomes stored events or refusals with a reason.

Pure functions, no I/O: given one received MQTT message, the device registry as it is known
and the limits, say which events to store and what to refuse and why. One bad event in a
batch refuses that event only; the rest of the batch is stored.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from devices.adapters import (
    ADAPTERS,
    Adapted,
    AdapterError,
    Rejected,
    Retracted,
    Sighting,
    Skipped,
    VendorMessage,
    redact,
    redacted_payload,
    unwrap,
)
from devices.kinds import EVENT_TYPES_BY_KIND
from devices.payloads import (
    EVENT_ADAPTER,
    SUPPORTED_SCHEMA_VERSIONS,
    TYPED_BATCH_ADAPTER,
    BatchEnvelope,
    DeviceConfig,
    EventModel,
    Status,
    TypedBatch,
    parse_event,
)
from devices.topics import BridgeTopic, Channel, DeviceTopic, TopicError, is_bridge_topic

# The value types live in ingest/types.py; re-exported here so existing imports keep working.
from ingest.keys import with_key_id
from ingest.types import (
    ConfigUpdate as ConfigUpdate,
    EventRow as EventRow,
    KnownDevice as KnownDevice,
    Liveness as Liveness,
    Received as Received,
    Refusal as Refusal,
    Retraction as Retraction,
    StatusChange as StatusChange,
    Verdict as Verdict,
)

# JSON escapes PostgreSQL cannot store (NUL) or that may decode to a lone surrogate.
_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
# A number PostgreSQL cannot keep as written (1e-20000) underflows to zero in a double, or
# overflows to infinity, which every float field's bounds refuse. So only an event with a
# numeric field that reads zero is looked at again, for a number with a three-digit exponent
# (only a number ends at , } ] or a space, so the hex of a UUID does not match) or a run of
# 200 zeros (below 1e-300 without an exponent); if it has one, it goes the slow way, which
# reads every number as written. Scanning every payload for them cost 1-4 us per event.
_BIG_EXPONENT = re.compile(rb"[eE][-+]?[0-9]{3,}[,}\]\s]")
_ZERO_RUN = b"0" * 200
# Up to this size a payload cannot hold a number with more digits than numeric keeps, so a
# single event's JSON is stored as it arrived; a longer one is stored as re-serialised.
_RAW_TEXT_MAX = 16_000


class Reason(StrEnum):
    """Why a message or event was refused; the code operators filter dead letters by."""

    BAD_TOPIC = "bad_topic"
    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"
    UNSTORABLE_JSON = "unstorable_json"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    SCHEMA_INVALID = "schema_invalid"
    UNKNOWN_DEVICE = "unknown_device"
    REVOKED_DEVICE = "revoked_device"
    DEVICE_MISMATCH = "device_mismatch"
    WRONG_EVENT_FOR_KIND = "wrong_event_for_kind"
    TIMESTAMP_FUTURE = "timestamp_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    VENDOR_FORMAT = "vendor_format"
    # A number the database cannot keep as written: underflows to zero (1e-20000), overflows
    # to infinity (1e400), NaN or Infinity, or an integer of more than 20 digits.
    UNSTORABLE_NUMBER = "unstorable_number"
    # A number outside its field's range, which is never wider than its column's (a seq
    # beyond bigint, a confidence above 1, a count below 0).
    OUT_OF_RANGE = "out_of_range"
    # The judge itself failed on this message (a bug): kept, with the exception's text.
    INTERNAL_ERROR = "internal_error"
    # The database refused the row although the judge accepted it (found by bisecting the
    # failed batch); the detail is the database's message.
    UNSTORABLE_ROW = "unstorable_row"
    # Not a refusal of its own: how many of a device's dead letters were counted but not kept
    # because it exceeded its quota (VT_INGEST__DEAD_LETTER_QUOTA).
    DEAD_LETTER_QUOTA = "dead_letter_quota"
    UNIT_OUTSIDE_DEVICE_SCOPE = "unit_outside_device_scope"


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int = 256 * 1024
    max_depth: int = 32
    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=30)
    # What a dead letter keeps of a message over max_payload_bytes.
    oversized_prefix_bytes: int = 4096
    # Key of the hashes that replace faces, cards and plates in bridged vendor payloads, and
    # its id, which the references it makes carry (ingest/keys.py).
    credential_key: bytes = b""
    credential_key_id: str = ""
    # The village's zone: vendor times without a UTC offset are read in it, unless the
    # device's registry row names its own (devices.time_zone).
    time_zone: str = "Asia/Shanghai"


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _unstorable(data: Any) -> str | None:
    """PostgreSQL's jsonb refuses NUL characters and text that is not valid UTF-8 (a lone
    surrogate, which JSON's \\u escapes can produce)."""
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            if "\x00" in node:
                return "a string contains the NUL character (\\u0000)"
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return "a string contains a lone UTF-16 surrogate"
    return None


# pydantic's error types for a number outside its bounds.
_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _schema_reason(exc: ValidationError) -> Reason:
    """OUT_OF_RANGE when every error is a number outside its bounds, else SCHEMA_INVALID."""
    errors = exc.errors(include_url=False)
    if errors and all(error["type"] in _RANGE_ERRORS for error in errors):
        return Reason.OUT_OF_RANGE
    return Reason.SCHEMA_INVALID


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


class _Refuse(Exception):
    def __init__(self, reason: Reason, detail: str, device_id: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.device_id = device_id


def judge(
    message: Received,
    registry: Mapping[str, KnownDevice],
    limits: Limits = Limits(),
) -> Verdict:
    """Everything the ingester decides about one message. Never raises: an exception in the
    judge or an adapter becomes a dead letter with reason ``internal_error`` and its text."""
    try:
        return _judge(message, registry, limits)
    except _Refuse as refused:
        return Verdict(refusals=(_refusal(message, refused, message.payload, limits),))
    except Exception as exc:  # a bug must cost one message, not the ingester
        failed = _Refuse(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:1000])
        refusal = _refusal(message, failed, message.payload, limits)
        if is_bridge_topic(message.topic):
            # A vendor's raw payload may hold names, card numbers and faces: not kept.
            refusal = dataclasses.replace(refusal, payload=b"")
        return Verdict(refusals=(refusal,))


def storable_text(text: str) -> str:
    """``text`` as a PostgreSQL text column takes it: NUL and lone surrogates (which UTF-8
    cannot encode) replaced by U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def _refusal(message: Received, refused: _Refuse, raw: bytes, limits: Limits) -> Refusal:
    # An oversized message keeps only a prefix: its body is what made it a dead letter.
    keep = limits.oversized_prefix_bytes if len(raw) > limits.max_payload_bytes else len(raw)
    return Refusal(
        received_at=message.received_at,
        topic=storable_text(message.topic),
        device_id=refused.device_id,
        reason=refused.reason,
        detail=storable_text(refused.detail),
        payload=raw[:keep],
        payload_size=len(raw),
    )


def _judge_bridged(
    message: Received, registry: Mapping[str, KnownDevice], limits: Limits
) -> Verdict:
    """A vendor's payload on vt/bridge/<vendor>/<device>: adapted, then judged as native.

    Total: whatever an adapter raises becomes a ``vendor_format`` dead letter with the
    exception's text. A refusal never keeps the vendor's bytes: its dead letter holds the
    payload with personal values replaced by keyed references (devices.adapters.redact)."""
    device = None
    try:
        try:
            topic = BridgeTopic.parse(message.topic)
        except TopicError as exc:
            raise _Refuse(Reason.BAD_TOPIC, str(exc)) from None
        device = registry.get(topic.device_id)
        return _adapt_bridged(message, topic, registry, limits)
    except _Refuse as refused:
        return Verdict(refusals=(_bridge_refusal(message, refused, device, limits),))
    except Exception as exc:  # totality: an adapter's bug is a dead letter
        bug = _Refuse(
            Reason.VENDOR_FORMAT,
            f"{type(exc).__name__}: {exc}"[:2000],
            device.device_id if device else None,
        )
        return Verdict(refusals=(_bridge_refusal(message, bug, device, limits),))


def _bridge_refusal(
    message: Received,
    refused: _Refuse,
    device: KnownDevice | None,
    limits: Limits,
    kept: bytes | None = None,
) -> Refusal:
    if kept is None and len(message.payload) > limits.max_payload_bytes:
        kept = b'{"oversized": true}'  # not parsed: its size is the problem
    if kept is None:
        encoding = device.text_encoding if device else None
        try:
            kept = redacted_payload(message.payload, limits.credential_key, encoding)
        except Exception:  # keep nothing rather than the raw bytes
            kept = b'{"unreadable": true}'
    # The detail may quote vendor text: PostgreSQL's text holds neither NUL nor surrogates.
    detail = refused.detail.replace("\x00", "\\x00").encode("utf-8", "backslashreplace")
    return Refusal(
        received_at=message.received_at,
        topic=message.topic,
        device_id=refused.device_id,
        reason=refused.reason,
        detail=detail.decode(),
        payload=kept[: limits.max_payload_bytes],
        payload_size=len(message.payload),
    )


_PICTURES = (b"\xff\xd8\xff", b"\x89PNG\r\n", b"GIF87a", b"GIF89a")  # JPEG, PNG, GIF


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _set_zone_hint(device_id: str) -> str:
    return (
        f"set the device's zone: villagetwin devices bridge {device_id} --time-zone <IANA zone>"
        " (e.g. Asia/Shanghai), or the village's: VT_INGEST__TIME_ZONE"
    )


def _adapt_bridged(
    message: Received, topic: BridgeTopic, registry: Mapping[str, KnownDevice], limits: Limits
) -> Verdict:
    device_id = topic.device_id
    _check_size(message, limits, device_id)
    device = _known(registry, device_id)
    if not message.payload.strip():
        if message.retain or not message.payload:
            return Verdict()  # a cleared retained message (see _judge)
        raise _Refuse(Reason.VENDOR_FORMAT, f"{topic.vendor}: an empty payload", device_id)
    if message.payload.startswith(_PICTURES):
        # A picture alone (Frigate's <camera>/<label>/snapshot, forwarded by a bridge that
        # subscribes to everything): no event, and its bytes are never kept.
        return Verdict(notes=(f"{topic.vendor} skipped picture",))
    zone_name = device.time_zone or limits.time_zone
    try:
        zone = _zone(zone_name)
    except (ValueError, LookupError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise _Refuse(
            Reason.VENDOR_FORMAT,
            f"time zone {zone_name!r} is not an IANA zone; {_set_zone_hint(device_id)}",
            device_id,
        ) from None
    try:
        text, pictures = unwrap(message.payload, device.text_encoding)
        vendor = VendorMessage(
            device_id, device.kind.value, text, limits.credential_key, zone, pictures
        )
        items = ADAPTERS[topic.vendor](vendor)
    except AdapterError as exc:
        raise _Refuse(Reason.VENDOR_FORMAT, f"{topic.vendor}: {exc}", device_id) from None
    rows: list[EventRow] = []
    tracked: list[EventRow] = []
    refusals: list[Refusal] = []
    sightings: list[Liveness] = []
    notes: list[str] = []
    retracted: list[Retraction] = []
    status: StatusChange | None = None
    for item in items:
        if isinstance(item, Adapted):
            if limits.credential_key_id and item.event.get("credential"):
                # References name the key that made them (ingest/keys.py).
                item.event["credential"] = with_key_id(
                    item.event["credential"], limits.credential_key_id
                )
            try:
                problem = _unstorable(item.event)  # vendor text may hold NUL or surrogates
                if problem:
                    raise _Refuse(Reason.UNSTORABLE_JSON, problem, device_id)
                row = _event_row(item.event, message, device, limits)
            except _Refuse as refused:
                if item.local_time and refused.reason in (
                    Reason.TIMESTAMP_FUTURE,
                    Reason.TIMESTAMP_TOO_OLD,
                ):
                    refused.detail += (
                        "; the device sent local time without a UTC offset, read in"
                        f" {zone_name}: if its clock keeps another zone,"
                        f" {_set_zone_hint(device_id)}"
                    )
                kept = json.dumps(item.event, ensure_ascii=False, default=str).encode(
                    "utf-8", "backslashreplace"
                )
                refusals.append(_bridge_refusal(message, refused, device, limits, kept))
                continue
            if row.kind == "access.vendor":
                notes.append(f"{topic.vendor} unmapped {item.event.get('code')}")
            if row.kind == "camera.detection" and item.event.get("track"):
                tracked.append(row)
            else:
                rows.append(row)
        elif isinstance(item, Sighting) and not item.online:
            # The vendor says the device went away: a status change, like a native LWT.
            status = StatusChange(device_id, False, message.received_at, message.retain)
        elif isinstance(item, Sighting):
            sightings.append(
                Liveness(device_id, message.received_at, dict(item.status), message.retain)
            )
        elif isinstance(item, Retracted):
            ts = datetime.fromisoformat(item.ts)
            retracted.append(Retraction(device_id, UUID(item.event_id), ts))
            notes.append(f"{topic.vendor} retracted {item.why}")
        elif isinstance(item, Skipped):
            notes.append(f"{topic.vendor} skipped {item.why}")
        elif isinstance(item, Rejected):
            rejected = _Refuse(Reason.VENDOR_FORMAT, f"{topic.vendor}: {item.detail}", device_id)
            kept = json.dumps(
                {"redacted": redact(item.item, limits.credential_key)},
                ensure_ascii=False,
                default=str,
            ).encode("utf-8", "backslashreplace")
            refusals.append(_bridge_refusal(message, rejected, device, limits, kept))
        else:
            raise AdapterError(f"{topic.vendor}: the adapter returned {type(item).__name__}")
    return Verdict(
        events=tuple(rows),
        refusals=tuple(refusals),
        tracked=tuple(tracked),
        sightings=tuple(sightings),
        notes=tuple(notes),
        retracted=tuple(retracted),
        status=status,
    )


# pydantic-core's validators themselves: TypeAdapter's wrappers cost a tenth of a single event.
_validate_event_json = EVENT_ADAPTER.validator.validate_json
_validate_batch_json = TYPED_BATCH_ADAPTER.validator.validate_json

# A fleet publishes on a few thousand topics over and over: parse each once. Bad topics raise
# and are not cached, so the cache holds only real devices' topics.
_device_topic = lru_cache(maxsize=65_536)(DeviceTopic.parse)

_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], data: dict[str, Any], device_id: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _Refuse(_schema_reason(exc), _first_error(exc), device_id) from None


def _same_device(what: str, named: str, device_id: str) -> None:
    """A payload must name the device whose topic carried it."""
    if named != device_id:
        raise _Refuse(
            Reason.DEVICE_MISMATCH,
            f"{what} names device {named!r} but was published on {device_id!r}'s topic",
            device_id,
        )


def _check_size(message: Received, limits: Limits, device_id: str) -> None:
    size = len(message.payload)
    if size > limits.max_payload_bytes:
        raise _Refuse(
            Reason.OVERSIZED,
            f"{size} bytes, over the {limits.max_payload_bytes}-byte limit",
            device_id,
        )


def _known(registry: Mapping[str, KnownDevice], device_id: str) -> KnownDevice:
    device = registry.get(device_id)
    if device is None:
        raise _Refuse(Reason.UNKNOWN_DEVICE, f"device {device_id!r} is not registered", device_id)
    if device.revoked:
        raise _Refuse(Reason.REVOKED_DEVICE, f"device {device_id!r} was revoked", device_id)
    return device


def _judge(message: Received, registry: Mapping[str, KnownDevice], limits: Limits) -> Verdict:
    if is_bridge_topic(message.topic):
        return _judge_bridged(message, registry, limits)
    try:
        topic = _device_topic(message.topic)
    except TopicError as exc:
        raise _Refuse(Reason.BAD_TOPIC, str(exc)) from None
    device_id = topic.device_id
    _check_size(message, limits, device_id)
    if topic.channel is Channel.EVENT:
        fast = _fast_path(message, registry.get(device_id), limits)
        if fast is not None:
            return fast
    if not message.payload and (message.retain or topic.channel is not Channel.EVENT):
        # A zero-length publish clears a retained message: nothing to judge. Brokers forward
        # it live with the retain flag cleared, so on status and config it is always a clear.
        return Verdict()
    data = _decode(message.payload, limits, device_id)
    if not isinstance(data, dict):
        raise _Refuse(Reason.SCHEMA_INVALID, "the message is not a JSON object", device_id)
    version = data.get("v")
    if not isinstance(version, int) or version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise _Refuse(
            Reason.UNKNOWN_SCHEMA_VERSION,
            f"schema version v={version!r} is not supported (supported: {supported})",
            device_id,
        )
    device = _known(registry, device_id)

    if topic.channel is Channel.STATUS:
        status = _validated(Status, data, device_id)
        return Verdict(
            status=StatusChange(
                device_id, status.state == "online", message.received_at, message.retain
            )
        )
    if topic.channel is Channel.CONFIG:
        config = _validated(DeviceConfig, data, device_id)
        _same_device("config", config.device, device_id)
        if config.kind is not device.kind:
            raise _Refuse(
                Reason.DEVICE_MISMATCH,
                f"config says a {config.kind.value} device; the registry has a {device.kind.value}",
                device_id,
            )
        return Verdict(
            config=ConfigUpdate(
                device_id,
                config.building,
                config.floor,
                config.door,
                message.received_at,
                message.retain,
            )
        )

    if data.get("type") == "batch":
        batch = _validated(BatchEnvelope, data, device_id)
        _same_device("batch", batch.device, device_id)
        items = batch.events
    else:
        items = [data]

    return _judge_items(items, message, device, limits, keep_item=len(items) > 1)


def _judge_items(
    items: list[dict[str, Any]],
    message: Received,
    device: KnownDevice,
    limits: Limits,
    keep_item: bool,
) -> Verdict:
    """Each event on its own: a bad one is refused (keeping the item itself when it came in
    a batch, else the message), the rest are stored."""
    rows: list[EventRow] = []
    refusals: list[Refusal] = []
    for item in items:
        try:
            rows.append(_event_row(item, message, device, limits))
        except _Refuse as refused:
            raw = json.dumps(item, ensure_ascii=False).encode() if keep_item else message.payload
            refusals.append(_refusal(message, refused, raw, limits))
    return Verdict(events=tuple(rows), refusals=tuple(refusals))


def _fast_path(message: Received, device: KnownDevice | None, limits: Limits) -> Verdict | None:
    """Well-formed events, validated straight from bytes by pydantic-core; anything that does
    not pass goes the slow way, which finds the exact reason. Events have only flat fields, so
    a payload that validates can be neither too deep nor hold anything but the event."""
    payload = message.payload
    if device is None or device.revoked or _RISKY_ESCAPE.search(payload):
        return None
    bounds = _bounds(message.received_at, limits)
    try:
        if b'"batch"' in payload:
            batch: TypedBatch = _validate_batch_json(payload)
            if batch.device != device.device_id:
                return None
            if any(_reads_zero(event) for event in batch.events) and _risky_number(payload):
                return None
            return Verdict(
                events=tuple(
                    _row(event, message, device, limits, None, bounds) for event in batch.events
                )
            )
        event: EventModel = _validate_event_json(payload)
        if _reads_zero(event) and _risky_number(payload):
            return None
        text = payload.decode() if len(payload) <= _RAW_TEXT_MAX else None
        return Verdict(events=(_row(event, message, device, limits, text, bounds),))
    except (ValidationError, UnicodeDecodeError, _Refuse):
        return None


def _numeric_fields() -> dict[str, tuple[str, ...]]:
    """Per event type, the fields that hold a number (from the contract's models)."""
    out = {}
    for model in EventModel.__args__:
        numeric = [
            name
            for name, info in model.model_fields.items()
            if info.annotation in (int, float, int | None, float | None)
        ]
        out[model.model_fields["type"].default] = tuple(numeric)
    return out


_NUMERIC_FIELDS = _numeric_fields()


def _reads_zero(event: EventModel) -> bool:
    """Whether a numeric field of the validated event is zero (maybe an underflow)."""
    fields = event.__dict__
    for name in _NUMERIC_FIELDS[fields["type"]]:  # noqa: SIM110 - a loop costs less than any()
        if fields[name] == 0:
            return True
    return False


def _risky_number(payload: bytes) -> bool:
    return _ZERO_RUN in payload or _BIG_EXPONENT.search(payload) is not None


def _decode(payload: bytes, limits: Limits, device_id: str) -> Any:
    if payload.startswith(codecs.BOM_UTF8):  # the same rule as on bridge topics (unwrap)
        payload = payload[len(codecs.BOM_UTF8) :]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refuse(Reason.NOT_UTF8, f"not valid UTF-8 at byte {exc.start}", device_id) from None
    try:
        data = json.loads(text, parse_float=_float, parse_int=_int, parse_constant=_not_a_number)
    except _Refuse as refused:
        refused.device_id = device_id
        raise
    except RecursionError:
        raise _Refuse(Reason.TOO_DEEP, "nesting too deep to parse", device_id) from None
    except ValueError as exc:
        raise _Refuse(Reason.NOT_JSON, f"not JSON: {exc}", device_id) from None
    if _depth_exceeds(data, limits.max_depth):
        raise _Refuse(Reason.TOO_DEEP, f"nested deeper than {limits.max_depth} levels", device_id)
    problem = _unstorable(data)
    if problem:
        raise _Refuse(Reason.UNSTORABLE_JSON, problem, device_id)
    return data


def _float(literal: str) -> float:
    """A JSON number with a fraction or exponent, as the database would keep it: refused
    when it reads as zero though written non-zero (underflow) or as infinity (overflow)."""
    value = float(literal)
    if value == 0.0:
        mantissa = literal.partition("e")[0].partition("E")[0]
        if mantissa.strip("-+0.") != "":
            raise _Refuse(
                Reason.UNSTORABLE_NUMBER,
                f"the number {literal[:40]!r} underflows to zero in a double",
            )
    elif math.isinf(value):
        raise _Refuse(Reason.UNSTORABLE_NUMBER, f"the number {literal[:40]!r} overflows a double")
    return value


def _int(literal: str) -> int:
    """A JSON integer: more than 20 digits is beyond every integer column (bigint)."""
    if len(literal.lstrip("-")) > 20:
        raise _Refuse(
            Reason.UNSTORABLE_NUMBER,
            f"the integer {literal[:24]!r}… has {len(literal)} digits, beyond bigint",
        )
    return int(literal)


def _not_a_number(literal: str) -> float:
    raise _Refuse(Reason.UNSTORABLE_NUMBER, f"{literal} is not a JSON number")


def _event_row(
    item: dict[str, Any], message: Received, device: KnownDevice, limits: Limits
) -> EventRow:
    version = item.get("v", 1) if isinstance(item, dict) else 1
    if not isinstance(version, int) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise _Refuse(
            Reason.UNKNOWN_SCHEMA_VERSION,
            f"schema version v={item.get('v')!r} is not supported",
            device.device_id,
        )
    try:
        event: EventModel = parse_event(item)
    except ValidationError as exc:
        raise _Refuse(_schema_reason(exc), _first_error(exc), device.device_id) from None
    return _row(event, message, device, limits, None)


def _bounds(received_at: datetime, limits: Limits) -> tuple[datetime, datetime]:
    """The device times accepted for a message received at ``received_at``."""
    return received_at - limits.max_age, received_at + limits.max_future


def _row(
    event: EventModel,
    message: Received,
    device: KnownDevice,
    limits: Limits,
    text: str | None,
    bounds: tuple[datetime, datetime] | None = None,
) -> EventRow:
    """The checks that need the parsed event, then the row; ``text`` is the event's JSON when
    it arrived alone (stored as received), else it is serialised."""
    fields = event.__dict__  # not getattr: a missing field costs pydantic an exception
    ts, kind, received_at = fields["ts"], fields["type"], message.received_at
    _same_device("event", fields["device"], device.device_id)
    if kind not in EVENT_TYPES_BY_KIND[device.kind]:
        raise _Refuse(
            Reason.WRONG_EVENT_FOR_KIND,
            f"a {device.kind.value} device does not send {kind} events",
            device.device_id,
        )
    unit, units = fields.get("unit"), device.units
    if unit is not None and units is not None and unit not in units:
        raise _Refuse(
            Reason.UNIT_OUTSIDE_DEVICE_SCOPE,
            f"unit {unit!r} is outside device {device.device_id!r}'s scope"
            f" (building {device.building_id!r}; gates: the village)",
            device.device_id,
        )
    earliest, latest = bounds if bounds is not None else _bounds(received_at, limits)
    if ts > latest:
        raise _Refuse(
            Reason.TIMESTAMP_FUTURE,
            f"device time {ts.isoformat()} is more than {limits.max_future} ahead of"
            f" reception at {received_at.isoformat()}",
            device.device_id,
        )
    if ts < earliest:
        raise _Refuse(
            Reason.TIMESTAMP_TOO_OLD,
            f"device time {ts.isoformat()} is more than {limits.max_age.days} days old",
            device.device_id,
        )
    if text is None:
        text = event.__pydantic_serializer__.to_json(event, exclude_none=True).decode()
    return EventRow(
        ts,
        received_at,
        fields["id"],
        fields["device"],
        fields["seq"],
        kind,
        fields.get("building") or device.building_id,
        fields.get("unit"),
        fields.get("credential"),
        text,
        fields.get("granted"),
    )
