"""The rules worker's one settings object: ``VT_RULES__<PARAM>`` for rule parameters,
``VT_CASES__<PARAM>`` for the case workflow, ``VT_WORKER__<PARAM>`` for the loop."""

from __future__ import annotations

from pydantic import BaseModel, Field

from devices.kinds import REGISTRY
from devices.settings import ServiceSettings


class RuleParams(BaseModel):
    """Every tunable of the rules; times are seconds or hours as named, local hours are China
    Standard Time (the derived tables' days, migration 0002)."""

    # 群租: distinct credentials at a unit over the window exceed registered tenants + margin.
    occupancy_days: int = Field(default=2, ge=1, le=30)
    occupancy_margin: int = Field(default=1, ge=0)
    # Unregistered occupancy: nobody registered, at least this many people seen.
    unregistered_min_people: int = Field(default=1, ge=1)
    # 空挂: a registered tenant not seen over the window, where the building's door reader
    # reported on at least coverage_days distinct local days of the window.
    never_seen_days: int = Field(default=7, ge=1, le=30)
    never_seen_coverage_days: int = Field(default=2, ge=1)
    # Credentials used after a tenancy ended: looked for over this many days.
    after_tenancy_days: int = Field(default=7, ge=1, le=30)
    # Care targets: no door or app activity for this long (any hour) ...
    care_inactive_hours: float = Field(default=36.0, gt=0)
    # ... or none in the last completed daytime window; not raised in quiet hours.
    care_day_start_hour: int = Field(default=8, ge=0, le=23)
    care_day_end_hour: int = Field(default=20, ge=1, le=24)
    care_quiet_start_hour: int = Field(default=22, ge=0, le=23)
    care_quiet_end_hour: int = Field(default=7, ge=0, le=23)
    # E-bikes: camera zones named <prefix>:<building_id>; entering vs charging indoors.
    ebike_entry_zones: list[str] = ["door", "stairwell", "lift"]
    ebike_charging_zones: list[str] = ["corridor", "indoor", "charging"]
    ebike_min_confidence: float = Field(default=0.5, ge=0, le=1)
    # Doors: an access.door left unlocked longer than this is held open.
    door_held_open_s: float = Field(default=120.0, gt=0)
    # Smoke or fire: any detection at or above this confidence.
    smoke_min_confidence: float = Field(default=0.5, ge=0, le=1)
    # Crowding: a crowd detection of at least this many people; placed at the nearest point of
    # interest within the radius (metres), else at the camera.
    crowd_min_count: int = Field(default=20, ge=1)
    crowd_poi_radius_m: float = Field(default=80.0, ge=0)
    # Devices: offline (status/last will) for longer than the grace, per kind; or silent (no
    # message at all, heartbeats included) for longer than the silence limit, per kind.
    # Defaults: the device kind registry's (devices/kinds.py).
    offline_grace_s: dict[str, float] = Field(
        default_factory=lambda: {str(k): s.offline_grace_s for k, s in REGISTRY.items()}
    )
    silent_s: dict[str, float] = Field(
        default_factory=lambda: {str(k): s.silent_s for k, s in REGISTRY.items()}
    )
    # A window finding is not raised again for this long after its alert was closed.
    reraise_after_hours: float = Field(default=72.0, ge=0)


class CaseParams(BaseModel):
    """Deadlines (hours) by priority; past it an open case escalates to the grid's manager."""

    deadline_hours: dict[str, float] = {"urgent": 2, "high": 8, "normal": 48, "low": 120}
    # Who overdue cases escalate to in a grid with no manager in grid_staff.
    fallback_manager: str = "manager"
    # An alert's severity gives the priority of the case made from it.
    priority_of_severity: dict[str, str] = {
        "critical": "urgent",
        "high": "high",
        "medium": "normal",
        "low": "low",
    }
    # A resident report's category gives its priority.
    priority_of_category: dict[str, str] = {
        "fire_hazard": "urgent",
        "ebike_charging": "high",
        "security": "high",
        "sanitation": "normal",
        "noise": "low",
        "other": "normal",
    }


class WorkerOptions(BaseModel):
    # New events wake the worker when they commit (migration 0112); it also polls this often.
    event_poll_s: float = Field(default=0.2, gt=0)
    window_interval_s: float = Field(default=15.0, gt=0)
    # Events committed out of order: each poll rereads this far behind its cursor.
    overlap_s: float = Field(default=10.0, ge=0)
    batch: int = Field(default=5000, ge=1)
    # The ingester refuses older device times (VT_INGEST__MAX_AGE_DAYS): bounds the chunks read.
    max_event_age_days: int = Field(default=31, ge=1)
    # A worker with no saved cursor starts this far back (by arrival).
    start_lookback_s: float = Field(default=3600.0, ge=0)
    client_id: str = "vt-rules"
    # Camera detections (smoke, fire, e-bikes, crowds) also read straight from the broker, so
    # their alerts do not wait for the ingester (rules/worker.py, "the fast path"); a device
    # time further than fast_max_skew_s from now is left to the database path.
    fast_path: bool = True
    fast_max_skew_s: float = Field(default=600.0, gt=0)
    # Open a case (上报) for every resident-app incident.
    cases_from_incidents: bool = True


class RulesSettings(ServiceSettings):
    """Environment variables, and secrets as files (Docker's ``/run/secrets`` or
    ``VT_SECRETS_DIR``: ``vt_db_password``, ``vt_mqtt__password``), as the ingester's. The
    compose's worker connects as its own role vt_rules (migration 0160)."""

    rules: RuleParams = RuleParams()
    cases: CaseParams = CaseParams()
    worker: WorkerOptions = WorkerOptions()
