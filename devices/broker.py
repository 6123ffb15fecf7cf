"""Mosquitto's configuration, rendered from one source for local runs, tests and Docker.

The limits matter more than they look: Mosquitto's defaults (20 messages in flight, 1000
queued per client) make a stopped ingester silently lose everything past the thousandth
message. Here a persistent ingester session may queue a million messages, and the inflight
window is what bounds the ingester's memory, since the ingester acknowledges a message only
after it has committed it. The window must also hold several of the ingester's batches (one
committing, one waiting, one filling): at 2,000 the broker stopped sending while each batch
committed, and the ingester idled half the time.

What one client can make the broker hold is bounded too (docs/security.md): a packet may not
exceed ``max_packet_bytes`` (twice the ingester's 256 KiB payload limit: between the two the
ingester dead-letters it as oversized; a bigger packet disconnects its sender), and each
client's queue is bounded in messages and in payload bytes (``max_queued_bytes``, sized to
the host by ``queued_bytes_for_host``). What the broker
drops past those bounds is counted in ``$SYS/broker/publish/messages/dropped``, which the
ingester exports as a metric.

With ``dynsec_file`` set, clients authenticate against the dynamic-security plugin's file
(devices/provisioning.py generates it from the registry); with ``tls_port`` set, a TLS
listener serves devices (docs/security.md says how to put a real certificate there).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path, PurePath

# Debian's package; the eclipse-mosquitto image has it in /usr/lib.
_DYNSEC_PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)


def dynsec_plugin() -> PurePath:
    """Where this machine's Mosquitto keeps its dynamic-security plugin (the first match of
    Debian's and the eclipse-mosquitto image's paths). Raises FileNotFoundError when there is
    none."""
    for pattern in _DYNSEC_PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return PurePath(found[0])
    raise FileNotFoundError("mosquitto_dynamic_security.so not found: install Debian's mosquitto")


def queued_bytes_for_host(memory_bytes: int, share: float = 0.25, sessions: int = 2) -> int:
    """The payload bytes one client's queue may hold: ``share`` of the host's memory, split
    among ``sessions`` persistent ingester sessions that may queue at once. The broker holds
    about 2.6x the payload bytes in memory for small events (measured: docs/security.md), which
    the default share of a quarter leaves room for. Raises ValueError for memory not above 0,
    a share outside (0, 1] or fewer than one session."""
    if memory_bytes <= 0 or not 0 < share <= 1 or sessions < 1:
        raise ValueError("memory, share (0..1] and sessions must be positive")
    return int(memory_bytes * share / sessions)


def host_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemTotal of this host, in bytes (``/proc/meminfo`` gives kB, i.e. KiB). Raises
    ValueError when the file has no MemTotal line, OSError when it cannot be read."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no MemTotal in {meminfo}")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    port: int | None = 1883  # None: no plain listener (devices reach the broker over TLS only)
    bind: str = "127.0.0.1"
    persistence_dir: PurePath | None = None
    pid_file: PurePath | None = None
    log_file: PurePath | None = None  # None: log to stdout (containers)
    # The dynamic-security plugin's file: authentication, client ids and ACLs.
    dynsec_file: PurePath | None = None
    dynsec_plugin: PurePath | None = None  # None: found on this machine
    # TLS for devices: a listener on tls_port with this certificate and key.
    tls_port: int | None = None
    tls_bind: str | None = None  # None: as bind
    tls_cert: PurePath | None = None
    tls_key: PurePath | None = None
    max_inflight_messages: int = 10_000
    max_queued_messages: int = 1_000_000
    # Payload bytes queued per client; 0 is no bound (tests of other things only).
    max_queued_bytes: int = 2 * 1024**3
    # Twice the ingester's payload limit (256 KiB): a message up to here reaches the ingester,
    # which dead-letters it as oversized where an operator sees it; a bigger packet costs its
    # sender the connection (the broker's log names the client) and is never stored.
    max_packet_bytes: int = 512 * 1024
    autosave_interval_s: int = 30
    sys_interval_s: int = 10  # how often $SYS counters are published
    # Mosquitto started as root switches to this user (its default: "mosquitto"). Local runs
    # keep the invoking user, so the broker can write where that user can.
    user: str | None = None


def render(config: BrokerConfig) -> str:
    """The text of a ``mosquitto.conf`` for ``config`` (directives: mosquitto.conf(5),
    https://mosquitto.org/man/mosquitto-conf-5.html), newline-terminated. Ports are TCP ports,
    ``autosave_interval_s`` and ``sys_interval_s`` seconds, ``max_queued_bytes`` and
    ``max_packet_bytes`` bytes.

    Raises ValueError when a TLS port is set without ``tls_cert`` and ``tls_key``, and
    FileNotFoundError (from ``dynsec_plugin``) when ``dynsec_file`` is set, ``dynsec_plugin`` is
    not, and this machine has no dynamic-security plugin."""
    anonymous = "false" if config.dynsec_file else "true"
    lines = [
        "# Generated by villagetwin (devices/broker.py); edit that, not this file.",
        "per_listener_settings false",
    ]
    if config.port is not None:
        lines.append(f"listener {config.port} {config.bind}")
    if config.tls_port is not None:
        if not (config.tls_cert and config.tls_key):
            raise ValueError("a TLS listener needs tls_cert and tls_key")
        lines += [
            f"listener {config.tls_port} {config.tls_bind or config.bind}",
            f"certfile {config.tls_cert}",
            f"keyfile {config.tls_key}",
            "tls_version tlsv1.2",
        ]
    lines.append(f"allow_anonymous {anonymous}")
    if config.user:
        lines.append(f"user {config.user}")
    if config.dynsec_file:
        lines += [
            f"plugin {config.dynsec_plugin or dynsec_plugin()}",
            f"plugin_opt_config_file {config.dynsec_file}",
        ]
    if config.persistence_dir:
        lines += [
            "persistence true",
            f"persistence_location {config.persistence_dir}/",
            f"autosave_interval {config.autosave_interval_s}",
        ]
    else:
        lines.append("persistence false")
    if config.pid_file:
        lines.append(f"pid_file {config.pid_file}")
    lines += [
        "# Ingesters hold a persistent session: keep what arrives while one is down.",
        "persistent_client_expiration 14d",
        f"max_inflight_messages {config.max_inflight_messages}",
        f"max_queued_messages {config.max_queued_messages}",
        f"max_queued_bytes {config.max_queued_bytes}",
        f"max_packet_size {config.max_packet_bytes}",
        f"sys_interval {config.sys_interval_s}",
        "# Acks and small events go out at once rather than waiting to fill a segment.",
        "set_tcp_nodelay true",
        f"log_dest {'file ' + str(config.log_file) if config.log_file else 'stdout'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]
    return "\n".join(lines) + "\n"


# Production: devices reach the broker over TLS only (8883), authenticated by the credentials
# of `villagetwin devices add`; the plain listener stays on the compose network for the
# ingesters. docker-compose mounts the directory holding the registry's generated
# dynamic-security file and the certificate (VT_STATE_DIR/mosquitto by default). The queue
# bound assumes a host of 8 GiB: regenerate for yours (docs/security.md).
DOCKER = BrokerConfig(
    port=1883,
    bind="0.0.0.0",
    persistence_dir=PurePath("/mosquitto/data"),
    dynsec_file=PurePath("/mosquitto/config/auth/dynamic-security.json"),
    dynsec_plugin=PurePath("/usr/lib/mosquitto_dynamic_security.so"),
    tls_port=8883,
    tls_cert=PurePath("/mosquitto/config/auth/tls/server.crt"),
    tls_key=PurePath("/mosquitto/config/auth/tls/server.key"),
    max_queued_bytes=queued_bytes_for_host(8 * 1024**3),
)
