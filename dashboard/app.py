"""The community managers' live village map (Streamlit).

Run with ``villagetwin dashboard``. The page is a function; data loaders are cached; layers
come from ``mapping.layers`` and only the checked ones are drawn; a database that cannot be
reached is an ``st.error``, not a traceback.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import geopandas as gpd
import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, inspection, pool, queries
from dashboard.auth import Refused, User, bind, sign_in
from dashboard.safe import csv_bytes, md
from dashboard.settings import DashboardSettings
from mapping import alert_layers, db as village_db, layers

METRICS = {
    "alerts": "未处理告警 open alerts (most severe)",
    "events": "近期事件 recent events",
    "residents": "今日出入人员 residents seen today",
    "unregistered": "登记外出入人员 seen beyond registered",
    "registered": "登记租户 registered tenants",
    "alarms": "24小时告警 alarms, 24 h",
    "units": "出租单元 rental units",
}
KINDS = [
    "access.unlock", "access.alarm", "access.door", "access.vendor", "gate.pass", "gate.alarm",
    "camera.detection", "app.checkin", "app.checkout", "app.visitor", "app.incident",
    "heartbeat",
]  # fmt: skip
THEMES = {
    "地 places": "places",
    "事 events": "events",
    "物 objects": "objects",
    "人 people": "people",
    "组织 organisations": "organisations",
}


def _conn(dsn: str) -> psycopg.Connection:
    """The signed-in user's own connection, carrying their session token: the database
    decides what it returns (row-level security, migration 0061). Stops the page and shows
    the sign-in form when the session has timed out, here or in the database."""
    _still_signed_in()
    return _lent(dsn, DashboardSettings(dashboard_dsn=dsn))


@st.cache_data(ttl=300, show_spinner="正在加载村庄 Loading the village…")
def _village(dsn: str, token: str = "") -> dict[str, Any]:
    """What the user may see of the village; cached per session token, never shared."""
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
    conn = _conn(settings.db_dsn)
    buildings: gpd.GeoDataFrame = village["buildings"]
    window = timedelta(minutes=settings.event_window_minutes)
    values = _metric(conn, metric, settings)
    scale = layers.SCALES.get(metric)
    today = queries.events_today(conn)
    online, devices_total = queries.devices_online(conn)

    cols = st.columns(6)
    cols[4].metric("未结工单 Open incidents", queries.open_incident_count(conn))
    cols[5].metric("待复查 Inspections due", queries.inspections_due(conn))
    cols[0].metric("楼栋 Buildings", len(buildings))
    cols[1].metric("今日事件 Events today", sum(today.values()))
    cols[2].metric("设备在线 Devices online", f"{online} / {devices_total}")
    cols[3].metric("死信 Dead letters (1 h)", queries.dead_letter_count(conn, timedelta(hours=1)))
    markers = _attention(conn)

    drawn = []
    if "places" in themes or "people" in themes:
        records = layers.building_records(buildings, values, selected, scale=scale)
        if metric == "alerts":
            records = alert_layers.colour_by_alerts(records, values)
        drawn.append(layers.buildings_layer(records, faded=selected is not None))
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
        # First: the faded neighbours drawn after it blend over it (layers.building_layers).
        drawn.insert(
            0,
            layers.floors_layer(
                layers.floor_records(row.geometry, int(row.storeys), units, status)
            ),
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

    drawn += markers
    view = layers.view_of(buildings)
    if selected is not None:
        row = buildings.loc[buildings.building_id == selected].iloc[0]
        view = layers.View(lon=row.lon, lat=row.lat, zoom=19.0, pitch=55.0)
    deck = layers.deck(drawn, view, settings.base_map_url)
    st.pydeck_chart(deck, height=620, key="village-map")
    legend = " ".join(
        f"<span style='background:rgb{colour};padding:0 8px;margin-right:4px'>&nbsp;</span>{label}"
        for label, colour in (scale.legend() if scale else [])
    )
    if scale is not None:
        st.markdown(f"<div style='font-size:12px'>{legend}</div>", unsafe_allow_html=True)
    st.markdown(
        f"<div style='font-size:12px'>{alert_layers.legend_html(alert_layers.legend_rows())}</div>",
        unsafe_allow_html=True,
    )


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
                     f" · #{row.alert_id} ({row.status})")  # fmt: skip
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


def _building_panel(
    settings: DashboardSettings, buildings: gpd.GeoDataFrame, building_id: str
) -> None:
    row = buildings.loc[buildings.building_id == building_id].iloc[0]
    st.subheader(md(f"{row.address} · {building_id}"))
    st.markdown(
        md(
            f"{int(row.storeys)} 层 storeys · 业主 landlord: {mask_text(row.landlord)}"
            f" · 网格 grid: {row.grid_code or '—'}"
        )
    )
    events = queries.building_events(_conn(settings.reader_dsn()), building_id)
    if events.empty:
        st.info("此楼栋近7天暂无事件 No events for this building in the last 7 days.")
    else:
        st.dataframe(events, hide_index=True, use_container_width=True)


def mask_text(name: object) -> str:
    """A name as the masked views show names: the first character, then stars."""
    text = str(name or "")
    return text[:1] + "*" * max(len(text) - 1, 1) if text else "—"


# --- pages ----------------------------------------------------------------------------------


def overview_page(settings: DashboardSettings, user: User) -> None:
    st.title("城中村三维地图 · Village map")
    try:
        village = _village(settings.reader_dsn(), _token())
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
    reader = settings.model_copy(update={"db_dsn": settings.reader_dsn()})
    st.fragment(run_every=settings.refresh_s)(_live_map)(
        reader, village, selected, themes, metric or "events", event_style or "points"
    )
    if selected:
        st.fragment(run_every=settings.refresh_s)(_building_panel)(settings, buildings, selected)


def inspector_page(settings: DashboardSettings, user: User) -> None:
    st.title("楼栋检查 · Building inspector")
    try:
        conn = _conn(settings.reader_dsn())
        buildings = _village(settings.reader_dsn(), _token())["buildings"]
    except psycopg.OperationalError as exc:
        st.error(f"无法连接数据库 Cannot reach the database: {exc}")
        return
    mine = buildings[[user.may_see_grid(g) for g in buildings.grid_code]]
    by = st.radio("查找方式 Find by", ["地址 address", "网格 grid"], horizontal=True)
    if by.startswith("网格"):
        grids = sorted({str(g) for g in mine.grid_code.dropna()})
        grid = st.selectbox("网格 Grid", grids)
        choices = mine[mine.grid_code == grid]
    else:
        query = st.text_input("地址或编号 Address or building code", key="address-search")
        # The search spans the whole village, so a building outside one's grids is refused
        # with its reason rather than silently missing.
        choices = (
            buildings[
                buildings.address.str.contains(query, regex=False)
                | buildings.building_id.str.contains(query, regex=False)
            ]
            if query
            else mine
        )
    if choices.empty:
        # The database returns only the buildings of the user's grids, so a building of
        # another grid is not found: refused without saying whether it exists.
        st.error(
            "无权查看或不存在 Not allowed or not found: no building matching"
            f" {md(query) if by.startswith('地址') else ''} in your grids"
            f" ({', '.join(user.grids) if user.role == 'inspector' else 'all'})."
        )
        return
    labels = dict(zip(choices.building_id, choices.address, strict=True))
    building_id = st.selectbox(
        "楼栋 Building", sorted(labels), format_func=lambda b: f"{labels[b]} ({b})"
    )
    row = buildings.loc[buildings.building_id == building_id].iloc[0]
    if not user.may_see_grid(row.grid_code):
        st.error(
            f"无权查看 Not allowed: {building_id} is in grid {row.grid_code}, outside your grids"
            f" ({', '.join(user.grids) or 'none'})."
        )
        return
    _inspect(settings, user, conn, row)


def _inspect(settings: DashboardSettings, user: User, conn: psycopg.Connection, row: Any) -> None:
    building_id = str(row.building_id)
    st.subheader(md(f"{row.address} · {building_id}"))
    units = village_db.read_units(conn, building_id)
    registered = queries.registered_tenants(conn, building_id)
    observed = queries.observed_credentials(conn, building_id, settings.observation_days)
    ended = queries.ended_tenancies(conn, building_id)
    table = inspection.unit_comparison(units, registered, observed)
    days = queries.reader_days(conn, building_id, settings.observation_days)
    issues = inspection.discrepancies(registered, observed, ended, days)
    cols = st.columns(4)
    cols[0].metric("层数 Storeys", int(row.storeys))
    cols[1].metric("单元 Units", len(units))
    cols[2].metric("登记租户 Registered", len(registered))
    cols[3].metric("异常 Discrepancies", len(issues))
    st.markdown(md(f"业主 Landlord: {mask_text(row.landlord)} · 网格 Grid: {row.grid_code or '—'}"))
    if issues:
        st.markdown("#### 异常 Discrepancies")
        flagged = pd.DataFrame(
            [{"unit": d.unit_id, "kind": d.kind, "detail": d.detail} for d in issues]
        )
        st.dataframe(flagged, hide_index=True, use_container_width=True)
        names = {
            inspection.OVERCROWDED: "人数超过登记 more people than registered (群租?)",
            inspection.NEVER_SEEN: "登记未出现 registered, never seen (空挂?)",
            inspection.AFTER_TENANCY: "退租后仍使用 used after the tenancy ended",
        }
        st.markdown(
            "\n".join(f"- **{md(d.unit_id)}** {names[d.kind]}: {md(d.detail)}" for d in issues[:50])
        )
    st.markdown(f"#### 单元 Units (门禁观察 observed over {settings.observation_days} days)")
    st.dataframe(table, hide_index=True, use_container_width=True)
    st.markdown("#### 登记租户 Registered tenants (已脱敏 masked)")
    st.dataframe(
        registered.drop(columns=["credential_ref"]), hide_index=True, use_container_width=True
    )
    with st.expander("查看完整身份信息 Reveal one record (audited)"):
        _reveal_form(conn, registered, row)
    st.markdown("#### 检查记录 Past inspections")
    past = queries.inspections(conn, building_id)
    if past.empty:
        st.caption("暂无 None yet.")
    else:
        st.dataframe(past, hide_index=True, use_container_width=True)
    with st.form("inspection", clear_on_submit=True):
        st.markdown("#### 新检查 Record an inspection")
        findings = st.text_area("发现 Findings")
        hazards = st.multiselect("隐患 Hazards", inspection.HAZARDS)
        photos = st.text_input("照片编号 Photo references (comma-separated)")
        next_visit = st.date_input("下次检查 Next visit", value=None)
        if st.form_submit_button("保存 Save"):
            if not findings.strip():
                st.error("请填写发现 Write the findings.")
            else:
                actions.record_inspection(
                    _session_conn(settings),
                    building_id,
                    date.today(),
                    findings.strip(),
                    hazards,
                    [p.strip() for p in photos.split(",") if p.strip()],
                    next_visit if isinstance(next_visit, date) else None,
                )
                st.success("已保存 Saved.")
                past = queries.inspections(conn, building_id)
    building = {
        "building_id": building_id,
        "address": row.address,
        "storeys": int(row.storeys),
        "grid_code": row.grid_code,
    }
    left, right = st.columns(2)
    left.download_button(
        "导出 CSV",
        csv_bytes(table.assign(building_id=building_id)),
        file_name=f"{building_id}-report.csv",
        mime="text/csv",
    )
    right.download_button(
        "导出报告 Printable report (HTML, print to PDF)",
        inspection.report_html(building, table, issues, past, date.today()).encode(),
        file_name=f"{building_id}-report.html",
        mime="text/html",
    )


def _reveal_form(conn: psycopg.Connection, registered: pd.DataFrame, row: Any) -> None:
    """One person (a tenant or the landlord), a reason category and a reason of real content;
    the database checks all of it, the grid and the hourly limit, and audits before it
    returns anything."""
    people = {p: f"{p} · 租户 tenant" for p in registered.person_id}
    landlord = getattr(row, "landlord_id", None)
    if isinstance(landlord, str) and landlord:
        people[landlord] = f"{landlord} · 业主 landlord"
    if not people:
        st.caption("无租户 No tenants.")
        return
    person = st.selectbox("人员 Person", list(people), format_func=people.__getitem__,
                          key="reveal-person")  # fmt: skip
    categories: dict[str, str] = dict(
        conn.execute("SELECT category, label FROM reveal_categories").fetchall()
    )
    category = st.selectbox("理由类别 Reason category", list(categories),
                            format_func=categories.__getitem__, key="reveal-category")  # fmt: skip
    reason = st.text_input("理由 Reason (required)", key="reveal-reason")
    if st.button("查看 Reveal", key="reveal"):
        try:
            found = actions.reveal_person(conn, str(person), str(category), reason)
        except (psycopg.errors.RaiseException, psycopg.errors.InsufficientPrivilege) as exc:
            st.error(f"拒绝 Refused: {exc.diag.message_primary}")
            return
        if found:
            st.success(md(f"{found[0]} · {found[1]} · {found[2]} (已记录审计 audited)"))


def replay_page(settings: DashboardSettings, user: User) -> None:
    st.title("回放 · Replay a day")
    conn = _conn(settings.reader_dsn())
    village = _village(settings.reader_dsn(), _token())
    days_ago = st.selectbox(
        "日期 Day", list(range(0, 14)),
        format_func=lambda d: (date.today() - timedelta(days=d)).isoformat(),
    )  # fmt: skip
    day = queries.replay_hours(conn, int(days_ago or 0))
    if day.empty:
        st.info("这一天没有事件 No events on that day.")
        return
    local = {int(h.hour): h for h in pd.to_datetime(day.hour).dt.tz_convert("Asia/Shanghai")}
    hour = st.select_slider(
        "时刻 Hour (China Standard Time)", options=sorted(local), value=min(local)
    )
    values = queries.replay_hour(conn, local[hour].to_pydatetime())
    states = queries.device_states_at(conn, int(days_ago or 0), int(hour))
    drawn = [
        layers.buildings_layer(
            layers.building_records(village["buildings"], values, scale=layers.SCALES["events"])
        ),
        *layers.grid_layers(layers.grid_records(village["grid_cells"])),
        layers.devices_layer(layers.device_records(states)),
    ]
    cols = st.columns(2)
    cols[0].metric(f"{hour}:00–{hour}:59 事件 events", int(sum(values.values())))
    cols[1].metric("离线设备 Devices offline", int((states.online == False).sum()))  # noqa: E712
    st.pydeck_chart(
        layers.deck(drawn, layers.view_of(village["buildings"]), settings.base_map_url),
        height=560, key="replay-map",
    )  # fmt: skip


def events_page(settings: DashboardSettings, user: User) -> None:
    st.title("事件 · Events")
    conn = _conn(settings.reader_dsn())
    village = _village(settings.reader_dsn(), _token())
    cols = st.columns(4)
    hours = cols[0].selectbox("时间 Within", [1, 6, 24, 72, 168], format_func=lambda h: f"{h} h")
    kinds = cols[1].multiselect("类型 Kinds", KINDS)
    grids = sorted(village["grid_cells"].grid_code) if len(village["grid_cells"]) else []
    grid = cols[2].selectbox("网格 Grid", [None, *grids], format_func=lambda g: g or "— all —")
    building = cols[3].text_input("楼栋 Building code")
    found = queries.events_page(
        conn, timedelta(hours=int(hours or 1)), kinds, grid, building.strip() or None
    )
    st.caption(f"{len(found)} 条事件 events (最新 newest first, at most 2,000)")
    _plain_map(settings, village, layers.events_layer(layers.event_records(found)), "events-map")
    st.dataframe(
        found.drop(columns=["lon", "lat", "elevation"]), hide_index=True, use_container_width=True
    )


def _plain_map(settings: DashboardSettings, village: dict[str, Any], layer: Any, key: str) -> None:
    """Uncoloured buildings with one layer over them, framed on the village."""
    drawn = [layers.buildings_layer(layers.building_records(village["buildings"])), layer]
    deck = layers.deck(drawn, layers.view_of(village["buildings"]), settings.base_map_url)
    st.pydeck_chart(deck, height=480, key=key)


def devices_page(settings: DashboardSettings, user: User) -> None:
    st.title("设备 · Devices")
    conn = _conn(settings.reader_dsn())
    village = _village(settings.reader_dsn(), _token())
    table = queries.devices_page(conn)
    cols = st.columns(3)
    cols[0].metric("在线 Online", int((table.online == True).sum()))  # noqa: E712
    cols[1].metric("离线 Offline", int((table.online == False).sum()))  # noqa: E712
    cols[2].metric("死信 Devices with dead letters (24 h)", int((table.dead_letters_24h > 0).sum()))
    _plain_map(settings, village, layers.devices_layer(layers.device_records(table)), "devices-map")
    st.dataframe(table.drop(columns=["lon", "lat"]), hide_index=True, use_container_width=True)


def quality_page(settings: DashboardSettings, user: User) -> None:
    st.title("数据质量 · Data quality")
    conn = _conn(settings.reader_dsn())
    window = timedelta(hours=24)
    lag = queries.ingest_lag(conn, timedelta(hours=1))
    cols = st.columns(4)
    cols[0].metric("设备→平台 device→received p50", f"{lag['network_p50']:.2f} s")
    cols[1].metric("p95", f"{lag['network_p95']:.2f} s")
    cols[2].metric("接收→入库 received→stored p50", f"{lag['batching_p50']:.3f} s")
    cols[3].metric("p95 ", f"{lag['batching_p95']:.3f} s")
    left, right = st.columns(2)
    left.markdown("#### 死信原因 Dead letters by reason (24 h)")
    left.dataframe(queries.dead_letters_by(conn, "reason", window), hide_index=True)
    right.markdown("#### 按设备 By device (24 h)")
    right.dataframe(queries.dead_letters_by(conn, "device_id", window), hide_index=True)
    st.markdown("#### 序号缺口 Sequence gaps (24 h): events lost before they were stored")
    gaps = queries.sequence_gaps(conn, window)
    if gaps.empty:
        st.caption("无 None.")
    else:
        st.dataframe(gaps, hide_index=True, use_container_width=True)
    st.markdown("#### 最近死信 Latest dead letters")
    st.dataframe(queries.latest_dead_letters(conn), hide_index=True, use_container_width=True)


def incidents_page(settings: DashboardSettings, user: User) -> None:
    st.title("事件工单 · Incidents")
    conn = _conn(settings.reader_dsn())
    incidents = queries.open_incidents(conn)
    st.caption(f"{len(incidents)} 个未结 open (reported → assigned → resolved)")
    if incidents.empty:
        return
    st.dataframe(incidents, hide_index=True, use_container_width=True)
    with st.form("incident"):
        chosen = st.selectbox(
            "工单 Incident", incidents.incident_id.astype(str).tolist(),
            format_func=lambda i: _incident_label(incidents, i),
        )  # fmt: skip
        status = st.radio("改为 Move to", ["assigned", "resolved"], horizontal=True)
        assignee = st.text_input("指派给 Assign to (grid worker)")
        if st.form_submit_button("更新 Update"):
            try:
                moved = actions.move_incident(
                    _session_conn(settings), str(chosen), str(status), assignee
                )
            except (ValueError, psycopg.errors.RaiseException) as exc:
                st.error(str(exc))
            else:
                if moved:
                    st.success("已更新 Updated.")
                else:
                    st.error("工单已关闭 That incident is already resolved.")


def _incident_label(incidents: pd.DataFrame, incident_id: str) -> str:
    row = incidents[incidents.incident_id.astype(str) == incident_id].iloc[0]
    return f"{row.category} · {row.building_id or '—'} · {str(row.description)[:30]} ({row.status})"


def alarms_page(settings: DashboardSettings, user: User) -> None:
    from dashboard.pages import alarms

    reader = settings.reader_dsn()
    alarms.page(settings, user, _conn(reader), lambda: _session_conn(settings), _village(reader))


def cases_page(settings: DashboardSettings, user: User) -> None:
    from dashboard.pages import cases

    reader = settings.reader_dsn()
    cases.page(settings, user, _conn(reader), lambda: _session_conn(settings), _village(reader))


def audit_page(settings: DashboardSettings, user: User) -> None:
    """The full audit log, filtered by user, action, time and person, exportable. Admins
    only: the page says so, and the database returns no row to anyone else."""
    st.title("审计日志 · Audit log")
    if user.role != "admin":
        st.error("仅管理员 Admins only.")
        return
    conn = _conn(settings.reader_dsn())
    cols = st.columns(4)
    who = cols[0].text_input("用户 User", key="audit-user")
    action = cols[1].selectbox(
        "操作 Action", [None, *queries.audit_actions(conn)], format_func=lambda a: a or "— all —"
    )
    days = cols[2].selectbox("时间 Within", [1, 7, 30, 365, 3650], index=1,
                             format_func=lambda d: f"{d} 天 days")  # fmt: skip
    person = cols[3].text_input("人员 Person (subject)", key="audit-person")
    log = queries.audit_log_filtered(
        conn, who.strip() or None, action, timedelta(days=int(days or 7)), person.strip() or None
    )
    st.caption(f"{len(log)} 条 rows (最新 newest first, at most 5,000)")
    shown = log.assign(at=_local_minutes(log["at"], "—")).fillna("—")
    st.dataframe(shown, hide_index=True, use_container_width=True)
    st.download_button(
        "导出 CSV Export", csv_bytes(shown), file_name="audit-log.csv", mime="text/csv"
    )
    _lockouts_section(settings)


LOCKOUT_KINDS = {"account": "账户 account", "address": "地址 address"}


def _local_minutes(times: pd.Series, missing: str) -> pd.Series:
    """timestamptz values as village-local ``2026-11-30 04:02`` text, ``missing`` for none."""
    local = pd.to_datetime(times, utc=True).dt.tz_convert("Asia/Shanghai")
    return local.dt.strftime("%Y-%m-%d %H:%M").fillna(missing)


def _lockouts_section(settings: DashboardSettings) -> None:
    """The current sign-in lockouts (accounts locked after wrong passwords, blocked client
    addresses), each of which the admin can lift: the database checks that the session is an
    admin's and audits the lift as ``lockout_lifted`` (migrations 0060, 0111)."""
    st.subheader("登录锁定 · Sign-in lockouts")
    done = st.session_state.pop("lockout-lifted", None)
    if done:
        st.success(md(done))
    conn = _conn(settings.writer_dsn())  # current, not a replica's lagging copy
    found = queries.lockouts(conn)
    if found.empty:
        st.caption("当前没有被锁定的账户或地址 No account or address is locked out.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "类型 Kind": found.kind.map(LOCKOUT_KINDS),
                "账户或地址 Account or address": found.subject,
                "锁定于 Locked since": _local_minutes(found.since, "—"),
                "解除于 Until": _local_minutes(found.until, "管理员解除 until an admin lifts it"),
            }
        ),
        hide_index=True,
    )
    # Options are the lockouts themselves, so a choice never points at another row later.
    labels = {
        f"{kind}\t{subject}": f"{LOCKOUT_KINDS[kind]} · {subject}"
        for kind, subject in zip(found.kind, found.subject, strict=True)
    }
    pick = st.selectbox(
        "解除哪一个 Lift which", list(labels), format_func=labels.__getitem__, key="lockout-pick"
    )
    if pick is not None and st.button("解除锁定 Lift the lockout", key="lockout-lift"):
        kind, subject = str(pick).split("\t", 1)
        try:
            actions.lift_lockout(conn, kind, subject)
        except psycopg.errors.InvalidParameterValue as exc:
            st.error(f"{exc.diag.message_primary} (刷新 refresh the page)")
            return
        st.session_state["lockout-lifted"] = f"已解除 Lifted: {labels[pick]} (已记录审计 audited)"
        st.rerun()


# --- sign-in --------------------------------------------------------------------------------


def _session_conn(settings: DashboardSettings) -> psycopg.Connection:
    """The signed-in user's connection to the primary for their writes and reveals, carrying
    their session token: this page view's, lent by the pool (dashboard/pool.py) and given back
    when the view ends, where the pool's ``DISCARD ALL`` drops the token."""
    return _lent(settings.writer_dsn(), settings)


def _lent(dsn: str, settings: DashboardSettings) -> psycopg.Connection:
    """A connection to ``dsn`` lent by the pool for this page view, bound to the signed-in
    user's session token (the primary's, or the read replica's: VT_REPLICA_DSN)."""
    conn = pool.lent(dsn, settings)
    user: User | None = st.session_state.get("user")
    if user is not None:
        bind(conn, user.token)
    return conn


def _token() -> str:
    user: User | None = st.session_state.get("user")
    return user.token if user else ""


def _timed_out() -> None:
    st.session_state.clear()
    st.session_state["timed_out"] = True
    st.rerun(scope="app")


def _still_signed_in() -> None:
    """Inside auto-refreshing fragments too: past the idle timeout nothing more is read."""
    if "user" not in st.session_state:
        return
    idle = time.monotonic() - st.session_state.get("seen", 0.0)
    if idle > st.session_state.get("timeout_s", 0.0):
        _timed_out()


def _client_address() -> str:
    """The browser's address, as the reverse proxy forwards it or as Streamlit saw it."""
    forwarded = st.context.headers.get("X-Forwarded-For")
    if isinstance(forwarded, str) and forwarded.strip():
        return forwarded.split(",")[0].strip()
    seen = st.context.ip_address
    return seen if isinstance(seen, str) and seen else "unknown"


def _signed_in(settings: DashboardSettings) -> User | None:
    user: User | None = st.session_state.get("user")
    if user is not None:
        _still_signed_in()
        try:  # a user action: the database restarts the session's idle clock, if still live
            _session_conn(settings).execute("SELECT vt_session_touch()")
        except psycopg.errors.InvalidAuthorizationSpecification:
            _timed_out()
        st.session_state["seen"] = time.monotonic()
        return user
    if st.session_state.pop("timed_out", False):
        st.warning("会话已超时，请重新登录 Session timed out: sign in again.")
    with st.form("login"):
        st.markdown("### 登录 Sign in")
        username = st.text_input("用户名 Username")
        password = st.text_input("密码 Password", type="password")
        submitted = st.form_submit_button("登录 Sign in")
    if submitted:
        try:
            found = start_session(settings, username, password)
        except psycopg.OperationalError as exc:
            st.error(f"无法连接数据库 Cannot reach the database: {exc}")
            return None
        if isinstance(found, Refused):
            st.error(found.message)
            return None
        st.rerun()
    return None


def start_session(settings: DashboardSettings, username: str, password: str) -> User | Refused:
    """Sign in through the database and keep the user, their connection and their idle clock
    in this browser session (the sign-in form calls it; so do page tests)."""
    idle = timedelta(minutes=settings.session_timeout_minutes)
    conn = psycopg.connect(settings.writer_dsn(), autocommit=True, connect_timeout=5)
    found = sign_in(conn, username, password, _client_address(), idle)
    conn.close()  # later statements go through the pool (_session_conn), carrying the token
    if isinstance(found, Refused):
        return found
    st.session_state["user"] = found
    st.session_state["seen"] = time.monotonic()
    st.session_state["timeout_s"] = idle.total_seconds()
    return found


def _bound(page: Any, settings: DashboardSettings, user: User) -> Any:
    def run() -> None:
        page(settings, user)

    run.__name__ = page.__name__  # Streamlit tells pages apart by their function's name
    return run


@pool.returns_lent_connections
def main() -> None:
    settings = DashboardSettings()
    st.set_page_config(page_title="villagetwin · 城中村三维地图", page_icon="🏘", layout="wide")
    user = _signed_in(settings)
    if user is None:
        return
    st.sidebar.caption(md(f"{user.username} · {user.role}"))
    if st.sidebar.button("退出 Sign out"):
        _session_conn(settings).execute("SELECT vt_sign_out()")
        st.session_state.clear()
        st.rerun()

    def overview() -> None:
        overview_page(settings, user)

    def inspector() -> None:
        inspector_page(settings, user)

    def audit() -> None:
        audit_page(settings, user)

    pages = [
        st.Page(overview, title="总览 Overview", url_path="overview", default=True),
        st.Page(inspector, title="楼栋检查 Building inspector", url_path="inspector"),
    ]
    if user.role in ("admin", "manager"):
        for page, title, path in (
            (replay_page, "回放 Replay", "replay"),
            (events_page, "事件 Events", "events"),
            (devices_page, "设备 Devices", "devices"),
            (quality_page, "数据质量 Data quality", "quality"),
            (incidents_page, "工单 Incidents", "incidents"),
        ):
            pages.append(st.Page(_bound(page, settings, user), title=title, url_path=path))
        pages.insert(1, st.Page(_bound(alarms_page, settings, user), title="告警中心 Alarm centre",
                                url_path="alarms"))  # fmt: skip
    pages.append(st.Page(_bound(cases_page, settings, user), title="工单 Cases", url_path="cases"))
    if user.role == "admin":
        pages.append(st.Page(audit, title="审计 Audit log", url_path="audit"))
    st.navigation(pages).run()


if __name__ == "__main__":  # Streamlit runs the page as __main__; tests import its pages
    main()
