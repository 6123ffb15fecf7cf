"""The village picker and the district's key figures (issue 16: several villages on one
platform). Pure functions over ``queries.village_figures``' frame, and the one Streamlit
widget (``pick``) that keeps the choice in the session."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.queries import VILLAGE_FIGURES

# The figures as the district table shows them: Chinese first, English beside.
FIGURE_LABELS = {
    "name": "村 Village",
    "buildings": "楼栋 Buildings",
    "units": "出租单元 Rental units",
    "events_today": "今日事件 Events today",
    "open_alerts": "未处理告警 Open alerts",
    "offline_devices": "离线设备 Offline devices",
    "time_zone": "时区 Time zone",
}
DISTRICT = "全区 District"
PICKED = "village"  # the session state key of the picked village (a key, or None)


def options(figures: pd.DataFrame) -> list[str | None]:
    """The picker's choices: the whole district (None) first when the session sees more than
    one village, then each village's key in the frame's order (by name)."""
    keys: list[str | None] = list(figures.village_key)
    return [None, *keys] if len(keys) > 1 else keys


def label(key: str | None, figures: pd.DataFrame) -> str:
    """What the picker shows for ``key``: the village's name, or for None the district with
    its number of villages."""
    if key is None:
        return f"{DISTRICT} ({len(figures)})"
    names = dict(zip(figures.village_key, figures.name, strict=True))
    return str(names.get(key, key))


def district_table(figures: pd.DataFrame) -> pd.DataFrame:
    """The district overview: one row per village with its key figures under their
    bilingual headers (FIGURE_LABELS), and a total row when there are several villages.
    ``figures``: queries.village_figures' columns (VILLAGE_FIGURES)."""
    missing = set(VILLAGE_FIGURES) - set(figures.columns)
    if missing:
        raise ValueError(f"village figures without {', '.join(sorted(missing))}")
    table = figures[list(FIGURE_LABELS)].copy()
    if len(table) > 1:
        counts = [c for c in FIGURE_LABELS if c not in {"name", "time_zone"}]
        total = {c: int(table[c].sum()) for c in counts}
        table = pd.concat(
            [table, pd.DataFrame([{"name": "合计 Total", "time_zone": "", **total}])],
            ignore_index=True,
        )
    return table.rename(columns=FIGURE_LABELS)


def current() -> str | None:
    """The village picked in this session (a key; None: the whole district, or not picked)."""
    picked = st.session_state.get(PICKED)
    return picked if isinstance(picked, str) else None


def pick(figures: pd.DataFrame) -> str | None:
    """The sidebar's village picker; returns the picked village's key (None: the whole
    district). A choice that is no longer offered (another user, a village removed) falls
    back to the district. A session that sees one village (or none) has nothing to pick: its
    village is named in a caption and None is returned, so the pages read everything the
    session sees (row-level security keeps it to that village), devices and places not yet
    given a village included."""
    choices = options(figures)
    if len(choices) <= 1:
        st.session_state[PICKED] = None
        if choices:
            st.sidebar.caption(f"村 Village: {label(choices[0], figures)}")
        return None
    if st.session_state.get(PICKED) not in choices:
        st.session_state[PICKED] = None
    picked: str | None = st.sidebar.selectbox(
        "村 Village", choices, key=PICKED, format_func=lambda k: label(k, figures)
    )
    return picked
