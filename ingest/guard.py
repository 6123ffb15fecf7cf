"""What keeps one device, or one stuck writer, from harming ingestion for everyone.

- ``DeadLetterQuota``: a device's dead letters are stored up to a quota per window; beyond it
  they are counted, not stored, and when the window ends one summary dead letter (reason
  ``dead_letter_quota``) says how many were not kept, from when to when and why. So a device
  that floods garbage fills neither the table nor the disk, and the operator still sees it.
  Refusals from senders the registry does not know (bad topics, unknown device ids) share one
  quota, so the state stays bounded by the number of registered devices.
- ``LabelLimit``: label values of a metric that come from device input (an unmapped vendor
  code) are capped; new values beyond the cap are counted under one overflow label.
- ``WriterWatch``: which writer holds a batch since when, and which writers died: the
  ingester's /healthz answers 503 when a batch waits longer than ``stall_after_s`` for its
  commit or a writer is dead.

Pure logic; the ingester calls it from its main thread (the quota) and its writers (the watch).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ingest.validate import Reason, Refusal

UNREGISTERED = "(unregistered)"


@dataclass
class _Window:
    opened: float  # monotonic seconds
    first_at: datetime  # reception time of its first dead letter
    stored: int = 0
    suppressed: int = 0
    suppressed_bytes: int = 0
    last_at: datetime | None = None
    topic: str = ""
    reasons: Counter[str] = field(default_factory=Counter)


OVERFLOW_LABEL = "(other: label limit reached)"


class LabelLimit:
    """At most ``limit`` distinct label values; values seen first keep their own label.

    ``label(value)`` returns ``value`` while it is one of the first ``limit`` distinct values
    seen, else ``OVERFLOW_LABEL``. Not thread-safe (the ingester's main thread calls it)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a label limit must be at least 1, not {limit}")
        self.limit = limit
        self._seen: set[str] = set()

    def label(self, value: str) -> str:
        """``value`` if it has, or may still get, its own series, else ``OVERFLOW_LABEL``."""
        if value in self._seen:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        return OVERFLOW_LABEL


class DeadLetterQuota:
    """At most ``limit`` dead letters stored per sender in each ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._windows: dict[str, _Window] = {}

    def admit(
        self, refusals: Sequence[Refusal], registered: Container[str], now: float
    ) -> tuple[tuple[Refusal, ...], tuple[Refusal, ...]]:
        """Splits ``refusals`` into (those to store, those only counted), per sender (a
        device in ``registered``, else all unregistered senders together); ``now`` in
        monotonic seconds."""
        kept: list[Refusal] = []
        dropped: list[Refusal] = []
        for refusal in refusals:
            device = refusal.device_id
            key = device if device is not None and device in registered else UNREGISTERED
            window = self._windows.get(key)
            if window is None or now - window.opened >= self.window_s:
                if window is not None and window.suppressed:
                    # Not summarised yet (the sweep runs once a second): carry it over.
                    kept.extend(self._summaries([(key, window)]))
                window = self._windows[key] = _Window(now, refusal.received_at)
            if window.stored < self.limit:
                window.stored += 1
                kept.append(refusal)
            else:
                window.suppressed += 1
                window.suppressed_bytes += refusal.payload_size
                window.last_at = refusal.received_at
                window.topic = refusal.topic
                window.reasons[refusal.reason.value] += 1
                dropped.append(refusal)
        return tuple(kept), tuple(dropped)

    def sweep(self, now: float, everything: bool = False) -> list[Refusal]:
        """The summary dead letters of windows that ended (all of them when ``everything``,
        at shutdown); forgets ended windows. ``now`` in monotonic seconds."""
        ended = [
            (key, w)
            for key, w in self._windows.items()
            if everything or now - w.opened >= self.window_s
        ]
        for key, _ in ended:
            del self._windows[key]
        return self._summaries(ended)

    def _summaries(self, ended: Sequence[tuple[str, _Window]]) -> list[Refusal]:
        out = []
        for key, w in ended:
            if not w.suppressed or w.last_at is None:
                continue
            reasons = ", ".join(f"{r} {n}" for r, n in w.reasons.most_common())
            out.append(
                Refusal(
                    received_at=w.last_at,
                    topic=w.topic,
                    device_id=None if key == UNREGISTERED else key,
                    reason=Reason.DEAD_LETTER_QUOTA,
                    detail=(
                        f"{w.suppressed} more dead letters ({w.suppressed_bytes} bytes) from"
                        f" {key} between {w.first_at.isoformat()} and {w.last_at.isoformat()}"
                        f" were counted but not kept: over the quota of {self.limit} per"
                        f" {self.window_s:g} s (VT_INGEST__DEAD_LETTER_QUOTA); by reason:"
                        f" {reasons}"
                    ),
                    payload=b"",
                    payload_size=w.suppressed_bytes,
                )
            )
        return out

    def __len__(self) -> int:
        return len(self._windows)


class WriterWatch:
    """Which writer holds a batch since when (monotonic seconds), and which writers died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[str, float] = {}
        self.dead: list[str] = []

    def busy(self, writer: str, since: float) -> None:
        """``writer`` holds a batch since ``since`` (monotonic seconds)."""
        with self._lock:
            self._busy[writer] = since

    def idle(self, writer: str) -> None:
        """``writer`` holds no batch (committed or handed back); a writer not busy is ignored."""
        with self._lock:
            self._busy.pop(writer, None)

    def died(self, writer: str) -> None:
        """``writer``'s thread ended by an exception: listed in ``dead`` (the health
        check then fails)."""
        with self._lock:
            self.dead.append(writer)

    def longest_wait(self, now: float, handing_off_since: float | None) -> float:
        """Seconds the oldest batch not yet committed has waited for a writer or its commit."""
        with self._lock:
            oldest = min(self._busy.values(), default=None)
        starts = [t for t in (oldest, handing_off_since) if t is not None]
        return now - min(starts) if starts else 0.0
