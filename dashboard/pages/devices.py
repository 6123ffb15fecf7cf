"""设备 Devices."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dashboard import device_table, nav, queries, session, widgets
from dashboard.auth import User
from dashboard.settings import DashboardSettings
from mapping import layers

PAGE = nav.Page(
    title="设备 Devices", url_path="devices", roles=nav.OFFICE, icon=":material/sensors:"
)


def render(settings: DashboardSettings, user: User) -> None:
    st.title("设备 · Devices")
    conn = session.conn(settings.reader_dsn())
    village = widgets.village(settings.reader_dsn(), session.token())
    table = queries.devices_page(conn)
    cols = st.columns(3)
    cols[0].metric("在线 Online", int((table.online == True).sum()))  # noqa: E712
    cols[1].metric("离线 Offline", int((table.online == False).sum()))  # noqa: E712
    cols[2].metric("死信 Devices with dead letters (24 h)", int((table.dead_letters_24h > 0).sum()))
    buildings = village["buildings"]
    heights = dict(zip(buildings.building_id, buildings.height_m, strict=True))
    widgets.plain_map(
        settings, village, layers.devices_layer(layers.device_records(table, heights)),
        "devices-map",
    )  # fmt: skip
    widgets.legend(layers.device_legend())
    show = st.radio(
        "显示 Show", list(device_table.FILTERS), format_func=device_table.FILTERS.__getitem__,
        horizontal=True, key="device-filter",
    )  # fmt: skip
    shown = device_table.device_table(table, datetime.now(UTC), str(show or "all"), settings.zone())
    st.caption(f"{len(shown)} 台设备 devices · 离线在前 offline first, longest offline on top")
    st.dataframe(
        shown[["device_id", "state", "offline_for", "kind", "building_id", "grid_code",
               "last_seen", "last_event", "dead_letters_24h"]],
        hide_index=True, width="stretch",
        column_config={
            "device_id": "设备 Device", "state": "状态 State",
            "offline_for": "离线时长 Offline for", "kind": "类型 Kind",
            "building_id": "楼栋 Building", "grid_code": "网格 Grid",
            "last_seen": "最后上报 Last seen", "last_event": "最后事件 Last event",
            "dead_letters_24h": "死信 Dead letters (24 h)",
        },
    )  # fmt: skip
