"""docker-compose.yml cannot run here (no Docker engine), so what it uses is tested instead:
the Mosquitto config it mounts, the commands it runs and the settings it passes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from support import ROOT, free_port

from devices.broker import DOCKER, render
from ingest.settings import IngestSettings
from villagetwin.cli import cli
from villagetwin.local import local_user, wait_for_port

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
MOUNTED_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


def test_mounted_broker_config_is_the_generated_one() -> None:
    assert MOUNTED_CONF.read_text() == render(DOCKER), (
        "deploy/mosquitto/mosquitto.conf is stale: run `villagetwin broker write-docker-config`"
    )
    volumes = COMPOSE["services"]["mosquitto"]["volumes"]
    assert "./deploy/mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in volumes


def test_the_mounted_config_runs_on_a_real_mosquitto(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    text = MOUNTED_CONF.read_text()
    text = text.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    text = text.replace("/mosquitto/data", str(data))
    auth = tmp_path / "auth"
    auth.mkdir()
    (auth / "passwd").write_text("")  # an empty registry: nobody gets in, but it must parse
    (auth / "acl").write_text("")
    text = text.replace("/mosquitto/config/auth", str(auth))
    assert str(data) in text and "allow_anonymous false" in text
    text += f"user {local_user()}\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    process = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        assert wait_for_port("127.0.0.1", port, 10), "Mosquitto refused the mounted config"
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


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
    assert settings.ingest.client_id == "vt-ingester-1"
    assert settings.mqtt.username == "vt-ingester" and settings.mqtt.password is not None
