"""Several villages on one platform (issue 16): the generated sample village and the real
Shamian OSM export with grid cells drawn for it, loaded side by side; events for both through
a real Mosquitto and the ingester; users scoped per village, checked as the dashboard's
database role; ids, CRS and time zone per village."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import psycopg
import pytest
from shapely.geometry import box
from support import ROOT, SHARED_DATA, count, rows, wait_until

from dashboard import queries
from devices.mqtt import connect, new_client
from devices.payloads import AccessUnlock, encode
from devices.topics import event_topic
from mapping import db as village_db
from mapping.db import load_village
from mapping.generate import generate

SHAMIAN = SHARED_DATA / "real" / "guangzhou_shamian_osm_buildings.geojson"
SAMPLE = "龙湖村"  # the generated village's name
REAL = "沙面"
# Two cells drawn over the island, west and east of 113.2395 E (as test_shamian_browser.py);
# a few buildings lie outside both.
CELLS = {
    "SM-W": ("沙面西 Shamian west", box(113.2325, 23.107, 113.2395, 23.1125)),
    "SM-E": ("沙面东 Shamian east", box(113.2395, 23.107, 113.2445, 23.1125)),
}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip


def draw_cells(path: Path, cells: dict[str, tuple[str, Any]]) -> Path:
    gpd.GeoDataFrame(
        {"code": list(cells), "name": [n for n, _ in cells.values()]},
        geometry=[g for _, g in cells.values()], crs="EPSG:4326",
    ).to_file(path, engine="pyogrio")  # fmt: skip
    return path


def one(conn: psycopg.Connection, query: str, *params: object) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def unlock(device: str, seq: int) -> bytes:
    return encode(
        AccessUnlock(
            id=uuid.uuid4(), device=device, seq=seq, ts=datetime.now(UTC), door="building",
            method="card", credential="cred:feedbeef", granted=True,
        )
    )  # fmt: skip


@pytest.fixture
def two_villages(db: str, tmp_path: Path) -> dict[str, str]:
    """The sample village (loaded as `villagetwin village load` does) and Shamian imported with
    its drawn grid cells by the command, into one database; returns the command's env."""
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=3, size="small"))
    env = {**os.environ, "VT_DB_DSN": db}
    grids = draw_cells(tmp_path / "shamian_grids.geojson", CELLS)
    imported = cli(
        env, "village", "import", str(SHAMIAN), "--id-prefix", "SM-", "--grid-cells",
        str(grids), "--grid-code-column", "code", "--village", REAL,
        "--time-zone", "Asia/Shanghai",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert f"note: village: {REAL}" in imported.stdout
    return env


def test_two_villages_side_by_side_with_events_for_both_and_users_scoped_per_village(
    db: str, two_villages: dict[str, str], broker: Any, start_ingester: Any
) -> None:
    env = two_villages
    # Every place belongs to its village; each village has its own UTM zone estimate and zone.
    places = dict(rows(db, "SELECT village_key, count(*) FROM buildings GROUP BY 1"))
    assert set(places) == {SAMPLE, REAL} and places[REAL] > 150  # of 169 OSM footprints
    for table in ("grid_cells", "roads", "points_of_interest"):
        assert count(db, f"SELECT count(*) FROM {table} WHERE village_key IS NULL") == 0, table
    assert rows(db, "SELECT village_key, projected_crs, time_zone FROM villages ORDER BY 1") == [
        (REAL, "EPSG:32649", "Asia/Shanghai"),
        (SAMPLE, "EPSG:32649", "Asia/Shanghai"),
    ]
    assert rows(db, "SELECT village_key FROM grid_cells WHERE grid_code LIKE 'SM-%%'") == [
        (REAL,),
        (REAL,),
    ]
    outside = count(
        db, "SELECT count(*) FROM buildings WHERE village_key = %s AND grid_code IS NULL", REAL
    )
    assert outside > 0  # Shamian buildings outside both drawn cells still belong to Shamian

    # A door reader in each village; events for both through the broker and the ingester.
    west = rows(
        db, "SELECT building_id FROM buildings WHERE grid_code = 'SM-W' ORDER BY 1 LIMIT 1"
    )[0][0]
    sample_device, sample_building = rows(
        db,
        "SELECT device_id, building_id FROM devices WHERE kind = 'access'"
        " AND building_id IS NOT NULL ORDER BY 1 LIMIT 1",
    )[0]
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, kind, building_id, grid_code, door)"
            " VALUES ('acc-sm-west', 'access', %s, 'SM-W', 'building')",
            (west,),
        )
    start_ingester(db, broker.settings)
    client = new_client(broker.settings, "test-two-villages")
    connect(client, broker.settings)
    client.loop_start()
    try:
        for seq in range(1, 4):
            client.publish(event_topic("acc-sm-west"), unlock("acc-sm-west", seq), qos=1)
            client.publish(event_topic(sample_device), unlock(sample_device, seq), qos=1)
        assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 6, 20)
    finally:
        client.loop_stop()
        client.disconnect()
    # The events resolve their village through their building (no column on the hypertable).
    by_village = rows(
        db,
        "SELECT village_of_building(building_id), count(*) FROM events GROUP BY 1 ORDER BY 1",
    )
    assert by_village == [(REAL, 3), (SAMPLE, 3)]
    assert rows(db, "SELECT village_of_device('acc-sm-west')") == [(REAL,)]
    hourly = rows(
        db,
        "SELECT b.village_key, sum(h.events)::int FROM building_hourly h JOIN buildings b"
        " USING (building_id) GROUP BY 1 ORDER BY 1",
    )
    assert hourly == [(REAL, 3), (SAMPLE, 3)]

    # Users, added as an operator would.
    password = "correct horse battery staple"
    for args in (
        ["sm-insp", "--role", "inspector", "--grid", "SM-W"],
        ["sm-insp-v", "--role", "inspector", "--grid", "SM-W", "--village", REAL],
        ["sm-manager", "--role", "manager", "--village", REAL],
        ["lh-manager", "--role", "manager", "--village", SAMPLE],
        ["district", "--role", "manager"],
        ["root", "--role", "admin"],
    ):
        added = cli(env, "users", "add", *args, "--password", password)
        assert added.returncode == 0, added.stderr
    refused = cli(
        env, "users", "add", "x", "--role", "manager", "--village", "无此村", "--password", password
    )
    assert refused.returncode != 0
    assert "no village 无此村 (villages: 沙面, 龙湖村)" in refused.stderr
    wrong = cli(env, "users", "add", "y", "--role", "inspector", "--grid", "SM-W",
                "--village", SAMPLE, "--password", password)  # fmt: skip
    assert wrong.returncode != 0 and "SM-W is not in village 龙湖村" in wrong.stderr

    def owner(query: str, *params: object) -> int:
        return count(db, query, *params)

    totals = {
        village: {
            "buildings": owner("SELECT count(*) FROM buildings WHERE village_key = %s", village),
            "grid_cells": owner("SELECT count(*) FROM grid_cells WHERE village_key = %s", village),
            "roads": owner("SELECT count(*) FROM roads WHERE village_key = %s", village),
            "units": owner(
                "SELECT count(*) FROM units JOIN buildings USING (building_id)"
                " WHERE village_key = %s",
                village,
            ),
            "events": owner(
                "SELECT count(*) FROM events WHERE village_of_building(building_id) = %s",
                village,
            ),
            "devices": owner(
                "SELECT count(*) FROM devices WHERE village_of_device(device_id) = %s", village
            ),
        }
        for village in (SAMPLE, REAL)
    }
    assert all(n > 0 for n in totals[SAMPLE].values()), totals
    assert totals[REAL]["units"] == 0 and totals[REAL]["roads"] == 0  # OSM buildings only

    def seen(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
        """What the signed-in dashboard role sees of each village, through plain SELECTs."""
        result = {}
        for village in (SAMPLE, REAL):
            result[village] = {
                "buildings": one(
                    conn, "SELECT count(*) FROM buildings WHERE village_key = %s", village
                ),
                "grid_cells": one(
                    conn, "SELECT count(*) FROM grid_cells WHERE village_key = %s", village
                ),
                "roads": one(conn, "SELECT count(*) FROM roads WHERE village_key = %s", village),
                "units": one(
                    conn,
                    "SELECT count(*) FROM units u WHERE u.building_id IN"
                    " (SELECT building_id FROM buildings WHERE village_key = %s)",
                    village,
                ),
                "events": one(
                    conn,
                    "SELECT count(*) FROM events e WHERE e.building_id IN"
                    " (SELECT building_id FROM buildings WHERE village_key = %s)",
                    village,
                ),
                "devices": one(
                    conn,
                    "SELECT count(*) FROM devices WHERE village_of_device(device_id) = %s",
                    village,
                ),
            }
        return result

    # The district overview's key figures: an open alert in Shamian's west cell, a Shamian
    # building's alert resolved (not counted), one sample device offline.
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO alerts (rule, severity, subject, grid_code, building_id, title,"
            " first_seen, last_seen, status) VALUES"
            " ('smoke', 'critical', 'building:' || %(b)s, 'SM-W', %(b)s, '烟感 Smoke', now(),"
            "  now(), 'open'),"
            " ('smoke', 'critical', 'building:x', NULL, %(b)s, '烟感 Smoke', now(), now(),"
            "  'resolved')",
            {"b": west},
        )
        conn.execute("UPDATE devices SET online = (device_id <> %s)", (sample_device,))
        conn.execute(
            "INSERT INTO cases (case_no, category, priority, source, grid_code, building_id,"
            " description, reported_at, due_at) VALUES"
            " ('SM-1', 'other', 'normal', 'staff', 'SM-W', %s, '门坏了 door broken', now(),"
            "  now() + interval '1 day'),"
            " ('LH-1', 'other', 'normal', 'staff', NULL, %s, '门坏了 door broken', now(),"
            "  now() + interval '1 day')",
            (west, sample_building),
        )
    figures = {
        village: {
            "buildings": totals[village]["buildings"], "units": totals[village]["units"],
            "events_today": 3, "open_alerts": int(village == REAL),
            "offline_devices": int(village == SAMPLE),
        }
        for village in (SAMPLE, REAL)
    }  # fmt: skip

    def district(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
        frame = queries.village_figures(conn)
        assert list(frame.time_zone) == ["Asia/Shanghai"] * len(frame)
        return {
            r.village_key: {k: getattr(r, k) for k in figures[SAMPLE]} for r in frame.itertuples()
        }

    nothing = dict.fromkeys(totals[SAMPLE], 0)
    with dashboard_session_of(db, "root", password) as admin:
        assert seen(admin) == totals
        assert one(admin, "SELECT count(*) FROM villages") == 2
        assert district(admin) == figures
        # The picked village's places and today's events, as the dashboard reads them.
        for village in (SAMPLE, REAL):
            assert len(village_db.read_buildings(admin, village)) == totals[village]["buildings"]
            assert len(village_db.read_grid_cells(admin, village)) == totals[village]["grid_cells"]
            assert len(village_db.read_roads(admin, village)) == totals[village]["roads"]
            assert queries.events_today(admin, village) == {"access.unlock": 3}
        assert len(village_db.read_buildings(admin)) == sum(t["buildings"] for t in totals.values())
        assert len(village_db.read_pois(admin, REAL)) == 0 < len(village_db.read_pois(admin))
        assert len(village_db.read_objects(admin, REAL)) == 0 < len(village_db.read_objects(admin))
        assert queries.events_today(admin) == {"access.unlock": 6}
        for village, alerts in ((REAL, 2), (SAMPLE, 0), (None, 2)):
            found = queries.alerts_page(admin, [], [], [], [], None, village=village)
            assert len(found) == alerts, village
            cases = queries.cases_page(admin, [], [], village=village)
            assert len(cases) == (2 if village is None else 1), village
    with dashboard_session_of(db, "district", password) as unlimited:
        assert seen(unlimited) == totals
        assert district(unlimited) == figures
    with dashboard_session_of(db, "sm-manager", password) as manager:
        # All of Shamian (also its buildings outside every cell), nothing of the sample village.
        assert seen(manager) == {SAMPLE: nothing, REAL: totals[REAL]}
        assert district(manager) == {REAL: figures[REAL]}
        assert queries.events_today(manager) == {"access.unlock": 3}  # village_hourly: none
        assert one(manager, "SELECT count(*) FROM buildings WHERE grid_code IS NULL") == outside
        assert one(manager, "SELECT array_agg(village_key) FROM villages") == [REAL]
        assert one(manager, "SELECT count(*) FROM village_hourly") == 0  # district-wide
        assert one(manager, "SELECT count(*) FROM people_masked") == 0  # the sample's people
    with dashboard_session_of(db, "lh-manager", password) as manager:
        assert seen(manager) == {SAMPLE: totals[SAMPLE], REAL: nothing}
        assert district(manager) == {SAMPLE: figures[SAMPLE]}
        assert one(manager, "SELECT count(*) FROM people_masked") > 0
    with dashboard_session_of(db, "sm-insp", password) as insp:
        west_buildings = owner("SELECT count(*) FROM buildings WHERE grid_code = 'SM-W'")
        assert seen(insp) == {
            SAMPLE: nothing,
            REAL: {"buildings": west_buildings, "grid_cells": 1, "roads": 0, "units": 0,
                   "events": 3, "devices": 1},
        }  # fmt: skip
        assert one(insp, "SELECT array_agg(village_key) FROM villages") == [REAL]
        insp_seen = seen(insp)
    with dashboard_session_of(db, "sm-insp-v", password) as limited:
        assert seen(limited) == insp_seen  # the same grid, limited to its own village
    with dashboard_session_of(db, "sm-insp", password) as insp:
        assert queries.events_today(insp, REAL) == {"access.unlock": 3}
        assert queries.events_today(insp, SAMPLE) == {}
        assert queries.events_today(insp) == {"access.unlock": 3}
        assert district(insp) == {REAL: {**figures[REAL], "buildings": west_buildings, "units": 0}}
        # Writes through the checked functions stay in the session's villages too.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="outside your grids"):
            insp.execute(
                "SELECT record_inspection(%s, 'Asia/Shanghai', 'ok', '{}', '{}', NULL)",
                (sample_building,),
            )


def dashboard_session_of(db: str, username: str, password: str) -> psycopg.Connection:
    """A connection as the dashboard's role signed in as an existing user."""
    from psycopg.conninfo import make_conninfo

    conn = psycopg.connect(make_conninfo(db, user="vt_dashboard"), autocommit=True)
    token, refusal = conn.execute(
        "SELECT * FROM vt_sign_in(%s, %s, '127.0.0.1', '30 minutes'::interval)",
        (username, password),
    ).fetchone()  # type: ignore[misc]
    assert token, refusal
    conn.execute("SELECT set_config('vt.session', %s, false)", (token,))
    return conn


def test_numbered_buildings_of_two_villages_do_not_overwrite_each_other(
    db: str, tmp_path: Path
) -> None:
    """Two files without ids (buildings numbered 00001, 00002) for two villages, and grid
    codes one village already uses: nothing of the first village is overwritten."""
    env = {**os.environ, "VT_DB_DSN": db}
    files = {}
    for name, lon in (("东村", 113.30), ("西村", 113.20)):
        path = tmp_path / f"{name}.geojson"
        gpd.GeoDataFrame(
            {"building:levels": ["3", "5"]},
            geometry=[box(lon, 23.1, lon + 0.0003, 23.1003),
                      box(lon + 0.001, 23.1, lon + 0.0013, 23.1003)],
            crs="EPSG:4326",
        ).to_file(path, engine="pyogrio")  # fmt: skip
        files[name] = path
    for name, path in files.items():
        done = cli(env, "village", "import", str(path), "--village", name)
        assert done.returncode == 0, done.stderr
    assert rows(db, "SELECT building_id, village_key FROM buildings ORDER BY 1") == [
        ("00001", "东村"), ("00002", "东村"), ("西村/00001", "西村"), ("西村/00002", "西村"),
    ]  # fmt: skip
    west = rows(db, "SELECT lon FROM buildings WHERE village_key = '西村'")
    assert all(lon < 113.21 for (lon,) in west)  # 东村's buildings were not moved west
    again = cli(env, "village", "import", str(files["西村"]), "--village", "西村")
    assert again.returncode == 0, again.stderr
    assert "against the database: 0 new, 0 changed, 2 unchanged" in again.stdout
    assert count(db, "SELECT count(*) FROM buildings") == 4
    # One village exported for GIS tools: its buildings only.
    out = tmp_path / "west"
    exported = cli(env, "village", "export", "--format", "geojson", "--out", str(out),
                   "--village", "西村")  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    written = gpd.read_file(out / "buildings.geojson")
    assert sorted(written.building_id) == ["西村/00001", "西村/00002"]
    unknown = cli(env, "village", "export", "--format", "gpkg", "--out", str(tmp_path / "x.gpkg"),
                  "--village", "北村")  # fmt: skip
    assert unknown.returncode != 0 and "no village 北村 (villages: 东村, 西村)" in unknown.stderr

    # Grid codes are one key across the district: another village's code is refused, said.
    cells = draw_cells(tmp_path / "cells.geojson", {"G1": ("一", box(113.2, 23.09, 113.21, 23.11))})
    first = cli(env, "village", "import", str(files["西村"]), "--village", "西村",
                "--grid-cells", str(cells), "--grid-code-column", "code")  # fmt: skip
    assert first.returncode == 0, first.stderr
    clash = cli(env, "village", "import", str(files["东村"]), "--village", "东村",
                "--grid-cells", str(cells), "--grid-code-column", "code")  # fmt: skip
    assert clash.returncode != 0
    assert "grid codes already used by another village: G1 (village 西村)" in clash.stderr
    assert rows(db, "SELECT grid_code, village_key FROM grid_cells") == [("G1", "西村")]


def test_the_time_zone_and_crs_are_the_villages_own(db: str, tmp_path: Path) -> None:
    env = {**os.environ, "VT_DB_DSN": db}
    path = tmp_path / "kashgar.geojson"
    # A village in Kashgar (75.99 E: UTM 43N), on Xinjiang time.
    gpd.GeoDataFrame(
        {"building:levels": ["2"]}, geometry=[box(75.99, 39.47, 75.9903, 39.4703)],
        crs="EPSG:4326",
    ).to_file(path, engine="pyogrio")  # fmt: skip
    bad = cli(env, "village", "import", str(path), "--village", "喀什", "--time-zone", "UTC+6")
    assert bad.returncode != 0
    assert "time zone 'UTC+6' is not an IANA time zone name" in bad.stderr
    assert "Traceback" not in bad.stderr
    done = cli(env, "village", "import", str(path), "--village", "喀什", "--time-zone",
               "Asia/Urumqi")  # fmt: skip
    assert done.returncode == 0, done.stderr
    # A re-import without --time-zone keeps it.
    assert cli(env, "village", "import", str(path), "--village", "喀什").returncode == 0
    assert rows(db, "SELECT projected_crs, time_zone FROM villages") == [
        ("EPSG:32643", "Asia/Urumqi")
    ]
    with psycopg.connect(db) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE villages SET time_zone = 'Mars/Olympus'")


def test_the_picker_offers_the_district_only_for_several_villages_and_totals_the_figures() -> None:
    import pandas as pd

    from dashboard import villages

    one_village = pd.DataFrame(
        [("沙面", "沙面", "Asia/Shanghai", 169, 0, 3, 1, 0)], columns=queries.VILLAGE_FIGURES
    )
    assert villages.options(one_village) == ["沙面"]
    assert list(villages.district_table(one_village).columns) == list(
        villages.FIGURE_LABELS.values()
    )
    two = pd.concat(
        [one_village, pd.DataFrame([("龙湖村", "龙湖村", "Asia/Shanghai", 40, 300, 5, 0, 2)],
                                   columns=queries.VILLAGE_FIGURES)],
        ignore_index=True,
    )  # fmt: skip
    assert villages.options(two) == [None, "沙面", "龙湖村"]
    assert villages.label(None, two) == "全区 District (2)"
    assert villages.label("龙湖村", two) == "龙湖村"
    table = villages.district_table(two)
    assert table.iloc[-1].tolist() == ["合计 Total", 209, 300, 8, 1, 2, ""]
    with pytest.raises(ValueError, match="without units"):
        villages.district_table(two.drop(columns=["units"]))


def test_the_dashboard_picks_a_village_and_shows_the_district(
    db: str, two_villages: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest
    from support import DASHBOARD_APP

    password = "correct horse battery staple"
    for args in (["root", "--role", "admin"], ["sm", "--role", "manager", "--village", REAL]):
        added = cli(two_villages, "users", "add", *args, "--password", password)
        assert added.returncode == 0, added.stderr
    buildings = dict(rows(db, "SELECT village_key, count(*) FROM buildings GROUP BY 1"))
    monkeypatch.setenv("VT_DB_DSN", db)

    def signed_in(username: str) -> AppTest:
        app = AppTest.from_file(str(DASHBOARD_APP), default_timeout=60)
        app.run()
        app.text_input[0].input(username)
        app.text_input[1].input(password)
        app.button[0].click().run()
        assert not app.exception, app.exception
        return app

    def metric(app: AppTest, label: str) -> str:
        return next(str(m.value) for m in app.metric if m.label == label)

    admin = signed_in("root")
    picker = admin.sidebar.selectbox[0]
    assert picker.label == "村 Village"
    assert picker.options == ["全区 District (2)", REAL, SAMPLE]
    assert picker.value is None
    district = admin.dataframe[0].value
    assert list(district["村 Village"]) == [REAL, SAMPLE, "合计 Total"]
    assert list(district["楼栋 Buildings"]) == [
        buildings[REAL],
        buildings[SAMPLE],
        buildings[REAL] + buildings[SAMPLE],
    ]
    assert metric(admin, "楼栋 Buildings") == str(buildings[REAL] + buildings[SAMPLE])
    assert admin.sidebar.selectbox[1].options[0] == "— 全区 whole district —"
    picker.set_value(REAL).run()
    assert not admin.exception, admin.exception
    assert metric(admin, "楼栋 Buildings") == str(buildings[REAL])
    assert not admin.dataframe  # the district table is for the whole district only
    building_picker = admin.sidebar.selectbox[1]
    assert building_picker.options[0] == "— 全村 whole village —"
    assert all("SM-" in o or o.startswith("—") for o in building_picker.options)
    admin.sidebar.selectbox[0].set_value(SAMPLE).run()
    assert metric(admin, "楼栋 Buildings") == str(buildings[SAMPLE])

    # A manager of Shamian: no choice to make, Shamian only.
    manager = signed_in("sm")
    assert [s.label for s in manager.sidebar.selectbox] == ["选择楼栋 Pick a building"]
    assert any(c.value == f"村 Village: {REAL}" for c in manager.sidebar.caption)
    assert metric(manager, "楼栋 Buildings") == str(buildings[REAL])
    assert not manager.dataframe
