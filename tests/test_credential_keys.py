"""Issue 12, item 4: the key of the hashes that replace plates, cards and faces. `setup` makes
a random one readable by its owner only; the ingester does not ingest vendor bridges without a
key other than the public development one unless in demo mode; rotation keeps references
made under the old key matchable through their key id."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from support import ROOT, SHARED_DATA, count, wait_until

from devices.adapters import reference
from ingest.keys import KeyFileError, ensure_key_file, load, parse, rotate
from ingest.settings import DEFAULT_CREDENTIAL_KEY

PLATE_SAMPLE = SHARED_DATA / "payloads" / "alphadigi_vzenith_alarminfoplate.json"
PLATE = "OTM2022"  # what that sample's camera read
TOPIC = "vt/bridge/alphadigi/gate-plate1"


def _setup(db: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {"VT_DB_DSN": db, "VT_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "setup", "--no-broker"],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


def test_setup_makes_a_random_key_readable_by_its_owner_only(db: str, tmp_path: Path) -> None:
    first = _setup(db, tmp_path / "a")
    assert first.returncode == 0, first.stderr
    path = tmp_path / "a" / "credential.key"
    assert oct(path.stat().st_mode)[-3:] == "600"
    ring = load(path)
    assert [kid for kid, _ in ring.keys] == ["k1"] and len(ring.current[1]) == 64
    text = path.read_text()
    assert _setup(db, tmp_path / "a").returncode == 0 and path.read_text() == text  # kept
    assert _setup(db, tmp_path / "b").returncode == 0
    assert load(tmp_path / "b" / "credential.key").current != ring.current  # random
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load(path)


def test_a_key_file_that_cannot_be_used_is_refused_with_a_reason() -> None:
    with pytest.raises(KeyFileError, match="no key"):
        parse("# nothing\n")
    with pytest.raises(KeyFileError, match="appears twice"):
        parse("k1 " + "a" * 32 + "\nk1 " + "b" * 32 + "\n")
    with pytest.raises(KeyFileError, match="16"):
        parse("k1 short\n")


def _take_ref(db: str) -> str:
    """The one stored plate pass's reference; the event is removed (a bridged event's id is
    derived from its content, so the same sample again would be a duplicate)."""
    with psycopg.connect(db) as conn:
        (ref,) = conn.execute("SELECT credential_ref FROM events").fetchone()  # type: ignore[misc]
        conn.execute("TRUNCATE events")
    return str(ref)


def _publish_plate(port: int) -> None:
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", TOPIC,
                    "-f", str(PLATE_SAMPLE)], check=True)  # fmt: skip


def test_bridges_need_a_real_key_or_demo_mode_and_rotation_keeps_matching(
    db: str, broker, start_ingester, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO devices (device_id, kind) VALUES ('gate-plate1', 'gate')")
    key_file = tmp_path / "credential.key"
    options = {"max_age_days": 3650, "credential_key_file": key_file}
    # No key at all: the bridge topic is not even subscribed; the native stream still works.
    running = start_ingester(db, broker.settings, **options)
    assert running.ingester.bridges is False
    _publish_plate(broker.settings.port)
    running.stop()
    # The public development key, outside demo mode: refused the same way.
    running = start_ingester(db, broker.settings, credential_key=DEFAULT_CREDENTIAL_KEY, **options)
    assert running.ingester.bridges is False
    running.stop()
    assert count(db, "SELECT count(*) FROM events") == 0
    # Demo mode says so explicitly, and then the development key is used.
    running = start_ingester(db, broker.settings, demo=True, **options)
    _publish_plate(broker.settings.port)
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 1, 15)
    running.stop()
    assert _take_ref(db) == reference("plate", DEFAULT_CREDENTIAL_KEY.encode(), PLATE)
    # `setup`'s key file: references name their key.
    assert ensure_key_file(key_file)
    refs = []
    for expected_key in ("k1", "k2"):
        running = start_ingester(db, broker.settings, **options)
        assert running.ingester.bridges is True
        _publish_plate(broker.settings.port)
        assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 1, 15)
        running.stop()
        refs.append(_take_ref(db))
        assert refs[-1].startswith(f"plate:{expected_key}.")
        if expected_key == "k1":
            # Rotation: a new current key, the old one kept for matching only.
            assert rotate(key_file) == "k2"
    assert refs[0] != refs[1]
    # To find every pass of that plate, compute its reference under every key in the ring.
    assert set(refs) <= load(key_file).references("plate", PLATE)
    assert load(key_file).references("plate", "OTHER1") & set(refs) == set()
