"""The access suite's database checks on plain PostgreSQL (VT_DB_BACKEND=postgres), where
events is a table partitioned by day (villagetwin/compat/postgres.sql) instead of a hypertable:
the same masking, grid scoping through vt_scope.events and row-level security, and no way past
the view to the partitions."""

from __future__ import annotations

import psycopg
import pytest
from test_access import (  # noqa: F401  (the tests and fixture pytest collects here again)
    INSIDE,
    session,
    test_a_timed_out_session_gets_nothing_from_the_database,
    test_an_inspector_sees_only_their_grids_in_every_table_by_hand_written_sql,
    test_the_dashboard_role_cannot_read_unmasked_personal_data,
    test_writes_go_through_functions_that_check_the_session,
    village_db,
)

from ingest.maintenance import backend


@pytest.fixture
def db(plain_db: str) -> str:
    return plain_db


def test_no_partition_of_events_is_readable_past_the_view(village_db: str) -> None:  # noqa: F811
    with psycopg.connect(village_db) as conn:
        assert backend(conn) == "postgres"
        partitions = [
            row[0]
            for row in conn.execute(
                "SELECT inhrelid::regclass::text FROM pg_inherits"
                " WHERE inhparent = 'public.events'::regclass"
            )
        ]
        seen = conn.execute("SELECT count(*) FROM events").fetchone()
    assert len(partitions) > 1 and seen is not None and seen[0] > 0
    with session(village_db, "admin") as admin:
        assert admin.execute("SELECT count(*) FROM events").fetchone() == seen
        for partition in partitions:  # the default one included
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                admin.execute(f"SELECT count(*) FROM {partition}")
    with psycopg.connect(village_db) as conn:
        foreign = [
            row[0]
            for row in conn.execute(
                "SELECT building_id FROM buildings WHERE grid_code IS DISTINCT FROM %s", (INSIDE,)
            )
        ]
        stored = conn.execute(
            "SELECT count(*) FROM events WHERE building_id = ANY(%s)", (foreign,)
        ).fetchone()
    assert stored is not None and stored[0] > 0
    with session(village_db, "insp") as insp:
        reached = insp.execute(
            "SELECT count(*) FROM events WHERE building_id = ANY(%s)", (foreign,)
        ).fetchone()
        assert reached == (0,)
