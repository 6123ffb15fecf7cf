"""The building inspector's judgements, as pure functions: what the door readers observed in
each unit beside who is registered there, and the discrepancies an inspector acts on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

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
    registered: pd.DataFrame, observed: pd.DataFrame, ended: pd.DataFrame
) -> list[Discrepancy]:
    """``ended``: unit_id, credential_ref, end_date of tenancies that have ended."""
    found: list[Discrepancy] = []
    # unit_id -> credentials (pandas types the keys as any Hashable)
    reg: dict[Any, set[str]] = registered.groupby("unit_id").credential_ref.apply(set).to_dict()
    seen: dict[Any, set[str]] = observed.groupby("unit_id").credential_ref.apply(set).to_dict()
    for unit in sorted(set(reg) | set(seen)):
        people, visitors = reg.get(unit, set()), seen.get(unit, set())
        if len(visitors) > len(people):
            found.append(
                Discrepancy(unit, OVERCROWDED, f"{len(visitors)} seen, {len(people)} registered")
            )
        for credential in sorted(people - visitors):
            found.append(Discrepancy(unit, NEVER_SEEN, f"registered {credential} never seen"))
    if len(ended):
        last = observed.groupby(["unit_id", "credential_ref"]).last_seen.max()
        row: Any  # a pandas row: its fields are untyped
        for row in ended.itertuples():
            key = (row.unit_id, row.credential_ref)
            if key in last.index and last[key].date() > row.end_date:
                found.append(
                    Discrepancy(
                        row.unit_id,
                        AFTER_TENANCY,
                        f"{row.credential_ref} used {last[key].date()} after the tenancy ended"
                        f" {row.end_date}",
                    )
                )
    return found


def report_html(building: dict[str, object], table: pd.DataFrame, issues: list[Discrepancy],
                inspections: pd.DataFrame, generated: date) -> str:  # fmt: skip
    """A printable report (the browser prints it to PDF)."""
    from html import escape

    rows = "".join(
        f"<tr><td>{escape(str(r.unit_id))}</td><td>{r.floor}</td><td>{r.registered}</td>"
        f"<td>{r.seen}</td><td>{escape(str(r.last_activity or '—'))}</td></tr>"
        for r in table.itertuples()
    )
    flagged = "".join(
        f"<li><b>{escape(d.unit_id)}</b> {escape(d.kind)}: {escape(d.detail)}</li>" for d in issues
    )
    past = "".join(
        f"<li>{r.inspected_on} {escape(str(r.inspector))}: {escape(str(r.findings))}</li>"
        for r in inspections.itertuples()
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
        f"<th>seen</th><th>last activity</th></tr>{rows}</table>"
        f"<h2>检查记录 Past inspections</h2><ul>{past or '<li>无 none</li>'}</ul></html>"
    )
