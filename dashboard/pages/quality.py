"""数据质量 Data quality."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from dashboard import fmt, nav, queries, session
from dashboard.auth import User
from dashboard.settings import DashboardSettings

PAGE = nav.Page(
    title="数据质量 Data quality", url_path="quality", roles=nav.OFFICE, icon=":material/rule:"
)


def render(settings: DashboardSettings, user: User) -> None:
    st.title("数据质量 · Data quality")
    conn = session.conn(settings.reader_dsn())
    window = timedelta(hours=24)
    lag = queries.ingest_lag(conn, timedelta(hours=1))
    cols = st.columns(4)
    cols[0].metric("设备→平台 device→received p50", fmt.seconds(lag["network_p50"], 2))
    cols[1].metric("p95", fmt.seconds(lag["network_p95"], 2))
    cols[2].metric("接收→入库 received→stored p50", fmt.seconds(lag["batching_p50"], 3))
    cols[3].metric("p95 ", fmt.seconds(lag["batching_p95"], 3))
    left, right = st.columns(2)
    left.markdown("#### 死信原因 Dead letters by reason (24 h)")
    left.dataframe(
        fmt.table(queries.dead_letters_by(conn, "reason", window), settings.time_zone,
                     coded={"reason": "dead_letter"}),
        hide_index=True,
    )  # fmt: skip
    right.markdown("#### 按设备 By device (24 h)")
    right.dataframe(
        fmt.table(queries.dead_letters_by(conn, "device_id", window), settings.time_zone),
        hide_index=True,
    )
    st.markdown("#### 序号缺口 Sequence gaps (24 h): events lost before they were stored")
    gaps = queries.sequence_gaps(conn, window)
    if gaps.empty:
        st.caption("无 Nothing missing.")
    else:
        st.dataframe(fmt.table(gaps, settings.time_zone), hide_index=True, width="stretch")
    st.markdown("#### 最近死信 Latest dead letters")
    st.dataframe(
        fmt.table(queries.latest_dead_letters(conn), settings.time_zone,
                     coded={"reason": "dead_letter"}),
        hide_index=True, width="stretch",
    )  # fmt: skip
