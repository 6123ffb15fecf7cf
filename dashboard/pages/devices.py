"""设备 Devices."""

from __future__ import annotations

import streamlit as st

from dashboard import nav, queries, session, widgets
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
    widgets.plain_map(
        settings, village, layers.devices_layer(layers.device_records(table)), "devices-map"
    )
    st.dataframe(table.drop(columns=["lon", "lat"]), hide_index=True, width="stretch")
