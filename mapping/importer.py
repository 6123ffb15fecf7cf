"""Importing real building footprints (GeoJSON, GeoPackage, Shapefile through pyogrio) and
rental units (CSV) into the village model, with a validation report.

Pure functions turn a raw GeoDataFrame into model rows plus a report; reading files and
writing the database stay at the edges. A geometry that can be repaired is repaired and
listed; one that cannot is refused with its reason; duplicate ids and units that point at
unknown buildings are refused too. Nothing refused stops the rest from loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from mapping.coords import to_wgs84
from mapping.model import (
    BUILDING_COLUMNS,
    ORGANISATION_COLUMNS,
    PERSON_COLUMNS,
    TENANCY_COLUMNS,
    UNIT_COLUMNS,
    WGS84,
)

UTM_49N = "EPSG:32649"


@dataclass(frozen=True)
class AttributeMapping:
    """Which source columns hold what; the first present, non-empty one wins. The defaults
    read OpenStreetMap tags (``building:levels``, ``height``, ``addr:*``) and files with a
    ``Floor`` column, like the Suzhou footprints."""

    id: tuple[str, ...] = ("building_id", "id", "Id", "ID", "osm_id", "@id", "fid")
    storeys: tuple[str, ...] = ("storeys", "building:levels", "Floor", "floors", "levels")
    height: tuple[str, ...] = ("height_m", "height", "building:height", "Height")
    address: tuple[str, ...] = ("address", "addr:full")
    street: tuple[str, ...] = ("addr:street",)
    housenumber: tuple[str, ...] = ("addr:housenumber",)
    name: tuple[str, ...] = ("name", "name:zh")
    landlord: tuple[str, ...] = ("landlord",)
    use: tuple[str, ...] = ("use", "building")
    storey_height_m: float = 3.0
    # An id column must be this unique to be taken as ids (a constant "Id" is not); a column
    # named explicitly (--id-column) is always used, and its duplicates refused.
    id_explicit: bool = False
    min_id_uniqueness: float = 0.95
    # Storeys for a building with neither storeys nor height; None: the file's median.
    default_storeys: int | None = None
    # Footprints smaller than this are refused; the default refuses only degenerate ones.
    min_area_m2: float = 0.0


@dataclass
class ImportReport:
    source: str
    features: int = 0
    loaded: int = 0
    repaired: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    storeys_from_height: int = 0
    storeys_filled: int = 0
    fill_rule: str = ""
    notes: list[str] = field(default_factory=list)
    units_loaded: int = 0
    units_refused: list[tuple[str, str]] = field(default_factory=list)
    rows_loaded: dict[str, int] = field(default_factory=dict)
    rows_refused: list[tuple[str, str]] = field(default_factory=list)

    def text(self, limit: int = 20) -> str:
        lines = [
            f"import report for {self.source}",
            f"  features read:        {self.features}",
            f"  buildings loaded:     {self.loaded}",
            f"  repaired geometries:  {len(self.repaired)}",
            f"  refused:              {len(self.refused)}",
            f"  storeys from height:  {self.storeys_from_height}",
            f"  storeys filled in:    {self.storeys_filled}"
            + (f" ({self.fill_rule})" if self.storeys_filled else ""),
        ]
        lines += [f"  note: {note}" for note in self.notes]
        if self.units_loaded or self.units_refused:
            lines += [
                f"  units loaded:         {self.units_loaded}",
                f"  units refused:        {len(self.units_refused)}",
            ]
        for table, n in self.rows_loaded.items():
            lines.append(f"  {table + ' loaded:':<22}{n}")
        if self.rows_refused:
            lines.append(f"  {'rows refused:':<22}{len(self.rows_refused)}")
        for title, items in (
            ("repaired", self.repaired),
            ("refused", self.refused),
            ("units refused", self.units_refused),
            ("row refused", self.rows_refused),
        ):
            for key, why in items[:limit]:
                lines.append(f"  {title}: {key}: {why}")
            if len(items) > limit:
                lines.append(f"  {title}: … and {len(items) - limit} more")
        return "\n".join(lines)


def _first(row: pd.Series, columns: tuple[str, ...]) -> Any:
    for column in columns:
        if column in row.index:
            value = row[column]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if isinstance(value, str) and not value.strip():
                continue
            return value
    return None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(str(value).strip().removesuffix("m").strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _polygonal(geometry: object) -> tuple[BaseGeometry | None, str | None, str | None]:
    """(usable geometry, why it was repaired, why it is refused)."""
    if not isinstance(geometry, BaseGeometry) or geometry.is_empty:
        return None, None, "no geometry"
    if not isinstance(geometry, Polygon | MultiPolygon):
        return None, None, f"not a footprint: a {geometry.geom_type}"
    if geometry.is_valid:
        return geometry, None, None
    problem = explain_validity(geometry)
    fixed = shapely.make_valid(geometry)
    parts = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon | MultiPolygon)]
    polygons = [p for part in parts for p in getattr(part, "geoms", [part]) if not p.is_empty]
    if not polygons:
        return None, None, f"invalid ({problem}) and nothing polygonal is left after repair"
    repaired = polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)
    return repaired, f"repaired: {problem}", None


def _id_columns(
    frame: pd.DataFrame, mapping: AttributeMapping, report: ImportReport
) -> tuple[str, ...]:
    if mapping.id_explicit:
        return mapping.id
    for column in mapping.id:
        if column not in frame.columns:
            continue
        values = frame[column].dropna()
        if len(values) and values.nunique() / len(frame) >= mapping.min_id_uniqueness:
            return (column,)
        report.notes.append(
            f"column {column!r} is not an identifier ({values.nunique()} distinct values in"
            f" {len(frame)} features): buildings are numbered by feature instead"
        )
    return ()


def buildings_from_frame(
    raw: gpd.GeoDataFrame,
    mapping: AttributeMapping = AttributeMapping(),
    source_crs: str | None = None,
    id_prefix: str = "",
    source: str = "input",
) -> tuple[gpd.GeoDataFrame, ImportReport]:
    """Model buildings (WGS-84, BUILDING_COLUMNS) from any footprint table, and the report."""
    report = ImportReport(source=source, features=len(raw))
    frame = to_wgs84(raw, source_crs)
    metric_area = frame.geometry.to_crs(UTM_49N).area if len(frame) else pd.Series(dtype=float)
    records: list[dict[str, Any]] = []
    pending_fill: list[int] = []
    seen: set[str] = set()
    id_columns = _id_columns(frame, mapping, report)
    for position, (_, row) in enumerate(frame.iterrows()):
        raw_id = _first(row, id_columns)
        key = str(int(raw_id) if isinstance(raw_id, float) and raw_id.is_integer() else raw_id)
        key = key if raw_id is not None else f"{position + 1:05d}"
        building_id = f"{id_prefix}{key}"
        geometry, repaired, refused = _polygonal(row.geometry)
        if refused:
            report.refused.append((building_id, refused))
            continue
        if building_id in seen:
            report.refused.append((building_id, "duplicate id: an earlier feature has it"))
            continue
        area = float(metric_area.iloc[position])
        if geometry is not row.geometry:
            area = float(gpd.GeoSeries([geometry], crs=WGS84).to_crs(UTM_49N).area.iloc[0])
        if area <= mapping.min_area_m2:
            report.refused.append(
                (building_id, f"area {area:.2f} m² is not above {mapping.min_area_m2} m²")
            )
            continue
        if repaired:
            report.repaired.append((building_id, repaired))
        seen.add(building_id)
        storeys = _number(_first(row, mapping.storeys))
        height = _number(_first(row, mapping.height))
        if storeys is not None and not 1 <= storeys <= 200:
            storeys = None
        if storeys is None and height is not None and height > 0:
            storeys = max(1.0, round(height / mapping.storey_height_m))
            report.storeys_from_height += 1
        if storeys is None:
            pending_fill.append(len(records))
        address = _first(row, mapping.address)
        if address is None:
            street, number = _first(row, mapping.street), _first(row, mapping.housenumber)
            if street is not None:
                address = f"{street}{number or ''}"
        if address is None:
            name = _first(row, mapping.name)
            address = str(name) if name is not None else building_id
        records.append(
            {
                "building_id": building_id,
                "address": str(address),
                "grid_code": None,
                "storeys": int(storeys) if storeys is not None else 0,
                "height_m": float(height)
                if height and height > 0
                else (storeys or 0) * mapping.storey_height_m,
                "landlord": _first(row, mapping.landlord),
                "use": str(_first(row, mapping.use) or "residential"),
                "geometry": geometry,
            }
        )
    if pending_fill:
        known = [r["storeys"] for r in records if r["storeys"] > 0]
        if mapping.default_storeys is not None:
            fill, report.fill_rule = (
                mapping.default_storeys,
                f"the configured default of {mapping.default_storeys}",
            )
        elif known:
            fill = int(pd.Series(known).median())
            report.fill_rule = f"the median storeys of this file's other buildings, {fill}"
        else:
            fill, report.fill_rule = 1, "1 storey: no building in the file has a storey count"
        for index in pending_fill:
            records[index]["storeys"] = fill
            records[index]["height_m"] = fill * mapping.storey_height_m
        report.storeys_filled = len(pending_fill)
    report.loaded = len(records)
    buildings = gpd.GeoDataFrame(records, columns=BUILDING_COLUMNS, geometry="geometry", crs=WGS84)
    return buildings, report


def units_from_frame(
    raw: pd.DataFrame, known_buildings: set[str], report: ImportReport
) -> pd.DataFrame:
    """Rental units from CSV columns unit_id, building_id, floor, room[, area_m2, use]."""
    missing = {"unit_id", "building_id", "floor", "room"} - set(raw.columns)
    if missing:
        raise ValueError(f"the units file has no column {', '.join(sorted(missing))}")
    rows, seen = [], set()
    for record in raw.to_dict("records"):
        unit_id, building_id = str(record["unit_id"]), str(record["building_id"])
        if building_id not in known_buildings:
            report.units_refused.append((unit_id, f"unknown building {building_id}"))
        elif unit_id in seen:
            report.units_refused.append((unit_id, "duplicate unit id"))
        elif _number(record["floor"]) is None:
            report.units_refused.append((unit_id, f"floor {record['floor']!r} is not a number"))
        else:
            seen.add(unit_id)
            rows.append(
                {
                    "unit_id": unit_id,
                    "building_id": building_id,
                    "floor": int(_number(record["floor"]) or 0),
                    "room": str(record["room"]),
                    "area_m2": _number(record.get("area_m2")),
                    "use": str(record.get("use") or "rental"),
                }
            )
    report.units_loaded = len(rows)
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


def _refuse_missing(raw: pd.DataFrame, required: set[str], what: str) -> None:
    missing = required - set(raw.columns)
    if missing:
        raise ValueError(f"the {what} file has no column {', '.join(sorted(missing))}")


def people_from_frame(raw: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    """People from CSV: person_id, name, role[, id_number, phone, born, care_target,
    credential_ref]."""
    _refuse_missing(raw, {"person_id", "name", "role"}, "people")
    roles = {"resident", "tenant", "landlord", "visitor", "grid_worker"}
    rows, seen = [], set()
    for r in raw.to_dict("records"):
        key = str(r["person_id"])
        if key in seen:
            report.rows_refused.append((f"person {key}", "duplicate person id"))
        elif str(r["role"]) not in roles:
            report.rows_refused.append(
                (f"person {key}", f"role {r['role']!r} is not one of {sorted(roles)}")
            )
        else:
            seen.add(key)
            rows.append({
                "person_id": key, "name": str(r["name"]), "id_number": _text(r.get("id_number")),
                "phone": _text(r.get("phone")), "born": _day(r.get("born")), "role": str(r["role"]),
                "care_target": str(r.get("care_target", "")).lower() in {"1", "true", "yes"},
                "credential_ref": _text(r.get("credential_ref")),
            })  # fmt: skip
    report.rows_loaded["people"] = len(rows)
    return pd.DataFrame(rows, columns=PERSON_COLUMNS)


def tenancies_from_frame(
    raw: pd.DataFrame, known_units: set[str], known_people: set[str], report: ImportReport
) -> pd.DataFrame:
    """Tenancies from CSV: tenancy_id, person_id, unit_id, start_date[, end_date]."""
    _refuse_missing(raw, {"tenancy_id", "person_id", "unit_id", "start_date"}, "tenancies")
    rows = []
    for r in raw.to_dict("records"):
        key, start, end = str(r["tenancy_id"]), _day(r["start_date"]), _day(r.get("end_date"))
        why = None
        if str(r["unit_id"]) not in known_units:
            why = f"unknown unit {r['unit_id']}"
        elif str(r["person_id"]) not in known_people:
            why = f"unknown person {r['person_id']}"
        elif start is None:
            why = f"start date {r['start_date']!r} is not a date"
        elif end is not None and end < start:
            why = f"ends ({end}) before it starts ({start})"
        if why:
            report.rows_refused.append((f"tenancy {key}", why))
            continue
        rows.append({"tenancy_id": key, "person_id": str(r["person_id"]),
                     "unit_id": str(r["unit_id"]), "start_date": start,
                     "end_date": end})  # fmt: skip
    report.rows_loaded["tenancies"] = len(rows)
    return pd.DataFrame(rows, columns=TENANCY_COLUMNS)


def organisations_from_frame(
    raw: pd.DataFrame, known_buildings: set[str], known_units: set[str], report: ImportReport
) -> pd.DataFrame:
    """Organisations from CSV: org_id, kind, name[, building_id, unit_id]."""
    _refuse_missing(raw, {"org_id", "kind", "name"}, "organisations")
    kinds = {"shop", "workshop", "association", "property_manager", "grid_team"}
    rows = []
    for r in raw.to_dict("records"):
        key, building, unit = str(r["org_id"]), _text(r.get("building_id")), _text(r.get("unit_id"))
        why = None
        if str(r["kind"]) not in kinds:
            why = f"kind {r['kind']!r} is not one of {sorted(kinds)}"
        elif building and building not in known_buildings:
            why = f"unknown building {building}"
        elif unit and unit not in known_units:
            why = f"unknown unit {unit}"
        if why:
            report.rows_refused.append((f"organisation {key}", why))
            continue
        rows.append({"org_id": key, "kind": str(r["kind"]), "name": str(r["name"]),
                     "building_id": building, "unit_id": unit})  # fmt: skip
    report.rows_loaded["organisations"] = len(rows)
    return pd.DataFrame(rows, columns=ORGANISATION_COLUMNS)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _day(value: Any) -> Any:
    text = _text(value)
    if text is None:
        return None
    try:
        return pd.Timestamp(text).date()
    except ValueError:
        return None


def read_footprints(path: Path, layer: str | None = None) -> gpd.GeoDataFrame:
    """Reads any vector format GDAL knows; its errors become a ValueError with its words."""
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        return gpd.read_file(path, layer=layer, engine="pyogrio")
    except (DataSourceError, DataLayerError) as exc:
        raise ValueError(f"not a readable vector file: {exc}") from None
