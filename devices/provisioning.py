"""Device credentials and the broker's password and ACL files, as pure functions.

Passwords are hashed the way ``mosquitto_passwd`` does for Mosquitto 2 (PBKDF2-SHA512,
``$7$<iterations>$<salt>$<hash>``, base64), with the standard library's ``hashlib``: the
format is four lines of code and needs no extra dependency. The plain password is shown once
when it is issued and never stored.

The broker enforces identity and topics with Mosquitto's dynamic-security plugin, whose JSON
file is generated here from the registry (``dynsec_config``), and changed on a running broker
through the plugin's ``$CONTROL`` commands (``device_commands`` …). The plugin, not the older
``acl_file``, because Mosquitto 2.0's ``acl_file`` never refuses a subscription (it only
filters what is delivered: a device that joined the ingesters' ``$share`` group took every
second message, which the ACL then dropped), and it cannot bind a client id to a username.
With the plugin:

- every account is bound to the client id equal to its username (``clientid``): nobody can
  take over another's session (an ingester's persistent one, or a device's, firing its will);
- subscribing and publishing are refused unless a role allows them (``defaultACLAccess``), and
  a refused subscription gets a SUBACK failure (0x80; MQTT 5: 0x87 not authorised);
- a device publishes only on its own topics and subscribes only to its own config topic; an
  ingester subscribes to ``vt/#`` (shared or not) and reads the broker's ``$SYS`` counters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable

from devices.topics import BRIDGE, CONTRACT_VERSION, ROOT, Channel

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes
SALT_BYTES = 12


def new_password() -> str:
    """A fresh random password: 24 URL-safe base64 characters (18 bytes, 144 bits, from
    ``secrets``)."""
    return secrets.token_urlsafe(18)


def hash_password(
    password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """``password`` in Mosquitto 2's PBKDF2 form, ``$7$<iterations>$<base64 salt>$<base64 hash>``:
    PBKDF2-HMAC-SHA512 (RFC 8018 §5.2), 64-byte hash, a random 12-byte salt unless ``salt`` is given
    (source: Mosquitto's ``mosquitto_passwd``, common/password_mosq.c, hash type 7). Raises
    ValueError when ``iterations`` is below 1."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    encode = base64.b64encode
    return f"$7${iterations}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed`` (the ``hash_password`` form), compared in constant
    time. False for a hash that does not have five ``$`` fields or is not type 7.

    Raises ValueError (binascii.Error is one) when the fields are there but the salt is not base64
    or the iteration count not an integer."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
    except ValueError:
        return False
    if kind != "7":
        return False
    expected = hash_password(password, base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(expected.split("$")[-1], digest)


REGISTRY_ADMIN = "vt-registry"
"""The account the registry uses to change a running broker; no device or service may take it."""
INGESTER_ROLE = "ingester"


def _hashed(hashed: str) -> dict[str, object]:
    """``$7$<iterations>$<salt>$<hash>`` (mosquitto_passwd) as the plugin's JSON fields."""
    _, kind, iterations, salt, digest = hashed.split("$")
    if kind != "7":
        raise ValueError(f"not a PBKDF2-SHA512 hash: {hashed[:4]}…")
    return {"password": digest, "salt": salt, "iterations": int(iterations)}


def device_role(device_id: str) -> dict[str, object]:
    """What one device may do: publish on its own topics (native and bridged), subscribe to
    and receive its own config topic (retained: its self-description read back)."""
    own = f"{ROOT}/{CONTRACT_VERSION}/{device_id}"
    acls: list[dict[str, object]] = [
        {"acltype": "publishClientSend", "topic": f"{own}/{c.value}", "allow": True}
        for c in Channel
    ]
    acls.append(
        {"acltype": "publishClientSend", "topic": f"{ROOT}/{BRIDGE}/+/{device_id}", "allow": True}
    )
    for acltype in ("subscribeLiteral", "publishClientReceive"):
        acls.append({"acltype": acltype, "topic": f"{own}/{Channel.CONFIG.value}", "allow": True})
    return {"rolename": f"device:{device_id}", "acls": acls}


def ingester_role() -> dict[str, object]:
    """Ingesters read every device topic, alone or in any shared-subscription group, and the
    broker's ``$SYS/broker`` counters (dropped messages, stored bytes)."""
    acls = []
    for topic in (f"{ROOT}/#", f"$share/+/{ROOT}/#", "$SYS/broker/#"):
        acls.append({"acltype": "subscribePattern", "topic": topic, "allow": True})
    for topic in (f"{ROOT}/#", "$SYS/broker/#"):
        acls.append({"acltype": "publishClientReceive", "topic": topic, "allow": True})
    # Platform accounts (ingesters, the rules worker) publish alerts (rules/worker.py).
    acls.append(
        {"acltype": "publishClientSend", "topic": f"{ROOT}/{CONTRACT_VERSION}/alerts/#",
         "allow": True}
    )  # fmt: skip
    return {"rolename": INGESTER_ROLE, "acls": acls}


def admin_role() -> dict[str, object]:
    """The dynamic-security role ``registry-admin`` (a JSON-ready dict: ``rolename``, ``acls``) that
    may send and receive on ``$CONTROL/dynamic-security/#``, which is how the registry changes a
    running broker (format: https://mosquitto.org/documentation/dynamic-security/)."""
    control = "$CONTROL/dynamic-security/#"
    return {
        "rolename": "registry-admin",
        "acls": [
            {"acltype": t, "topic": control, "allow": True}
            for t in ("publishClientSend", "publishClientReceive", "subscribePattern")
        ],
    }


def _client(username: str, hashed: str, role: str) -> dict[str, object]:
    # The client id is bound to the username: a connection with another id is refused.
    return {"username": username, "clientid": username, **_hashed(hashed),
            "roles": [{"rolename": role}]}  # fmt: skip


def dynsec_config(
    devices: Iterable[tuple[str, str]],
    services: Iterable[tuple[str, str]],
    admin_hash: str,
) -> dict[str, object]:
    """The dynamic-security plugin's whole state: ``devices`` and ``services`` are
    ``(username, password hash)``; everything not allowed by a role is refused."""
    devices = sorted(devices)
    clients = [_client(d, h, f"device:{d}") for d, h in devices]
    clients += [_client(u, h, INGESTER_ROLE) for u, h in sorted(services)]
    clients.append(_client(REGISTRY_ADMIN, admin_hash, "registry-admin"))
    roles = [device_role(d) for d, _ in devices] + [ingester_role(), admin_role()]
    return {
        "clients": clients,
        "groups": [],
        "roles": roles,
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def device_commands(device_id: str, password: str) -> list[dict[str, object]]:
    """``$CONTROL/dynamic-security/v1`` commands that admit a new device to a running broker."""
    role = device_role(device_id)
    return [
        {"command": "createRole", **role},
        {"command": "createClient", "username": device_id, "password": password,
         "clientid": device_id, "roles": [{"rolename": role["rolename"]}]},
    ]  # fmt: skip


def service_commands(username: str, password: str) -> list[dict[str, object]]:
    """Creates the account, or gives an existing one its new password (the plugin answers the
    one that does not apply with an error, which the caller ignores)."""
    return [
        {"command": "createClient", "username": username, "password": password,
         "clientid": username, "roles": [{"rolename": INGESTER_ROLE}]},
        {"command": "setClientPassword", "username": username, "password": password},
    ]  # fmt: skip


def password_commands(username: str, password: str) -> list[dict[str, object]]:
    """``$CONTROL/dynamic-security/v1`` commands that give the existing account ``username`` a new
    ``password`` (plain: the plugin hashes it): a list of one ``setClientPassword`` command
    (https://mosquitto.org/documentation/dynamic-security/)."""
    return [{"command": "setClientPassword", "username": username, "password": password}]


def revoke_commands(device_id: str) -> list[dict[str, object]]:
    """Disabling kicks a connected device at once; deleting removes the account."""
    return [
        {"command": "disableClient", "username": device_id},
        {"command": "deleteClient", "username": device_id},
        {"command": "deleteRole", "rolename": f"device:{device_id}"},
    ]
