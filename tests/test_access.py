"""Roles and personal data: masking enforced by the database, audited reveals, grids, and
the building inspector's discrepancies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from streamlit.testing.v1 import AppTest
from support import DASHBOARD_APP, ROOT, wait_until

from dashboard import actions, inspection
from dashboard.auth import password_problems
from dashboard.safe import WORD_JOINER, csv_bytes, md
from mapping import layers
from mapping.db import load_village
from mapping.generate import generate

CST = timezone(timedelta(hours=8))


PASSWORD = "correct horse battery staple"
INSIDE = "LH-G01"  # the inspector's grid


def add_user(db: str, username: str, role: str, grids: list[str] | None = None) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO app_users (username, role, grids) VALUES (%s, %s, %s)",
            (username, role, grids or []),
        )
        conn.execute("SELECT vt_set_password(%s, %s)", (username, PASSWORD))


@pytest.fixture
def village_db(db: str) -> str:
    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=5, size="small"))
        # Traffic in every building: an event, an hourly count, a credential seen at a unit.
        conn.execute(
            "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, building_id,"
            " unit_id, credential_ref, payload)"
            " SELECT now(), now(), gen_random_uuid(), 'acc-' || lower(b.building_id), 1,"
            " 'access.unlock', b.building_id, min(u.unit_id), 'cred:x', '{}'"
            " FROM buildings b JOIN units u USING (building_id) GROUP BY b.building_id"
        )
        conn.execute(
            "INSERT INTO building_hourly SELECT building_id, date_trunc('hour', now()),"
            " 'access.unlock', 1 FROM buildings"
        )
        conn.execute(
            "INSERT INTO unit_daily_credentials SELECT unit_id, current_date, 'cred:x', now(),"
            " now(), 1 FROM units"
        )
        conn.execute(
            "INSERT INTO inspections (building_id, inspector, inspected_on, findings)"
            " SELECT building_id, 'someone', current_date, 'ok' FROM buildings"
        )
        conn.execute(
            "INSERT INTO incidents (incident_id, reported_at, device_id, building_id, category,"
            " description) SELECT gen_random_uuid(), now(), 'app-1', building_id, 'other', 'x'"
            " FROM buildings"
        )
    add_user(db, "insp", "inspector", [INSIDE])
    add_user(db, "admin", "admin")
    add_user(db, "manager", "manager")
    return db


def as_dashboard(db: str) -> psycopg.Connection:
    return psycopg.connect(make_conninfo(db, user="vt_dashboard"), autocommit=True)


def session(db: str, username: str, idle: str = "30 minutes") -> psycopg.Connection:
    """A connection as the dashboard's role, signed in through the database."""
    conn = as_dashboard(db)
    token, refusal = conn.execute(
        "SELECT * FROM vt_sign_in(%s, %s, '10.0.0.1', %s::interval)", (username, PASSWORD, idle)
    ).fetchone()  # type: ignore[misc]
    assert token, refusal
    conn.execute("SELECT set_config('vt.session', %s, false)", (token,))
    return conn


def one(conn: psycopg.Connection, query: str, *params: object) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def owner_count(db: str, query: str, *params: object) -> int:
    with psycopg.connect(db) as conn:
        return int(one(conn, query, *params))


def test_the_dashboard_role_cannot_read_unmasked_personal_data(village_db: str) -> None:
    with session(village_db, "admin") as conn:
        for sql in (
            "SELECT id_number FROM people LIMIT 1",
            "SELECT * FROM people LIMIT 1",
            "SELECT name FROM people LIMIT 1",
            "SELECT password_hash FROM devices LIMIT 1",
            "SELECT phone FROM people WHERE person_id = 'P0000001'",
            "SELECT landlord FROM buildings LIMIT 1",
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
            "UPDATE audit_log SET reason = 'nothing to see'",
            "TRUNCATE audit_log",
            "INSERT INTO audit_log (username, action, subject, reason) VALUES ('x','x','x','xxxx')",
            "DELETE FROM reveal_requests",
            "UPDATE access_settings SET reveals_per_hour = 100000",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


# --- item 2: the database, not the client, knows who the session is ---------------------------


def test_a_session_is_what_the_database_signed_in_not_what_the_client_says(
    village_db: str,
) -> None:
    with as_dashboard(village_db) as conn:
        for attempt in (
            "SELECT count(*) FROM buildings",
            "SELECT count(*) FROM events",
            "SELECT * FROM request_reveal('P0000001', 'fire_safety', 'routine fire check')",
        ):
            with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="no signed"):
                conn.execute(attempt)
        conn.execute("SELECT set_config('vt.user', 'admin', false)")  # the old way: means nothing
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="no signed"):
            conn.execute("SELECT count(*) FROM buildings")
        conn.execute("SELECT set_config('vt.session', repeat('ab', 32), false)")  # a guess
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="unknown"):
            conn.execute("SELECT count(*) FROM buildings")
        for secret in (
            "SELECT * FROM app_sessions",
            "SELECT password_hash FROM app_users",
            "SELECT * FROM app_users",
            "SELECT * FROM sign_in_attempts",
            "SELECT * FROM access_settings",
            "SELECT vt_set_password('admin', 'a much longer password')",
            "SELECT * FROM vt_apply_retention(1, 1, 1, 0)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(secret)
    with session(village_db, "insp") as conn:
        assert one(conn, "SELECT vt_user()") == "insp"
        conn.execute("SELECT vt_sign_out()")
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="ended"):
            conn.execute("SELECT count(*) FROM buildings")


# --- item 1: grid scope on every place-bound table -------------------------------------------

SCOPED = {
    # table or view: the expression giving each row's grid
    "buildings": "grid_code",
    "units": "(SELECT grid_code FROM buildings b WHERE b.building_id = x.building_id)",
    "tenancies": "(SELECT b.grid_code FROM units u JOIN buildings b USING (building_id)"
    " WHERE u.unit_id = x.unit_id)",
    "events": "(SELECT grid_code FROM buildings b WHERE b.building_id = x.building_id)",
    "building_hourly": "(SELECT grid_code FROM buildings b WHERE b.building_id = x.building_id)",
    "unit_daily_credentials": "(SELECT b.grid_code FROM units u JOIN buildings b"
    " USING (building_id) WHERE u.unit_id = x.unit_id)",
    "devices": "grid_code",
    "inspections": "(SELECT grid_code FROM buildings b WHERE b.building_id = x.building_id)",
    "incidents": "(SELECT grid_code FROM buildings b WHERE b.building_id = x.building_id)",
    "organisations": "(SELECT grid_code FROM buildings b WHERE b.building_id = x.building_id)",
    "objects": "(SELECT grid_code FROM buildings b WHERE b.building_id = x.building_id)",
    "grid_cells": "grid_code",
}


def test_an_inspector_sees_only_their_grids_in_every_table_by_hand_written_sql(
    village_db: str,
) -> None:
    with session(village_db, "insp") as insp, session(village_db, "admin") as admin:
        for table, grid in SCOPED.items():
            # The owner's view of which rows lie outside the inspector's grid...
            outside = owner_count(
                village_db, f"SELECT count(*) FROM {table} x WHERE {grid} IS DISTINCT FROM %s",
                INSIDE,
            )  # fmt: skip
            inside = owner_count(
                village_db, f"SELECT count(*) FROM {table} x WHERE {grid} = %s", INSIDE
            )
            assert outside > 0 and inside > 0, table
            # ... none reaches the inspector, whatever the query asks for.
            assert one(insp, f"SELECT count(*) FROM {table}") == inside, table
            assert one(admin, f"SELECT count(*) FROM {table}") == inside + outside, table
        other = owner_count(
            village_db, "SELECT count(*) FROM people_masked p WHERE NOT EXISTS (SELECT 1"
            " FROM tenancies t JOIN units u USING (unit_id) JOIN buildings b USING (building_id)"
            " WHERE t.person_id = p.person_id AND b.grid_code = %s) AND NOT EXISTS (SELECT 1"
            " FROM buildings b WHERE b.landlord_id = p.person_id AND b.grid_code = %s)",
            INSIDE, INSIDE,
        )  # fmt: skip
        total = owner_count(village_db, "SELECT count(*) FROM people")
        assert one(insp, "SELECT count(*) FROM people_masked") == total - other > 0
        assert one(admin, "SELECT count(*) FROM people_masked") == total
        building = owner_count(
            village_db, "SELECT count(*) FROM buildings WHERE grid_code <> %s", INSIDE
        )
        assert building > 0
        foreign = one(admin, "SELECT min(building_id) FROM buildings WHERE grid_code <> %s", INSIDE)
        for sql in (
            "SELECT count(*) FROM events WHERE building_id = %s",
            "SELECT count(*) FROM units WHERE building_id = %s",
            "SELECT count(*) FROM inspections WHERE building_id = %s",
            "SELECT count(*) FROM building_hourly WHERE building_id = %s",
        ):
            assert one(insp, sql, foreign) == 0, sql
        # Village-wide totals, the audit log and dead letters of other grids' devices: none.
        assert one(insp, "SELECT count(*) FROM village_hourly") == 0
        assert one(insp, "SELECT count(*) FROM audit_log") == 0
        # Past the view to the hypertable, or to its chunks (which TimescaleDB gives the
        # hypertable's grants but not its row-level security), or on plain PostgreSQL to its
        # partitions (tests/test_access_plain.py): refused. Both inherit from events.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            insp.execute("SELECT count(*) FROM public.events")
        chunk = one(
            admin,
            "SELECT inhrelid::regclass::text FROM pg_inherits"
            " WHERE inhparent = 'public.events'::regclass LIMIT 1",
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            insp.execute(f"SELECT count(*) FROM {chunk}")
        # A query whose condition fails on a row of another grid (a leak through errors) does
        # not fail: the security barrier filters the rows before the caller's condition.
        seen = one(
            insp,
            "SELECT count(*) FROM events"
            " WHERE (CASE WHEN building_id = %s THEN 1 / (seq - seq)::int ELSE 1 END) = 1",
            foreign,
        )
        assert seen == one(insp, "SELECT count(*) FROM events") > 0


# --- item 3: reveals --------------------------------------------------------------------------


def _tenant(db: str, inside: bool) -> str:
    with psycopg.connect(db) as conn:
        return str(
            one(
                conn,
                "SELECT min(t.person_id) FROM tenancies t JOIN units u USING (unit_id)"
                " JOIN buildings b USING (building_id) WHERE (b.grid_code = %s) = %s",
                INSIDE,
                inside,
            )
        )


def test_a_reveal_is_one_person_in_ones_grids_with_a_real_reason_limited_and_audited_first(
    village_db: str,
) -> None:
    mine, theirs = _tenant(village_db, True), _tenant(village_db, False)
    with psycopg.connect(village_db) as conn:
        conn.execute("UPDATE access_settings SET reveals_per_hour = 3")
    reason = "核对租户身份 tenant identity check"
    with session(village_db, "insp") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="outside your grids"):
            conn.execute("SELECT request_reveal(%s, 'fire_safety', %s)", (theirs, reason))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="category bulk is not"):
            conn.execute("SELECT request_reveal(%s, 'bulk', %s)", (mine, reason))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least 10 characters"):
            conn.execute("SELECT request_reveal(%s, 'fire_safety', 'bulk')", (mine,))
        # 500 people in one statement: one reveal is one person, and the limit stops the rest.
        with pytest.raises(
            psycopg.errors.ProgramLimitExceeded, match="limit of 3 reveals per hour"
        ):
            conn.execute(
                "SELECT request_reveal(person_id, 'fire_safety', %s) FROM people_masked LIMIT 500",
                (reason,),
            )
        # Requesting and reading in one transaction (then rolling the audit row back): refused.
        with (
            pytest.raises(psycopg.errors.InvalidTransactionState, match="not committed"),
            conn.transaction(),
        ):
            ticket = one(conn, "SELECT request_reveal(%s, 'fire_safety', %s)", mine, reason)
            conn.execute("SELECT * FROM reveal_person(%s)", (ticket,))
        name, id_number, _ = actions.reveal_person(conn, mine, "fire_safety", reason) or (
            "",
            "",
            "",
        )
        assert "*" not in id_number and len(id_number) == 18 and "*" not in name
        for _ in range(2):
            assert actions.reveal_person(conn, mine, "fire_safety", reason) is not None
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="limit of 3"):
            actions.reveal_person(conn, mine, "fire_safety", reason)
    with psycopg.connect(village_db) as conn:
        audit = conn.execute(
            "SELECT username, action, subject, category, reason FROM audit_log"
            " WHERE action = 'reveal_person' ORDER BY audit_id"
        ).fetchall()
    # The statement of 500 and the rolled-back transaction left nothing; the three reveals are.
    assert audit == [("insp", "reveal_person", mine, "fire_safety", reason)] * 3
    with session(village_db, "admin") as admin:
        assert one(admin, "SELECT count(*) FROM audit_log WHERE action = 'reveal_person'") == 3
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute("DELETE FROM audit_log")


# --- item 4: landlords --------------------------------------------------------------------------


def test_landlords_are_people_shown_masked_and_revealed_through_the_same_path(
    village_db: str,
) -> None:
    with psycopg.connect(village_db) as conn:
        assert one(conn, "SELECT count(*) FROM buildings WHERE landlord IS NOT NULL") == 0
        building, landlord, name = conn.execute(
            "SELECT b.building_id, b.landlord_id, p.name FROM buildings b"
            " JOIN people p ON p.person_id = b.landlord_id WHERE b.grid_code = %s LIMIT 1",
            (INSIDE,),
        ).fetchone()  # type: ignore[misc]
    with session(village_db, "insp") as conn:
        masked = one(
            conn,
            "SELECT p.name FROM buildings b JOIN people_masked p ON p.person_id = b.landlord_id"
            " WHERE b.building_id = %s",
            building,
        )
        assert masked == name[0] + "*" * (len(name) - 1)
        revealed = actions.reveal_person(
            conn, landlord, "rental_registration", "业主登记核对 check"
        )
        assert revealed is not None and revealed[0] == name
    with psycopg.connect(village_db) as conn:
        assert one(conn, "SELECT subject FROM audit_log WHERE action = 'reveal_person'") == landlord


# --- item 5: least privilege ---------------------------------------------------------------------


def test_writes_go_through_functions_that_check_the_session(village_db: str) -> None:
    with session(village_db, "insp") as conn:
        mine = one(conn, "SELECT min(building_id) FROM buildings")
        with psycopg.connect(village_db) as owner:
            theirs = one(owner, "SELECT min(building_id) FROM buildings WHERE grid_code <> %s",
                         INSIDE)  # fmt: skip
            incident = one(owner, "SELECT incident_id FROM incidents WHERE building_id = %s",
                           theirs)  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO inspections (building_id, inspector, inspected_on, findings)"
                " VALUES (%s, 'someone-else', current_date, 'forged')",
                (mine,),
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="outside your grids"):
            actions.record_inspection(conn, theirs, "Asia/Shanghai", "forged", [], [], None)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE incidents SET status = 'resolved'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="outside your grids"):
            actions.move_incident(conn, str(incident), "resolved", None)
        actions.record_inspection(conn, mine, "Asia/Shanghai", "楼道堆物 clutter", [], [], None)
    with psycopg.connect(village_db) as conn:
        assert conn.execute(
            "SELECT building_id, inspector FROM inspections WHERE findings <> 'ok'"
        ).fetchall() == [(mine, "insp")]
        assert one(conn, "SELECT count(*) FROM incidents WHERE status = 'resolved'") == 0


# --- item 6: sign-in ---------------------------------------------------------------------------


def _sign_in(conn: psycopg.Connection, user: str, password: str, address: str) -> tuple[Any, Any]:
    row = conn.execute(
        "SELECT * FROM vt_sign_in(%s, %s, %s, '30 minutes')", (user, password, address)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_forty_wrong_passwords_lock_the_account_until_an_admin_lifts_it(village_db: str) -> None:
    with as_dashboard(village_db) as conn:
        outcomes = [_sign_in(conn, "insp", f"guess {n}", f"10.1.0.{n}")[1] for n in range(40)]
        assert outcomes[:4] == ["wrong_credentials"] * 4
        assert set(outcomes[5:]) == {"account_locked"}
        token, refusal = _sign_in(conn, "insp", PASSWORD, "10.1.0.99")
        assert token is None and refusal == "account_locked"
    with psycopg.connect(village_db) as conn:
        failed = one(conn, "SELECT count(*) FROM audit_log WHERE action = 'sign_in_failed'")
        assert failed == 41
        assert one(conn, "SELECT count(*) FROM audit_log WHERE action = 'account_locked'") == 1
    env = {**os.environ, "VT_DB_DSN": village_db}
    done = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "users", "unlock", "insp"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with as_dashboard(village_db) as conn:
        token, refusal = _sign_in(conn, "insp", PASSWORD, "10.1.0.99")
        assert token and refusal is None


def test_many_failures_from_one_address_block_it(village_db: str) -> None:
    with psycopg.connect(village_db) as conn:
        conn.execute("UPDATE access_settings SET address_failures_max = 6")
    with as_dashboard(village_db) as conn:
        for n in range(6):  # a different account each time: no account lockout
            assert _sign_in(conn, f"user{n}", "guess", "10.2.0.1")[1] == "wrong_credentials"
        assert _sign_in(conn, "admin", PASSWORD, "10.2.0.1") == (None, "address_blocked")
        token, _ = _sign_in(conn, "admin", PASSWORD, "10.2.0.2")  # another address: fine
        assert token


@pytest.mark.parametrize(
    ("password", "why"),
    [("a", "at least 12 characters"), ("password123", "at least 12"),
     ("qwertyuiop123", "common password")],
)  # fmt: skip
def test_weak_passwords_are_refused_by_users_add(village_db: str, password: str, why: str) -> None:
    assert why in ", ".join(password_problems(password, "weak", 12))
    env = {**os.environ, "VT_DB_DSN": village_db}
    done = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "users", "add", "weak", "--role", "admin",
         "--password", password],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and why in done.stderr, done.stderr
    assert owner_count(village_db, "SELECT count(*) FROM app_users WHERE username = 'weak'") == 0
    with psycopg.connect(village_db) as conn, pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT vt_set_password('admin', 'a')")  # the database checks length too


def test_sign_in_through_the_dashboard_locks_after_repeated_failures(
    village_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VT_DB_DSN", village_db)
    app = AppTest.from_file(str(DASHBOARD_APP), default_timeout=60)
    app.run()
    for n in range(6):
        app.text_input[0].input("admin")
        app.text_input[1].input(f"wrong {n}")
        app.button[0].click().run()
    assert "Account locked" in app.error[0].value
    app.text_input[0].input("admin")
    app.text_input[1].input(PASSWORD)
    app.button[0].click().run()
    assert "Account locked" in app.error[0].value and not app.metric


# --- item 7: a timed-out session gets nothing -------------------------------------------------


def test_a_timed_out_session_gets_nothing_from_the_database(village_db: str) -> None:
    with session(village_db, "admin", idle="1 second") as conn:
        assert one(conn, "SELECT count(*) FROM buildings") > 0
        assert wait_until(lambda: _refused(conn), 10)
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="timed out"):
            conn.execute("SELECT vt_session_touch()")  # activity cannot revive it


def _refused(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT count(*) FROM events")
    except psycopg.errors.InvalidAuthorizationSpecification as exc:
        return "timed out" in str(exc)
    return False


def test_a_client_cannot_stretch_the_databases_idle_limit(village_db: str) -> None:
    with psycopg.connect(village_db) as conn:
        conn.execute("UPDATE access_settings SET session_idle_max = '1 second'")
    with session(village_db, "admin", idle="10 days") as conn:
        assert wait_until(lambda: _refused(conn), 10)


# --- item 8: exports and rendering -------------------------------------------------------------


def test_csv_exports_neutralise_formulas_from_imported_data() -> None:
    frame = pd.DataFrame(
        {
            "address": ['=HYPERLINK("https://example.invalid","x")', "+1", "-2", "@SUM(A1)",
                        "\tx", "\rx", "plain", "a=b"],
            "n": [1, 2, 3, 4, 5, 6, 7, 8],
        }
    )  # fmt: skip
    text = csv_bytes(frame).decode("utf-8-sig")
    cells = [line.split(",", 1)[0] for line in text.splitlines()[1:]]
    assert cells[0].startswith("\"'=HYPERLINK") and cells[1:4] == ["'+1", "'-2", "'@SUM(A1)"]
    assert "plain" in cells and "a=b" in cells
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)


def test_markdown_escaping_keeps_links_and_html_as_text() -> None:
    escaped = md("[x](https://example.invalid) <img src=x onerror=alert(1)> **b** $x$")
    # Every character Markdown could read as syntax is escaped: no link, tag, emphasis, math.
    assert re.search(r"(?<!\\)[\[\]()<>*$]", escaped) is None
    assert (
        escaped.replace("\\", "").replace(WORD_JOINER, "")
        == "[x](https://example.invalid) <img src=x onerror=alert(1)> **b** $x$"
    )
    assert "https" + WORD_JOINER + "\\:" in escaped  # and no bare-URL autolink
    assert layers.TOOLTIP.get("text") == "{tip}" and "html" not in layers.TOOLTIP


# --- item 10: the audit page ------------------------------------------------------------------


def audit_script(dsn: str, username: str, password: str) -> None:
    import streamlit as st

    from dashboard.auth import User
    from dashboard.pages.audit import render as audit_page
    from dashboard.session import start_session
    from dashboard.settings import DashboardSettings

    settings = DashboardSettings(db_dsn=dsn)
    if "user" not in st.session_state:
        start_session(settings, username, password)
    user = st.session_state["user"]
    assert isinstance(user, User), user
    audit_page(settings, user)


def test_the_audit_page_filters_the_full_log_for_admins_only(village_db: str) -> None:
    mine = _tenant(village_db, True)
    with session(village_db, "insp") as conn:
        actions.reveal_person(conn, mine, "care_visit", "独居老人走访 care visit")
    with as_dashboard(village_db) as conn:
        _sign_in(conn, "[x](https://example.invalid)", "guess", "10.3.0.1")
    app = AppTest.from_function(audit_script, args=(village_db, "admin", PASSWORD))
    app.run()
    assert not app.exception, app.exception
    log = app.dataframe[0].value
    assert {"查看身份 reveal a person", "登录 sign in", "登录失败 failed sign-in"} <= set(
        log["操作 Action"]
    )
    # The attempted username stays text in the table (a data frame never renders Markdown).
    assert "[x](https://example.invalid)" in set(log["用户 User"])
    app.text_input(key="audit-person").input(mine).run()
    assert list(app.dataframe[0].value["操作 Action"]) == ["查看身份 reveal a person"]
    app.text_input(key="audit-person").input("").run()
    app.text_input(key="audit-user").input("insp").run()
    assert set(app.dataframe[0].value["用户 User"]) == {"insp"}
    assert app.get("download_button")  # the export
    refused = AppTest.from_function(audit_script, args=(village_db, "insp", PASSWORD))
    refused.run()
    assert "Admins only" in refused.error[0].value and not refused.dataframe


def test_an_admin_sees_and_lifts_lockouts_on_the_audit_page(village_db: str) -> None:
    with psycopg.connect(village_db) as conn:
        conn.execute("UPDATE access_settings SET address_failures_max = 6")
    with as_dashboard(village_db) as conn:
        for n in range(6):  # the account locks after 5; the address blocks after 6
            _sign_in(conn, "insp", f"guess {n}", "10.4.0.1")
        assert _sign_in(conn, "insp", PASSWORD, "10.4.0.2") == (None, "account_locked")
    # Only an admin sees or lifts lockouts, whatever the SQL.
    with session(village_db, "manager") as conn:
        for query in ("SELECT * FROM vt_lockouts()", "SELECT vt_lift_lockout('insp', NULL)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(query)
        for table in ("app_users", "sign_in_blocks", "sign_in_attempts"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")

    app = AppTest.from_function(
        audit_script, args=(village_db, "admin", PASSWORD), default_timeout=30
    )
    app.run()
    assert not app.exception, app.exception
    shown = app.dataframe[1].value  # after the log
    assert sorted(zip(shown["类型 Kind"], shown["账户或地址 Account or address"], strict=True)) == [
        ("地址 address", "10.4.0.1"),
        ("账户 account", "insp"),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", t) for t in shown["锁定于 Locked since"])
    account = shown["类型 Kind"].tolist().index("账户 account")
    assert shown["解除于 Until"].iloc[account] == "管理员解除 until an admin lifts it"
    app.selectbox(key="lockout-pick").set_value("account\tinsp").run()
    app.button(key="lockout-lift").click().run()
    assert not app.exception, app.exception
    assert "已解除 Lifted" in app.success[0].value and "insp" in app.success[0].value
    left = app.dataframe[1].value
    assert left["账户或地址 Account or address"].tolist() == ["10.4.0.1"]

    with as_dashboard(village_db) as conn:  # the account is free again (the address is not)
        assert _sign_in(conn, "insp", PASSWORD, "10.4.0.1") == (None, "address_blocked")
        token, refusal = _sign_in(conn, "insp", PASSWORD, "10.4.0.3")
        assert token and refusal is None
    with psycopg.connect(village_db) as conn:
        lifted = conn.execute(
            "SELECT username, subject FROM audit_log WHERE action = 'lockout_lifted'"
        ).fetchall()
    assert lifted == [("admin", "insp")]
    with (
        session(village_db, "admin") as conn,
        pytest.raises(psycopg.errors.InvalidParameterValue, match="not locked out"),
    ):
        actions.lift_lockout(conn, "account", "insp")  # nothing to lift: said, not audited


# --- item 11: retention -------------------------------------------------------------------------


def test_retention_keeps_reveals_longer_and_anonymises_long_ended_tenancies(
    village_db: str,
) -> None:
    with psycopg.connect(village_db) as conn:
        conn.execute(
            "INSERT INTO audit_log (at, username, action, subject, reason) VALUES"
            " (now() - interval '400 days', 'a', 'reveal_person', 'P1', 'kept: reveal'),"
            " (now() - interval '400 days', 'a', 'sign_in', 'a', 'old sign-in'),"
            " (now() - interval '2000 days', 'a', 'reveal_person', 'P1', 'too old reveal'),"
            " (now() - interval '10 days', 'a', 'sign_in', 'a', 'recent sign-in')"
        )
        gone, stays = conn.execute(
            "SELECT min(person_id), max(person_id) FROM tenancies WHERE person_id IN ("
            " SELECT person_id FROM tenancies GROUP BY 1 HAVING count(*) = 1) LIMIT 2"
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            "UPDATE tenancies SET end_date = current_date - 400, start_date = current_date - 900"
            " WHERE person_id = %s",
            (gone,),
        )
        conn.execute(
            "UPDATE tenancies SET end_date = current_date - 10, start_date = current_date - 900"
            " WHERE person_id = %s",
            (stays,),
        )
    env = {**os.environ, "VT_DB_DSN": village_db, "VT_ACCESS__TENANCY_ANONYMISE_DAYS": "180"}
    done = subprocess.run(
        [sys.executable, "-m", "villagetwin.cli", "maintain"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "people anonymised: " in done.stderr
    with psycopg.connect(village_db) as conn:
        reasons = {r[0] for r in conn.execute("SELECT reason FROM audit_log")}
        assert {"kept: reveal", "recent sign-in"} <= reasons
        assert not {"old sign-in", "too old reveal"} & reasons
        anonymised = conn.execute(
            "SELECT name, id_number, phone, credential_ref, name_masked FROM people"
            " WHERE person_id = %s",
            (gone,),
        ).fetchone()
        assert anonymised == ("已匿名", None, None, None, "已**")
        kept = one(conn, "SELECT id_number FROM people WHERE person_id = %s", stays)
        assert kept is not None
        assert one(conn, "SELECT count(*) FROM tenancies WHERE person_id = %s", gone) == 1


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
    issues = inspection.discrepancies(registered, observed, ended, reader_days=7)
    found = {(d.unit_id, d.kind) for d in issues}
    assert found == {
        ("U1", inspection.OVERCROWDED),  # 3 seen, 2 registered
        ("U2", inspection.NEVER_SEEN),  # c registered, never seen
        ("U3", inspection.UNREGISTERED),  # nobody registered any more, 1 seen
        ("U3", inspection.AFTER_TENANCY),  # old's card still used after 1 November
    }
    units = pd.DataFrame(
        {"unit_id": ["U1", "U2", "U3"], "floor": [1, 1, 2], "room": ["101", "102", "201"]}
    )
    table = inspection.unit_comparison(units, registered, observed).set_index("unit_id")
    assert table.loc["U1", "registered"] == 2 and table.loc["U1", "seen"] == 3
    assert table.loc["U2", "seen"] == 0


def inspector_script(dsn: str, username: str, password: str) -> None:
    import streamlit as st

    from dashboard.auth import User
    from dashboard.pages.inspector import render as inspector_page
    from dashboard.session import start_session
    from dashboard.settings import DashboardSettings

    settings = DashboardSettings(db_dsn=dsn)
    if "user" not in st.session_state:
        start_session(settings, username, password)
    user = st.session_state["user"]
    assert isinstance(user, User), user
    inspector_page(settings, user)


def test_the_inspector_page_finds_a_planted_discrepancy_and_records_an_inspection(
    village_db: str,
) -> None:
    with psycopg.connect(village_db) as conn:
        building, grid = conn.execute(
            "SELECT b.building_id, b.grid_code FROM buildings b JOIN units u USING (building_id)"
            " JOIN tenancies t USING (unit_id) WHERE t.end_date IS NULL AND b.grid_code = %s"
            " ORDER BY b.building_id LIMIT 1",
            (INSIDE,),
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
        inspector_script, args=(village_db, "insp", PASSWORD), default_timeout=60
    )
    app.run()
    app.text_input(key="address-search").input(building).run()
    assert not app.exception, app.exception
    # The unit once, its discrepancy under it, named in words, not as a code.
    said = [m.value for m in app.markdown if unit.replace("-", "\\-") in m.value]
    assert len(said) == 1 and "人数超过登记 More people than registered" in said[0], said
    assert "overcrowded" not in said[0]
    units = app.dataframe[0].value
    assert (units["单元 Unit"] == unit).any()
    tenants = app.dataframe[1].value
    assert tenants["身份证号 ID number"].str.contains(r"\*{10}").all()  # masked on screen
    app.text_area[0].input("楼道内发现电动车充电 e-bike charging in the stairwell")
    app.multiselect[0].select("ebike_charging_indoors")
    app.button[-1].click().run()
    assert not app.exception, app.exception
    with psycopg.connect(village_db) as conn:
        saved = conn.execute(
            "SELECT inspector, hazards FROM inspections WHERE inspector <> 'someone'"
        ).fetchall()
    assert saved == [("insp", ["ebike_charging_indoors"])]
    # A building outside the inspector's grids is refused with the reason.
    app.text_input(key="address-search").input(other).run()
    assert "Not allowed" in app.error[0].value
