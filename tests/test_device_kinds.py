"""A device kind is declared once, in the device kind registry (devices/kinds.py; see "How to
add a device kind" in DEVELOPERS.md). These tests read each place that depends on the kinds as
the code uses it, and fail naming the one that does not follow the registry: the contract's
enum and event models, the database, the simulator, the sample village, the map, the
dashboard, the rules and the derived tables. The last test adds a toy kind through the
registry alone and sees every derived table and the database take it."""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Literal

import psycopg
import pytest
from pydantic import BaseModel

from dashboard.queries import ALARM_KINDS
from devices import kinds
from devices.payloads import DeviceKind, EventModel
from devices.simulator import EventGenerator, SimDevice
from ingest.derive import PRESENCE_KINDS
from mapping.generate import generate
from mapping.layers import EVENT_COLOURS
from rules.settings import RuleParams
from villagetwin.migrate import sync_device_kinds

KINDS = {str(k) for k in kinds.REGISTRY}
EVENT_TYPES = set(kinds.EVENT_TYPES)


def _model_types() -> set[str]:
    """The ``type`` literal of every event model in the contract's union."""
    return {kinds.type_of(model) for model in typing.get_args(EventModel)}


def test_the_contract_follows_the_registry() -> None:
    assert {k.value for k in DeviceKind} == KINDS, "DeviceKind (devices/payloads.py)"
    assert _model_types() == EVENT_TYPES, "the EventModel union (devices/payloads.py)"
    assert set(kinds.EVENT_TYPES_BY_KIND) == KINDS
    for kind, spec in kinds.REGISTRY.items():
        assert kind == spec.kind, f"REGISTRY[{kind!r}] holds kind {spec.kind!r}"
        assert spec.zh and spec.en, f"labels of {kind}"


def test_the_database_accepts_exactly_the_registrys_kinds(db: str) -> None:
    with psycopg.connect(db) as conn:
        stored = {k for (k,) in conn.execute("SELECT kind FROM device_kinds")}
        assert stored == KINDS, "device_kinds (villagetwin.migrate.sync_device_kinds)"
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO devices (device_id, kind) VALUES ('lift-1', 'lift')")


def test_the_simulator_and_the_sample_village_have_every_kind() -> None:
    placed = set(generate(1, "small").devices.kind)
    assert placed == KINDS, "devices placed by mapping/generate.py"
    now = datetime(2026, 11, 30, 4, 2, tzinfo=UTC)
    for kind in kinds.REGISTRY:
        device = SimDevice(f"{kind}-1", DeviceKind(kind), units=("LH00001-0101",))
        generator = EventGenerator([device], seed=1)
        sent = {generator.event_for(device, now).type for _ in range(200)}
        assert sent <= kinds.EVENT_TYPES_BY_KIND[kind], f"devices/simulator.py for {kind}"


def test_the_map_the_dashboard_the_rules_and_the_derived_tables_follow_the_registry() -> None:
    families = {t.split(".")[0] for t in EVENT_TYPES}
    assert families <= set(EVENT_COLOURS), "EVENT_COLOURS (mapping/layers.py)"
    assert set(ALARM_KINDS) == {t for t in EVENT_TYPES if t.endswith(".alarm")}, (
        "ALARM_KINDS (dashboard/queries.py)"
    )
    assert set(PRESENCE_KINDS) == {"access.unlock", "app.checkin"}, "PRESENCE_KINDS"
    params = RuleParams()
    assert set(params.offline_grace_s) == KINDS == set(params.silent_s), "rules/settings.py"
    for event_type in EVENT_TYPES:
        assert kinds.label(event_type) != event_type, f"no label for {event_type}"


class _LiftCall(BaseModel):
    """A toy event model: a lift called to a floor."""

    type: Literal["lift.call"] = "lift.call"
    floor: int


def test_a_toy_kind_needs_only_its_registry_entry(db: str) -> None:
    lift = kinds.Kind(
        "lift",
        "电梯",
        "lift",
        (kinds.EventType(_LiftCall, "电梯呼叫", "lift call", alarm=True),),
        simulator_weight=1.0,
        offline_grace_s=60,
        silent_s=600,
        colour=(10, 20, 30),
    )
    registry = {**kinds.REGISTRY, "lift": lift}
    derived = kinds.derive(registry)
    assert derived.event_types_by_kind["lift"] == {"lift.call", "heartbeat"}
    assert "lift.call" in derived.alarm_types
    assert derived.event_colours["lift"] == (10, 20, 30)
    with psycopg.connect(db, autocommit=True) as conn:
        assert sync_device_kinds(conn, registry) == 1
        assert sync_device_kinds(conn, registry) == 0, "a second sync changes nothing"
        conn.execute("INSERT INTO devices (device_id, kind) VALUES ('lift-1', 'lift')")
        assert conn.execute(
            "SELECT label_zh, label_en FROM device_kinds WHERE kind = 'lift'"
        ).fetchone() == ("电梯", "lift")


def test_a_registry_that_contradicts_itself_is_refused() -> None:
    camera = kinds.REGISTRY[DeviceKind.CAMERA]
    with pytest.raises(ValueError, match="registry key"):
        kinds.derive({"gate": camera})
    twisted = kinds.Kind(
        "lift", "电梯", "lift", (kinds.EventType(_LiftCall, "x", "y"),), 1, 1, 1, (0, 0, 0)
    )
    other = kinds.Kind(
        "door2", "门", "door", (kinds.EventType(_LiftCall, "z", "w"),), 1, 1, 1, (0, 0, 0)
    )
    with pytest.raises(ValueError, match="declared twice"):
        kinds.derive({"lift": twisted, "door2": other})
