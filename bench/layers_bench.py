"""Map layer benchmark for the large sample village (about 3,000 buildings, 40k units).

    .venv/bin/python bench/layers_bench.py

Measures, side by side in one run, the time to build the layer data and the size of what is
sent to the browser (the deck's JSON), for villagetwin's layers and for the common baseline:
the whole GeoDataFrame handed to a GeoJsonLayer via ``to_json()``. Budget: at most 1 s and
5 MB. Each timing is the median of several runs.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pydeck as pdk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mapping import layers
from mapping.generate import generate

RUNS = 5


def timed(build: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(RUNS):
        started = time.perf_counter()
        result = build()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    started = time.perf_counter()
    village = generate(seed=1, size="large")
    generated = time.perf_counter() - started
    print(f"large village: {village.summary()} generated in {generated:.1f}s", file=sys.stderr)
    b = village.buildings
    points = pd.DataFrame(
        {
            "ts": [datetime.now(UTC)] * 5000,
            "kind": ["access.unlock"] * 5000,
            "device_id": ["acc"] * 5000,
            "lon": [b.geometry.iloc[i % len(b)].centroid.x for i in range(5000)],
            "lat": [b.geometry.iloc[i % len(b)].centroid.y for i in range(5000)],
            "elevation": [20.0] * 5000,
        }
    )
    metric = {bid: float(i % 40) for i, bid in enumerate(b.building_id)}
    devices = pd.DataFrame(
        {
            "device_id": village.devices.device_id,
            "kind": village.devices.kind,
            "lon": village.devices.geometry.x,
            "lat": village.devices.geometry.y,
            "online": [i % 10 != 0 for i in range(len(village.devices))],
        }
    )
    selected = b.iloc[len(b) // 2]
    units = village.units[village.units.building_id == selected.building_id]
    view = layers.view_of(b)

    def ours() -> str:
        drawn = [
            layers.buildings_layer(layers.building_records(b, metric)),
            *layers.grid_layers(layers.grid_records(village.grid_cells)),
            layers.roads_layer(village.alleys),
            layers.devices_layer(layers.device_records(devices)),
            layers.poi_layer(village.pois),
            layers.floors_layer(
                layers.floor_records(selected.geometry, int(selected.storeys), units)
            ),
            *layers.events_layers(layers.event_records(points), "points"),
        ]
        return str(layers.deck(drawn, view).to_json())

    def baseline() -> str:
        drawn = [
            pdk.Layer(
                "GeoJsonLayer", data=b.__geo_interface__, extruded=True,
                get_elevation="properties.height_m", get_fill_color=[200, 200, 200],
            ),
            pdk.Layer(
                "GeoJsonLayer", data=village.devices.__geo_interface__, get_fill_color=[0, 0, 0]
            ),
            pdk.Layer(
                "ScatterplotLayer", data=points.astype({"ts": str}).to_dict("records"),
                get_position=["lon", "lat"],
            ),
        ]  # fmt: skip
        return str(pdk.Deck(layers=drawn, initial_view_state=view.state()).to_json())

    ours_s, ours_json = timed(ours)
    base_s, base_json = timed(baseline)
    ours_mb, base_mb = len(ours_json.encode()) / 1e6, len(base_json.encode()) / 1e6
    print()
    print(f"{'layers for the large village':<44} {'build s':>8} {'MB sent':>8}")
    print(f"{'villagetwin (7 layers, 5,000 events)':<44} {ours_s:>8.3f} {ours_mb:>8.2f}")
    print(f"{'baseline: GeoJsonLayer of the GeoDataFrame':<44} {base_s:>8.3f} {base_mb:>8.2f}")
    print(f"{'ratio villagetwin / baseline':<44} {ours_s / base_s:>8.2f} {ours_mb / base_mb:>8.2f}")
    within = ours_s <= 1.0 and ours_mb <= 5.0
    print(f"budget 1 s and 5 MB: {'met' if within else 'NOT met'}")


if __name__ == "__main__":
    main()
