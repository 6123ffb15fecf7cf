"""The sample village: its invariants, determinism, GeoPackage round trip and idempotent load."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from mapping import gpkg
from mapping.db import load_village, read_buildings
from mapping.generate import generate
from mapping.layers import SCALES, building_records, buildings_layer, deck, view_of
from mapping.model import Village


@pytest.fixture(scope="module")
def village() -> Village:
    return generate(seed=7, size="small")


def test_small_village_has_the_promised_size(village: Village) -> None:
    assert len(village.buildings) >= 300
    assert len(village.units) >= 3000
    assert len(village.grid_cells) >= 8
    storeys = village.buildings.loc[village.buildings.use != "ancestral_hall", "storeys"]
    assert storeys.between(4, 14).all()
    assert (storeys.between(4, 9).mean()) > 0.9  # mostly 4–9 storeys, a few taller
    assert (storeys > 9).sum() >= 1


def test_it_stands_in_huangpu(village: Village) -> None:
    minx, miny, maxx, maxy = village.buildings.total_bounds
    assert 113.44 < minx < maxx < 113.46
    assert 23.15 < miny < maxy < 23.17
    assert village.buildings.crs.to_epsg() == 4326


def test_alleys_between_handshake_buildings_are_narrow(village: Village) -> None:
    metric = village.buildings.to_crs("EPSG:32649")
    areas = metric.area
    assert areas.between(80, 101).all()  # plots of about 10 x 10 m
    # The gap from a building to its nearest neighbour: 1–3 m alleys (up to ~3.8 with insets).
    gaps = [
        metric.geometry.iloc[i].distance(metric.drop(index=metric.index[i]).geometry).min()
        for i in range(0, len(metric), 25)
    ]
    assert min(gaps) >= 0.9 and max(gaps) <= 4.0


def test_devices_are_where_they_should_be(village: Village) -> None:
    devices = village.devices
    readers = devices[devices.kind == "access"]
    assert set(readers.building_id) == set(village.buildings.building_id)  # one per building
    assert (devices.kind == "gate").sum() >= 4
    assert (devices.kind == "camera").sum() >= 10
    assert devices.device_id.is_unique


def test_units_belong_to_buildings_and_floors_exist(village: Village) -> None:
    storeys = dict(zip(village.buildings.building_id, village.buildings.storeys, strict=True))
    assert village.units.unit_id.is_unique
    assert village.units.building_id.isin(storeys.keys()).all()
    assert all(
        1 <= f <= storeys[b]
        for b, f in zip(village.units.building_id, village.units.floor, strict=True)
    )


def test_generation_is_deterministic(village: Village) -> None:
    again = generate(seed=7, size="small")
    assert again.buildings.equals(village.buildings)
    assert again.units.equals(village.units)
    assert not generate(seed=8, size="small").buildings.equals(village.buildings)


def test_geopackage_round_trip(village: Village, tmp_path: Path) -> None:
    path = gpkg.save(village, tmp_path / "village.gpkg")
    back = gpkg.load(path)
    assert back.summary() == village.summary()
    assert list(back.buildings.building_id) == list(village.buildings.building_id)
    assert back.buildings.geometry.iloc[0].equals_exact(village.buildings.geometry.iloc[0], 1e-9)
    gpkg.save(village, path)  # writing again replaces, never appends
    assert gpkg.load(path).summary() == village.summary()


def test_loading_twice_changes_nothing(village: Village, db: str) -> None:
    with psycopg.connect(db) as conn:
        load_village(conn, village)
        first = conn.execute("SELECT count(*), sum(storeys) FROM buildings").fetchone()
        load_village(conn, village)
        second = conn.execute("SELECT count(*), sum(storeys) FROM buildings").fetchone()
        units = conn.execute("SELECT count(*) FROM units").fetchone()
        buildings = read_buildings(conn)
    assert first == second == (len(village.buildings), int(village.buildings.storeys.sum()))
    assert units == (len(village.units),)
    assert len(buildings) == len(village.buildings)


def test_layers_extrude_buildings_by_storeys(village: Village) -> None:
    busiest = village.buildings.building_id.iloc[0]
    records = building_records(village.buildings, {busiest: 12.0}, scale=SCALES["events"])
    by_id = {r["building_id"]: r for r in records}
    assert by_id[busiest]["height"] == village.buildings.height_m.iloc[0]
    assert by_id[busiest]["colour"] != by_id[village.buildings.building_id.iloc[1]]["colour"]
    d = deck([buildings_layer(records)], view_of(village.buildings))
    spec = d.to_json()
    assert '"extruded":true' in spec
    assert "mapbox" not in spec.lower() and "carto" not in spec.lower()  # no external base map


def test_large_village_is_about_3000_buildings_and_40k_units() -> None:
    large = generate(seed=1, size="large")
    assert 2800 <= len(large.buildings) <= 3300
    assert 35_000 <= len(large.units) <= 45_000


def test_a_selected_building_stands_as_stacked_floors_of_units(village: Village) -> None:
    from mapping.layers import floor_records

    building = village.buildings.iloc[10]
    units = village.units[village.units.building_id == building.building_id]
    status = {units.unit_id.iloc[0]: "overcrowded"}
    records = floor_records(building.geometry, int(building.storeys), units, status)
    assert len(records) == len(units)
    assert sorted({r["floor"] for r in records}) == list(range(1, int(building.storeys) + 1))
    bases = {r["floor"]: r["polygon"][0][2] for r in records}
    assert all(bases[f + 1] - bases[f] == 3.0 for f in range(1, int(building.storeys)))
    first = next(r for r in records if r["unit_id"] == units.unit_id.iloc[0])
    assert first["status"] == "overcrowded" and first["colour"] == [220, 40, 40]


def test_event_styles_and_compact_json(village: Village) -> None:
    import pandas as pd

    from mapping.layers import EVENT_STYLES, deck, event_records, events_layers, view_of

    points = pd.DataFrame(
        {"ts": ["t"], "kind": ["gate.pass"], "device_id": ["g"], "lon": [113.45], "lat": [23.16]}
    )
    for style in EVENT_STYLES:
        (layer,) = events_layers(event_records(points), style)
        assert layer.type in {"ScatterplotLayer", "HeatmapLayer", "HexagonLayer"}
    with pytest.raises(ValueError, match="event style"):
        events_layers([], "sparkles")
    spec = deck(events_layers(event_records(points)), view_of(village.buildings)).to_json()
    assert "\n" not in spec and '"mapStyle"' not in spec.replace('"mapStyle":"__MAP_STYLE__"', "")


def test_people_tenancies_and_organisations_are_consistent(village: Village) -> None:
    units = village.units.set_index("unit_id")
    people = village.people.set_index("person_id")
    tenancies = village.tenancies
    assert village.people.person_id.is_unique and village.people.credential_ref.is_unique
    assert tenancies.unit_id.isin(units.index).all()  # tenancies inside units
    assert (units.loc[tenancies.unit_id, "use"] == "rental").all()  # nobody rents a shop
    assert tenancies.person_id.isin(people.index).all()
    ended = tenancies.dropna(subset=["end_date"])
    assert (ended.end_date >= ended.start_date).all() and len(ended) > 0
    landlords = set(village.people.loc[village.people.role == "landlord", "name"])
    homes = village.buildings.loc[village.buildings.use != "ancestral_hall", "landlord"]
    assert set(homes) <= landlords
    care = village.people[village.people.care_target]
    assert len(care) > 0
    for person_id in care.person_id:
        unit = tenancies.loc[tenancies.person_id == person_id, "unit_id"].iloc[0]
        assert (tenancies.unit_id == unit).sum() == 1  # living alone
    shops = village.organisations[village.organisations.kind == "shop"]
    assert set(shops.unit_id) == set(village.units.loc[village.units.use == "shop", "unit_id"])
    assert (village.organisations.kind == "grid_team").sum() == len(village.grid_cells)
    on_buildings = village.objects.dropna(subset=["building_id"])
    assert on_buildings.building_id.isin(village.buildings.building_id).all()


def test_id_numbers_carry_valid_check_digits(village: Village) -> None:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    for number in village.people.id_number.head(500):
        total = sum(int(d) * w for d, w in zip(number[:17], weights, strict=True))
        assert number[17] == "10X98765432"[total % 11]


def test_large_village_houses_about_100k_people() -> None:
    large = generate(seed=1, size="large")
    assert 80_000 <= len(large.people) <= 120_000


def test_only_accessors_are_expressions(village: Village) -> None:
    """pydeck turns every plain string into a data accessor; a setting such as widthUnits or
    characterSet must stay a literal, or deck.gl silently ignores it."""
    import json

    import pandas as pd

    from mapping import layers

    devices = pd.DataFrame(
        {"device_id": ["g"], "kind": ["gate"], "lon": [113.45], "lat": [23.16], "online": [True]}
    )
    drawn = [
        layers.buildings_layer(layers.building_records(village.buildings)),
        *layers.grid_layers(layers.grid_records(village.grid_cells)),
        layers.roads_layer(village.alleys),
        layers.poi_layer(village.pois),
        layers.devices_layer(layers.device_records(devices)),
    ]
    spec = json.loads(layers.deck(drawn, layers.view_of(village.buildings)).to_json())
    for layer in spec["layers"]:
        for key, value in layer.items():
            if isinstance(value, str) and value.startswith("@@="):
                assert key.startswith("get"), (layer["id"], key, value)


def test_building_records_keep_courtyards_and_the_district_detail_is_lighter() -> None:
    import geopandas as gpd
    from shapely.geometry import MultiPolygon, Polygon, box

    yard = Polygon(
        [(113.45, 23.16), (113.4504, 23.16), (113.4504, 23.1604), (113.45, 23.1604)],
        [[(113.4501, 23.1601), (113.4503, 23.1601), (113.4503, 23.1603), (113.4501, 23.1603)]],
    )
    twin = MultiPolygon([box(113.46, 23.16, 113.4601, 23.1601), box(113.4603, 23.16, 113.4604,
                                                                      23.1601)])  # fmt: skip
    frame = gpd.GeoDataFrame(
        {"building_id": ["Y", "T"], "address": ["天井楼", "双栋"], "storeys": [2, 3],
         "height_m": [6.0, 9.0]},
        geometry=[yard, twin], crs="EPSG:4326",
    )  # fmt: skip
    full = building_records(frame, {"Y": 3.0})
    assert [r["building_id"] for r in full] == ["Y", "T", "T"]
    assert len(full[0]["polygon"]) == 2 and full[0]["polygon"][1][0] == [113.4501, 23.1601]
    assert full[0]["polygon"][0][0] == full[0]["polygon"][0][-1]  # closed rings
    assert full[1]["polygon"][0] == [113.4601, 23.16] and full[0]["value"] == 3.0
    light = building_records(frame, {"Y": 3.0}, detail="district")
    assert set(light[0]) == {"building_id", "height", "polygon", "colour", "tip"}
    assert len(light[0]["polygon"][0]) == 4  # open ring: deck.gl closes it
    assert light[0]["colour"] == full[0]["colour"] and "天井楼" in light[0]["tip"]
    text = deck([buildings_layer(light)], view_of(frame)).to_json()
    assert "天井楼" in text  # UTF-8, not \\u escapes
    with pytest.raises(ValueError, match="detail"):
        building_records(frame, detail="tiles")
