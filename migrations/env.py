"""Alembic environment: one migration stream for SQLite and PostgreSQL.

SQLite cannot ALTER most things in place, so migrations run in batch mode there
(``render_as_batch``), which copies the table; PostgreSQL ignores batch mode.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from facility_share.db.engine import create_engine
from facility_share.db.migrate import compare_server_default
from facility_share.db.models import Base

config = context.config
target_metadata = Base.metadata


def _for_this_dialect(dialect: str):  # type: ignore[no-untyped-def]
    """Autogenerate must not add or drop indexes declared for another dialect only."""

    def include(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
        condition = getattr(obj, "_ddl_if", None)
        return condition is None or condition.dialect in (None, dialect)

    return include


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        compare_server_default=compare_server_default,
        include_object=_for_this_dialect(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # Tests and the CLI may pass an open connection.
        _configure(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), null_pool=True)
    async with engine.connect() as conn:
        await conn.run_sync(_configure)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
