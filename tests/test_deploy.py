"""docker-compose.yml cannot run here (no Docker engine), so what it uses is tested instead:
the Mosquitto config it mounts (run with the ownership and modes the container would see), the
commands it runs, the users, roles, secrets and health checks it gives each service, the
ingester with the compose's environment against the real services, and the reverse proxy's
config on a real nginx in front of the real dashboard."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from support import (
    ROOT,
    Broker,
    Fleet,
    count,
    dashboard_server,
    free_port,
    register_gates,
    wait_until,
)

from devices.broker import DOCKER, dynsec_plugin, render
from devices.payloads import DeviceKind
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


SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_USER = "10001:10001"
# Services built from this project's image, and the database role each connects as.
APP_ROLES = {
    "migrate": "postgres",
    "ingester-1": "vt_ingester",
    "ingester-2": "vt_ingester",
    "rules": "vt_rules",
    "dashboard": "vt_dashboard",
}
LONG_RUNNING = {"timescaledb", "mosquitto", "ingester-1", "ingester-2", "dashboard", "proxy"}


def _env(name: str) -> dict[str, str]:
    env = dict(COMPOSE["x-app"]["environment"])
    env.update({k: v for k, v in SERVICES[name].get("environment", {}).items() if k != "<<"})
    return env


def _secret_targets(name: str) -> dict[str, str]:
    """target file name -> secret source, as compose mounts them under /run/secrets."""
    found = {}
    for entry in SERVICES[name].get("secrets", []):
        if isinstance(entry, str):
            found[entry] = entry
        else:
            found[entry.get("target", entry["source"])] = entry["source"]
    return found


def test_compose_commands_are_real_subcommands() -> None:
    for name, service in SERVICES.items():
        command = service.get("command")
        if not command:
            continue
        assert command[0] == "villagetwin", name
        assert command[1] in cli.commands, f"{name} runs unknown subcommand {command[1]}"
        assert "profiles" not in service, f"{name} is not started by `docker compose up`"


def test_each_service_runs_unprivileged_with_a_health_check() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {APP_USER}" in dockerfile
    for name in APP_ROLES:
        assert SERVICES[name]["user"] == APP_USER, name
        assert SERVICES[name]["read_only"] is True, name
    # Only the one-shot that hands the broker its files runs as root, and it exits.
    assert SERVICES["broker-auth"]["user"] == "0:0"
    assert SERVICES["broker-auth"]["restart"] == "no"
    assert "user" not in SERVICES["mosquitto"]  # starts as root, drops to `mosquitto`
    assert "nginx-unprivileged" in SERVICES["proxy"]["image"]
    for name in LONG_RUNNING:
        assert SERVICES[name]["healthcheck"]["test"], name
    ingester = COMPOSE["x-ingester"]["healthcheck"]["test"]
    assert "/healthz" in " ".join(ingester)
    assert "timescaledb-ha" in SERVICES["timescaledb"]["image"]  # TimescaleDB with PostGIS


def test_only_migrate_holds_the_superuser_and_no_password_has_a_default() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"\$\{[A-Z_]*(PASSWORD|KEY)[A-Z_]*:-", text), "a default secret"
    for name, role in APP_ROLES.items():
        env = _env(name)
        assert conninfo_to_dict(env["VT_DB_DSN"])["user"] == role, name
        assert not any("PASSWORD" in k or "KEY" in k for k in env), (name, env)
        holders = {t for t, source in _secret_targets(name).items()}
        assert holders <= {
            "vt_db_password", "vt_dashboard_db_password", "vt_ingester_db_password",
            "vt_rules_db_password", "vt_mqtt__password", "vt_ingest__credential_key",
        }, name  # fmt: skip
    superuser = {
        name for name in SERVICES if "db_superuser_password" in _secret_targets(name).values()
    }
    assert superuser == {"timescaledb", "migrate"}
    assert conninfo_to_dict(_env("dashboard")["VT_DASHBOARD_DSN"])["user"] == "vt_dashboard"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/secrets/db_superuser_password"], cwd=ROOT
    )
    assert ignored.returncode == 0, "secret files must never be committed"
    made = (ROOT / "deploy" / "make-secrets.sh").read_text()
    for secret, spec in COMPOSE["secrets"].items():
        assert spec["file"] == f"./deploy/secrets/{secret}"
        assert secret in made or secret.startswith("mqtt_"), secret


def _write_secrets(directory: Path, name: str, values: dict[str, str]) -> Path:
    directory.mkdir()
    for target, source in _secret_targets(name).items():
        (directory / target).write_text(values[source])
    return directory


def test_secret_files_reach_each_services_settings(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dashboard.settings import DashboardSettings
    from villagetwin.settings import AppSettings

    values = {s: f"{s}-value" for s in COMPOSE["secrets"]}
    for key in list(os.environ):
        if key.startswith("VT_"):
            monkeypatch.delenv(key)

    def load(name: str, cls: type[Any]) -> Any:
        secrets = _write_secrets(tmp_path / name, name, values)
        for key, value in _env(name).items():
            monkeypatch.setenv(key, value)
        try:
            return cls(_secrets_dir=secrets)
        finally:
            for key in _env(name):
                monkeypatch.delenv(key)

    ingester = load("ingester-2", IngestSettings)
    dsn = conninfo_to_dict(ingester.db_dsn)
    assert (dsn["user"], dsn["password"], dsn["host"]) == (
        "vt_ingester", "db_ingester_password-value", "timescaledb",
    )  # fmt: skip
    assert ingester.mqtt.host == "mosquitto" and ingester.mqtt.port == 1883
    assert ingester.mqtt.username == ingester.ingest.client_id == "vt-ingester-2"
    assert ingester.client_id == "vt-ingester-2"  # its username: the broker binds the two
    assert ingester.mqtt.password.get_secret_value() == "mqtt_ingester_2_password-value"
    assert ingester.ingest.credential_key.get_secret_value() == "credential_key-value"
    assert ingester.ingest.share_group == "ingesters"
    assert ingester.ingest.http_host == "0.0.0.0" and ingester.ingest.http_port == 9108

    migrate = load("migrate", AppSettings)
    assert conninfo_to_dict(migrate.db_dsn)["password"] == "db_superuser_password-value"
    assert migrate.dashboard_db_password.get_secret_value() == "db_dashboard_password-value"
    assert migrate.ingester_db_password.get_secret_value() == "db_ingester_password-value"
    assert migrate.rules_db_password.get_secret_value() == "db_rules_password-value"
    assert migrate.db_backend == "timescaledb"

    dashboard = load("dashboard", DashboardSettings)
    reader = conninfo_to_dict(dashboard.reader_dsn())
    assert (reader["user"], reader["password"]) == ("vt_dashboard", "db_dashboard_password-value")
    assert conninfo_to_dict(dashboard.db_dsn)["user"] == "vt_dashboard"

    from rules.settings import RulesSettings

    worker = load("rules", RulesSettings)
    dsn = conninfo_to_dict(worker.db_dsn)
    assert (dsn["user"], dsn["password"], dsn["host"]) == (
        "vt_rules", "db_rules_password-value", "timescaledb",
    )  # fmt: skip
    assert worker.mqtt.username == worker.worker.client_id == "vt-rules"
    assert worker.mqtt.password.get_secret_value() == "mqtt_rules_password-value"


def _private_dir(prefix: str) -> Path:
    # Not pytest's tmp_path: the broker, once it drops to `mosquitto`, must be able to enter it.
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


def _broker_config(base: Path, auth: Path, data: Path, port: int) -> Path:
    """The mounted config with the container's paths mapped to local ones; no `user` line,
    so Mosquitto started as root drops to `mosquitto`, as in the image."""
    text = MOUNTED_CONF.read_text()
    text = text.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    text = re.sub(r"listener 8883 0\.0\.0\.0", f"listener {free_port()} 127.0.0.1", text)
    text = text.replace("/mosquitto/config/auth", str(auth)).replace("/mosquitto/data", str(data))
    # The image keeps its plugins in /usr/lib; Debian in its multiarch directory.
    for plugin in re.findall(r"^plugin (\S+)$", text, flags=re.MULTILINE):
        local = sorted(Path("/usr/lib").glob(f"*/{Path(plugin).name}"))
        if not Path(plugin).exists() and local:
            text = text.replace(f"plugin {plugin}", f"plugin {local[0]}")
    assert "\nuser " not in text
    conf = base / "mosquitto.conf"
    conf.write_text(text)
    return conf


def test_the_broker_reads_the_registrys_0600_files_once_broker_auth_hands_them_over(
    db: str,
) -> None:
    """The files the registry writes are 0600 and the host user's; Mosquitto drops to the
    `mosquitto` user and could not read them. broker-auth's script copies them into the
    broker's volume owned by that user: run as the compose runs it, then the broker from the
    mounted config, and a provisioned device signs in."""
    import paho.mqtt.client as paho

    from devices.settings import MqttSettings
    from villagetwin.provision import add_device, apply_live, write_auth_files

    assert os.geteuid() == 0, "this test plays the container's root, as CI does"
    mosquitto = pwd.getpwnam("mosquitto")  # Debian's package makes the same user as the image
    with psycopg.connect(db) as conn:
        issued = add_device(conn, "gate-compose", DeviceKind.GATE)
        host_dir = _private_dir("vt-auth-src-")
        write_auth_files(conn, host_dir)
    if "certfile /mosquitto/config/auth/" in MOUNTED_CONF.read_text():
        # The TLS listener's certificate sits beside the auth files, written the same way.
        tls = host_dir / "tls"
        tls.mkdir(exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-keyout", str(tls / "server.key"),
             "-out", str(tls / "server.crt")],
            check=True, capture_output=True,
        )  # fmt: skip
        for path in tls.iterdir():
            path.chmod(0o600)
    files = [p for p in host_dir.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    base = _private_dir("vt-broker-")
    data = base / "data"
    data.mkdir()
    os.chown(data, mosquitto.pw_uid, mosquitto.pw_gid)
    port = free_port()

    # As things were: the broker pointed at the host user's files cannot read them.
    before = subprocess.run(
        ["mosquitto", "-c", str(_broker_config(base, host_dir, data, port))],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    said = before.stdout + before.stderr
    assert before.returncode != 0
    unreadable = (
        rf"Unable to open .*{re.escape(str(host_dir))}",
        r"Dynamic security plugin config: File is not readable",
        rf"Unable to load server certificate \"{re.escape(str(host_dir))}",
    )
    assert any(re.search(pattern, said) for pattern in unreadable), said

    volume = base / "auth-volume"
    script = ROOT / "deploy" / "mosquitto" / "install-auth.sh"
    command = SERVICES["broker-auth"]["entrypoint"]
    assert command == ["sh", "/deploy/install-auth.sh"]
    assert (
        f"./deploy/mosquitto/install-auth.sh:{command[1]}:ro" in SERVICES["broker-auth"]["volumes"]
    )
    env = {"PATH": os.environ["PATH"], "VT_AUTH_SRC": str(host_dir), "VT_AUTH_DST": str(volume)}
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True)
    for path in [volume, *volume.rglob("*")]:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (mosquitto.pw_uid, mosquitto.pw_gid), path
        assert st.st_mode & 0o077 == 0, path
    assert "mosquitto-auth:/auth-src:ro" not in SERVICES["broker-auth"]["volumes"]
    assert "mosquitto-auth:/mosquitto/config/auth" in SERVICES["mosquitto"]["volumes"]

    log = base / "mosquitto.log"
    process = subprocess.Popen(
        ["mosquitto", "-c", str(_broker_config(base, volume, data, port))],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, 10), log.read_text()
        results = {}
        for name, password in [("right", issued.password), ("wrong", "not-the-password")]:
            client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="gate-compose")
            client.username_pw_set("gate-compose", password)
            results[name] = client.connect("127.0.0.1", port) == 0 and _connack(client)
        assert results == {"right": 0, "wrong": 135}  # accepted; refused: not authorised
        # The dynamic-security plugin rewrites its file on a live change: the copy is writable.
        with psycopg.connect(db) as conn:
            later = add_device(conn, "gate-compose-2", DeviceKind.GATE)
        live = MqttSettings(host="127.0.0.1", port=port)
        assert apply_live(live, host_dir, later.commands) == []
        saved = volume / "dynamic-security.json"
        assert wait_until(lambda: "gate-compose-2" in saved.read_text(), 10), log.read_text()
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(host_dir, ignore_errors=True)


def _connack(client: Any) -> int:
    codes: list[int] = []
    client.on_connect = lambda c, u, f, rc, p: codes.append(rc.value)
    deadline = time.monotonic() + 10
    while not codes and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return codes[0] if codes else -1


def test_the_ingester_with_the_composes_environment_stores_as_its_own_role(
    db: str, broker: Broker, tmp_path: Path
) -> None:
    """ingester-1's environment and secret files, with only the service names mapped to the
    real services here: it stores events, connected as vt_ingester, which cannot read people."""
    register_gates(db, ["gate-c1", "gate-c2"])
    params = conninfo_to_dict(db)
    values = {s: "unused-with-trust-auth" for s in COMPOSE["secrets"]}
    values["credential_key"] = "a-real-key-of-this-deployment"
    secrets = _write_secrets(tmp_path / "secrets", "ingester-1", values)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    for key, value in _env("ingester-1").items():
        value = value.replace(
            "@timescaledb:5432/villagetwin", f"@127.0.0.1:5432/{params['dbname']}"
        )
        env[key] = value
    env.update(
        {
            "VT_MQTT__HOST": "127.0.0.1",
            "VT_MQTT__PORT": str(broker.config.port),
            "VT_INGEST__HTTP_HOST": "127.0.0.1",
            "VT_INGEST__HTTP_PORT": str(free_port()),
            "VT_SECRETS_DIR": str(secrets),
        }
    )
    log = tmp_path / "ingester.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "villagetwin.cli", *SERVICES["ingester-1"]["command"][1:]],
        env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert wait_until(lambda: "subscription active" in log.read_text(), 20), log.read_text()
        fleet = Fleet(broker.settings, ["gate-c1", "gate-c2"], client_id="fleet-compose")
        fleet.publish(50)
        fleet.wait_acknowledged()
        fleet.close()
        assert wait_until(lambda: count(db, "SELECT count(*) FROM events") == 100, 30)
        roles = count(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND usename = 'vt_ingester'",
        )
        assert roles >= 1
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert "development default" not in log.read_text()  # the key came from its secret file
    assert "stopped: received 100, stored 100" in log.read_text()
    with psycopg.connect(db) as conn:
        conn.execute("SET ROLE vt_ingester")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM people")
        conn.rollback()
        conn.execute("SET ROLE vt_ingester")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT password_hash FROM devices")


def _composes_env(name: str, db: str, broker: Broker, secrets: Path) -> dict[str, str]:
    """The service's environment with only the service names mapped to the real services here
    (the test database, the test broker) and its secret files in ``secrets``."""
    params = conninfo_to_dict(db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    for key, value in _env(name).items():
        env[key] = value.replace(
            "@timescaledb:5432/villagetwin", f"@127.0.0.1:5432/{params['dbname']}"
        )
    env.update(
        {
            "VT_MQTT__HOST": "127.0.0.1",
            "VT_MQTT__PORT": str(broker.config.port),
            "VT_SECRETS_DIR": str(secrets),
        }
    )
    return env


# What vt_rules (migration 0160) must never do: personal data in the clear, credentials,
# the reveal functions, writes outside alerts, cases and its state.
RULES_REFUSED = [
    "SELECT password_hash FROM app_users",
    "SELECT username FROM app_users",
    "INSERT INTO app_users (username, role, password_hash) VALUES ('rules-admin', 'admin', 'x')",
    "UPDATE app_users SET grids = '{}'",
    "SELECT reveal_person(gen_random_uuid())",
    "SELECT request_reveal('P1', 'tenancy', 'curious')",
    "SELECT name, phone, id_number FROM people",
    "SELECT password_hash FROM devices",
    "UPDATE devices SET online = true",
    "INSERT INTO events (ts, event_id, device_id, seq, kind) VALUES (now(), gen_random_uuid(),"
    " 'x', 1, 'x')",
    "DELETE FROM tenancies",
    "SELECT * FROM audit_log",
]


def test_the_rules_worker_with_the_composes_environment_writes_alerts_as_its_own_role(
    any_db: str, tmp_path: Path
) -> None:
    """The `rules` service's command, environment and secret files against a real database and
    broker: connected as vt_rules (migration 0160), the worker turns a smoke detection stored
    in events into an alert placed in its building's grid, a resident's three-day-old report
    into a case escalated as overdue, and saves its state; vt_rules is refused app users, the
    reveal functions, clear personal data and writes outside its tables. On TimescaleDB, as the
    compose runs, and on plain PostgreSQL (managed services, the embedded default). The broker
    enforces the registry's accounts: the worker signs in as its service account `vt-rules`
    and its alert reaches a subscriber."""
    import paho.mqtt.client as paho

    from devices.broker import BrokerConfig
    from mapping.db import load_village
    from mapping.generate import generate
    from villagetwin.provision import add_service_account, write_auth_files

    db = any_db

    with psycopg.connect(db) as conn:
        load_village(conn, generate(seed=4, size="small"))
        (camera,) = conn.execute(
            "SELECT device_id FROM devices WHERE kind = 'camera' ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        building, grid = conn.execute(
            "SELECT building_id, grid_code FROM buildings WHERE grid_code IS NOT NULL"
            " ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            "INSERT INTO incidents (incident_id, reported_at, device_id, building_id, category,"
            " description) VALUES (gen_random_uuid(), now() - interval '3 days', %s, %s,"
            " 'fire_hazard', '楼道堆放杂物 clutter in the stairwell')",
            (camera, building),
        )
        account = add_service_account(conn, "vt-rules")
        reader = add_service_account(conn, "vt-ingester-1")
        auth = tmp_path / "mosquitto"
        dynsec = write_auth_files(conn, auth)
    broker = Broker(
        auth,
        BrokerConfig(
            port=free_port(), persistence_dir=auth / "data", log_file=auth / "mosquitto.log",
            pid_file=auth / "mosquitto.pid", user=local_user(), dynsec_file=dynsec,
        ),
    )  # fmt: skip
    broker.start()
    heard: list[str] = []
    subscriber = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="vt-ingester-1")
    subscriber.username_pw_set("vt-ingester-1", reader.password)
    subscriber.on_message = lambda c, u, msg: heard.append(msg.topic)
    subscriber.on_connect = lambda c, u, f, rc, p: c.subscribe("vt/v1/alerts/#", qos=1)
    subscriber.connect("127.0.0.1", broker.config.port or 0)
    subscriber.loop_start()
    values = {s: "unused-with-trust-auth" for s in COMPOSE["secrets"]}
    values["mqtt_rules_password"] = account.password
    secrets = _write_secrets(tmp_path / "secrets", "rules", values)
    assert sorted(p.name for p in secrets.iterdir()) == ["vt_db_password", "vt_mqtt__password"]
    env = _composes_env("rules", db, broker, secrets)
    assert conninfo_to_dict(env["VT_DB_DSN"])["user"] == "vt_rules"
    log = tmp_path / "rules.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "villagetwin.cli", *SERVICES["rules"]["command"][1:]],
        env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    smoke = "SELECT count(*) FROM alerts WHERE rule = 'smoke_fire' AND subject = %s"
    try:
        # Its window cycle committed (state, cases) and its event loop is listening.
        window_done = "SELECT count(*) FROM rule_state WHERE name = 'device_status'"
        assert wait_until(lambda: count(db, window_done) == 1, 60), log.read_text()
        assert wait_until(lambda: "rules worker running" in log.read_text(), 30), log.read_text()
        with psycopg.connect(db) as conn:
            conn.execute(
                "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind,"
                " building_id, payload) VALUES (now(), now(), gen_random_uuid(), %s, 1,"
                " 'camera.detection', %s, %s)",
                (camera, building, json.dumps({"cls": "smoke", "confidence": 0.9,
                                               "zone": f"stairwell:{building}", "count": 1})),
            )  # fmt: skip
        assert wait_until(lambda: count(db, smoke, f"building:{building}") == 1, 60), (
            log.read_text()
        )
        connected = count(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND usename = 'vt_rules'",
        )
        assert connected >= 2  # the event loop and the window thread
        alert_topic = "vt/v1/alerts/critical/smoke_fire"
        assert wait_until(lambda: alert_topic in heard, 30), (heard, log.read_text())
    finally:
        process.terminate()
        process.wait(timeout=60)
        subscriber.loop_stop()
        subscriber.disconnect()
        broker.kill()
    said = log.read_text()
    assert process.returncode == 0, said
    assert "permission denied" not in said and "Traceback" not in said, said
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT a.grid_code, a.published_version = a.version,"
            " array(SELECT action FROM alert_history h WHERE h.alert_id = a.alert_id)"
            " FROM alerts a WHERE rule = 'smoke_fire' AND subject = %s",
            (f"building:{building}",),
        ).fetchone()
        assert row == (grid, True, ["opened"])  # placed through its grid; published over MQTT
        case = conn.execute(
            "SELECT c.source, c.grid_code, c.priority, c.escalated_at IS NOT NULL,"
            " array(SELECT action FROM case_history h WHERE h.case_id = c.case_id"
            "       ORDER BY history_id)"
            " FROM cases c JOIN incidents i USING (incident_id)"
        ).fetchall()
        assert case == [("app", grid, "urgent", True, ["reported", "escalated"])]
        assert count(db, "SELECT count(*) FROM rule_state WHERE name = 'events'") == 1
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SET ROLE vt_rules")
        for sql in RULES_REFUSED:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


@pytest.mark.browser
def test_the_proxy_sets_security_headers_in_front_of_the_real_dashboard(
    db: str, tmp_path: Path
) -> None:
    """deploy/nginx/nginx.conf on a real nginx, its upstream mapped to a real dashboard: every
    answer carries the headers, the websocket Streamlit lives on passes, and under its
    Content-Security-Policy the sign-in page renders in Chromium with no violation."""
    import urllib.request

    from playwright.sync_api import sync_playwright
    from support import CHROMIUM, CHROMIUM_ARGS

    assert shutil.which("nginx"), "nginx is missing: run scripts/install-system.sh"
    port = free_port()
    conf_text = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    env = {**os.environ, "VT_DB_DSN": db}
    with dashboard_server(env, tmp_path / "dashboard.log") as url:
        upstream = url.removeprefix("http://")
        text = conf_text.replace("server dashboard:8501;", f"server {upstream};")
        text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        text = text.replace("pid /tmp/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};")
        for temp in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
            text = text.replace(f"/tmp/{temp}_temp", str(tmp_path / f"{temp}_temp"))
        conf = tmp_path / "nginx.conf"
        conf.write_text(text)
        checked = subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"])
        try:
            assert wait_for_port("127.0.0.1", port, 10)
            proxy = f"http://127.0.0.1:{port}"
            for path in ["/", "/_stcore/health", "/no-such-page"]:
                with contextlib.suppress(urllib.error.HTTPError):
                    answer = urllib.request.urlopen(proxy + path, timeout=10)
                headers = answer.headers
                assert headers["X-Frame-Options"] == "DENY", path
                assert headers["X-Content-Type-Options"] == "nosniff", path
                assert headers["Referrer-Policy"] == "no-referrer", path
                assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
                assert "max-age=31536000" in headers["Strict-Transport-Security"], path
                assert headers["Server"] == "nginx", path  # no version
            assert urllib.request.urlopen(proxy + "/_stcore/health").read() == b"ok"
            violations: list[str] = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.on(
                    "console",
                    lambda m: (
                        violations.append(m.text)
                        if "Content Security Policy" in m.text or "Refused to" in m.text
                        else None
                    ),
                )
                page.goto(proxy)
                # The sign-in form comes over Streamlit's websocket, through the proxy.
                page.get_by_label("用户名 Username").wait_for(timeout=60_000)
                page.screenshot(path=str(tmp_path / "proxied.png"))
                browser.close()
            assert violations == []
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
