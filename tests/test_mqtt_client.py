"""The ingester's paho client (bulk reads, one write for a batch of acks, its own PUBLISH
parser) against a real Mosquitto: every byte of every message arrives intact and in order
across read-buffer boundaries, acked messages are not redelivered, unacked ones are, and the
same holds across a reconnect. Against a raw socket server: malformed and reserved-bit
packets get exactly what stock paho gives them. And the paho private names it relies on are
checked, so a paho upgrade that renames one fails here, by name."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support import Broker, wait_until

from devices.mqtt import new_client
from ingest import mqtt_client
from ingest.mqtt_client import BulkClient

TOPIC = "vt/test/bulk"


def _payloads(n: int) -> list[bytes]:
    """Sizes chosen to straddle the 64 KiB read buffer: tiny, medium and over 64 KiB."""
    rng = random.Random(3)
    sizes = [rng.choice([1, 40, 300, 5_000, 70_000, 140_000]) for _ in range(n)]
    return [f"{i:06d}".encode() + rng.randbytes(size) for i, size in enumerate(sizes)]


def _publish(broker: Broker, payloads: list[bytes]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bulk-pub")
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", broker.config.port)
    pub.loop_start()
    infos = [pub.publish(TOPIC, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    pub.loop_stop()
    pub.disconnect()


class Consumer:
    """A persistent-session consumer that keeps what it got and acks only when told."""

    def __init__(self, broker: Broker, client_id: str = "bulk-sub") -> None:
        self.got: list[tuple[int, bytes]] = []
        self.subscribed = threading.Event()
        self.client = new_client(
            broker.settings, client_id, clean_session=False, manual_ack=True,
            client_class=BulkClient,
        )  # fmt: skip
        assert isinstance(self.client, BulkClient)
        self.client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.got.append((m.mid, bytes(m.payload)))
        self.client.connect("127.0.0.1", broker.config.port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def consumer(broker: Broker) -> Iterator[Consumer]:
    c = Consumer(broker)
    yield c
    c.close()


def test_every_message_arrives_whole_and_in_order(broker: Broker, consumer: Consumer) -> None:
    payloads = _payloads(400)
    _publish(broker, payloads)
    assert wait_until(lambda: len(consumer.got) >= len(payloads), 30)
    received = [p for _, p in consumer.got]
    assert len(received) == len(payloads)
    assert [hashlib.sha256(p).digest() for p in received] == [
        hashlib.sha256(p).digest() for p in payloads
    ]
    assert isinstance(consumer.client, BulkClient)
    consumer.client.ack_many(mid for mid, _ in consumer.got)


def test_acked_are_not_redelivered_and_unacked_are(broker: Broker) -> None:
    first = Consumer(broker)
    # Fewer than the broker's inflight window, so all arrive before any ack.
    small = [f"m{i}".encode() for i in range(1500)]
    _publish(broker, small)
    assert wait_until(lambda: len(first.got) >= len(small), 30)
    assert isinstance(first.client, BulkClient)
    first.client.ack_many(mid for mid, _ in first.got[:1000])
    # The broker handles one connection's packets in order: a SUBACK for a subscription sent
    # after the acks proves it took them. (Reconnecting at once instead can lose acks to the
    # session takeover, on stock paho too: the broker then redelivers, which is safe.)
    first.subscribed.clear()
    first.client.subscribe("vt/test/fence", qos=1)
    assert first.subscribed.wait(10)
    first.close()

    again = Consumer(broker)
    assert wait_until(lambda: len(again.got) >= 500, 30)
    assert not wait_until(lambda: len(again.got) > 500, 1)  # and nothing more comes
    assert sorted(p for _, p in again.got) == sorted(p for _, p in first.got[1000:])
    again.close()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
def test_messages_read_the_same_as_stock_paho_reads_them(
    broker: Broker, protocol: mqtt.MQTTProtocolVersion
) -> None:
    """Topic (UTF-8 too), payload, QoS and the retain flag, as paho's own parser gives them
    (over MQTT 5, PUBLISH goes to paho's parser; the packet framing is still ours)."""
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="same-pub", protocol=protocol)
    pub.connect("127.0.0.1", broker.config.port)
    pub.loop_start()
    pub.publish("vt/same/retained", b"kept", qos=1, retain=True).wait_for_publish(10)
    got: dict[str, list[tuple[str, bytes, int, bool]]] = {"stock": [], "bulk": []}
    ready = threading.Semaphore(0)
    clients = []
    for name, cls in (("stock", mqtt.Client), ("bulk", BulkClient)):
        client = cls(CallbackAPIVersion.VERSION2, client_id=f"same-{name}", protocol=protocol)
        client.on_connect = lambda c, *_: c.subscribe("vt/same/#", qos=1)
        client.on_subscribe = lambda *_: ready.release()
        client.on_message = lambda c, u, m, name=name: got[name].append(
            (m.topic, bytes(m.payload), m.qos, bool(m.retain))
        )
        client.connect("127.0.0.1", broker.config.port)
        client.loop_start()
        clients.append(client)
    assert ready.acquire(timeout=10) and ready.acquire(timeout=10)
    sent = [
        ("vt/same/a", b"", 0),
        ("vt/same/龙湖村/门禁", "通行".encode(), 1),
        ("vt/same/" + "x" * 300, b"\x00" * 70_000, 1),
        ("vt/same/b", b'{"v": 1}', 0),
    ]
    for topic, payload, qos in sent * 3:
        pub.publish(topic, payload, qos=qos).wait_for_publish(10)
    expected = 1 + len(sent) * 3
    assert wait_until(lambda: min(len(v) for v in got.values()) >= expected, 15)
    pub.loop_stop()
    pub.disconnect()
    for client in clients:
        client.disconnect()
        client.loop_stop()
    assert got["bulk"] == got["stock"]
    assert got["bulk"][0] == ("vt/same/retained", b"kept", 1, True)
    assert sorted(set(got["bulk"][1:])) == sorted({(t, p, q, False) for t, p, q in sent})


# --- paho's private names ------------------------------------------------------------------


def test_paho_private_names_this_client_uses_still_exist() -> None:
    """Fails, naming what changed, when paho-mqtt's version or a private name the client relies
    on changes: read ingest/mqtt_client.py against the new paho before raising the pin."""
    installed = version("paho-mqtt")
    assert installed.startswith(mqtt_client.PAHO_VERSION_READ + "."), (
        f"paho-mqtt {installed} is installed; ingest/mqtt_client.py's private names were read"
        f" at {mqtt_client.PAHO_VERSION_READ}: reread them, then update PAHO_VERSION_READ"
    )
    instance = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="names")
    owners = {"Client": mqtt.Client, "instance": instance, "MQTTMessage": mqtt.MQTTMessage}
    for owner, name in mqtt_client.PAHO_PRIVATE_NAMES:
        assert hasattr(owners[owner], name), f"paho's {owner}.{name} is gone (paho {installed})"
    assert set(mqtt.MQTTMessage.__slots__) == mqtt_client.MESSAGE_SLOTS, (
        "paho's MQTTMessage slots changed: BulkClient._handle_publish builds messages without"
        f" __init__ and would leave {set(mqtt.MQTTMessage.__slots__) ^ mqtt_client.MESSAGE_SLOTS}"
    )
    assert {"command", "packet"} <= set(instance._in_packet), "paho's _in_packet keys changed"  # noqa: SLF001
    # The hooks work only while paho calls them from where they were read.
    calls = {
        "_packet_read": "self._sock_recv(",
        "_packet_handle": "self._handle_publish()",
        "_handle_publish": "self._handle_on_message(message)",
        "_sock_close": "sock.close()",
    }
    for method, call in calls.items():
        source = inspect.getsource(getattr(mqtt.Client, method))
        assert call in source, f"paho's Client.{method} no longer calls {call}"


# --- malformed and reserved packets, against a raw socket server ----------------------------

CONNACK = bytes([0x20, 0x02, 0x00, 0x00])
AFTER = b"\x30\x0d\x00\x08vt/afterend"  # a valid QoS 0 PUBLISH: is the connection still read?


def _raw_publish(header: int, topic: bytes, rest: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + rest
    assert len(body) < 128
    return bytes([header, len(body)]) + body


@dataclass
class Outcome:
    delivered: list[tuple[str, bytes, int, bool, bool, int]]
    rc: int  # what the last loop() returned
    error: str | None  # an exception paho let out of loop(), by type
    from_client: bytes  # every byte the client sent after its CONNECT (acks, DISCONNECT)


def _read_packet(conn: socket.socket) -> bytes:
    head = conn.recv(1)
    length, shift = 0, 0
    while True:
        byte = conn.recv(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return head + body


def _against_raw_server(cls: type[mqtt.Client], crafted: bytes) -> Outcome:
    """One connection to a server that accepts the CONNECT, then sends ``crafted`` and a valid
    PUBLISH, and keeps what the client sends until it closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            _read_packet(conn)  # CONNECT
            conn.sendall(CONNACK + crafted + AFTER)
            # A client that closes with bytes unread gets its kernel to reset the connection.
            with contextlib.suppress(ConnectionResetError):
                while data := conn.recv(4096):
                    received.extend(data)

    server = threading.Thread(target=serve)
    server.start()
    delivered: list[tuple[str, bytes, int, bool, bool, int]] = []

    def on_message(client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        try:
            topic = m.topic
        except UnicodeDecodeError:
            topic = "<not UTF-8>"
        delivered.append((topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup), m.mid))

    client = cls(CallbackAPIVersion.VERSION2, client_id="raw", protocol=mqtt.MQTTv311)
    client.on_message = on_message
    client.connect("127.0.0.1", listener.getsockname()[1])
    rc, error = mqtt.MQTT_ERR_SUCCESS, None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            rc = client.loop(0.05)
        except Exception as exc:
            error = type(exc).__name__
            break
        if rc != mqtt.MQTT_ERR_SUCCESS or any(d[0] == "vt/after" for d in delivered):
            break
    client.disconnect()  # sends DISCONNECT and closes, if the connection is still open
    client.loop(0.05)
    server.join(20)
    listener.close()
    assert not server.is_alive()
    return Outcome(delivered, int(rc), error, bytes(received))


RAW_CASES = {
    "qos0": _raw_publish(0x30, b"vt/a", b"x"),
    "qos1": _raw_publish(0x32, b"vt/a", b"\x00\x07x"),
    "qos1-dup-retain": _raw_publish(0x3B, b"vt/a", b"\x00\x07x"),
    "qos2": _raw_publish(0x34, b"vt/a", b"\x00\x07x"),
    "qos3-reserved": _raw_publish(0x36, b"vt/a", b"\x00\x07x"),
    "qos3-dup-retain": _raw_publish(0x3F, b"vt/a", b"\x00\x07x"),
    "empty-topic": _raw_publish(0x30, b"", b"x"),
    "qos1-no-packet-id": _raw_publish(0x32, b"vt/a", b""),
    "qos1-half-packet-id": _raw_publish(0x32, b"vt/a", b"\x00"),
    "topic-longer-than-packet": bytes([0x30, 0x04, 0x00, 0x09]) + b"vt",
    "one-byte-body": bytes([0x30, 0x01, 0x00]),
    "not-utf8-topic": _raw_publish(0x30, b"vt/\xff", b"x"),
    "remaining-length-5-bytes": bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    "reserved-type-0": bytes([0x00, 0x00]),
    "reserved-type-15": bytes([0xF0, 0x00]),
    "puback-reserved-flags": bytes([0x42, 0x02, 0x00, 0x01]),
    "pingresp-with-body": bytes([0xD0, 0x01, 0x00]),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_malformed_and_reserved_packets_get_what_stock_paho_gives_them(case: str) -> None:
    stock = _against_raw_server(mqtt.Client, RAW_CASES[case])
    ours = _against_raw_server(BulkClient, RAW_CASES[case])
    assert ours == stock


def test_a_qos3_publish_is_refused_and_ends_the_connection() -> None:
    """MQTT 3.1.1 §3.3.1.2: QoS 3 is reserved, a protocol violation. The client delivers
    nothing from that connection after it and closes it, as stock paho does."""
    ours = _against_raw_server(BulkClient, RAW_CASES["qos3-reserved"])
    assert ours.delivered == []
    assert ours.rc == mqtt.MQTT_ERR_PROTOCOL
    assert ours.from_client == b""  # no PUBACK, no DISCONNECT: the socket was just closed
    valid = _against_raw_server(BulkClient, RAW_CASES["qos1-dup-retain"])
    assert valid.delivered[0] == ("vt/a", b"x", 1, True, True, 7)
    assert valid.from_client == bytes([0x40, 0x02, 0x00, 0x07, 0xE0, 0x00])  # PUBACK 7, DISCONNECT
