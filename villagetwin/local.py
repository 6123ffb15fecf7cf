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
from dataclasses import dataclass
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


def listener(port: int) -> str | None:
    """Who listens on TCP ``port`` here, as ``pid 123 (mosquitto -c …)``, read from /proc
    (Linux: /proc/net/tcp and tcp6 name the socket's inode, a process's fd links name it);
    None when nobody does or the holder cannot be seen (another user's process, not root)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = {os.readlink(fd) for fd in fd_dir.iterdir()}
        except OSError:
            continue
        if links & inodes:
            pid = fd_dir.parent.name
            try:
                argv = (fd_dir.parent / "cmdline").read_bytes().split(b"\0")
            except OSError:
                argv = []
            command = " ".join(" ".join(os.fsdecode(a) for a in argv if a).split())[:200]
            return f"pid {pid} ({command})" if command else f"pid {pid}"
    return None


def free_port_from(host: str, port: int, tries: int = 50) -> int | None:
    """The first port from ``port`` on that nobody listens on, for a suggestion."""
    for candidate in range(port, min(port + tries, 65536)):
        if not port_open(host, candidate, timeout=0.2):
            return candidate
    return None


def require_free_port(host: str, port: int, what: str, remedy: str) -> None:
    """Raises SetupError saying who holds ``host:port`` and what to do (``remedy``, where
    ``{free}`` becomes the next free port) when something already listens there."""
    if not port_open(host, port):
        return
    holder = listener(port)
    free = free_port_from(host, port + 1)
    raise SetupError(
        f"port {port} ({what}) is already in use"
        f"{' by ' + holder if holder else ''}: {remedy.format(free=free or port + 1)}"
    )


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


@dataclass(frozen=True, slots=True)
class Replaced:
    """A broker stopped to free a port, and how to start it again as it was found: its
    command line and working directory (``restart``)."""

    pid: int
    argv: tuple[str, ...]
    cwd: str
    why: str


def start_broker(
    state_dir: Path,
    host: str,
    port: int,
    log: Log,
    dynsec: Path | None = None,
    tls: tuple[int, Path, Path] | None = None,
    replaced: list[Replaced] | None = None,
) -> Path:
    """Runs Mosquitto with the project's config on ``port``: with ``dynsec`` (the registry's
    dynamic-security file) it requires credentials; with ``tls`` (port, certificate, key) it
    also serves TLS. The machine's own Mosquitto, started with Debian's defaults (1000 queued
    messages per client), is stopped if it holds the port: those defaults drop messages for a
    paused ingester; each broker stopped is appended to ``replaced``, so that the caller can
    ``restart`` it when done (the demo does). Raises SetupError naming the holder of the
    port when it is not a Mosquitto this project may replace."""
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
            found = _command_of(pid)
            log(f"stopping {why} (pid {pid}) to serve port {port} with the project's config")
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid)
            if found is not None and replaced is not None:
                replaced.append(Replaced(pid, found[0], found[1], why))
    if port_open(host, port):
        holder = listener(port)
        free = free_port_from(host, port + 1) or port + 1
        raise SetupError(
            f"port {port} (MQTT) is already in use{' by ' + holder if holder else ''}, which is"
            f" not a Mosquitto this project may replace: stop it, or use another port:"
            f" VT_MQTT__PORT={free}"
        )
    if tls:
        require_free_port(
            host, tls[0], "MQTT over TLS",
            "stop it, or set VT_BROKER_TLS_PORT={free} (0: no TLS listener)",
        )  # fmt: skip
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


def _command_of(pid: int) -> tuple[tuple[str, ...], str] | None:
    """A process's command line and working directory, or None if it is gone."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    return tuple(os.fsdecode(a) for a in argv if a), cwd


def restart(found: Replaced, host: str, port: int, log: Log) -> None:
    """Starts a broker that ``start_broker`` stopped again, with its own command line in its
    own directory and session (a ``-d`` broker daemonises itself); raises SetupError when
    it does not listen on ``port`` within 10 s."""
    log(f"starting {found.why} again: {' '.join(found.argv)}")
    child = subprocess.Popen(
        found.argv, cwd=found.cwd, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if "-d" in found.argv:
        child.wait(timeout=10)  # the parent exits once the daemon runs
    if not wait_for_port(host, port, 10):
        raise SetupError(f"{found.why} did not start again; start it by hand: {found.argv}")


def broker_running(state_dir: Path) -> bool:
    """Whether the project's own Mosquitto of this state directory runs."""
    return _pid_alive(broker_paths(state_dir)["pid"]) is not None


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
