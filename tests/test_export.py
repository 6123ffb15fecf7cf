"""Exporting a village from the database: GeoPackage, GeoJSON and CityJSON (LoD1 solids)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pyogrio
from cjio import cityjson
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from support import ROOT

from mapping.db import load_village
from mapping.generate import generate


def export(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "village", "export", *args],
        capture_output=True, text=True, cwd=ROOT, env={"VT_DB_DSN": db, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def _signed_volume(surfaces: list[list[list[int]]], vertices: np.ndarray) -> float:
    """Divergence theorem over fan triangles of each ring (outer positive, holes too since
    they wind the other way): positive when the surfaces face outwards."""
    total = 0.0
    for surface in surfaces:
        for ring in surface:
            a = vertices[ring[0]]
            for i in range(1, len(ring) - 1):
                b, c = vertices[ring[i]], vertices[ring[i + 1]]
                total += float(np.dot(a, np.cross(b, c))) / 6.0
    return total


def test_exports_gpkg_geojson_and_cityjson_solids(db: str, tmp_path: Path) -> None:
    village = generate(seed=4, size="small")
    courtyard = Polygon(
        [(113.40, 23.10), (113.4004, 23.10), (113.4004, 23.1004), (113.40, 23.1004)],
        [[(113.4001, 23.1001), (113.4003, 23.1001), (113.4003, 23.1003), (113.4001, 23.1003)]],
    )
    twin = MultiPolygon([box(113.41, 23.10, 113.4101, 23.1001), box(113.4103, 23.10, 113.4104,
                                                                      23.1001)])  # fmt: skip
    with psycopg.connect(db) as conn:
        load_village(conn, village)
        for key, shape, storeys in (("YARD", courtyard, 2), ("TWIN", twin, 3)):
            conn.execute(
                "INSERT INTO buildings (building_id, address, storeys, basements, height_m,"
                " footprint, lon, lat) VALUES (%s, %s, %s, 1, %s, %s, 113.4, 23.1)",
                (key, key, storeys, storeys * 3.0, json.dumps(mapping(shape))),
            )
    n = len(village.buildings) + 2

    gpkg = export(db, "--format", "gpkg", "--out", str(tmp_path / "v.gpkg"))
    assert gpkg.returncode == 0, gpkg.stderr
    layers = dict(pyogrio.list_layers(tmp_path / "v.gpkg"))
    assert {"buildings", "grid_cells", "roads", "points_of_interest"} <= set(layers)
    assert len(gpd.read_file(tmp_path / "v.gpkg", layer="buildings")) == n

    geojson = export(db, "--format", "geojson", "--out", str(tmp_path / "geo"))
    assert geojson.returncode == 0, geojson.stderr
    buildings = gpd.read_file(tmp_path / "geo" / "buildings.geojson")
    assert len(buildings) == n and buildings.crs.to_epsg() == 4326
    assert len(gpd.read_file(tmp_path / "geo" / "grid_cells.geojson")) == len(village.grid_cells)
    yard = buildings.set_index("building_id").geometry["YARD"]
    assert len(yard.interiors) == 1

    result = export(db, "--format", "cityjson", "--out", str(tmp_path / "v.city.json"))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "v.city.json", encoding="utf-8") as f:
        model = cityjson.CityJSON(file=f)  # cjio reads it back
    doc = model.j
    assert doc["type"] == "CityJSON" and doc["version"] == "2.0"
    assert doc["metadata"]["referenceSystem"].endswith("/EPSG/0/32649")
    assert len(doc["CityObjects"]) == n
    scale, translate = np.array(doc["transform"]["scale"]), np.array(doc["transform"]["translate"])
    vertices = np.array(doc["vertices"], dtype=float) * scale + translate
    for key, obj in doc["CityObjects"].items():
        (geometry,) = obj["geometry"]
        solids = [geometry["boundaries"]] if geometry["type"] == "Solid" else geometry["boundaries"]
        for solid in solids:
            (shell,) = solid
            edges = Counter(
                (ring[i], ring[(i + 1) % len(ring)]) for surface in shell for ring in surface
                for i in range(len(ring))
            )  # fmt: skip
            # Closed and consistently oriented: every edge is walked once each way.
            assert all(edges[(b, a)] == 1 for (a, b), c in edges.items() if c == 1), key
            assert all(c == 1 for c in edges.values()), key
            assert _signed_volume(shell, vertices - translate) > 0, key
    yard_obj = doc["CityObjects"]["YARD"]
    assert yard_obj["attributes"]["storeysBelowGround"] == 1
    assert yard_obj["attributes"]["measuredHeight"] == 6.0
    top_with_hole = [s for s in yard_obj["geometry"][0]["boundaries"][0] if len(s) == 2]
    assert len(top_with_hole) == 2  # bottom and roof keep the courtyard as an inner ring
    (yard_shell,) = yard_obj["geometry"][0]["boundaries"]
    metric_area = gpd.GeoSeries([courtyard], crs="EPSG:4326").to_crs("EPSG:32649").area.iloc[0]
    volume = _signed_volume(yard_shell, vertices - translate)
    assert abs(volume - metric_area * 6.0) / (metric_area * 6.0) < 0.01
    assert doc["CityObjects"]["TWIN"]["geometry"][0]["type"] == "MultiSolid"
