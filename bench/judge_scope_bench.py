"""judge() with and without the unit-scope check (issue 12), side by side in one run.

    .venv/bin/python bench/judge_scope_bench.py

Baseline: the same door-reader events judged against a registry whose devices carry no unit
scope (``units=None``: the check is skipped), against one whose devices carry their building's
units and a village of 3,000 units. Prints events/s of each over alternating rounds, and the
ratio; the check is one dict lookup and one frozenset membership test per event. Times
are this process's CPU time (the machine is shared).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devices.payloads import AccessUnlock, DeviceKind, encode  # noqa: E402
from devices.topics import event_topic  # noqa: E402
from ingest.validate import KnownDevice, Limits, Received, judge  # noqa: E402

EVENTS = 20_000
ROUNDS = 7


def main() -> None:
    now = datetime.now(UTC)
    village = frozenset(f"LH{b:05d}-{r}" for b in range(300) for r in range(101, 111))
    devices = [f"acc-{b:03d}" for b in range(100)]
    plain = {d: KnownDevice(d, DeviceKind.ACCESS, f"LH{i:05d}") for i, d in enumerate(devices)}
    scoped = {
        d: KnownDevice(
            d,
            DeviceKind.ACCESS,
            f"LH{i:05d}",
            units=frozenset(u for u in village if u.startswith(f"LH{i:05d}-")),
        )
        for i, d in enumerate(devices)
    }
    messages = []
    for n in range(EVENTS):
        i = n % len(devices)
        event = AccessUnlock(
            id=uuid.uuid4(), device=devices[i], seq=n, ts=now, door="unit",
            unit=f"LH{i:05d}-{101 + n % 10}", method="card", credential="cred:01", granted=True,
        )  # fmt: skip
        messages.append(Received(event_topic(devices[i]), encode(event), now))
    limits = Limits()
    best = {"without scope": 0.0, "with scope": 0.0}
    for _ in range(ROUNDS):
        for name, registry in (("without scope", plain), ("with scope", scoped)):
            started = time.process_time()
            stored = sum(len(judge(m, registry, limits).events) for m in messages)
            rate = EVENTS / (time.process_time() - started)
            assert stored == EVENTS, (name, stored)
            best[name] = max(best[name], rate)
    for name, rate in best.items():
        print(f"{name:>14}: {rate:>9,.0f} events/s (best of {ROUNDS})")
    print(f"{'ratio':>14}: {best['with scope'] / best['without scope']:.3f}")
    print(json.dumps({k: round(v) for k, v in best.items()}))


if __name__ == "__main__":
    main()
