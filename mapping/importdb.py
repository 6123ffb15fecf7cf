"""Writing an import into the database without losing what the file does not carry.

A re-import finds each building again by the key the import gives it (``source_key``: the id
prefix and the file's id), even after a user gave it another standard address code. What the
file does not carry is kept: grid codes (unless the file has a grid column), landlords,
addresses and storeys the importer had to fall back on. What changed is reported.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import psycopg
from shapely.geometry import mapping, shape

from mapping import db as village_db, importer
from mapping.coords import resolve_crs, utm_crs
from mapping.importer import ImportReport
from mapping.model import Village

_STAGE_COLUMNS = (
    "source_key text, building_id text, address text, address_given boolean,"
    " grid_code text, grid_given boolean, storeys integer, height_m real,"
    " storeys_given boolean, basements integer, landlord text, use text,"
    " footprint jsonb, lon double precision, lat double precision"
)


def _none(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) else value


def check_grid_codes(cur: psycopg.Cursor[Any], codes: list[str], village_key: str) -> None:
    """Grid codes are unique across the district (one table, one key): raises ValueError
    naming the codes that already belong to another village, with what to do."""
    taken = cur.execute(
        "SELECT grid_code, village_key FROM grid_cells WHERE grid_code = ANY(%s)"
        " AND village_key IS DISTINCT FROM %s AND village_key IS NOT NULL ORDER BY grid_code",
        (codes, village_key),
    ).fetchall()
    if taken:
        names = ", ".join(f"{code} (village {owner})" for code, owner in taken[:10])
        raise ValueError(
            f"grid codes already used by another village: {names}; grid codes are unique across"
            " the district: give this village's cells their own codes (e.g. a village prefix"
            " in the code column)"
        )


def load_grid_cells(
    cur: psycopg.Cursor[Any], grid_cells: gpd.GeoDataFrame, village_key: str | None = None
) -> None:
    """Upserts grid cells by code into the village ``village_key``; a cell's grid worker, set
    by hand, is kept. Raises ValueError for a code another village has (check_grid_codes)."""
    if village_key is not None:
        check_grid_codes(cur, list(grid_cells.grid_code), village_key)
    for row in grid_cells.itertuples():
        cur.execute(
            "INSERT INTO grid_cells (grid_code, name, grid_worker, boundary, village_key)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (grid_code) DO UPDATE SET"
            " name = EXCLUDED.name, boundary = EXCLUDED.boundary,"
            " village_key = COALESCE(EXCLUDED.village_key, grid_cells.village_key),"
            " grid_worker = COALESCE(EXCLUDED.grid_worker, grid_cells.grid_worker)",
            (row.grid_code, row.name, _none(row.grid_worker),
             json.dumps(mapping(row.geometry), separators=(",", ":")), village_key),
        )  # fmt: skip


def import_buildings(
    cur: psycopg.Cursor[Any],
    buildings: gpd.GeoDataFrame,
    report: ImportReport,
    village_key: str | None = None,
) -> gpd.GeoDataFrame:
    """Upserts imported buildings (importer.buildings_from_frame's columns, plus an optional
    boolean ``grid_given``) into the village ``village_key`` and lists each change in
    ``report.changes``. Returns the buildings with the ids they have in the database.

    A building is found again by its source key within its village only; a new building whose
    id another village already uses (numbered features, ``00001``) gets the id
    ``<village_key>/<id>``, said in a note, so two villages' files never overwrite each other."""
    if not len(buildings):
        return buildings.copy()
    minx, miny, maxx, maxy = buildings.total_bounds
    metric = utm_crs((minx + maxx) / 2, (miny + maxy) / 2)
    centroids = buildings.to_crs(metric).centroid.to_crs("EPSG:4326")
    grid_given = buildings.get("grid_given")
    cur.execute(f"CREATE TEMP TABLE stage_buildings ({_STAGE_COLUMNS}) ON COMMIT DROP")
    with cur.copy("COPY stage_buildings FROM STDIN") as copy:
        for i, (r, c) in enumerate(zip(buildings.itertuples(), centroids, strict=True)):
            copy.write_row((
                r.building_id, r.building_id, r.address, bool(r.address_given),
                _none(r.grid_code), bool(grid_given.iloc[i]) if grid_given is not None else False,
                int(r.storeys), float(r.height_m), bool(r.storeys_given), int(r.basements),
                _none(r.landlord), r.use, json.dumps(mapping(r.geometry), separators=(",", ":")),
                c.x, c.y,
            ))  # fmt: skip
    # Buildings found again by source key (in this village) keep the id they have now.
    cur.execute(
        "UPDATE stage_buildings s SET building_id = b.building_id FROM buildings b"
        " WHERE b.source_key = s.source_key"
        " AND (b.village_key = %(v)s OR b.village_key IS NULL OR %(v)s IS NULL)",
        {"v": village_key},
    )
    if village_key is not None:
        # New here, but the id is another village's building: prefix it with this village.
        renamed = cur.execute(
            "UPDATE stage_buildings s SET building_id = %(v)s || '/' || s.building_id"
            " FROM buildings b WHERE b.building_id = s.building_id"
            " AND b.village_key IS DISTINCT FROM %(v)s AND b.village_key IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM buildings o WHERE o.source_key = s.source_key"
            "   AND o.village_key = %(v)s)"
            " RETURNING s.source_key",
            {"v": village_key},
        ).fetchall()
        if renamed:
            report.notes.append(
                f"{len(renamed)} building ids are another village's buildings' ids: stored as"
                f" {village_key}/<id> (e.g. {village_key}/{renamed[0][0]})"
            )
    before = {
        row[0]: row[1:]
        for row in cur.execute(
            "SELECT b.building_id, b.address, b.grid_code, b.storeys, b.basements, b.landlord,"
            " b.footprint FROM buildings b JOIN stage_buildings s USING (building_id)"
        )
    }
    cur.execute(
        "INSERT INTO buildings (building_id, source_key, address, grid_code, storeys,"
        " height_m, basements, landlord, use, footprint, lon, lat, village_key)"
        " SELECT building_id, source_key, address, grid_code, storeys, height_m, basements,"
        " landlord, use, footprint, lon, lat, %s FROM stage_buildings s"
        " WHERE NOT EXISTS (SELECT 1 FROM buildings b WHERE b.building_id = s.building_id)",
        (village_key,),
    )
    cur.execute(
        "UPDATE buildings b SET source_key = s.source_key,"
        " address = CASE WHEN s.address_given THEN s.address ELSE b.address END,"
        " grid_code = CASE WHEN s.grid_given THEN s.grid_code"
        "   ELSE COALESCE(b.grid_code, s.grid_code) END,"
        " storeys = CASE WHEN s.storeys_given THEN s.storeys ELSE b.storeys END,"
        " height_m = CASE WHEN s.storeys_given THEN s.height_m ELSE b.height_m END,"
        " basements = s.basements, landlord = COALESCE(s.landlord, b.landlord),"
        " use = s.use, footprint = s.footprint, lon = s.lon, lat = s.lat,"
        " village_key = COALESCE(%s, b.village_key)"
        " FROM stage_buildings s WHERE s.building_id = b.building_id"
        " AND s.building_id = ANY(%s)",
        (village_key, list(before)),
    )
    after = {
        row[0]: row[1:]
        for row in cur.execute(
            "SELECT b.building_id, b.address, b.grid_code, b.storeys, b.basements, b.landlord,"
            " b.footprint, s.source_key FROM buildings b JOIN stage_buildings s"
            " USING (building_id)"
        )
    }
    ids = {}
    fields = ("address", "grid", "storeys", "basements", "landlord")
    for building_id, now in after.items():
        ids[now[-1]] = building_id
        label = building_id if building_id == now[-1] else f"{building_id} (file: {now[-1]})"
        if building_id not in before:
            report.changes.append((label, "new"))
            continue
        old = before[building_id]
        diffs = [
            f"{name} {old[i]!r} → {now[i]!r}" for i, name in enumerate(fields) if old[i] != now[i]
        ]
        if not shape(old[5]).equals_exact(shape(now[5]), 1e-9):
            diffs.append("footprint changed")
        if diffs:
            report.changes.append((label, "; ".join(diffs)))
    unchanged = len(before) - sum(1 for k, v in report.changes if v != "new")
    report.notes.append(
        f"against the database: {len(after) - len(before)} new,"
        f" {len(before) - unchanged} changed, {unchanged} unchanged"
    )
    result = buildings.copy()
    result["building_id"] = [ids.get(k, k) for k in buildings.building_id]
    return result


def set_grid(conn: psycopg.Connection, grid_code: str, building_ids: list[str]) -> list[str]:
    """Puts buildings in a grid cell by hand (e.g. those outside every cell); returns the ids
    that are not buildings. Raises ValueError for an unknown grid code."""
    with conn.transaction():
        if (
            conn.execute("SELECT 1 FROM grid_cells WHERE grid_code = %s", (grid_code,)).fetchone()
            is None
        ):
            raise ValueError(f"no grid cell {grid_code}")
        found = {
            r[0]
            for r in conn.execute(
                "UPDATE buildings SET grid_code = %s WHERE building_id = ANY(%s)"
                " RETURNING building_id",
                (grid_code, building_ids),
            )
        }
    return [b for b in building_ids if b not in found]


def assign_grids(
    cur: psycopg.Cursor[Any], buildings: gpd.GeoDataFrame, report: ImportReport
) -> None:
    """Spatial join in PostGIS (migration 0051's ``assign_buildings_to_grids``): every building
    without a grid gets the cell it is in. Counts those of this import in ``report`` and lists
    the ones outside every cell (when there are cells at all)."""
    ids = list(buildings.building_id)
    assigned = {r[0] for r in cur.execute("SELECT building_id FROM assign_buildings_to_grids()")}
    report.grid_assigned += len(assigned & set(ids))
    if cur.execute("SELECT 1 FROM grid_cells LIMIT 1").fetchone() is None:
        return
    outside = cur.execute(
        "SELECT building_id FROM buildings WHERE grid_code IS NULL AND building_id = ANY(%s)"
        " ORDER BY building_id",
        (ids,),
    ).fetchall()
    for (building_id,) in outside:
        report.outside_grids.append(
            (building_id, "in no grid cell: assign one with `villagetwin village set-grid`")
        )


def save_village_row(
    cur: psycopg.Cursor[Any],
    key: str,
    places: gpd.GeoDataFrame,
    boundary: Any = None,
    time_zone: str | None = None,
) -> str:
    """Upserts the village ``key`` (name = key): its boundary (a WGS-84 shapely geometry, else
    the convex hull of ``places``; a re-import grows it, never shrinks it), the projected CRS
    for its metric work estimated from ``places`` (geopandas' estimate_utm_crs: the UTM zone of
    their centre) and its IANA time zone (None: keep, Asia/Shanghai for a new village).
    Returns the CRS as "EPSG:n". Raises ValueError for an unknown time zone and for a village
    with no places at all."""
    if not len(places):
        raise ValueError(f"village {key}: nothing to place it by (no buildings, no boundary)")
    if time_zone is not None:
        known = cur.execute("SELECT vt_is_time_zone(%s)", (time_zone,)).fetchone()
        if not known or not known[0]:
            raise ValueError(
                f"time zone {time_zone!r} is not an IANA time zone name (e.g. Asia/Shanghai,"
                " Asia/Urumqi, Asia/Hong_Kong)"
            )
    crs = str(places.estimate_utm_crs().to_string())
    shape_ = boundary if boundary is not None else places.geometry.union_all().convex_hull
    cur.execute(
        "INSERT INTO villages (village_key, name, boundary, projected_crs, time_zone)"
        " VALUES (%s, %s, ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)), %s,"
        " COALESCE(%s, 'Asia/Shanghai')) ON CONFLICT (village_key)"
        " DO UPDATE SET name = EXCLUDED.name,"
        " boundary = ST_Multi(ST_Union(villages.boundary, EXCLUDED.boundary)),"
        " projected_crs = EXCLUDED.projected_crs,"
        " time_zone = COALESCE(%s, villages.time_zone)",
        (key, key, json.dumps(mapping(shape_), separators=(",", ":")), crs, time_zone,
         time_zone),
    )  # fmt: skip
    return crs


def save_village(cur: psycopg.Cursor[Any], village: Village) -> str:
    """Upserts the village's row (key = its name) from its boundary and buildings, with its
    time zone (save_village_row); returns the key."""
    frame = village.buildings if len(village.buildings) else village.boundary
    boundary = village.boundary.geometry.union_all() if len(village.boundary) else None
    save_village_row(cur, village.name, frame, boundary, village.time_zone)
    return village.name


@dataclass(frozen=True)
class ImportRequest:
    """What ``villagetwin village import`` was asked: the footprint file and its reading
    (``layer``, ``source_crs``, ``encoding``, column overrides, ``id_prefix`` of generated
    building ids), an optional grid-cell file, the tables of 一标三实 (CSV or .xlsx), the
    village key (None: the only village, else the file's stem) and its IANA time zone."""

    footprints: Path
    layer: str | None = None
    source_crs: str | None = None
    encoding: str | None = None
    id_prefix: str = ""
    storeys_column: str | None = None
    height_column: str | None = None
    id_column: str | None = None
    address_column: str | None = None
    default_storeys: int | None = None
    grid_cells: Path | None = None
    grid_code_column: str | None = None
    grid_name_column: str | None = None
    tables: Mapping[str, Path] = field(default_factory=dict)  # units, people, tenancies, …
    village_key: str | None = None
    time_zone: str | None = None
    dry_run: bool = False


class ImportFailed(ValueError):
    """The files cannot be imported; the message names the file and the reason."""


TABLE_ORDER = ("units", "people", "tenancies", "organisations")


def import_files(dsn: str, request: ImportRequest) -> ImportReport:
    """Reads, validates and (unless ``dry_run``) stores what ``request`` names in one
    transaction: the village's row, grid cells, buildings (re-import keeps what the file does
    not carry), their grids by spatial join in PostGIS, then the tables in ``TABLE_ORDER``.
    Returns the report, its ``seconds`` the whole import's wall time.

    Raises ImportFailed for an unknown CRS, an unreadable or invalid file, or a database that
    refuses the rows."""
    started = time.monotonic()
    overrides = {
        "storeys": request.storeys_column, "height": request.height_column,
        "id": request.id_column, "address": request.address_column,
    }  # fmt: skip
    attributes = dataclasses.replace(
        importer.AttributeMapping(default_storeys=request.default_storeys),
        id_explicit=request.id_column is not None,
        **{k: (v,) for k, v in overrides.items() if v is not None},  # type: ignore[arg-type]
    )
    source = request.footprints
    try:
        if request.source_crs:
            resolve_crs(request.source_crs)
    except ValueError as exc:
        raise ImportFailed(str(exc)) from None
    try:
        notes = importer.ImportReport(source=str(source))
        raw = importer.read_footprints(source, request.layer, request.encoding, notes)
        buildings, report = importer.buildings_from_frame(
            raw, attributes, request.source_crs, request.id_prefix, source=str(source)
        )
        report.notes = notes.notes + report.notes
        grid_cells = None
        if request.grid_cells is not None:
            grid_raw = importer.read_footprints(request.grid_cells, None, request.encoding, report)
            grid_cells = importer.grid_cells_from_frame(
                grid_raw,
                report,
                request.source_crs,
                request.grid_code_column,
                request.grid_name_column,
            )
            if request.dry_run:  # a preview; the real join is done by PostGIS below
                buildings = importer.assign_grids(buildings, grid_cells, report)
    except (ValueError, OSError) as exc:
        raise ImportFailed(f"cannot import {source}: {exc}") from None
    try:
        with psycopg.connect(dsn) as conn:
            tables = _tables(conn, request, set(buildings.building_id), report)
            village_key = request.village_key
            if village_key is None:
                known = conn.execute("SELECT village_key FROM villages").fetchall()
                village_key = known[0][0] if len(known) == 1 else source.stem
            report.notes.append(f"village: {village_key}")
            if not request.dry_run:
                with conn.transaction(), conn.cursor() as cur:
                    # The village's outline: around its buildings and grid cells.
                    places = buildings[["geometry"]]
                    if grid_cells is not None:
                        places = pd.concat([places, grid_cells[["geometry"]]])
                    save_village_row(cur, village_key, places, None, request.time_zone)
                    if grid_cells is not None:
                        load_grid_cells(cur, grid_cells, village_key)
                    buildings = import_buildings(cur, buildings, report, village_key)
                    assign_grids(cur, buildings, report)
                    for name in TABLE_ORDER:
                        if name in tables:
                            getattr(village_db, f"load_{name}")(cur, tables[name])
    except (ValueError, psycopg.Error) as exc:
        raise ImportFailed(f"cannot import {source}: {exc}") from None
    report.seconds = time.monotonic() - started
    return report


def _tables(
    conn: psycopg.Connection, request: ImportRequest, buildings: set[str], report: ImportReport
) -> dict[str, pd.DataFrame]:
    """The tables of ``request`` read and validated against what the database and the files
    hold (a tenancy's unit may come from the units file of the same import)."""
    known_buildings = buildings | village_db.existing_ids(conn, "buildings")
    known_units = village_db.existing_ids(conn, "units")
    known_people = village_db.existing_ids(conn, "people")
    read = {k: importer.read_table(request.tables[k]) for k in TABLE_ORDER if k in request.tables}
    tables: dict[str, pd.DataFrame] = {}
    if "units" in read:
        tables["units"] = importer.units_from_frame(read["units"], known_buildings, report)
        known_units |= set(tables["units"].unit_id)
    if "people" in read:
        tables["people"] = importer.people_from_frame(read["people"], report)
        known_people |= set(tables["people"].person_id)
    if "tenancies" in read:
        tables["tenancies"] = importer.tenancies_from_frame(
            read["tenancies"], known_units, known_people, report
        )
    if "organisations" in read:
        tables["organisations"] = importer.organisations_from_frame(
            read["organisations"], known_buildings, known_units, report
        )
    return tables
