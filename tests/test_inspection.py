"""The inspector's findings (grouping by unit, the wording of each kind, 观察不足 said rather
than flagged) and the report's PDF and CSV, built from values: the PDF's text is read back with
pdfium (pypdfium2), the CSV with pandas."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pypdfium2
import pytest
from support import ARTIFACTS

from dashboard import inspection
from dashboard.report_pdf import FontMissing, pdf_bytes
from dashboard.settings import DashboardSettings
from mapping import layers

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 20:02 UTC on the 29th is 04:02 on the 30th in China.
SEEN = datetime(2026, 11, 29, 20, 2, tzinfo=UTC)


def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """U1: two registered (a, b), seen with two more (x: a tenant of another unit the session
    may see, y: nobody's card it may see); U2: c registered, never seen; U3: nobody registered,
    the former tenant's card ('old') still used after the tenancy ended, and z seen."""
    registered = pd.DataFrame({
        "unit_id": ["U1", "U1", "U2"], "credential_ref": ["a", "b", "c"],
        "person_id": ["P1", "P2", "P3"], "name": ["王*", "李*", "陈**"],
        "start_date": [date(2025, 1, 1)] * 3,
    })  # fmt: skip
    observed = pd.DataFrame({
        "unit_id": ["U1", "U1", "U1", "U1", "U3", "U3"],
        "credential_ref": ["a", "b", "x", "card-0000-9876", "old", "z"],
        "last_seen": [SEEN] * 6,
        "days": [5, 4, 3, 1, 2, 6],
    })  # fmt: skip
    ended = pd.DataFrame({
        "unit_id": ["U3"], "credential_ref": ["old"], "end_date": [date(2026, 11, 1)],
        "person_id": ["P9"], "name": ["赵*"],
    })  # fmt: skip
    return registered, observed, ended


def test_discrepancies_are_grouped_by_unit_each_naming_the_person_and_evidence() -> None:
    registered, observed, ended = frames()
    found = inspection.findings(registered, observed, ended, reader_days=6, window_days=7,
                                names={"x": "孙*"})  # fmt: skip
    grouped = inspection.by_unit(found.issues)
    assert [unit for unit, _ in grouped] == ["U1", "U2", "U3"]  # each unit once, in order
    kinds = {unit: [d.kind for d in issues] for unit, issues in grouped}
    assert kinds == {
        "U1": [inspection.OVERCROWDED],
        "U2": [inspection.NEVER_SEEN],
        # nobody registered and people seen: unregistered occupancy, not "overcrowded"
        "U3": [inspection.UNREGISTERED, inspection.AFTER_TENANCY],
    }
    u1 = grouped[0][1][0]
    assert u1.detail == (
        "4 人出入，登记 2 人 4 seen, 2 registered; 未登记 not registered:"
        " 孙*（3 天 days）、未知卡 unknown card …9876（1 天 days）"
        " · 门禁覆盖 reader coverage 6/7 天 days"
    )
    assert grouped[1][1][0].detail == (
        "陈**: 7 天内未出现 not seen in 7 days · 门禁覆盖 reader coverage 6/7 天 days"
    )
    unregistered, after = grouped[2][1]
    assert unregistered.label == "未登记居住 Unregistered occupancy"
    assert "overcrowd" not in unregistered.detail.lower()
    assert "赵*（2 天 days）" in unregistered.detail  # the former tenant, named
    # last seen 20:02 UTC on the 29th: the 30th in China
    assert after.detail.startswith(
        "赵*: 退租 tenancy ended 2026-11-01, 之后仍出现 seen after on 2 天 days,"
        " 最近 last 2026-11-30"
    )
    assert found.note() is None
    for _, issues in grouped:
        for d in issues:
            assert "None" not in d.detail and "NaT" not in d.detail


def test_the_floor_view_colours_each_unit_by_its_most_serious_discrepancy() -> None:
    registered, observed, ended = frames()
    found = inspection.findings(registered, observed, ended, reader_days=6, window_days=7)
    units = pd.DataFrame({"unit_id": ["U1", "U2", "U3", "U4", "U5"], "floor": [1, 1, 2, 2, 1],
                          "room": ["101", "102", "201", "202", "103"]})  # fmt: skip
    table = inspection.unit_comparison(units, registered, observed)
    table["use"] = ["residential"] * 4 + ["shop"]
    status = inspection.unit_status(table, found.issues)
    assert status == {"U1": "overcrowded", "U2": "never_seen", "U3": "unregistered",
                      "U4": "vacant", "U5": "shop"}  # fmt: skip
    assert set(status.values()) <= set(layers.UNIT_STATUS_COLOURS)
    names = dict(layers.unit_legend())
    assert "未登记居住 unregistered occupancy" in names


@pytest.mark.parametrize("reader_days", [1, None])
def test_not_enough_observation_is_said_not_flagged(reader_days: int | None) -> None:
    registered, observed, ended = frames()
    found = inspection.findings(registered, observed, ended, reader_days, window_days=7)
    assert inspection.NEVER_SEEN not in {d.kind for d in found.issues}
    assert found.unverified == [("U2", "陈**")]
    note = found.note()
    assert note is not None and note.startswith("观察不足 Not enough observation")
    assert "1 registered tenant(s) not seen are not judged" in note
    if reader_days == 1:
        assert "reported on 1 of 7 days" in note


def test_a_report_pdf_holds_the_inspection_with_local_dates() -> None:
    settings = DashboardSettings()
    report = _report()
    data = pdf_bytes(report, settings.report_font, settings.report_font_bold,
                     settings.report_font_index)  # fmt: skip
    assert data.startswith(b"%PDF-")
    document = pypdfium2.PdfDocument(data)
    text = "".join(page.get_textpage().get_text_range() for page in document)
    compact = "".join(text.split())
    for expected in [
        "出租屋检查报告",
        "LH00150",
        "广州市黄埔区龙湖村一巷150号",
        "检查员Inspector",
        "inspector",
        "楼道电动车充电",
        "PH-0001、PH-0002",
        "室内/楼道电动车充电e-bikechargingindoors",
        "下次检查Nextvisit",
        "2026-12-14",
        "检查日期Date",
        "2026-11-30",  # the inspection's local date
        "生成Generated2026-11-3004:02",  # 20:02 UTC shown at Shanghai time
        "未登记居住Unregisteredoccupancy",
        "U1",
        "U3",
        "赵*",
        "孙*",
        "6/7",
        "2026-11-3004:02",  # the units' last activity, local
        "2026-10-02",  # the earlier inspection
    ]:
        assert expected in compact, expected
    assert not re.search(r"\b(None|NaT|nan)\b", text), text
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "inspection-report.pdf").write_bytes(data)
    document[0].render(scale=1.6).to_pil().save(ARTIFACTS / "inspection-report-page1.png")


def test_a_report_pdf_without_any_inspection_says_so() -> None:
    settings = DashboardSettings()
    report = _report(inspections=[])
    text = pypdfium2.PdfDocument(pdf_bytes(report, settings.report_font)).get_page(0)
    words = "".join(text.get_textpage().get_text_range().split())
    assert "尚无检查记录Noinspectionrecordedyet" in words
    with pytest.raises(FontMissing, match="VT_REPORT_FONT"):
        pdf_bytes(report, settings.report_font.with_name("missing.ttc"))


def test_the_csv_has_the_inspection_and_the_units_with_chinese_headers() -> None:
    report = _report(findings='=HYPERLINK("http://x") 楼道堆物')
    frame = pd.read_csv(io.BytesIO(inspection.report_csv(report)), encoding="utf-8-sig",
                        dtype=str, keep_default_na=False)  # fmt: skip
    assert list(frame.columns[:4]) == ["楼栋 Building", "地址 Address", "单元 Unit", "楼层 Floor"]
    assert {"检查日期 Inspected on", "检查员 Inspector", "发现 Findings", "隐患 Hazards",
            "照片编号 Photo references", "下次检查 Next visit"} <= set(frame.columns)  # fmt: skip
    assert list(frame["单元 Unit"]) == ["U1", "U2", "U3", "U4"]
    first = frame.iloc[0]
    assert first["检查日期 Inspected on"] == "2026-11-30"
    assert first["检查员 Inspector"] == "inspector"
    assert first["下次检查 Next visit"] == "2026-12-14"
    assert first["照片编号 Photo references"] == "PH-0001、PH-0002"
    assert first["隐患 Hazards"].startswith("室内/楼道电动车充电")
    # a formula stays text: the cell gets a leading apostrophe (dashboard/safe.py)
    assert first["发现 Findings"] == '\'=HYPERLINK("http://x") 楼道堆物'
    assert first["最近出入 Last activity"] == "2026-11-30 04:02"
    u4 = frame.set_index("单元 Unit").loc["U4"]
    assert u4["最近出入 Last activity"] == "—" and u4["异常 Discrepancies"] == ""
    assert frame.set_index("单元 Unit").loc["U3", "异常 Discrepancies"] == (
        "未登记居住 Unregistered occupancy；退租后仍使用 Used after the tenancy ended"
    )
    flat = frame.to_csv()
    assert "None" not in flat and "NaT" not in flat and "unregistered_occupancy" not in flat


def _report(
    inspections: list[inspection.Inspection] | None = None, findings: str = "楼道电动车充电"
) -> inspection.Report:
    registered, observed, ended = frames()
    found = inspection.findings(registered, observed, ended, reader_days=6, window_days=7,
                                names={"x": "孙*"})  # fmt: skip
    units = pd.DataFrame({"unit_id": ["U1", "U2", "U3", "U4"], "floor": [1, 1, 2, 2],
                          "room": ["101", "102", "201", None]})  # fmt: skip
    table = inspection.unit_comparison(units, registered, observed)
    if inspections is None:
        past = pd.DataFrame({
            "inspected_on": [date(2026, 11, 30), date(2026, 10, 2)],
            "inspector": ["inspector", "老周"],
            "findings": [findings, "无异常"],
            "hazards": [["ebike_charging_indoors", "blocked_escape_route"], None],
            "photo_refs": [["PH-0001", "PH-0002"], []],
            "next_visit": [date(2026, 12, 14), None],
        })  # fmt: skip
        inspections = inspection.inspections_from(past)
    return inspection.Report(
        "LH00150", "广州市黄埔区龙湖村一巷150号", 6, "LH-G01", "陈**", table, found,
        inspections, "inspector", SEEN, SHANGHAI,
    )  # fmt: skip


def test_units_are_listed_floor_by_floor_rooms_in_number_order() -> None:
    units = pd.DataFrame({"unit_id": ["B-1001", "B-101", "B-102", "B-901", "B-X"],
                          "floor": [10, 1, 1, 9, None], "room": ["1001", "101", "102", "901", None],
                          "registered": 0, "seen": 0, "last_activity": None})  # fmt: skip
    table = inspection.units_table(units, [], SHANGHAI)
    assert list(table["单元 Unit"]) == ["B-101", "B-102", "B-901", "B-1001", "B-X"]


def test_the_page_tables_have_chinese_headers_local_dates_and_no_none() -> None:
    report = _report()
    past = inspection.inspections_table(report.inspections, SHANGHAI)
    assert list(past.iloc[1]) == ["2026-10-02", "老周", "无异常", "—", "—", "—"]
    assert past.iloc[0]["隐患 Hazards"] == (
        "室内/楼道电动车充电 e-bike charging indoors、疏散通道堵塞 blocked escape route"
    )
    registered, _, _ = frames()
    registered["phone"] = [None, "138****0000", None]
    registered["care_target"] = [False, True, False]
    tenants = inspection.tenants_table(registered, SHANGHAI)
    assert "credential_ref" not in tenants
    assert list(tenants.columns) == ["单元 Unit", "人员编号 Person", "姓名 Name", "电话 Phone",
                                     "关爱对象 Care target", "入住 Since"]  # fmt: skip
    assert list(tenants.iloc[0]) == ["U1", "P1", "王*", "—", "否 no", "2025-01-01"]
    ordered = inspection.tenants_table(registered, SHANGHAI, ["U2", "U1"])
    assert list(ordered["单元 Unit"]) == ["U2", "U1", "U1"]
