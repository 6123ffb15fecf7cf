"""A deterministic sample urban village in Huangpu district, Guangzhou.

It reproduces the form of a real 城中村: rows of "handshake" buildings (握手楼) of 4–9 storeys
on plots of about 10 × 10 m, separated by alleys 1–3 m wide, with a few taller buildings, a
main street with shops, an ancestral hall on a square, and gates at the entrances. Geometry is
laid out in metres (UTM zone 49N) and stored in WGS-84.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import geopandas as gpd
import pandas as pd
from shapely.geometry import LineString, Point, Polygon, box
from shapely.ops import unary_union

from mapping.coords import utm_crs
from mapping.model import (
    ORGANISATION_COLUMNS,
    PERSON_COLUMNS,
    TENANCY_COLUMNS,
    WGS84,
    Village,
)

ORIGIN_LON, ORIGIN_LAT = 113.45, 23.16
# The sample village is laid out in metres in the UTM zone of its origin (49N at Guangzhou).
METRIC_CRS = utm_crs(ORIGIN_LON, ORIGIN_LAT)

SURNAMES = "陈李黄张梁林刘何罗郑谢冯邓曾彭吴周徐叶苏卢蔡潘杜钟"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华志坚国荣"


@dataclass(frozen=True, slots=True)
class VillageSize:
    columns: int
    rows: int
    grid_columns: int
    grid_rows: int
    units_per_floor: tuple[int, int]


SIZES: dict[str, VillageSize] = {
    "small": VillageSize(columns=20, rows=16, grid_columns=3, grid_rows=3, units_per_floor=(2, 4)),
    "large": VillageSize(columns=60, rows=52, grid_columns=6, grid_rows=6, units_per_floor=(1, 3)),
}


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))


def _chinese_number(n: int) -> str:
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    if n < 20:
        return "十" + (digits[n % 10] if n % 10 else "")
    return digits[n // 10] + "十" + (digits[n % 10] if n % 10 else "")


def generate(seed: int = 1, size: Literal["small", "large"] = "small") -> Village:
    """The same seed and size give the same village, down to the last unit. Built layer by
    layer (each function below draws from ``rng`` in this order, so keep it): the plot
    layout, grid cells, buildings with their units, the square, alleys, devices, then the
    people, tenancies and organisations, and the objects. Metres in UTM 49N, stored WGS-84."""
    spec = SIZES[size]
    rng = random.Random(seed)
    layout = _layout(spec, rng)
    grid_records = _grid_cells(layout, rng)
    buildings, units, pois = _buildings(layout, rng)
    pois.append(_square(layout))
    alleys = _alleys(layout)
    devices = _devices(layout, buildings)
    boundary = _frame(
        [
            {
                "name": "龙湖村",
                "geometry": box(
                    layout.ox - 6,
                    layout.oy - 6,
                    layout.ox + layout.width + 6,
                    layout.oy + layout.height + 6,
                ),
            }
        ]
    )
    people, tenancies, organisations = _inhabit(rng, buildings, units, grid_records)
    objects = _objects(rng, buildings, layout.main_y, layout.ox, layout.width)
    return Village(
        name="龙湖村",
        boundary=boundary,
        grid_cells=_frame(grid_records),
        buildings=_frame(buildings),
        units=pd.DataFrame(units),
        alleys=_frame(alleys),
        devices=_frame(devices),
        pois=_frame(pois),
        people=pd.DataFrame(people, columns=PERSON_COLUMNS),
        tenancies=pd.DataFrame(tenancies, columns=TENANCY_COLUMNS),
        organisations=pd.DataFrame(organisations, columns=ORGANISATION_COLUMNS),
        objects=_frame(objects),
    )


Record = dict[str, object]
PLOT_M = 10.0  # a plot is about 10 x 10 m
MAIN_STREET_M, LANE_M = 8.0, 4.0


@dataclass(frozen=True)
class _Layout:
    """Where the plots are: ``xs``/``ys`` are each column's and row's offset (m) from the
    village's south-west corner ``(ox, oy)`` in UTM 49N; gaps are the alleys before them."""

    spec: VillageSize
    ox: float
    oy: float
    xs: list[float]
    ys: list[float]
    row_gap: list[float]
    width: float
    height: float
    main_row: int  # the main street runs east-west before this row
    lane_col: int  # a north-south lane runs before this column

    @property
    def grid_w(self) -> float:
        return self.width / self.spec.grid_columns

    @property
    def grid_h(self) -> float:
        return self.height / self.spec.grid_rows

    @property
    def main_y(self) -> float:
        return self.oy + self.ys[self.main_row] - MAIN_STREET_M / 2

    @property
    def lane_x(self) -> float:
        return self.ox + self.xs[self.lane_col] - LANE_M / 2

    # The ancestral hall (祠堂) and its square sit on the main street, east of the lane.
    @property
    def square_plots(self) -> set[tuple[int, int]]:
        cols = range(self.lane_col + 2, self.lane_col + 5)
        return {(c, r) for c in cols for r in (self.main_row, self.main_row + 1)}

    @property
    def hall_plot(self) -> tuple[int, int]:
        return (self.lane_col + 3, self.main_row + 1)

    def grid_of(self, px: float, py: float) -> str:
        """The grid cell (网格) code of a point in UTM metres."""
        gc = min(int((px - self.ox) / self.grid_w), self.spec.grid_columns - 1)
        gr = min(int((py - self.oy) / self.grid_h), self.spec.grid_rows - 1)
        return f"LH-G{gr * self.spec.grid_columns + gc + 1:02d}"


def _layout(spec: VillageSize, rng: random.Random) -> _Layout:
    origin = gpd.GeoSeries([Point(ORIGIN_LON, ORIGIN_LAT)], crs=WGS84).to_crs(METRIC_CRS).iloc[0]
    main_row, lane_col = spec.rows // 2, spec.columns // 2
    # Alley widths between columns and rows: 1–3 m, the gap between handshake buildings.
    col_gap = [round(rng.uniform(1.0, 3.0), 1) for _ in range(spec.columns)]
    row_gap = [round(rng.uniform(1.0, 3.0), 1) for _ in range(spec.rows)]
    col_gap[lane_col] = LANE_M
    row_gap[main_row] = MAIN_STREET_M
    xs, x = [], 0.0
    for c in range(spec.columns):
        x += col_gap[c] if c else 0.0
        xs.append(x)
        x += PLOT_M
    ys, y = [], 0.0
    for r in range(spec.rows):
        y += row_gap[r] if r else 0.0
        ys.append(y)
        y += PLOT_M
    return _Layout(
        spec, origin.x - x / 2, origin.y - y / 2, xs, ys, row_gap, x, y, main_row, lane_col
    )


def _grid_cells(layout: _Layout, rng: random.Random) -> list[Record]:
    """The grid cells (网格), each with its grid worker."""
    spec, ox, oy = layout.spec, layout.ox, layout.oy
    grid_w, grid_h = layout.grid_w, layout.grid_h
    records: list[Record] = []
    for gr in range(spec.grid_rows):
        for gc in range(spec.grid_columns):
            n = gr * spec.grid_columns + gc + 1
            records.append(
                {
                    "grid_code": f"LH-G{n:02d}",
                    "name": f"龙湖村第{_chinese_number(n)}网格",
                    "grid_worker": _name(rng),
                    "geometry": box(
                        ox + gc * grid_w,
                        oy + gr * grid_h,
                        ox + (gc + 1) * grid_w,
                        oy + (gr + 1) * grid_h,
                    ),
                }
            )
    return records


def _buildings(
    layout: _Layout, rng: random.Random
) -> tuple[list[dict[str, object]], list[Record], list[Record]]:
    """Buildings with their standard addresses (标准地址), their rental units, and the
    ancestral hall as a point of interest."""
    spec, ox, oy = layout.spec, layout.ox, layout.oy
    buildings: list[dict[str, object]] = []
    units: list[Record] = []
    pois: list[Record] = []
    number_in_alley: dict[int, int] = {}
    square, hall = layout.square_plots, layout.hall_plot
    for r in range(spec.rows):
        for c in range(spec.columns):
            if (c, r) in square and (c, r) != hall:
                continue
            x0, y0 = ox + layout.xs[c], oy + layout.ys[r]
            inset = [rng.uniform(0.0, 0.4) for _ in range(4)]
            footprint = box(
                x0 + inset[0], y0 + inset[1], x0 + PLOT_M - inset[2], y0 + PLOT_M - inset[3]
            )
            alley = r + 1
            number_in_alley[alley] = number_in_alley.get(alley, 0) + 1
            n = len(buildings) + 1
            building_id = f"LH{n:05d}"
            on_main_street = r in (layout.main_row - 1, layout.main_row)
            if (c, r) == hall:
                storeys, use = 1, "ancestral_hall"
            elif rng.random() < 0.04:
                storeys, use = rng.randint(10, 14), "residential"
            else:
                storeys, use = rng.randint(4, 9), "residential"
            if on_main_street and use == "residential":
                use = "mixed"
            centre = footprint.centroid
            buildings.append(
                {
                    "building_id": building_id,
                    "address": (
                        f"广州市黄埔区龙湖村{_chinese_number(alley)}巷{number_in_alley[alley]}号"
                    ),
                    "grid_code": layout.grid_of(centre.x, centre.y),
                    "storeys": storeys,
                    "height_m": round(storeys * 3.0, 1),
                    "landlord": _name(rng) if use != "ancestral_hall" else "龙湖村经济联社",
                    "use": use,
                    "geometry": footprint,
                }
            )
            if use == "ancestral_hall":
                pois.append(
                    {"name": "龙湖村祠堂", "category": "ancestral_hall", "geometry": centre}
                )
                continue
            units.extend(
                _units(rng, spec.units_per_floor, building_id, storeys, use, footprint.area)
            )
    return buildings, units, pois


def _units(
    rng: random.Random,
    per_floor_range: tuple[int, int],
    building_id: str,
    storeys: int,
    use: str,
    footprint_m2: float,
) -> list[Record]:
    """A building's units, floor by floor: rentals, and a shop on the ground floor of a
    building on the main street (``use`` mixed)."""
    per_floor = rng.randint(*per_floor_range)
    area = round(footprint_m2 * 0.8 / per_floor, 1)
    units: list[Record] = []
    for floor in range(1, storeys + 1):
        if floor == 1 and use == "mixed":
            rooms = [(f"{floor}01", "shop", round(footprint_m2 * 0.8, 1))]
        else:
            rooms = [(f"{floor}{i:02d}", "rental", area) for i in range(1, per_floor + 1)]
        for room, unit_use, unit_area in rooms:
            units.append(
                {
                    "unit_id": f"{building_id}-{room}",
                    "building_id": building_id,
                    "floor": floor,
                    "room": room,
                    "area_m2": unit_area,
                    "use": unit_use,
                }
            )
    return units


def _square(layout: _Layout) -> Record:
    """The village square (文化广场) as a point of interest, at the centre of its plots."""
    square = unary_union(
        [
            box(
                layout.ox + layout.xs[c],
                layout.oy + layout.ys[r],
                layout.ox + layout.xs[c] + PLOT_M,
                layout.oy + layout.ys[r] + PLOT_M,
            )
            for c, r in sorted(layout.square_plots)
        ]
    )
    return {"name": "龙湖村文化广场", "category": "square", "geometry": square.centroid}


def _alleys(layout: _Layout) -> list[Record]:
    """The main street, the lane and the alleys (巷) between rows, as centre lines."""
    ox, oy, width, height = layout.ox, layout.oy, layout.width, layout.height
    main_y, lane_x = layout.main_y, layout.lane_x
    alleys: list[Record] = [
        {
            "name": "龙湖大街",
            "kind": "main_street",
            "width_m": MAIN_STREET_M,
            "geometry": LineString([(ox - 5, main_y), (ox + width + 5, main_y)]),
        },
        {
            "name": "龙湖中巷",
            "kind": "lane",
            "width_m": LANE_M,
            "geometry": LineString([(lane_x, oy - 5), (lane_x, oy + height + 5)]),
        },
    ]
    for r in range(1, layout.spec.rows):
        if r == layout.main_row:
            continue
        gy = oy + layout.ys[r] - layout.row_gap[r] / 2
        alleys.append(
            {
                "name": f"{_chinese_number(r)}巷",
                "kind": "alley",
                "width_m": layout.row_gap[r],
                "geometry": LineString([(ox, gy), (ox + width, gy)]),
            }
        )
    return alleys


def _devices(layout: _Layout, buildings: list[dict[str, object]]) -> list[Record]:
    """Gates at the four entrances, an access reader at every building's door, cameras along
    the main street and every fourth alley, and the residents' app."""
    ox, oy, width, height = layout.ox, layout.oy, layout.width, layout.height
    main_y, lane_x = layout.main_y, layout.lane_x
    devices: list[Record] = []
    entrances = [
        ("gate-west", (ox - 4, main_y)),
        ("gate-east", (ox + width + 4, main_y)),
        ("gate-south", (lane_x, oy - 4)),
        ("gate-north", (lane_x, oy + height + 4)),
    ]
    for device_id, (px, py) in entrances:
        devices.append(
            {
                "device_id": device_id,
                "kind": "gate",
                "building_id": None,
                "grid_code": layout.grid_of(
                    min(max(px, ox), ox + width - 1), min(max(py, oy), oy + height - 1)
                ),
                "floor": 0,
                "door": "entrance",
                "geometry": Point(px, py),
            }
        )
    for b in buildings:
        footprint = b["geometry"]
        assert isinstance(footprint, Polygon)
        centre = footprint.centroid
        devices.append(
            {
                "device_id": f"acc-{str(b['building_id']).lower()}",
                "kind": "access",
                "building_id": b["building_id"],
                "grid_code": b["grid_code"],
                "floor": 1,
                "door": "building",
                "geometry": Point(centre.x, footprint.bounds[1]),
            }
        )
    camera_n = 0
    lines = [main_y] + [
        oy + layout.ys[r] - layout.row_gap[r] / 2 for r in range(2, layout.spec.rows, 4)
    ]
    for c in range(0, layout.spec.columns, 3):
        for line_y in lines:
            camera_n += 1
            px = ox + layout.xs[c] + PLOT_M / 2
            devices.append(
                {
                    "device_id": f"cam-{camera_n:03d}",
                    "kind": "camera",
                    "building_id": None,
                    "grid_code": layout.grid_of(px, line_y),
                    "floor": 0,
                    "door": None,
                    "geometry": Point(px, line_y),
                }
            )
    devices.append(
        {
            "device_id": "app-kaobutong",
            "kind": "app",
            "building_id": None,
            "grid_code": None,
            "floor": None,
            "door": None,
            "geometry": Point(ox + width / 2, oy + height / 2),
        }
    )
    return devices


def _frame(records: list[Record]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(records, geometry="geometry", crs=METRIC_CRS).to_crs(WGS84)


SHOP_KINDS = ["便利店", "粉面店", "五金店", "快递点", "理发店"]
TODAY = date(2026, 11, 1)  # the generator's "now", fixed so a seed always gives one village


def _id_number(rng: random.Random, born: date) -> str:
    """A synthetic 18-digit resident ID (Guangzhou Huangpu area code) with a valid
    ISO 7064 MOD 11-2 check digit, so validators accept it; it names nobody."""
    body = f"440112{born:%Y%m%d}{rng.randint(0, 999):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return body + check


def _person(
    rng: random.Random, n: int, role: str, min_age: int = 18, max_age: int = 65
) -> dict[str, object]:
    born = TODAY - timedelta(days=rng.randint(min_age * 365, max_age * 365))
    person_id = f"P{n:07d}"
    return {
        "person_id": person_id,
        "name": _name(rng),
        "id_number": _id_number(rng, born),
        "phone": f"1{rng.choice('3578')}{rng.randint(0, 999_999_999):09d}",
        "born": born,
        "role": role,
        "care_target": False,
        "credential_ref": "cred:" + hashlib.sha256(person_id.encode()).hexdigest()[:16],
    }


def _inhabit(
    rng: random.Random,
    buildings: list[dict[str, object]],
    units: list[dict[str, object]],
    grid_records: list[dict[str, object]],
) -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]]]:
    """Landlords, tenants with tenancies in the rental units, care targets (elderly living
    alone), shops in the shop units, workshops, associations and the grid teams."""
    people: list[dict[str, object]] = []
    tenancies: list[dict[str, object]] = []
    organisations: list[dict[str, object]] = []
    landlord_ids: dict[object, str] = {}
    for b in buildings:
        if b["use"] == "ancestral_hall" or b["landlord"] in landlord_ids:
            continue
        landlord = _person(rng, len(people) + 1, "landlord", 35, 75)
        landlord["name"] = b["landlord"]
        landlord_ids[b["landlord"]] = str(landlord["person_id"])
        people.append(landlord)
    for unit in units:
        if unit["use"] == "shop":
            organisations.append({
                "org_id": f"O{len(organisations) + 1:06d}", "kind": "shop",
                "name": f"{_name(rng)[0]}记{rng.choice(SHOP_KINDS)}",
                "building_id": unit["building_id"], "unit_id": unit["unit_id"],
            })  # fmt: skip
            continue
        if rng.random() < 0.12:
            continue  # vacant
        elderly_alone = rng.random() < 0.015
        household = 1 if elderly_alone else rng.choices([1, 2, 3, 4], weights=[20, 30, 30, 20])[0]
        for _ in range(household):
            person = (
                _person(rng, len(people) + 1, "tenant", 70, 88)
                if elderly_alone
                else _person(rng, len(people) + 1, "tenant")
            )
            person["care_target"] = elderly_alone
            people.append(person)
            start = TODAY - timedelta(days=rng.randint(10, 1100))
            ended = rng.random() < 0.05
            tenancies.append({
                "tenancy_id": f"T{len(tenancies) + 1:07d}", "person_id": person["person_id"],
                "unit_id": unit["unit_id"], "start_date": start,
                "end_date": start + timedelta(days=rng.randint(1, max(1, (TODAY - start).days - 1)))
                if ended else None,
            })  # fmt: skip
        if rng.random() < 0.01:
            organisations.append({
                "org_id": f"O{len(organisations) + 1:06d}", "kind": "workshop",
                "name": f"{_name(rng)[0]}氏{rng.choice(['制衣', '电子', '包装'])}作坊",
                "building_id": unit["building_id"], "unit_id": unit["unit_id"],
            })  # fmt: skip
    hall = next((b["building_id"] for b in buildings if b["use"] == "ancestral_hall"), None)
    organisations.append(
        {
            "org_id": f"O{len(organisations) + 1:06d}",
            "kind": "association",
            "name": "龙湖村出租屋业主协会",
            "building_id": hall,
            "unit_id": None,
        }
    )
    organisations.append(
        {
            "org_id": f"O{len(organisations) + 1:06d}",
            "kind": "property_manager",
            "name": "龙湖物业管理服务站",
            "building_id": hall,
            "unit_id": None,
        }
    )
    for cell in grid_records:
        organisations.append(
            {
                "org_id": f"O{len(organisations) + 1:06d}",
                "kind": "grid_team",
                "name": f"{cell['name']}工作组",
                "building_id": None,
                "unit_id": None,
            }
        )
    return people, tenancies, organisations  # fmt: skip


def _objects(
    rng: random.Random, buildings: list[dict[str, object]], main_y: float, ox: float, width: float
) -> list[dict[str, object]]:
    """Fire hydrants along the main street, an extinguisher in every building, e-bike
    charging points at about one building in twelve."""
    objects: list[dict[str, object]] = []
    x = ox + 10
    while x < ox + width:
        objects.append(
            {
                "object_id": f"H{len(objects) + 1:05d}",
                "kind": "fire_hydrant",
                "building_id": None,
                "floor": 0,
                "geometry": Point(x, main_y),
            }
        )
        x += 40
    for b in buildings:
        centre = b["geometry"].centroid  # type: ignore[attr-defined]
        objects.append(
            {
                "object_id": f"E{len(objects) + 1:05d}",
                "kind": "extinguisher",
                "building_id": b["building_id"],
                "floor": 1,
                "geometry": centre,
            }
        )
        if rng.random() < 1 / 12:
            objects.append(
                {
                    "object_id": f"C{len(objects) + 1:05d}",
                    "kind": "ebike_charging",
                    "building_id": b["building_id"],
                    "floor": 0,
                    "geometry": Point(centre.x + 3, centre.y),
                }
            )
    return objects  # fmt: skip
