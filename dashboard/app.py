"""The community managers' live village map (Streamlit).

Run with ``villagetwin dashboard``. The page is a function; data loaders are cached; layers
come from ``mapping.layers``; a database that cannot be reached is an ``st.error``, not a
traceback.
"""

from __future__ import annotations

from datetime import timedelta

import geopandas as gpd
import psycopg
import streamlit as st

from dashboard import queries
from dashboard.settings import DashboardSettings
from mapping import db as village_db
from mapping import layers


@st.cache_resource(show_spinner=False)
def _connection(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


def _conn(dsn: str) -> psycopg.Connection:
    conn = _connection(dsn)
    if conn.closed or conn.broken:
        _connection.clear()
        conn = _connection(dsn)
    return conn


@st.cache_data(ttl=300, show_spinner="正在加载村庄 Loading the village…")
def _buildings(dsn: str) -> gpd.GeoDataFrame:
    return village_db.read_buildings(_conn(dsn))


def _live_map(
    settings: DashboardSettings, buildings: gpd.GeoDataFrame, selected: str | None
) -> None:
    conn = _conn(settings.db_dsn)
    window = timedelta(minutes=settings.event_window_minutes)
    counts = queries.event_counts_by_building(conn, window)
    points = queries.recent_event_points(conn, window, settings.max_event_points)
    totals = queries.event_totals(conn, window)

    cols = st.columns(4)
    cols[0].metric("楼栋 Buildings", len(buildings))
    cols[1].metric(f"事件 Events ({settings.event_window_minutes} min)", sum(totals.values()))
    cols[2].metric("有事件的楼栋 Buildings with events", len(counts))
    cols[3].metric("死信 Dead letters", queries.dead_letter_count(conn, window))

    deck = layers.deck(
        [
            layers.buildings_layer(layers.building_records(buildings, counts, selected)),
            layers.events_layer(layers.event_records(points)),
        ],
        layers.view_of(buildings),
        settings.base_map_url,
    )
    st.pydeck_chart(deck, height=620, key="village-map")
    st.caption(
        f"{len(points)} 个最新事件 latest events shown · 颜色 = 近"
        f"{settings.event_window_minutes}分钟事件数 colour = events in the window"
    )


def _building_panel(
    settings: DashboardSettings, buildings: gpd.GeoDataFrame, building_id: str
) -> None:
    row = buildings.loc[buildings.building_id == building_id].iloc[0]
    st.subheader(f"{row.address} · {building_id}")
    st.write(
        f"{int(row.storeys)} 层 storeys · 业主 landlord: {row.landlord or '—'}"
        f" · 网格 grid: {row.grid_code}"
    )
    events = queries.building_events(_conn(settings.db_dsn), building_id)
    if events.empty:
        st.info("此楼栋暂无事件 No events for this building yet.")
    else:
        st.dataframe(events, hide_index=True, use_container_width=True)


def main() -> None:
    settings = DashboardSettings()
    st.set_page_config(page_title="villagetwin · 城中村三维地图", page_icon="🏘", layout="wide")
    st.title("城中村三维地图 · Village map")
    try:
        buildings = _buildings(settings.db_dsn)
    except psycopg.OperationalError as exc:
        st.error(f"无法连接数据库 Cannot reach the database: {exc}")
        return
    if buildings.empty:
        st.warning(
            "还没有村庄数据 No village loaded yet: run `villagetwin village generate --load`."
        )
        return

    labels = dict(zip(buildings.building_id, buildings.address, strict=True))
    selected = st.sidebar.selectbox(
        "选择楼栋 Pick a building",
        options=[None, *sorted(labels)],
        format_func=lambda b: "— 全村 whole village —" if b is None else f"{labels[b]} ({b})",
    )
    st.sidebar.caption("地图每几秒刷新 The map refreshes every few seconds.")

    st.fragment(run_every=settings.refresh_s)(_live_map)(settings, buildings, selected)
    if selected:
        st.fragment(run_every=settings.refresh_s)(_building_panel)(settings, buildings, selected)


main()
