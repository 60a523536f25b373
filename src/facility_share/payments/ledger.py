"""A charge's money in the database: its sums follow its payments and refunds.

No Stripe here, so the usage context (offline payments marked by a manager) and the Stripe
side share one way of keeping ``charge.paid_fen``, ``charge.refunded_fen``,
``payment.refunded_fen`` and the charge's status right: sums are recomputed from the rows,
never incremented, so applying the same news twice cannot count it twice.

Callers own the transaction (we flush).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share import audit
from facility_share.db.models import Charge, Payment, Refund, utcnow
from facility_share.errors import Conflict, NotFound
from facility_share.payments import rules

OFFLINE_METHODS = ("bank_transfer", "invoice", "cash", "advance")


async def locked_charge(session: AsyncSession, charge_id: int) -> Charge:
    """The charge, locked for the rest of the transaction on PostgreSQL (SQLite's write
    transactions are already serialised by ``BEGIN IMMEDIATE``).

    Raises:
        NotFound: no such charge.
    """
    statement = select(Charge).where(Charge.id == charge_id)
    if session.bind.dialect.name == "postgresql":
        statement = statement.with_for_update()
    charge = (await session.execute(statement)).scalar_one_or_none()
    if charge is None:
        raise NotFound(f"no charge {charge_id}")
    return charge


async def payments_of(session: AsyncSession, charge_id: int) -> list[Payment]:
    return list((await session.execute(select(Payment).where(Payment.charge_id == charge_id).order_by(Payment.id))).scalars())


async def refunds_of(session: AsyncSession, charge_id: int) -> list[Refund]:
    return list((await session.execute(select(Refund).where(Refund.charge_id == charge_id).order_by(Refund.id))).scalars())


def money_as_of(charge: Charge, payments: list[Payment], refunds: list[Refund]) -> datetime | None:
    """From when the charge's sums over these succeeded payments and refunds hold: the latest
    time one of them succeeded (the charge's creation if none did); None if one has no time,
    since a cut-off could then not tell whether it counts (settlements then read the rows)."""
    times = [row.succeeded_at for row in (*payments, *refunds)]
    if any(at is None for at in times):
        return None
    return max([charge.created_at, *times])  # type: ignore[type-var]


async def recompute(session: AsyncSession, charge: Charge, *, actor_id: int | None = None, actor_kind: str = "system",
                    reason: str = "", at: datetime | None = None) -> Charge:
    """Bring the charge's and its payments' sums and the charge's status in line with the rows,
    and write an audit event if the charge's status or sums changed."""
    await session.flush()
    payments = await payments_of(session, charge.id)
    refunds = await refunds_of(session, charge.id)
    for payment in payments:
        payment.refunded_fen = sum(r.amount_fen for r in refunds if r.payment_id == payment.id and r.status == "succeeded")
    succeeded = [p for p in payments if p.status == "succeeded"]
    before = {"status": charge.status, "paid_fen": charge.paid_fen, "refunded_fen": charge.refunded_fen}
    charge.paid_fen = sum(p.amount_received_fen for p in succeeded)
    charge.refunded_fen = sum(r.amount_fen for r in refunds if r.status == "succeeded")
    charge.money_as_of = money_as_of(charge, succeeded, [r for r in refunds if r.status == "succeeded"])
    in_flight = any(p.status == "processing" for p in payments)
    charge.status = rules.charge_status(charge.status, total_fen=charge.total_fen, paid_fen=charge.paid_fen,
                                        refunded_fen=charge.refunded_fen, in_flight=in_flight)
    if succeeded:
        last = max(succeeded, key=lambda p: (p.succeeded_at or p.updated_at, p.id))
        charge.paid_at = last.succeeded_at or last.updated_at
        charge.payment_method = last.method[:20]
        charge.payment_reference = (last.reference or last.stripe_payment_intent_id or "")[:100]
    elif charge.status in ("unpaid", "processing"):
        charge.paid_at = None
    after = {"status": charge.status, "paid_fen": charge.paid_fen, "refunded_fen": charge.refunded_fen}
    if after != before:
        if charge.paid_fen > charge.total_fen:
            # Two payments met one charge (e.g. paid online after the unit recorded a transfer):
            # the money is real; the unit refunds the difference.
            reason = (reason + "; " if reason else "") + f"overpaid by {charge.paid_fen - charge.total_fen} fen"
        audit.record(session, action="money", entity="charge", entity_id=charge.id, actor_id=actor_id,
                     actor_kind=actor_kind, before=before, after=after, reason=reason, at=at)
    await session.flush()
    return charge


async def record_offline_payment(session: AsyncSession, charge: Charge, *, method: str, reference: str,
                                 actor_id: int | None, amount_fen: int | None = None, at: datetime | None = None) -> Payment | None:
    """A payment received outside Stripe (bank transfer, invoice, cash, or an advance), born
    succeeded; by default for what is still outstanding on the charge. A charge of nothing
    (a free service) is simply settled, with no payment row.

    Raises:
        Conflict: the charge is void, refunded, already paid, or has nothing to pay.
    """
    if charge.status not in ("unpaid",):
        raise Conflict(f"the charge is {charge.status}; only unpaid charges can be marked paid")
    due = rules.outstanding(charge.total_fen, charge.paid_fen)
    amount = due if amount_fen is None else amount_fen
    now = at or utcnow()
    if charge.total_fen == 0 and amount == 0:
        charge.status, charge.paid_at = "paid", now
        charge.payment_method, charge.payment_reference = method[:20], reference[:100]
        await session.flush()
        return None
    if amount <= 0 or amount > due:
        raise Conflict(f"the charge has {due} fen outstanding; an offline payment of {amount} fen does not fit")
    payment = Payment(
        charge_id=charge.id, provider="offline", status="succeeded", currency="cny", amount_fen=amount,
        amount_received_fen=amount, refunded_fen=0, method=method[:20], reference=reference[:100],
        idempotency_key=f"offline-{charge.id}-{uuid.uuid4().hex}", succeeded_at=now, created_by_id=actor_id,
        created_at=now, updated_at=now,
    )
    session.add(payment)
    await session.flush()
    audit.record(session, action="record", entity="payment", entity_id=payment.id, actor_id=actor_id,
                 after={"charge_id": charge.id, "provider": "offline", "method": payment.method, "amount_fen": amount,
                        "reference": payment.reference}, at=now)
    await recompute(session, charge, actor_id=actor_id, actor_kind="user" if actor_id else "system",
                    reason=f"offline payment {payment.method}", at=now)
    return payment


async def net_paid_by(session: AsyncSession, cutoff: datetime, charge_ids: list[int] | None = None) -> dict[int, int]:
    """Per charge, what had been received and not refunded by ``cutoff`` (fen): succeeded
    payments by their ``succeeded_at`` minus succeeded refunds by theirs. Charges with nothing
    left are omitted. This is the amount finance's subsidy computation counts."""
    paid = select(Payment.charge_id, func.sum(Payment.amount_received_fen)).where(
        Payment.status == "succeeded", Payment.succeeded_at <= cutoff
    ).group_by(Payment.charge_id)
    refunded = select(Refund.charge_id, func.sum(Refund.amount_fen)).where(
        Refund.status == "succeeded", Refund.succeeded_at <= cutoff
    ).group_by(Refund.charge_id)
    if charge_ids is not None:
        paid = paid.where(Payment.charge_id.in_(charge_ids))
        refunded = refunded.where(Refund.charge_id.in_(charge_ids))
    totals = {charge_id: int(fen) for charge_id, fen in (await session.execute(paid)).all()}
    for charge_id, fen in (await session.execute(refunded)).all():
        totals[charge_id] = totals.get(charge_id, 0) - int(fen)
    return {charge_id: fen for charge_id, fen in totals.items() if fen > 0}
