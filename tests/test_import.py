"""Importing real footprints: real files written by geopandas, CRSs, GCJ-02, broken inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd
import psycopg
import pytest
from shapely.geometry import LineString, Polygon, box
from support import ROOT, SHARED_DATA, count

from mapping.coords import gcj02_to_wgs84, to_wgs84, wgs84_to_gcj02
from mapping.importer import AttributeMapping, ImportReport, buildings_from_frame, units_from_frame

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
    frame = gpd.GeoDataFrame({"geometry": [box(0, 0, 10, 10)]})
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
