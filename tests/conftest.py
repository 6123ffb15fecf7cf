"""Fixtures that reach the real services: PostgreSQL with TimescaleDB, Mosquitto, Chromium.

Each test database is a fresh clone (``CREATE DATABASE … TEMPLATE``) of one database migrated
once per session, so no test runs the migrations again; each broker is a private Mosquitto started
from the project's own rendered config on a free port, so no test disturbs another or the
machine's services. A missing service is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg import sql
from psycopg.conninfo import make_conninfo
from support import Broker, count, free_port, wait_until

from devices.broker import BrokerConfig
from devices.settings import MqttSettings
from ingest.service import Ingester
from ingest.settings import IngestOptions, IngestSettings
from villagetwin.local import local_user
from villagetwin.migrate import Backend, migrate

# Generated tests draw the same examples on every run, so a run in CI fails or passes as it did
# here; `HYPOTHESIS_PROFILE=explore make pytest` draws new ones (and keeps failures found in
# .hypothesis/ for the next run) to look for new cases.
hypothesis_settings.register_profile(
    "reproducible", derandomize=True, database=None, print_blob=True
)
hypothesis_settings.register_profile("explore", print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

ADMIN_DSN = os.environ.get("VT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


# --- PostgreSQL -----------------------------------------------------------------------------


def _migrated_template(backend: Backend = "timescaledb") -> str:
    """A database migrated once on ``backend``, closed to connections (TimescaleDB's
    scheduler included), so that ``CREATE DATABASE … TEMPLATE`` can copy it."""
    name = f"vt_test_template_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(make_conninfo(ADMIN_DSN, dbname=name), log=lambda _: None, backend=backend)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    gone = wait_until(
        lambda: (
            count(ADMIN_DSN, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", name) == 0
        ),
        10,
    )
    assert gone, f"the template database {name} still has connections"
    return name


@pytest.fixture(scope="session")
def database_factory() -> Iterator[Callable[..., str]]:
    """Makes fresh, migrated databases (clones of one migrated template per backend); drops
    them all at the end of the session.

    ``make("postgres")`` makes one on plain PostgreSQL: the same server, but the database
    never gets the timescaledb extension (villagetwin/compat/postgres.sql stands in)."""
    templates: dict[str, str] = {}
    created: list[str] = []

    def make(backend: Backend = "timescaledb") -> str:
        if backend not in templates:
            templates[backend] = _migrated_template(backend)
        name = f"vt_test_{uuid.uuid4().hex[:10]}"
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(templates[backend])
        )
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(create)
            _copy_database_settings(conn, templates[backend], name)
        created.append(name)
        return make_conninfo(ADMIN_DSN, dbname=name)

    yield make
    # Each DROP DATABASE waits for a checkpoint (seconds here); dropped together, the drops
    # share them. The templates go last.
    with ThreadPoolExecutor(max_workers=8) as drops:
        list(drops.map(_drop, created))
    for name in templates.values():
        _drop(name)


def _copy_database_settings(conn: psycopg.Connection, template: str, name: str) -> None:
    """``CREATE DATABASE … TEMPLATE`` copies a database's contents, not the settings kept for
    it in ``pg_db_role_setting`` (``ALTER DATABASE … SET``, ``ALTER ROLE … IN DATABASE …
    SET``, which migrations use, e.g. the dashboard role's search_path): copy those too."""
    rows = conn.execute(
        "SELECT r.rolname, s.setconfig FROM pg_db_role_setting s"
        " JOIN pg_database d ON d.oid = s.setdatabase"
        " LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = %s",
        (template,),
    ).fetchall()
    for role, config in rows:
        for item in config:
            key, _, value = item.partition("=")
            target = (
                sql.SQL("ALTER ROLE {} IN DATABASE {}").format(
                    sql.Identifier(role), sql.Identifier(name)
                )
                if role
                else sql.SQL("ALTER DATABASE {}").format(sql.Identifier(name))
            )
            conn.execute(
                sql.SQL("{} SET {} = {}").format(target, sql.Identifier(key), sql.SQL(value))
            )


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture(autouse=True)
def _close_pools() -> Iterator[None]:
    """Each test's databases are its own: close this process's connection pools after it, so
    their idle connections do not pile up against max_connections across the session."""
    yield
    from dashboard import pool as dashboard_pool
    from ingest import pool as ingest_pool

    dashboard_pool.close_all()
    ingest_pool.close_all()


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


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Any]:
    """A started paho client on the test's broker, for tests that publish as a device bridge."""
    from devices.mqtt import connect, new_client

    client = new_client(broker.settings, f"publisher-{uuid.uuid4().hex[:6]}")
    connect(client, broker.settings)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright; one per test module."""
    from playwright.sync_api import sync_playwright
    from support import CHROMIUM, CHROMIUM_ARGS

    assert os.path.exists(CHROMIUM), "Debian's chromium is missing: run scripts/install-system.sh"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
