"""What finance counts: per charge, money received and not refunded by a cut-off time, from
payments' and refunds' own times (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from facility_share.db import Database
from facility_share.db.models import Charge, Payment, Refund
from facility_share.payments import ledger
from tests.payments_peer import make_charge
from tests.world import build_world

T = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


async def test_net_paid_by_a_cut_off(imported: Database) -> None:
    world = await build_world(imported)
    paid = await make_charge(imported, world.enterprise_ids["member_a"], total_fen=10_000)
    later = await make_charge(imported, world.enterprise_ids["member_a"], total_fen=5_000)
    never = await make_charge(imported, world.enterprise_ids["member_b"], total_fen=7_000)
    async with imported.session(write=True) as session:
        charge = await session.get(Charge, paid)
        payment = await ledger.record_offline_payment(session, charge, method="bank_transfer", reference="A", actor_id=None, at=T)
        session.add(Refund(payment_id=payment.id, charge_id=paid, amount_fen=2_500, status="succeeded", cause="manager",
                           reason="r", idempotency_key="r-1", succeeded_at=T + timedelta(days=10)))
        session.add(Refund(payment_id=payment.id, charge_id=paid, amount_fen=1_000, status="pending", cause="manager",
                           reason="r", idempotency_key="r-2"))
        session.add(Payment(charge_id=never, provider="stripe", status="processing", amount_fen=7_000, idempotency_key="p-n",
                            stripe_payment_intent_id="pi_never"))
        await ledger.recompute(session, charge)
        await ledger.record_offline_payment(session, await session.get(Charge, later), method="invoice", reference="B",
                                            actor_id=None, at=T + timedelta(days=20))
        await session.commit()
    async with imported.session() as session:
        assert await ledger.net_paid_by(session, T - timedelta(seconds=1)) == {}
        assert await ledger.net_paid_by(session, T) == {paid: 10_000}
        assert await ledger.net_paid_by(session, T + timedelta(days=15)) == {paid: 7_500}
        assert await ledger.net_paid_by(session, T + timedelta(days=30)) == {paid: 7_500, later: 5_000}
        assert await ledger.net_paid_by(session, T + timedelta(days=30), [later, never]) == {later: 5_000}
        charge = await session.get(Charge, paid)
    assert (charge.status, charge.paid_fen, charge.refunded_fen) == ("paid", 10_000, 2_500)
