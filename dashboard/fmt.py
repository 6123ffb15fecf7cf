"""What the dashboard shows for codes, column names and times: one translation table (Chinese
first, English beside) and the village-local time format, as pure functions every page uses.

- ``COLUMNS``: a query's column name → its header ("ts" → "时间 Time").
- ``CODES``: a stored code → its name, per kind of code ("status", "severity", "rule", …);
  event types and device kinds come from the device kind registry (devices/kinds.py), rules
  from rules.logic.CATALOGUE, case statuses and categories from rules/cases.py.
- ``minutes``/``day``: a time as ``2026-11-30 04:02`` and a date as ``2026-11-30`` in the
  village's time zone (an IANA name, DashboardSettings.time_zone, ``VT_TIME_ZONE``).
- ``table``: a query's frame as shown: local times, names for codes, headers, "—" for none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pandas as pd

from dashboard.auth import REFUSALS
from devices import kinds
from mapping.alert_layers import SEVERITY_NAMES
from rules import cases
from rules.logic import CATALOGUE

MINUTES = "%Y-%m-%d %H:%M"  # the form: 2026-11-30 04:02
NONE = "—"

COLUMNS: dict[str, str] = {
    "ts": "时间 Time", "at": "时间 Time", "received_at": "接收时间 Received",
    "kind": "类型 Kind", "what": "内容 What", "device_id": "设备 Device",
    "building_id": "楼栋 Building", "unit_id": "单元 Unit", "credential_ref": "凭证 Credential",
    "grid_code": "网格 Grid", "online": "在线 Online", "last_seen": "最后上报 Last seen",
    "last_seq": "最后序号 Last seq", "last_event": "最后事件 Last event",
    "dead_letters_24h": "死信 24h Dead letters", "reason": "原因 Reason", "count": "数量 Count",
    "latest": "最近 Latest", "topic": "主题 Topic", "detail": "详情 Detail", "bytes": "字节 Bytes",
    "first_missing": "首个缺失 First missing", "last_missing": "末个缺失 Last missing",
    "missing": "缺失 Missing", "incident_id": "编号 Id", "reported_at": "上报时间 Reported",
    "category": "类别 Category", "description": "描述 Description", "status": "状态 Status",
    "assigned_to": "负责人 Assigned to", "photo_ref": "照片 Photo", "photo_refs": "照片 Photos",
    "username": "用户 User", "action": "操作 Action", "subject": "对象 Subject",
    "address": "地址 Address", "person_id": "人员 Person", "name": "姓名 Name",
    "id_number": "证件号 ID number", "phone": "电话 Phone", "care_target": "关爱对象 Care target",
    "start_date": "起租 Start", "end_date": "退租 End", "inspected_on": "检查日期 Inspected on",
    "inspector": "检查员 Inspector", "findings": "发现 Findings", "hazards": "隐患 Hazards",
    "next_visit": "下次检查 Next visit", "alert_id": "告警 Alert", "severity": "级别 Severity",
    "rule": "规则 Rule", "title": "标题 Title", "first_seen": "首次 First seen",
    "occurrences": "次数 Occurrences", "evidence": "证据 Evidence", "case_no": "工单号 Case no.",
    "priority": "优先级 Priority", "due_at": "期限 Due", "overdue": "超期 Overdue",
    "escalated_to": "升级至 Escalated to", "source": "来源 Source", "feedback": "反馈 Feedback",
    "actor": "操作人 By", "note": "说明 Note", "from": "原状态 From", "to": "新状态 To",
    "duty": "职责 Duty", "categories": "类别 Categories", "floor": "楼层 Floor",
    "room": "房号 Room", "use": "用途 Use", "registered": "登记 Registered", "seen": "出现 Seen",
    "unit": "单元 Unit", "storeys": "层数 Storeys", "landlord": "业主 Landlord",
    "status_changed_at": "状态变化 Changed at", "offline_for": "离线时长 Offline for",
    "until": "解除于 Until", "since": "锁定于 Since",
}  # fmt: skip

_STATUS = {
    "open": "待处理 open", "acknowledged": "已确认 acknowledged", "resolved": "已解决 resolved",
    "false_alarm": "误报 false alarm", "assigned": "已指派 assigned",
    **cases.STATUSES,
}  # fmt: skip
_HAZARDS = {
    "ebike_charging_indoors": "室内/楼道电动车充电 e-bike charging indoors",
    "blocked_escape_route": "疏散通道堵塞 blocked escape route",
    "missing_extinguisher": "灭火器缺失 missing extinguisher",
    "unsafe_wiring": "私拉乱接电线 unsafe wiring",
    "gas_cylinder_indoors": "室内存放液化气瓶 gas cylinder indoors",
    "overcrowding": "群租 overcrowding",
}
_ACTIONS = {
    "reveal_person": "查看身份 reveal a person", "sign_in": "登录 sign in",
    "sign_in_failed": "登录失败 failed sign-in", "sign_out": "退出 sign out",
    "lockout_lifted": "解除锁定 lockout lifted", "acknowledge": "确认 acknowledge",
    "resolve": "解决 resolve", "assign": "指派 assign", "dispatch": "分拨 dispatch",
    "handle": "处置 handle", "close": "办结 close", "reopen": "重新打开 reopen",
    "create": "创建 create", "report": "上报 report", "account_locked": "账户锁定 account locked",
    "address_blocked": "地址封禁 address blocked",
}  # fmt: skip
# Why the ingester refused a message (ingest.validate.Reason; tests/test_labels.py holds the two
# together).
_DEAD_LETTER = {
    "bad_topic": "主题不符 bad topic", "oversized": "超长 oversized",
    "not_utf8": "非 UTF-8 not UTF-8", "not_json": "非 JSON not JSON",
    "too_deep": "嵌套过深 nested too deep", "unstorable_json": "无法存储的 JSON unstorable JSON",
    "unknown_schema_version": "未知版本 unknown schema version",
    "schema_invalid": "格式不符 invalid schema", "unknown_device": "未登记设备 unknown device",
    "revoked_device": "已注销设备 revoked device", "device_mismatch": "设备不符 device mismatch",
    "wrong_event_for_kind": "设备类型不符 wrong event for the kind",
    "timestamp_future": "时间在未来 time in the future",
    "timestamp_too_old": "时间过旧 time too old", "vendor_format": "厂商格式错误 vendor format",
    "unstorable_number": "无法存储的数字 unstorable number",
    "out_of_range": "超出范围 out of range",
    "internal_error": "内部错误 internal error", "unstorable_row": "数据库拒收 unstorable row",
    "dead_letter_quota": "死信超额 dead-letter quota", "unit_outside_device_scope":
    "单元不属该设备 unit outside the device's scope",
}  # fmt: skip
CODES: dict[str, dict[str, str]] = {
    "dead_letter": _DEAD_LETTER,
    "status": _STATUS,
    "severity": dict(SEVERITY_NAMES),
    "category": {**cases.CATEGORIES, "ebike_charging": "电动车充电 e-bike charging"},
    "hazards": _HAZARDS,
    "action": _ACTIONS,
    "role": {"admin": "管理员 admin", "manager": "社区管理员 manager",
             "inspector": "出租屋检查员 inspector"},
    "priority": {"urgent": "紧急 urgent", "high": "高 high", "normal": "普通 normal",
                 "low": "低 low"},
    "duty": {"worker": "网格员 grid worker", "manager": "网格长 grid manager"},
    "source": {"alert": "告警 alert", "app": "居民上报 resident report",
               "manual": "人工 manual"},
    "use": {"residential": "住宅 residential", "shop": "商铺 shop"},
    "lockout": {"account": "账户 account", "address": "地址 address"},
    "refusal": {**REFUSALS, "ok": "成功 ok"},
}  # fmt: skip
# Columns whose values are codes of one of CODES' kinds.
_CODED = {"status": "status", "from": "status", "to": "status", "severity": "severity",
          "category": "category", "hazards": "hazards", "action": "action", "role": "role",
          "priority": "priority", "duty": "duty", "source": "source", "use": "use",
          "categories": "category"}  # fmt: skip
_EVENT_TYPED = {"kind", "last_event"}


def code(kind: str, value: object) -> str:
    """The name of a stored code (``code("status", "open")`` → "待处理 open"); ``kind`` is
    one of CODES, "rule" (rules.logic.CATALOGUE) or "event" (event types and device kinds,
    devices/kinds.py). None is "—"; an unknown code is returned as given (a newer code stays
    readable rather than vanishing)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return NONE
    text = str(value)
    if kind == "rule":
        rule = CATALOGUE.get(text)
        return rule.name if rule else text
    if kind == "event":
        return kinds.label(text)
    return CODES.get(kind, {}).get(text, text)


def zone(time_zone: str) -> ZoneInfo:
    """The IANA time zone ``time_zone`` ("Asia/Shanghai"); raises ZoneInfoNotFoundError
    (a KeyError) for a name the tz database does not know."""
    return ZoneInfo(time_zone)


def minutes(value: datetime | pd.Timestamp | None, time_zone: str) -> str:
    """An instant as village-local ``2026-11-30 04:02`` (a naive value is taken as UTC, as
    the database stores instants); None or NaT is "—"."""
    if value is None or pd.isna(value):
        return NONE
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return stamp.tz_convert(time_zone).strftime(MINUTES)


def day(value: date | datetime | pd.Timestamp | None, time_zone: str) -> str:
    """A date as ``2026-11-30``; an instant is first taken to the village's local date.
    None or NaT is "—"."""
    if value is None or pd.isna(value):
        return NONE
    if isinstance(value, datetime | pd.Timestamp):
        return minutes(value, time_zone)[:10]
    return value.isoformat()


def local_today(now: datetime, time_zone: str) -> date:
    """The village's local date at the instant ``now`` (an aware datetime): 2026-11-29
    20:02 UTC is 2026-11-30 in Asia/Shanghai."""
    return now.astimezone(zone(time_zone)).date()


def seconds(value: float, digits: int) -> str:
    """A duration in seconds as ``"0.25 s"`` with ``digits`` decimals; NaN (nothing measured)
    is "—"."""
    return NONE if pd.isna(value) else f"{value:.{digits}f} s"


def _cell(kind: str | None, value: object, time_zone: str) -> object:
    if isinstance(value, list | tuple):
        names = [str(_cell(kind, v, time_zone)) for v in value]
        return "、".join(names) if names else NONE
    if isinstance(value, bool):
        return "是 yes" if value else "否 no"
    if isinstance(value, datetime | pd.Timestamp):
        return minutes(value, time_zone)
    if isinstance(value, date):
        return value.isoformat()
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return NONE
    if kind is not None:
        return code(kind, value)
    return value


def table(
    frame: pd.DataFrame,
    time_zone: str,
    drop: Iterable[str] = (),
    coded: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``frame`` as the dashboard shows it: without the ``drop`` columns; times as local
    ``2026-11-30 04:02``, dates as ``2026-11-30``; codes named (by column: status, severity,
    category, hazards, action…, event types in "kind"/"last_event", plus ``coded``: column →
    kind of code); yes/no for booleans; "—" for None, NaN and NaT; headers from COLUMNS
    (a column not in it keeps its name). A new frame; numbers stay numbers."""
    shown = frame.drop(columns=[c for c in drop if c in frame.columns])
    kinds_of = {**_CODED, **{c: "event" for c in _EVENT_TYPED}, **(coded or {})}
    out: dict[str, object] = {}
    for column in shown.columns:
        values = shown[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out[COLUMNS.get(str(column), str(column))] = values.astype(object).where(
                values.notna(), NONE
            )
            continue
        kind = kinds_of.get(str(column))
        out[COLUMNS.get(str(column), str(column))] = [
            _cell(kind, v, time_zone) for v in values.tolist()
        ]
    return pd.DataFrame(out, index=shown.index)
