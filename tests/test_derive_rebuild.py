"""``villagetwin derive rebuild``: the derived tables recomputed from the raw events, after
they were damaged (the day a derivation bug is found), equal their definition again; what is
before ``--since`` is left alone; a rebuild from before what retention keeps is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from test_cli import villagetwin
from test_ingest_state import _access_db, _assert_derived_equal_recount, _mixed_rows

from ingest import derived_tables, store

MIDNIGHT = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # 00:00 in Shanghai, as _mixed_rows uses


def _stored(db: str) -> None:
    _access_db(db)
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, kind) VALUES ('gate-w', 'gate'), ('app', 'app')"
        )
        store.prepare(conn)
        rows = _mixed_rows(1000, seed=11)
        for k in range(0, len(rows), 250):
            store.store(conn, rows[k : k + 250], [])
        conn.commit()


def _damage(conn: psycopg.Connection) -> None:
    """What a derivation bug could leave, all of it after MIDNIGHT but one hourly row."""
    conn.execute("UPDATE building_hourly SET events = events + 7 WHERE hour >= %s", (MIDNIGHT,))
    conn.execute("DELETE FROM village_hourly WHERE hour >= %s", (MIDNIGHT,))
    conn.execute(
        "INSERT INTO unit_daily_credentials VALUES ('B1-301', '2026-11-27', 'cred:ghost',"
        " %s, %s, 3)",
        (MIDNIGHT, MIDNIGHT),
    )
    conn.execute("UPDATE unit_daily_credentials SET events = 99 WHERE day = '2026-11-27'")
    # A latest event from the future: the device's real latest is older than anything since.
    conn.execute("UPDATE device_latest SET ts = '2030-01-01', seq = 0 WHERE device_id = 'app'")
    conn.execute("DELETE FROM incidents WHERE reported_at >= %s", (MIDNIGHT,))
    conn.execute("UPDATE devices SET last_seq = 0 WHERE device_id = 'acc-b1'")
    conn.execute(
        "UPDATE building_hourly SET events = events + 1000"
        " WHERE hour = %s - interval '1 hour' AND kind = 'gate.pass'",
        (MIDNIGHT,),
    )


def test_rebuild_since_a_time_recomputes_the_derived_tables_from_the_raw_events(db: str) -> None:
    _stored(db)
    with psycopg.connect(db) as conn:
        _damage(conn)
        with pytest.raises(AssertionError):
            _assert_derived_equal_recount(conn)  # the damage shows
        written = derived_tables.rebuild(conn, MIDNIGHT + timedelta(minutes=10))
        conn.commit()
        assert written["incidents"] > 0 and written["village_hourly"] > 0
        # Before since (whole hours and the local day: from MIDNIGHT): left alone.
        early = conn.execute(
            "SELECT events FROM building_hourly WHERE hour = %s - interval '1 hour'"
            " AND kind = 'gate.pass'",
            (MIDNIGHT,),
        ).fetchone()
        assert early is not None and early[0] > 1000
        conn.execute(
            "UPDATE building_hourly SET events = events - 1000"
            " WHERE hour = %s - interval '1 hour' AND kind = 'gate.pass'",
            (MIDNIGHT,),
        )
        _assert_derived_equal_recount(conn)  # everything else: its definition again
        ghost = "SELECT count(*) FROM unit_daily_credentials WHERE credential_ref = 'cred:ghost'"
        assert conn.execute(ghost).fetchone() == (0,)


def test_a_rebuild_from_before_what_retention_keeps_is_refused(db: str) -> None:
    _stored(db)
    with psycopg.connect(db) as conn:
        before = conn.execute("SELECT sum(events) FROM building_hourly").fetchone()
        with pytest.raises(derived_tables.RebuildRefused, match="retention"):
            derived_tables.rebuild(conn, MIDNIGHT, kept_since=MIDNIGHT + timedelta(days=1))
        assert conn.execute("SELECT sum(events) FROM building_hourly").fetchone() == before


def test_the_command_rebuilds_and_refuses_with_reasons(db: str) -> None:
    _stored(db)
    with psycopg.connect(db, autocommit=True) as conn:
        _damage(conn)
        conn.execute(
            "UPDATE building_hourly SET events = events - 1000"
            " WHERE hour = %s - interval '1 hour' AND kind = 'gate.pass'",
            (MIDNIGHT,),
        )
    env = {"VT_DB_DSN": db}
    done = villagetwin("derive", "rebuild", "--since", "2026-11-26T00:00+08:00", env=env)
    assert done.returncode == 0, done.stderr
    assert "building_hourly\t" in done.stdout and "incidents\t" in done.stdout
    with psycopg.connect(db) as conn:
        _assert_derived_equal_recount(conn)
    naive = villagetwin("derive", "rebuild", "--since", "2026-11-26T00:00", env=env)
    assert naive.returncode != 0 and "offset" in naive.stderr
    old = villagetwin("derive", "rebuild", "--since", "2000-01-01T00:00+08:00", env=env)
    assert old.returncode != 0 and "retention" in old.stderr
