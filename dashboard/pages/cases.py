"""工单 · Cases: a grid worker's queue, every case with filters and a map of the open ones,
and the moves 分拨 dispatch → 处置 handle → 办结 close, or reopen, each with its history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, nav, queries, session, villages, widgets
from dashboard.auth import User
from dashboard.safe import md
from dashboard.settings import DashboardSettings
from mapping import alert_layers, layers
from mapping.frames import rows
from rules import cases

PRIORITY_NAMES = {"urgent": "紧急 urgent", "high": "高 high", "normal": "普通 normal",
                  "low": "低 low"}  # fmt: skip
SOURCE_NAMES = {"app": "居民上报 resident app", "alert": "告警 alert", "staff": "工作人员 staff"}
HISTORY_ACTIONS = {
    "reported": "上报 reported",
    "dispatched": "分拨 dispatched",
    "handled": "处置 handled",
    "closed": "办结 closed",
    "reopened": "重新打开 reopened",
    "escalated": "超期升级 escalated",
}

PAGE = nav.Page(title="工单 Cases", url_path="cases", roles=nav.ALL, icon=":material/assignment:")


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
    st.title("工单 · Cases (上报 → 分拨 → 处置 → 办结)")
    staff = queries.grid_staff(reader)
    workers = sorted(set(staff.username) | {user.username})
    mine = st.toggle("只看我的队列 My queue only", value=user.role == "inspector", key="case-mine")
    if mine:
        who = user.username
        if user.role != "inspector":
            who = st.selectbox(
                "网格员 Grid worker", workers, index=workers.index(user.username), key="case-who"
            )
        found = queries.case_queue(reader, str(who))
        st.subheader(f"{who} 的工单队列 queue · {len(found)}")
    else:
        cols = st.columns(2)
        grids_allowed = [g for g in sorted(village["grid_cells"].grid_code)
                         if user.may_see_grid(g)]  # fmt: skip
        grids = cols[0].multiselect(
            "网格 Grid", grids_allowed, key="case-grids", placeholder="全部 All"
        )
        statuses = cols[1].multiselect(
            "状态 Status", list(cases.STATUSES), default=["reported", "dispatched", "handled"],
            format_func=cases.STATUSES.__getitem__, key="case-status", placeholder="全部 All",
        )  # fmt: skip
        limit_grids = grids or (grids_allowed if user.role == "inspector" else [])
        found = queries.cases_page(reader, limit_grids, statuses, village=villages.current())
    overdue = int(found.overdue.sum()) if len(found) else 0
    st.caption(f"{len(found)} 个工单 cases · 超期 overdue {overdue}")
    open_cases = found[found.status != "closed"]
    drawn = [
        layers.buildings_layer(layers.building_records(village["buildings"])),
        alert_layers.cases_layer(alert_layers.case_records(open_cases)),
    ]
    deck = layers.deck(drawn, layers.view_of(village["buildings"]), settings.base_map_url)
    st.pydeck_chart(deck, height=360, key="cases-map")
    shown = case_table(found, settings.time_zone)
    widgets.table(shown, "暂无工单 No cases.", key="case-table")
    if found.empty:
        return
    _act(user, reader, writer, found, staff, workers, settings.time_zone)


def _act(
    user: User,
    reader: psycopg.Connection,
    writer: Callable[[], psycopg.Connection],
    found: pd.DataFrame,
    staff: pd.DataFrame,
    workers: list[str],
    time_zone: str,
) -> None:
    st.markdown("#### 处理工单 Move a case")
    labels = {int(r.case_id): f"{r.case_no} · {str(r.description)[:40]}" for r in rows(found)}
    case_id = st.selectbox("工单 Case", list(labels), format_func=labels.__getitem__,
                           key="case-pick")  # fmt: skip
    if case_id is None:
        return
    row = found[found.case_id == case_id].iloc[0]
    team = [cases.Staff(r.grid_code, r.username, r.duty, tuple(r.categories))
            for r in rows(staff)]  # fmt: skip
    suggested, manager = cases.route(row.grid_code, str(row.category), team)
    due = widgets.local_minutes(pd.Series([row.due_at]), time_zone).iloc[0]
    st.markdown(  # data stays text (md escapes it)
        md(
            f"{row.case_no} · {cases.CATEGORIES.get(str(row.category), row.category)} · "
            f"{PRIORITY_NAMES.get(str(row.priority), row.priority)} · 期限 due {due}"
            f"{' · 超期 overdue' if row.overdue else ''} · 网格 grid {row.grid_code or '—'}"
            f" · 升级至 escalated to {row.escalated_to or '—'}"
            f" · 照片 photos {row.photo_refs or '—'}"
        )
    )
    moves = sorted(a for (s, a) in cases.MOVES if s == row.status)
    names = {"dispatch": "分拨 dispatch", "handle": "处置 handle (feedback)",
             "close": "办结 close", "reopen": "重新打开 reopen"}  # fmt: skip
    if moves:
        with st.form("case-move"):
            action = st.radio("操作 Action", moves, format_func=names.__getitem__, horizontal=True)
            default = workers.index(suggested) if suggested in workers else 0
            assignee = st.selectbox(
                f"网格员 Grid worker (建议 routing suggests: {suggested or '—'};"
                f" 网格长 manager: {manager or '—'})",
                workers, index=default,
            )  # fmt: skip
            note = st.text_input("说明 / 反馈 Note or feedback")
            if st.form_submit_button("提交 Submit"):
                try:
                    status = actions.move_case(
                        writer(), int(case_id), str(action),
                        assignee=str(assignee), note=note,
                    )  # fmt: skip
                    st.success(f"{row.case_no} → {cases.STATUSES[status]}")
                except (cases.CaseError, ValueError) as exc:
                    st.error(str(exc))
    st.caption("经过 History")
    history = queries.case_history(reader, int(case_id))
    st.dataframe(history_table(history, time_zone), hide_index=True)


def case_table(found: pd.DataFrame, time_zone: str) -> pd.DataFrame:
    """Cases (``queries.cases_page`` / ``case_queue`` rows) as users read them: bilingual
    headers, names for priority, status, category and source, local times, ``—`` for
    nothing."""
    return pd.DataFrame(
        {
            "工单号 Case no.": found.case_no,
            "优先级 Priority": found.priority.map(PRIORITY_NAMES.get),
            "状态 Status": found.status.map(cases.STATUSES.get),
            "超期 Overdue": found.overdue.map(lambda o: "超期 overdue" if o else "—"),
            "类别 Category": found.category.map(lambda c: cases.CATEGORIES.get(c, c)),
            "网格 Grid": widgets.or_dash(found.grid_code),
            "楼栋 Building": widgets.or_dash(found.building_id),
            "单元 Unit": widgets.or_dash(found.unit_id),
            "描述 Description": widgets.or_dash(found.description),
            "网格员 Assigned to": widgets.or_dash(found.assigned_to),
            "上报 Reported": widgets.local_minutes(found.reported_at, time_zone),
            "期限 Due": widgets.local_minutes(found.due_at, time_zone),
            "升级至 Escalated to": widgets.or_dash(found.escalated_to),
            "来源 Source": found.source.map(lambda v: SOURCE_NAMES.get(v, v)),
            "反馈 Feedback": widgets.or_dash(found.feedback),
        }
    )


def history_table(history: pd.DataFrame, time_zone: str) -> pd.DataFrame:
    """A case's history (``queries.case_history``): when (local), who, what, from, to, note."""
    return pd.DataFrame(
        {
            "时间 When": widgets.local_minutes(history["at"], time_zone),
            "人员 Who": history.actor.map(lambda a: "规则 rules" if a == "rules" else a),
            "操作 What": history.action.map(lambda a: HISTORY_ACTIONS.get(a, a)),
            "从 From": history["from"].map(lambda v: cases.STATUSES.get(v, "—")),
            "到 To": history["to"].map(lambda v: cases.STATUSES.get(v, "—")),
            "说明 Note": widgets.or_dash(history.note),
        }
    )
