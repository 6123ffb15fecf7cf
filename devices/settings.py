"""Settings of the device side: how to reach the broker, and the simulator's knobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg.conninfo import make_conninfo
from pydantic import AfterValidator, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class MqttSettings(BaseModel):
    """A broker connection; shared by every component that speaks MQTT."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(default=30, ge=5)
    # 3.1.1 is the default: paho receives about twice as fast over it as over MQTT 5 here.
    protocol: Literal["3.1.1", "5"] = "3.1.1"


def iana_time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone Python knows ("Asia/Shanghai"); raises ValueError
    saying so otherwise (pydantic reports it as the setting's error)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
    return name


# A setting that holds a village's (or a device's) IANA time zone name.
TimeZoneName = Annotated[str, AfterValidator(iana_time_zone)]


def secrets_dir() -> Path | None:
    """Where secrets come as files, one per setting, named like its variable (``vt_db_password``,
    ``vt_mqtt__password``): Docker's ``/run/secrets``, or ``VT_SECRETS_DIR``; None if absent."""
    path = Path(os.environ.get("VT_SECRETS_DIR", "/run/secrets"))
    return path if path.is_dir() else None


def with_password(dsn: str, password: SecretStr | None) -> str:
    """The DSN (a libpq conninfo string or URI) with the password from a secret file, when
    there is one; unchanged otherwise."""
    return make_conninfo(dsn, password=password.get_secret_value()) if password else dsn


class ServiceSettings(BaseSettings):
    """What the long-running services (the ingester, the rules worker) read the same way:
    environment variables (``VT_``, nested with ``__``) and secrets as files, one per setting
    (``secrets_dir``: ``vt_db_password``, ``vt_mqtt__password`` …), nested ones too; the database
    password from its file goes into ``db_dsn``. Subclasses add their own sections."""

    model_config = SettingsConfigDict(
        env_prefix="VT_",
        env_nested_delimiter="__",
        extra="ignore",
        secrets_dir=secrets_dir(),
        secrets_nested_delimiter="__",
    )

    db_dsn: str = "postgresql://postgres@127.0.0.1:5432/villagetwin"
    # The database password, from a secret file (vt_db_password); never a default.
    db_password: SecretStr | None = None
    mqtt: MqttSettings = MqttSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files of nested settings too: vt_mqtt__password, vt_ingest__credential_key.
        nested = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, nested

    @model_validator(mode="after")
    def _password_into_dsn(self) -> Self:
        self.db_dsn = with_password(self.db_dsn, self.db_password)
        return self


class SimulatorSettings(BaseSettings):
    """``VT_MQTT__HOST``, ``VT_SIMULATOR__RATE`` … ; built once in the command and passed down."""

    model_config = SettingsConfigDict(env_prefix="VT_", env_nested_delimiter="__", extra="ignore")

    mqtt: MqttSettings = MqttSettings()
    simulator_client_id: str = "vt-simulator"
    heartbeat_interval_s: float = Field(default=60.0, gt=0)
    # The village's zone: the day simulator's hours (people up at 8, home by 19) are its
    # local hours, as the rules' daytime windows are (VT_TIME_ZONE).
    time_zone: TimeZoneName = Field(default="Asia/Shanghai", validation_alias="VT_TIME_ZONE")
