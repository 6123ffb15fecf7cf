"""End to end in Debian's Chromium: an inspector signs in, finds a building, sees a planted
discrepancy, records an inspection and exports the report, is refused a building outside
their grids, reveals one ID number with a reason; then an admin sees that audit row."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import pypdfium2
import pytest
from playwright.sync_api import Browser, Page, expect
from support import ARTIFACTS, add_dashboard_users, dashboard_server
from test_demo_browser import DEMO_PASSWORD, external_requests, sign_in

from mapping.db import load_village
from mapping.generate import generate

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def site(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    db = database_factory()
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=6, size="small"))
        building, grid, unit = conn.execute(
            "SELECT b.building_id, b.grid_code, t.unit_id FROM buildings b"
            " JOIN units u USING (building_id) JOIN tenancies t USING (unit_id)"
            " WHERE t.end_date IS NULL ORDER BY b.building_id, t.unit_id LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        for n in range(4):  # four strangers used this unit's door today
            conn.execute(
                "INSERT INTO unit_daily_credentials VALUES (%s, current_date, %s, now(), now(), 2)",
                (unit, f"cred:stranger{n}"),
            )
        other = conn.execute(
            "SELECT building_id FROM buildings WHERE grid_code <> %s ORDER BY 1 LIMIT 1", (grid,)
        ).fetchone()[0]  # type: ignore[index]
    env = add_dashboard_users(db, grid, DEMO_PASSWORD)
    log = tmp_path_factory.mktemp("inspector") / "dashboard.log"
    with dashboard_server(env, log) as url:
        yield {"url": url, "db": db, "building": building, "unit": unit, "other": other}


def search(page: Page, code: str) -> None:
    box = page.get_by_label("地址或编号 Address or building code")
    box.fill(code)
    box.press("Enter")


@pytest.mark.browser
def test_inspector_journey_and_the_audit_trail(site: dict[str, str], chromium: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
    outside = external_requests(page)
    page.goto(site["url"])
    sign_in(page, "inspector")
    page.get_by_role("link", name="楼栋检查 Building inspector").click()

    # 2–3: pick the building by search; the planted discrepancy is there, once, under its
    # unit, with the people and the evidence; the thin reader coverage is said, not flagged.
    search(page, site["building"])
    page.get_by_text(f"· {site['building']}", exact=False).first.wait_for(timeout=30_000)
    unit = page.locator("li", has=page.locator("strong", has_text=site["unit"]))
    expect(unit).to_have_count(1, timeout=30_000)
    expect(unit).to_contain_text("人数超过登记 More people than registered")
    expect(unit).to_contain_text("未知卡 unknown card …ger0（1 天 days）")
    expect(unit).to_contain_text("门禁覆盖 reader coverage 0/7 天 days")
    expect(page.get_by_text(re.compile("^观察不足 Not enough observation"))).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "inspector-building.png"), full_page=True)
    # Streamlit scrolls inside its own container: a tall window shows the whole page.
    page.set_viewport_size({"width": 1400, "height": 3200})
    expect(
        page.get_by_role("button", name="下载检查报告 Download the report (PDF)")
    ).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "inspector-whole-page.png"))
    page.set_viewport_size({"width": 1400, "height": 1400})

    # 4: record an inspection (findings, hazards, photos, next visit), then download the
    # report as a PDF and read the inspection back out of it; the CSV holds it too.
    findings = "楼道电动车充电 e-bike charging in the stairwell"
    page.get_by_label("发现 Findings").fill(findings)
    hazards = page.get_by_label("隐患 Hazards")
    hazards.click()
    page.get_by_role("option", name="室内/楼道电动车充电 e-bike charging indoors").click()
    page.keyboard.press("Escape")
    page.get_by_label("照片编号 Photo references (comma-separated)").fill("PH-0001，PH-0002")
    # Streamlit's date input is three spin buttons (year, month, day): typed in order.
    page.get_by_role("spinbutton", name="year, 下次检查 Next visit").click()
    page.keyboard.type("20270115")
    today = {datetime.now(SHANGHAI).date().isoformat()}
    page.get_by_role("button", name="保存 Save").click()
    expect(page.get_by_text("已保存 Saved.")).to_be_visible(timeout=30_000)
    today.add(datetime.now(SHANGHAI).date().isoformat())
    # The download buttons are redrawn at the end of that run, after the inspections table
    # (whose cells are also in an accessible hidden table) shows the new one.
    expect(page.get_by_text(findings).first).to_be_attached(timeout=60_000)
    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=60_000)
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="下载检查报告 Download the report (PDF)").click()
    pdf = ARTIFACTS / "inspector-report.pdf"
    download.value.save_as(pdf)
    document = pypdfium2.PdfDocument(pdf.read_bytes())
    text = "".join(p.get_textpage().get_text_range() for p in document)
    words = "".join(text.split())
    assert "出租屋检查报告" in words and site["building"] in words
    assert "".join(findings.split()) in words
    assert "检查员Inspectorinspector" in words
    assert "室内/楼道电动车充电e-bikechargingindoors" in words
    assert "PH-0001、PH-0002" in words
    assert "下次检查Nextvisit2027-01-15" in words
    assert any(f"检查日期Date{day}" in words for day in today), words  # the local date
    assert site["unit"] in words and "人数超过登记Morepeoplethanregistered" in words
    assert not re.search(r"\b(None|NaT|nan)\b", text)
    document[0].render(scale=1.6).to_pil().save(ARTIFACTS / "inspector-report-page1.png")
    with page.expect_download() as csv:
        page.get_by_role("button", name="导出 CSV Export units and inspection (CSV)").click()
    csv.value.save_as(ARTIFACTS / "inspector-report.csv")
    table = pd.read_csv(ARTIFACTS / "inspector-report.csv", encoding="utf-8-sig", dtype=str)
    assert set(table["发现 Findings"]) == {findings}
    assert set(table["下次检查 Next visit"]) == {"2027-01-15"}
    assert site["unit"] in set(table["单元 Unit"])

    # 6: reveal one ID number, with a reason.
    page.get_by_text("查看完整身份信息 Reveal one record (audited)").click()
    page.get_by_label("理由 Reason (required)").fill("消防安全检查核对身份 identity check")
    page.get_by_label("理由 Reason (required)").press("Enter")
    page.get_by_role("button", name="查看 Reveal").click()
    revealed = page.get_by_text(re.compile(r"\d{17}[\dX].*audited"))
    expect(revealed).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "inspector-reveal.png"), full_page=True)

    # 5: a building outside the inspector's grids is refused.
    search(page, site["other"])
    expect(page.get_by_text(re.compile("Not allowed"))).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "inspector-refused.png"), full_page=True)

    # ... and the admin sees the audit row.
    page.get_by_role("button", name="退出 Sign out").click()
    sign_in(page, "admin")
    page.get_by_role("link", name="审计 Audit log").click()
    # st.dataframe draws on a canvas; its cells are also in an accessible (hidden) table.
    expect(page.get_by_text("消防安全检查核对身份 identity check")).to_be_attached(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "admin-audit.png"), full_page=True)
    with psycopg.connect(site["db"]) as conn:
        rows = conn.execute(
            "SELECT username, action FROM audit_log WHERE action = 'reveal_person'"
        ).fetchall()
        saved = conn.execute("SELECT inspector, building_id FROM inspections").fetchall()
    assert rows == [("inspector", "reveal_person")]
    assert saved == [("inspector", site["building"])]
    assert outside == []
