"""The device registry's credentials in the database, and the broker files made from them.

The registry (the ``devices`` and ``service_accounts`` tables) is the one source: Mosquitto's
password and ACL files are regenerated from it after every change and the broker is told to
reload, so a broker restart never loses a device and a revoked device stays out.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devices.payloads import DeviceKind
from devices.provisioning import acl_file, hash_password, new_password, password_file
from devices.topics import is_device_id


class ProvisioningError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Issued:
    username: str
    password: str


def add_device(
    conn: psycopg.Connection,
    device_id: str,
    kind: DeviceKind,
    building_id: str | None = None,
    floor: int | None = None,
    door: str | None = None,
) -> Issued:
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
        raise ProvisioningError(f"no building {building_id!r} in the village model")
    password = new_password()
    row = conn.execute(
        "INSERT INTO devices (device_id, kind, building_id, floor, door, password_hash,"
        " credentials_issued_at) VALUES (%s, %s, %s, %s, %s, %s, now())"
        " ON CONFLICT (device_id) DO NOTHING RETURNING device_id",
        (device_id, kind.value, building_id, floor, door, hash_password(password)),
    ).fetchone()
    if row is None:
        raise ProvisioningError(f"device {device_id!r} exists already; use `devices rotate`")
    return Issued(device_id, password)


def rotate(conn: psycopg.Connection, device_id: str) -> Issued:
    password = new_password()
    row = conn.execute(
        "UPDATE devices SET password_hash = %s, credentials_issued_at = now(), revoked_at = NULL"
        " WHERE device_id = %s RETURNING device_id",
        (hash_password(password), device_id),
    ).fetchone()
    if row is None:
        raise ProvisioningError(f"no device {device_id!r}")
    return Issued(device_id, password)


def revoke(conn: psycopg.Connection, device_id: str) -> None:
    row = conn.execute(
        "UPDATE devices SET revoked_at = now(), password_hash = NULL WHERE device_id = %s"
        " RETURNING device_id",
        (device_id,),
    ).fetchone()
    if row is None:
        raise ProvisioningError(f"no device {device_id!r}")


def add_service_account(conn: psycopg.Connection, username: str, role: str = "ingester") -> Issued:
    if (
        is_device_id(username)
        and conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (username,)).fetchone()
    ):
        raise ProvisioningError(f"{username!r} is a device id")
    password = new_password()
    conn.execute(
        "INSERT INTO service_accounts (username, role, password_hash) VALUES (%s, %s, %s)"
        " ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
        " revoked_at = NULL",
        (username, role, hash_password(password)),
    )
    return Issued(username, password)


def write_auth_files(conn: psycopg.Connection, directory: Path) -> tuple[Path, Path]:
    """Regenerates the password and ACL files from the registry; returns their paths."""
    devices = conn.execute(
        "SELECT device_id, password_hash FROM devices"
        " WHERE revoked_at IS NULL AND password_hash IS NOT NULL"
    ).fetchall()
    services = conn.execute(
        "SELECT username, password_hash, role FROM service_accounts WHERE revoked_at IS NULL"
    ).fetchall()
    directory.mkdir(parents=True, exist_ok=True)
    passwords, acl = directory / "passwd", directory / "acl"
    accounts = [(d, h) for d, h in devices] + [(u, h) for u, h, _ in services]
    _write_private(passwords, password_file(accounts))
    _write_private(acl, acl_file(u for u, _, role in services if role == "ingester"))
    return passwords, acl


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.chmod(temporary, 0o600)
    temporary.replace(path)  # the broker never reads a half-written file


def reload_broker(pid_file: Path) -> bool:
    """SIGHUP makes Mosquitto reread its password and ACL files."""
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True


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
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if time_zone:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProvisioningError(f"{time_zone!r} is not an IANA time zone") from None
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
