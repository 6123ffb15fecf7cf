"""Alerts and cases are written only through the checked functions of migration 0110 (issue 14,
item 5; issue 13): hand-written SQL as the dashboard's database role cannot update them or
their history, an inspector of one grid cannot move another grid's alert or case, and the
history names the session's user whatever the client says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from support import SQUARE_FOOTPRINT, dashboard_session

from dashboard import actions
from rules import cases

Json = psycopg.types.json.Jsonb
DEADLINES = Json({"urgent": 2, "high": 8, "normal": 48, "low": 120})


@pytest.fixture
def site(db: str) -> Iterator[dict[str, int | str]]:
    """Grids G1 and G2 with one building, one open smoke alert and one reported case each."""
    ids: dict[str, int | str] = {"db": db}
    with psycopg.connect(db) as conn:
        for grid, building in (("G1", "B1"), ("G2", "B2")):
            conn.execute(
                "INSERT INTO grid_cells VALUES (%s, %s, '王*', %s)",
                (grid, f"网格 {grid}", SQUARE_FOOTPRINT),
            )
            conn.execute(
                "INSERT INTO buildings (building_id, address, grid_code, storeys, height_m,"
                " footprint, lon, lat) VALUES (%s, %s, %s, 5, 15, %s, 113.45, 23.16)",
                (building, f"龙湖村{building}", grid, SQUARE_FOOTPRINT),
            )
            (ids[f"alert_{grid}"],) = conn.execute(
                "INSERT INTO alerts (rule, severity, subject, grid_code, building_id, title,"
                " first_seen, last_seen) VALUES ('smoke_fire', 'critical', %s, %s, %s,"
                " '烟雾 smoke', now(), now()) RETURNING alert_id",
                (f"building:{building}", grid, building),
            ).fetchone()  # type: ignore[misc]
            (ids[f"case_{grid}"],) = conn.execute(
                "INSERT INTO cases (case_no, category, priority, source, grid_code, building_id,"
                " description, reported_at, due_at) VALUES (new_case_no(now()), 'noise', 'low',"
                " 'staff', %s, %s, '噪音 noise', now(), now() + interval '5 days')"
                " RETURNING case_id",
                (grid, building),
            ).fetchone()  # type: ignore[misc]
    yield ids


def refused(conn: psycopg.Connection, query: str, *params: object) -> str:
    """The SQLSTATE with which the database refuses ``query`` (asserts it is refused)."""
    try:
        conn.execute(query, params)
    except psycopg.Error as exc:
        assert exc.sqlstate is not None
        return exc.sqlstate
    raise AssertionError(f"not refused: {query}")


def owner_row(db: str, query: str, *params: object) -> tuple[object, ...]:
    with psycopg.connect(db) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)


def test_the_dashboard_role_cannot_write_alerts_or_cases_directly(
    site: dict[str, int | str],
) -> None:
    db = str(site["db"])
    with dashboard_session(db, f"adm{uuid.uuid4().hex[:6]}", "admin") as dash:
        denied = "42501"  # insufficient_privilege
        for query, params in (
            ("UPDATE alerts SET status = 'resolved' WHERE alert_id = %s", (site["alert_G1"],)),
            ("UPDATE alerts SET assigned_to = 'x' WHERE alert_id = %s", (site["alert_G1"],)),
            ("INSERT INTO alert_history (alert_id, actor, action) VALUES (%s, 'x', 'resolved')",
             (site["alert_G1"],)),
            ("DELETE FROM alerts WHERE alert_id = %s", (site["alert_G1"],)),
            ("UPDATE cases SET status = 'closed' WHERE case_id = %s", (site["case_G1"],)),
            ("UPDATE cases SET assigned_to = 'x' WHERE case_id = %s", (site["case_G1"],)),
            ("INSERT INTO case_history (case_id, actor, action) VALUES (%s, 'x', 'closed')",
             (site["case_G1"],)),
            ("INSERT INTO cases (case_no, category, priority, source, description,"
             " reported_at, due_at) VALUES ('x', 'noise', 'low', 'staff', 'x', now(), now())",
             ()),
            ("SELECT new_case_no(now())", ()),
            ("SELECT nextval('cases_case_id_seq')", ()),
        ):  # fmt: skip
            assert refused(dash, query, *params) == denied, query
    assert owner_row(db, "SELECT status, assigned_to FROM alerts WHERE alert_id = %s",
                     site["alert_G1"]) == ("open", None)  # fmt: skip
    assert owner_row(db, "SELECT status FROM cases WHERE case_id = %s", site["case_G1"]) == (
        "reported",
    )


def test_an_inspector_moves_only_their_own_grids_alerts_and_cases(
    site: dict[str, int | str],
) -> None:
    db = str(site["db"])
    name = f"ins{uuid.uuid4().hex[:6]}"
    with dashboard_session(db, name, "inspector", ["G1"]) as dash:
        for query, params in (
            ("SELECT vt_move_alert(%s, 'acknowledge', '')", (site["alert_G2"],)),
            ("SELECT vt_assign_alert(%s, %s, '')", (site["alert_G2"], name)),
            ("SELECT * FROM vt_case_from_alert(%s, '', '{}', '{}', %s)",
             (site["alert_G2"], DEADLINES)),
            ("SELECT vt_move_case(%s, 'dispatch', %s, '', %s)",
             (site["case_G2"], name, DEADLINES)),
        ):  # fmt: skip
            assert refused(dash, query, *params) == "42501", query
        # ... and through the dashboard's own calls, a clear message
        with pytest.raises(ValueError, match="outside your grids"):
            actions.move_alert(dash, int(site["alert_G2"]), "acknowledge")
        with pytest.raises(cases.CaseError, match="outside your grids"):
            actions.move_case(dash, int(site["case_G2"]), "dispatch", assignee=name)
        # Its own grid: allowed.
        assert actions.move_alert(dash, int(site["alert_G1"]), "acknowledge") == "acknowledged"
        assert actions.move_case(dash, int(site["case_G1"]), "dispatch", assignee=name) == (
            "dispatched"
        )
    assert owner_row(db, "SELECT status FROM alerts WHERE alert_id = %s", site["alert_G2"]) == (
        "open",
    )
    assert owner_row(db, "SELECT status, assigned_to FROM cases WHERE case_id = %s",
                     site["case_G2"]) == ("reported", None)  # fmt: skip
    assert owner_row(db, "SELECT count(*) FROM alert_history WHERE alert_id = %s",
                     site["alert_G2"]) == (0,)  # fmt: skip


def test_the_history_names_the_sessions_user_whatever_the_client_says(
    site: dict[str, int | str],
) -> None:
    db = str(site["db"])
    name = f"ins{uuid.uuid4().hex[:6]}"
    with dashboard_session(db, name, "inspector", ["G1"]) as dash:
        dash.execute("SELECT set_config('vt.user', 'someone-else', false)")
        dash.execute("SELECT vt_assign_alert(%s, %s, 'someone-else 去看看')",
                     (site["alert_G1"], name))  # fmt: skip
        dash.execute("SELECT vt_move_alert(%s, 'resolve', '已处理 done by admin')",
                     (site["alert_G1"],))  # fmt: skip
        (case_id, case_no), = dash.execute(
            "SELECT * FROM vt_case_from_alert(%s, '', '{\"smoke_fire\": \"fire_hazard\"}',"
            " '{\"critical\": \"urgent\"}', %s)",
            (site["alert_G1"], DEADLINES),
        ).fetchall()  # fmt: skip
        dash.execute("SELECT vt_move_case(%s, 'dispatch', %s, '', %s)", (case_id, name, DEADLINES))
        dash.execute("SELECT vt_move_case(%s, 'handle', '', '灭火器已更换 replaced', %s)",
                     (case_id, DEADLINES))  # fmt: skip
    with psycopg.connect(db) as conn:
        alert_actors = conn.execute(
            "SELECT actor, action FROM alert_history WHERE alert_id = %s ORDER BY history_id",
            (site["alert_G1"],),
        ).fetchall()
        case_actors = conn.execute(
            "SELECT actor, action FROM case_history WHERE case_id = %s ORDER BY history_id",
            (case_id,),
        ).fetchall()
        case = conn.execute(
            "SELECT category, priority, source, status, assigned_to, feedback,"
            " due_at - reported_at FROM cases WHERE case_id = %s",
            (case_id,),
        ).fetchone()
        version = conn.execute(
            "SELECT version FROM alerts WHERE alert_id = %s", (site["alert_G1"],)
        ).fetchone()
    assert alert_actors == [(name, "assigned"), (name, "resolved"), (name, "case")]
    assert case_actors == [(name, "reported"), (name, "dispatched"), (name, "handled")]
    assert case is not None and case[:6] == (
        "fire_hazard", "urgent", "alert", "handled", name, "灭火器已更换 replaced",
    )  # fmt: skip
    assert case[6].total_seconds() == 2 * 3600
    assert version == (3,)  # each change is published again over MQTT
    assert case_no


def test_a_worker_handles_only_a_case_dispatched_to_them(site: dict[str, int | str]) -> None:
    db = str(site["db"])
    one, other = f"ins{uuid.uuid4().hex[:6]}", f"ins{uuid.uuid4().hex[:6]}"
    case_id = int(site["case_G1"])
    with (
        dashboard_session(db, one, "inspector", ["G1"]) as first,
        dashboard_session(db, other, "inspector", ["G1"]) as second,
    ):
        with pytest.raises(cases.CaseError, match="neither a dashboard user nor a grid worker"):
            actions.move_case(first, case_id, "dispatch", assignee="nobody-of-that-name")
        actions.move_case(first, case_id, "dispatch", assignee=one)
        with pytest.raises(cases.CaseError, match="not to you"):
            actions.move_case(second, case_id, "handle", note="我来 mine")
        assert actions.move_case(first, case_id, "handle", note="已处置 done") == "handled"


def test_the_databases_moves_are_the_workflows(db: str) -> None:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT status, action, target FROM case_moves").fetchall()
    assert {(s, a): t for s, a, t in rows} == cases.MOVES
