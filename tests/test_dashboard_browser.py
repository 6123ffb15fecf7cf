"""The dashboard's working state and time, in Debian's Chromium (issue 15): a reload keeps the
sign-in (the HttpOnly cookie of dashboard/cookie.py) until sign-out; a deep link opens a
building for a user who may see it and nothing of it for one who may not; an inspection
recorded at 04:00 China time gets that China date on this UTC-run database; and a screenshot
of every page as manager and as inspector (test-artifacts/pages/), none showing an error,
``None``, ``NaT`` or a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import date

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from psycopg.conninfo import conninfo_to_dict
from support import ARTIFACTS, ROOT, add_dashboard_users, dashboard_server
from test_demo_browser import DEMO_PASSWORD, sign_in

from dashboard import app as dashboard_app
from mapping.db import load_village
from mapping.generate import generate

# The database's clock for this test: 2026-11-29 20:00 UTC is 2026-11-30 04:00 in China.
CLOCK = "2026-11-29 20:00:00+00"
CHINA_DATE = date(2026, 11, 30)
SIGNED_IN = "今日事件 Events today"  # on the overview, for every role


@pytest.fixture(scope="module")
def site(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    db = database_factory()
    with psycopg.connect(db, autocommit=True) as conn:
        load_village(conn, generate(seed=3, size="small"))
        grid, mine = conn.execute(
            "SELECT grid_code, min(building_id) FROM buildings WHERE grid_code IS NOT NULL"
            " GROUP BY 1 ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        other = conn.execute(
            "SELECT min(building_id) FROM buildings WHERE grid_code <> %s", (grid,)
        ).fetchone()[0]  # type: ignore[index]
        _traffic(conn, mine)
        # Only record_inspection reads vt.clock (vt_clock(), migration 0162).
        name = conninfo_to_dict(db)["dbname"]
        conn.execute(f"ALTER DATABASE {name} SET vt.clock = '{CLOCK}'")
    env = add_dashboard_users(db, grid, DEMO_PASSWORD)
    subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "users", "add", "manager", "--role", "manager",
         "--password", DEMO_PASSWORD],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    env = {**env, "VT_TIME_ZONE": "Asia/Shanghai"}
    with dashboard_server(env, tmp_path_factory.mktemp("dash") / "dashboard.log") as url:
        yield {"url": url, "db": db, "grid": grid, "mine": mine, "other": other}


def _traffic(conn: psycopg.Connection, building: str) -> None:
    """A little of everything the pages list: events, a dead letter, an alert, a report."""
    device = conn.execute(
        "SELECT device_id FROM devices WHERE kind = 'access' AND building_id = %s LIMIT 1",
        (building,),
    ).fetchone()
    device_id = (
        device[0]
        if device
        else conn.execute("SELECT device_id FROM devices WHERE kind = 'access' LIMIT 1").fetchone()[
            0
        ]
    )  # type: ignore[index]
    for seq in (1, 2, 5):
        conn.execute(
            "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, building_id,"
            " payload) VALUES (now(), now(), %s, %s, %s, 'access.unlock', %s,"
            ' \'{"granted": true, "door": "main", "method": "card"}\')',
            (uuid.uuid4(), device_id, seq, building),
        )
    conn.execute(
        "INSERT INTO building_hourly VALUES (%s, date_trunc('hour', now()), 'access.unlock', 3)",
        (building,),
    )
    conn.execute(
        "INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, payload,"
        " payload_size) VALUES (now(), 't', %s, 'not_json', 'x', 'x', 1)",
        (device_id,),
    )
    conn.execute(
        "INSERT INTO alerts (rule, severity, subject, grid_code, building_id, title, first_seen,"
        " last_seen) SELECT 'smoke_fire', 'critical', 'building:' || building_id, grid_code,"
        " building_id, '烟雾 smoke · test', now(), now() FROM buildings WHERE building_id = %s",
        (building,),
    )
    conn.execute(
        "INSERT INTO incidents (incident_id, reported_at, device_id, category, description,"
        " building_id) VALUES (%s, now(), 'app-resident', 'ebike_charging', '楼道充电 charging',"
        " %s)",
        (uuid.uuid4(), building),
    )


def _context(chromium: Browser) -> BrowserContext:
    return chromium.new_context(viewport={"width": 1400, "height": 1100})


def _signed_in_as(context: BrowserContext, url: str, username: str) -> Page:
    page = context.new_page()
    page.goto(url)
    sign_in(page, username)
    expect(page.get_by_text(SIGNED_IN)).to_be_visible(timeout=60_000)
    return page


def _session_cookie(context: BrowserContext) -> dict[str, object]:
    found = [c for c in context.cookies() if c["name"] == "vt_session"]
    assert len(found) == 1, context.cookies()
    return dict(found[0])


@pytest.mark.browser
def test_a_reload_keeps_the_sign_in_until_sign_out(site: dict[str, str], chromium: Browser) -> None:
    context = _context(chromium)
    page = _signed_in_as(context, site["url"], "manager")
    cookie = _session_cookie(context)
    assert cookie["httpOnly"] is True and cookie["secure"] is True
    assert cookie["sameSite"] == "Strict"
    # The page's scripts cannot read it.
    assert "vt_session" not in str(page.evaluate("document.cookie"))

    page.reload()  # F5
    expect(page.get_by_text(SIGNED_IN)).to_be_visible(timeout=60_000)
    expect(page.get_by_label("密码 Password")).to_have_count(0)
    page.goto(site["url"] + "/events")  # a new page load, another page
    expect(page.get_by_role("heading", name="事件 · Events")).to_be_visible(timeout=60_000)

    page.get_by_role("button", name="退出 Sign out").click()
    expect(page.get_by_label("密码 Password")).to_be_visible(timeout=30_000)
    page.reload()
    expect(page.get_by_label("密码 Password")).to_be_visible(timeout=60_000)
    expect(page.get_by_text(SIGNED_IN)).to_have_count(0)
    assert not [c for c in context.cookies() if c["name"] == "vt_session"]
    # The token is dead in the database too, whatever a browser kept.
    token = str(cookie["value"])
    with psycopg.connect(site["db"]) as conn:
        ended = conn.execute(
            "SELECT ended_at IS NOT NULL FROM app_sessions WHERE token_hash = digest(%s, 'sha256')",
            (token,),
        ).fetchone()
    assert ended == (True,)
    context.close()


@pytest.mark.browser
def test_a_deep_link_opens_a_building_only_for_who_may_see_it(
    site: dict[str, str], chromium: Browser
) -> None:
    mine, other = site["mine"], site["other"]
    manager = _context(chromium)
    page = _signed_in_as(manager, site["url"], "manager")
    # The overview is the default page: its address is the site's root.
    page.goto(f"{site['url']}/?building={other}")
    expect(page.get_by_text(re.compile(rf"· {other}$"))).to_be_visible(timeout=60_000)
    assert f"building={other}" in page.url
    page.screenshot(path=str(ARTIFACTS / "deep-link-manager.png"), full_page=True)
    manager.close()

    inspector = _context(chromium)
    page = _signed_in_as(inspector, site["url"], "inspector")
    page.goto(f"{site['url']}/?building={other}")
    expect(page.get_by_text(f"Not allowed or not found: {other}")).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(rf"· {other}$"))).to_have_count(0)
    page.goto(f"{site['url']}/inspector?building={mine}")
    expect(page.get_by_role("heading", name=re.compile(rf"· {mine}$"))).to_be_visible(
        timeout=60_000
    )
    page.goto(f"{site['url']}/inspector?building={other}")
    expect(page.get_by_text(f"Not allowed or not found: {other}")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("heading", name=re.compile(rf"· {other}$"))).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "deep-link-inspector-refused.png"), full_page=True)
    inspector.close()


@pytest.mark.browser
def test_an_inspection_at_four_in_the_morning_china_time_gets_the_china_date(
    site: dict[str, str], chromium: Browser
) -> None:
    context = _context(chromium)
    page = _signed_in_as(context, site["url"], "inspector")
    page.goto(f"{site['url']}/inspector?building={site['mine']}")
    page.get_by_label("发现 Findings").fill("04:00 夜查 night check: 楼道畅通 stairwell clear")
    page.get_by_role("button", name="保存 Save").click()
    expect(page.get_by_text("已保存 Saved.")).to_be_visible(timeout=30_000)
    with psycopg.connect(site["db"]) as conn:
        stored = conn.execute(
            "SELECT inspected_on FROM inspections WHERE building_id = %s", (site["mine"],)
        ).fetchall()
    assert stored == [(CHINA_DATE,)]  # the UTC date was 2026-11-29
    # After a reload (still signed in, same building from the URL), the inspections
    # table shows it with that date (a data frame's cells are also in a hidden table).
    page.reload()
    expect(page.get_by_text("检查记录 Inspections")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("2026-11-30").first).to_be_attached(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "inspection-local-date.png"), full_page=True)
    context.close()


def _page_paths(role: str) -> list[tuple[str, str]]:
    """(name, address) of each page the role sees; the default page is the site's root."""
    return [
        (m.PAGE.url_path, "" if m.PAGE.default else m.PAGE.url_path)
        for m in dashboard_app.PAGES
        if m.PAGE.shown_to(role)
    ]


@pytest.mark.browser
@pytest.mark.parametrize("role", ["manager", "inspector"])
def test_every_page_renders_without_codes_or_errors(
    site: dict[str, str], chromium: Browser, role: str
) -> None:
    out = ARTIFACTS / "pages"
    os.makedirs(out, exist_ok=True)
    context = _context(chromium)
    page = _signed_in_as(context, site["url"], role)
    for path, address in _page_paths(role):
        page.goto(f"{site['url']}/{address}")
        page.locator("h1").first.wait_for(timeout=60_000)
        # Drawn: no placeholder of an element still loading, then a moment for the maps.
        page.wait_for_function(
            "document.querySelectorAll('[data-testid=\"stSkeleton\"]').length === 0",
            timeout=90_000,
        )
        page.wait_for_timeout(2000)
        # A busy machine draws the WebGL maps slowly: a long timeout, not a flaky one.
        page.screenshot(path=str(out / f"{role}-{path}.png"), full_page=True, timeout=120_000)
        main = page.locator("section.stMain, [data-testid='stMain']").first
        text = main.inner_text()
        assert page.locator("[data-testid='stException']").count() == 0, (path, text[:2000])
        assert page.get_by_text("Page not found").count() == 0, path
        for bad in ("Traceback", "NaT", "None"):
            assert not re.search(rf"\b{bad}\b", text), (path, bad, text[:2000])
    context.close()
