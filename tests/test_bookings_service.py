"""The booking service on SQLite and PostgreSQL: rules, lifecycle, expiry, visibility, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from facility_share.accounts.services import grant_qualification
from facility_share.bookings import services
from facility_share.db.models import AuditEvent, Booking
from facility_share.errors import Conflict, Forbidden, InvalidInput, NotFound
from tests.world import build_world, local, next_weekday

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday morning in Tianjin
SEM = "WQ-TJMAT-SEM01"  # capacity 1, 30-minute slots, min 60, lead 24 h, approval needed
PILOT = "WQ-TJMAT-PILOT"  # capacity 3, booked by shift


@pytest.fixture
async def world(imported):  # type: ignore[no-untyped-def]
    return await build_world(imported)


async def book(db, principal, code=SEM, start=None, end=None, **kw):  # type: ignore[no-untyped-def]
    day = next_weekday(NOW)
    start = start or local(day, 9)
    end = end or start + timedelta(hours=1)
    async with db.session(write=True) as session:
        booking = await services.request_booking(
            session, principal, services.BookingInput(code, start, end, **kw), max_open_requests=10, now=NOW
        )
        await session.commit()
        return booking


async def act(db, principal, booking_id, action, reason="", now=NOW):  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        booking = await services.change_status(session, principal, booking_id, action, reason=reason, now=now)
        await session.commit()
        return booking


async def test_request_then_approve_with_audit(imported, world) -> None:
    booking = await book(imported, world["member_a"], purpose="XPS of coatings")
    assert booking.status == "requested" and booking.exclusive
    assert booking.decision_deadline == min(NOW + timedelta(hours=48), booking.starts_at)
    # 1 h at 400 yuan plus the 40-yuan sputter coating, district-enterprise rates
    assert booking.customer_class == "district" and booking.estimate_fen == 44000
    approved = await act(imported, world["manager"], booking.id, "approve")
    assert approved.status == "approved" and approved.version == 1
    async with imported.session() as session:
        events = (await session.execute(select(AuditEvent).where(AuditEvent.entity == "booking", AuditEvent.entity_id == booking.id)
                                        .order_by(AuditEvent.id))).scalars().all()
    assert [e.action for e in events] == ["request", "approve"]
    assert events[1].before["status"] == "requested" and events[1].after["status"] == "approved"
    assert events[1].actor_id == world["manager"].user_id


async def test_overlap_on_capacity_one_is_a_conflict_and_back_to_back_is_fine(imported, world) -> None:
    first = await book(imported, world["member_a"])
    with pytest.raises(Conflict) as caught:
        await book(imported, world["member_b"], start=first.starts_at + timedelta(minutes=30))
    assert "places are free" in caught.value.message
    await book(imported, world["member_b"], start=first.ends_at)  # [10:00, 11:00) after [09:00, 10:00)


async def test_capacity_three_takes_three(imported, world) -> None:
    day = next_weekday(NOW, weekday=2)
    start, end = local(day, 8), local(day, 16)  # the day shift
    for member in ("member_a", "member_b", "member_a"):
        await book(imported, world[member], code=PILOT, start=start, end=end)
    with pytest.raises(Conflict):
        await book(imported, world["member_b"], code=PILOT, start=start, end=end)
    # Two places at once do not fit into the last one.
    with pytest.raises(Conflict):
        await book(imported, world["member_b"], code=PILOT, start=start, end=end)


@pytest.mark.parametrize(
    ("shift", "rule"),
    [
        ({"start_h": 12, "hours": 1}, "opening_hours"),  # lunch break 12:00–13:30
        ({"start_h": 9, "minutes": 10, "hours": 1}, "granularity"),
        ({"start_h": 9, "hours": 0.5}, "min_length"),
        ({"start_h": 8, "hours": 10}, "opening_hours"),
    ],
)
async def test_rule_violations_are_400_with_the_rule(imported, world, shift, rule) -> None:  # type: ignore[no-untyped-def]
    day = next_weekday(NOW)
    start = local(day, shift["start_h"], shift.get("minutes", 0))
    with pytest.raises(InvalidInput) as caught:
        await book(imported, world["member_a"], start=start, end=start + timedelta(hours=shift["hours"]))
    assert rule in {d["rule"] for d in caught.value.detail}


async def test_lead_time_and_horizon(imported, world) -> None:
    tomorrow_morning = local((NOW + timedelta(days=1)).astimezone(UTC).date(), 9)
    with pytest.raises(InvalidInput) as caught:
        await book(imported, world["member_a"], start=NOW + timedelta(hours=2), end=NOW + timedelta(hours=3))
    assert {d["rule"] for d in caught.value.detail} >= {"lead_time"}
    far = local(next_weekday(NOW, weeks=12), 9)
    with pytest.raises(InvalidInput) as caught:
        await book(imported, world["member_a"], start=far, end=far + timedelta(hours=1))
    assert "horizon" in {d["rule"] for d in caught.value.detail}
    assert tomorrow_morning  # the fixture's NOW is fixed; the rules use it, not the clock


async def test_self_operation_needs_a_valid_qualification(imported, world) -> None:
    with pytest.raises(InvalidInput) as caught:
        await book(imported, world["member_a"], mode="self_operated")
    assert "qualification" in {d["rule"] for d in caught.value.detail}
    async with imported.session(write=True) as session:
        await grant_qualification(session, world["manager"], user_email="a@a.example.cn", resource_code=SEM,
                                  valid_until=(NOW + timedelta(days=300)).date())
        await session.commit()
    assert (await book(imported, world["member_a"], mode="self_operated")).mode == "self_operated"


async def test_other_managers_cannot_grant_qualifications_for_units_they_do_not_manage(imported, world) -> None:
    async with imported.session(write=True) as session:
        with pytest.raises(NotFound):
            await grant_qualification(session, world["other_manager"], user_email="a@a.example.cn", resource_code=SEM,
                                      valid_until=(NOW + timedelta(days=30)).date())


async def test_unverified_and_staff_cannot_book(imported, world) -> None:
    with pytest.raises(Forbidden, match="not been verified"):
        await book(imported, world["unverified"])
    with pytest.raises(Forbidden, match="members of an enterprise"):
        await book(imported, world["finance"])


async def test_open_request_limit(imported, world) -> None:
    day = next_weekday(NOW)
    async with imported.session(write=True) as session:
        for hour in (9, 10):
            await services.request_booking(session, world["member_a"],
                                           services.BookingInput(SEM, local(day, hour), local(day, hour + 1)),
                                           max_open_requests=2, now=NOW)
        with pytest.raises(InvalidInput) as caught:
            await services.request_booking(session, world["member_a"],
                                           services.BookingInput(SEM, local(day, 14), local(day, 15)),
                                           max_open_requests=2, now=NOW)
    assert "open_requests" in {d["rule"] for d in caught.value.detail}


async def test_only_the_units_manager_decides_and_others_see_nothing(imported, world) -> None:
    booking = await book(imported, world["member_a"])
    for outsider in ("member_b", "other_manager", "unverified"):
        with pytest.raises(NotFound):
            await act(imported, world[outsider], booking.id, "approve")
        async with imported.session() as session:
            with pytest.raises(NotFound):
                await services.get_booking(session, world[outsider], booking.id)
    # Finance reads every booking, but does not act.
    async with imported.session() as session:
        assert (await services.get_booking(session, world["finance"], booking.id)).id == booking.id
    with pytest.raises(NotFound):
        await act(imported, world["finance"], booking.id, "approve")
    with pytest.raises(Forbidden):
        await act(imported, world["member_a"], booking.id, "approve")
    with pytest.raises(InvalidInput, match="reason"):
        await act(imported, world["manager"], booking.id, "reject")
    rejected = await act(imported, world["manager"], booking.id, "reject", reason="sample unsuitable")
    assert rejected.status == "rejected" and rejected.decision_reason == "sample unsuitable"


async def test_cancellation_deadline(imported, world) -> None:
    booking = await book(imported, world["member_a"])
    await act(imported, world["manager"], booking.id, "approve")
    late = booking.starts_at - timedelta(hours=2)  # inside the 24-hour deadline
    with pytest.raises(Forbidden, match="cancelled until"):
        await act(imported, world["member_a"], booking.id, "cancel", now=late)
    with pytest.raises(InvalidInput, match="reason"):
        await act(imported, world["manager"], booking.id, "cancel", now=late)
    cancelled = await act(imported, world["manager"], booking.id, "cancel", reason="instrument fault", now=late)
    assert cancelled.status == "cancelled"
    # The slot is free again.
    await book(imported, world["member_b"])


async def test_requests_expire_by_the_sweep_and_free_their_slot(imported, world) -> None:
    booking = await book(imported, world["member_a"])
    later = booking.decision_deadline + timedelta(seconds=1)
    async with imported.session(write=True) as session:
        expired = await services.expire_overdue(session, later)
        await session.commit()
    assert expired == [booking.id]
    async with imported.session(write=True) as session:
        assert await services.expire_overdue(session, later) == []  # a second sweep finds nothing
        await session.commit()
    async with imported.session() as session:
        row = await session.get(Booking, booking.id)
        assert row.status == "expired" and row.version == 1
        events = (await session.execute(select(func.count()).where(AuditEvent.action == "expire"))).scalar_one()
        assert events == 1
    with pytest.raises(Conflict, match="cannot be approved"):
        await act(imported, world["manager"], booking.id, "approve", now=later)


async def test_overdue_request_is_expired_before_a_new_booking_checks_capacity(imported, world) -> None:
    booking = await book(imported, world["member_a"])
    after_deadline = booking.decision_deadline + timedelta(minutes=1)
    async with imported.session(write=True) as session:
        taken = await services.request_booking(
            session, world["member_b"], services.BookingInput(SEM, booking.starts_at, booking.ends_at),
            max_open_requests=10, now=min(after_deadline, booking.starts_at - timedelta(hours=25)),
        ) if after_deadline < booking.starts_at - timedelta(hours=24) else None
        await session.commit()
    if taken is not None:
        assert taken.status == "requested"


async def test_auto_approval_where_none_is_needed(imported, world) -> None:
    async with imported.session() as session:
        from facility_share.db.models import Resource

        auto = (await session.execute(select(Resource).where(Resource.approval_required.is_(False), Resource.kind == "instrument",
                                                              Resource.open_for_sharing.is_(True)).limit(1))).scalar_one()
        availability = await services.availability(session, auto.code, NOW + timedelta(days=3), NOW + timedelta(days=10))
    unit = next(u for u in availability.units if u.remaining > 0)
    minutes = auto.min_minutes
    booking = await book(imported, world["member_a"], code=auto.code, start=unit.start, end=unit.start + timedelta(minutes=minutes))
    assert booking.status == "approved" and booking.decision_deadline is None
    await assert_notified(imported, booking.id, "booking.approved")


async def assert_notified(db, booking_id: int, event: str) -> None:  # type: ignore[no-untyped-def]
    """The booking's transaction queued its notification job as ``notifications.booking_event``
    does (PostgreSQL builds it inside the booking's insert statement)."""
    from facility_share.db.models import Job
    from facility_share.jobs.queue import DEFAULT_MAX_ATTEMPTS, HANDLERS
    from facility_share.notifications.events import NOTIFY, event_key

    async with db.session() as session:
        jobs = (await session.execute(select(Job).where(Job.dedupe_key == event_key(event, booking_id)))).scalars().all()
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.kind, job.payload, job.status, job.attempts, job.last_error) == (
        NOTIFY, {"event": event, "booking_id": booking_id}, "queued", 0, "")
    registered = HANDLERS.get(NOTIFY)
    assert job.max_attempts == (registered.max_attempts if registered else DEFAULT_MAX_ATTEMPTS)
    assert job.run_at is not None and job.run_at <= datetime.now(UTC)


async def test_a_request_queues_its_notification(imported, world) -> None:
    booking = await book(imported, world["member_a"])
    assert booking.status == "requested"
    await assert_notified(imported, booking.id, "booking.requested")


async def test_workshop_with_lines_is_booked_by_line(imported, world, loaded_catalog) -> None:
    line = next(r for r in loaded_catalog.resources if r.kind == "line")
    with pytest.raises(InvalidInput, match="lines"):
        await book(imported, world["member_a"], code=line.parent)


async def test_availability_hides_customers_and_counts_capacity(imported, world) -> None:
    booking = await book(imported, world["member_a"])
    async with imported.session() as session:
        result = await services.availability(session, SEM, booking.starts_at - timedelta(hours=2), booking.ends_at + timedelta(hours=2))
    assert [(b.start, b.end) for b in result.busy] == [(booking.starts_at, booking.ends_at)]
    taken = [u for u in result.units if u.remaining == 0]
    assert [u.start for u in taken] == [booking.starts_at, booking.starts_at + timedelta(minutes=30)]


async def test_listing_is_scoped(imported, world) -> None:
    a = await book(imported, world["member_a"])
    b = await book(imported, world["member_b"], start=a.ends_at)
    async with imported.session() as session:
        mine, _ = await services.list_bookings(session, world["member_a"], services.BookingFilter(), scope="mine")
        managed, _ = await services.list_bookings(session, world["manager"], services.BookingFilter(), scope="managed")
        other, _ = await services.list_bookings(session, world["other_manager"], services.BookingFilter())
        everything, total = await services.list_bookings(session, world["finance"], services.BookingFilter())
    assert [x.id for x in mine] == [a.id]
    assert {x.id for x in managed} == {a.id, b.id}
    assert other == []
    assert total == 2 and {x.id for x in everything} == {a.id, b.id}
