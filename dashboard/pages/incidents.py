"""工单 Incidents."""

from __future__ import annotations

import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, nav, queries, session
from dashboard.auth import User
from dashboard.settings import DashboardSettings

PAGE = nav.Page(
    title="工单 Incidents", url_path="incidents", roles=nav.OFFICE, icon=":material/report:"
)


def render(settings: DashboardSettings, user: User) -> None:
    st.title("事件工单 · Incidents")
    conn = session.conn(settings.reader_dsn())
    incidents = queries.open_incidents(conn)
    st.caption(f"{len(incidents)} 个未结 open (reported → assigned → resolved)")
    if incidents.empty:
        return
    st.dataframe(incidents, hide_index=True, width="stretch")
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
                    session.writer(settings), str(chosen), str(status), assignee
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
