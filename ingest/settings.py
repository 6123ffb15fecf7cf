"""The ingester's one settings object (``VT_`` environment variables, ``__`` for sections)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator

from devices.settings import ServiceSettings, TimeZoneName
from ingest.maintenance import RetentionPlan
from ingest.validate import Limits

DEFAULT_CREDENTIAL_KEY = "villagetwin-development-key"


class IngestOptions(BaseModel):
    # The persistent session's MQTT client id. With broker credentials it is the username
    # (the broker binds each account to the client id equal to its name); set it only to the
    # same value. Without credentials (development), "vt-ingester-1" unless set.
    client_id: str | None = None
    # With a group, several ingesters split one stream ($share/<group>/...).
    share_group: str | None = None
    # Scale-down: on SIGTERM leave the group first (unsubscribe, drain what the broker queued
    # for this session), so no share waits for an ingester that will not return. Off by
    # default: if every member left, the broker would drop what devices publish meanwhile.
    leave_share_on_stop: bool = False
    leave_drain_s: float = Field(default=20.0, gt=0)
    leave_quiet_ms: int = Field(default=500, ge=10)
    # Past one broker (ingest/amqp_source.py, with VT_AMQP_URL): the quorum queue the
    # ingesters share, and how many unacknowledged messages each may hold.
    amqp_queue: str = "vt.ingest"
    amqp_prefetch: int = Field(default=10_000, ge=1)
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
    max_age_days: int = Field(default=30, ge=1, le=36_500)
    # After a batch meets events already stored (redeliveries come in runs), batches go the
    # staging way, which skips duplicates without a failed copy first, for this long.
    staging_after_duplicates_s: float = Field(default=10.0, ge=0)
    registry_refresh_s: float = Field(default=30.0, gt=0)
    # A message from an unknown device reloads the registry at most this often (0: always).
    unknown_device_reload_s: float = Field(default=5.0, ge=0)
    db_retry_max_s: float = Field(default=10.0, gt=0)
    # On SIGTERM, how long the last batch may wait for the database before it is left
    # unacknowledged for the broker to redeliver; the process exits within this plus ~1 s
    # (under Docker's and systemd's 10 s stop timeouts at the default).
    shutdown_grace_s: float = Field(default=5.0, ge=0, le=60)
    # Unhealthy (/healthz 503, vt_writer_stalls) when a batch has waited this long for its
    # commit: a database that hangs, a lock held elsewhere, a writer stuck in a retry loop.
    stall_after_s: float = Field(default=30.0, gt=0)
    # A batch rolled back by a deadlock or serialisation failure is retried this many times,
    # after a jittered pause from conflict_backoff_ms doubling, before it waits like an outage.
    conflict_retries: int = Field(default=5, ge=0)
    conflict_backoff_ms: float = Field(default=50.0, ge=0)
    # What a dead letter keeps of a message over max_payload_bytes.
    oversized_prefix_bytes: int = Field(default=4096, ge=0)
    # Dead letters stored per device (one shared quota for unregistered senders) in each
    # window; beyond it they are counted (vt_dead_letters_suppressed) and one summary dead
    # letter with reason dead_letter_quota says how many, when the window ends.
    dead_letter_quota: int = Field(default=1000, ge=1)
    # Distinct values a metric label taken from device input (vt_bridge_notes' note: a vendor's
    # unmapped code) may have; later new values are counted under OVERFLOW_LABEL, so a device
    # sending ever new codes cannot grow the ingester's memory or the scraper's series.
    metric_label_limit: int = Field(default=200, ge=1)
    dead_letter_quota_window_s: float = Field(default=3600.0, gt=0)
    # Days to keep events, by kind; kinds not named keep retention_default_days.
    retention_days: dict[str, int] = {"heartbeat": 30}
    retention_default_days: int = Field(default=1095, ge=1)
    dead_letter_retention_days: int = Field(default=180, ge=1)
    compress_after_days: int = Field(default=7, ge=1)
    maintenance_interval_s: float = Field(default=3600.0, gt=0)
    # Plain PostgreSQL only: daily partitions kept ready this far ahead, and rows deleted per
    # transaction from the default partition.
    partitions_ahead_days: int = Field(default=3, ge=1)
    retention_batch_rows: int = Field(default=10_000, ge=1)
    # A bridged device that sends vendor heartbeats (Hikvision heartBeat, Dahua keep-alives,
    # ZKTeco polls, Frigate stats) and then goes silent this long is marked offline; checked
    # every quarter of it.
    bridge_silence_s: float = Field(default=900.0, gt=0)
    # Key for the keyed hashes that replace faces, cards and plates from vendor bridges: this
    # secret (references then carry credential_key_id), else the key file `villagetwin setup`
    # made (ingest/keys.py). Without a key other than the development one, bridges are not
    # ingested unless demo is on. Keep the key: a new one makes everyone look new.
    credential_key: SecretStr | None = None
    credential_key_id: str = ""
    credential_key_file: Path = Path(".state/credential.key")
    # Explicit demo mode: the public development key is accepted for vendor bridges.
    demo: bool = False
    # The village's time zone (IANA name): vendor times sent without a UTC offset are read in
    # it, unless the device's registry row names its own (`villagetwin devices bridge`).
    time_zone: TimeZoneName = "Asia/Shanghai"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=9108, ge=0, description="0 turns /metrics and /healthz off")

    def retention(self) -> RetentionPlan:
        """The retention settings as a ``RetentionPlan`` (days: default, per event type, dead
        letters)."""
        return RetentionPlan(
            self.retention_default_days, dict(self.retention_days), self.dead_letter_retention_days
        )

    def limits(self) -> Limits:
        """The judge's ``Limits`` from these settings: payload bytes, nesting depth, how far ahead
        (``max_future_s`` seconds) and how old (``max_age_days`` days) a device time may be, the
        oversized prefix kept (bytes), the credential key (UTF-8 bytes, empty when not set) and its
        id, and the village's time zone."""
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_depth=self.max_depth,
            max_future=timedelta(seconds=self.max_future_s),
            max_age=timedelta(days=self.max_age_days),
            oversized_prefix_bytes=self.oversized_prefix_bytes,
            credential_key=(
                self.credential_key.get_secret_value().encode() if self.credential_key else b""
            ),
            credential_key_id=self.credential_key_id,
            time_zone=self.time_zone,
        )


class IngestSettings(ServiceSettings):
    """The ingester's one settings object (see ServiceSettings for the environment and the
    secret files): ``VT_INGEST__<OPTION>``, ``VT_AMQP_URL``."""

    # RabbitMQ instead of MQTT for the ingester's side (amqp://user:pass@host:port/vhost).
    amqp_url: SecretStr | None = None
    ingest: IngestOptions = IngestOptions()

    @model_validator(mode="after")
    def _client_id_is_the_username(self) -> IngestSettings:
        username, chosen = self.mqtt.username, self.ingest.client_id
        if username and chosen and chosen != username:
            raise ValueError(
                f"VT_INGEST__CLIENT_ID={chosen!r} differs from VT_MQTT__USERNAME={username!r}:"
                " the broker binds each account to the client id equal to its username"
            )
        return self

    @property
    def client_id(self) -> str:
        """The ingester's MQTT client id (see IngestOptions.client_id)."""
        return self.ingest.client_id or self.mqtt.username or "vt-ingester-1"
