"""Variants of the ingester's paho client, for ``bench/ingest_bench.py`` ONLY: each adds back
one thing that ``ingest/mqtt_client.BulkClient`` does not do (or removes one it does), so
the bench shows what that thing is worth, side by side in one run.

- ``WithSlicer``: the packet slicer the ingester's client had until 2026-11 (removed: it
  rebuilt paho's in-packet record and wrote its keepalive clock by hand).
- ``WithDispatch``: the dispatch it had until 2026-11, skipping paho's per-topic matcher.
- ``WithoutParser``: every PUBLISH through paho's parser instead of ours.

Never import this from the ingester: it relies on paho's private names without the checks
``ingest/mqtt_client.py`` has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

from ingest.mqtt_client import BulkClient

if TYPE_CHECKING:
    from paho.mqtt.client import _InPacket


def _in_packet(command: int, length: int, packet: bytearray) -> _InPacket:
    return {
        "command": command, "have_remaining": 1 if command else 0, "remaining_count": [],
        "remaining_mult": 1, "remaining_length": length, "packet": packet, "to_process": 0,
        "pos": 0,
    }  # fmt: skip


class WithDispatch(BulkClient):
    """The removed dispatch: every message to on_message, skipping paho's per-topic matcher."""

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


class WithSlicer(BulkClient):
    """The removed packet slicer (as it was at commit 9aa6c2d): a packet wholly in the read
    buffer is cut out in one slice and paho's in-packet record rebuilt by hand."""

    def _packet_read(self) -> MQTTErrorCode:
        buffer, start = self._read_buffer, self._read_pos
        if self._in_packet["command"] != 0 or start >= len(buffer):
            return super()._packet_read()
        length, shift, at, limit = 0, 0, start + 1, min(start + 5, len(buffer))
        while at < limit:
            byte = buffer[at]
            length |= (byte & 0x7F) << shift
            at += 1
            if not byte & 0x80:
                break
            shift += 7
        else:
            return super()._packet_read()
        end = at + length
        if end > len(buffer):
            return super()._packet_read()
        self._read_pos = end
        self._in_packet = _in_packet(buffer[start], length, bytearray(memoryview(buffer)[at:end]))
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _in_packet(0, 0, bytearray())
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return rc


class WithoutParser(BulkClient):
    """Every PUBLISH through paho's own parser: bulk reads, batched acks and dispatch only."""

    def _handle_publish(self) -> MQTTErrorCode:
        return mqtt.Client._handle_publish(self)  # noqa: SLF001


VARIANTS: dict[str, type[BulkClient]] = {
    "slicer": WithSlicer,
    "dispatch": WithDispatch,
    "lean": WithoutParser,
}
