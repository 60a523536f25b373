"""Running the Alembic migrations from the CLI, tests and start-up checks."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

# The stream lives at the top of the repository. An installed package (the container image
# installs it into a virtual environment, not from the source tree) is told where the copied
# folder is by FACILITY_SHARE_MIGRATIONS_DIR.
MIGRATIONS_DIR = Path(os.environ.get("FACILITY_SHARE_MIGRATIONS_DIR") or Path(__file__).resolve().parents[3] / "migrations")


def compare_server_default(context, inspected_column, metadata_column, inspected_default, metadata_default, rendered_default):  # type: ignore[no-untyped-def]
    """Alembic's default comparison, except for JSON columns, whose defaults PostgreSQL cannot
    compare with ``=``; their literal ``'[]'`` defaults are checked by the migration tests."""
    from sqlalchemy import JSON

    if isinstance(metadata_column.type, JSON):
        return False
    return None


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``. Runs its own event loop (call from sync code)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection) -> str | None:  # type: ignore[no-untyped-def]
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)
