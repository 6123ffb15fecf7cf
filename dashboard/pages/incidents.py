"""工单 Incidents."""

from __future__ import annotations

import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, fmt, nav, queries, session
from dashboard.auth import User
from dashboard.settings import DashboardSettings

PAGE = nav.Page(
    title="居民上报 Reports", url_path="incidents", roles=nav.OFFICE, icon=":material/report:"
)


def render(settings: DashboardSettings, user: User) -> None:
    st.title("居民上报 · Resident reports")
    conn = session.conn(settings.reader_dsn())
    incidents = queries.open_incidents(conn)
    st.caption(
        f"{len(incidents)} 条未结上报 open reports"
        " (上报 reported → 已指派 assigned → 已解决 resolved)"
    )
    if incidents.empty:
        return
    st.dataframe(
        fmt.table(incidents, settings.time_zone, drop=["incident_id"]),
        hide_index=True, width="stretch",
    )  # fmt: skip
    with st.form("incident"):
        chosen = st.selectbox(
            "上报 Report", incidents.incident_id.astype(str).tolist(),
            format_func=lambda i: _incident_label(incidents, i),
        )  # fmt: skip
        status = st.radio(
            "改为 Move to", ["assigned", "resolved"], horizontal=True,
            format_func=lambda s: fmt.code("status", s),
        )  # fmt: skip
        assignee = st.text_input("指派给 Assign to (grid worker)")
        if st.form_submit_button("更新 Update"):
            try:
                moved = actions.move_incident(
                    session.writer(settings), str(chosen), str(status), assignee
                )
            except (ValueError, psycopg.errors.RaiseException) as exc:
                st.error(str(exc))
            else:
                if moved:
                    st.success("已更新 Updated.")
                else:
                    st.error("此上报已解决 That report is already resolved.")


def _incident_label(incidents: pd.DataFrame, incident_id: str) -> str:
    row = incidents[incidents.incident_id.astype(str) == incident_id].iloc[0]
    return (
        f"{fmt.code('category', row.category)} · {row.building_id or '—'}"
        f" · {str(row.description)[:30]} ({fmt.code('status', row.status)})"
    )
