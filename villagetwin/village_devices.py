"""The simulator's view of the village: each registered device with the units it serves."""

from __future__ import annotations

from collections import defaultdict

import psycopg

from devices.day import SimVillage
from devices.payloads import DeviceKind
from devices.simulator import SimDevice


def sim_devices(conn: psycopg.Connection) -> list[SimDevice]:
    units: dict[str, list[str]] = defaultdict(list)
    for unit_id, building_id in conn.execute(
        "SELECT unit_id, building_id FROM units ORDER BY unit_id"
    ):
        units[building_id].append(unit_id)
    rows = conn.execute(
        "SELECT device_id, kind, building_id, coalesce(lon, 0), coalesce(lat, 0)"
        " FROM devices WHERE revoked_at IS NULL ORDER BY device_id"
    ).fetchall()
    return [
        SimDevice(
            device_id=device_id,
            kind=DeviceKind(kind),
            units=tuple(units.get(building_id, ())) if building_id else (),
            lon=lon,
            lat=lat,
            building_code=building_id,
        )
        for device_id, kind, building_id, lon, lat in rows
    ]


def sim_village(conn: psycopg.Connection) -> SimVillage:
    """Devices, and the credentials registered in each unit through current tenancies."""
    residents: dict[str, list[str]] = defaultdict(list)
    care: list[tuple[str, str]] = []
    for unit_id, credential, care_target in conn.execute(
        "SELECT t.unit_id, p.credential_ref, p.care_target FROM tenancies t"
        " JOIN people p USING (person_id)"
        " WHERE p.credential_ref IS NOT NULL AND (t.end_date IS NULL OR t.end_date >= current_date)"
        " ORDER BY t.unit_id, p.person_id"
    ):
        residents[unit_id].append(credential)
        if care_target:
            care.append((unit_id, credential))
    former = conn.execute(
        "SELECT t.unit_id, p.credential_ref FROM tenancies t JOIN people p USING (person_id)"
        " WHERE p.credential_ref IS NOT NULL AND t.end_date < current_date - 1"
        " ORDER BY t.unit_id, p.person_id"
    ).fetchall()
    return SimVillage(
        devices=sim_devices(conn), residents=dict(residents), care_targets=care,
        former=[(u, c) for u, c in former],
    )  # fmt: skip
