"""The device table as the devices page shows it, pure: offline devices first (longest offline
at the top), then never heard from, then online; each with its state and how long it has been
offline in words ("离线 3 小时"); a filter by state."""

from __future__ import annotations

from datetime import datetime, tzinfo

import pandas as pd

STATES = {False: "离线 offline", None: "未上报 silent", True: "在线 online"}
FILTERS = {
    "all": "全部 all",
    "offline": "仅离线 offline only",
    "silent": "仅未上报 silent only",
    "online": "仅在线 online only",
}


def offline_for(seconds: float) -> str:
    """How long a device has been offline, in whole units, Chinese first:
    ``离线 3 小时 (3 h)``; under a minute ``离线 不到 1 分钟 (< 1 min)``; from two days on,
    days and hours. Raises ValueError for a negative or non-finite duration."""
    if not (seconds >= 0 and seconds != float("inf")):
        raise ValueError(f"offline for {seconds!r} seconds: expected a duration ≥ 0")
    minutes = int(seconds // 60)
    if minutes < 1:
        return "离线 不到 1 分钟 (< 1 min)"
    if minutes < 60:
        return f"离线 {minutes} 分钟 ({minutes} min)"
    hours = minutes // 60
    if hours < 48:
        return f"离线 {hours} 小时 ({hours} h)"
    days, rest = divmod(hours, 24)
    return f"离线 {days} 天 {rest} 小时 ({days} d {rest} h)"


def _state(online: object) -> bool | None:
    return None if online is None or pd.isna(online) else bool(online)  # type: ignore[call-overload]


def _local(ts: object, zone: tzinfo | None) -> str:
    """A time as ``2026-11-30 04:02`` in ``zone``; "—" for none."""
    if ts is None or pd.isna(ts) or not isinstance(ts, datetime):  # type: ignore[call-overload]
        return "—"
    moment: datetime = ts.astimezone(zone) if zone is not None and ts.tzinfo else ts
    return moment.strftime("%Y-%m-%d %H:%M")


def device_table(
    devices: pd.DataFrame, now: datetime, show: str = "all", zone: tzinfo | None = None
) -> pd.DataFrame:
    """``devices`` (the devices page's query: device_id, kind, building_id, grid_code, online,
    status_changed_at, last_seen …) ordered offline first, longest offline at the top, then
    never heard from, then online by id; with ``state`` (STATES) and ``offline_for``
    (:func:`offline_for` since ``status_changed_at``, or since ``last_seen`` when the change
    was not recorded; empty for devices that are not offline). ``show`` is a FILTERS key.
    ``now`` must be timezone-aware, as the database's times are. ``last_seen`` becomes text in
    ``zone`` (``2026-11-30 04:02``) and an empty ``last_event`` "—". Raises ValueError for an
    unknown filter."""
    if show not in FILTERS:
        raise ValueError(f"device filter {show!r}: expected one of {', '.join(FILTERS)}")
    table = devices.copy()
    states = [_state(v) for v in table.online]
    table["state"] = [STATES[s] for s in states]
    since = [
        changed if changed is not None and not pd.isna(changed) else seen
        for changed, seen in zip(table.status_changed_at, table.last_seen, strict=True)
    ]
    table["offline_for"] = [
        offline_for(max(0.0, (now - s).total_seconds()))
        if state is False and s is not None and not pd.isna(s)
        else ("离线 offline" if state is False else "")
        for state, s in zip(states, since, strict=True)
    ]
    table["_rank"] = [{False: 0, None: 1, True: 2}[s] for s in states]
    table["_since"] = [
        (s.timestamp() if state is False and s is not None and not pd.isna(s) else float("inf"))
        for state, s in zip(states, since, strict=True)
    ]
    table = table.sort_values(["_rank", "_since", "device_id"], kind="stable")
    if "last_seen" in table:
        table["last_seen"] = [_local(v, zone) for v in table.last_seen]
    if "last_event" in table:
        table["last_event"] = [v if isinstance(v, str) and v else "—" for v in table.last_event]
    wanted = {"all": None, "offline": 0, "silent": 1, "online": 2}[show]
    if wanted is not None:
        table = table[table["_rank"] == wanted]
    return table.drop(columns=["_rank", "_since"]).reset_index(drop=True)
