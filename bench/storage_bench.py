"""Storage per event, for the capacity plan (docs/capacity.md): the same simulated events
stored through the ingester's store (ingest/store.py) on TimescaleDB and on plain PostgreSQL
side by side, then bytes on disk per event for the events table with its indexes and for the
derived tables, after VACUUM ANALYZE. The mix is the simulator's (devices/simulator.py) over
the sample village, so payload sizes are the contract's.

    .venv/bin/python bench/storage_bench.py [--events 200000]

TimescaleDB's compression is not measured: this machine's Apache edition has none.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devices.payloads import encode  # noqa: E402
from devices.simulator import EventGenerator  # noqa: E402
from ingest import store  # noqa: E402
from ingest.validate import Received, judge  # noqa: E402
from mapping.db import load_village  # noqa: E402
from mapping.generate import generate  # noqa: E402
from villagetwin.migrate import migrate  # noqa: E402
from villagetwin.village_devices import sim_devices  # noqa: E402

ADMIN_DSN = os.environ.get("VT_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DERIVED = ["building_hourly", "village_hourly", "unit_daily_credentials", "device_latest"]


def fill(dsn: str, events: int, seed: int) -> float:
    village = generate(seed=seed, size="small")
    with psycopg.connect(dsn) as conn:
        load_village(conn, village)
        conn.commit()
        registry = store.load_registry(conn)
        generator = EventGenerator(sim_devices(conn), seed=seed)
        store.prepare(conn)
        start = datetime.now(UTC) - timedelta(days=1)
        step = timedelta(days=1) / events
        started = time.monotonic()
        rows = []
        for n in range(events):
            now = start + n * step
            event = generator.event(now)
            received = Received(f"vt/v1/{event.device}/event", encode(event), now)
            rows += judge(received, registry).events
            if len(rows) >= 5000:
                store.store(conn, rows, [])
                rows = []
        if rows:
            store.store(conn, rows, [])
        return time.monotonic() - started


def size_of(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        ts = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        if table == "events" and ts:
            row = conn.execute("SELECT hypertable_size('events')").fetchone()
        else:
            row = conn.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                " WHERE c.oid = %s::regclass OR c.oid IN"
                " (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)",
                (table, table),
            ).fetchone()
        return int(row[0]) if row and row[0] else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    made = []
    results = {}
    try:
        for backend in ("timescaledb", "postgres"):
            name = f"vt_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            made.append(name)
            dsn = make_conninfo(ADMIN_DSN, dbname=name)
            migrate(dsn, log=lambda _: None, backend=backend)  # type: ignore[arg-type]
            print(f"[{backend}] storing {args.events} events …", file=sys.stderr)
            fill(dsn, args.events, seed=7)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
                stored = conn.execute("SELECT count(*) FROM events").fetchone()
            n = int(stored[0]) if stored else 0
            results[backend] = (n, {t: size_of(dsn, t) for t in ["events", *DERIVED]})
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            for name in made:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))
    print(
        f"\n{'backend':<12} {'events':>8} {'events B/ev':>12} {'derived B/ev':>13} {'vs tsdb':>8}"
    )
    base = None
    for backend, (n, sizes) in results.items():
        per_event = sizes["events"] / n
        derived = sum(sizes[t] for t in DERIVED) / n
        base = base or per_event
        print(f"{backend:<12} {n:>8} {per_event:>12.0f} {derived:>13.0f} {per_event / base:>8.2f}")


if __name__ == "__main__":
    main()
