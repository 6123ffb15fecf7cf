"""The device registry's credentials in the database, and the broker files made from them.

The registry (the ``devices`` and ``service_accounts`` tables) is the one source: the
dynamic-security plugin's file is regenerated from it after every change (a broker restart
never loses a device, and a revoked device stays out), and a running broker is changed at once
through the plugin's ``$CONTROL`` topic, as the registry's own admin account (``apply_live``).

Device ids and service-account names are one namespace (the broker knows only usernames):
a name taken on one side is refused on the other, here with a clear message and in the
database by a trigger (migration 0030).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from devices.payloads import DeviceKind
from devices.provisioning import (
    REGISTRY_ADMIN,
    device_commands,
    dynsec_config,
    hash_password,
    new_password,
    password_commands,
    revoke_commands,
    service_commands,
)
from devices.settings import MqttSettings
from devices.topics import RESERVED_DEVICE_IDS, is_device_id

DYNSEC_FILE = "dynamic-security.json"
ADMIN_SECRET_FILE = "registry-admin.secret"


class ProvisioningError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Issued:
    username: str
    password: str
    # What a running broker must be told ($CONTROL/dynamic-security/v1 commands).
    commands: tuple[dict[str, Any], ...] = field(default=(), compare=False, repr=False)


def _name_taken(conn: psycopg.Connection, name: str) -> str | None:
    """Who holds ``name`` in the broker's one namespace of usernames, if anyone."""
    if name == REGISTRY_ADMIN:
        return "the registry's broker admin account"
    if conn.execute("SELECT 1 FROM service_accounts WHERE username = %s", (name,)).fetchone():
        return "a service account"
    if conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (name,)).fetchone():
        return "a device"
    return None


def add_device(
    conn: psycopg.Connection,
    device_id: str,
    kind: DeviceKind,
    building_id: str | None = None,
    floor: int | None = None,
    door: str | None = None,
) -> Issued:
    if device_id in RESERVED_DEVICE_IDS:
        raise ProvisioningError(f"{device_id!r} is reserved for the platform's own topics")
    if not is_device_id(device_id):
        raise ProvisioningError(
            f"{device_id!r} is not a device id: lower-case letters, digits, '.', '_', '-'"
        )
    if (
        building_id
        and not conn.execute(
            "SELECT 1 FROM buildings WHERE building_id = %s", (building_id,)
        ).fetchone()
    ):
        by_address = conn.execute(
            "SELECT building_id FROM buildings WHERE address = %s ORDER BY 1 LIMIT 1",
            (building_id,),
        ).fetchone()
        hint = (
            f"; that is the address of {by_address[0]}: give its id, --building {by_address[0]}"
            if by_address
            else " (--building takes the building id, e.g. LH00150, not its address)"
        )
        raise ProvisioningError(f"no building id {building_id!r} in the village model{hint}")
    taken = _name_taken(conn, device_id)
    if taken == "a device":
        raise ProvisioningError(f"device {device_id!r} exists already; use `devices rotate`")
    if taken:
        raise ProvisioningError(
            f"{device_id!r} is {taken}: device ids and service-account names share one"
            " namespace at the broker"
        )
    password = new_password()
    row = conn.execute(
        "INSERT INTO devices (device_id, kind, building_id, floor, door, password_hash,"
        " credentials_issued_at) VALUES (%s, %s, %s, %s, %s, %s, now())"
        " ON CONFLICT (device_id) DO NOTHING RETURNING device_id",
        (device_id, kind.value, building_id, floor, door, hash_password(password)),
    ).fetchone()
    if row is None:
        raise ProvisioningError(f"device {device_id!r} exists already; use `devices rotate`")
    return Issued(device_id, password, tuple(device_commands(device_id, password)))


def rotate(conn: psycopg.Connection, device_id: str) -> Issued:
    password = new_password()
    row = conn.execute(
        "UPDATE devices SET password_hash = %s, credentials_issued_at = now(), revoked_at = NULL"
        " WHERE device_id = %s RETURNING device_id",
        (hash_password(password), device_id),
    ).fetchone()
    if row is None:
        raise ProvisioningError(f"no device {device_id!r}")
    return Issued(device_id, password, tuple(password_commands(device_id, password)))


def revoke(conn: psycopg.Connection, device_id: str) -> Issued:
    row = conn.execute(
        "UPDATE devices SET revoked_at = now(), password_hash = NULL WHERE device_id = %s"
        " RETURNING device_id",
        (device_id,),
    ).fetchone()
    if row is None:
        raise ProvisioningError(f"no device {device_id!r}")
    return Issued(device_id, "", tuple(revoke_commands(device_id)))


def add_service_account(conn: psycopg.Connection, username: str, role: str = "ingester") -> Issued:
    """Issues (or, for an existing account, renews) an ingester's credentials. Each ingester
    has its own account; its MQTT client id is its username (the broker binds them)."""
    if not is_device_id(username):
        raise ProvisioningError(
            f"{username!r} cannot be a broker username: lower-case letters, digits, '.', '_', '-'"
        )
    taken = _name_taken(conn, username)
    if taken and taken != "a service account":
        raise ProvisioningError(
            f"{username!r} is {taken}: device ids and service-account names share one"
            " namespace at the broker"
        )
    password = new_password()
    conn.execute(
        "INSERT INTO service_accounts (username, role, password_hash) VALUES (%s, %s, %s)"
        " ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
        " revoked_at = NULL",
        (username, role, hash_password(password)),
    )
    return Issued(username, password, tuple(service_commands(username, password)))


def admin_password(directory: Path) -> str:
    """The registry's broker admin password, made on first use, readable by its owner only."""
    path = directory / ADMIN_SECRET_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        _write_private(path, new_password())
    return path.read_text().strip()


def write_auth_files(conn: psycopg.Connection, directory: Path) -> Path:
    """Regenerates the dynamic-security file from the registry; returns its path."""
    devices = conn.execute(
        "SELECT device_id, password_hash FROM devices"
        " WHERE revoked_at IS NULL AND password_hash IS NOT NULL"
    ).fetchall()
    services = conn.execute(
        "SELECT username, password_hash FROM service_accounts"
        " WHERE revoked_at IS NULL AND role = 'ingester'"
    ).fetchall()
    directory.mkdir(parents=True, exist_ok=True)
    admin_hash = hash_password(admin_password(directory))
    path = directory / DYNSEC_FILE
    config = dynsec_config(devices, services, admin_hash)
    _write_private(path, json.dumps(config, indent=1) + "\n")
    return path


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.chmod(temporary, 0o600)
    temporary.replace(path)  # the broker never reads a half-written file


class BrokerUnreachable(RuntimeError):
    pass


def apply_live(
    mqtt: MqttSettings, directory: Path, commands: tuple[dict[str, Any], ...], timeout: float = 10
) -> list[str]:
    """Sends ``commands`` to a running broker's dynamic-security plugin as the registry admin
    and waits for its answers; returns the errors it reported (e.g. "Client already exists"
    for a renewed service account). Raises ``BrokerUnreachable`` when no broker answers: the
    generated file still takes effect at its next start."""
    import paho.mqtt.client as paho

    from devices.mqtt import new_client

    if not commands:
        return []
    admin = MqttSettings(
        host=mqtt.host, port=mqtt.port, username=REGISTRY_ADMIN,
        password=admin_password(directory), protocol="3.1.1",
    )  # fmt: skip
    client = new_client(admin, REGISTRY_ADMIN)
    answered = threading.Event()
    responses: list[dict[str, Any]] = []
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        responses.extend(json.loads(message.payload).get("responses", []))
        answered.set()

    client.on_message = on_message
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=10)
    except OSError as exc:
        raise BrokerUnreachable(f"no broker at {mqtt.host}:{mqtt.port}: {exc}") from exc
    client.loop_start()
    try:
        client.subscribe("$CONTROL/dynamic-security/v1/response", qos=1)
        if not subscribed.wait(timeout):
            raise BrokerUnreachable("the broker did not accept the registry admin's subscription")
        tag = uuid.uuid4().hex
        body = {
            "commands": [{**c, "correlationData": f"{tag}-{n}"} for n, c in enumerate(commands)]
        }
        client.publish("$CONTROL/dynamic-security/v1", json.dumps(body), qos=1)
        if not answered.wait(timeout):
            raise BrokerUnreachable("the broker's dynamic-security plugin did not answer")
    finally:
        client.loop_stop()
        client.disconnect()
    return [f"{r.get('command')}: {r['error']}" for r in responses if r.get("error")]


def set_bridge(
    conn: psycopg.Connection,
    device_id: str,
    time_zone: str | None,
    encoding: str | None,
) -> None:
    """A bridged device's time zone (IANA name, for vendor times without a UTC offset) and
    payload text encoding; ``""`` clears one back to the default (the village's zone; UTF-8,
    else GB18030). Raises ProvisioningError for an unknown zone, encoding or device. The
    ingester picks it up at its next registry reload."""
    import codecs

    from devices.settings import iana_time_zone

    if time_zone:
        try:
            iana_time_zone(time_zone)
        except ValueError as exc:
            raise ProvisioningError(str(exc)) from None
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ProvisioningError(f"{encoding!r} is not a text encoding Python knows") from None
    row = conn.execute(
        "UPDATE devices SET"
        " time_zone = CASE WHEN %(zone)s::text IS NULL THEN time_zone"
        "                  ELSE nullif(%(zone)s, '') END,"
        " text_encoding = CASE WHEN %(encoding)s::text IS NULL THEN text_encoding"
        "                      ELSE nullif(%(encoding)s, '') END"
        " WHERE device_id = %(device)s RETURNING device_id",
        {"zone": time_zone, "encoding": encoding, "device": device_id},
    ).fetchone()
    if row is None:
        raise ProvisioningError(f"no device {device_id!r}")
