"""Gathering judged messages into batches that flush on size or on age."""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.validate import (
    ConfigUpdate,
    EventRow,
    Liveness,
    Received,
    Refusal,
    Retraction,
    StatusChange,
    Verdict,
)


@dataclass(frozen=True, slots=True)
class Batch:
    messages: tuple[Received, ...]
    events: tuple[EventRow, ...]
    refusals: tuple[Refusal, ...]
    statuses: tuple[StatusChange, ...]
    configs: tuple[ConfigUpdate, ...] = ()
    tracked: tuple[EventRow, ...] = ()  # detections kept current (bridged)
    sightings: tuple[Liveness, ...] = ()  # vendor heartbeats and status (bridged)
    retracted: tuple[Retraction, ...] = ()  # bridged detections withdrawn (false positives)


@dataclass
class Batcher:
    """Holds what is received until the batch is big enough or old enough to commit.

    Size counts rows (events, refusals, status changes), not messages, since a gateway's
    single message can hold a thousand events.
    """

    max_rows: int
    max_wait_s: float
    _messages: list[Received] = field(default_factory=list)
    _events: list[EventRow] = field(default_factory=list)
    _refusals: list[Refusal] = field(default_factory=list)
    _statuses: list[StatusChange] = field(default_factory=list)
    _configs: list[ConfigUpdate] = field(default_factory=list)
    _tracked: list[EventRow] = field(default_factory=list)
    _sightings: list[Liveness] = field(default_factory=list)
    _retracted: list[Retraction] = field(default_factory=list)
    _opened_at: float | None = None

    def add(self, message: Received, verdict: Verdict, now: float) -> None:
        """Adds one received message and what the judge made of it (its events, refusals, status,
        config, tracked detections, sightings, retractions) to the open batch; ``now`` (monotonic
        seconds) opens the batch's age clock if it is the first."""
        if self._opened_at is None:
            self._opened_at = now
        self._messages.append(message)
        self._events.extend(verdict.events)
        self._refusals.extend(verdict.refusals)
        if verdict.status is not None:
            self._statuses.append(verdict.status)
        if verdict.config is not None:
            self._configs.append(verdict.config)
        if verdict.tracked:
            self._tracked.extend(verdict.tracked)
        if verdict.sightings:
            self._sightings.extend(verdict.sightings)
        if verdict.retracted:
            self._retracted.extend(verdict.retracted)

    def add_refusals(self, refusals: list[Refusal], now: float) -> None:
        """Dead letters that no received message carries (the quota's summaries)."""
        if self._opened_at is None:
            self._opened_at = now
        self._refusals.extend(refusals)

    @property
    def rows(self) -> int:
        """Rows the open batch would write: events, refusals, status changes, configs, tracked
        detections, sightings and retractions together (messages are not counted)."""
        return (
            len(self._events)
            + len(self._refusals)
            + len(self._statuses)
            + len(self._configs)
            + len(self._tracked)
            + len(self._sightings)
            + len(self._retracted)
        )

    def __len__(self) -> int:
        return len(self._messages)

    def due(self, now: float) -> bool:
        """Whether the open batch should be committed at ``now`` (monotonic seconds): it holds
        ``max_rows`` rows or more, or it opened ``max_wait_s`` seconds ago or earlier. False when
        nothing is open."""
        if self._opened_at is None:
            return False
        return self.rows >= self.max_rows or now - self._opened_at >= self.max_wait_s

    def seconds_until_due(self, now: float) -> float | None:
        """Seconds from ``now`` (monotonic) until the open batch is due by age, at least 0; None
        when nothing is open."""
        if self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self.max_wait_s - now)

    def take(self) -> Batch:
        """The open batch, as immutable tuples in arrival order, and a fresh empty one started (its
        age clock stops until the next ``add``). An empty batch when nothing was added."""
        batch = Batch(
            tuple(self._messages),
            tuple(self._events),
            tuple(self._refusals),
            tuple(self._statuses),
            tuple(self._configs),
            tuple(self._tracked),
            tuple(self._sightings),
            tuple(self._retracted),
        )
        self._retracted.clear()
        self._tracked.clear()
        self._sightings.clear()
        self._messages.clear()
        self._events.clear()
        self._refusals.clear()
        self._statuses.clear()
        self._configs.clear()
        self._opened_at = None
        return batch
