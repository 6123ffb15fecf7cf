"""Retention, per event kind, on whichever TimescaleDB edition the database has.

The Community edition (the Docker image) runs its own jobs: a retention policy for the
longest-kept kind and compression of older chunks. The Apache edition (Debian's build) has
neither, so the ingester drops old chunks itself. Kinds kept for less time than the longest
are deleted row-wise from the ingester's maintenance loop on both editions.

Plain PostgreSQL (no TimescaleDB; villagetwin/compat/postgres.sql) partitions events by day
declaratively: the ingester keeps partitions a few days ahead, drops whole partitions past
the longest retention (as drop_chunks does) and deletes old rows of the default partition in
batches, each committed on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import psycopg

log = logging.getLogger("vt.ingest.maintenance")


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """Which events to keep how long; pure, so the rules can be tested without a database."""

    default_days: int
    by_kind: dict[str, int]
    dead_letter_days: int

    @property
    def longest(self) -> timedelta:
        """The longest retention of any kind, or the default's when that is longer (whole days)."""
        return timedelta(days=max([self.default_days, *self.by_kind.values()]))

    def shorter_kinds(self) -> dict[str, timedelta]:
        """Kinds whose rows must be deleted before the chunks holding them are dropped."""
        longest = self.longest
        return {
            k: timedelta(days=d) for k, d in self.by_kind.items() if timedelta(days=d) < longest
        }

    def default_is_shorter(self) -> bool:
        """Whether kinds not named in ``by_kind`` are kept less time than the longest-kept kind, so
        their rows must be deleted before whole chunks are dropped."""
        return timedelta(days=self.default_days) < self.longest


def edition(conn: psycopg.Connection) -> str:
    """The TimescaleDB edition, from the ``timescaledb.license`` setting: ``"timescale"``
    (Community), ``"apache"``, or ``"unknown"`` when the setting is absent (no TimescaleDB). Commits
    the connection's transaction. Raises psycopg.Error when the query fails."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    conn.commit()
    return str(row[0]) if row and row[0] else "unknown"


def policy_statements(
    plan: RetentionPlan, compress_after_days: int
) -> list[tuple[str, tuple[object, ...]]]:
    """What the Community edition is asked to run, as (SQL, parameters)."""
    return [
        (
            "ALTER TABLE events SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'device_id',"
            " timescaledb.compress_orderby = 'ts DESC, event_id')",
            (),
        ),
        (
            "SELECT add_compression_policy('events', %s::interval, if_not_exists => true)",
            (timedelta(days=compress_after_days),),
        ),
        (
            "SELECT add_retention_policy('events', %s::interval, if_not_exists => true)",
            (plan.longest,),
        ),
    ]


def install_policies(
    conn: psycopg.Connection, plan: RetentionPlan, compress_after_days: int
) -> None:
    """Community edition only: hand retention and compression to TimescaleDB's own jobs."""
    with conn.transaction():
        for statement, params in policy_statements(plan, compress_after_days):
            conn.execute(statement, params)


def backend(conn: psycopg.Connection) -> str:
    """``timescaledb``, ``postgres`` (the vt_compat partitioning) or ``unknown`` (not migrated)."""
    row = conn.execute(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
        " THEN 'timescaledb' WHEN to_regclass('vt_compat.hypertables') IS NOT NULL"
        " THEN 'postgres' ELSE 'unknown' END"
    ).fetchone()
    conn.commit()
    return str(row[0]) if row else "unknown"


def ensure_partitions(conn: psycopg.Connection, ahead: timedelta) -> list[str]:
    """Plain PostgreSQL: creates the events partitions from a day ago to ``ahead`` from now
    that do not exist yet (rows waiting in the default partition move in); returns their
    names."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT vt_compat.ensure_partitions('events', now() - interval '1 day', now() + %s)",
            (ahead,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def drop_old_partitions(
    conn: psycopg.Connection, older_than: timedelta, batch_rows: int
) -> tuple[int, int]:
    """Plain PostgreSQL: drops partitions wholly older than ``older_than`` and deletes such
    rows from the default partition, ``batch_rows`` per committed transaction. Returns
    (partitions dropped, default-partition rows deleted)."""
    with conn.transaction():
        dropped = conn.execute(
            "SELECT vt_compat.drop_partitions('events', now() - %s::interval)", (older_than,)
        ).fetchall()
    deleted = 0
    while True:
        with conn.transaction():
            row = conn.execute(
                "SELECT vt_compat.delete_before('events', now() - %s::interval, %s)",
                (older_than, batch_rows),
            ).fetchone()
        count = int(row[0]) if row else 0
        deleted += count
        if count < batch_rows:
            return len(dropped), deleted


def run_retention(
    conn: psycopg.Connection,
    plan: RetentionPlan,
    community: bool,
    plain: bool = False,
    batch_rows: int = 10_000,
) -> dict[str, int]:
    """One pass; returns rows or chunks (partitions, on plain PostgreSQL) removed per rule."""
    removed: dict[str, int] = {}
    if plain:
        removed["chunks"], removed["default_partition"] = drop_old_partitions(
            conn, plan.longest, batch_rows
        )
    with conn.transaction():
        if not community and not plain:
            rows = conn.execute(
                "SELECT drop_chunks('events', older_than => now() - %s::interval)", (plan.longest,)
            ).fetchall()
            removed["chunks"] = len(rows)
        for kind, keep in plan.shorter_kinds().items():
            cur = conn.execute(
                "DELETE FROM events WHERE kind = %s AND ts < now() - %s::interval", (kind, keep)
            )
            removed[kind] = cur.rowcount
        if plan.default_is_shorter():
            cur = conn.execute(
                "DELETE FROM events WHERE kind <> ALL(%s) AND ts < now() - %s::interval",
                (list(plan.by_kind), timedelta(days=plan.default_days)),
            )
            removed["default"] = cur.rowcount
        cur = conn.execute(
            "DELETE FROM dead_letters WHERE received_at < now() - %s::interval",
            (timedelta(days=plan.dead_letter_days),),
        )
        removed["dead_letters"] = cur.rowcount
        cur = conn.execute(
            "DELETE FROM building_hourly WHERE hour < now() - %s::interval", (plan.longest,)
        )
        removed["building_hourly"] = cur.rowcount
        cur = conn.execute(
            "DELETE FROM village_hourly WHERE hour < now() - %s::interval", (plan.longest,)
        )
        removed["village_hourly"] = cur.rowcount
    return removed
