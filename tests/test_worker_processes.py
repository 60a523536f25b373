"""Worker processes against one database: several workers do each job exactly once, and a
worker killed with SIGKILL in the middle of a job leaves nothing half-applied; the job is done
once, by the next worker, when the lease has run out. (Both dialects; PostgreSQL is the one
that matters for several machines.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from facility_share.bookings import services as bookings
from facility_share.db import Database
from facility_share.db.models import AuditEvent, Booking, Job
from facility_share.errors import InvalidInput
from facility_share.jobs import enqueue_many
from tests.world import build_world, local, next_weekday

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
DAY = next_weekday(NOW)


class WorkerProcess:
    """``python -m facility_share worker`` with the test job kinds, in its own process group."""

    def __init__(self, url: str, log: Path, *args: str) -> None:
        env = {**os.environ, "FACILITY_SHARE_DATABASE_URL": url, "FACILITY_SHARE_EMAIL_BACKEND": "console",
               "FACILITY_SHARE_REMINDER_HOURS": str(24 * 90)}
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "facility_share", "worker", "--import", "tests.job_plugins", "--poll", "0.1", *args],
            cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill_hard(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_hard()
                raise
        return self.process.returncode


async def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def scalar(db: Database, statement):  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return (await session.execute(statement)).scalar()


async def test_two_workers_do_every_job_expiry_and_reminder_exactly_once(imported, tmp_path: Path) -> None:
    db = imported
    world = await build_world(db)
    requested = []
    async with db.session(write=True) as session:
        for weeks in range(1, 10):
            day = next_weekday(NOW, weeks=weeks)
            for hour in (9, 10, 14, 15):
                try:  # the catalogue's closures rule some of these out; the rules are checked before any write
                    booking = await bookings.request_booking(session, world["member_a" if hour % 2 else "member_b"], bookings.BookingInput(
                        "WQ-TJMAT-SEM01", local(day, hour), local(day, hour + 1)), max_open_requests=100, now=NOW)
                except InvalidInput:
                    continue
                assert booking.status == "requested"
                requested.append(booking.id)
        await session.commit()
    assert len(requested) >= 20
    # Half are approved instead: they expire no more, and each gets its reminder (the workers'
    # reminder window below reaches all of them).
    approved, requested = requested[::2], requested[1::2]
    async with db.session(write=True) as session:
        for booking_id in approved:
            await bookings.change_status(session, world["manager"], booking_id, "approve", now=NOW)
        await session.commit()
    async with db.session(write=True) as session:  # every request's deadline has passed
        await session.execute(update(Booking).where(Booking.id.in_(requested))
                              .values(decision_deadline=datetime.now(UTC) - timedelta(minutes=1)))
        await enqueue_many(session, "test.record", [({"n": n}, None) for n in range(300)])
        await session.commit()

    workers = [WorkerProcess(db.url, tmp_path / f"worker-{i}.log", "--concurrency", "3", "--interval", "1") for i in range(2)]
    try:
        async def finished() -> bool:
            unfinished = await scalar(db, select(func.count()).select_from(Job).where(
                Job.kind.in_(("test.record", "notify", "email.send")), Job.status != "done"))
            expired = await scalar(db, select(func.count()).select_from(Booking).where(Booking.status == "expired"))
            reminders = await scalar(db, select(func.count()).select_from(Job).where(
                Job.kind == "email.send", Job.dedupe_key.like("email:notify:booking.reminder:%")))
            return unfinished == 0 and expired == len(requested) and reminders >= len(approved)

        await wait_for(finished, 120, "the jobs to be done")
        await asyncio.sleep(2)  # a few more ticks: nothing may happen twice
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.log.read_text()[-3000:] for w in workers]

    async with db.session() as session:
        effects = Counter((await session.execute(select(AuditEvent.entity_id).where(AuditEvent.entity == "test_job"))).scalars())
        runners = Counter(e["worker"] for e in (await session.execute(
            select(AuditEvent.after).where(AuditEvent.entity == "test_job"))).scalars())
        expiries = Counter((await session.execute(
            select(AuditEvent.entity_id).where(AuditEvent.entity == "booking", AuditEvent.action == "expire"))).scalars())
        notified = Counter(p["booking_id"] for p in (await session.execute(
            select(Job.payload).where(Job.kind == "notify", Job.dedupe_key.like("notify:booking.expired:%")))).scalars())
        emails = Counter(k.rsplit(":", 2)[1] for k in (await session.execute(
            select(Job.dedupe_key).where(Job.kind == "email.send", Job.dedupe_key.like("email:notify:booking.expired:%")))).scalars())
        sweeps = (await session.execute(select(Job.dedupe_key, Job.status).where(Job.kind == "bookings.expire"))).all()
        reminded = Counter(p["booking_id"] for p in (await session.execute(
            select(Job.payload).where(Job.kind == "notify", Job.dedupe_key.like("notify:booking.reminder:%")))).scalars())
        reminder_emails = Counter(int(k.split(":")[3]) for k in (await session.execute(
            select(Job.dedupe_key).where(Job.kind == "email.send", Job.dedupe_key.like("email:notify:booking.reminder:%")))).scalars())
    assert effects == Counter(range(300)), "each job's effect exactly once"
    assert len(runners) == 2, f"both workers took jobs: {runners}"
    assert expiries == Counter(requested), "each request expired exactly once"
    assert notified == Counter(requested) and emails == Counter(str(b) for b in requested), "and was notified once"
    assert reminded == Counter(approved) and reminder_emails == Counter(approved), "each reminder exactly once"
    assert len({key for key, _ in sweeps}) == len(sweeps) and all(status in ("done", "queued", "running") for _, status in sweeps)
    for w in workers:
        assert "worker stopped" in w.log.read_text()


async def test_a_worker_killed_mid_job_leaves_nothing_half_applied_and_the_job_is_done_once(imported, tmp_path: Path) -> None:
    db = imported
    markers = tmp_path / "markers"
    markers.mkdir()
    async with db.session(write=True) as session:
        await enqueue_many(session, "test.slow", [({"n": 1, "marker": str(markers), "seconds": 1.5}, "crash-test")])
        await session.commit()

    first = WorkerProcess(db.url, tmp_path / "first.log", "--lease", "2", "--interval", "3600")
    try:
        await wait_for(lambda: _exists(markers / "attempt-1"), 60, "the first worker to be mid-job")
    finally:
        first.kill_hard()  # kill -9: no shutdown, no rollback sent, the connection just drops
    async with db.session() as session:
        job = (await session.execute(select(Job).where(Job.kind == "test.slow"))).scalar_one()
        applied = await session.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.entity == "test_job"))
        assert applied.scalar() == 0, "the killed attempt's effect was never committed"
    assert (job.status, job.attempts) == ("running", 1)

    second = WorkerProcess(db.url, tmp_path / "second.log", "--lease", "2", "--interval", "3600")
    try:
        async def done() -> bool:
            return await scalar(db, select(Job.status).where(Job.id == job.id)) == "done"

        await wait_for(done, 60, "the second worker to finish the job")
    finally:
        assert second.stop() == 0, (tmp_path / "second.log").read_text()[-3000:]
    async with db.session() as session:
        job = await session.get(Job, job.id)
        effects = (await session.execute(select(AuditEvent.after).where(AuditEvent.entity == "test_job"))).scalars().all()
    assert (job.status, job.attempts, job.result) == ("done", 2, {"n": 1})
    assert len(effects) == 1 and effects[0]["attempt"] == 2, "done exactly once, by the second attempt"
    assert effects[0]["worker"] != (markers / "attempt-1").read_text()


async def _exists(path: Path) -> bool:
    return path.exists()
