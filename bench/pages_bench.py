"""Dashboard page timings in a real browser, on the large sample village (beside
bench/queries_bench.py, which times each page's queries alone).

    .venv/bin/python bench/pages_bench.py                    # large village, 300k events
    .venv/bin/python bench/pages_bench.py --events 2000000
    .venv/bin/python bench/pages_bench.py --database NAME    # a database kept by queries_bench

Loads the village `villagetwin village generate --size large` makes (seed 1: about 3,100
buildings, 40k units, 3,400 devices) into a fresh database with events over the last 14 days
(queries_bench's generator) and a few devices offline, starts `villagetwin dashboard`, signs in
as a manager and as an inspector in Debian's Chromium (Playwright), and opens every page in the
navigation in turn. A page's first render is the time from the click on its link until the
script run has finished (Streamlit's ``data-test-script-state`` is ``notRunning``), its title is
shown and a map on it, if any, has its canvas. Printed per page: first render and a second
visit, in seconds, the ratio to the sign-in form's render in the same run (the baseline: a page
that reads nothing), and the 2 s target. Not a test: a loaded 2-core machine varies ±30 %.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from queries_bench import ADMIN_DSN, generate_events  # noqa: E402
from support import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402

from mapping.db import load_village  # noqa: E402
from mapping.generate import generate  # noqa: E402
from villagetwin.local import wait_for_port  # noqa: E402
from villagetwin.migrate import migrate  # noqa: E402

PASSWORD = "bench password 1"
TARGET_S = 2.0
DONE = "document.querySelector('[data-testid=stApp]')?.dataset.testScriptState"


def _add_users(dsn: str) -> None:
    env = {**os.environ, "VT_DB_DSN": dsn}
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT grid_code FROM buildings GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        known = {r[0] for r in conn.execute("SELECT username FROM app_users")}
    grid = str(row[0]) if row else ""
    for args in (["bench-manager", "--role", "manager"],
                 ["bench-inspector", "--role", "inspector", "--grid", grid]):  # fmt: skip
        if args[0] in known:  # kept from an earlier run
            continue
        subprocess.run(
            [sys.executable, "-m", "villagetwin.cli", "users", "add", *args, "--password",
             PASSWORD], cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip


def _settled(page: object, timeout_s: float = 60.0) -> float:
    """Waits until the script run is over and the page's title and map canvas (if a map is
    on it) are shown; returns the monotonic time it happened."""
    deadline = time.monotonic() + timeout_s
    seen_running = False
    while time.monotonic() < deadline:
        state = page.evaluate(DONE)  # type: ignore[attr-defined]
        seen_running = seen_running or state == "running"
        ready = page.evaluate(  # type: ignore[attr-defined]
            """() => {
                const h = document.querySelector('[data-testid=stMain] h1, [data-testid=stForm]');
                const maps = document.querySelectorAll('[data-testid=stDeckGlJsonChart]');
                const drawn = [...maps].every(m => m.querySelector('canvas'));
                return Boolean(h) && drawn;
            }"""
        )
        if state == "notRunning" and ready:
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError("the page did not finish rendering within a minute")


def _measure(url: str, username: str) -> tuple[float, list[tuple[str, float, float]]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        started = time.monotonic()
        page.goto(url)
        page.get_by_label("用户名 Username").wait_for()
        baseline = _settled(page) - started
        page.get_by_label("用户名 Username").fill(username)
        page.get_by_label("密码 Password").fill(PASSWORD)
        started = time.monotonic()
        page.get_by_role("button", name="登录 Sign in").click()
        page.locator("[data-testid=stSidebarNav] a").first.wait_for(timeout=60_000)
        first_page = _settled(page) - started
        links = page.locator("[data-testid=stSidebarNav] a")
        # (each link's text begins with its icon's ligature name: the title is the last line)
        hrefs = [str(links.nth(i).get_attribute("href")) for i in range(links.count())]
        titles = {h: links.nth(i).inner_text().strip().splitlines()[-1]
                  for i, h in enumerate(hrefs)}  # fmt: skip
        names = hrefs
        visits: dict[str, list[float]] = {names[0]: [first_page]} if names else {}
        # The first round opens each other page once (the first page is open already), the
        # second round every page again.
        for name in [*names[1:], *names]:
            started = time.monotonic()
            page.locator(f"[data-testid=stSidebarNav] a[href='{name}']").first.click()
            time.sleep(0.05)  # the click starts a run; wait for it, not the previous one
            visits.setdefault(name, []).append(_settled(page) - started)
        timings = [(titles[name], visits[name][0], visits[name][1]) for name in names]
        browser.close()
    return baseline, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--database", help="a database with the large village and events")
    args = parser.parse_args()
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    name = args.database or f"vt_pbench_{uuid.uuid4().hex[:8]}"
    if not args.database:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(ADMIN_DSN, dbname=name)
    log = Path(f"/tmp/{name}-dashboard.log")
    try:
        migrate(dsn, log=lambda _: None)
        if not args.database:
            village = generate(seed=1, size="large")
            with psycopg.connect(dsn) as conn:
                load_village(conn, village)
            say(f"large village loaded: {village.summary()}")
            generate_events(dsn, len(village.units), args.events, say)
            with psycopg.connect(dsn) as conn:  # some devices offline, as on a real day
                conn.execute(
                    "UPDATE devices SET online = (right(device_id, 1) <> '7'),"
                    " status_changed_at = now() - interval '3 hours', last_seen = now()"
                )
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
            args.events = int(row[0]) if row else 0
            load = os.getloadavg()[0]
        _add_users(dsn)
        port = free_port()
        env = {**os.environ, "VT_DB_DSN": dsn}
        server = subprocess.Popen(
            [sys.executable, "-m", "villagetwin.cli", "dashboard", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            if not wait_for_port("127.0.0.1", port, 60):
                raise RuntimeError(f"the dashboard did not start:\n{log.read_text()}")
            results = {
                who: _measure(f"http://127.0.0.1:{port}", who)
                for who in ("bench-manager", "bench-inspector")
            }
        finally:
            server.terminate()
            server.wait(timeout=20)
        print(f"\npage first render in Chromium, large village, {args.events:,} events; seconds"
              f" (load average {load:.1f} on {os.cpu_count()} cores at the start)")  # fmt: skip
        print(f"{'user':<16} {'page':<26} {'first':>7} {'again':>7} {'x sign-in':>10} target")
        worst = 0.0
        for who, (baseline, timings) in results.items():
            print(f"{who:<16} {'(sign-in form, baseline)':<26} {baseline:>7.2f}")
            for page, first, again in timings:
                worst = max(worst, first)
                flag = "ok" if first <= TARGET_S else "SLOW"
                print(f"{who:<16} {page:<26} {first:>7.2f} {again:>7.2f} "
                      f"{first / baseline:>9.1f}x ≤{TARGET_S:g} {flag}")  # fmt: skip
        print(f"slowest first render: {worst:.2f} s (target ≤ {TARGET_S:g} s)")
    finally:
        if not args.database:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
