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
import dataclasses
import gc
import logging
import os
import queue
import random
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
from ingest import keys, maintenance, pool, store
from ingest.batching import Batch, Batcher
from ingest.guard import DeadLetterQuota, LabelLimit, WriterWatch
from ingest.metrics import BROKER_SYS_TOPICS, BrokerMetrics, IngestMetrics, serve
from ingest.mqtt_client import BulkClient
from ingest.salvage import Salvage, describe, describe_for_log, is_conflict, is_outage
from ingest.settings import DEFAULT_CREDENTIAL_KEY, IngestOptions, IngestSettings
from ingest.validate import KnownDevice, Limits, Reason, Received, Verdict, judge

log = logging.getLogger("vt.ingest")

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
        """Appends ``item`` (called by paho's thread), first waiting in 1 ms sleeps while the inbox
        holds ``limit`` messages or ``max_bytes`` payload bytes; once ``stopping`` is set it appends
        without waiting. Wakes a waiting reader."""
        while self.full() and not stopping.is_set():
            time.sleep(0.001)
        self._items.append(item)
        self._bytes_in += len(item.payload)
        if self._sleeping:
            self._wake.set()

    def full(self) -> bool:
        """Whether the inbox holds ``limit`` messages or ``max_bytes`` payload bytes or more."""
        return len(self._items) >= self.limit or self._bytes_in - self._bytes_out >= self.max_bytes

    def pop(self) -> Received | None:
        """The oldest message, or None when the inbox is empty (never blocks)."""
        try:
            item = self._items.popleft()
        except IndexError:
            return None
        self._bytes_out += len(item.payload)
        return item

    def wait(self, timeout: float) -> None:
        """Returns when something is in the inbox, or after ``timeout`` seconds."""
        if self._items:
            return
        self._sleeping = True
        if not self._items:  # an append between the check above and the flag is seen here
            self._wake.wait(timeout)
        self._sleeping = False
        self._wake.clear()

    def __len__(self) -> int:
        return len(self._items)


def credential_limits(options: IngestOptions) -> tuple[Limits, bool]:
    """The limits with the credential key to use, and whether vendor bridges may be ingested:
    only with a key that is not the public development one, unless in demo mode."""
    limits = options.limits()
    key, key_id = limits.credential_key, limits.credential_key_id
    if not key and options.credential_key_file.exists():
        key_id, key = keys.load(options.credential_key_file).current
        key_id = "" if key_id == keys.LEGACY_KEY_ID else key_id
    if key and key != DEFAULT_CREDENTIAL_KEY.encode():
        return dataclasses.replace(limits, credential_key=key, credential_key_id=key_id), True
    if options.demo:
        demo_key = DEFAULT_CREDENTIAL_KEY.encode()
        return dataclasses.replace(limits, credential_key=demo_key, credential_key_id=""), True
    return dataclasses.replace(limits, credential_key=b"", credential_key_id=""), False


class _Connection:
    """One connection lent by the process's pool (``ingest/pool.py``), held until ``drop()``
    and opened again, prepared, on the next ``get()``. ``prepare`` is kept for callers: every
    pooled connection is prepared."""

    def __init__(self, dsn: str, prepare: bool) -> None:
        self.dsn = dsn
        self.prepare = prepare
        self._pool = pool.hold(dsn)
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        """The held connection, lent from the pool (and prepared) if none is held or it was closed.
        Raises psycopg.OperationalError when the database cannot be reached."""
        if self._conn is None or self._conn.closed:
            self._conn = pool.lend(self._pool)
        return self._conn

    def drop(self) -> None:
        """Closes the held connection, if any, and gives it back to the pool as closed."""
        if self._conn is not None:
            pool.give_back_closed(self._pool, self._conn)
        self._conn = None


class Ingester:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.options = settings.ingest
        self.client_id = settings.client_id
        self.limits, self.bridges = credential_limits(self.options)
        self.metrics = IngestMetrics()
        self.broker_metrics = BrokerMetrics(self.metrics.registry)
        self.stopping = threading.Event()
        self.inbox = Inbox(self.options.queue_max, self.options.queue_max_bytes)
        self._generation = 0
        self._wanted = 1  # subscriptions that must succeed (the device topics)
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
        self._plain = False  # plain PostgreSQL: partitions kept by the ingester
        # The first retention pass runs a minute after start, not while catching up.
        self._maintained_at = time.monotonic() - self.options.maintenance_interval_s + 60
        self._swept_at = time.monotonic()  # the first check a quarter of the silence after start
        self.totals = {"received": 0, "stored": 0, "duplicates": 0, "dead_letters": 0}
        self.metrics.since_commit.set_function(lambda: time.monotonic() - self._last_commit)
        # Robustness (issue 11): writers that die or stall are seen, and no device's dead
        # letters fill the table.
        self._watch = WriterWatch()
        self._handing_off_since: float | None = None
        self._stalled = False
        self._watched_at = 0.0
        self._no_more_batches = threading.Event()
        self._quota = DeadLetterQuota(
            self.options.dead_letter_quota, self.options.dead_letter_quota_window_s
        )
        self._quota_swept_at = time.monotonic()
        self._note_labels = LabelLimit(self.options.metric_label_limit)
        self.failed = False  # a writer died: the process should exit non-zero

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
        filters = [(topic_filter, 1)]
        if self.bridges:
            filters.append((bridge_subscription(group), 1))
        else:  # a persistent session may still hold it from a run that had a key
            client.unsubscribe(bridge_subscription(group))
        self._wanted = len(filters)
        # The broker's own counters (dropped messages, stored bytes), not shared, QoS 0.
        client.subscribe(filters + [(topic, 0) for topic in BROKER_SYS_TOPICS])
        log.info(
            "connected to %s:%s as %s (session present: %s), subscribing to %s",
            self.settings.mqtt.host,
            self.settings.mqtt.port,
            self.client_id,
            getattr(flags, "session_present", "?"),
            topic_filter,
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if any(r.is_failure for r in reasons[: self._wanted]):
            log.error("the broker refused the subscription: %s", reasons)
            return
        if any(r.is_failure for r in reasons[self._wanted :]):
            log.warning("the broker refused the $SYS counters: no vt_broker_* metrics")
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
        topic = message.topic
        if topic[0] == "$":  # $SYS/broker/…: the broker's counters, for /metrics
            self.broker_metrics.update(topic, message.payload)
            return
        self.inbox.put(
            Received(
                topic,
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
        """What ``/healthz`` reports, a JSON-ready dict: ``ok`` (connected, database reachable, no
        batch waiting longer than ``stall_after_s``, no dead writer), ``mqtt_connected``,
        ``subscribed``, ``database_ok``, ``queue_depth`` (messages received and not yet handed
        to a writer: the inbox and the open batch), ``seconds_since_commit`` and
        ``oldest_batch_waiting_s`` (seconds, 3 decimals), ``stalled``, ``dead_writers`` (thread
        names)."""
        now = time.monotonic()
        since = now - self._last_commit
        waiting = self._watch.longest_wait(now, self._handing_off_since)
        stalled = waiting > self.options.stall_after_s
        dead = list(self._watch.dead)
        return {
            "ok": self._connected and self._db_ok and not stalled and not dead,
            "mqtt_connected": self._connected,
            "subscribed": self._subscribed,
            "database_ok": self._db_ok,
            "queue_depth": len(self.inbox) + len(self._batcher),
            "seconds_since_commit": round(since, 3),
            "oldest_batch_waiting_s": round(waiting, 3),
            "stalled": stalled,
            "dead_writers": dead,
        }

    def _check_stall(self) -> None:
        """Counts a stall when one begins (at most twice a second; the main thread)."""
        now = time.monotonic()
        if now - self._watched_at < 0.5:
            return
        self._watched_at = now
        waiting = self._watch.longest_wait(now, self._handing_off_since)
        stalled = waiting > self.options.stall_after_s
        if stalled and not self._stalled:
            self.metrics.stalls.inc()
            log.warning(
                "ingestion stalled: a batch has waited %.0f s for its commit (%d messages"
                " waiting); /healthz answers 503",
                waiting,
                len(self.inbox) + len(self._batcher),
            )
        elif self._stalled and not stalled:
            log.info("ingestion no longer stalled")
        self._stalled = stalled
        self.metrics.stalled.set(1 if stalled else 0)

    def _hand_off(self, batch: Batch) -> None:
        """Gives a batch to the writers; blocks while they are all busy (backpressure), but
        not past the shutdown deadline: then the batch is left unacknowledged, for the
        broker to redeliver."""
        self._handing_off_since = time.monotonic()
        try:
            while True:
                try:
                    self._writes.put(batch, timeout=0.25)
                    return
                except queue.Full:
                    pass
                self._check_stall()
                if self.stopping.is_set() and self._give_up_at is None:
                    self._give_up_at = time.monotonic() + self.options.shutdown_grace_s
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    log.error(
                        "stopping: a batch of %d messages is left unacknowledged (every writer"
                        " is still busy); the broker redelivers it",
                        len(batch.messages),
                    )
                    return
        finally:
            self._handing_off_since = None

    def run(self, install_signal_handlers: bool = True) -> None:
        """Runs the ingester until ``stopping`` is set (by SIGTERM or SIGINT when
        ``install_signal_handlers``, which must then be called from the main thread): starts the
        metrics/health server, the writer threads and the MQTT client with a persistent session,
        judges and batches what arrives, and hands batches to the writers. On stop it commits and
        acknowledges what was received within ``shutdown_grace_s`` seconds and leaves the rest
        unacknowledged for the broker to redeliver.

        Raises OSError when the HTTP port cannot be bound, and ValueError (paho's) for an invalid
        broker host, port or keepalive. Database and broker outages are not raised: they are logged,
        retried and shown by ``health``."""
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, lambda *_: self._on_signal())
            signal.signal(signal.SIGINT, lambda *_: self._on_signal())
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
                args=(_Connection(self.settings.db_dsn, prepare=True), n == 0, f"vt-writer-{n}"),
                name=f"vt-writer-{n}",
                daemon=True,
            )
            for n in range(self.options.writers)
        ]
        for writer in writers:
            writer.start()
        client = new_client(
            self.settings.mqtt,
            self.client_id,
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
            # leave it unacknowledged for the broker to redeliver. Writers are daemon threads:
            # one blocked in the database past the deadline does not hold the process.
            if self._give_up_at is None:
                self._give_up_at = time.monotonic() + self.options.shutdown_grace_s
            self._no_more_batches.set()
            for writer in writers:
                writer.join(max(0.0, self._give_up_at + 0.5 - time.monotonic()))
            if any(writer.is_alive() for writer in writers):
                log.error("stopping with a batch not committed: left unacknowledged")
            # QoS 0 $SYS messages for a session that is away count as dropped: leave none.
            client.unsubscribe(list(BROKER_SYS_TOPICS))
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

    def _on_signal(self) -> None:
        """SIGTERM or SIGINT: stop; and should the orderly stop hang (a database that
        accepts connections but never answers), leave hard a little after the grace period.
        Nothing is lost either way: only what was committed was acknowledged."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        limit = self.options.shutdown_grace_s + 3.0

        def hard_exit() -> None:
            log.error(
                "stopping took over %.0f s: exiting now, unacknowledged work is redelivered", limit
            )
            logging.shutdown()
            os._exit(1)

        timer = threading.Timer(limit, hard_exit)
        timer.daemon = True
        timer.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            wait = self._batcher.seconds_until_due(time.monotonic())
            # At least four times a second, so that a SIGTERM is seen whatever the batch wait.
            self.inbox.wait(0.25 if wait is None else min(max(wait, 0.001), 0.25))
            self._take_waiting(until_full=True)
            if self._batcher.due(time.monotonic()):
                # Blocks while every writer has a batch in hand and one more waits: backpressure.
                self._hand_off(self._batcher.take())
            if time.monotonic() - self._registry_at > self.options.registry_refresh_s:
                self._reload_registry()
            self.metrics.queue_depth.set(len(self.inbox) + len(self._batcher))
            self._check_stall()
            self._sweep_quota(everything=False)
        if self.options.share_group and self.options.leave_share_on_stop:
            self._leave_share_group()
        # SIGTERM: what was delivered before now is judged, committed and acknowledged.
        if self._give_up_at is None:
            self._give_up_at = time.monotonic() + self.options.shutdown_grace_s
        self._take_waiting(until_full=False)
        self._sweep_quota(everything=True)
        if len(self._batcher) or self._batcher.rows:
            self._hand_off(self._batcher.take())

    def _leave_share_group(self) -> None:
        """Scale-down: Mosquitto keeps sending a share to a stopped member's persistent
        session (and holds it there until that member returns). Unsubscribing first stops
        that; what the broker had already queued for this session is still taken and
        committed, until nothing has come for ``leave_quiet_ms`` (at most ``leave_drain_s``)."""
        client = self._client
        if client is None or not self._connected:
            return
        group = self.options.share_group
        left = threading.Event()
        client.on_unsubscribe = lambda *_: left.set()
        client.unsubscribe([subscription(share_group=group), bridge_subscription(group)])
        deadline = time.monotonic() + self.options.leave_drain_s
        quiet = self.options.leave_quiet_ms / 1000
        last = time.monotonic()
        while time.monotonic() < deadline:
            before = self.totals["received"]
            self.inbox.wait(0.05)
            self._take_waiting(until_full=True)
            if self._batcher.due(time.monotonic()):
                self._writes.put(self._batcher.take())
            if self.totals["received"] != before:
                last = time.monotonic()
            elif left.is_set() and time.monotonic() - last > quiet:
                break
        log.info("left share group %s (unsubscribed: %s)", group, left.is_set())

    def _take_waiting(self, until_full: bool) -> None:
        """Judges what is in the inbox: until the batch is full, or all of it, handing each
        full batch to the writer (one message may hold many events, so count rows)."""
        taken = 0
        while True:
            if self._batcher.rows >= self._batcher.max_rows:
                if until_full:
                    break
                self._hand_off(self._batcher.take())
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
            and time.monotonic() - self._registry_at >= self.options.unknown_device_reload_s
        ):
            self._reload_registry()  # a device registered since the last reload
            verdict = judge(message, self._registry, self.limits)
        if verdict.refusals:
            verdict = self._refused(verdict)
        for note in verdict.notes:  # bridged only: unmapped vendor codes, skipped messages
            self.metrics.bridge_notes.labels(self._note_labels.label(note)).inc()
        self._batcher.add(message, verdict, time.monotonic())

    def _refused(self, verdict: Verdict) -> Verdict:
        """Logs each refusal (topic, reason and size: never payload bytes, which may be
        personal data) and keeps those within the sender's dead-letter quota."""
        for refusal in verdict.refusals:
            log.info(
                "refused %s on %s (%d bytes)",
                refusal.reason.value,
                refusal.topic,
                refusal.payload_size,
            )
        kept, suppressed = self._quota.admit(verdict.refusals, self._registry, time.monotonic())
        for refusal in suppressed:
            self.metrics.dead_letters_suppressed.labels(refusal.reason.value).inc()
        return verdict._replace(refusals=kept) if suppressed else verdict

    def _sweep_quota(self, everything: bool) -> None:
        """Summary dead letters of ended quota windows (once a second; all at shutdown)."""
        now = time.monotonic()
        if not everything and now - self._quota_swept_at < 1.0:
            return
        self._quota_swept_at = now
        if len(self._quota):
            summaries = self._quota.sweep(now, everything)
            if summaries:
                self._batcher.add_refusals(summaries, now)

    # --- writer thread ---------------------------------------------------------------------

    def _write_loop(self, db: _Connection, maintains: bool, name: str) -> None:
        """Commits batches, then acknowledges them; one writer runs maintenance when idle.
        Returns once the main thread has handed over its last batch and none is left. A writer
        that dies (a bug: data errors and outages are handled) says so loudly: /healthz
        answers 503, vt_writer_deaths counts it and the ingester stops, exiting non-zero,
        so that its supervisor restarts it and the broker redelivers the batch."""
        try:
            while True:
                try:
                    batch = self._writes.get(timeout=0.1 if self.stopping.is_set() else 1.0)
                except queue.Empty:
                    if self._no_more_batches.is_set():
                        return
                    if maintains and self._maintenance_due():
                        self._maintain(db)
                    if maintains:
                        self._sweep_silent(db)
                    continue
                if batch is None:
                    return
                self._watch.busy(name, time.monotonic())
                try:
                    self._commit(batch, db)
                    if maintains:
                        self._sweep_silent(db)
                finally:
                    self._watch.idle(name)
        except BaseException:  # logged with its traceback, counted, and the process stops
            self._watch.died(name)
            self.metrics.writer_deaths.inc()
            self.failed = True
            log.critical("writer %s died; the ingester stops (exit status 1)", name, exc_info=True)
            self.stopping.set()
        finally:
            db.drop()

    def _pause(self, seconds: float) -> None:
        """Sleeps, but not past the shutdown deadline."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                return
            time.sleep(min(left, 0.1))

    def _commit(self, batch: Batch, db: _Connection) -> None:
        delay = 0.2
        conflicts = 0
        salvage: Salvage | None = None
        while True:
            started = time.monotonic()
            try:
                if salvage is not None:
                    result = salvage.run(db.get())
                else:
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
            except Exception as exc:
                if is_conflict(exc) and conflicts < self.options.conflict_retries:
                    # Another writer holds some of the same events (duplicates in flight): the
                    # batch was rolled back whole. A pause lets the other transaction take
                    # the locks it waited for; retried at once, this batch could win the race
                    # again and deadlock with it a second time. Jittered, so two ingesters'
                    # retries do not collide in step.
                    conflicts += 1
                    self.metrics.conflicts.inc()
                    base = self.options.conflict_backoff_ms / 1000 * 2 ** (conflicts - 1)
                    pause = base * random.uniform(1.0, 2.0)
                    log.info(
                        "batch rolled back by a conflict (%s); retrying in %.0f ms",
                        describe(exc),
                        pause * 1000,
                    )
                    self._pause(pause)
                    continue
                if salvage is None and not is_outage(exc) and not is_conflict(exc):
                    # The database refused what is in the batch (or it could not be encoded):
                    # find the rows, dead-letter them, store the rest, acknowledge all.
                    log.warning(
                        "a batch of %d rows was refused for its data (%s); finding the rows",
                        len(batch.events) + len(batch.refusals),
                        describe_for_log(exc),
                    )
                    self.metrics.salvaged_batches.inc()
                    salvage = Salvage(batch, exc, self.limits.max_payload_bytes)
                    db.drop()  # a failed COPY may leave the connection in any state
                    continue
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
                log.warning(
                    "%s: database write failed (%s); retrying in %.1fs",
                    threading.current_thread().name,
                    str(exc).strip(),
                    delay,
                )
                self._pause(delay)
                delay = min(delay * 2, self.options.db_retry_max_s)
                continue
            break
        if salvage is not None:
            for letter in salvage.unstorable:
                self.metrics.dead_letters.labels(letter.reason.value).inc()
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
        if not self.bridges:
            log.error(
                "vendor bridges are NOT ingested: no credential key other than the public"
                " development one (run `villagetwin setup`, or set VT_INGEST__CREDENTIAL_KEY;"
                " VT_INGEST__DEMO=true accepts the development key for demos)"
            )
        elif self.limits.credential_key == DEFAULT_CREDENTIAL_KEY.encode():
            log.warning(
                "demo mode: vendor bridges use the public development credential key; never"
                " bridge real faces, cards or plates like this"
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
                self._plain = maintenance.backend(conn) == "postgres"
                if not self._plain:
                    log.warning("TimescaleDB is not in this database; run `villagetwin migrate`")
                    return
                made = maintenance.ensure_partitions(conn, self._partitions_ahead())
                log.info(
                    "plain PostgreSQL: partitions (%d new) and retention by the ingester",
                    len(made),
                )
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
                try:
                    maintenance.install_policies(
                        conn, self.options.retention(), self.options.compress_after_days
                    )
                except psycopg.errors.InsufficientPrivilege:
                    conn.rollback()
                    log.info("policies are the table owner's: `villagetwin migrate` installs them")
        except psycopg.Error as exc:
            self._reader.drop()
            log.warning("database not reachable at start (%s); will keep retrying", exc)

    def _partitions_ahead(self) -> timedelta:
        return timedelta(days=self.options.partitions_ahead_days)

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
            conn = db.get()
            if self._plain:
                maintenance.ensure_partitions(conn, self._partitions_ahead())
            removed = maintenance.run_retention(
                conn,
                self.options.retention(),
                self._community,
                plain=self._plain,
                batch_rows=self.options.retention_batch_rows,
            )
        except psycopg.Error as exc:
            db.drop()
            log.warning("retention pass failed (%s); will try again", exc)
            return
        if any(removed.values()):
            log.info("retention removed %s", removed)
