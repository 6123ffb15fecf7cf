"""The ``villagetwin`` command: every subcommand documents itself and works on real services."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support import ROOT, SQUARE_FOOTPRINT, count, free_port

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
