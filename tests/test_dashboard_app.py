"""The dashboard's pages with Streamlit's AppTest (no browser), on a real database, signed in
as each role through the dashboard's own database role (vt_dashboard)."""

from __future__ import annotations

import re

import psycopg
import pytest
from streamlit.testing.v1 import AppTest
from support import DASHBOARD_APP

from mapping.db import load_village
from mapping.generate import generate

APP = str(DASHBOARD_APP)
PASSWORD = "correct horse battery staple"


def add_user(db: str, username: str, role: str, grids: list[str] | None = None) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO app_users (username, role, grids) VALUES (%s, %s, %s)",
            (username, role, grids or []),
        )
        conn.execute("SELECT vt_set_password(%s, %s)", (username, PASSWORD))


def signed_in(db: str, monkeypatch: pytest.MonkeyPatch, username: str) -> AppTest:
    monkeypatch.setenv("VT_DB_DSN", db)
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.text_input[0].input(username)
    app.text_input[1].input(PASSWORD)
    app.button[0].click().run()
    assert not app.exception, app.exception
    return app


@pytest.fixture
def village_db(db: str) -> str:
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=2, size="small"))
    add_user(db, "admin", "admin")
    add_user(db, "insp", "inspector", ["LH-G01"])
    add_user(db, "manager", "manager")
    return db


def test_sign_in_is_required_and_wrong_passwords_are_refused(
    village_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VT_DB_DSN", village_db)
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.metric  # nothing but the sign-in form
    app.text_input[0].input("admin")
    app.text_input[1].input("wrong password")
    app.button[0].click().run()
    assert "Wrong username or password" in app.error[0].value
    assert not app.metric


def test_the_overview_shows_the_village_and_a_picked_building(
    village_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    village = generate(seed=2, size="small")
    app = signed_in(village_db, monkeypatch, "admin")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["楼栋 Buildings"] == str(len(village.buildings))
    assert metrics["设备在线 Devices online"] == f"0 / {len(village.devices)}"
    building = village.buildings.building_id.iloc[3]
    app.sidebar.selectbox[0].set_value(building).run()
    assert not app.exception
    assert any(building in s.value for s in app.subheader)
    for metric in ("residents", "unregistered", "registered", "alarms", "units"):
        app.sidebar.radio[0].set_value(metric).run()
        assert not app.exception, metric
    for style in ("heatmap", "hexagons"):
        app.sidebar.radio[1].set_value(style).run()
        assert not app.exception, style


def test_an_empty_database_says_what_to_do(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    add_user(db, "admin", "admin")
    app = signed_in(db, monkeypatch, "admin")
    assert "villagetwin village generate" in app.warning[0].value


def test_an_unreachable_database_is_an_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VT_DB_DSN", "postgresql://postgres@127.0.0.1:1/nowhere")
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.text_input[0].input("admin")
    app.text_input[1].input(PASSWORD)
    app.button[0].click().run()
    assert not app.exception
    assert "Cannot reach the database" in app.error[0].value


def page_script(
    dsn: str, page: str, username: str = "manager", password: str = "correct horse battery staple"
) -> None:
    import importlib

    import streamlit as st

    from dashboard import session
    from dashboard.auth import User
    from dashboard.settings import DashboardSettings

    settings = DashboardSettings(db_dsn=dsn)
    if "user" not in st.session_state:
        session.start_session(settings, username, password)
    user = st.session_state["user"]
    assert isinstance(user, User), user
    importlib.import_module(f"dashboard.pages.{page}").render(settings, user)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("replay", "Replay a day"),
        ("events", "Events"),
        ("devices", "Devices"),
        ("quality", "Data quality"),
    ],
)
def test_manager_pages_on_a_village_with_traffic(village_db: str, page: str, expected: str) -> None:
    import uuid

    with psycopg.connect(village_db) as conn:
        device, building = conn.execute(
            "SELECT device_id, building_id FROM devices WHERE kind = 'access' LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        for seq in (1, 2, 5):  # 3 and 4 never arrived
            conn.execute(
                "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, building_id,"
                " payload) VALUES (now(), now(), %s, %s, %s, 'access.unlock', %s, '{}')",
                (uuid.uuid4(), device, seq, building),
            )
        conn.execute(
            "INSERT INTO building_hourly"
            " VALUES (%s, date_trunc('hour', now()), 'access.unlock', 3)",
            (building,),
        )
        conn.execute(
            "INSERT INTO village_hourly VALUES (date_trunc('hour', now()), 'access.unlock', 3)"
        )
        conn.execute(
            "INSERT INTO device_status_history VALUES (%s, now() - interval '1 minute', false)",
            (device,),
        )
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, payload,"
            " payload_size) VALUES (now(), 't', %s, 'not_json', 'x', 'x', 1)",
            (device,),
        )
    app = AppTest.from_function(page_script, args=(village_db, page), default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    assert expected in app.title[0].value
    if page == "quality":
        gaps = app.dataframe[2].value
        assert list(gaps.itertuples(index=False, name=None)) == [(device, 3, 4, 2)]
    if page == "replay":
        assert {m.label: m.value for m in app.metric}["离线设备 Devices offline"] == "1"
    if page == "events":
        assert len(app.dataframe[0].value) == 3


def test_an_app_incident_opens_a_ticket_that_moves_to_resolved(village_db: str) -> None:
    import uuid
    from datetime import UTC, datetime

    from devices.payloads import AppIncident, DeviceKind, encode
    from ingest import store
    from ingest.validate import KnownDevice, Received, judge

    report = AppIncident(
        id=uuid.uuid4(), device="app-kaobutong", seq=1, ts=datetime.now(UTC),
        category="ebike_charging", text="楼道充电", lon=113.45, lat=23.16, building="LH00001",
    )  # fmt: skip
    registry = {"app-kaobutong": KnownDevice("app-kaobutong", DeviceKind.APP)}
    verdict = judge(Received("vt/v1/app-kaobutong/event", encode(report), report.ts), registry)
    with psycopg.connect(village_db) as conn:
        store.prepare(conn)
        store.store(conn, verdict.events, [])
        store.store(conn, verdict.events, [])  # redelivered: still one ticket
        assert conn.execute("SELECT count(*), min(status) FROM incidents").fetchone() == (
            1,
            "reported",
        )
    app = AppTest.from_function(page_script, args=(village_db, "incidents"))
    app.run()
    assert not app.exception, app.exception
    assert app.dataframe[0].value["类别 Category"].iloc[0] == "电动车充电 e-bike charging"
    app.radio[0].set_value("assigned")
    app.text_input[0].input("网格员 王")
    app.button[0].click().run()
    assert not app.exception and "Updated" in app.success[0].value
    app.radio[0].set_value("resolved")
    app.button[0].click().run()
    with psycopg.connect(village_db) as conn:
        row = conn.execute("SELECT status, assigned_to, updated_by FROM incidents").fetchone()
    assert row == ("resolved", "网格员 王", "manager")


def test_an_idle_session_times_out(village_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("VT_SESSION_TIMEOUT_MINUTES", "1")
    app = signed_in(village_db, monkeypatch, "admin")
    assert app.metric  # signed in
    app.session_state["seen"] = time.monotonic() - 61  # a minute and a second of silence
    app.run()
    assert "Session timed out" in app.warning[0].value
    assert not app.metric


@pytest.mark.parametrize(("page", "expected"), [("alarms", "Alarm centre"), ("cases", "Cases")])
def test_alarm_centre_and_cases_pages(village_db: str, page: str, expected: str) -> None:
    from support import dashboard_session

    from dashboard import actions
    from rules import case_store

    with psycopg.connect(village_db) as conn:
        building, grid = conn.execute(
            "SELECT building_id, grid_code FROM buildings ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        (alert_id,) = conn.execute(
            "INSERT INTO alerts (rule, severity, subject, grid_code, building_id, title,"
            " first_seen, last_seen) VALUES ('smoke_fire', 'critical', %s, %s, %s,"
            " '烟雾 smoke · test', now(), now()) RETURNING alert_id",
            (f"building:{building}", grid, building),
        ).fetchone()  # type: ignore[misc]
        case_store.add_staff(conn, grid, "inspector", "worker")
    with dashboard_session(village_db, "case-maker", "manager") as dash:
        case_id, case_no = actions.case_from_alert(dash, alert_id)
    app = AppTest.from_function(page_script, args=(village_db, page), default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    assert expected in app.title[0].value
    table = app.dataframe[0].value
    if page == "alarms":
        assert table["告警 Alert"].tolist() == ["烟雾 smoke · test"]
        # As users read it: names, local times, a dash for nothing; no codes, None or UTC.
        shown = table.astype(str)
        assert table["状态 Status"].tolist() == ["待处理 open"]
        assert table["负责人 Assigned to"].tolist() == ["—"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", table["最近 Last seen"].iloc[0])
        assert not shown.isin(["None", "NaT", "nan", "smoke_fire", "critical"]).any().any()
        app.button(key="alarm-ack").click().run()
        assert not app.exception and "Acknowledged" in app.success[0].value
        history = app.dataframe[1].value
        assert history["操作 What"].tolist() == ["转为工单 made a case"]
        assert history["人员 Who"].tolist() == ["case-maker"]
    else:
        app.toggle(key="case-mine").set_value(False).run()
        table = app.dataframe[0].value
        assert table["工单号 Case no."].tolist() == [case_no]
        assert table["优先级 Priority"].tolist() == ["紧急 urgent"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", table["期限 Due"].iloc[0])
        assert not table.astype(str).isin(["None", "NaT", "nan", "urgent", "alert"]).any().any()
        app.button[0].click().run()  # dispatch to the suggested worker
        assert not app.exception and "dispatched" in app.success[0].value
        with psycopg.connect(village_db) as conn:
            row = conn.execute(
                "SELECT status, assigned_to FROM cases WHERE case_id = %s", (case_id,)
            ).fetchone()
        assert row == ("dispatched", "inspector")
