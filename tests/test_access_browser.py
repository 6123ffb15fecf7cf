"""Issue 14 in Debian's Chromium: an inspector's browser never receives another grid's
building on any page; addresses with Markdown links and HTML stay text in headings, map
tooltips and exports (CSV formulas neutralised); an idle session stops getting data."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect
from support import ARTIFACTS, add_dashboard_users, dashboard_server, wait_until
from test_demo_browser import DEMO_PASSWORD, sign_in

from mapping.db import load_village
from mapping.generate import generate

ATTACK = '<img src=x onerror="window.__vtxss=1">[x](https://example.invalid)'
FORMULA = '=HYPERLINK("https://example.invalid","x")'
GRID = "LH-G01"


@pytest.fixture(scope="module")
def site(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    db = database_factory()
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=6, size="small"))
        # Imported data that tries to be markup or a formula, in the inspector's grid.
        conn.execute(
            "UPDATE buildings SET address = %s || ' ' || building_id WHERE grid_code = %s",
            (ATTACK, GRID),
        )
        mine, unit = conn.execute(
            "SELECT b.building_id, min(u.unit_id) FROM buildings b JOIN units u"
            " USING (building_id) WHERE b.grid_code = %s GROUP BY 1 ORDER BY 1 LIMIT 1",
            (GRID,),
        ).fetchone()  # type: ignore[misc]
        conn.execute("UPDATE units SET room = %s WHERE unit_id = %s", (FORMULA, unit))
        others = [
            r[0]
            for r in conn.execute(
                "SELECT building_id FROM buildings WHERE grid_code <> %s", (GRID,)
            )
        ]
        # Traffic everywhere, so a leak would have something to show.
        conn.execute(
            "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, building_id,"
            " payload) SELECT now() - interval '1 minute', now(), gen_random_uuid(),"
            " 'acc-' || lower(building_id), 1, 'access.unlock', building_id, '{}'"
            " FROM buildings"
        )
        conn.execute(
            "INSERT INTO building_hourly SELECT building_id, date_trunc('hour', now()),"
            " 'access.unlock', 1 FROM buildings"
        )
    add_dashboard_users(db, GRID, DEMO_PASSWORD)
    env = {**os.environ, "VT_DB_DSN": db, "VT_REFRESH_S": "2"}
    log = tmp_path_factory.mktemp("access") / "dashboard.log"
    with dashboard_server(env, log) as url:
        yield {"url": url, "db": db, "mine": mine, "others": ",".join(others)}


def _frames(page: Page) -> list[str]:
    """Everything the dashboard's server sends to this page over its WebSocket, as text."""
    seen: list[str] = []

    def on_socket(ws) -> None:  # type: ignore[no-untyped-def]
        ws.on(
            "framereceived",
            lambda payload: seen.append(
                payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
            ),
        )

    page.on("websocket", on_socket)
    return seen


@pytest.mark.browser
def test_an_inspector_never_receives_another_grids_building_on_any_page(
    site: dict[str, str], chromium: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    frames = _frames(page)
    response = page.goto(site["url"])
    # Item 9: the page may not be framed by another site.
    assert response is not None
    assert response.headers.get("x-frame-options") == "DENY"
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "")
    sign_in(page, "inspector")
    expect(page.get_by_text("今日事件 Events today")).to_be_visible(timeout=60_000)

    # Map tooltips: hover over the map until a building's tooltip shows; the address is text.
    canvas = page.locator("[data-testid='stDeckGlJsonChart'] canvas").first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    assert box is not None
    tooltip = page.locator(".deck-tooltip")
    shown = ""
    for fx in range(2, 19):
        for fy in range(2, 19):
            page.mouse.move(box["x"] + box["width"] * fx / 20, box["y"] + box["height"] * fy / 20)
            page.wait_for_timeout(40)
            if tooltip.count() and tooltip.first.is_visible():
                shown = tooltip.first.inner_text()
                if "onerror" in shown:
                    break
        if "onerror" in shown:
            break
    page.screenshot(path=str(ARTIFACTS / "access-tooltip.png"))
    assert "<img src=x" in shown, f"no building tooltip found (last: {shown!r})"
    assert page.evaluate("window.__vtxss") is None
    assert page.locator("img[src='x']").count() == 0

    # The inspector page: the heading shows the address as typed, the export is inert.
    page.get_by_role("link", name="楼栋检查 Building inspector").click()
    box_ = page.get_by_label("地址或编号 Address or building code")
    box_.fill(site["mine"])
    box_.press("Enter")
    heading = page.get_by_role("heading").filter(has_text=f"· {site['mine']}")
    heading.first.wait_for(timeout=30_000)
    shown = heading.first.inner_text().replace("\u2060", "")  # WORD JOINERs stop autolinks
    assert ATTACK in shown
    links = page.locator("a[href^='https://example.invalid']")
    assert links.count() == 0, links.first.evaluate("a => a.parentElement.outerHTML")
    assert page.evaluate("window.__vtxss") is None
    with page.expect_download() as download:
        page.get_by_role("button", name="导出 CSV").click()
    text = download.value.path().read_text(encoding="utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert "'" + FORMULA in cells
    assert not [c for c in cells if c.startswith(("=", "+", "@"))]

    # Another grid's building: refused by search, and on every other page.
    other = site["others"].split(",")[0]
    box_.fill(other)
    box_.press("Enter")
    expect(page.get_by_text("Not allowed or not found")).to_be_visible(timeout=30_000)
    for path in ("events", "devices", "replay", "quality", "incidents", "audit", "overview"):
        page.goto(f"{site['url']}/{path}")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(2_000)
        assert other not in page.content(), path
    page.screenshot(path=str(ARTIFACTS / "access-refused.png"), full_page=True)

    received = "".join(frames)
    assert site["mine"] in received  # the inspector's own buildings do arrive...
    # ... and nothing of any other grid's building ever does (the one typed into the search
    # box comes back only inside the refusal that echoes the search).
    leaked = [b for b in site["others"].split(",") if b in received and b != other]
    assert leaked == []


@pytest.fixture
def short_session_site(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    db = database_factory()
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=7, size="small"))
    add_dashboard_users(db, GRID, DEMO_PASSWORD)
    env = {**os.environ, "VT_DB_DSN": db, "VT_REFRESH_S": "1",
           "VT_SESSION_TIMEOUT_MINUTES": "0.15"}  # fmt: skip
    log = tmp_path_factory.mktemp("timeout") / "dashboard.log"
    with dashboard_server(env, log) as url:
        yield {"url": url, "db": db}


def _last_dashboard_statement(db: str) -> Any:
    """When the dashboard's role last started or finished a statement on this database (its
    pooled connections stay open; their state_change moves with every statement)."""
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT max(state_change) FROM pg_stat_activity WHERE usename = 'vt_dashboard'"
            " AND datname = current_database()"
        ).fetchone()
    return row[0] if row else None


@pytest.mark.browser
def test_an_idle_session_stops_receiving_live_data(
    short_session_site: dict[str, str], chromium: Browser
) -> None:
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(short_session_site["url"])
    sign_in(page, "admin")
    expect(page.get_by_text("今日事件 Events today")).to_be_visible(timeout=60_000)
    assert _last_dashboard_statement(short_session_site["db"]) is not None
    # No user action: the map keeps refreshing every second until the 9 s idle limit.
    expect(page.get_by_text("Session timed out")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("今日事件 Events today")).to_have_count(0)
    # From then on the page sends the database nothing: over five refresh periods no statement
    # of the dashboard's role starts; and the database refuses the session's token.
    # (The run that showed the form gives its connection back to the pool, which resets it:
    # wait for that last statement first.)
    db = short_session_site["db"]
    seen = [_last_dashboard_statement(db)]

    def settled() -> bool:
        page.wait_for_timeout(1_000)
        seen.append(_last_dashboard_statement(db))
        return seen[-1] == seen[-2]

    assert wait_until(settled, 15)
    page.wait_for_timeout(5_000)
    assert _last_dashboard_statement(db) == seen[-1]
    with psycopg.connect(short_session_site["db"]) as conn:
        row = conn.execute(
            "SELECT bool_and(last_seen + idle < now()) FROM app_sessions WHERE username = 'admin'"
        ).fetchone()
    assert row == (True,)
