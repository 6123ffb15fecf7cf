"""End to end in Debian's Chromium: an inspector signs in, finds a building, sees a planted
discrepancy, records an inspection and exports the report, is refused a building outside
their grids, reveals one ID number with a reason; then an admin sees that audit row."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect
from support import ARTIFACTS, add_dashboard_users, dashboard_server
from test_demo_browser import DEMO_PASSWORD, external_requests, sign_in

from mapping.db import load_village
from mapping.generate import generate


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

    # 2–3: pick the building by search; the planted discrepancy is there.
    search(page, site["building"])
    page.get_by_text(f"· {site['building']}", exact=False).first.wait_for(timeout=30_000)
    expect(
        page.get_by_text(re.compile(rf"{site['unit']}.*more people than registered"))
    ).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "inspector-building.png"), full_page=True)

    # 4: record an inspection and export the report.
    page.get_by_label("发现 Findings").fill("楼道电动车充电 e-bike charging in the stairwell")
    page.get_by_role("button", name="保存 Save").click()
    expect(page.get_by_text("已保存 Saved.")).to_be_visible(timeout=30_000)
    with page.expect_download() as download:
        page.get_by_role("button", name="导出报告 Printable report (HTML, print to PDF)").click()
    report = ARTIFACTS / "inspector-report.html"
    download.value.save_as(report)
    assert "出租屋检查报告" in report.read_text() and site["building"] in report.read_text()
    with page.expect_download() as csv:
        page.get_by_role("button", name="导出 CSV").click()
    csv.value.save_as(ARTIFACTS / "inspector-report.csv")

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
