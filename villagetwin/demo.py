"""The demo's own work, for ``villagetwin demo``: its sign-ins and grid staff, the commands of
its processes, and their supervision until Ctrl-C. The command (villagetwin/cli.py) brings the
services up, restores what it found afterwards, and calls :func:`run`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg

from rules.case_store import add_staff
from villagetwin.local import wait_for_port
from villagetwin.users import add_user

Log = Callable[[str], None]
ME = [sys.executable, "-m", "villagetwin.cli"]


class DemoError(RuntimeError):
    """A demo process stopped by itself (not through Ctrl-C); the message names it."""


def dashboard_command(host: str, port: int) -> list[str]:
    """The Streamlit command line of the dashboard on ``host:port``: dashboard/serve.py, which
    adds the security headers (issue 14, item 9) around dashboard/entry/app.py."""
    app = Path(__file__).resolve().parent.parent / "dashboard" / "serve.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--server.fileWatcherType", "none", "--theme.base", "light",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def sign_ins(conn: psycopg.Connection, password: str | None) -> dict[str, str]:
    """Adds (or resets) the demo's admin, manager and an inspector of the first grid, and the
    grid staff the case workflow routes to (the inspector works the first grid, the manager
    manages all). Returns username → password (``password``, or new random ones).

    Raises villagetwin.users.PasswordRefused for a password the policy refuses."""
    grid = conn.execute("SELECT min(grid_code) FROM grid_cells").fetchone()
    accounts = {
        "admin": ("admin", []),
        "manager": ("manager", []),
        "inspector": ("inspector", [grid[0]] if grid and grid[0] else []),
    }
    issued = {
        name: add_user(conn, name, role, grids, password)
        for name, (role, grids) in accounts.items()
    }
    grids = [r[0] for r in conn.execute("SELECT grid_code FROM grid_cells ORDER BY 1")]
    for n, code in enumerate(grids):
        if n == 0:
            add_staff(conn, code, "inspector", "worker")
        add_staff(conn, code, "manager", "manager")
    return issued


def feeds(rate: float, seed: int, fresh: bool) -> list[list[str]]:
    """The simulator commands, in order: on a fresh database first a realistic day replayed
    in about fifteen seconds (planted anomalies, so the alarm centre and the inspector have
    findings within a minute), then live events at ``rate`` per second for a day."""
    live = [*ME, "simulate", "--rate", str(rate), "--duration", "86400", "--seed", str(seed)]
    if not fresh:
        return [live]
    day = [*ME, "simulate", "--day", "--days", "1", "--speed", "5760", "--rate", "3000",
           "--seed", str(seed)]  # fmt: skip
    return [day, live]


def run(
    dsn: str,
    host: str,
    port: int,
    rate: float,
    seed: int,
    password: str | None,
    log: Log,
    env: Mapping[str, str],
) -> None:
    """Runs the ingester, the rules worker, the dashboard on ``host:port`` and the simulators
    (see :func:`feeds`) as child processes until SIGINT or SIGTERM, then stops them (SIGTERM,
    then SIGKILL after 20 s). ``env``: the environment of the ingester (the demo's explicit
    demo mode lets vendor bridges use the public development key).

    Raises DemoError when a process stops by itself, and psycopg.Error when the database
    cannot be read."""
    with psycopg.connect(dsn) as conn:
        issued = sign_ins(conn, password)
        row = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM device_latest)").fetchone()
    steps = feeds(rate, seed, fresh=bool(row and row[0]))
    children = [
        subprocess.Popen([*ME, "ingest"], env=dict(env)),
        subprocess.Popen([*ME, "rules"]),
        subprocess.Popen(dashboard_command(host, port)),
        subprocess.Popen(steps.pop(0)),
    ]
    if wait_for_port(host, port, 60):
        logins = ", ".join(f"{name} / {pw}" for name, pw in issued.items())
        log(f"\n  villagetwin demo: open http://{host}:{port}  (Ctrl-C stops everything)")
        log(f"  sign in as {logins}\n")
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and all(child.poll() is None for child in children):
            time.sleep(0.5)
            if steps and children[-1].poll() == 0:  # the replay is done: live events follow
                children[-1] = subprocess.Popen(steps.pop(0))
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [c.args for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
    if failed and not stop:
        raise DemoError(f"a demo process stopped unexpectedly: {failed}")
