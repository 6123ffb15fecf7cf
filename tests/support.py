"""Helpers shared by the tests (imported as ``support``)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from devices.broker import BrokerConfig, render
from devices.settings import MqttSettings
from villagetwin.local import wait_for_port

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Broker:
    """A private Mosquitto from the project's rendered config; can be killed and restarted."""

    def __init__(self, directory: Path, config: BrokerConfig) -> None:
        self.directory = directory
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> MqttSettings:
        return MqttSettings(host="127.0.0.1", port=self.config.port)

    def start(self) -> None:
        conf = self.directory / "mosquitto.conf"
        conf.write_text(render(self.config))
        log = (self.directory / "stdout.log").open("ab")
        self.process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
        if not wait_for_port("127.0.0.1", self.config.port, 10):
            raise RuntimeError(f"test broker did not start; see {self.directory}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def count(dsn: str, query: str, *params: object) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0
