"""工单 · Cases: a grid worker's queue, every case with filters and a map of the open ones,
and the moves 分拨 dispatch → 处置 handle → 办结 close, or reopen, each with its history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, nav, queries, session, widgets
from dashboard.auth import User
from dashboard.settings import DashboardSettings
from mapping import alert_layers, layers
from mapping.frames import rows
from rules import cases

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
        grids = cols[0].multiselect("网格 Grid", grids_allowed, key="case-grids")
        statuses = cols[1].multiselect(
            "状态 Status", list(cases.STATUSES), default=["reported", "dispatched", "handled"],
            format_func=cases.STATUSES.__getitem__, key="case-status",
        )  # fmt: skip
        limit_grids = grids or (grids_allowed if user.role == "inspector" else [])
        found = queries.cases_page(reader, limit_grids, statuses)
    overdue = int(found.overdue.sum()) if len(found) else 0
    st.caption(f"{len(found)} 个工单 cases · 超期 overdue {overdue}")
    open_cases = found[found.status != "closed"]
    drawn = [
        layers.buildings_layer(layers.building_records(village["buildings"])),
        alert_layers.cases_layer(alert_layers.case_records(open_cases)),
    ]
    deck = layers.deck(drawn, layers.view_of(village["buildings"]), settings.base_map_url)
    st.pydeck_chart(deck, height=360, key="cases-map")
    shown = found.drop(columns=["lon", "lat", "elevation", "case_id"]).assign(
        status=lambda f: f.status.map(cases.STATUSES.get),
        category=lambda f: f.category.map(lambda c: cases.CATEGORIES.get(c, c)),
    )
    st.dataframe(shown, hide_index=True, width="stretch", key="case-table")
    if found.empty:
        return
    _act(user, reader, writer, found, staff, workers)


def _act(
    user: User,
    reader: psycopg.Connection,
    writer: Callable[[], psycopg.Connection],
    found: pd.DataFrame,
    staff: pd.DataFrame,
    workers: list[str],
) -> None:
    st.markdown("#### 处理工单 Move a case")
    labels = {
        int(r.case_id): f"{r.case_no} · {cases.STATUSES[r.status]} · {str(r.description)[:40]}"
        for r in rows(found)
    }
    case_id = st.selectbox("工单 Case", list(labels), format_func=labels.__getitem__,
                           key="case-pick")  # fmt: skip
    if case_id is None:
        return
    row = found[found.case_id == case_id].iloc[0]
    team = [cases.Staff(r.grid_code, r.username, r.duty, tuple(r.categories))
            for r in rows(staff)]  # fmt: skip
    suggested, manager = cases.route(row.grid_code, str(row.category), team)
    st.write(
        f"**{row.case_no}** · {cases.CATEGORIES.get(str(row.category), row.category)} · "
        f"优先级 priority {row.priority} · 期限 due {row.due_at:%Y-%m-%d %H:%M}"
        f"{' · **超期 overdue**' if row.overdue else ''} · 网格 grid {row.grid_code or '—'}"
        f" · 升级至 escalated to {row.escalated_to or '—'} · 照片 photos {row.photo_refs or '—'}"
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
    st.dataframe(queries.case_history(reader, int(case_id)), hide_index=True)
