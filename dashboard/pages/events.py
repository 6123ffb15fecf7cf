"""事件 Events."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import fmt, nav, queries, session, widgets
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
    spans = [1, 6, 24, 72, 168]
    hours = cols[0].selectbox(
        "时间 Within", spans, index=widgets.url_index("hours", [str(h) for h in spans]) or 0,
        format_func=lambda h: f"{h} 小时 h",
    )  # fmt: skip
    widgets.to_url("hours", str(hours) if hours != spans[0] else None)
    chosen = cols[1].multiselect(
        "类型 Kinds", KINDS, format_func=kinds.label, placeholder="全部 All kinds"
    )
    grids = sorted(village["grid_cells"].grid_code) if len(village["grid_cells"]) else []
    at = widgets.url_index("grid", grids)
    grid = cols[2].selectbox(
        "网格 Grid", [None, *grids], index=0 if at is None else at + 1,
        format_func=lambda g: g or "— 全部 all —",
    )  # fmt: skip
    widgets.to_url("grid", grid)
    building = cols[3].text_input(
        "楼栋 Building code", value=st.query_params.get("building", ""), placeholder="LH00150"
    )
    widgets.to_url("building", building.strip() or None)
    found = queries.events_page(
        conn, timedelta(hours=int(hours or 1)), chosen, grid, building.strip() or None
    )
    st.caption(f"{len(found)} 条事件 events (最新在前 newest first, 最多 at most 2,000)")
    widgets.plain_map(
        settings, village, layers.events_layer(layers.event_records(found)), "events-map"
    )
    widgets.table(
        fmt.table(found, settings.time_zone, drop=["lon", "lat", "elevation"]),
        "这段时间没有事件 No events in this time.",
    )
