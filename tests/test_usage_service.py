"""The usage service on SQLite and PostgreSQL: check-in/out, corrections, walk-ins, no-shows,
ratings and offline payment. Time is simulated with ``now=``: bookings are made at NOW for the
next week, and used "later"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from facility_share.accounts.services import grant_qualification, revoke_qualification
from facility_share.bookings import services as bookings
from facility_share.db import Database
from facility_share.db.models import AgentKey, AuditEvent, Booking, Charge, Payment, Qualification, Rating, UsageLog
from facility_share.errors import Conflict, Forbidden, InvalidInput, NotFound
from facility_share.usage import figures, services
from facility_share.usage.charging import parse_peak_hours, price_service
from facility_share.usage.pages import UsageWords
from facility_share.web.i18n import I18n
from tests.world import ENTERPRISE_B, build_world, catalogue_values, local, next_weekday

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Tianjin
DAY = next_weekday(NOW)  # Tuesday 1 December 2026
SEM = "WQ-TJMAT-SEM01"  # 30-minute increments: 200/400/500 yuan per hour + 20/40/50 yuan coating
XRD = "WQ-TJMAT-XRD01"  # per sample 100/200/260 yuan + per started hour 150/300/380 yuan


@pytest.fixture
async def world(imported):  # type: ignore[no-untyped-def]
    return await build_world(imported)


async def run(db: Database, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call a service in its own committed transaction (as a request handler does)."""
    async with db.session(write=True) as session:
        result = await fn(session, *args, **kwargs)
        await session.commit()
        return result


async def booked(db: Database, world, member: str = "member_a", code: str = SEM, start: datetime | None = None,  # type: ignore[no-untyped-def]
                 hours: float = 1, approve: bool = True, **kw) -> Booking:
    start = start or local(DAY, 9)
    async with db.session(write=True) as session:
        booking = await bookings.request_booking(
            session, world[member], bookings.BookingInput(code, start, start + timedelta(hours=hours), **kw),
            max_open_requests=20, now=NOW,
        )
        if approve:
            await bookings.change_status(session, world["manager"], booking.id, "approve", now=NOW)
        await session.commit()
        return booking


async def qualify(db: Database, world, email: str = "a@a.example.cn", code: str = SEM) -> Qualification:  # type: ignore[no-untyped-def]
    return await run(db, grant_qualification, world["manager"], user_email=email, resource_code=code,
                     valid_until=date(2027, 6, 30))


async def fetch(db: Database, statement):  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return (await session.execute(statement)).scalars().all()


async def get(db: Database, model, row_id: int):  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return await session.get(model, row_id)


# --- check-in and check-out ----------------------------------------------------------------------


async def test_manager_check_in_and_out_completes_the_booking_and_issues_the_charge(imported, world) -> None:
    booking = await booked(imported, world, "member_b", XRD, hours=2, samples=4)
    start = booking.starts_at
    with pytest.raises(Conflict, match="not begun"):
        await run(imported, services.check_in, world["manager"], booking.id, now=start - timedelta(hours=12, minutes=1))
    opened = await run(imported, services.check_in, world["manager"], booking.id, operator="王工", now=start + timedelta(minutes=5))
    assert (opened.started_at, opened.ended_at, opened.source, opened.mode) == (start + timedelta(minutes=5), None, "manager", "staff_operated")
    assert opened.session_id == opened.id and opened.supersedes_id is None and opened.operator == "王工"
    assert opened.enterprise_id == world.enterprise_ids["member_b"] and opened.booking_id == booking.id
    with pytest.raises(Conflict, match="already checked in"):
        await run(imported, services.check_in, world["manager"], booking.id, now=start + timedelta(minutes=6))
    with pytest.raises(InvalidInput, match="after the check-in"):
        await run(imported, services.check_out, world["manager"], booking.id, now=start + timedelta(minutes=5))
    with pytest.raises(InvalidInput, match="samples"):
        await run(imported, services.check_out, world["manager"], booking.id, samples=-1, now=start + timedelta(hours=1))
    assert (await get(imported, Booking, booking.id)).status == "approved"

    end = start + timedelta(minutes=80)  # 75 minutes of use
    closed, charge = await run(imported, services.check_out, world["manager"], booking.id, samples=4, note="4 powders", now=end)
    assert closed.supersedes_id == opened.id and closed.session_id == opened.id
    assert (closed.started_at, closed.ended_at, closed.samples, closed.note, closed.reason) == (opened.started_at, end, 4, "4 powders", "check-out")
    row = await get(imported, Booking, booking.id)
    assert row.status == "completed" and row.version == 2  # approved, then completed

    # District rates: 4 samples × 200 yuan + 75 minutes → 2 started hours × 300 yuan.
    assert charge is not None and charge.kind == "service" and charge.status == "unpaid"
    assert (charge.usage_log_id, charge.booking_id, charge.enterprise_id) == (closed.id, booking.id, world.enterprise_ids["member_b"])
    assert charge.customer_class == "district" and charge.service_date == opened.started_at
    assert [(l["basis"], l["units"], l["rate_fen"], l["amount_fen"]) for l in charge.lines] == [
        ("sample", 4, 20_000, 80_000), ("hour", 2, 30_000, 60_000)]
    assert charge.total_fen == 140_000
    async with imported.session() as session:
        resource = await bookings.load_resource(session, XRD)
    priced = price_service(bookings.fee_rules_of(resource.fee_items), "district", start=opened.started_at, end=end, samples=4, units=0,
                           booking_unit="slot", peak_hours=parse_peak_hours(resource.peak_hours or []), timezone=resource.timezone)
    assert priced.total_fen == charge.total_fen
    assert (charge.explanation_zh, charge.explanation_en) == (priced.explanation_zh, priced.explanation_en)
    assert "区内企业" in charge.explanation_zh and "75 分钟" in charge.explanation_zh and "样品 4 个" in charge.explanation_zh
    assert charge.explanation_zh.endswith("合计 1400.00 元。")
    assert "75 minutes" in charge.explanation_en and "4 samples" in charge.explanation_en
    assert charge.explanation_en.endswith("Total 1400.00 yuan.")

    with pytest.raises(Conflict, match="no open session"):
        await run(imported, services.check_out, world["manager"], booking.id, now=end + timedelta(minutes=5))
    with pytest.raises(Conflict, match="only approved"):
        await run(imported, services.check_in, world["manager"], booking.id, now=end + timedelta(minutes=5))
    logs = await fetch(imported, select(UsageLog).where(UsageLog.booking_id == booking.id).order_by(UsageLog.id))
    assert [(l.id, l.ended_at is None) for l in logs] == [(opened.id, True), (closed.id, False)]
    assert len(await fetch(imported, select(Charge).where(Charge.booking_id == booking.id))) == 1


async def test_check_in_needs_an_approved_booking_and_check_out_needs_a_check_in(imported, world) -> None:
    approved = await booked(imported, world, "member_a")
    requested = await booked(imported, world, "member_b", start=local(DAY, 10), approve=False)
    with pytest.raises(Conflict, match="no open session"):
        await run(imported, services.check_out, world["manager"], approved.id, now=approved.ends_at)
    with pytest.raises(Conflict, match="only approved"):
        await run(imported, services.check_in, world["manager"], requested.id, now=requested.starts_at)
    # A manager may check in from 12 hours before the booked start.
    await run(imported, services.check_in, world["manager"], approved.id, now=approved.starts_at - timedelta(hours=12))
    assert await fetch(imported, select(Charge)) == []
    assert (await get(imported, Booking, approved.id)).status == "approved"


async def test_only_the_unit_and_the_bookings_enterprise_can_check_in(imported, world) -> None:
    booking = await booked(imported, world, "member_a")
    for outsider in ("member_b", "other_manager", "finance", "unverified"):
        with pytest.raises(NotFound):
            await run(imported, services.check_in, world[outsider], booking.id, now=booking.starts_at)
    with pytest.raises(NotFound):
        await run(imported, services.check_in, world["manager"], 999_999, now=booking.starts_at)
    assert await fetch(imported, select(UsageLog)) == []


async def test_self_check_in_rules(imported, world) -> None:
    qualification = await qualify(imported, world)
    own = await booked(imported, world, "member_a", mode="self_operated")
    staffed = await booked(imported, world, "member_a", start=local(DAY, 13, 30))
    member, start = world["member_a"], own.starts_at
    # Another enterprise's member does not see the booking.
    with pytest.raises(NotFound):
        await run(imported, services.check_in, world["member_b"], own.id, now=start)
    # The grace window: 15 minutes either side of the booked start.
    for moment in (start - timedelta(minutes=16), start + timedelta(minutes=16), start - timedelta(hours=2)):
        with pytest.raises(Forbidden, match="self check-in is open"):
            await run(imported, services.check_in, member, own.id, now=moment)
    # Staff-operated bookings are checked in by the unit, even for a qualified user.
    with pytest.raises(Forbidden, match="staff-operated"):
        await run(imported, services.check_in, member, staffed.id, now=staffed.starts_at)
    # Without a valid qualification (revoked since the booking), no self check-in.
    await run(imported, revoke_qualification, world["manager"], qualification.id)
    with pytest.raises(Forbidden, match="qualification"):
        await run(imported, services.check_in, member, own.id, now=start)
    assert await fetch(imported, select(UsageLog)) == []

    await qualify(imported, world)
    opened = await run(imported, services.check_in, member, own.id, now=start - timedelta(minutes=15))
    assert opened.source == "self" and opened.mode == "self_operated" and opened.recorded_by_id == member.user_id
    with pytest.raises(NotFound):
        await run(imported, services.check_out, world["member_b"], own.id, now=start + timedelta(minutes=45))
    closed, charge = await run(imported, services.check_out, member, own.id, now=start + timedelta(minutes=45))
    assert closed.ended_at - closed.started_at == timedelta(hours=1)
    assert charge is not None and charge.total_fen == 2 * 20_000 + 4_000  # two half hours at 400 yuan/h + coating
    assert (await get(imported, Booking, own.id)).status == "completed"

    # The upper edge of the window is open too; a session the unit opened is closed by the unit.
    await run(imported, services.check_in, world["manager"], staffed.id, now=staffed.starts_at + timedelta(minutes=15))
    with pytest.raises(Forbidden, match="checked out by it"):
        await run(imported, services.check_out, member, staffed.id, now=staffed.ends_at)
    _log, charge = await run(imported, services.check_out, world["manager"], staffed.id, now=staffed.ends_at)
    assert charge is not None and charge.total_fen == 2 * 20_000 + 4_000  # 45 minutes: still two started half hours


async def test_self_check_in_at_the_late_edge_of_the_window(imported, world) -> None:
    await qualify(imported, world)
    own = await booked(imported, world, "member_a", mode="self_operated")
    opened = await run(imported, services.check_in, world["member_a"], own.id, now=own.starts_at + timedelta(minutes=15))
    assert opened.started_at == own.starts_at + timedelta(minutes=15)


# --- walk-ins ------------------------------------------------------------------------------------


async def test_walk_ins(imported, world) -> None:
    start, later = local(DAY, 9), local(DAY, 18)
    anonymous, none = await run(imported, services.record_walk_in, world["manager"],
                                services.WalkIn(SEM, start, start + timedelta(minutes=30)), now=later)
    assert none is None and anonymous.enterprise_id is None and anonymous.source == "walk_in" and anonymous.booking_id is None
    log, charge = await run(imported, services.record_walk_in, world["manager"],
                            services.WalkIn(SEM, local(DAY, 10), local(DAY, 11), enterprise_uscc=ENTERPRISE_B.lower(), samples=2),
                            now=later)
    assert log.enterprise_id == world.enterprise_ids["member_b"]
    assert charge is not None and charge.booking_id is None and charge.total_fen == 2 * 20_000 + 4_000
    for principal, data, error in (
        ("other_manager", services.WalkIn(SEM, start, start + timedelta(hours=1)), NotFound),
        ("manager", services.WalkIn("WQ-JGU-BIO-NOPE", start, start + timedelta(hours=1)), NotFound),
        ("manager", services.WalkIn(SEM, start, start + timedelta(hours=1), enterprise_uscc="91120222MA0000001Y"), NotFound),
        ("manager", services.WalkIn(SEM, start, start), InvalidInput),
        ("manager", services.WalkIn(SEM, start, start + timedelta(hours=1), samples=-1), InvalidInput),
        ("manager", services.WalkIn(SEM, start, start + timedelta(hours=1), mode="sample_testing"), InvalidInput),
        ("manager", services.WalkIn(SEM, start.replace(tzinfo=None), start.replace(tzinfo=None) + timedelta(hours=1)), InvalidInput),
        ("manager", services.WalkIn(SEM, later + timedelta(minutes=6), later + timedelta(hours=1)), InvalidInput),  # the future
        ("manager", services.WalkIn(SEM, start, start + timedelta(days=32)), InvalidInput),
    ):
        with pytest.raises(error):
            await run(imported, services.record_walk_in, world[principal], data, now=later)
    assert len(await fetch(imported, select(UsageLog))) == 2


# --- corrections ---------------------------------------------------------------------------------


async def test_corrections_keep_every_version_and_reissue_the_charge(imported, world) -> None:
    booking = await booked(imported, world, "member_b", hours=2)
    start, manager = booking.starts_at, world["manager"]
    v1 = await run(imported, services.check_in, manager, booking.id, now=start)
    v2, first = await run(imported, services.check_out, manager, booking.id, now=start + timedelta(hours=2))
    assert first.total_fen == 4 * 40_000 // 2 + 4_000  # 120 minutes: 4 half hours at 400 yuan/h + coating
    later = start + timedelta(days=1)

    with pytest.raises(InvalidInput, match="reason"):
        await run(imported, services.correct, manager, v2.id, started_at=start, ended_at=start + timedelta(hours=1), samples=0,
                  reason="  ", now=later)
    with pytest.raises(NotFound):
        await run(imported, services.correct, world["other_manager"], v2.id, started_at=start, ended_at=start + timedelta(hours=1),
                  samples=0, reason="x", now=later)
    v3, second = await run(imported, services.correct, manager, v2.id, started_at=start, ended_at=start + timedelta(hours=1),
                           samples=0, reason="left after an hour", now=later)
    assert second.total_fen == 44_000
    # Only the current version can be corrected.
    for stale in (v1.id, v2.id):
        with pytest.raises(Conflict, match="not the current version"):
            await run(imported, services.correct, manager, stale, started_at=start, ended_at=start + timedelta(minutes=30),
                      samples=0, reason="again", now=later)
    v4, third = await run(imported, services.correct, manager, v3.id, started_at=start, ended_at=start + timedelta(minutes=90),
                          samples=1, reason="the log says 90 minutes", now=later)
    assert third.total_fen == 3 * 20_000 + 4_000

    logs = await fetch(imported, select(UsageLog).where(UsageLog.session_id == v1.id).order_by(UsageLog.id))
    assert [l.id for l in logs] == [v1.id, v2.id, v3.id, v4.id]
    assert [l.supersedes_id for l in logs] == [None, v1.id, v2.id, v3.id]
    assert [l.reason for l in logs] == ["", "check-out", "left after an hour", "the log says 90 minutes"]
    assert [l.ended_at - l.started_at if l.ended_at else None for l in logs] == [
        None, timedelta(hours=2), timedelta(hours=1), timedelta(minutes=90)]
    assert all((l.booking_id, l.enterprise_id) == (booking.id, world.enterprise_ids["member_b"]) for l in logs)
    current = await fetch(imported, select(UsageLog.id).where(UsageLog.session_id == v1.id, services.current_versions()))
    assert current == [v4.id]

    charges = await fetch(imported, select(Charge).where(Charge.booking_id == booking.id).order_by(Charge.id))
    assert [(c.id, c.status, c.usage_log_id) for c in charges] == [
        (first.id, "void", v2.id), (second.id, "void", v3.id), (third.id, "unpaid", v4.id)]
    assert charges[0].void_reason == "usage corrected: left after an hour"
    assert [c.total_fen for c in charges] == [84_000, 44_000, 64_000]
    voids = await fetch(imported, select(func.count()).where(AuditEvent.entity == "charge", AuditEvent.action == "void"))
    assert voids == [2]

    # The figures count the latest version only (1.5 h) and the charge that is not void.
    async with imported.session() as session:
        report = await figures.sharing_figures(session, DAY - timedelta(days=1), DAY + timedelta(days=6))
    sem = next(r for r in report.resources if r.code == SEM).figures
    assert (sem.sessions, sem.effective_hours, sem.external_hours, sem.income_fen) == (1, 1.5, 1.5, 64_000)

    # Once paid, the money follows the correction: a correction asking less than was paid is
    # refused (the unit refunds the difference first) and changes nothing ...
    await run(imported, services.mark_paid, manager, third.id, method="bank_transfer", reference="TX-1")
    with pytest.raises(Conflict, match="holds 64000 fen paid, more than the corrected charge of 24000 fen; refund the difference of 40000 fen") as refused:
        await run(imported, services.correct, manager, v4.id, started_at=start, ended_at=start + timedelta(minutes=30), samples=0,
                  reason="too late", now=later)
    assert refused.value.msgid and refused.value.params["difference"].value == 40_000
    assert UsageWords(I18n("zh_CN")).error(refused.value) == (
        f"该使用记录的费用 #{third.id} 已收款 ¥640.00，多于更正后的费用 ¥240.00；请先在付款页面退还差额 ¥400.00，再更正该使用记录。")
    assert len(await fetch(imported, select(UsageLog).where(UsageLog.session_id == v1.id))) == 4
    assert [c.status for c in await fetch(imported, select(Charge).order_by(Charge.id))] == ["void", "void", "paid"]

    # ... one asking more carries the payment over, and the enterprise owes only the difference ...
    v5, fourth = await run(imported, services.correct, manager, v4.id, started_at=start, ended_at=start + timedelta(hours=2),
                           samples=0, reason="the log says two hours", now=later)
    charges = {c.id: c for c in await fetch(imported, select(Charge).order_by(Charge.id))}
    assert (charges[third.id].status, charges[third.id].paid_fen, charges[third.id].refunded_fen) == ("void", 64_000, 64_000)
    assert "its payments moved to charge #%d" % fourth.id in charges[third.id].void_reason
    assert (charges[fourth.id].status, charges[fourth.id].total_fen, charges[fourth.id].paid_fen) == ("unpaid", 84_000, 64_000)
    assert charges[fourth.id].payment_method == "correction"

    # ... and one back to what was paid leaves the corrected charge paid in full. Money paid in
    # all never changes: 64,000 fen received, none given back to the enterprise.
    _v6, fifth = await run(imported, services.correct, manager, v5.id, started_at=start, ended_at=start + timedelta(minutes=90),
                           samples=0, reason="90 minutes after all", now=later)
    charges = {c.id: c for c in await fetch(imported, select(Charge).order_by(Charge.id))}
    assert (charges[fifth.id].status, charges[fifth.id].total_fen, charges[fifth.id].paid_fen) == ("paid", 64_000, 64_000)
    assert [c.status for c in charges.values()] == ["void", "void", "void", "void", "paid"]
    assert sum(c.paid_fen - c.refunded_fen for c in charges.values()) == 64_000
    assert [(c.id, c.paid_fen - c.refunded_fen) for c in charges.values() if c.status != "void"] == [(fifth.id, 64_000)]
    payments = await fetch(imported, select(Payment).where(Payment.charge_id.in_(list(charges))).order_by(Payment.id))
    assert [(p.charge_id, p.method, p.reference, p.amount_fen) for p in payments] == [
        (third.id, "bank_transfer", "TX-1", 64_000), (fourth.id, "correction", f"charge #{third.id}", 64_000),
        (fifth.id, "correction", f"charge #{fourth.id}", 64_000)]
    # Each void charge's audit event says where its payments went, if it had any.
    voided = await fetch(imported, select(AuditEvent).where(AuditEvent.entity == "charge", AuditEvent.action == "void")
                         .order_by(AuditEvent.id))
    assert [(e.entity_id, e.after.get("moved_to")) for e in voided] == [
        (first.id, None), (second.id, None), (third.id, fourth.id), (fourth.id, fifth.id)]


async def test_an_open_session_and_a_bad_correction_are_refused(imported, world) -> None:
    booking = await booked(imported, world, "member_a")
    opened = await run(imported, services.check_in, world["manager"], booking.id, now=booking.starts_at)
    later = booking.starts_at + timedelta(hours=3)
    with pytest.raises(Conflict, match="still open"):
        await run(imported, services.correct, world["manager"], opened.id, started_at=booking.starts_at,
                  ended_at=booking.ends_at, samples=0, reason="forgot to check out", now=later)
    closed, _charge = await run(imported, services.check_out, world["manager"], booking.id, now=booking.ends_at)
    with pytest.raises(InvalidInput, match="after started_at"):
        await run(imported, services.correct, world["manager"], closed.id, started_at=booking.ends_at,
                  ended_at=booking.starts_at, samples=0, reason="swap", now=later)
    with pytest.raises(NotFound):
        await run(imported, services.correct, world["manager"], 999_999, started_at=booking.starts_at,
                  ended_at=booking.ends_at, samples=0, reason="x", now=later)


async def test_a_walk_in_without_a_customer_is_corrected_without_a_charge(imported, world) -> None:
    start, later = local(DAY, 9), local(DAY, 18)
    log, _ = await run(imported, services.record_walk_in, world["manager"], services.WalkIn(SEM, start, start + timedelta(hours=3)), now=later)
    new, charge = await run(imported, services.correct, world["manager"], log.id, started_at=start, ended_at=start + timedelta(hours=2),
                            samples=0, reason="typo", now=later)
    assert charge is None and new.session_id == log.id and new.supersedes_id == log.id and new.source == "walk_in"
    assert await fetch(imported, select(Charge)) == []


# --- no-shows ------------------------------------------------------------------------------------


async def sweep(db: Database, now: datetime) -> list[int]:
    async with db.session(write=True) as session:
        switched = await services.sweep_no_shows(session, now=now)
        await session.commit()
        return switched


async def test_unused_approved_bookings_become_no_shows_once(without_no_show_fee, imported, world) -> None:
    unused = await booked(imported, world, "member_a")  # 09:00–10:00
    open_session = await booked(imported, world, "member_b", start=local(DAY, 10))  # 10:00–11:00, checked in, never out
    used = await booked(imported, world, "member_a", start=local(DAY, 13, 30))  # 13:30–14:30, used
    requested = await booked(imported, world, "member_b", start=local(DAY, 15), approve=False)  # never decided
    await run(imported, services.check_in, world["manager"], open_session.id, now=open_session.starts_at)
    await run(imported, services.check_in, world["manager"], used.id, now=used.starts_at)
    await run(imported, services.check_out, world["manager"], used.id, now=used.ends_at)

    # Within the 30-minute grace after its end, nothing happens.
    assert await sweep(imported, unused.ends_at + timedelta(minutes=29)) == []
    assert (await get(imported, Booking, unused.id)).status == "approved"
    evening = local(DAY, 19)
    assert await sweep(imported, evening) == [unused.id]
    assert await sweep(imported, evening + timedelta(hours=1)) == []  # once

    statuses = {b.id: (b.status, b.version) for b in await fetch(imported, select(Booking))}
    assert statuses[unused.id] == ("no_show", 2)  # approved, then no-show
    assert statuses[open_session.id][0] == "approved"
    assert statuses[used.id][0] == "completed"
    assert statuses[requested.id][0] in ("requested", "expired")
    events = await fetch(imported, select(AuditEvent).where(AuditEvent.action == "no_show"))
    assert [(e.entity_id, e.actor_kind, e.before, e.after) for e in events] == [
        (unused.id, "system", {"status": "approved"}, {"status": "no_show"})]
    assert await fetch(imported, select(Charge).where(Charge.kind == "no_show")) == []  # no fee set for this test

    async with imported.session() as session:
        report = await figures.sharing_figures(session, DAY, DAY + timedelta(days=1))
    assert next(r for r in report.resources if r.code == SEM).figures.no_shows == 1


@pytest.fixture
async def no_show_fee(imported) -> AsyncIterator[int]:  # type: ignore[no-untyped-def]
    """SEM01 with a 50-yuan no-show fee for one test."""
    async with catalogue_values(imported, SEM, no_show_fee_fen=5_000):
        yield 5_000


@pytest.fixture
async def without_no_show_fee(imported) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    """SEM01 with no no-show fee for one test, whatever the shipped catalogue says."""
    async with catalogue_values(imported, SEM, no_show_fee_fen=0):
        yield


async def test_a_no_show_fee_is_charged(imported, world, no_show_fee: int) -> None:
    unused = await booked(imported, world, "member_b")
    used = await booked(imported, world, "member_a", start=local(DAY, 10))
    await run(imported, services.check_in, world["manager"], used.id, now=used.starts_at)
    await run(imported, services.check_out, world["manager"], used.id, now=used.ends_at)
    evening = local(DAY, 19)
    assert await sweep(imported, evening) == [unused.id]
    assert await sweep(imported, evening + timedelta(days=1)) == []
    fees = await fetch(imported, select(Charge).where(Charge.kind == "no_show"))
    assert len(fees) == 1
    fee = fees[0]
    assert (fee.booking_id, fee.enterprise_id, fee.usage_log_id, fee.status) == (
        unused.id, world.enterprise_ids["member_b"], None, "unpaid")
    assert fee.total_fen == no_show_fee and [l["amount_fen"] for l in fee.lines] == [no_show_fee]
    assert fee.service_date == unused.starts_at and fee.customer_class == unused.customer_class == "district"
    assert "50.00" in fee.explanation_zh and "50.00" in fee.explanation_en
    async with imported.session() as session:
        report = await figures.sharing_figures(session, DAY, DAY + timedelta(days=1))
    sem = next(r for r in report.resources if r.code == SEM).figures
    assert (sem.no_shows, sem.income_fen) == (1, no_show_fee + 44_000)


# --- ratings -------------------------------------------------------------------------------------


async def test_ratings(imported, world) -> None:
    booking = await booked(imported, world, "member_a")
    with pytest.raises(Conflict, match="completed"):
        await run(imported, services.rate, world["member_a"], booking.id, stars=5)
    await run(imported, services.check_in, world["manager"], booking.id, now=booking.starts_at)
    with pytest.raises(Conflict, match="completed"):
        await run(imported, services.rate, world["member_a"], booking.id, stars=5)
    await run(imported, services.check_out, world["manager"], booking.id, now=booking.ends_at)
    for outsider in ("member_b", "manager", "finance", "admin", "unverified"):
        with pytest.raises(NotFound):
            await run(imported, services.rate, world[outsider], booking.id, stars=4)
    with pytest.raises(NotFound):
        await run(imported, services.rate, world["member_a"], 999_999, stars=4)
    for stars in (0, 6, -1):
        with pytest.raises(InvalidInput, match="stars"):
            await run(imported, services.rate, world["member_a"], booking.id, stars=stars)
    with pytest.raises(InvalidInput, match="comment"):
        await run(imported, services.rate, world["member_a"], booking.id, stars=3, comment="很" * 2001)
    rating = await run(imported, services.rate, world["member_a"], booking.id, stars=5, comment=" 很专业 ")
    assert (rating.stars, rating.comment, rating.enterprise_id, rating.user_id, rating.resource_id) == (
        5, "很专业", world.enterprise_ids["member_a"], world["member_a"].user_id, booking.resource_id)
    with pytest.raises(Conflict, match="already been rated"):
        await run(imported, services.rate, world["member_a"], booking.id, stars=1)
    assert [r.stars for r in await fetch(imported, select(Rating))] == [5]


async def test_every_star_count_from_one_to_five_is_accepted(imported, world) -> None:
    for stars, (hour, minute) in zip(range(1, 6), ((8, 30), (10, 0), (13, 30), (15, 0), (16, 0)), strict=True):
        booking = await booked(imported, world, "member_a", start=local(DAY, hour, minute))
        await run(imported, services.check_in, world["manager"], booking.id, now=booking.starts_at)
        await run(imported, services.check_out, world["manager"], booking.id, now=booking.ends_at)
        assert (await run(imported, services.rate, world["member_a"], booking.id, stars=stars)).stars == stars


# --- offline payment -----------------------------------------------------------------------------


async def test_mark_paid(imported, world) -> None:
    start, later = local(DAY, 9), local(DAY, 18)
    log, charge = await run(imported, services.record_walk_in, world["manager"],
                            services.WalkIn(SEM, start, start + timedelta(hours=1), enterprise_uscc=ENTERPRISE_B), now=later)
    for outsider in ("other_manager", "member_b", "finance", "unverified"):
        with pytest.raises(NotFound):
            await run(imported, services.mark_paid, world[outsider], charge.id, method="bank_transfer", reference="TX-1")
    with pytest.raises(NotFound):
        await run(imported, services.mark_paid, world["manager"], 999_999, method="bank_transfer", reference="TX-1")
    with pytest.raises(InvalidInput, match="method"):
        await run(imported, services.mark_paid, world["manager"], charge.id, method="wechat", reference="TX-1")
    with pytest.raises(InvalidInput, match="reference"):
        await run(imported, services.mark_paid, world["manager"], charge.id, method="invoice", reference="   ")
    assert (await get(imported, Charge, charge.id)).status == "unpaid"

    paid = await run(imported, services.mark_paid, world["manager"], charge.id, method="invoice", reference="  FP-2026-0042 ")
    assert (paid.status, paid.payment_method, paid.payment_reference) == ("paid", "invoice", "FP-2026-0042")
    assert paid.paid_at is not None
    with pytest.raises(Conflict, match="is paid"):
        await run(imported, services.mark_paid, world["manager"], charge.id, method="cash", reference="R-1")
    row = await get(imported, Charge, charge.id)
    assert (row.status, row.payment_method, row.payment_reference) == ("paid", "invoice", "FP-2026-0042")
    events = await fetch(imported, select(AuditEvent).where(AuditEvent.action == "mark_paid"))
    assert [(e.entity_id, e.actor_id) for e in events] == [(charge.id, world["manager"].user_id)]

    # A void charge cannot be paid either.
    other, old = await run(imported, services.record_walk_in, world["manager"],
                           services.WalkIn(SEM, local(DAY, 10), local(DAY, 11), enterprise_uscc=ENTERPRISE_B), now=later)
    await run(imported, services.correct, world["manager"], other.id, started_at=local(DAY, 10), ended_at=local(DAY, 10, 30),
              samples=0, reason="half an hour", now=later)
    with pytest.raises(Conflict, match="is void"):
        await run(imported, services.mark_paid, world["manager"], old.id, method="cash", reference="R-2")


# --- the instrument agent (the HTTP side is in test_usage_api.py) --------------------------------


async def test_agent_sessions_in_the_service(imported, world) -> None:
    booking = await booked(imported, world, "member_b")
    async with imported.session(write=True) as session:
        row, key = await services.create_agent_key(session, world["manager"], SEM, " SEM PC ")
        await session.commit()
    assert key.startswith("fsa_") and row.name == "SEM PC" and row.prefix == key[:12]
    data = services.AgentSession("uuid-1", booking.starts_at, booking.ends_at, samples=1)
    later = booking.ends_at + timedelta(minutes=1)
    async with imported.session(write=True) as session:
        agent = await services.agent_for_key(session, key)
        log, created = await services.record_agent_session(session, agent, data, now=later)
        again, created_again = await services.record_agent_session(session, agent, data, now=later)
        await session.commit()
    assert (created, created_again, again.id) == (True, False, log.id)
    # Matched to the approved booking it falls in: the booking's enterprise, completed, charged.
    assert (log.booking_id, log.enterprise_id, log.source, log.agent_key_id) == (booking.id, world.enterprise_ids["member_b"], "agent", row.id)
    assert (await get(imported, Booking, booking.id)).status == "completed"
    assert [c.total_fen for c in await fetch(imported, select(Charge))] == [44_000]
    # With the key loaded in the request's own session, its last use is recorded.
    assert (await get(imported, AgentKey, row.id)).last_used_at == later

    await run(imported, services.revoke_agent_key, world["manager"], row.id)
    async with imported.session() as session:
        assert await services.agent_for_key(session, key) is None
        assert await services.agent_for_key(session, "fsa_unknown") is None
    with pytest.raises(NotFound):
        await run(imported, services.revoke_agent_key, world["other_manager"], row.id)
    with pytest.raises(NotFound):
        await run(imported, services.create_agent_key, world["other_manager"], SEM, "x")
