"""Plain PostgreSQL without TimescaleDB: the same migration files, unedited, build the same
schema with events partitioned by day (villagetwin/compat/postgres.sql), and the ingester's
retention drops partitions and deletes the default partition's old rows in batches."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest
from support import register_gates

from ingest.maintenance import backend, drop_old_partitions, ensure_partitions
from villagetwin.migrate import MigrationError, available, migrate

INSERT = (
    "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, payload)"
    " VALUES (now() - %s::interval, now(), %s, 'gate-p', 1, 'gate.pass', '{}')"
    " ON CONFLICT ON CONSTRAINT events_once DO NOTHING"
)


def _where(conn: psycopg.Connection, event_id: uuid.UUID) -> str:
    row = conn.execute(
        "SELECT tableoid::regclass::text FROM events WHERE event_id = %s", (event_id,)
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_the_migrations_build_a_partitioned_schema_without_timescaledb(plain_db: str) -> None:
    with psycopg.connect(plain_db) as conn:
        assert backend(conn) == "postgres"
        # No timescaledb: only what plain PostgreSQL servers carry (PostGIS, migration 0051).
        assert conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall() == [
            ("pgcrypto",), ("plpgsql",), ("postgis",)
        ]  # fmt: skip
        strategy = conn.execute(
            "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'events'::regclass"
        ).fetchone()
        assert strategy == ("r",)
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")
        }
        assert {"events_once", "events_ts_idx", "events_building_ts"} <= indexes
        # The files were applied as written: the same checksums as on TimescaleDB.
        recorded = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY 1")
        assert recorded.fetchall() == [(m.version, m.checksum) for m in available()]
        # Today's partition exists, so a live event never waits in the default partition.
        event_id = uuid.uuid4()
        register_gates(plain_db, ["gate-p"])
        assert conn.execute(INSERT, (timedelta(0), event_id)).rowcount == 1
        assert conn.execute(INSERT, (timedelta(0), event_id)).rowcount == 0  # ...nothing
        assert _where(conn, event_id).startswith("events_p")
    assert migrate(plain_db, log=lambda _: None) == []


def test_a_backend_that_contradicts_the_database_is_refused(
    plain_db: str, timescale_db: str
) -> None:
    with pytest.raises(MigrationError, match="this database is on postgres, not timescaledb"):
        migrate(plain_db, log=lambda _: None, backend="timescaledb")
    with pytest.raises(MigrationError, match="this database is on timescaledb, not postgres"):
        migrate(timescale_db, log=lambda _: None, backend="postgres")


def test_partitions_take_waiting_rows_and_retention_drops_and_deletes_in_batches(
    plain_db: str,
) -> None:
    register_gates(plain_db, ["gate-p"])
    with psycopg.connect(plain_db) as conn:
        waiting = uuid.uuid4()
        conn.execute(INSERT, (timedelta(days=20), waiting))
        conn.commit()
        assert _where(conn, waiting) == "events_default"
        made = conn.execute(
            "SELECT vt_compat.ensure_partitions('events', now() - interval '20 days',"
            " now() - interval '19 days')"
        ).fetchall()
        conn.commit()
        assert len(made) >= 1
        assert _where(conn, waiting).startswith("events_p")  # moved out of the default
        # The unique key holds across the move: the same event is still stored once.
        ts = conn.execute("SELECT ts FROM events WHERE event_id = %s", (waiting,)).fetchone()
        assert ts is not None
        again = conn.execute(
            "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, payload)"
            " VALUES (%s, now(), %s, 'gate-p', 1, 'gate.pass', '{}')"
            " ON CONFLICT ON CONSTRAINT events_once DO NOTHING",
            (ts[0], waiting),
        )
        assert again.rowcount == 0
        # Five rows of long-gone days wait in the default partition.
        for _ in range(5):
            conn.execute(INSERT, (timedelta(days=100), uuid.uuid4()))
        conn.commit()
        assert ensure_partitions(conn, timedelta(days=2)) == []  # made with the table
        assert len(ensure_partitions(conn, timedelta(days=3))) == 1  # one day further
        dropped, deleted = drop_old_partitions(conn, timedelta(days=10), batch_rows=2)
        left = conn.execute("SELECT count(*) FROM events").fetchone()
    assert dropped == len(made)  # the partitions 20 days back, one with its row
    assert deleted == 5  # in three committed batches of 2, 2, 1
    assert left == (0,)


def test_the_ingesters_role_cannot_drop_partitions_unless_granted(plain_db: str) -> None:
    role = f"vt_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(plain_db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role}")
        conn.execute(f"GRANT USAGE ON SCHEMA vt_compat TO {role}")
        conn.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT vt_compat.drop_partitions('events', now())")
        conn.execute("RESET ROLE")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")
        assert conn.execute("SELECT count(*) FROM events_default").fetchone() == (0,)
