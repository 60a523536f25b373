"""Test databases: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``FACILITY_SHARE_TEST_DATABASE_URL`` if set, else from a server at
127.0.0.1:5432 (user postgres) if one answers. In CI (``CI=true``) a missing PostgreSQL ends the
run with an error instead of skipping: the PostgreSQL half of the suite must never vanish
silently. Each run creates its own PostgreSQL database, migrates it once and drops it at the end;
tests isolate by emptying the tables after each test.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.db import Database
from facility_share.db import migrate
from facility_share.db.models import Base

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _pg_admin_url() -> str | None:
    """The URL of a PostgreSQL server to create the test database on, or None."""
    configured = os.environ.get("FACILITY_SHARE_TEST_DATABASE_URL")
    if configured:
        from facility_share.settings import normalise_database_url

        return normalise_database_url(configured)
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return DEFAULT_PG
    except OSError:
        return None


PG_ADMIN_URL = _pg_admin_url()
# The Stripe peer (localstripe) fixtures of the payment tests.
pytest_plugins = ("tests.payments_peer",)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if PG_ADMIN_URL:
        where = make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        return [f"database tests: SQLite and PostgreSQL ({where})"]
    return ["database tests: SQLite only (no PostgreSQL reachable at 127.0.0.1:5432; "
            "set FACILITY_SHARE_TEST_DATABASE_URL to run the PostgreSQL half)"]


def pytest_sessionstart(session: pytest.Session) -> None:
    if IN_CI and PG_ADMIN_URL is None:
        raise pytest.UsageError(
            "CI=true but no PostgreSQL is reachable at 127.0.0.1:5432 and FACILITY_SHARE_TEST_DATABASE_URL "
            "is not set: the PostgreSQL tests must run in CI. Start PostgreSQL or set the variable."
        )


DIALECTS = ["sqlite", "postgresql"]


async def _admin_execute(admin_url: str, statement: str) -> None:
    import asyncpg

    url = make_url(admin_url)
    conn = await asyncpg.connect(
        host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
        password=url.password, database=url.database or "postgres",
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _create_databases(tmp_path_factory: pytest.TempPathFactory, purpose: str) -> tuple[dict[str, str], list[str]]:
    urls: dict[str, str] = {}
    sqlite_path = tmp_path_factory.mktemp(purpose) / "test.sqlite3"
    urls["sqlite"] = f"sqlite+aiosqlite:///{sqlite_path}"
    migrate.upgrade(urls["sqlite"])
    created = []
    if PG_ADMIN_URL:
        name = f"facility_share_test_{purpose}_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin_execute(PG_ADMIN_URL, f'CREATE DATABASE "{name}"'))
        created.append(name)
        urls["postgresql"] = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(urls["postgresql"])
    return urls, created


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One empty migrated database per dialect for the whole run (emptied after each test)."""
    urls, created = _create_databases(tmp_path_factory, "blank")
    yield urls
    for name in created:
        asyncio.run(_admin_execute(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def catalog_database_urls(tmp_path_factory: pytest.TempPathFactory, loaded_catalog) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """One migrated database per dialect holding the shipped catalogue, imported once.

    Tests on it add accounts, bookings and the like; those tables are emptied after each
    test, the catalogue stays.
    """
    from facility_share.catalog.importer import import_catalog

    urls, created = _create_databases(tmp_path_factory, "catalog")

    async def load(url: str) -> None:
        database = Database(url, null_pool=True)
        async with database.session(write=True) as s:
            await import_catalog(s, loaded_catalog)
            await s.commit()
        await database.dispose()

    for url in urls.values():
        asyncio.run(load(url))
    yield urls
    for name in created:
        asyncio.run(_admin_execute(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest, database_urls: dict[str, str]) -> str:
    if request.param not in database_urls:
        pytest.skip("PostgreSQL not reachable (set FACILITY_SHARE_TEST_DATABASE_URL)")
    return request.param


@pytest.fixture
def database_url(dialect: str, database_urls: dict[str, str]) -> str:
    return database_urls[dialect]


CATALOG_TABLES = {"categories", "managing_units", "resources", "opening_hours", "fee_items", "closures"}


async def empty_tables(db: Database, *, keep: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in keep]
    async with db.session(write=True) as session:
        if db.dialect == "postgresql":
            await session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            # users and enterprises refer to each other: check the keys at commit, when both are empty.
            await session.execute(text("PRAGMA defer_foreign_keys=ON"))
            # Triggers that keep approved settlements final would refuse the DELETE (TRUNCATE on
            # PostgreSQL does not fire them): set them aside and put them back as they were.
            triggers = (await session.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))).all()
            for name, _sql in triggers:
                await session.execute(text(f'DROP TRIGGER "{name}"'))
            for table in tables:
                await session.execute(text(f"DELETE FROM {table}"))
            for _name, sql in triggers:
                await session.execute(text(sql))
        if "closures" in keep:
            await session.execute(text("DELETE FROM closures WHERE source <> 'catalog'"))
        await session.commit()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A Database on the migrated, empty schema, emptied again after the test."""
    database = Database(database_url, null_pool=True)
    try:
        yield database
    finally:
        await empty_tables(database)
        await database.dispose()


@pytest.fixture
async def session(db: Database) -> AsyncIterator[AsyncSession]:
    async with db.session(write=True) as s:
        yield s


@pytest.fixture(scope="session")
def catalog_dir() -> Path:
    return ROOT / "catalog"


@pytest.fixture(scope="session")
def loaded_catalog(catalog_dir: Path):  # type: ignore[no-untyped-def]
    from facility_share.catalog.files import load_catalog

    return load_catalog(catalog_dir)


@pytest.fixture
async def imported(dialect: str, catalog_database_urls: dict[str, str]) -> AsyncIterator[Database]:
    """A Database holding the repository's catalogue; everything else is emptied after the test."""
    database = Database(catalog_database_urls[dialect], null_pool=True)
    try:
        yield database
    finally:
        await empty_tables(database, keep=CATALOG_TABLES)
        await database.dispose()


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing() -> None:
    """Cheap argon2 parameters for the suite (as Django's test settings do): hundreds of test
    users would otherwise cost a minute of hashing. The algorithm and code path are the same."""
    from argon2 import PasswordHasher

    from facility_share.accounts import security

    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # noqa: SLF001
