"""Engines and sessions for both dialects.

SQLite is the embedded default and PostgreSQL the production database. The differences live
here and nowhere else:

* SQLite runs in WAL mode so readers never block the single writer, with ``foreign_keys=ON``
  (off by default in SQLite) and a ``busy_timeout`` so a writer waits for the lock instead of
  failing at once. pysqlite's own implicit transaction handling is switched off and we emit
  ``BEGIN`` ourselves, so that write sessions can take the write lock up front with
  ``BEGIN IMMEDIATE``: a deferred transaction that reads and then writes can deadlock against
  another one doing the same, and SQLite then fails one of them with SQLITE_BUSY at once.
* PostgreSQL goes through asyncpg with a sized pool. A connection that sat idle in the pool
  for a while is pinged when it is checked out, so a restarted server is noticed on checkout
  rather than mid-request (a dead connection is replaced before the request uses it). A busy
  connection is not pinged: SQLAlchemy's ``pool_pre_ping`` would ping on every checkout, and
  with asyncpg its ping is three round trips (BEGIN, an empty query, ROLLBACK), a third of the
  round trips of a booking request. If the server restarts under load, the first statement on
  a dead connection fails (the request answers 503 with Retry-After) and SQLAlchemy then
  invalidates every connection of the pool opened before, so each process loses at most the
  requests in flight and one more. (PgBouncer's ``server_check_delay`` makes the same trade.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0
# Execution option read by the BEGIN hook below; only meaningful on SQLite.
SQLITE_BEGIN_MODE = "sqlite_begin_mode"


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20, null_pool: bool = False,
                  connect_timeout: float | None = None, command_timeout: float | None = None,
                  pool_timeout: float = 10) -> AsyncEngine:
    """Create an async engine with the per-dialect settings described in the module docstring."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            poolclass=pool.NullPool if null_pool else None,
        )
        _install_sqlite_hooks(engine)
        return engine
    kwargs: dict[str, Any] = {}
    # asyncpg's own timeouts (seconds): opening a connection, and any one statement.
    connect_args = {name: value for name, value in (("timeout", connect_timeout), ("command_timeout", command_timeout))
                    if value is not None}
    if connect_args:
        kwargs["connect_args"] = connect_args
    if null_pool:
        kwargs["poolclass"] = pool.NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
    engine = create_async_engine(url, **kwargs)
    if not null_pool:
        _install_idle_ping(engine)
    return engine


def _install_idle_ping(engine: AsyncEngine) -> None:
    """Ping connections that sat idle in the pool (see module docstring)."""

    @event.listens_for(engine.sync_engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out another (a new one if need be).
            raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL makes NORMAL durable across application crashes; only an OS crash may lose
        # the last commits, which is the trade-off SQLite documents for WAL mode.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_MODE, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """The engine plus two session factories: one for reads, one for writes.

    Write sessions begin with ``BEGIN IMMEDIATE`` on SQLite (see module docstring); on
    PostgreSQL both factories behave the same. Callers own the transaction: services flush,
    the request handler or CLI command commits.
    """

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20, null_pool: bool = False,
                 connect_timeout: float | None = None, command_timeout: float | None = None, pool_timeout: float = 10) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, null_pool=null_pool,
                                    connect_timeout=connect_timeout, command_timeout=command_timeout, pool_timeout=pool_timeout)
        self.dialect = self.engine.dialect.name
        write_engine = self.engine.execution_options(**{SQLITE_BEGIN_MODE: "IMMEDIATE"})
        self.read_sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self.write_sessions = async_sessionmaker(write_engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose transaction the caller commits; it is rolled back if left open."""
        factory = self.write_sessions if write else self.read_sessions
        async with factory() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()
