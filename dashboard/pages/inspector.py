"""楼栋检查 Building inspector."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, inspection, nav, queries, report_pdf, session, widgets
from dashboard.auth import User
from dashboard.safe import md
from dashboard.settings import DashboardSettings
from mapping import alert_layers, db as village_db, layers
from mapping.frames import rows

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
    ways = ["地址 address", "网格 grid"]
    by = st.radio(
        "查找方式 Find by", ways, horizontal=True, index=1 if "grid" in st.query_params else 0
    )
    if by.startswith("网格"):
        grids = sorted({str(g) for g in mine.grid_code.dropna()})
        grid = st.selectbox("网格 Grid", grids, index=widgets.url_index("grid", grids) or 0)
        widgets.to_url("grid", grid)
        choices = mine[mine.grid_code == grid]
    else:
        widgets.to_url("grid", None)
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
    options = sorted(labels)
    wanted = st.query_params.get("building")
    if wanted and wanted not in set(mine.building_id):  # not the user's, or no such building
        st.warning(md(f"无权查看或不存在 Not allowed or not found: {wanted}"))
    building_id = st.selectbox(
        "楼栋 Building", options, index=widgets.url_index("building", options) or 0,
        format_func=lambda b: f"{labels[b]} ({b})",
    )  # fmt: skip
    widgets.to_url("building", building_id)
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
    zone = settings.zone()
    st.subheader(md(f"{row.address} · {building_id}"))
    units = village_db.read_units(conn, building_id)
    registered = queries.registered_tenants(conn, building_id)
    observed = queries.observed_credentials(conn, building_id, settings.observation_days)
    ended = queries.ended_tenancies(conn, building_id)
    table = inspection.unit_comparison(units, registered, observed)
    days = queries.reader_days(conn, building_id, settings.observation_days)
    strangers = sorted(set(observed.credential_ref) - set(registered.credential_ref))
    names = queries.names_by_credential(conn, strangers)
    found = inspection.findings(
        registered, observed, ended, days, settings.observation_days, names, zone=zone
    )
    cols = st.columns(4)
    cols[0].metric("层数 Storeys", int(row.storeys))
    cols[1].metric("单元 Units", len(units))
    cols[2].metric("登记租户 Registered", len(registered))
    cols[3].metric("异常 Discrepancies", len(found.issues))
    landlord = widgets.mask_text(row.landlord)
    st.markdown(md(f"业主 Landlord: {landlord} · 网格 Grid: {row.grid_code or '—'}"))
    _discrepancies(found, table)
    _floors(settings, row, units, table, found.issues)
    st.markdown(f"#### 单元 Units (门禁观察 observed over {settings.observation_days} 天 days)")
    units_shown = inspection.units_table(table, found.issues, zone)
    st.dataframe(units_shown, hide_index=True, width="stretch")
    st.markdown("#### 登记租户 Registered tenants (已脱敏 masked)")
    tenants = inspection.tenants_table(registered, zone, list(units_shown["单元 Unit"]))
    st.dataframe(tenants, hide_index=True, width="stretch")
    with st.expander("查看完整身份信息 Reveal one record (audited)"):
        widgets.reveal_form(conn, registered, row)
    _record_form(settings, building_id)
    past = inspection.inspections_from(queries.inspections(conn, building_id))
    st.markdown("#### 检查记录 Inspections")
    if past:
        st.dataframe(inspection.inspections_table(past, zone), hide_index=True, width="stretch")
    else:
        st.caption("暂无检查记录 No inspection recorded yet.")
    report = inspection.Report(
        building_id, str(row.address), int(row.storeys), str(row.grid_code or ""), landlord,
        table, found, past, user.username, datetime.now(UTC), zone,
    )  # fmt: skip

    def pdf() -> bytes:
        return report_pdf.pdf_bytes(
            report, settings.report_font, settings.report_font_bold, settings.report_font_index
        )

    left, right = st.columns(2)
    # The PDF is made when the button is clicked (1-2 s: the CJK font's subset), on
    # Streamlit's thread for deferred downloads, not at every rerun of the page.
    left.download_button(
        "下载检查报告 Download the report (PDF)", pdf, file_name=f"{building_id}-inspection.pdf",
        mime="application/pdf", on_click="ignore",
    )  # fmt: skip
    right.download_button(
        "导出 CSV Export units and inspection (CSV)", inspection.report_csv(report),
        file_name=f"{building_id}-inspection.csv", mime="text/csv", on_click="ignore",
    )  # fmt: skip


UNITS_SHOWN = 50  # units listed with their discrepancies on the page; the PDF and CSV hold all


def _discrepancies(found: inspection.Findings, table: pd.DataFrame) -> None:
    """Each unit once, its discrepancies under it, each naming the masked person and the
    evidence; 观察不足 said above them, not counted as a discrepancy."""
    st.markdown(f"#### 异常 Discrepancies ({len(found.issues)})")
    note = found.note()
    if note:
        st.info(note)
    grouped = inspection.by_unit(found.issues)
    if not grouped:
        st.caption("无异常 No discrepancies.")
        return
    where = {str(r.unit_id): f" · {r.floor} 层 floor · {r.room} 室 room" for r in rows(table)}
    shown = grouped[:UNITS_SHOWN]
    lines = []
    for unit, issues in shown:
        lines.append(f"- **{md(unit)}**{md(where.get(unit, ''))}")
        lines += [f"    - {md(d.label)}: {md(d.detail)}" for d in issues]
    st.markdown("\n".join(lines))
    more = len(grouped) - len(shown)
    if more:
        st.caption(f"另有 {more} 个单元，见 PDF 与 CSV {more} more units in the PDF and the CSV.")


def _floors(
    settings: DashboardSettings, row: Any, units: pd.DataFrame, table: pd.DataFrame,
    issues: list[inspection.Discrepancy],
) -> None:  # fmt: skip
    """The building alone, its floors stacked and each unit coloured by its status, with the
    legend of the statuses shown."""
    st.markdown("#### 楼层与单元 Floors and units")
    uses = units[["unit_id", "use"]] if "use" in units else units[["unit_id"]]
    status = inspection.unit_status(table.merge(uses, on="unit_id", how="left"), issues)
    records = layers.floor_records(row.geometry, int(row.storeys), units, status)
    # Framed on the whole building: a taller one is seen from further away (a zoom level
    # halves the metres a pixel shows; 18 m, six storeys, fill the chart at 19.6).
    zoom = 19.6 - max(0.0, math.log2(int(row.storeys) * 3.0 / 18.0))
    view = layers.View(lon=float(row.lon), lat=float(row.lat), zoom=max(zoom, 16.5), pitch=45.0)
    deck = layers.deck([layers.floors_layer(records)], view, settings.base_map_url)
    st.pydeck_chart(deck, height=460, key="inspector-floors")
    shown = set(status.values())
    legend = [
        (label, colour)
        for (label, colour), code in zip(layers.unit_legend(), layers.UNIT_STATUS_COLOURS,
                                         strict=True)
        if code in shown
    ]  # fmt: skip
    st.markdown(
        f"<div style='font-size:12px'>{alert_layers.legend_html(legend)}</div>",
        unsafe_allow_html=True,
    )


def _record_form(settings: DashboardSettings, building_id: str) -> None:
    with st.form("inspection", clear_on_submit=True):
        st.markdown("#### 新检查 Record an inspection")
        findings = st.text_area(
            "发现 Findings", placeholder="例如：三楼楼道电动车充电 e.g. e-bike charging, 3rd floor"
        )
        hazards = st.multiselect(
            "隐患 Hazards", inspection.HAZARDS, format_func=inspection.HAZARD_LABELS.__getitem__,
            placeholder="选择隐患 Choose hazards",
        )  # fmt: skip
        photos = st.text_input(
            "照片编号 Photo references (comma-separated)", placeholder="PH-0001, PH-0002"
        )
        next_visit = st.date_input("下次检查 Next visit", value=None, format="YYYY-MM-DD")
        if st.form_submit_button("保存 Save"):
            if not findings.strip():
                st.error("请填写发现 Write the findings.")
            else:
                actions.record_inspection(  # dated by the database: the village's local date
                    session.writer(settings),
                    building_id,
                    settings.time_zone,
                    findings.strip(),
                    hazards,
                    [p.strip() for p in photos.replace("，", ",").split(",") if p.strip()],
                    next_visit if isinstance(next_visit, date) else None,
                )
                st.success("已保存 Saved.")
