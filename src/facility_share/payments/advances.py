"""Paying before the service, and money that moves from one charge to another.

Charges are issued after the service, so paying *before* the slot means an ``advance`` charge:
the booking's fee estimate, paid like any charge (online or offline).

* If the booking is cancelled, the advance comes back by the resource's policy
  (``rules.cancellation_refund``: everything if cancelled in time or by the unit, otherwise the
  configured share), found by a sweep that reads who cancelled and when from the audit log.
* When the service is done, the service charge is covered from the advance: an offline payment
  of method ``advance`` for min(advance, fee) on the service charge, an ``applied`` refund row on
  the advance (money that moved, not money returned), and the surplus refunded to the payer;
  any shortfall stays to pay.
* A paid charge whose usage is corrected is carried over to the reissued charge the same way.

Refunds that need Stripe are recorded as pending with their idempotency key in the caller's
transaction and sent by the sweep (``send_pending_refunds``), so nothing here calls Stripe
while usage is being recorded, and a Stripe outage only delays them.

Callers own the transaction (we flush), except ``sweep``, which runs its own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share import audit
from facility_share.accounts.principal import Principal
from facility_share.db import Database
from facility_share.db.models import AuditEvent, Booking, Charge, Payment, Refund, Resource, utcnow
from facility_share.errors import N_, Conflict, FacilityShareError, NotFound, booking_status
from facility_share.payments import ledger, rules, services
from facility_share.payments.gateway import Gateway, gateway_for
from facility_share.settings import Settings

log = logging.getLogger("facility_share.payments")
SETTLED = "cancellation_settled"


async def open_advance(session: AsyncSession, principal: Principal, booking_id: int, *, now: datetime | None = None) -> Charge:
    """The advance charge of one of the caller's approved, future bookings (its fee estimate);
    an open one is reused.

    Raises:
        NotFound: not the caller's booking. Conflict: not approved, begun, or no fee to pay.
    """
    now = now or utcnow()
    booking = await session.get(Booking, booking_id)
    if booking is None or principal.enterprise_id is None or booking.enterprise_id != principal.enterprise_id:
        raise NotFound.translatable(N_("no booking %(booking)s"), booking=booking_id)
    existing = (
        await session.execute(
            select(Charge).where(Charge.booking_id == booking.id, Charge.kind == "advance", Charge.status != "void")
            .order_by(Charge.id.desc()).limit(1)
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    if booking.status != "approved":
        raise Conflict.translatable(N_("only approved bookings can be paid in advance; this one is %(status)s"),
                                    status=booking_status(booking.status))
    if booking.starts_at <= now:
        raise Conflict.translatable(N_("the booking has begun; its charge is issued when the service is recorded"))
    if booking.estimate_fen <= 0:
        raise Conflict.translatable(N_("this booking has no fee estimate to pay in advance"))
    fee = booking.estimate_fen
    charge = Charge(
        kind="advance", booking_id=booking.id, resource_id=booking.resource_id, enterprise_id=booking.enterprise_id,
        service_date=booking.starts_at, customer_class=booking.customer_class, total_fen=fee, status="unpaid",
        lines=[{"label_zh": "预付款（预估费用）", "label_en": "Advance (fee estimate)", "basis": "setup", "units": 1,
                "rate_fen": fee, "amount_fen": fee, "unit_minutes": 0, "explanation": "fee estimate at booking"}],
        explanation_zh=(f"预约 #{booking.id} 的预估费用 {fee / 100:.2f} 元，提前支付。服务完成后按实际费用结算，多退少补；"
                        "取消预约时按该资源的退款规定退还。"),
        explanation_en=(f"The fee estimate of booking #{booking.id}, {fee / 100:.2f} yuan, paid in advance. Once the service "
                        "is done it is settled against the actual fee (surplus refunded, shortfall to pay); if the booking is "
                        "cancelled it is refunded by the resource's policy."),
        created_at=now, updated_at=now,
    )
    session.add(charge)
    await session.flush()
    audit.record(session, action="issue", entity="charge", entity_id=charge.id, actor_id=principal.user_id,
                 after={"total_fen": fee, "kind": "advance", "booking_id": booking.id}, at=now)
    return charge


async def _available(session: AsyncSession, charge_id: int) -> list[tuple[Payment, int]]:
    """The charge's succeeded payments, newest first, with what each can still give back."""
    payments = [p for p in await ledger.payments_of(session, charge_id) if p.status == "succeeded"]
    refunds = await ledger.refunds_of(session, charge_id)
    return [
        (p, rules.refundable(p.amount_received_fen, [(r.amount_fen, r.status) for r in refunds if r.payment_id == p.id]))
        for p in sorted(payments, key=lambda p: (p.succeeded_at or p.created_at, p.id), reverse=True)
    ]


async def held_fen(session: AsyncSession, charge_id: int) -> int:
    """What a charge holds: its succeeded payments less the refunds succeeded or under way
    (what ``carry_over`` can move)."""
    return sum(fen for _p, fen in await _available(session, charge_id))


async def _take(session: AsyncSession, charge: Charge, amount_fen: int, *, cause: str, reason: str, status_for: dict[str, str],
                actor_id: int | None, now: datetime) -> list[Refund]:
    """Refund rows for ``amount_fen`` of a charge's payments; a payment's provider decides
    each row's status (``status_for``: stripe → pending to send, offline → succeeded)."""
    available = await _available(session, charge.id)
    rows = []
    by_id = {p.id: p for p, _fen in available}
    for share in rules.split_refund(amount_fen, [(p.id, fen) for p, fen in available]):
        status = status_for[by_id[share.payment_id].provider]
        refund = Refund(payment_id=share.payment_id, charge_id=charge.id, amount_fen=share.amount_fen, status=status,
                        cause=cause, reason=reason[:500], idempotency_key=f"{cause}-{charge.id}-{uuid.uuid4().hex}",
                        succeeded_at=now if status == "succeeded" else None, requested_by_id=actor_id,
                        created_at=now, updated_at=now)
        session.add(refund)
        rows.append(refund)
    await session.flush()
    for refund in rows:
        audit.record(session, action="request" if refund.status == "pending" else "record", entity="refund", entity_id=refund.id,
                     actor_id=actor_id, actor_kind="user" if actor_id else "system",
                     after=audit.snapshot(refund, services.REFUND_AUDITED), reason=reason, at=now)
    return rows


async def carry_over(session: AsyncSession, source: Charge, target: Charge, *, method: str, reason: str,
                     actor_id: int | None = None, now: datetime | None = None) -> rules.AdvanceSettlement:
    """Move what ``source`` holds onto ``target`` (up to what ``target`` still needs) and give
    the rest back to the payer. Returns how it was split."""
    now = now or utcnow()
    source = await ledger.locked_charge(session, source.id)
    target = await ledger.locked_charge(session, target.id)
    held = sum(fen for _p, fen in await _available(session, source.id))
    settlement = rules.settle_advance(held, rules.outstanding(target.total_fen, target.paid_fen))
    if settlement.applied_fen:
        await _take(session, source, settlement.applied_fen, cause="applied", reason=f"applied to charge #{target.id}: {reason}",
                    status_for={"stripe": "succeeded", "offline": "succeeded"}, actor_id=actor_id, now=now)
        await ledger.recompute(session, source, actor_id=actor_id, reason=f"applied to charge {target.id}", at=now)
        await ledger.record_offline_payment(session, target, method=method, reference=f"charge #{source.id}"[:100],
                                            actor_id=actor_id, amount_fen=settlement.applied_fen, at=now)
    if settlement.surplus_fen:
        await _take(session, source, settlement.surplus_fen, cause="advance_surplus", reason=f"surplus over charge #{target.id}",
                    status_for={"stripe": "pending", "offline": "succeeded"}, actor_id=actor_id, now=now)
        await ledger.recompute(session, source, actor_id=actor_id, reason="surplus refunded", at=now)
    audit.record(session, action="carry_over", entity="charge", entity_id=source.id, actor_id=actor_id,
                 actor_kind="user" if actor_id else "system",
                 after={"to_charge": target.id, "applied_fen": settlement.applied_fen, "surplus_fen": settlement.surplus_fen,
                        "shortfall_fen": settlement.shortfall_fen}, reason=reason, at=now)
    return settlement


async def apply_advance(session: AsyncSession, service_charge: Charge, *, actor_id: int | None = None,
                        now: datetime | None = None) -> rules.AdvanceSettlement | None:
    """Cover a booking's service charge from its advance (see the module's docstring); an
    advance never paid is voided, as the service charge replaces it."""
    if service_charge.booking_id is None or service_charge.kind != "service":
        return None
    now = now or utcnow()
    advances = list((await session.execute(
        select(Charge).where(Charge.booking_id == service_charge.booking_id, Charge.kind == "advance",
                             Charge.status.in_(("unpaid", "paid"))).order_by(Charge.id)
    )).scalars())
    result = None
    for advance in advances:
        if advance.paid_fen == 0 and advance.status == "unpaid":
            advance.status, advance.void_reason = "void", f"service done; charge #{service_charge.id} replaces the advance"
            audit.record(session, action="void", entity="charge", entity_id=advance.id, actor_id=actor_id, actor_kind="system",
                         before={"status": "unpaid"}, after={"status": "void"}, reason=advance.void_reason, at=now)
            continue
        if not sum(fen for _p, fen in await _available(session, advance.id)):
            continue  # already carried over (its surplus refund may still be under way)
        result = await carry_over(session, advance, service_charge, method="advance", reason="service done",
                                  actor_id=actor_id, now=now)
    await session.flush()
    return result


async def _cancelled_at(session: AsyncSession, booking: Booking) -> datetime:
    """When the booking was cancelled (from the audit log)."""
    at = (await session.execute(
        select(AuditEvent.at).where(AuditEvent.entity == "booking", AuditEvent.entity_id == booking.id,
                                    AuditEvent.action == "cancel").order_by(AuditEvent.at.desc()).limit(1)
    )).scalar_one_or_none()
    return at or booking.updated_at


async def settle_cancelled_advance(session: AsyncSession, charge_id: int, *, settings: Settings,
                                   now: datetime | None = None) -> str:
    """Refund one cancelled booking's advance by the resource's policy (once); void an
    advance never paid. Returns a line for reports ("" if nothing was due)."""
    now = now or utcnow()
    charge = await ledger.locked_charge(session, charge_id)
    done = (await session.execute(select(AuditEvent.id).where(
        AuditEvent.entity == "charge", AuditEvent.entity_id == charge.id, AuditEvent.action == SETTLED))).first()
    booking = await session.get(Booking, charge.booking_id) if charge.booking_id else None
    if done or booking is None or booking.status != "cancelled" or charge.kind != "advance":
        return ""
    if charge.status == "unpaid" and charge.paid_fen == 0:
        charge.status, charge.void_reason = "void", "booking cancelled before the advance was paid"
        audit.record(session, action=SETTLED, entity="charge", entity_id=charge.id, actor_id=None, actor_kind="system",
                     before={"status": "unpaid"}, after={"status": "void"}, reason=charge.void_reason, at=now)
        await session.flush()
        return f"charge {charge.id}: advance of cancelled booking {booking.id} voided (never paid)"
    if charge.status not in ("paid", "unpaid"):
        return ""  # processing: wait for Stripe's answer; refunded: nothing left
    resource = await session.get(Resource, charge.resource_id)
    held = sum(fen for _p, fen in await _available(session, charge.id))
    decision = rules.cancellation_refund(held, starts_at=booking.starts_at, cancelled_at=await _cancelled_at(session, booking),
                                         cancellation_hours=resource.cancellation_hours if resource else 24,
                                         late_percent=settings.late_cancellation_refund_percent)
    reason = {
        rules.CancellationRule.IN_TIME: "booking cancelled in time: full refund",
        rules.CancellationRule.LATE: f"booking cancelled late: {decision.percent}% refunded by the resource's policy",
    }[decision.rule]
    if decision.amount_fen:
        await _take(session, charge, decision.amount_fen, cause="cancellation", reason=reason,
                    status_for={"stripe": "pending", "offline": "succeeded"}, actor_id=None, now=now)
        await ledger.recompute(session, charge, reason=reason, at=now)
    audit.record(session, action=SETTLED, entity="charge", entity_id=charge.id, actor_id=None, actor_kind="system",
                 after={"refund_fen": decision.amount_fen, "kept_fen": held - decision.amount_fen, "rule": decision.rule.value},
                 reason=reason, at=now)
    await session.flush()
    return f"charge {charge.id}: {reason} ({decision.amount_fen} of {held} fen)"


async def cancelled_advances(session: AsyncSession) -> list[int]:
    """Advance charges of cancelled bookings not yet settled."""
    settled = exists().where(and_(AuditEvent.entity == "charge", AuditEvent.entity_id == Charge.id, AuditEvent.action == SETTLED))
    return list((await session.execute(
        select(Charge.id).join(Booking, Charge.booking_id == Booking.id)
        .where(Charge.kind == "advance", Booking.status == "cancelled", Charge.status.in_(("unpaid", "paid")), ~settled)
        .order_by(Charge.id)
    )).scalars())


async def pending_refunds(session: AsyncSession) -> list[int]:
    """Refunds recorded but not yet sent to Stripe."""
    return list((await session.execute(
        select(Refund.id).join(Payment, Refund.payment_id == Payment.id)
        .where(Refund.status == "pending", Refund.stripe_refund_id.is_(None), Payment.provider == "stripe")
        .order_by(Refund.id)
    )).scalars())


async def send_pending_refund(session: AsyncSession, gateway: Gateway, refund_id: int, *, now: datetime | None = None) -> str:
    """Send one recorded refund to Stripe with its idempotency key (a retry after a crash is
    answered with the same refund) and apply Stripe's answer."""
    now = now or utcnow()
    refund = await session.get(Refund, refund_id)
    if refund is None:
        return ""
    await ledger.locked_charge(session, refund.charge_id)
    await session.refresh(refund)
    if refund.status != "pending" or refund.stripe_refund_id:
        return ""
    payment = await session.get(Payment, refund.payment_id)
    if payment is None or not payment.stripe_payment_intent_id:
        return ""
    news = await gateway.create_refund(intent_id=payment.stripe_payment_intent_id, amount_fen=refund.amount_fen,
                                       metadata={"refund_id": str(refund.id), "charge_id": str(refund.charge_id)},
                                       idempotency_key=refund.idempotency_key)
    _verdict, change, _note = await services.apply_refund(session, news, reported_at=news.created_at or now, refund=refund)
    return str(change) if change else f"refund {refund.id} sent to Stripe ({news.status})"


async def sweep(database: Database, settings: Settings, gateway: Gateway | None) -> list[str]:
    """Settle cancelled bookings' advances, then send refunds waiting for Stripe; each item in
    its own transaction, so one failure holds back nothing else. Returns report lines."""
    lines: list[str] = []
    async with database.session() as session:
        cancelled = await cancelled_advances(session)
    for charge_id in cancelled:
        try:
            async with database.session(write=True) as session:
                line = await settle_cancelled_advance(session, charge_id, settings=settings)
                await session.commit()
        except FacilityShareError as exc:
            line = f"charge {charge_id}: {exc.message}"
        if line:
            lines.append(line)
    if gateway is None:
        return lines
    async with database.session() as session:
        waiting = await pending_refunds(session)
    for refund_id in waiting:
        try:
            async with database.session(write=True) as session:
                line = await send_pending_refund(session, gateway, refund_id)
                await session.commit()
        except FacilityShareError as exc:
            line = f"refund {refund_id}: {exc.message}"
        if line:
            lines.append(line)
    return lines


async def run_sweep(settings: Settings) -> list[str]:
    """One sweep with its own database and gateway (the worker and the CLI)."""
    database = Database(settings.database_url, null_pool=True)
    gateway = gateway_for(settings)
    try:
        return await sweep(database, settings, gateway)
    finally:
        await database.dispose()
        if gateway is not None:
            await gateway.close()


async def sweep_forever(database: Database, settings: Settings, interval: int, stop: asyncio.Event | None = None) -> None:
    """The web process's periodic payments sweep (SQLite mode, next to the expiry sweep), until
    ``stop`` is set."""
    gateway = gateway_for(settings)
    stop = stop or asyncio.Event()
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                break
            except TimeoutError:
                pass
            try:
                for line in await sweep(database, settings, gateway):
                    log.info("payments sweep: %s", line)
            except Exception:  # keep sweeping; the next round retries
                log.exception("payments sweep failed")
    finally:
        if gateway is not None:
            await gateway.close()


__all__ = ["apply_advance", "carry_over", "held_fen", "open_advance", "run_sweep", "settle_cancelled_advance", "sweep", "sweep_forever"]
