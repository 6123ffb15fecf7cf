"""Prometheus metrics and the /metrics and /healthz endpoints of the ingester."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app


class IngestMetrics:
    """One registry per ingester, so tests can run several in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("vt_messages_received", "MQTT messages received", registry=r)
        self.stored = Counter("vt_events_stored", "events committed to the database", registry=r)
        self.duplicates = Counter(
            "vt_events_duplicate", "events already stored (redeliveries, retries)", registry=r
        )
        self.dead_letters = Counter(
            "vt_dead_letters", "messages or events refused, by reason", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "vt_queue_depth", "messages received and not yet committed", registry=r
        )
        self.commit_seconds = Histogram(
            "vt_batch_commit_seconds",
            "time to commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.event_lag = Histogram(
            "vt_event_lag_seconds",
            "device time to commit, per stored event (at most 100 sampled per batch)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.last_commit = Gauge(
            "vt_last_commit_timestamp_seconds", "unix time of the last commit", registry=r
        )
        self.since_commit = Gauge(
            "vt_seconds_since_last_commit", "seconds since the last batch committed", registry=r
        )
        self.db_errors = Counter(
            "vt_database_errors", "failed commit attempts (retried)", registry=r
        )
        self.conflicts = Counter(
            "vt_batch_conflicts",
            "batches rolled back by a deadlock with another writer or ingester, retried after a"
            " short jittered pause",
            registry=r,
        )
        self.stalls = Counter(
            "vt_writer_stalls",
            "times a batch waited longer than stall_after_s for its commit",
            registry=r,
        )
        self.stalled = Gauge(
            "vt_writer_stalled", "1 while a batch waits longer than stall_after_s", registry=r
        )
        self.writer_deaths = Counter(
            "vt_writer_deaths", "writer threads that died (the ingester then stops)", registry=r
        )
        self.salvaged_batches = Counter(
            "vt_batches_salvaged",
            "batches the database refused for their data, bisected to dead-letter the bad rows",
            registry=r,
        )
        self.dead_letters_suppressed = Counter(
            "vt_dead_letters_suppressed",
            "dead letters counted but not stored: their device was over its quota, by reason",
            ["reason"],
            registry=r,
        )
        self.bridge_notes = Counter(
            "vt_bridge_notes",
            "bridged vendor messages stored or skipped with a note (unmapped code, skipped)",
            ["note"],
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "vt_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.last_commit.set(time.time())


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(
    metrics: IngestMetrics, health: Callable[[], dict[str, Any]], host: str, port: int
) -> WSGIServer:
    """Starts /metrics and /healthz on a daemon thread; /healthz answers 503 when unhealthy."""
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            report = health()
            status = "200 OK" if report.get("ok") else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(report).encode()]
        result: Iterable[bytes] = metrics_app(environ, start_response)
        return result

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="vt-http", daemon=True).start()
    return server


# The broker's counters an operator needs to see a loss coming or happening (Mosquitto's
# $SYS tree, published every sys_interval): dropped is what the broker discarded because a
# client's queue was full (max_queued_messages/bytes) or a message was refused.
BROKER_SYS_TOPICS = {
    "$SYS/broker/publish/messages/dropped": (
        "vt_broker_messages_dropped",
        "messages the broker dropped (queues full), since it started",
    ),
    "$SYS/broker/store/messages/count": (
        "vt_broker_stored_messages",
        "messages the broker holds (queued, retained, in flight)",
    ),
    "$SYS/broker/store/messages/bytes": (
        "vt_broker_stored_bytes",
        "payload bytes of the messages the broker holds",
    ),
    "$SYS/broker/clients/connected": ("vt_broker_clients_connected", "clients connected"),
}


class BrokerMetrics:
    """Gauges fed by the broker's $SYS messages (the ingester subscribes to them). Mosquitto
    publishes a counter only when it changes, and keeps it for 60 s (its $SYS messages carry
    that expiry): a gauge reads NaN (unknown) until the broker has sent a value since the
    ingester connected; every change after that is delivered."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauges = {
            topic: Gauge(name, text, registry=registry)
            for topic, (name, text) in BROKER_SYS_TOPICS.items()
        }
        for gauge in self.gauges.values():
            gauge.set(float("nan"))
        self.values: dict[str, float] = {}

    def update(self, topic: str, payload: bytes | bytearray) -> None:
        """Sets the gauge of a ``$SYS`` ``topic`` of ``BROKER_SYS_TOPICS`` from its ``payload`` (a
        number as ASCII text, as Mosquitto publishes it) and remembers the value in ``values``. A
        topic not in the table or a payload that is not a number is ignored."""
        gauge = self.gauges.get(topic)
        if gauge is None:
            return
        try:
            value = float(payload)
        except ValueError:
            return
        gauge.set(value)
        self.values[BROKER_SYS_TOPICS[topic][0]] = value
