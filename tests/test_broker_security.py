"""Issue 12: an attacker holding one device's valid credentials, against a real Mosquitto
started from the project's rendered config with the registry's dynamic-security file and TLS.
Each test performs the attack and asserts what was stored and what was delivered."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support import (
    ROOT,
    SQUARE_FOOTPRINT,
    Broker,
    Fleet,
    IngesterProcess,
    count,
    free_port,
    wait_until,
)

from devices.broker import BrokerConfig
from devices.payloads import AccessUnlock, AppCheckIn, DeviceKind, encode
from devices.settings import MqttSettings
from devices.topics import config_topic, event_topic, status_topic
from villagetwin.local import local_user
from villagetwin.provision import Issued, add_device, add_service_account, write_auth_files
from villagetwin.tls import ensure_local_certificate

SHARE_GROUP = "vt-ingest"


@dataclass
class Secured:
    db: str
    broker: Broker
    state: Path  # VT_STATE_DIR: the auth files are in state/mosquitto, as `setup` puts them
    accounts: dict[str, Issued]
    tls_port: int
    cafile: Path

    def mqtt(self, username: str) -> MqttSettings:
        return MqttSettings(
            port=self.broker.config.port,  # type: ignore[arg-type]
            username=username,
            password=self.accounts[username].password,  # type: ignore[arg-type]
        )


def _village(conn: psycopg.Connection) -> None:
    for building in ("LH00001", "LH00002"):
        conn.execute(
            "INSERT INTO buildings (building_id, address, storeys, height_m, footprint, lon, lat)"
            " VALUES (%s, 'addr', 5, 15, %s, 113.45, 23.16)",
            (building, SQUARE_FOOTPRINT),
        )
        for room in ("101", "102"):
            conn.execute(
                "INSERT INTO units (unit_id, building_id, floor, room) VALUES (%s, %s, 1, %s)",
                (f"{building}-{room}", building, room),
            )


@contextlib.contextmanager
def secured_broker(
    db: str, state: Path, max_queued_bytes: int, gates: tuple[str, ...] = ()
) -> Iterator[Secured]:
    """The project's broker config with the registry's dynamic-security file and TLS."""
    auth = state / "mosquitto"
    with psycopg.connect(db) as conn:
        _village(conn)
        accounts = {
            "gate-a": add_device(conn, "gate-a", DeviceKind.GATE),
            "gate-b": add_device(conn, "gate-b", DeviceKind.GATE),
            "acc-b1": add_device(conn, "acc-b1", DeviceKind.ACCESS, "LH00001", 1, "building"),
            "app-1": add_device(conn, "app-1", DeviceKind.APP),
            "vt-ingester-1": add_service_account(conn, "vt-ingester-1"),
            "vt-ingester-2": add_service_account(conn, "vt-ingester-2"),
        }
        accounts.update({g: add_device(conn, g, DeviceKind.GATE) for g in gates})
        dynsec = write_auth_files(conn, auth)
    cert, key = ensure_local_certificate(auth / "tls")
    tls_port = free_port()
    broker = Broker(
        auth,
        BrokerConfig(
            port=free_port(), persistence_dir=auth / "data", log_file=auth / "mosquitto.log",
            pid_file=auth / "mosquitto.pid", user=local_user(), dynsec_file=dynsec,
            tls_port=tls_port, tls_cert=cert, tls_key=key, sys_interval_s=1,
            max_queued_bytes=max_queued_bytes,
        ),
    )  # fmt: skip
    broker.start()
    try:
        yield Secured(db, broker, state, accounts, tls_port, cert)
    finally:
        broker.kill()


@pytest.fixture
def secured(db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    with secured_broker(db, tmp_path_factory.mktemp("state"), 8 * 1024 * 1024) as s:
        yield s


def _client(settings: MqttSettings, client_id: str, clean: bool = True) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    client.username_pw_set(settings.username, settings.password.get_secret_value())  # type: ignore[union-attr]
    return client


def _connack(settings: MqttSettings, client_id: str, will: str | None = None) -> str:
    """Connects with clean start and returns the broker's CONNACK reason."""
    client = _client(settings, client_id)
    if will:
        client.will_set(will, b'{"v":1,"state":"offline"}', qos=1, retain=True)
    result: list[str] = []
    client.on_connect = lambda c, u, f, reason, p: result.append(str(reason))
    client.connect("127.0.0.1", settings.port)
    client.loop_start()
    wait_until(lambda: bool(result), 10)
    client.loop_stop()
    client.disconnect()
    return result[0] if result else "no answer"


def _ingester(s: Secured, username: str, log: Path, **options: str) -> IngesterProcess:
    process = IngesterProcess(s.db, s.mqtt(username), log, **options)
    process.env["VT_MQTT__USERNAME"] = username
    process.env["VT_MQTT__PASSWORD"] = s.accounts[username].password
    return process


def _events(db: str, device: str) -> int:
    return count(db, "SELECT count(*) FROM events WHERE device_id = %s", device)


# --- 1. session takeover ----------------------------------------------------------------------


def test_a_device_cannot_take_over_the_ingesters_session_or_another_device(
    secured: Secured, tmp_path: Path
) -> None:
    s = secured
    ingester = _ingester(s, "vt-ingester-1", tmp_path / "ingester.log")
    ingester.start()
    assert wait_until(ingester.connected, 30), (tmp_path / "ingester.log").read_text()
    assert ingester.terminate() == 0  # its persistent session stays at the broker
    fleet = Fleet(s.mqtt("gate-a"), ["gate-a"])
    fleet.publish(50)
    fleet.wait_acknowledged()
    fleet.close()
    # The attacker holds gate-b's credentials and takes the ingester's documented client id.
    assert "Not authorized" in _connack(s.mqtt("gate-b"), "vt-ingester-1")
    # … and another device's id, while that device is online with its last will.
    victim = _client(s.mqtt("gate-a"), "gate-a")
    victim.will_set(status_topic("gate-a"), b'{"v":1,"state":"offline"}', qos=1, retain=True)
    dropped: list[str] = []
    victim.on_disconnect = lambda c, u, f, reason, p: dropped.append(str(reason))
    victim.connect("127.0.0.1", s.broker.config.port)  # type: ignore[arg-type]
    victim.loop_start()
    assert wait_until(victim.is_connected, 10)
    victim.publish(status_topic("gate-a"), b'{"v":1,"state":"online"}', qos=1, retain=True)
    assert "Not authorized" in _connack(s.mqtt("gate-b"), "gate-a", will=status_topic("gate-b"))
    ingester.start()
    assert wait_until(lambda: _events(s.db, "gate-a") == 50, 30), "the queued events were lost"
    assert wait_until(
        lambda: (
            count(s.db, "SELECT count(*) FROM devices WHERE device_id = 'gate-a' AND online") == 1
        ),
        15,
    )
    time.sleep(1.0)  # a will fired by a takeover would arrive now
    assert victim.is_connected() and dropped == []
    assert count(s.db, "SELECT count(*) FROM device_status_history WHERE NOT online") == 0
    victim.loop_stop()
    victim.disconnect()
    ingester.terminate()


# --- 2. the share group, with a kill -9 of one of two ingesters mid-stream ----------------------


def test_a_device_joining_the_share_group_is_refused_and_a_killed_ingester_loses_nothing(
    secured: Secured, tmp_path: Path
) -> None:
    s = secured
    ingesters = [
        _ingester(s, name, tmp_path / f"{name}.log", share_group=SHARE_GROUP)
        for name in ("vt-ingester-1", "vt-ingester-2")
    ]
    for process in ingesters:
        process.start()
    assert wait_until(lambda: all(p.connected() for p in ingesters), 30)
    fleet = Fleet(s.mqtt("gate-a"), ["gate-a"])
    total = 10_000
    publisher = threading.Thread(target=fleet.publish, args=(total, 2000.0))
    publisher.start()
    # Mid-stream the attacker joins the ingesters' group, over MQTT 3.1.1 and over MQTT 5.
    assert wait_until(lambda: len(fleet.published) > 2000, 30)
    codes: list[int] = []
    intruders = []
    for protocol in (mqtt.MQTTv311, mqtt.MQTTv5):
        intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gate-b", protocol=protocol)
        intruder.username_pw_set("gate-b", s.accounts["gate-b"].password)
        got: list[bytes] = []
        intruder.on_message = lambda c, u, m, got=got: got.append(m.payload)
        intruder.on_subscribe = lambda c, u, mid, reasons, p: codes.extend(r.value for r in reasons)
        intruder.connect("127.0.0.1", s.broker.config.port)  # type: ignore[arg-type]
        intruder.loop_start()
        assert wait_until(intruder.is_connected, 10)
        answered = len(codes)  # before subscribing: the SUBACK may come back at once
        intruder.subscribe(f"$share/{SHARE_GROUP}/vt/v1/+/+", qos=1)
        assert wait_until(lambda: len(codes) > answered, 10)  # noqa: B023
        intruder.loop_stop()
        intruder.disconnect()
        intruders.append(got)
    # Then one ingester dies mid-stream and comes back.
    assert wait_until(lambda: len(fleet.published) > 5000, 30)
    ingesters[1].kill9()
    time.sleep(2.0)
    ingesters[1].start()
    publisher.join()
    fleet.wait_acknowledged()
    fleet.close()
    assert codes == [0x80, 0x87]  # refused: SUBACK failure / MQTT 5 "not authorised"
    assert intruders == [[], []]  # nothing was delivered to the intruder
    assert wait_until(lambda: _events(s.db, "gate-a") == total, 120), (
        f"{_events(s.db, 'gate-a')} of {total} stored"
    )
    rows, unique = (
        count(s.db, "SELECT count(*) FROM events"),
        count(s.db, "SELECT count(DISTINCT (device_id, seq)) FROM events"),
    )
    assert (rows, unique) == (total, total)  # 0 lost, 0 duplicated
    assert count(s.db, "SELECT count(*) FROM dead_letters") == 0
    logs = [(tmp_path / f"{n}.log").read_text() for n in ("vt-ingester-1", "vt-ingester-2")]
    assert all("stored" in log or "subscription active" in log for log in logs)
    for process in ingesters:
        process.terminate()


# --- 3. one device fills the broker -------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _sys_value(s: Secured, topic: str) -> int:
    """A $SYS counter of the broker, read as the second ingester's account. The broker keeps
    a counter's last value for 60 s only (it publishes $SYS with that expiry, and a counter
    only when it changes): read soon after a change, or use ``SysWatcher``."""
    values: list[int] = []

    def read() -> bool:
        r = subprocess.run(["mosquitto_sub", "-p", str(s.broker.config.port), "-u",
            "vt-ingester-2", "-P", s.accounts["vt-ingester-2"].password, "-i", "vt-ingester-2",
            "-C", "1", "-W", "5", "-t", topic], capture_output=True, text=True)  # fmt: skip
        if r.stdout.strip():
            values.append(int(r.stdout.strip()))
        return bool(values)

    wait_until(read, 30, 0.5)
    assert values, f"no {topic} from the broker"
    return values[0]


class SysWatcher:
    """Follows $SYS counters from before an outage to its end, as the second ingester's
    account, keeping the last value of each."""

    def __init__(self, s: Secured, *topics: str) -> None:
        self.values: dict[str, int] = {}
        self.client = _client(s.mqtt("vt-ingester-2"), "vt-ingester-2")

        def on_message(c: object, u: object, m: mqtt.MQTTMessage) -> None:
            self.values[m.topic] = int(m.payload)

        self.client.on_message = on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe([(t, 0) for t in topics])
        self.client.connect("127.0.0.1", s.broker.config.port)  # type: ignore[arg-type]
        self.client.loop_start()
        assert wait_until(lambda: len(self.values) == len(topics), 20), self.values

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


SYS_DROPPED = "$SYS/broker/publish/messages/dropped"


def _sys_dropped(s: Secured) -> int:
    return _sys_value(s, SYS_DROPPED)


def _flood(settings: MqttSettings, size: int, n: int) -> tuple[int, bool]:
    """Publishes ``n`` messages of ``size`` bytes (QoS 1) as fast as the broker takes them;
    returns how many the broker acknowledged, and whether it hung up."""
    client = _client(settings, settings.username or "")
    client.max_queued_messages_set(0)
    acked: list[int] = []
    hung_up = threading.Event()
    client.on_publish = lambda c, u, mid, reason, p: acked.append(mid)
    client.on_disconnect = lambda c, u, f, reason, p: hung_up.set()
    client.connect("127.0.0.1", settings.port)
    client.loop_start()
    payload = b"x" * size
    for _ in range(n):
        if hung_up.is_set():
            break
        client.publish(event_topic(settings.username or ""), payload, qos=1)
    wait_until(lambda: len(acked) >= n or hung_up.is_set(), 60)
    result = len(acked), hung_up.is_set()
    client.loop_stop()
    client.disconnect()
    return result


def test_one_device_cannot_fill_the_broker(secured: Secured, tmp_path: Path) -> None:
    s = secured
    ingester = _ingester(s, "vt-ingester-1", tmp_path / "ingester.log", http_port="0")
    ingester.start()
    assert wait_until(ingester.connected, 30)
    ingester.terminate()  # offline: the broker queues for its session
    fleet = Fleet(s.mqtt("gate-a"), ["gate-a"])
    fleet.publish(100)
    fleet.wait_acknowledged()
    fleet.close()
    pid = s.broker.process.pid  # type: ignore[union-attr]
    before = _rss_kib(pid)
    # 400 x 1 MB in about a second: over the packet limit, the first costs the sender its
    # connection, and none is kept.
    assert _sys_dropped(s) == 0
    acked, hung_up = _flood(s.mqtt("gate-b"), 1_000_000, 400)
    assert (acked, hung_up) == (0, True)
    # Then 400 x 200 KB (under the packet limit, 80 MB): the queue's byte bound (8 MiB here)
    # keeps what fits and drops, and counts, the rest.
    acked, hung_up = _flood(s.mqtt("gate-b"), 200_000, 400)
    assert (acked, hung_up) == (400, False)
    readings = [_sys_dropped(s)]  # $SYS is published once a second: wait until it settles
    assert wait_until(
        lambda: readings.append(_sys_dropped(s)) or readings[-1] == readings[-2] > 0, 20, 1.1
    )
    dropped_by_the_flood = readings[-1]
    grown_mib = (_rss_kib(pid) - before) / 1024
    assert grown_mib < 40, f"broker RSS grew {grown_mib:.0f} MiB"
    # The ingester comes back: it reads the broker's dropped counter, and stores every event
    # published before the flood; what the bound kept of the flood is dead-lettered.
    ingester = _ingester(s, "vt-ingester-1", tmp_path / "ingester2.log")
    metrics_port = free_port()
    ingester.env["VT_INGEST__HTTP_PORT"] = str(metrics_port)
    ingester.start()
    assert wait_until(lambda: _events(s.db, "gate-a") == 100, 30)

    def kept() -> int:
        return count(s.db, "SELECT count(*) FROM dead_letters WHERE device_id = 'gate-b'")

    def dropped() -> float:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                text = r.read().decode()
        except OSError:
            return -1
        for line in text.splitlines():
            if line.startswith("vt_broker_messages_dropped "):
                return float(line.split()[1])
        return -1

    # Every flood message was either kept (and is dead-lettered: not JSON) or counted as
    # dropped; the metric shows it (and later QoS 0 $SYS messages the broker could not queue
    # for the ingester while its queue was full).
    assert wait_until(lambda: dropped_by_the_flood + kept() == 400, 30), kept()
    assert 0 < kept() * 200_000 <= 8 * 1024 * 1024 + 200_000
    assert wait_until(lambda: dropped() >= dropped_by_the_flood, 20), dropped()
    ingester.terminate()
    s.broker.stop()  # saves the persistence file
    size_mib = (s.broker.directory / "data" / "mosquitto.db").stat().st_size / 2**20
    assert size_mib < 12, f"persistence file {size_mib:.1f} MiB"


# --- 5. a device moves itself ------------------------------------------------------------------


def test_a_devices_config_cannot_move_it_an_operator_decides(
    secured: Secured, tmp_path: Path
) -> None:
    s = secured
    env = {"VT_DB_DSN": s.db, "VT_STATE_DIR": str(s.state), "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "villagetwin.cli", *args],
                              capture_output=True, text=True, cwd=ROOT, env=env)  # fmt: skip

    def place() -> tuple[object, ...] | None:
        with psycopg.connect(s.db) as conn:
            return conn.execute(
                "SELECT building_id, floor, door FROM devices WHERE device_id = 'acc-b1'"
            ).fetchone()

    claim = {"v": 1, "device": "acc-b1", "kind": "access", "building": "LH00002",
             "floor": 3, "door": "unit", "availability_topic": status_topic("acc-b1"),
             "firmware": "2.1"}  # fmt: skip
    device = Fleet(s.mqtt("acc-b1"), ["acc-b1"])
    device.client.publish(config_topic("acc-b1"), json.dumps(claim), qos=1, retain=True)
    device.client.publish(event_topic("acc-b1"), b"{}", qos=1).wait_for_publish(10)
    device.close()
    pending = "SELECT count(*) FROM device_place_changes WHERE status = 'pending'"

    def ingest_the_retained_claim(log: Path) -> None:
        """An ingester start: the retained config is delivered again and judged again."""
        started = datetime.now(UTC)
        seen = "SELECT count(*) FROM devices WHERE device_id = 'acc-b1' AND config_at >= %s"
        ingester = _ingester(s, "vt-ingester-1", log)
        ingester.start()
        assert wait_until(lambda: count(s.db, seen, started) == 1, 30), log.read_text()
        ingester.terminate()

    for run in range(2):  # the retained claim comes back at every ingester start
        ingest_the_retained_claim(tmp_path / f"i{run}.log")
        assert count(s.db, pending) == 1
        assert place() == ("LH00001", 1, "building")  # where the operator put it
    listed = cli("devices", "changes")
    assert "acc-b1\tLH00001/1/building\tLH00002/3/unit" in listed.stdout, listed.stderr
    change_id = listed.stdout.splitlines()[1].split("\t")[0]
    assert cli("devices", "changes", "reject", change_id, "--by", "ops").returncode == 0
    ingest_the_retained_claim(tmp_path / "i2.log")
    assert count(s.db, pending) == 0  # a rejected claim is not asked again
    assert place() == ("LH00001", 1, "building")
    # A claim the operator accepts moves the device.
    with psycopg.connect(s.db) as conn:
        conn.execute(
            "INSERT INTO device_place_changes (device_id, building_id, floor, door, claimed_at)"
            " VALUES ('acc-b1', 'LH00001', 2, 'unit', now())"
        )
    change_id = cli("devices", "changes").stdout.splitlines()[1].split("\t")[0]
    assert cli("devices", "changes", "accept", change_id).returncode == 0
    assert place() == ("LH00001", 2, "unit")
    assert cli("devices", "changes", "accept", change_id).returncode == 1  # decided already


# --- 6. a door reader writes for other buildings' units ---------------------------------------


def test_events_for_units_outside_the_devices_scope_are_dead_lettered(
    secured: Secured, tmp_path: Path
) -> None:
    s = secured
    now = datetime.now(UTC)

    def unlock(seq: int, unit: str) -> dict[str, object]:
        event = AccessUnlock(id=uuid.uuid4(), device="acc-b1", seq=seq, ts=now,
                             door="unit", unit=unit, method="card", credential="cred:01",
                             granted=True)  # fmt: skip
        return json.loads(encode(event))

    ingester = _ingester(s, "vt-ingester-1", tmp_path / "ingester.log")
    ingester.start()
    assert wait_until(ingester.connected, 30)
    reader = Fleet(s.mqtt("acc-b1"), ["acc-b1"])
    for seq, unit in [(1, "LH00001-101"), (2, "LH00002-101"), (3, "LH00001-102")]:
        reader.client.publish(event_topic("acc-b1"), json.dumps(unlock(seq, unit)), qos=1)
    inside, outside = "LH00001-101", "LH00002-102"
    batch = {"v": 1, "type": "batch", "device": "acc-b1",
             "events": [unlock(4, inside), unlock(5, outside),
                        unlock(6, "LH00001-102")]}  # fmt: skip
    reader.client.publish(event_topic("acc-b1"), json.dumps(batch), qos=1).wait_for_publish(10)
    reader.close()
    app = Fleet(s.mqtt("app-1"), ["app-1"])  # no building: the village is its scope
    for seq, unit in [(1, "LH00002-102"), (2, "XX99999-1")]:
        check_in = AppCheckIn(id=uuid.uuid4(), device="app-1", seq=seq, ts=now, unit=unit,
                              credential="cred:02")  # fmt: skip
        app.client.publish(event_topic("app-1"), encode(check_in), qos=1).wait_for_publish(10)
    app.close()
    assert wait_until(lambda: count(s.db, "SELECT count(*) FROM dead_letters") == 3, 30)
    ingester.terminate()
    with psycopg.connect(s.db) as conn:
        stored = conn.execute("SELECT device_id, seq FROM events ORDER BY 1, 2").fetchall()
        refused = conn.execute("SELECT device_id, reason FROM dead_letters ORDER BY 1").fetchall()
    assert stored == [("acc-b1", 1), ("acc-b1", 3), ("acc-b1", 4), ("acc-b1", 6), ("app-1", 1)]
    assert refused == [("acc-b1", "unit_outside_device_scope")] * 2 + [
        ("app-1", "unit_outside_device_scope")
    ]
    # Nothing of the refused events reached the per-unit presence that feeds the flags.
    assert (
        count(s.db, "SELECT count(*) FROM unit_daily_credentials WHERE unit_id = 'LH00002-101'")
        == 0
    )


# --- 7. one namespace, and live changes ----------------------------------------------------------


def test_device_ids_and_service_accounts_share_one_namespace(secured: Secured) -> None:
    s = secured
    env = {"VT_DB_DSN": s.db, "VT_STATE_DIR": str(s.state), "VT_BROKER_AUTH": "true",
           "VT_MQTT__PORT": str(s.broker.config.port), "PATH": "/usr/bin:/bin"}  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "villagetwin.cli", "devices", *args],
                              capture_output=True, text=True, cwd=ROOT, env=env)  # fmt: skip

    # A device named like the ingester's account would inherit vt/# and reset its password.
    named_like = cli("add", "vt-ingester-1", "--kind", "gate")
    assert named_like.returncode == 1 and "share one namespace" in named_like.stderr
    taken = cli("service-account", "gate-a")
    assert taken.returncode == 1 and "share one namespace" in taken.stderr
    assert cli("service-account", "vt-registry").returncode == 1  # the registry's admin
    with psycopg.connect(s.db) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO devices (device_id, kind) VALUES ('vt-ingester-2', 'gate')")
    # The ingesters' accounts are untouched: their passwords still work, and they read vt/#.
    assert "Success" in _connack(s.mqtt("vt-ingester-1"), "vt-ingester-1")
    assert "Success" in _connack(s.mqtt("vt-ingester-2"), "vt-ingester-2")
    # A new device is admitted by the running broker at once (no restart), a revoked one is
    # kicked out at once.
    added = cli("add", "gate-new", "--kind", "gate")
    assert added.returncode == 0, added.stderr
    password = added.stdout.split("password: ")[1].strip()
    new = MqttSettings(port=s.broker.config.port, username="gate-new", password=password)  # type: ignore[arg-type]
    assert "Success" in _connack(new, "gate-new")
    assert cli("revoke", "gate-new").returncode == 0
    assert "Not authorized" in _connack(new, "gate-new")


# --- 8. TLS ---------------------------------------------------------------------------------------


def test_devices_publish_over_tls_with_the_setup_certificate(
    secured: Secured, tmp_path: Path
) -> None:
    s = secured
    ingester = _ingester(s, "vt-ingester-1", tmp_path / "ingester.log")
    ingester.start()
    assert wait_until(ingester.connected, 30)
    event = Fleet.payload("gate-a", 1)
    base = ["mosquitto_pub", "-h", "localhost", "-p", str(s.tls_port), "-q", "1", "-i",
            "gate-a", "-u", "gate-a", "-P", s.accounts["gate-a"].password,
            "-t", event_topic("gate-a")]  # fmt: skip
    trusted = subprocess.run([*base, "--cafile", str(s.cafile), "-m", event.decode()],
                             capture_output=True, timeout=20)  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    # Without the certificate trusted, the client refuses the connection: nothing is sent.
    untrusted = subprocess.run([*base, "--capath", str(tmp_path), "-m",
                                Fleet.payload("gate-a", 2).decode()], capture_output=True,
                               timeout=20)  # fmt: skip
    assert untrusted.returncode != 0
    assert wait_until(lambda: _events(s.db, "gate-a") == 1, 20)
    time.sleep(0.5)
    assert _events(s.db, "gate-a") == 1
    ingester.terminate()


# --- 3. the downtime budget: 5k msg/s with the ingester down 120 s ------------------------------

BUDGET_RATE = float(os.environ.get("VT_TEST_BUDGET_RATE", "5000"))
BUDGET_DOWN_S = float(os.environ.get("VT_TEST_BUDGET_DOWN_S", "120"))


def test_the_ingester_down_120s_at_5k_per_second_loses_nothing(db: str, tmp_path: Path) -> None:
    """The broker config as `setup` renders it for this host (queue bounds sized to its
    memory); 20 gates publish BUDGET_RATE events/s between them for BUDGET_DOWN_S seconds
    while the ingester is down; then it catches up. Writes the measured figures to
    test-artifacts/downtime-budget.json (docs/security.md quotes them)."""
    from devices.broker import host_memory_bytes, queued_bytes_for_host

    gates = tuple(f"gate-p{i:02d}" for i in range(20))
    queued_bytes = queued_bytes_for_host(host_memory_bytes())
    with secured_broker(db, tmp_path / "state", queued_bytes, gates) as s:
        ingester = _ingester(s, "vt-ingester-1", tmp_path / "ingester.log")
        ingester.start()
        assert wait_until(ingester.connected, 30)
        assert ingester.terminate() == 0
        pid = s.broker.process.pid  # type: ignore[union-attr]
        rss_before = _rss_kib(pid)
        dropped_topic, bytes_topic = SYS_DROPPED, "$SYS/broker/store/messages/bytes"
        watcher = SysWatcher(s, dropped_topic, bytes_topic)
        fleets = [Fleet(s.mqtt(g), [g]) for g in gates]
        total = int(BUDGET_RATE * BUDGET_DOWN_S)
        payload_bytes = 0
        last: list[mqtt.MQTTMessageInfo | None] = [None] * len(fleets)
        started = time.monotonic()
        for n in range(total):
            k = n % len(fleets)
            fleet = fleets[k]
            seq = n // len(fleets) + 1
            body = Fleet.payload(gates[k], seq)
            payload_bytes += len(body)
            last[k] = fleet.client.publish(event_topic(gates[k]), body, qos=1)
            ahead = started + (n + 1) / BUDGET_RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        published_s = time.monotonic() - started
        for info in last:
            assert info is not None
            info.wait_for_publish(60)
        for fleet in fleets:
            fleet.close()
        rss_queued = _rss_kib(pid)
        # The broker publishes its counters once a second: wait for the stored bytes to settle.
        readings = [watcher.values[bytes_topic]]
        settled = wait_until(
            lambda: readings.append(watcher.values[bytes_topic]) or readings[-1] == readings[-2],
            20,
            1.5,
        )
        assert settled, readings
        dropped, stored_bytes = watcher.values[dropped_topic], readings[-1]
        watcher.close()
        caught_up_from = time.monotonic()
        ingester.start()
        assert wait_until(lambda: count(s.db, "SELECT count(*) FROM events") >= total, 600, 1.0), (
            f"{count(s.db, 'SELECT count(*) FROM events')} of {total} stored"
        )
        catch_up_s = time.monotonic() - caught_up_from
        ingester.terminate()
        rows = count(s.db, "SELECT count(*) FROM events")
        unique = count(s.db, "SELECT count(DISTINCT (device_id, seq)) FROM events")
        figures = {
            "rate_target_per_s": BUDGET_RATE,
            "rate_achieved_per_s": round(total / published_s),
            "down_s": round(published_s, 1),
            "messages": total,
            "mean_payload_bytes": round(payload_bytes / total),
            "broker_rss_growth_mib": round((rss_queued - rss_before) / 1024, 1),
            "broker_rss_bytes_per_queued_message": round((rss_queued - rss_before) * 1024 / total),
            "broker_store_bytes": stored_bytes,
            "max_queued_bytes": queued_bytes,
            "dropped": dropped,
            "catch_up_s": round(catch_up_s, 1),
            "catch_up_events_per_s": round(total / catch_up_s),
        }
        out = ROOT / "test-artifacts" / "downtime-budget.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(figures, indent=1) + "\n")
        print(figures)
    assert dropped == 0
    assert (rows, unique) == (total, total)  # 0 lost, 0 duplicated
