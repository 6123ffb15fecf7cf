"""The MQTT topic grammar of the device contract.

Every device owns one subtree, ``vt/v1/<device_id>/...``, so a broker ACL can give a
device write access to exactly its own topics with one pattern (``vt/v1/%u/#``).

    vt/v1/<device_id>/event    events (one event or a batch envelope), QoS 1, not retained
    vt/v1/<device_id>/status   "online"/"offline" availability, QoS 1, retained; the MQTT
                               last will publishes "offline" here
    vt/v1/<device_id>/config   the device's self-description, QoS 1, retained
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from devices.adapters import ADAPTERS

ROOT = "vt"
CONTRACT_VERSION = "v1"
DEVICE_ID_PATTERN = r"[a-z0-9][a-z0-9_.-]{1,63}"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


class TopicError(ValueError):
    """A topic that is not part of the contract."""


class Channel(StrEnum):
    EVENT = "event"
    STATUS = "status"
    CONFIG = "config"


# Platform outputs under vt/v1/: no device may take these ids (its ACL would let it write there).
ALERTS = "alerts"
RESERVED_DEVICE_IDS = frozenset({ALERTS})


def is_device_id(value: str) -> bool:
    """Whether ``value`` can be a device id: matches ``DEVICE_ID_PATTERN`` (2–64 characters, lower
    case letters, digits, ``_ . -``, starting with a letter or digit) and is not reserved
    (``alerts``)."""
    return _DEVICE_ID.fullmatch(value) is not None and value not in RESERVED_DEVICE_IDS


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed contract topic; constructing one validates it, so nothing downstream
    ever sees a malformed topic."""

    device_id: str
    channel: Channel

    def __post_init__(self) -> None:
        if not is_device_id(self.device_id):
            raise TopicError(f"device id {self.device_id!r} does not match {DEVICE_ID_PATTERN}")

    def __str__(self) -> str:
        return f"{ROOT}/{CONTRACT_VERSION}/{self.device_id}/{self.channel.value}"

    @classmethod
    def parse(cls, topic: str) -> DeviceTopic:
        """``vt/v1/<device_id>/<channel>`` parsed.

        Raises TopicError (a ValueError) saying what is wrong: not four levels under ``vt``, another
        contract version, an unknown channel or an invalid device id."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != ROOT:
            raise TopicError(f"topic {topic!r} is not vt/<version>/<device>/<channel>")
        if parts[1] != CONTRACT_VERSION:
            raise TopicError(f"topic {topic!r} names contract {parts[1]!r}, not {CONTRACT_VERSION}")
        try:
            channel = Channel(parts[3])
        except ValueError:
            raise TopicError(
                f"topic {topic!r} has channel {parts[3]!r}; "
                f"expected one of {', '.join(c.value for c in Channel)}"
            ) from None
        return cls(parts[2], channel)


BRIDGE = "bridge"
# The one registry of vendors is devices.adapters.ADAPTERS; this is a live view of its names.
BRIDGE_VENDORS = ADAPTERS.keys()


@dataclass(frozen=True, slots=True)
class BridgeTopic:
    """``vt/bridge/<vendor>/<device_id>``: a vendor's own payload, republished by a bridge."""

    vendor: str
    device_id: str

    def __post_init__(self) -> None:
        if self.vendor not in BRIDGE_VENDORS:
            raise TopicError(
                f"no adapter for vendor {self.vendor!r}; known: {', '.join(BRIDGE_VENDORS)}"
            )
        if not is_device_id(self.device_id):
            raise TopicError(f"device id {self.device_id!r} does not match {DEVICE_ID_PATTERN}")

    def __str__(self) -> str:
        return f"{ROOT}/{BRIDGE}/{self.vendor}/{self.device_id}"

    @classmethod
    def parse(cls, topic: str) -> BridgeTopic:
        """``vt/bridge/<vendor>/<device_id>`` parsed.

        Raises TopicError (a ValueError) when the topic does not have that shape, the vendor has no
        adapter in ``ADAPTERS`` or the device id is invalid."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != ROOT or parts[1] != BRIDGE:
            raise TopicError(f"topic {topic!r} is not vt/bridge/<vendor>/<device>")
        return cls(parts[2], parts[3])


def is_bridge_topic(topic: str) -> bool:
    """Whether ``topic`` is under ``vt/bridge/`` (a prefix test only: ``BridgeTopic.parse`` checks
    the rest)."""
    return topic.startswith(f"{ROOT}/{BRIDGE}/")


def event_topic(device_id: str) -> str:
    """``vt/v1/<device_id>/event``. Raises TopicError for an invalid device id."""
    return str(DeviceTopic(device_id, Channel.EVENT))


def status_topic(device_id: str) -> str:
    """``vt/v1/<device_id>/status``. Raises TopicError for an invalid device id."""
    return str(DeviceTopic(device_id, Channel.STATUS))


def config_topic(device_id: str) -> str:
    """``vt/v1/<device_id>/config``. Raises TopicError for an invalid device id."""
    return str(DeviceTopic(device_id, Channel.CONFIG))


def alert_topic(severity: str, rule: str) -> str:
    """``vt/v1/alerts/<severity>/<rule>``: where the rules worker publishes alerts (QoS 1, not
    retained); five levels, so no device subscription filter ``vt/v1/+/+`` matches it."""
    return f"{ROOT}/{CONTRACT_VERSION}/{ALERTS}/{severity}/{rule}"


def subscription(channel: Channel | None = None, share_group: str | None = None) -> str:
    """The filter an ingester subscribes with; with a share group, several ingesters split
    one stream (MQTT 5 shared subscriptions, also honoured by Mosquitto for 3.1.1 clients)."""
    tail = channel.value if channel else "+"
    topic_filter = f"{ROOT}/{CONTRACT_VERSION}/+/{tail}"
    return f"$share/{share_group}/{topic_filter}" if share_group else topic_filter


def bridge_subscription(share_group: str | None = None) -> str:
    """The filter an ingester subscribes to bridged payloads with, ``vt/bridge/+/+``; with a share
    group, ``$share/<group>/vt/bridge/+/+`` (MQTT 5.0 §4.8.2 shared subscriptions)."""
    topic_filter = f"{ROOT}/{BRIDGE}/+/+"
    return f"$share/{share_group}/{topic_filter}" if share_group else topic_filter
