"""The devices page's table, pure: offline first with the time offline, and a filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from dashboard.device_table import device_table, offline_for
from mapping.layers import picked_building

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def devices() -> pd.DataFrame:
    return pd.DataFrame({
        "device_id": ["a-on", "b-off-1h", "c-never", "d-off-3h", "e-off-noted"],
        "kind": ["gate", "access", "camera", "access", "smoke"],
        "online": [True, False, None, False, False],
        "status_changed_at": [NOW - timedelta(days=3), NOW - timedelta(minutes=61), None,
                              NOW - timedelta(hours=3, minutes=5), None],
        "last_seen": [NOW, NOW - timedelta(minutes=61), None, NOW - timedelta(hours=3), None],
    })  # fmt: skip


def test_offline_devices_come_first_longest_offline_on_top() -> None:
    table = device_table(devices(), NOW)
    assert list(table.device_id) == ["d-off-3h", "b-off-1h", "e-off-noted", "c-never", "a-on"]
    assert list(table.offline_for) == [
        "离线 3 小时 (3 h)",
        "离线 1 小时 (1 h)",
        "离线 offline",
        "",
        "",
    ]
    assert list(table.state[:3]) == ["离线 offline"] * 3 and table.state.iloc[-1] == "在线 online"


def test_times_are_local_and_nothing_shows_none() -> None:
    frame = devices().assign(last_event=["gate.pass", None, None, "access.unlock", ""])
    table = device_table(frame, NOW, zone=ZoneInfo("Asia/Shanghai"))
    assert list(table.last_seen) == [
        "2026-11-30 09:00",
        "2026-11-30 10:59",
        "—",
        "—",
        "2026-11-30 12:00",
    ]
    assert list(table.last_event) == ["access.unlock", "—", "—", "—", "gate.pass"]


def test_the_filter_keeps_one_state() -> None:
    assert list(device_table(devices(), NOW, "offline").device_id) == [
        "d-off-3h",
        "b-off-1h",
        "e-off-noted",
    ]
    assert list(device_table(devices(), NOW, "silent").device_id) == ["c-never"]
    assert list(device_table(devices(), NOW, "online").device_id) == ["a-on"]
    with pytest.raises(ValueError, match="device filter"):
        device_table(devices(), NOW, "broken")


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "离线 不到 1 分钟 (< 1 min)"), (59, "离线 不到 1 分钟 (< 1 min)"),
    (60, "离线 1 分钟 (1 min)"), (3599, "离线 59 分钟 (59 min)"), (3600, "离线 1 小时 (1 h)"),
    (47 * 3600 + 3599, "离线 47 小时 (47 h)"), (50 * 3600, "离线 2 天 2 小时 (2 d 2 h)"),
])  # fmt: skip
def test_time_offline_in_words(seconds: float, text: str) -> None:
    assert offline_for(seconds) == text


def test_a_negative_duration_is_refused() -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="duration"):
            offline_for(bad)


def test_a_click_on_a_building_picks_it() -> None:
    clicked = {"indices": {"buildings": [4]},
               "objects": {"buildings": [{"building_id": "LH00150", "tip": "…"}]}}  # fmt: skip
    assert picked_building(clicked) == "LH00150"
    assert picked_building({"indices": {}, "objects": {}}) is None
    assert picked_building({"objects": {"devices": [{"device_id": "gate-1"}]}}) is None
    assert picked_building(None) is None
