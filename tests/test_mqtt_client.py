"""The ingester's paho client (bulk reads, one write for a batch of acks) against a real
Mosquitto: every byte of every message arrives intact and in order across read-buffer
boundaries, acked messages are not redelivered, unacked ones are, and the same holds across
a reconnect."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support import Broker, wait_until

from devices.mqtt import new_client
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
