"""Importing real footprints: real files written by geopandas, CRSs, GCJ-02, broken inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd
import psycopg
import pyogrio
import pytest
import shapely
from shapely.geometry import LineString, Polygon, box
from support import DASHBOARD_APP, ROOT, SHARED_DATA, count

from mapping.coords import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_wgs84,
    resolve_crs,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from mapping.importer import (
    TEMPLATES,
    AttributeMapping,
    ImportReport,
    buildings_from_frame,
    looks_like_mojibake,
    read_footprints,
    units_from_frame,
)
from mapping.storeys import parse_height_m, parse_storeys

FINGERPRINT = (
    "SELECT md5(string_agg(building_id || storeys || footprint::text, ',' ORDER BY building_id))"
    " FROM buildings"
)
SUZHOU = SHARED_DATA / "real" / "suzhou_oldtown_buildings.geojson"
SHAMIAN = SHARED_DATA / "real" / "guangzhou_shamian_osm_buildings.geojson"

# Published test vectors of the eviltransform project: (WGS-84 lat, lon, GCJ-02 lat, lon).
GCJ_REFERENCE = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]


@pytest.fixture(scope="module")
def suzhou() -> gpd.GeoDataFrame:
    return gpd.read_file(SUZHOU, engine="pyogrio")


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), GCJ_REFERENCE)
def test_gcj02_matches_published_points_and_inverts_to_the_millimetre(
    wlat: float, wlon: float, glat: float, glon: float
) -> None:
    lon, lat = wgs84_to_gcj02(wlon, wlat)
    assert (lon, lat) == pytest.approx((glon, glat), abs=1e-9)
    back_lon, back_lat = gcj02_to_wgs84(glon, glat)
    assert back_lon == pytest.approx(wlon, abs=1e-8) and back_lat == pytest.approx(wlat, abs=1e-8)


def test_gcj02_footprints_come_back_where_they_were(suzhou: gpd.GeoDataFrame) -> None:
    sample = suzhou.head(50)
    shifted = sample.copy()
    shifted.geometry = sample.geometry.apply(
        lambda g: Polygon([wgs84_to_gcj02(x, y) for x, y in g.exterior.coords])
        if g.geom_type == "Polygon" else g
    )  # fmt: skip
    assert shifted.geometry.iloc[0].centroid.distance(sample.geometry.iloc[0].centroid) > 1e-3
    back = to_wgs84(shifted, "gcj02")
    error_m = back.to_crs("EPSG:32651").geometry.centroid.distance(
        sample.to_crs("EPSG:32651").geometry.centroid
    )
    assert error_m.max() < 0.01


@pytest.mark.parametrize("crs", ["EPSG:4490", "EPSG:4549", "EPSG:32651"])
def test_projected_and_cgcs2000_files_import_to_the_same_place(
    suzhou: gpd.GeoDataFrame, tmp_path: Path, crs: str
) -> None:
    """CGCS2000 geographic, CGCS2000 / 3-degree Gauss-Kruger CM 120E, UTM 51N."""
    path = tmp_path / "footprints.gpkg"
    suzhou.head(100).to_crs(crs).to_file(path, engine="pyogrio")
    buildings, report = buildings_from_frame(gpd.read_file(path, engine="pyogrio"))
    assert report.loaded == 100
    error_m = buildings.to_crs("EPSG:32651").centroid.distance(
        suzhou.head(100).to_crs("EPSG:32651").centroid.reset_index(drop=True)
    )
    assert error_m.max() < 0.01


@pytest.mark.parametrize("driver", ["GeoJSON", "GPKG", "ESRI Shapefile"])
def test_loaders_read_files_written_by_geopandas(
    suzhou: gpd.GeoDataFrame, tmp_path: Path, driver: str
) -> None:
    path = tmp_path / {"GeoJSON": "b.geojson", "GPKG": "b.gpkg", "ESRI Shapefile": "b.shp"}[driver]
    suzhou.head(200).to_file(path, driver=driver, engine="pyogrio")
    buildings, report = buildings_from_frame(gpd.read_file(path, engine="pyogrio"))
    assert report.loaded == 200 and not report.refused
    assert list(buildings.storeys) == list(suzhou.head(200).Floor)
    assert (buildings.height_m == suzhou.head(200).height.to_numpy()).all()


def test_osm_tags_and_the_fill_rule_for_missing_storeys() -> None:
    raw = gpd.read_file(SHAMIAN, engine="pyogrio")
    buildings, report = buildings_from_frame(raw, id_prefix="SM-")
    assert report.loaded == len(raw) == 169
    has_levels = raw["building:levels"].notna()
    assert report.storeys_filled + report.storeys_from_height == int((~has_levels).sum())
    assert "median" in report.fill_rule
    levels = raw.loc[has_levels, "building:levels"].astype(int).tolist()
    assert buildings.loc[has_levels.to_numpy(), "storeys"].tolist() == levels
    named = raw["addr:street"].notna().to_numpy()
    assert all(
        b.startswith(s)
        for b, s in zip(buildings.address[named], raw["addr:street"][named], strict=True)
    )
    explicit, report = buildings_from_frame(raw, AttributeMapping(default_storeys=2))
    no_information = (~has_levels & raw["height"].isna()).to_numpy()
    assert (explicit.loc[no_information, "storeys"] == 2).all()
    assert report.fill_rule == "the configured default of 2"


def test_the_validation_report_on_broken_input() -> None:
    bowtie = Polygon([(113.45, 23.16), (113.4501, 23.1601), (113.4501, 23.16), (113.45, 23.1601)])
    frame = gpd.GeoDataFrame(
        {
            "building_id": ["A", "B", "C", "A", "E", "F"],
            "building:levels": ["5", "x", None, "3", "4", "6"],
            "geometry": [
                box(113.45, 23.16, 113.4501, 23.1601),
                bowtie,  # self-intersecting: repaired
                LineString([(113.45, 23.16), (113.46, 23.17)]),  # not a footprint: refused
                box(113.46, 23.16, 113.4601, 23.1601),  # duplicate id: refused
                None,  # no geometry: refused
                Polygon([(113.45, 23.16), (113.45, 23.16), (113.45, 23.16)]),  # degenerate
            ],
        },
        crs="EPSG:4326",
    )
    buildings, report = buildings_from_frame(frame, AttributeMapping(id_explicit=True))
    assert list(buildings.building_id) == ["A", "B"]
    assert [key for key, _ in report.repaired] == ["B"]
    assert "Self-intersection" in report.repaired[0][1]
    refused = dict(report.refused)
    assert set(refused) == {"C", "A", "E", "F"}
    assert "LineString" in refused["C"] and "duplicate" in refused["A"]
    assert "no geometry" in refused["E"]
    assert report.storeys_filled == 1  # B's "x" is no storey count
    text = report.text()
    assert "refused:              4" in text and "repaired: B" in text
    units = pd.DataFrame(
        {"unit_id": ["A-101", "Z-101", "A-102"], "building_id": ["A", "Z", "A"],
         "floor": ["1", "1", "one"], "room": ["101", "101", "102"]}
    )  # fmt: skip
    table = units_from_frame(units, set(buildings.building_id), report)
    assert list(table.unit_id) == ["A-101"]
    assert dict(report.units_refused) == {
        "Z-101": "unknown building Z",
        "A-102": "floor 'one' is not a number",
    }


def test_a_file_without_a_crs_must_be_told_one() -> None:
    frame = gpd.GeoDataFrame({"geometry": [box(500000, 2560000, 500010, 2560010)]})
    with pytest.raises(ValueError, match="--crs"):
        buildings_from_frame(frame)
    _, report = buildings_from_frame(frame.set_crs(None), source_crs="EPSG:32649")
    assert report.loaded == 1


def test_import_command_loads_suzhou_and_a_second_run_changes_nothing(
    db: str, suzhou: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    units = tmp_path / "units.csv"
    units.write_text("unit_id,building_id,floor,room\nSZ-00001-101,SZ-00001,1,101\nX-1,NOPE,1,1\n")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "villagetwin.cli", "village", "import", str(SUZHOU),
             "--id-prefix", "SZ-", "--units", str(units)],
            capture_output=True, text=True, cwd=ROOT,
            env={"VT_DB_DSN": db, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip

    first = run()
    assert first.returncode == 0, first.stderr
    assert "buildings loaded:     3076" in first.stdout
    assert "unknown building NOPE" in first.stdout
    assert count(db, "SELECT count(*) FROM buildings") == 3076
    assert count(db, "SELECT sum(storeys) FROM buildings") == int(suzhou.Floor.sum())
    with psycopg.connect(db) as conn:
        before = conn.execute(FINGERPRINT).fetchone()
    second = run()
    assert second.returncode == 0, second.stderr
    with psycopg.connect(db) as conn:
        after = conn.execute(FINGERPRINT).fetchone()
    assert before == after
    assert count(db, "SELECT count(*) FROM buildings") == 3076
    assert count(db, "SELECT count(*) FROM units") == 1


def test_import_refuses_a_file_that_is_not_geodata(tmp_path: Path) -> None:
    bad = tmp_path / "not.geojson"
    bad.write_text("this is not geojson")
    result = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "village", "import", str(bad), "--dry-run"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot import" in result.stderr and "Traceback" not in result.stderr


def test_report_text_lists_at_most_the_limit() -> None:
    report = ImportReport("x", refused=[(str(i), "why") for i in range(30)])
    assert "… and 10 more" in report.text(limit=20)


def test_people_tenancies_and_organisations_from_csv(db: str, tmp_path: Path) -> None:
    footprints = tmp_path / "two.geojson"
    gpd.GeoDataFrame(
        {"building_id": ["B1", "B2"], "Floor": [5, 6],
         "geometry": [box(113.45, 23.16, 113.4501, 23.1601),
                      box(113.46, 23.16, 113.4601, 23.1601)]},
        crs="EPSG:4326",
    ).to_file(footprints, engine="pyogrio")  # fmt: skip
    files = {
        "units": "unit_id,building_id,floor,room\nB1-301,B1,3,301\nB2-101,B2,1,101\n",
        "people": "person_id,name,role,id_number,phone\n"
                  "P1,张三,tenant,440112199001011234,13812345678\n"
                  "P2,李四,tenant,,\nP3,王五,emperor,,\n",
        "tenancies": "tenancy_id,person_id,unit_id,start_date,end_date\nT1,P1,B1-301,2025-01-01,\n"
                     "T2,P2,B9-999,2025-01-01,\nT3,P2,B2-101,2025-05-01,2025-04-01\n"
                     "T4,P2,B2-101,2025-05-01,2026-05-01\n",
        "organisations": "org_id,kind,name,building_id,unit_id\nO1,shop,张记便利店,B2,B2-101\n"
                         "O2,shop,无名店,B7,\n",
    }  # fmt: skip
    args = []
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text)
        args += [f"--{name}", str(tmp_path / f"{name}.csv")]
    result = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "village", "import", str(footprints),
         "--id-column", "building_id", *args],
        capture_output=True, text=True, cwd=ROOT, env={"VT_DB_DSN": db, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "person P3: role 'emperor'" in out
    assert "tenancy T2: unknown unit B9-999" in out
    assert "tenancy T3: ends (2025-04-01) before it starts (2025-05-01)" in out
    assert "organisation O2: unknown building B7" in out
    assert count(db, "SELECT count(*) FROM people") == 2
    assert count(db, "SELECT count(*) FROM tenancies") == 2
    assert count(db, "SELECT count(*) FROM organisations") == 1


# --- real-world forms: storeys, geometry, encodings, CRSs, addresses, grids, re-import ------

CLI_ENV = {"PATH": "/usr/bin:/bin"}


def run_cli(db: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**CLI_ENV, **({"VT_DB_DSN": db} if db else {})}
    return subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


def squares(n: int, x0: float = 113.45, y0: float = 23.16, step: float = 0.0003) -> list[Polygon]:
    return [box(x0 + i * step, y0, x0 + i * step + 0.0001, y0 + 0.0001) for i in range(n)]


@pytest.mark.parametrize(
    ("value", "above", "below", "noted"),
    [
        ("6", 6, 0, ""), (6, 6, 0, ""), (4.0, 4, 0, ""), ("12层", 12, 0, ""), ("12F", 12, 0, ""),
        ("12 floors", 12, 0, ""), ("12 storeys", 12, 0, ""), ("十二层", 12, 0, ""),
        ("１２", 12, 0, ""), ("7;8", 8, 0, "list"), ("7,8", 8, 0, "list"),
        ("3-5", 5, 0, "range"), ("3~5层", 5, 0, "range"), ("3至5", 5, 0, "range"),
        ("2.5", 3, 0, "rounded up"), (2.5, 3, 0, "rounded up"), ("B1", None, 1, "basements"),
        ("-2", None, 2, "basements"), ("地下2层", None, 2, "basements"),
        ("12F+B1", 12, 1, "basement"), ("地上5层地下1层", 5, 1, "basement"),
        ("x", None, 0, "not a storey count"), ("0", None, 0, "outside"),
        ("300", None, 0, "outside"), ("约6层", 6, 0, "approximate"),
        ("15F(含地下1层)", 15, 1, "basement"), ("3层半", 4, 0, "rounded up"),
        ("12层（框架）", 12, 0, "remark"), ("12F/B2", 12, 2, "basement"),
        ("7层、地下1层", 7, 1, "basement"),
    ],
)  # fmt: skip
def test_storey_values_in_real_world_forms(
    value: object, above: int | None, below: int, noted: str
) -> None:
    reading = parse_storeys(value)
    assert (reading.above, reading.below) == (above, below)
    assert noted in reading.note if noted else reading.note == ""


def test_heights_in_real_world_forms() -> None:
    assert parse_height_m("12") == 12 and parse_height_m("12 m") == 12
    assert parse_height_m("12米") == 12 and parse_height_m("40 ft") == pytest.approx(12.192)
    assert parse_height_m("tall") is None and parse_height_m("0") is None


def test_every_storey_value_not_taken_as_given_is_named_never_silently_the_median() -> None:
    levels = ["6", "12层", "7;8", "3-5", "B1", "2.5", "12 floors", None, None, None, "x"]
    frame = gpd.GeoDataFrame(
        {
            "@id": [f"way/{i}" for i in range(len(levels))],
            "building:levels": levels,
            "est_height": [None] * 7 + ["15", None, None, None],
            "building:height": [None] * 8 + ["9 m", None, None],
            "geometry": squares(len(levels)),
        },
        crs="EPSG:4326",
    )
    buildings, report = buildings_from_frame(frame)
    storeys = dict(zip(buildings.building_id, buildings.storeys, strict=True))
    assert storeys == {
        "way/0": 6, "way/1": 12, "way/2": 8, "way/3": 5, "way/4": 6, "way/5": 3,
        "way/6": 12, "way/7": 5, "way/8": 3, "way/9": 6, "way/10": 6,
    }  # fmt: skip
    assert dict(zip(buildings.building_id, buildings.basements, strict=True))["way/4"] == 1
    named: dict[str, list[str]] = {}
    for key, what in report.storeys_adjusted:
        named.setdefault(key, []).append(what)
    # As given: 6, 12层 (a unit is no change), 12 floors. Everything else is named.
    assert set(named) == {"way/2", "way/3", "way/4", "way/5", "way/7", "way/8", "way/9", "way/10"}
    assert "highest, 8" in named["way/2"][0] and "highest, 5" in named["way/3"][0]
    assert "rounded up to 3" in named["way/5"][0]
    assert "from the height 15 m" in named["way/7"][0]  # est_height
    assert "from the height 9 m" in named["way/8"][0]  # building:height
    assert any("basements" in w for w in named["way/4"])
    assert all("median" in named[k][-1] for k in ("way/4", "way/9", "way/10"))
    assert report.storeys_filled == 3 and "median" in report.fill_rule
    text = report.text(limit=None)
    assert "storeys: way/10: building:levels 'x' is not a storey count" in text


def test_the_field_file_of_odd_levels_is_read_and_reported() -> None:
    raw = gpd.read_file(SHARED_DATA / "field" / "M01-osm-building-levels-oddities.geojson")
    buildings, report = buildings_from_frame(raw)
    by_street_number = dict(zip(buildings.address, buildings.storeys, strict=True))
    assert by_street_number["龙湖大街6号"] == 12  # 12层
    assert by_street_number["龙湖大街2号"] == 8  # 7;8
    assert by_street_number["龙湖大街5号"] == 5  # 3-5
    assert by_street_number["龙湖大街3号"] == 3  # 2.5
    named = {key for key, _ in report.storeys_adjusted}
    assert named == {"way/w1002", "way/w1003", "way/w1004", "way/w1005"}


def test_polygon_z_holes_and_multipolygons_import_and_render(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from mapping import layers
    from mapping.db import read_buildings

    courtyard = Polygon(
        [(113.45, 23.16, 9.0), (113.4504, 23.16, 9.0), (113.4504, 23.1604, 9.0),
         (113.45, 23.1604, 9.0)],
        [[(113.4501, 23.1601, 9.0), (113.4503, 23.1601, 9.0), (113.4503, 23.1603, 9.0),
          (113.4501, 23.1603, 9.0)]],
    )  # fmt: skip
    twin = shapely.MultiPolygon([shapely.force_3d(b, 12.0) for b in squares(2, x0=113.4510)])
    path = tmp_path / "z.geojson"
    gpd.GeoDataFrame(
        {"building_id": ["Z1", "Z2", "Z3"], "Floor": [3, 4, 5],
         "geometry": [courtyard, twin, shapely.force_3d(squares(1, x0=113.452)[0], 15.0)]},
        crs="EPSG:4326",
    ).to_file(path, engine="pyogrio")  # fmt: skip
    assert (
        "Polygon Z" in str(pyogrio.read_info(path)["geometry_type"])
        or shapely.has_z(gpd.read_file(path).geometry).all()
    )
    result = run_cli(db, "village", "import", str(path), "--id-column", "building_id")
    assert result.returncode == 0, result.stderr
    assert "3 footprints had Z coordinates: dropped" in result.stdout
    assert "1 footprints have courtyards" in result.stdout
    assert "1 footprints are multipolygons: kept whole" in result.stdout
    with psycopg.connect(db) as conn:
        stored = read_buildings(conn).set_index("building_id").geometry
    assert not shapely.has_z(stored.array).any()
    assert len(stored["Z1"].interiors) == 1
    assert stored["Z2"].geom_type == "MultiPolygon" and len(stored["Z2"].geoms) == 2
    records = layers.building_records(stored.reset_index().assign(
        address="a", storeys=3, height_m=9.0, grid_code=None))  # fmt: skip
    raw_z = gpd.read_file(path).assign(address="a", storeys=3, height_m=9.0)
    for record in layers.building_records(raw_z):  # the bug: a ValueError here
        polygon = record["polygon"]
        rings = polygon if isinstance(polygon[0][0], list) else [polygon]
        assert all(len(xy) == 2 for ring in rings for xy in ring)
    courtyard_record = next(r for r in records if r["building_id"] == "Z1")
    assert len(courtyard_record["polygon"]) == 2  # [outer ring, the courtyard]
    assert len(courtyard_record["polygon"][1]) == 5
    assert sum(r["building_id"] == "Z2" for r in records) == 2
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO app_users (username, role) VALUES ('a', 'admin')")
        conn.execute("SELECT vt_set_password('a', 'polygon-z password 1')")
    monkeypatch.setenv("VT_DB_DSN", db)
    app = AppTest.from_file(str(DASHBOARD_APP), default_timeout=60)
    app.run()
    app.text_input[0].input("a")
    app.text_input[1].input("polygon-z password 1")
    app.button[0].click().run()
    assert not app.exception, app.exception
    assert {m.label: m.value for m in app.metric}["楼栋 Buildings"] == "3"


def _write_shapefile_without_cpg(path: Path, frame: gpd.GeoDataFrame, encoding: str) -> None:
    frame.to_file(path, engine="pyogrio", encoding=encoding)
    path.with_suffix(".cpg").unlink(missing_ok=True)


def test_a_gbk_shapefile_without_cpg_is_detected_and_encoding_can_be_said(
    db: str, tmp_path: Path
) -> None:
    frame = gpd.GeoDataFrame(
        {"bid": ["G1", "G2"], "address": ["龙湖村东街3巷5号", "龙湖村西街8号"], "Floor": [6, 4]},
        geometry=squares(2), crs="EPSG:4326",
    )  # fmt: skip
    gbk = tmp_path / "gbk.shp"
    _write_shapefile_without_cpg(gbk, frame, "gbk")
    report = ImportReport("gbk")
    read = read_footprints(gbk, report=report)
    assert read.address.tolist() == frame.address.tolist()
    assert "no .cpg" in report.notes[0] and "gb18030" in report.notes[0]
    # A .cpg that names the wrong code page (GBK text declared UTF-8): detected and said.
    lying = tmp_path / "lying.shp"
    _write_shapefile_without_cpg(lying, frame, "gbk")
    lying.with_suffix(".cpg").write_text("UTF-8")
    report = ImportReport("lying")
    assert read_footprints(lying, report=report).address.tolist() == frame.address.tolist()
    assert any(".cpg names a code page" in n and "gb18030" in n for n in report.notes)
    utf8 = tmp_path / "utf8.shp"
    _write_shapefile_without_cpg(utf8, frame, "utf-8")
    assert read_footprints(utf8).address.tolist() == frame.address.tolist()
    # Said explicitly, and said wrongly: a clear error, not mojibake.
    assert read_footprints(gbk, encoding="gbk").address.tolist() == frame.address.tolist()
    with pytest.raises(ValueError, match="not utf-8"):
        read_footprints(gbk, encoding="utf-8")
    with pytest.raises(ValueError, match="unknown text encoding"):
        read_footprints(gbk, encoding="klingon")
    # Text that was already mojibake when it was written is warned about.
    broken = frame.assign(address=[a.encode().decode("latin-1") for a in frame.address])
    garbled = tmp_path / "garbled.gpkg"
    broken.to_file(garbled, engine="pyogrio")
    report = ImportReport("garbled")
    read_footprints(garbled, report=report)
    assert any("address" in n and "mojibake" in n for n in report.notes)
    assert looks_like_mojibake("龙湖村".encode().decode("gbk", errors="replace"))
    assert not looks_like_mojibake("龙湖村东街") and not looks_like_mojibake("Straße café")
    assert not looks_like_mojibake("Église Notre-Dame-de-Lourdes")  # Shamian's name:fr
    assert looks_like_mojibake("Áúºþ´å¶«½Ö3Ïï5ºÅ")  # GBK read as Latin-1
    assert looks_like_mojibake("龙湖村".encode().decode("latin-1"))  # UTF-8 read as Latin-1
    args = ["village", "import", str(gbk), "--id-column", "bid", "--dry-run"]
    said = run_cli(db, *args, "--encoding", "gb18030")
    assert said.returncode == 0, said.stderr
    assert "2 from address" in said.stdout and "no .cpg" not in said.stdout
    detected = run_cli(db, *args)
    assert "no .cpg" in detected.stdout and "read as gb18030" in detected.stdout


def test_bd09_inverts_the_published_formula_and_footprints_land_where_they_were(
    suzhou: gpd.GeoDataFrame,
) -> None:
    # coordTransform's README: GCJ-02 (116.404, 39.915) is BD-09 (116.41036949371029, 39.9213...).
    glon, glat = bd09_to_gcj02(116.41036949371029, 39.92133699351021)
    assert (glon, glat) == pytest.approx((116.404, 39.915), abs=1e-8)
    sample = suzhou.head(30)
    shifted = sample.copy()
    shifted.geometry = sample.geometry.apply(
        lambda g: shapely.transform(g, lambda xy: [wgs84_to_bd09(x, y) for x, y in xy])
    )
    assert shifted.geometry.iloc[0].centroid.distance(sample.geometry.iloc[0].centroid) > 5e-3
    back, report = buildings_from_frame(shifted, source_crs="bd09")
    error_m = back.to_crs("EPSG:32651").centroid.distance(
        sample.to_crs("EPSG:32651").centroid.reset_index(drop=True)
    )
    assert report.loaded == 30 and error_m.max() < 0.01
    assert bd09_to_wgs84(*wgs84_to_bd09(113.45, 23.16)) == pytest.approx((113.45, 23.16), 1e-9)


def test_an_unknown_crs_is_one_line_listing_what_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "b.geojson"
    gpd.GeoDataFrame({"geometry": squares(1)}, crs="EPSG:4326").to_file(path)
    for crs in ("EPSG:999999", "wgs-85", "baidoo"):
        result = run_cli(None, "village", "import", str(path), "--crs", crs, "--dry-run")
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert f"unknown coordinate system {crs!r}" in lines[0]
        for accepted in ("EPSG:4326", "EPSG:4490", "gcj02", "bd09"):
            assert accepted in lines[0]
    assert str(resolve_crs("CGCS2000")) == "EPSG:4490" and resolve_crs("BD-09") == "bd09"


def test_an_extent_that_does_not_fit_the_declared_crs_is_refused_with_a_hint() -> None:
    metres = gpd.GeoDataFrame({"geometry": squares(2)}, crs="EPSG:4326").to_crs("EPSG:4547")
    with pytest.raises(ValueError, match=r"look like projected metres.*--crs"):
        buildings_from_frame(metres.set_crs(None, allow_override=True), source_crs="EPSG:4326")
    with pytest.raises(ValueError, match="projected metres"):
        buildings_from_frame(metres.set_crs("EPSG:4326", allow_override=True))
    with pytest.raises(ValueError, match="look like degrees"):
        buildings_from_frame(gpd.GeoDataFrame({"geometry": squares(2)}), source_crs="EPSG:4547")
    # Gauss-Kruger with its zone number on x (38 500 000) declared as the zone-less CM 114E.
    zoned = metres.to_crs("EPSG:4526").set_crs(None, allow_override=True)
    with pytest.raises(ValueError, match="fall outside where EPSG:4547"):
        buildings_from_frame(zoned, source_crs="EPSG:4547")
    assert buildings_from_frame(zoned, source_crs="EPSG:4526")[1].loaded == 2
    with pytest.raises(ValueError, match="not degrees"):
        buildings_from_frame(metres.set_crs(None, allow_override=True), source_crs="gcj02")


def test_addresses_come_from_the_best_tags_and_the_fallback_is_named() -> None:
    frame = gpd.GeoDataFrame(
        {
            "osm_id": ["a", "b", "c", "d"],
            "addr:city": ["广州市", None, None, None],
            "addr:district": ["黄埔区", None, None, None],
            "addr:street": ["龙湖大街", "龙湖大街", None, None],
            "addr:housenumber": ["1号", None, None, None],
            "name": ["一号楼", None, "祠堂", None],
            "门牌": ["龙湖村1号", "龙湖村2号", None, None],
        },
        geometry=squares(4), crs="EPSG:4326",
    )  # fmt: skip
    buildings, report = buildings_from_frame(frame)
    assert buildings.address.tolist() == ["广州市黄埔区龙湖大街1号", "龙湖大街", "祠堂", "d"]
    assert report.address_sources == {
        "addr:street + addr:housenumber": 1, "addr:street": 1, "name": 1,
        "the building id (no address tag or column)": 1,
    }  # fmt: skip
    assert report.address_fallback == [("d", "no address: the building id is used")]
    configured, report = buildings_from_frame(frame, AttributeMapping(address=("门牌",)))
    assert configured.address.tolist()[:2] == ["龙湖村1号", "龙湖村2号"]
    assert report.address_sources["门牌"] == 2


def _grid_file(path: Path) -> Path:
    gpd.GeoDataFrame(
        {"code": ["G01", "G02"], "name": ["东片", "西片"]},
        geometry=[box(113.4499, 23.1599, 113.4505, 23.1602),
                  box(113.4505, 23.1599, 113.4508, 23.1602)],
        crs="EPSG:4326",
    ).to_file(path, engine="pyogrio")  # fmt: skip
    return path


def test_grid_cells_from_a_polygon_file_spatial_join_and_buildings_outside(
    db: str, tmp_path: Path
) -> None:
    footprints = tmp_path / "b.geojson"
    gpd.GeoDataFrame(
        {"building_id": ["B1", "B2", "B3", "B4"], "Floor": [3, 3, 3, 3]},
        geometry=squares(4), crs="EPSG:4326",
    ).to_file(footprints, engine="pyogrio")  # fmt: skip
    grids = _grid_file(tmp_path / "grids.geojson")
    result = run_cli(
        db, "village", "import", str(footprints), "--id-column", "building_id",
        "--grid-cells", str(grids), "--grid-code-column", "code",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "grid cells loaded:    2" in result.stdout
    assert "grid by spatial join: 3" in result.stdout
    assert "outside every grid:   1" in result.stdout
    assert "outside grids: B4: in no grid cell" in result.stdout
    with psycopg.connect(db) as conn:
        grid_of = dict(conn.execute("SELECT building_id, grid_code FROM buildings").fetchall())
    assert grid_of == {"B1": "G01", "B2": "G01", "B3": "G02", "B4": None}
    assert run_cli(db, "village", "set-grid", "G02", "B4").returncode == 0
    assert run_cli(db, "village", "set-grid", "NOPE", "B3").returncode == 1
    added = run_cli(db, "users", "add", "li", "--role", "inspector", "--grid", "G02")
    assert added.returncode == 0, added.stderr
    assert count(db, "SELECT count(*) FROM buildings WHERE grid_code = 'G02'") == 2


def test_reimport_keeps_what_the_file_does_not_carry_and_reports_changes(
    db: str, tmp_path: Path
) -> None:
    footprints = tmp_path / "b.geojson"
    frame = gpd.GeoDataFrame(
        {"osm_id": ["w1", "w2", "w3"], "building:levels": ["3", "4", None]},
        geometry=squares(3), crs="EPSG:4326",
    )  # fmt: skip
    frame.to_file(footprints, engine="pyogrio")
    grids = _grid_file(tmp_path / "grids.geojson")
    args = ["village", "import", str(footprints), "--id-prefix", "LH-"]
    assert run_cli(db, *args, "--grid-cells", str(grids)).returncode == 0
    with psycopg.connect(db) as conn:  # what users did meanwhile
        conn.execute("UPDATE buildings SET landlord = '陈伯' WHERE building_id = 'LH-w1'")
        conn.execute("UPDATE buildings SET grid_code = 'G01' WHERE building_id = 'LH-w3'")
        conn.execute("UPDATE buildings SET storeys = 7 WHERE building_id = 'LH-w3'")
        conn.execute("UPDATE buildings SET address = '龙湖村二巷2号' WHERE building_id = 'LH-w2'")
        conn.execute("UPDATE buildings SET building_id = '440112-0002' WHERE building_id = 'LH-w2'")
    frame.loc[0, "building:levels"] = "5"
    frame.to_file(footprints, engine="pyogrio")
    again = run_cli(db, *args)
    assert again.returncode == 0, again.stderr
    assert "changed: LH-w1: storeys 3 → 5" in again.stdout
    assert "0 new, 1 changed, 2 unchanged" in again.stdout
    with psycopg.connect(db) as conn:
        # The landlord's name lives in people since migration 0061 (buildings.landlord_id).
        query = (
            "SELECT b.building_id, p.name, b.grid_code, b.storeys, b.address FROM buildings b"
            " LEFT JOIN people p ON p.person_id = b.landlord_id"
        )
        rows = {r[0]: r[1:] for r in conn.execute(query)}
    assert set(rows) == {"LH-w1", "440112-0002", "LH-w3"}  # the user's id stays
    assert rows["LH-w1"][:3] == ("陈伯", "G01", 5)
    assert rows["440112-0002"][3] == "龙湖村二巷2号"  # the file had no address: kept
    assert rows["LH-w3"][1:3] == ("G01", 7)  # filled storeys and set grid: kept


def test_tables_from_excel_templates_with_a_validation_report(db: str, tmp_path: Path) -> None:
    import openpyxl

    footprints = tmp_path / "b.geojson"
    gpd.GeoDataFrame(
        {"building_id": ["440112-0001"], "Floor": [5]}, geometry=squares(1), crs="EPSG:4326"
    ).to_file(footprints, engine="pyogrio")
    paths = {}
    for table in ("units", "people", "tenancies", "organisations"):
        paths[table] = tmp_path / f"{table}.xlsx"
        result = run_cli(None, "village", "template", table, str(paths[table]))
        assert result.returncode == 0, result.stderr
    rows = {
        "units": [["440112-0001-301", "440112-0001", "3", "301", "18", "rental"],
                  ["440112-0009-101", "440112-0009", "1", "101", "", "rental"]],
        "people": [["P1", "张三", "tenant", "440112199001011234", "13812345678", "1990-01-01",
                    "no", ""]],
        "tenancies": [["T1", "P1", "440112-0001-301", "2025-01-01", None],
                      ["T2", "P9", "440112-0001-301", "2025-01-01", None]],
        "organisations": [["O1", "shop", "张记便利店", "440112-0001", None]],
    }  # fmt: skip
    for table, path in paths.items():
        book = openpyxl.load_workbook(path)
        sheet = book.active
        assert [c.value for c in sheet[1]][:3] == TEMPLATES[table][0][:3]
        sheet.delete_rows(2)
        for row in rows[table]:
            sheet.append(row)
        book.save(path)
    result = run_cli(
        db, "village", "import", str(footprints), "--id-column", "building_id",
        *[a for t, p in paths.items() for a in (f"--{t}", str(p))],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "units refused: 440112-0009-101: unknown building 440112-0009" in result.stdout
    assert "tenancy T2: unknown person P9" in result.stdout
    for table in ("units", "people", "tenancies", "organisations"):
        assert count(db, f"SELECT count(*) FROM {table}") == 1
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"not a workbook")
    result = run_cli(db, "village", "import", str(footprints), "--units", str(bad))
    assert result.returncode == 1 and "cannot read bad.xlsx" in result.stderr


def test_suzhou_report_prints_its_import_time(db: str) -> None:
    result = run_cli(db, "village", "import", str(SUZHOU), "--id-prefix", "SZ-")
    assert result.returncode == 0, result.stderr
    seconds = float(result.stdout.split("import time:")[1].split("s")[0])
    assert seconds > 0
    print(f"Suzhou, 3,076 buildings: {seconds:.2f} s")


def test_the_odd_levels_file_through_the_command_names_every_building_in_its_report(
    db: str, tmp_path: Path
) -> None:
    full = tmp_path / "report.txt"
    levels = SHARED_DATA / "field" / "M01-osm-building-levels-oddities.geojson"
    result = run_cli(db, "village", "import", str(levels), "--report", str(full))
    assert result.returncode == 0, result.stderr
    written = full.read_text(encoding="utf-8")
    for building, what in (
        ("way/w1002", "list '7;8': the highest, 8, taken"),
        ("way/w1003", "2.5 storeys rounded up to 3"),
        ("way/w1004", "'B1' names only basements"),
        ("way/w1004", "no storey count or height: 6 storeys, the median"),
        ("way/w1005", "range '3-5': the highest, 5, taken"),
    ):
        assert f"storeys: {building}: " in written and what in written, (building, what)
    with psycopg.connect(db) as conn:
        stored = dict(conn.execute("SELECT source_key, storeys FROM buildings").fetchall())
        basements = conn.execute(
            "SELECT basements FROM buildings WHERE source_key = 'way/w1004'"
        ).fetchone()
    assert stored["way/w1006"] == 12 and stored["way/w1002"] == 8 and basements == (1,)


@pytest.mark.parametrize(
    ("lon", "lat"), [(113.45, 23.16), (120.6, 31.3), (87.6, 43.8), (-70.6, -33.4)]
)
def test_the_quick_utm_zone_is_what_geopandas_estimates(lon: float, lat: float) -> None:
    from mapping.coords import utm_crs

    footprint = gpd.GeoSeries([box(lon, lat, lon + 0.001, lat + 0.001)], crs="EPSG:4326")
    assert utm_crs(lon, lat) == footprint.estimate_utm_crs()
