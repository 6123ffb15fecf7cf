"""paho's client, reading and acknowledging in bulk: what an ingester draining a queue needs.

Stock paho 2 handles one packet per pass of its network loop: a ``select()``, then two to four
``recv()`` calls for a single packet, and one wake-up of the loop plus one ``send()`` per
acknowledgement. At tens of thousands of messages a second those system calls, not the
parsing, are most of paho's time. This client keeps paho's packet framing, callbacks and
their dispatch, reconnects, keepalive and its parsing of every packet but the common
PUBLISH, and changes three things through paho's hooks:

- reads: the socket is read 64 KiB at a time and paho's own ``_packet_read`` takes its bytes
  from that buffer; every complete packet in hand is handled before the loop goes back to
  ``select()`` (which cannot see bytes already read);
- acks: ``ack_many()`` queues a batch's PUBACKs as one write;
- PUBLISH at QoS 0 and 1 over MQTT 3.1.1 (all an ingester receives) is cut into a message in
  a few slices, without paho's per-message ``MQTTMessageInfo`` (a ``Condition`` each, for
  tracking messages this client publishes); QoS 2, MQTT 5 and anything malformed or
  reserved (QoS 3, an empty topic, a short packet) go to paho's own code, which refuses them.

What each is worth is measured side by side with stock paho by
``bench/ingest_bench.py --quick --clients`` (numbers in DEVELOPERS.md). A hand-written packet
slicer that was also here (it rebuilt paho's in-packet record and wrote its keepalive clock)
and a dispatch that skipped paho's per-topic matcher did not earn their private names and
were removed; ``bench/client_variants.py`` keeps them, and the client without its PUBLISH
parser, for that bench.

The hooks are private to paho: every use is written so that ruff's SLF001 sees it and carries
a ``# noqa: SLF001``; pyproject.toml pins paho-mqtt to the minor version they were read at;
``PAHO_PRIVATE_NAMES`` lists them and ``tests/test_mqtt_client.py`` fails naming the first
one that changes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_READ_SIZE = 64 * 1024
_PUBACK = struct.Struct("!BBH")

# paho's version these private names were read at, and the names: (owner, attribute).
PAHO_VERSION_READ = "2.2"
PAHO_PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("Client", "_sock_recv"),  # overridden: reads from our buffer; called by _packet_read
    ("Client", "_sock_close"),  # overridden: drops the buffer with the connection
    ("Client", "_packet_read"),  # must call _sock_recv for its bytes (tested)
    ("Client", "_handle_on_message"),  # paho's dispatch, called for the messages parsed here
    ("Client", "_handle_publish"),  # overridden: QoS 0/1 over 3.1.1 parsed here
    ("Client", "_send_puback"),  # QoS 1 without manual_ack, as paho does
    ("Client", "_packet_queue"),  # ack_many queues one write of many PUBACKs
    ("instance", "_in_packet"),  # the packet paho read: {"command": int, "packet": bytearray}
    ("instance", "_protocol"),  # MQTT 5 goes to paho's parser
    ("instance", "_manual_ack"),
    ("MQTTMessage", "_topic"),  # set directly: MQTTMessage.__init__ is bypassed (slots tested)
)
# MQTTMessage.__slots__ as read: the message is built without __init__, setting each of these.
MESSAGE_SLOTS = frozenset(
    {"_topic", "dup", "info", "mid", "payload", "properties", "qos", "retain", "state",
     "timestamp"}
)  # fmt: skip
# Received messages never use MQTTMessage.info (it tracks messages this client publishes).
_NO_INFO = mqtt.MQTTMessageInfo(0)


class BulkClient(mqtt.Client):
    """A paho ``Client`` for draining: bulk reads, one write per batch of acks (``ack_many``),
    QoS 0/1 PUBLISH over MQTT 3.1.1 parsed without paho's per-message bookkeeping."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_pos = 0

    # Private uses are written ``mqtt.Client._name(self, …)``, not ``super()._name(…)``, so
    # that ruff's SLF001 sees each one and it carries a visible exemption.

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_pos >= len(self._read_buffer):
            # paho's socket read; raises BlockingIOError when none is ready
            data = mqtt.Client._sock_recv(self, _READ_SIZE)  # noqa: SLF001
            if not data:
                return data  # the broker closed the connection
            self._read_buffer, self._read_pos = data, 0
        start = self._read_pos
        self._read_pos = start + bufsize
        return self._read_buffer[start : self._read_pos]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's ``loop_read`` (MQTT packets read and handled), repeated until the bytes this
        client has already taken off the socket are used up, since ``select()`` cannot see them.
        Returns paho's result code: ``MQTT_ERR_SUCCESS``, or the first error (e.g.
        ``MQTT_ERR_CONN_LOST`` when the broker closed the connection)."""
        rc = super().loop_read(max_packets)
        # Bytes already read are invisible to select(): handle them all before returning.
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._read_pos < len(self._read_buffer):
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        # What was read from a dead connection must not be parsed as the next one's packets.
        self._read_buffer, self._read_pos = b"", 0
        mqtt.Client._sock_close(self)  # noqa: SLF001

    def _handle_publish(self) -> MQTTErrorCode:
        paho: mqtt.Client = self  # so that SLF001 sees paho's private names read here
        header = paho._in_packet["command"]  # noqa: SLF001
        packet = paho._in_packet["packet"]  # noqa: SLF001
        qos = (header & 0x06) >> 1
        if qos > 1 or paho._protocol == mqtt.MQTTv5 or len(packet) < 2:  # noqa: SLF001
            return mqtt.Client._handle_publish(self)  # noqa: SLF001 (QoS 3: paho refuses it)
        start = 2 + ((packet[0] << 8) | packet[1])  # after the topic
        end = start + 2 if qos else start  # after the packet id
        if start == 2 or end > len(packet):
            return mqtt.Client._handle_publish(self)  # noqa: SLF001 (paho reports it)
        message = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)  # every slot is set below
        message.timestamp = mqtt.time_func()
        message.state = mqtt.mqtt_ms_invalid
        message.dup = bool(header & 0x08)
        message.mid = (packet[start] << 8) | packet[start + 1] if qos else 0
        message._topic = bytes(packet[2:start])  # noqa: SLF001
        message.payload = bytes(memoryview(packet)[end:])
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.info = _NO_INFO
        message.properties = None
        mqtt.Client._handle_on_message(self, message)  # noqa: SLF001 (paho's dispatch)
        if qos == 1 and not paho._manual_ack:  # noqa: SLF001
            return mqtt.Client._send_puback(self, message.mid)  # noqa: SLF001
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledges QoS 1 messages (``manual_ack``) in one write: a PUBACK per message id
        (MQTT 3.1.1 §3.4, the same 4 bytes MQTT 5 allows when the reason is success)."""
        packet = b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
        if packet:
            mqtt.Client._packet_queue(self, mqtt.PUBACK, packet, 0, 0)  # noqa: SLF001
