"""总览 Overview."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import geopandas as gpd
import psycopg
import streamlit as st

from dashboard import fmt, nav, queries, session, villages, widgets
from dashboard.auth import User
from dashboard.safe import md
from dashboard.settings import DashboardSettings
from mapping import alert_layers, db as village_db, layers

PAGE = nav.Page(
    title="总览 Overview", url_path="overview", roles=nav.ALL, icon=":material/map:", default=True
)


METRICS = {
    "alerts": "未处理告警 open alerts (most severe)",
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
    if name == "alerts":
        return queries.open_alerts_by_building(conn)
    return queries.units_by_building(conn)


def _live_map(
    settings: DashboardSettings,
    village: dict[str, Any],
    selected: str | None,
    themes: set[str],
    metric: str,
    event_style: str,
) -> None:
    conn = session.conn(settings.db_dsn)
    buildings: gpd.GeoDataFrame = village["buildings"]
    window = timedelta(minutes=settings.event_window_minutes)
    values = _metric(conn, metric, settings)
    scale = layers.SCALES.get(metric)
    picked = villages.current()
    today = queries.events_today(conn, picked)
    online, devices_total = queries.devices_online(conn, picked)

    cols = st.columns(6)
    cols[4].metric("未结上报 Open reports", queries.open_incident_count(conn))
    cols[5].metric("待复查 Inspections due", queries.inspections_due(conn))
    cols[0].metric("楼栋 Buildings", len(buildings))
    cols[1].metric("今日事件 Events today", sum(today.values()))
    cols[2].metric("设备在线 Devices online", f"{online} / {devices_total}")
    cols[3].metric("死信 Dead letters (1 h)", queries.dead_letter_count(conn, timedelta(hours=1)))
    markers = _attention(conn)

    drawn = []
    view = layers.view_of(buildings)
    chosen = None if selected is None else buildings.loc[buildings.building_id == selected]
    if chosen is not None and not chosen.empty:
        row = chosen.iloc[0]
        units = village_db.read_units(conn, str(row.building_id))
        seen = queries.residents_seen_by_unit(conn, str(row.building_id), days=7)
        status = {u: "occupied" if seen.get(u) else "vacant" for u in units.unit_id}
        for unit in units.itertuples():
            if unit.use == "shop":
                status[unit.unit_id] = "shop"
        # First: the faded neighbours drawn after it blend over it (layers.building_layers).
        floors = layers.floor_records(row.geometry, int(row.storeys), units, status)
        drawn.append(layers.floors_layer(floors))
        view = layers.View(lon=float(row.lon), lat=float(row.lat), zoom=18.6, pitch=55.0)
    else:
        selected = None
    heights = dict(zip(buildings.building_id, buildings.height_m, strict=True))
    if "places" in themes or "people" in themes:
        records = layers.building_records(buildings, values, selected, scale=scale)
        if metric == "alerts":
            records = alert_layers.colour_by_alerts(records, values)
        drawn.append(layers.buildings_layer(records, faded=selected is not None))
    if "events" in themes:  # right after the buildings: a heat map is drawn over them
        points = queries.recent_event_points(conn, window, settings.max_event_points)
        drawn += layers.events_layers(
            layers.event_records(points, settings.zone()), event_style, buildings.total_bounds
        )
    if "places" in themes:
        away = None if selected is None else (view.lon, view.lat)
        cells = layers.grid_records(village["grid_cells"], away_from=away)
        drawn += layers.grid_layers(cells, zoom=view.zoom)
        if len(village["roads"]):
            drawn.append(layers.roads_layer(village["roads"]))
    if "objects" in themes:
        devices = village_db.read_devices(conn)
        if picked is not None:  # the picked village's: in its buildings or grid cells
            devices = devices[
                devices.building_id.isin(buildings.building_id)
                | devices.grid_code.isin(village["grid_cells"].grid_code)
            ]
        drawn.append(layers.devices_layer(layers.device_records(devices, heights)))
    if "objects" in themes and len(village["objects"]):
        drawn.append(layers.objects_layer(layers.object_records(village["objects"])))
    if "organisations" in themes:
        if len(village["pois"]):
            drawn.append(layers.poi_layer(village["pois"]))
        if len(village["organisations"]):
            records = layers.organisation_records(village["organisations"])
            drawn.append(layers.organisations_layer(records))

    drawn += markers
    deck = layers.deck(drawn, view, settings.base_map_url)
    # One chart per picked building, in its own keyed container so that the browser mounts
    # it afresh: a new pick starts from an empty selection, and Streamlit's selection
    # highlight (which fades every other object) does not carry over to the next pick.
    with st.container(key=f"village-map-box-{selected or 'all'}"):
        state = st.pydeck_chart(
            deck, height=620, key=f"village-map-{selected or ''}", on_select="rerun",
            selection_mode="single-object",
        )  # fmt: skip
    clicked = layers.picked_building(state.selection)
    if clicked is not None and clicked != selected:
        # A click on a building picks it: the sidebar's picker and the panel below follow.
        st.session_state["picked-building"] = clicked
        st.rerun(scope="app")
    rows: list[tuple[str, tuple[int, int, int]]] = list(scale.legend() if scale else [])
    if selected is not None:
        rows += layers.unit_legend()
    if "events" in themes:
        rows += layers.density_legend(event_style)
    if "objects" in themes:  # the offline marker is in the alert legend below
        rows += [r for r in layers.device_legend() if r[1] != alert_layers.OFFLINE]
    widgets.legend(rows)
    widgets.legend(alert_layers.legend_rows())


def _attention(conn: psycopg.Connection) -> list[Any]:
    """What needs attention now, above the map: smoke and fire first, open alerts by severity,
    offline devices, overdue cases; returns the alert and offline-device marker layers."""
    open_alerts = queries.open_alert_markers(conn)
    fire = open_alerts[open_alerts.severity == "critical"]
    row: Any
    # One container however many banners there are (0-5): the elements after it, the map
    # among them, keep their place in the page, so a refresh does not remount the map.
    with st.container():
        for row in fire.head(5).itertuples():
            st.error(f"烟火告警 SMOKE/FIRE · {row.title} · 网格 grid {row.grid_code or '—'}"
                     f" · #{row.alert_id} ({fmt.code('status', row.status)})")  # fmt: skip
    counts = queries.open_alerts_by_severity(conn)
    offline = queries.offline_devices(conn)
    cols = st.columns(6)
    for n, severity in enumerate(alert_layers.SEVERITY_COLOURS):
        cols[n].metric(f"告警 {alert_layers.SEVERITY_NAMES[severity]}", counts.get(severity, 0))
    cols[4].metric("离线设备 Devices offline", len(offline))
    cols[5].metric("超期工单 Overdue cases", queries.overdue_case_count(conn))
    heights = dict(zip(open_alerts.building_id, open_alerts.elevation, strict=True))
    return [
        alert_layers.alerts_layer(alert_layers.alert_records(open_alerts)),
        alert_layers.offline_layer(alert_layers.offline_records(offline, heights)),
    ]


def render(settings: DashboardSettings, user: User) -> None:
    st.title("城中村三维地图 · Village map")
    try:
        village = widgets.village(settings.reader_dsn(), session.token())
        figures = queries.village_figures(session.conn(settings.reader_dsn()))
    except psycopg.OperationalError as exc:
        st.error(f"无法连接数据库 Cannot reach the database: {exc}")
        return
    if villages.current() is None and len(figures) > 1:  # the whole district
        st.subheader("全区各村 The district's villages")
        st.dataframe(villages.district_table(figures), hide_index=True)
    buildings: gpd.GeoDataFrame = village["buildings"]
    if buildings.empty:
        st.warning(
            "还没有村庄数据 No village loaded yet: run `villagetwin village generate` or"
            " `villagetwin village import FILE`."
        )
        return
    labels = dict(zip(buildings.building_id, buildings.address, strict=True))
    several = villages.current() is None and len(figures) > 1
    whole = "全区 whole district" if several else "全村 whole village"
    wanted = st.query_params.get("building")  # a deep link: ?building=LH00150
    if wanted and wanted not in labels:  # not in the village, or not the user's (RLS)
        st.sidebar.warning(md(f"无权查看或不存在 Not allowed or not found: {wanted}"))
    elif wanted and "picked-building" not in st.session_state:
        st.session_state["picked-building"] = wanted
    selected = st.sidebar.selectbox(
        "选择楼栋 Pick a building",
        options=[None, *sorted(labels)],
        format_func=lambda b: f"— {whole} —" if b is None else f"{labels[b]} ({b})",
        key="picked-building",  # a click on the map sets it too (_live_map)
    )
    widgets.to_url("building", selected)
    chosen = st.sidebar.multiselect(
        "图层 Layers",
        options=list(THEMES),
        default=["地 places", "事 events", "物 objects"],
        placeholder="选择图层 Choose layers",
    )
    metric = st.sidebar.radio(
        "楼栋颜色 Colour buildings by", options=list(METRICS), format_func=METRICS.__getitem__
    )
    event_style = st.sidebar.radio(
        "事件显示 Events as", options=list(layers.EVENT_STYLES), horizontal=True,
        format_func=layers.EVENT_STYLE_NAMES.__getitem__,
    )  # fmt: skip
    st.sidebar.caption("地图每几秒刷新 The map refreshes every few seconds.")
    themes = {THEMES[c] for c in chosen}
    reader = settings.model_copy(update={"db_dsn": settings.reader_dsn()})
    st.fragment(run_every=settings.refresh_s)(_live_map)(
        reader, village, selected, themes, metric or "events", event_style or "points"
    )
    if selected:
        st.fragment(run_every=settings.refresh_s)(widgets.building_panel)(
            settings, buildings, selected
        )
