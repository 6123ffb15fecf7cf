"""Map layer benchmark for the large sample village (about 3,000 buildings, 40k units).

    .venv/bin/python bench/layers_bench.py

Measures, side by side in one run, the time to build the layer data and the size of what is
sent to the browser (the deck's JSON), for villagetwin's layers and for the common baseline:
the whole GeoDataFrame handed to a GeoJsonLayer via ``to_json()``. Budget: at most 1 s and
5 MB. Each timing is the median of several runs.

    .venv/bin/python bench/layers_bench.py --district 50000

A district's first paint instead: the large village tiled into a district of that many
buildings, the buildings and grid layers at the district level of detail
(``building_records(detail="district")``) against a GeoJsonLayer of the same buildings.
Budget: at most 3 s and 20 MB.
"""

from __future__ import annotations

import os
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


def district(size: int) -> None:
    """The first paint of a district of ``size`` buildings: copies of the large village side
    by side (each shifted ~1.3 km, ids suffixed), so footprints and attributes stay real."""
    import geopandas as gpd

    started = time.perf_counter()
    village = generate(seed=1, size="large")
    copies, cells, total, k = [], [], 0, 0
    while total < size:
        dx, dy = (k % 8) * 0.013, (k // 8) * 0.013
        b = village.buildings.copy()
        b["geometry"] = b.geometry.translate(dx, dy)
        b["building_id"] = b.building_id + f"-{k}"
        g = village.grid_cells.copy()
        g["geometry"] = g.geometry.translate(dx, dy)
        g["grid_code"] = g.grid_code + f"-{k}"
        copies.append(b)
        cells.append(g)
        total, k = total + len(b), k + 1
    buildings = gpd.GeoDataFrame(pd.concat(copies, ignore_index=True).head(size), crs=b.crs)
    grid_cells = gpd.GeoDataFrame(pd.concat(cells, ignore_index=True), crs=b.crs)
    print(f"district: {len(buildings)} buildings, {len(grid_cells)} grid cells, made in"
          f" {time.perf_counter() - started:.1f}s", file=sys.stderr)  # fmt: skip
    metric = {bid: float(i % 40) for i, bid in enumerate(buildings.building_id)}
    view = layers.view_of(buildings)

    def first_paint() -> str:
        drawn = [
            layers.buildings_layer(layers.building_records(buildings, metric, detail="district")),
            *layers.grid_layers(layers.grid_records(grid_cells)),
        ]
        return str(layers.deck(drawn, view).to_json())

    def full_detail() -> str:
        drawn = [layers.buildings_layer(layers.building_records(buildings, metric))]
        return str(layers.deck(drawn, view).to_json())

    def baseline() -> str:
        drawn = [
            pdk.Layer(
                "GeoJsonLayer", data=buildings.__geo_interface__, extruded=True,
                get_elevation="properties.height_m", get_fill_color=[200, 200, 200],
            )
        ]  # fmt: skip
        return str(pdk.Deck(layers=drawn, initial_view_state=view.state()).to_json())

    def cpu(build: Callable[[], Any]) -> float:
        # CPU seconds of this process: on a shared machine wall time also counts the waits.
        started = time.process_time()
        build()
        return time.process_time() - started

    rows = [
        (name, *timed(build), cpu(build))
        for name, build in (
            ("villagetwin, district level of detail", first_paint),
            ("villagetwin, full detail", full_detail),
            ("baseline: GeoJsonLayer of the GeoDataFrame", baseline),
        )
    ]
    base_s, base_mb = rows[-1][1], len(rows[-1][2].encode()) / 1e6
    print()
    print(f"{f'first paint, {len(buildings):,} buildings':<44} {'build s':>8} {'CPU s':>7}"
          f" {'MB sent':>8} {'x base s':>9} {'x base MB':>9}")  # fmt: skip
    for name, seconds, sent, cpu_s in rows:
        mb = len(sent.encode()) / 1e6
        print(f"{name:<44} {seconds:>8.3f} {cpu_s:>7.2f} {mb:>8.2f} {seconds / base_s:>9.2f}"
              f" {mb / base_mb:>9.2f}")  # fmt: skip
    load = os.getloadavg()[0]
    print(f"load average (1 min) after the run: {load:.1f} on {os.cpu_count()} cores")
    ours_s, ours_mb = rows[0][1], len(rows[0][2].encode()) / 1e6
    within = ours_s <= 3.0 and ours_mb <= 20.0
    print(f"budget 3 s and 20 MB: {'met' if within else 'NOT met'}")


def main() -> None:
    if "--district" in sys.argv:
        district(int(sys.argv[sys.argv.index("--district") + 1]))
        return
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
