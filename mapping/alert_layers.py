"""Map layers of what needs attention: buildings coloured by their most severe open alert, alert
markers above the roofs, offline devices and open cases; with the legend rows to draw beside
the map. Pure: plain records in, pydeck layers out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pydeck as pdk

from mapping.frames import rows
from mapping.layers import DEVICE_COLOURS, OFFLINE_RING

SEVERITY_COLOURS: dict[str, tuple[int, int, int]] = {
    "critical": (215, 25, 28),
    "high": (245, 130, 30),
    "medium": (235, 200, 40),
    "low": (70, 130, 210),
}
SEVERITY_NAMES = {
    "critical": "紧急 critical (烟火 smoke/fire)",
    "high": "高 high",
    "medium": "中 medium",
    "low": "低 low",
}
RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}
OFFLINE = DEVICE_COLOURS[False]  # one colour for an offline device on every map
CASE_COLOURS = {"urgent": (215, 25, 28), "high": (245, 130, 30), "normal": (60, 150, 90),
                "low": (120, 120, 160)}  # fmt: skip


def colour_by_alerts(
    records: Sequence[Mapping[str, Any]], worst: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Building records (mapping.layers.building_records) recoloured by the rank (4 critical …
    1 low) of each building's most severe open alert; others keep their colour."""
    by_rank = {RANK[s]: s for s in RANK}
    out = []
    for r in records:
        rank = int(worst.get(str(r["building_id"]), 0))
        if rank:
            severity = by_rank[rank]
            r = {**r, "colour": list(SEVERITY_COLOURS[severity]),
                 "tip": f"{r['tip']}\n告警 open alert: {SEVERITY_NAMES[severity]}"}  # fmt: skip
        out.append(dict(r))
    return out


def alert_records(alerts: pd.DataFrame) -> list[dict[str, Any]]:
    """One marker per open alert, a few metres above its building's roof (or at its device),
    most severe drawn last so it is on top."""
    records = []
    for row in rows(alerts.dropna(subset=["lon", "lat"])):
        records.append(
            {
                "position": [round(float(row.lon), 7), round(float(row.lat), 7),
                             float(row.elevation or 4.0)],
                "severity": row.severity,
                "colour": list(SEVERITY_COLOURS.get(str(row.severity), (120, 120, 120))),
                "radius": 3.0 + RANK.get(str(row.severity), 1),
                "tip": f"{row.title}\n{SEVERITY_NAMES.get(str(row.severity), '')}"
                f" · {row.status}\n#{row.alert_id} · {row.last_seen}",
            }
        )  # fmt: skip
    return sorted(records, key=lambda r: RANK.get(str(r["severity"]), 0))


def alerts_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    """The alert markers (``alert_records``) as a pickable deck.gl ScatterplotLayer, id
    ``alerts``: radius from each record's ``radius`` (metres), 7–22 px on screen, white outline,
    facing the camera (deck.gl ScatterplotLayer,
    https://deck.gl/docs/api-reference/layers/scatterplot-layer)."""
    return pdk.Layer(
        "ScatterplotLayer", data=list(records), id="alerts", get_position="position",
        get_fill_color="colour", get_line_color=[255, 255, 255], stroked=True,
        line_width_min_pixels=2, get_radius="radius", radius_min_pixels=7, radius_max_pixels=22,
        pickable=True, billboard=True,
    )  # fmt: skip


def offline_records(devices: pd.DataFrame, elevation: Mapping[str, float]) -> list[dict[str, Any]]:
    """Offline devices as dark markers, above their building's roof where they have one."""
    return [
        {
            "position": [round(float(r.lon), 7), round(float(r.lat), 7),
                         float(elevation.get(str(r.building_id), 0.0)) + 2.0],
            "colour": list(OFFLINE),
            "tip": f"{r.device_id} ({r.kind})\n离线 offline since {r.status_changed_at}",
        }
        for r in rows(devices.dropna(subset=["lon", "lat"]))
    ]  # fmt: skip


def offline_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    """Offline devices (``offline_records``) as a pickable ScatterplotLayer, id ``offline-devices``:
    2.5 m dots, 5–12 px on screen, outlined in yellow (deck.gl ScatterplotLayer,
    https://deck.gl/docs/api-reference/layers/scatterplot-layer)."""
    return pdk.Layer(
        "ScatterplotLayer", data=list(records), id="offline-devices", get_position="position",
        get_fill_color="colour", get_line_color=list(OFFLINE_RING), stroked=True,
        line_width_min_pixels=2, get_radius=2.5, radius_min_pixels=5, radius_max_pixels=12,
        pickable=True, billboard=True,
    )  # fmt: skip


def case_records(cases: pd.DataFrame) -> list[dict[str, Any]]:
    """One marker record per open case (工单) with a place: ``cases`` needs ``case_no``, ``status``,
    ``description``, ``assigned_to``, ``overdue``, ``priority``, ``lon``/``lat`` (WGS-84 degrees;
    rows without them are left out) and may have ``elevation`` (metres, default 3). Each record:
    ``position`` [lon, lat, metres], ``colour`` (RGB of ``CASE_COLOURS`` by priority), ``tip``
    (number, status, first 60 characters of the description, who it is dispatched to, overdue).
    Raises AttributeError when a needed column is missing."""
    return [
        {
            "position": [round(float(r.lon), 7), round(float(r.lat), 7),
                         float(getattr(r, "elevation", 3.0) or 3.0)],
            "colour": list(CASE_COLOURS.get(str(r.priority), (90, 90, 90))),
            "tip": f"{r.case_no} · {r.status}\n{str(r.description)[:60]}"
            f"\n{r.assigned_to or '未分拨 not dispatched'}"
            f"{' · 超期 overdue' if r.overdue else ''}",
        }
        for r in rows(cases.dropna(subset=["lon", "lat"]))
    ]  # fmt: skip


def cases_layer(records: Sequence[Mapping[str, Any]]) -> pdk.Layer:
    """The case markers (``case_records``) as a pickable ScatterplotLayer, id ``cases``: 3 m dots,
    6–16 px on screen, white outline (deck.gl ScatterplotLayer,
    https://deck.gl/docs/api-reference/layers/scatterplot-layer)."""
    return pdk.Layer(
        "ScatterplotLayer", data=list(records), id="cases", get_position="position",
        get_fill_color="colour", get_line_color=[255, 255, 255], stroked=True,
        line_width_min_pixels=1, get_radius=3, radius_min_pixels=6, radius_max_pixels=16,
        pickable=True, billboard=True,
    )  # fmt: skip


def legend_rows() -> list[tuple[str, tuple[int, int, int]]]:
    """(label, colour) for the alert colours and the offline-device marker."""
    rows = [(f"告警 {SEVERITY_NAMES[s]}", SEVERITY_COLOURS[s]) for s in SEVERITY_COLOURS]
    return [*rows, ("离线设备 offline device", OFFLINE)]


def legend_html(rows: Sequence[tuple[str, tuple[int, int, int]]]) -> str:
    """The legend as one line of HTML: a coloured dot (``rgb(r, g, b)``) and its label per ``(label,
    colour)`` row, as ``legend_rows`` gives them. Labels are inserted as they are, not escaped: pass
    only the project's own labels."""
    return " ".join(
        f"<span style='background:rgb{c};padding:0 8px;margin-right:4px;border-radius:8px'>"
        f"&nbsp;</span>{label}"
        for label, c in rows
    )
