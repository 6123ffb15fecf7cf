"""The dashboard's pages as declarations: each page module under ``dashboard/pages/`` holds a
``PAGE = Page(...)`` beside its ``render(settings, user)``; ``dashboard/app.py`` builds the
navigation from them (``st.navigation``), showing each user only the pages of their role."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the navigation.

    ``title``: the navigation label, Chinese first with English beside ("总览 Overview");
    ``url_path``: the page's path in the URL (``/overview``), which also tells Streamlit's
    pages apart; ``roles``: the roles (auth.ROLES) that see the page; ``icon``: an emoji or a
    ``:material/name:`` icon; ``default``: the page opened at ``/``."""

    title: str
    url_path: str
    roles: frozenset[str]
    icon: str | None = None
    default: bool = False

    def shown_to(self, role: str) -> bool:
        return role in self.roles


ALL = frozenset({"admin", "manager", "inspector"})
OFFICE = frozenset({"admin", "manager"})
ADMIN = frozenset({"admin"})
