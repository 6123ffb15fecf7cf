"""Coordinates: everything is stored in WGS-84; inputs may come in any CRS pyproj knows
(projected, CGCS2000 = EPSG:4490 and its Gauss-Krüger zones) or in GCJ-02, the offset system
of Chinese web maps and of what a resident app's map SDK reports.

GCJ-02 is not a CRS pyproj can describe (it is an obfuscation, not a projection). The forward
WGS-84 → GCJ-02 formula comes from the maintained ``coordTransform`` package; its published
inverse is a one-step approximation good to 1–2 m, too coarse for 1–3 m alleys, so the inverse
here iterates the forward formula until it agrees to about a millimetre.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import coordTransform as ct
import geopandas as gpd
from shapely import transform as shapely_transform
from shapely.geometry.base import BaseGeometry

from mapping.model import WGS84

GCJ02 = "gcj02"
_TOLERANCE_DEG = 1e-8  # about 1 mm


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    glon, glat = ct.wgs84_to_gcj02(lon, lat)
    return float(glon), float(glat)


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """Solves wgs84_to_gcj02(w) = (lon, lat) for w by fixed-point iteration."""
    wlon, wlat = lon, lat
    for _ in range(30):
        glon, glat = wgs84_to_gcj02(wlon, wlat)
        dlon, dlat = glon - lon, glat - lat
        if abs(dlon) < _TOLERANCE_DEG and abs(dlat) < _TOLERANCE_DEG:
            break
        wlon, wlat = wlon - dlon, wlat - dlat
    return wlon, wlat


def _pointwise(func: Callable[[float, float], tuple[float, float]]) -> Callable[[Any], Any]:
    import numpy as np

    def apply(coords: np.ndarray) -> np.ndarray:
        return np.array([func(float(x), float(y)) for x, y in coords], dtype=float).reshape(-1, 2)

    return apply


def geometry_gcj02_to_wgs84(geometry: BaseGeometry) -> BaseGeometry:
    return shapely_transform(geometry, _pointwise(gcj02_to_wgs84))


def to_wgs84(frame: gpd.GeoDataFrame, source_crs: str | None = None) -> gpd.GeoDataFrame:
    """``source_crs`` overrides what the file declares: "gcj02", or anything pyproj reads
    ("EPSG:4490", "EPSG:4547", a PROJ string). A file that declares no CRS needs one."""
    if source_crs and source_crs.lower() == GCJ02:
        converted = frame.copy()
        converted.geometry = frame.geometry.apply(geometry_gcj02_to_wgs84)
        return converted.set_crs(WGS84, allow_override=True)
    if source_crs:
        frame = frame.set_crs(source_crs, allow_override=True)
    if frame.crs is None:
        raise ValueError(
            "the file declares no coordinate system: say which with --crs"
            " (EPSG:4326 for WGS-84, EPSG:4490 for CGCS2000, gcj02 for Chinese web-map data)"
        )
    return frame.to_crs(WGS84)
