"""paho's client, reading and acknowledging in bulk: what an ingester draining a queue needs.

Stock paho 2 handles one packet per pass of its network loop: a ``select()``, then two to four
``recv()`` calls for a single packet, and one wake-up of the loop plus one ``send()`` per
acknowledgement. At tens of thousands of messages a second those system calls, not the
parsing, are most of paho's time. This client keeps paho's callbacks, reconnects, keepalive and
its parsing of all but the common PUBLISH, and changes these things through paho's own hooks:

- reads: the socket is read 64 KiB at a time, and every complete packet in hand is handled
  before the loop goes back to ``select()`` (which cannot see bytes already read); a packet
  wholly in that buffer is cut out in one slice, where paho reads it a byte at a time;
- acks: ``ack_many()`` queues a batch's PUBACKs as one write;
- dispatch: every message goes to ``on_message``, without paho's per-topic callback matcher
  (a tenth of the ingester's time under load), so per-topic callbacks are refused;
- PUBLISH at QoS 0 and 1 over MQTT 3.1.1 (all an ingester receives) is parsed in a few slices
  into a message without paho's per-message ``MQTTMessageInfo`` (a ``Condition`` each, for
  tracking outgoing messages); QoS 2, MQTT 5 and anything malformed go to paho's own code.

These hooks are private to paho, so pyproject.toml pins paho-mqtt to the minor versions this
was read against, and every ingester test (the fault tests included) runs through this class.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

if TYPE_CHECKING:
    from paho.mqtt.client import _InPacket

_READ_SIZE = 64 * 1024
_PUBACK = struct.Struct("!BBH")
# Received messages never use MQTTMessage.info (it tracks messages this client publishes).
_NO_INFO = mqtt.MQTTMessageInfo(0)


def _in_packet(command: int, length: int, packet: bytearray) -> _InPacket:
    """paho's record of the packet being read: whole (``command`` set) or none (0)."""
    return {
        "command": command, "have_remaining": 1 if command else 0, "remaining_count": [],
        "remaining_mult": 1, "remaining_length": length, "packet": packet, "to_process": 0,
        "pos": 0,
    }  # fmt: skip


class BulkClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_pos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_pos >= len(self._read_buffer):
            data = super()._sock_recv(_READ_SIZE)  # raises BlockingIOError when none is ready
            if not data:
                return data  # the broker closed the connection
            self._read_buffer, self._read_pos = data, 0
        start = self._read_pos
        self._read_pos = start + bufsize
        return self._read_buffer[start : self._read_pos]

    def _packet_read(self) -> MQTTErrorCode:
        buffer, start = self._read_buffer, self._read_pos
        if self._in_packet["command"] != 0 or start >= len(buffer):
            return super()._packet_read()  # a packet begun in an earlier read, or none in hand
        # The remaining length: up to four bytes, seven bits each, lowest first.
        length, shift, at, limit = 0, 0, start + 1, min(start + 5, len(buffer))
        while at < limit:
            byte = buffer[at]
            length |= (byte & 0x7F) << shift
            at += 1
            if not byte & 0x80:
                break
            shift += 7
        else:
            return super()._packet_read()  # the length runs past the buffer (or is malformed)
        end = at + length
        if end > len(buffer):
            return super()._packet_read()  # the packet continues in the next read
        self._read_pos = end
        self._in_packet = _in_packet(buffer[start], length, bytearray(memoryview(buffer)[at:end]))
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _in_packet(0, 0, bytearray())  # as paho leaves it between packets
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return rc

    def _buffered(self) -> bool:
        return self._read_pos < len(self._read_buffer)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        # Bytes already read are invisible to select(): handle them all before returning.
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._buffered():
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        # What was read from a dead connection must not be parsed as the next one's packets.
        self._read_buffer, self._read_pos = b"", 0
        super()._sock_close()

    def message_callback_add(self, sub: str, callback: Any) -> None:
        raise NotImplementedError("BulkClient hands every message to on_message")

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet = self._in_packet["packet"]
        if qos == 2 or self._protocol == mqtt.MQTTv5 or len(packet) < 2:
            return super()._handle_publish()
        start = 2 + ((packet[0] << 8) | packet[1])  # after the topic
        end = start + 2 if qos else start  # after the packet id
        if start == 2 or end > len(packet):
            return super()._handle_publish()  # an empty topic or a short packet: paho reports it
        message = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)
        message.timestamp = mqtt.time_func()
        message.state = mqtt.mqtt_ms_invalid
        message.dup = bool(header & 0x08)
        message.mid = (packet[start] << 8) | packet[start + 1] if qos else 0
        message._topic = bytes(packet[2:start])
        message.payload = bytes(memoryview(packet)[end:])
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.info = _NO_INFO
        message.properties = None
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledges QoS 1 messages (``manual_ack``) in one write."""
        packet = b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
        if packet:
            self._packet_queue(mqtt.PUBACK, packet, 0, 0)
