"""Fixtures that reach the real services: PostgreSQL with TimescaleDB, Mosquitto, Chromium.

Each test database is created fresh and migrated; each broker is a private Mosquitto started
from the project's own rendered config on a free port, so no test disturbs another or the
machine's services. A missing service is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from support import Broker, free_port, wait_until

from devices.broker import BrokerConfig
from devices.settings import MqttSettings
from ingest.service import Ingester
from ingest.settings import IngestOptions, IngestSettings
from villagetwin.local import local_user
from villagetwin.migrate import Backend, migrate

ADMIN_DSN = os.environ.get("VT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_factory() -> Iterator[Callable[..., str]]:
    """Makes fresh, migrated databases; drops them all at the end of the session.

    ``make("postgres")`` makes one on plain PostgreSQL: the same server, but the database
    never gets the timescaledb extension (villagetwin/compat/postgres.sql stands in)."""
    created: list[str] = []

    def make(backend: Backend = "timescaledb") -> str:
        name = f"vt_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        dsn = make_conninfo(ADMIN_DSN, dbname=name)
        migrate(dsn, log=lambda _: None, backend=backend)
        return dsn

    yield make
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        for name in created:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture
def db(database_factory: Callable[..., str]) -> str:
    return database_factory()


@pytest.fixture(params=["timescaledb", "postgres"])
def any_db(request: pytest.FixtureRequest, database_factory: Callable[..., str]) -> str:
    """A fresh database on each backend in turn; store suites override ``db`` with it."""
    return database_factory(request.param)


@pytest.fixture
def timescale_db(database_factory: Callable[..., str]) -> str:
    return database_factory("timescaledb")


@pytest.fixture
def plain_db(database_factory: Callable[..., str]) -> str:
    return database_factory("postgres")


# --- Mosquitto ------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    assert shutil.which("mosquitto"), "mosquitto is not installed: run scripts/install-system.sh"
    directory = tmp_path_factory.mktemp("broker")
    data = directory / "data"
    b = Broker(
        directory,
        BrokerConfig(
            port=free_port(),
            persistence_dir=data,
            log_file=directory / "mosquitto.log",
            user=local_user(),
        ),
    )
    b.start()
    yield b
    b.kill()


# --- the ingester, in a thread of the test process --------------------------------------------


class RunningIngester:
    def __init__(self, ingester: Ingester) -> None:
        self.ingester = ingester
        self.thread = threading.Thread(
            target=ingester.run, kwargs={"install_signal_handlers": False}, daemon=True
        )

    def stop(self) -> None:
        self.ingester.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the ingester did not stop within 30 s"


@pytest.fixture
def start_ingester() -> Iterator[Callable[..., RunningIngester]]:
    running: list[RunningIngester] = []

    def start(dsn: str, mqtt: MqttSettings, **options: object) -> RunningIngester:
        opts = {"client_id": f"vt-test-{uuid.uuid4().hex[:8]}", "http_port": 0, **options}
        settings = IngestSettings(db_dsn=dsn, mqtt=mqtt, ingest=IngestOptions(**opts))  # type: ignore[arg-type]
        r = RunningIngester(Ingester(settings))
        r.thread.start()
        connected = wait_until(lambda: r.ingester.health()["subscribed"], 10)
        assert connected, "the ingester did not connect to the broker"
        running.append(r)
        return r

    yield start
    for r in running:
        if r.thread.is_alive():
            r.stop()
