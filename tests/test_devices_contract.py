"""The device contract: its generated document, real clients (mosquitto_pub), and security
against a real Mosquitto started with the dynamic-security file made from the registry."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support import ROOT, Broker, count, free_port, wait_until

from devices.broker import BrokerConfig
from devices.contract_doc import EXAMPLES, render
from devices.payloads import DeviceKind, encode
from devices.provisioning import hash_password, verify_password
from devices.topics import config_topic, event_topic
from ingest.validate import KnownDevice, Received, judge
from villagetwin.local import local_user
from villagetwin.provision import (
    Issued,
    add_device,
    add_service_account,
    apply_live,
    revoke,
    rotate,
    write_auth_files,
)

DOC = ROOT / "docs" / "mqtt.md"


def test_the_document_is_the_one_the_models_generate() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/mqtt.md is stale: run `villagetwin devices docs`"
    )


def test_every_documented_example_is_accepted() -> None:
    for type_name, (device, example) in EXAMPLES.items():
        kind = DeviceKind(device.split("-")[0].replace("acc", "access").replace("cam", "camera"))
        registry = {device: KnownDevice(device, kind)}
        verdict = judge(Received(event_topic(device), encode(example), example.ts), registry)  # type: ignore[attr-defined]
        assert verdict.refusals == (), (type_name, verdict.refusals)
        assert [row.kind for row in verdict.events] == [type_name]


def test_password_hashes_are_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "gate-1", "s3cret"], check=True)
    hashed = path.read_text().strip().split(":", 1)[1]
    assert verify_password("s3cret", hashed)
    assert not verify_password("s3cret!", hashed)
    salt = hashed.split("$")[3]
    import base64

    assert hash_password("s3cret", base64.b64decode(salt)) == hashed


# --- security against a real broker ---------------------------------------------------------


def pub(port: int, user: str | None, password: str | None, topic: str, payload: bytes) -> int:
    """mosquitto_pub as a device does it: its client id is its username (the broker binds them)."""
    command = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
               "-m", payload.decode(), "-i", user or f"p-{uuid.uuid4().hex[:6]}"]  # fmt: skip
    if user:
        command += ["-u", user, "-P", password or ""]
    return subprocess.run(command, capture_output=True, timeout=10).returncode


class Listener:
    """A client that records every message delivered to it."""

    def __init__(self, port: int, user: str, password: str, topic: str = "#") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.refused: str | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user)
        self.granted: list[int] = []
        self.client.username_pw_set(user, password)
        self.subscribed = False

        def on_connect(c, u, f, reason, p):  # type: ignore[no-untyped-def]
            if reason.is_failure:
                self.refused = str(reason)
            else:
                c.subscribe(topic, qos=1)

        def on_subscribe(c, u, mid, reasons, p):  # type: ignore[no-untyped-def]
            self.granted = [r.value for r in reasons]
            self.subscribed = True

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def secured(db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    directory = tmp_path_factory.mktemp("secure-broker")
    with psycopg.connect(db) as conn:
        a = add_device(conn, "gate-a", DeviceKind.GATE)
        b = add_device(conn, "gate-b", DeviceKind.GATE)
        ingester = add_service_account(conn, "vt-ingester")
        dynsec = write_auth_files(conn, directory / "auth")
    broker = Broker(
        directory,
        BrokerConfig(
            port=free_port(), persistence_dir=directory / "data", log_file=directory / "m.log",
            pid_file=directory / "m.pid", user=local_user(), dynsec_file=dynsec,
        ),
    )  # fmt: skip
    broker.start()
    yield {"db": db, "broker": broker, "a": a, "b": b, "ingester": ingester, "dir": directory}
    broker.kill()


def _event(device: str) -> bytes:
    return encode(
        EXAMPLES["gate.pass"][1].model_copy(update={"device": device, "id": uuid.uuid4()})
    )


def test_anonymous_and_wrong_credentials_are_refused(secured: dict[str, object]) -> None:
    port = secured["broker"].config.port  # type: ignore[attr-defined]
    a: Issued = secured["a"]  # type: ignore[assignment]
    topic = event_topic("gate-a")
    assert pub(port, None, None, topic, _event("gate-a")) != 0
    assert pub(port, "gate-a", "not-the-password", topic, _event("gate-a")) != 0
    assert pub(port, "gate-a", a.password, topic, _event("gate-a")) == 0


def test_a_device_cannot_publish_for_another_or_read_others(secured: dict[str, object]) -> None:
    port = secured["broker"].config.port  # type: ignore[attr-defined]
    a: Issued = secured["a"]  # type: ignore[assignment]
    b: Issued = secured["b"]  # type: ignore[assignment]
    ingester: Issued = secured["ingester"]  # type: ignore[assignment]
    platform = Listener(port, ingester.username, ingester.password, "vt/#")
    snoop = Listener(port, "gate-a", a.password, "#")  # A subscribes to everything
    try:
        assert wait_until(lambda: platform.subscribed and snoop.subscribed, 10)
        assert pub(port, "gate-a", a.password, event_topic("gate-b"), _event("gate-b")) == 0
        assert pub(port, "gate-b", b.password, event_topic("gate-b"), _event("gate-b")) == 0
        assert pub(port, "gate-a", a.password, event_topic("gate-a"), _event("gate-a")) == 0
        assert wait_until(lambda: len(platform.messages) >= 2, 10)
        time.sleep(0.5)
        # A's message on B's topic was dropped; B's own and A's own were delivered.
        assert sorted(t for t, _ in platform.messages) == [
            event_topic("gate-a"),
            event_topic("gate-b"),
        ]
        assert snoop.messages == []  # A's subscription to '#' delivered nothing of others'
        assert snoop.granted == [0x80]  # and it was refused outright (SUBACK failure)
    finally:
        platform.close()
        snoop.close()


def test_a_revoked_device_stays_out_after_the_reload(secured: dict[str, object]) -> None:
    port = secured["broker"].config.port  # type: ignore[attr-defined]
    a: Issued = secured["a"]  # type: ignore[assignment]
    directory: Path = secured["dir"]  # type: ignore[assignment]
    broker: Broker = secured["broker"]  # type: ignore[assignment]
    with psycopg.connect(str(secured["db"])) as conn:
        revoked = revoke(conn, "gate-a")
        rotated = rotate(conn, "gate-b")
        write_auth_files(conn, directory / "auth")
    errors = apply_live(broker.settings, directory / "auth", revoked.commands + rotated.commands)
    assert errors == []
    assert wait_until(
        lambda: pub(port, "gate-a", a.password, event_topic("gate-a"), b"{}") != 0, 10
    )
    time.sleep(1.0)
    assert pub(port, "gate-a", a.password, event_topic("gate-a"), _event("gate-a")) != 0
    old_b: Issued = secured["b"]  # type: ignore[assignment]
    assert pub(port, "gate-b", old_b.password, event_topic("gate-b"), _event("gate-b")) != 0
    assert pub(port, "gate-b", rotated.password, event_topic("gate-b"), _event("gate-b")) == 0


def test_the_ingester_account_ingests_from_the_secured_broker(
    secured: dict[str, object], start_ingester
) -> None:  # type: ignore[no-untyped-def]
    from devices.settings import MqttSettings

    port = secured["broker"].config.port  # type: ignore[attr-defined]
    ingester: Issued = secured["ingester"]  # type: ignore[assignment]
    a: Issued = secured["a"]  # type: ignore[assignment]
    db = str(secured["db"])
    settings = MqttSettings(port=port, username=ingester.username, password=ingester.password)  # type: ignore[arg-type]
    start_ingester(db, settings, client_id=ingester.username)
    example = EXAMPLES["gate.pass"][1].model_copy(
        update={"device": "gate-a", "id": uuid.uuid4(), "ts": datetime.now(UTC)}
    )
    # Exactly what docs/mqtt.md tells a device maker to run.
    assert pub(port, "gate-a", a.password, event_topic("gate-a"), encode(example)) == 0
    assert wait_until(
        lambda: count(db, "SELECT count(*) FROM events WHERE device_id = 'gate-a'") == 1, 15
    )
    config = {"v": 1, "device": "gate-a", "kind": "gate", "floor": 0, "door": "entrance",
              "availability_topic": "vt/v1/gate-a/status"}  # fmt: skip
    assert pub(port, "gate-a", a.password, config_topic("gate-a"), json.dumps(config).encode()) == 0
    # The device's place is the operator's: its claim waits as a pending change.
    assert wait_until(
        lambda: count(db, "SELECT count(*) FROM device_place_changes WHERE door = 'entrance'") == 1,
        15,
    )
    assert count(db, "SELECT count(*) FROM devices WHERE door = 'entrance'") == 0


def test_devices_commands(db: str, tmp_path: Path) -> None:
    env = {"VT_DB_DSN": db, "VT_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "villagetwin.cli", "devices", *args],
                              capture_output=True, text=True, cwd=ROOT, env=env)  # fmt: skip

    added = run("add", "cam-x1", "--kind", "camera")
    assert added.returncode == 0, added.stderr
    password = added.stdout.split("password: ")[1].strip()
    dynsec = json.loads((tmp_path / "mosquitto" / "dynamic-security.json").read_text())
    clients = {c["username"]: c for c in dynsec["clients"]}
    assert clients["cam-x1"]["clientid"] == "cam-x1" and clients["cam-x1"]["iterations"] == 101
    assert oct((tmp_path / "mosquitto" / "dynamic-security.json").stat().st_mode)[-3:] == "600"
    assert run("add", "cam-x1", "--kind", "camera").returncode == 1  # exists already
    assert run("add", "Bad Id!", "--kind", "camera").returncode == 1
    listed = run("list")
    assert "cam-x1\tcamera\t\tsilent" in listed.stdout
    assert run("revoke", "cam-x1").returncode == 0
    assert "cam-x1" not in (tmp_path / "mosquitto" / "dynamic-security.json").read_text()
    assert "revoked" in run("list").stdout
    assert password  # shown once, never stored
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT password_hash FROM devices").fetchone() == (None,)
