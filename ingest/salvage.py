"""When the database refuses a batch for what is in it, not for being down: find the rows it
refuses by bisecting the batch, dead-letter them with the database's message, store the rest.

The judge (ingest/validate.py) refuses what PostgreSQL cannot store; this is the belt to its
braces, for whatever it misses (a bug, a constraint added to the database that the judge does
not know). Which failures are outages and which are data is decided by ``is_outage``.

A ``Salvage`` keeps what is left to do between attempts: when the database goes down halfway,
the writer retries it as it retries any batch, and the pieces already committed are not
stored again. A dead letter that cannot itself be stored, even without its payload, means the
database (not the data) is broken: that is raised as an outage, so nothing is dropped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from ingest import store
from ingest.batching import Batch
from ingest.validate import (
    ConfigUpdate,
    EventRow,
    Liveness,
    Reason,
    Received,
    Refusal,
    Retraction,
    StatusChange,
    storable_text,
)

log = logging.getLogger("vt.ingest")
Item = EventRow | Refusal | StatusChange | ConfigUpdate | Liveness | Retraction


@dataclass(frozen=True)
class _Tracked:
    """A detection kept current (``Batch.tracked``): upserted, not inserted, so kept apart."""

    row: EventRow


# SQLSTATE classes no single row can cause: invalid transaction state (a read-only replica),
# authorisation, syntax or access rule (a missing table or privilege).
_SYSTEMIC_CLASSES = frozenset({"25", "28", "42"})


class UnstorableDeadLetter(psycopg.OperationalError):
    """Even a dead letter without its payload could not be stored: the database is broken,
    so the batch waits like in an outage."""


def is_conflict(exc: BaseException) -> bool:
    """A deadlock or serialisation failure: the batch was rolled back whole; retry it."""
    return isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)


def is_outage(exc: BaseException) -> bool:
    """True for a connection or server outage (retry the batch later, acknowledge nothing);
    False for a data error (SQLSTATE classes 22 and 23, program limits (54), and any exception
    that is not a psycopg ``OperationalError``, like an ``OverflowError`` while encoding)."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, psycopg.OperationalError):
        return not sqlstate.startswith("54")
    if isinstance(exc, psycopg.InterfaceError):
        return True
    return sqlstate[:2] in _SYSTEMIC_CLASSES


def describe(exc: BaseException) -> str:
    """The database's message (with its SQLSTATE) or the exception's text, storable."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    sqlstate = getattr(exc, "sqlstate", None)
    text = f"{sqlstate}: {primary}" if primary else f"{type(exc).__name__}: {exc}"
    return storable_text(text)[:1000]


def describe_for_log(exc: BaseException) -> str:
    """What a log may say of a data error: its SQLSTATE, class and constraint, never the
    database's message, which can quote the value (``invalid input syntax …: "…"``)."""
    constraint = getattr(getattr(exc, "diag", None), "constraint_name", None)
    sqlstate = getattr(exc, "sqlstate", None)
    parts = [p for p in (sqlstate, type(exc).__name__) if p]
    if constraint:
        parts.append(f"constraint {constraint}")
    return " ".join(parts)


@dataclass
class _Todo:
    items: list[Item | _Tracked]
    cause: str | None = None  # set: one item the database refused, to dead-letter


class Salvage:
    """What is left of a batch the database refused as a whole. ``run`` stores every piece it
    can and dead-letters the rows it cannot; it raises on an outage or a conflict, and is then
    run again (by the writer's retry loop) from where it stopped."""

    def __init__(self, batch: Batch, cause: BaseException, max_payload_bytes: int) -> None:
        self._messages = batch.messages
        self._max_payload = max_payload_bytes
        items: list[Item | _Tracked] = [
            *batch.events,
            *(_Tracked(row) for row in batch.tracked),
            *batch.refusals,
            *batch.statuses,
            *batch.configs,
            *batch.sightings,
            *batch.retracted,
        ]
        self._todo: list[_Todo] = []
        self._push_failed(items, describe(cause))
        self.inserted = 0
        self.duplicates = 0
        self.dead_letters = 0
        self.unstorable: list[Refusal] = []  # dead letters written here, for the metrics
        self.attempts = 0

    def _push_failed(self, items: list[Item | _Tracked], cause: str) -> None:
        if len(items) == 1:
            self._todo.append(_Todo(items, cause))
        else:
            middle = len(items) // 2
            self._todo.append(_Todo(items[middle:]))
            self._todo.append(_Todo(items[:middle]))

    def run(self, conn: psycopg.Connection) -> store.StoreResult:
        """Stores what is left to salvage on ``conn``, halving a refused group until each refused
        row is alone, then dead-lettering it with the database's reason; returns the totals so far
        (events inserted, duplicates, dead letters). Each piece is written in its own transaction
        (``store.store``).

        Raises the database's exception when it is an outage or a conflict (``is_outage``,
        ``is_conflict``); calling ``run`` again resumes from the piece that failed."""
        while self._todo:
            todo = self._todo[-1]
            self.attempts += 1
            if todo.cause is not None:
                self._dead_letter(conn, todo.items[0], todo.cause)
                self._todo.pop()
                continue
            try:
                result = _store_items(conn, todo.items)
            except Exception as exc:
                if is_outage(exc) or is_conflict(exc):
                    raise
                self._todo.pop()
                self._push_failed(todo.items, describe(exc))
                continue
            self._todo.pop()
            self.inserted += result.inserted
            self.duplicates += result.duplicates
            self.dead_letters += result.dead_letters
        return store.StoreResult(self.inserted, self.duplicates, self.dead_letters)

    def _dead_letter(self, conn: psycopg.Connection, item: Item | _Tracked, cause: str) -> None:
        letter = self._letter(item, cause)
        try:
            store.store(conn, (), (letter,))
        except Exception as exc:
            if is_outage(exc) or is_conflict(exc):
                raise
            bare = Refusal(
                letter.received_at,
                storable_text(letter.topic),
                letter.device_id and storable_text(letter.device_id),
                Reason.UNSTORABLE_ROW,
                storable_text(f"{letter.detail} (its payload could not be kept: {describe(exc)})"),
                b"",
                letter.payload_size,
            )
            try:
                store.store(conn, (), (bare,))
            except Exception as again:
                if is_outage(again) or is_conflict(again):
                    raise
                raise UnstorableDeadLetter(
                    f"a dead letter without payload was refused: {describe(again)}"
                ) from again
            letter = bare
        log.warning(
            "the database refused a row on %s: dead-lettered as unstorable_row (%d bytes)",
            letter.topic,
            letter.payload_size,
        )
        self.dead_letters += 1
        self.unstorable.append(letter)

    def _topic(self, device_id: str | None, channel: str) -> tuple[str, Received | None]:
        for message in self._messages:
            parts = message.topic.split("/")
            if device_id in parts:
                return message.topic, message
        return f"vt/v1/{device_id}/{channel}", None

    def _letter(self, item: Item | _Tracked, cause: str) -> Refusal:
        """The dead letter for one row the database refused; the detail says why."""
        if isinstance(item, _Tracked):
            item = item.row
        if isinstance(item, Refusal):
            return Refusal(
                item.received_at,
                item.topic,
                item.device_id,
                item.reason,
                f"{item.detail} (stored as a dead letter after: {cause})",
                item.payload,
                item.payload_size,
            )
        if isinstance(item, EventRow):
            topic, message = self._topic(item.device_id, "event")
            raw = item.payload.encode("utf-8", "surrogatepass")
            received_at, device_id = item.received_at, item.device_id
        else:
            channel = "config" if isinstance(item, ConfigUpdate) else "status"
            topic, message = self._topic(item.device_id, channel)
            body = {k: str(v) for k, v in dataclasses.asdict(item).items()}
            raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
            when = item.ts if isinstance(item, Retraction) else item.at
            received_at = message.received_at if message is not None else when
            device_id = item.device_id
        return Refusal(
            received_at,
            topic,
            device_id,
            Reason.UNSTORABLE_ROW,
            f"the database refused the row: {cause}",
            raw[: self._max_payload],
            len(raw),
        )


def _store_items(conn: psycopg.Connection, items: Sequence[Item | _Tracked]) -> store.StoreResult:
    events = [i for i in items if isinstance(i, EventRow)]
    refusals = [i for i in items if isinstance(i, Refusal)]
    statuses = [i for i in items if isinstance(i, StatusChange)]
    configs = [i for i in items if isinstance(i, ConfigUpdate)]
    tracked = [i.row for i in items if isinstance(i, _Tracked)]
    sightings = [i for i in items if isinstance(i, Liveness)]
    retracted = [i for i in items if isinstance(i, Retraction)]
    return store.store(
        conn, events, refusals, statuses, configs, tracked=tracked, sightings=sightings,
        retracted=retracted,
    )  # fmt: skip
