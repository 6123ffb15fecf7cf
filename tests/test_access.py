"""Roles and personal data: masking enforced by the database, audited reveals, grids, and
the building inspector's discrepancies."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from streamlit.testing.v1 import AppTest

from dashboard import inspection
from mapping.db import load_village
from mapping.generate import generate

CST = timezone(timedelta(hours=8))


@pytest.fixture
def village_db(db: str) -> str:
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=5, size="small"))
    return db


def as_dashboard(db: str) -> psycopg.Connection:
    return psycopg.connect(make_conninfo(db, user="vt_dashboard"), autocommit=True)


def test_the_dashboard_role_cannot_read_unmasked_personal_data(village_db: str) -> None:
    with as_dashboard(village_db) as conn:
        for sql in (
            "SELECT id_number FROM people LIMIT 1",
            "SELECT * FROM people LIMIT 1",
            "SELECT password_hash FROM devices LIMIT 1",
            "SELECT phone FROM people WHERE person_id = 'P0000001'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        masked = conn.execute(
            "SELECT name, id_number, phone FROM people_masked WHERE id_number IS NOT NULL LIMIT 1"
        ).fetchone()
        assert masked is not None
        name, id_number, phone = masked
        assert id_number[:4] == "4401" and id_number[4:14] == "*" * 10 and len(id_number) == 18
        assert phone[3:7] == "****" and len(phone) == 11
        assert name[1:] == "*" * (len(name) - 1)
        for sql in (
            "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, payload)"
            " VALUES (now(), now(), gen_random_uuid(), 'x', 1, 'x', '{}')",
            "UPDATE buildings SET storeys = 1",
            "DELETE FROM audit_log",
            "INSERT INTO audit_log (username, action, subject, reason) VALUES ('x','x','x','xxxx')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_revealing_a_record_needs_a_user_and_a_reason_and_is_audited(village_db: str) -> None:
    with as_dashboard(village_db) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="no signed-in user"):
            conn.execute("SELECT * FROM reveal_person('P0000001', 'routine check')")
        conn.execute("SELECT set_config('vt.user', 'insp', false)")
        with pytest.raises(psycopg.errors.RaiseException, match="state a reason"):
            conn.execute("SELECT * FROM reveal_person('P0000001', '  ')")
        _, id_number, _ = conn.execute(
            "SELECT * FROM reveal_person('P0000001', '消防检查 fire inspection')"
        ).fetchone()  # type: ignore[misc]
        assert "*" not in id_number and len(id_number) == 18
        audit = conn.execute("SELECT username, action, subject, reason FROM audit_log").fetchall()
    assert audit == [("insp", "reveal_person", "P0000001", "消防检查 fire inspection")]


def test_discrepancies_between_registered_and_observed() -> None:
    registered = pd.DataFrame({"unit_id": ["U1", "U1", "U2"], "credential_ref": ["a", "b", "c"]})
    seen_at = datetime(2026, 11, 20, 9, tzinfo=CST)
    observed = pd.DataFrame(
        {
            "unit_id": ["U1", "U1", "U1", "U3"],
            "credential_ref": ["a", "b", "x", "old"],
            "last_seen": [seen_at] * 4,
        }
    )
    ended = pd.DataFrame(
        {"unit_id": ["U3"], "credential_ref": ["old"], "end_date": [date(2026, 11, 1)]}
    )
    found = {(d.unit_id, d.kind) for d in inspection.discrepancies(registered, observed, ended)}
    assert found == {
        ("U1", inspection.OVERCROWDED),  # 3 seen, 2 registered
        ("U2", inspection.NEVER_SEEN),  # c registered, never seen
        ("U3", inspection.OVERCROWDED),  # nobody registered any more, 1 seen
        ("U3", inspection.AFTER_TENANCY),  # old's card still used after 1 November
    }
    units = pd.DataFrame(
        {"unit_id": ["U1", "U2", "U3"], "floor": [1, 1, 2], "room": ["101", "102", "201"]}
    )
    table = inspection.unit_comparison(units, registered, observed).set_index("unit_id")
    assert table.loc["U1", "registered"] == 2 and table.loc["U1", "seen"] == 3
    assert table.loc["U2", "seen"] == 0


def inspector_script(dsn: str, username: str, role: str, grids: list[str]) -> None:
    from dashboard.app import inspector_page
    from dashboard.auth import User
    from dashboard.settings import DashboardSettings

    inspector_page(DashboardSettings(db_dsn=dsn), User(username, role, tuple(grids)))


def test_the_inspector_page_finds_a_planted_discrepancy_and_records_an_inspection(
    village_db: str,
) -> None:
    with psycopg.connect(village_db) as conn:
        building, grid = conn.execute(
            "SELECT b.building_id, b.grid_code FROM buildings b JOIN units u USING (building_id)"
            " JOIN tenancies t USING (unit_id) WHERE t.end_date IS NULL"
            " ORDER BY b.building_id LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        unit = conn.execute(
            "SELECT t.unit_id FROM tenancies t JOIN units u USING (unit_id)"
            " WHERE u.building_id = %s AND t.end_date IS NULL LIMIT 1",
            (building,),
        ).fetchone()[0]  # type: ignore[index]
        # Five strangers came and went through that unit's door today (possible 群租).
        for n in range(5):
            conn.execute(
                "INSERT INTO unit_daily_credentials VALUES (%s, current_date, %s, now(), now(), 3)",
                (unit, f"cred:stranger{n}"),
            )
        other = conn.execute(
            "SELECT building_id FROM buildings WHERE grid_code <> %s LIMIT 1", (grid,)
        ).fetchone()[0]  # type: ignore[index]
    app = AppTest.from_function(
        inspector_script, args=(village_db, "insp", "inspector", [grid]), default_timeout=60
    )
    app.run()
    app.text_input(key="address-search").input(building).run()
    assert not app.exception, app.exception
    kinds = app.dataframe[0].value
    assert (kinds["unit"] == unit).any() and "overcrowded" in set(kinds["kind"])
    tenants = app.dataframe[2].value
    assert tenants["id_number"].str.contains(r"\*{10}").all()  # masked on screen
    app.text_area[0].input("楼道内发现电动车充电 e-bike charging in the stairwell")
    app.multiselect[0].select("ebike_charging_indoors")
    app.button[-1].click().run()
    assert not app.exception, app.exception
    with psycopg.connect(village_db) as conn:
        saved = conn.execute("SELECT inspector, hazards FROM inspections").fetchall()
    assert saved == [("insp", ["ebike_charging_indoors"])]
    # A building outside the inspector's grids is refused with the reason.
    app.text_input(key="address-search").input(other).run()
    assert "Not allowed" in app.error[0].value
