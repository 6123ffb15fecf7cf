"""Scale-out on one Mosquitto: ingesters on one shared subscription, killed and stopped
mid-stream, store every event exactly once; and the broker's own behaviour that this rests on,
including Mosquitto's open report of QoS 1 messages lost when a shared-subscription member
disconnects (eclipse-mosquitto/mosquitto#2662), measured here."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from support import Broker, Fleet, IngesterProcess, count, register_gates, wait_until

STREAM_DEVICES = 30
ROUNDS = 1000  # 30,000 events
RATE = 3000.0  # events/s: about 10 s of stream


def _exactly_once(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT event_id), count(DISTINCT (device_id, seq))"
            " FROM events"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _received(log: Path) -> int:
    """What one ingester process took over all its runs (its closing log lines)."""
    return sum(int(n) for n in re.findall(r"stopped: received (\d+)", log.read_text()))


def _ingesters(
    db: str, broker: Broker, tmp_path: Path, leaving: frozenset[int] = frozenset()
) -> list[IngesterProcess]:
    group = []
    for n in (1, 2, 3):
        options = {"client_id": f"vt-scale-{n}", "share_group": "scale"}
        if n in leaving:
            options["leave_share_on_stop"] = "true"
        group.append(IngesterProcess(db, broker.settings, tmp_path / f"ingest-{n}.log", **options))
    for ingester in group:
        ingester.start()
    assert wait_until(lambda: all(i.connected() for i in group), 30)
    return group


def test_three_ingesters_one_killed_one_stopped_store_everything_once(
    db: str, broker: Broker, tmp_path: Path
) -> None:
    """Ingester 2 is SIGKILLed a third of the way in and restarted 2 s later (as a supervisor
    does); ingester 3 gets SIGTERM two thirds in and stays down (a scale-down: it leaves the
    share group first). 30,000 events: 0 lost, 0 stored twice."""
    devices = [f"gate-so{i:02d}" for i in range(STREAM_DEVICES)]
    register_gates(db, devices)
    one, two, three = _ingesters(db, broker, tmp_path, leaving=frozenset({3}))
    fleet = Fleet(broker.settings, devices, client_id="fleet-scale")
    stream = threading.Thread(target=fleet.publish, args=(ROUNDS, RATE))
    stream.start()
    total = STREAM_DEVICES * ROUNDS
    assert wait_until(lambda: len(fleet.published) >= total // 3, 60)
    two.kill9()
    killed_at = len(fleet.published)
    time.sleep(2.0)
    two.start()
    assert wait_until(lambda: len(fleet.published) >= 2 * total // 3, 60)
    assert three.terminate() == 0
    stopped_at = len(fleet.published)
    stream.join()
    fleet.wait_acknowledged()
    fleet.close()
    assert killed_at < stopped_at < total  # both happened mid-stream
    stored = wait_until(lambda: count(db, "SELECT count(*) FROM events") >= total, 120, 0.5)
    assert stored, f"{count(db, 'SELECT count(*) FROM events')} of {total} stored"
    time.sleep(1.0)  # a late redelivery would show up as an extra row now
    assert _exactly_once(db) == (total, total, total)
    assert not three.alive()
    assert "left share group scale (unsubscribed: True)" in (tmp_path / "ingest-3.log").read_text()
    assert one.terminate() == 0 and two.terminate() == 0
    shares = [_received(tmp_path / f"ingest-{n}.log") for n in (1, 2, 3)]
    # Each took a share; the killed run's count is lost with it, so at most the total.
    assert min(shares) > 0 and sum(shares) <= total, shares


def test_a_member_stopped_without_leaving_holds_its_share_until_it_returns(
    db: str, broker: Broker, tmp_path: Path
) -> None:
    """The default SIGTERM keeps the ingester's persistent session subscribed (so that if every
    member stops, the broker still keeps what devices send). Mosquitto then goes on assigning
    that member its share, held in its session: nothing is stored for it until it returns,
    and then all of it, once."""
    devices = [f"gate-sh{i:02d}" for i in range(10)]
    register_gates(db, devices)
    one, two, three = _ingesters(db, broker, tmp_path)
    assert three.terminate() == 0
    fleet = Fleet(broker.settings, devices, client_id="fleet-hold")
    fleet.publish(300, 3000.0)  # 3,000 events
    fleet.wait_acknowledged()
    fleet.close()
    held = wait_until(lambda: count(db, "SELECT count(*) FROM events") >= 2000, 60, 0.5)
    assert held
    time.sleep(1.5)
    waiting = 3000 - count(db, "SELECT count(*) FROM events")
    # Round-robin over three members, one of them away: about a third waits for it.
    assert 800 <= waiting <= 1200, waiting
    three.start()
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") >= 3000, 60, 0.5)
    time.sleep(1.0)
    assert _exactly_once(db) == (3000, 3000, 3000)
    for ingester in (one, two, three):
        assert ingester.terminate() == 0


def _member(port: int, client_id: str, clean: bool, ack: bool, got: list[bytes]) -> paho.Client:
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        manual_ack=not ack,
    )
    client.on_message = lambda c, u, m: got.append(bytes(m.payload))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("$share/g/vt/v1/x/event", 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish(port: int, payloads: range) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{payloads.start}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for n in payloads:
        client.publish("vt/v1/x/event", str(n), qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _shared_member_disconnects(broker: Broker, clean: bool) -> dict[str, int]:
    """Three members of $share/g; C receives without acknowledging and loses its connection
    without a DISCONNECT; 60 more messages follow; then C's client id connects again."""
    port = broker.config.port
    tag = "clean" if clean else "kept"
    a: list[bytes] = []
    b: list[bytes] = []
    c: list[bytes] = []
    members = [
        _member(port, f"{tag}-a", clean, True, a),
        _member(port, f"{tag}-b", clean, True, b),
    ]
    lost_member = _member(port, f"{tag}-c", clean, False, c)
    assert wait_until(lambda: all(m.is_connected() for m in [*members, lost_member]), 10)
    time.sleep(0.3)  # SUBACKs
    _publish(port, range(0, 60))
    assert wait_until(lambda: len(a) + len(b) + len(c) == 60, 10)
    unacked = set(c)
    lost_member.socket().close()  # the connection breaks; no DISCONNECT, no PUBACK
    lost_member.loop_stop()
    time.sleep(1.0)
    _publish(port, range(1000, 1060))
    time.sleep(1.5)
    back: list[bytes] = []
    returned = _member(port, f"{tag}-c", clean, True, back)
    time.sleep(2.0)
    for member in [*members, returned]:
        member.disconnect()
        member.loop_stop()
    delivered = set(a) | set(b) | set(back)
    everything = {str(n).encode() for n in [*range(0, 60), *range(1000, 1060)]}
    return {
        "in_flight_at_c": len(unacked),
        "handed_to_others": len(unacked & (set(a) | set(b))),
        "redelivered_to_c": len(unacked & set(back)),
        "never_delivered": len(everything - delivered),
    }


def test_mosquitto_2662_a_shared_members_unacked_qos1_messages(broker: Broker) -> None:
    """The report: a clean-session member of a shared subscription holding QoS 1 messages
    it has not acknowledged disconnects; Mosquitto hands them to no other member, so they
    are lost. Measured on this machine's Mosquitto (2.0.11 on Debian 12): exactly the
    member's in-flight messages are lost. With persistent sessions (what the ingester uses)
    the same messages wait in the member's session and come back when its client id
    reconnects: none lost. If a Mosquitto release redistributes them, the first figures change
    and this test says so."""
    clean = _shared_member_disconnects(broker, clean=True)
    assert clean["in_flight_at_c"] > 0
    assert clean["handed_to_others"] == 0
    assert clean["never_delivered"] == clean["in_flight_at_c"], clean
    kept = _shared_member_disconnects(broker, clean=False)
    print(f"mosquitto#2662 measured: clean session {clean}; persistent session {kept}")
    assert kept["in_flight_at_c"] > 0
    assert kept["redelivered_to_c"] == kept["in_flight_at_c"], kept
    assert kept["never_delivered"] == 0, kept
