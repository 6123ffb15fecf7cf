"""The dashboard's pages with Streamlit's AppTest (no browser), on a real database, signed in
as each role through the dashboard's own database role (vt_dashboard)."""

from __future__ import annotations

import psycopg
import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT

from dashboard.auth import hash_password
from mapping.db import load_village
from mapping.generate import generate

APP = str(ROOT / "dashboard" / "app.py")
PASSWORD = "correct horse battery"


def add_user(db: str, username: str, role: str, grids: list[str] | None = None) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO app_users (username, role, password_hash, grids) VALUES (%s, %s, %s, %s)",
            (username, role, hash_password(PASSWORD), grids or []),
        )


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
