"""Past one broker: devices publish MQTT to RabbitMQ (its MQTT plugin), the ingesters consume
one quorum queue as competing consumers (ingest/amqp_source.py). A private RabbitMQ node is
started on free ports for the test (the machine's own instance is left alone); one ingester
is SIGKILLed mid-stream and not restarted: 0 lost, 0 duplicated."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support import Fleet, IngesterProcess, count, free_port, register_gates, wait_until

from devices.settings import MqttSettings
from ingest.amqp_source import topic_of
from villagetwin.local import wait_for_port

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class PrivateRabbit:
    """One RabbitMQ node with the MQTT plugin, its own name, ports, data and cookie."""

    def __init__(self, node: str | None = None, cluster: list[str] | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="vt-rabbit-"))
        self.base.chmod(0o755)
        self.amqp_port, self.mqtt_port, self.dist_port = free_port(), free_port(), free_port()
        self.node = node or f"vt{uuid.uuid4().hex[:8]}@localhost"
        (self.base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        text = (
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\nmqtt.default_user = guest\nmqtt.default_pass = guest\n"
            "loopback_users = none\n"
        )
        if cluster:  # nodes that find each other at their first start
            text += "cluster_formation.peer_discovery_backend = classic_config\n"
            for n, name in enumerate(cluster, 1):
                text += f"cluster_formation.classic_config.nodes.{n} = {name}\n"
            cookie = self.base / ".erlang.cookie"
            cookie.write_text("VILLAGETWINTESTCLUSTER")
            cookie.chmod(0o400)
        (self.base / "rabbitmq.conf").write_text(text)
        self.process: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.base),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }

    def ctl(self, *args: str) -> str:
        command = ["rabbitmqctl", "-n", self.node, *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "rabbitmq", "--", *command]
        done = subprocess.run(command, env=self._env(), capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    def launch(self) -> None:
        command = [str(RABBITMQ_SERVER)]
        if os.geteuid() == 0:  # RabbitMQ's own user, as Debian's package runs it
            shutil.chown(self.base, "rabbitmq", "rabbitmq")
            for path in self.base.iterdir():
                shutil.chown(path, "rabbitmq", "rabbitmq")
            command = ["runuser", "-u", "rabbitmq", "--", *command]
        self.process = subprocess.Popen(
            command, env=self._env(), stdout=(self.base / "out.log").open("ab"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_up(self) -> None:
        up = wait_for_port("127.0.0.1", self.mqtt_port, 120)
        assert up, (self.base / "out.log").read_text()[-3000:]

    def start(self) -> None:
        self.launch()
        self.wait_up()

    def destroy(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def rabbit() -> Iterator[PrivateRabbit]:
    assert RABBITMQ_SERVER.exists(), "rabbitmq-server is missing: run scripts/install-system.sh"
    node = PrivateRabbit()
    try:
        node.start()
        yield node
    finally:
        node.destroy()


def test_routing_keys_map_back_to_the_mqtt_topics() -> None:
    # RabbitMQ's MQTT plugin swaps '/' and '.': a device id with a dot survives the round trip.
    assert topic_of("vt.v1.gate-01.event") == "vt/v1/gate-01/event"
    assert topic_of("vt.v1.gate/01.status") == "vt/v1/gate.01/status"


def test_two_competing_ingesters_one_killed_store_everything_once(
    db: str, rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    devices = [f"gate-rq{i:02d}" for i in range(20)]
    register_gates(db, devices)
    mqtt = MqttSettings(host="127.0.0.1", port=rabbit.mqtt_port)
    group = []
    for n in (1, 2):
        ingester = IngesterProcess(db, mqtt, tmp_path / f"ingest-{n}.log", batch_max_events="500")
        ingester.env["VT_AMQP_URL"] = rabbit.url
        ingester.start()
        group.append(ingester)
    assert wait_until(lambda: all(i.connected() for i in group), 30)
    fleet = Fleet(mqtt, devices, client_id="fleet-rabbit")
    total = 20 * 500  # 10,000 events at 1,000/s
    stream = threading.Thread(target=fleet.publish, args=(500, 1000.0))
    stream.start()
    assert wait_until(lambda: count(db, "SELECT count(*) FROM events") >= total // 3, 60)
    group[0].kill9()  # its unacknowledged messages go back to the queue, to the other one
    killed_at = count(db, "SELECT count(*) FROM events")
    stream.join()
    fleet.wait_acknowledged()
    fleet.close()
    assert killed_at < total
    stored = wait_until(lambda: count(db, "SELECT count(*) FROM events") >= total, 120, 0.5)
    assert stored, f"{count(db, 'SELECT count(*) FROM events')} of {total}"
    time.sleep(1.0)  # a late redelivery would show up as an extra row now
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT event_id), count(DISTINCT (device_id, seq))"
            " FROM events"
        ).fetchone()
    assert row == (total, total, total)
    assert group[1].terminate() == 0
    assert not group[0].alive()


def test_a_node_of_a_two_node_cluster_killed_mid_stream_loses_and_duplicates_nothing(
    db: str, tmp_path: Path
) -> None:
    """Two RabbitMQ nodes in one cluster, the quorum queue on both; devices publish to node A,
    one ingester reads through each node. Node B is SIGKILLed mid-stream and started again
    5 s later (with one of two members gone the queue has no majority until B is back):
    nothing is lost or stored twice, and the ingester that was on B carries on through A."""
    names = [f"vta{uuid.uuid4().hex[:6]}@localhost", f"vtb{uuid.uuid4().hex[:6]}@localhost"]
    a, b = PrivateRabbit(names[0], names), PrivateRabbit(names[1], names)
    try:
        a.launch()
        b.launch()
        a.wait_up()
        b.wait_up()
        assert wait_until(lambda: names[1] in a.ctl("cluster_status"), 60), a.ctl("cluster_status")
        devices = [f"gate-rc{i:02d}" for i in range(20)]
        register_gates(db, devices)
        mqtt = MqttSettings(host="127.0.0.1", port=a.mqtt_port)
        group = []
        for n, urls in enumerate([(a, b), (b, a)], 1):
            ingester = IngesterProcess(
                db, mqtt, tmp_path / f"ingest-{n}.log", batch_max_events="500"
            )
            ingester.env["VT_AMQP_URL"] = ",".join(node.url for node in urls)
            ingester.start()
            group.append(ingester)
        assert wait_until(lambda: all(i.connected() for i in group), 30)
        members = a.ctl("list_queues", "name", "type", "members")
        assert "quorum" in members and names[0] in members and names[1] in members, members
        fleet = Fleet(mqtt, devices, client_id="fleet-cluster")
        total = 20 * 300  # 6,000 events at 600/s
        stream = threading.Thread(target=fleet.publish, args=(300, 600.0))
        stream.start()
        assert wait_until(lambda: count(db, "SELECT count(*) FROM events") >= total // 4, 60)
        b.kill()
        killed_at = count(db, "SELECT count(*) FROM events")
        time.sleep(5.0)
        b.start()
        stream.join()
        fleet.wait_acknowledged(timeout=180)
        fleet.close()
        assert killed_at < total
        stored = wait_until(lambda: count(db, "SELECT count(*) FROM events") >= total, 180, 0.5)
        assert stored, f"{count(db, 'SELECT count(*) FROM events')} of {total}"
        time.sleep(1.0)
        with psycopg.connect(db) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT event_id), count(DISTINCT (device_id, seq))"
                " FROM events"
            ).fetchone()
        assert row == (total, total, total)
        assert "reconnecting" in (tmp_path / "ingest-2.log").read_text()
        for ingester in group:
            assert ingester.terminate() == 0
    finally:
        b.destroy()
        a.destroy()
