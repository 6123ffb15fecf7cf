"""The building inspector's judgements, as pure functions: what the door readers observed in
each unit beside who is registered there, the discrepancies an inspector acts on (grouped by
unit, each naming the masked person and its evidence), and the values of the inspection report
(the PDF in dashboard/report_pdf.py, the CSV here)."""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pandas as pd

from dashboard import fmt
from mapping.frames import rows
from rules import logic
from rules.settings import RuleParams

# A unit is flagged when nobody is registered and people came and went (未登记居住), when more
# distinct people came and went than are registered (possible 群租), when a registered tenant
# was never seen although the door reader reported enough (空挂), or when a card kept working
# after its tenancy ended. The codes are the rules' own (rules/logic.py) where they exist.
UNREGISTERED = "unregistered_occupancy"
OVERCROWDED = "overcrowded"
NEVER_SEEN = "never_seen"
AFTER_TENANCY = "used_after_tenancy"

KIND_LABELS = {
    UNREGISTERED: "未登记居住 Unregistered occupancy",
    OVERCROWDED: "人数超过登记 More people than registered (群租?)",
    AFTER_TENANCY: "退租后仍使用 Used after the tenancy ended",
    NEVER_SEEN: "登记未出现 Registered, never seen (空挂?)",
}
_KIND_ORDER = {kind: n for n, kind in enumerate(KIND_LABELS)}

HAZARD_LABELS = fmt.CODES["hazards"]  # the one translation table's (dashboard/fmt.py)
HAZARDS = list(HAZARD_LABELS)

NOTHING = "—"  # what an empty value is shown as: never None, NaT or nan


@dataclass(frozen=True, slots=True)
class Sighting:
    """A person as the evidence names them: ``name`` masked (people_masked) or, for a card
    nobody visible holds, its last four characters; ``days`` distinct local days their card
    was seen at the unit in the window; ``last_seen`` the latest (aware) or None."""

    name: str
    days: int
    last_seen: datetime | None = None
    last_day: date | None = None  # last_seen's local date


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One finding of a unit. ``people``: who it concerns (the unregistered people seen, the
    tenant never seen, the former tenant); ``reader_days`` on how many days of the
    ``window_days`` window the building's door reader reported (None: unknown);
    ``end_date`` of the tenancy, for AFTER_TENANCY."""

    unit_id: str
    kind: str
    people: tuple[Sighting, ...]
    window_days: int
    reader_days: int | None
    seen: int = 0  # distinct people seen at the unit in the window
    registered: int = 0  # current registered tenants of the unit
    end_date: date | None = None

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def detail(self) -> str:
        """One line of plain text, Chinese first with English beside."""
        return describe(self)


@dataclass(frozen=True, slots=True)
class Findings:
    """What the inspector is shown: the discrepancies, and the registered tenants not seen
    whom the door reader's coverage is too thin to judge (观察不足, said, not flagged)."""

    issues: list[Discrepancy]
    unverified: list[tuple[str, str]]  # (unit_id, masked name) not seen, coverage too thin
    window_days: int
    reader_days: int | None
    needed_days: int

    def note(self) -> str | None:
        """The 观察不足 sentence, or None when every tenant could be judged."""
        if not self.unverified:
            return None
        reported = (
            "门禁报告天数未知 the door reader's coverage is unknown"
            if self.reader_days is None
            else f"门禁在 {self.window_days} 天中仅 {self.reader_days} 天有数据 the door reader"
            f" reported on {self.reader_days} of {self.window_days} days"
        )
        n = len(self.unverified)
        return (
            f"观察不足 Not enough observation: {reported} (至少需要 needs at least"
            f" {self.needed_days});"
            f" {n} 位登记租户未出现，暂不判断 {n} registered tenant(s) not seen are not judged."
        )


def _days(window_days: int, reader_days: int | None) -> str:
    coverage = NOTHING if reader_days is None else str(reader_days)
    return f"门禁覆盖 reader coverage {coverage}/{window_days} 天 days"


def _person(s: Sighting) -> str:
    return f"{s.name}（{s.days} 天 days）"


def describe(d: Discrepancy) -> str:
    """A discrepancy as one line of plain text (callers escape it for Markdown/HTML): what,
    who (masked), and the evidence: days each person was observed and the reader's
    coverage of the window."""
    coverage = _days(d.window_days, d.reader_days)
    if d.kind in (UNREGISTERED, OVERCROWDED):
        who = "、".join(_person(s) for s in d.people) or NOTHING
        return (
            f"{d.seen} 人出入，登记 {d.registered} 人 {d.seen} seen, {d.registered} registered;"
            f" 未登记 not registered: {who} · {coverage}"
        )
    person = d.people[0] if d.people else Sighting(NOTHING, 0)
    if d.kind == NEVER_SEEN:
        window = d.window_days
        return f"{person.name}: {window} 天内未出现 not seen in {window} days · {coverage}"
    last = person.last_day.isoformat() if person.last_day else NOTHING
    ended = d.end_date.isoformat() if d.end_date else NOTHING
    return (
        f"{person.name}: 退租 tenancy ended {ended}, 之后仍出现 seen after on {person.days}"
        f" 天 days, 最近 last {last} · {coverage}"
    )


def unit_comparison(
    units: pd.DataFrame, registered: pd.DataFrame, observed: pd.DataFrame
) -> pd.DataFrame:
    """One row per unit: registered tenants, distinct credentials seen, last activity.

    ``registered``: unit_id, credential_ref (current tenancies); ``observed``: unit_id,
    credential_ref, last_seen (from unit_daily_credentials over the window)."""
    reg = registered.groupby("unit_id").credential_ref.nunique().rename("registered")
    seen = observed.groupby("unit_id").credential_ref.nunique().rename("seen")
    last = observed.groupby("unit_id").last_seen.max().rename("last_activity")
    table = units.set_index("unit_id")[["floor", "room"]].join([reg, seen, last])
    table[["registered", "seen"]] = table[["registered", "seen"]].fillna(0).astype(int)
    return table.reset_index()


def _card(ref: str) -> str:
    return f"未知卡 unknown card …{ref[-4:]}"


def findings(
    registered: pd.DataFrame,
    observed: pd.DataFrame,
    ended: pd.DataFrame,
    reader_days: int | None,
    window_days: int,
    names: Mapping[str, str] | None = None,
    params: RuleParams | None = None,
    zone: ZoneInfo | None = None,
) -> Findings:
    """The unit's discrepancies, judged by the alert rules themselves (rules/logic.py is the
    one home of this logic): unregistered occupancy and occupancy (the inspector lists every
    difference, margin 0, where alerts wait for ``VT_RULES__OCCUPANCY_MARGIN``), registered
    tenants never seen (only when the building's door reader reported on at least
    ``never_seen_coverage_days`` of the window; otherwise they are listed as not judged, and
    ``reader_days`` None, unknown, counts as too thin), and credentials used after a tenancy
    ended (on a local day after its end date, as the rule judges it).

    ``registered``: unit_id, credential_ref and, when known, person_id, name (masked) and
    start_date; ``observed``: unit_id, credential_ref, last_seen (aware) and, when known,
    days (distinct local days seen in the window); ``ended``: unit_id, credential_ref,
    end_date and, when known, person_id, name; ``names``: credential_ref -> masked name of
    the people the session may see (for the unregistered people seen); ``zone``: the
    village's time zone for local dates (default Asia/Shanghai)."""
    zone = zone or ZoneInfo("Asia/Shanghai")
    params = (params or RuleParams()).model_copy(update={"occupancy_margin": 0})
    names = names or {}
    now = datetime.now(UTC)
    seen: dict[str, dict[str, datetime]] = defaultdict(dict)
    days: dict[tuple[str, str], int] = {}
    for row in rows(observed):
        seen[str(row.unit_id)][str(row.credential_ref)] = row.last_seen
        days[str(row.unit_id), str(row.credential_ref)] = int(getattr(row, "days", 1) or 1)
    reg = {str(u): set(c) for u, c in registered.groupby("unit_id").credential_ref}
    known = {str(r["credential_ref"]): str(r.get("name") or "")
             for frame in (ended, registered) for r in frame.to_dict("records")}  # fmt: skip

    def sighting(unit: str, ref: str) -> Sighting:
        name = known.get(ref) or names.get(ref) or _card(ref)
        last = seen.get(unit, {}).get(ref)
        day = last.astimezone(zone).date() if last is not None else None
        return Sighting(name, days.get((unit, ref), 0), last, day)

    found: list[Discrepancy] = []
    for f in logic.occupancy(reg, seen, {}, now, params):
        unit = f.unit_id or ""
        strangers = sorted(set(seen[unit]) - reg.get(unit, set()))
        people = sorted((sighting(unit, c) for c in strangers), key=lambda s: (-s.days, s.name))
        kind = UNREGISTERED if f.rule == "unregistered_occupancy" else OVERCROWDED
        n, r = int(f.detail["seen"]), int(f.detail["registered"])
        found.append(Discrepancy(unit, kind, tuple(people), window_days, reader_days, n, r))
    tenants = [
        logic.Tenant(str(r["unit_id"]), "", str(r.get("person_id") or r["credential_ref"]),
                     str(r.get("name") or _card(str(r["credential_ref"]))),
                     str(r["credential_ref"]), r.get("start_date") or date.min)
        for r in registered.to_dict("records")
    ]  # fmt: skip
    coverage = {"": 0 if reader_days is None else reader_days}
    judged = logic.never_seen(tenants, seen, coverage, date.max, now, params)
    for f in judged:
        unit = f.unit_id or ""
        found.append(Discrepancy(unit, NEVER_SEEN, (Sighting(str(f.detail["tenant"]), 0),),
                                 window_days, reader_days))  # fmt: skip
    unverified: list[tuple[str, str]] = []
    if not judged and (reader_days is None or reader_days < params.never_seen_coverage_days):
        # The same rule with full coverage: who would have been flagged, had the reader
        # reported; they are said to be unjudged, not flagged.
        full = {"": params.never_seen_coverage_days}
        unverified = [
            (f.unit_id or "", str(f.detail["tenant"]))
            for f in logic.never_seen(tenants, seen, full, date.max, now, params)
        ]
    formers = [
        logic.Tenant(str(r["unit_id"]), "", str(r.get("person_id") or r["credential_ref"]),
                     str(r.get("name") or _card(str(r["credential_ref"]))),
                     str(r["credential_ref"]), date.min, r["end_date"])
        for r in ended.to_dict("records")
    ]  # fmt: skip
    current = {(str(u), str(c)) for u, c in zip(registered.unit_id, registered.credential_ref,
                                                 strict=True)}  # fmt: skip
    ends = {(t.unit_id, t.person_id): t for t in formers}
    for f in logic.after_tenancy(formers, seen, current):
        unit = f.unit_id or ""
        tenant = ends[unit, str(f.detail["person_id"])]
        person = sighting(unit, tenant.credential_ref)
        found.append(Discrepancy(unit, AFTER_TENANCY, (person,), window_days, reader_days,
                                 end_date=tenant.end_date))  # fmt: skip
    found.sort(key=lambda d: (d.unit_id, _KIND_ORDER[d.kind], [s.name for s in d.people]))
    return Findings(found, sorted(unverified), window_days, reader_days,
                    params.never_seen_coverage_days)  # fmt: skip


def discrepancies(
    registered: pd.DataFrame,
    observed: pd.DataFrame,
    ended: pd.DataFrame,
    reader_days: int | None = None,
    params: RuleParams | None = None,
    window_days: int = 7,
) -> list[Discrepancy]:
    """``findings(...).issues``: the discrepancies alone (see findings)."""
    return findings(registered, observed, ended, reader_days, window_days, params=params).issues


# A unit's colour in the floor view (mapping.layers.UNIT_STATUS_COLOURS) by its most serious
# discrepancy; then occupied (someone seen), vacant, or shop.
UNIT_STATUS = {
    UNREGISTERED: "unregistered",
    OVERCROWDED: "overcrowded",
    AFTER_TENANCY: "after_tenancy",
    NEVER_SEEN: "never_seen",
}


def unit_status(table: pd.DataFrame, issues: Sequence[Discrepancy]) -> dict[str, str]:
    """unit_id -> a status of mapping.layers.UNIT_STATUS_COLOURS for the floor view:
    ``table`` is ``unit_comparison``'s frame (and ``use``, when known: 'shop' units are
    shops); a unit's most serious discrepancy wins, else occupied (seen > 0) or vacant."""
    status = {}
    for r in rows(table):
        if getattr(r, "use", None) == "shop":
            status[str(r.unit_id)] = "shop"
        else:
            status[str(r.unit_id)] = "occupied" if int(r.seen) > 0 else "vacant"
    for unit, found in by_unit(issues):
        status[unit] = UNIT_STATUS[found[0].kind]
    return status


def by_unit(issues: Sequence[Discrepancy]) -> list[tuple[str, list[Discrepancy]]]:
    """The discrepancies grouped by unit, units in order, each unit once: (unit_id, its
    discrepancies, most serious kind first)."""
    grouped: dict[str, list[Discrepancy]] = defaultdict(list)
    for d in issues:
        grouped[d.unit_id].append(d)
    return [
        (unit, sorted(found, key=lambda d: _KIND_ORDER[d.kind]))
        for unit, found in sorted(grouped.items())
    ]


# --- the report's values: the PDF (dashboard/report_pdf.py) and the CSV -----------------------


def hazard_text(codes: Sequence[str]) -> str:
    """Hazard codes as their labels, joined; NOTHING for none."""
    return "、".join(HAZARD_LABELS.get(c, c) for c in codes) or NOTHING


@dataclass(frozen=True, slots=True)
class Inspection:
    """One recorded inspection (table ``inspections``); ``inspected_on`` and ``next_visit``
    are local dates."""

    inspected_on: date
    inspector: str
    findings: str
    hazards: tuple[str, ...] = ()
    photo_refs: tuple[str, ...] = ()
    next_visit: date | None = None


def inspections_from(frame: pd.DataFrame) -> list[Inspection]:
    """``queries.inspections``' frame (inspected_on, inspector, findings, hazards, photo_refs,
    next_visit; newest first) as values, empty arrays and nulls as empty tuples and None."""
    found = []
    for r in frame.to_dict("records"):
        nxt = r.get("next_visit")
        found.append(
            Inspection(
                r["inspected_on"], str(r.get("inspector") or NOTHING),
                str(r.get("findings") or ""),
                tuple(r.get("hazards") or ()), tuple(r.get("photo_refs") or ()),
                None if nxt is None or pd.isna(nxt) else nxt,
            )
        )  # fmt: skip
    return found


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the inspection report holds. ``units``: ``unit_comparison``'s frame;
    ``inspections`` newest first (the first is the inspection the report is about);
    ``generated`` an aware instant, shown in ``zone``; ``landlord`` already masked."""

    building_id: str
    address: str
    storeys: int
    grid_code: str
    landlord: str
    units: pd.DataFrame
    findings: Findings
    inspections: list[Inspection]
    prepared_by: str
    generated: datetime
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    @property
    def latest(self) -> Inspection | None:
        return self.inspections[0] if self.inspections else None


UNIT_COLUMNS = {
    "unit_id": "单元 Unit",
    "floor": "楼层 Floor",
    "room": "房号 Room",
    "registered": "登记 Registered",
    "seen": "出现 Seen",
    "last_activity": "最近出入 Last activity",
}


def units_table(units: pd.DataFrame, issues: Sequence[Discrepancy], zone: ZoneInfo) -> pd.DataFrame:
    """``unit_comparison``'s frame for people: Chinese headers (English beside), local
    times, and each unit's discrepancies (their labels) in a last column; no None or NaT."""
    flagged = {unit: "；".join(d.label for d in found) for unit, found in by_unit(issues)}
    table = units[list(UNIT_COLUMNS)].copy()
    keys = [
        _unit_order(f, r, u) for f, r, u in zip(table.floor, table.room, table.unit_id, strict=True)
    ]
    table = table.iloc[sorted(range(len(table)), key=keys.__getitem__)]
    table["last_activity"] = [fmt.minutes(v, zone.key) for v in table["last_activity"]]
    table["room"] = table["room"].fillna(NOTHING).astype(str)
    table["issues"] = [flagged.get(str(u), "") for u in table["unit_id"]]
    return table.rename(columns={**UNIT_COLUMNS, "issues": "异常 Discrepancies"})


def _unit_order(floor: object, room: object, unit_id: object) -> tuple[float, int, str, str]:
    """Floor by floor, rooms in number order (101, 102, …, 1001), then by id."""
    number = float(floor) if isinstance(floor, numbers.Real) and not math.isnan(floor) else math.inf
    text = "" if room is None or (isinstance(room, float) and math.isnan(room)) else str(room)
    return (number, int(text) if text.isdigit() else 10**9, text, str(unit_id))


def report_frame(report: Report) -> pd.DataFrame:
    """The CSV's one table: a row per unit, with the building, the unit's discrepancies in
    full, and the inspection (the latest: date, inspector, findings, hazards, photo
    references, next visit) on every row, so that each row stands alone in a spreadsheet."""
    issues = report.findings.issues
    details = {unit: "；".join(f"{d.label}: {d.detail}" for d in found)
               for unit, found in by_unit(issues)}  # fmt: skip
    table = units_table(report.units, issues, report.zone)
    table["异常说明 Discrepancy details"] = [details.get(str(u), "") for u in table["单元 Unit"]]
    latest, zone = report.latest, report.zone.key
    front = {"楼栋 Building": report.building_id, "地址 Address": report.address}
    back = {
        "检查日期 Inspected on": fmt.day(latest.inspected_on, zone) if latest else NOTHING,
        "检查员 Inspector": latest.inspector if latest else NOTHING,
        "发现 Findings": latest.findings if latest else NOTHING,
        "隐患 Hazards": hazard_text(latest.hazards) if latest else NOTHING,
        "照片编号 Photo references": "、".join(latest.photo_refs) or NOTHING if latest else NOTHING,
        "下次检查 Next visit": fmt.day(latest.next_visit, zone) if latest else NOTHING,
    }
    for n, (column, value) in enumerate(front.items()):
        table.insert(n, column, value)
    for column, value in back.items():
        table[column] = value
    return table


def report_csv(report: Report) -> bytes:
    """``report_frame`` as UTF-8 CSV with a BOM (Excel, WPS), every text cell that a
    spreadsheet would run as a formula neutralised (dashboard/safe.py)."""
    from dashboard.safe import csv_bytes

    return csv_bytes(report_frame(report))


def inspections_table(inspections: Sequence[Inspection], zone: ZoneInfo) -> pd.DataFrame:
    """Recorded inspections for people: Chinese headers (English beside), local dates, hazard
    labels, photo references joined; NOTHING where a value is absent."""
    return pd.DataFrame(
        {
            "检查日期 Date": [fmt.day(i.inspected_on, zone.key) for i in inspections],
            "检查员 Inspector": [i.inspector for i in inspections],
            "发现 Findings": [i.findings or NOTHING for i in inspections],
            "隐患 Hazards": [hazard_text(i.hazards) for i in inspections],
            "照片编号 Photo references": ["、".join(i.photo_refs) or NOTHING for i in inspections],
            "下次检查 Next visit": [fmt.day(i.next_visit, zone.key) for i in inspections],
        }
    )


TENANT_COLUMNS = {
    "unit_id": "单元 Unit",
    "person_id": "人员编号 Person",
    "name": "姓名 Name",
    "id_number": "身份证号 ID number",
    "phone": "电话 Phone",
    "care_target": "关爱对象 Care target",
    "start_date": "入住 Since",
}


def tenants_table(
    registered: pd.DataFrame, zone: ZoneInfo, unit_order: Sequence[str] = ()
) -> pd.DataFrame:
    """``queries.registered_tenants``' frame (already masked by the database) for people:
    no credential, Chinese headers, local dates, 是/否 for the care flag; units in
    ``unit_order`` (e.g. ``units_table``'s, floor by floor), others after them."""
    table = registered[[c for c in TENANT_COLUMNS if c in registered.columns]].copy()
    place = {unit: n for n, unit in enumerate(unit_order)}
    keys = [place.get(str(u), len(place)) for u in table["unit_id"]]
    table = table.iloc[sorted(range(len(table)), key=keys.__getitem__)]
    if "care_target" in table:
        table["care_target"] = ["是 yes" if v else "否 no" for v in table["care_target"]]
    if "start_date" in table:
        table["start_date"] = [fmt.day(v, zone.key) for v in table["start_date"]]
    return table.fillna(NOTHING).rename(columns=TENANT_COLUMNS)
