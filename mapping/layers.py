"""3D map layers as pure functions: model and data in, pydeck layers out.

Nothing here loads anything from the internet: the deck has no base map unless one is
configured, so the map works on an offline intranet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import geopandas as gpd
import pandas as pd
import pydeck as pdk

from devices.kinds import EVENT_COLOURS, label as kind_label
from mapping.frames import rows

# Sequential colour ramp (light yellow → deep red) for building metrics.
RAMP: tuple[tuple[int, int, int], ...] = (
    (255, 237, 160),
    (254, 217, 118),
    (254, 178, 76),
    (253, 141, 60),
    (252, 78, 42),
    (227, 26, 28),
    (177, 0, 38),
)
IDLE_BUILDING = (190, 196, 206)
SELECTED = (40, 120, 255)


@dataclass(frozen=True, slots=True)
class View:
    lon: float
    lat: float
    zoom: float = 16.6
    pitch: float = 50.0
    bearing: float = -15.0

    def state(self) -> pdk.ViewState:
        """This view as a pydeck ``ViewState`` (longitude and latitude in WGS-84 degrees, web-map
        zoom level, pitch and bearing in degrees)."""
        return pdk.ViewState(
            longitude=self.lon,
            latitude=self.lat,
            zoom=self.zoom,
            pitch=self.pitch,
            bearing=self.bearing,
        )


def view_of(buildings: gpd.GeoDataFrame, width_px: float = 700.0) -> View:
    """A view centred on the bounding box of ``buildings`` (WGS-84), zoomed so that their
    longer side spans about ``width_px`` screen pixels (:func:`metres_per_pixel`), between
    zoom 10 and 19. An empty frame gives a NaN centre (and zoom 17.6)."""
    minx, miny, maxx, maxy = buildings.total_bounds
    lat = (miny + maxy) / 2
    if not math.isfinite(lat):
        return View(float(minx + maxx) / 2, float(lat), 17.6)
    span_m = max(distance_m(minx, lat, maxx, lat), distance_m(minx, miny, minx, maxy), 1.0)
    zoom = math.log2(metres_per_pixel(lat, 0) * width_px / span_m)
    return View(float(minx + maxx) / 2, float(lat), round(float(min(19.0, max(10.0, zoom))), 2))


@dataclass(frozen=True, slots=True)
class Scale:
    """A fixed colour scale for one building metric: ``breaks`` are the lower bounds of
    RAMP's bands (increasing, one per colour), so a colour always means the same numbers and a
    busy hour does not turn the village red (a scale relative to the current maximum did).
    ``name`` is the short Chinese name the tooltip shows beside the value ("近期事件 23"),
    ``label`` the bilingual name of the picker and the legend."""

    name: str
    label: str
    breaks: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.breaks) != len(RAMP) or list(self.breaks) != sorted(set(self.breaks)):
            raise ValueError(
                f"scale {self.label!r}: {len(RAMP)} increasing breaks expected, got {self.breaks}"
            )
        if self.breaks[0] <= 0:
            raise ValueError(f"scale {self.label!r}: the first break must be above 0")

    def colour(self, value: float) -> tuple[int, int, int]:
        """IDLE_BUILDING for 0 (or less), else the band ``value`` falls in; past the last
        break, the last colour."""
        if value < self.breaks[0]:
            return IDLE_BUILDING
        band = sum(1 for b in self.breaks if value >= b) - 1
        return RAMP[band]

    def legend(self) -> list[tuple[str, tuple[int, int, int]]]:
        """(range, colour) rows, 0 first and the last band open ("≥ 100"), exactly the bands
        :meth:`colour` paints (whole numbers: a band 5–9 means 5 ≤ v < 10)."""
        rows: list[tuple[str, tuple[int, int, int]]] = [(f"{self.label}: 0", IDLE_BUILDING)]
        for i, (low, colour) in enumerate(zip(self.breaks, RAMP, strict=True)):
            if i + 1 == len(self.breaks):
                rows.append((f"≥ {low:g}", colour))
                continue
            high = self.breaks[i + 1]
            whole = float(low).is_integer() and float(high).is_integer()
            if whole and high - low == 1:
                rows.append((f"{low:g}", colour))
            elif whole:
                rows.append((f"{low:g}–{high - 1:g}", colour))
            else:
                rows.append((f"{low:g}–<{high:g}", colour))
        return rows


# The building metrics the overview colours by, each on its own fixed scale (a count per
# building: events in the overview's window, people seen today, units …). "alerts" is
# coloured by severity instead (mapping.alert_layers).
SCALES: dict[str, Scale] = {
    "events": Scale("近期事件", "近期事件 recent events", (1, 2, 5, 10, 20, 50, 100)),
    "residents": Scale("今日出入人员", "今日出入人员 residents seen today",
                       (1, 3, 6, 10, 20, 40, 80)),
    "unregistered": Scale("登记外出入人员", "登记外出入人员 seen beyond registered",
                          (1, 2, 3, 5, 8, 12, 20)),
    "registered": Scale("登记租户", "登记租户 registered tenants", (1, 3, 6, 10, 20, 40, 80)),
    "alarms": Scale("24小时告警", "24小时告警 alarms, 24 h", (1, 2, 3, 5, 10, 20, 50)),
    "units": Scale("出租单元", "出租单元 rental units", (1, 3, 6, 10, 20, 30, 50)),
}  # fmt: skip


def _rings(geometry: Any) -> list[list[list[float]]]:
    """Outer rings of a polygon or multipolygon, as deck.gl wants them, rounded to ~1 cm;
    a Z or M coordinate is dropped."""
    polygons = getattr(geometry, "geoms", [geometry])
    return [[[round(c[0], 7), round(c[1], 7)] for c in p.exterior.coords] for p in polygons]


def _deck_polygons(
    geometries: Any, decimals: int = 7, open_rings: bool = False
) -> tuple[list[Any], Any]:
    """Every polygon part of ``geometries`` (a GeoSeries of polygons and multipolygons) as a
    deck.gl polygon (the outer ring, or ``[outer, hole, …]``), rounded to ``decimals``
    (7 ≈ 1 cm, 6 ≈ 10 cm), and the index of the geometry each part belongs to. Z and M are
    dropped. ``open_rings`` leaves out each ring's closing vertex, which deck.gl does not need
    (https://deck.gl/docs/api-reference/layers/polygon-layer#getpolygon). Vectorised through
    shapely's ragged arrays: one pass over all coordinates, not a Python loop per vertex."""
    import numpy as np
    import shapely

    parts, owner = shapely.get_parts(np.asarray(geometries), return_index=True)
    if not len(parts):
        return [], owner
    _, coords, (ring_offsets, part_offsets) = shapely.to_ragged_array(parts, include_z=False)
    xy = np.round(coords, decimals).tolist()
    cut = 1 if open_rings else 0
    rings = [xy[ring_offsets[i] : ring_offsets[i + 1] - cut] for i in range(len(ring_offsets) - 1)]
    polygons = [
        rings[part_offsets[p]] if part_offsets[p + 1] - part_offsets[p] == 1
        else rings[part_offsets[p] : part_offsets[p + 1]]
        for p in range(len(parts))
    ]  # fmt: skip
    return polygons, owner


DETAILS = ("full", "district")


def building_records(
    buildings: gpd.GeoDataFrame,
    metric: Mapping[str, float] | None = None,
    selected: str | None = None,
    detail: str = "full",
    scale: Scale | None = None,
) -> list[dict[str, Any]]:
    """One record per polygon, extruded by height (m), coloured by ``metric`` (building id →
    count) on the fixed ``scale`` (idle grey without one); courtyards are holes. The tooltip
    text (``tip``) is plain text: address, id and storeys, then the metric by its name
    ("近期事件 23") when a scale is given.

    ``selected``: the picked building is flattened to its footprint (height 0; its stacked
    floors, :func:`floor_records`, stand in its place) and :func:`building_layers` draws the
    others translucent. It keeps its place in the records, so a map selection by index
    (Streamlit's) still points at it.

    ``detail="district"`` is the level of detail for a district's first paint (tens of
    thousands of buildings): coordinates to about 10 cm, rings left open, and only what the
    map and its tooltip use (id, height, colour, tip). Raises ValueError for another detail."""
    if detail not in DETAILS:
        raise ValueError(f"detail {detail!r}: expected one of {', '.join(DETAILS)}")
    metric = metric or {}
    district = detail == "district"
    polygons, owner = _deck_polygons(
        buildings.geometry.array, decimals=6 if district else 7, open_rings=district
    )
    ids = buildings.building_id.tolist()
    addresses = buildings.address.tolist()
    storeys = [int(v) for v in buildings.storeys.tolist()]
    heights = [
        0.0 if b == selected else float(v)
        for b, v in zip(ids, buildings.height_m.tolist(), strict=True)
    ]
    values = [float(metric.get(b, 0.0)) for b in ids]
    palette: dict[tuple[int, int, int], list[int]] = {}  # one list per colour, shared
    colours = [
        palette.setdefault(c, list(c))
        for c in (scale.colour(v) if scale else IDLE_BUILDING for v in values)
    ]
    tips = [
        f"{a}\n{b} · {n} 层 storeys" + (f"\n{scale.name} {v:g}" if scale else "")
        for a, b, n, v in zip(addresses, ids, storeys, values, strict=True)
    ]
    if district:
        return [
            {"building_id": ids[i], "height": heights[i], "polygon": polygon,
             "colour": colours[i], "tip": tips[i]}
            for polygon, i in zip(polygons, owner.tolist(), strict=True)
        ]  # fmt: skip
    return [
        {"building_id": ids[i], "address": addresses[i], "storeys": storeys[i],
         "height": heights[i], "value": values[i], "polygon": polygon, "colour": colours[i],
         "tip": tips[i]}
        for polygon, i in zip(polygons, owner.tolist(), strict=True)
    ]  # fmt: skip


FADED_OPACITY = 0.18  # neighbours of a picked building: its floors show through them


def buildings_layer(records: Sequence[Mapping[str, Any]], faded: bool = False) -> pdk.Layer:
    """Extruded buildings, pickable (a click selects one: layer id ``buildings``);
    ``faded`` draws them translucent, for the neighbours of a picked building."""
    return pdk.Layer(
        "PolygonLayer",
        data=list(records),
        id="buildings",
        get_polygon="polygon",
        get_elevation="height",
        get_fill_color="colour",
        get_line_color=[80, 80, 80],
        extruded=True,
        wireframe=not faded,
        pickable=True,
        auto_highlight=True,
        opacity=FADED_OPACITY if faded else 1.0,
        material={"ambient": 0.45, "diffuse": 0.6, "shininess": 20},
    )


def building_layers(
    records: Sequence[Mapping[str, Any]], floors: Sequence[Mapping[str, Any]] = ()
) -> list[pdk.Layer]:
    """The buildings, and a picked building's stacked floors (``floors``, from
    :func:`floor_records`) when there are some: the floors are drawn first and the other
    buildings after them, translucent, so a building inside the block shows its floors
    through taller neighbours (deck.gl blends a layer over what is drawn before it)."""
    if not floors:
        return [buildings_layer(records)]
    return [floors_layer(floors), buildings_layer(records, faded=True)]


def event_records(events: pd.DataFrame, zone: tzinfo | None = None) -> list[dict[str, Any]]:
    """Events at their place (building or device), coloured by device kind; the tooltip
    gives the time as ``2026-11-30 04:02`` in ``zone`` (the village's time zone; times as
    stored without one). ``events`` needs ts, kind, device_id, lon, lat and may have
    elevation (m, the roof)."""
    records = []
    row: Any  # a pandas row: its fields are untyped
    for row in events.itertuples():
        family = str(row.kind).split(".")[0]
        records.append(
            {
                # On the roof of its building, so extruded buildings do not hide it.
                "position": [
                    round(float(row.lon), 7),
                    round(float(row.lat), 7),
                    float(getattr(row, "elevation", 0.0) or 0.0),
                ],
                "kind": row.kind,
                "device_id": row.device_id,
                "ts": str(row.ts),
                "tip": f"{kind_label(row.kind)}\n{row.device_id}\n{_when(row.ts, zone)}",
                "colour": list(EVENT_COLOURS.get(family, (90, 90, 90))),
            }
        )
    return records


def _when(ts: Any, zone: tzinfo | None) -> str:
    """A time as ``2026-11-30 04:02`` in ``zone``; anything not a time as its text."""
    if isinstance(ts, datetime):
        moment: datetime = ts  # pandas hands back Timestamps, a datetime subclass
        if zone is not None and moment.tzinfo is not None:
            moment = moment.astimezone(zone)
        return moment.strftime("%Y-%m-%d %H:%M")
    return str(ts)


def events_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    """Event dots (``event_records``) as a pickable ScatterplotLayer, id ``events``: 2.5 m dots,
    3–12 px on screen, 85 % opaque (deck.gl ScatterplotLayer,
    https://deck.gl/docs/api-reference/layers/scatterplot-layer)."""
    return pdk.Layer(
        "ScatterplotLayer",
        data=list(records),
        id="events",
        get_position="position",
        get_fill_color="colour",
        get_radius=2.5,
        radius_min_pixels=3,
        radius_max_pixels=12,
        opacity=0.85,
        pickable=True,
    )


EVENT_STYLES = ("points", "heatmap", "hexagons")
EVENT_STYLE_NAMES = {
    "points": "点 points", "heatmap": "热力 heat map", "hexagons": "六边形 hexagons",
}  # fmt: skip

# Fixed colour scales for the aggregated views (deck.gl's colorDomain): the same colour means
# the same density in every refresh, however many events the window holds. ColorBrewer YlOrRd
# (https://colorbrewer2.org), as RAMP, six classes.
HEAT_RANGE: tuple[tuple[int, int, int], ...] = RAMP[1:]
HEAT_DOMAIN = (0.0, 12.0)  # summed kernel weight at a pixel: about one event at its centre = 1
HEX_DOMAIN = (1.0, 30.0)  # events in one hexagon over the window
# luma.gl 9 parameters: drawn over what is already drawn, extruded buildings included, and
# hiding nothing drawn after (https://luma.gl/docs/api-reference/core/parameters).
OVER_BUILDINGS = {"depthCompare": "always", "depthWriteEnabled": False}


def hexagon_radius_m(bounds: Sequence[float], cells_across: int = 24) -> float:
    """Radius (m) of the event hexagons for a village of ``bounds`` (minx, miny, maxx, maxy in
    degrees, WGS 84): about ``cells_across`` hexagons along its longer side, at least 8 m
    (about a building) and at most 250 m. Metres per degree from the spherical Earth (111,320 m
    per degree of latitude, times cos(latitude) for longitude). Raises ValueError when a bound
    is not a finite number (an empty frame's NaN bounds)."""
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise ValueError(f"bounds {tuple(bounds)}: expected four finite numbers")
    lat = math.radians((miny + maxy) / 2)
    span = max((maxx - minx) * 111_320 * math.cos(lat), (maxy - miny) * 111_320)
    # Hexagons of radius r sit sqrt(3)·r apart in a row.
    return round(min(250.0, max(8.0, span / (cells_across * math.sqrt(3)))), 1)


def density_legend(style: str) -> list[tuple[str, tuple[int, int, int]]]:
    """(label, colour) rows of the heat map's or the hexagons' fixed colour scale."""
    if style == "heatmap":
        low, high = HEAT_DOMAIN
        step = (high - low) / len(HEAT_RANGE)
        return [
            (f"热度 heat {low + i * step:g}" + ("+" if i == len(HEAT_RANGE) - 1 else ""), c)
            for i, c in enumerate(HEAT_RANGE)
        ]
    if style == "hexagons":
        low, high = HEX_DOMAIN
        step = (high - low) / len(HEAT_RANGE)
        rows = []
        for i, c in enumerate(HEAT_RANGE):
            start = math.ceil(low + i * step)
            rows.append(
                (f"每格事件 events per cell ≥ {high:g}" if i == len(HEAT_RANGE) - 1
                 else f"每格事件 events per cell {start}–{math.ceil(low + (i + 1) * step) - 1}",
                 c)
            )  # fmt: skip
        return rows
    return []


def events_layers(
    records: Sequence[Mapping[str, Any]],
    style: str = "points",
    bounds: Sequence[float] | None = None,
) -> list[pdk.Layer]:
    """Events as points on roofs, as a heat map, or as hexagon bins sized to the village
    (``bounds``, see :func:`hexagon_radius_m`; 10 m without). Heat map and hexagons have fixed
    colour scales (HEAT_DOMAIN, HEX_DOMAIN; legend: :func:`density_legend`) and are drawn
    translucent over the extruded buildings (OVER_BUILDINGS), so they are seen from any angle:
    draw them right after the buildings, before labels and markers. Raises ValueError for an
    unknown style."""
    if style == "points":
        return [events_layer(records)]
    flat = [{"position": r["position"][:2], "kind": r["kind"]} for r in records]
    if style == "heatmap":
        return [
            pdk.Layer(
                "HeatmapLayer", data=flat, id="events-heat", get_position="position",
                radius_pixels=40, intensity=1.0, threshold=0.05, opacity=0.7,
                color_range=[list(c) for c in HEAT_RANGE], color_domain=list(HEAT_DOMAIN),
                parameters=dict(OVER_BUILDINGS),
            )
        ]  # fmt: skip
    if style == "hexagons":
        radius = hexagon_radius_m(bounds) if bounds is not None else 10.0
        return [
            pdk.Layer(
                "HexagonLayer", data=flat, id="events-hex", get_position="position",
                radius=radius, extruded=False, coverage=0.92, pickable=False, opacity=0.6,
                color_range=[list(c) for c in HEAT_RANGE], color_domain=list(HEX_DOMAIN),
                upper_percentile=100, parameters=dict(OVER_BUILDINGS),
            )
        ]  # fmt: skip
    raise ValueError(f"event style {style!r}: expected one of {', '.join(EVENT_STYLES)}")


# Metres per screen pixel at zoom 0 on the equator: deck.gl's Web Mercator world is 512 px
# wide at zoom 0 (https://deck.gl/docs/developer-guide/coordinate-systems), Earth's
# circumference 40,075,016.686 m (WGS 84 equator).
_M_PER_PX_Z0 = 40_075_016.686 / 512


def metres_per_pixel(lat: float, zoom: float) -> float:
    """Ground metres one screen pixel covers at latitude ``lat`` (degrees) and ``zoom``."""
    return _M_PER_PX_Z0 * math.cos(math.radians(lat)) / 2**zoom


def thin_labels(records: Sequence[Mapping[str, Any]], spacing_m: float) -> list[Mapping[str, Any]]:
    """The labels to draw so that none is closer than ``spacing_m`` metres to another:
    greedy, the largest cell first (``area``, m²; ties by ``grid_code``), each label kept when
    it is far enough from every one kept before. Records need ``centre`` [lon, lat, …]."""
    order = sorted(records, key=lambda r: (-float(r.get("area", 0.0)), str(r.get("grid_code"))))
    kept: list[Mapping[str, Any]] = []
    for record in order:
        lon, lat = record["centre"][:2]
        if all(distance_m(lon, lat, k["centre"][0], k["centre"][1]) >= spacing_m for k in kept):
            kept.append(record)
    return kept


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Equirectangular distance (m): exact enough across a village (error ≪ 1 %)."""
    k = 111_320.0
    dx = (lon2 - lon1) * k * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, (lat2 - lat1) * k)


def grid_records(
    grid_cells: gpd.GeoDataFrame,
    away_from: tuple[float, float] | None = None,
    clearance_m: float = 90.0,
) -> list[dict[str, Any]]:
    """Grid cells (网格) with a label (name, then grid worker) at a point inside each, 45 m up
    (above the roofs), and the cell's ``area`` in m². ``away_from`` (lon, lat) of a picked
    building moves a label that would stand within ``clearance_m`` of it aside, to that
    distance along the line from the building through the label."""
    from mapping.coords import utm_crs

    if grid_cells.empty:
        return []
    bounds = grid_cells.total_bounds
    areas = grid_cells.geometry.to_crs(utm_crs((bounds[0] + bounds[2]) / 2,
                                               (bounds[1] + bounds[3]) / 2)).area  # fmt: skip
    records = []
    for row, area in zip(grid_cells.itertuples(), areas.tolist(), strict=True):
        centre = row.geometry.representative_point()
        lon, lat = centre.x, centre.y
        if away_from is not None:
            lon, lat = _aside(lon, lat, away_from, clearance_m)
        for ring in _rings(row.geometry):
            records.append(
                {
                    "grid_code": row.grid_code,
                    "name": row.name,
                    "worker": row.grid_worker or "—",
                    "polygon": ring,
                    "area": round(float(area), 1),
                    "label": f"{row.name}\n{row.grid_worker or ''}".strip(),
                    "centre": [round(lon, 7), round(lat, 7), 45.0],  # above roofs
                }
            )
    return records


def _aside(
    lon: float, lat: float, point: tuple[float, float], clearance_m: float
) -> tuple[float, float]:
    distance = distance_m(lon, lat, *point)
    if distance >= clearance_m:
        return lon, lat
    if distance < 0.01:  # right on it: move north
        return lon, point[1] + clearance_m / 111_320
    scale = clearance_m / distance
    return point[0] + (lon - point[0]) * scale, point[1] + (lat - point[1]) * scale


def grid_layers(
    records: Sequence[Mapping[str, Any]], zoom: float | None = None, label_px: float = 150.0
) -> list[pdk.Layer]:
    """Grid cells (网格) as outlines with their name and grid worker. At ``zoom`` the labels
    are thinned to about ``label_px`` pixels apart (:func:`thin_labels`), so a large village's
    labels do not pile up; without a zoom all are drawn. One label per cell."""
    labels: list[Mapping[str, Any]] = list({r["grid_code"]: r for r in records}.values())
    if zoom is not None and labels:
        lat = float(labels[0]["centre"][1])
        labels = thin_labels(labels, label_px * metres_per_pixel(lat, zoom))
    return [
        pdk.Layer(
            "PolygonLayer", data=list(records), id="grid-cells", get_polygon="polygon",
            filled=False, stroked=True,
            get_line_color=[30, 110, 200, 200], line_width_min_pixels=2, pickable=False,
        ),
        pdk.Layer(
            "TextLayer", data=list(labels), id="grid-labels", get_position="centre",
            get_text="label", get_size=14, get_color=[20, 60, 140, 255],
            character_set="'auto'", font_family="'Noto Sans CJK SC, Noto Sans, sans-serif'",
            billboard=True, get_alignment_baseline="'center'", background=True,
            get_background_color=[255, 255, 255, 200], background_padding=[4, 2],
        ),
    ]  # fmt: skip


def roads_layer(alleys: gpd.GeoDataFrame) -> pdk.Layer:
    """Roads and alleys as a deck.gl PathLayer, id ``roads``, not pickable: ``alleys`` needs
    LineString ``geometry`` (WGS-84), ``width_m`` (metres; drawn at that width) and ``name``
    (https://deck.gl/docs/api-reference/layers/path-layer). Raises NotImplementedError
    (shapely's) for a multi-part geometry, AttributeError for a missing column."""
    data = [
        {
            "path": [[round(x, 7), round(y, 7)] for x, y in row.geometry.coords],
            "width": float(row.width_m),
            "name": row.name,
        }
        for row in alleys.itertuples()
    ]
    return pdk.Layer(
        "PathLayer", data=data, id="roads", get_path="path", get_width="width",
        width_units="'meters'", get_color=[120, 120, 120, 120], pickable=False,
    )  # fmt: skip


DEVICE_COLOURS: dict[bool | None, tuple[int, int, int]] = {
    True: (0, 170, 90),  # online
    False: (40, 40, 40),  # offline: dark with a yellow ring, unlike any alert or ramp colour
    None: (150, 150, 150),  # never heard from
}
OFFLINE_RING = (255, 210, 0)  # the ring around an offline device's dark marker
DEVICE_STATES: dict[bool | None, str] = {
    True: "在线 online", False: "离线 offline", None: "未上报 silent",
}  # fmt: skip
DEVICE_LIFT_M = 3.0  # devices float this far above their building's roof


def device_records(
    devices: pd.DataFrame, heights: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Devices as markers above the roof of their building (``heights``: building id → m;
    ``DEVICE_LIFT_M`` higher), so extruded buildings do not hide them; coloured by state
    (DEVICE_COLOURS: online, offline, never heard from), offline drawn last, on top.
    ``devices`` needs device_id, kind, lon, lat, online and, for the roof, building_id."""
    heights = heights or {}
    records: list[tuple[int, dict[str, Any]]] = []
    row: Any  # a pandas row: its fields are untyped
    for row in devices.itertuples():
        online = None if pd.isna(row.online) else bool(row.online)
        building = getattr(row, "building_id", None)
        roof = heights.get(str(building), 0.0) if isinstance(building, str) else 0.0
        records.append((
            {True: 0, None: 1, False: 2}[online],
            {
                "position": [round(float(row.lon), 7), round(float(row.lat), 7),
                             roof + DEVICE_LIFT_M],
                "device_id": row.device_id,
                "kind": row.kind,
                "state": DEVICE_STATES[online],
                "colour": list(DEVICE_COLOURS[online]),
                "ring": list(OFFLINE_RING) if online is False else [255, 255, 255],
                "size": 6.0 if online is False else 3.0,  # pixels: offline stands out
                "tip": f"{row.device_id} · {kind_label(row.kind)}\n{DEVICE_STATES[online]}",
            },
        ))  # fmt: skip
    return [record for _, record in sorted(records, key=lambda r: r[0])]


def device_legend() -> list[tuple[str, tuple[int, int, int]]]:
    """(label, colour) rows for the device markers."""
    return [(f"设备 device {DEVICE_STATES[k]}", c) for k, c in DEVICE_COLOURS.items()]


def devices_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    """Device markers (billboards: round from any angle), drawn in front of the buildings."""
    return pdk.Layer(
        "ScatterplotLayer", data=list(records), id="devices", get_position="position",
        get_fill_color="colour", get_line_color="ring", stroked=True, get_line_width=1,
        line_width_units="'pixels'", get_radius="size", radius_units="'pixels'",
        pickable=True, billboard=True,
    )  # fmt: skip


def poi_layer(pois: gpd.GeoDataFrame) -> pdk.Layer:
    """Points of interest as their names in a deck.gl TextLayer, id ``pois``: ``pois`` needs Point
    ``geometry`` (WGS-84) and ``name``; 13 px text in a CJK font, characters taken from the data
    (``character_set`` auto, https://deck.gl/docs/api-reference/layers/text-layer)."""
    data = [
        {"position": [round(r.geometry.x, 7), round(r.geometry.y, 7)], "name": r.name}
        for r in pois.itertuples()
    ]
    return pdk.Layer(
        "TextLayer", data=data, id="pois", get_position="position", get_text="name",
        get_size=13, get_color=[120, 40, 0, 255], character_set="'auto'",
        font_family="'Noto Sans CJK SC, Noto Sans, sans-serif'",
    )  # fmt: skip


OBJECT_COLOURS = {
    "fire_hydrant": (230, 30, 30),
    "extinguisher": (255, 120, 0),
    "ebike_charging": (30, 160, 70),
}
OBJECT_NAMES = {
    "fire_hydrant": "消防栓 fire hydrant",
    "extinguisher": "灭火器 extinguisher",
    "ebike_charging": "电动车充电桩 e-bike charging",
}


def object_records(objects: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per object (物): ``objects`` needs ``object_id``, ``kind``, ``lon``/``lat``
    (WGS-84 degrees). Each record: ``position`` [lon, lat, 0.5 m], ``colour`` (RGB of
    ``OBJECT_COLOURS``, grey for another kind), ``tip`` (the kind's name in Chinese and English,
    and the id). Raises AttributeError when a column is missing."""
    return [
        {
            "position": [round(float(r.lon), 7), round(float(r.lat), 7), 0.5],
            "colour": list(OBJECT_COLOURS.get(r.kind, (90, 90, 90))),
            "tip": f"{OBJECT_NAMES.get(r.kind, r.kind)}\n{r.object_id}",
        }
        for r in rows(objects)
    ]


def objects_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    """Object dots (``object_records``) as a pickable ScatterplotLayer, id ``objects``: 1 m dots,
    2–6 px on screen (deck.gl ScatterplotLayer,
    https://deck.gl/docs/api-reference/layers/scatterplot-layer)."""
    return pdk.Layer(
        "ScatterplotLayer", data=list(records), id="objects", get_position="position",
        get_fill_color="colour", get_radius=1.0, radius_min_pixels=2, radius_max_pixels=6,
        pickable=True,
    )  # fmt: skip


def organisation_records(organisations: pd.DataFrame) -> list[dict[str, Any]]:
    """Organisations at their building (shops on the main street, workshops, associations)."""
    return [
        {
            "position": [round(float(r.lon), 7), round(float(r.lat), 7), float(r.height_m) + 2],
            "name": r.name,
            "tip": f"{r.name}\n{r.kind} · {r.building_id}",
        }
        for r in rows(organisations)
    ]


def organisations_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    """Organisation dots (``organisation_records``) as a pickable ScatterplotLayer, id
    ``organisations``: purple 2 m dots, at least 3 px on screen (deck.gl ScatterplotLayer,
    https://deck.gl/docs/api-reference/layers/scatterplot-layer)."""
    return pdk.Layer(
        "ScatterplotLayer", data=list(records), id="organisations", get_position="position",
        get_fill_color=[160, 110, 200], get_radius=2.0, radius_min_pixels=3, pickable=True,
    )  # fmt: skip


UNIT_STATUS_COLOURS: dict[str, tuple[int, int, int]] = {
    "occupied": (70, 150, 220),
    "vacant": (225, 225, 225),
    "overcrowded": (220, 40, 40),  # more people seen than registered (possible 群租)
    "never_seen": (250, 170, 30),  # registered tenants never seen (空挂)
    "unregistered": (200, 30, 140),  # nobody registered, people seen (未登记居住)
    "after_tenancy": (150, 90, 40),  # a card still used after its tenancy ended
    "shop": (160, 110, 200),
    "unknown": (180, 185, 195),
}
UNIT_STATUS_NAMES: dict[str, str] = {
    "occupied": "有人居住 occupied",
    "vacant": "无人出入 vacant",
    "overcrowded": "人数超过登记 overcrowded",
    "never_seen": "登记未出现 never seen",
    "unregistered": "未登记居住 unregistered occupancy",
    "after_tenancy": "退租后仍使用 used after the tenancy ended",
    "shop": "商铺 shop",
    "unknown": "未知 unknown",
}


def unit_legend() -> list[tuple[str, tuple[int, int, int]]]:
    """(label, colour) rows for a picked building's units (UNIT_STATUS_COLOURS)."""
    return [(UNIT_STATUS_NAMES[s], c) for s, c in UNIT_STATUS_COLOURS.items()]


def floor_records(
    footprint: Any,
    storeys: int,
    units: pd.DataFrame,
    status: Mapping[str, str] | None = None,
    storey_height_m: float = 3.0,
) -> list[dict[str, Any]]:
    """One selected building as stacked storeys, each cut into its units (in strips along
    the footprint's longer side) and coloured by status; slabs float with a gap between them
    so every floor reads on its own."""
    from shapely.geometry import box

    from mapping.coords import utm_crs

    status = status or {}
    frame = gpd.GeoSeries([footprint], crs="EPSG:4326")
    centre = footprint.centroid
    utm = utm_crs(centre.x, centre.y)  # the building's own UTM zone, wherever the village is
    metric = frame.to_crs(utm).iloc[0].buffer(-0.3)
    minx, miny, maxx, maxy = metric.bounds
    along_x = (maxx - minx) >= (maxy - miny)
    records = []
    by_floor = {f: g for f, g in units.groupby("floor")} if len(units) else {}
    for floor in range(1, storeys + 1):
        floor_units = by_floor.get(floor)
        names = (
            list(floor_units.sort_values("room").itertuples()) if floor_units is not None else []
        )
        count = max(1, len(names))
        for i in range(count):
            if along_x:
                strip = box(
                    minx + (maxx - minx) * i / count,
                    miny,
                    minx + (maxx - minx) * (i + 1) / count,
                    maxy,
                )
            else:
                strip = box(
                    minx,
                    miny + (maxy - miny) * i / count,
                    maxx,
                    miny + (maxy - miny) * (i + 1) / count,
                )
            cell = metric.intersection(strip).buffer(-0.15)
            if cell.is_empty:
                continue
            cell_wgs = gpd.GeoSeries([cell], crs=utm).to_crs("EPSG:4326").iloc[0]
            unit: Any = names[i] if i < len(names) else None
            unit_id = unit.unit_id if unit is not None else f"{floor}F"
            state = status.get(
                unit_id, "shop" if unit is not None and unit.use == "shop" else "unknown"
            )
            base = (floor - 1) * storey_height_m
            for ring in _rings(cell_wgs):
                records.append(
                    {
                        "polygon": [[x, y, base] for x, y in ring],
                        "height": storey_height_m * 0.8,
                        "unit_id": unit_id,
                        "room": unit.room if unit is not None else "—",
                        "floor": floor,
                        "status": state,
                        "colour": list(
                            UNIT_STATUS_COLOURS.get(state, UNIT_STATUS_COLOURS["unknown"])
                        ),
                        "tip": f"{unit_id} · {floor} 层 floor\n"
                        f"{UNIT_STATUS_NAMES.get(state, UNIT_STATUS_NAMES['unknown'])}",
                    }
                )
    return records


def floors_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    """A picked building's floors (``floor_records``) as a pickable, extruded deck.gl PolygonLayer,
    id ``floors``: each record's ``polygon`` at its base height, extruded by its ``height``
    (metres), wireframe outlined (https://deck.gl/docs/api-reference/layers/polygon-layer)."""
    return pdk.Layer(
        "PolygonLayer", data=list(records), id="floors", get_polygon="polygon",
        get_elevation="height", get_fill_color="colour", get_line_color=[60, 60, 60],
        extruded=True, wireframe=True, pickable=True, auto_highlight=True,
    )  # fmt: skip


# A text tooltip: deck.gl sets it as text, so names and addresses never render as HTML.
TOOLTIP = {"text": "{tip}", "style": {"fontSize": "12px"}}


class CompactDeck(pdk.Deck):  # type: ignore[misc]
    """pydeck writes its JSON indented, one number per line; Streamlit sends exactly what
    ``to_json`` returns, so a village's coordinates would cost several times their size."""

    def to_json(self) -> str:
        """The deck as compact JSON text (no indentation, keys sorted, non-ASCII text as UTF-8
        rather than ``\\u`` escapes), through pydeck's own serialiser."""
        from pydeck.bindings.json_tools import default_serialize

        # Chinese text as UTF-8 (3 bytes a character), not \\uXXXX escapes (6).
        return json.dumps(
            self,
            sort_keys=True,
            default=default_serialize,
            separators=(",", ":"),
            ensure_ascii=False,
        )


def deck(layers: Sequence[pdk.Layer], view: View, base_map_url: str | None = None) -> pdk.Deck:
    """The deck; ``base_map_url`` (a style served on the intranet) is optional and off by
    default, so nothing is fetched from outside."""
    if base_map_url:
        return CompactDeck(
            layers=list(layers),
            initial_view_state=view.state(),
            map_style=base_map_url,
            map_provider="carto",
            tooltip=TOOLTIP,
        )
    # Not ``map_style=None``: Streamlit then fills in a Carto base map from the internet. The
    # untouched default with no provider is what Streamlit reads as "no base map at all".
    return CompactDeck(
        layers=list(layers),
        initial_view_state=view.state(),
        map_provider=None,
        tooltip=TOOLTIP,
    )


def picked_building(selection: Mapping[str, Any] | None) -> str | None:
    """The building id a click on the map picked, from Streamlit's pydeck selection state
    (``{"indices": {layer id: [i]}, "objects": {layer id: [record]}}``, see
    ``st.pydeck_chart(on_select=…)``): an object of the ``buildings`` layer, or a unit of the
    ``floors`` layer (the picked building's own floors: ``None`` then means "keep it"). None
    when nothing of either was clicked."""
    objects = (selection or {}).get("objects") or {}
    for record in objects.get("buildings") or []:
        building = record.get("building_id") if isinstance(record, Mapping) else None
        if isinstance(building, str) and building:
            return building
    return None
