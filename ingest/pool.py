"""The ingester's database connections, lent by one psycopg_pool pool per process and DSN.

Each holder (the main thread's reader, each writer) takes one connection and keeps it while it
works: the pool's ``configure`` hook runs ``store.prepare`` on every new connection (the
staging table, the binary JSON dumper), its ``check`` hook tests a connection before lending
it, and a holder gives its connection back closed after a failure, so that the next ``get``
opens a fresh one (``connect_timeout`` 5 s; a failure raises ``psycopg.OperationalError``,
``PoolTimeout`` included). The pool is sized to its holders, so no connection sits idle.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import psycopg
from psycopg_pool import ConnectionPool

from ingest import store

_LOCK = threading.Lock()
_POOLS: dict[str, ConnectionPool[psycopg.Connection]] = {}
_HOLDERS: dict[str, int] = {}
_LEND_TIMEOUT_S = 10.0  # above connect_timeout: a lend waits for one connect attempt


class _GivenBackClosed(logging.Filter):
    """psycopg_pool warns of every closed connection given back; here that is on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("discarding closed connection")


logging.getLogger("psycopg.pool").addFilter(_GivenBackClosed())


def _configure(conn: psycopg.Connection) -> None:
    store.prepare(conn)


def hold(dsn: str) -> ConnectionPool[psycopg.Connection]:
    """The process's pool for ``dsn``, grown by one connection for a new holder."""
    with _LOCK:
        held = _HOLDERS.get(dsn, 0) + 1
        _HOLDERS[dsn] = held
        pool = _POOLS.get(dsn)
        if pool is None or pool.closed:
            pool = ConnectionPool(
                dsn,
                min_size=0,
                max_size=held,
                kwargs={"connect_timeout": 5},
                configure=_configure,
                check=ConnectionPool.check_connection,
                name="vt-ingest",
                open=True,
            )
            _POOLS[dsn] = pool
        else:
            pool.resize(0, held)
        return pool


def lend(pool: ConnectionPool[psycopg.Connection]) -> psycopg.Connection:
    """A working, prepared connection; raises ``psycopg.OperationalError`` when none can be
    opened (``psycopg_pool.PoolTimeout`` is one)."""
    return pool.getconn(timeout=_LEND_TIMEOUT_S)


def give_back_closed(pool: ConnectionPool[psycopg.Connection], conn: psycopg.Connection) -> None:
    """Returns a connection after a failure (or at the holder's end): closed, so the pool
    never lends it again."""
    with contextlib.suppress(psycopg.Error):
        conn.close()
    pool.putconn(conn)


def close_all() -> None:
    """Closes every pool of this process (their idle connections too); the next use opens a
    new one. For a process that is done with its databases (tests drop theirs)."""
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()
