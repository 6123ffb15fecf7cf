"""The two baselines the ingester is measured against, each run as its own process.

- ``bare``: paho draining the messages with automatic acks and no database: the client's
  ceiling on this machine.
- ``bare-bulk``: the same with the ingester's own paho client (bulk reads).
- ``bare-VARIANT``: that client changed by one of ``bench/client_variants.py``'s variants
  (``lean``, ``slicer``, ``dispatch``): what each piece is worth.
- ``naive``: what most MQTT-to-database services do: one ``INSERT`` per event, autocommit,
  inside paho's ``on_message``.

Usage: python bench/consumers.py MODE HOST PORT CLIENT_ID DSN EXPECTED_MESSAGES
       (MODE: bare, bare-bulk, bare-VARIANT of bench/client_variants.py, or naive)
       python bench/consumers.py publish HOST PORT RATE SECONDS DEVICE...

A consumer exits once it has handled EXPECTED_MESSAGES (or on SIGTERM) and prints its count
and the times of its first and last message. ``publish`` sends single gate.pass events at a
paced rate, stamped with the time of publishing, for the latency measurements.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

INSERT = (
    "INSERT INTO events (ts, received_at, event_id, device_id, seq, kind, credential_ref, payload)"
    " VALUES (%s, now(), %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def publish(host: str, port: int, rate: float, seconds: float, devices: list[str]) -> None:
    import uuid
    from datetime import UTC, datetime

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    seq = dict.fromkeys(devices, 0)
    started = time.monotonic()
    total = int(rate * seconds)
    infos = []
    for n in range(total):
        device = devices[n % len(devices)]
        seq[device] += 1
        ahead = started + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        payload = json.dumps(
            {
                "v": 1,
                "type": "gate.pass",
                "id": str(uuid.uuid4()),
                "device": device,
                "seq": seq[device],
                "ts": datetime.now(UTC).isoformat(),
                "direction": "in",
                "method": "card",
                "granted": True,
                "credential": "cred:bench",
            }
        )
        infos.append(client.publish(f"vt/v1/{device}/event", payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"published": total, "seconds": time.monotonic() - started}))


def main() -> None:
    if sys.argv[1] == "publish":
        host, port, rate, seconds = (
            sys.argv[2],
            int(sys.argv[3]),
            float(sys.argv[4]),
            float(sys.argv[5]),
        )
        publish(host, port, rate, seconds, sys.argv[6:])
        return
    mode, host, port, client_id, dsn, expected = sys.argv[1:7]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conn = psycopg.connect(dsn, autocommit=True) if mode == "naive" else None
    counts = {"messages": 0}
    first_last = [0.0, 0.0]

    def on_connect(client, userdata, flags, reason, properties):  # type: ignore[no-untyped-def]
        client.subscribe("vt/v1/+/event", qos=1)

    def on_subscribe(client, userdata, mid, reasons, properties):  # type: ignore[no-untyped-def]
        print("subscription active", flush=True)

    def on_message(client, userdata, message):  # type: ignore[no-untyped-def]
        now = time.time()
        if not first_last[0]:
            first_last[0] = now
        first_last[1] = now
        if conn is None:
            counts["messages"] += 1
            return
        data = json.loads(message.payload)
        for e in data["events"] if data.get("type") == "batch" else [data]:
            conn.execute(
                INSERT,
                (
                    e["ts"],
                    e["id"],
                    e["device"],
                    e["seq"],
                    e["type"],
                    e.get("credential"),
                    json.dumps(e),
                ),
            )
        first_last[1] = time.time()
        counts["messages"] += 1

    if mode.startswith("bare-"):
        from bench.client_variants import VARIANTS
        from ingest.mqtt_client import BulkClient

        cls = {"bulk": BulkClient, **VARIANTS}[mode.removeprefix("bare-")]
        client: mqtt.Client = cls(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, int(port), keepalive=60)
    client.loop_start()
    while not stop.is_set() and counts["messages"] < int(expected):
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    print(
        json.dumps({"messages": counts["messages"], "first": first_last[0], "last": first_last[1]})
    )


if __name__ == "__main__":
    main()
