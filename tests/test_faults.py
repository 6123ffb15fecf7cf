"""Ingestion under faults: nothing lost, nothing stored twice, every loss the broker causes
named exactly. Real Mosquitto, a private PostgreSQL with TimescaleDB that the test may stop,
and the ingester as a process that the test may kill."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support import (
    Broker,
    Fleet,
    IngesterProcess,
    PrivatePostgres,
    count,
    free_port,
    missing_ranges,
    register_gates,
    wait_until,
)

from devices.broker import BrokerConfig
from devices.mqtt import connect, new_client
from devices.topics import event_topic
from villagetwin.local import local_user
from villagetwin.migrate import migrate

DOWNTIME_S = float(os.environ.get("VT_TEST_INGESTER_DOWNTIME_S", "60"))
DERIVED = (
    "events, dead_letters, device_latest, building_hourly, village_hourly, unit_daily_credentials"
)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres(free_port())
    pg.init()
    pg.start()
    migrate(pg.dsn, log=lambda _: None)
    yield pg
    pg.destroy()


@pytest.fixture
def pg_dsn(private_pg: PrivatePostgres) -> str:
    with psycopg.connect(private_pg.dsn) as conn:
        conn.execute(f"TRUNCATE {DERIVED}")
        conn.execute("DELETE FROM devices")
    return private_pg.dsn


def stored_pairs(dsn: str) -> set[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        return {(d, s) for d, s in conn.execute("SELECT device_id, seq FROM events")}


def assert_exactly_once(dsn: str, expected: int) -> None:
    with psycopg.connect(dsn) as conn:
        rows, unique = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).fetchone()  # type: ignore[misc]
    assert (rows, unique) == (expected, expected)


def diagnose(dsn: str, log: Path, broker: Broker) -> str:
    rows = count(dsn, "SELECT count(*) FROM events")
    broker_log = broker.directory / "mosquitto.log"
    return (
        f"{rows} rows\n--- ingester log (tail)\n"
        + "\n".join(log.read_text().splitlines()[-25:])
        + "\n--- broker log (tail)\n"
        + "\n".join(broker_log.read_text().splitlines()[-25:])
    )


def gates(n: int, prefix: str) -> list[str]:
    return [f"gate-{prefix}{i:02d}" for i in range(n)]


def test_kill9_of_the_ingester_three_times_loses_and_duplicates_nothing(
    pg_dsn: str, broker: Broker, tmp_path: Path
) -> None:
    devices = gates(30, "k")
    register_gates(pg_dsn, devices)
    ingester = IngesterProcess(pg_dsn, broker.settings, tmp_path / "ingest.log", client_id="vt-k9")
    ingester.start()
    assert wait_until(ingester.connected, 20)
    fleet = Fleet(broker.settings, devices)
    stream = threading.Thread(target=fleet.publish, args=(1000, 3000.0))  # 30k events, ~10 s
    stream.start()
    kills = 0
    while stream.is_alive() and kills < 3:
        time.sleep(2.0)
        ingester.kill9()
        kills += 1
        ingester.start()
    stream.join()
    fleet.wait_acknowledged()
    fleet.close()
    assert kills == 3
    stored = wait_until(lambda: count(pg_dsn, "SELECT count(*) FROM events") >= 30_000, 120, 0.5)
    assert stored, diagnose(pg_dsn, tmp_path / "ingest.log", broker)
    time.sleep(1.0)  # anything still redelivered would show up as an extra row now
    assert_exactly_once(pg_dsn, 30_000)
    assert ingester.terminate() == 0


def test_ingester_down_while_devices_keep_publishing_loses_nothing(
    pg_dsn: str, broker: Broker, tmp_path: Path
) -> None:
    devices = gates(20, "d")
    register_gates(pg_dsn, devices)
    ingester = IngesterProcess(
        pg_dsn, broker.settings, tmp_path / "ingest.log", client_id="vt-down"
    )
    ingester.start()
    assert wait_until(ingester.connected, 20)
    assert ingester.terminate() == 0  # its persistent session stays on the broker
    fleet = Fleet(broker.settings, devices)
    rate = 200.0
    rounds = int(DOWNTIME_S * rate / len(devices))
    fleet.publish(rounds, rate)  # DOWNTIME_S seconds with nobody ingesting
    fleet.wait_acknowledged()
    fleet.close()
    published = rounds * len(devices)
    assert count(pg_dsn, "SELECT count(*) FROM events") == 0
    ingester.start()
    assert wait_until(lambda: count(pg_dsn, "SELECT count(*) FROM events") >= published, 60, 0.5)
    assert_exactly_once(pg_dsn, published)
    assert ingester.terminate() == 0


def test_database_stopped_for_ten_seconds_mid_stream(
    private_pg: PrivatePostgres, pg_dsn: str, broker: Broker, tmp_path: Path
) -> None:
    devices = gates(20, "p")
    register_gates(pg_dsn, devices)
    ingester = IngesterProcess(pg_dsn, broker.settings, tmp_path / "ingest.log", client_id="vt-pg")
    ingester.start()
    assert wait_until(ingester.connected, 20)
    fleet = Fleet(broker.settings, devices)
    stream = threading.Thread(target=fleet.publish, args=(1000, 1000.0))  # 20k events, ~20 s
    stream.start()
    time.sleep(5)
    private_pg.stop("immediate")
    time.sleep(10)
    private_pg.start()
    back = time.monotonic()
    stream.join()
    fleet.wait_acknowledged()
    fleet.close()
    assert wait_until(lambda: count(pg_dsn, "SELECT count(*) FROM events") >= 20_000, 60, 0.5)
    caught_up = time.monotonic() - back
    assert caught_up < 60
    assert_exactly_once(pg_dsn, 20_000)
    assert "retrying" in (tmp_path / "ingest.log").read_text()  # it did see the outage
    assert ingester.terminate() == 0


def test_every_event_sent_three_times_in_shuffled_order_is_stored_once(
    db: str, broker: Broker, start_ingester
) -> None:  # type: ignore[no-untyped-def]
    devices = gates(10, "t")
    register_gates(db, devices)
    running = start_ingester(db, broker.settings)
    payloads = [(d, Fleet.payload(d, seq)) for seq in range(1, 301) for d in devices]
    copies = payloads * 3
    random.Random(4).shuffle(copies)
    fleet = Fleet(broker.settings, devices, client_id="fleet-x3")
    assert wait_until(fleet.client.is_connected, 10)
    infos = [fleet.client.publish(event_topic(d), payload, qos=1) for d, payload in copies]
    for info in infos:
        info.wait_for_publish(30)
    fleet.close()
    unique = len(payloads)
    assert wait_until(lambda: running.ingester.totals["received"] >= len(copies), 60)
    assert wait_until(lambda: running.ingester.totals["stored"] == unique, 30)
    assert_exactly_once(db, unique)
    assert wait_until(lambda: running.ingester.totals["duplicates"] == len(copies) - unique, 10)
    assert (
        count(db, "SELECT count(*) FROM dead_letters") == 0
    )  # duplicates are counted, not refused
    with psycopg.connect(db) as conn:
        hourly = conn.execute(
            "SELECT sum(events) FILTER (WHERE building_id <> ''), sum(events) FROM building_hourly"
        ).fetchone()
        latest = conn.execute("SELECT count(*), max(seq) FROM device_latest").fetchone()
    assert hourly == (None, unique)  # gates have no building: counted under '' only
    assert latest == (len(devices), 300)


def test_sigterm_flushes_acknowledges_and_exits(
    pg_dsn: str, broker: Broker, tmp_path: Path
) -> None:
    devices = gates(5, "s")
    register_gates(pg_dsn, devices)
    log = tmp_path / "ingest.log"
    # A batch that would wait 60 s: only the SIGTERM flush can store it in time.
    ingester = IngesterProcess(
        pg_dsn, broker.settings, log, client_id="vt-term", batch_max_wait_ms="60000"
    )
    ingester.start()
    assert wait_until(ingester.connected, 20)
    fleet = Fleet(broker.settings, devices)
    fleet.publish(100)
    fleet.wait_acknowledged()
    fleet.close()
    time.sleep(1.0)
    assert count(pg_dsn, "SELECT count(*) FROM events") == 0  # still in the open batch
    assert ingester.terminate() == 0
    assert count(pg_dsn, "SELECT count(*) FROM events") == 500
    # Restarted on the same session (batches closing at the default wait): acks were sent,
    # so nothing comes back.
    ingester = IngesterProcess(pg_dsn, broker.settings, log, client_id="vt-term")
    ingester.start()
    assert wait_until(ingester.connected, 20)
    # A probe published now comes after anything the broker still held for the session.
    probe = new_client(broker.settings, "test-term-probe")
    connect(probe, broker.settings)
    probe.loop_start()
    probe.publish(event_topic("gate-probe"), b"{}", qos=1).wait_for_publish(5)
    probe.loop_stop()
    probe.disconnect()
    assert wait_until(lambda: count(pg_dsn, "SELECT count(*) FROM dead_letters") == 1, 15)
    assert ingester.terminate() == 0
    assert count(pg_dsn, "SELECT count(*) FROM dead_letters") == 1
    assert (
        log.read_text()
        .strip()
        .splitlines()[-1]
        .endswith("received 1, stored 0, duplicates 0, dead letters 1")
    )


def _ingesting_100(
    pg_dsn: str, broker: Broker, log: Path, prefix: str, client_id: str
) -> tuple[IngesterProcess, Fleet]:
    """An ingester process with 5 gates' first 100 events stored."""
    devices = gates(5, prefix)
    register_gates(pg_dsn, devices)
    ingester = IngesterProcess(pg_dsn, broker.settings, log, client_id=client_id)
    ingester.start()
    assert wait_until(ingester.connected, 20)
    fleet = Fleet(broker.settings, devices)
    fleet.publish(20)
    fleet.wait_acknowledged()
    assert wait_until(lambda: count(pg_dsn, "SELECT count(*) FROM events") == 100, 20)
    return ingester, fleet


def _restart_and_find_600_once(pg_dsn: str, ingester: IngesterProcess, fleet: Fleet) -> None:
    """The same session again: the broker redelivers what was not acknowledged, and all 600
    events are stored exactly once."""
    fleet.close()
    ingester.start()
    assert wait_until(lambda: count(pg_dsn, "SELECT count(*) FROM events") >= 600, 60, 0.5)
    time.sleep(1.0)
    assert_exactly_once(pg_dsn, 600)
    assert ingester.terminate() == 0


def test_sigterm_during_a_database_outage_exits_within_10s_and_loses_nothing(
    private_pg: PrivatePostgres, pg_dsn: str, broker: Broker, tmp_path: Path
) -> None:
    """Both writers retrying a batch against a stopped database, a third batch waiting for
    them and the main thread blocked handing over a fourth: SIGTERM still ends the process
    within 10 s, and what was not committed was not acknowledged, so it comes back."""
    log = tmp_path / "ingest.log"
    ingester, fleet = _ingesting_100(pg_dsn, broker, log, "o", "vt-term-outage")
    private_pg.stop("immediate")
    try:
        fleet.publish(100, rate=250.0)  # 500 events over 2 s: many 50 ms batches
        fleet.wait_acknowledged()

        def both_writers_blocked() -> bool:
            text = log.read_text()
            return all(f"vt-writer-{n}: database write failed" in text for n in (0, 1))

        assert wait_until(both_writers_blocked, 20)
        time.sleep(1.0)
        started = time.monotonic()
        status = ingester.terminate(timeout=30)
        took = time.monotonic() - started
    finally:
        private_pg.start()
    assert status == 0 and took < 10, f"exit {status} after {took:.1f} s"
    assert "left unacknowledged" in log.read_text() or "giving up" in log.read_text()
    _restart_and_find_600_once(pg_dsn, ingester, fleet)


def _postgres_processes(pg: PrivatePostgres) -> list[int]:
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [postmaster, *map(int, children)]


def test_sigterm_while_the_database_hangs_exits_within_10s_and_loses_nothing(
    private_pg: PrivatePostgres, pg_dsn: str, broker: Broker, tmp_path: Path
) -> None:
    """A database that accepts nothing and answers nothing (every PostgreSQL process stopped
    with SIGSTOP): writers block inside libpq, with no error to retry on. SIGTERM still ends
    the ingester within 10 s, and nothing it did not commit was acknowledged."""
    log = tmp_path / "ingest.log"
    ingester, fleet = _ingesting_100(pg_dsn, broker, log, "h", "vt-term-hang")
    frozen = _postgres_processes(private_pg)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        fleet.publish(100, rate=250.0)
        fleet.wait_acknowledged()
        time.sleep(2.0)
        started = time.monotonic()
        status = ingester.terminate(timeout=30)
        took = time.monotonic() - started
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert took < 10, f"exit {status} after {took:.1f} s"
    _restart_and_find_600_once(pg_dsn, ingester, fleet)


def test_broker_crash_loss_is_reported_as_exact_missing_ranges(
    pg_dsn: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    directory = tmp_path_factory.mktemp("crashing-broker")
    broker = Broker(
        directory,
        BrokerConfig(
            port=free_port(),
            persistence_dir=directory / "data",
            log_file=directory / "mosquitto.log",
            user=local_user(),
            autosave_interval_s=3600,  # the crash will find nothing saved since start
        ),
    )
    broker.start()
    devices = gates(8, "c")
    register_gates(pg_dsn, devices)
    ingester = IngesterProcess(
        pg_dsn, broker.settings, tmp_path / "ingest.log", client_id="vt-crash"
    )
    try:
        ingester.start()
        assert wait_until(ingester.connected, 20)
        fleet = Fleet(broker.settings, devices)
        fleet.publish(100)
        fleet.wait_acknowledged()
        assert wait_until(lambda: count(pg_dsn, "SELECT count(*) FROM events") == 800, 30)
        assert ingester.terminate() == 0
        fleet.publish(50)  # acknowledged by the broker, queued for the ingester, not on disk
        fleet.wait_acknowledged()
        broker.kill()
        broker.start()
        assert wait_until(fleet.client.is_connected, 15)
        ingester.start()
        assert wait_until(ingester.connected, 20)
        time.sleep(0.5)
        fleet.publish(20)
        fleet.wait_acknowledged()
        fleet.close()
        assert wait_until(lambda: count(pg_dsn, "SELECT count(*) FROM events") >= 960, 30)
        time.sleep(0.5)
        truth = missing_ranges({d: n - 1 for d, n in fleet.next_seq.items()}, stored_pairs(pg_dsn))
        with psycopg.connect(pg_dsn) as conn:
            report = [
                (d, int(a), int(b))
                for d, a, b, _ in conn.execute(
                    "SELECT * FROM sequence_gaps(now() - interval '1 hour')"
                )
            ]
        assert truth, "the crash lost nothing, so this run proves nothing"
        assert report == truth
        assert all((a, b) == (101, 150) for _, a, b in report)
        assert ingester.terminate() == 0
    finally:
        broker.kill()
