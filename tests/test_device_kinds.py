"""A device kind lives in several places (see "How to add a device kind" in DEVELOPERS.md);
this test names the place a new kind, or a new event type, was not added to. It reads each
place as the code uses it: the enum, events by kind, the event models, the database's CHECK,
the simulator's rates, the sample village, the map's colours, the dashboard's list of event
types, its alarm kinds and the derived tables' presence kinds."""

from __future__ import annotations

import re
import typing

import psycopg

from dashboard.app import KINDS as DASHBOARD_EVENT_TYPES
from dashboard.queries import ALARM_KINDS
from devices.payloads import EVENT_TYPES_BY_KIND, DeviceKind, EventModel
from devices.simulator import KIND_WEIGHT
from ingest.derive import PRESENCE_KINDS
from mapping.generate import generate
from mapping.layers import EVENT_COLOURS

KINDS = {k.value for k in DeviceKind}
EVENT_TYPES = set().union(*EVENT_TYPES_BY_KIND.values())


def _model_types() -> set[str]:
    """The ``type`` literal of every event model in the contract's union."""
    found = set()
    for model in typing.get_args(EventModel):
        (literal,) = typing.get_args(model.model_fields["type"].annotation)
        found.add(literal)
    return found


def test_every_kind_has_its_event_types_and_every_event_type_a_model() -> None:
    assert {k.value for k in EVENT_TYPES_BY_KIND} == KINDS, "EVENT_TYPES_BY_KIND (payloads.py)"
    assert _model_types() == EVENT_TYPES, "the EventModel union vs EVENT_TYPES_BY_KIND"


def test_the_database_accepts_exactly_the_kinds(db: str) -> None:
    with psycopg.connect(db) as conn:
        checks = [
            definition
            for (definition,) in conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'devices'::regclass AND contype = 'c'"
                " AND pg_get_constraintdef(oid) LIKE '%kind%'"
            )
        ]
    assert len(checks) == 1, checks
    assert set(re.findall(r"'([a-z_]+)'::text", checks[0])) == KINDS, (
        "devices.kind CHECK (a migration)"
    )


def test_the_simulator_and_the_sample_village_have_every_kind() -> None:
    assert {k.value for k in KIND_WEIGHT} == KINDS, "KIND_WEIGHT (devices/simulator.py)"
    placed = set(generate(1, "small").devices.kind)
    assert placed == KINDS, "devices placed by mapping/generate.py"


def test_the_map_and_the_dashboard_know_every_event_type() -> None:
    families = {t.split(".")[0] for t in EVENT_TYPES}
    assert families <= set(EVENT_COLOURS), "EVENT_COLOURS (mapping/layers.py)"
    assert set(DASHBOARD_EVENT_TYPES) == EVENT_TYPES, "KINDS (dashboard/app.py)"
    assert set(ALARM_KINDS) == {t for t in EVENT_TYPES if t.endswith(".alarm")}, (
        "ALARM_KINDS (dashboard/queries.py)"
    )
    assert set(PRESENCE_KINDS) <= EVENT_TYPES, "PRESENCE_KINDS (ingest/derive.py)"
