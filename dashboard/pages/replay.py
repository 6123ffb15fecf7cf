"""回放 Replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard import fmt, nav, queries, session, widgets
from dashboard.auth import User
from dashboard.settings import DashboardSettings
from mapping import layers

PAGE = nav.Page(title="回放 Replay", url_path="replay", roles=nav.OFFICE, icon=":material/history:")


def render(settings: DashboardSettings, user: User) -> None:
    st.title("回放 · Replay a day")
    conn = session.conn(settings.reader_dsn())
    village = widgets.village(settings.reader_dsn(), session.token())
    today = fmt.local_today(datetime.now(UTC), settings.time_zone)
    days = list(range(0, 14))
    days_ago = st.selectbox(
        "日期 Day", days, index=widgets.url_index("day", [str(d) for d in days]) or 0,
        format_func=lambda d: (today - timedelta(days=d)).isoformat(),
    )  # fmt: skip
    widgets.to_url("day", str(days_ago) if days_ago else None)
    day = queries.replay_hours(conn, int(days_ago or 0))
    if day.empty:
        st.info("这一天没有事件 No events on that day.")
        return
    local = {int(h.hour): h for h in pd.to_datetime(day.hour).dt.tz_convert(settings.time_zone)}
    hour = st.select_slider(
        f"时刻 Hour (当地时间 local time, {settings.time_zone})",
        options=sorted(local),
        value=min(local),
        format_func=lambda h: f"{h:02d}:00",
    )
    values = queries.replay_hour(conn, local[hour].to_pydatetime())
    states = queries.device_states_at(conn, int(days_ago or 0), int(hour))
    buildings = village["buildings"]
    view = layers.view_of(buildings)
    heights = dict(zip(buildings.building_id, buildings.height_m, strict=True))
    drawn = [
        layers.buildings_layer(
            layers.building_records(buildings, values, scale=layers.SCALES["events"])
        ),
        *layers.grid_layers(layers.grid_records(village["grid_cells"]), zoom=view.zoom),
        layers.devices_layer(layers.device_records(states, heights)),
    ]
    cols = st.columns(2)
    cols[0].metric(f"{hour:02d}:00–{hour:02d}:59 事件 events", int(sum(values.values())))
    cols[1].metric("离线设备 Devices offline", int((states.online == False).sum()))  # noqa: E712
    st.pydeck_chart(layers.deck(drawn, view, settings.base_map_url), height=560, key="replay-map")
    widgets.legend([*layers.SCALES["events"].legend(), *layers.device_legend()])
