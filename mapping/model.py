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

    def summary(self) -> dict[str, int]:
        return {
            "buildings": len(self.buildings),
            "units": len(self.units),
            "grid_cells": len(self.grid_cells),
            "devices": len(self.devices),
            "alleys": len(self.alleys),
            "pois": len(self.pois),
        }
