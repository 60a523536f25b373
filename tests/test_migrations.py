"""The models and the migration stream agree, on both dialects, and the stream runs both ways."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index

from facility_share.db import Database, migrate
from facility_share.db.models import Base


def _only_for_other_dialect(obj, name, type_, reflected, compare_to, dialect: str) -> bool:  # type: ignore[no-untyped-def]
    """Indexes declared with ``ddl_if(dialect=...)`` exist only on that dialect."""
    if isinstance(obj, Index) and obj._ddl_if is not None and obj._ddl_if.dialect not in (None, dialect):
        return False
    return True


async def _diff(url: str) -> list:
    database = Database(url, null_pool=True)
    try:
        async with database.engine.connect() as conn:
            def compare(sync_conn):  # type: ignore[no-untyped-def]
                context = MigrationContext.configure(
                    sync_conn,
                    opts={
                        "compare_type": True,
                        "compare_server_default": migrate.compare_server_default,
                        "include_object": lambda *a: _only_for_other_dialect(*a, dialect=database.dialect),
                    },
                )
                return compare_metadata(context, Base.metadata)

            return await conn.run_sync(compare)
    finally:
        await database.dispose()


async def test_models_match_migrations(database_url: str) -> None:
    assert await _diff(database_url) == []


async def test_database_is_at_head(database_url: str) -> None:
    database = Database(database_url, null_pool=True)
    try:
        assert await migrate.current_revision(database.engine) == migrate.head_revision()
    finally:
        await database.dispose()


def test_downgrade_to_base_and_up_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.sqlite3'}"
    migrate.upgrade(url)
    migrate.downgrade(url, "base")
    migrate.upgrade(url)
    assert asyncio.run(_diff(url)) == []
