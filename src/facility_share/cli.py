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
    summary, _ = await run_catalog_import(settings, directory, progress)
    return summary


async def run_catalog_import(settings: Settings, directory: Path, progress: Progress | None = None) -> tuple[Any, Any]:
    """The catalogue and, if DIRECTORY has a ``policies`` folder, its policy versions, in one
    write transaction; a defect in either writes nothing. Returns both summaries (the
    second is None without a policies folder)."""
    from facility_share.catalog.files import load_catalog
    from facility_share.catalog.importer import import_catalog, known_files
    from facility_share.db import Database
    from facility_share.finance.policy import load_policies
    from facility_share.finance.policy_store import import_policies

    policies_dir = directory / "policies"
    policies = load_policies(policies_dir) if policies_dir.is_dir() else None
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
            policy_summary = await import_policies(session, policies) if policies is not None else None
            await session.commit()
        return summary, policy_summary
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
        summary, policy_summary = asyncio.run(run_catalog_import(settings, directory, progress))
    if as_json:
        out.print_json(json.dumps({**summary.as_dict(), **({"policies": policy_summary.as_dict()} if policy_summary else {})}))
    else:
        out.print(_summary_table(summary))
        out.print("nothing changed" if summary.written == 0 else f"{summary.written} records written")
        if policy_summary is not None:
            _print_policy_summary(policy_summary)


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


# --- policies -----------------------------------------------------------------------------


@main.group()
def policies() -> None:
    """Subsidy-and-award policies (catalog/policies/*.toml): validate and import."""


def _print_policy_summary(summary: Any) -> None:
    parts = [f"{len(names)} {what}" for what, names in summary.as_dict().items() if names]
    out.print("policies: " + (", ".join(parts) or "none"))
    for what in ("created", "updated"):
        for name in getattr(summary, what):
            out.print(f"  {what}: {name}")


@policies.command("validate")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("catalog/policies"))
@reports_errors
def policies_validate(directory: Path) -> None:
    """Check the policy files in DIRECTORY without touching the database."""
    from facility_share.finance.policy import load_policies

    for item in load_policies(directory):
        policy = item.policy
        until = policy.effective_until or "further notice"
        out.print(
            f"[green]✓[/green] {item.source_file}: {policy.code} {policy.version}, in force {policy.effective_from} "
            f"– {until}; {len(policy.subsidy.classes)} subsidy classes, {len(policy.award.grades)} grades; "
            f"digest {item.digest[:12]}",
            highlight=False, soft_wrap=True,
        )


async def run_policy_import(settings: Settings, directory: Path) -> Any:
    """Validate the policy files, then import them in one write transaction."""
    from facility_share.db import Database
    from facility_share.finance.policy import load_policies
    from facility_share.finance.policy_store import import_policies

    loaded = load_policies(directory)
    database = Database(settings.database_url, null_pool=True)
    try:
        async with database.session(write=True) as session:
            summary = await import_policies(session, loaded)
            await session.commit()
        return summary
    finally:
        await database.dispose()


@policies.command("import")
@click.argument("directory", type=click.Path(path_type=Path), default=Path("catalog/policies"))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@reports_errors
def policies_import(directory: Path, as_json: bool) -> None:
    """Import the policy versions in DIRECTORY: new ones are added, unchanged ones skipped; a
    changed version that an approved settlement used is refused."""
    summary = asyncio.run(run_policy_import(_settings(), directory))
    if as_json:
        out.print_json(json.dumps(summary.as_dict()))
    else:
        _print_policy_summary(summary)


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
@click.option("--interval", default=60, show_default=True, type=click.IntRange(min=1),
              help="Seconds between periodic sweeps (expiry, no-shows, reminders, advances).")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64), help="Jobs run at once in this process.")
@click.option("--once", is_flag=True, help="Schedule this tick's sweeps, run every job due now, and exit.")
@click.option("--lease", "lease_seconds", default=120.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds a claimed job stays reserved; a job whose worker died is taken up again after it.")
@click.option("--poll", "poll_seconds", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between looks at the queue when it is empty.")
@click.option("--import", "modules", multiple=True, metavar="MODULE",
              help="Also load the job handlers MODULE registers (repeatable).")
@reports_errors
def worker(interval: int, concurrency: int, once: bool, lease_seconds: float, poll_seconds: float, modules: tuple[str, ...]) -> None:
    """Run background jobs from the database: the periodic sweeps (request expiry, no-shows,
    reminders, advances of cancelled bookings and refunds waiting for Stripe, reconciliation with
    Stripe when configured) and e-mail notifications, until SIGTERM (the current jobs finish)."""
    import logging
    import signal

    from facility_share.db import Database
    from facility_share.jobs.runner import Worker, load_handlers

    settings = _settings()
    if not logging.getLogger().handlers:
        try:  # the service's own log format (JSON in production), where it is available
            from facility_share.web.observability import configure_logging

            configure_logging(getattr(settings, "log_format", "text"), getattr(settings, "log_level", "INFO"))
        except ImportError:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s %(message)s")
    load_handlers(modules)

    async def run() -> int:
        database = Database(settings.database_url, pool_size=concurrency + 2, max_overflow=2)
        runner = Worker(database, settings, concurrency=concurrency, lease_seconds=lease_seconds, poll_seconds=poll_seconds,
                        every_seconds=interval)
        try:
            if once:
                await runner.schedule_once()
                count = await runner.drain()
                await runner.close()
                return count
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await runner.run(stop)
            return runner.processed
        finally:
            await database.dispose()

    count = asyncio.run(run())
    out.print(f"worker stopped: {count} job(s) run", highlight=False)


# --- finance ----------------------------------------------------------------------------


@main.group()
def finance() -> None:
    """Finance: usage reports, and settlements of subsidies and awards."""


def _yuan_option(name: str, value: str | None) -> int | None:
    from facility_share.catalog.records import yuan_to_fen
    from facility_share.errors import InvalidInput

    if value is None:
        return None
    try:
        return yuan_to_fen(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: give the budget in yuan, e.g. 250000 or 250000.50 ({exc})") from None


async def run_settle(settings: Settings, request: Any, *, approve: bool, by: str | None, progress: Progress | None = None) -> Any:
    """Draft (and optionally approve) a settlement in one write transaction; returns its summary."""
    from sqlalchemy import select

    from facility_share.accounts.principal import Principal
    from facility_share.accounts.services import load_principal
    from facility_share.db import Database
    from facility_share.db.models import User
    from facility_share.errors import NotFound
    from facility_share.finance import settlement_api, settlements

    database = Database(settings.database_url, null_pool=True)
    try:
        async with database.session(write=True) as session:
            if by:
                user_id = (await session.execute(select(User.id).where(User.email == by.strip().lower()))).scalar_one_or_none()
                principal = await load_principal(session, user_id, "session") if user_id else None
                if principal is None:
                    raise NotFound(f"--by: no user {by!r}; name a finance or admin account")
            else:
                # The operator at the console acts with the platform's authority; the audit log
                # records the change with no user.
                principal = Principal(user_id=None, email="", name="command line", roles=frozenset({"admin"}), via="cli")  # type: ignore[arg-type]
            task = progress.add_task(f"computing {request.period}", total=None) if progress else None
            settlement = await settlement_api.draft(session, principal, request)
            if progress and task is not None:
                progress.update(task, total=1, completed=1)
            if approve:
                task = progress.add_task("approving (reading the inputs again)", total=None) if progress else None
                settlement = await settlements.approve(session, principal, settlement.id,
                                                       expected_results_digest=settlement.results_digest)
                if progress and task is not None:
                    progress.update(task, total=1, completed=1)
            _s, policy = await settlements.load(session, settlement.id)
            counts = (await settlement_api.line_counts(session, [settlement.id])).get(settlement.id, {})
            summary = settlement_api.settlement_out(settlement, policy, counts)
            await session.commit()
        return summary
    finally:
        await database.dispose()


def _settlement_table(rows: list[Any]) -> Table:
    from facility_share.finance.settlement_exports import fen_to_yuan

    table = Table("id", "period", "policy", "status", "subsidies (yuan)", "awards (yuan)", "results digest")
    for s in rows:
        table.add_row(str(s.id), s.period, f"{s.policy.code}@{s.policy.version}", s.status,
                      f"{fen_to_yuan(s.subsidy_total_fen)} / {fen_to_yuan(s.subsidy_budget_fen)} ({s.subsidy_lines})",
                      f"{fen_to_yuan(s.award_total_fen)} / {fen_to_yuan(s.award_budget_fen)} ({s.award_lines})",
                      s.results_digest[:16])
    return table


def _settlement_json(rows: list[Any]) -> str:
    import dataclasses

    return json.dumps([dataclasses.asdict(s) for s in rows], ensure_ascii=False, default=str)


@finance.command("settle")
@click.option("--period", required=True, help="A year (2026), a quarter (2026-Q3) or a month (2026-07).")
@click.option("--policy", "policy_code", required=True, help="Policy code, e.g. wuqing-default.")
@click.option("--version", "policy_version", default=None, help="Policy version (default: the one in force for the period).")
@click.option("--cutoff", default=None, help="Count payments until this ISO time with zone, e.g. 2026-10-15T00:00:00+08:00 (default: now).")
@click.option("--subsidy-budget", default=None, metavar="YUAN", help="Subsidy budget (default: the policy's, prorated).")
@click.option("--award-budget", default=None, metavar="YUAN", help="Award budget (default: the policy's, prorated).")
@click.option("--approve", is_flag=True, help="Approve it at once (final; it can never be changed).")
@click.option("--by", default=None, metavar="EMAIL", help="Act as this finance or admin account in the audit log.")
@click.option("--json", "as_json", is_flag=True, help="Print the settlement as JSON.")
@reports_errors
def finance_settle(period: str, policy_code: str, policy_version: str | None, cutoff: str | None, subsidy_budget: str | None,
                   award_budget: str | None, approve: bool, by: str | None, as_json: bool) -> None:
    """Compute a settlement of subsidies and awards for a period (a draft unless --approve)."""
    from datetime import datetime

    from facility_share.errors import InvalidInput
    from facility_share.finance import settlements
    from facility_share.finance.settlement_exports import fen_to_yuan

    cutoff_at = None
    if cutoff:
        try:
            cutoff_at = datetime.fromisoformat(cutoff.strip())
        except ValueError:
            raise InvalidInput(f"--cutoff: expected an ISO time with zone, e.g. 2026-10-15T00:00:00+08:00, got {cutoff!r}") from None
    request = settlements.DraftRequest(
        period=period, policy_code=policy_code, policy_version=policy_version, cutoff_at=cutoff_at,
        subsidy_budget_fen=_yuan_option("--subsidy-budget", subsidy_budget), award_budget_fen=_yuan_option("--award-budget", award_budget),
        note="command line",
    )
    settings = _settings()
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True) as progress:
        summary = asyncio.run(run_settle(settings, request, approve=approve, by=by, progress=progress))
    if as_json:
        out.print_json(_settlement_json([summary]))
        return
    out.print(f"settlement #{summary.id} {summary.period} under {summary.policy.code}@{summary.policy.version}: {summary.status}")
    out.print(f"  subsidies  {fen_to_yuan(summary.subsidy_total_fen)} of {fen_to_yuan(summary.subsidy_budget_fen)} yuan, "
              f"{summary.subsidy_lines} enterprises")
    out.print(f"  awards     {fen_to_yuan(summary.award_total_fen)} of {fen_to_yuan(summary.award_budget_fen)} yuan, "
              f"{summary.award_lines} units")
    out.print(f"  inputs digest  {summary.inputs_digest}")
    out.print(f"  results digest {summary.results_digest}")
    if summary.status == "draft":
        out.print("review it at /finance/settlements/%d, then approve it there (or run again with --approve)" % summary.id)


@finance.command("settlements")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@reports_errors
def finance_settlements(as_json: bool) -> None:
    """List settlements, newest period first, with totals and digests."""
    from facility_share.db import Database
    from facility_share.finance import settlement_api, settlements

    async def run() -> list[Any]:
        database = Database(_settings().database_url, null_pool=True)
        try:
            async with database.session() as session:
                rows = await settlements.list_settlements(session)
                counts = await settlement_api.line_counts(session, [s.id for s, _p in rows])
                return [settlement_api.settlement_out(s, p, counts.get(s.id, {})) for s, p in rows]
        finally:
            await database.dispose()

    rows = asyncio.run(run())
    if as_json:
        out.print_json(_settlement_json(rows))
    elif rows:
        out.print(_settlement_table(rows))
    else:
        out.print("no settlements yet (run: facility-share finance settle --period 2026-Q3 --policy wuqing-default)")


async def run_report(settings: Settings, period: str, fmt: str, *, view: str | None = None, lang: str = "zh_CN",
                     progress: Progress | None = None) -> tuple[bytes, Any]:
    """Build a usage report and write it in ``fmt``; returns (content, report). Read-only."""
    from facility_share.db import Database
    from facility_share.finance import exports, reports

    chosen = reports.parse_report_period(period)
    task = progress.add_task(f"report {chosen.label}", total=len(reports.STEPS) + 1) if progress else None

    def step(name: str) -> None:
        if progress is not None and task is not None:
            progress.update(task, description=f"{chosen.label}: {name}", advance=1 if name != reports.STEPS[0] else 0)

    database = Database(settings.database_url, null_pool=True)
    try:
        async with database.session() as session:
            report = await reports.build_report(session, chosen, progress=step)
    finally:
        await database.dispose()
    step("writing")
    content, _media_type, _name = exports.export(report, fmt, view=view, lang=lang)
    if progress is not None and task is not None:
        progress.update(task, completed=len(reports.STEPS) + 1)
    return content, report


@finance.command("report")
@click.option("--period", required=True, metavar="PERIOD",
              help="2026, 2026-Q3, 2026-07, or a range of days 2026-07-01..2026-09-30 (local dates, both included).")
@click.option("--format", "fmt", type=click.Choice(["xlsx", "csv", "json"]), default="xlsx", show_default=True)
@click.option("--view", type=click.Choice(["unit", "resource", "enterprise", "month"]), default=None,
              help="One view only (CSV holds one view: unit unless given).")
@click.option("--lang", type=click.Choice(["zh_CN", "en"]), default="zh_CN", show_default=True, help="Language of headers and names.")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="File to write (default: standard output; XLSX needs a file).")
@reports_errors
def finance_report(period: str, fmt: str, view: str | None, lang: str, output: Path | None) -> None:
    """Usage report of PERIOD per unit, resource, enterprise and month, as XLSX, CSV or JSON."""
    from facility_share.errors import InvalidInput

    if fmt == "xlsx" and output is None:
        raise InvalidInput("--output: an XLSX workbook is binary; name the file to write with -o FILE.xlsx")
    settings = _settings()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        content, report = asyncio.run(run_report(settings, period, fmt, view=view, lang=lang, progress=progress))
    if output is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    output.write_bytes(content)
    rows = {name: len(v.rows) for name, v in report.views.items()}
    err.print(f"wrote {output} ({len(content):,} bytes): {report.period.label}, "
              + ", ".join(f"{count} {name} rows" for name, count in rows.items()), highlight=False, soft_wrap=True)


# --- payments ---------------------------------------------------------------------------


@main.group()
def payments() -> None:
    """Online payments through Stripe."""


@payments.command("reconcile")
@click.option("--since", "since_raw", default=None, metavar="DATE",
              help="Also check payments changed since DATE (YYYY-MM-DD, UTC; default: 7 days ago). Open ones are always checked.")
@reports_errors
def payments_reconcile(since_raw: str | None) -> None:
    """Compare local payments with Stripe and repair what missed webhooks left behind."""
    from datetime import UTC, datetime, timedelta

    from facility_share.payments.reconcile import run_reconcile

    try:
        since = (datetime.fromisoformat(since_raw).replace(tzinfo=UTC) if since_raw
                 else datetime.now(UTC) - timedelta(days=7))
    except ValueError:
        err.print(f"[red]error:[/red] --since: expected a date such as 2026-12-01, got {since_raw!r}", highlight=False)
        sys.exit(2)
    settings = _settings()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("reconciling payments with Stripe", total=None)

        def started(total: int) -> None:
            progress.update(task, total=total)

        def step(changes: list[Any]) -> None:
            for change in changes:
                progress.console.print(str(change), highlight=False, soft_wrap=True)
            progress.advance(task)

        summary = asyncio.run(run_reconcile(settings, since, on_start=started, on_step=step))
    for line in summary.swept:
        out.print(line, highlight=False, soft_wrap=True)
    for problem in summary.errors:
        err.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
    out.print(f"{summary.checked} payment(s) checked since {since:%Y-%m-%d}; {summary.changed} repaired; "
              f"{len(summary.changes)} change(s); {len(summary.swept)} advance or refund step(s); {len(summary.errors)} error(s)",
              highlight=False, soft_wrap=True)
    if summary.errors:
        sys.exit(1)


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
        summary, policy_summary = asyncio.run(run_catalog_import(settings, directory, progress))
    counts = summary.as_dict()["resources"]
    out.print(f"catalogue: {sum(counts.values()) - counts['retired']} resources ({summary.written} records written)")
    if policy_summary is not None:
        _print_policy_summary(policy_summary)
    from facility_share.demo import load_demo

    accounts = asyncio.run(load_demo(settings))
    click.echo(TOUR.format(host=host, port=port, workshop="WQ-TJMAT-PILOT", accounts=accounts, password=DEMO_PASSWORD))


# --- serving ------------------------------------------------------------------------------


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes (PostgreSQL for more than one).")
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
@click.option("--access-log/--no-access-log", default=None,
              help="Log every request, with its request id [default: FACILITY_SHARE_ACCESS_LOG, off] "
                   "(costs CPU on busy servers; a proxy usually logs them already).")
@click.option("--proxy-headers/--no-proxy-headers", default=True, show_default=True,
              help="Take the client's address and scheme from X-Forwarded-For/-Proto, when sent by one of the "
                   "proxies in FACILITY_SHARE_FORWARDED_ALLOW_IPS.")
@click.option("--shutdown-timeout", default=20, show_default=True, type=click.IntRange(min=1),
              help="Seconds requests in flight may take to finish after SIGTERM.")
def serve(host: str, port: int, workers: int, reload: bool, access_log: bool | None, proxy_headers: bool,
          shutdown_timeout: int) -> None:
    """Run the web service with uvicorn.

    With several workers the processes share their Prometheus metrics through the directory in
    PROMETHEUS_MULTIPROC_DIR (a fresh temporary one unless set), emptied at start."""
    import os
    import shutil
    import tempfile

    import uvicorn

    settings = _settings()  # fail fast, with one line, before any worker starts
    if workers > 1 and settings.is_sqlite:
        err.print("[yellow]note:[/yellow] several workers on SQLite serialise their writes; use PostgreSQL in production")
    if access_log is not None:
        # The worker processes build the app from the environment's settings.
        os.environ["FACILITY_SHARE_ACCESS_LOG"] = "true" if access_log else "false"
    # The directory must be in the environment before prometheus_client is imported here or in
    # a worker process: it chooses multi-process mode at import.
    metrics_dir, own_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR"), False
    if workers > 1 and not reload and not metrics_dir:
        metrics_dir, own_metrics_dir = tempfile.mkdtemp(prefix="facility-share-metrics-"), True
    if metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        # Emptied of a previous run's files (counters would continue from it) before
        # prometheus_client opens its own there.
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
        for stale in Path(metrics_dir).glob("*.db"):
            stale.unlink(missing_ok=True)
    from facility_share.web.observability import logging_config

    try:
        uvicorn.run(
            "facility_share.web.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            reload=reload,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            timeout_graceful_shutdown=shutdown_timeout,
            # Applied in every worker process before the app is built: JSON or text lines with
            # the request id. The access lines come from the app (they carry the request id).
            log_config=logging_config(settings.log_format, settings.log_level),
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    finally:
        if own_metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover
    main()
