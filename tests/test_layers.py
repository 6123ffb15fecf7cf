"""The map's layer builders (mapping/layers.py), pure: fixed colour scales, hexagons sized to
the village, thinned grid labels, tooltips that name their metric and stay text, devices
above the roofs, a picked building seen through its faded neighbours."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from mapping import layers
from mapping.generate import generate


@pytest.fixture(scope="module")
def large() -> object:
    return generate(seed=1, size="large")


def frame(n: int = 3, address: str = "龙洞村{i}号") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"building_id": [f"B{i}" for i in range(n)],
         "address": [address.format(i=i) for i in range(n)],
         "storeys": [3 + i for i in range(n)], "height_m": [9.0 + 3 * i for i in range(n)]},
        geometry=[box(113.45 + i * 0.0002, 23.16, 113.4501 + i * 0.0002, 23.1601)
                  for i in range(n)],
        crs="EPSG:4326",
    )  # fmt: skip


def test_scales_are_fixed_not_relative_to_the_busiest_building() -> None:
    scale = layers.SCALES["events"]
    quiet = layers.building_records(frame(), {"B0": 3.0, "B1": 4.0}, scale=scale)
    busy = layers.building_records(frame(), {"B0": 3.0, "B1": 400.0}, scale=scale)
    # B0 keeps its colour when another building gets 100 times busier: no "everything red".
    assert quiet[0]["colour"] == busy[0]["colour"] == list(scale.colour(3.0))
    assert busy[1]["colour"] == list(layers.RAMP[-1]) and quiet[2]["colour"] == list(
        layers.IDLE_BUILDING
    )
    assert scale.colour(3) != layers.RAMP[-1]


@pytest.mark.parametrize("name", sorted(layers.SCALES))
def test_each_legend_row_is_the_colour_painted_for_its_range(name: str) -> None:
    scale = layers.SCALES[name]
    rows = scale.legend()
    assert rows[0] == (f"{scale.label}: 0", layers.IDLE_BUILDING) == (rows[0][0], scale.colour(0))
    assert len(rows) == len(layers.RAMP) + 1
    for label, colour in rows[1:]:
        low = float(label.removeprefix("≥ ").split("–")[0])
        assert scale.colour(low) == colour, label
        if "–" in label:  # the top of a closed band is still that band
            assert scale.colour(float(label.split("–")[1].lstrip("<")) - 0.001) == colour
    assert rows[-1][0].startswith("≥ ") and scale.colour(10**9) == rows[-1][1]


def test_a_scale_refuses_breaks_that_do_not_fit_the_ramp() -> None:
    with pytest.raises(ValueError, match="increasing breaks"):
        layers.Scale("x", "x", (1, 2, 3))
    with pytest.raises(ValueError, match="increasing breaks"):
        layers.Scale("x", "x", (1, 3, 2, 4, 5, 6, 7))
    with pytest.raises(ValueError, match="above 0"):
        layers.Scale("x", "x", (0, 1, 2, 3, 4, 5, 6))


def test_tooltips_name_their_metric_in_plain_text() -> None:
    hostile = frame(2, address="<img src=x onerror=alert(1)>{i}<b>")
    records = layers.building_records(hostile, {"B0": 23.0}, scale=layers.SCALES["events"])
    assert records[0]["tip"].splitlines() == [
        "<img src=x onerror=alert(1)>0<b>",
        "B0 · 3 层 storeys",
        "近期事件 23",
    ]
    assert "指标" not in records[0]["tip"] and "metric" not in records[0]["tip"]
    assert records[1]["tip"].endswith("近期事件 0")
    plain = layers.building_records(hostile)  # no metric: no metric line
    assert plain[0]["tip"].splitlines()[-1] == "B0 · 3 层 storeys"
    # The deck's tooltip is a text template: deck.gl sets it as text, never as HTML.
    assert layers.TOOLTIP == {"text": "{tip}", "style": {"fontSize": "12px"}}
    spec = json.loads(layers.deck([layers.buildings_layer(records)], layers.view_of(hostile))
                      .to_json())  # fmt: skip
    assert "html" not in json.dumps(spec.get("tooltip", {})) or spec.get("tooltip") is None


def test_event_tooltip_gives_the_local_time_without_seconds() -> None:
    points = pd.DataFrame({"ts": [datetime(2026, 11, 29, 20, 2, 31, 123456, tzinfo=UTC)],
                           "kind": ["gate.pass"], "device_id": ["gate-1"], "lon": [113.45],
                           "lat": [23.16]})  # fmt: skip
    (record,) = layers.event_records(points, ZoneInfo("Asia/Shanghai"))
    assert record["tip"] == "闸机通行 gate pass\ngate-1\n2026-11-30 04:02"


def test_hexagons_are_sized_to_the_village(large: object) -> None:
    bounds = large.buildings.total_bounds  # type: ignore[attr-defined]
    radius = layers.hexagon_radius_m(bounds)
    # The large village is about 730 m across: some 24 hexagons along it, not two.
    across = 730 / (math.sqrt(3) * radius)
    assert 20 <= across <= 28, (radius, across)
    assert layers.hexagon_radius_m((113.45, 23.16, 113.4501, 23.1601)) == 8.0  # one building
    assert layers.hexagon_radius_m((113.0, 23.0, 114.0, 24.0)) == 250.0  # a whole district
    with pytest.raises(ValueError, match="finite"):
        layers.hexagon_radius_m((math.nan, 0, 1, 1))
    points = [{"position": [113.45, 23.16, 0.0], "kind": "gate.pass"}]
    (hexes,) = layers.events_layers(points, "hexagons", bounds)
    spec = json.loads(layers.deck([hexes], layers.view_of(large.buildings)).to_json())  # type: ignore[attr-defined]
    (layer,) = spec["layers"]
    assert layer["radius"] == radius
    assert layer["colorDomain"] == list(layers.HEX_DOMAIN)  # fixed, not the data's extent
    assert layer["parameters"] == layers.OVER_BUILDINGS and layer["extruded"] is False


def test_heat_map_has_a_fixed_scale_and_is_drawn_over_the_buildings() -> None:
    points = [{"position": [113.45, 23.16, 12.0], "kind": "gate.pass"}]
    (heat,) = layers.events_layers(points, "heatmap")
    spec = json.loads(layers.deck([heat], layers.View(113.45, 23.16)).to_json())
    (layer,) = spec["layers"]
    assert layer["colorDomain"] == list(layers.HEAT_DOMAIN)
    assert layer["colorRange"] == [list(c) for c in layers.HEAT_RANGE]
    assert layer["parameters"] == {"depthCompare": "always", "depthWriteEnabled": False}
    rows = layers.density_legend("heatmap")
    assert [c for _, c in rows] == list(layers.HEAT_RANGE) and rows[-1][0].endswith("+")
    hexes = layers.density_legend("hexagons")
    assert hexes[0][0].endswith("1–5") and hexes[-1][0].endswith("≥ 30")
    assert layers.density_legend("points") == []


def test_grid_labels_of_a_large_village_do_not_overlap(large: object) -> None:
    cells = large.grid_cells  # type: ignore[attr-defined]
    records = layers.grid_records(cells)
    assert len({r["grid_code"] for r in records}) == 36
    view = layers.view_of(large.buildings)  # type: ignore[attr-defined]
    _, labels = layers.grid_layers(records, zoom=view.zoom, label_px=150)
    spec = json.loads(layers.deck([labels], view).to_json())["layers"][0]
    kept = spec["data"]
    spacing = 150 * layers.metres_per_pixel(view.lat, view.zoom)
    assert 4 <= len(kept) < 36  # thinned, not emptied
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            assert layers.distance_m(*a["centre"][:2], *b["centre"][:2]) >= spacing
    # Zoomed in far enough, every cell keeps its label.
    _, close = layers.grid_layers(records, zoom=view.zoom + 3, label_px=150)
    assert len(json.loads(layers.deck([close], view).to_json())["layers"][0]["data"]) == 36


def test_thinning_keeps_the_largest_cell_and_is_deterministic() -> None:
    records = [
        {"grid_code": "A", "area": 100.0, "centre": [113.45, 23.16, 45.0]},
        {"grid_code": "B", "area": 900.0, "centre": [113.4501, 23.16, 45.0]},  # ~10 m east
        {"grid_code": "C", "area": 100.0, "centre": [113.46, 23.16, 45.0]},  # ~1 km east
    ]
    kept = layers.thin_labels(records, 50)
    assert [r["grid_code"] for r in kept] == ["B", "C"]
    assert layers.thin_labels(list(reversed(records)), 50) == kept
    assert len(layers.thin_labels(records, 5)) == 3
    assert math.isclose(layers.metres_per_pixel(0, 0), 78271.5, rel_tol=1e-4)


def test_labels_move_aside_from_a_picked_building(large: object) -> None:
    cells = large.grid_cells  # type: ignore[attr-defined]
    first = layers.grid_records(cells)[0]
    at = (first["centre"][0], first["centre"][1])  # a building right under the label
    moved = layers.grid_records(cells, away_from=at, clearance_m=40)[0]
    assert layers.distance_m(*moved["centre"][:2], *at) == pytest.approx(40, abs=0.5)
    aside = layers.grid_records(cells, away_from=at, clearance_m=40)
    others = zip(layers.grid_records(cells)[1:], aside[1:], strict=True)
    assert all(a["centre"] == b["centre"] for a, b in others if
               layers.distance_m(*a["centre"][:2], *at) > 40)  # fmt: skip


def test_devices_stand_above_their_roofs_offline_on_top_with_a_legend() -> None:
    devices = pd.DataFrame({
        "device_id": ["off", "on", "new"], "kind": ["gate", "door_reader", "camera"],
        "building_id": ["B1", "B1", None], "lon": [113.45] * 3, "lat": [23.16] * 3,
        "online": [False, True, None],
    })  # fmt: skip
    records = layers.device_records(devices, {"B1": 30.0})
    assert [r["device_id"] for r in records] == ["on", "new", "off"]  # offline drawn last
    by_id = {r["device_id"]: r for r in records}
    assert by_id["off"]["position"][2] == 30.0 + layers.DEVICE_LIFT_M
    assert by_id["new"]["position"][2] == layers.DEVICE_LIFT_M
    assert by_id["off"]["colour"] == list(layers.DEVICE_COLOURS[False])
    assert by_id["off"]["tip"] == "off · 出入口闸机 gate\n离线 offline"
    legend = dict(layers.device_legend())
    assert legend["设备 device 离线 offline"] == layers.DEVICE_COLOURS[False]
    assert len(set(legend.values())) == 3


def test_a_picked_building_shows_its_floors_through_faded_neighbours() -> None:
    buildings = frame(3)
    records = layers.building_records(buildings, selected="B1")
    # Flattened, its floors stand in its place; still the second record (selection by index).
    assert [(r["building_id"], r["height"]) for r in records] == [
        ("B0", 9.0),
        ("B1", 0.0),
        ("B2", 15.0),
    ]
    row = buildings.iloc[1]
    units = pd.DataFrame({"unit_id": ["B1-101", "B1-102"], "floor": [1, 1], "room": ["101", "102"],
                          "use": ["residential", "shop"]})  # fmt: skip
    floors = layers.floor_records(row.geometry, int(row.storeys), units, {"B1-101": "overcrowded"})
    drawn = layers.building_layers(records, floors)
    assert [layer.id for layer in drawn] == ["floors", "buildings"]  # floors first, then faded
    spec = json.loads(layers.deck(drawn, layers.view_of(buildings)).to_json())["layers"]
    assert spec[1]["opacity"] == layers.FADED_OPACITY < 0.5 and spec[0].get("opacity", 1) == 1
    tips = {r["unit_id"]: r["tip"] for r in floors}
    assert tips["B1-101"] == "B1-101 · 1 层 floor\n人数超过登记 overcrowded"
    assert tips["B1-102"].endswith("商铺 shop")
    assert {label for label, _ in layers.unit_legend()} >= {"人数超过登记 overcrowded"}
    assert [layer.id for layer in layers.building_layers(records)] == ["buildings"]
