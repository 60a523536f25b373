"""The worker: claims due jobs, runs their handlers, retries failures, schedules the sweeps.

Claiming is one UPDATE of the oldest due job's row, chosen by a sub-select that is ``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so concurrent workers never wait for or take the same job. On
SQLite the claim runs in a write session (``BEGIN IMMEDIATE``): the single writer makes the same
UPDATE safe. A claim sets a lease (``locked_until``); a running worker extends it while the
handler works, and a job whose worker died (kill -9, a lost machine) is claimable again once the
lease has run out.

Completing a job is fenced: ``UPDATE … WHERE locked_by = me AND attempts = n``. If the lease ran
out and another worker claimed the job meanwhile, the first worker's completion matches nothing
and its transaction — the handler's effect included — is rolled back. A transactional handler's
effect and the job's completion therefore commit together exactly once.

Failures go back to ``failed`` with ``run_at`` pushed by exponential backoff with jitter; after
``max_attempts`` claims the job is ``dead`` and waits for an administrator (``/admin/jobs``).

Periodic sweeps are jobs too: every worker inserts, for each periodic kind, a job whose
``dedupe_key`` names the current time bucket, so whatever the number of workers each sweep runs
once per tick.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import random
import socket
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.db import Database
from facility_share.db.models import Job, utcnow
from facility_share.jobs.queue import HANDLERS, Permanent, backoff_seconds, enqueue
from facility_share.settings import Settings

log = logging.getLogger("facility_share.jobs")

# Modules whose handlers every worker knows.
HANDLER_MODULES = ("facility_share.jobs.sweeps", "facility_share.notifications.handlers")
DEFAULT_LEASE_SECONDS = 120.0
MAX_ERROR_CHARS = 4000


class LeaseLost(Exception):
    """The job was claimed by another worker after this one's lease ran out."""


def load_handlers(extra: Iterable[str] = ()) -> None:
    """Import the modules that register handlers (the built-in ones and ``extra``)."""
    for name in (*HANDLER_MODULES, *extra):
        importlib.import_module(name)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    locked_by: str


@dataclass
class JobContext:
    """What a handler gets besides its payload."""

    database: Database
    settings: Settings
    job: Claimed
    now: datetime
    # The write session the job is completed in (transactional handlers); None otherwise.
    session: AsyncSession | None = None
    worker: Worker | None = None


@dataclass(frozen=True, slots=True)
class Periodic:
    kind: str
    every_seconds: int


async def claim(session: AsyncSession, worker_id: str, *, now: datetime, lease_seconds: float) -> Claimed | None:
    """Claim the oldest due job for ``worker_id`` inside ``session`` (a write session; the
    caller commits). A job whose lease ran out on its last attempt is declared dead instead,
    and the next one is tried."""
    candidates = Job.__table__.alias("candidate")
    while True:
        chosen = (
            select(candidates.c.id)
            .where(or_(and_(candidates.c.status.in_(("queued", "failed")), candidates.c.run_at <= now),
                       and_(candidates.c.status == "running", candidates.c.locked_until < now)))
            .order_by(candidates.c.run_at, candidates.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar_subquery()
        row = (
            await session.execute(
                update(Job)
                .where(Job.id == chosen)
                .values(status="running", locked_by=worker_id, locked_until=now + timedelta(seconds=lease_seconds),
                        attempts=Job.attempts + 1, started_at=now)
                .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts)
            )
        ).first()
        if row is None:
            return None
        if row.attempts <= row.max_attempts:
            return Claimed(row.id, row.kind, dict(row.payload or {}), row.attempts, row.max_attempts, worker_id)
        # Its last attempt's worker stopped mid-job (the lease ran out): give up on it.
        await session.execute(
            update(Job).where(Job.id == row.id)
            .values(status="dead", attempts=row.max_attempts, finished_at=now, locked_by=None, locked_until=None,
                    last_error="the worker running its last attempt stopped before finishing it (lease expired)")
        )


def _fenced(job: Claimed):  # type: ignore[no-untyped-def]
    return and_(Job.id == job.id, Job.status == "running", Job.locked_by == job.locked_by, Job.attempts == job.attempts)


async def complete(session: AsyncSession, job: Claimed, *, now: datetime, result: Mapping[str, Any] | None) -> None:
    """Mark ``job`` done in ``session``. Raises LeaseLost if another worker holds it now."""
    done = await session.execute(
        update(Job).where(_fenced(job))
        .values(status="done", finished_at=now, locked_by=None, locked_until=None,
                result=dict(result) if result is not None else None)
        .returning(Job.id)
    )
    if done.first() is None:
        raise LeaseLost(f"job {job.id} ({job.kind}) was taken over by another worker; its work here is rolled back")


async def record_failure(session: AsyncSession, job: Claimed, error: str, *, now: datetime, permanent: bool = False,
                         rnd: float | None = None, backoff_base: float | None = None) -> str:
    """After a failed attempt: ``failed`` with a backoff, or ``dead`` when attempts are used up
    (or the error is permanent). Returns the new status ('' if the lease was lost)."""
    dead = permanent or job.attempts >= job.max_attempts
    kwargs = {"base": backoff_base} if backoff_base is not None else {}
    delay = backoff_seconds(job.attempts, random.random() if rnd is None else rnd, **kwargs)
    values: dict[str, Any] = {"status": "dead" if dead else "failed", "last_error": error[-MAX_ERROR_CHARS:],
                              "locked_by": None, "locked_until": None}
    if dead:
        values["finished_at"] = now
    else:
        values["run_at"] = now + timedelta(seconds=delay)
    changed = await session.execute(update(Job).where(_fenced(job)).values(**values).returning(Job.id))
    return values["status"] if changed.first() is not None else ""


async def extend_lease(database: Database, job: Claimed, lease_seconds: float) -> bool:
    async with database.session(write=True) as session:
        changed = await session.execute(
            update(Job).where(_fenced(job)).values(locked_until=utcnow() + timedelta(seconds=lease_seconds)).returning(Job.id)
        )
        await session.commit()
        return changed.first() is not None


# --- periodic sweeps ------------------------------------------------------------------------------


def periodic_jobs(settings: Settings, every: int) -> list[Periodic]:
    """The sweeps a worker schedules: expiry, no-shows, reminders, payments (what is configured)."""
    jobs = [Periodic("bookings.expire", every), Periodic("bookings.no_shows", every), Periodic("jobs.prune", 3600)]
    if settings.reminder_hours > 0:
        jobs.append(Periodic("notifications.reminders", every))
    if "payments.advances" in HANDLERS:
        jobs.append(Periodic("payments.advances", every))
    if settings.stripe_enabled:
        jobs.append(Periodic("payments.reconcile", max(every, 900)))
    return jobs


def bucket_of(now: datetime, every_seconds: int) -> int:
    return int(now.timestamp()) // every_seconds


async def schedule(database: Database, periodic: Iterable[Periodic], *, now: datetime | None = None,
                   last: dict[str, int] | None = None) -> int:
    """Insert this tick's periodic jobs (once per bucket across all workers). Returns how many
    were new. ``last`` remembers the buckets this worker already scheduled, to skip the insert."""
    now = now or utcnow()
    last = {} if last is None else last
    created = 0
    todo = [(p, bucket_of(now, p.every_seconds)) for p in periodic if last.get(p.kind) != bucket_of(now, p.every_seconds)]
    if not todo:
        return 0
    async with database.session(write=True) as session:
        for p, bucket in todo:
            start = datetime.fromtimestamp(bucket * p.every_seconds, tz=now.tzinfo)
            # A sweep missed for a whole tick is not worth retrying later: the next tick's covers it.
            created += await enqueue(session, p.kind, {}, run_at=start, dedupe_key=f"periodic:{p.kind}:{p.every_seconds}:{bucket}",
                                     max_attempts=2)
        await session.commit()
    for p, bucket in todo:
        last[p.kind] = bucket
    return created


# --- the worker ------------------------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"


@dataclass
class Worker:
    """Runs jobs from ``database``: ``run_one`` for one job, ``drain`` until none is due,
    ``run`` until ``stop`` is set (each slot finishes its current job first)."""

    database: Database
    settings: Settings
    concurrency: int = 1
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    poll_seconds: float = 1.0
    every_seconds: int = 60
    backoff_base: float | None = None
    name: str = field(default_factory=worker_name)
    periodic: list[Periodic] | None = None
    # Set by the e-mail handler on first use and kept for the worker's life.
    resources: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.periodic is None:
            self.periodic = periodic_jobs(self.settings, self.every_seconds)
        self._scheduled: dict[str, int] = {}
        self.processed = 0

    async def run_one(self, *, now: datetime | None = None) -> bool:
        """Claim and run one due job. Returns False if none was due."""
        claimed_at = now or utcnow()
        async with self.database.session(write=True) as session:
            job = await claim(session, self.name, now=claimed_at, lease_seconds=self.lease_seconds)
            await session.commit()
        if job is None:
            return False
        await self._execute(job, now)
        self.processed += 1
        return True

    async def drain(self, *, now: datetime | None = None, limit: int = 100_000) -> int:
        """Run due jobs until none is left (or ``limit``). Returns how many ran."""
        count = 0
        while count < limit and await self.run_one(now=now):
            count += 1
        return count

    async def _execute(self, job: Claimed, now: datetime | None) -> None:
        registered = HANDLERS.get(job.kind)
        finished = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(job, finished))
        try:
            if registered is None:
                raise Permanent(f"no handler for job kind {job.kind!r} in this worker (is its module loaded?)")
            if registered.transactional:
                async with self.database.session(write=True) as session:
                    context = JobContext(self.database, self.settings, job, now or utcnow(), session, self)
                    result = await registered.func(context, job.payload)
                    await complete(session, job, now=now or utcnow(), result=result)
                    await session.commit()
            else:
                context = JobContext(self.database, self.settings, job, now or utcnow(), None, self)
                result = await registered.func(context, job.payload)
                async with self.database.session(write=True) as session:
                    await complete(session, job, now=now or utcnow(), result=result)
                    await session.commit()
            log.debug("job %d %s done (attempt %d): %s", job.id, job.kind, job.attempts, result)
        except LeaseLost as exc:
            log.warning("%s", exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a handler is recorded on its job
            error = "".join(traceback.format_exception_only(exc)).strip() if isinstance(exc, Permanent) else traceback.format_exc()
            async with self.database.session(write=True) as session:
                status = await record_failure(session, job, error, now=now or utcnow(), permanent=isinstance(exc, Permanent),
                                              backoff_base=self.backoff_base)
                await session.commit()
            level = logging.ERROR if status == "dead" else logging.WARNING
            log.log(level, "job %d %s attempt %d/%d failed (%s): %s", job.id, job.kind, job.attempts, job.max_attempts,
                    status or "lease lost", exc.__class__.__name__ + (f": {exc}" if str(exc) else ""))
        finally:
            # The heartbeat is told to stop, not cancelled: a cancel landing inside its lease update
            # can strand that statement's connection mid-transaction (on SQLite holding the write
            # lock, which then blocks every other writer and, in aiosqlite's thread, the exit).
            finished.set()
            await heartbeat

    async def _heartbeat(self, job: Claimed, finished: asyncio.Event) -> None:
        while True:
            await _wait(finished, self.lease_seconds / 3)
            if finished.is_set():
                return
            try:
                if not await extend_lease(self.database, job, self.lease_seconds):
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the lease is a safety net; the job goes on
                log.warning("could not extend the lease of job %d", job.id, exc_info=True)

    async def schedule_once(self, *, now: datetime | None = None) -> int:
        return await schedule(self.database, self.periodic or [], now=now, last=self._scheduled)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set: ``concurrency`` slots claiming jobs, one scheduler."""
        async def slot(index: int) -> None:
            failures = 0
            while not stop.is_set():
                try:
                    ran = await self.run_one()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the database may be away: wait longer each time, up to 30 s
                    failures += 1
                    if failures == 1:
                        log.exception("worker slot %d could not claim a job; retrying", index)
                    else:
                        log.warning("worker slot %d still cannot claim a job (%s)", index, exc.__class__.__name__)
                    await _wait(stop, min(30.0, self.poll_seconds * 2 ** failures))
                    continue
                if not ran:
                    await _wait(stop, self.poll_seconds)

        async def scheduler() -> None:
            while not stop.is_set():
                try:
                    await self.schedule_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001
                    log.exception("could not schedule the periodic jobs")
                await _wait(stop, min(5.0, float(self.every_seconds)))

        log.info("worker %s: %d slot(s), lease %.0f s, periodic: %s", self.name, self.concurrency, self.lease_seconds,
                 ", ".join(f"{p.kind}/{p.every_seconds}s" for p in self.periodic or []) or "none")
        await asyncio.gather(scheduler(), *(slot(i) for i in range(self.concurrency)))
        await self.close()

    async def close(self) -> None:
        for resource in self.resources.values():
            closer = getattr(resource, "close", None)
            if closer is not None:
                outcome = closer()
                if asyncio.iscoroutine(outcome):
                    await outcome
        self.resources.clear()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def prune(session: AsyncSession, *, now: datetime, keep_days: int = 30) -> int:
    """Delete jobs done more than ``keep_days`` ago (dead ones stay for an administrator)."""
    result = await session.execute(
        delete(Job).where(Job.status == "done", Job.finished_at < now - timedelta(days=keep_days)).returning(Job.id)
    )
    return len(result.all())
