"""Per-dialect database settings: SQLite pragmas and write locking, PostgreSQL pool sizing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from facility_share.db import Database


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite3'}")
    try:
        async with db.session() as session:
            assert (await session.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await session.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
            assert (await session.execute(text("PRAGMA busy_timeout"))).scalar_one() == 30_000
    finally:
        await db.dispose()


async def test_sqlite_write_sessions_take_the_lock_up_front(tmp_path: Path) -> None:
    """A write session holds SQLite's write lock from its first statement (BEGIN IMMEDIATE),
    so a second writer waits for it, while readers go on reading (WAL)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'w.sqlite3'}")
    try:
        async with db.session(write=True) as s:
            await s.execute(text("CREATE TABLE t (n INTEGER)"))
            await s.commit()
        order: list[str] = []
        first_holds_lock = asyncio.Event()

        async def first_writer() -> None:
            async with db.session(write=True) as s:
                await s.execute(text("SELECT 1"))  # a read only: IMMEDIATE still takes the lock
                first_holds_lock.set()
                await asyncio.sleep(0.3)
                await s.execute(text("INSERT INTO t VALUES (1)"))
                order.append("first commits")
                await s.commit()

        async def second_writer() -> None:
            await first_holds_lock.wait()
            async with db.session(write=True) as s:
                await s.execute(text("INSERT INTO t VALUES (2)"))
                order.append("second writes")
                await s.commit()

        async def reader() -> None:
            await first_holds_lock.wait()
            async with db.session() as s:
                await s.execute(text("SELECT count(*) FROM t"))
                order.append("reader reads")

        await asyncio.gather(first_writer(), second_writer(), reader())
        assert order == ["reader reads", "first commits", "second writes"]
    finally:
        await db.dispose()


async def test_postgresql_pool_is_sized(database_urls: dict[str, str]) -> None:
    if "postgresql" not in database_urls:
        pytest.skip("PostgreSQL not reachable")
    db = Database(database_urls["postgresql"], pool_size=7, max_overflow=3)
    try:
        assert db.engine.pool.size() == 7
        assert db.engine.pool._max_overflow == 3  # noqa: SLF001 - no public accessor
        async with db.session() as session:
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()
