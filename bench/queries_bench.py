"""Dashboard query benchmark: the large sample village with 20 million synthetic events.

    .venv/bin/python bench/queries_bench.py                 # 20M events, several minutes
    .venv/bin/python bench/queries_bench.py --events 2000000
    .venv/bin/python bench/queries_bench.py --keep            # keep the database, then
    .venv/bin/python bench/queries_bench.py --database NAME   # measure it again, no generation
    dropdb -h 127.0.0.1 -U postgres NAME                      # when done with it

Loads the large village (about 3,000 buildings, 40k units, 90k people) into a fresh database,
generates the events server-side over the last 14 days, builds the derived tables the
ingester maintains, then runs each page's queries with random parameters and prints p50/p95.
Baseline, side by side: the same views answered from raw events (what a dashboard without
derived tables does). Targets: p95 ≤ 100 ms for the inspector and the live overview,
≤ 500 ms for a full-day replay.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard import queries
from ingest import derived_tables
from mapping.db import load_village, read_units
from mapping.generate import generate
from villagetwin.migrate import migrate

SHANGHAI = ZoneInfo("Asia/Shanghai")
ADMIN_DSN = os.environ.get("VT_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

NUMBER_UNITS = """
CREATE TABLE IF NOT EXISTS bench_units AS
SELECT row_number() OVER (ORDER BY unit_id)::int AS i, unit_id, building_id FROM units;
CREATE UNIQUE INDEX IF NOT EXISTS bench_units_i ON bench_units (i);
"""

GENERATE = """
WITH picked AS (
    SELECT n, now() - random() * interval '14 days' AS ts, random() AS r,
           1 + floor(random() * %(units)s)::int AS i
    FROM generate_series(%(first)s::int8, %(last)s::int8) AS n
)
INSERT INTO events (ts, received_at, stored_at, event_id, device_id, seq, kind, building_id,
                    unit_id, credential_ref, payload)
SELECT p.ts, p.ts, p.ts, gen_random_uuid(),
       CASE WHEN r < 0.7 THEN 'acc-' || lower(u.building_id) WHEN r < 0.85 THEN 'gate-west'
            ELSE 'cam-' || lpad((1 + n %% 300)::text, 3, '0') END,
       n,
       CASE WHEN r < 0.62 THEN 'access.unlock' WHEN r < 0.7 THEN 'heartbeat'
            WHEN r < 0.85 THEN 'gate.pass' ELSE 'camera.detection' END,
       CASE WHEN r < 0.7 THEN u.building_id END,
       CASE WHEN r < 0.62 THEN u.unit_id END,
       CASE WHEN r < 0.62 THEN 'cred:' || left(md5(u.unit_id || (n %% 4)), 16)
            WHEN r >= 0.7 AND r < 0.85 THEN 'plate:' || left(md5(n::text), 8) END,
       '{"v": 1, "granted": true}'::jsonb
FROM picked p JOIN bench_units u USING (i)
"""

# The derived tables come from their one definition (ingest/derived_tables.py), as
# `villagetwin derive rebuild` computes them; then what the replay needs.
DERIVE = [
    # Four availability changes per device per day: what the replay draws devices from.
    """INSERT INTO device_status_history (device_id, at, online)
       SELECT d.device_id, now() - (n * interval '6 hours') - random() * interval '5 hours',
              n % 2 = 0
       FROM devices d, generate_series(0, 14 * 4 - 1) AS n
       ON CONFLICT DO NOTHING""",
    "ANALYZE",
]


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, float]:
    run()  # one warm-up call: plans cached and pages read, as on a dashboard already open
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))]


def generate_events(dsn: str, units: int, events: int, say: Callable[[str], None]) -> None:
    """Events server-side over the last 14 days, then the derived tables built from them."""
    started = time.monotonic()
    step = 500_000
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(NUMBER_UNITS)
        for first in range(1, events + 1, step):
            last = min(events, first + step - 1)
            conn.execute(GENERATE, {"first": first, "last": last, "units": units})
            rate = last / (time.monotonic() - started)
            say(f"  {last:,} events ({rate:,.0f}/s)")
        derived_tables.rebuild(conn, datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC")))
        for statement in DERIVE:
            conn.execute(statement)
    say(f"generated and derived in {time.monotonic() - started:.0f}s")


def _sessions(dsn: str) -> dict[str, Any]:
    """An admin's and a one-grid inspector's connections as the dashboard's role."""
    password = "bench password 1"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT grid_code FROM buildings GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        grid = str(row[0]) if row else ""
        for name, role, grids in (
            ("bench-admin", "admin", []),
            ("bench-insp", "inspector", [grid]),
        ):
            conn.execute(
                "INSERT INTO app_users (username, role, grids) VALUES (%s, %s, %s)"
                " ON CONFLICT (username) DO UPDATE SET grids = EXCLUDED.grids",
                (name, role, grids),
            )
            conn.execute("SELECT vt_set_password(%s, %s)", (name, password))
    found: dict[str, Any] = {"grid": grid}
    for who, name in (("admin", "bench-admin"), ("inspector", "bench-insp")):
        c = psycopg.connect(make_conninfo(dsn, user="vt_dashboard"), autocommit=True)
        row = c.execute(
            "SELECT token FROM vt_sign_in(%s, %s, 'bench', '30 minutes')", (name, password)
        ).fetchone()
        assert row and row[0], f"{name} could not sign in"
        c.execute("SELECT set_config('vt.session', %s, false)", (row[0],))
        found[who] = c
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--database", help="measure a database kept by an earlier --keep run (no generation)"
    )
    args = parser.parse_args()
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    name = args.database or f"vt_qbench_{uuid.uuid4().hex[:8]}"
    if not args.database:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(ADMIN_DSN, dbname=name)
    keep = args.keep or bool(args.database)
    if keep:
        say(f"database: {name} (kept)")
    try:
        migrate(dsn, log=lambda _: None)
        village = generate(seed=1, size="large")
        if args.database:
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT count(*) FROM events").fetchone()
            args.events = int(row[0]) if row else 0
        else:
            with psycopg.connect(dsn) as conn:
                load_village(conn, village)
            say(f"large village loaded: {village.summary()}")
            generate_events(dsn, len(village.units), args.events, say)

        rng = random.Random(7)
        buildings = list(village.buildings.building_id)
        conn = psycopg.connect(dsn, autocommit=True)
        hour = timedelta(hours=1)

        def pick() -> str:
            return rng.choice(buildings)

        def overview() -> None:
            queries.events_by_building(conn, hour)
            queries.events_today(conn)
            queries.devices_online(conn)
            queries.dead_letter_count(conn, hour)
            queries.recent_event_points(conn, hour, 2000)

        def overview_raw() -> None:
            """The same page with the building and today's counts taken from raw events."""
            conn.execute(
                "SELECT building_id, count(*) FROM events WHERE ts > now() - interval '1 hour'"
                " AND kind <> 'heartbeat' GROUP BY 1"
            ).fetchall()
            conn.execute(
                "SELECT kind, count(*) FROM events WHERE ts >= date_trunc('day', now())"
                " AND kind <> 'heartbeat' GROUP BY 1"
            ).fetchall()
            queries.devices_online(conn)
            queries.dead_letter_count(conn, hour)
            queries.recent_event_points(conn, hour, 2000)

        def inspector() -> None:
            b = pick()
            read_units(conn, b)
            queries.registered_tenants(conn, b)
            queries.observed_credentials(conn, b, 7)
            queries.ended_tenancies(conn, b)
            queries.inspections(conn, b)
            queries.building_events(conn, b)

        def inspector_raw() -> None:
            """The same page with who was seen per unit taken from raw events."""
            b = pick()
            read_units(conn, b)
            queries.registered_tenants(conn, b)
            conn.execute(
                "SELECT unit_id, credential_ref, max(ts) FROM events WHERE building_id = %s"
                " AND ts > now() - interval '7 days' AND unit_id IS NOT NULL GROUP BY 1, 2",
                (b,),
            ).fetchall()
            queries.ended_tenancies(conn, b)
            queries.inspections(conn, b)
            queries.building_events(conn, b)

        def replay_step(days_ago: int, hour: datetime) -> None:
            """What the replay page asks when the slider moves: one hour's buildings and the
            devices as they were at its end."""
            queries.replay_hour(conn, hour)
            local = hour.astimezone(SHANGHAI).hour
            queries.device_states_at(conn, days_ago, local)

        def replay() -> None:
            """Opening a day: its hours, then the first slider step."""
            days_ago = rng.randint(1, 12)
            hours = queries.replay_hours(conn, days_ago)
            if len(hours):
                replay_step(days_ago, rng.choice(list(hours.hour)).to_pydatetime())

        def replay_whole_day() -> None:
            """Opening a day and stepping the slider through all of its hours."""
            days_ago = rng.randint(1, 12)
            for hour in queries.replay_hours(conn, days_ago).hour:
                replay_step(days_ago, hour.to_pydatetime())

        def latest_raw() -> None:
            conn.execute(
                "SELECT DISTINCT ON (device_id) device_id, ts FROM events"
                " ORDER BY device_id, ts DESC"
            ).fetchall()

        def latest() -> None:
            conn.execute("SELECT device_id, ts FROM device_latest").fetchall()

        rows = [
            ("live overview", "derived tables", timed(overview, args.repeat), 100),
            ("live overview", "raw events (baseline)", timed(overview_raw, args.repeat), None),
            ("building inspector", "derived tables", timed(inspector, args.repeat), 100),
            (
                "building inspector",
                "raw events (baseline)",
                timed(inspector_raw, args.repeat),
                None,
            ),
            ("replay: open a day", "hourly derived", timed(replay, args.repeat), 500),
            (
                "replay: all 24 hours",
                "hourly derived",
                timed(replay_whole_day, max(5, args.repeat // 3)),
                None,
            ),
            ("devices: latest per device", "device_latest", timed(latest, args.repeat), 100),
            ("devices: latest per device", "raw events (baseline)", timed(latest_raw, 3), None),
        ]
        # Row-level security (issue 14): the same pages as the dashboard's role, signed in as
        # an admin (policies short-circuit) and as an inspector of one grid, beside the owner.
        owner = conn
        sessions = _sessions(dsn)
        grid_buildings = [r[0] for r in owner.execute(
            "SELECT building_id FROM buildings WHERE grid_code = %s", (sessions["grid"],)
        )]  # fmt: skip
        all_buildings = buildings
        rls_rows = []
        for who in ("owner", "admin", "inspector"):
            conn = owner if who == "owner" else sessions[who]
            buildings = grid_buildings if who == "inspector" else all_buildings
            rls_rows.append((who, "live overview", timed(overview, args.repeat)))
            rls_rows.append((who, "building inspector", timed(inspector, args.repeat)))
        conn = owner
        buildings = all_buildings
        for c in (sessions["admin"], sessions["inspector"]):
            c.close()
        conn.close()
        print()
        print("row-level security: each page's queries as the table owner (no policies) and as")
        print("the dashboard's role signed in; p50 / p95 ms and p50 ratio to the owner's")
        base = {page: p50 for who, page, (p50, _) in rls_rows if who == "owner"}
        for who, page, (p50, p95) in rls_rows:
            print(f"{who:<10} {page:<20} {p50:8.1f} {p95:8.1f}   x{p50 / base[page]:.2f}")
        print()
        print(f"{args.events:,} events, large village; each page's queries, milliseconds")
        print(f"{'page':<28} {'answered from':<24} {'p50':>8} {'p95':>8} {'target':>8}")
        for page, source, (p50, p95), target in rows:
            goal = f"≤{target}" if target else ""
            print(f"{page:<28} {source:<24} {p50:>8.1f} {p95:>8.1f} {goal:>8}")
    finally:
        if not keep:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
