"""Past one broker: the ingester as a competing consumer of a RabbitMQ quorum queue.

Devices keep speaking MQTT (RabbitMQ's MQTT plugin): ``vt/v1/<device>/event`` arrives on the
``amq.topic`` exchange with the routing key ``vt.v1.<device>.event`` (the plugin swaps ``/`` and
``.``). One quorum queue (Raft-replicated over the cluster's nodes, durable) is bound to the
device topics; any number of ingesters consume it, each message going to one of them.

The guarantees are the ingester's own (ingest/service.py): a message is acknowledged only after
the transaction that stored it committed (``basic_ack(multiple=True)`` up to the batch's last
delivery tag); a consumer that dies leaves its unacknowledged messages to RabbitMQ, which
redelivers them to another consumer; the unique key ``(event_id, ts)`` stores a redelivered
event once (store.py's staging path). The prefetch count is the inflight window.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest import store
from ingest.service import credential_limits
from ingest.settings import IngestSettings
from ingest.validate import ConfigUpdate, EventRow, Received, Refusal, StatusChange, judge

log = logging.getLogger("vt.ingest.amqp")

# The device topics the ingester stores, as routing keys (MQTT '+' is AMQP '*').
BINDINGS = ("vt.v1.*.event", "vt.v1.*.status", "vt.v1.*.config")
_SWAP = str.maketrans("./", "/.")


def topic_of(routing_key: str) -> str:
    """The MQTT topic a routing key came from (RabbitMQ's MQTT plugin swaps '/' and '.'):
    ``vt.v1.gate/1.event`` -> ``vt/v1/gate.1/event``."""
    return routing_key.translate(_SWAP)


def declare(channel: Any, queue: str) -> None:
    """The quorum queue and its bindings to amq.topic (idempotent)."""
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    for key in BINDINGS:
        channel.queue_bind(queue, "amq.topic", routing_key=key)


class AmqpIngester:
    """Consumes the queue until ``stopping`` is set (SIGTERM), storing batches of at most
    ``batch_max_events`` rows or ``batch_max_wait_ms`` old."""

    def __init__(self, settings: IngestSettings) -> None:
        if settings.amqp_url is None:
            raise ValueError("VT_AMQP_URL is not set")
        self.settings = settings
        self.options = settings.ingest
        self.stopping = threading.Event()
        self.totals = {"received": 0, "stored": 0, "duplicates": 0, "dead_letters": 0}

    def run(self, install_signal_handlers: bool = True) -> None:
        """Consumes until SIGTERM; a lost connection (a node down) is opened again, on the next
        node of ``VT_AMQP_URL`` (several, comma-separated, one per cluster node)."""
        import pika

        if install_signal_handlers:
            signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
            signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        assert self.settings.amqp_url is not None
        nodes = [
            pika.URLParameters(u.strip())
            for u in self.settings.amqp_url.get_secret_value().split(",")
            if u.strip()
        ]
        db = psycopg.connect(self.settings.db_dsn)
        store.prepare(db)
        try:
            while not self.stopping.is_set():
                try:
                    connection = pika.BlockingConnection(nodes)
                except pika.exceptions.AMQPConnectionError as exc:
                    log.warning("no broker node reachable (%s); trying again", exc)
                    time.sleep(1.0)
                    continue
                try:
                    self._consume(connection, db)
                except pika.exceptions.AMQPError as exc:
                    # What was received and not committed is redelivered, to us or another.
                    log.warning("connection to the broker lost (%r); reconnecting", exc)
                    time.sleep(0.5)
                finally:
                    if connection.is_open:
                        connection.close()
        finally:
            db.close()
            log.info(
                "stopped: received %(received)d, stored %(stored)d, duplicates %(duplicates)d,"
                " dead letters %(dead_letters)d",
                self.totals,
            )

    def _consume(self, connection: Any, db: psycopg.Connection) -> None:
        channel = connection.channel()
        declare(channel, self.options.amqp_queue)
        channel.basic_qos(prefetch_count=self.options.amqp_prefetch)
        registry = store.load_registry(db)
        # The MQTT ingester's key (secret, key file or demo); bridges are not bound here.
        limits, _bridges = credential_limits(self.options)
        events: list[EventRow] = []
        refusals: list[Refusal] = []
        statuses: list[StatusChange] = []
        configs: list[ConfigUpdate] = []
        last_tag = 0
        opened = 0.0
        wait = self.options.batch_max_wait_ms / 1000
        log.info("consuming %s (prefetch %d)", self.options.amqp_queue, self.options.amqp_prefetch)
        log.info("subscription active")  # the same line as the MQTT ingester's

        def flush() -> None:
            nonlocal events, refusals, statuses, configs, last_tag
            if not last_tag:
                return
            result = self._commit(db, events, refusals, statuses, configs)
            channel.basic_ack(delivery_tag=last_tag, multiple=True)
            self.totals["stored"] += result.inserted
            self.totals["duplicates"] += result.duplicates
            self.totals["dead_letters"] += len(refusals)
            events, refusals, statuses, configs, last_tag = [], [], [], [], 0

        for method, _properties, body in channel.consume(
            self.options.amqp_queue, inactivity_timeout=0.02
        ):
            if method is not None:
                now = datetime.now(UTC)
                message = Received(topic_of(method.routing_key), body, now)
                verdict = judge(message, registry, limits)
                events += verdict.events
                refusals += verdict.refusals
                if verdict.status is not None:
                    statuses.append(verdict.status)
                if verdict.config is not None:
                    configs.append(verdict.config)
                if not last_tag:
                    opened = time.monotonic()
                last_tag = method.delivery_tag
                self.totals["received"] += 1
            full = len(events) >= self.options.batch_max_events
            if last_tag and (full or time.monotonic() - opened >= wait):
                flush()
            if self.stopping.is_set():
                break
        flush()
        channel.cancel()

    def _commit(
        self,
        db: psycopg.Connection,
        events: list[EventRow],
        refusals: list[Refusal],
        statuses: list[StatusChange],
        configs: list[ConfigUpdate],
    ) -> store.StoreResult:
        """One transaction; a deadlock with another consumer's redelivered rows is retried."""
        for attempt in range(5):
            try:
                return store.store(db, events, refusals, statuses, configs)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                log.info("batch rolled back by a conflict; retrying (%d)", attempt + 1)
        return store.store(db, events, refusals, statuses, configs, direct=False)
