"""A charge's ``money_as_of``: the payments ledger keeps it with the charge's sums, and the
settlement's facts read the sums through it exactly as they would read the payment and refund
rows (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from facility_share.db import Database
from facility_share.db.models import Charge, Payment, Refund, Resource
from facility_share.finance import facts
from facility_share.finance.periods import parse_period
from facility_share.payments import ledger
from tests.world import build_world

ISSUED = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)


async def _charge(session, enterprise_id: int, served: datetime, fen: int, *, code: str = "WQ-TJMAT-SEM01") -> Charge:  # type: ignore[no-untyped-def]
    resource = (await session.execute(select(Resource).where(Resource.code == code))).scalar_one()
    charge = Charge(kind="service", resource_id=resource.id, enterprise_id=enterprise_id, service_date=served,
                    customer_class="district", lines=[], total_fen=fen, status="unpaid", created_at=served + timedelta(hours=1))
    session.add(charge)
    await session.flush()
    return charge


def _refund(payment: Payment, fen: int, at: datetime | None, key: str, status: str = "succeeded") -> Refund:
    return Refund(payment_id=payment.id, charge_id=payment.charge_id, amount_fen=fen, status=status, cause="manager",
                  reason="r", idempotency_key=key, succeeded_at=at)


async def test_the_ledger_keeps_money_as_of(imported: Database) -> None:
    world = await build_world(imported)
    enterprise = world.enterprise_ids["member_a"]
    async with imported.session(write=True) as session:
        charge = await _charge(session, enterprise, ISSUED, 10_000)
        # Issued with nothing paid: its sums (zero) hold from its creation.
        assert charge.money_as_of == ISSUED + timedelta(hours=1)
        paid_at = ISSUED + timedelta(days=3)
        payment = await ledger.record_offline_payment(session, charge, method="bank_transfer", reference="A", actor_id=None,
                                                      at=paid_at)
        assert payment is not None and charge.money_as_of == paid_at
        session.add(_refund(payment, 2_000, paid_at + timedelta(days=5), "r-1"))
        session.add(_refund(payment, 1_000, None, "r-2", status="pending"))
        await ledger.recompute(session, charge)
        assert (charge.refunded_fen, charge.money_as_of) == (2_000, paid_at + timedelta(days=5))
        # A succeeded row without a time: no cut-off can tell whether it counts.
        session.add(_refund(payment, 500, None, "r-3"))
        await ledger.recompute(session, charge)
        assert charge.money_as_of is None

        # A charge inserted with its sums already set (its payments added afterwards) is unknown.
        inserted = Charge(kind="service", resource_id=charge.resource_id, enterprise_id=enterprise, service_date=ISSUED,
                          customer_class="district", lines=[], total_fen=500, status="paid", paid_fen=500)
        session.add(inserted)
        await session.flush()
        assert inserted.money_as_of is None


async def test_facts_read_the_sums_as_the_rows_would(imported: Database) -> None:
    """The same groups and incomes whether the charges' sums are known or every charge's
    payments and refunds are read, at cut-offs before, between and after the money moved."""
    world = await build_world(imported)
    a, b = world.enterprise_ids["member_a"], world.enterprise_ids["member_b"]
    async with imported.session(write=True) as session:
        specs = [  # enterprise, served, fen, paid after (days), refunds (after days, fen), resource
            (a, ISSUED, 10_000, 3, ((5, 2_000),), "WQ-TJMAT-SEM01"),
            (a, ISSUED + timedelta(days=1), 4_000, 40, (), "WQ-TJMAT-SEM01"),
            (a, ISSUED + timedelta(days=2), 6_000, 3, ((60, 6_000),), "WQ-TJMAT-SEM01"),
            (a, ISSUED + timedelta(days=3), 8_000, None, (), "WQ-TJMAT-SEM01"),
            (b, ISSUED, 9_000, 1, ((2, 1_000), (70, 500)), "WQ-TJMAT-SEM01"),
            (b, ISSUED + timedelta(days=5), 3_000, 90, (), "WQ-TJMAT-SEM01"),
        ]
        for enterprise, served, fen, paid_after, refunds, code in specs:
            charge = await _charge(session, enterprise, served, fen, code=code)
            if paid_after is None:
                continue
            paid_at = served + timedelta(days=paid_after)
            payment = await ledger.record_offline_payment(session, charge, method="bank_transfer", reference="x",
                                                          actor_id=None, at=paid_at)
            assert payment is not None
            for number, (after, amount) in enumerate(refunds):
                session.add(_refund(payment, amount, served + timedelta(days=after), f"r-{charge.id}-{number}"))
            await ledger.recompute(session, charge)
        # One paid charge whose sums the ledger never saw: read from its rows.
        odd = await _charge(session, b, ISSUED + timedelta(days=6), 7_000)
        session.add(Payment(charge_id=odd.id, provider="offline", status="succeeded", amount_fen=7_000, amount_received_fen=7_000,
                            method="cash", idempotency_key="odd", succeeded_at=ISSUED + timedelta(days=8)))
        odd.paid_fen, odd.status, odd.money_as_of = 7_000, "paid", None
        await session.commit()

    period = parse_period("2026")
    for cutoff in (ISSUED + timedelta(days=4), ISSUED + timedelta(days=30), ISSUED + timedelta(days=66),
                   ISSUED + timedelta(days=200)):
        async with imported.session(write=True) as session:
            known = await facts.service_charges(session, period, cutoff)
            await session.execute(update(Charge).values(money_as_of=None))
            from_rows = await facts.service_charges(session, period, cutoff)
            await session.rollback()
        assert known == from_rows
        assert sum(g.charges for g in known.groups) == len(specs) + 1
    # And the sums at the last cut-off are the charges' own.
    assert sum(g.paid_fen for g in known.groups) == 10_000 + 4_000 + 6_000 + 9_000 + 3_000 + 7_000
    assert sum(g.refunded_fen for g in known.groups) == 2_000 + 6_000 + 1_000 + 500
