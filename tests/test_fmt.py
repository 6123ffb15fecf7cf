"""The dashboard's pure pieces of issue 15: the translation table and local times
(dashboard/fmt.py), the sign-in cookie's one-time codes and attributes (dashboard/cookie.py),
and the pages' declarations (dashboard/nav.py, dashboard/app.PAGES)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pandas as pd

from dashboard import app, cookie, fmt
from dashboard.auth import ROLES
from devices import kinds
from ingest.validate import Reason


def test_times_are_village_local_minutes_and_dates_local_dates() -> None:
    at = datetime(2026, 11, 29, 20, 2, 13, 512_000, tzinfo=UTC)
    assert fmt.minutes(at, "Asia/Shanghai") == "2026-11-30 04:02"
    assert fmt.minutes(pd.Timestamp("2026-11-29 20:02:13"), "Asia/Shanghai") == "2026-11-30 04:02"
    assert fmt.minutes(at, "Europe/London") == "2026-11-29 20:02"
    assert fmt.minutes(None, "Asia/Shanghai") == fmt.minutes(pd.NaT, "Asia/Shanghai") == "—"
    assert fmt.day(at, "Asia/Shanghai") == "2026-11-30"
    assert fmt.day(date(2026, 11, 30), "Asia/Shanghai") == "2026-11-30"
    assert fmt.local_today(at, "Asia/Shanghai") == date(2026, 11, 30)
    assert fmt.local_today(at, "UTC") == date(2026, 11, 29)


def test_a_table_has_headers_names_local_times_and_no_none() -> None:
    frame = pd.DataFrame(
        {
            "ts": [pd.Timestamp("2026-11-29 20:02:59", tz="UTC"), pd.NaT],
            "kind": ["gate.pass", "lift.call"],
            "status": ["open", None],
            "rule": ["smoke_fire", "no_such_rule"],
            "hazards": [["overcrowding", "unsafe_wiring"], []],
            "online": [True, False],
            "missing": [2.0, float("nan")],
            "lon": [113.0, 113.1],
        }
    )
    shown = fmt.table(frame, "Asia/Shanghai", drop=["lon"], coded={"rule": "rule"})
    assert list(shown.columns) == [
        "时间 Time", "类型 Kind", "状态 Status", "规则 Rule", "隐患 Hazards", "在线 Online",
        "缺失 Missing",
    ]  # fmt: skip
    assert shown.iloc[0].tolist() == [
        "2026-11-30 04:02", "闸机通行 gate pass", "待处理 open", fmt.code("rule", "smoke_fire"),
        "群租 overcrowding、私拉乱接电线 unsafe wiring", "是 yes", 2.0,
    ]  # fmt: skip
    # Unknown codes stay readable as given; nothing is None, NaN or NaT.
    assert shown.iloc[1].tolist() == ["—", "lift.call", "—", "no_such_rule", "—", "否 no", "—"]
    assert fmt.code("rule", "smoke_fire") != "smoke_fire"
    assert "ts" in frame.columns  # the query's frame is left as it was


def test_every_code_the_platform_stores_has_a_name() -> None:
    assert {r.value for r in Reason} == set(fmt.CODES["dead_letter"]), "dead letter reasons"
    for event_type in kinds.EVENT_TYPES:
        assert fmt.code("event", event_type) != event_type, event_type
    for role in ROLES:
        assert fmt.code("role", role) != role
    for name in fmt.CODES["status"].values():
        assert "_" not in name.split(" ", 1)[0], name  # Chinese first, never a snake_case code


def test_the_cookie_code_is_one_time_and_short_lived() -> None:
    code = cookie.offer("token-1", ttl_s=60, now=100.0)
    assert cookie.claim(code, now=120.0) == "token-1"
    assert cookie.claim(code, now=121.0) is None  # once
    late = cookie.offer("token-2", ttl_s=60, now=100.0)
    assert cookie.claim(late, now=161.0) is None  # expired
    assert cookie.claim("made-up", now=100.0) is None
    header = cookie.set_cookie_header("t0k", secure=True)
    assert header.startswith("vt_session=t0k; Path=/")
    assert {"HttpOnly", "SameSite=Strict", "Secure"} <= {p.strip() for p in header.split(";")}
    assert "Max-Age=0" in cookie.clear_cookie_header(secure=True)


def test_the_navigation_is_built_from_the_pages_declarations() -> None:
    pages = [m.PAGE for m in app.PAGES]
    assert len({p.url_path for p in pages}) == len(pages), "url paths are unique"
    assert [p.url_path for p in pages if p.default] == ["overview"]
    for page in pages:
        assert page.roles <= set(ROLES), page
        assert re.match(r"^[^\x00-\x7f]+ [A-Z]", page.title), page.title  # 中文 English
    inspector = {p.url_path for p in pages if p.shown_to("inspector")}
    assert inspector == {"overview", "inspector", "cases"}
    assert {p.url_path for p in pages if p.shown_to("admin")} == {p.url_path for p in pages}
    assert "audit" not in {p.url_path for p in pages if p.shown_to("manager")}
