"""Demo payments: some finished services paid online (card, Alipay, WeChat Pay), one partly
refunded, one payment still being confirmed and one declined card, so that the charge and
payment pages show every state. The Stripe ids are made up (``pi_demo…``); nothing is sent to
Stripe."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.db.models import Charge, Payment, Refund
from facility_share.payments import ledger

METHODS = ("card", "alipay", "wechat_pay")


def _payment(charge: Charge, n: int, status: str, at: datetime) -> Payment:
    return Payment(
        charge_id=charge.id, provider="stripe", status=status, currency="cny", amount_fen=charge.total_fen - charge.paid_fen,
        amount_received_fen=charge.total_fen - charge.paid_fen if status == "succeeded" else 0,
        method="card" if status == "failed" else METHODS[n % len(METHODS)], stripe_payment_intent_id=f"pi_demo{charge.id:010d}",
        stripe_charge_id=f"ch_demo{charge.id:010d}" if status in ("succeeded", "failed") else "",
        idempotency_key=f"demo-pay-{charge.id}", succeeded_at=at if status == "succeeded" else None, stripe_updated_at=at,
        failure_code="card_declined" if status == "failed" else "",
        failure_message="Your card was declined." if status == "failed" else "",
        created_at=at - timedelta(minutes=3), updated_at=at,
    )


async def add_demo_payments(session: AsyncSession, enterprise_id: int, now: datetime) -> None:
    """Online payments on the unpaid service charges of one enterprise (the demo's first)."""
    unpaid = list((await session.execute(
        select(Charge).where(Charge.enterprise_id == enterprise_id, Charge.status == "unpaid", Charge.kind == "service",
                             Charge.total_fen > 0)
        .order_by(Charge.service_date)
    )).scalars())
    # Keep the two newest unpaid, to pay by hand in the demo.
    plan = ["succeeded"] * max(0, len(unpaid) - 4) + ["failed", "processing"]
    for n, (charge, status) in enumerate(zip(unpaid, plan, strict=False)):
        at = min(charge.service_date + timedelta(days=2), now - timedelta(hours=1))
        payment = _payment(charge, n, status, at)
        session.add(payment)
        await session.flush()
        if status == "succeeded" and n == 0:
            share = charge.total_fen // 5
            session.add(Refund(payment_id=payment.id, charge_id=charge.id, amount_fen=share, status="succeeded", cause="manager",
                               reason="一个样品未检测，退还部分费用 / one sample not measured", stripe_refund_id=f"re_demo{charge.id:010d}",
                               idempotency_key=f"demo-refund-{charge.id}", succeeded_at=at + timedelta(days=1),
                               created_at=at + timedelta(days=1), updated_at=at + timedelta(days=1)))
        await ledger.recompute(session, charge, reason="demo data", at=at)
