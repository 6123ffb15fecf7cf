"""The dashboard's one settings object."""

from __future__ import annotations

from psycopg.conninfo import make_conninfo
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VT_", env_nested_delimiter="__", extra="ignore")

    db_dsn: str = "postgresql://postgres@127.0.0.1:5432/villagetwin"
    # The dashboard's own database role, which reads personal data only through masked views;
    # by default the same server and database as db_dsn, as user vt_dashboard.
    dashboard_dsn: str | None = None
    session_timeout_minutes: float = Field(default=30, gt=0)
    observation_days: int = Field(default=7, ge=1)
    # A map style served on the intranet; none by default, so nothing is fetched from outside.
    base_map_url: str | None = None
    refresh_s: float = Field(default=5.0, gt=0)
    event_window_minutes: int = Field(default=60, ge=1)
    max_event_points: int = Field(default=2000, ge=1)
    # Connections (dashboard/pool.py): at most this many open per DSN, shared by all sessions.
    db_pool_size: int = Field(default=10, ge=1)
    db_pool_idle_s: float = Field(default=300.0, gt=0)  # an idle pooled connection is closed
    db_lend_timeout_s: float = Field(default=3.0, gt=0)  # waiting for a free connection
    db_lend_attempts: int = Field(default=2, ge=1)  # tenacity, jittered exponential waits

    def reader_dsn(self) -> str:
        return self.dashboard_dsn or make_conninfo(self.db_dsn, user="vt_dashboard")
