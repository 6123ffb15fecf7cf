"""Saving and reading a village as one GeoPackage, a layer per kind of thing."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from mapping.model import Village

_SPATIAL_LAYERS = ("boundary", "grid_cells", "buildings", "alleys", "devices", "pois", "objects")
_TABLES = ("units", "people", "tenancies", "organisations")


def save(village: Village, path: Path) -> Path:
    """Writes ``village`` to the GeoPackage ``path`` (replaced whole if it exists): one layer per
    spatial frame (boundary, grid_cells, buildings, alleys, devices, pois, objects, WGS-84) and one
    attribute table each for units, people, tenancies and organisations. Returns ``path``. Raises
    OSError or pyogrio's errors when the file cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()  # rewrite whole: a GeoPackage appended twice would hold duplicates
    for layer in _SPATIAL_LAYERS:
        frame: gpd.GeoDataFrame = getattr(village, layer)
        frame.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
    for table in _TABLES:
        pyogrio.write_dataframe(getattr(village, table), path, layer=table, driver="GPKG")
    return path


def load(path: Path) -> Village:
    """The village saved by ``save`` in ``path``; its name is the boundary's ``name`` (the file's
    stem when the boundary is empty); dates come back as ``datetime.date``.

    Raises ValueError naming the missing layers when ``path`` is a GeoPackage without them, and
    pyogrio's DataSourceError when it is not a readable GeoPackage."""
    layers = {name for name, _ in pyogrio.list_layers(path)}
    missing = {*_SPATIAL_LAYERS, *_TABLES} - layers
    if missing:
        raise ValueError(
            f"{path} is not a village GeoPackage: no layer {', '.join(sorted(missing))}"
        )
    frames = {
        layer: gpd.read_file(path, layer=layer, engine="pyogrio") for layer in _SPATIAL_LAYERS
    }
    tables = {t: pd.DataFrame(pyogrio.read_dataframe(path, layer=t)) for t in _TABLES}
    for column in ("born", "start_date", "end_date"):
        for table in tables.values():
            if column in table:
                table[column] = pd.to_datetime(table[column]).dt.date
    name = str(frames["boundary"]["name"].iloc[0]) if len(frames["boundary"]) else path.stem
    return Village(name=name, **tables, **frames)  # type: ignore[arg-type]  # frames by layer
