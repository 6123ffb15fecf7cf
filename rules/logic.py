"""The alert rules, as pure functions over plain values: no SQL, no MQTT, no clock of their own
(``now`` is always given). The worker (rules/worker.py) feeds them new events and rows of the
derived tables; the benchmark and the tests feed them the same shapes.

Two kinds of rule:

- event rules judge one new event at a time (smoke, e-bikes indoors, doors, tailgating,
  crowding), plus ``DoorTracker`` that remembers which doors are unlocked;
- window rules judge a window of the derived tables (occupancy, never seen, credentials after
  a tenancy, care targets, devices offline) and are evaluated every few seconds.

Each returns ``Finding`` values; the worker turns a finding into an alert, one open alert per
rule and subject. Days and hours are local to China Standard Time, like the derived tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from rules.settings import RuleParams

CST = timezone(timedelta(hours=8), "CST")
SEVERITIES = ("critical", "high", "medium", "low")  # most urgent first


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    severity: str
    name: str  # Chinese first, English beside
    explanation: str  # plain language, Chinese then English
    window: bool  # a window rule (derived tables) rather than an event rule


CATALOGUE: dict[str, Rule] = {
    r.rule_id: r
    for r in (
        Rule(
            "smoke_fire",
            "critical",
            "烟火 Smoke or fire",
            "摄像头识别到烟雾或明火，立即核实处置。A camera detected smoke or fire: check at once.",
            False,
        ),
        Rule(
            "ebike_indoor",
            "high",
            "电动车入户 E-bike indoors",
            "电动车进入楼道、电梯或在室内充电，是城中村致命火灾的首要原因。An e-bike entered a"
            " stairwell or lift, or is charging indoors: the leading cause of fatal fires.",
            False,
        ),
        Rule(
            "door_forced",
            "high",
            "门被强行打开 Door forced open",
            "门禁或闸口报告门被强行打开。A door or gate reports being forced open.",
            False,
        ),
        Rule(
            "door_held_open",
            "medium",
            "门长时间未关 Door held open",
            "门禁门开启超过设定时长未关闭。A door stayed open longer than allowed.",
            False,
        ),
        Rule(
            "gate_tailgating",
            "medium",
            "尾随进入 Gate tailgating",
            "闸口检测到尾随通行。A gate saw someone follow another person through.",
            False,
        ),
        Rule(
            "crowding",
            "medium",
            "人员聚集 Crowding",
            "摄像头在公共场所附近识别到人员聚集。A camera sees a crowd at a public place.",
            False,
        ),
        Rule(
            "care_inactive",
            "high",
            "关爱对象无活动 Care target inactive",
            "独居老人等关爱对象长时间或整个白天没有门禁、应用活动，请上门探访。A care target"
            " (e.g. an elderly person living alone) showed no door or app activity for a long"
            " time or a whole daytime: visit them.",
            True,
        ),
        Rule(
            "occupancy",
            "medium",
            "疑似群租 Possible overcrowding (群租)",
            "近几天出入该单元的不同人员明显多于登记租户。More distinct people used this unit's"
            " door over the last days than are registered there.",
            True,
        ),
        Rule(
            "unregistered_occupancy",
            "medium",
            "无登记有人员 Unregistered occupancy",
            "该单元没有登记租户，但有人员出入。Nobody is registered in this unit, yet people use"
            " its door.",
            True,
        ),
        Rule(
            "never_seen",
            "low",
            "登记未出现 Registered, never seen (空挂)",
            "登记租户在门禁正常工作期间从未出现，登记可能失实。A registered tenant was never seen"
            " while the door reader was reporting: the registration may be false.",
            True,
        ),
        Rule(
            "after_tenancy",
            "medium",
            "退租后仍使用 Credential used after tenancy",
            "租约结束后凭证仍在使用，应注销门禁权限。A credential still opens the door after the"
            " tenancy ended: revoke it.",
            True,
        ),
        Rule(
            "device_offline",
            "low",
            "设备离线 Device offline",
            "设备离线或心跳中断超过设定时长。A device went offline or stopped reporting.",
            True,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule found about one subject (``unit:…``, ``tenant:<unit>/<person>``,
    ``building:…``, ``door:…``, ``device:…``, ``poi:…``); ``ts`` is when it was observed."""

    rule: str
    subject: str
    ts: datetime
    title: str
    evidence: tuple[str, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    building_id: str | None = None
    unit_id: str | None = None
    device_id: str | None = None
    poi_id: str | None = None
    lon: float | None = None
    lat: float | None = None

    @property
    def severity(self) -> str:
        return CATALOGUE[self.rule].severity


@dataclass(frozen=True, slots=True)
class Fact:
    """An event as the rules see it (a row of ``events``)."""

    event_id: str
    ts: datetime
    device_id: str
    kind: str
    building_id: str | None
    unit_id: str | None
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    kind: str
    building_id: str | None = None
    lon: float | None = None
    lat: float | None = None


@dataclass(frozen=True, slots=True)
class Poi:
    poi_id: str
    name: str
    lon: float
    lat: float


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Equirectangular distance in metres (WGS-84 degrees in): exact enough within a village."""
    k = math.pi / 180
    x = (lon2 - lon1) * k * math.cos((lat1 + lat2) / 2 * k)
    return 6_371_000 * math.hypot(x, (lat2 - lat1) * k)


def nearest_poi(
    lon: float | None, lat: float | None, pois: Sequence[Poi], radius_m: float
) -> Poi | None:
    if lon is None or lat is None or not pois:
        return None
    best = min(pois, key=lambda p: distance_m(lon, lat, p.lon, p.lat))
    return best if distance_m(lon, lat, best.lon, best.lat) <= radius_m else None


def _zone_building(zone: str, prefixes: Iterable[str]) -> str | bool | None:
    """``stairwell:LH00012`` -> ``LH00012``; a listed prefix without a building -> True;
    a zone outside the prefixes -> False."""
    prefix, _, rest = zone.partition(":")
    if prefix not in prefixes:
        return False
    return rest or True


# --- event rules -----------------------------------------------------------------------------


def event_findings(
    fact: Fact, device: DeviceInfo | None, pois: Sequence[Poi], params: RuleParams
) -> list[Finding]:
    """The findings one event makes at once. Camera zones name where they look as
    ``<prefix>:<building_id>`` (``stairwell:LH00012``); ``alley`` or ``z1`` name no building."""
    p, ev = fact.payload, (fact.event_id,)
    lon, lat = (device.lon, device.lat) if device else (None, None)
    home = fact.building_id or (device.building_id if device else None)
    if fact.kind == "camera.detection":
        cls, zone, conf = p.get("cls"), str(p.get("zone", "")), float(p.get("confidence", 0))
        zoned = _zone_building(zone, [*params.ebike_entry_zones, *params.ebike_charging_zones])
        building = zoned if isinstance(zoned, str) else home
        if cls in ("smoke", "fire") and conf >= params.smoke_min_confidence:
            what = "明火 fire" if cls == "fire" else "烟雾 smoke"
            subject = f"building:{building}" if building else f"device:{fact.device_id}"
            return [
                Finding(
                    "smoke_fire",
                    subject,
                    fact.ts,
                    f"{what} · {building or fact.device_id} ({zone}, {conf:.0%})",
                    ev,
                    {"cls": cls, "zone": zone, "confidence": conf},
                    building_id=building,
                    device_id=fact.device_id,
                    lon=lon,
                    lat=lat,
                )
            ]
        if (
            cls == "ebike"
            and zoned is not False
            and building
            and conf >= params.ebike_min_confidence
        ):
            charging = zone.partition(":")[0] in params.ebike_charging_zones
            what = "室内充电 charging indoors" if charging else "进入楼内 entering the building"
            return [
                Finding(
                    "ebike_indoor",
                    f"building:{building}",
                    fact.ts,
                    f"电动车{what} · {building} ({zone})",
                    ev,
                    {"zone": zone, "charging": charging, "confidence": conf},
                    building_id=building,
                    device_id=fact.device_id,
                    lon=lon,
                    lat=lat,
                )
            ]
        if cls == "crowd" and int(p.get("count", 0)) >= params.crowd_min_count:
            poi = nearest_poi(lon, lat, pois, params.crowd_poi_radius_m)
            place = poi.name if poi else fact.device_id
            subject = f"poi:{poi.poi_id}" if poi else f"device:{fact.device_id}"
            return [
                Finding(
                    "crowding",
                    subject,
                    fact.ts,
                    f"人员聚集 crowd of {p.get('count')} · {place}",
                    ev,
                    {"count": p.get("count"), "zone": zone},
                    building_id=home,
                    device_id=fact.device_id,
                    poi_id=poi.poi_id if poi else None,
                    lon=poi.lon if poi else lon,
                    lat=poi.lat if poi else lat,
                )
            ]
        return []
    if fact.kind == "access.alarm":
        door, unit = p.get("door"), p.get("unit")
        subject = f"door:{fact.device_id}/{door}/{unit or ''}"
        forced = p.get("alarm") == "forced_open"
        rule = "door_forced" if forced else "door_held_open"
        what = "门被强行打开 forced open" if forced else "门长时间未关 held open"
        return [
            Finding(
                rule,
                subject,
                fact.ts,
                f"{what} · {unit or home or fact.device_id}",
                ev,
                {"alarm": p.get("alarm"), "door": door},
                building_id=home,
                unit_id=unit,
                device_id=fact.device_id,
                lon=lon,
                lat=lat,
            )
        ]
    if fact.kind == "gate.alarm":
        forced = p.get("alarm") == "forced"
        rule = "door_forced" if forced else "gate_tailgating"
        what = "闸口被强行打开 gate forced" if forced else "尾随进入 tailgating"
        return [
            Finding(
                rule,
                f"device:{fact.device_id}",
                fact.ts,
                f"{what} · {fact.device_id}",
                ev,
                {"alarm": p.get("alarm")},
                building_id=home,
                device_id=fact.device_id,
                lon=lon,
                lat=lat,
            )
        ]
    return []


@dataclass
class DoorTracker:
    """Which doors are unlocked since when, from ``access.door`` events; a door unlocked for
    longer than ``door_held_open_s`` is held open. Its state is plain JSON for the worker to
    keep across restarts."""

    unlocked: dict[str, dict[str, Any]] = field(default_factory=dict)

    def observe(self, fact: Fact, device: DeviceInfo | None) -> None:
        if fact.kind != "access.door":
            return
        p = fact.payload
        key = f"{fact.device_id}/{p.get('door')}/{p.get('unit') or ''}"
        if p.get("state") == "unlocked":
            held = self.unlocked.get(key)
            if held is None or held.get("reported"):
                self.unlocked[key] = {
                    "since": fact.ts.isoformat(),
                    "event": fact.event_id,
                    "device": fact.device_id,
                    "unit": p.get("unit"),
                    "building": fact.building_id or (device.building_id if device else None),
                    "lon": device.lon if device else None,
                    "lat": device.lat if device else None,
                }
        else:
            self.unlocked.pop(key, None)

    def due(self, now: datetime, params: RuleParams) -> list[Finding]:
        """Doors unlocked longer than allowed at ``now``; each is reported once per opening."""
        found = []
        for key, held in self.unlocked.items():
            since = datetime.fromisoformat(held["since"])
            if held.get("reported") or (now - since).total_seconds() <= params.door_held_open_s:
                continue
            held["reported"] = True
            seconds = int((now - since).total_seconds())
            where = held["unit"] or held["building"] or held["device"]
            found.append(
                Finding(
                    "door_held_open",
                    f"door:{key}",
                    now,
                    f"门开启 {seconds} 秒未关 open for {seconds} s · {where}",
                    (held["event"],),
                    {"open_since": held["since"], "seconds": seconds},
                    building_id=held["building"],
                    unit_id=held["unit"],
                    device_id=held["device"],
                    lon=held["lon"],
                    lat=held["lat"],
                )
            )
        return found


# --- window rules ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenancy as the rules need it; ``name`` is already masked (people_masked)."""

    unit_id: str
    building_id: str
    person_id: str
    name: str
    credential_ref: str
    start_date: date
    end_date: date | None = None


Seen = Mapping[str, Mapping[str, datetime]]  # unit -> credential -> last seen in the window


def occupancy(
    registered: Mapping[str, set[str]],
    seen: Seen,
    unit_building: Mapping[str, str],
    now: datetime,
    params: RuleParams,
) -> list[Finding]:
    """群租 and unregistered occupancy. ``registered``: unit -> credentials of current
    tenancies; ``seen``: credentials the door reader saw per unit over ``occupancy_days``."""
    found = []
    for unit, people in seen.items():
        n, r = len(people), len(registered.get(unit, ()))
        building = unit_building.get(unit)
        last = max(people.values(), default=now)
        if r == 0 and n >= params.unregistered_min_people:
            found.append(
                Finding(
                    "unregistered_occupancy",
                    f"unit:{unit}",
                    last,
                    f"无登记租户，{n} 人出入 nobody registered, {n} people seen · {unit}",
                    (),
                    {"seen": n, "registered": 0, "days": params.occupancy_days},
                    building_id=building,
                    unit_id=unit,
                )
            )
        elif r > 0 and n > r + params.occupancy_margin:
            found.append(
                Finding(
                    "occupancy",
                    f"unit:{unit}",
                    last,
                    f"{n} 人出入，登记 {r} 人 {n} people seen, {r} registered · {unit}",
                    (),
                    {"seen": n, "registered": r, "days": params.occupancy_days},
                    building_id=building,
                    unit_id=unit,
                )
            )
    return found


def never_seen(
    tenants: Sequence[Tenant],
    seen: Seen,
    coverage_days: Mapping[str, int],
    window_start: date,
    now: datetime,
    params: RuleParams,
) -> list[Finding]:
    """空挂: current tenants (since before the window) whose credential the unit's door never
    saw in the window, only where the building's reader reported on enough days of it."""
    found = []
    for t in tenants:
        if t.start_date > window_start:
            continue
        days = coverage_days.get(t.building_id, 0)
        if days < params.never_seen_coverage_days:
            continue
        if t.credential_ref in seen.get(t.unit_id, {}):
            continue
        found.append(
            Finding(
                "never_seen",
                f"tenant:{t.unit_id}/{t.person_id}",
                now,
                f"登记租户 {t.name} 未出现 registered tenant {t.name} never seen · {t.unit_id}",
                (),
                {
                    "tenant": t.name,
                    "person_id": t.person_id,
                    "reader_days": days,
                    "window_days": params.never_seen_days,
                },
                building_id=t.building_id,
                unit_id=t.unit_id,
            )
        )
    return found


def after_tenancy(
    ended: Sequence[Tenant], seen: Seen, current: set[tuple[str, str]]
) -> list[Finding]:
    """A credential seen at a unit on a local day after its tenancy there ended, unless the
    same credential holds a current tenancy there too."""
    found = []
    for t in ended:
        last = seen.get(t.unit_id, {}).get(t.credential_ref)
        if t.end_date is None or last is None or (t.unit_id, t.credential_ref) in current:
            continue
        if last.astimezone(CST).date() > t.end_date:
            found.append(
                Finding(
                    "after_tenancy",
                    f"tenant:{t.unit_id}/{t.person_id}",
                    last,
                    f"{t.name} 退租({t.end_date})后仍使用 still used after the tenancy"
                    f" ended · {t.unit_id}",
                    (),
                    {
                        "tenant": t.name,
                        "person_id": t.person_id,
                        "end_date": t.end_date.isoformat(),
                        "last_seen": last.isoformat(),
                    },
                    building_id=t.building_id,
                    unit_id=t.unit_id,
                )
            )
    return found


def _in_hours(hour: int, start: int, end: int) -> bool:
    return start <= hour < end if start <= end else hour >= start or hour < end


def care_inactive(
    targets: Sequence[Tenant],
    last_activity: Mapping[str, datetime],
    observed_since: Mapping[str, datetime],
    now: datetime,
    params: RuleParams,
) -> list[Finding]:
    """Care targets with no door or app activity for ``care_inactive_hours``, or none since
    before the start of the last completed daytime window (not raised in quiet hours).

    ``last_activity``: credential -> last seen; ``observed_since``: building -> earliest
    report of its door reader in the look-back, so a target is judged only as far back as
    the reader could have seen them."""
    found = []
    local = now.astimezone(CST)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    window_end = day + timedelta(hours=params.care_day_end_hour)
    if local < window_end:
        day -= timedelta(days=1)
        window_end -= timedelta(days=1)
    window_start = day + timedelta(hours=params.care_day_start_hour)
    quiet = _in_hours(local.hour, params.care_quiet_start_hour, params.care_quiet_end_hour)
    for t in targets:
        last = last_activity.get(t.credential_ref)
        since = last or observed_since.get(t.building_id)
        if since is None:
            continue  # the reader has not reported: nothing to judge on
        hours = (now - since).total_seconds() / 3600
        long_gap = hours > params.care_inactive_hours
        no_day = since <= window_start and not quiet
        if long_gap or no_day:
            why = (
                f"{hours:.0f} 小时无活动 no activity for {hours:.0f} h"
                if long_gap
                else f"{window_start:%m-%d} 白天无活动 no activity during the day"
            )
            found.append(
                Finding(
                    "care_inactive",
                    f"tenant:{t.unit_id}/{t.person_id}",
                    now,
                    f"关爱对象 {t.name} {why} · {t.unit_id}",
                    (),
                    {
                        "tenant": t.name,
                        "person_id": t.person_id,
                        "last_activity": last.isoformat() if last else None,
                        "hours": round(hours, 1),
                        "daytime": not long_gap,
                    },
                    building_id=t.building_id,
                    unit_id=t.unit_id,
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class DeviceState:
    device_id: str
    kind: str
    building_id: str | None
    online: bool | None
    status_changed_at: datetime | None
    last_seen: datetime | None
    lon: float | None = None
    lat: float | None = None


def device_offline(
    devices: Sequence[DeviceState], now: datetime, params: RuleParams
) -> list[Finding]:
    """Offline (retained status or last will) past the kind's grace, or silent (no message,
    heartbeats included) past the kind's limit. Times are the platform's reception times."""
    found = []
    for d in devices:
        grace = params.offline_grace_s.get(d.kind)
        silent = params.silent_s.get(d.kind)
        why = None
        changed = d.status_changed_at
        if (
            d.online is False
            and changed
            and grace is not None
            and (now - changed).total_seconds() > grace
        ):
            why = f"离线 offline since {changed.astimezone(CST):%m-%d %H:%M}"
        if why is None and d.last_seen and silent is not None:
            quiet_s = (now - d.last_seen).total_seconds()
            if quiet_s > silent:
                why = f"{quiet_s / 60:.0f} 分钟无心跳 no heartbeat for {quiet_s / 60:.0f} min"
        if why:
            found.append(
                Finding(
                    "device_offline",
                    f"device:{d.device_id}",
                    now,
                    f"{d.device_id} ({d.kind}) {why}",
                    (),
                    {"kind": d.kind, "online": d.online},
                    building_id=d.building_id,
                    device_id=d.device_id,
                    lon=d.lon,
                    lat=d.lat,
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class OfflinePeriod:
    """An offline status change (``device_status_history``) and when the device came back."""

    device_id: str
    kind: str
    building_id: str | None
    since: datetime
    back: datetime | None
    lon: float | None = None
    lat: float | None = None


def offline_periods(
    periods: Sequence[OfflinePeriod], now: datetime, params: RuleParams
) -> tuple[list[Finding], datetime | None]:
    """Offline periods longer than the kind's grace, whether or not the device is back (so a
    short poll interval is not needed to see them). Returns the findings and the earliest
    period still undecided (offline, within its grace), where a cursor must stay."""
    found: list[Finding] = []
    pending: datetime | None = None
    for p in periods:
        grace = params.offline_grace_s.get(p.kind)
        if grace is None:
            continue
        lasted = ((p.back or now) - p.since).total_seconds()
        if lasted <= grace:
            if p.back is None:
                pending = p.since if pending is None else min(pending, p.since)
            continue
        until = f"至 until {p.back.astimezone(CST):%H:%M:%S}" if p.back else "未恢复 still offline"
        found.append(
            Finding(
                "device_offline",
                f"device:{p.device_id}",
                p.since,
                f"{p.device_id} ({p.kind}) 离线 offline {p.since.astimezone(CST):%m-%d %H:%M:%S}"
                f" {until}",
                (f"status:{p.device_id}@{p.since.isoformat()}",),
                {"kind": p.kind, "since": p.since.isoformat(),
                 "back": p.back.isoformat() if p.back else None},
                building_id=p.building_id, device_id=p.device_id, lon=p.lon, lat=p.lat,
            )
        )  # fmt: skip
    return found, pending
