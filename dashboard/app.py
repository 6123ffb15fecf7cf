"""The community managers' live village map (Streamlit).

Run with ``villagetwin dashboard``. The page is a function; data loaders are cached; layers
come from ``mapping.layers`` and only the checked ones are drawn; a database that cannot be
reached is an ``st.error``, not a traceback.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import geopandas as gpd
import psycopg
import streamlit as st

from dashboard import queries
from dashboard.settings import DashboardSettings
from mapping import db as village_db
from mapping import layers

METRICS = {
    "events": "近期事件 recent events",
    "residents": "今日出入人员 residents seen today",
    "unregistered": "登记外出入人员 seen beyond registered",
    "registered": "登记租户 registered tenants",
    "alarms": "24小时告警 alarms, 24 h",
    "units": "出租单元 rental units",
}
THEMES = {
    "地 places": "places",
    "事 events": "events",
    "物 objects": "objects",
    "人 people": "people",
    "组织 organisations": "organisations",
}


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
def _village(dsn: str) -> dict[str, Any]:
    conn = _conn(dsn)
    return {
        "buildings": village_db.read_buildings(conn),
        "grid_cells": village_db.read_grid_cells(conn),
        "roads": village_db.read_roads(conn),
        "pois": village_db.read_pois(conn),
        "objects": village_db.read_objects(conn),
        "organisations": village_db.read_organisations(conn),
    }


def _metric(conn: psycopg.Connection, name: str, settings: DashboardSettings) -> dict[str, float]:
    if name == "events":
        return queries.events_by_building(conn, timedelta(minutes=settings.event_window_minutes))
    if name == "residents":
        return queries.residents_seen_by_building(conn, days=1)
    if name == "registered":
        return queries.registered_by_building(conn)
    if name == "unregistered":
        seen = queries.residents_seen_by_building(conn, days=1)
        registered = queries.registered_by_building(conn)
        return {b: max(0.0, n - registered.get(b, 0.0)) for b, n in seen.items()}
    if name == "alarms":
        return queries.alarms_by_building(conn, timedelta(hours=24))
    return queries.units_by_building(conn)


def _live_map(
    settings: DashboardSettings,
    village: dict[str, Any],
    selected: str | None,
    themes: set[str],
    metric: str,
    event_style: str,
) -> None:
    conn = _conn(settings.db_dsn)
    buildings: gpd.GeoDataFrame = village["buildings"]
    window = timedelta(minutes=settings.event_window_minutes)
    values = _metric(conn, metric, settings)
    today = queries.events_today(conn)
    online, devices_total = queries.devices_online(conn)

    cols = st.columns(4)
    cols[0].metric("楼栋 Buildings", len(buildings))
    cols[1].metric("今日事件 Events today", sum(today.values()))
    cols[2].metric("设备在线 Devices online", f"{online} / {devices_total}")
    cols[3].metric("死信 Dead letters (1 h)", queries.dead_letter_count(conn, timedelta(hours=1)))

    drawn = []
    if "places" in themes or "people" in themes:
        shown = buildings if selected is None else buildings[buildings.building_id != selected]
        drawn.append(layers.buildings_layer(layers.building_records(shown, values)))
    if "places" in themes:
        drawn += layers.grid_layers(layers.grid_records(village["grid_cells"]))
        if len(village["roads"]):
            drawn.append(layers.roads_layer(village["roads"]))
    if selected is not None:
        row = buildings.loc[buildings.building_id == selected].iloc[0]
        units = village_db.read_units(conn, selected)
        seen = queries.residents_seen_by_unit(conn, selected, days=7)
        status = {u: "occupied" if seen.get(u) else "vacant" for u in units.unit_id}
        for unit in units.itertuples():
            if unit.use == "shop":
                status[unit.unit_id] = "shop"
        drawn.append(
            layers.floors_layer(layers.floor_records(row.geometry, int(row.storeys), units, status))
        )
    if "objects" in themes:
        devices = village_db.read_devices(conn)
        drawn.append(layers.devices_layer(layers.device_records(devices)))
    if "objects" in themes and len(village["objects"]):
        drawn.append(layers.objects_layer(layers.object_records(village["objects"])))
    if "organisations" in themes:
        if len(village["pois"]):
            drawn.append(layers.poi_layer(village["pois"]))
        if len(village["organisations"]):
            records = layers.organisation_records(village["organisations"])
            drawn.append(layers.organisations_layer(records))
    if "events" in themes:
        points = queries.recent_event_points(conn, window, settings.max_event_points)
        drawn += layers.events_layers(layers.event_records(points), event_style)

    view = layers.view_of(buildings)
    if selected is not None:
        row = buildings.loc[buildings.building_id == selected].iloc[0]
        view = layers.View(lon=row.lon, lat=row.lat, zoom=19.0, pitch=55.0)
    deck = layers.deck(drawn, view, settings.base_map_url)
    st.pydeck_chart(deck, height=620, key="village-map")
    top = max(values.values(), default=0.0)
    legend = " ".join(
        f"<span style='background:rgb{colour};padding:0 8px;margin-right:4px'>&nbsp;</span>{label}"
        for label, colour in layers.legend(top, METRICS[metric])
    )
    st.markdown(f"<div style='font-size:12px'>{legend}</div>", unsafe_allow_html=True)


def _building_panel(
    settings: DashboardSettings, buildings: gpd.GeoDataFrame, building_id: str
) -> None:
    row = buildings.loc[buildings.building_id == building_id].iloc[0]
    st.subheader(f"{row.address} · {building_id}")
    st.write(
        f"{int(row.storeys)} 层 storeys · 业主 landlord: {row.landlord or '—'}"
        f" · 网格 grid: {row.grid_code or '—'}"
    )
    events = queries.building_events(_conn(settings.db_dsn), building_id)
    if events.empty:
        st.info("此楼栋近7天暂无事件 No events for this building in the last 7 days.")
    else:
        st.dataframe(events, hide_index=True, use_container_width=True)


def main() -> None:
    settings = DashboardSettings()
    st.set_page_config(page_title="villagetwin · 城中村三维地图", page_icon="🏘", layout="wide")
    st.title("城中村三维地图 · Village map")
    try:
        village = _village(settings.db_dsn)
    except psycopg.OperationalError as exc:
        st.error(f"无法连接数据库 Cannot reach the database: {exc}")
        return
    buildings: gpd.GeoDataFrame = village["buildings"]
    if buildings.empty:
        st.warning(
            "还没有村庄数据 No village loaded yet: run `villagetwin village generate` or"
            " `villagetwin village import FILE`."
        )
        return

    labels = dict(zip(buildings.building_id, buildings.address, strict=True))
    selected = st.sidebar.selectbox(
        "选择楼栋 Pick a building",
        options=[None, *sorted(labels)],
        format_func=lambda b: "— 全村 whole village —" if b is None else f"{labels[b]} ({b})",
    )
    chosen = st.sidebar.multiselect(
        "图层 Layers", options=list(THEMES), default=["地 places", "事 events", "物 objects"]
    )
    metric = st.sidebar.radio(
        "楼栋颜色 Colour buildings by", options=list(METRICS), format_func=METRICS.__getitem__
    )
    event_style = st.sidebar.radio(
        "事件显示 Events as", options=list(layers.EVENT_STYLES), horizontal=True
    )
    st.sidebar.caption("地图每几秒刷新 The map refreshes every few seconds.")

    themes = {THEMES[c] for c in chosen}
    st.fragment(run_every=settings.refresh_s)(_live_map)(
        settings, village, selected, themes, metric or "events", event_style or "points"
    )
    if selected:
        st.fragment(run_every=settings.refresh_s)(_building_panel)(settings, buildings, selected)


main()
