"""End to end, as a person sees it: `villagetwin demo` runs everything, and Debian's Chromium
(driven by Playwright) shows the 3D village with live events from simulated devices."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page
from support import (
    ARTIFACTS,
    ROOT,
    count,
    dashboard_server,
    free_port,
    wait_until,
)

from villagetwin.local import wait_for_port

DEMO_PASSWORD = "demo password 1"


def sign_in(page: Page, username: str, password: str = DEMO_PASSWORD) -> None:
    page.get_by_label("用户名 Username").fill(username)
    page.get_by_label("密码 Password").fill(password)
    page.get_by_role("button", name="登录 Sign in").click()


def non_blank_fraction(png: bytes) -> float:
    """Share of pixels that differ from the most common colour (the empty background)."""
    image = Image.open(io.BytesIO(png)).convert("RGB").resize((200, 150))
    pixels = list(image.get_flattened_data())
    background = max(set(pixels), key=pixels.count)
    far = [p for p in pixels if sum(abs(a - b) for a, b in zip(p, background, strict=True)) > 30]
    return len(far) / len(pixels)


def difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two screenshots, in grey levels."""
    first = Image.open(io.BytesIO(a)).convert("L").resize((160, 120))
    second = Image.open(io.BytesIO(b)).convert("L").resize((160, 120))
    pairs = zip(first.get_flattened_data(), second.get_flattened_data(), strict=True)
    return sum(abs(p - q) for p, q in pairs) / (160 * 120)


def external_requests(page: Page) -> list[str]:
    seen: list[str] = []

    def record(request) -> None:  # type: ignore[no-untyped-def]
        host = urlparse(request.url).hostname or ""
        if request.url.startswith(("http", "ws")) and host not in {"127.0.0.1", "localhost"}:
            seen.append(request.url)

    page.on("request", record)
    return seen


@pytest.fixture(scope="module")
def demo(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, object]]:
    db = database_factory()
    tmp_path = tmp_path_factory.mktemp("demo")
    port, mqtt_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "VT_DB_DSN": db,
        "VT_STATE_DIR": str(tmp_path / "state"),
        "VT_MQTT__PORT": str(mqtt_port),
        "VT_BROKER_TLS_PORT": str(free_port()),  # the demo's broker serves TLS too
        "VT_INGEST__HTTP_PORT": str(metrics_port),
        "VT_INGEST__CLIENT_ID": "vt-demo-test",
        "VT_REFRESH_S": "2",
        "VT_DEMO_PASSWORD": DEMO_PASSWORD,
    }
    log = (tmp_path / "demo.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "villagetwin.cli", "demo", "--port", str(port), "--rate", "30"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for_port("127.0.0.1", port, 90), (tmp_path / "demo.log").read_text()
        yield {
            "url": f"http://127.0.0.1:{port}",
            "started": started,
            "db": db,
            "log": tmp_path / "demo.log",
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        # The demo's broker keeps running for the next demo; this one's was private.
        pid_file = tmp_path / "state" / "mosquitto" / "mosquitto.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def events_metric(page: Page) -> int:
    text = page.get_by_test_id("stMetric").nth(1).inner_text()
    numbers = re.findall(r"\d[\d,]*", text.split("\n")[-1])
    return int(numbers[-1].replace(",", "")) if numbers else 0


@pytest.mark.browser
def test_demo_shows_live_events_on_the_3d_map(demo: dict[str, object], chromium: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    outside = external_requests(page)
    page.goto(str(demo["url"]))
    sign_in(page, "manager")
    canvas = page.locator("canvas").first
    canvas.wait_for(state="visible", timeout=60_000)

    # Events from simulated devices reach the map within 60 s of the demo's start.
    deadline = float(demo["started"]) + 60  # type: ignore[arg-type]
    assert wait_until(
        lambda: events_metric(page) > 0, max(1.0, deadline - time.monotonic()), 1.0
    ), (
        "no events on the dashboard 60 s after start; demo log:\n"
        + Path(str(demo["log"])).read_text()
    )
    assert count(str(demo["db"]), "SELECT count(*) FROM events") > 0
    page.wait_for_timeout(2500)  # let deck.gl draw the refreshed layers
    shot = canvas.screenshot()
    (ARTIFACTS / "demo-map.png").write_bytes(shot)
    page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)
    fraction = non_blank_fraction(shot)
    assert fraction > 0.05, f"the map canvas looks blank ({fraction:.1%} drawn)"

    # The live refresh keeps the user's view (the reset users complain of, streamlit#7656).
    box = canvas.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 250, y + 120, steps=12)
    page.mouse.up()
    page.wait_for_timeout(800)
    moved = canvas.screenshot()
    page.wait_for_timeout(6000)  # several refreshes at VT_REFRESH_S=2
    later = canvas.screenshot()
    (ARTIFACTS / "demo-map-after-refresh.png").write_bytes(later)
    assert difference(moved, later) < difference(shot, later), "the refresh reset the view"
    assert outside == [], f"the page fetched from outside: {outside[:5]}"


@pytest.mark.browser
def test_building_picker_shows_that_buildings_events(
    demo: dict[str, object], chromium: Browser
) -> None:
    db = str(demo["db"])
    assert wait_until(
        lambda: count(db, "SELECT count(*) FROM events WHERE building_id IS NOT NULL") > 0, 60, 1.0
    )
    import psycopg

    with psycopg.connect(db) as conn:
        building_id, address = conn.execute(
            "SELECT e.building_id, b.address FROM events e JOIN buildings b USING (building_id)"
            " LIMIT 1"
        ).fetchone()  # type: ignore[misc]
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(str(demo["url"]))
    sign_in(page, "manager")
    picker = page.get_by_test_id("stSelectbox").first
    picker.wait_for(timeout=60_000)
    picker.click()
    page.keyboard.type(building_id)
    page.keyboard.press("Enter")
    page.get_by_text(f"{address} · {building_id}").wait_for(timeout=30_000)
    page.get_by_test_id("stDataFrame").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "demo-building.png"), full_page=True)


@pytest.fixture(scope="module")
def suzhou_dashboard(
    database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The dashboard over a database holding only the real Suzhou footprints."""
    from support import SHARED_DATA

    db = database_factory()
    env = {**os.environ, "VT_DB_DSN": db}
    imported = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "village", "import",
         str(SHARED_DATA / "real" / "suzhou_oldtown_buildings.geojson"), "--id-prefix", "SZ-"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    added = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "users", "add", "admin", "--role", "admin",
         "--password", DEMO_PASSWORD],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    log = tmp_path_factory.mktemp("dash") / "dashboard.log"
    with dashboard_server(env, log) as url:
        yield url


@pytest.mark.browser
def test_real_suzhou_footprints_in_3d_and_one_buildings_floors(
    suzhou_dashboard: str, chromium: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    outside = external_requests(page)
    page.goto(suzhou_dashboard)
    sign_in(page, "admin")
    canvas = page.locator("canvas").first
    canvas.wait_for(state="visible", timeout=60_000)
    page.get_by_text("楼栋 Buildings").wait_for(timeout=30_000)
    assert "3,076" in page.get_by_test_id("stMetric").first.inner_text().replace("3076", "3,076")
    page.wait_for_timeout(3000)
    village = canvas.screenshot()
    (ARTIFACTS / "suzhou-village.png").write_bytes(village)
    assert non_blank_fraction(village) > 0.05

    # The tallest building: pick it, and its storeys stand as stacked slabs.
    picker = page.get_by_test_id("stSelectbox").first
    picker.click()
    page.keyboard.type("SZ-")
    page.keyboard.press("Enter")
    page.get_by_text("层 storeys ·").first.wait_for(timeout=30_000)
    page.wait_for_timeout(3000)
    floors = page.locator("canvas").first.screenshot()
    (ARTIFACTS / "suzhou-building-floors.png").write_bytes(floors)
    assert non_blank_fraction(floors) > 0.02
    assert floors != village
    assert outside == [], f"the page fetched from outside: {outside[:5]}"
