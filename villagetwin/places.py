"""Pending changes of a device's place: what a device claimed in its retained config, where it
differs from the registry, waiting for an operator (migration 0031, ``devices changes``)."""

from __future__ import annotations

from typing import Any

import psycopg


class PlaceChangeError(ValueError):
    pass


def _place(building: str | None, floor: int | None, door: str | None) -> str:
    return f"{building or '-'}/{'-' if floor is None else floor}/{door or '-'}"


def pending(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """``(change id, device, place now, place claimed, claimed at)``, places as
    ``building/floor/door``, oldest first."""
    rows = conn.execute(
        "SELECT c.change_id, c.device_id, d.building_id, d.floor, d.door, c.building_id,"
        " c.floor, c.door, c.claimed_at FROM device_place_changes c JOIN devices d USING"
        " (device_id) WHERE c.status = 'pending' ORDER BY c.claimed_at, c.change_id"
    ).fetchall()
    return [(r[0], r[1], _place(*r[2:5]), _place(*r[5:8]), r[8].isoformat()) for r in rows]


def decide(conn: psycopg.Connection, change_id: int, *, accept: bool, operator: str) -> None:
    """Accepting moves the device to the claimed place; rejecting leaves it. Raises
    ``PlaceChangeError`` for a change that is not pending or names an unknown building."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE device_place_changes SET status = %s, decided_at = now(), decided_by = %s"
            " WHERE change_id = %s AND status = 'pending'"
            " RETURNING device_id, building_id, floor, door",
            ("accepted" if accept else "rejected", operator, change_id),
        ).fetchone()
        if row is None:
            raise PlaceChangeError(f"no pending change {change_id}")
        if not accept:
            return
        device_id, building, floor, door = row
        if (
            building
            and not conn.execute(
                "SELECT 1 FROM buildings WHERE building_id = %s", (building,)
            ).fetchone()
        ):
            raise PlaceChangeError(f"the claimed building {building!r} is not in the village")
        conn.execute(
            "UPDATE devices SET building_id = %s, floor = %s, door = %s WHERE device_id = %s",
            (building, floor, door, device_id),
        )
