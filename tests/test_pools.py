"""Connection pools (psycopg_pool) on a real PostgreSQL: the ingester's holders get prepared
connections and a fresh one after a failure; the dashboard lends one connection per page view,
gives it back at the end of the view with nothing of that view left on it, bounds the
connections of all sessions together, and retries lending a bounded number of times."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from support import count

from dashboard import pool as dashboard_pool
from dashboard.settings import DashboardSettings
from ingest.service import _Connection


def _backends(dsn: str, application: str) -> int:
    return count(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s",
        application,
    )


def test_an_ingester_holder_gets_a_prepared_connection_and_a_fresh_one_after_a_failure(
    db: str,
) -> None:
    holder = _Connection(db, prepare=True)
    conn = holder.get()
    assert holder.get() is conn  # held, not lent again
    conn.execute("SELECT count(*) FROM staging_events")  # store.prepare ran (pool configure)
    conn.rollback()
    pid = conn.info.backend_pid
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    holder.drop()
    again = holder.get()
    assert again.info.backend_pid != pid
    again.execute("SELECT count(*) FROM staging_events")
    again.rollback()
    holder.drop()
    assert again.closed  # given back closed: the pool never lends it again


def _settings(**kw: object) -> DashboardSettings:
    return DashboardSettings(db_pool_size=1, **kw)  # type: ignore[arg-type]


def test_a_page_view_borrows_one_connection_and_leaves_nothing_on_it(db: str) -> None:
    dsn = db + " application_name=vt-pool-view"
    settings = _settings()
    seen: list[int] = []

    @dashboard_pool.returns_lent_connections
    def view(user: str) -> None:
        conn = dashboard_pool.lent(dsn, settings)
        assert dashboard_pool.lent(dsn, settings) is conn  # however often it asks
        seen.append(conn.info.backend_pid)
        before = conn.execute("SELECT current_setting('vt.viewer', true)").fetchone()
        assert before in ((None,), ("",)), f"the last view's setting leaked: {before}"
        conn.execute("SELECT set_config('vt.viewer', %s, false)", (user,))

    view("alice")
    view("bob")  # the same pooled connection (size 1), reset in between
    assert seen[0] == seen[1]
    assert _backends(db, "vt-pool-view") == 1  # kept open for the next view, not one per view


def test_views_share_the_bounded_pool_and_lending_gives_up_after_its_attempts(db: str) -> None:
    dsn = db + " application_name=vt-pool-bound"
    settings = _settings(db_lend_timeout_s=0.2, db_lend_attempts=2)
    holding, release = threading.Event(), threading.Event()

    @dashboard_pool.returns_lent_connections
    def slow_view() -> None:
        dashboard_pool.lent(dsn, settings)
        holding.set()
        release.wait(10)

    other = threading.Thread(target=slow_view)
    other.start()
    assert holding.wait(10)
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):  # psycopg_pool.PoolTimeout, after 2 tries
        dashboard_pool.returns_lent_connections(dashboard_pool.lent)(dsn, settings)
    assert time.monotonic() - started >= 0.4  # two attempts of 0.2 s each
    release.set()
    other.join(10)
    assert _backends(db, "vt-pool-bound") == 1
    # Given back at the end of the other view: this one gets it at once.
    conn = dashboard_pool.returns_lent_connections(
        lambda: dashboard_pool.lent(dsn, settings).execute("SELECT 1").fetchone()
    )()
    assert conn == (1,)


def test_a_connection_lent_outside_a_view_goes_back_when_its_thread_ends(db: str) -> None:
    dsn = db + " application_name=vt-pool-thread"
    settings = _settings(db_lend_timeout_s=2)
    thread = threading.Thread(target=lambda: dashboard_pool.lent(dsn, settings))
    thread.start()
    thread.join(10)
    assert dashboard_pool.returns_lent_connections(
        lambda: dashboard_pool.lent(dsn, settings).execute("SELECT 2").fetchone()
    )() == (2,)
