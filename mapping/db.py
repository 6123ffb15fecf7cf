"""Writing the village model into the database and reading it back for the map.

Loading is an upsert keyed on the standard address and room codes, so loading the same
village twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import geopandas as gpd
import pandas as pd
import psycopg
from psycopg import sql
from shapely.geometry import mapping, shape

from mapping.model import WGS84, Village


def _geojson(geometry: Any) -> str:
    return json.dumps(mapping(geometry), separators=(",", ":"))


def _none(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def _date(value: Any) -> Any:
    return None if value is None or pd.isna(value) else value


def _int(value: Any) -> int | None:
    return None if _none(value) is None else int(value)


def _upsert(
    cur: psycopg.Cursor[Any], table: str, key: str, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    cols = ", ".join(columns)
    cur.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS load_{table}"
        f" (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    # Two loads inside one outer transaction share the temp table: start it empty.
    cur.execute(f"TRUNCATE load_{table}")
    with cur.copy(f"COPY load_{table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    cur.execute(
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM load_{table}"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


def load_buildings(
    cur: psycopg.Cursor[Any], buildings: gpd.GeoDataFrame, village_key: str | None = None
) -> None:
    """Upserts ``buildings`` (a GeoDataFrame in WGS-84 with ``model.BUILDING_COLUMNS``: polygons,
    ``storeys``, ``height_m`` in metres) into ``buildings`` of the village ``village_key``
    (None: none yet), keyed on ``building_id``; each footprint is stored as GeoJSON with its
    centroid (computed in the local UTM zone) as ``lon``/``lat`` degrees. Part of the caller's
    transaction; an empty frame writes nothing.

    Raises psycopg.Error when the database refuses a row (e.g. an unknown ``grid_code``),
    AttributeError when a column is missing, ValueError when the frame has no CRS."""
    from mapping.coords import utm_crs

    if not len(buildings):
        return
    minx, miny, maxx, maxy = buildings.total_bounds
    metric = utm_crs((minx + maxx) / 2, (miny + maxy) / 2)
    centroids = buildings.to_crs(metric).centroid.to_crs(WGS84)
    _upsert(
        cur,
        "buildings",
        "building_id",
        ["building_id", "address", "grid_code", "storeys", "height_m", "landlord", "use",
         "footprint", "lon", "lat", "village_key"],
        [
            (r.building_id, r.address, _none(r.grid_code), int(r.storeys), float(r.height_m),
             _none(r.landlord), r.use, _geojson(r.geometry), c.x, c.y, village_key)
            for r, c in zip(buildings.itertuples(), centroids, strict=True)
        ],
    )  # fmt: skip


def load_units(cur: psycopg.Cursor[Any], units: pd.DataFrame) -> None:
    """Upserts ``units`` (a DataFrame with ``model.UNIT_COLUMNS``; ``floor`` an integer, ``area_m2``
    square metres or empty) into ``units``, keyed on ``unit_id``.

    Raises psycopg.Error when the database refuses a row (e.g. a unit of a building not loaded),
    AttributeError when a column is missing."""
    _upsert(
        cur,
        "units",
        "unit_id",
        ["unit_id", "building_id", "floor", "room", "area_m2", "use"],
        [
            (r.unit_id, r.building_id, int(r.floor), str(r.room), _none(r.area_m2), r.use)
            for r in cast(Iterator[Any], units.itertuples())
        ],
    )


def load_people(cur: psycopg.Cursor[Any], frame: pd.DataFrame) -> None:
    """Upserts people (a DataFrame with ``model.PERSON_COLUMNS``; ``born`` a date or empty) into
    ``people``, keyed on ``person_id``. Personal data: the caller's role must be allowed to write
    it (row-level security, migrations 0060–0064).

    Raises psycopg.Error when the database refuses a row, AttributeError when a column is
    missing."""
    _upsert(
        cur,
        "people",
        "person_id",
        [
            "person_id",
            "name",
            "id_number",
            "phone",
            "born",
            "role",
            "care_target",
            "credential_ref",
        ],
        [
            (
                r.person_id,
                r.name,
                r.id_number,
                r.phone,
                _date(r.born),
                r.role,
                bool(r.care_target),
                _none(r.credential_ref),
            )
            for r in frame.itertuples()
        ],
    )


def load_tenancies(cur: psycopg.Cursor[Any], frame: pd.DataFrame) -> None:
    """Upserts tenancies (a DataFrame with ``model.TENANCY_COLUMNS``; dates, ``end_date`` empty for
    a current tenancy) into ``tenancies``, keyed on ``tenancy_id``.

    Raises psycopg.Error when the database refuses a row (an unknown person or unit, an end before
    the start), AttributeError when a column is missing."""
    _upsert(
        cur,
        "tenancies",
        "tenancy_id",
        ["tenancy_id", "person_id", "unit_id", "start_date", "end_date"],
        [
            (r.tenancy_id, r.person_id, r.unit_id, r.start_date, _date(r.end_date))
            for r in frame.itertuples()
        ],
    )


def load_organisations(cur: psycopg.Cursor[Any], frame: pd.DataFrame) -> None:
    """Upserts organisations (a DataFrame with ``model.ORGANISATION_COLUMNS``; ``building_id``
    and ``unit_id`` may be empty) into ``organisations``, keyed on ``org_id``.

    Raises psycopg.Error when the database refuses a row, AttributeError when a column is
    missing."""
    _upsert(
        cur,
        "organisations",
        "org_id",
        ["org_id", "kind", "name", "building_id", "unit_id"],
        [
            (r.org_id, r.kind, r.name, _none(r.building_id), _none(r.unit_id))
            for r in frame.itertuples()
        ],
    )


def load_village(conn: psycopg.Connection, village: Village) -> dict[str, int]:
    """Upserts the village; returns how many rows of each kind it holds."""
    from mapping.importdb import check_grid_codes, save_village

    with conn.transaction(), conn.cursor() as cur:
        key = save_village(cur, village)
        check_grid_codes(cur, list(village.grid_cells.grid_code), key)
        _upsert(
            cur,
            "grid_cells",
            "grid_code",
            ["grid_code", "name", "grid_worker", "boundary", "village_key"],
            [
                (r.grid_code, r.name, _none(r.grid_worker), _geojson(r.geometry), key)
                for r in village.grid_cells.itertuples()
            ],
        )
        load_buildings(cur, village.buildings, key)
        load_units(cur, village.units)
        _upsert(
            cur,
            "devices",
            "device_id",
            ["device_id", "kind", "building_id", "grid_code", "floor", "door", "lon", "lat"],
            [
                (r.device_id, r.kind, _none(r.building_id), _none(r.grid_code),
                 None if _none(r.floor) is None else int(r.floor), _none(r.door),
                 r.geometry.x, r.geometry.y)
                for r in village.devices.itertuples()
            ],
        )  # fmt: skip
        load_people(cur, village.people)
        load_tenancies(cur, village.tenancies)
        load_organisations(cur, village.organisations)
        _upsert(
            cur,
            "objects",
            "object_id",
            ["object_id", "kind", "building_id", "floor", "lon", "lat"],
            [
                (
                    r.object_id,
                    r.kind,
                    _none(r.building_id),
                    _int(r.floor),
                    r.geometry.x,
                    r.geometry.y,
                )
                for r in village.objects.itertuples()
            ],
        )
        # Road and POI ids carry the village's name, so that villages loaded side by side do
        # not overwrite each other's; ids written before that ("road-3") are replaced.
        cur.execute(r"DELETE FROM roads WHERE road_id ~ '^road-\d+$'")
        cur.execute(r"DELETE FROM points_of_interest WHERE poi_id ~ '^poi-\d+$'")
        _upsert(
            cur,
            "roads",
            "road_id",
            ["road_id", "name", "kind", "width_m", "path", "village_key"],
            [
                (f"{key}/road-{i}", r.name, r.kind, float(r.width_m), _geojson(r.geometry), key)
                for i, r in enumerate(village.alleys.itertuples())
            ],
        )  # fmt: skip
        _upsert(
            cur,
            "points_of_interest",
            "poi_id",
            ["poi_id", "name", "category", "lon", "lat", "village_key"],
            [
                (f"{key}/poi-{i}", r.name, r.category, r.geometry.x, r.geometry.y, key)
                for i, r in enumerate(village.pois.itertuples())
            ],
        )
    return {
        "grid cells": len(village.grid_cells),
        "buildings": len(village.buildings),
        "units": len(village.units),
        "devices": len(village.devices),
        "people": len(village.people),
        "tenancies": len(village.tenancies),
        "organisations": len(village.organisations),
        "objects": len(village.objects),
    }


_KEYS = {"buildings": "building_id", "units": "unit_id", "people": "person_id"}


def existing_ids(conn: psycopg.Connection, table: str) -> set[str]:
    """The keys already loaded, so a CSV may point at rows from an earlier import."""
    query = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(_KEYS[table]), sql.Identifier(table))
    return {row[0] for row in conn.execute(query)}


# A place's village, for the readers below: None reads every village the session sees.
_OF_VILLAGE = "%(village)s::text IS NULL OR {} = %(village)s"
_BUILDING_OF_VILLAGE = (
    "%(village)s::text IS NULL OR {} IN"
    " (SELECT building_id FROM buildings WHERE village_key = %(village)s)"
)


def read_buildings(conn: psycopg.Connection, village: str | None = None) -> gpd.GeoDataFrame:
    """Every building (of ``village``, a village key; None: of every village), ordered by
    ``building_id``, as a GeoDataFrame in WGS-84: ``building_id``, ``address``, ``grid_code``,
    ``storeys``, ``height_m`` (metres), ``landlord`` (the landlord's name as ``people_masked`` shows
    it to this session, or None), ``use``, ``lon``/``lat`` (centroid, degrees), ``landlord_id`` and
    the footprint polygon as ``geometry``.

    Raises psycopg.Error when the query fails."""
    rows = conn.execute(
        # The landlord is a person (migration 0061): their masked name, and their id for a reveal.
        "SELECT b.building_id, b.address, b.grid_code, b.storeys, b.height_m,"
        " (SELECT p.name FROM people_masked p WHERE p.person_id = b.landlord_id), b.use,"
        " b.lon, b.lat, b.landlord_id, b.footprint FROM buildings b"
        f" WHERE {_OF_VILLAGE.format('b.village_key')} ORDER BY b.building_id",
        {"village": village},
    ).fetchall()
    columns = [
        "building_id",
        "address",
        "grid_code",
        "storeys",
        "height_m",
        "landlord",
        "use",
        "lon",
        "lat",
        "landlord_id",
    ]
    frame = pd.DataFrame([row[:-1] for row in rows], columns=columns)
    return gpd.GeoDataFrame(frame, geometry=[shape(row[-1]) for row in rows], crs=WGS84)


def read_grid_cells(conn: psycopg.Connection, village: str | None = None) -> gpd.GeoDataFrame:
    """Every grid cell (网格) of ``village`` (None: of every village), ordered by
    ``grid_code``, as a GeoDataFrame in WGS-84: ``grid_code``, ``name``, ``grid_worker`` and its
    boundary polygon as ``geometry``."""
    rows = conn.execute(
        "SELECT grid_code, name, grid_worker, boundary FROM grid_cells"
        f" WHERE {_OF_VILLAGE.format('village_key')} ORDER BY grid_code",
        {"village": village},
    ).fetchall()
    frame = pd.DataFrame([r[:-1] for r in rows], columns=["grid_code", "name", "grid_worker"])
    return gpd.GeoDataFrame(frame, geometry=[shape(r[-1]) for r in rows], crs=WGS84)


def read_roads(conn: psycopg.Connection, village: str | None = None) -> gpd.GeoDataFrame:
    """Every road and alley of ``village`` (None: of every village), ordered by ``road_id``, as a
    GeoDataFrame in WGS-84: ``name``, ``kind``, ``width_m`` (metres) and its centre line as
    ``geometry``."""
    rows = conn.execute(
        "SELECT name, kind, width_m, path FROM roads"
        f" WHERE {_OF_VILLAGE.format('village_key')} ORDER BY road_id",
        {"village": village},
    ).fetchall()
    frame = pd.DataFrame([r[:-1] for r in rows], columns=["name", "kind", "width_m"])
    return gpd.GeoDataFrame(frame, geometry=[shape(r[-1]) for r in rows], crs=WGS84)


def read_pois(conn: psycopg.Connection, village: str | None = None) -> gpd.GeoDataFrame:
    """Every point of interest of ``village`` (None: of every village) as a GeoDataFrame in WGS-84:
    ``name``, ``category``, ``lon``/``lat`` (degrees) and the point as ``geometry``."""
    rows = conn.execute(
        "SELECT name, category, lon, lat FROM points_of_interest"
        f" WHERE {_OF_VILLAGE.format('village_key')}",
        {"village": village},
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["name", "category", "lon", "lat"])
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame.lon, frame.lat), crs=WGS84)


def read_objects(conn: psycopg.Connection, village: str | None = None) -> pd.DataFrame:
    """Every object (物: hydrant, extinguisher, e-bike charger …) of ``village`` (None: of every
    village; an object without a building belongs to the village whose boundary holds it) as a
    DataFrame: ``object_id``, ``kind``, ``building_id`` (or None), ``lon``/``lat`` (WGS-84
    degrees)."""
    rows = conn.execute(
        "SELECT object_id, kind, building_id, lon, lat FROM objects o"
        f" WHERE {_BUILDING_OF_VILLAGE.format('o.building_id')}"
        " OR (o.building_id IS NULL AND ST_Within(o.geom,"
        "     (SELECT v.boundary FROM villages v WHERE v.village_key = %(village)s)))",
        {"village": village},
    ).fetchall()
    return pd.DataFrame(rows, columns=["object_id", "kind", "building_id", "lon", "lat"])


def read_organisations(conn: psycopg.Connection, village: str | None = None) -> pd.DataFrame:
    """Organisations that have a building (in ``village``; None: in any), placed on it."""
    rows = conn.execute(
        "SELECT o.org_id, o.kind, o.name, o.building_id, b.lon, b.lat, b.height_m"
        " FROM organisations o JOIN buildings b USING (building_id)"
        f" WHERE {_OF_VILLAGE.format('b.village_key')}",
        {"village": village},
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["org_id", "kind", "name", "building_id", "lon", "lat", "height_m"]
    )


def read_devices(conn: psycopg.Connection) -> pd.DataFrame:
    """Every device not revoked, ordered by ``device_id``, as a DataFrame: ``device_id``, ``kind``,
    ``building_id``, ``grid_code``, ``lon``/``lat`` (WGS-84 degrees, or None), ``online`` (bool or
    None when never heard from), ``last_seen`` (aware datetime or None)."""
    rows = conn.execute(
        "SELECT device_id, kind, building_id, grid_code, lon, lat, online, last_seen"
        " FROM devices WHERE revoked_at IS NULL ORDER BY device_id"
    ).fetchall()
    return pd.DataFrame(
        rows,
        columns=[
            "device_id",
            "kind",
            "building_id",
            "grid_code",
            "lon",
            "lat",
            "online",
            "last_seen",
        ],
    )


def read_units(conn: psycopg.Connection, building_id: str | None = None) -> pd.DataFrame:
    """The units (rooms) of ``building_id``, or of every building when None, ordered by ``unit_id``,
    as a DataFrame: ``unit_id``, ``building_id``, ``floor`` (integer), ``room``, ``use``."""
    if building_id is None:
        query = "SELECT unit_id, building_id, floor, room, use FROM units ORDER BY unit_id"
        rows = conn.execute(query).fetchall()
    else:  # separate statements, so the (building_id, room) index serves this one
        rows = conn.execute(
            "SELECT unit_id, building_id, floor, room, use FROM units WHERE building_id = %s"
            " ORDER BY unit_id",
            (building_id,),
        ).fetchall()
    return pd.DataFrame(rows, columns=["unit_id", "building_id", "floor", "room", "use"])
