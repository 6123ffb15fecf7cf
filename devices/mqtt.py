"""The paho-mqtt boundary: one place that builds clients, so protocol and credentials are
configured the same way by the simulator, the ingester and the tests."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.settings import MqttSettings


class MqttError(RuntimeError):
    """A broker refusal or connection failure, with paho's reason in words."""


def new_client(
    settings: MqttSettings,
    client_id: str,
    *,
    clean_session: bool = True,
    manual_ack: bool = False,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A paho-mqtt client (callback API version 2) speaking MQTT 3.1.1 or 5 as ``settings.protocol``
    says, with the settings' username and password, not yet connected.

    ``clean_session`` applies to 3.1.1 only (MQTT 5 keeps a session through ``connect_options``
    instead); ``manual_ack``: messages are acknowledged only when the caller calls ``ack``.
    ``client_class`` lets the ingester pass its paho subclass. Raises ValueError (paho's) when
    ``clean_session`` is False and ``client_id`` is empty (MQTT 3.1.1 §3.1.3.1)."""
    protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    kwargs: dict[str, object] = {}
    if protocol != mqtt.MQTTv5:
        kwargs["clean_session"] = clean_session
    client = client_class(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        manual_ack=manual_ack,
        **kwargs,  # type: ignore[arg-type]
    )
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    return client


# MQTT 5's largest session expiry interval, which means "never": a persistent session.
_SESSION_NEVER_EXPIRES = 0xFFFFFFFF


def connect_options(settings: MqttSettings, *, persistent: bool) -> dict[str, Any]:
    """Keyword arguments for ``connect``/``connect_async``. MQTT 3.1.1 keeps a session by the
    client's clean_session flag (see ``new_client``). MQTT 5 has no such flag: a session
    outlives its connection only with a session expiry interval, and is resumed only when
    the client connects with clean_start off; without both, what is published while the
    client is away is lost."""
    if settings.protocol != "5" or not persistent:
        return {}
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = _SESSION_NEVER_EXPIRES
    return {"clean_start": False, "properties": properties}


def connect(client: mqtt.Client, settings: MqttSettings) -> None:
    """Opens the TCP connection and sends CONNECT (blocking; keepalive ``settings.keepalive_s``
    seconds). The broker's answer (CONNACK, e.g. a refused password) arrives later, on the client's
    ``on_connect`` callback, not here.

    Raises MqttError naming host and port when the broker cannot be reached (any OSError: refused,
    unknown host, timeout), and paho's ValueError for an empty host or a port or keepalive out of
    range."""
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except OSError as exc:
        raise MqttError(
            f"cannot reach the MQTT broker at {settings.host}:{settings.port}: {exc}"
        ) from exc
