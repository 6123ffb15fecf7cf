"""Rules benchmark: precision and recall of every rule against the day simulator's ground truth,
and event -> alert latency beside the ingester's own event -> stored latency, in one run on a
private broker and a fresh database.

    .venv/bin/python bench/rules_bench.py            # 2 simulated days; 2k and 5k events/s
    .venv/bin/python bench/rules_bench.py --quick    # 1 day; 1k events/s
    .venv/bin/python bench/rules_bench.py --latency-only   # 2k and 5k events/s, no replay

Accuracy: the small sample village (seed 4) lives two simulated days (devices/day.py, planted
anomalies), replayed through MQTT into the real ingester; then the rules worker evaluates
(rules/worker.py) and each rule's alert subjects are compared with the planted truth.
Offline periods are judged with a grace of 0 s (the replay compresses hours into
milliseconds; the status messages carry no device time).

Latency: ``villagetwin rules`` runs in its own process, beside ``villagetwin ingest``, while a
paced publisher offers background events (registered residents' door unlocks) at the stated
rate, with a smoke detection on a distinct building every 50 ms (each opens a new alert).
Baseline: the same smoke events' ``stored_at`` minus publish time (the ingester alone); ours:
reception of the alert on ``vt/v1/alerts/#`` minus publish time. Both are printed side by
side, with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devices.broker import BrokerConfig, render  # noqa: E402
from devices.day import plan_days, replay  # noqa: E402
from devices.payloads import AccessUnlock, AlertMessage, CameraDetection, encode  # noqa: E402
from devices.settings import MqttSettings, SimulatorSettings  # noqa: E402
from devices.topics import event_topic  # noqa: E402
from mapping.db import load_village  # noqa: E402
from mapping.generate import generate  # noqa: E402
from rules.logic import CST  # noqa: E402
from rules.settings import RuleParams, RulesSettings, WorkerOptions  # noqa: E402
from rules.truth import expected_subjects  # noqa: E402
from rules.worker import RulesWorker  # noqa: E402
from villagetwin.local import local_user, wait_for_port  # noqa: E402
from villagetwin.migrate import migrate  # noqa: E402
from villagetwin.village_devices import sim_village  # noqa: E402

ADMIN_DSN = os.environ.get("VT_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def found_subjects(conn: psycopg.Connection) -> dict[str, set[str]]:
    """Alert subjects per rule, in the truth's terms: doors by building, crowds by camera."""
    found: dict[str, set[str]] = {}
    for rule, subject, building, device in conn.execute(
        "SELECT rule, subject, building_id, device_id FROM alerts"
    ):
        if rule in ("door_forced", "door_held_open") and subject.startswith("door:acc-"):
            subject = f"building:{building}"
        if rule == "crowding":
            subject = f"device:{device}"
        found.setdefault(rule, set()).add(subject)
    return found


class Listener:
    def __init__(self, port: int) -> None:
        self.received: dict[str, float] = {}  # latest evidence id -> reception (monotonic)
        self.wall: dict[str, float] = {}  # the same, wall-clock time
        self.delivered: dict[str, float] = {}  # a camera's event id -> its delivery to us
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-alerts")
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("vt/v1/alerts/#", qos=1)
        self.client.loop_start()

    def listen_to(self, cameras: list[str]) -> None:
        """Also the cameras' events, as the rules worker hears them: the broker's own delay."""
        self.client.subscribe([(event_topic(c), 1) for c in cameras])

    def _on(self, client: Any, userdata: Any, msg: Any) -> None:
        now, wall = time.monotonic(), time.time()
        if msg.topic.endswith("/event"):
            self.delivered.setdefault(json.loads(msg.payload)["id"], now)
            return
        alert = AlertMessage.model_validate_json(msg.payload)
        for event_id in alert.evidence:
            self.received.setdefault(event_id, now)
            self.wall.setdefault(event_id, wall)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_run(dsn: str, mqtt_settings: MqttSettings, rate: float, seconds: float,
                listener: Listener, buildings: list[str], readers: list[str],
                cameras: list[str], units: dict[str, list[tuple[str, str]]],
                ) -> tuple[list[float], list[float], list[float], list[float]]:  # fmt: skip
    """(delivered, stored, alert row, received) seconds after publishing, per smoke event: its
    delivery by the broker to a subscriber of the camera's topic, the ingester's
    stored_at, the rules worker's transaction that wrote the alert (alerts.updated_at), and
    reception of the alert over MQTT (wall clocks of one machine)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{rate}")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", mqtt_settings.port)
    client.loop_start()
    rng = random.Random(int(rate))
    seq: dict[str, int] = {}
    sent: dict[str, float] = {}  # smoke event id -> publish time (monotonic)
    wall: dict[str, float] = {}
    total = int(rate * seconds)
    smoke_every = max(1, int(rate * 0.05))
    pool = list(buildings)
    rng.shuffle(pool)
    # The background is encoded before the clock starts (device times are their due times),
    # so the paced loop only publishes: a Python publisher that also built each message fell
    # behind at 5k/s and the delay measured was its own.
    first = datetime.now(UTC) + timedelta(seconds=1)
    background: dict[int, tuple[str, bytes]] = {}
    for n in range(total):
        if n % smoke_every == 0:
            continue
        device = rng.choice(readers)
        s = seq[device] = seq.get(device, 10_000_000) + 1
        unit, credential = rng.choice(units[device])
        background[n] = (
            event_topic(device),
            encode(
                AccessUnlock(
                    id=uuid.uuid4(),
                    device=device,
                    seq=s,
                    ts=first + timedelta(seconds=n / rate),
                    door="unit",
                    unit=unit,
                    method="card",
                    credential=credential,
                    granted=True,
                )
            ),
        )
    time.sleep(max(0.0, (first - datetime.now(UTC)).total_seconds()))
    start = time.monotonic()
    for n in range(total):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if n in background:
            client.publish(*background[n], qos=1)
        elif pool:
            device = rng.choice(cameras)
            s = seq[device] = seq.get(device, 10_000_000) + 1
            eid = uuid.uuid4()
            event = CameraDetection(
                id=eid,
                device=device,
                seq=s,
                ts=datetime.now(UTC),
                cls="smoke",
                count=1,
                confidence=0.9,
                zone=f"stairwell:{pool.pop()}",
            )
            sent[str(eid)] = time.monotonic()
            wall[str(eid)] = time.time()
            client.publish(event_topic(device), encode(event), qos=1)
    offered = total / (time.monotonic() - start)
    wait(lambda: all(k in listener.received for k in sent), 30)
    client.loop_stop()
    client.disconnect()
    ours = [listener.received[k] - t for k, t in sent.items() if k in listener.received]
    missing = len(sent) - len(ours)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT event_id::text, extract(epoch FROM stored_at) FROM events"
            " WHERE event_id = ANY(%s::uuid[])",
            (list(sent),),
        ).fetchall()
        made = conn.execute(
            "SELECT e, extract(epoch FROM a.updated_at) FROM alerts a, unnest(a.evidence) e"
            " WHERE e = ANY(%s)",
            (list(sent),),
        ).fetchall()
    base = [float(stored) - wall[eid] for eid, stored in rows]
    row_at = [float(at) - wall[eid] for eid, at in made]
    print(f"    offered {offered:,.0f} events/s for {seconds:.0f} s; {len(sent)} smoke alerts,"
          f" {missing} not received within 30 s; load average {os.getloadavg()[0]:.1f}"
          f" on {os.cpu_count()} cores")  # fmt: skip
    heard = [listener.delivered[k] - t for k, t in sent.items() if k in listener.delivered]
    return heard, base, row_at, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--latency-only", action="store_true", help="skip the accuracy replay")
    args = parser.parse_args()
    days = 1 if args.quick else 2
    rates = [1000.0] if args.quick else [2000.0, 5000.0]
    seconds = 10.0

    tmp = Path(tempfile.mkdtemp(prefix="vt-rules-bench-"))
    port = free_port()
    config = BrokerConfig(port=port, persistence_dir=tmp / "data", log_file=tmp / "mosquitto.log",
                          user=local_user())  # fmt: skip
    (tmp / "data").mkdir()
    (tmp / "mosquitto.conf").write_text(render(config))
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    name = f"vt_bench_rules_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(ADMIN_DSN, dbname=name)
    children: list[subprocess.Popen[bytes]] = []
    try:
        assert wait_for_port("127.0.0.1", port, 10), "the bench broker did not start"
        migrate(dsn, log=lambda _: None)
        mqtt_settings = MqttSettings(port=port)
        with psycopg.connect(dsn) as conn:
            load_village(conn, generate(seed=4, size="small"))
            sim = sim_village(conn)
        # The ingester and the rules worker run as their own processes, as deployed: one
        # Python process for all would share one interpreter lock with the publisher.
        env = {**os.environ, "VT_DB_DSN": dsn, "VT_MQTT__PORT": str(port),
               "VT_INGEST__HTTP_PORT": "0", "VT_INGEST__CLIENT_ID": "bench-ingest"}  # fmt: skip
        log = (tmp / "ingest.log").open("wb")
        ingest = subprocess.Popen([sys.executable, "-m", "villagetwin.cli", "ingest"], env=env,
                                  cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        children.append(ingest)
        assert wait(lambda: "subscription active" in (tmp / "ingest.log").read_text(), 30)

        def stored() -> int:
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT count(*) FROM events").fetchone()
            return int(row[0]) if row else 0

        # --- accuracy -------------------------------------------------------------------------
        if not args.latency_only:
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)
            plan = plan_days(sim, seed=11, start=start, days=days, zone=CST)
            t0 = time.monotonic()
            replay(SimulatorSettings(mqtt=mqtt_settings), plan, speed=1e9, max_rate=20000)
            assert wait(lambda: stored() >= len(plan.events), 600)
            print(f"accuracy: {len(plan.events):,} events of {days} simulated day(s) replayed and"
                  f" stored in {time.monotonic() - t0:.0f} s")  # fmt: skip
            settings = RulesSettings(
                db_dsn=dsn, mqtt=mqtt_settings,
                rules=RuleParams(silent_s={}, offline_grace_s={"gate": 0, "camera": 0, "access": 0,
                                                               "app": 0}),
                worker=WorkerOptions(start_lookback_s=86400 * (days + 1), event_poll_s=0.05,
                                     window_interval_s=2.0),
            )  # fmt: skip
            worker = RulesWorker(settings)
            t0 = time.monotonic()
            with psycopg.connect(dsn, autocommit=True) as conn:
                worker.refresh_context(conn, every_s=0)
                while worker.poll_events(conn):
                    pass
                worker.window_cycle(conn)
                person_of = dict(
                    conn.execute("SELECT credential_ref, person_id FROM people").fetchall()
                )
                found = found_subjects(conn)
            print(f"rules worker caught up in {time.monotonic() - t0:.1f} s\n")
            expected = expected_subjects(plan.truth, person_of)
            print(f"{'rule':<24}{'planted':>8}{'alerts':>8}{'precision':>11}{'recall':>8}")
            for rule in sorted(expected):
                e, f = expected[rule], found.get(rule, set())
                hit = len(e & f)
                precision = hit / len(f) if f else float("nan")
                recall = hit / len(e) if e else float("nan")
                print(f"{rule:<24}{len(e):>8}{len(f):>8}{precision:>11.2f}{recall:>8.2f}")
            extra = sorted(set(found) - set(expected))
            if extra:
                print(f"alerts of rules with nothing planted: {extra}")

        # --- latency --------------------------------------------------------------------------
        listener = Listener(port)
        wlog = (tmp / "rules.log").open("wb")
        rules = subprocess.Popen(
            [sys.executable, "-m", "villagetwin.cli", "rules"], cwd=ROOT, stdout=wlog,
            stderr=subprocess.STDOUT,
            env={**env, "VT_RULES__SILENT_S": "{}", "VT_WORKER__START_LOOKBACK_S": "60"},
        )  # fmt: skip
        children.append(rules)
        assert wait(lambda: "rules worker running" in (tmp / "rules.log").read_text(), 30)
        with psycopg.connect(dsn) as conn:
            buildings = [r[0] for r in conn.execute("SELECT building_id FROM buildings")]
            cameras = [r[0] for r in conn.execute("SELECT device_id FROM devices"
                                                  " WHERE kind = 'camera'")]  # fmt: skip
        # Registered residents at their own doors: ordinary life, which raises nothing.
        units = {
            d.device_id: [(u, c) for u in d.units for c in sim.residents.get(u, ())]
            for d in sim.devices if d.kind.value == "access"
        }  # fmt: skip
        units = {d: people for d, people in units.items() if people}
        readers = sorted(units)
        print("\nlatency: smoke detection published -> (baseline) stored by the ingester;"
              " (ours) alert received on vt/v1/alerts/#")  # fmt: skip
        print("  (alert row: the worker's transaction that wrote the alert, alerts.updated_at)")
        print("  (delivered: the smoke event itself reaching a subscriber of its camera's topic,"
              " the broker's share)")  # fmt: skip
        print(f"{'offered':>10}{'delivered p50':>15}{'p99':>8}{'stored p50':>12}{'p99':>8}"
              f"{'alert row p50':>15}{'p99':>8}{'alert p50':>11}{'p99':>8}"
              f"{'p99 ratio':>11}")  # fmt: skip
        listener.listen_to(cameras)
        for rate in rates:
            heard, base, row_at, ours = latency_run(dsn, mqtt_settings, rate, seconds, listener,
                                                    buildings, readers, cameras, units)  # fmt: skip
            print(f"{rate:>10,.0f}{pct(heard, .5):>14.3f}s{pct(heard, .99):>7.3f}s"
                  f"{pct(base, .5):>11.3f}s{pct(base, .99):>7.3f}s"
                  f"{pct(row_at, .5):>14.3f}s{pct(row_at, .99):>7.3f}s"
                  f"{pct(ours, .5):>10.3f}s{pct(ours, .99):>7.3f}s"
                  f"{pct(ours, .99) / pct(base, .99):>10.2f}x")  # fmt: skip
            print(
                f"    mean alert latency {statistics.fmean(ours) if ours else float('nan'):.3f} s"
            )
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=30)
        broker.terminate()
        broker.wait(timeout=10)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip


if __name__ == "__main__":
    main()
