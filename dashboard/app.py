"""The dashboard (Streamlit): sign-in, then the navigation built from the pages' declarations.

Run with ``villagetwin dashboard`` (dashboard/serve.py serving dashboard/entry/app.py, which
calls ``main``). Each page is a module under ``dashboard/pages/`` with a
``PAGE = nav.Page(...)`` (title, url path, the roles that see it, icon) beside its
``render(settings, user)``; ``PAGES`` below gives their order. Shared widgets are in
``dashboard/widgets.py``, the signed-in session in ``dashboard/session.py``, every read query in
``dashboard/queries.py`` and every write in ``dashboard/actions.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import ModuleType

import psycopg
import streamlit as st

from dashboard import fmt, nav, pool, queries, session, villages
from dashboard.auth import User
from dashboard.pages import (
    alarms,
    audit,
    cases,
    devices,
    events,
    incidents,
    inspector,
    overview,
    quality,
    replay,
)
from dashboard.safe import md
from dashboard.settings import DashboardSettings

# The navigation's order; each module declares who sees it (PAGE.roles).
PAGES: tuple[ModuleType, ...] = (
    overview, alarms, inspector, replay, events, devices, quality, incidents, cases, audit,
)  # fmt: skip


def _bound(module: ModuleType, settings: DashboardSettings, user: User) -> Callable[[], None]:
    def run() -> None:
        module.render(settings, user)

    run.__name__ = run.__qualname__ = module.PAGE.url_path  # Streamlit names a page's run so
    return run


def navigation(settings: DashboardSettings, user: User) -> list[st.Page]:
    """The pages ``user``'s role sees, as Streamlit pages, in PAGES' order."""
    shown = []
    for module in PAGES:
        page: nav.Page = module.PAGE
        if page.shown_to(user.role):
            run = _bound(module, settings, user)
            shown.append(
                st.Page(
                    run,
                    title=page.title,
                    url_path=page.url_path,
                    icon=page.icon,
                    default=page.default,
                )
            )
    return shown


@pool.returns_lent_connections
def main() -> None:
    settings = DashboardSettings()
    st.set_page_config(page_title="villagetwin · 城中村三维地图", page_icon="🏘", layout="wide")
    user = session.signed_in(settings)
    if user is None:
        return
    st.sidebar.caption(md(f"{user.username} · {fmt.code('role', user.role)}"))
    if st.sidebar.button("退出 Sign out"):
        session.sign_out(settings)
    # The village picker: the villages this user sees (a page says it when the database fails).
    with contextlib.suppress(psycopg.OperationalError):
        villages.pick(queries.village_figures(session.conn(settings.reader_dsn())))
    st.navigation(navigation(settings, user)).run()


if __name__ == "__main__":
    raise RuntimeError(
        "Run dashboard/entry/app.py (villagetwin dashboard), not dashboard/app.py: Streamlit"
        " would take dashboard/pages/ for its own file-per-page navigation."
    )
