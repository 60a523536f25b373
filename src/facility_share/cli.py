"""The ``facility-share`` command line: database, catalogue, demo data and the server."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from facility_share.errors import CatalogInvalid, FacilityShareError, SettingsError
from facility_share.settings import Settings, load_settings

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        # One plain line (no wrapping): it is what an operator sees in a crash-looping log.
        click.echo(f"configuration error: {exc.message}", err=True)
        sys.exit(2)


def reports_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors into a clear message and a non-zero exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CatalogInvalid as exc:
            for problem in exc.problems:
                err.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
            err.print(f"[red]{exc.message}[/red]", highlight=False)
            sys.exit(1)
        except FacilityShareError as exc:
            err.print(f"[red]error:[/red] {exc.message}", highlight=False)
            sys.exit(1)

    return wrapper


@click.group()
@click.version_option(package_name="facility-share")
def main() -> None:
    """facility-share: the district's shared instrument and workshop platform."""


# --- database -----------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
@reports_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from facility_share.db import migrate

    settings = _settings()
    migrate.upgrade(settings.database_url, revision)
    out.print(f"database at revision {revision} ({settings.database_url.split('://')[0]})")


@db.command("downgrade")
@click.argument("revision")
@reports_errors
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (``base`` empties the database)."""
    from facility_share.db import migrate

    migrate.downgrade(_settings().database_url, revision)
    out.print(f"database at revision {revision}")


@db.command("current")
@reports_errors
def db_current() -> None:
    """Show the database's revision and the code's head."""
    from facility_share.db import Database, migrate

    async def run() -> str | None:
        database = Database(_settings().database_url, null_pool=True)
        try:
            return await migrate.current_revision(database.engine)
        finally:
            await database.dispose()

    current = asyncio.run(run())
    head = migrate.head_revision()
    out.print(f"database: {current or 'empty'}; code head: {head}" + ("" if current == head else " (run: facility-share db upgrade)"))


# --- catalogue ----------------------------------------------------------------------------


@main.group()
def catalog() -> None:
    """The open catalogue: validate, import and export."""


@catalog.command("validate")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("catalog"))
@reports_errors
def catalog_validate(directory: Path) -> None:
    """Check the catalogue files in DIRECTORY without touching the database."""
    from facility_share.catalog.files import load_catalog

    loaded = load_catalog(directory)
    kinds: dict[str, int] = {}
    for r in loaded.resources:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    out.print(
        f"[green]✓[/green] {directory}: {len(loaded.categories)} categories, {len(loaded.units)} units, "
        + ", ".join(f"{n} {k}s" for k, n in sorted(kinds.items()))
    )


def _summary_table(summary: Any) -> Table:
    table = Table("", "created", "updated", "retired", "unchanged")
    for name, counts in summary.as_dict().items():
        table.add_row(name, *(str(counts[k]) for k in ("created", "updated", "retired", "unchanged")))
    return table


async def run_import(settings: Settings, directory: Path, progress: Progress | None = None) -> Any:
    """Validate, then import in one write transaction; nothing is written if validation fails."""
    from facility_share.catalog.files import load_catalog
    from facility_share.catalog.importer import import_catalog, known_files
    from facility_share.db import Database

    database = Database(settings.database_url, null_pool=True)
    try:
        # Everything in one write transaction: what the database already holds decides
        # which files need parsing, and nothing may change in between.
        async with database.session(write=True) as session:
            loaded = load_catalog(directory, known=await known_files(session))
            total = len(loaded.resources) + sum(len(k.resource_codes) for k in loaded.unchanged_files.values())
            task = progress.add_task("importing resources", total=total) if progress else None
            tick = (lambda n: progress.advance(task, n)) if progress and task is not None else None
            summary = await import_catalog(session, loaded, progress=tick)
            await session.commit()
        return summary
    finally:
        await database.dispose()


@catalog.command("import")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("catalog"))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@reports_errors
def catalog_import(directory: Path, as_json: bool) -> None:
    """Import DIRECTORY: create, update, retire; unchanged records are not written."""
    settings = _settings()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        summary = asyncio.run(run_import(settings, directory, progress))
    if as_json:
        out.print_json(json.dumps(summary.as_dict()))
    else:
        out.print(_summary_table(summary))
        out.print("nothing changed" if summary.written == 0 else f"{summary.written} records written")


@catalog.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="File to write (default: standard output).")
@reports_errors
def catalog_export(fmt: str, output: Path | None) -> None:
    """Export the catalogue in the national large-instrument platform's layout."""
    from facility_share.catalog import export, queries
    from facility_share.db import Database

    async def run() -> str:
        database = Database(_settings().database_url, null_pool=True)
        try:
            async with database.session() as session:
                rows = export.national_rows(await queries.export_rows(session))
        finally:
            await database.dispose()
        return export.to_csv(rows) if fmt == "csv" else export.to_json(rows)

    text = asyncio.run(run())
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


# --- closures -----------------------------------------------------------------------------


@main.group()
def closures() -> None:
    """Closures (maintenance plans, holidays) from calendar files."""


async def run_closures_import(settings: Settings, file: Path, *, resource: str | None, unit: str | None) -> Any:
    """Apply an .ics file in one write transaction; nothing is written if the file is invalid."""
    from facility_share.closures.ical_import import MAX_BYTES
    from facility_share.closures.services import import_ics
    from facility_share.db import Database
    from facility_share.errors import InvalidInput

    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BYTES:
        raise InvalidInput(f"{file.name} is larger than {MAX_BYTES // 1_000_000} MB; split the calendar")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file.name} is not UTF-8 text; export the calendar as UTF-8 .ics") from exc
    database = Database(settings.database_url, null_pool=True)
    try:
        async with database.session(write=True) as session:
            result = await import_ics(session, text, filename=file.name, resource_code=resource, unit_code=unit,
                                      actor_id=None, actor_kind="system")
            await session.commit()
        return result
    finally:
        await database.dispose()


@closures.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--resource", help="Code of the resource to close.")
@click.option("--unit", help="Code of the unit whose every current resource is closed.")
@reports_errors
def closures_import(file: Path, resource: str | None, unit: str | None) -> None:
    """Import closures from the .ics FILE for one resource or a whole unit.

    Re-importing a file with the same name replaces that file's closures that have not ended:
    added, changed and removed events are applied, the rest is left unchanged.
    """
    if bool(resource) == bool(unit):
        err.print("[red]error:[/red] give exactly one of --resource CODE or --unit CODE", highlight=False)
        sys.exit(2)
    result = asyncio.run(run_closures_import(_settings(), file, resource=resource, unit=unit))
    out.print(
        f"{result.scope} → {result.target} ({len(result.resources)} resource{'s' if len(result.resources) != 1 else ''}): "
        f"{result.added} added, {result.updated} updated, {result.removed} removed, {result.unchanged} unchanged",
        highlight=False,
        soft_wrap=True,
    )


# --- users ------------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Accounts and roles."""


@users.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["enterprise_member", "unit_manager", "finance", "admin"]))
@click.option("--unit", "units", multiple=True, help="Unit code a unit_manager manages (repeatable).")
@click.option("--enterprise", "enterprise_uscc", help="USCC of the enterprise an enterprise_member belongs to.")
@click.option("--name", default="", help="Display name (default: the part of the e-mail before @).")
@reports_errors
def users_create(email: str, role: str, units: tuple[str, ...], enterprise_uscc: str | None, name: str) -> None:
    """Create a user; the password is read from standard input (one line)."""
    from facility_share.accounts.services import create_user
    from facility_share.db import Database

    password = sys.stdin.readline().rstrip("\n")
    if not password:
        err.print("[red]error:[/red] give the password on standard input, e.g. printf '%s\\n' \"$PW\" | facility-share users create …")
        sys.exit(1)

    async def run() -> int:
        database = Database(_settings().database_url, null_pool=True)
        try:
            async with database.session(write=True) as session:
                user = await create_user(session, email=email, password=password, name=name, role=role,
                                         unit_codes=units, enterprise_uscc=enterprise_uscc)
                await session.commit()
                return user.id
        finally:
            await database.dispose()

    user_id = asyncio.run(run())
    out.print(f"created user {user_id}: {email} ({role}{' of ' + ', '.join(units) if units else ''})")


@users.command("token")
@click.argument("email")
@click.option("--name", required=True, help="What the token is for, e.g. the program that uses it.")
@click.option("--days", type=int, default=None, help="Lifetime in days (default: until revoked).")
@reports_errors
def users_token(email: str, name: str, days: int | None) -> None:
    """Create a personal API token for EMAIL and print it (it is shown only once)."""
    from sqlalchemy import select

    from facility_share.accounts.services import create_api_token, normalise_email
    from facility_share.db import Database
    from facility_share.db.models import User
    from facility_share.errors import NotFound

    async def run() -> str:
        database = Database(_settings().database_url, null_pool=True)
        try:
            async with database.session(write=True) as session:
                user_id = (await session.execute(select(User.id).where(User.email == normalise_email(email)))).scalar_one_or_none()
                if user_id is None:
                    raise NotFound(f"no user with e-mail {email}")
                _row, token = await create_api_token(session, user_id, name, days)
                await session.commit()
                return token
        finally:
            await database.dispose()

    click.echo(asyncio.run(run()))


# --- background work ----------------------------------------------------------------------


async def sweep_once(settings: Settings) -> tuple[list[int], list[int]]:
    """Expire overdue requests and mark no-shows; returns the booking ids of each."""
    from facility_share.bookings.services import expire_overdue
    from facility_share.db import Database
    from facility_share.db.models import utcnow
    from facility_share.usage.services import sweep_no_shows

    database = Database(settings.database_url, null_pool=True)
    try:
        async with database.session(write=True) as session:
            expired = await expire_overdue(session, utcnow())
            no_shows = await sweep_no_shows(session, utcnow())
            await session.commit()
        return expired, no_shows
    finally:
        await database.dispose()


@main.group()
def bookings() -> None:
    """Booking maintenance."""


@bookings.command("sweep")
@reports_errors
def bookings_sweep() -> None:
    """Expire undecided requests and mark unused bookings no-shows (safe in several processes)."""
    expired, no_shows = asyncio.run(sweep_once(_settings()))
    out.print(f"expired {len(expired)} request(s)" + (f": {', '.join(map(str, expired))}" if expired else ""))
    out.print(f"{len(no_shows)} no-show(s)" + (f": {', '.join(map(str, no_shows))}" if no_shows else ""))


@main.command("worker")
@click.option("--interval", default=60, show_default=True, type=int, help="Seconds between sweeps.")
@click.option("--once", is_flag=True, help="Run one round and exit.")
@reports_errors
def worker(interval: int, once: bool) -> None:
    """Run the periodic database sweeps (request expiry, no-shows) until stopped."""
    import time

    settings = _settings()
    while True:
        expired, no_shows = asyncio.run(sweep_once(settings))
        if expired or no_shows:
            out.print(f"expired {len(expired)} request(s); {len(no_shows)} no-show(s)")
        if once:
            return
        time.sleep(interval)


# --- demo -------------------------------------------------------------------------------


@main.group()
def demo() -> None:
    """Demo data for trying the platform."""


@demo.command("load")
@click.option("--catalog-dir", type=click.Path(path_type=Path), default=None, help="Default: FACILITY_SHARE_CATALOG_DIR or catalog/.")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8000, type=int)
@reports_errors
def demo_load(catalog_dir: Path | None, host: str, port: int) -> None:
    """Load the catalogue (and the demo records of each capability), then print where to look."""
    from facility_share.demo import DEMO_PASSWORD, TOUR

    settings = _settings()
    directory = catalog_dir or settings.catalog_dir
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        summary = asyncio.run(run_import(settings, directory, progress))
    counts = summary.as_dict()["resources"]
    out.print(f"catalogue: {sum(counts.values()) - counts['retired']} resources ({summary.written} records written)")
    from facility_share.demo import load_demo

    accounts = asyncio.run(load_demo(settings))
    click.echo(TOUR.format(host=host, port=port, workshop="WQ-TJMAT-PILOT", accounts=accounts, password=DEMO_PASSWORD))


# --- serving ------------------------------------------------------------------------------


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes (PostgreSQL for more than one).")
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log every request (costs CPU on busy servers; a proxy usually logs them already).")
def serve(host: str, port: int, workers: int, reload: bool, access_log: bool) -> None:
    """Run the web service with uvicorn."""
    import uvicorn

    settings = _settings()  # fail fast, with one line, before any worker starts
    if workers > 1 and settings.is_sqlite:
        err.print("[yellow]note:[/yellow] several workers on SQLite serialise their writes; use PostgreSQL in production")
    uvicorn.run(
        "facility_share.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        proxy_headers=True,
        forwarded_allow_ips="*" if host in ("127.0.0.1", "localhost") else None,
        timeout_graceful_shutdown=20,
        log_level="info",
        access_log=access_log,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
