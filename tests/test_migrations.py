"""The schema, applied by versioned migrations on a real TimescaleDB and on plain PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from villagetwin.migrate import MigrationError, available, migrate


@pytest.fixture
def db(any_db: str) -> str:
    return any_db


def test_migrations_build_the_schema_on_timescaledb(timescale_db: str) -> None:
    with psycopg.connect(timescale_db) as conn:
        hypertables = {
            row[0]
            for row in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            )
        }
        assert "events" in hypertables
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        assert {"events", "dead_letters", "devices", "grid_cells", "buildings", "units"} <= tables
        versions = [
            row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")
        ]
        assert versions == [m.version for m in available()]


def test_a_second_run_applies_nothing(db: str) -> None:
    assert migrate(db, log=lambda _: None) == []


def test_an_edited_migration_is_refused(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db, log=lambda _: None)


def test_the_same_event_is_stored_once(db: str) -> None:
    insert = (
        "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, payload)"
        " VALUES ('2026-11-26T12:00:00Z', now(), '7d0c3c3e-4c5e-4c11-9d7c-0d6b8d0e0001',"
        " 'acc-1', 1, 'access.unlock', '{}') ON CONFLICT ON CONSTRAINT events_once DO NOTHING"
    )
    with psycopg.connect(db) as conn:
        assert conn.execute(insert).rowcount == 1
        assert conn.execute(insert).rowcount == 0
