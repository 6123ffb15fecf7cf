"""楼栋检查 Building inspector."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, inspection, nav, queries, session, widgets
from dashboard.auth import User
from dashboard.safe import csv_bytes, md
from dashboard.settings import DashboardSettings
from mapping import db as village_db

PAGE = nav.Page(
    title="楼栋检查 Building inspector",
    url_path="inspector",
    roles=nav.ALL,
    icon=":material/apartment:",
)


def render(settings: DashboardSettings, user: User) -> None:
    st.title("楼栋检查 · Building inspector")
    try:
        conn = session.conn(settings.reader_dsn())
        buildings = widgets.village(settings.reader_dsn(), session.token())["buildings"]
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
    st.markdown(
        md(f"业主 Landlord: {widgets.mask_text(row.landlord)} · 网格 Grid: {row.grid_code or '—'}")
    )
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
        widgets.reveal_form(conn, registered, row)
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
                    session.writer(settings),
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
