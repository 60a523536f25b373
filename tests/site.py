"""A whole demo site in a temporary SQLite file, for page tests: migrate, import the
catalogue, load the demo; and a way to read or change its database from the test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from facility_share.cli import run_import
from facility_share.db import Database, migrate
from facility_share.demo import load_demo
from facility_share.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def demo_site(tmp_path_factory: pytest.TempPathFactory, name: str, *, demo: bool = True) -> Settings:
    path = tmp_path_factory.mktemp(name) / "t.sqlite3"
    settings = load_settings({"FACILITY_SHARE_DATABASE_URL": f"sqlite:///{path}"})
    migrate.upgrade(settings.database_url)
    asyncio.run(run_import(settings, ROOT / "catalog"))
    if demo:
        asyncio.run(load_demo(settings))
    return settings


def run_in(settings: Settings, work: Callable[[Any], Awaitable[Any]], *, write: bool = True) -> Any:
    """``await work(session)`` in the site's database, committed when ``write``."""

    async def run() -> Any:
        database = Database(settings.database_url, null_pool=True)
        try:
            async with database.session(write=write) as session:
                result = await work(session)
                if write:
                    await session.commit()
                return result
        finally:
            await database.dispose()

    return asyncio.run(run())


def query(settings: Settings, statement: Any) -> list[Any]:
    """All rows of one read in the site's database."""

    async def work(session: Any) -> list[Any]:
        return list((await session.execute(statement)).all())

    return run_in(settings, work, write=False)
