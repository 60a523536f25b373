"""Paying a booking in advance, on SQLite and PostgreSQL: cancelled in time → everything back;
cancelled late → the configured share back; never paid → voided; service done → the advance
covers the fee, its surplus goes back (through localstripe when paid online), a shortfall stays
to pay. Each settles once, whatever number of sweeps. When a session is corrected, what its
charge holds moves onto the corrected charge."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from facility_share.bookings import services as bookings
from facility_share.db import Database
from facility_share.db.models import AuditEvent, Booking, Charge, Payment, Refund, Resource, UsageLog, utcnow
from facility_share.errors import Conflict, NotFound
from facility_share.finance import facts
from facility_share.finance.periods import Period
from facility_share.payments import advances, services
from facility_share.payments.gateway import Gateway
from facility_share.payments.pages import PaymentWords
from facility_share.settings import load_settings
from facility_share.usage import services as usage
from facility_share.usage.pages import UsageWords
from facility_share.web.i18n import I18n
from tests.payments_peer import SECRET_KEY, StripePeer, stripe_env
from tests.world import build_world

SEM = "WQ-TJMAT-SEM01"
# The SEM costs a district customer 400 yuan an hour, 440 in its peak hours: between 30,000
# (the shortfall case) and 50,000 (the surplus case) either way.


async def run(db: Database, fn: Any, *args: Any, **kwargs: Any) -> Any:
    async with db.session(write=True) as session:
        result = await fn(session, *args, **kwargs)
        await session.commit()
        return result


async def approved(db: Database, world: Any, *, starts_in: timedelta, estimate_fen: int, member: str = "member_a") -> int:
    async with db.session(write=True) as session:
        resource = (await session.execute(select(Resource).where(Resource.code == SEM))).scalar_one()
        start = (utcnow() + starts_in).replace(second=0, microsecond=0)
        booking = Booking(resource_id=resource.id, enterprise_id=world.enterprise_ids[member], user_id=world[member].user_id,
                          starts_at=start, ends_at=start + timedelta(hours=1), exclusive=True, mode="staff_operated",
                          status="approved", purpose="advance test", customer_class="district", estimate_fen=estimate_fen)
        session.add(booking)
        await session.commit()
        return booking.id


async def state(db: Database, charge_id: int) -> tuple[str, int, int, list[tuple[int, str, str]]]:
    async with db.session() as session:
        charge = await session.get(Charge, charge_id)
        refunds = [(r.amount_fen, r.cause, r.status) for r in
                   (await session.execute(select(Refund).where(Refund.charge_id == charge_id).order_by(Refund.id))).scalars()]
        return charge.status, charge.paid_fen, charge.refunded_fen, refunds


@pytest.fixture
async def world(imported: Database) -> Any:
    return await build_world(imported)


@pytest.fixture
def offline_settings(database_url: str) -> Any:
    return load_settings({"FACILITY_SHARE_DATABASE_URL": database_url, "FACILITY_SHARE_LATE_CANCELLATION_REFUND_PERCENT": "30"})


async def paid_offline_advance(db: Database, world: Any, booking_id: int) -> int:
    charge = await run(db, advances.open_advance, world["member_a"], booking_id)
    await run(db, usage.mark_paid, world["manager"], charge.id, method="bank_transfer", reference="ADV-1")
    return charge.id


async def test_advance_is_opened_once_for_an_approved_future_booking_only(imported: Database, world: Any) -> None:
    booking_id = await approved(imported, world, starts_in=timedelta(days=5), estimate_fen=48_000)
    first = await run(imported, advances.open_advance, world["member_a"], booking_id)
    again = await run(imported, advances.open_advance, world["member_a"], booking_id)
    assert first.id == again.id and (first.kind, first.total_fen, first.status) == ("advance", 48_000, "unpaid")
    with pytest.raises(NotFound):
        await run(imported, advances.open_advance, world["member_b"], booking_id)
    begun = await approved(imported, world, starts_in=timedelta(hours=-1), estimate_fen=48_000)
    with pytest.raises(Conflict, match="has begun"):
        await run(imported, advances.open_advance, world["member_a"], begun)
    free = await approved(imported, world, starts_in=timedelta(days=6), estimate_fen=0)
    with pytest.raises(Conflict, match="no fee estimate"):
        await run(imported, advances.open_advance, world["member_a"], free)


async def test_cancelled_in_time_gives_everything_back_once(imported: Database, world: Any, offline_settings: Any) -> None:
    booking_id = await approved(imported, world, starts_in=timedelta(days=5), estimate_fen=48_000)
    charge_id = await paid_offline_advance(imported, world, booking_id)
    await run(imported, bookings.change_status, world["member_a"], booking_id, "cancel")
    lines = await advances.sweep(imported, offline_settings, None)
    assert lines == [f"charge {charge_id}: booking cancelled in time: full refund (48000 of 48000 fen)"]
    assert await state(imported, charge_id) == ("refunded", 48_000, 48_000, [(48_000, "cancellation", "succeeded")])
    assert await advances.sweep(imported, offline_settings, None) == []


async def test_cancelled_late_keeps_the_policys_share(imported: Database, world: Any, offline_settings: Any) -> None:
    booking_id = await approved(imported, world, starts_in=timedelta(hours=3), estimate_fen=48_001)
    charge_id = await paid_offline_advance(imported, world, booking_id)
    # Past the enterprise's own deadline (24 h): the unit cancels at its request.
    with pytest.raises(Exception, match="cancelled until 24 hours"):
        await run(imported, bookings.change_status, world["member_a"], booking_id, "cancel")
    await run(imported, bookings.change_status, world["manager"], booking_id, "cancel", reason="the enterprise called off")
    (line,) = await advances.sweep(imported, offline_settings, None)
    assert "cancelled late: 30% refunded" in line
    assert await state(imported, charge_id) == ("paid", 48_001, 14_400, [(14_400, "cancellation", "succeeded")])
    assert await advances.sweep(imported, offline_settings, None) == []


async def test_unpaid_advance_of_a_cancelled_booking_is_voided(imported: Database, world: Any, offline_settings: Any) -> None:
    booking_id = await approved(imported, world, starts_in=timedelta(days=5), estimate_fen=10_000)
    charge = await run(imported, advances.open_advance, world["member_a"], booking_id)
    await run(imported, bookings.change_status, world["member_a"], booking_id, "cancel")
    assert len(await advances.sweep(imported, offline_settings, None)) == 1
    assert (await state(imported, charge.id))[0] == "void"


async def serve_booking(db: Database, world: Any, booking_id: int) -> Charge:
    async with db.session() as session:
        booking = await session.get(Booking, booking_id)
    await run(db, usage.check_in, world["manager"], booking_id, now=booking.starts_at)
    _log, charge = await run(db, usage.check_out, world["manager"], booking_id, now=booking.starts_at + timedelta(hours=1))
    return charge


async def test_service_done_covers_the_fee_and_a_shortfall_stays_to_pay(imported: Database, world: Any) -> None:
    booking_id = await approved(imported, world, starts_in=timedelta(hours=2), estimate_fen=30_000)
    advance_id = await paid_offline_advance(imported, world, booking_id)
    service = await serve_booking(imported, world, booking_id)
    fee = service.total_fen
    assert 30_000 < fee < 50_000
    assert await state(imported, service.id) == ("unpaid", 30_000, 0, [])
    assert await state(imported, advance_id) == ("refunded", 30_000, 30_000, [(30_000, "applied", "succeeded")])
    async with imported.session() as session:
        (carried,) = (await session.execute(select(Payment).where(Payment.charge_id == service.id))).scalars()
    assert (carried.provider, carried.method, carried.reference, carried.amount_fen) == ("offline", "advance", f"charge #{advance_id}", 30_000)
    # The rest is paid as usual.
    await run(imported, usage.mark_paid, world["manager"], service.id, method="invoice", reference="INV-9")
    assert await state(imported, service.id) == ("paid", fee, 0, [])


async def test_money_paid_on_a_corrected_session_moves_onto_the_corrected_charge(imported: Database, world: Any) -> None:
    booking_id = await approved(imported, world, starts_in=timedelta(hours=2), estimate_fen=10_000)
    advance_id = await paid_offline_advance(imported, world, booking_id)
    service = await serve_booking(imported, world, booking_id)
    start, later, manager = service.service_date, service.service_date + timedelta(hours=2), world["manager"]
    assert await state(imported, service.id) == ("unpaid", 10_000, 0, [])

    async def correct(log_id: int, minutes: int, reason: str) -> Any:
        return await run(imported, usage.correct, manager, log_id, started_at=start, ended_at=start + timedelta(minutes=minutes),
                         samples=0, reason=reason, now=later)

    async def payments_of(charge_id: int) -> list[tuple[str, str, str, int]]:
        async with imported.session() as session:
            return [(p.provider, p.method, p.reference, p.amount_fen) for p in (await session.execute(
                select(Payment).where(Payment.charge_id == charge_id).order_by(Payment.id))).scalars()]

    # Partly paid from the advance: the 10,000 fen move onto the shorter session's charge, which
    # is partly paid by them; the old charge is voided with a pointer to it.
    shorter_log, shorter = await correct(service.usage_log_id, 30, "shorter")
    assert 10_000 < shorter.total_fen < service.total_fen
    assert await state(imported, service.id) == ("void", 10_000, 10_000, [(10_000, "applied", "succeeded")])
    assert await state(imported, shorter.id) == ("unpaid", 10_000, 0, [])
    assert await payments_of(shorter.id) == [("offline", "correction", f"charge #{service.id}", 10_000)]
    async with imported.session() as session:
        old = await session.get(Charge, service.id)
        assert old.void_reason == f"usage corrected: shorter; its payments moved to charge #{shorter.id}"
        (void,) = (await session.execute(select(AuditEvent).where(
            AuditEvent.entity == "charge", AuditEvent.entity_id == service.id, AuditEvent.action == "void"))).scalars()
        assert void.after == {"status": "void", "moved_to": shorter.id}
    # The advance is not used twice.
    assert await state(imported, advance_id) == ("refunded", 10_000, 10_000, [(10_000, "applied", "succeeded")])

    # Paid in full, then corrected to a longer session: all of it moves, the rest stays to pay.
    await run(imported, usage.mark_paid, manager, shorter.id, method="bank_transfer", reference="TX-1")
    longer_log, longer = await correct(shorter_log.id, 90, "longer after all")
    assert longer.total_fen > shorter.total_fen
    assert await state(imported, shorter.id) == ("void", shorter.total_fen, shorter.total_fen, [
        (shorter.total_fen - 10_000, "applied", "succeeded"), (10_000, "applied", "succeeded")])
    assert await state(imported, longer.id) == ("unpaid", shorter.total_fen, 0, [])
    assert await payments_of(longer.id) == [("offline", "correction", f"charge #{shorter.id}", shorter.total_fen)]
    async with imported.session() as session:  # the ledger dates the charge's money from the move
        moved = (await session.execute(select(Payment).where(Payment.charge_id == longer.id))).scalar_one()
        assert (await session.get(Charge, longer.id)).money_as_of == moved.succeeded_at
    await run(imported, usage.mark_paid, manager, longer.id, method="bank_transfer", reference="TX-2")
    assert (await state(imported, longer.id))[:3] == ("paid", longer.total_fen, 0)

    # A correction asking less than was paid is refused until the unit refunds the difference,
    # and changes nothing.
    async with imported.session() as session:
        before = [(c.id, c.status, c.paid_fen, c.refunded_fen) for c in (await session.execute(select(Charge).order_by(Charge.id))).scalars()]
        rows = (len((await session.execute(select(Payment))).all()), len((await session.execute(select(Refund))).all()))
    one_hour = service.total_fen
    with pytest.raises(Conflict, match=f"holds {longer.total_fen} fen paid, more than the corrected charge of {one_hour} fen; "
                                       f"refund the difference of {longer.total_fen - one_hour} fen"):
        await correct(longer_log.id, 60, "an hour")
    async with imported.session() as session:
        assert [(c.id, c.status, c.paid_fen, c.refunded_fen)
                for c in (await session.execute(select(Charge).order_by(Charge.id))).scalars()] == before
        assert (len((await session.execute(select(Payment))).all()), len((await session.execute(select(Refund))).all())) == rows
        assert (await session.execute(select(UsageLog.id).where(UsageLog.supersedes_id == longer_log.id))).first() is None

    # Nothing is counted twice: the money received from outside (the advance's transfer and two
    # more) is what the charges hold in all, all of it on the one charge that is not void.
    async with imported.session() as session:
        received = sum((await session.execute(select(Payment.amount_fen).join(Charge, Charge.id == Payment.charge_id).where(
            Charge.booking_id == booking_id, Payment.method == "bank_transfer"))).scalars())
        charges = list((await session.execute(select(Charge).where(Charge.booking_id == booking_id))).scalars())
    assert received == longer.total_fen
    assert sum(c.paid_fen - c.refunded_fen for c in charges) == received
    assert [(c.id, c.paid_fen - c.refunded_fen) for c in charges if c.status != "void" and c.kind == "service"] == [(longer.id, received)]

    # The settlement facts read it once, from the charge's own sums as from its rows (the moved
    # payment is on the ledger, so the charge's money is known from when it moved).
    async with imported.session() as session:
        live = await session.get(Charge, longer.id)
        assert live.money_as_of is not None and live.money_as_of <= utcnow()
    day = start.astimezone(ZoneInfo("Asia/Shanghai")).date()
    period = Period(day - timedelta(days=1), day + timedelta(days=2), "around the session", "range")
    enterprise = world.enterprise_ids["member_a"]
    async with imported.session(write=True) as session:
        known = await facts.service_charges(session, period, utcnow())
        await session.execute(update(Charge).values(money_as_of=None))
        from_rows = await facts.service_charges(session, period, utcnow())
        await session.rollback()
    assert known == from_rows
    mine = [g for g in known.groups if g.enterprise_id == enterprise]
    assert (sum(g.charges for g in mine), sum(g.paid_fen - g.refunded_fen for g in mine)) == (1, received)


def test_a_moved_payment_is_named_on_the_usage_and_payments_pages() -> None:
    for words in (UsageWords, PaymentWords):
        assert words(I18n("en")).method("correction") == "Moved from a corrected charge"
        assert words(I18n("zh_CN")).method("correction") == "由更正前的费用转入"


async def test_online_advance_surplus_and_cancellation_refunds_go_to_stripe(imported: Database, world: Any, peer: StripePeer,
                                                                            database_url: str) -> None:
    settings = load_settings(stripe_env(database_url, peer.url))
    gateway = Gateway(SECRET_KEY, api_base=peer.url)
    try:
        async def pay_online(booking_id: int) -> tuple[int, str]:
            charge = await run(imported, advances.open_advance, world["member_a"], booking_id)
            payment = await run(imported, services.start_payment, world["member_a"], charge.id, gateway=gateway, settings=settings)
            await peer.pay(payment.stripe_payment_intent_id)
            await run(imported, services.reconcile_payment, gateway, payment.id)  # as the webhook would
            return charge.id, payment.stripe_payment_intent_id

        served = await approved(imported, world, starts_in=timedelta(hours=2), estimate_fen=50_000)
        advance_id, intent_id = await pay_online(served)
        service = await serve_booking(imported, world, served)
        fee = service.total_fen
        assert await state(imported, service.id) == ("paid", fee, 0, [])
        assert (await state(imported, advance_id))[3] == [(fee, "applied", "succeeded"), (50_000 - fee, "advance_surplus", "pending")]

        cancelled = await approved(imported, world, starts_in=timedelta(days=4), estimate_fen=20_000)
        cancelled_id, cancelled_intent = await pay_online(cancelled)
        await run(imported, bookings.change_status, world["member_a"], cancelled, "cancel")

        lines = await advances.sweep(imported, settings, gateway)
        assert len(lines) == 3, lines
        assert await state(imported, advance_id) == (
            "refunded", 50_000, 50_000, [(fee, "applied", "succeeded"), (50_000 - fee, "advance_surplus", "succeeded")])
        assert await state(imported, cancelled_id) == ("refunded", 20_000, 20_000, [(20_000, "cancellation", "succeeded")])
        assert [r.amount for r in await peer.refunds(intent_id)] == [50_000 - fee]
        assert [r.amount for r in await peer.refunds(cancelled_intent)] == [20_000]
        assert await advances.sweep(imported, settings, gateway) == []
    finally:
        await gateway.close()
