"""Helpers shared by the tests (imported as ``support``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from devices.broker import BrokerConfig, render
from devices.settings import MqttSettings
from villagetwin.local import wait_for_port

ROOT = Path(__file__).resolve().parent.parent
# The dashboard's Streamlit script, for AppTest.from_file (dashboard/entry/app.py says why there).
DASHBOARD_APP = ROOT / "dashboard" / "entry" / "app.py"
SHARED_DATA = ROOT.parent / "shared" / "data"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own download does not work here
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# A valid GeoJSON footprint (about 10 m square) for hand-made buildings and grid cells: the
# PostGIS geometry columns (migration 0051) are generated from it, so '{}' is refused.
SQUARE_FOOTPRINT = (
    '{"type":"Polygon","coordinates":[[[113.45,23.16],[113.4501,23.16],[113.4501,23.1601],'
    "[113.45,23.1601],[113.45,23.16]]]}"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Broker:
    """A private Mosquitto from the project's rendered config; can be killed and restarted."""

    def __init__(self, directory: Path, config: BrokerConfig) -> None:
        self.directory = directory
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> MqttSettings:
        return MqttSettings(host="127.0.0.1", port=self.config.port)

    def start(self) -> None:
        if self.config.persistence_dir:
            Path(self.config.persistence_dir).mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(render(self.config))
        log = (self.directory / "stdout.log").open("ab")
        self.process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
        if not wait_for_port("127.0.0.1", self.config.port, 10):
            raise RuntimeError(f"test broker did not start; see {self.directory}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def count(dsn: str, query: str, *params: object) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


# --- a private PostgreSQL that a test may stop and start -----------------------------------


class PrivatePostgres:
    """A throwaway PostgreSQL cluster with TimescaleDB preloaded, run as the postgres user
    (PostgreSQL refuses to run as root), so stopping it harms nothing else."""

    def __init__(self, port: int) -> None:
        import tempfile

        self.port = port
        self.bin = Path("/usr/lib/postgresql") / _pg_major() / "bin"
        self.base = Path(tempfile.mkdtemp(prefix="vt-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *argv: str) -> None:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n"
            )

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def _pg_major() -> str:
    return sorted(p.name for p in Path("/usr/lib/postgresql").iterdir())[-1]


# --- the ingester as a process that a test may kill -----------------------------------------


class IngesterProcess:
    """`villagetwin ingest` in its own process, so a test can kill -9 it or send SIGTERM."""

    def __init__(self, dsn: str, mqtt: MqttSettings, log: Path, **options: str) -> None:
        self.env = {
            **os.environ,
            "VT_DB_DSN": dsn,
            "VT_MQTT__HOST": mqtt.host,
            "VT_MQTT__PORT": str(mqtt.port),
            "VT_INGEST__HTTP_PORT": "0",
            **{f"VT_INGEST__{k.upper()}": v for k, v in options.items()},
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "villagetwin.cli", "ingest"], env=self.env, stdout=out,
            stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip

    def connected(self) -> bool:
        """True once the latest start's subscription is active (its SUBACK arrived)."""
        text = self.log.read_text() if self.log.exists() else ""
        return text.count("subscription active") >= self.starts

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


# --- a device fleet that publishes numbered events -------------------------------------------


class Fleet:
    """Gates that publish gate.pass events numbered 1, 2, 3 … per device, at a paced rate, with
    QoS 1, recording what the broker acknowledged."""

    def __init__(self, mqtt: MqttSettings, devices: list[str], client_id: str = "fleet") -> None:
        import paho.mqtt.client as paho

        from devices.mqtt import new_client

        self.devices = devices
        # With credentials, the client id is the username (the broker binds them).
        self.client: paho.Client = new_client(mqtt, mqtt.username or f"{client_id}-{os.getpid()}")
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async(mqtt.host, mqtt.port, keepalive=10)
        self.client.loop_start()
        if not wait_until(self.client.is_connected, 15):
            raise RuntimeError(f"the fleet could not connect to {mqtt.host}:{mqtt.port}")
        self.next_seq = dict.fromkeys(devices, 1)
        self.published: list[tuple[str, int]] = []
        self._infos: list[object] = []

    @staticmethod
    def payload(device: str, seq: int) -> bytes:
        import uuid
        from datetime import UTC, datetime

        from devices.payloads import GatePass, encode
        from devices.simulator import event_id

        event = GatePass(
            id=event_id(device, seq),
            device=device,
            seq=seq,
            ts=datetime.now(UTC),
            direction="in",
            method="card",
            granted=True,
            credential=f"cred:{uuid.uuid4().hex[:12]}",
        )
        return encode(event)

    def publish(self, rounds: int, rate: float | None = None) -> None:
        """``rounds`` events per device, round-robin, at ``rate`` events/s (None: flat out)."""
        from devices.topics import event_topic

        started = time.monotonic()
        n = 0
        for _ in range(rounds):
            for device in self.devices:
                seq = self.next_seq[device]
                self.next_seq[device] = seq + 1
                info = self.client.publish(event_topic(device), self.payload(device, seq), qos=1)
                self._infos.append(info)
                self.published.append((device, seq))
                n += 1
                if rate:
                    ahead = started + n / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

    def wait_acknowledged(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))  # type: ignore[attr-defined]
        self._infos.clear()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def rows(dsn: str, query: str, *params: object) -> list[tuple[object, ...]]:
    """Every row ``query`` returns, read as the database owner."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def publish(client: object, topic: str, payload: bytes, retain: bool = False) -> None:
    """One QoS 1 publish from a started paho client, waited for (at most 10 s)."""
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)  # type: ignore[attr-defined]


def add_dashboard_users(dsn: str, grid: str, password: str) -> dict[str, str]:
    """``inspector`` (of ``grid``) and ``admin``, added through ``villagetwin users add`` as an
    operator would; returns the environment the command ran with (``VT_DB_DSN`` set)."""
    env = {**os.environ, "VT_DB_DSN": dsn}
    for args in (
        ["inspector", "--role", "inspector", "--grid", grid],
        ["admin", "--role", "admin"],
    ):
        subprocess.run(
            [sys.executable, "-m", "villagetwin.cli", "users", "add", *args,
             "--password", password],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
    return env


def register_devices(dsn: str, devices: dict[str, str], sentinel: str) -> None:
    """Registers ``devices`` (id -> kind) and the gate ``sentinel`` (see stored_after)."""
    with psycopg.connect(dsn) as conn:
        for device, kind in devices.items():
            conn.execute("INSERT INTO devices (device_id, kind) VALUES (%s, %s)", (device, kind))
    register_gates(dsn, [sentinel])


def stored_after(dsn: str, client: object, seq: int, sentinel: str) -> None:
    """Publishes a native gate event from ``sentinel`` last and waits (20 s) until it is stored:
    with one writer, everything received before it is committed too."""
    import uuid
    from datetime import UTC, datetime

    from devices.payloads import GatePass, encode
    from devices.topics import event_topic

    event = GatePass(id=uuid.uuid4(), device=sentinel, seq=seq,
                     ts=datetime.now(UTC).replace(microsecond=0), direction="in",
                     method="card", granted=True)  # fmt: skip
    publish(client, event_topic(sentinel), encode(event))
    assert wait_until(
        lambda: count(dsn, "SELECT count(*) FROM events WHERE device_id = %s AND seq = %s",
                      sentinel, seq) == 1, 20)  # fmt: skip


def frigate_event(
    kind: str, object_id: str, start: float, frame: float, camera: str, zone: str, **after: object
) -> bytes:
    """A Frigate ``frigate/events`` message (type new/update/end) for one tracked person."""
    import json

    body = {"id": object_id, "camera": camera, "label": "person", "sub_label": None,
            "start_time": start, "frame_time": frame, "top_score": 0.7, "score": 0.7,
            "false_positive": False, "current_zones": [zone], "has_snapshot": True,
            "end_time": frame if kind == "end" else None, **after}  # fmt: skip
    return json.dumps({"type": kind, "before": body, "after": body}).encode()


def register_gates(dsn: str, devices: list[str]) -> None:
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "INSERT INTO devices (device_id, kind) VALUES (%s, 'gate') ON CONFLICT DO NOTHING",
            [(d,) for d in devices],
        )


def missing_ranges(
    expected: dict[str, int], stored: set[tuple[str, int]]
) -> list[tuple[str, int, int]]:
    """The truth a gap report must name: per device, runs of 1..max that were not stored."""
    ranges = []
    for device in sorted(expected):
        run_start = None
        for seq in range(1, expected[device] + 1):
            if (device, seq) not in stored:
                run_start = seq if run_start is None else run_start
            elif run_start is not None:
                ranges.append((device, run_start, seq - 1))
                run_start = None
        if run_start is not None:
            ranges.append((device, run_start, expected[device]))
    return ranges


@contextlib.contextmanager
def dashboard_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """`villagetwin dashboard` on a free port; yields its URL, stops it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "villagetwin.cli", "dashboard", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if not wait_for_port("127.0.0.1", port, 60):
            raise RuntimeError(f"the dashboard did not start:\n{log.read_text()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def dashboard_session(
    db: str, username: str, role: str, grids: list[str] | None = None
) -> psycopg.Connection:
    """A connection as the dashboard's database role, signed in through the database as a new
    dashboard user (``role``: admin, manager or inspector of ``grids``), as the dashboard does
    after its sign-in form (migration 0060's vt_sign_in; the token travels as vt.session)."""
    from psycopg.conninfo import make_conninfo

    password = "correct horse battery staple"
    with psycopg.connect(db) as owner:
        owner.execute(
            "INSERT INTO app_users (username, role, grids) VALUES (%s, %s, %s)",
            (username, role, grids or []),
        )
        owner.execute("SELECT vt_set_password(%s, %s)", (username, password))
    conn = psycopg.connect(make_conninfo(db, user="vt_dashboard"), autocommit=True)
    token, refusal = conn.execute(
        "SELECT * FROM vt_sign_in(%s, %s, '127.0.0.1', '30 minutes'::interval)",
        (username, password),
    ).fetchone()  # type: ignore[misc]
    assert token, refusal
    conn.execute("SELECT set_config('vt.session', %s, false)", (token,))
    return conn
