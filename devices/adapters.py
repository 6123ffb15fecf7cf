"""Adapters from real vendor formats to the v1 contract, for devices that cannot speak it.

A bridge next to the vendor's equipment (an HTTP listener for a Hikvision or Dahua terminal,
Frigate's own MQTT output) republishes the vendor's payload unchanged on
``vt/bridge/<vendor>/<device_id>``; the ingester turns it into v1 events here and then
validates them exactly like native ones. Pure functions: bytes in, event dicts out.

There is ONE registry of vendors, ``ADAPTERS``: a function decorated with
``@bridge_vendor("name")`` is all a new vendor needs (the bridge topic grammar, the ACL and the
ingester all read this registry). The contract every adapter follows is ``VendorAdapter``'s.

The transport is undone before an adapter sees the payload (``unwrap``): a ``multipart/form-data``
body (Hikvision and Dahua terminals post a JSON part beside JPEG parts) gives its text part and
the number of pictures, whose bytes are dropped; a UTF-8 byte-order mark is removed; text that is
not UTF-8 is read as GB18030 (the superset of GBK that cheap plate cameras and old controllers
send), or in the device's own encoding when the registry names one.

A face, a card number, a person's name or a plate is never kept: it becomes a keyed hash,
``cred:``/``face:``/``plate:`` + HMAC-SHA256(key, value), so the same person or vehicle is
recognisable across events without being readable (plates have too little entropy for an
unkeyed hash). A plate is normalised first (``plate_text``), so a gate camera and Frigate give the
same reference for the same plate; a "no plate" placeholder (无牌车, ``_无_``, 未识别, all
zeros, …) gives no credential at all and the event is flagged ``unlicensed``. Vendor formats that
carry no sequence number get ``seq`` 0, which the gap report leaves out.

Vendor code tables (sources):
- Hikvision ISAPI ``AccessControllerEvent`` major 5 (event) minor codes: HCNetSDK's ``MINOR_*``
  constants (e.g. Hikvision's HEOP demo ``EventType.kt``: 0x01 card pass, 0x26 fingerprint pass,
  0x4b face pass, 0x9c QR pass, 0xb5 password pass, 0x17 exit button, 0x400 remote open).
- Dahua ``AccessControl`` ``Method``: the NetSDK enum ``NET_ACCESS_DOOROPEN_METHOD`` less one
  (the HTTP upload counts from 0: 0 password, 1 card, 4 remote, 5 exit button, 6 fingerprint,
  14 QR, 15 face; the samples' card and face entries agree).
- Frigate ``frigate/events`` (new/update/end, ``false_positive``, ``sub_label``,
  ``recognized_license_plate``) and ``frigate/tracked_object_update``: docs.frigate.video.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import json
import math
import re
import unicodedata
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Protocol

BRIDGE_NAMESPACE = uuid.UUID("0d6d1f5e-3c0b-4f0e-9a57-3a2f7d3c1b90")
UNNUMBERED = 0


class AdapterError(ValueError):
    """The payload is not the vendor format this bridge expects; says what was missing."""


# --- what an adapter gets and gives -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VendorMessage:
    """One bridged message, its transport undone: what every adapter receives."""

    device_id: str
    kind: str  # the registered device's kind: gate, camera, access, app
    text: str  # the vendor's payload as text (multipart, BOM and encoding already undone)
    key: bytes  # the credential key for ``reference``
    zone: tzinfo  # the device's time zone, for vendor times without a UTC offset
    pictures: int = 0  # pictures the transport carried (their bytes are not kept)

    def reference(self, prefix: str, value: object) -> str:
        """The keyed reference of a personal ``value`` with this message's credential key:
        ``"<prefix>:<20 hex digits>"`` (see module-level ``reference``)."""
        return reference(prefix, self.key, value)

    def plate(self, value: object) -> tuple[str | None, bool]:
        """(plate credential or None, unlicensed): a placeholder gives (None, True)."""
        text = plate_text(value)
        return (None, True) if text is None else (reference("plate", self.key, text), False)


@dataclass(frozen=True, slots=True)
class Adapted:
    """A v1 event as a dict, validated by the ingester like a native one. ``local_time``: its
    ``ts`` came from a vendor time without an offset, read in the device's zone."""

    event: dict[str, Any]
    local_time: bool = False


@dataclass(frozen=True, slots=True)
class Sighting:
    """The device is alive (a heartbeat) and, optionally, vendor status flags such as
    ``{"videoloss": False}``: it moves the device's last-seen time, stores no event."""

    what: str
    status: Mapping[str, bool] = field(default_factory=dict)
    # False: the vendor says the device went away (Frigate's ``offline`` will): a status change
    # to offline, not a sign of life.
    online: bool = True


@dataclass(frozen=True, slots=True)
class Skipped:
    """Understood, and deliberately not an event (e.g. Frigate's false positives); counted."""

    why: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """One event of a message that holds several could not be read: it alone is dead-lettered
    (with ``item`` redacted), the others are stored."""

    detail: str
    item: Any = None


@dataclass(frozen=True, slots=True)
class Retracted:
    """A detection stored earlier is withdrawn (Frigate marked its tracked object a false
    positive): the row with this ``event_id`` and ``ts`` is removed, with its counts."""

    event_id: str
    ts: str
    why: str


Item = Adapted | Sighting | Skipped | Rejected | Retracted


class VendorAdapter(Protocol):
    """The contract of a vendor adapter, registered with ``@bridge_vendor(name)``.

    Receives a ``VendorMessage`` (text already decoded, the device's kind, zone and credential
    key) and returns a sequence of items, in the order the payload holds them:

    - ``Adapted``: a v1 event dict (``v``, ``type``, ``id``, ``device``, ``seq``, ``ts`` and the
      type's fields). The ingester validates it like a native event. The ``id`` must be stable
      for the same vendor event (``event_id``), so a resend is a duplicate. Personal values go
      through ``message.reference`` / ``message.plate``, never into the dict in the clear.
    - ``Sighting``: a heartbeat or status message: liveness, not an event.
    - ``Skipped``: recognised and deliberately dropped (counted in metrics).
    - ``Rejected``: one event of several could not be read; the rest still count.

    An empty sequence is allowed (nothing to store). For a payload that is not this vendor's
    format at all it raises ``AdapterError`` with what was missing: the message becomes one
    dead letter with reason ``vendor_format``. Any other exception is a bug, but the ingester
    treats it the same way (``vendor_format`` with the exception's text), so an adapter can
    never stop ingestion. Adapters are pure: no I/O, no clock, no global state.
    """

    def __call__(self, message: VendorMessage) -> Sequence[Item]: ...


ADAPTERS: dict[str, VendorAdapter] = {}
_VENDOR_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def bridge_vendor(name: str) -> Callable[[VendorAdapter], VendorAdapter]:
    """Registers an adapter for ``vt/bridge/<name>/<device>``; raises ValueError for a bad or
    taken name."""

    def register(adapter: VendorAdapter) -> VendorAdapter:
        if not _VENDOR_NAME.fullmatch(name):
            raise ValueError(f"vendor name {name!r} does not match {_VENDOR_NAME.pattern}")
        if name in ADAPTERS:
            raise ValueError(f"vendor {name!r} already has an adapter")
        ADAPTERS[name] = adapter
        return adapter

    return register


# --- identity ---------------------------------------------------------------------------------


def reference(prefix: str, key: bytes, value: object) -> str:
    """``"<prefix>:<hex>"``: the first 20 hex digits (80 bits) of HMAC-SHA256(``key``,
    ``str(value)`` as UTF-8) (HMAC: RFC 2104). The same key and value always give the same
    reference; without the key it cannot be reversed or recomputed. ``prefix`` is ``cred``, ``face``
    or ``plate``."""
    digest = hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:20]
    return f"{prefix}:{digest}"


# What plate readers put in the plate field when they read none (Chinese and English forms).
NO_PLATE_WORDS = frozenset(
    {"无牌", "无牌车", "无车牌", "无", "未识别", "未知", "识别失败", "车牌", "NOPLATE", "NONE",
     "NULL", "UNKNOWN", "NA", "N/A", "NOTAVAILABLE", "UNREAD", "UNRECOGNIZED", "UNLICENSED",
     "UNLICENCED", "NOPLATES", "NOTREAD", "NOTFOUND", "NOTRECOGNIZED", "NOLICENSE"}
)  # fmt: skip
# Words that say "none", "not yet" or "failed" (simplified and traditional): no plate holds them.
NO_PLATE_MARKS = ("无", "無", "未", "失败", "失敗", "不详", "不詳", "不明", "没有", "沒有")
_PLATE_SEPARATORS = re.compile(r"[\s·•・.\-_]+")
# Province abbreviations that start a mainland plate (GA 36-2018).
PROVINCES = frozenset("京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼")
# Hikvision's HCNetSDK and some Dahua firmware put the plate's colour first (蓝粤A12345).
_PLATE_COLOURS = ("黄绿", "渐变绿", "蓝", "黄", "白", "黑", "绿")
_WILDCARDS = frozenset("*?#")


def plate_text(value: object) -> str | None:
    """The plate as stored (NFKC, upper case, no separators, no leading colour word), or None
    for a placeholder: empty, a "no plate" word or anything holding 无/無, 未 or 失败 (no plate
    has them), a partial read with wildcards (``粤A*****``), fewer than two letters or digits
    (``京A``), or one character repeated (``0000000``, ``XXXXXXX``) after the province, or
    only zeros after the province and city letter (``粤A00000``)."""
    if not isinstance(value, str | int):
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip().upper()
    if any(mark in text for mark in NO_PLATE_MARKS):
        return None
    text = _PLATE_SEPARATORS.sub("", text)
    for colour in _PLATE_COLOURS:
        rest = text[len(colour) :]
        if text.startswith(colour) and rest[:1] in PROVINCES and len(rest) >= 7:
            text = rest
            break
    if not text or text.strip("*?#") in NO_PLATE_WORDS or _WILDCARDS & set(text):
        return None
    if sum(ch.isascii() and ch.isalnum() for ch in text) < 2:
        return None
    tail = text[1:] if not text[0].isascii() else text
    if len(tail) > 2 and len(set(tail)) == 1:
        return None
    if not text[0].isascii() and len(tail) > 3 and set(tail[1:]) == {"0"}:
        return None  # 粤A00000: the province and city letter, then nothing read
    return text


def event_id(vendor: str, device: str, *parts: object) -> str:
    """A stable event id from the vendor event's own identity."""
    return str(uuid.uuid5(BRIDGE_NAMESPACE, "/".join([vendor, device, *map(str, parts)])))


# --- time ---------------------------------------------------------------------------------------


# Compact local times: 20261129201500 and Hikvision's absTime 20261129201500555 (milliseconds).
_COMPACT_TIME = re.compile(r"(\d{4})(\d\d)(\d\d)[T ]?(\d\d)(\d\d)(\d\d)(\d{3})?")
_EPOCH_MS = 10**11  # a POSIX time above this is in milliseconds (10**11 s is the year 5138)


def device_time(value: object, zone: tzinfo) -> tuple[str, bool]:
    """(ISO 8601 with an offset, whether it was local time read in ``zone``) from epoch seconds
    or milliseconds (a number or a digit string), an ISO 8601 / ``YYYY-MM-DD HH:MM:SS`` text
    (also with ``/`` between the date's parts), or a compact ``YYYYMMDDHHMMSS[mmm]``; raises
    AdapterError for anything else."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d{9,13}(\.\d+)?\s*", value):
        value = float(value)  # epoch as a digit string (Dahua's UTC from some firmware)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= _EPOCH_MS:
            value = value / 1000
        if not math.isfinite(value) or not 0 <= value < 32503680000:  # before year 3000
            raise AdapterError(f"device time {value!r} is not a POSIX time")
        return datetime.fromtimestamp(value, UTC).isoformat(), False
    if isinstance(value, str) and value.strip():
        text = value.strip()
        compact = _COMPACT_TIME.fullmatch(text)
        try:
            if compact:
                y, mo, d, h, mi, s, ms = compact.groups()
                parsed = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s),
                                  int(ms or 0) * 1000)  # fmt: skip
            else:
                if re.match(r"\d{4}/\d{1,2}/\d{1,2}", text):
                    day, _, rest = text.partition(" ")
                    y, mo, d = day.split("/")
                    text = f"{y}-{int(mo):02d}-{int(d):02d}" + (f" {rest}" if rest else "")
                parsed = datetime.fromisoformat(text)
        except ValueError:
            raise AdapterError(f"device time {value[:40]!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=zone).isoformat(), True
        return parsed.isoformat(), False
    raise AdapterError("no device time")


# --- transport ----------------------------------------------------------------------------------


def decode_text(data: bytes, encoding: str | None = None) -> str:
    """Text from bytes: a UTF-8 BOM is dropped; a UTF-16 BOM, or the NULs of ASCII-led UTF-16
    without one, select UTF-16; else ``encoding`` when given, else UTF-8, else GB18030 (which
    reads GBK and GB2312). Raises AdapterError when none fits."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]  # then detected as usual: tools prepend it blindly
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # Windows-side bridges; the codec reads and drops the BOM
    elif len(data) >= 4 and not encoding and data[1] == 0 and data[3] == 0 and data[0]:
        encoding = "utf-16-le"  # ASCII-led UTF-16 without a BOM: every other byte is NUL
    elif len(data) >= 4 and not encoding and data[0] == 0 and data[2] == 0 and data[1]:
        encoding = "utf-16-be"
    try:
        return data.decode(encoding or "utf-8")
    except LookupError:
        raise AdapterError(f"unknown text encoding {encoding!r} in the registry") from None
    except UnicodeDecodeError as exc:
        if encoding:
            raise AdapterError(f"not {encoding} text at byte {exc.start}") from None
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise AdapterError(f"neither UTF-8 nor GB18030 text (byte {exc.start})") from None


_BOUNDARY = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*--([^\r\n]{1,200})\r?\n")
_HEADED = re.compile(rb"\A\s*content-type:\s*multipart/", re.IGNORECASE)
# A boundary after a preamble ("This is a multi-part message…"): a ``--x`` line then a header.
_PREAMBLED = re.compile(rb"(?:\r?\n)--([!-~][^\r\n]{0,199})\r?\n(?=[Cc]ontent-)")
# A bridge that kept the whole HTTP request: ``POST /path HTTP/1.1`` and its headers.
_REQUEST_LINE = re.compile(rb"\A\s*[A-Z]{3,7} \S+ HTTP/\d(?:\.\d)?\r?\n")
_MULTIPART_HEADER = re.compile(rb"^content-type:\s*multipart/", re.IGNORECASE | re.MULTILINE)
_PICTURE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")
_TEXT_TYPES = ("text/", "application/json", "application/xml")
_KEEPALIVES = frozenset({"heartbeat", "keepalive"})  # Dahua's bare keep-alive parts


def unwrap(payload: bytes, encoding: str | None = None) -> tuple[str, int]:
    """(text, pictures): a ``multipart/form-data`` body gives its first non-image part, and
    the number of image parts (whose bytes are dropped); anything else is decoded whole.
    Raises AdapterError for a multipart body with no text part, or text in no encoding that
    fits (``decode_text``)."""
    preamble = b""
    request = _REQUEST_LINE.match(payload)
    if request:
        head_end = re.search(rb"\r?\n\r?\n", payload)
        head = payload[: head_end.start()] if head_end else payload
        if not _MULTIPART_HEADER.search(head):
            if b" /iclock/" in payload[: request.end()]:
                return decode_text(payload, encoding), 0  # ZKTeco's adapter reads its query
            content = payload[head_end.end() :] if head_end else b""
            return decode_text(content, encoding), 0
        payload = payload[request.end() :]  # the headers that follow are MIME headers
        message = BytesParser(policy=HTTP).parsebytes(payload)
    elif _HEADED.match(payload):  # the bridge kept the HTTP Content-Type header
        message = BytesParser(policy=HTTP).parsebytes(payload.lstrip())
    else:
        match = _BOUNDARY.match(payload) or _PREAMBLED.search(payload[:1024])
        if match is None:
            return decode_text(payload, encoding), 0
        preamble = payload[: match.start()].strip()
        boundary = match.group(1).rstrip(b" \t").decode("latin-1")
        header = f'Content-Type: multipart/form-data; boundary="{boundary}"\r\n\r\n'
        message = BytesParser(policy=HTTP).parsebytes(
            header.encode("latin-1") + payload[match.start(1) - 2 :]
        )
    texts: list[str] = []
    if preamble.startswith(b"Code="):  # a Dahua stream cut mid-part: its first record
        texts.append(decode_text(preamble, encoding))
    pictures = 0
    parts = message.iter_parts() if message.is_multipart() else ()
    for part in parts:
        body = part.get_payload(decode=True)
        declared = part.get_content_type()
        # Hikvision names its XML part as a file (filename="MoveDetection.xml"): a part is a
        # picture by its type or its bytes, a file name alone only when its body is not text.
        texty = declared.startswith(_TEXT_TYPES) or (
            isinstance(body, bytes) and body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"<")
        )
        if (
            part.get_content_maintype() == "image"
            or (isinstance(body, bytes) and body.startswith(_PICTURE_MAGIC))
            or (not texty and (declared == "application/octet-stream" or part.get_filename()))
        ):
            pictures += 1
            continue
        if isinstance(body, bytes) and body.strip():
            texts.append(decode_text(body, part.get_content_charset() or encoding))
    if not texts:
        raise AdapterError(f"a multipart body with no text part ({pictures} pictures)")
    if any(text.lstrip().startswith("Code=") for text in texts) and all(
        text.lstrip().startswith("Code=") or text.strip().lower() in _KEEPALIVES for text in texts
    ):  # Dahua's event stream: one event (or a keep-alive) a part
        return "\n".join(text.strip() for text in texts), pictures
    return texts[0], pictures


def parse_json(text: str) -> Any:
    """The payload text parsed as JSON (a dict, list or scalar, as ``json.loads`` gives it).

    Raises AdapterError ("not JSON: …", with the parser's position) when it does not parse."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AdapterError(f"not JSON: {exc}") from None


def parse_xml(text: str) -> dict[str, Any]:
    """An XML event (Hikvision's ``EventNotificationAlert``) as nested dicts, namespaces
    dropped; a DOCTYPE (entities) is refused outright."""
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise AdapterError("XML with a DOCTYPE or entities is not accepted")
    # The text is decoded already: an encoding="GB2312" declaration would mislead the parser.
    text = re.sub(r"\A\s*<\?xml[^>]*\?>", "", text)
    try:
        root = ET.fromstring(text.encode())
    except ET.ParseError as exc:
        raise AdapterError(f"not XML: {exc}") from None

    def convert(node: ET.Element) -> Any:
        children = list(node)
        if not children:
            return (node.text or "").strip()
        out: dict[str, Any] = {}
        for child in children:
            out[child.tag.rsplit("}", 1)[-1]] = convert(child)
        return out

    return {root.tag.rsplit("}", 1)[-1]: convert(root)}


def structured(text: str) -> Any:
    """JSON, or XML when the text starts with ``<``."""
    stripped = text.lstrip()
    if stripped.startswith("<"):
        return parse_xml(stripped)
    return parse_json(stripped)


# --- personal data in dead letters -----------------------------------------------------------

# Keys (compared in lower case) whose values are personal, and the reference they become: the
# same prefixes accepted events use, so an operator can match a dead letter to its person.
PERSONAL_KEYS: dict[str, str] = {
    "cardno": "cred", "card": "cred", "cardnumber": "cred", "employeenostring": "cred",
    "employeeno": "cred", "userid": "cred", "personid": "cred", "idcardno": "cred",
    "idnumber": "cred", "certificatenumber": "cred", "phone": "cred", "phonenumber": "cred",
    "name": "name", "cardname": "name", "username": "name", "personname": "name",
    "sub_label": "name", "license": "plate", "licenseplate": "plate", "plate": "plate",
    "platenumber": "plate", "plateno": "plate", "recognized_license_plate": "plate",
    "originallicenseplate": "plate", "facedata": "face", "picdata": "face", "image": "face",
    "imagedata": "face", "picture": "face", "facepicture": "face", "snappicture": "face",
    "pictureurl": "face", "faceurl": "face", "picurl": "face",
    # ID cards (Hikvision IDCardInfo, Dahua's citizen fields), addresses, birth dates, the card
    # number of Dahua's DoorCard event, and the base64 images plate cameras and face readers
    # embed (AlphaDigi imageFile/imageFragmentFile, faceImage).
    "citizenidno": "cred", "citizenid": "cred", "idno": "cred", "idnum": "cred",
    "certificateno": "cred", "certno": "cred", "passportno": "cred", "number": "cred",
    "mobile": "cred", "addr": "name", "address": "name", "birth": "name", "birthday": "name",
    "dateofbirth": "name", "faceimage": "face", "imagefile": "face", "imagefragmentfile": "face",
    "snappic": "face", "pic": "face", "facepic": "face", "picturedata": "face",
}  # fmt: skip
# A picture embedded as text under a key no table names: base64 this long, or a data: URL.
_EMBEDDED_PICTURE = re.compile(r"(?:data:image/[\w.+-]+;base64,)?[A-Za-z0-9+/\r\n]{200,}={0,2}")
# The digest is HMAC(key, value) as in accepted events; the prefix may differ where only the
# event's method tells (an employee number is ``face:`` on a face unlock, ``cred:`` here).


def redact(data: Any, key: bytes) -> Any:
    """``data`` with every personal value replaced by its keyed reference (plates normalised
    as accepted events have them; a "no plate" placeholder stays, it names nobody)."""
    if isinstance(data, dict):
        out = {}
        for name, value in data.items():
            prefix = PERSONAL_KEYS.get(str(name).lower())
            if prefix is None or value is None or value == "" or isinstance(value, bool):
                out[name] = redact(value, key)
            elif prefix == "plate":
                text = plate_text(value) if isinstance(value, str | int) else None
                out[name] = value if text is None else reference("plate", key, text)
            elif isinstance(value, list) and value and isinstance(value[0], str):
                out[name] = reference(prefix, key, value[0])  # Frigate's [name, score]
            elif isinstance(value, list | dict):
                out[name] = reference(prefix, key, json.dumps(value, sort_keys=True))
            else:
                out[name] = reference(prefix, key, value)
        return out
    if isinstance(data, list):
        return [redact(value, key) for value in data]
    if isinstance(data, str) and _EMBEDDED_PICTURE.fullmatch(data):
        return reference("face", key, data)
    return data


def redacted_payload(payload: bytes, key: bytes, encoding: str | None = None) -> bytes:
    """What a dead letter from a bridge keeps instead of the payload: its JSON (or XML, or
    Dahua's ``Code=…;data={…}`` lines) with personal values replaced; for a payload that cannot
    be read, only a keyed reference to the bytes. Picture parts are never kept."""
    try:
        text, pictures = unwrap(payload, encoding)
        if text.lstrip().startswith("Code="):
            lines = [_dahua_line(record) for record in _dahua_records(text)]
            data: Any = {"lines": lines}
        else:
            data = structured(text)
    except Exception:  # the payload cannot be read: keep none of it
        unread = {"unreadable": reference("raw", key, payload.hex()), "bytes": len(payload)}
        return json.dumps(unread).encode()
    kept = {"redacted": redact(data, key)}
    if pictures:
        kept["pictures_dropped"] = pictures
    return json.dumps(kept, ensure_ascii=False).encode("utf-8", "backslashreplace")


# --- Hikvision --------------------------------------------------------------------------------

HIK_MAJOR_EVENT = 5
HIK_MAJOR_OPERATION = 3
# Credential uses: minor -> (method, granted). Combined modes (card + fingerprint, face + PIN
# ...) take the biometric, which identifies the person.
HIK_CREDENTIALS: dict[int, tuple[str, bool]] = {
    0x01: ("card", True), 0x02: ("card", True), 0x03: ("card", False), 0x04: ("card", False),
    0x05: ("card", False), 0x06: ("card", False), 0x07: ("card", False), 0x08: ("card", False),
    0x09: ("card", False), 0x0A: ("card", False),
    0x26: ("fingerprint", True), 0x27: ("fingerprint", False), 0x28: ("fingerprint", True),
    0x29: ("fingerprint", False), 0x2A: ("fingerprint", False), 0x2B: ("fingerprint", True),
    0x2C: ("fingerprint", False), 0x2D: ("fingerprint", False), 0x2E: ("fingerprint", True),
    0x2F: ("fingerprint", False), 0x30: ("fingerprint", False), 0x31: ("fingerprint", False),
    0x45: ("fingerprint", True), 0x46: ("fingerprint", False), 0x47: ("fingerprint", False),
    0x48: ("fingerprint", True), 0x49: ("fingerprint", False), 0x4A: ("fingerprint", False),
    0x36: ("face", True), 0x37: ("face", False), 0x38: ("face", False), 0x39: ("face", True),
    0x3A: ("face", False), 0x3B: ("face", False), 0x3C: ("face", True), 0x3D: ("face", False),
    0x3E: ("face", False), 0x3F: ("face", True), 0x40: ("face", False), 0x41: ("face", False),
    0x42: ("face", True), 0x43: ("face", False), 0x44: ("face", False), 0x4B: ("face", True),
    0x4C: ("face", False), 0x4D: ("face", True), 0x4E: ("face", False), 0x4F: ("face", False),
    0x50: ("face", False), 0x68: ("face", False), 0x69: ("face", True), 0x70: ("face", False),
    0x65: ("pin", True), 0x66: ("pin", False), 0x67: ("pin", False), 0x94: ("pin", False),
    0x96: ("pin", False), 0x97: ("pin", False), 0xB5: ("pin", True), 0xC3: ("pin", False),
    0x9C: ("qr", True), 0x9D: ("qr", False), 0x9F: ("app", True), 0xA0: ("app", False),
}  # fmt: skip
# Door events that are not credential uses: minor -> (state, cause).
HIK_DOOR: dict[int, tuple[str, str | None]] = {
    0x15: ("unlocked", None), 0x16: ("locked", None), 0x17: ("unlocked", "exit_button"),
    0x19: ("open", None), 0x1A: ("closed", None), 0x400: ("unlocked", "remote"),
}  # fmt: skip
HIK_ALARMS = {0x1B: "forced_open", 0x1C: "held_open"}
HIK_IGNORED = {0x18: "exit button released"}
# Device and video health alerts (ISAPI eventType, lower case): status flags, not events.
HIK_VIDEO_STATUS = ("videoloss", "shelteralarm", "videomismatch", "badvideo", "tamperdetection",
                    "diskfull", "diskerror", "nicbroken", "ipconflict")  # fmt: skip


@bridge_vendor("hikvision")
def hikvision(message: VendorMessage) -> list[Item]:
    """ISAPI event notifications (``AccessControllerEvent``, ``heartBeat``, ``videoloss`` and the
    other video-status alarms, ``ANPR``), as JSON or XML, and ``AcsEvent`` search items (one,
    or a whole ``AcsEvent.InfoList`` search result, each item judged on its own). Raises
    AdapterError for a payload that is not one of these (the ``VendorAdapter`` contract); an
    unreadable search item becomes ``Rejected``."""
    data = structured(message.text)
    if isinstance(data, dict) and isinstance(data.get("EventNotificationAlert"), dict):
        data = data["EventNotificationAlert"]
    search = data.get("AcsEvent") if isinstance(data, dict) else None
    if isinstance(search, dict) and isinstance(search.get("InfoList"), list):
        out: list[Item] = []
        for info in search["InfoList"]:
            try:
                if not isinstance(info, dict):
                    raise AdapterError("an InfoList item is not an object")
                out.extend(_hikvision_event(message, info))
            except AdapterError as exc:
                out.append(Rejected(str(exc), info))
        return out
    return _hikvision_event(message, data)


def _hikvision_event(message: VendorMessage, data: Any) -> list[Item]:
    if not isinstance(data, dict):
        raise AdapterError("expected a JSON object")
    event_type = str(data.get("eventType") or "")
    if event_type.lower() == "heartbeat":
        return [Sighting("heartBeat")]
    if event_type.lower() in HIK_VIDEO_STATUS:
        active = str(data.get("eventState", "active")).lower() == "active"
        return [Sighting(event_type, {event_type.lower(): active})]
    if isinstance(data.get("ANPR"), dict):  # ANPR, and ITS cameras' vehicleDetection
        return [_hik_anpr(message, data)]
    if "AccessControllerEvent" in data:
        event, when = data["AccessControllerEvent"], data.get("dateTime")
        if not isinstance(event, dict):
            raise AdapterError("AccessControllerEvent is not an object")
        major, minor = event.get("majorEventType"), event.get("subEventType")
        serial = event.get("serialNo")
    elif "major" in data and "minor" in data:
        event, when = data, data.get("time")
        major, minor, serial = data["major"], data["minor"], None
    elif event_type and data.get("dateTime") is not None:
        return [_hik_other(message, data, event_type)]
    else:
        raise AdapterError(
            f"event type {event_type or '(none)'!r} is neither an AccessControllerEvent,"
            " an AcsEvent item, a heartBeat, a video status nor ANPR"
        )
    major, minor, serial = _int(major), _int(minor), _int(serial)  # XML gives digit strings
    if major is None or minor is None:
        raise AdapterError("majorEventType and subEventType must be integers")
    ts, local = device_time(when, message.zone)
    seq = serial if isinstance(serial, int) and 0 <= serial < 2**63 else UNNUMBERED
    person = event.get("employeeNoString") or event.get("employeeNo") or event.get("cardNo")
    door_no = _int(event.get("doorNo", 1))
    door = "unit" if door_no is not None and door_no > 1 else "building"
    pictures = message.pictures or _count(_int(event.get("picturesNumber")))
    base: dict[str, Any] = {
        "v": 1,
        "id": event_id("hikvision", message.device_id, serial if serial is not None else when,
                       minor),
        "device": message.device_id,
        "seq": seq,
        "ts": ts,
    }  # fmt: skip
    if major == HIK_MAJOR_EVENT and minor in HIK_CREDENTIALS:
        method, granted = HIK_CREDENTIALS[minor]
        face = method == "face"
        if person:
            credential = message.reference("face" if face else "cred", person)
        else:
            credential = "face:unmatched" if face else "cred:unknown"
        unlock = {**base, "type": "access.unlock", "door": door, "method": method,
                  "credential": credential, "granted": granted}  # fmt: skip
        if pictures:
            unlock["pictures"] = pictures
        return [Adapted(unlock, local)]
    if major in (HIK_MAJOR_EVENT, HIK_MAJOR_OPERATION) and minor in HIK_DOOR:
        state, cause = HIK_DOOR[minor]
        door_event = {**base, "type": "access.door", "door": door, "state": state}
        if cause:
            door_event["cause"] = cause
        return [Adapted(door_event, local)]
    if major == HIK_MAJOR_EVENT and minor in HIK_ALARMS:
        return [Adapted({**base, "type": "access.alarm", "door": door,
                         "alarm": HIK_ALARMS[minor]}, local)]  # fmt: skip
    if major == HIK_MAJOR_EVENT and minor in HIK_IGNORED:
        return [Skipped(HIK_IGNORED[minor])]
    other: dict[str, Any] = {**base, "type": "access.vendor", "vendor": "hikvision",
                             "code": f"{major}/{minor}", "door": door}  # fmt: skip
    if person:
        other["credential"] = message.reference("cred", person)
    if pictures:
        other["pictures"] = pictures
    return [Adapted(other, local)]


def _hik_other(message: VendorMessage, data: dict[str, Any], event_type: str) -> Item:
    """An ISAPI alert the tables do not map (VMD, fielddetection, tamper, doorbell, …): on a
    door reader an ``access.vendor`` event with the alert's type and state; a camera's or a
    gate's is skipped and counted (their kinds have no generic event)."""
    state = str(data.get("eventState") or "")
    if message.kind != "access":
        return Skipped(_label(f"{event_type[:32]} {state[:16]}".strip()))
    ts, local = device_time(data.get("dateTime"), message.zone)
    code = f"{event_type}/{state}"[:64]
    ident = event_id("hikvision", message.device_id, "alert", data.get("dateTime"), code,
                     data.get("activePostCount"), data.get("channelID"))  # fmt: skip
    return Adapted({"v": 1, "id": ident, "device": message.device_id, "seq": UNNUMBERED,
                    "ts": ts, "type": "access.vendor", "vendor": "hikvision",
                    "code": code}, local)  # fmt: skip


def _label(text: str) -> str:
    """Vendor text made safe for a metrics label and a log line."""
    return re.sub(r"[^\w ./=-]", "_", text)


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value)
    return None


def _count(value: object) -> int:
    return value if isinstance(value, int) and 0 <= value <= 100 else 0


def _hik_anpr(message: VendorMessage, data: dict[str, Any]) -> Item:
    anpr = data["ANPR"]
    ts, local = device_time(data.get("dateTime"), message.zone)
    raw_plate = anpr.get("licensePlate") or anpr.get("originalLicensePlate")
    credential, unlicensed = message.plate(raw_plate)
    uid = data.get("UUID") or data.get("dateTime")
    base = {"v": 1, "id": event_id("hikvision", message.device_id, "anpr", uid, raw_plate),
            "device": message.device_id, "seq": UNNUMBERED, "ts": ts}  # fmt: skip
    return Adapted(_vehicle(message, base, credential, unlicensed, anpr.get("direction")), local)


def _vehicle(
    message: VendorMessage,
    base: dict[str, Any],
    credential: str | None,
    unlicensed: bool,
    direction: object,
) -> dict[str, Any]:
    """A plate read: a gate's pass, or a camera's vehicle detection, by the device's kind."""
    if message.kind == "camera":
        event = {**base, "type": "camera.detection", "cls": "vehicle", "count": 1,
                 "confidence": 1.0, "zone": "plate"}  # fmt: skip
    else:
        leaving = direction in (4, "4", "reverse", "out", "exit")
        event = {**base, "type": "gate.pass", "direction": "out" if leaving else "in",
                 "method": "plate", "granted": True}  # fmt: skip
        if message.pictures:
            event["pictures"] = message.pictures
    if credential:
        event["credential"] = credential
    if unlicensed:
        event["unlicensed"] = True
    return event


# --- Dahua --------------------------------------------------------------------------------------

# The HTTP upload's Method -> our method; None: not a credential use (door event with a cause).
DAHUA_METHODS: dict[int, tuple[str, str | None]] = {
    0: ("pin", None), 1: ("card", None), 2: ("card", None), 3: ("card", None),
    4: ("remote", "remote"), 5: ("exit_button", "exit_button"), 6: ("fingerprint", None),
    7: ("fingerprint", None), 8: ("fingerprint", None), 9: ("fingerprint", None),
    14: ("qr", None), 15: ("face", None), 17: ("face", None), 19: ("app", None),
    20: ("pin", None), 21: ("pin", None), 22: ("face", None), 23: ("fingerprint", None),
    24: ("face", None), 25: ("face", None), 43: ("qr", None), 44: ("face", None),
    10: ("fingerprint", None), 13: ("pin", None), 18: ("face", None), 42: ("remote", "remote"),
    45: ("fingerprint", None),
}  # fmt: skip
DAHUA_DOOR_STATES = {"open": "open", "close": "closed", "closed": "closed"}
# Dahua's door alarms (NetSDK ALARM_ACCESS_CTL_NOT_CLOSE_INFO, ALARM_ACCESS_CTL_BREAK_IN_INFO).
DAHUA_ALARMS = {"DoorNotClosed": "held_open", "BreakIn": "forced_open"}
DAHUA_HEARTBEATS = frozenset({"heartbeat", "keepalive"})
# Dahua ITC plate cameras' events (a plate in Data.TrafficCar.PlateNumber or Data.Object.Text).
DAHUA_PLATE_EVENTS = frozenset({"TrafficJunction", "TrafficParkingSpaceParking", "TrafficGate"})
DAHUA_VIDEO_STATUS = frozenset({"videoloss", "videoblind", "storagefailure", "netabort",
                                "storagenotexist", "storagelowspace", "ipconflict",
                                "videoabnormal", "powerfault"})  # fmt: skip
DAHUA_MAPPED = frozenset({"AccessControl", "DoorStatus", *DAHUA_ALARMS, *DAHUA_PLATE_EVENTS})


_DAHUA_RECORD = re.compile(r"^(?=Code=|(?:heartbeat|keepalive)\s*$)", re.MULTILINE | re.I)


_STRAY_BOUNDARY = re.compile(r"^--\S+\s*$", re.MULTILINE)


def _dahua_records(text: str) -> list[str]:
    """eventManager's text split into its ``Code=…`` records: a record's ``data={…}`` may span
    lines (firmware pretty-prints it), so records start at a line beginning with ``Code=``.
    A stray ``--myboundary`` line (a stream cut at a part's end) is dropped."""
    text = _STRAY_BOUNDARY.sub("", text)
    return [part.strip() for part in _DAHUA_RECORD.split(text) if part.strip()]


def _dahua_line(line: str) -> dict[str, Any]:
    """``Code=AccessControl;action=Pulse;index=0;data={...}`` as an event object."""
    fields = dict(part.split("=", 1) for part in line.strip().split(";", 3) if "=" in part)
    data = parse_json(fields["data"]) if "data" in fields else {}
    return {"Code": fields.get("Code"), "Action": fields.get("action"),
            "Index": fields.get("index"), "Data": data}  # fmt: skip


@bridge_vendor("dahua")
def dahua(message: VendorMessage) -> list[Item]:
    """Dahua access control: the HTTP upload JSON (``Events``, several per upload, each judged
    on its own), one event object, or eventManager ``Code=…`` lines. ``AccessControl`` is a
    credential use (or a door event for remote and exit-button openings), ``DoorStatus`` the
    door contact, heartbeats and video status are liveness. Raises AdapterError for a payload
    that is not one of these (the ``VendorAdapter`` contract); an unreadable record among
    several becomes ``Rejected``."""
    text = message.text.strip()
    if text.lower() in DAHUA_HEARTBEATS:  # eventManager's keep-alive part is the bare word
        return [Sighting(text)]
    if text.startswith("Code=") or text.partition("\n")[0].strip().lower() in DAHUA_HEARTBEATS:
        items: Any = []
        for record in _dahua_records(text):
            if record.lower() in DAHUA_HEARTBEATS:
                items.append({"Code": record})
                continue
            try:
                items.append(_dahua_line(record))
            except AdapterError as exc:  # one unreadable record: the others still count
                items.append(exc)
    else:
        data = parse_json(text)
        if isinstance(data, dict) and isinstance(data.get("params"), dict):
            data = data["params"]  # the RPC stream: client.notifyEventStream's params
        if isinstance(data, dict) and "Code" in data:
            items = [data]
        elif isinstance(data, dict) and isinstance(data.get("eventList"), list):
            items = data["eventList"]
        else:
            items = data.get("Events") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise AdapterError("no Events list")
    out: list[Item] = []
    for item in items:
        if isinstance(item, AdapterError):
            out.append(Rejected(str(item)))
            continue
        try:
            out.append(_dahua_event(message, item))
        except AdapterError as exc:
            out.append(Rejected(str(exc), item))
    return out


def _dahua_plate_bearing(code: str, d: dict[str, Any]) -> bool:
    """Another ITC ``Traffic…`` event that carries a plate (TrafficCar.PlateNumber)."""
    car = d.get("TrafficCar")
    return code.startswith("Traffic") and isinstance(car, dict) and "PlateNumber" in car


def _dahua_event(message: VendorMessage, item: Any) -> Item:
    if not isinstance(item, dict):
        raise AdapterError("an event is not an object")
    code = str(item.get("Code") or "")
    d = item.get("Data") or {}
    if not isinstance(d, dict):
        raise AdapterError(f"{code}: Data is not an object")
    action = str(item.get("Action") or d.get("Action") or "")
    if code.lower() in DAHUA_HEARTBEATS:
        return Sighting(code)
    if code.lower() in DAHUA_VIDEO_STATUS:
        return Sighting(code, {code.lower(): action.lower() != "stop"})
    seconds = d.get("RealUTC") or d.get("UTC")
    when = seconds if seconds is not None else d.get("LocaleTime") or d.get("Time")
    if (
        code not in DAHUA_MAPPED
        and not _dahua_plate_bearing(code, d)
        and (when is None or message.kind != "access")
    ):
        # An event the tables do not map, with no time to store it by, or from a camera or
        # gate (whose kinds have no generic event): understood as Dahua's, skipped, counted.
        return Skipped(_label(f"{code[:32] or '(no code)'} {action[:16]}".strip()))
    ts, local = device_time(when, message.zone)
    door = "unit" if isinstance(d.get("Door"), int) and d["Door"] > 0 else "building"
    base = {"v": 1, "device": message.device_id, "seq": UNNUMBERED, "ts": ts}
    if code == "DoorStatus":
        state = DAHUA_DOOR_STATES.get(str(d.get("Status", "")).lower())
        if state is None:
            raise AdapterError(f"DoorStatus {d.get('Status')!r} is neither Open nor Close")
        ident = event_id("dahua", message.device_id, code, seconds or ts, item.get("Index"),
                         state)  # fmt: skip
        return Adapted({**base, "id": ident, "type": "access.door", "door": door,
                        "state": state}, local)  # fmt: skip
    if code in DAHUA_PLATE_EVENTS or _dahua_plate_bearing(code, d):
        car: dict[str, Any] = d["TrafficCar"] if isinstance(d.get("TrafficCar"), dict) else {}
        obj: dict[str, Any] = d["Object"] if isinstance(d.get("Object"), dict) else {}
        raw = car.get("PlateNumber") if "PlateNumber" in car else obj.get("Text")
        credential, unlicensed = message.plate(raw)
        ident = event_id("dahua", message.device_id, code, seconds or ts, d.get("EventID"), raw)
        base["id"] = ident
        if isinstance(d.get("EventID"), int) and 0 < d["EventID"] < 2**63:
            base["seq"] = d["EventID"]
        direction = car.get("Direction") or d.get("Direction")
        return Adapted(_vehicle(message, base, credential, unlicensed, direction), local)
    if code in DAHUA_ALARMS:
        if action.lower() == "stop":
            return Skipped(f"{code} Stop")  # the alarm ended: its start was stored
        ident = event_id("dahua", message.device_id, code, seconds or ts, item.get("Index"))
        return Adapted({**base, "id": ident, "type": "access.alarm", "door": door,
                        "alarm": DAHUA_ALARMS[code]}, local)  # fmt: skip
    if code != "AccessControl":
        # Another access event (BackKeyLight, DoorCard, AlarmLocal, …): kept with its code.
        ident = event_id("dahua", message.device_id, code, seconds or ts, item.get("Index"),
                         action)  # fmt: skip
        return Adapted({**base, "id": ident, "type": "access.vendor", "vendor": "dahua",
                        "code": f"{code}/{action}"[:64], "door": door}, local)  # fmt: skip
    person = d.get("UserID") or d.get("CardNo")
    rec = d.get("RecNo")
    if isinstance(rec, int) and 0 < rec < 2**63:
        base["seq"] = rec
    base["id"] = event_id("dahua", message.device_id, seconds, person, d.get("ReaderID"), rec)
    status, error = d.get("Status", 1), d.get("ErrorCode")
    granted = str(status).lower() in ("1", "true") and str(error or 0) in ("0", "")
    method_code = d.get("Method", 1)
    number = _int(method_code)
    known = DAHUA_METHODS.get(number) if number is not None else None
    if known is None:
        other: dict[str, Any] = {**base, "type": "access.vendor", "vendor": "dahua",
                                 "code": f"AccessControl/Method={method_code}", "door": door,
                                 "granted": granted}  # fmt: skip
        if person:
            other["credential"] = message.reference("cred", person)
        return Adapted(other, local)
    method, cause = known
    if cause is not None:
        return Adapted({**base, "type": "access.door", "door": door, "state": "unlocked",
                        "cause": cause}, local)  # fmt: skip
    if person:
        credential = message.reference("face" if method == "face" else "cred", person)
    else:
        credential = "face:unmatched" if method == "face" else "cred:unknown"
    unlock = {**base, "type": "access.unlock", "door": door, "method": method,
              "credential": credential, "granted": granted}  # fmt: skip
    pictures = message.pictures or len(d.get("ImageInfo") or [])
    if pictures:
        unlock["pictures"] = min(pictures, 100)
    return Adapted(unlock, local)


# --- AlphaDigi / Vzenith plate cameras ----------------------------------------------------------


@bridge_vendor("alphadigi")
def alphadigi(message: VendorMessage) -> list[Item]:
    """AlphaDigi/Vzenith ``AlarmInfoPlate`` (a vehicle gate camera read a plate, or read none:
    unlicensed), its comet poll (a ``heartbeat`` object, or the form-encoded
    ``device_name=…&serialno=…`` poll, whose password field is never kept), and its other
    ``Alarm…`` pushes (IO inputs, serial data), skipped and counted. Raises AdapterError for a
    payload that is not one of these (the ``VendorAdapter`` contract)."""
    text = message.text.strip()
    if not text.startswith(("{", "[")) and "serialno=" in text and "=" in text.split("&")[0]:
        return [Sighting("heartbeat")]  # the HTTP comet poll, application/x-www-form-urlencoded
    data = parse_json(text)
    if isinstance(data, dict) and any(str(k).lower() in ("heartbeat", "keepalive") for k in data):
        return [Sighting("heartbeat")]
    if isinstance(data, dict) and "AlarmInfoPlate" not in data:
        other = [str(k) for k in data if str(k).startswith("Alarm")]
        if other:
            return [Skipped(_label(other[0][:32]))]  # AlarmGioIn, AlarmSerialData, …
    try:
        info = data["AlarmInfoPlate"]
        plate = info["result"]["PlateResult"]
        seconds = plate["timeStamp"]["Timeval"]["sec"]
    except (KeyError, TypeError):
        raise AdapterError("no AlarmInfoPlate.result.PlateResult with a timeStamp") from None
    ts, local = device_time(seconds, message.zone)
    raw = plate.get("license")
    credential, unlicensed = message.plate(raw)
    usec = plate["timeStamp"]["Timeval"].get("usec")
    where = json.dumps(plate.get("location"), sort_keys=True)
    ident = event_id("alphadigi", message.device_id, info.get("serialno"), seconds, usec,
                     plate.get("plateid"), raw, where)  # fmt: skip
    base = {"v": 1, "id": ident, "device": message.device_id, "seq": UNNUMBERED, "ts": ts}
    # Vzenith's direction: 4 is a vehicle moving away from the camera (leaving).
    return [Adapted(_vehicle(message, base, credential, unlicensed, plate.get("direction")), local)]


# --- ZKTeco (ADMS / iclock push protocol) -------------------------------------------------------

# ATTLOG's verify mode -> our method (ZKTeco's push protocol: 0 password, 1 fingerprint, 2 card,
# 15 face); other modes (palm, combinations) are stored as access.vendor with their number.
ZKTECO_VERIFY = {0: "pin", 1: "fingerprint", 2: "card", 3: "pin", 4: "card", 15: "face"}
_ZK_SPACED = re.compile(r"(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s*(.*)")
_ZK_REQUEST = re.compile(r"\A\s*(GET|POST) (/iclock/\S*)(?: HTTP/\d\.\d)?\s*$", re.MULTILINE)


@bridge_vendor("zkteco")
def zkteco(message: VendorMessage) -> list[Item]:
    """ZKTeco terminals' push protocol (ADMS, ``/iclock/…``), as the bridge received it: the
    request line (``POST /iclock/cdata?SN=…&table=ATTLOG``) and its body, or the body alone.
    ``ATTLOG`` lines (tab-separated PIN, local time, state, verify mode, work code) are
    credential uses; ``getrequest`` polls are the terminal's heartbeat; other tables (OPERLOG,
    BIODATA, …) are skipped and counted. Times carry no offset: read in the device's zone."""
    text = message.text.replace("\r\n", "\n")
    request = _ZK_REQUEST.match(text)
    table = "ATTLOG"
    serial = ""
    if request:
        path = request.group(2)
        query = dict(
            part.split("=", 1) for part in path.partition("?")[2].split("&") if "=" in part
        )
        serial = query.get("SN", "")
        if "/getrequest" in path or ("/cdata" in path and "table" not in query):
            return [Sighting("iclock poll")]  # the terminal polls for commands: alive
        table = query.get("table", "").upper()
        text = text[request.end() :]
        if re.match(r"\s*[\w-]+: ", text):  # the request's headers, then a blank line
            text = text.partition("\n\n")[2]
    if table == "RTLOG":
        return [_zk_rtlog(message, serial, line) for line in text.splitlines() if line.strip()]
    if table != "ATTLOG":
        return [Skipped(_label(f"table {table[:24]}"))]
    out: list[Item] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip("\r").split("\t")
        spaced = _ZK_SPACED.match(line.strip()) if len(fields) == 1 else None
        if spaced:  # tabs turned to spaces on the way (a copy-paste or a proxy's log format)
            fields = [spaced.group(1), spaced.group(2), *spaced.group(3).split()]
        try:
            pin, when = fields[0].strip(), fields[1].strip()
            ts, local = device_time(when, message.zone)
        except (IndexError, AdapterError) as exc:
            out.append(Rejected(f"ATTLOG line: {exc}", {"line": fields[:1] and "…"}))
            continue
        verify = _int(fields[3]) if len(fields) > 3 else None
        method = ZKTECO_VERIFY.get(verify) if verify is not None else "card"
        base = {"v": 1, "id": event_id("zkteco", message.device_id, serial, pin, when, verify),
                "device": message.device_id, "seq": UNNUMBERED, "ts": ts}  # fmt: skip
        prefix = "face" if method == "face" else "cred"
        credential = message.reference(prefix, pin) if pin else f"{prefix}:unknown"
        if method is None:
            event: dict[str, Any] = {**base, "type": "access.vendor", "vendor": "zkteco",
                                     "code": f"ATTLOG/verify={verify}", "granted": True,
                                     "credential": credential}  # fmt: skip
        else:
            event = {**base, "type": "access.unlock", "door": "building", "method": method,
                     "granted": True, "credential": credential}  # fmt: skip
        out.append(Adapted(event, local))
    return out


def _zk_rtlog(message: VendorMessage, serial: str, line: str) -> Item:
    """An access panel's real-time log line (``time=…\tpin=…\tevent=…\tverifytype=…``): kept
    as ``access.vendor`` with ZKTeco's event number (its table is not mapped here)."""
    fields = dict(part.split("=", 1) for part in line.strip().split("\t") if "=" in part)
    try:
        ts, local = device_time(fields.get("time"), message.zone)
    except AdapterError as exc:
        return Rejected(f"RTLOG line: {exc}")
    pin = fields.get("pin", "").strip()
    event: dict[str, Any] = {
        "v": 1, "type": "access.vendor", "vendor": "zkteco",
        "id": event_id("zkteco", message.device_id, serial, "rtlog", fields.get("index"),
                       fields.get("time"), pin),
        "device": message.device_id, "seq": UNNUMBERED, "ts": ts,
        "code": f"rtlog/event={fields.get('event', '')[:16]}",
    }  # fmt: skip
    if pin and pin != "0":
        event["credential"] = message.reference("cred", pin)
    return Adapted(event, local)


# --- Frigate ------------------------------------------------------------------------------------

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
    "license_plate": "vehicle",  # a dedicated LPR camera tracks the plate itself
}
# What Frigate names a face it did not recognise (a sub_label or a face update's name).
FRIGATE_UNKNOWN = frozenset({"unknown", "none", "null", ""})
# tracked_object_update types that carry no detection (GenAI descriptions, audio, …).
FRIGATE_IGNORED_UPDATES = frozenset({"description", "classification", "audio"})
# Objects Frigate reads plates on (docs.frigate.video, License Plate Recognition).
FRIGATE_PLATE_LABELS = frozenset({"car", "truck", "bus", "motorcycle", "license_plate"})
_FRIGATE_ID_START = re.compile(r"^(\d{9,11}(?:\.\d+)?)-")


def _frigate_start(object_id: object, fallback: object) -> float:
    """When Frigate began tracking: its object ids start with that time."""
    match = _FRIGATE_ID_START.match(str(object_id))
    value = float(match.group(1)) if match else fallback
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise AdapterError("a tracked object with neither a timed id nor a start_time")
    return float(value)


@bridge_vendor("frigate")
def frigate(message: VendorMessage) -> list[Item]:
    """Frigate's ``frigate/events`` (new/update/end) and its tracked-object updates (face,
    plate). One tracked object is ONE detection: its id and time come from Frigate's object id,
    so ``update`` and ``end`` replace the row ``new`` made (``track``, ``until``), and a face or
    plate update adds its credential to that same row. False
    positives are not detections. On a vehicle, ``recognized_license_plate`` or a
    ``sub_label`` is a plate credential (never a face); on a person a ``sub_label`` is a face.
    The camera's zone becomes the detection's zone; images stay in Frigate. Raises AdapterError
    for a payload that is not one of these (the ``VendorAdapter`` contract)."""
    text = message.text.strip()
    if text.lower() in ("online", "offline"):  # frigate/available, Frigate's will
        online = text.lower() == "online"
        return [Sighting("available", {"available": online}, online)]
    data = parse_json(text)
    if isinstance(data, int | float) and not isinstance(data, bool):
        return [Skipped("object count")]  # frigate/<camera>/<label>: a count, not an object
    if not isinstance(data, dict):
        raise AdapterError("expected a JSON object")
    kind = data.get("type")
    if kind is None and isinstance(data.get("service"), dict):
        return [Sighting("stats")]  # frigate/stats, published every stats_interval
    if kind in ("new", "update", "end") and isinstance(data.get("after"), dict):
        after = data["after"]
        if after.get("false_positive"):
            object_id = str(after.get("id") or "")
            if not _FRIGATE_ID_START.match(object_id):
                return [Skipped("false_positive")]
            # Stored already if an earlier message of this track was a true positive.
            began = device_time(_frigate_start(object_id, None), message.zone)[0]
            return [Retracted(event_id("frigate", message.device_id, object_id), began,
                              "false_positive")]  # fmt: skip
        if "label" not in after and isinstance(after.get("data"), dict):
            return [Skipped("review")]  # frigate/reviews: a summary of tracked objects
        label = after.get("label")
        cls = FRIGATE_CLASSES.get(str(label))
        if cls is None:
            return [Skipped(f"label {str(label)[:32]}")]  # a dog, a cat: not recorded here
        object_id = str(after.get("id") or "")
        if not object_id:
            raise AdapterError("a tracked object without an id")
        start = _frigate_start(object_id, after.get("start_time"))
        last = after.get("end_time") or after.get("frame_time") or start
        sub = after.get("sub_label")
        name = sub[0] if isinstance(sub, list) and sub else sub
        if isinstance(name, str) and name.strip().lower() in FRIGATE_UNKNOWN:
            name = None  # an unrecognised face is nobody's: never one shared identity
        zones = after.get("current_zones")
        if not isinstance(zones, list) or not zones:
            zones = [after.get("camera") or "none"]
        event: dict[str, Any] = {
            "v": 1,
            "type": "camera.detection",
            "id": event_id("frigate", message.device_id, object_id),
            "device": message.device_id,
            "seq": UNNUMBERED,
            "ts": device_time(start, message.zone)[0],
            "until": device_time(last, message.zone)[0],
            "track": _track_reference(object_id),
            "cls": cls,
            "count": 1,
            "confidence": _score(after.get("top_score") or after.get("score")),
            "zone": str(zones[-1])[:64] or "none",
        }
        if after.get("has_snapshot"):
            event["snapshot"] = event["track"]
        if label in FRIGATE_PLATE_LABELS:
            plate = after.get("recognized_license_plate") or name
            if isinstance(plate, list):  # [plate, score], as sub_label is [name, score]
                plate = plate[0] if plate else None
            if plate:
                credential, unlicensed = message.plate(plate)
                if credential:
                    event["credential"] = credential
                if unlicensed:
                    event["unlicensed"] = True
        elif name and cls == "person":
            event["credential"] = message.reference("face", name)
        return [Adapted(event)]
    if kind in ("face", "lpr"):
        value = data.get("name") if kind == "face" else data.get("plate")
        if not value or (isinstance(value, str) and value.strip().lower() in FRIGATE_UNKNOWN):
            return [Skipped(f"{kind} not recognised")]
        # The same tracked object as frigate/events: the same detection, whose credential
        # this adds (a partial update: it has no ``until``, so it changes nothing else).
        object_id = str(data.get("id") or "")
        if not object_id:
            raise AdapterError(f"a {kind} update without the tracked object's id")
        start = _frigate_start(object_id, data.get("timestamp"))
        event = {
            "v": 1,
            "type": "camera.detection",
            "id": event_id("frigate", message.device_id, object_id),
            "device": message.device_id,
            "seq": UNNUMBERED,
            "ts": device_time(start, message.zone)[0],
            "track": _track_reference(object_id),
            "cls": "person" if kind == "face" else "vehicle",
            "count": 1,
            "confidence": _score(data.get("score")),
            "zone": str(data.get("camera") or "none")[:64],
        }  # fmt: skip
        if kind == "face":
            event["credential"] = message.reference("face", value)
        else:
            credential, unlicensed = message.plate(value)
            if credential:
                event["credential"] = credential
            if unlicensed:
                event["unlicensed"] = True
        return [Adapted(event)]
    if isinstance(kind, str) and kind in FRIGATE_IGNORED_UPDATES:
        return [Skipped(f"{kind} update")]
    raise AdapterError(f"Frigate message type {kind!r} is not mapped")


def _track_reference(object_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9:_.\-/]", "_", object_id)[:100]
    return f"frigate/{safe}"


def _score(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return 0.0
