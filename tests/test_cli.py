"""The ``villagetwin`` command: every subcommand documents itself and works on real services."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser
from support import ROOT, SQUARE_FOOTPRINT, count, free_port, wait_until

COMMANDS = [
    [],
    ["setup"],
    ["migrate"],
    ["village"],
    ["village", "generate"],
    ["village", "load"],
    ["simulate"],
    ["ingest"],
    ["dashboard"],
    ["demo"],
    ["broker"],
    ["gaps"],
    ["derive"],
    ["derive", "rebuild"],
]


def villagetwin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "villagetwin")
def test_every_command_has_help(command: list[str]) -> None:
    result = villagetwin(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: villagetwin" in result.stdout
    assert len(result.stdout.splitlines()) > 4


def test_migrate_and_generate_through_the_command(db: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"VT_DB_DSN": db, "VT_STATE_DIR": str(tmp_path)}
    migrated = villagetwin("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "0 migration(s) applied now" in migrated.stderr
    generated = villagetwin("village", "generate", "--seed", "2", env=env)
    assert generated.returncode == 0, generated.stderr
    assert (tmp_path / "village-small-2.gpkg").exists()
    assert count(db, "SELECT count(*) FROM buildings") >= 300
    loaded = villagetwin("village", "load", str(tmp_path / "village-small-2.gpkg"), env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert count(db, "SELECT count(*) FROM units") >= 3000


def test_a_bad_database_gives_a_clear_error_not_a_traceback() -> None:
    result = villagetwin("migrate", env={"VT_DB_DSN": "postgresql://postgres@127.0.0.1:1/nowhere"})
    assert result.returncode == 1
    assert "Error:" in result.stderr and "Traceback" not in result.stderr


@contextlib.contextmanager
def occupied() -> Iterator[int]:
    """A port a plain TCP server (this test process, not a broker) listens on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def test_a_busy_dashboard_or_metrics_port_says_who_holds_it_and_what_to_do() -> None:
    me = f"by pid {os.getpid()} ("
    with occupied() as port:
        result = villagetwin("demo", "--port", str(port))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        line = result.stderr.strip()
        assert line.startswith(f"Error: port {port} (the dashboard) is already in use {me}")
        assert re.search(r"stop it, or run the demo on another: --port \d+$", line), line
    with occupied() as port:
        dashboard = free_port()
        result = villagetwin("demo", "--port", str(dashboard),
                             env={"VT_INGEST__HTTP_PORT": str(port)})  # fmt: skip
        line = result.stderr.strip()
        assert result.returncode == 1 and "\n" not in line, line
        assert f"port {port} (the ingester's metrics) is already in use {me}" in line
        assert re.search(r"set VT_INGEST__HTTP_PORT=\d+ \(0 turns the metrics off\)$", line)


def test_a_busy_broker_port_held_by_another_program_says_what_to_do(tmp_path: Path) -> None:
    with occupied() as port:
        result = villagetwin(
            "broker", "start",
            env={"VT_MQTT__PORT": str(port), "VT_STATE_DIR": str(tmp_path),
                 "VT_BROKER_TLS_PORT": "0"},
        )  # fmt: skip
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"port {port} (MQTT) is already in use by pid {os.getpid()} (" in line
    assert re.search(r"not a Mosquitto this project may replace: stop it, or use another port:"
                     r" VT_MQTT__PORT=\d+$", line), line  # fmt: skip


def test_village_import_of_a_csv_as_footprints_says_so_in_one_line(db: str, tmp_path: Path) -> None:
    units = tmp_path / "units.csv"
    units.write_text("unit_id,building_id,floor,room\nLH1-101,LH1,1,101\n", encoding="utf-8")
    result = villagetwin("village", "import", str(units), env={"VT_DB_DSN": db})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: cannot import {units}: units.csv is a table without geometry: footprints"
        " must be polygons (GeoJSON, GeoPackage, Shapefile); a table of units, people or"
        " tenancies goes with --units, --people or --tenancies"
    )


def test_devices_add_wants_the_building_id_and_says_so(db: str) -> None:
    help_text = villagetwin("devices", "add", "--help").stdout
    assert "--building BUILDING_ID" in help_text and "building_id, e.g. LH00150" in help_text
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO buildings (building_id, address, storeys, height_m, footprint, lon, lat)"
            " VALUES ('LH00150', '广州市黄埔区龙湖村一巷150号', 6, 18, %s, 113.45, 23.16)",
            (SQUARE_FOOTPRINT,),
        )
    address = "广州市黄埔区龙湖村一巷150号"
    by_address = villagetwin("devices", "add", "acc-x1", "--kind", "access", "--building",
                             address, env={"VT_DB_DSN": db})  # fmt: skip
    assert by_address.returncode == 1
    assert by_address.stderr.strip() == (
        "Error: no building id '广州市黄埔区龙湖村一巷150号' in the village model; that is the"
        " address of LH00150: give its id, --building LH00150"
    )
    unknown = villagetwin("devices", "add", "acc-x1", "--kind", "access", "--building", "LH9",
                          env={"VT_DB_DSN": db})  # fmt: skip
    assert "(--building takes the building id, e.g. LH00150, not its address)" in unknown.stderr
    added = villagetwin("devices", "add", "acc-x1", "--kind", "access", "--building", "LH00150",
                        env={"VT_DB_DSN": db})  # fmt: skip
    assert added.returncode == 0, added.stderr


@pytest.mark.browser
def test_demo_restores_the_broker_it_found_and_prints_no_deprecation_warnings(
    db: str, tmp_path: Path, chromium: Browser
) -> None:
    """A broker of this project started from another checkout (as the machine's own
    Mosquitto would be) holds the MQTT port: the demo stops it to serve the port with its own
    config, and at Ctrl-C stops its own and starts that one again, as it was. Meanwhile an admin
    opens every page, and nothing in the demo's output is a deprecation warning."""
    from villagetwin import local

    mqtt = free_port()
    other = tmp_path / "other-checkout"
    conf = local.start_broker(other, "127.0.0.1", mqtt, lambda _: None)
    try:
        _demo_restores(db, tmp_path, chromium, conf, mqtt)
    finally:
        local.stop_broker(other)


def _demo_restores(db: str, tmp_path: Path, chromium: Browser, conf: Path, mqtt: int) -> None:
    from playwright.sync_api import expect
    from test_demo_browser import DEMO_PASSWORD, sign_in

    from villagetwin import local

    web, metrics = free_port(), free_port()
    found = local.listener(mqtt)
    assert found is not None and str(conf) in found
    env = {
        **os.environ, "VT_DB_DSN": db, "VT_STATE_DIR": str(tmp_path / "state"),
        "VT_MQTT__PORT": str(mqtt), "VT_BROKER_TLS_PORT": str(free_port()),
        "VT_INGEST__HTTP_PORT": str(metrics), "VT_DEMO_PASSWORD": DEMO_PASSWORD,
    }  # fmt: skip
    log = tmp_path / "demo.log"
    demo = subprocess.Popen(
        [sys.executable, "-m", "villagetwin.cli", "demo", "--port", str(web), "--rate", "5"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert wait_until(lambda: "villagetwin demo: open" in log.read_text(), 180), log.read_text()
        ours = local.listener(mqtt)
        assert ours is not None and str(tmp_path / "state") in ours, ours
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{web}")
        sign_in(page, "admin", DEMO_PASSWORD)
        links = page.get_by_test_id("stSidebarNav").get_by_role("link")
        expect(links.first).to_be_visible(timeout=60_000)
        for n in range(links.count()):
            links.nth(n).click()
            expect(page.get_by_role("heading", level=1).first).to_be_visible(timeout=60_000)
            expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=60_000)
        page.close()
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.wait(timeout=90)
    out = log.read_text()
    assert "stopping the demo's Mosquitto" in out and "starting another checkout's" in out
    again = local.listener(mqtt)
    assert again is not None and str(conf) in again, out  # the one it found, back
    assert not local.broker_running(tmp_path / "state")
    assert "Traceback" not in out
    assert not re.search(r"(?i)deprecat|will be removed|please replace", out), out
