"""3D map layers as pure functions: model and data in, pydeck layers out.

Nothing here loads anything from the internet: the deck has no base map unless one is
configured, so the map works on an offline intranet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pandas as pd
import pydeck as pdk

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
    zoom = 18.0
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
    """Outer rings of a polygon or multipolygon, as deck.gl wants them, rounded to ~1 cm."""
    polygons = getattr(geometry, "geoms", [geometry])
    return [[[round(x, 7), round(y, 7)] for x, y in p.exterior.coords] for p in polygons]


def building_records(
    buildings: gpd.GeoDataFrame,
    metric: Mapping[str, float] | None = None,
    selected: str | None = None,
) -> list[dict[str, Any]]:
    """One record per polygon, extruded by height, coloured by ``metric`` (e.g. events in the
    last hour) with the busiest building at the top of the ramp."""
    metric = metric or {}
    top = max(metric.values(), default=0.0)
    records = []
    for row in buildings.itertuples():
        value = float(metric.get(row.building_id, 0.0))
        colour = SELECTED if row.building_id == selected else colour_for(value, top)
        for ring in _rings(row.geometry):
            records.append(
                {
                    "building_id": row.building_id,
                    "address": row.address,
                    "storeys": int(row.storeys),
                    "height": float(row.height_m),
                    "value": value,
                    "polygon": ring,
                    "colour": list(colour),
                }
            )
    return records


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


TOOLTIP = {
    "html": "<b>{address}</b><br/>{building_id} · {storeys} 层 storeys<br/>"
    "近一小时事件 events last hour: {value}",
    "style": {"fontSize": "12px"},
}


def deck(layers: Sequence[pdk.Layer], view: View, base_map_url: str | None = None) -> pdk.Deck:
    """The deck; ``base_map_url`` (a style served on the intranet) is optional and off by
    default, so nothing is fetched from outside."""
    if base_map_url:
        return pdk.Deck(
            layers=list(layers),
            initial_view_state=view.state(),
            map_style=base_map_url,
            map_provider="carto",
            tooltip=TOOLTIP,  # type: ignore[arg-type]
        )
    # Not ``map_style=None``: Streamlit then fills in a Carto base map from the internet. The
    # untouched default with no provider is what Streamlit reads as "no base map at all".
    return pdk.Deck(
        layers=list(layers),
        initial_view_state=view.state(),
        map_provider=None,
        tooltip=TOOLTIP,  # type: ignore[arg-type]
    )
