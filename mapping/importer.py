"""Importing real building footprints (GeoJSON, GeoPackage, Shapefile through pyogrio) and
rental units (CSV) into the village model, with a validation report.

Pure functions turn a raw GeoDataFrame into model rows plus a report; reading files and
writing the database stay at the edges. A geometry that can be repaired is repaired and
listed; one that cannot is refused with its reason; duplicate ids and units that point at
unknown buildings are refused too. Nothing refused stops the rest from loading.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from mapping.coords import to_wgs84, utm_crs
from mapping.model import (
    BUILDING_COLUMNS,
    GRID_COLUMNS,
    ORGANISATION_COLUMNS,
    PERSON_COLUMNS,
    TENANCY_COLUMNS,
    UNIT_COLUMNS,
    WGS84,
)
from mapping.storeys import MAX_STOREYS, Storeys, parse_height_m, parse_storeys

# Columns an imported building has beyond the model's: storeys below ground, the id the file
# gave, and whether the address and storeys came from the file (a re-import keeps what the
# database has where they did not).
EXTRA_COLUMNS = ["basements", "source_id", "address_given", "storeys_given", "grid_given"]


@dataclass(frozen=True)
class AttributeMapping:
    """Which source columns hold what; the first present, non-empty one wins. The defaults
    read OpenStreetMap tags (``building:levels``, ``height``, ``addr:*``) and files with a
    ``Floor`` column, like the Suzhou footprints."""

    id: tuple[str, ...] = ("building_id", "id", "Id", "ID", "osm_id", "@id", "fid")
    storeys: tuple[str, ...] = (
        "storeys", "building:levels", "Floor", "floors", "levels", "层数", "楼层",
    )  # fmt: skip
    basements: tuple[str, ...] = ("basements", "building:levels:underground", "地下层数")
    height: tuple[str, ...] = (
        "height_m", "height", "building:height", "est_height", "Height", "高度",
    )  # fmt: skip
    address: tuple[str, ...] = ("address", "addr:full", "标准地址", "地址")
    # Composed in Chinese order (city, district, street, number) when there is a street.
    address_parts: tuple[str, ...] = (
        "addr:province", "addr:city", "addr:district", "addr:subdistrict",
    )  # fmt: skip
    street: tuple[str, ...] = ("addr:street", "addr:place")
    housenumber: tuple[str, ...] = ("addr:housenumber",)
    name: tuple[str, ...] = ("name", "name:zh")
    landlord: tuple[str, ...] = ("landlord",)
    grid: tuple[str, ...] = ("grid_code", "网格编码")
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
    # Every storey value not taken as given: (building id, what was read and what was done).
    storeys_adjusted: list[tuple[str, str]] = field(default_factory=list)
    # Where each address came from ("addr:street + addr:housenumber", "name", …) and how often;
    # the buildings that got the fallback (their id) are listed.
    address_sources: dict[str, int] = field(default_factory=dict)
    address_fallback: list[tuple[str, str]] = field(default_factory=list)
    # Grid cells: loaded from a polygon file, buildings given one by spatial join, and those
    # outside every cell.
    grids_loaded: int = 0
    grid_assigned: int = 0
    outside_grids: list[tuple[str, str]] = field(default_factory=list)
    # Re-import: what changed against the database, and what the file did not carry.
    changes: list[tuple[str, str]] = field(default_factory=list)
    seconds: float | None = None
    units_loaded: int = 0
    units_refused: list[tuple[str, str]] = field(default_factory=list)
    rows_loaded: dict[str, int] = field(default_factory=dict)
    rows_refused: list[tuple[str, str]] = field(default_factory=list)

    def text(self, limit: int | None = 20) -> str:
        """The report as lines of text; each list shows at most ``limit`` entries (None: all)."""
        lines = [
            f"import report for {self.source}",
            f"  features read:        {self.features}",
            f"  buildings loaded:     {self.loaded}",
            f"  repaired geometries:  {len(self.repaired)}",
            f"  refused:              {len(self.refused)}",
            f"  storeys from height:  {self.storeys_from_height}",
            f"  storeys filled in:    {self.storeys_filled}"
            + (f" ({self.fill_rule})" if self.storeys_filled else ""),
            f"  storeys not as given: {len(self.storeys_adjusted)}",
        ]
        if self.address_sources:
            sources = ", ".join(f"{n} from {k}" for k, n in self.address_sources.items())
            lines.append(f"  addresses:            {sources}")
        if self.grids_loaded or self.grid_assigned or self.outside_grids:
            lines += [
                f"  grid cells loaded:    {self.grids_loaded}",
                f"  grid by spatial join: {self.grid_assigned}",
                f"  outside every grid:   {len(self.outside_grids)}",
            ]
        if self.seconds is not None:
            lines.append(f"  import time:          {self.seconds:.2f} s")
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
            ("storeys", self.storeys_adjusted),
            ("address", self.address_fallback),
            ("outside grids", self.outside_grids),
            ("changed", self.changes),
            ("repaired", self.repaired),
            ("refused", self.refused),
            ("units refused", self.units_refused),
            ("row refused", self.rows_refused),
        ):
            for key, why in items[:limit]:
                lines.append(f"  {title}: {key}: {why}")
            if limit is not None and len(items) > limit:
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


def _flat(frame: gpd.GeoDataFrame, report: ImportReport) -> gpd.GeoDataFrame:
    """Drops Z and M coordinates (heights come from attributes), with a note."""
    geometries = frame.geometry.array
    has_z = shapely.has_z(geometries)
    has_m = shapely.has_m(geometries)
    dimensions = [name for name, mask in (("Z", has_z), ("M", has_m)) if mask.any()]
    if not dimensions:
        return frame
    count = int((has_z | has_m).sum())
    report.notes.append(
        f"{count} footprint{'s' if count > 1 else ''} had {' and '.join(dimensions)}"
        " coordinates: dropped (storeys and heights come from the attributes)"
    )
    flat = frame.copy()
    flat.geometry = shapely.force_2d(geometries)
    return flat


def _address(row: pd.Series, mapping: AttributeMapping) -> tuple[str | None, str]:
    """(address, where it came from); None when no tag or column holds one."""
    for column in mapping.address:
        value = _first(row, (column,))
        if value is not None:
            return str(value), column
    street, number = _first(row, mapping.street), _first(row, mapping.housenumber)
    if street is not None:
        prefix = "".join(
            str(v) for c in mapping.address_parts if (v := _first(row, (c,))) is not None
        )
        source = "addr:street + addr:housenumber" if number is not None else "addr:street"
        return f"{prefix}{street}{number or ''}", source
    name = _first(row, mapping.name)
    if name is not None:
        return str(name), "name"
    return None, "the building id (no address tag or column)"


def _storeys(
    row: pd.Series, mapping: AttributeMapping, building_id: str, report: ImportReport
) -> tuple[int | None, int, str | None]:
    """(storeys above ground or None, basements, where the count came from)."""
    column = next(
        (c for c in mapping.storeys if c in row.index and _first(row, (c,)) is not None), None
    )
    reading = parse_storeys(row[column]) if column else Storeys(None)
    below = reading.below
    basement_value = _first(row, mapping.basements)
    if basement_value is not None:
        basements = parse_storeys(basement_value)
        below = max(below, basements.above or basements.below)
    if reading.note:
        report.storeys_adjusted.append((building_id, f"{column} {reading.note}"))
    if reading.above is not None:
        return reading.above, below, column
    height = parse_height_m(_first(row, mapping.height))
    if height is not None:
        storeys = min(MAX_STOREYS, max(1, round(height / mapping.storey_height_m)))
        report.storeys_from_height += 1
        report.storeys_adjusted.append(
            (building_id, f"no storey count: {storeys} from the height {height:g} m at"
             f" {mapping.storey_height_m:g} m a storey")
        )  # fmt: skip
        return storeys, below, "height"
    return None, below, None


def buildings_from_frame(
    raw: gpd.GeoDataFrame,
    mapping: AttributeMapping = AttributeMapping(),
    source_crs: str | None = None,
    id_prefix: str = "",
    source: str = "input",
) -> tuple[gpd.GeoDataFrame, ImportReport]:
    """Model buildings (WGS-84, BUILDING_COLUMNS plus ``basements`` and ``source_id``, the id
    the file gave) from any footprint table, and the report.

    Storeys are read by ``mapping.storeys.parse_storeys`` (units, lists, ranges, basements,
    decimals), then from a height, then filled (configured default, else the file's median);
    every value not taken as given is named in ``report.storeys_adjusted``. Z/M coordinates
    are dropped with a note; holes and multipolygons are kept. Raises ValueError for an
    unknown CRS or coordinates that do not fit the CRS (``mapping.coords``)."""
    report = ImportReport(source=source, features=len(raw))
    frame = _flat(to_wgs84(raw, source_crs), report)
    for what, columns in (("storeys", mapping.storeys), ("height", mapping.height)):
        if len(frame) and not set(columns) & set(frame.columns):
            report.notes.append(f"no {what} column in the file (looked for {', '.join(columns)})")
    metric_crs = _metric_crs(frame)
    metric_area = frame.geometry.to_crs(metric_crs).area if len(frame) else pd.Series(dtype=float)
    records: list[dict[str, Any]] = []
    pending_fill: list[int] = []
    seen: set[str] = set()
    id_columns = _id_columns(frame, mapping, report)
    holes = multi = 0
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
            area = float(gpd.GeoSeries([geometry], crs=WGS84).to_crs(metric_crs).area.iloc[0])
        if area <= mapping.min_area_m2:
            report.refused.append(
                (building_id, f"area {area:.2f} m² is not above {mapping.min_area_m2} m²")
            )
            continue
        if repaired:
            report.repaired.append((building_id, repaired))
        seen.add(building_id)
        holes += any(p.interiors for p in getattr(geometry, "geoms", [geometry]))
        multi += isinstance(geometry, MultiPolygon)
        storeys, basements, _ = _storeys(row, mapping, building_id, report)
        height = parse_height_m(_first(row, mapping.height))
        if storeys is None:
            pending_fill.append(len(records))
        address, address_source = _address(row, mapping)
        report.address_sources[address_source] = report.address_sources.get(address_source, 0) + 1
        if address is None:
            report.address_fallback.append((building_id, "no address: the building id is used"))
        records.append(
            {
                "building_id": building_id,
                "address": address if address is not None else building_id,
                "grid_code": _text(_first(row, mapping.grid)),
                "storeys": int(storeys) if storeys is not None else 0,
                "height_m": float(height)
                if height is not None
                else (storeys or 0) * mapping.storey_height_m,
                "landlord": _first(row, mapping.landlord),
                "use": str(_first(row, mapping.use) or "residential"),
                "geometry": geometry,
                "basements": basements,
                "source_id": str(raw_id) if raw_id is not None else None,
                "address_given": address is not None,
                "storeys_given": storeys is not None,
                "grid_given": _first(row, mapping.grid) is not None,
            }
        )
    if holes:
        report.notes.append(f"{holes} footprints have courtyards (holes, 天井): kept")
    if multi:
        report.notes.append(f"{multi} footprints are multipolygons: kept whole, one building")
    if pending_fill:
        known = [r["storeys"] for r in records if r["storeys"] > 0]
        if mapping.default_storeys is not None:
            fill, report.fill_rule = (
                mapping.default_storeys,
                f"the configured default of {mapping.default_storeys}",
            )
        elif known:
            fill = math.ceil(pd.Series(known).median())
            report.fill_rule = f"the median storeys of this file's other buildings, {fill}"
        else:
            fill, report.fill_rule = 1, "1 storey: no building in the file has a storey count"
        for index in pending_fill:
            records[index]["storeys"] = fill
            records[index]["height_m"] = fill * mapping.storey_height_m
            report.storeys_adjusted.append(
                (records[index]["building_id"], f"no storey count or height: {fill} storeys,"
                 f" {report.fill_rule}")
            )  # fmt: skip
        report.storeys_filled = len(pending_fill)
    report.loaded = len(records)
    buildings = gpd.GeoDataFrame(
        records, columns=[*BUILDING_COLUMNS, *EXTRA_COLUMNS], geometry="geometry", crs=WGS84
    )
    return buildings, report


def _metric_crs(frame: gpd.GeoDataFrame) -> Any:
    """The UTM zone of the data's centre (coords.utm_crs), for areas in m²; an empty frame
    has no area to measure (WGS-84 is returned)."""
    if not len(frame) or frame.geometry.isna().all():
        return WGS84
    minx, miny, maxx, maxy = frame.total_bounds
    return utm_crs((minx + maxx) / 2, (miny + maxy) / 2)


def units_from_frame(
    raw: pd.DataFrame, known_buildings: set[str], report: ImportReport
) -> pd.DataFrame:
    """Rental units from CSV columns unit_id, building_id, floor, room[, area_m2, use]
    (``area_m2`` in square metres): a DataFrame with ``model.UNIT_COLUMNS``. A unit of an
    unknown building, a repeated unit id or a floor that is not a number is left out and
    listed in ``report.units_refused``. Raises ValueError naming the missing columns."""
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


TEMPLATES: dict[str, tuple[list[str], list[str]]] = {
    # table: (columns, one example row). building_id is the standard address code (标准地址编码),
    # the join key of 一标三实; unit_id the room code.
    "units": (["unit_id", "building_id", "floor", "room", "area_m2", "use"],
              ["LH-0001-301", "LH-0001", "3", "301", "18.5", "rental"]),
    "people": (["person_id", "name", "role", "id_number", "phone", "born", "care_target",
                "credential_ref"],
               ["P0001", "张三", "tenant", "440112199001011234", "13812345678", "1990-01-01",
                "no", ""]),
    "tenancies": (["tenancy_id", "person_id", "unit_id", "start_date", "end_date"],
                  ["T0001", "P0001", "LH-0001-301", "2025-01-01", ""]),
    "organisations": (["org_id", "kind", "name", "building_id", "unit_id"],
                      ["O0001", "shop", "张记便利店", "LH-0001", ""]),
}  # fmt: skip


def read_table(path: Path) -> pd.DataFrame:
    """A CSV (UTF-8, with or without BOM) or Excel workbook (.xlsx, first sheet, through
    openpyxl) as text columns; blank rows dropped. Raises ValueError naming the problem."""
    try:
        if path.suffix.lower() in {".xlsx", ".xlsm"}:
            frame = pd.read_excel(path, dtype=str, engine="openpyxl")
        else:
            frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    except (ValueError, OSError, KeyError) as exc:
        raise ValueError(f"cannot read {path.name}: {exc}") from None
    except Exception as exc:  # openpyxl raises its own for a file that is no workbook
        raise ValueError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.dropna(how="all").reset_index(drop=True)


def write_template(table: str, path: Path) -> Path:
    """The template of ``table`` (TEMPLATES) as CSV or .xlsx, by the path's suffix."""
    columns, example = TEMPLATES[table]
    frame = pd.DataFrame([example], columns=columns)
    if path.suffix.lower() == ".xlsx":
        frame.to_excel(path, index=False, sheet_name=table, engine="openpyxl")
    else:
        frame.to_csv(path, index=False, encoding="utf-8-sig")
    return path


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


GRID_CODE_COLUMNS = ("grid_code", "网格编码", "code", "Code", "CODE", "id", "Id", "ID")
GRID_NAME_COLUMNS = ("name", "网格名称", "Name", "NAME")


def grid_cells_from_frame(
    raw: gpd.GeoDataFrame,
    report: ImportReport,
    source_crs: str | None = None,
    code_column: str | None = None,
    name_column: str | None = None,
    code_prefix: str = "",
) -> gpd.GeoDataFrame:
    """Grid cells (网格, GRID_COLUMNS, WGS-84) from a polygon file: the code from
    ``code_column`` or the first of GRID_CODE_COLUMNS present, the name likewise (else the
    code). Cells that are not polygons, or repeat a code, are refused into the report; raises
    ValueError when no column holds codes."""
    frame = _flat(to_wgs84(raw, source_crs), report)
    code_col = code_column or next((c for c in GRID_CODE_COLUMNS if c in frame.columns), None)
    if code_col is None or code_col not in frame.columns:
        raise ValueError(
            "the grid-cell file has no code column: name it with --grid-code-column"
            f" (looked for {', '.join(GRID_CODE_COLUMNS)})"
        )
    name_col = name_column or next((c for c in GRID_NAME_COLUMNS if c in frame.columns), None)
    rows, seen = [], set()
    for row in frame.itertuples():
        code = _text(frame.at[row.Index, code_col])
        label = f"grid {code_prefix}{code}"
        geometry, repaired, refused = _polygonal(row.geometry)
        if code is None:
            report.refused.append((f"grid row {row.Index}", "no grid code"))
            continue
        code = f"{code_prefix}{code}"
        if refused:
            report.refused.append((label, refused))
            continue
        if code in seen:
            report.refused.append((label, "duplicate grid code"))
            continue
        if repaired:
            report.repaired.append((label, repaired))
        seen.add(code)
        name = _text(frame.at[row.Index, name_col]) if name_col else None
        rows.append({"grid_code": code, "name": name or code, "grid_worker": None,
                     "geometry": geometry})  # fmt: skip
    report.grids_loaded = len(rows)
    return gpd.GeoDataFrame(rows, columns=GRID_COLUMNS, geometry="geometry", crs=WGS84)


def assign_grids(
    buildings: gpd.GeoDataFrame, grid_cells: gpd.GeoDataFrame, report: ImportReport
) -> gpd.GeoDataFrame:
    """Gives each building without a grid code the cell that holds a point inside its
    footprint (shapely's point_on_surface; a courtyard building's centroid may be outside
    it). Buildings in no cell keep none and are listed in ``report.outside_grids``."""
    result = buildings.copy()
    missing = result.grid_code.isna()
    if not missing.any():
        return result
    if len(grid_cells):
        points = gpd.GeoDataFrame(
            {"building_id": result.loc[missing, "building_id"]},
            geometry=result.loc[missing].geometry.representative_point(),
            crs=WGS84,
        )
        joined = gpd.sjoin(points, grid_cells[["grid_code", "geometry"]], predicate="within")
        first = joined[~joined.index.duplicated(keep="first")]
        result.loc[first.index, "grid_code"] = first["grid_code"]
        report.grid_assigned += len(first)
    for building_id in result.loc[result.grid_code.isna(), "building_id"]:
        report.outside_grids.append(
            (building_id, "in no grid cell: assign one with `villagetwin village set-grid`")
        )
    return result


def looks_like_mojibake(text: str) -> bool:
    """True when ``text`` reads as bytes decoded with the wrong code page: UTF-8 or GBK bytes
    read as Latin-1 (``é¾\x99æ¹\x96``), UTF-8 read as GBK (``榫欐箹``), or replacement
    characters."""
    if "\ufffd" in text:
        return True
    if not any(ord(c) > 127 for c in text):
        return False
    letters = [c for c in text if not c.isspace() and not c.isdigit()]
    non_ascii = sum(ord(c) > 127 for c in letters) / max(1, len(letters))
    for wrong in ("latin-1", "gb18030"):
        try:
            again = text.encode(wrong)
        except UnicodeEncodeError:
            continue
        for right in ("utf-8", "gb18030"):
            if right == wrong:
                continue
            try:
                decoded = again.decode(right)
            except UnicodeDecodeError:
                continue
            cjk = any("\u4e00" <= c <= "\u9fff" for c in decoded)
            # Latin-1 mojibake of Chinese is nearly all accented letters; French or German
            # text with a few (Église, Straße) is not.
            mostly_accented = wrong != "latin-1" or non_ascii >= 0.5
            if (
                decoded != text
                and cjk
                and mostly_accented
                and (wrong == "latin-1" or right == "utf-8")
            ):
                return True
    return False


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != "geometry" and frame[c].dtype.kind in "OUT"]


def mojibake_columns(frame: pd.DataFrame, sample: int = 200) -> list[str]:
    """Text columns whose values (the first ``sample`` non-empty ones) look like mojibake."""
    flagged = []
    for column in [*_text_columns(frame), *[c for c in frame.columns if isinstance(c, str)]]:
        if column in flagged:
            continue
        values = [v for v in frame[column].head(sample).tolist() if isinstance(v, str)]
        texts = values + ([column] if isinstance(column, str) else [])
        if any(looks_like_mojibake(v) for v in texts):
            flagged.append(column)
    return flagged


def _dbf_without_cpg(path: Path) -> bool:
    if path.suffix.lower() not in {".shp", ".dbf"}:
        return False
    return not any(path.with_suffix(s).exists() for s in (".cpg", ".CPG"))


def _detect_code_page(
    read: Callable[[str | None], gpd.GeoDataFrame],
) -> tuple[gpd.GeoDataFrame, str]:
    """The frame read as UTF-8 if that decodes without mojibake, else as GB18030, else with
    GDAL's default; and the name of what was used."""
    from pyogrio.errors import DataLayerError, DataSourceError

    for candidate in ("utf-8", "gb18030"):
        try:
            attempt = read(candidate)
        except (UnicodeDecodeError, DataSourceError, DataLayerError):
            continue
        if not mojibake_columns(attempt):
            return attempt, candidate
    return read(None), "GDAL's default (ISO-8859-1)"


def read_footprints(
    path: Path,
    layer: str | None = None,
    encoding: str | None = None,
    report: ImportReport | None = None,
) -> gpd.GeoDataFrame:
    """Reads any vector format GDAL knows; its errors become a ValueError with its words.

    ``encoding`` overrides what the file says (a shapefile's .cpg). A shapefile without a .cpg
    is read as UTF-8 if its text decodes as UTF-8, else as GB18030 (which covers GBK and
    GB2312, what Chinese GIS software writes), and the choice is noted in ``report``. Text
    that still looks like mojibake is warned about in ``report.notes``."""
    from pyogrio.errors import DataLayerError, DataSourceError

    def read(code_page: str | None) -> gpd.GeoDataFrame:
        return gpd.read_file(path, layer=layer, engine="pyogrio", encoding=code_page)

    notes: list[str] = []
    try:
        if encoding:
            try:
                "".encode(encoding)
            except LookupError:
                raise ValueError(
                    f"unknown text encoding {encoding!r} (try gb18030 or utf-8)"
                ) from None
            try:
                frame = read(encoding)
            except UnicodeDecodeError as exc:
                raise ValueError(f"the file's text is not {encoding}: {exc}") from None
        elif _dbf_without_cpg(path):
            frame, candidate = _detect_code_page(read)
            notes.append(
                f"{path.name} has no .cpg (code page): its text was read as {candidate};"
                " say otherwise with --encoding"
            )
        elif path.suffix.lower() in {".shp", ".dbf"}:
            try:
                frame = read(None)
            except UnicodeDecodeError:
                frame = None
            if frame is None or mojibake_columns(frame):
                # The .cpg names a code page the text is not in (a GBK file declared UTF-8):
                # detect it as for a file without one, and say so.
                frame, candidate = _detect_code_page(read)
                notes.append(
                    f"{path.name}: its .cpg names a code page its text is not in; the text was"
                    f" read as {candidate}; say otherwise with --encoding"
                )
        else:
            frame = read(None)
    except (DataSourceError, DataLayerError) as exc:
        raise ValueError(f"not a readable vector file: {exc}") from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.isna().all():
        kind = (
            "a table"
            if path.suffix.lower() in {".csv", ".tsv", ".txt", ".xlsx", ".xls"}
            else "a file"
        )
        raise ValueError(
            f"{path.name} is {kind} without geometry: footprints must be polygons (GeoJSON,"
            " GeoPackage, Shapefile); a table of units, people or tenancies goes with"
            " --units, --people or --tenancies"
        )
    bad = mojibake_columns(frame)
    if bad:
        notes.append(
            f"warning: the text of {', '.join(map(str, bad))} looks like mojibake (a wrong code"
            " page): try --encoding gb18030 or --encoding utf-8"
        )
    if report is not None:
        report.notes += notes
    return frame
