"""The village model: places (地), objects (物) and, later, people and organisations.

A ``Village`` is a set of GeoDataFrames in WGS-84 (EPSG:4326), one per kind of thing, with
the columns the database tables have. The standard address code (``building_id``) and the
room code (``unit_id``) are the join keys between them (一标三实).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import pandas as pd

WGS84 = "EPSG:4326"

BUILDING_COLUMNS = [
    "building_id",
    "address",
    "grid_code",
    "storeys",
    "height_m",
    "landlord",
    "use",
    "geometry",
]
UNIT_COLUMNS = ["unit_id", "building_id", "floor", "room", "area_m2", "use"]
GRID_COLUMNS = ["grid_code", "name", "grid_worker", "geometry"]
PERSON_COLUMNS = [
    "person_id", "name", "id_number", "phone", "born", "role", "care_target", "credential_ref",
]  # fmt: skip
TENANCY_COLUMNS = ["tenancy_id", "person_id", "unit_id", "start_date", "end_date"]
ORGANISATION_COLUMNS = ["org_id", "kind", "name", "building_id", "unit_id"]
OBJECT_COLUMNS = ["object_id", "kind", "building_id", "floor", "geometry"]
DEVICE_COLUMNS = ["device_id", "kind", "building_id", "grid_code", "floor", "door", "geometry"]


@dataclass
class Village:
    name: str
    boundary: gpd.GeoDataFrame
    grid_cells: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    units: pd.DataFrame
    alleys: gpd.GeoDataFrame
    devices: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    # 人 people (personal data: ID numbers and phones are masked on screen), their tenancies,
    # 组织 organisations and 物 objects (hydrants, extinguishers, e-bike charging points).
    people: pd.DataFrame
    tenancies: pd.DataFrame
    organisations: pd.DataFrame
    objects: gpd.GeoDataFrame
    # The village's own settings (table ``villages``): its IANA time zone, for local days and
    # times on screen; its key is its name.
    time_zone: str = "Asia/Shanghai"

    def summary(self) -> dict[str, int]:
        """How many rows each part of the village holds: ``{"buildings": n, "units": n, …}``, ten
        keys."""
        return {
            "buildings": len(self.buildings),
            "units": len(self.units),
            "grid_cells": len(self.grid_cells),
            "devices": len(self.devices),
            "alleys": len(self.alleys),
            "pois": len(self.pois),
            "people": len(self.people),
            "tenancies": len(self.tenancies),
            "organisations": len(self.organisations),
            "objects": len(self.objects),
        }
