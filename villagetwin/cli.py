"""``villagetwin``: one command for every part of the platform.

Settings come from ``VT_*`` environment variables (see README); each subcommand builds its
component's settings once and passes them down.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
import psycopg
from click.decorators import FC

from devices.payloads import DeviceKind
from villagetwin.settings import AppSettings

log = logging.getLogger("vt")


def _echo(message: str) -> None:
    click.echo(message, err=True)


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """villagetwin: a 3D map and IoT sensing platform for urban villages (城中村).

    Typical first run: `villagetwin setup`, then `villagetwin demo`.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pyogrio").setLevel(logging.WARNING)
    ctx.obj = AppSettings()


# --- services and schema --------------------------------------------------------------------


@cli.command()
@click.option("--broker/--no-broker", default=True, help="Start the project's Mosquitto too.")
@click.pass_obj
def setup(settings: AppSettings, broker: bool) -> None:
    """Prepare local services: TimescaleDB preloaded in PostgreSQL, the database and its
    schema, and the project's Mosquitto. Safe to run again; takes about a second when done.

    System packages (TimescaleDB itself, Mosquitto, Chromium) come from
    scripts/install-system.sh, which `make setup` runs first."""
    from villagetwin import local
    from villagetwin.migrate import migrate as apply

    try:
        if settings.db_backend != "postgres" and not settings.no_system_services:
            local.ensure_timescaledb_preloaded(local.admin_dsn_for(settings.db_dsn), _echo)
        local.ensure_database(settings.db_dsn, _echo)
        apply(settings.db_dsn, _echo, settings.db_backend)
        _ensure_credential_key(settings)
        if broker:
            _start_broker(settings)
    except (local.SetupError, psycopg.Error, OSError) as exc:
        _fail(str(exc))
    _echo("setup done: database and broker ready")


def _ensure_credential_key(settings: AppSettings) -> None:
    from ingest.keys import ensure_key_file

    path = settings.state_dir / "credential.key"
    if ensure_key_file(path):
        _echo(f"made the credential key {path} (readable by you only; keep it and back it up)")


@cli.command()
@click.pass_obj
def migrate(settings: AppSettings) -> None:
    """Apply the schema migrations that are missing (none on a second run)."""
    from villagetwin.migrate import MigrationError, migrate as apply

    try:
        applied = apply(settings.db_dsn, _echo, settings.db_backend)
        roles = {
            "vt_dashboard": settings.dashboard_db_password,
            "vt_ingester": settings.ingester_db_password,
            "vt_rules": settings.rules_db_password,
        }
        with psycopg.connect(settings.db_dsn, autocommit=True) as conn:
            for role, password in roles.items():
                if password is None:
                    continue
                # Where the server asks for passwords (the Docker image), each role needs
                # one; trust-authenticated development servers do not.
                conn.execute(
                    psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        psycopg.sql.Identifier(role),
                        psycopg.sql.Literal(password.get_secret_value()),
                    )
                )
            _install_community_policies(conn)
        from villagetwin.access import write_access_settings

        with psycopg.connect(settings.db_dsn, autocommit=True) as conn:
            write_access_settings(conn, settings.access)
    except (MigrationError, psycopg.Error) as exc:
        _fail(str(exc))
    _echo(f"schema up to date ({len(applied)} migration(s) applied now)")


def _install_community_policies(conn: psycopg.Connection) -> None:
    """On TimescaleDB's Community edition, its retention and compression jobs are installed
    here, by the table's owner: the ingester's own role may not alter the table."""
    from ingest import maintenance
    from ingest.settings import IngestSettings

    if maintenance.edition(conn) != "timescale":
        return
    options = IngestSettings().ingest
    maintenance.install_policies(conn, options.retention(), options.compress_after_days)
    _echo("TimescaleDB Community edition: retention and compression policies installed")


@cli.group()
def broker() -> None:
    """The project's local Mosquitto (development and CI)."""


def _start_broker(settings: AppSettings, replaced: list[Any] | None = None) -> None:
    from villagetwin import local
    from villagetwin.tls import CertificateError, ensure_local_certificate

    directory = local.broker_paths(settings.state_dir)["dir"]
    dynsec = None
    if settings.broker_auth:
        from villagetwin.provision import write_auth_files

        with psycopg.connect(settings.db_dsn) as conn:
            dynsec = write_auth_files(conn, directory)
    tls = None
    if settings.broker_tls_port:
        try:
            cert, key = ensure_local_certificate(directory / "tls")
        except CertificateError as exc:
            raise local.SetupError(str(exc)) from exc
        tls = (settings.broker_tls_port, cert, key)
    local.start_broker(
        settings.state_dir, settings.mqtt.host, settings.mqtt.port, _echo, dynsec, tls, replaced
    )


@broker.command("start")
@click.pass_obj
def broker_start(settings: AppSettings) -> None:
    """Start it with the project's config (idempotent). With VT_BROKER_AUTH=true it requires
    credentials and applies the ACL generated from the device registry."""
    from villagetwin import local

    try:
        _start_broker(settings)
    except (local.SetupError, psycopg.Error) as exc:
        _fail(str(exc))


@broker.command("stop")
@click.pass_obj
def broker_stop(settings: AppSettings) -> None:
    """Stop it."""
    from villagetwin import local

    _echo("stopped" if local.stop_broker(settings.state_dir) else "was not running")


@broker.command("write-docker-config")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("deploy/mosquitto/mosquitto.conf"),
    show_default=True,
)
def broker_write_docker_config(out: Path) -> None:
    """Regenerate the Mosquitto config that docker-compose.yml mounts."""
    from devices.broker import DOCKER, render

    out.write_text(render(DOCKER))
    _echo(f"wrote {out}")


# --- devices: registry, credentials, contract ------------------------------------------------


@cli.group()
def devices() -> None:
    """The device registry: credentials, the broker's ACL, and the MQTT contract's docs."""


def _registry_change(settings: AppSettings, change: Any) -> Any:
    """Runs a registry change, tells a running broker (its dynamic-security plugin), then
    regenerates the plugin's file from the registry for the broker's next start."""
    from villagetwin import local
    from villagetwin.provision import (
        BrokerUnreachable,
        ProvisioningError,
        apply_live,
        write_auth_files,
    )

    directory = local.broker_paths(settings.state_dir)["dir"]
    try:
        with psycopg.connect(settings.db_dsn) as conn:
            result = change(conn)
            conn.commit()
            if settings.broker_auth:
                try:
                    for error in apply_live(settings.mqtt, directory, result.commands):
                        log.debug("broker: %s", error)  # e.g. renewing an existing account
                    _echo("the running broker applied the change")
                except BrokerUnreachable as exc:
                    _echo(f"no running broker took the change ({exc}); it applies at its start")
            write_auth_files(conn, directory)
    except (ProvisioningError, psycopg.Error) as exc:
        _fail(str(exc))
    return result


@devices.command("add")
@click.argument("device_id")
@click.option("--kind", type=click.Choice([k.value for k in DeviceKind]), required=True)
@click.option(
    "--building",
    "building",
    metavar="BUILDING_ID",
    default=None,
    help="The id of the building it is installed in (building_id, e.g. LH00150), not the address.",
)
@click.option("--floor", type=int, default=None)
@click.option("--door", type=click.Choice(["building", "unit", "entrance", "none"]), default=None)
@click.pass_obj
def devices_add(
    settings: AppSettings,
    device_id: str,
    kind: str,
    building: str | None,
    floor: int | None,
    door: str | None,
) -> None:
    """Register a device and issue its credentials (shown once)."""
    from villagetwin.provision import add_device

    issued = _registry_change(
        settings, lambda c: add_device(c, device_id, DeviceKind(kind), building, floor, door)
    )
    click.echo(
        f"device {issued.username}\nusername: {issued.username}\npassword: {issued.password}"
    )
    _echo("keep the password now: only its hash is stored")


@devices.command("rotate")
@click.argument("device_id")
@click.pass_obj
def devices_rotate(settings: AppSettings, device_id: str) -> None:
    """Issue a new password; the old one stops working at the broker's reload."""
    from villagetwin.provision import rotate

    issued = _registry_change(settings, lambda c: rotate(c, device_id))
    click.echo(f"username: {issued.username}\npassword: {issued.password}")


@devices.command("revoke")
@click.argument("device_id")
@click.pass_obj
def devices_revoke(settings: AppSettings, device_id: str) -> None:
    """Shut a device out: no credentials, and its messages go to dead letters."""
    from villagetwin.provision import revoke

    _registry_change(settings, lambda c: revoke(c, device_id))
    _echo(f"revoked {device_id}")


@devices.command("bridge")
@click.argument("device_id")
@click.option(
    "--time-zone", default=None, help="IANA zone of the vendor's local times ('' clears)."
)
@click.option("--encoding", default=None, help="Payload text encoding, e.g. gbk ('' clears).")
@click.pass_obj
def devices_bridge(
    settings: AppSettings, device_id: str, time_zone: str | None, encoding: str | None
) -> None:
    """Set a bridged device's time zone and text encoding (default: the village's zone;
    UTF-8, else GB18030)."""
    from villagetwin.provision import ProvisioningError, set_bridge

    try:
        with psycopg.connect(settings.db_dsn) as conn:
            set_bridge(conn, device_id, time_zone, encoding)
    except (ProvisioningError, psycopg.Error) as exc:
        _fail(str(exc))
    _echo(
        f"{device_id}: time zone {time_zone or 'unchanged/default'},"
        f" encoding {encoding or 'unchanged/default'}"
    )


@devices.command("service-account")
@click.argument("username")
@click.pass_obj
def devices_service_account(settings: AppSettings, username: str) -> None:
    """Issue broker credentials for an ingester (reads every device's topics). One account per
    ingester: its MQTT client id is its username. Names are shared with device ids."""
    from villagetwin.provision import add_service_account

    issued = _registry_change(settings, lambda c: add_service_account(c, username))
    click.echo(f"username: {issued.username}\npassword: {issued.password}")


@devices.command("list")
@click.pass_obj
def devices_list(settings: AppSettings) -> None:
    """Registered devices with their state, tab-separated."""
    try:
        with psycopg.connect(settings.db_dsn) as conn:
            rows = conn.execute(
                "SELECT device_id, kind, coalesce(building_id, ''), CASE WHEN revoked_at IS NOT"
                " NULL THEN 'revoked' WHEN online THEN 'online' WHEN online = false THEN"
                " 'offline' ELSE 'silent' END, coalesce(last_seen::text, ''),"
                " password_hash IS NOT NULL FROM devices ORDER BY device_id"
            ).fetchall()
    except psycopg.Error as exc:
        _fail(str(exc))
    click.echo("device\tkind\tbuilding\tstate\tlast_seen\tcredentials")
    for row in rows:
        click.echo("\t".join(str(x) for x in row[:5]) + ("\tyes" if row[5] else "\tno"))


@devices.command("changes")
@click.argument("action", type=click.Choice(["list", "accept", "reject"]), default="list")
@click.argument("change_id", type=int, required=False)
@click.option("--by", "operator", default=None, help="Who decides [default: $USER].")
@click.pass_obj
def devices_changes(
    settings: AppSettings, action: str, change_id: int | None, operator: str | None
) -> None:
    """A device's place (building, floor, door) is the operator's: what devices claim in their
    config, where it differs, waits here. `list` the pending ones; `accept ID` moves the device
    there; `reject ID` keeps it where it is (the same claim is not asked again)."""
    from villagetwin.places import PlaceChangeError, decide, pending

    try:
        with psycopg.connect(settings.db_dsn) as conn:
            if action == "list":
                click.echo("change\tdevice\tnow\tclaimed\tclaimed_at")
                for row in pending(conn):
                    click.echo("\t".join(str(x) for x in row))
                return
            if change_id is None:
                _fail(f"`devices changes {action}` needs a change id (see `devices changes`)")
            who = operator or os.environ.get("USER") or "operator"
            decide(conn, change_id, accept=action == "accept", operator=who)
    except (PlaceChangeError, psycopg.Error) as exc:
        _fail(str(exc))
    _echo(f"change {change_id} {action}ed")


@cli.group("credential-key")
def credential_key() -> None:
    """The key of the hashes that replace faces, cards and plates (docs/security.md)."""


@credential_key.command("rotate")
@click.pass_obj
def credential_key_rotate(settings: AppSettings) -> None:
    """Add a new current key; references under the old ones stay matchable by their key id.
    Restart the ingesters to use it."""
    from ingest.keys import KeyFileError, rotate

    path = settings.state_dir / "credential.key"
    try:
        kid = rotate(path)
    except (KeyFileError, OSError) as exc:
        _fail(f"cannot rotate {path}: {exc}")
    _echo(f"new current credential key {kid} in {path}; restart the ingesters")


@devices.command("docs")
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("docs/mqtt.md"), show_default=True
)
def devices_docs(out: Path) -> None:
    """Write the MQTT contract (topics, JSON Schemas, examples) from the models."""
    from devices.contract_doc import render

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(), encoding="utf-8")
    _echo(f"wrote {out}")


# --- dashboard users ------------------------------------------------------------------------


@cli.group()
def users() -> None:
    """Dashboard users: admins, community managers and rental-housing inspectors."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "manager", "inspector"]), required=True)
@click.option("--grid", "grids", multiple=True, help="A grid cell an inspector covers (repeat).")
@click.option(
    "--village",
    "villages",
    multiple=True,
    help="Limit the user to this village (repeat) [default: a manager sees every village, an"
    " inspector the villages of their grids].",
)
@click.option("--password", default=None, help="Set this password [default: generate one].")
@click.pass_obj
def users_add(
    settings: AppSettings,
    username: str,
    role: str,
    grids: tuple[str, ...],
    villages: tuple[str, ...],
    password: str | None,
) -> None:
    """Add (or reset) a dashboard user; a generated password is shown once. A manager with
    --village sees those villages whole and nothing of the others."""
    from villagetwin.users import PasswordRefused, add_user

    if role == "inspector" and not grids:
        _fail("an inspector needs at least one --grid")
    if role == "admin" and villages:
        _fail("an admin sees every village: add a manager with --village instead")
    try:
        with psycopg.connect(settings.db_dsn) as conn:
            cells: dict[str, str | None] = dict(
                conn.execute("SELECT grid_code, village_key FROM grid_cells").fetchall()
            )
            unknown = set(grids) - set(cells)
            if unknown:
                _fail(f"no grid cell {', '.join(sorted(unknown))}")
            known = {r[0] for r in conn.execute("SELECT village_key FROM villages")}
            if set(villages) - known:
                _fail(
                    f"no village {', '.join(sorted(set(villages) - known))}"
                    f" (villages: {', '.join(sorted(known)) or 'none yet'})"
                )
            elsewhere = sorted(g for g in grids if villages and cells[g] not in villages)
            if elsewhere:
                _fail(f"grid cell {', '.join(elsewhere)} is not in village {', '.join(villages)}")
            issued = add_user(conn, username, role, list(grids), password, list(villages) or None)
    except (psycopg.Error, PasswordRefused) as exc:
        _fail(str(exc))
    click.echo(f"username: {username}\npassword: {issued}")


@users.command("disable")
@click.argument("username")
@click.pass_obj
def users_disable(settings: AppSettings, username: str) -> None:
    """Stop a user from signing in."""
    with psycopg.connect(settings.db_dsn) as conn:
        done = conn.execute(
            "UPDATE app_users SET disabled_at = now() WHERE username = %s", (username,)
        ).rowcount
    if not done:
        _fail(f"no user {username!r}")
    _echo(f"disabled {username}")


@users.command("unlock")
@click.argument("username", required=False)
@click.option("--address", default=None, help="Also lift the block on this client address.")
@click.pass_obj
def users_unlock(settings: AppSettings, username: str | None, address: str | None) -> None:
    """Lift a sign-in lockout (an account locked after failures, or a blocked address)."""
    with psycopg.connect(settings.db_dsn) as conn:
        done = conn.execute(
            "UPDATE app_users SET locked_at = NULL, unlocked_at = now() WHERE username = %s",
            (username,),
        ).rowcount
        done += conn.execute(
            "UPDATE sign_in_blocks SET lifted_at = now() WHERE address = %s AND lifted_at IS NULL",
            (address,),
        ).rowcount
        conn.execute(
            "INSERT INTO audit_log (username, action, subject, reason)"
            " VALUES ('(cli)', 'lockout_lifted', %s, 'villagetwin users unlock')",
            (f"{username or ''} {address or ''}".strip(),),
        )
    if not done:
        _fail("nothing to unlock")
    _echo(f"unlocked {username or ''} {address or ''}".strip())


@cli.command()
@click.pass_obj
def maintain(settings: AppSettings) -> None:
    """Apply the retention of personal data (VT_ACCESS__*_DAYS): old audit rows, sign-in
    attempts and sessions removed, people of long-ended tenancies anonymised."""
    from villagetwin.access import apply_retention

    with psycopg.connect(settings.db_dsn) as conn:
        removed = apply_retention(conn, settings.access)
    for kind, n in removed.items():
        _echo(f"{kind}: {n}")


# --- the village ----------------------------------------------------------------------------


@cli.group()
def village() -> None:
    """The village model: generate a sample village, load it into the database."""


@village.command("generate")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same village.")
@click.option(
    "--size",
    type=click.Choice(["small", "large"]),
    default="small",
    show_default=True,
    help="small: about 300 buildings; large: about 3,000.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="GeoPackage to write [default: <state dir>/village-<size>-<seed>.gpkg].",
)
@click.option(
    "--load/--no-load", default=True, show_default=True, help="Also load it into the database."
)
@click.pass_obj
def village_generate(
    settings: AppSettings, seed: int, size: str, out: Path | None, load: bool
) -> None:
    """Generate the deterministic sample village 龙湖村 (Huangpu district, Guangzhou)."""
    from mapping import gpkg
    from mapping.generate import generate

    started = time.monotonic()
    model = generate(seed=seed, size=size)  # type: ignore[arg-type]
    path = gpkg.save(model, out or settings.state_dir / f"village-{size}-{seed}.gpkg")
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in model.summary().items())
    _echo(f"generated {model.name}: {summary} in {time.monotonic() - started:.1f}s -> {path}")
    if load:
        _load(settings, model)


@village.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def village_load(settings: AppSettings, path: Path) -> None:
    """Load a village GeoPackage written by `village generate` into the database."""
    from mapping import gpkg

    try:
        model = gpkg.load(path)
    except ValueError as exc:
        _fail(str(exc))
    _load(settings, model)


def _csv_option(flag: str, dest: str, help: str) -> Callable[[FC], FC]:
    path = click.Path(exists=True, dir_okay=False, path_type=Path)
    return click.option(flag, dest, type=path, default=None, help=help)


@village.command("import")
@click.argument("footprints", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--layer", default=None, help="Layer of a GeoPackage with several.")
@click.option(
    "--crs",
    "source_crs",
    default=None,
    help="Override the file's CRS: EPSG:4326, EPSG:4490 (CGCS2000), EPSG:45xx, gcj02, bd09, …",
)
@click.option(
    "--encoding",
    default=None,
    help="Text encoding of the attributes (gb18030, utf-8, …) [default: the .cpg, else detected].",
)
@click.option("--id-prefix", default="", help="Prefix for building ids, e.g. SZ-.")
@click.option("--storeys-column", default=None, help="Column with storey counts.")
@click.option("--height-column", default=None, help="Column with heights in metres.")
@click.option("--id-column", default=None, help="Column with building ids.")
@click.option("--address-column", default=None, help="Column with standard addresses.")
@click.option(
    "--default-storeys",
    type=int,
    default=None,
    help="Storeys for buildings with neither storeys nor height [default: the median]",
)
@_csv_option(
    "--grid-cells",
    "grid_cells_file",
    "Polygon file of grid cells (网格); buildings without a grid get one by spatial join.",
)
@click.option("--grid-code-column", default=None, help="Column of the grid-cell file with codes.")
@click.option("--grid-name-column", default=None, help="Column of the grid-cell file with names.")
@_csv_option(
    "--units", "units_csv", "CSV/.xlsx of rental units: unit_id, building_id, floor, room[, …]."
)
@_csv_option(
    "--people", "people_csv", "CSV/.xlsx of people: person_id, name, role[, id_number, …]."
)
@_csv_option(
    "--tenancies",
    "tenancies_csv",
    "CSV/.xlsx of tenancies: tenancy_id, person_id, unit_id, start_date[, end_date].",
)
@_csv_option(
    "--organisations",
    "organisations_csv",
    "CSV/.xlsx of organisations: org_id, kind, name[, building_id, unit_id].",
)
@click.option(
    "--report",
    "report_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the whole report (every entry) to this file.",
)
@click.option(
    "--village",
    "village_key",
    default=None,
    help="The village (村) these files belong to [default: the only village in the database,"
    " else the footprint file's name].",
)
@click.option(
    "--time-zone",
    default=None,
    help="The village's IANA time zone, e.g. Asia/Shanghai [default: kept; new: Asia/Shanghai].",
)
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@click.pass_obj
def village_import(
    settings: AppSettings,
    footprints: Path,
    layer: str | None,
    source_crs: str | None,
    encoding: str | None,
    id_prefix: str,
    storeys_column: str | None,
    height_column: str | None,
    id_column: str | None,
    address_column: str | None,
    default_storeys: int | None,
    grid_cells_file: Path | None,
    grid_code_column: str | None,
    grid_name_column: str | None,
    units_csv: Path | None,
    people_csv: Path | None,
    tenancies_csv: Path | None,
    organisations_csv: Path | None,
    report_out: Path | None,
    village_key: str | None,
    time_zone: str | None,
    dry_run: bool,
) -> None:
    """Import real building footprints (GeoJSON, GeoPackage, Shapefile), grid cells and the
    tables of 一标三实 (CSV or .xlsx), and print the validation report. Importing the same
    files again changes nothing; what the files do not carry is kept."""
    from mapping import importdb

    tables = {
        "units": units_csv, "people": people_csv, "tenancies": tenancies_csv,
        "organisations": organisations_csv,
    }  # fmt: skip
    request = importdb.ImportRequest(
        footprints, layer, source_crs, encoding, id_prefix, storeys_column, height_column,
        id_column, address_column, default_storeys, grid_cells_file, grid_code_column,
        grid_name_column, {k: v for k, v in tables.items() if v is not None}, village_key,
        time_zone, dry_run,
    )  # fmt: skip
    try:
        report = importdb.import_files(settings.db_dsn, request)
    except importdb.ImportFailed as exc:
        _fail(str(exc))
    click.echo(report.text())
    if report_out is not None:
        report_out.write_text(report.text(limit=None) + "\n", encoding="utf-8")
    verb = "validated (dry run)" if dry_run else "imported"
    _echo(f"{verb} {report.loaded} buildings in {report.seconds:.1f}s")


@village.command("set-grid")
@click.argument("grid_code")
@click.argument("building_ids", nargs=-1, required=True)
@click.pass_obj
def village_set_grid(settings: AppSettings, grid_code: str, building_ids: tuple[str, ...]) -> None:
    """Put buildings in a grid cell (网格) by hand, e.g. those an import found outside every
    cell, so that the cell's inspector sees them. A re-import keeps it."""
    from mapping.importdb import set_grid

    try:
        with psycopg.connect(settings.db_dsn) as conn:
            unknown = set_grid(conn, grid_code, list(building_ids))
    except (ValueError, psycopg.Error) as exc:
        _fail(str(exc))
    if unknown:
        _fail(f"no building {', '.join(unknown)} (nothing changed for it)")
    _echo(f"{len(building_ids)} buildings now in grid {grid_code}")


@village.command("template")
@click.argument("table", type=click.Choice(["units", "people", "tenancies", "organisations"]))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def village_template(table: str, out: Path) -> None:
    """Write the template of a table for `village import` (CSV, or Excel if OUT ends .xlsx)."""
    from mapping.importer import write_template

    _echo(f"wrote {write_template(table, out)}")


@village.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["gpkg", "geojson", "cityjson"]),
    required=True,
    help="gpkg: one GeoPackage; geojson: a file per layer in OUT (a directory); cityjson:"
    " buildings as LoD1 solids for 3D GIS viewers.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="File or directory.")
@click.option("--village", default=None, help="Export this village only [default: every village].")
@click.pass_obj
def village_export(settings: AppSettings, fmt: str, out: Path, village: str | None) -> None:
    """Export the villages in the database (places only: no personal data) for GIS tools."""
    from mapping import export

    try:
        with psycopg.connect(settings.db_dsn) as conn:
            known = [r[0] for r in conn.execute("SELECT village_key FROM villages ORDER BY 1")]
            if village is not None and village not in known:
                _fail(f"no village {village} (villages: {', '.join(known) or 'none yet'})")
            layers = export.read_layers(conn, village)
            title = conn.execute(
                "SELECT string_agg(name, ', ' ORDER BY name) FROM villages"
                " WHERE %(v)s::text IS NULL OR village_key = %(v)s",
                {"v": village},
            ).fetchone()
    except psycopg.Error as exc:
        _fail(f"cannot read the village: {exc}")
    if fmt == "gpkg":
        written = [export.to_gpkg(layers, out)]
    elif fmt == "geojson":
        written = export.to_geojson(layers, out)
    else:
        name = (title[0] if title else None) or "villagetwin"
        written = [export.to_cityjson(layers["buildings"], out, name)]
    counts = ", ".join(f"{len(f)} {k.replace('_', ' ')}" for k, f in layers.items())
    _echo(f"exported {counts} -> {', '.join(map(str, written))}")


def _load(settings: AppSettings, model: Any) -> None:
    from mapping.db import load_village

    try:
        with psycopg.connect(settings.db_dsn) as conn:
            counts = load_village(conn, model)
    except psycopg.Error as exc:
        _fail(f"could not load the village: {exc}")
    _echo("loaded into the database: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


# --- devices, ingestion, dashboard ----------------------------------------------------------


@cli.command()
@click.option(
    "--rate",
    type=float,
    default=20.0,
    show_default=True,
    help="Events per second (with --day: at most this many).",
)
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds to run.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--day",
    is_flag=True,
    help="Replay realistic days (peaks, residents, visitors, vehicles, planted"
    " anomalies) ending now, on an accelerated clock, and write the ground truth.",
)
@click.option("--days", type=int, default=2, show_default=True, help="With --day: how many.")
@click.option(
    "--speed",
    type=float,
    default=1440.0,
    show_default=True,
    help="With --day: simulated seconds per real second (1440: a day a minute).",
)
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="With --day: where to write what was planted [<state dir>/ground-truth.json].",
)
@click.pass_obj
def simulate(
    settings: AppSettings,
    rate: float,
    duration: float,
    seed: int,
    day: bool,
    days: int,
    speed: float,
    truth: Path | None,
) -> None:
    """Publish plausible events from the loaded village's devices (QoS 1)."""
    from villagetwin import simulation

    def progress(done: int, total: int) -> None:
        _echo(f"published {done}/{total}")

    shown = progress if sys.stderr.isatty() else None
    try:
        if day:
            path = truth or settings.state_dir / "ground-truth.json"
            published = simulation.days(
                settings.db_dsn, settings.mqtt, seed, days, speed, rate, path, _echo, shown
            )
            _echo(f"published {published} events")
            return
        report = simulation.stream(settings.db_dsn, settings.mqtt, rate, duration, seed, shown)
    except simulation.SimulationError as exc:
        _fail(str(exc))
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.by_type.items()))
    _echo(f"published {report.published} events in {report.seconds:.1f}s ({kinds})")


@cli.command()
def ingest() -> None:
    """Run the ingester: MQTT -> validation -> TimescaleDB, until SIGTERM or Ctrl-C.

    Settings: VT_DB_DSN, VT_MQTT__HOST/PORT/USERNAME/PASSWORD, VT_INGEST__* (client id,
    share group, batch size and wait, limits, metrics port)."""
    from ingest.keys import KeyFileError
    from ingest.service import Ingester, tune_process
    from ingest.settings import IngestSettings

    settings = IngestSettings()
    tune_process()
    try:
        if settings.amqp_url is not None:  # past one broker: a RabbitMQ quorum queue
            from ingest.amqp_source import AmqpIngester

            AmqpIngester(settings).run()
            return
        ingester = Ingester(settings)
    except KeyFileError as exc:
        _fail(f"the credential key file cannot be used: {exc}")
    ingester.run()
    # Stopped: everything received was committed and acknowledged, or left unacknowledged for
    # the broker. Close the database pools while their worker threads can still run (left to
    # the interpreter's exit, psycopg_pool's __del__ joins them when threads no longer run),
    # then leave at once: library threads must not keep a stopped ingester alive (a SIGTERMed
    # one once outlived its 60 s in tests/test_scale_out.py after logging "stopped").
    from ingest import pool

    pool.close_all()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if ingester.failed else 0)  # 1: a writer died, let the supervisor restart us


@cli.command()
def rules() -> None:
    """Run the rules worker: new events and the derived tables -> alerts (one open per rule and
    subject), published on vt/v1/alerts/<severity>/<rule>; also opens cases for app incidents
    and escalates overdue cases. Until SIGTERM or Ctrl-C.

    Settings: VT_DB_DSN, VT_MQTT__*, VT_RULES__* (rule parameters), VT_CASES__* (deadlines),
    VT_WORKER__* (poll intervals)."""
    from rules.settings import RulesSettings
    from rules.worker import RulesWorker

    worker = RulesWorker(RulesSettings())

    def _stop(*_: Any) -> None:
        worker.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run()


def _duration(text: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise click.BadParameter(f"{text!r}: write a number and m, h or d, like 24h or 7d")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


@cli.command()
@click.option("--since", default="24h", show_default=True, help="How far back: 90m, 24h, 7d.")
@click.pass_obj
def gaps(settings: AppSettings, since: str) -> None:
    """Report the exact sequence numbers missing per device (lost before they were stored,
    for example by a broker crash), as device, first-last, count."""
    window = _duration(since)
    try:
        with psycopg.connect(settings.db_dsn) as conn:
            rows = conn.execute(
                "SELECT * FROM sequence_gaps(now() - %s::interval)", (window,)
            ).fetchall()
    except psycopg.Error as exc:
        _fail(str(exc))
    click.echo("device\tmissing\tcount")
    for device, first, last, missing in rows:
        span = str(first) if first == last else f"{first}-{last}"
        click.echo(f"{device}\t{span}\t{missing}")
    _echo(f"{len(rows)} gap(s), {sum(r[3] for r in rows)} event(s) missing since {since} ago")


@cli.group()
def derive() -> None:
    """The derived tables (hourly counts, daily credentials, latest events), recomputed from
    the raw events."""


@derive.command("rebuild")
@click.option(
    "--since",
    required=True,
    help="From when: an ISO time with its offset (2026-11-01T00:00+08:00) or 90m, 24h, 7d ago.",
)
@click.pass_obj
def derive_rebuild(settings: AppSettings, since: str) -> None:
    """Recompute the derived tables from the raw events since a time (whole hours and local
    days), in one transaction: for the day a derivation bug is found. Refused before the
    oldest raw events that retention keeps for every kind."""
    from datetime import UTC, datetime

    from ingest import derived_tables
    from ingest.settings import IngestSettings

    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        start = datetime.now(UTC) - _duration(since)
    if start.tzinfo is None:
        _fail(f"--since {since!r}: give the offset too, like 2026-11-01T00:00+08:00")
    plan = IngestSettings().ingest.retention()  # the retention the ingester applies
    shortest = min([plan.default_days, *plan.by_kind.values()])
    try:
        written = derived_tables.rebuild_database(settings.db_dsn, start, shortest)
    except (derived_tables.RebuildRefused, psycopg.Error) as exc:
        _fail(str(exc))
    for table, rows in written.items():
        click.echo(f"{table}\t{rows}")
    _echo(f"derived tables rebuilt from the raw events since {start.isoformat()}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8501, show_default=True)
def dashboard(host: str, port: int) -> None:
    """Serve the Streamlit dashboard (blocks)."""
    from villagetwin.demo import dashboard_command

    os.execvp(sys.executable, dashboard_command(host, port))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard address.")
@click.option("--port", type=int, default=8501, show_default=True, help="Dashboard port.")
@click.option(
    "--rate", type=float, default=20.0, show_default=True, help="Simulated events per second."
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, rate: float, seed: int) -> None:
    """Everything at once: services, the sample village, simulated devices, the ingester and
    the dashboard. Ctrl-C stops them all, and what the demo found is restored: a broker it
    stopped to serve the MQTT port with the project's config is started again, and a broker or
    database it started is stopped."""
    settings: AppSettings = ctx.obj
    from ingest.settings import IngestSettings
    from villagetwin import embedded, local

    metrics = IngestSettings().ingest
    try:  # the ports the demo's own processes listen on, before anything is started
        local.require_free_port(
            host, port, "the dashboard", "stop it, or run the demo on another: --port {free}"
        )
        if metrics.http_port:
            local.require_free_port(
                metrics.http_host, metrics.http_port, "the ingester's metrics",
                "stop it, or set VT_INGEST__HTTP_PORT={free} (0 turns the metrics off)",
            )  # fmt: skip
        up = embedded.bring_up(
            settings.db_dsn, settings.mqtt.host, settings.mqtt.port, settings.state_dir,
            settings.embedded, _echo,
        )  # fmt: skip
    except (local.SetupError, psycopg.Error) as exc:
        _fail(str(exc))
    replaced: list[local.Replaced] = []
    ours = False
    try:
        if up.database_embedded:
            settings.db_backend = "postgres"
        ctx.invoke(setup, broker=False)
        # The project's Mosquitto replaces a broker on the port, unless the machine's
        # services are off limits or the embedded default started one.
        if not up.broker_started and not settings.no_system_services:
            ours = not local.broker_running(settings.state_dir)
            try:
                _start_broker(settings, replaced)
            except (local.SetupError, psycopg.Error, OSError) as exc:
                _fail(str(exc))
        _demo(ctx, settings, host, port, rate, seed)
    finally:
        if ours and local.broker_running(settings.state_dir):
            _echo("stopping the demo's Mosquitto")
            local.stop_broker(settings.state_dir)
        for found in replaced:
            try:
                local.restart(found, settings.mqtt.host, settings.mqtt.port, _echo)
            except (local.SetupError, OSError, subprocess.SubprocessError) as exc:
                _echo(f"could not restore {found.why}: {exc}")
        if up.started:
            _echo("stopping " + ", ".join(s.name.split(" (")[0] for s in up.started))
            embedded.stop_all(up.started)


def _demo(
    ctx: click.Context, settings: AppSettings, host: str, port: int, rate: float, seed: int
) -> None:
    from villagetwin import demo
    from villagetwin.users import PasswordRefused

    with psycopg.connect(settings.db_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM buildings").fetchone()
    if not row or row[0] == 0:
        ctx.invoke(village_generate, seed=seed, size="small", out=None, load=True)
    # Explicit demo mode: vendor bridges may run on the public development key here only.
    env = {**os.environ, "VT_INGEST__DEMO": "true"}
    try:
        demo.run(
            settings.db_dsn, host, port, rate, seed, os.environ.get("VT_DEMO_PASSWORD"), _echo, env
        )
    except (demo.DemoError, PasswordRefused, psycopg.Error) as exc:
        _fail(str(exc))


def main() -> None:
    cli(prog_name="villagetwin")


if __name__ == "__main__":
    main()
