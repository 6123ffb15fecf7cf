"""Local services for development and CI: PostgreSQL with TimescaleDB preloaded, the
project's own Mosquitto, and the database. Every step checks first and does nothing when
things are already as they should be, so a second run takes about a second."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devices.broker import BrokerConfig, host_memory_bytes, queued_bytes_for_host, render

Log = Callable[[str], None]


class SetupError(RuntimeError):
    pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.1)
    return False


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


# --- PostgreSQL -----------------------------------------------------------------------------


def admin_dsn_for(dsn: str) -> str:
    """The same server, the maintenance database."""
    return make_conninfo(dsn, dbname="postgres")


def ensure_timescaledb_preloaded(admin_dsn: str, log: Log) -> None:
    """TimescaleDB must be in shared_preload_libraries; if it is not, add it and restart the
    local cluster (the only way PostgreSQL loads a preload library)."""
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SHOW shared_preload_libraries").fetchone()
            preload = row[0] if row else ""
            if "timescaledb" in preload:
                return
            version_row = conn.execute("SHOW server_version_num").fetchone()
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
            if not available:
                raise SetupError(
                    "the TimescaleDB extension is not installed for this PostgreSQL server;"
                    " run scripts/install-system.sh (or `make setup`)"
                )
            libraries = ", ".join(x for x in [preload.strip(), "timescaledb"] if x)
            conn.execute(
                sql.SQL("ALTER SYSTEM SET shared_preload_libraries = {}").format(
                    sql.Literal(libraries)
                )
            )
    except psycopg.OperationalError as exc:
        raise SetupError(f"cannot reach PostgreSQL ({exc}); is the server running?") from exc
    major = int(version_row[0]) // 10000 if version_row else 15
    log(f"adding timescaledb to shared_preload_libraries and restarting PostgreSQL {major}")
    if not shutil.which("pg_ctlcluster"):
        raise SetupError("restart PostgreSQL by hand to load timescaledb (no pg_ctlcluster here)")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", str(major), "main", "restart"], check=True
    )
    params = conninfo_to_dict(admin_dsn)
    host, port = str(params.get("host", "127.0.0.1")), int(params.get("port", 5432) or 5432)
    if not wait_for_port(host, port, 30):
        raise SetupError("PostgreSQL did not come back within 30 s after the restart")


def ensure_database(dsn: str, log: Log) -> None:
    name = conninfo_to_dict(dsn).get("dbname")
    if not name:
        raise SetupError(f"the database DSN names no database: {dsn}")
    with psycopg.connect(admin_dsn_for(dsn), autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        log(f"creating database {name}")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))


# --- Mosquitto ------------------------------------------------------------------------------


def broker_paths(state_dir: Path) -> dict[str, Path]:
    base = state_dir.resolve() / "mosquitto"
    return {
        "dir": base,
        "conf": base / "mosquitto.conf",
        "pid": base / "mosquitto.pid",
        "log": base / "mosquitto.log",
        "data": base / "data",
    }


def local_user() -> str:
    """The user a local broker runs as: the one running this command."""
    return pwd.getpwuid(os.geteuid()).pw_name


def start_broker(
    state_dir: Path,
    host: str,
    port: int,
    log: Log,
    dynsec: Path | None = None,
    tls: tuple[int, Path, Path] | None = None,
) -> Path:
    """Runs Mosquitto with the project's config on ``port``: with ``dynsec`` (the registry's
    dynamic-security file) it requires credentials; with ``tls`` (port, certificate, key) it
    also serves TLS. The machine's own Mosquitto, started with Debian's defaults (1000 queued
    messages per client), is stopped if it holds the port: those defaults drop messages for a
    paused ingester."""
    paths = broker_paths(state_dir)
    paths["data"].mkdir(parents=True, exist_ok=True)
    config = BrokerConfig(
        port=port,
        bind=host,
        persistence_dir=paths["data"],
        pid_file=paths["pid"],
        log_file=paths["log"],
        user=local_user(),
        dynsec_file=dynsec,
        tls_port=tls[0] if tls else None,
        tls_cert=tls[1] if tls else None,
        tls_key=tls[2] if tls else None,
        max_queued_bytes=queued_bytes_for_host(host_memory_bytes()),
    )
    text = render(config)
    changed = not paths["conf"].exists() or paths["conf"].read_text() != text
    paths["conf"].write_text(text)
    ours = _pid_alive(paths["pid"])
    if ours and not changed and port_open(host, port):
        return paths["conf"]
    if ours:
        log("restarting the project's Mosquitto with its new config")
        os.kill(ours, signal.SIGTERM)
        _wait_gone(ours)
    if port_open(host, port):
        for pid, why in _replaceable_brokers(port):
            log(f"stopping {why} (pid {pid}) to serve port {port} with the project's config")
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid)
    if port_open(host, port):
        raise SetupError(
            f"port {port} is taken by a process that is not a Mosquitto this project may"
            " replace; set VT_MQTT__PORT to another port"
        )
    if not shutil.which("mosquitto"):
        raise SetupError("mosquitto is not installed; run scripts/install-system.sh")
    subprocess.run(["mosquitto", "-d", "-c", str(paths["conf"])], check=True)
    if not wait_for_port(host, port, 10):
        raise SetupError(f"Mosquitto did not start; see {paths['log']}")
    log(f"Mosquitto listening on {host}:{port} (config {paths['conf']})")
    return paths["conf"]


def _replaceable_brokers(port: int) -> list[tuple[int, str]]:
    """Mosquitto processes that may give way: the machine's default one, and a broker of this
    project started from another checkout on the same port."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"mosquitto") or b"-c" not in argv:
            continue
        pid = int(cmdline.parent.name)
        conf = Path(os.fsdecode(argv[argv.index(b"-c") + 1]))
        if not conf.is_absolute():
            conf = Path(f"/proc/{pid}/cwd") / conf
        try:
            text = conf.read_text()
        except OSError:
            continue
        if str(conf) == "/etc/mosquitto/mosquitto.conf" and f"listener {port}" in text:
            found.append((pid, "the machine's default Mosquitto"))
        elif text.startswith("# Generated by villagetwin") and f"listener {port} " in text:
            found.append((pid, f"another checkout's Mosquitto ({conf})"))
    return found


def stop_broker(state_dir: Path) -> bool:
    pid = _pid_alive(broker_paths(state_dir)["pid"])
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)
    return True


def _wait_gone(pid: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    raise SetupError(f"process {pid} did not stop within {seconds:.0f} s")
