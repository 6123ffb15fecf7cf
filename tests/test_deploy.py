"""docker-compose.yml cannot run here (no Docker engine), so what it uses is tested instead:
the Mosquitto config it mounts, the commands it runs and the settings it passes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from support import ROOT, free_port

from devices.broker import DOCKER, dynsec_plugin, render
from devices.provisioning import dynsec_config, hash_password
from ingest.settings import IngestSettings
from villagetwin.cli import cli
from villagetwin.local import local_user, wait_for_port
from villagetwin.tls import ensure_local_certificate

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
MOUNTED_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


def test_mounted_broker_config_is_the_generated_one() -> None:
    assert MOUNTED_CONF.read_text() == render(DOCKER), (
        "deploy/mosquitto/mosquitto.conf is stale: run `villagetwin broker write-docker-config`"
    )
    volumes = COMPOSE["services"]["mosquitto"]["volumes"]
    assert "./deploy/mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in volumes


def test_the_mounted_config_runs_on_a_real_mosquitto(tmp_path: Path) -> None:
    """The mounted config, its paths moved here: a device gets in over TLS only, with the
    certificate `setup` makes, and the credentials of the registry's dynamic-security file."""
    port, tls_port = free_port(), free_port()
    data = tmp_path / "data"
    text = MOUNTED_CONF.read_text()
    text = text.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    text = text.replace("listener 8883 0.0.0.0", f"listener {tls_port} 127.0.0.1")
    text = text.replace("/mosquitto/data", str(data))
    text = text.replace(str(DOCKER.dynsec_plugin), str(dynsec_plugin()))
    auth = tmp_path / "auth"
    cert, _ = ensure_local_certificate(auth / "tls")
    password = "device-password"
    config = dynsec_config([("gate-1", hash_password(password))], [], hash_password("admin-pw"))
    (auth / "dynamic-security.json").write_text(json.dumps(config))
    text = text.replace("/mosquitto/config/auth", str(auth))
    assert str(data) in text and "allow_anonymous false" in text
    text += f"user {local_user()}\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    process = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        assert wait_for_port("127.0.0.1", tls_port, 10), "Mosquitto refused the mounted config"
        assert process.poll() is None
        pub = ["mosquitto_pub", "-h", "localhost", "-p", str(tls_port), "-i", "gate-1",
               "-u", "gate-1", "-t", "vt/v1/gate-1/status", "-m", "{}",
               "--cafile", str(cert)]  # fmt: skip
        assert subprocess.run([*pub, "-P", password], capture_output=True).returncode == 0
        assert subprocess.run([*pub, "-P", "wrong"], capture_output=True).returncode != 0
    finally:
        process.kill()
        process.wait()


def test_compose_exposes_only_tls_to_devices() -> None:
    mosquitto = COMPOSE["services"]["mosquitto"]
    assert mosquitto["ports"] == ["8883:8883"]
    assert "listener 8883 0.0.0.0" in MOUNTED_CONF.read_text()


def test_compose_commands_are_real_subcommands() -> None:
    for name, service in COMPOSE["services"].items():
        command = service.get("command")
        if not command:
            continue
        assert command[0] == "villagetwin", name
        assert command[1] in cli.commands, f"{name} runs unknown subcommand {command[1]}"


def test_compose_environment_reaches_the_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env = dict(COMPOSE["x-app"]["environment"])
    env.update(
        {k: v for k, v in COMPOSE["services"]["ingester"]["environment"].items() if k != "<<"}
    )
    for key, value in env.items():
        value = value.replace("${POSTGRES_PASSWORD:-villagetwin}", "pw")
        value = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "secret", value)
        monkeypatch.setenv(key, value)
    settings = IngestSettings()
    assert settings.mqtt.host == "mosquitto"
    assert settings.db_dsn == "postgresql://postgres:pw@timescaledb:5432/villagetwin"
    assert settings.ingest.http_host == "0.0.0.0" and settings.ingest.http_port == 9108
    assert settings.client_id == "vt-ingester-1"  # its username: the broker binds the two
    assert settings.mqtt.username == "vt-ingester-1" and settings.mqtt.password is not None
