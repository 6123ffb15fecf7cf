"""Settings of the command line itself: where the database, the broker and local state are."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from devices.settings import MqttSettings
from villagetwin.access import AccessSettings


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VT_", env_nested_delimiter="__", extra="ignore")

    db_dsn: str = "postgresql://postgres@127.0.0.1:5432/villagetwin"
    mqtt: MqttSettings = MqttSettings()
    # Broker data, generated GeoPackages and logs of local runs.
    state_dir: Path = Path(".state")
    # The local broker requires device credentials and applies the ACL (see `devices add`).
    broker_auth: bool = False
    # The local broker's TLS listener for devices (certificate made by `setup`); 0: none.
    broker_tls_port: int = 8883
    # Set by `migrate` as the password of the dashboard's database role, where needed.
    dashboard_db_password: SecretStr | None = None
    # Sign-in throttling, reveal limits, password policy and retention (villagetwin/access.py).
    access: AccessSettings = AccessSettings()
