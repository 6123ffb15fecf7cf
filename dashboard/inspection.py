"""The building inspector's judgements, as pure functions: what the door readers observed in
each unit beside who is registered there, and the discrepancies an inspector acts on."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd

from mapping.frames import rows
from rules import logic
from rules.settings import RuleParams

# A unit is flagged when more distinct people came and went than are registered (possible
# 群租), when a registered tenant was never seen (空挂), or when a card kept working after
# its tenancy ended.
OVERCROWDED = "overcrowded"
NEVER_SEEN = "never_seen"
AFTER_TENANCY = "used_after_tenancy"

HAZARDS = [
    "ebike_charging_indoors",  # 室内/楼道电动车充电
    "blocked_escape_route",  # 疏散通道堵塞
    "missing_extinguisher",  # 灭火器缺失
    "unsafe_wiring",  # 私拉乱接电线
    "gas_cylinder_indoors",  # 室内存放液化气瓶
    "overcrowding",  # 群租
]


@dataclass(frozen=True, slots=True)
class Discrepancy:
    unit_id: str
    kind: str
    detail: str


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


def discrepancies(
    registered: pd.DataFrame,
    observed: pd.DataFrame,
    ended: pd.DataFrame,
    reader_days: int | None = None,
    params: RuleParams | None = None,
) -> list[Discrepancy]:
    """The unit's discrepancies, judged by the alert rules themselves (rules/logic.py is the one
    home of this logic): occupancy and unregistered occupancy (the inspector lists every
    difference, margin 0, where alerts wait for ``VT_RULES__OCCUPANCY_MARGIN``), registered
    tenants never seen (only when the building's door reader reported on at least
    ``never_seen_coverage_days`` of the window: ``reader_days``; None means unknown, not
    judged as missing), and credentials used after a tenancy ended.

    ``registered``: unit_id, credential_ref and, when known, person_id, name (masked) and
    start_date; ``observed``: unit_id, credential_ref, last_seen; ``ended``: unit_id,
    credential_ref, end_date."""
    params = (params or RuleParams()).model_copy(update={"occupancy_margin": 0})
    now = datetime.now(UTC)
    seen: dict[str, dict[str, datetime]] = defaultdict(dict)
    for row in rows(observed):
        seen[str(row.unit_id)][str(row.credential_ref)] = row.last_seen
    reg = {str(u): set(c) for u, c in registered.groupby("unit_id").credential_ref}
    found = [
        Discrepancy(f.unit_id or "", OVERCROWDED, f"{f.detail['seen']} seen, "
                    f"{f.detail['registered']} registered")
        for f in logic.occupancy(reg, seen, {}, now, params)
    ]  # fmt: skip
    tenants = [
        logic.Tenant(str(r["unit_id"]), "", str(r.get("person_id") or r["credential_ref"]),
                     str(r.get("name") or r["credential_ref"]), str(r["credential_ref"]),
                     r.get("start_date") or date.min)
        for r in registered.to_dict("records")
    ]  # fmt: skip
    coverage = {"": params.never_seen_coverage_days if reader_days is None else reader_days}
    for f in logic.never_seen(tenants, seen, coverage, date.max, now, params):
        found.append(Discrepancy(f.unit_id or "", NEVER_SEEN,
                                 f"registered {f.detail['tenant']} never seen"))  # fmt: skip
    formers = [
        logic.Tenant(str(r["unit_id"]), "", str(r["credential_ref"]), str(r["credential_ref"]),
                     str(r["credential_ref"]), date.min, r["end_date"])
        for r in ended.to_dict("records")
    ]  # fmt: skip
    current = {(str(u), str(c)) for u, c in zip(registered.unit_id, registered.credential_ref,
                                                 strict=True)}  # fmt: skip
    for f in logic.after_tenancy(formers, seen, current):
        found.append(Discrepancy(f.unit_id or "", AFTER_TENANCY,
                                 f"{f.detail['tenant']} used {f.detail['last_seen'][:10]} after"
                                 f" the tenancy ended {f.detail['end_date']}"))  # fmt: skip
    return sorted(found, key=lambda d: (d.unit_id, d.kind))


def report_html(building: dict[str, object], table: pd.DataFrame, issues: list[Discrepancy],
                inspections: pd.DataFrame, generated: date) -> str:  # fmt: skip
    """A printable report (the browser prints it to PDF)."""
    from html import escape

    body = "".join(
        f"<tr><td>{escape(str(r.unit_id))}</td><td>{r.floor}</td><td>{r.registered}</td>"
        f"<td>{r.seen}</td><td>{escape(str(r.last_activity or '—'))}</td></tr>"
        for r in rows(table)
    )
    flagged = "".join(
        f"<li><b>{escape(d.unit_id)}</b> {escape(d.kind)}: {escape(d.detail)}</li>" for d in issues
    )
    past = "".join(
        f"<li>{r.inspected_on} {escape(str(r.inspector))}: {escape(str(r.findings))}</li>"
        for r in rows(inspections)
    )
    return (
        "<!doctype html><html lang='zh'><meta charset='utf-8'>"
        f"<title>出租屋检查报告 {escape(str(building['building_id']))}</title>"
        "<style>body{font-family:'Noto Sans CJK SC',sans-serif;margin:2em}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}</style>"
        f"<h1>出租屋检查报告 Rental housing inspection report</h1>"
        f"<p>{escape(str(building['address']))} · {escape(str(building['building_id']))} · "
        f"{building['storeys']} 层 storeys · 网格 {escape(str(building['grid_code']))} · "
        f"生成 generated {generated}</p>"
        f"<h2>异常 Discrepancies ({len(issues)})</h2><ul>{flagged or '<li>无 none</li>'}</ul>"
        "<h2>单元 Units</h2><table><tr><th>unit</th><th>floor</th><th>registered</th>"
        f"<th>seen</th><th>last activity</th></tr>{body}</table>"
        f"<h2>检查记录 Past inspections</h2><ul>{past or '<li>无 none</li>'}</ul></html>"
    )
