"""Coordinates: everything is stored in WGS-84; inputs may come in any CRS pyproj knows
(projected, CGCS2000 = EPSG:4490 and its Gauss-Krüger zones) or in GCJ-02, the offset system
of Chinese web maps and of what a resident app's map SDK reports.

GCJ-02 is not a CRS pyproj can describe (it is an obfuscation, not a projection). The forward
WGS-84 → GCJ-02 formula comes from the maintained ``coordTransform`` package; its published
inverse is a one-step approximation good to 1–2 m, too coarse for 1–3 m alleys, so the inverse
here iterates the forward formula until it agrees to about a millimetre.

BD-09 is Baidu Maps' further offset of GCJ-02; its forward formula (GCJ-02 → BD-09) comes from
the same package and is inverted the same way.

``resolve_crs`` turns what a user types after ``--crs`` into one of these or a pyproj CRS, and
``check_extent`` refuses data whose coordinates cannot be in the system declared for them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import coordTransform as ct
import geopandas as gpd
import pyproj
from shapely import transform as shapely_transform
from shapely.geometry.base import BaseGeometry

from mapping.model import WGS84

GCJ02 = "gcj02"
BD09 = "bd09"
_TOLERANCE_DEG = 1e-8  # about 1 mm
ACCEPTED_CRS = (
    "EPSG:4326 or wgs84 (WGS-84), EPSG:4490 or cgcs2000 (CGCS2000),"
    " a projected EPSG code such as EPSG:4547 (CGCS2000 / 3-degree Gauss-Kruger CM 114E)"
    " or EPSG:32649 (UTM 49N), gcj02 (Chinese web maps), bd09 (Baidu Maps),"
    " or a PROJ string"
)
_ALIASES = {
    "wgs84": "EPSG:4326", "wgs-84": "EPSG:4326", "wgs 84": "EPSG:4326",
    "cgcs2000": "EPSG:4490", "cgcs-2000": "EPSG:4490",
    "gcj02": GCJ02, "gcj-02": GCJ02, "gcj": GCJ02,
    "bd09": BD09, "bd-09": BD09, "bd09ll": BD09, "baidu": BD09,
}  # fmt: skip


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) in WGS-84 degrees to GCJ-02 degrees (the offset of Chinese web maps, a few hundred
    metres). Outside mainland China's bounding box (73.66–135.05° E, 3.86–53.55° N) the point is
    returned unchanged, as the algorithm does.

    Formula: the public GCJ-02 algorithm (Krasovsky 1940 ellipsoid, a = 6378245 m, e² =
    0.00669342162296594323) as implemented by the ``coordTransform`` package
    (github.com/wandergis/coordTransform_py)."""
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


def wgs84_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) in WGS-84 degrees to BD-09 (Baidu Maps) degrees: WGS-84 → GCJ-02 → BD-09, both
    steps from ``coordTransform`` (BD-09: Baidu's published offset of GCJ-02, θ +
    3e-6·cos(x·π·3000/180), r + 2e-5·sin(y·π·3000/180))."""
    blon, blat = ct.gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))
    return float(blon), float(blat)


def bd09_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """Solves gcj02_to_bd09(g) = (lon, lat) for g by fixed-point iteration."""
    glon, glat = lon, lat
    for _ in range(30):
        blon, blat = (float(v) for v in ct.gcj02_to_bd09(glon, glat))
        dlon, dlat = blon - lon, blat - lat
        if abs(dlon) < _TOLERANCE_DEG and abs(dlat) < _TOLERANCE_DEG:
            break
        glon, glat = glon - dlon, glat - dlat
    return glon, glat


def bd09_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) in BD-09 degrees to WGS-84 degrees: ``bd09_to_gcj02`` then ``gcj02_to_wgs84``,
    each inverted by iterating its forward formula to about 1e-8° (≈ 1 mm)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


@functools.lru_cache(maxsize=128)
def _utm_epsg(epsg: int) -> pyproj.CRS:
    return pyproj.CRS.from_epsg(epsg)


def utm_crs(lon: float, lat: float) -> pyproj.CRS:
    """The WGS 84 / UTM zone holding (lon, lat): zone ⌊(lon + 180) / 6⌋ + 1, EPSG 326zz north
    of the equator and 327zz south (the standard UTM grid; Norway's and Svalbard's exceptions
    are ignored). What geopandas' estimate_utm_crs gives for a building, without its query of
    the CRS database (about half a second), for code that runs on every map refresh."""
    zone = min(60, max(1, int((lon + 180) // 6) + 1))
    return _utm_epsg((32600 if lat >= 0 else 32700) + zone)


def resolve_crs(text: str) -> str | pyproj.CRS:
    """``gcj02``, ``bd09`` or the pyproj CRS that ``text`` names (case and aliases such as
    ``wgs84``/``cgcs2000`` allowed). Raises ValueError, one line listing what is accepted,
    when it names nothing known."""
    key = text.strip().lower()
    alias = _ALIASES.get(key, text.strip())
    if alias in (GCJ02, BD09):
        return alias
    try:
        return pyproj.CRS.from_user_input(alias)
    except pyproj.exceptions.CRSError:
        raise ValueError(f"unknown coordinate system {text!r}; accepted: {ACCEPTED_CRS}") from None


def check_extent(frame: gpd.GeoDataFrame, crs: str | pyproj.CRS) -> None:
    """Refuses (ValueError with a hint) coordinates that cannot be in ``crs``: numbers beyond
    ±180/±90 declared as degrees, degrees declared as projected metres, or projected data that
    lands outside the area the CRS is defined for (pyproj's area of use, 1° margin)."""
    if not len(frame) or frame.geometry.isna().all():
        return
    minx, miny, maxx, maxy = (float(v) for v in frame.total_bounds)
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        return
    name = crs if isinstance(crs, str) else f"{crs.to_string()} ({crs.name})"
    looks_like_degrees = -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90
    geographic = isinstance(crs, str) or crs.is_geographic
    example = f"x {minx:.6g}…{maxx:.6g}, y {miny:.6g}…{maxy:.6g}"
    if geographic and not looks_like_degrees:
        raise ValueError(
            f"the coordinates ({example}) are not degrees, but {name} is in degrees: they look"
            " like projected metres; declare their system with --crs, e.g. EPSG:4547"
            " (CGCS2000 3-degree Gauss-Kruger CM 114E) or EPSG:32649 (UTM 49N)"
        )
    if geographic:
        return
    assert isinstance(crs, pyproj.CRS)
    if looks_like_degrees and max(abs(maxx - minx), abs(maxy - miny)) < 5:
        raise ValueError(
            f"the coordinates ({example}) look like degrees, but {name} is projected (metres):"
            " declare --crs EPSG:4326 (WGS-84), EPSG:4490 (CGCS2000), gcj02 or bd09"
        )
    area = crs.area_of_use
    if area is None:
        return
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
        [minx, maxx], [miny, maxy]
    )
    margin = 1.0
    inside = all(math.isfinite(v) for v in (*lon, *lat)) and (
        area.west - margin <= min(lon) and max(lon) <= area.east + margin
        and area.south - margin <= min(lat) and max(lat) <= area.north + margin
    )  # fmt: skip
    if not inside:
        raise ValueError(
            f"the coordinates ({example}) fall outside where {name} is used ({area.name}):"
            " the declared system is probably wrong (a Gauss-Kruger zone prefix on x, a"
            " different zone or central meridian?); declare the right one with --crs"
        )


def _pointwise(func: Callable[[float, float], tuple[float, float]]) -> Callable[[Any], Any]:
    import numpy as np

    def apply(coords: np.ndarray) -> np.ndarray:
        return np.array([func(float(x), float(y)) for x, y in coords], dtype=float).reshape(-1, 2)

    return apply


def geometry_gcj02_to_wgs84(geometry: BaseGeometry) -> BaseGeometry:
    """A shapely geometry of any type with GCJ-02 (lon, lat) degrees as the same geometry in WGS-84
    degrees, point by point (``gcj02_to_wgs84``); z values are dropped."""
    return shapely_transform(geometry, _pointwise(gcj02_to_wgs84))


def geometry_bd09_to_wgs84(geometry: BaseGeometry) -> BaseGeometry:
    """A shapely geometry of any type with BD-09 (lon, lat) degrees as the same geometry in WGS-84
    degrees, point by point (``bd09_to_wgs84``); z values are dropped."""
    return shapely_transform(geometry, _pointwise(bd09_to_wgs84))


def to_wgs84(frame: gpd.GeoDataFrame, source_crs: str | None = None) -> gpd.GeoDataFrame:
    """``source_crs`` overrides what the file declares: "gcj02", "bd09", or anything pyproj
    reads ("EPSG:4490", "EPSG:4547", a PROJ string). A file that declares no CRS needs one.
    Raises ValueError for an unknown CRS (see resolve_crs) and for coordinates that do not
    fit the CRS (see check_extent)."""
    resolved = resolve_crs(source_crs) if source_crs else None
    if resolved in (GCJ02, BD09):
        check_extent(frame, str(resolved))
        convert = geometry_gcj02_to_wgs84 if resolved == GCJ02 else geometry_bd09_to_wgs84
        converted = frame.copy()
        converted.geometry = frame.geometry.apply(
            lambda g: convert(g) if isinstance(g, BaseGeometry) else g
        )
        return converted.set_crs(WGS84, allow_override=True)
    if resolved is not None:
        frame = frame.set_crs(resolved, allow_override=True)
    if frame.crs is None:
        raise ValueError(
            "the file declares no coordinate system: say which with --crs"
            " (EPSG:4326 for WGS-84, EPSG:4490 for CGCS2000, gcj02 for Chinese web-map data,"
            " bd09 for Baidu Maps)"
        )
    check_extent(frame, frame.crs)
    return frame.to_crs(WGS84)
