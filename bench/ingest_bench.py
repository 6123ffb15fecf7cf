"""Ingestion benchmark: the villagetwin ingester against bare paho and a naive ingester, side
by side in one run on the same broker and database, so the ratios hold on a noisy machine.

    .venv/bin/python bench/ingest_bench.py            # full run, a few minutes
    .venv/bin/python bench/ingest_bench.py --quick    # smaller loads
    .venv/bin/python bench/ingest_bench.py --quick --clients   # the paho clients only, twice

Baselines: stock paho draining with no database (the client's ceiling the issue names), the
same with the ingester's own paho client (``ingest/mqtt_client.py``: bulk reads and acks), and
a naive one-INSERT-per-event ingester. Throughput: each consumer's persistent session is
created, the broker is preloaded with the same messages by several ``mosquitto_pub -l``
processes (so the publisher is never the bottleneck), then the consumer drains them;
events/s = events / (last - first commit or receipt). Latency: a paced publisher stamps each
event with its publish time; p50/p99 are taken from ``stored_at - ts`` in the database.
Memory: peak RSS of the ingester while it is flooded at about twice what it can commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devices.broker import BrokerConfig, render  # noqa: E402
from villagetwin.local import local_user, wait_for_port  # noqa: E402
from villagetwin.migrate import migrate  # noqa: E402

ADMIN_DSN = os.environ.get("VT_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DEVICES = [f"gate-bench{i:02d}" for i in range(10)]
CLEAR = (
    "TRUNCATE events, dead_letters, device_latest, building_hourly, village_hourly,"
    " unit_daily_credentials"
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def event(device: str, seq: int) -> dict[str, object]:
    return {
        "v": 1,
        "type": "gate.pass",
        "id": str(uuid.uuid4()),
        "device": device,
        "seq": seq,
        "ts": datetime.now(UTC).isoformat(),
        "direction": "in",
        "method": "card",
        "granted": True,
        "credential": f"cred:{seq:08x}",
    }


def messages(per_device: int, batch: int) -> dict[str, list[str]]:
    """Lines for mosquitto_pub -l, per device topic: single events or batch envelopes."""
    out: dict[str, list[str]] = {}
    for device in DEVICES:
        lines, seq = [], 0
        for _ in range(per_device):
            if batch == 1:
                seq += 1
                lines.append(json.dumps(event(device, seq)))
            else:
                events = []
                for _ in range(batch):
                    seq += 1
                    events.append(event(device, seq))
                lines.append(
                    json.dumps({"v": 1, "type": "batch", "device": device, "events": events})
                )
        out[device] = lines
    return out


def cpu_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(values), values[3] + values[4]


@dataclass
class Bench:
    port: int
    dsn: str
    work: Path
    busy: float = 0.0  # share of the machine's CPU in use during the last drain
    poll: psycopg.Connection[Any] | None = None  # kept open for committed()

    def start_busy(self) -> None:
        self._ticks = cpu_ticks()

    def stop_busy(self) -> None:
        total, idle = cpu_ticks()
        self.busy = 1 - (idle - self._ticks[1]) / max(1, total - self._ticks[0])

    def preload(self, lines: dict[str, list[str]]) -> float:
        started = time.monotonic()
        procs = []
        for device, rows in lines.items():
            path = self.work / f"{device}.lines"
            path.write_text("\n".join(rows) + "\n")
            procs.append(
                subprocess.Popen(
                    [
                        "mosquitto_pub",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(self.port),
                        "-q",
                        "1",
                        "-t",
                        f"vt/v1/{device}/event",
                        "-l",
                        "-i",
                        f"pre-{device}",
                    ],
                    stdin=path.open("rb"),
                )
            )
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("mosquitto_pub failed")
        return time.monotonic() - started

    def forget(self, *client_ids: str) -> None:
        """Ends finished consumers' persistent sessions: a dead session keeps queueing a copy
        of every later message, and the broker's periodic save of them stalls later runs."""
        for client_id in client_ids:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
            client.connect("127.0.0.1", self.port)
            client.loop_start()
            client.disconnect()
            client.loop_stop()

    def clear(self) -> None:
        with psycopg.connect(self.dsn) as conn:
            conn.execute(CLEAR)

    def committed(self) -> int:
        """Events our ingester has committed: the sum of village_hourly, which it keeps in the
        same transaction, on one kept connection. Polling ``count(*)`` of the hypertable on a
        new connection ten times a second took a fifth of a core from the ingester."""
        if self.poll is None:
            self.poll = psycopg.connect(self.dsn, autocommit=True)
        row = self.poll.execute("SELECT coalesce(sum(events), 0) FROM village_hourly").fetchone()
        return int(row[0]) if row else 0

    def stored(self) -> int:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    def commit_span(self) -> float:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM max(stored_at) - min(stored_at)) FROM events"
            ).fetchone()
        return float(row[0]) if row and row[0] else float("nan")

    def latency_ms(self) -> tuple[float, float]:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(
                "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM stored_at - ts) * 1000) FROM events"
            ).fetchone()
        assert row and row[0]
        return float(row[0][0]), float(row[0][1])

    # --- consumers ---------------------------------------------------------------------------

    def baseline(self, mode: str, client_id: str, expected: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "consumers.py"),
                mode,
                "127.0.0.1",
                str(self.port),
                client_id,
                self.dsn,
                str(expected),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    def ours(
        self, client_id: str, log: Path, share_group: str | None = None, variant: str = ""
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "VT_DB_DSN": self.dsn,
            "VT_MQTT__PORT": str(self.port),
            "VT_INGEST__CLIENT_ID": client_id,
            "VT_INGEST__HTTP_PORT": "0",
        }
        if share_group:
            env["VT_INGEST__SHARE_GROUP"] = share_group
        # A variant runs the ingester with a bench-only paho client (bench/client_variants.py).
        start = (
            [str(ROOT / "bench" / "ingest_with.py"), variant]
            if variant
            else ["-m", "villagetwin.cli"]
        )
        return subprocess.Popen(
            [sys.executable, *start, "ingest"],
            env=env,
            cwd=ROOT,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )


def wait_log(log: Path, text: str, times: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count(text) >= times:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{log}: no '{text}' after {timeout}s")


def drain_baseline(b: Bench, mode: str, lines: dict[str, list[str]], events: int) -> float:
    count = sum(len(v) for v in lines.values())
    client_id = f"{mode}-{uuid.uuid4().hex[:6]}"
    first = b.baseline(mode, client_id, 10**12)
    assert first.stdout is not None
    first.stdout.readline()  # subscription active: the session exists
    first.send_signal(signal.SIGTERM)
    first.wait()
    b.clear()
    b.preload(lines)
    b.start_busy()
    run = b.baseline(mode, client_id, count)
    out, _ = run.communicate(timeout=1800)
    b.stop_busy()
    b.forget(client_id)
    result = json.loads(out.strip().splitlines()[-1])
    if mode.startswith("bare"):
        return events / (result["last"] - result["first"])
    assert b.stored() == events, f"naive stored {b.stored()} of {events}"
    return events / b.commit_span()


def drain_ours(
    b: Bench, lines: dict[str, list[str]], events: int, ingesters: int = 1, variant: str = ""
) -> float:
    tag = uuid.uuid4().hex[:6]
    logs = [b.work / f"ours-{tag}-{i}.log" for i in range(ingesters)]
    group = f"g{tag}" if ingesters > 1 else None
    procs = [b.ours(f"vt-bench-{tag}-{i}", log, group, variant) for i, log in enumerate(logs)]
    for log in logs:
        wait_log(log, "subscription active", 1)
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait()
    b.clear()
    b.preload(lines)
    procs = [b.ours(f"vt-bench-{tag}-{i}", log, group, variant) for i, log in enumerate(logs)]
    while b.committed() == 0:  # CPU use is measured from the first commit, not from start-up
        time.sleep(0.01)
    b.start_busy()
    deadline = time.monotonic() + 1800
    while b.committed() < events and time.monotonic() < deadline:
        time.sleep(0.1)
    b.stop_busy()
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait()
    b.forget(*(f"vt-bench-{tag}-{i}" for i in range(ingesters)))
    assert b.stored() == events, f"stored {b.stored()} of {events}"
    return events / b.commit_span()


def latency(b: Bench, mode: str, rate: float, seconds: float) -> tuple[float, float]:
    tag = uuid.uuid4().hex[:6]
    b.clear()
    client_id = f"vt-lat-{tag}" if mode == "ours" else f"naive-lat-{tag}"
    if mode == "ours":
        log = b.work / f"lat-{tag}.log"
        proc: subprocess.Popen[bytes] | subprocess.Popen[str] = b.ours(client_id, log)
        wait_log(log, "subscription active", 1)
    else:
        proc = b.baseline("naive", client_id, 10**12)
        assert proc.stdout is not None
        proc.stdout.readline()
    publishers = 2
    pubs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "consumers.py"),
                "publish",
                "127.0.0.1",
                str(b.port),
                str(rate / publishers),
                str(seconds),
                *DEVICES[i::publishers],
            ],
            stdout=subprocess.DEVNULL,
        )
        for i in range(publishers)
    ]
    for p in pubs:
        p.wait()
    total = int(rate / publishers * seconds) * publishers
    deadline = time.monotonic() + 300
    done = b.committed if mode == "ours" else b.stored
    while done() < total and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    b.forget(client_id)
    return b.latency_ms()


def peak_rss_draining_backlog(b: Bench, lines: dict[str, list[str]], events: int) -> float:
    """Peak RSS (MiB) of an ingester draining a backlog: the broker offers messages as fast as
    it can send them, far more than the ingester commits, so anything the ingester buffered
    without bound would show here."""
    import threading

    tag = uuid.uuid4().hex[:6]
    client_id = f"vt-rss-{tag}"
    log = b.work / f"rss-{tag}.log"
    proc = b.ours(client_id, log)
    wait_log(log, "subscription active", 1)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    b.clear()
    b.preload(lines)
    proc = b.ours(client_id, log)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            status = Path(f"/proc/{proc.pid}/status").read_text()
            rss = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
            peak = max(peak, rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    while b.committed() < events:
        time.sleep(0.1)
    done.set()
    sampler.join()
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    b.forget(client_id)
    return peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller loads (about a minute)")
    parser.add_argument(
        "--clients",
        action="store_true",
        help="only the paho clients: stock paho, ours and its bench/client_variants.py (no"
        " database), and the ingester with ours and with variants; each twice, interleaved",
    )
    args = parser.parse_args()
    # Per device, 10 devices: a few seconds of draining each, so start-up and the last
    # partial batch do not dominate. The naive ingester drains a fifth (its rate is steady).
    single = 1000 if args.quick else 10_000
    batches = 20 if args.quick else 300  # 100-event messages per device
    lat_seconds = 5 if args.quick else 15

    work = Path(tempfile.mkdtemp(prefix="vt-bench-"))
    port = free_port()
    data = work / "broker"
    data.mkdir()
    conf = work / "mosquitto.conf"
    conf.write_text(
        render(
            BrokerConfig(
                port=port, persistence_dir=data, log_file=work / "mosquitto.log", user=local_user()
            )
        )
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)])
    name = f"vt_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(ADMIN_DSN, dbname=name)
    try:
        assert wait_for_port("127.0.0.1", port, 10)
        migrate(dsn, log=lambda _: None)
        with psycopg.connect(dsn) as conn:
            for d in DEVICES:
                conn.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'gate')", (d,))
        b = Bench(port, dsn, work)
        rows: list[tuple[str, str, float, float]] = []  # shape, who, events/s, CPU busy
        bare, bulk, naive = (
            "bare paho (no database)",
            "bare paho, bulk reads (ours, no db)",
            "naive: INSERT per event, autocommit",
        )
        one, two = "villagetwin ingester", "villagetwin, 2 ingesters shared"
        variants: list[tuple[str | int, str]] = [
            ("bare-lean", "ours without its PUBLISH parser"),
            ("bare-slicer", "ours + the removed packet slicer"),
            ("bare-dispatch", "ours + the removed dispatch"),
            (1, one),
            ("ours-lean", "villagetwin ingester without PUBLISH parser"),
            ("ours-slicer", "villagetwin ingester + removed slicer"),
        ]

        def say(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

        for shape, per_device, size in [
            ("single events", single, 1),
            ("100-event batches", batches, 100),
        ]:
            lines = messages(per_device, size)
            events = per_device * size * len(DEVICES)
            say(f"[{shape}] {events} events in {per_device * len(DEVICES)} messages")
            # A baseline consumer's mode, or how many of our ingesters share the stream.
            runs: list[tuple[str, str | int]] = [
                (bare, "bare"), (bulk, "bare-bulk"), (naive, "naive"), (one, 1), (two, 2)
            ]  # fmt: skip
            if args.clients:
                clients = [(bare, "bare"), (bulk, "bare-bulk")]
                clients += [(who, kind) for kind, who in variants]
                runs = clients + [(f"{who} (again)", kind) for who, kind in clients]
            for who, kind in runs:
                say(f"  {who} …")
                if kind == "naive":
                    fifth = {d: rows[: len(rows) // 5] for d, rows in lines.items()}
                    rate = drain_baseline(b, kind, fifth, events // 5)
                elif isinstance(kind, str) and kind.startswith("ours-"):
                    rate = drain_ours(b, lines, events, 1, kind.removeprefix("ours-"))
                elif isinstance(kind, str):
                    rate = drain_baseline(b, kind, lines, events)
                else:
                    rate = drain_ours(b, lines, events, kind)
                rows.append((shape, who, rate, b.busy))

        def table() -> None:
            print()
            print(
                f"{'messages':<18} {'ingester':<46} {'events/s':>10} {'vs bare':>8} {'vs naive':>9}"
                f" {'CPU busy':>9}"
            )
            for shape in ("single events", "100-event batches"):
                base = {r[1]: (r[2], r[3]) for r in rows if r[0] == shape}
                for who, (rate, busy) in base.items():
                    stock = base[f"{bare} (again)" if who.endswith("(again)") else bare][0]
                    vs_naive = f"{rate / base[naive][0]:>9.2f}" if naive in base else f"{'':>9}"
                    print(
                        f"{shape:<18} {who:<46} {rate:>10,.0f} {rate / stock:>8.2f}"
                        f" {vs_naive} {busy:>9.0%}"
                    )
                if args.clients:
                    continue
                print(
                    f"{shape:<18} {'2 ingesters / 1 ingester':<46}"
                    f" {base[two][0] / base[one][0]:>10.2f}"
                )

        if args.clients:
            table()
            print("(vs bare: against stock paho's run in the same round)")
            return
        say("[latency] offered 2k/s and 5k/s …")
        lat = {
            ("villagetwin", 2000): latency(b, "ours", 2000, lat_seconds),
            ("villagetwin", 5000): latency(b, "ours", 5000, lat_seconds),
            ("naive", 2000): latency(b, "naive", 2000, lat_seconds),
        }
        backlog = messages(single, 1)
        backlog_events = sum(len(v) for v in backlog.values())
        say(f"[memory] draining a backlog of {backlog_events} events …")
        rss = peak_rss_draining_backlog(b, backlog, backlog_events)
        # Gateways' batch messages: the broker's inflight window (10,000 messages) then holds
        # a million events, far more than the single-event backlog above.
        batch_backlog = messages(100 if args.quick else 1000, 100)
        batch_events = sum(len(v) for v in batch_backlog.values()) * 100
        say(f"[memory] draining a backlog of {batch_events} events in 100-event batches …")
        batch_rss = peak_rss_draining_backlog(b, batch_backlog, batch_events)

        table()
        print(
            "(CPU busy: the whole machine's, both cores, while that consumer drained; for ours"
            " from its first commit)"
        )
        print()
        print(f"{'publish -> committed latency':<38} {'p50 ms':>8} {'p99 ms':>8}")
        for (who, rate), (p50, p99) in lat.items():
            print(f"{who + f' at {rate:,}/s offered':<38} {p50:>8.1f} {p99:>8.1f}")
        print()
        ours_single = next(r[2] for r in rows if r[0] == "single events" and r[1] == one)
        bulk_single = next(r[2] for r in rows if r[0] == "single events" and r[1] == bulk)
        print(
            f"memory: peak RSS {rss:.0f} MiB draining a backlog of {backlog_events:,} events"
            f" (the broker sends up to {bulk_single:,.0f}/s, {bulk_single / ours_single:.1f}x"
            " what one ingester commits)"
        )
        print(
            f"memory: peak RSS {batch_rss:.0f} MiB draining a backlog of {batch_events:,} events"
            " in 100-event batches"
        )
    finally:
        broker.kill()
        shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
