"""``villagetwin rules``: the worker that applies the rules (rules/logic.py) to new events and to
windows of the derived tables, keeps alert records, escalates overdue cases and publishes
every alert change on ``vt/v1/alerts/<severity>/<rule>``.

New events are read when their batch commits (the database notifies, migration 0112), or
at the latest every ``event_poll_s``. Each cycle commits its alerts together with its cursor
and door states (``rule_state``), so a restart resumes where the last commit left off; events
reread behind the cursor (``overlap_s``, for batches that commit out of order) never count
twice, because an event already in an alert's evidence is skipped. MQTT is at least once: an
alert version is marked published only after the broker acknowledged it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from devices.payloads import AlertMessage, CameraDetection, encode, parse_event
from devices.topics import alert_topic, event_topic
from rules import case_store, logic, store
from rules.settings import RulesSettings

log = logging.getLogger("vt.rules")
STATE = "events"
STATUS = "device_status"
_TICK = timedelta(microseconds=1)


class RulesWorker:
    def __init__(self, settings: RulesSettings, *, mqtt: bool = True) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.tracker = logic.DoorTracker()
        self.cursor: datetime | None = None
        self.status_cursor: datetime | None = None
        self.recent: dict[str, datetime] = {}  # event id -> stored_at, within the overlap
        self.context = store.Context()
        self.context_at = 0.0
        self.client: Any = None
        self.mqtt = mqtt
        self.ready = threading.Event()  # the cursor is restored
        self.timing: dict[str, float] = {}  # seconds the last cycle of each kind took
        self.totals = {"events": 0, "opened": 0, "updated": 0, "published": 0, "cases": 0,
                       "fast": 0}  # fmt: skip
        self.fast: queue.Queue[logic.Fact] = queue.Queue(maxsize=10_000)
        self.subscribed: set[str] = set()
        self.publishing = threading.Lock()  # one publisher at a time (events and fast threads)

    # --- one cycle each, callable from tests and the benchmark ------------------------------

    def restore(self, conn: psycopg.Connection) -> None:
        state = store.load_state(conn, STATE)
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        start = row[0] - timedelta(seconds=self.settings.worker.start_lookback_s)
        self.cursor = datetime.fromisoformat(state["after"]) if state else start
        self.tracker = logic.DoorTracker(dict(state.get("doors", {})) if state else {})
        status = store.load_state(conn, STATUS)
        self.status_cursor = datetime.fromisoformat(status["after"]) if status else start

    def refresh_context(self, conn: psycopg.Connection, every_s: float = 60.0) -> None:
        if time.monotonic() - self.context_at > every_s:
            self.context = store.load_context(conn)
            self.context_at = time.monotonic()

    def poll_events(self, conn: psycopg.Connection, now: datetime | None = None) -> int:
        """Judges the rule-relevant events stored since the cursor; returns how many."""
        if self.cursor is None:
            self.restore(conn)
        assert self.cursor is not None
        w, params = self.settings.worker, self.settings.rules
        overlap = timedelta(seconds=w.overlap_s)
        with conn.transaction():
            rows = store.new_events(conn, self.cursor - overlap, w.max_event_age_days, w.batch)
            findings, fresh = [], 0
            for stored_at, fact in rows:
                if fact.event_id in self.recent:
                    continue
                fresh += 1
                self.recent[fact.event_id] = stored_at
                device = self.context.devices.get(fact.device_id)
                self.tracker.observe(fact, device)
                findings += logic.event_findings(fact, device, self.context.pois, params)
            findings += self.tracker.due(now or datetime.now(UTC), params)
            self._apply(conn, findings)
            if rows:
                self.cursor = max(self.cursor, rows[-1][0])
            store.save_state(
                conn, STATE, {"after": self.cursor.isoformat(), "doors": self.tracker.unlocked}
            )
        horizon = self.cursor - overlap
        self.recent = {k: v for k, v in self.recent.items() if v >= horizon}
        self.totals["events"] += fresh
        return fresh

    def window_cycle(self, conn: psycopg.Connection, now: datetime | None = None) -> int:
        """Evaluates the window rules at ``now``; returns how many findings held."""
        now = now or datetime.now(UTC)
        p = self.settings.rules
        with conn.transaction():
            win = store.read_window(conn, now, p)
            registered: dict[str, set[str]] = {}
            for t in win.current:
                registered.setdefault(t.unit_id, set()).add(t.credential_ref)
            current = {(t.unit_id, t.credential_ref) for t in win.current}
            # A care target never seen is the care rule's (high severity), not 空挂.
            care = set(win.care)
            findings = [
                *logic.occupancy(registered, win.seen_occupancy, win.unit_building, now, p),
                *logic.never_seen(
                    [t for t in win.current if t not in care],
                    win.seen_never,
                    win.coverage_days,
                    win.never_window_start,
                    now,
                    p,
                ),
                *logic.after_tenancy(win.ended, win.seen_after, current),
                *logic.care_inactive(win.care, win.last_activity, win.observed_since, now, p),
            ]
            offline = logic.device_offline(win.devices, now, p)
            assert self.status_cursor is not None
            periods = store.offline_since(conn, self.status_cursor)
            past, pending = logic.offline_periods(periods, now, p)
            sample = now - timedelta(days=p.never_seen_days)
            self._apply(conn, findings + past + offline, sample_since=sample)
            if periods:
                last = max(x.since for x in periods)
                self.status_cursor = min(last, pending - _TICK) if pending else last
            store.save_state(conn, STATUS, {"after": self.status_cursor.isoformat()})
            store.clear(
                conn,
                "device_offline",
                [f.subject for f in offline]
                + [f.subject for f in past if f.detail["back"] is None],
                "设备恢复在线 device back online",
            )
            if self.settings.worker.cases_from_incidents:
                self.totals["cases"] += case_store.cases_from_incidents(conn, self.settings.cases)
            case_store.escalate_overdue(conn, now, self.settings.cases)
        return len(findings) + len(offline)

    def _apply(
        self,
        conn: psycopg.Connection,
        findings: list[logic.Finding],
        sample_since: datetime | None = None,
    ) -> None:
        reraise = timedelta(hours=self.settings.rules.reraise_after_hours)
        for f in findings:
            if f.lon is None and f.building_id in self.context.building_point:
                lon, lat = self.context.building_point[f.building_id]
                f = logic.Finding(**{**_fields(f), "lon": lon, "lat": lat})
            done = store.upsert(conn, f, self.context.grid_of(f), reraise)
            if done is None:
                continue
            alert_id, opened = done
            self.totals["opened" if opened else "updated"] += 1
            if opened and sample_since is not None and not f.evidence:
                ids = store.sample_evidence(conn, f, sample_since)
                if ids:
                    conn.execute(
                        "UPDATE alerts SET evidence = %s WHERE alert_id = %s", (ids, alert_id)
                    )

    def publish(self, conn: psycopg.Connection, timeout_s: float = 10.0) -> int:
        """Publishes every alert version not yet published (QoS 1), then marks them."""
        if self.client is None:
            return 0
        with self.publishing:
            return self._publish(conn, timeout_s)

    def _publish(self, conn: psycopg.Connection, timeout_s: float) -> int:
        rows = store.unpublished(conn)
        infos, done = [], []
        for r in rows:
            message = AlertMessage(
                **{**r, "evidence": list(r["evidence"])[-10:]},
            )
            infos.append(
                self.client.publish(alert_topic(r["severity"], r["rule"]), encode(message), qos=1)
            )
            done.append((r["alert_id"], r["version"]))
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        if done:
            store.mark_published(conn, done)
            self.totals["published"] += len(done)
        return len(done)

    # --- the fast path: camera detections straight from the broker -----------------------------
    # Smoke, fire, e-bikes and crowds are judged by the event alone (logic.event_findings), so
    # the worker also subscribes to the cameras' event topics and raises their alerts without
    # waiting for the ingester to store the batch. The stored event comes by the database path
    # later and changes nothing: its id is already in the alert's evidence (store.upsert). The
    # cursor and door states move on the database path only, so a restart is as before.

    def subscribe_cameras(self) -> None:
        """Subscribes (QoS 1) to the event topic of every camera in the context not yet
        subscribed to (called after each context refresh)."""
        if self.client is None or not self.settings.worker.fast_path:
            return
        wanted = {
            event_topic(d.device_id) for d in self.context.devices.values() if d.kind == "camera"
        }
        new = sorted(wanted - self.subscribed)
        if new:
            self.client.subscribe([(t, 1) for t in new])
            self.subscribed.update(new)

    def on_camera_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """paho's callback: a camera event that makes a finding goes to the fast thread."""
        fact = camera_fact(
            msg.topic, msg.payload, self.context.devices, datetime.now(UTC),
            timedelta(seconds=self.settings.worker.fast_max_skew_s),
        )  # fmt: skip
        if fact is None or not logic.event_findings(
            fact, self.context.devices.get(fact.device_id), self.context.pois, self.settings.rules
        ):
            return
        try:
            self.fast.put_nowait(fact)
        except queue.Full:  # the database path will raise it
            log.warning("fast path queue full; %s left to the database path", fact.event_id)

    def fast_cycle(self, conn: psycopg.Connection, wait_s: float) -> int:
        """Applies the camera facts queued by ``on_camera_message`` (waiting up to ``wait_s``
        for the first) and publishes; returns how many facts."""
        try:
            facts = [self.fast.get(timeout=wait_s)]
        except queue.Empty:
            return 0
        while True:
            try:
                facts.append(self.fast.get_nowait())
            except queue.Empty:
                break
        with conn.transaction():
            findings = [
                f
                for fact in facts
                for f in logic.event_findings(
                    fact,
                    self.context.devices.get(fact.device_id),
                    self.context.pois,
                    self.settings.rules,
                )
            ]
            self._apply(conn, findings)
        self.totals["fast"] += len(facts)
        self.publish(conn)
        return len(facts)

    def _fast(self) -> None:
        self.ready.wait()

        def body(conn: psycopg.Connection) -> None:
            while not self.stopping.is_set():
                self.fast_cycle(conn, 0.5)

        self._loop(body)

    # --- the loop -----------------------------------------------------------------------------

    def connect_mqtt(self) -> None:
        from devices.mqtt import connect, new_client

        self.client = new_client(self.settings.mqtt, self.settings.worker.client_id)
        self.client.reconnect_delay_set(0.5, 5)
        self.client.on_message = self.on_camera_message
        self.client.on_connect = self._on_connect
        connect(self.client, self.settings.mqtt)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.subscribed = set()  # a clean session: subscribe again
        self.subscribe_cameras()

    def run(self) -> None:
        """Until ``stopping`` is set: polls events every ``event_poll_s`` and publishes; the
        window rules run every ``window_interval_s`` in a thread of their own on their own
        connection, so a long window never delays an event's alert. A lost database
        connection is retried, not fatal."""
        if self.mqtt:
            self.connect_mqtt()
        windows = threading.Thread(target=self._windows, name="rules-windows", daemon=True)
        windows.start()
        fast = threading.Thread(target=self._fast, name="rules-fast", daemon=True)
        fast.start()
        try:
            self._loop(self._events)
        finally:
            self.stopping.set()
            windows.join(timeout=30)
            fast.join(timeout=30)
            if self.client is not None:
                self.client.loop_stop()
                self.client.disconnect()

    def _loop(self, body: Any) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.settings.db_dsn, autocommit=True) as conn:
                    body(conn)
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying", exc)
                self.context_at = 0.0
                self.stopping.wait(2.0)

    def _events(self, conn: psycopg.Connection) -> None:
        # Woken by the commit of new events (migration 0112's notification), else every
        # event_poll_s; listening before the first read, so no commit falls in between.
        conn.execute(f"LISTEN {store.EVENTS_STORED}")
        self.restore(conn)
        self.ready.set()
        log.info("rules worker running from %s", self.cursor)
        while not self.stopping.is_set():
            started = time.monotonic()
            self.refresh_context(conn)
            self.subscribe_cameras()
            while self.poll_events(conn) and not self.stopping.is_set():
                self.publish(conn)
            self.publish(conn)
            self.timing["events_s"] = time.monotonic() - started
            for _ in conn.notifies(timeout=self.settings.worker.event_poll_s, stop_after=1):
                pass

    def _windows(self) -> None:
        self.ready.wait()

        def body(conn: psycopg.Connection) -> None:
            while not self.stopping.is_set():
                started = time.monotonic()
                self.window_cycle(conn)
                self.timing["window_s"] = time.monotonic() - started
                self.stopping.wait(self.settings.worker.window_interval_s)

        self._loop(body)


def _fields(f: logic.Finding) -> dict[str, Any]:
    return {name: getattr(f, name) for name in logic.Finding.__slots__}


def camera_fact(
    topic: str,
    payload: bytes,
    devices: dict[str, logic.DeviceInfo],
    now: datetime,
    max_skew: timedelta,
) -> logic.Fact | None:
    """A camera detection published on ``topic`` (``vt/v1/<device>/event``) as the rules' Fact,
    as the database path would read it once stored; None for anything else: another message
    type or a batch (left to the database path), a device not registered as a camera or not
    the topic's, invalid JSON or fields (devices/payloads.py), or a device time further than
    ``max_skew`` from ``now`` (the ingester judges those)."""
    device = topic.split("/")[2] if topic.count("/") == 3 else ""
    known = devices.get(device)
    if known is None or known.kind != "camera":
        return None
    try:
        event = parse_event(json.loads(payload))
    except ValueError:  # JSON or pydantic's ValidationError
        return None
    if not isinstance(event, CameraDetection) or event.device != device:
        return None
    if abs(event.ts - now) > max_skew:
        return None
    return logic.Fact(
        str(event.id), event.ts, device, event.type, known.building_id, None,
        event.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
