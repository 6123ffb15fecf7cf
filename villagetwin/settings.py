"""Settings of the command line itself: where the database, the broker and local state are."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devices.settings import MqttSettings, secrets_dir, with_password
from villagetwin.access import AccessSettings
from villagetwin.embedded import EmbeddedOptions


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VT_",
        env_nested_delimiter="__",
        extra="ignore",
        secrets_dir=secrets_dir(),
    )

    db_dsn: str = "postgresql://postgres@127.0.0.1:5432/villagetwin"
    # The password of db_dsn's role, from a secret file (vt_db_password); never a default.
    db_password: SecretStr | None = None
    # For a new database: TimescaleDB where the server has it (auto), or plain PostgreSQL 14+
    # (managed services, the embedded server); a migrated database keeps its own.
    db_backend: Literal["auto", "timescaledb", "postgres"] = "auto"
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
    # Set by `migrate` as the password of the ingester's database role, where needed.
    ingester_db_password: SecretStr | None = None
    # Set by `migrate` as the password of the rules worker's database role, where needed.
    rules_db_password: SecretStr | None = None
    # The demo's embedded default: what it starts when nothing answers (villagetwin/embedded.py).
    embedded: EmbeddedOptions = EmbeddedOptions()
    # Never start, stop, restart or reconfigure the machine's own PostgreSQL or Mosquitto.
    no_system_services: bool = False

    @model_validator(mode="after")
    def _password_into_dsn(self) -> AppSettings:
        self.db_dsn = with_password(self.db_dsn, self.db_password)
        return self
