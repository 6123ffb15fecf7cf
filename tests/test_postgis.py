"""The village model in PostGIS: valid layers for QGIS (geometry_columns, SRID, GiST, valid
geometries) and the spatial work done by the database."""

from __future__ import annotations

import json

import psycopg
import pytest
from shapely import wkb
from shapely.geometry import Polygon, mapping

from mapping.db import load_village
from mapping.generate import generate

LAYERS = {
    ("buildings", "geom"): ("MULTIPOLYGON", 4326),
    ("grid_cells", "geom"): ("MULTIPOLYGON", 4326),
    ("roads", "geom"): ("MULTILINESTRING", 4326),
    ("points_of_interest", "geom"): ("POINT", 4326),
    ("devices", "geom"): ("POINT", 4326),
    ("objects", "geom"): ("POINT", 4326),
    ("villages", "boundary"): ("MULTIPOLYGON", 4326),
}


@pytest.fixture
def village_db(db: str) -> str:
    village = generate(seed=3, size="small")
    with psycopg.connect(db) as conn:
        load_village(conn, village)
        courtyard = Polygon(
            [(113.40, 23.10), (113.4004, 23.10), (113.4004, 23.1004), (113.40, 23.1004)],
            [[(113.4001, 23.1001), (113.4003, 23.1001), (113.4003, 23.1003),
              (113.4001, 23.1003)]],
        )  # fmt: skip
        conn.execute(
            "INSERT INTO buildings (building_id, address, storeys, height_m, footprint, lon, lat)"
            " VALUES ('YARD', '天井楼', 2, 6, %s, 113.4002, 23.1002)",
            (json.dumps(mapping(courtyard)),),
        )
    return db


def test_the_tables_are_valid_postgis_layers(village_db: str) -> None:
    with psycopg.connect(village_db) as conn:
        columns = {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute(
                "SELECT f_table_name, f_geometry_column, type, srid FROM geometry_columns"
            )
        }
        for layer, kind in LAYERS.items():
            assert columns[layer] == kind, layer
        assert columns[("units_in_buildings", "geom")][1] == 4326
        gist = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE indexdef ~ 'gist'")
        }
        assert {"buildings_geom", "grid_cells_geom", "roads_geom", "points_of_interest_geom",
                "villages_boundary"} <= gist  # fmt: skip
        for table, column in LAYERS:
            invalid, other_srid, total = conn.execute(
                f"SELECT count(*) FILTER (WHERE NOT ST_IsValid({column})),"
                f" count(*) FILTER (WHERE ST_SRID({column}) <> 4326), count({column}) FROM {table}"
            ).fetchone()  # type: ignore[misc]
            assert invalid == 0 and other_srid == 0, table
            assert total > 0 or table in {"devices"}, table
        (crs,) = conn.execute("SELECT projected_crs FROM villages").fetchone()  # type: ignore[misc]
        assert crs == "EPSG:32649"  # estimated from the buildings (Guangzhou: UTM 49N)
        geom = conn.execute("SELECT ST_AsBinary(geom) FROM buildings WHERE building_id = 'YARD'")
        stored = wkb.loads(bytes(geom.fetchone()[0]))  # type: ignore[index]
        assert len(stored.geoms[0].interiors) == 1  # the courtyard is kept


def test_spatial_questions_are_answered_by_the_database(village_db: str) -> None:
    village = generate(seed=3, size="small")
    with psycopg.connect(village_db) as conn:
        building = village.buildings.iloc[5]
        inside = building.geometry.representative_point()
        found = conn.execute("SELECT building_at(%s, %s)", (inside.x, inside.y)).fetchone()
        assert found == (building.building_id,)
        assert conn.execute("SELECT building_at(113.4002, 23.1002)").fetchone() == (None,)
        assert conn.execute("SELECT building_at(113.40005, 23.10005)").fetchone() == ("YARD",)
        assert conn.execute("SELECT building_at(0, 0)").fetchone() == (None,)
        agree = conn.execute(
            "SELECT count(*) FILTER (WHERE grid_of_building(building_id) = grid_code), count(*)"
            " FROM buildings WHERE grid_code IS NOT NULL"
        ).fetchone()
        assert agree is not None and agree[0] == agree[1] > 0
        conn.execute("UPDATE buildings SET grid_code = NULL")
        assigned = conn.execute("SELECT count(*) FROM assign_buildings_to_grids()").fetchone()
        assert assigned == (len(village.buildings),)  # YARD is in no cell
        assert conn.execute(
            "SELECT grid_code FROM buildings WHERE building_id = 'YARD'"
        ).fetchone() == (None,)


def test_roads_and_pois_of_two_villages_do_not_collide(db: str) -> None:
    import dataclasses

    first = generate(seed=3, size="small")
    # Another village's roads and POIs only (its grid codes and buildings would be refused:
    # they are the first village's, see test_villages.py).
    second = dataclasses.replace(
        first, name="凤凰村", grid_cells=first.grid_cells.iloc[:0],
        buildings=first.buildings.iloc[:0], units=first.units.iloc[:0],
        devices=first.devices.iloc[:0], people=first.people.iloc[:0],
        tenancies=first.tenancies.iloc[:0], organisations=first.organisations.iloc[:0],
        objects=first.objects.iloc[:0],
        boundary=first.boundary.assign(geometry=first.boundary.geometry.translate(0.02, 0)),
    )  # fmt: skip
    second.alleys = first.alleys.assign(geometry=first.alleys.geometry.translate(0.02, 0))
    second.pois = first.pois.assign(geometry=first.pois.geometry.translate(0.02, 0))
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO roads VALUES ('road-0', 'old', 'lane', 2, %s)",
            (json.dumps(mapping(first.alleys.geometry.iloc[0])),),
        )
        load_village(conn, first)
        load_village(conn, second)
        load_village(conn, first)  # again: nothing doubles
        roads = conn.execute("SELECT count(*), count(DISTINCT geom) FROM roads").fetchone()
        pois = conn.execute("SELECT count(*) FROM points_of_interest").fetchone()
        villages = conn.execute("SELECT name FROM villages ORDER BY name").fetchall()
        by_village = conn.execute(
            "SELECT village_key, count(*) FROM roads GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert roads == (2 * len(first.alleys), 2 * len(first.alleys))
    assert pois == (2 * len(first.pois),)
    assert villages == [("凤凰村",), ("龙湖村",)]
    assert by_village == [("凤凰村", len(first.alleys)), ("龙湖村", len(first.alleys))]
