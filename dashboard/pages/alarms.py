"""告警中心 · Alarm centre: every alert the rules raised, filtered by severity, rule, grid,
status and age; acknowledge, assign, resolve or close as a false alarm with a note; turn an
alert into a case and dispatch it; CSV export. Reads through dashboard/queries.py, writes
through dashboard/actions.py on the signed-in user's own connection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, nav, queries, session, villages, widgets
from dashboard.auth import User
from dashboard.safe import csv_bytes
from dashboard.settings import DashboardSettings
from devices.kinds import label
from mapping import alert_layers, layers
from mapping.frames import rows
from rules.cases import CaseError, route
from rules.logic import CATALOGUE, SEVERITIES

PAGE = nav.Page(
    title="告警中心 Alarm centre",
    url_path="alarms",
    roles=nav.OFFICE,
    icon=":material/notifications:",
)

STATUS_NAMES = {
    "open": "待处理 open",
    "acknowledged": "已确认 acknowledged",
    "resolved": "已解决 resolved",
    "false_alarm": "误报 false alarm",
}
# What alert_history's actions mean (rules/store.py, migration 0110's functions).
HISTORY_ACTIONS = {
    "opened": "开启 opened",
    "acknowledged": "确认 acknowledged",
    "assigned": "指派 assigned",
    "resolved": "解决 resolved",
    "false_alarm": "误报 false alarm",
    "case": "转为工单 made a case",
}
AGES = {"1 h": timedelta(hours=1), "24 h": timedelta(hours=24), "7 d": timedelta(days=7),
        "30 d": timedelta(days=30), "全部 all": None}  # fmt: skip


def render(settings: DashboardSettings, user: User) -> None:
    reader = settings.reader_dsn()
    page(
        settings,
        user,
        session.conn(reader),
        lambda: session.writer(settings),
        widgets.village(reader, session.token()),
    )


def page(
    settings: DashboardSettings,
    user: User,
    reader: psycopg.Connection,
    writer: Callable[[], psycopg.Connection],
    village: dict[str, Any],
) -> None:
    st.title("告警中心 · Alarm centre")
    cols = st.columns(5)
    severities = cols[0].multiselect(
        "级别 Severity",
        list(SEVERITIES),
        format_func=alert_layers.SEVERITY_NAMES.__getitem__,
        placeholder="全部 All",
    )
    rules = cols[1].multiselect(
        "规则 Rule",
        list(CATALOGUE),
        format_func=lambda r: CATALOGUE[r].name,
        placeholder="全部 All",
    )
    all_grids = sorted(village["grid_cells"].grid_code) if len(village["grid_cells"]) else []
    grids_allowed = [g for g in all_grids if user.may_see_grid(g)]
    grids = cols[2].multiselect("网格 Grid", grids_allowed, placeholder="全部 All")
    statuses = cols[3].multiselect(
        "状态 Status", list(STATUS_NAMES), default=["open", "acknowledged"],
        format_func=STATUS_NAMES.__getitem__, placeholder="全部 All",
    )  # fmt: skip
    age = cols[4].selectbox("时间 Last seen within", list(AGES), index=2)
    found = queries.alerts_page(
        reader, severities, rules, grids or (grids_allowed if user.role == "inspector" else []),
        statuses, AGES[str(age)], village=villages.current(),
    )  # fmt: skip
    counts = found.severity.value_counts().to_dict() if len(found) else {}
    st.caption(
        f"{len(found)} 条告警 alerts · "
        + " · ".join(f"{alert_layers.SEVERITY_NAMES[s]} {counts.get(s, 0)}" for s in SEVERITIES)
    )
    drawn = [
        layers.buildings_layer(layers.building_records(village["buildings"])),
        alert_layers.alerts_layer(alert_layers.alert_records(found)),
    ]
    deck = layers.deck(drawn, layers.view_of(village["buildings"]), settings.base_map_url)
    st.pydeck_chart(deck, height=380, key="alarm-map")
    st.markdown(
        f"<div style='font-size:12px'>{alert_layers.legend_html(alert_layers.legend_rows())}</div>",
        unsafe_allow_html=True,
    )
    table = alert_table(found, settings.time_zone)
    widgets.table(table, "暂无告警 No alerts.", key="alarm-table")
    st.download_button("导出 CSV export", csv_bytes(table), file_name="alerts.csv", mime="text/csv")
    if found.empty:
        return
    _act(user, reader, writer, found, settings.time_zone)


def _act(
    user: User,
    reader: psycopg.Connection,
    writer: Callable[[], psycopg.Connection],
    found: pd.DataFrame,
    time_zone: str,
) -> None:
    st.markdown("#### 处理告警 Act on an alert")
    labels = {
        # no status here: a choice's label is not redrawn when only its status changed
        int(r.alert_id): f"#{r.alert_id} · {alert_layers.SEVERITY_NAMES[r.severity]} · {r.title}"
        for r in rows(found)
    }
    alert_id = st.selectbox("告警 Alert", list(labels), format_func=labels.__getitem__,
                            key="alarm-pick")  # fmt: skip
    if alert_id is None:
        return
    row = found[found.alert_id == alert_id].iloc[0]
    rule = CATALOGUE.get(str(row.rule))
    if rule:
        st.info(f"**{rule.name}** — {rule.explanation}")
    left, right = st.columns(2)
    left.caption("经过 History")
    history = queries.alert_history(reader, int(alert_id))
    left.dataframe(history_table(history, time_zone), hide_index=True)
    right.caption("证据 Evidence (events)")
    evidence = [e for e in str(row.evidence or "").split() if e]
    details = queries.event_details(reader, evidence)
    right.dataframe(evidence_table(details, time_zone), hide_index=True)
    staff = queries.grid_staff(reader)
    note = st.text_input("说明 Note", key="alarm-note")
    b = st.columns(4)
    try:
        if b[0].button("确认 Acknowledge", key="alarm-ack"):
            actions.move_alert(writer(), int(alert_id), "acknowledge", note)
            st.success(f"已确认 Acknowledged #{alert_id}")
        if b[1].button("解决 Resolve", key="alarm-resolve"):
            actions.move_alert(writer(), int(alert_id), "resolve", note)
            st.success(f"已解决 Resolved #{alert_id}")
        if b[2].button("误报 False alarm", key="alarm-false"):
            actions.move_alert(writer(), int(alert_id), "false_alarm", note)
            st.success(f"已关闭为误报 Closed as a false alarm #{alert_id}")
    except ValueError as exc:
        st.error(str(exc))
    with b[3].popover("指派 Assign"):
        people = sorted(set(staff.username))
        who = st.selectbox("给 To", people, key="alarm-assignee") if people else None
        if who and st.button("指派 Assign", key="alarm-assign"):
            try:
                actions.assign_alert(writer(), int(alert_id), str(who), note)
                st.success(f"已指派给 Assigned to {who}")
            except ValueError as exc:
                st.error(str(exc))
    st.markdown("#### 转为工单 Make it a case")
    from rules import cases

    category = cases.CATEGORY_OF_RULE.get(str(row.rule), "other")
    team = [cases.Staff(r.grid_code, r.username, r.duty, tuple(r.categories))
            for r in rows(staff)]  # fmt: skip
    suggested, _ = route(row.grid_code, category, team)
    workers = sorted(set(staff[staff.duty == "worker"].username)) or sorted(set(staff.username))
    default = workers.index(suggested) if suggested in workers else 0
    c = st.columns([2, 1])
    worker = c[0].selectbox(
        f"分拨给网格员 Dispatch to (建议 routing suggests: {suggested or '—'})",
        workers, index=default if workers else None, key="alarm-worker",
    )  # fmt: skip
    if c[1].button("转为工单并分拨 Make a case and dispatch", key="alarm-case"):
        try:
            conn = writer()
            case_id, case_no = actions.case_from_alert(conn, int(alert_id), note)
            if worker:
                actions.move_case(conn, case_id, "dispatch", assignee=str(worker))
            st.success(f"工单 Case {case_no} → {worker or '未分拨 not dispatched'}")
        except (CaseError, ValueError) as exc:
            st.error(str(exc))


def alert_table(found: pd.DataFrame, time_zone: str) -> pd.DataFrame:
    """The alarm centre's table of ``queries.alerts_page`` rows, as users read it: bilingual
    headers, severity, rule and status by name, local times, ``—`` for nothing."""
    return pd.DataFrame(
        {
            "编号 No.": found.alert_id,
            "级别 Severity": found.severity.map(alert_layers.SEVERITY_NAMES.get),
            "规则 Rule": found.rule.map(lambda r: CATALOGUE[r].name if r in CATALOGUE else r),
            "告警 Alert": widgets.or_dash(found.title),
            "状态 Status": found.status.map(STATUS_NAMES.get),
            "负责人 Assigned to": widgets.or_dash(found.assigned_to),
            "网格 Grid": widgets.or_dash(found.grid_code),
            "楼栋 Building": widgets.or_dash(found.building_id),
            "单元 Unit": widgets.or_dash(found.unit_id),
            "设备 Device": widgets.or_dash(found.device_id),
            "首次 First seen": widgets.local_minutes(found.first_seen, time_zone),
            "最近 Last seen": widgets.local_minutes(found.last_seen, time_zone),
            "次数 Times": found.occurrences,
        }
    )


def history_table(history: pd.DataFrame, time_zone: str) -> pd.DataFrame:
    """An alert's history (``queries.alert_history``): when (local), who, what, note."""
    return pd.DataFrame(
        {
            "时间 When": widgets.local_minutes(history["at"], time_zone),
            "人员 Who": history.actor.map(lambda a: "规则 rules" if a == "rules" else a),
            "操作 What": history.action.map(lambda a: HISTORY_ACTIONS.get(a, a)),
            "说明 Note": widgets.or_dash(history.note),
        }
    )


def evidence_table(events: pd.DataFrame, time_zone: str) -> pd.DataFrame:
    """The events behind an alert (``queries.event_details``), said in words."""
    return pd.DataFrame(
        {
            "时间 When": widgets.local_minutes(events.ts, time_zone),
            "类型 Type": events.kind.map(label),
            "设备 Device": widgets.or_dash(events.device_id),
            "楼栋 Building": widgets.or_dash(events.building_id),
            "单元 Unit": widgets.or_dash(events.unit_id),
            "情况 What happened": widgets.or_dash(events.what),
        }
    )
