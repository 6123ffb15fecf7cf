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
from shapely.geometry import LineString, Point, box
from shapely.ops import unary_union

from mapping.model import (
    ORGANISATION_COLUMNS,
    PERSON_COLUMNS,
    TENANCY_COLUMNS,
    WGS84,
    Village,
)

UTM_49N = "EPSG:32649"
ORIGIN_LON, ORIGIN_LAT = 113.45, 23.16

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
    """The same seed and size give the same village, down to the last unit."""
    spec = SIZES[size]
    rng = random.Random(seed)
    origin = gpd.GeoSeries([Point(ORIGIN_LON, ORIGIN_LAT)], crs=WGS84).to_crs(UTM_49N).iloc[0]
    ox, oy = origin.x, origin.y

    plot = 10.0
    main_street_w, lane_w = 8.0, 4.0
    main_row = spec.rows // 2  # the main street runs east-west before this row
    lane_col = spec.columns // 2  # a north-south lane runs before this column
    # Alley widths between columns and rows: 1–3 m, the gap between handshake buildings.
    col_gap = [round(rng.uniform(1.0, 3.0), 1) for _ in range(spec.columns)]
    row_gap = [round(rng.uniform(1.0, 3.0), 1) for _ in range(spec.rows)]
    col_gap[lane_col] = lane_w
    row_gap[main_row] = main_street_w
    xs, x = [], 0.0
    for c in range(spec.columns):
        x += col_gap[c] if c else 0.0
        xs.append(x)
        x += plot
    ys, y = [], 0.0
    for r in range(spec.rows):
        y += row_gap[r] if r else 0.0
        ys.append(y)
        y += plot
    width, height = x, y
    ox -= width / 2
    oy -= height / 2

    # The ancestral hall (祠堂) and its square sit on the main street, east of the lane.
    square_cols = set(range(lane_col + 2, lane_col + 5))
    square_rows = {main_row, main_row + 1}
    hall_plot = (lane_col + 3, main_row + 1)

    grid_w, grid_h = width / spec.grid_columns, height / spec.grid_rows
    grid_records = []
    for gr in range(spec.grid_rows):
        for gc in range(spec.grid_columns):
            n = gr * spec.grid_columns + gc + 1
            grid_records.append(
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

    def grid_of(px: float, py: float) -> str:
        gc = min(int((px - ox) / grid_w), spec.grid_columns - 1)
        gr = min(int((py - oy) / grid_h), spec.grid_rows - 1)
        return f"LH-G{gr * spec.grid_columns + gc + 1:02d}"

    buildings, units, pois = [], [], []
    number_in_alley: dict[int, int] = {}
    for r in range(spec.rows):
        for c in range(spec.columns):
            if (c, r) in {(sc, sr) for sc in square_cols for sr in square_rows} and (
                c,
                r,
            ) != hall_plot:
                continue
            x0, y0 = ox + xs[c], oy + ys[r]
            inset = [rng.uniform(0.0, 0.4) for _ in range(4)]
            footprint = box(
                x0 + inset[0], y0 + inset[1], x0 + plot - inset[2], y0 + plot - inset[3]
            )
            alley = r + 1
            number_in_alley[alley] = number_in_alley.get(alley, 0) + 1
            n = len(buildings) + 1
            building_id = f"LH{n:05d}"
            on_main_street = r in (main_row - 1, main_row)
            if (c, r) == hall_plot:
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
                    "grid_code": grid_of(centre.x, centre.y),
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
            per_floor = rng.randint(*spec.units_per_floor)
            area = round(footprint.area * 0.8 / per_floor, 1)
            for floor in range(1, storeys + 1):
                if floor == 1 and use == "mixed":
                    rooms = [(f"{floor}01", "shop", round(footprint.area * 0.8, 1))]
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

    square = unary_union(
        [
            box(ox + xs[c], oy + ys[r], ox + xs[c] + plot, oy + ys[r] + plot)
            for c in square_cols
            for r in square_rows
        ]
    )
    pois.append({"name": "龙湖村文化广场", "category": "square", "geometry": square.centroid})

    main_y = oy + ys[main_row] - main_street_w / 2
    lane_x = ox + xs[lane_col] - lane_w / 2
    alleys = [
        {
            "name": "龙湖大街",
            "kind": "main_street",
            "width_m": main_street_w,
            "geometry": LineString([(ox - 5, main_y), (ox + width + 5, main_y)]),
        },
        {
            "name": "龙湖中巷",
            "kind": "lane",
            "width_m": lane_w,
            "geometry": LineString([(lane_x, oy - 5), (lane_x, oy + height + 5)]),
        },
    ]
    for r in range(1, spec.rows):
        if r == main_row:
            continue
        gy = oy + ys[r] - row_gap[r] / 2
        alleys.append(
            {
                "name": f"{_chinese_number(r)}巷",
                "kind": "alley",
                "width_m": row_gap[r],
                "geometry": LineString([(ox, gy), (ox + width, gy)]),
            }
        )

    devices = []
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
                "grid_code": grid_of(
                    min(max(px, ox), ox + width - 1), min(max(py, oy), oy + height - 1)
                ),
                "floor": 0,
                "door": "entrance",
                "geometry": Point(px, py),
            }
        )
    for b in buildings:
        centre = b["geometry"].centroid
        devices.append(
            {
                "device_id": f"acc-{b['building_id'].lower()}",
                "kind": "access",
                "building_id": b["building_id"],
                "grid_code": b["grid_code"],
                "floor": 1,
                "door": "building",
                "geometry": Point(centre.x, b["geometry"].bounds[1]),
            }
        )
    camera_n = 0
    for c in range(0, spec.columns, 3):
        for line_y in [main_y] + [oy + ys[r] - row_gap[r] / 2 for r in range(2, spec.rows, 4)]:
            camera_n += 1
            px = ox + xs[c] + plot / 2
            devices.append(
                {
                    "device_id": f"cam-{camera_n:03d}",
                    "kind": "camera",
                    "building_id": None,
                    "grid_code": grid_of(px, line_y),
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

    def frame(records: list[dict[str, object]]) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(records, geometry="geometry", crs=UTM_49N).to_crs(WGS84)

    boundary = frame(
        [{"name": "龙湖村", "geometry": box(ox - 6, oy - 6, ox + width + 6, oy + height + 6)}]
    )
    people, tenancies, organisations = _inhabit(rng, buildings, units, grid_records)
    objects = _objects(rng, buildings, main_y, ox, width)
    return Village(
        name="龙湖村",
        boundary=boundary,
        grid_cells=frame(grid_records),
        buildings=frame(buildings),
        units=pd.DataFrame(units),
        alleys=frame(alleys),
        devices=frame(devices),
        pois=frame(pois),
        people=pd.DataFrame(people, columns=PERSON_COLUMNS),
        tenancies=pd.DataFrame(tenancies, columns=TENANCY_COLUMNS),
        organisations=pd.DataFrame(organisations, columns=ORGANISATION_COLUMNS),
        objects=frame(objects),
    )


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
