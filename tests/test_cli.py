"""The ``villagetwin`` command: every subcommand documents itself and works on real services."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import ROOT, count

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
