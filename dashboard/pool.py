"""The dashboard's database connections: one psycopg_pool pool per process and DSN, and a
connection lent for one script run (one page view of one browser session), given back when
the run ends.

Before this, all browser sessions shared one process-wide connection and each signed-in session
opened its own that was never closed. Now ``lent(dsn)`` hands the current run the same
connection however often it asks; ``returns_lent_connections`` (on ``app.main``) gives them
back at the end of the run, where the pool's ``reset`` runs ``DISCARD ALL``, so that nothing
one session set on a connection (a role, a setting, a prepared statement) reaches the next.
Outside such a run (a test calling a page function directly) the connection is given back
when the thread ends. Lending is retried with tenacity: ``settings.db_lend_attempts``
attempts, jittered exponential waits (a database restarting behind a page view); after that,
and a pool with no connection yet first tries one directly, so that an unreachable database
is reported at once with the server's own reason;
``psycopg.OperationalError`` is raised (``PoolTimeout`` is one).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg
from psycopg_pool import ConnectionPool
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from dashboard.settings import DashboardSettings

P = ParamSpec("P")
R = TypeVar("R")

_LOCK = threading.Lock()
_POOLS: dict[str, ConnectionPool[psycopg.Connection]] = {}
_RUN = threading.local()  # .lent: {dsn: connection} for the script run on this thread


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("DISCARD ALL")


def pool_for(dsn: str, settings: DashboardSettings) -> ConnectionPool[psycopg.Connection]:
    """The process's pool for ``dsn`` (autocommit connections, checked before lending)."""
    with _LOCK:
        pool = _POOLS.get(dsn)
        if pool is None or pool.closed:
            pool = ConnectionPool(
                dsn,
                min_size=0,
                max_size=settings.db_pool_size,
                # No server-side prepared statements: a lent connection is reset with
                # DISCARD ALL, and the dashboard's queries are few and varied.
                kwargs={"autocommit": True, "connect_timeout": 5, "prepare_threshold": None},
                check=ConnectionPool.check_connection,
                reset=_reset,
                max_idle=settings.db_pool_idle_s,
                timeout=settings.db_lend_timeout_s,
                name="vt-dashboard",
                open=True,
            )
            _POOLS[dsn] = pool
        return pool


class _Lent:
    """The connections one run (or one thread, outside a run) holds; given back on close."""

    def __init__(self) -> None:
        self.connections: dict[str, tuple[ConnectionPool[psycopg.Connection], psycopg.Connection]]
        self.connections = {}

    def close(self) -> None:
        for pool, conn in self.connections.values():
            pool.putconn(conn)
        self.connections = {}

    def __del__(self) -> None:  # a thread's local storage is dropped when the thread ends
        self.close()


def lent(dsn: str, settings: DashboardSettings | None = None) -> psycopg.Connection:
    """This run's connection to ``dsn``, lent from the pool on first use. A broken or closed
    one is given back and replaced."""
    settings = settings or DashboardSettings()
    holder: _Lent | None = getattr(_RUN, "lent", None)
    if holder is None:
        holder = _RUN.lent = _Lent()
    pool = pool_for(dsn, settings)
    held = holder.connections.get(dsn)
    if held is not None:
        if not (held[1].closed or held[1].broken):
            return held[1]
        held[0].putconn(held[1])  # the pool discards a closed or broken connection
        del holder.connections[dsn]
    conn = _lend(pool, settings.db_lend_attempts)
    holder.connections[dsn] = (pool, conn)
    return conn


def _lend(pool: ConnectionPool[psycopg.Connection], attempts: int) -> psycopg.Connection:
    if pool.get_stats().get("pool_size", 0) == 0:
        # No connection yet (or all closed while idle): a database that cannot be reached is
        # reported at once, with the server's own reason, not after the pool's timeouts.
        conninfo = pool.conninfo() if callable(pool.conninfo) else pool.conninfo
        with psycopg.connect(conninfo, connect_timeout=5):
            pass

    @retry(
        retry=retry_if_exception_type(psycopg.OperationalError),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def attempt() -> psycopg.Connection:
        return pool.getconn()

    return attempt()


def returns_lent_connections(run: Callable[P, R]) -> Callable[P, R]:
    """Wraps a script run: what it borrowed through ``lent`` goes back to the pool at its end,
    even when it stops early (``st.stop``, ``st.rerun`` raise)."""

    @functools.wraps(run)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        outer: _Lent | None = getattr(_RUN, "lent", None)
        _RUN.lent = _Lent()
        try:
            return run(*args, **kwargs)
        finally:
            _RUN.lent.close()
            _RUN.lent = outer

    return wrapper


def close_all() -> None:
    """Closes every pool of this process (their idle connections too); the next use opens a
    new one. For a process that is done with its databases (tests drop theirs)."""
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()
