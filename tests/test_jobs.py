"""The job queue on SQLite and PostgreSQL: enqueueing in the caller's transaction, dedupe keys,
claiming, leases and fencing, retries with backoff, dead jobs, periodic scheduling, and many
workers in one process never sharing a job."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from facility_share.db import Database
from facility_share.db.models import AuditEvent, Job, utcnow
from facility_share.jobs import enqueue
from facility_share.jobs.queue import backoff_seconds
from facility_share.jobs.runner import LeaseLost, Periodic, Worker, claim, complete, load_handlers, schedule
from facility_share.settings import load_settings

import tests.job_plugins  # noqa: F401 - registers the test.* kinds

load_handlers()


def settings_for(url: str):  # type: ignore[no-untyped-def]
    return load_settings({"FACILITY_SHARE_DATABASE_URL": url})


def worker(db: Database, **kwargs) -> Worker:  # type: ignore[no-untyped-def]
    kwargs.setdefault("periodic", [])
    return Worker(db, settings_for(db.url), **kwargs)


async def jobs(db: Database) -> list[Job]:
    async with db.session() as session:
        return list((await session.execute(select(Job).order_by(Job.id))).scalars())


async def effects(db: Database) -> dict[int, int]:
    """How many times each test job's effect was committed, by its ``n``."""
    async with db.session() as session:
        rows = await session.execute(
            select(AuditEvent.entity_id, func.count()).where(AuditEvent.entity == "test_job").group_by(AuditEvent.entity_id)
        )
        return {int(n): count for n, count in rows}


async def add(db: Database, kind: str, payload: dict, **kwargs) -> None:  # type: ignore[type-arg,no-untyped-def]
    async with db.session(write=True) as session:
        await enqueue(session, kind, payload, **kwargs)
        await session.commit()


# --- enqueueing ----------------------------------------------------------------------------------------


async def test_a_job_exists_only_if_the_callers_transaction_commits(db: Database) -> None:
    async with db.session(write=True) as session:
        assert await enqueue(session, "test.record", {"n": 1})
        await session.rollback()
    assert await jobs(db) == []
    await add(db, "test.record", {"n": 2})
    (job,) = await jobs(db)
    assert (job.kind, job.payload, job.status, job.attempts) == ("test.record", {"n": 2}, "queued", 0)


async def test_a_dedupe_key_is_enqueued_once(db: Database) -> None:
    async with db.session(write=True) as session:
        assert await enqueue(session, "test.record", {"n": 1}, dedupe_key="once")
        assert not await enqueue(session, "test.record", {"n": 99}, dedupe_key="once")
        await session.commit()
    async with db.session(write=True) as session:  # and in a later transaction
        assert not await enqueue(session, "test.record", {"n": 98}, dedupe_key="once")
        await session.commit()
    assert [j.payload for j in await jobs(db)] == [{"n": 1}]


# --- running ------------------------------------------------------------------------------------------


async def test_effect_and_completion_commit_together(db: Database) -> None:
    await add(db, "test.record", {"n": 7})
    runner = worker(db)
    assert await runner.run_one()
    assert not await runner.run_one()  # nothing else is due
    (job,) = await jobs(db)
    assert (job.status, job.attempts, job.result, job.locked_by, job.locked_until) == ("done", 1, {"n": 7}, None, None)
    assert job.finished_at is not None
    assert await effects(db) == {7: 1}


async def test_jobs_due_later_wait_and_the_oldest_goes_first(db: Database) -> None:
    now = utcnow()
    await add(db, "test.record", {"n": 1}, run_at=now + timedelta(hours=1))
    await add(db, "test.record", {"n": 2}, run_at=now - timedelta(minutes=1))
    await add(db, "test.record", {"n": 3}, run_at=now - timedelta(minutes=2))
    async with db.session(write=True) as session:
        first = await claim(session, "w", now=now, lease_seconds=60)
        second = await claim(session, "w", now=now, lease_seconds=60)
        third = await claim(session, "w", now=now, lease_seconds=60)
        await session.commit()
    assert (first.payload["n"], second.payload["n"], third) == (3, 2, None)


async def test_a_failed_attempt_rolls_back_its_effect_and_retries_with_backoff(db: Database) -> None:
    await add(db, "test.flaky", {"n": 1, "succeed_on": 3})
    runner = worker(db, backoff_base=10)
    now = utcnow()
    delays = []
    for attempt in (1, 2):
        assert await runner.run_one(now=now)
        (job,) = await jobs(db)
        assert job.status == "failed" and job.attempts == attempt and f"flaky failure on attempt {attempt}" in job.last_error
        delay = (job.run_at - now).total_seconds()
        base = 10 * 2 ** (attempt - 1)
        assert base / 2 <= delay <= base, delay  # exponential, with jitter in the upper half
        delays.append(delay)
        assert await effects(db) == {}  # the failed attempt's effect was rolled back
        assert not await runner.run_one(now=now)  # not due again yet
        now = job.run_at
    assert await runner.run_one(now=now)
    (job,) = await jobs(db)
    assert (job.status, job.attempts, job.result) == ("done", 3, {"attempt": 3})
    assert await effects(db) == {1: 1}


async def test_after_max_attempts_a_job_is_dead_and_stays_so(db: Database) -> None:
    await add(db, "test.flaky", {"n": 1})  # max_attempts 3, never succeeds
    runner = worker(db, backoff_base=0.001)
    while await runner.run_one(now=utcnow() + timedelta(hours=1)):
        pass
    (job,) = await jobs(db)
    assert (job.status, job.attempts, job.max_attempts) == ("dead", 3, 3)
    assert job.finished_at is not None and "flaky failure on attempt 3" in job.last_error
    assert not await runner.run_one(now=utcnow() + timedelta(days=30))
    assert await effects(db) == {}


async def test_permanent_errors_and_unknown_kinds_are_dead_at_once(db: Database) -> None:
    await add(db, "test.permanent", {})
    await add(db, "no.such.kind", {})
    runner = worker(db)
    assert await runner.drain() == 2
    rows = await jobs(db)
    assert [(j.status, j.attempts) for j in rows] == [("dead", 1), ("dead", 1)]
    assert "can never succeed" in rows[0].last_error and "no handler for job kind 'no.such.kind'" in rows[1].last_error


# --- leases -------------------------------------------------------------------------------------------


async def test_an_expired_lease_hands_the_job_over_and_fences_the_first_worker(db: Database) -> None:
    await add(db, "test.record", {"n": 5})
    now = utcnow()
    async with db.session(write=True) as session:
        mine = await claim(session, "worker-a", now=now, lease_seconds=30)
        await session.commit()
    async with db.session(write=True) as session:  # the lease holds
        assert await claim(session, "worker-b", now=now + timedelta(seconds=29), lease_seconds=30) is None
        await session.commit()
    async with db.session(write=True) as session:  # worker-a stopped answering; its lease ran out
        theirs = await claim(session, "worker-b", now=now + timedelta(seconds=31), lease_seconds=30)
        await session.commit()
    assert theirs is not None and theirs.id == mine.id and theirs.attempts == 2
    async with db.session(write=True) as session:
        with pytest.raises(LeaseLost):
            await complete(session, mine, now=now, result=None)
        await session.rollback()
    async with db.session(write=True) as session:
        await complete(session, theirs, now=now, result={"by": "b"})
        await session.commit()
    (job,) = await jobs(db)
    assert (job.status, job.result, job.attempts) == ("done", {"by": "b"}, 2)


async def test_a_lease_that_runs_out_on_the_last_attempt_makes_the_job_dead(db: Database) -> None:
    await add(db, "test.record", {"n": 1}, max_attempts=1)
    now = utcnow()
    async with db.session(write=True) as session:
        assert await claim(session, "gone", now=now, lease_seconds=5) is not None
        await session.commit()
    async with db.session(write=True) as session:
        assert await claim(session, "next", now=now + timedelta(seconds=6), lease_seconds=5) is None
        await session.commit()
    (job,) = await jobs(db)
    assert (job.status, job.attempts) == ("dead", 1) and "lease expired" in job.last_error


async def test_a_running_worker_extends_its_lease(db: Database) -> None:
    await add(db, "test.record", {"n": 1, "pause": 1.0})
    runner = worker(db, lease_seconds=0.6)
    task = asyncio.create_task(runner.run_one())
    await asyncio.sleep(0.8)  # past the first lease: the heartbeat must have renewed it
    async with db.session(write=True) as session:
        assert await claim(session, "thief", now=utcnow(), lease_seconds=5) is None
        await session.commit()
    assert await task
    assert [j.status for j in await jobs(db)] == ["done"] and await effects(db) == {1: 1}


# --- many workers ---------------------------------------------------------------------------------------


async def test_workers_in_one_process_never_share_a_job(db: Database) -> None:
    for n in range(60):
        await add(db, "test.record", {"n": n})
    runners = [worker(db) for _ in range(4)]
    counts = await asyncio.gather(*(r.drain() for r in runners))
    assert sum(counts) == 60
    assert await effects(db) == {n: 1 for n in range(60)}
    assert {j.status for j in await jobs(db)} == {"done"}


async def test_periodic_jobs_are_scheduled_once_per_tick_whatever_the_number_of_workers(db: Database) -> None:
    periodic = [Periodic("test.record", 60)]
    tick = utcnow().replace(second=10, microsecond=0)
    assert await schedule(db, periodic, now=tick) == 1
    assert await schedule(db, periodic, now=tick + timedelta(seconds=30)) == 0  # another worker, same minute
    assert await schedule(db, periodic, now=tick + timedelta(seconds=60)) == 1  # the next minute
    rows = await jobs(db)
    assert [j.run_at for j in rows] == [tick.replace(second=0), tick.replace(second=0) + timedelta(minutes=1)]
    assert all(j.dedupe_key.startswith("periodic:test.record:60:") for j in rows)


async def test_the_worker_loop_stops_between_jobs(db: Database) -> None:
    for n in range(3):
        await add(db, "test.record", {"n": n, "pause": 0.2})
    runner = worker(db, concurrency=1, poll_seconds=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.sleep(0.3)  # the second job is under way
    stop.set()
    await asyncio.wait_for(task, 5)
    statuses = [j.status for j in await jobs(db)]
    assert statuses.count("running") == 0, statuses  # the job under way was finished, not abandoned
    assert statuses.count("done") == runner.processed >= 1


# --- backoff ------------------------------------------------------------------------------------------------


@given(attempt=st.integers(1, 40), rnd=st.floats(0, 1, exclude_max=True), base=st.floats(0.001, 600))
def test_backoff_grows_exponentially_within_its_cap_and_jitter(attempt: int, rnd: float, base: float) -> None:
    cap = 3600.0
    delay = backoff_seconds(attempt, rnd, base=base, cap=cap)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling
    assert backoff_seconds(attempt + 1, 0.0, base=base, cap=cap) >= backoff_seconds(attempt, 0.0, base=base, cap=cap)
