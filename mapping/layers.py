"""3D map layers as pure functions: model and data in, pydeck layers out.

Nothing here loads anything from the internet: the deck has no base map unless one is
configured, so the map works on an offline intranet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pandas as pd
import pydeck as pdk

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
EVENT_COLOURS: dict[str, tuple[int, int, int]] = {
    "gate": (0, 160, 120),
    "camera": (130, 80, 220),
    "access": (240, 120, 0),
    "app": (30, 130, 230),
    "heartbeat": (140, 140, 140),
}


@dataclass(frozen=True, slots=True)
class View:
    lon: float
    lat: float
    zoom: float = 16.6
    pitch: float = 50.0
    bearing: float = -15.0

    def state(self) -> pdk.ViewState:
        return pdk.ViewState(
            longitude=self.lon,
            latitude=self.lat,
            zoom=self.zoom,
            pitch=self.pitch,
            bearing=self.bearing,
        )


def view_of(buildings: gpd.GeoDataFrame) -> View:
    minx, miny, maxx, maxy = buildings.total_bounds
    span = max(maxx - minx, maxy - miny)
    # About 0.003° fits at zoom 17.4 in a 700 px map; each halving of zoom doubles the span.
    zoom = 17.6
    while span > 0.003 and zoom > 10:
        span /= 2
        zoom -= 1
    return View(lon=(minx + maxx) / 2, lat=(miny + maxy) / 2, zoom=zoom)


def colour_for(value: float, top: float) -> tuple[int, int, int]:
    if value <= 0 or top <= 0:
        return IDLE_BUILDING
    index = min(len(RAMP) - 1, int(len(RAMP) * value / (top + 1e-9)))
    return RAMP[index]


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
) -> list[dict[str, Any]]:
    """One record per polygon, extruded by height, coloured by ``metric`` (e.g. events in the
    last hour) with the busiest building at the top of the ramp; courtyards are holes.

    ``detail="district"`` is the level of detail for a district's first paint (tens of
    thousands of buildings): coordinates to about 10 cm, rings left open, and only what the
    map and its tooltip use (id, height, colour, tip)."""
    if detail not in DETAILS:
        raise ValueError(f"detail {detail!r}: expected one of {', '.join(DETAILS)}")
    metric = metric or {}
    top = max(metric.values(), default=0.0)
    district = detail == "district"
    polygons, owner = _deck_polygons(
        buildings.geometry.array, decimals=6 if district else 7, open_rings=district
    )
    ids = buildings.building_id.tolist()
    addresses = buildings.address.tolist()
    storeys = [int(v) for v in buildings.storeys.tolist()]
    heights = [float(v) for v in buildings.height_m.tolist()]
    values = [float(metric.get(b, 0.0)) for b in ids]
    palette: dict[tuple[int, int, int], list[int]] = {}  # one list per colour, shared
    colours = [
        palette.setdefault(c, list(c))
        for c in (
            SELECTED if b == selected else colour_for(v, top)
            for b, v in zip(ids, values, strict=True)
        )
    ]
    tips = [
        f"{a}\n{b} · {n} 层 storeys\n指标 metric: {v:g}"
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


def buildings_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    return pdk.Layer(
        "PolygonLayer",
        data=list(records),
        id="buildings",
        get_polygon="polygon",
        get_elevation="height",
        get_fill_color="colour",
        get_line_color=[80, 80, 80],
        extruded=True,
        wireframe=True,
        pickable=True,
        auto_highlight=True,
        material={"ambient": 0.45, "diffuse": 0.6, "shininess": 20},
    )


def event_records(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Events at their place (building or device), coloured by device kind."""
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
                "tip": f"{row.kind}\n{row.device_id}\n{row.ts}",
                "colour": list(EVENT_COLOURS.get(family, (90, 90, 90))),
            }
        )
    return records


def events_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
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


def legend(top: float, label: str) -> list[tuple[str, tuple[int, int, int]]]:
    """The colour ramp as (range, colour) rows, for the page to draw beside the map."""
    rows: list[tuple[str, tuple[int, int, int]]] = [(f"{label}: 0", IDLE_BUILDING)]
    if top <= 0:
        return rows
    # Exactly the bands colour_for() paints, for whole-number values 1..top.
    bands: list[list[Any]] = []
    for value in range(1, math.ceil(top) + 1):
        colour = colour_for(value, top)
        if bands and bands[-1][2] == colour:
            bands[-1][1] = value
        else:
            bands.append([value, value, colour])
    for low, high, colour in bands:
        rows.append((str(low) if low == high else f"{low}–{high}", colour))
    return rows


EVENT_STYLES = ("points", "heatmap", "hexagons")


def events_layers(records: Sequence[Mapping[str, Any]], style: str = "points") -> list[pdk.Layer]:
    """Events as points on roofs, as a heat map, or as 3D hexagon bins (10 m)."""
    if style == "points":
        return [events_layer(records)]
    flat = [{"position": r["position"][:2], "kind": r["kind"]} for r in records]
    if style == "heatmap":
        return [
            pdk.Layer(
                "HeatmapLayer", data=flat, id="events-heat", get_position="position",
                radius_pixels=40, intensity=1.2, threshold=0.05, opacity=0.75,
            )
        ]  # fmt: skip
    if style == "hexagons":
        return [
            pdk.Layer(
                "HexagonLayer", data=flat, id="events-hex", get_position="position",
                radius=10, elevation_scale=2, extruded=True, coverage=0.9, pickable=True,
                opacity=0.8,
            )
        ]  # fmt: skip
    raise ValueError(f"event style {style!r}: expected one of {', '.join(EVENT_STYLES)}")


def grid_records(grid_cells: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    records = []
    for row in grid_cells.itertuples():
        centre = row.geometry.representative_point()
        for ring in _rings(row.geometry):
            records.append(
                {
                    "grid_code": row.grid_code,
                    "name": row.name,
                    "worker": row.grid_worker or "—",
                    "polygon": ring,
                    "label": f"{row.name}\n{row.grid_worker or ''}",
                    "centre": [round(centre.x, 7), round(centre.y, 7), 45.0],  # above roofs
                }
            )
    return records


def grid_layers(records: Sequence[Mapping[str, Any]]) -> list[pdk.Layer]:
    """Grid cells (网格) as outlines with their name and grid worker."""
    return [
        pdk.Layer(
            "PolygonLayer", data=list(records), id="grid-cells", get_polygon="polygon",
            filled=False, stroked=True,
            get_line_color=[30, 110, 200, 200], line_width_min_pixels=2, pickable=False,
        ),
        pdk.Layer(
            "TextLayer", data=list(records), id="grid-labels", get_position="centre",
            get_text="label", get_size=14, get_color=[20, 60, 140, 255],
            character_set="'auto'", font_family="'Noto Sans CJK SC, Noto Sans, sans-serif'",
            billboard=True, get_alignment_baseline="'center'",
        ),
    ]  # fmt: skip


def roads_layer(alleys: gpd.GeoDataFrame) -> pdk.Layer:
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


DEVICE_COLOURS = {
    True: (0, 170, 90),  # online
    False: (220, 40, 40),  # offline
    None: (150, 150, 150),  # never heard from
}


def device_records(devices: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    row: Any  # a pandas row: its fields are untyped
    for row in devices.itertuples():
        online = None if pd.isna(row.online) else bool(row.online)
        records.append(
            {
                "position": [round(float(row.lon), 7), round(float(row.lat), 7), 1.0],
                "device_id": row.device_id,
                "kind": row.kind,
                "state": {True: "在线 online", False: "离线 offline", None: "未上报 silent"}[
                    online
                ],
                "colour": list(DEVICE_COLOURS[online]),
                "tip": f"{row.device_id} · {row.kind}\n"
                + {True: "在线 online", False: "离线 offline", None: "未上报 silent"}[online],
            }
        )
    return records


def devices_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    return pdk.Layer(
        "ScatterplotLayer", data=list(records), id="devices", get_position="position",
        get_fill_color="colour", get_line_color=[255, 255, 255], stroked=True,
        line_width_min_pixels=1, get_radius=1.5, radius_min_pixels=3, radius_max_pixels=8,
        pickable=True,
    )  # fmt: skip


def poi_layer(pois: gpd.GeoDataFrame) -> pdk.Layer:
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
    return [
        {
            "position": [round(float(r.lon), 7), round(float(r.lat), 7), 0.5],
            "colour": list(OBJECT_COLOURS.get(r.kind, (90, 90, 90))),
            "tip": f"{OBJECT_NAMES.get(r.kind, r.kind)}\n{r.object_id}",
        }
        for r in rows(objects)
    ]


def objects_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
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
    return pdk.Layer(
        "ScatterplotLayer", data=list(records), id="organisations", get_position="position",
        get_fill_color=[160, 110, 200], get_radius=2.0, radius_min_pixels=3, pickable=True,
    )  # fmt: skip


UNIT_STATUS_COLOURS: dict[str, tuple[int, int, int]] = {
    "occupied": (70, 150, 220),
    "vacant": (225, 225, 225),
    "overcrowded": (220, 40, 40),  # more people seen than registered (possible 群租)
    "never_seen": (250, 170, 30),  # registered tenants never seen (空挂)
    "shop": (160, 110, 200),
    "unknown": (180, 185, 195),
}


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
                        "tip": f"{unit_id} · {floor} 层 floor\n{state}",
                    }
                )
    return records


def floors_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
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
