"""From sensing to action in the browser: two simulated days with planted anomalies go through
the real ingester and the `villagetwin rules` worker; a manager sees a smoke detection as an
alert on the Overview within 10 s of it being published, acknowledges it, turns it into a case
and dispatches it; the grid worker's queue shows the case."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
import pytest
from playwright.sync_api import Browser, expect
from support import ARTIFACTS, ROOT, count, dashboard_server, wait_until
from test_demo_browser import DEMO_PASSWORD, sign_in

from devices.day import plan_days, replay
from devices.payloads import CameraDetection, encode
from devices.settings import SimulatorSettings
from devices.topics import event_topic
from mapping.db import load_village
from mapping.generate import generate
from rules.case_store import add_staff
from rules.logic import CST
from villagetwin.village_devices import sim_village


@pytest.fixture
def site(
    db: str, broker: Any, start_ingester: Callable[..., Any], tmp_path: Path
) -> Iterator[dict[str, Any]]:
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=4, size="small"))
        sim = sim_village(conn)
        building, grid = conn.execute(
            "SELECT building_id, grid_code FROM buildings WHERE use = 'residential'"
            " ORDER BY building_id DESC LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        add_staff(conn, grid, "inspector", "worker")
        add_staff(conn, grid, "manager", "manager")
    env = {**os.environ, "VT_DB_DSN": db, "VT_MQTT__PORT": str(broker.settings.port),
           "VT_REFRESH_S": "2"}  # fmt: skip
    for args in (["manager", "--role", "manager"], ["inspector", "--role", "inspector",
                                                     "--grid", grid]):  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "villagetwin.cli", "users", "add", *args,
             "--password", DEMO_PASSWORD], cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
    running = start_ingester(db, broker.settings)
    plan = plan_days(sim, seed=8, start=datetime.now(UTC) - timedelta(days=2), days=2, zone=CST)
    replay(SimulatorSettings(mqtt=broker.settings), plan, speed=1e9, max_rate=20000)
    assert wait_until(lambda: running.ingester.totals["stored"] >= len(plan.events), 180, 0.5)
    log = (tmp_path / "rules.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "villagetwin.cli", "rules"], cwd=ROOT, stdout=log,
        stderr=subprocess.STDOUT,
        env={**env, "VT_WORKER__START_LOOKBACK_S": str(3 * 86400),
             "VT_WORKER__WINDOW_INTERVAL_S": "5"},
    )  # fmt: skip
    try:
        assert wait_until(lambda: count(db, "SELECT count(*) FROM alerts") >= 10, 60, 0.5), (
            tmp_path / "rules.log"
        ).read_text()
        with dashboard_server(env, tmp_path / "dashboard.log") as url:
            yield {"url": url, "db": db, "broker": broker, "building": building, "grid": grid}
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0


def publish_smoke(port: int, building: str) -> str:
    event_id = uuid.uuid4()
    event = CameraDetection(id=event_id, device="cam-001", seq=900_001, ts=datetime.now(UTC),
                            cls="smoke", count=1, confidence=0.93,
                            zone=f"stairwell:{building}")  # fmt: skip
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="cam-001")
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(event_topic("cam-001"), encode(event), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    return str(event_id)


@pytest.mark.browser
def test_manager_acts_on_a_smoke_alert_and_the_worker_gets_the_case(
    site: dict[str, Any], chromium: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1500, "height": 1300})
    page.goto(site["url"])
    sign_in(page, "manager")
    page.get_by_text("告警 紧急 critical").first.wait_for(timeout=60_000)
    page.locator("canvas").first.wait_for(state="visible", timeout=60_000)

    # The detection is published; its alert is on the Overview within 10 s.
    building = site["building"]
    banner = page.get_by_text(f"SMOKE/FIRE · 烟雾 smoke · {building}")
    assert banner.count() == 0
    publish_smoke(site["broker"].settings.port, building)
    published = time.monotonic()
    banner.first.wait_for(timeout=10_000)
    seen_after = time.monotonic() - published
    assert seen_after <= 10, seen_after
    page.wait_for_timeout(2500)  # let deck.gl draw the markers
    page.screenshot(path=str(ARTIFACTS / "alerts-overview.png"), full_page=True, timeout=90_000)

    # The alarm centre: the smoke alert is first (most severe, newest); acknowledge it, then
    # make it a case dispatched to the grid worker the routing suggests.
    with psycopg.connect(site["db"]) as conn:
        (alert_id,) = conn.execute(
            "SELECT alert_id FROM alerts WHERE rule = 'smoke_fire' AND subject = %s",
            (f"building:{building}",),
        ).fetchone()  # type: ignore[misc]
    page.get_by_role("link", name="告警中心 Alarm centre").click()
    page.get_by_text("处理告警 Act on an alert").wait_for(timeout=30_000)
    expect(page.get_by_text("烟火 Smoke or fire —")).to_be_visible(timeout=30_000)
    page.get_by_label("说明 Note").fill("已通知消防 fire brigade called")
    page.get_by_label("说明 Note").press("Enter")
    page.get_by_role("button", name="确认 Acknowledge", exact=True).click()
    expect(page.get_by_text(f"已确认 Acknowledged #{alert_id}")).to_be_visible(timeout=30_000)
    worker = page.get_by_test_id("stSelectbox").filter(has_text="Dispatch to")
    expect(worker).to_contain_text("routing suggests: inspector")
    page.get_by_role("button", name="转为工单并分拨 Make a case and dispatch", exact=True).click()
    done = page.get_by_text(re.compile(r"工单 Case (\d{6}-\d{3,}) → inspector"))
    expect(done).to_be_visible(timeout=30_000)
    case_no = re.search(r"\d{6}-\d{3,}", done.inner_text()).group(0)  # type: ignore[union-attr]
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "alarm-centre.png"), full_page=True, timeout=90_000)
    with psycopg.connect(site["db"]) as conn:
        alert = conn.execute(
            "SELECT a.status, c.status, c.assigned_to, c.priority FROM alerts a"
            " JOIN cases c USING (alert_id) WHERE c.case_no = %s",
            (case_no,),
        ).fetchone()
        history = [r[0] for r in conn.execute(
            "SELECT action FROM alert_history h JOIN cases c USING (alert_id)"
            " WHERE c.case_no = %s ORDER BY history_id", (case_no,))]  # fmt: skip
    assert alert == ("acknowledged", "dispatched", "inspector", "urgent")
    assert history == ["opened", "acknowledged", "case"]

    # The grid worker signs in: the case is in their queue.
    page.get_by_role("button", name="退出 Sign out").click()
    page.get_by_label("用户名 Username").wait_for(timeout=30_000)
    sign_in(page, "inspector")
    page.get_by_text("inspector · 出租屋检查员 inspector").wait_for(timeout=30_000)
    page.get_by_role("link", name="工单 Cases").click()
    expect(page.get_by_text("inspector 的工单队列 queue")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(case_no).first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "worker-queue.png"), full_page=True, timeout=90_000)
