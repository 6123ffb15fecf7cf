"""Retention, per event kind, on whichever TimescaleDB edition the database has.

The Community edition (the Docker image) runs its own jobs: a retention policy for the
longest-kept kind and compression of older chunks. The Apache edition (Debian's build) has
neither, so the ingester drops old chunks itself. Kinds kept for less time than the longest
are deleted row-wise from the ingester's maintenance loop on both editions.
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
        return timedelta(days=max([self.default_days, *self.by_kind.values()]))

    def shorter_kinds(self) -> dict[str, timedelta]:
        """Kinds whose rows must be deleted before the chunks holding them are dropped."""
        longest = self.longest
        return {
            k: timedelta(days=d) for k, d in self.by_kind.items() if timedelta(days=d) < longest
        }

    def default_is_shorter(self) -> bool:
        return timedelta(days=self.default_days) < self.longest


def edition(conn: psycopg.Connection) -> str:
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


def run_retention(conn: psycopg.Connection, plan: RetentionPlan, community: bool) -> dict[str, int]:
    """One pass; returns rows or chunks removed per rule."""
    removed: dict[str, int] = {}
    with conn.transaction():
        if not community:
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
