"""The second guard and the sweeps: PostgreSQL's exclusion constraint refuses overlapping
active bookings of a capacity-1 resource even when the application check is bypassed; the
in-process sweeper expires overdue requests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from facility_share.bookings import services
from facility_share.db.models import Booking, Resource, utcnow
from facility_share.web.app import sweep_forever
from tests.world import build_world, local, next_weekday


async def _raw_booking(session, resource: Resource, enterprise_id: int, user_id: int, start, end, status="approved") -> Booking:  # type: ignore[no-untyped-def]
    booking = Booking(resource_id=resource.id, enterprise_id=enterprise_id, user_id=user_id, starts_at=start, ends_at=end,
                      exclusive=resource.capacity == 1, status=status)
    session.add(booking)
    await session.flush()
    return booking


async def test_exclusion_constraint_is_the_second_guard(imported, dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL; SQLite relies on its single writer")
    world = await build_world(imported)
    day = next_weekday(utcnow())
    async with imported.session(write=True) as session:
        sem = (await session.execute(select(Resource).where(Resource.code == "WQ-TJMAT-SEM01"))).scalar_one()
        a, user = world.enterprise_ids["member_a"], world["member_a"].user_id
        await _raw_booking(session, sem, a, user, local(day, 9), local(day, 10))
        await _raw_booking(session, sem, a, user, local(day, 10), local(day, 11))  # back to back is fine
        await _raw_booking(session, sem, a, user, local(day, 9), local(day, 10), status="cancelled")  # inactive is fine
        with pytest.raises(IntegrityError) as caught:
            await _raw_booking(session, sem, a, user, local(day, 9, 30), local(day, 10, 30), status="requested")
        assert caught.value.orig.sqlstate == "23P01"


async def test_in_process_sweeper_expires_overdue_requests(imported) -> None:
    world = await build_world(imported)
    day = next_weekday(utcnow())
    async with imported.session(write=True) as session:
        booking = await services.request_booking(
            session, world["member_a"], services.BookingInput("WQ-TJMAT-SEM01", local(day, 9), local(day, 10)),
            max_open_requests=10,
        )
        booking.decision_deadline = utcnow() - timedelta(seconds=1)
        await session.commit()
    stop = asyncio.Event()
    task = asyncio.create_task(sweep_forever(imported, 0, stop=stop))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            async with imported.session() as session:
                if (await session.get(Booking, booking.id)).status == "expired":
                    break
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)  # it stops by itself once asked
    async with imported.session() as session:
        assert (await session.get(Booking, booking.id)).status == "expired"
