"""The case workflow (工单) as pure functions: which moves are allowed, where a case is routed,
when it is due. The database edge is rules/case_store.py.

    上报 reported --dispatch--> 分拨 dispatched --handle--> 处置 handled --close--> 办结 closed
                                 ^   (dispatch again: reassign)      |                  |
                                 +---------------- reopen -----------+------------------+

An open case (reported or dispatched) past its deadline escalates to its grid's manager once;
escalation is recorded, not a state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

STATUSES = {
    "reported": "上报 reported",
    "dispatched": "分拨 dispatched",
    "handled": "处置 handled",
    "closed": "办结 closed",
}
MOVES: dict[tuple[str, str], str] = {
    ("reported", "dispatch"): "dispatched",
    ("dispatched", "dispatch"): "dispatched",
    ("dispatched", "handle"): "handled",
    ("handled", "close"): "closed",
    ("handled", "reopen"): "dispatched",
    ("closed", "reopen"): "dispatched",
}
CATEGORIES = {
    "fire_hazard": "消防隐患 fire hazard",
    "ebike_charging": "电动车充电 e-bike charging",
    "security": "治安 security",
    "sanitation": "环境卫生 sanitation",
    "noise": "噪音 noise",
    "occupancy": "出租屋管理 rental housing",
    "care": "关爱探访 care visit",
    "facility": "设施设备 facilities",
    "other": "其他 other",
}
# The category of a case made from an alert of each rule.
CATEGORY_OF_RULE = {
    "smoke_fire": "fire_hazard",
    "ebike_indoor": "ebike_charging",
    "door_forced": "security",
    "door_held_open": "security",
    "gate_tailgating": "security",
    "crowding": "security",
    "care_inactive": "care",
    "occupancy": "occupancy",
    "unregistered_occupancy": "occupancy",
    "never_seen": "occupancy",
    "after_tenancy": "occupancy",
    "device_offline": "facility",
}


class CaseError(ValueError):
    """A move the workflow does not allow, with the reason."""


def next_status(status: str, action: str, *, assignee: str | None = None, note: str = "") -> str:
    """The status after ``action``; raises CaseError naming why a move is refused (unknown
    move, dispatch without an assignee, handle or reopen without a note)."""
    target = MOVES.get((status, action))
    if target is None:
        allowed = sorted(a for (s, a) in MOVES if s == status)
        raise CaseError(
            f"a {status} case cannot take {action!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    if action == "dispatch" and not (assignee or "").strip():
        raise CaseError("dispatch needs a grid worker to dispatch to")
    if action in ("handle", "reopen") and len(note.strip()) < 2:
        raise CaseError(f"{action} needs a note (what was done, or why it is reopened)")
    return target


@dataclass(frozen=True, slots=True)
class Staff:
    grid_code: str
    username: str
    duty: str  # worker or manager
    categories: tuple[str, ...] = ()


def route(
    grid_code: str | None, category: str, staff: Sequence[Staff]
) -> tuple[str | None, str | None]:
    """(grid worker, grid manager) for a case: the grid's worker who covers the category
    (one listing it before one covering every category, then by name); None where the grid
    has nobody."""
    mine = [s for s in staff if s.grid_code == grid_code]
    workers = sorted(
        (s for s in mine if s.duty == "worker" and (not s.categories or category in s.categories)),
        key=lambda s: (not s.categories, s.username),
    )
    managers = sorted(s.username for s in mine if s.duty == "manager")
    return (workers[0].username if workers else None, managers[0] if managers else None)


def due_at(reported_at: datetime, priority: str, deadline_hours: Mapping[str, float]) -> datetime:
    """When a case of ``priority`` must be handled (VT_CASES__DEADLINE_HOURS)."""
    return reported_at + timedelta(hours=deadline_hours[priority])


def is_overdue(status: str, due: datetime, escalated: bool, now: datetime) -> bool:
    return status in ("reported", "dispatched") and not escalated and now > due
