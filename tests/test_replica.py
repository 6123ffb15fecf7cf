"""A read replica for the dashboard: a second PostgreSQL cluster started here as a streaming
replica of a private primary (pg_basebackup), the dashboard given both DSNs. The pages read
from the replica; signing in (and every write) stays on the primary."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import sync_playwright
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PrivatePostgres,
    count,
    dashboard_server,
    free_port,
    wait_until,
)
from test_demo_browser import DEMO_PASSWORD, sign_in

from dashboard.settings import DashboardSettings
from villagetwin.migrate import migrate


class Replica(PrivatePostgres):
    """A streaming replica of ``primary``, made with pg_basebackup -R."""

    def __init__(self, port: int, primary: PrivatePostgres) -> None:
        super().__init__(port)
        self.primary = primary

    def init(self) -> None:
        if os.geteuid() == 0:
            import shutil

            shutil.chown(self.base, "postgres", "postgres")
        self._run(str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p",
                  str(self.primary.port), "-U", "postgres", "-D", str(self.data), "-R",
                  "--wal-method=stream", "--no-sync")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.port}\nunix_socket_directories = '{self.base}'\n")


@pytest.fixture(scope="module")
def primary_and_replica() -> Iterator[tuple[str, str]]:
    primary = PrivatePostgres(free_port())
    primary.init()
    primary.start()
    replica = Replica(free_port(), primary)
    try:
        with psycopg.connect(primary.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE villagetwin")
        dsn = make_conninfo(primary.dsn, dbname="villagetwin")
        migrate(dsn, log=lambda _: None)
        replica.init()
        replica.start()
        yield dsn, make_conninfo(replica.dsn, dbname="villagetwin")
    finally:
        replica.destroy()
        primary.destroy()


def test_the_dashboard_reads_from_the_replica_and_signs_in_on_the_primary(
    primary_and_replica: tuple[str, str], tmp_path: Path
) -> None:
    primary, replica = primary_and_replica
    with psycopg.connect(replica) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    env = {**os.environ, "VT_DB_DSN": primary, "VT_DEMO_PASSWORD": DEMO_PASSWORD}
    for command in (
        ["village", "generate", "--seed", "3", "--size", "small", "--load"],
        ["users", "add", "manager1", "--role", "manager", "--password", DEMO_PASSWORD],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "villagetwin.cli", *command],
            env={**env, "VT_STATE_DIR": str(tmp_path / "state")},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    buildings = count(primary, "SELECT count(*) FROM buildings")
    assert buildings > 0
    # Streaming: what the primary committed shows on the replica within moments.
    assert wait_until(lambda: count(replica, "SELECT count(*) FROM buildings") == buildings, 30)

    settings = DashboardSettings(db_dsn=primary, replica_dsn=replica)
    assert conninfo_to_dict(settings.reader_dsn())["port"] == conninfo_to_dict(replica)["port"]
    assert conninfo_to_dict(settings.writer_dsn())["port"] == conninfo_to_dict(primary)["port"]
    sessions = (
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'vt_dashboard'"
        " AND datname = 'villagetwin'"
    )
    dashboard = dashboard_server({**env, "VT_REPLICA_DSN": replica}, tmp_path / "dash.log")
    with dashboard as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        sign_in(page, "manager1")
        page.locator("canvas").first.wait_for(state="visible", timeout=60_000)
        # The overview's key figures were read, from the replica.
        metric = page.get_by_test_id("stMetric").first.inner_text()
        assert str(buildings) in metric, metric
        assert count(replica, sessions) >= 1
        assert count(primary, sessions) >= 1  # the sign-in's connection
        browser.close()
