"""No double booking under load: many clients race for one slot through a real server process,
on PostgreSQL and on SQLite; and a server killed with -9 mid-load loses no acknowledged booking.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from facility_share.bookings.availability import Interval, Load, peak_load
from facility_share.db import Database
from facility_share.db.models import Booking, Resource, utcnow
from tests.live import LiveServer
from tests.world import build_world, local, next_weekday

pytestmark = pytest.mark.slow
CLIENTS = 60


async def race(base_url: str, tokens: list[str], payload: dict) -> list[int]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        async def one(index: int) -> int:
            response = await client.post(
                "/api/v1/bookings", json=payload, headers={"authorization": f"Bearer {tokens[index % len(tokens)]}"}
            )
            return response.status_code

        return await asyncio.gather(*(one(i) for i in range(CLIENTS)))


async def overbooked(db: Database) -> list[str]:
    """A check over the whole table: any instant where active bookings exceed capacity."""
    problems = []
    async with db.session() as session:
        capacity = dict((await session.execute(select(Resource.id, Resource.capacity))).all())
        rows = (await session.execute(select(Booking).where(Booking.status.in_(("requested", "approved"))))).scalars().all()
    by_resource: dict[int, list[Load]] = defaultdict(list)
    for b in rows:
        by_resource[b.resource_id].append(Load(b.starts_at, b.ends_at, b.quantity))
    for resource_id, loads in by_resource.items():
        window = Interval(min(l.start for l in loads), max(l.end for l in loads))
        if peak_load(loads, window) > capacity[resource_id]:
            problems.append(f"resource {resource_id}: peak {peak_load(loads, window)} > {capacity[resource_id]}")
    return problems


@pytest.fixture
async def live(imported, database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    world = await build_world(imported)
    url = imported.url
    server = LiveServer(url, workers=2, log_path=tmp_path / "server.log",
                        extra_env={"FACILITY_SHARE_MAX_OPEN_REQUESTS": "10000"})
    await asyncio.to_thread(server.start)
    try:
        yield server, world
    finally:
        await asyncio.to_thread(server.stop)


async def test_no_double_booking_under_load_and_after_kill_9(live, imported, dialect: str) -> None:  # type: ignore[no-untyped-def]
    """One server (two worker processes) per database: first the races, then (PostgreSQL) the crash."""
    server, world = live
    await many_clients_one_slot(server, world, imported)
    if dialect == "postgresql":
        await kill_9_mid_load(server, world, imported)


async def many_clients_one_slot(server, world, imported) -> None:  # type: ignore[no-untyped-def]
    tokens = [world.tokens["member_a"], world.tokens["member_b"]]
    day = next_weekday(utcnow(), weekday=2)
    sem = {"resource_code": "WQ-TJMAT-SEM01", "start": local(day, 9).isoformat(), "end": local(day, 10).isoformat()}
    statuses = await race(server.url, tokens, sem)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == CLIENTS - 1, statuses

    bay = {"resource_code": "WQ-TJMAT-PILOT", "start": local(day, 8).isoformat(), "end": local(day, 16).isoformat()}
    statuses = await race(server.url, tokens, bay)
    assert statuses.count(201) == 3, statuses
    assert statuses.count(409) == CLIENTS - 3, statuses
    assert await overbooked(imported) == []


async def kill_9_mid_load(server, world, imported) -> None:  # type: ignore[no-untyped-def]
    """kill -9 the server during a booking load, restart it: every booking answered 201 is there."""
    tokens = [world.tokens["member_a"], world.tokens["member_b"]]
    async with imported.session() as session:
        codes = list((await session.execute(
            select(Resource.code).where(Resource.capacity == 1, Resource.booking_unit == "slot", Resource.open_for_sharing.is_(True),
                                        Resource.lead_minutes <= 24 * 60, Resource.retired_at.is_(None)).order_by(Resource.code).limit(12)
        )).scalars())
    start = utcnow() + timedelta(days=2)
    acknowledged: list[int] = []
    stop = asyncio.Event()

    async def worker(index: int) -> None:
        rng = random.Random(index)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                code = rng.choice(codes)
                try:
                    availability = (await client.get(f"/api/v1/resources/{code}/availability",
                                                     params={"start": start.isoformat(), "end": (start + timedelta(days=14)).isoformat()})).json()
                    free = [u for u in availability["units"] if u["remaining"] > 0]
                    if not free:
                        continue
                    unit = rng.choice(free)
                    resource = (await client.get(f"/api/v1/resources/{code}")).json()
                    minutes = resource["booking_rules"]["min_minutes"]
                    end = datetime.fromisoformat(unit["start"]) + timedelta(minutes=minutes)
                    response = await client.post("/api/v1/bookings", json={"resource_code": code, "start": unit["start"], "end": end.isoformat()},
                                                 headers={"authorization": f"Bearer {tokens[index % 2]}"})
                except (httpx.TransportError, ValueError, KeyError):
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 201:
                    acknowledged.append(response.json()["id"])
                assert response.status_code < 500, response.text

    tasks = [asyncio.create_task(worker(i)) for i in range(16)]
    await asyncio.sleep(3)
    await asyncio.to_thread(server.kill_hard)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(acknowledged) >= 5, "the load produced too few bookings to mean anything"

    await asyncio.to_thread(server.start)  # restart on the same database
    async with imported.session() as session:
        stored = set((await session.execute(select(Booking.id).where(Booking.id.in_(acknowledged)))).scalars())
    assert stored == set(acknowledged)
    assert await overbooked(imported) == []
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
