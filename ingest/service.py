"""The ingester: MQTT in, TimescaleDB out, nothing lost and nothing stored twice.

- The paho callback only turns a message into a ``Received`` value and queues it: a blocking
  callback would stall acks and keepalives.
- The main thread judges and batches; writer threads, each with its own database connection,
  commit. A message is acknowledged (QoS 1, paho's ``manual_ack``) only after the transaction
  that holds it has committed, and only on the broker connection that delivered it: after a
  reconnect the broker redelivers what was not acknowledged, and the unique key on events
  makes the second copy a counted duplicate.
- Two writers by default: while PostgreSQL works through one batch's ``COPY`` (most of a
  commit's time is the server's), the other batch is being sent. Batches may then commit out
  of order, which MQTT acks allow and which the derived tables do not mind (every update is
  a sum, a least/greatest or guarded by time).
- When the database is down the batch is retried with backoff and nothing is acknowledged;
  the broker's inflight window then stops delivery, so memory stays bounded.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import logging
import queue
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from devices.mqtt import connect_options, new_client
from devices.topics import bridge_subscription, subscription
from ingest import maintenance, store
from ingest.batching import Batch, Batcher
from ingest.metrics import IngestMetrics, serve
from ingest.mqtt_client import BulkClient
from ingest.settings import DEFAULT_CREDENTIAL_KEY, IngestSettings
from ingest.validate import KnownDevice, Reason, Received, judge

log = logging.getLogger("vt.ingest")

_UNKNOWN_DEVICE_RELOAD_S = 5.0
_LAG_SAMPLE = 100


def tune_process() -> None:
    """For a process that runs only the ingester. Every message allocates a few tuples and
    nothing that forms a cycle, so the cyclic collector runs rarely, and never rescans what
    start-up loaded (modules, pydantic schemas): its full passes were pauses in the stream."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # The writer thread gives up the GIL at each round trip to the database and then waited
    # up to the default 5 ms switch interval to get it back from the judging thread, several
    # times per batch. At 0.2 ms, 100-event batches went from ~40k to ~50k events/s here
    # (bench/ingest_bench.py); single events did not change.
    sys.setswitchinterval(0.0002)


class Inbox:
    """Messages from paho's thread to the main thread, bounded in messages and in bytes.

    A deque and an event that is set only when the reader sleeps: the common case costs one
    append and one popleft, where ``queue.Queue`` took a lock and a condition per message
    (a sixth of the ingester's time). When full, the paho thread waits: it stops reading the
    socket, so a flood (QoS 0 has no broker inflight window to stop it) backs up in TCP and
    the broker, not in memory here. The byte bound matters for gateways' batch messages: ten
    thousand 25 KB messages (the broker's inflight window) held 300 MB.
    """

    def __init__(self, limit: int, max_bytes: int) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self._items: collections.deque[Received] = collections.deque()
        self._wake = threading.Event()
        self._sleeping = False
        # Payload bytes put and popped: each counter has one writer thread, so no update
        # is lost between threads, and their difference is what the inbox holds.
        self._bytes_in = 0
        self._bytes_out = 0

    def put(self, item: Received, stopping: threading.Event) -> None:
        while self.full() and not stopping.is_set():
            time.sleep(0.001)
        self._items.append(item)
        self._bytes_in += len(item.payload)
        if self._sleeping:
            self._wake.set()

    def full(self) -> bool:
        return len(self._items) >= self.limit or self._bytes_in - self._bytes_out >= self.max_bytes

    def pop(self) -> Received | None:
        try:
            item = self._items.popleft()
        except IndexError:
            return None
        self._bytes_out += len(item.payload)
        return item

    def wait(self, timeout: float) -> None:
        """Returns when something is in the inbox, or after ``timeout``."""
        if self._items:
            return
        self._sleeping = True
        if not self._items:  # an append between the check above and the flag is seen here
            self._wake.wait(timeout)
        self._sleeping = False
        self._wake.clear()

    def __len__(self) -> int:
        return len(self._items)


class _Connection:
    """A database connection opened on first use and again after every failure."""

    def __init__(self, dsn: str, prepare: bool) -> None:
        self.dsn = dsn
        self.prepare = prepare
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, connect_timeout=5)
            if self.prepare:
                store.prepare(self._conn)
        return self._conn

    def drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


class Ingester:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.options = settings.ingest
        self.limits = self.options.limits()
        self.metrics = IngestMetrics()
        self.stopping = threading.Event()
        self.inbox = Inbox(self.options.queue_max, self.options.queue_max_bytes)
        self._generation = 0
        self._connected = False
        self._subscribed = False
        # The main thread's, for reading the device registry; the writers have their own.
        self._reader = _Connection(settings.db_dsn, prepare=False)
        self._writes: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
        self._bookkeeping = threading.Lock()  # totals and times the writers update
        self._give_up_at: float | None = None
        self._last_commit_failed_at: float | None = None
        self._staging_until = 0.0
        self._db_ok = False
        self._registry: dict[str, KnownDevice] = {}
        self._registry_at = 0.0
        self._batcher = Batcher(
            self.options.batch_max_events, self.options.batch_max_wait_ms / 1000
        )
        self._client: BulkClient | None = None
        self._last_commit = time.monotonic()
        self._community = False
        # The first retention pass runs a minute after start, not while catching up.
        self._maintained_at = time.monotonic() - self.options.maintenance_interval_s + 60
        self._swept_at = time.monotonic()  # the first check a quarter of the silence after start
        self.totals = {"received": 0, "stored": 0, "duplicates": 0, "dead_letters": 0}
        self.metrics.since_commit.set_function(lambda: time.monotonic() - self._last_commit)

    # --- MQTT edge (network thread) -------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self._generation += 1
        self._connected = True
        self.metrics.mqtt_connected.set(1)
        group = self.options.share_group
        topic_filter = subscription(share_group=group)
        client.subscribe([(topic_filter, 1), (bridge_subscription(group), 1)])
        log.info(
            "connected to %s:%s as %s (session present: %s), subscribing to %s",
            self.settings.mqtt.host,
            self.settings.mqtt.port,
            self.options.client_id,
            getattr(flags, "session_present", "?"),
            topic_filter,
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.error("the broker refused the subscription: %s", reasons)
            return
        self._subscribed = True
        log.info("subscription active")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected = False
        self._subscribed = False
        self.metrics.mqtt_connected.set(0)
        if not self.stopping.is_set():
            log.warning("disconnected from the broker (%s); paho reconnects", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.inbox.put(
            Received(
                message.topic,
                bytes(message.payload),  # paho hands out a slice of its bytearray
                datetime.now(UTC),
                message.mid,
                message.qos,
                self._generation,
                message.retain,
            ),
            self.stopping,
        )

    # --- database edge ----------------------------------------------------------------------

    def _reload_registry(self) -> None:
        try:
            self._registry = store.load_registry(self._reader.get())
            self._registry_at = time.monotonic()
            if not self._db_ok and self._last_commit_failed_at is None:
                self._db_ok = True  # reachable; healthy until a write says otherwise
        except psycopg.Error as exc:
            self._reader.drop()
            self._registry_at = time.monotonic()  # try again later, not on every message
            log.warning("could not reload the device registry: %s", exc)

    # --- main loop -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        since = time.monotonic() - self._last_commit
        return {
            "ok": self._connected and self._db_ok,
            "mqtt_connected": self._connected,
            "subscribed": self._subscribed,
            "database_ok": self._db_ok,
            "queue_depth": len(self.inbox) + len(self._batcher),
            "seconds_since_commit": round(since, 3),
        }

    def run(self, install_signal_handlers: bool = True) -> None:
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
            signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self._warn_about_defaults()
        self._detect_edition()
        self._reload_registry()
        server = None
        if self.options.http_port:
            server = serve(
                self.metrics, self.health, self.options.http_host, self.options.http_port
            )
            log.info(
                "metrics on http://%s:%s/metrics, health on /healthz",
                self.options.http_host,
                self.options.http_port,
            )
        writers = [
            threading.Thread(
                target=self._write_loop,
                args=(_Connection(self.settings.db_dsn, prepare=True), n == 0),
                name=f"vt-writer-{n}",
                daemon=True,
            )
            for n in range(self.options.writers)
        ]
        for writer in writers:
            writer.start()
        client = new_client(
            self.settings.mqtt,
            self.options.client_id,
            clean_session=False,
            manual_ack=True,
            client_class=BulkClient,
        )
        assert isinstance(client, BulkClient)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(1, 10)
        self._client = client
        client.connect_async(
            self.settings.mqtt.host,
            self.settings.mqtt.port,
            self.settings.mqtt.keepalive_s,
            **connect_options(self.settings.mqtt, persistent=True),
        )
        client.loop_start()
        try:
            self._loop()
        finally:
            # The last batch may wait for a database that is down; give it a while, then
            # leave it unacknowledged for the broker to redeliver.
            self._give_up_at = time.monotonic() + self.options.shutdown_grace_s
            for _ in writers:
                self._writes.put(None)  # each writer stops at the first it takes
            for writer in writers:
                writer.join(self.options.shutdown_grace_s + 5)
            client.disconnect()
            client.loop_stop()
            self._reader.drop()
            if server is not None:
                server.shutdown()
            log.info(
                "stopped: received %(received)d, stored %(stored)d, duplicates %(duplicates)d,"
                " dead letters %(dead_letters)d",
                self.totals,
            )

    def _loop(self) -> None:
        while not self.stopping.is_set():
            wait = self._batcher.seconds_until_due(time.monotonic())
            self.inbox.wait(0.25 if wait is None else max(wait, 0.001))
            self._take_waiting(until_full=True)
            if self._batcher.due(time.monotonic()):
                # Blocks while every writer has a batch in hand and one more waits: backpressure.
                self._writes.put(self._batcher.take())
            if time.monotonic() - self._registry_at > self.options.registry_refresh_s:
                self._reload_registry()
            self.metrics.queue_depth.set(len(self.inbox) + len(self._batcher))
        # SIGTERM: what was delivered before now is judged, committed and acknowledged.
        self._take_waiting(until_full=False)
        if len(self._batcher):
            self._writes.put(self._batcher.take())

    def _take_waiting(self, until_full: bool) -> None:
        """Judges what is in the inbox: until the batch is full, or all of it, handing each
        full batch to the writer (one message may hold many events, so count rows)."""
        taken = 0
        while True:
            if self._batcher.rows >= self._batcher.max_rows:
                if until_full:
                    break
                self._writes.put(self._batcher.take())
            message = self.inbox.pop()
            if message is None:
                break
            self._take(message)
            taken += 1
        if taken:
            self.metrics.received.inc(taken)
            self.totals["received"] += taken

    def _take(self, message: Received) -> None:
        verdict = judge(message, self._registry, self.limits)
        if (
            verdict.refusals
            and verdict.refusals[0].reason is Reason.UNKNOWN_DEVICE
            and time.monotonic() - self._registry_at > _UNKNOWN_DEVICE_RELOAD_S
        ):
            self._reload_registry()  # a device registered since the last reload
            verdict = judge(message, self._registry, self.limits)
        for refusal in verdict.refusals:
            log.info(
                "refused %s on %s: %s (%s); payload %r",
                refusal.reason.value,
                refusal.topic,
                refusal.detail,
                refusal.payload_size,
                refusal.payload[:120],
            )
        for note in verdict.notes:  # bridged only: unmapped vendor codes, skipped messages
            self.metrics.bridge_notes.labels(note).inc()
        self._batcher.add(message, verdict, time.monotonic())

    # --- writer thread ---------------------------------------------------------------------

    def _write_loop(self, db: _Connection, maintains: bool) -> None:
        """Commits batches, then acknowledges them; one writer runs maintenance when idle."""
        try:
            while True:
                try:
                    batch = self._writes.get(timeout=1.0)
                except queue.Empty:
                    if maintains and self._maintenance_due():
                        self._maintain(db)
                    if maintains:
                        self._sweep_silent(db)
                    continue
                if batch is None:
                    return
                self._commit(batch, db)
                if maintains:
                    self._sweep_silent(db)
        finally:
            db.drop()

    def _commit(self, batch: Batch, db: _Connection) -> None:
        delay = 0.2
        while True:
            started = time.monotonic()
            try:
                result = store.store(
                    db.get(),
                    batch.events,
                    batch.refusals,
                    batch.statuses,
                    batch.configs,
                    direct=time.monotonic() >= self._staging_until,
                    tracked=batch.tracked,
                    sightings=batch.sightings,
                    retracted=batch.retracted,
                )
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                # Another writer holds some of the same events (duplicates in flight): the
                # database is fine and the batch was rolled back whole, so go again at once.
                self.metrics.conflicts.inc()
                log.info("batch rolled back by a conflict (%s); retrying", exc.diag.message_primary)
                continue
            except psycopg.Error as exc:
                self._db_ok = False
                self._last_commit_failed_at = time.monotonic()
                self.metrics.db_errors.inc()
                db.drop()
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    log.error(
                        "giving up on a batch of %d messages, unacknowledged: the broker"
                        " redelivers them to the next ingester",
                        len(batch.messages),
                    )
                    return
                log.warning("database write failed (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.options.db_retry_max_s)
                continue
            break
        with self._bookkeeping:
            self._db_ok = True
            self._last_commit_failed_at = None
            if result.duplicates:
                self._staging_until = time.monotonic() + self.options.staging_after_duplicates_s
            self._last_commit = time.monotonic()
            self.totals["stored"] += result.inserted
            self.totals["duplicates"] += result.duplicates
            self.totals["dead_letters"] += result.dead_letters
        self.metrics.commit_seconds.observe(time.monotonic() - started)
        self.metrics.last_commit.set(time.time())
        committed = datetime.now(UTC)
        # A systematic sample of at most 100 events per batch: observing every event of a
        # 2,000-event batch cost a tenth of the ingester's time.
        events = batch.events
        for event in events[:: max(1, len(events) // _LAG_SAMPLE)]:
            self.metrics.event_lag.observe((committed - event.ts).total_seconds())
        self.metrics.stored.inc(result.inserted)
        self.metrics.duplicates.inc(result.duplicates)
        for refusal in batch.refusals:
            self.metrics.dead_letters.labels(refusal.reason.value).inc()
        self._acknowledge(batch)

    def _acknowledge(self, batch: Batch) -> None:
        client = self._client
        if client is None:
            return
        generation = self._generation
        # An ack on a newer connection would name a packet id the broker reassigned.
        current = [m for m in batch.messages if m.generation == generation]
        client.ack_many(m.mid for m in current if m.qos == 1)
        for message in current:
            if message.qos == 2:
                client.ack(message.mid, message.qos)

    def _warn_about_defaults(self) -> None:
        if self.options.credential_key.get_secret_value() == DEFAULT_CREDENTIAL_KEY:
            log.warning(
                "VT_INGEST__CREDENTIAL_KEY is the development default: set a secret key before"
                " bridging real faces, cards or plates"
            )

    def _detect_edition(self) -> None:
        """Logs the TimescaleDB edition; on the Community edition, installs its policies."""
        try:
            conn = self._reader.get()
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            conn.commit()
            if row is None:
                log.warning("TimescaleDB is not in this database; run `villagetwin migrate`")
                return
            license_ = maintenance.edition(conn)
            self._community = license_ == "timescale"
            log.info(
                "TimescaleDB %s, %s edition: retention %s",
                row[0],
                "Community" if self._community else license_.capitalize(),
                "by TimescaleDB's policies" if self._community else "by the ingester",
            )
            if self._community:
                maintenance.install_policies(
                    conn, self.options.retention(), self.options.compress_after_days
                )
        except psycopg.Error as exc:
            self._reader.drop()
            log.warning("database not reachable at start (%s); will keep retrying", exc)

    def _sweep_silent(self, db: _Connection) -> None:
        """Bridged devices whose vendor heartbeats stopped go offline (store.mark_silent_offline),
        checked every quarter of ``bridge_silence_s``."""
        silence = self.options.bridge_silence_s
        if self.stopping.is_set() or time.monotonic() - self._swept_at < silence / 4:
            return
        self._swept_at = time.monotonic()
        try:
            gone = store.mark_silent_offline(db.get(), timedelta(seconds=silence))
        except psycopg.Error as exc:
            db.drop()
            log.warning("silent-device check failed (%s); will try again", exc)
            return
        if gone:
            log.info("silent for %.0f s, marked offline: %s", silence, ", ".join(gone[:20]))

    def _maintenance_due(self) -> bool:
        return time.monotonic() - self._maintained_at > self.options.maintenance_interval_s

    def _maintain(self, db: _Connection) -> None:
        self._maintained_at = time.monotonic()
        try:
            removed = maintenance.run_retention(db.get(), self.options.retention(), self._community)
        except psycopg.Error as exc:
            db.drop()
            log.warning("retention pass failed (%s); will try again", exc)
            return
        if any(removed.values()):
            log.info("retention removed %s", removed)
