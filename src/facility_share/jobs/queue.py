"""The job queue's writing side and its handler registry.

A job is a row of ``jobs`` (``db/models/_jobs.py``). Enqueueing is one INSERT in the caller's
transaction, so a job exists exactly when the state change that asked for it commits: a
rolled-back booking decision sends nothing. A ``dedupe_key`` makes the insert a no-op when a job
with that key already exists (``ON CONFLICT DO NOTHING`` on both dialects), which is how "each
expiry, each reminder, each periodic sweep exactly once" is enforced by the database rather than
by the workers' good behaviour.

Handlers register by kind with :func:`handler`. A *transactional* handler receives the write
session in which the worker also marks the job done, so its effect and its completion commit
together or not at all (a worker killed mid-job leaves nothing half-applied, and the job is taken
up again when its lease runs out). A non-transactional handler does something outside the
database (sending an e-mail, calling Stripe) and must be idempotent on retry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.db.models import Job, utcnow

if TYPE_CHECKING:
    from facility_share.jobs.runner import JobContext

DEFAULT_MAX_ATTEMPTS = 8
# Backoff between attempts: 30 s, 1 min, 2 min, … capped at an hour (with jitter, see backoff).
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0

HandlerFunc = Callable[["JobContext", dict[str, Any]], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Handler:
    kind: str
    func: HandlerFunc
    transactional: bool
    max_attempts: int


HANDLERS: dict[str, Handler] = {}


class Permanent(Exception):
    """Raised by a handler when retrying cannot help (the job goes straight to ``dead``)."""


def handler(kind: str, *, transactional: bool = True, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register ``func`` as the handler of ``kind`` (a module registers its handlers on import)."""

    def register(func: HandlerFunc) -> HandlerFunc:
        HANDLERS[kind] = Handler(kind, func, transactional, max_attempts)
        return func

    return register


def _insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    dialect = session.bind.dialect.name
    table = Job.__table__
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


_COLUMNS = ("kind", "payload", "run_at", "status", "attempts", "max_attempts", "last_error", "dedupe_key", "created_at")


@cache
def _enqueue_statement(dialect: str):  # type: ignore[no-untyped-def]
    """One INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING id per dialect, built once:
    enqueueing sits inside busy transactions (a booking's), so it is a prepared Core statement
    on the session's connection, not an ORM flush."""
    table = Job.__table__
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return (
        insert.values({name: bindparam(name, type_=table.c[name].type) for name in _COLUMNS})
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.id)
    )


def _row(kind: str, payload: Mapping[str, Any], run_at: datetime | None, dedupe_key: str | None,
         max_attempts: int | None, now: datetime) -> dict[str, Any]:
    registered = HANDLERS.get(kind)
    return {
        "kind": kind,
        "payload": dict(payload),
        "run_at": run_at or now,
        "status": "queued",
        "attempts": 0,
        "max_attempts": max_attempts or (registered.max_attempts if registered else DEFAULT_MAX_ATTEMPTS),
        "last_error": "",
        "dedupe_key": dedupe_key,
        "created_at": now,
    }


async def enqueue(session: AsyncSession, kind: str, payload: Mapping[str, Any] | None = None, *, run_at: datetime | None = None,
                  dedupe_key: str | None = None, max_attempts: int | None = None) -> bool:
    """Add a job to the caller's transaction (one INSERT; flushed now, committed by the caller).

    Returns False when ``dedupe_key`` names a job that already exists (nothing is inserted).
    """
    connection = await session.connection()
    row = _row(kind, payload or {}, run_at, dedupe_key, max_attempts, utcnow())
    result = await connection.execute(_enqueue_statement(connection.dialect.name), row)
    return result.first() is not None


async def enqueue_many(session: AsyncSession, kind: str, jobs: Iterable[tuple[Mapping[str, Any], str | None]], *,
                       run_at: datetime | None = None) -> None:
    """Several jobs of one kind, given as (payload, dedupe_key), in one statement (an
    executemany); existing dedupe keys are skipped."""
    now = utcnow()
    rows = [_row(kind, payload, run_at, key, None, now) for payload, key in jobs]
    if not rows:
        return
    statement = _insert(session).on_conflict_do_nothing(index_elements=["dedupe_key"])
    await session.execute(statement, rows)


def backoff_seconds(attempt: int, rnd: float, *, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """The wait before retrying after failed attempt number ``attempt`` (1, 2, …): exponential,
    capped, with "equal jitter" — half the delay fixed, the other half scaled by ``rnd`` in
    [0, 1) — so workers that failed together do not retry together, yet never retry at once."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay / 2 + delay / 2 * min(max(rnd, 0.0), 1.0)
