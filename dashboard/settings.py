"""The dashboard's one settings object."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from psycopg.conninfo import make_conninfo
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devices.settings import TimeZoneName, secrets_dir


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VT_",
        env_nested_delimiter="__",
        extra="ignore",
        secrets_dir=secrets_dir(),
    )

    db_dsn: str = "postgresql://postgres@127.0.0.1:5432/villagetwin"
    # Passwords from secret files (vt_db_password, vt_dashboard_db_password); no defaults.
    db_password: SecretStr | None = None
    dashboard_db_password: SecretStr | None = None
    # The dashboard's own database role, which reads personal data only through masked views;
    # by default the same server and database as db_dsn, as user vt_dashboard.
    dashboard_dsn: str | None = None
    # A streaming replica of the same database for the pages' reads (VT_REPLICA_DSN), as
    # vt_dashboard; the primary keeps sign-in, reveals and writes. Replicas lag by a moment.
    replica_dsn: str | None = None
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
    # The village's time zone (IANA name; VT_TIME_ZONE, as the day simulator's): times and
    # the dates of records are shown in it; the database sessions run in it (current_date
    # is the village's date; dashboard/session.py).
    time_zone: TimeZoneName = Field(default="Asia/Shanghai", validation_alias="VT_TIME_ZONE")
    # The inspection report's PDF font (dashboard/report_pdf.py): CJK glyphs, TrueType or
    # OpenType, a collection's face by index (Debian's fonts-noto-cjk: 2 is Simplified Chinese).
    report_font: Path = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
    report_font_bold: Path | None = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
    report_font_index: int = Field(default=2, ge=0)
    # The sign-in cookie's Secure attribute (dashboard/cookie.py). Browsers keep Secure cookies
    # on https and on http://localhost or 127.0.0.1; turn it off only for plain http elsewhere.
    cookie_secure: bool = True

    def zone(self) -> ZoneInfo:
        """The village's time zone."""
        return ZoneInfo(self.time_zone)

    def writer_dsn(self) -> str:
        """The primary, as vt_dashboard: sign-in, reveals and every write."""
        dsn = self.dashboard_dsn or make_conninfo(self.db_dsn, user="vt_dashboard")
        if self.dashboard_db_password:
            dsn = make_conninfo(dsn, password=self.dashboard_db_password.get_secret_value())
        return dsn

    def reader_dsn(self) -> str:
        """Where the pages' reads go: the read replica when one is set, else the primary."""
        if not self.replica_dsn:
            return self.writer_dsn()
        dsn = make_conninfo(self.replica_dsn, user="vt_dashboard")
        if self.dashboard_db_password:
            dsn = make_conninfo(dsn, password=self.dashboard_db_password.get_secret_value())
        return dsn

    @model_validator(mode="after")
    def _password_into_dsn(self) -> DashboardSettings:
        if self.db_password:
            self.db_dsn = make_conninfo(self.db_dsn, password=self.db_password.get_secret_value())
        return self
