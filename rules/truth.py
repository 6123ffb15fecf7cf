"""What the alert rules should find in a simulated day: the simulator's ground truth
(``devices/day.py``, ``DayPlan.truth``) as alert subjects by rule, the one mapping that the
rules benchmark (precision and recall) and the rules' replay test both compare against."""

from __future__ import annotations

from typing import Any


def expected_subjects(truth: dict[str, Any], person_of: dict[str, str]) -> dict[str, set[str]]:
    """Alert subjects (``unit:…``, ``tenant:<unit>/<person>``, ``building:…``, ``device:…``)
    by rule id; ``person_of`` maps a credential reference to its person id."""

    def tenants(cases: list[dict[str, str]]) -> set[str]:
        return {f"tenant:{c['unit_id']}/{person_of[c['credential']]}" for c in cases}

    rule_of = {"forced_open": "door_forced", "held_open": "door_held_open"}
    doors: dict[str, set[str]] = {"door_forced": set(), "door_held_open": set()}
    for c in truth["doors_left_open"]:
        doors[rule_of[c["alarm"]]].add(f"building:{c['building_id']}")
    return {
        "occupancy": {f"unit:{c['unit_id']}" for c in truth["overcrowded_units"]},
        "unregistered_occupancy": {f"unit:{c['unit_id']}" for c in truth["unregistered_units"]},
        "never_seen": tenants(truth["never_seen_tenants"]),
        "after_tenancy": tenants(truth["used_after_tenancy"]),
        "care_inactive": tenants(truth["inactive_care_targets"]),
        "ebike_indoor": {f"building:{c['building_id']}" for c in truth["ebike_into_building"]},
        "smoke_fire": {f"building:{c['building_id']}" for c in truth["smoke_fire"]},
        "gate_tailgating": {f"device:{c['device_id']}" for c in truth["gate_tailgating"]},
        "crowding": {f"device:{c['device_id']}" for c in truth["crowding"]},
        "device_offline": {f"device:{c['device_id']}" for c in truth["devices_offline"]},
        **doors,
    }
