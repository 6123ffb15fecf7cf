"""The case workflow (工单): 上报 → 分拨 → 处置 → 办结, reopened, escalated when overdue; from
resident-app incidents and from alerts; every move through the dashboard's own database role."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from support import SQUARE_FOOTPRINT, dashboard_session

from dashboard import actions, queries
from rules import case_store, cases
from rules.cases import CaseError, Staff
from rules.settings import CaseParams

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_moves_routing_and_deadlines() -> None:
    assert cases.next_status("reported", "dispatch", assignee="wang") == "dispatched"
    assert cases.next_status("handled", "reopen", note="居民反映未修好 not fixed") == "dispatched"
    for status, action, kw, reason in (
        ("reported", "close", {}, "cannot take 'close'"),
        ("reported", "dispatch", {}, "needs a grid worker"),
        ("dispatched", "handle", {}, "needs a note"),
        ("closed", "handle", {"note": "done"}, "allowed: reopen"),
    ):
        with pytest.raises(CaseError, match=reason):
            cases.next_status(status, action, **kw)  # type: ignore[arg-type]
    staff = [Staff("G1", "all", "worker"), Staff("G1", "fire", "worker", ("fire_hazard",)),
             Staff("G1", "boss", "manager"), Staff("G2", "other", "worker")]  # fmt: skip
    assert cases.route("G1", "fire_hazard", staff) == ("fire", "boss")
    assert cases.route("G1", "noise", staff) == ("all", "boss")
    assert cases.route("G3", "noise", staff) == (None, None)
    assert cases.due_at(T0, "urgent", CaseParams().deadline_hours) == T0 + timedelta(hours=2)


@pytest.fixture
def site(db: str) -> dict[str, str]:
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO grid_cells VALUES ('G1', '第一网格', '王*', %s)", (SQUARE_FOOTPRINT,)
        )
        conn.execute(
            "INSERT INTO buildings (building_id, address, grid_code, storeys, height_m,"
            " footprint, lon, lat) VALUES ('B1', '龙湖村一巷1号', 'G1', 5, 15, %s, 113.45, 23.16)",
            (SQUARE_FOOTPRINT,),
        )
        conn.execute("INSERT INTO devices (device_id, kind) VALUES ('app-kaobutong', 'app')")
        case_store.add_staff(conn, "G1", "worker1", "worker")
        case_store.add_staff(conn, "G1", "firefighter", "worker", ("fire_hazard",))
        case_store.add_staff(conn, "G1", "boss", "manager")
    return {"db": db, "dashboard": make_conninfo(db, user="vt_dashboard")}


def incident(db: str, category: str, at: datetime, text: str) -> str:
    incident_id = str(uuid.uuid4())
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO incidents (incident_id, reported_at, device_id, building_id, category,"
            " description, lon, lat, photo_ref) VALUES (%s, %s, 'app-kaobutong', 'B1', %s, %s,"
            " 113.45, 23.16, 'photo/1.jpg')",
            (incident_id, at, category, text),
        )
    return incident_id


def history(db: str, case_id: int) -> list[tuple[str, str, str | None, str | None]]:
    with psycopg.connect(db) as conn:
        return conn.execute(  # type: ignore[return-value]
            "SELECT actor, action, from_status, to_status FROM case_history WHERE case_id = %s"
            " ORDER BY history_id",
            (case_id,),
        ).fetchall()


def test_a_resident_report_goes_through_every_state(site: dict[str, str]) -> None:
    db = site["db"]
    now = datetime.now(UTC)
    incident_id = incident(db, "noise", now, "楼下夜间施工噪音 construction noise at night")
    with psycopg.connect(db) as conn:
        assert case_store.cases_from_incidents(conn, CaseParams()) == 1
        assert case_store.cases_from_incidents(conn, CaseParams()) == 0  # once per incident
        case_id, case_no, status, priority, due, grid, photos = conn.execute(
            "SELECT case_id, case_no, status, priority, due_at, grid_code, photo_refs FROM cases"
            " WHERE incident_id = %s",
            (incident_id,),
        ).fetchone()  # type: ignore[misc]
    local_day = (now + timedelta(hours=8)).strftime("%y%m%d")
    assert re.fullmatch(rf"{local_day}-\d{{3}}", case_no), case_no
    assert (status, priority, grid, photos) == ("reported", "low", "G1", ["photo/1.jpg"])
    assert abs((due - now).total_seconds() - 120 * 3600) < 5

    # Every move as the dashboard's role does it, each person on their own signed-in session;
    # the history names the session's user.
    boss = f"mgr{uuid.uuid4().hex[:6]}"
    with (
        dashboard_session(db, boss, "manager") as dash,
        dashboard_session(db, "worker1", "inspector", ["G1"]) as worker1,
    ):
        worker, _ = cases.route("G1", "noise", case_store.staff(dash))
        assert worker == "worker1"
        assert actions.move_case(dash, case_id, "dispatch", assignee=worker) == "dispatched"
        with pytest.raises(CaseError, match="cannot take 'close'"):
            actions.move_case(dash, case_id, "close")
        with pytest.raises(CaseError, match="needs a note"):
            actions.move_case(worker1, case_id, "handle")
        assert actions.move_case(worker1, case_id, "handle", note="已劝停 stopped") == "handled"
        assert actions.move_case(dash, case_id, "close") == "closed"
        assert actions.move_case(dash, case_id, "reopen", note="又开始了 again") == "dispatched"
        assert actions.move_case(worker1, case_id, "handle", note="已处罚 fined") == "handled"
        assert actions.move_case(dash, case_id, "close") == "closed"
    assert history(db, case_id) == [
        ("rules", "reported", None, "reported"),
        (boss, "dispatched", "reported", "dispatched"),
        ("worker1", "handled", "dispatched", "handled"),
        (boss, "closed", "handled", "closed"),
        (boss, "reopened", "closed", "dispatched"),
        ("worker1", "handled", "dispatched", "handled"),
        (boss, "closed", "handled", "closed"),
    ]
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT feedback, reopened, assigned_to FROM cases WHERE case_id = %s", (case_id,)
        ).fetchone()
    assert row == ("已处罚 fined", 1, "worker1")


def test_an_overdue_case_escalates_to_the_grids_manager_once(site: dict[str, str]) -> None:
    db = site["db"]
    old = datetime.now(UTC) - timedelta(hours=3)  # fire hazard: urgent, 2 h deadline
    incident(db, "fire_hazard", old, "楼道堆放杂物 stairwell blocked with junk")
    fresh = incident(db, "fire_hazard", datetime.now(UTC), "电线私拉乱接 unsafe wiring")
    with psycopg.connect(db) as conn:
        case_store.cases_from_incidents(conn, CaseParams())
        late, _ = (
            conn.execute("SELECT case_id FROM cases ORDER BY reported_at").fetchall()
        )  # fmt: skip
        # The fire specialist gets fire hazards.
        worker, manager = cases.route("G1", "fire_hazard", case_store.staff(conn))
        conn.execute("UPDATE cases SET status = 'dispatched', assigned_to = %s WHERE case_id = %s",
                     (worker, late[0]))  # fmt: skip
        assert case_store.escalate_overdue(conn, datetime.now(UTC), CaseParams()) == [late[0]]
        assert case_store.escalate_overdue(conn, datetime.now(UTC), CaseParams()) == []
        row = conn.execute(
            "SELECT escalated_to, status, assigned_to FROM cases WHERE case_id = %s", (late[0],)
        ).fetchone()
        other = conn.execute(
            "SELECT escalated_to FROM cases WHERE incident_id = %s", (fresh,)
        ).fetchone()
    assert row == ("boss", "dispatched", "firefighter") and manager == "boss"
    assert other == (None,)
    assert history(db, late[0])[-1] == ("rules", "escalated", "dispatched", "dispatched")


def test_an_alert_becomes_a_case_and_alerts_move_with_notes(site: dict[str, str]) -> None:
    db = site["db"]
    with psycopg.connect(db) as conn:
        (alert_id,) = conn.execute(
            "INSERT INTO alerts (rule, severity, subject, grid_code, building_id, title,"
            " first_seen, last_seen) VALUES ('smoke_fire', 'critical', 'building:B1', 'G1',"
            " 'B1', '烟雾 smoke · B1', now(), now()) RETURNING alert_id"
        ).fetchone()  # type: ignore[misc]
    with dashboard_session(site["db"], f"mgr{uuid.uuid4().hex[:6]}", "manager") as dash:
        assert actions.move_alert(dash, alert_id, "acknowledge") == "acknowledged"
        with pytest.raises(ValueError, match="write a note"):
            actions.move_alert(dash, alert_id, "resolve")
        case_id, case_no = actions.case_from_alert(dash, alert_id, "请立即核实")
        assert actions.case_from_alert(dash, alert_id) == (case_id, case_no)
        actions.move_case(dash, case_id, "dispatch", assignee="firefighter")
        queue = queries.case_queue(dash, "firefighter")
        assert queue.case_no.tolist() == [case_no]
        assert actions.move_alert(dash, alert_id, "resolve", "已处置 handled") == "resolved"
        with pytest.raises(ValueError, match="is not"):
            actions.move_alert(dash, alert_id, "false_alarm", "误报 false")
    with psycopg.connect(db) as conn:
        case = conn.execute(
            "SELECT category, priority, source, building_id FROM cases WHERE case_id = %s",
            (case_id,),
        ).fetchone()
        actions_seen = [r[0] for r in conn.execute(
            "SELECT action FROM alert_history WHERE alert_id = %s ORDER BY history_id",
            (alert_id,),
        )]  # fmt: skip
    assert case == ("fire_hazard", "urgent", "alert", "B1")
    assert actions_seen == ["acknowledged", "case", "resolved"]


def test_incident_ids_read_as_text(site: dict[str, str]) -> None:
    incident_id = incident(site["db"], "sanitation", datetime.now(UTC), "垃圾未清运 rubbish")
    with dashboard_session(site["db"], f"mgr{uuid.uuid4().hex[:6]}", "manager") as dash:
        frame = queries.open_incidents(dash)
    assert frame.incident_id.tolist() == [incident_id]
