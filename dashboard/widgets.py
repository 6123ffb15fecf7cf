"""Widgets and loaders shared by the dashboard's pages (Streamlit edge): the village as the
signed-in user may see it, a plain map with one layer, a building's panel, masked names and
the audited reveal form. Queries stay in dashboard/queries.py, writes in dashboard/actions.py."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

import geopandas as gpd
import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, fmt, queries, session, villages
from dashboard.safe import md
from dashboard.settings import DashboardSettings
from mapping import db as village_db, layers


def village(dsn: str, token: str = "") -> dict[str, Any]:
    """What the user may see of the village picked in the sidebar (villages.pick; every
    village they see for the whole district): buildings, grid_cells, roads, pois, objects,
    organisations. Cached per session token and village, never shared."""
    return _village(dsn, token, villages.current())


@st.cache_data(ttl=300, show_spinner="正在加载村庄 Loading the village…")
def _village(dsn: str, token: str, key: str | None) -> dict[str, Any]:
    conn = session.conn(dsn)
    return {
        "buildings": village_db.read_buildings(conn, key),
        "grid_cells": village_db.read_grid_cells(conn, key),
        "roads": village_db.read_roads(conn, key),
        "pois": village_db.read_pois(conn, key),
        "objects": village_db.read_objects(conn, key),
        "organisations": village_db.read_organisations(conn, key),
    }


def local_minutes(times: pd.Series, time_zone: str, missing: str = "—") -> pd.Series:
    """timestamptz values as local time in ``time_zone`` (an IANA name: the village's,
    ``DashboardSettings.time_zone``) to the minute, ``2026-11-30 04:02``, ``missing`` where
    there is none."""
    local = pd.to_datetime(times, utc=True).dt.tz_convert(time_zone)
    return local.dt.strftime("%Y-%m-%d %H:%M").fillna(missing)


def or_dash(values: pd.Series) -> pd.Series:
    """Values as text, ``—`` where there is none (None, NaN/NaT, empty): never ``None``."""
    return values.map(lambda v: "—" if v is None or v != v or v == "" else str(v))


def url_index(name: str, options: list[str]) -> int | None:
    """The position in ``options`` of the URL's ``?name=`` value (a deep link such as
    ``?building=LH00150``), None when the URL has none or one not among the options: a
    building the user may not see is not among them (row-level security), so such a link
    opens nothing of it."""
    wanted = st.query_params.get(name)
    return options.index(wanted) if wanted in options else None


def to_url(name: str, value: str | None) -> None:
    """Keeps ``value`` in the URL as ``?name=value`` (None removes it), so that the page's
    state can be shared as a link and survives a reload."""
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def table(shown: pd.DataFrame, empty: str, key: str | None = None) -> None:
    """A table as fmt.table gives it, full width; with no row, ``empty`` said in words
    ("暂无工单 No cases."), where Streamlit would draw an English "empty"."""
    if shown.empty:
        st.caption(empty)
    else:
        st.dataframe(shown, hide_index=True, width="stretch", key=key)


def mask_text(name: object) -> str:
    """A name as the masked views show names: the first character, then stars."""
    text = str(name or "")
    return text[:1] + "*" * max(len(text) - 1, 1) if text else "—"


def legend(rows: Sequence[tuple[str, tuple[int, int, int]]]) -> None:
    """Legend rows (label, RGB) under a map, as colour swatches and their labels, in one
    line that wraps; labels are escaped (they are ours, but never HTML all the same)."""
    items = " ".join(
        f"<span style='white-space:nowrap;margin-right:8px'><span style='background:"
        f"rgb{tuple(colour)};padding:0 8px;margin-right:4px;border-radius:3px'>&nbsp;</span>"
        f"{escape(label)}</span>"
        for label, colour in rows
    )
    st.markdown(f"<div style='font-size:12px'>{items}</div>", unsafe_allow_html=True)


def plain_map(settings: DashboardSettings, village: dict[str, Any], layer: Any, key: str) -> None:
    """Uncoloured buildings with one layer over them, framed on the village."""
    drawn = [layers.buildings_layer(layers.building_records(village["buildings"])), layer]
    deck = layers.deck(drawn, layers.view_of(village["buildings"]), settings.base_map_url)
    st.pydeck_chart(deck, height=480, key=key)


def building_panel(
    settings: DashboardSettings, buildings: gpd.GeoDataFrame, building_id: str
) -> None:
    """A building's address, storeys, masked landlord, grid and its last 7 days' events."""
    row = buildings.loc[buildings.building_id == building_id].iloc[0]
    st.subheader(md(f"{row.address} · {building_id}"))
    st.markdown(
        md(
            f"{int(row.storeys)} 层 storeys · 业主 landlord: {mask_text(row.landlord)}"
            f" · 网格 grid: {row.grid_code or '—'}"
        )
    )
    events = queries.building_events(session.conn(settings.reader_dsn()), building_id)
    if events.empty:
        st.info("此楼栋近7天暂无事件 No events for this building in the last 7 days.")
    else:
        st.dataframe(fmt.table(events, settings.time_zone), hide_index=True, width="stretch")


def reveal_form(conn: psycopg.Connection, registered: pd.DataFrame, row: Any) -> None:
    """One person (a tenant or the landlord), a reason category and a reason of real content;
    the database checks all of it, the grid and the hourly limit, and audits before it
    returns anything."""
    people = {p: f"{p} · 租户 tenant" for p in registered.person_id}
    landlord = getattr(row, "landlord_id", None)
    if isinstance(landlord, str) and landlord:
        people[landlord] = f"{landlord} · 业主 landlord"
    if not people:
        st.caption("无租户 No tenants.")
        return
    person = st.selectbox("人员 Person", list(people), format_func=people.__getitem__,
                          key="reveal-person")  # fmt: skip
    categories = queries.reveal_categories(conn)
    category = st.selectbox("理由类别 Reason category", list(categories),
                            format_func=categories.__getitem__, key="reveal-category")  # fmt: skip
    reason = st.text_input("理由 Reason (required)", key="reveal-reason")
    if st.button("查看 Reveal", key="reveal"):
        try:
            found = actions.reveal_person(conn, str(person), str(category), reason)
        except (psycopg.errors.RaiseException, psycopg.errors.InsufficientPrivilege) as exc:
            st.error(f"拒绝 Refused: {exc.diag.message_primary}")
            return
        if found:
            st.success(md(f"{found[0]} · {found[1]} · {found[2]} (已记录审计 audited)"))
