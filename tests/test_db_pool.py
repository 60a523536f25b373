"""PostgreSQL connection pool: a pooled connection the server dropped is replaced before a
request uses it when it sat idle, and at worst one statement fails when it did not."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, text

from facility_share.db import Database, engine


async def backend_pid(db: Database) -> int:
    async with db.session() as session:
        return (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def terminate(db: Database, pid: int) -> None:
    async with db.session() as session:
        await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.fixture
async def pooled(dialect: str, database_url: str):  # type: ignore[no-untyped-def]
    if dialect != "postgresql":
        pytest.skip("SQLite has no server to lose")
    db, killer = Database(database_url, pool_size=1, max_overflow=0), Database(database_url, null_pool=True)
    try:
        yield db, killer
    finally:
        await db.dispose()
        await killer.dispose()


async def test_an_idle_connection_dropped_by_the_server_is_replaced_on_checkout(pooled, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db, killer = pooled
    first = await backend_pid(db)
    await terminate(killer, first)
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle long enough
    assert await backend_pid(db) != first


async def test_a_busy_connection_is_not_pinged_and_fails_once(pooled, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db, killer = pooled
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = await backend_pid(db)
    assert await backend_pid(db) == first  # reused without a ping
    await terminate(killer, first)
    with pytest.raises(exc.DBAPIError) as caught:
        await backend_pid(db)
    assert caught.value.connection_invalidated  # answered as 503 by the app's error handler
    assert await backend_pid(db) != first  # the pool has replaced it
