"""事件 Events."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import nav, queries, session, widgets
from dashboard.auth import User
from dashboard.settings import DashboardSettings
from devices import kinds
from mapping import layers

PAGE = nav.Page(title="事件 Events", url_path="events", roles=nav.OFFICE, icon=":material/bolt:")


KINDS = list(kinds.EVENT_TYPES)  # the event types the page filters by (devices/kinds.py)


def render(settings: DashboardSettings, user: User) -> None:
    st.title("事件 · Events")
    conn = session.conn(settings.reader_dsn())
    village = widgets.village(settings.reader_dsn(), session.token())
    cols = st.columns(4)
    hours = cols[0].selectbox("时间 Within", [1, 6, 24, 72, 168], format_func=lambda h: f"{h} h")
    chosen = cols[1].multiselect("类型 Kinds", KINDS, format_func=kinds.label)
    grids = sorted(village["grid_cells"].grid_code) if len(village["grid_cells"]) else []
    grid = cols[2].selectbox("网格 Grid", [None, *grids], format_func=lambda g: g or "— all —")
    building = cols[3].text_input("楼栋 Building code")
    found = queries.events_page(
        conn, timedelta(hours=int(hours or 1)), chosen, grid, building.strip() or None
    )
    st.caption(f"{len(found)} 条事件 events (最新 newest first, at most 2,000)")
    widgets.plain_map(
        settings, village, layers.events_layer(layers.event_records(found)), "events-map"
    )
    st.dataframe(found.drop(columns=["lon", "lat", "elevation"]), hide_index=True, width="stretch")
