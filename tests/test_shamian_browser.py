"""The real Shamian OSM export with grid cells drawn for it: imported with its grids, an
inspector added for one cell, who sees that cell's buildings in Debian's Chromium and is
refused the others'; a building outside every cell is given to the cell by hand and then
seen too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
from playwright.sync_api import Browser, Page, expect
from shapely.geometry import box
from support import ARTIFACTS, ROOT, SHARED_DATA, count, dashboard_server
from test_demo_browser import DEMO_PASSWORD, external_requests, sign_in

SHAMIAN = SHARED_DATA / "real" / "guangzhou_shamian_osm_buildings.geojson"
# Two cells over the island, west and east of 113.2395 E; the south-east corner (海星大厦,
# 南美酒店) and the east bank (文化公园) lie outside both.
CELLS = {
    "W": ("沙面西 Shamian west", box(113.2325, 23.107, 113.2395, 23.1125)),
    "E": ("沙面东 Shamian east", box(113.2395, 23.107, 113.2445, 23.1125)),
}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip


def search(page: Page, text: str) -> None:
    field = page.get_by_label("地址或编号 Address or building code")
    field.fill(text)
    field.press("Enter")


@pytest.mark.browser
def test_shamian_with_drawn_grids_and_an_inspector_who_sees_its_buildings(
    db: str, tmp_path: Path, chromium: Browser
) -> None:
    grids = tmp_path / "shamian_grids.geojson"
    gpd.GeoDataFrame(
        {"code": list(CELLS), "name": [n for n, _ in CELLS.values()]},
        geometry=[g for _, g in CELLS.values()], crs="EPSG:4326",
    ).to_file(grids, engine="pyogrio")  # fmt: skip
    env = {**os.environ, "VT_DB_DSN": db}
    imported = cli(
        env, "village", "import", str(SHAMIAN), "--id-prefix", "SM-", "--grid-cells",
        str(grids), "--grid-code-column", "code",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert "grid cells loaded:    2" in imported.stdout
    assert "mojibake" not in imported.stdout  # its French names (Église …) are no mojibake
    outside = re.findall(r"outside grids: (SM-\S+): in no grid cell", imported.stdout)
    assert "SM-w932717800" in outside  # 海星大厦, south of both cells
    in_west = count(db, "SELECT count(*) FROM buildings WHERE grid_code = 'W'")
    assert in_west > 20
    added = cli(env, "users", "add", "shamian", "--role", "inspector", "--grid", "W",
                "--password", DEMO_PASSWORD)  # fmt: skip
    assert added.returncode == 0, added.stderr

    ARTIFACTS.mkdir(exist_ok=True)
    log = tmp_path / "dashboard.log"
    with dashboard_server(env, log) as url:
        page = chromium.new_page(viewport={"width": 1400, "height": 1200})
        requests_outside = external_requests(page)
        page.goto(url)
        sign_in(page, "shamian")
        page.get_by_role("link", name="楼栋检查 Building inspector").click()
        # A building of the inspector's cell: 白天鹅宾馆 (White Swan Hotel), west.
        search(page, "白天鹅宾馆")
        page.get_by_text("· SM-w352610333", exact=False).first.wait_for(timeout=30_000)
        expect(page.get_by_text(re.compile("Not allowed"))).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "shamian-inspector-west.png"), full_page=True)
        # One of the other cell's: 广东外事博物馆, east: refused with the reason.
        search(page, "广东外事博物馆")
        expect(
            page.get_by_text(
                re.compile("Not allowed or not found: no building matching 广东外事博物馆")
            )
        ).to_be_visible(timeout=30_000)
        # Outside every cell: refused, then given to the cell by hand, then seen.
        search(page, "海星大厦")
        expect(
            page.get_by_text(re.compile("Not allowed or not found: no building matching 海星大厦"))
        ).to_be_visible(timeout=30_000)
        assert requests_outside == []
    # The dashboard caches the village for minutes: a fresh one shows the assignment.
    assert cli(env, "village", "set-grid", "W", "SM-w932717800").returncode == 0
    with dashboard_server(env, log) as url:
        page = chromium.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        sign_in(page, "shamian")
        page.get_by_role("link", name="楼栋检查 Building inspector").click()
        search(page, "海星大厦")
        page.get_by_text("· SM-w932717800", exact=False).first.wait_for(timeout=30_000)
        expect(page.get_by_text(re.compile("Not allowed"))).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "shamian-inspector-assigned.png"), full_page=True)
