"""The paho-mqtt boundary: one place that builds clients, so protocol and credentials are
configured the same way by the simulator, the ingester and the tests."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

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


def connect(client: mqtt.Client, settings: MqttSettings) -> None:
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except OSError as exc:
        raise MqttError(
            f"cannot reach the MQTT broker at {settings.host}:{settings.port}: {exc}"
        ) from exc
