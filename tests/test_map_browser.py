"""The map is the way in, in Debian's Chromium: a click on a building opens its panel and shows
its floors through faded neighbours; an offline device is found in one step on the devices
page; screenshots of the picked building, the devices and the heat map for a person to look
at (test-artifacts/map-*.png)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from playwright.sync_api import Browser, Page, TimeoutError as PlaywrightTimeout, expect
from support import ARTIFACTS, add_dashboard_users, dashboard_server
from test_demo_browser import DEMO_PASSWORD, sign_in

from mapping.db import load_village
from mapping.generate import generate


@pytest.fixture(scope="module")
def site(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    db = database_factory()
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=6, size="small"))
        grid = conn.execute("SELECT min(grid_code) FROM buildings").fetchone()[0]  # type: ignore[index]
        conn.execute("UPDATE devices SET online = true, last_seen = now(),"
                     " status_changed_at = now() - interval '1 day'")  # fmt: skip
        offline = conn.execute(
            "UPDATE devices SET online = false,"
            " status_changed_at = now() - interval '3 hours 5 minutes' WHERE device_id ="
            " (SELECT max(device_id) FROM devices WHERE kind = 'access')"
            " RETURNING device_id"
        ).fetchone()[0]  # type: ignore[index]
        # Recent door events, busier in the first buildings, for the heat map to show.
        conn.execute(
            "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, building_id,"
            " payload) SELECT now() - (n % 50) * interval '1 minute', now(), gen_random_uuid(),"
            " 'acc-' || lower(b.building_id), n, 'access.unlock', b.building_id, '{}'"
            " FROM buildings b, generate_series(1, 12) AS n"
            " WHERE n <= 12 - (right(b.building_id, 2)::int % 12)"
        )
    env = add_dashboard_users(db, grid, DEMO_PASSWORD)
    env["VT_REFRESH_S"] = "60"  # the map stays still while the test clicks it
    log = tmp_path_factory.mktemp("map") / "dashboard.log"
    with dashboard_server(env, log) as url:
        yield {"url": url, "db": db, "offline": offline}


def map_canvas(page: Page) -> dict[str, float]:
    chart = page.locator("[data-testid=stDeckGlJsonChart]").first
    chart.locator("canvas").first.wait_for(timeout=60_000)
    box = chart.bounding_box()
    assert box is not None
    return box


def building_under(page: Page, x: float, y: float) -> str | None:
    """Hovers at (x, y) and reads the building id from the map's tooltip, if a building is
    there (its second line: "LH00131 · 8 层 storeys")."""
    page.mouse.move(x, y)
    tooltip = page.locator(".deck-tooltip").first
    for _ in range(10):
        time.sleep(0.2)
        if tooltip.count() and tooltip.is_visible():
            found = re.search(r"^(\S+) · \d+ 层 storeys$", tooltip.inner_text(), re.M)
            return found.group(1) if found else None
    return None


@pytest.mark.browser
def test_a_click_on_a_building_opens_its_panel(site: dict[str, str], chromium: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(site["url"])
    sign_in(page, "admin")
    box = map_canvas(page)
    time.sleep(3)  # the first frames
    page.screenshot(path=str(ARTIFACTS / "map-overview-devices.png"))
    # A building near the middle of the map, as a person would find it: by hovering.
    near = (0.5, 0.45, 0.55, 0.4, 0.6)
    spots = [(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
             for fy in near for fx in near]  # fmt: skip
    building, spot = None, (0.0, 0.0)
    for x, y in spots:
        building = building_under(page, x, y)
        if building:
            spot = (x, y)
            break
    assert building, "no building under the middle of the map"
    heading = page.get_by_role("heading", name=re.compile(rf"· {building}$"))
    # Headless Chromium renders WebGL in software (SwiftShader): deck.gl's click picking can
    # miss while a frame is still being drawn, so a click that picked nothing (the selection
    # stays empty, nothing changes) is repeated, as a person would click again.
    for _attempt in range(10):
        page.mouse.click(*spot)
        try:
            heading.wait_for(timeout=8_000)
            break
        except PlaywrightTimeout:  # not opened yet: click again
            building_under(page, *spot)
    expect(heading).to_be_visible()
    # The sidebar's picker follows the click, and the picked building's units have a legend.
    picker = page.get_by_role("combobox", name="选择楼栋 Pick a building")
    expect(picker).to_have_value(re.compile(rf"\({building}\)$"))
    expect(page.get_by_text("人数超过登记 overcrowded")).to_be_visible()
    map_canvas(page)
    page.mouse.move(5, 5)  # no hover highlight or tooltip in the picture
    time.sleep(4)
    page.locator("[data-testid=stDeckGlJsonChart]").first.screenshot(
        path=str(ARTIFACTS / "map-picked-building.png")
    )
    page.screenshot(path=str(ARTIFACTS / "map-picked-building-page.png"), full_page=True)

    page.close()


@pytest.mark.browser
def test_an_offline_device_is_found_in_one_step(site: dict[str, str], chromium: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(site["url"])
    sign_in(page, "admin")
    # Buildings coloured by recent events on their fixed scale, and the heat map drawn over
    # them with its own fixed scale: both legends under the map.
    page.get_by_text("近期事件 recent events").click()
    expect(page.get_by_text("近期事件 recent events: 0")).to_be_visible(timeout=30_000)
    page.get_by_text("热力 heat map").click()
    expect(page.get_by_text("热度 heat 10+")).to_be_visible(timeout=30_000)
    map_canvas(page)
    time.sleep(4)
    page.screenshot(path=str(ARTIFACTS / "map-heatmap.png"))

    page.get_by_role("link", name="设备 Devices").click()  # the one step
    grid = page.get_by_test_id("stDataFrame").first
    grid.wait_for(timeout=60_000)
    # The table's first row is the offline device, with how long it has been offline.
    # (glide's grid keeps an accessible copy of the rows it draws: cell column-row)
    expect(grid.get_by_test_id("glide-cell-0-0")).to_have_text(site["offline"], timeout=30_000)
    expect(grid.get_by_test_id("glide-cell-1-0")).to_have_text("离线 offline")
    expect(grid.get_by_test_id("glide-cell-2-0")).to_have_text("离线 3 小时 (3 h)")
    expect(grid.get_by_test_id("glide-cell-1-1")).to_have_text("在线 online")
    expect(page.get_by_text("设备 device 离线 offline")).to_be_visible()  # the map's legend
    page.screenshot(path=str(ARTIFACTS / "map-devices-page.png"), full_page=True)
    # The filter keeps the offline ones only.
    page.get_by_text("仅离线 offline only").click()
    expect(page.get_by_text("1 台设备 devices")).to_be_visible(timeout=30_000)
    page.close()
