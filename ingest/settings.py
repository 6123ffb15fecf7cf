"""The ingester's one settings object (``VT_`` environment variables, ``__`` for sections)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devices.settings import MqttSettings
from ingest.maintenance import RetentionPlan
from ingest.validate import Limits

DEFAULT_CREDENTIAL_KEY = "villagetwin-development-key"


class IngestOptions(BaseModel):
    client_id: str = "vt-ingester-1"
    # With a group, several ingesters split one stream ($share/<group>/...).
    share_group: str | None = None
    batch_max_events: int = Field(default=10_000, ge=1)
    batch_max_wait_ms: int = Field(default=50, ge=1)
    # Threads committing batches, each on its own database connection: while the server
    # works through one batch, the next is sent (bench/ingest_bench.py measures it).
    writers: int = Field(default=2, ge=1, le=16)
    # Received but not yet committed; the broker's inflight window bounds it too.
    queue_max: int = Field(default=20_000, ge=1)
    queue_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    max_depth: int = Field(default=32, ge=2)
    max_future_s: int = Field(default=300, ge=0)
    max_age_days: int = Field(default=30, ge=1)
    # After a batch meets events already stored (redeliveries come in runs), batches go the
    # staging way, which skips duplicates without a failed copy first, for this long.
    staging_after_duplicates_s: float = Field(default=10.0, ge=0)
    registry_refresh_s: float = Field(default=30.0, gt=0)
    db_retry_max_s: float = Field(default=10.0, gt=0)
    # On SIGTERM, how long the last batch may wait for the database before it is left
    # unacknowledged for the broker to redeliver.
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    # Days to keep events, by kind; kinds not named keep retention_default_days.
    retention_days: dict[str, int] = {"heartbeat": 30}
    retention_default_days: int = Field(default=1095, ge=1)
    dead_letter_retention_days: int = Field(default=180, ge=1)
    compress_after_days: int = Field(default=7, ge=1)
    maintenance_interval_s: float = Field(default=3600.0, gt=0)
    # A bridged device that sends vendor heartbeats (Hikvision heartBeat, Dahua keep-alives,
    # ZKTeco polls, Frigate stats) and then goes silent this long is marked offline; checked
    # every quarter of it.
    bridge_silence_s: float = Field(default=900.0, gt=0)
    # Key for the keyed hashes that replace faces, cards and plates from vendor bridges;
    # set your own, and keep it: changing it makes everyone look new.
    credential_key: SecretStr = SecretStr(DEFAULT_CREDENTIAL_KEY)
    # The village's time zone (IANA name): vendor times sent without a UTC offset are read in
    # it, unless the device's registry row names its own (`villagetwin devices bridge`).
    time_zone: str = "Asia/Shanghai"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=9108, ge=0, description="0 turns /metrics and /healthz off")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
        return value

    def retention(self) -> RetentionPlan:
        return RetentionPlan(
            self.retention_default_days, dict(self.retention_days), self.dead_letter_retention_days
        )

    def limits(self) -> Limits:
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_depth=self.max_depth,
            max_future=timedelta(seconds=self.max_future_s),
            max_age=timedelta(days=self.max_age_days),
            credential_key=self.credential_key.get_secret_value().encode(),
            time_zone=self.time_zone,
        )


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VT_", env_nested_delimiter="__", extra="ignore")

    db_dsn: str = "postgresql://postgres@127.0.0.1:5432/villagetwin"
    mqtt: MqttSettings = MqttSettings()
    ingest: IngestOptions = IngestOptions()
