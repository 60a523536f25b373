"""Several replicas on one PostgreSQL database, as deployed: two server processes and two
worker processes. Clients racing for the same slots through both servers never push a resource
past its capacity (exactly 1 of the capacity-1 instrument's and 3 of the capacity-3 bay's
requests succeed, the rest are 409, none 5xx); and with both workers running, each overdue
request expires exactly once and each reminder is queued and sent exactly once.

PostgreSQL only: SQLite's single file is for one machine, where there is one server."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from facility_share.db.models import AuditEvent, Booking, Job, utcnow
from tests.live import LiveServer
from tests.test_contention import CLIENTS, overbooked, race
from tests.test_worker_processes import WorkerProcess, scalar, wait_for
from tests.world import build_world, local, next_weekday

pytestmark = pytest.mark.slow

SEM = "WQ-TJMAT-SEM01"  # capacity 1, needs the unit's approval
BAY = "WQ-TJMAT-PILOT"  # capacity 3
# What the console e-mail backend logs for each message it "sends" (facility_share.notifications.mailer).
SENT = re.compile(r"e-mail \(console backend, not sent\) to (.+?): (.+)")


@pytest.fixture(params=["postgresql"])
def dialect(request: pytest.FixtureRequest, database_urls: dict[str, str]) -> str:
    """Only PostgreSQL (mandatory in CI, see conftest): replicas on several machines share it."""
    if "postgresql" not in database_urls:
        pytest.skip("PostgreSQL not reachable (set FACILITY_SHARE_TEST_DATABASE_URL)")
    return "postgresql"


@pytest.fixture
async def replicas(imported, tmp_path: Path):  # type: ignore[no-untyped-def]
    world = await build_world(imported)
    servers = [LiveServer(imported.url, log_path=tmp_path / f"server-{i}.log",
                          extra_env={"FACILITY_SHARE_MAX_OPEN_REQUESTS": "10000"}) for i in range(2)]
    workers: list[WorkerProcess] = []
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        assert len({s.port for s in servers}) == 2
        workers = [WorkerProcess(imported.url, tmp_path / f"worker-{i}.log", "--concurrency", "3", "--interval", "1")
                   for i in range(2)]
        yield servers, workers, world
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))


async def test_two_servers_and_two_workers_on_one_database(replicas, imported) -> None:  # type: ignore[no-untyped-def]
    servers, workers, world = replicas
    db = imported
    tokens = [world.tokens["member_a"], world.tokens["member_b"]]

    # 1. The same slots through both servers at once: 2 × CLIENTS clients.
    day = next_weekday(utcnow(), weekday=2)
    for code, start, end, winners in ((SEM, 9, 10, 1), (BAY, 8, 16, 3)):
        payload = {"resource_code": code, "start": local(day, start).isoformat(), "end": local(day, end).isoformat()}
        per_server = await asyncio.gather(*(race(s.url, tokens, payload) for s in servers))
        statuses = [status for answers in per_server for status in answers]
        assert len(statuses) == 2 * CLIENTS >= 50
        assert [s for s in statuses if s >= 500] == [], statuses
        assert statuses.count(201) == winners, (code, Counter(statuses))
        assert statuses.count(409) == len(statuses) - winners, (code, Counter(statuses))
    assert await overbooked(db) == [], "no instant anywhere has more active bookings than capacity"

    # 2. More requests through both servers, half of them approved (through both) by the unit's manager.
    requested: list[int] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for weeks in range(2, 8):
            slot_day = next_weekday(utcnow(), weeks=weeks)
            for hour in (9, 10, 14, 15):
                server = servers[len(requested) % 2]
                response = await client.post(f"{server.url}/api/v1/bookings", json={
                    "resource_code": SEM, "start": local(slot_day, hour).isoformat(), "end": local(slot_day, hour + 1).isoformat()},
                    headers={"authorization": f"Bearer {tokens[hour % 2]}"})
                assert response.status_code < 500, response.text
                if response.status_code == 201:  # the catalogue's closures rule some slots out (4xx)
                    assert response.json()["status"] == "requested"
                    requested.append(response.json()["id"])
        assert len(requested) >= 12, "too few requests to mean anything"
        for i, booking_id in enumerate(requested[::2]):
            response = await client.post(f"{servers[i % 2].url}/api/v1/bookings/{booking_id}/approve",
                                         headers={"authorization": f"Bearer {world.tokens['manager']}"})
            assert response.status_code == 200, response.text

    # 3. Every request still undecided is past its deadline now; the workers sweep every second.
    async with db.session(write=True) as session:
        overdue = list((await session.execute(
            update(Booking).where(Booking.status == "requested")
            .values(decision_deadline=utcnow() - timedelta(minutes=1)).returning(Booking.id))).scalars())
        await session.commit()
    async with db.session() as session:
        approved = list((await session.execute(select(Booking.id).where(Booking.status == "approved"))).scalars())
    assert len(overdue) >= 6 and len(approved) >= 6, (overdue, approved)

    async def finished() -> bool:
        unfinished = await scalar(db, select(func.count()).select_from(Job).where(
            Job.kind.in_(("notify", "email.send")), Job.status != "done"))
        expired = await scalar(db, select(func.count()).select_from(Booking).where(Booking.status == "expired"))
        reminders = await scalar(db, select(func.count()).select_from(Job).where(
            Job.kind == "email.send", Job.dedupe_key.like("email:notify:booking.reminder:%")))
        return unfinished == 0 and expired == len(overdue) and reminders >= len(approved)

    await wait_for(finished, 45, "the expiries and reminders to be done")
    await asyncio.sleep(3)  # a few more ticks of both workers: nothing may happen twice
    codes = [w.stop() for w in workers]
    logs = [w.log.read_text() for w in workers]
    assert codes == [0, 0], [log[-3000:] for log in logs]

    async with db.session() as session:
        expiries = Counter((await session.execute(
            select(AuditEvent.entity_id).where(AuditEvent.entity == "booking", AuditEvent.action == "expire"))).scalars())
        expiry_notices = Counter(p["booking_id"] for p in (await session.execute(
            select(Job.payload).where(Job.kind == "notify", Job.dedupe_key.like("notify:booking.expired:%")))).scalars())
        expiry_emails = Counter(int(k.split(":")[3]) for k in (await session.execute(
            select(Job.dedupe_key).where(Job.kind == "email.send", Job.dedupe_key.like("email:notify:booking.expired:%")))).scalars())
        reminders = Counter(p["booking_id"] for p in (await session.execute(
            select(Job.payload).where(Job.kind == "notify", Job.dedupe_key.like("notify:booking.reminder:%")))).scalars())
        reminder_emails = Counter(int(k.split(":")[3]) for k in (await session.execute(
            select(Job.dedupe_key).where(Job.kind == "email.send", Job.dedupe_key.like("email:notify:booking.reminder:%")))).scalars())
        emails_done = await session.scalar(select(func.count()).select_from(Job).where(Job.kind == "email.send", Job.status == "done"))
        statuses = Counter((await session.execute(select(Booking.status))).scalars())
    assert expiries == Counter(overdue), "each overdue request expired exactly once"
    assert expiry_notices == Counter(overdue) and expiry_emails == Counter(overdue), "and its booker was told once"
    assert reminders == Counter(approved) and reminder_emails == Counter(approved), "each reminder queued exactly once"
    assert statuses["requested"] == 0 and statuses["expired"] == len(overdue), statuses

    # What the two workers actually sent: every message once, by one worker or the other.
    sent = [match.groups() for log in logs for match in SENT.finditer(log)]
    assert len(sent) == emails_done, (len(sent), emails_done)
    assert [message for message, n in Counter(sent).items() if n > 1] == [], "a message was sent twice"
    assert all(SENT.search(log) for log in logs), "both workers sent some of the messages"
    assert await overbooked(db) == []
