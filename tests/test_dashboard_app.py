"""The dashboard page's logic with Streamlit's AppTest (no browser), on a real database."""

from __future__ import annotations

import psycopg
import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT

from mapping.db import load_village
from mapping.generate import generate

APP = str(ROOT / "dashboard" / "app.py")


def run(db: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("VT_DB_DSN", db)
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    return app


def test_the_page_shows_the_village_and_a_picked_building(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    village = generate(seed=2, size="small")
    with psycopg.connect(db) as conn:
        load_village(conn, village)
    app = run(db, monkeypatch)
    assert not app.exception
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
    app = run(db, monkeypatch)
    assert not app.exception
    assert "villagetwin village generate" in app.warning[0].value


def test_an_unreachable_database_is_an_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = run("postgresql://postgres@127.0.0.1:1/nowhere", monkeypatch)
    assert not app.exception
    assert "Cannot reach the database" in app.error[0].value
