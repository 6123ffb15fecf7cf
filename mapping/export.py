"""Exporting a village from the database for GIS tools: GeoPackage and GeoJSON (2D layers),
and CityJSON 2.0 (3D: each building an LoD1 solid extruded from its footprint).

CityJSON (https://www.cityjson.org/specs/2.0.1/) is written through ``cjio``, the CityJSON
authors' own library: it dedupes vertices, quantises them ("transform") and fills the
metadata. It was chosen over 3D Tiles (``py3dtiles``) because a village model is semantic
city data, not a rendering cache: CityJSON keeps each building's attributes in the standard
names (``storeysAboveGround``, ``storeysBelowGround``, ``measuredHeight``), keeps courtyards as
inner rings instead of triangles, opens in 3D GIS viewers (ninja, QGIS's CityJSON loader, FME)
and converts onwards to 3D Tiles/glTF (``cjio … export glb``); py3dtiles' converters take
point clouds and meshes, so extrusion and triangulation would have been ours to write.

Personal data (people, tenancies) is never exported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import psycopg
import pyogrio
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from mapping import db as village_db

FORMATS = ("gpkg", "geojson", "cityjson")


def read_layers(
    conn: psycopg.Connection, village: str | None = None
) -> dict[str, gpd.GeoDataFrame]:
    """The places of ``village`` (a village key; None: of every village) from the database,
    WGS-84: buildings (with ``basements``), grid cells, roads, points of interest.

    Raises psycopg.Error when a query fails."""
    buildings = village_db.read_buildings(conn, village)
    basements: dict[str, int] = dict(
        conn.execute("SELECT building_id, basements FROM buildings").fetchall()
    )
    buildings["basements"] = buildings.building_id.map(basements).fillna(0).astype(int)
    return {
        "buildings": buildings,
        "grid_cells": village_db.read_grid_cells(conn, village),
        "roads": village_db.read_roads(conn, village),
        "points_of_interest": village_db.read_pois(conn, village).drop(columns=["lon", "lat"]),
    }


def to_gpkg(layers: dict[str, gpd.GeoDataFrame], path: Path) -> Path:
    """One GeoPackage, a layer per kind of place (rewritten whole)."""
    path.unlink(missing_ok=True)
    for name, frame in layers.items():
        if len(frame):
            pyogrio.write_dataframe(frame, path, layer=name, driver="GPKG")
    return path


def to_geojson(layers: dict[str, gpd.GeoDataFrame], directory: Path) -> list[Path]:
    """One RFC 7946 GeoJSON file per layer (WGS-84, as the RFC requires) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in layers.items():
        path = directory / f"{name}.geojson"
        path.unlink(missing_ok=True)
        pyogrio.write_dataframe(frame, path, driver="GeoJSON", RFC7946="YES")
        written.append(path)
    return written


def _solid(polygon: Polygon, height: float, vertices: list[list[float]]) -> list[Any]:
    """One LoD1 solid (a shell of surfaces, each [outer ring, inner rings…] of vertex
    indices) extruded from ``polygon`` (metres) to ``height``, surfaces facing outwards."""
    polygon = orient(polygon, sign=1.0)  # exterior counter-clockwise, holes clockwise

    def ring(coords: Any, z: float) -> list[int]:
        start = len(vertices)
        points = list(coords)[:-1]
        vertices.extend([float(x), float(y), z] for x, y, *_ in points)
        return list(range(start, start + len(points)))

    rings = [polygon.exterior, *polygon.interiors]
    bottom = [ring(r.coords, 0.0) for r in rings]
    top = [ring(r.coords, height) for r in rings]
    shell = [[list(reversed(r)) for r in bottom], [list(r) for r in top]]
    for low, high in zip(bottom, top, strict=True):
        for i in range(len(low)):
            j = (i + 1) % len(low)
            shell.append([[low[i], low[j], high[j], high[i]]])
    return [shell]


def cityjson_document(buildings: gpd.GeoDataFrame, title: str) -> dict[str, Any]:
    """A CityJSON 2.0 document of ``buildings`` (WGS-84 in), in the village's UTM zone
    (estimate_utm_crs), each an LoD1 Solid (MultiSolid for a multipolygon) of ``height_m``."""
    from cjio import cityjson

    crs = buildings.estimate_utm_crs() if len(buildings) else None
    metric = buildings.to_crs(crs) if crs is not None else buildings
    vertices: list[list[float]] = []
    objects: dict[str, Any] = {}
    for row in metric.itertuples():
        parts = (
            list(row.geometry.geoms) if isinstance(row.geometry, MultiPolygon) else [row.geometry]
        )
        solids = [_solid(p, float(row.height_m), vertices) for p in parts]
        geometry = (
            {"type": "Solid", "lod": "1", "boundaries": solids[0]}
            if len(solids) == 1
            else {"type": "MultiSolid", "lod": "1", "boundaries": solids}
        )
        attributes = {
            "storeysAboveGround": int(row.storeys),
            "storeysBelowGround": int(getattr(row, "basements", 0) or 0),
            "measuredHeight": round(float(row.height_m), 2),
            "address": row.address,
            "grid_code": None if pd.isna(row.grid_code) else row.grid_code,
            "use": row.use,
        }
        objects[str(row.building_id)] = {
            "type": "Building", "attributes": attributes, "geometry": [geometry],
        }  # fmt: skip
    document = {
        "type": "CityJSON",
        "version": "2.0",
        "transform": {"scale": [1.0, 1.0, 1.0], "translate": [0.0, 0.0, 0.0]},
        "metadata": {"title": title},
        "CityObjects": objects,
        "vertices": vertices,
    }
    model = cityjson.CityJSON(j=document)
    # The vertices above are real coordinates: cjio's compress() quantises them to integers
    # with its own transform (millimetres) after merging duplicates.
    del model.j["transform"]
    model.remove_duplicate_vertices()
    model.compress(important_digits=3)
    if crs is not None:
        model.set_epsg(int(crs.to_epsg()))
    model.update_bbox()
    return dict(model.j)


def to_cityjson(buildings: gpd.GeoDataFrame, path: Path, title: str) -> Path:
    """Writes ``cityjson_document(buildings, title)`` to ``path`` as compact UTF-8 JSON (CityJSON
    2.0, https://www.cityjson.org/specs/2.0.1/), creating its directory; returns ``path``. Raises
    OSError when the file cannot be written."""
    document = cityjson_document(buildings, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, ensure_ascii=False, separators=(",", ":")), "utf-8")
    return path
