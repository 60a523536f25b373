"""Stripe's webhooks under attack and disorder, on SQLite and PostgreSQL, with recorded events
signed in the test with Stripe's scheme (v1 = HMAC-SHA256(secret, f"{t}.{payload}")):
a forged signature, a tampered body, an expired timestamp and a missing header are refused
with 400 and store nothing; a replayed event changes nothing; events delivered in reverse (or
any) order leave the same final state as in order.

These events are recorded rather than produced by localstripe, which sends only
payment_intent.succeeded and payment_intent.payment_failed: payment_intent.processing,
payment_intent.canceled, charge.refunded, refund.created and refund.updated.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from facility_share.db import Database
from facility_share.db.models import AuditEvent, Charge, Payment, Refund, StripeEvent
from facility_share.settings import load_settings
from facility_share.web.app import create_app
from tests.payments_peer import (
    WEBHOOK_SECRET,
    charge_refunded_object,
    event,
    free_port,
    intent_object,
    make_charge,
    refund_object,
    signed,
    stripe_env,
)
from tests.world import build_world

T0 = int(time.time()) - 120


@dataclass
class Hook:
    client: AsyncTestClient
    db: Database
    enterprise_id: int

    async def payment(self, total_fen: int = 10_000, *, status: str = "pending") -> tuple[int, int, str]:
        charge_id = await make_charge(self.db, self.enterprise_id, total_fen=total_fen)
        async with self.db.session(write=True) as session:
            payment = Payment(charge_id=charge_id, provider="stripe", status=status, currency="cny", amount_fen=total_fen,
                              method="card", idempotency_key=f"pay-{charge_id}-test")
            session.add(payment)
            await session.flush()
            payment.stripe_payment_intent_id = f"pi_test{payment.id:06d}"
            await session.commit()
            return charge_id, payment.id, payment.stripe_payment_intent_id

    async def deliver(self, evt: dict[str, Any], **kwargs: Any) -> Any:
        body, headers = signed(evt, **kwargs)
        return await self.client.post("/webhooks/stripe", content=body, headers=headers)

    async def state(self, charge_id: int) -> tuple[str, int, int, list[str]]:
        async with self.db.session() as session:
            charge = await session.get(Charge, charge_id)
            statuses = list((await session.execute(select(Payment.status).where(Payment.charge_id == charge_id).order_by(Payment.id))).scalars())
            return charge.status, charge.paid_fen, charge.refunded_fen, statuses

    async def count(self, model: Any, *where: Any) -> int:
        async with self.db.session() as session:
            return (await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


@pytest.fixture
async def hook(imported: Database, database_url: str) -> AsyncIterator[Hook]:
    world = await build_world(imported)
    # The gateway points at a closed port: these tests must not need Stripe's API.
    app = create_app(load_settings(stripe_env(database_url, f"http://127.0.0.1:{free_port()}")), database=imported)
    async with AsyncTestClient(app) as client:
        yield Hook(client, imported, world.enterprise_ids["member_a"])


def succeeded(intent_id: str, amount: int, at: int, **kwargs: Any) -> dict[str, Any]:
    return event("payment_intent.succeeded", intent_object(intent_id, "succeeded", amount, created=T0), created=at, **kwargs)


async def test_forged_tampered_expired_and_unsigned_events_are_refused_and_store_nothing(hook: Hook) -> None:
    charge_id, _payment_id, intent_id = await hook.payment()
    evt = succeeded(intent_id, 10_000, int(time.time()))
    forged = await hook.deliver(evt, secret="whsec_someone_else")
    assert forged.status_code == 400 and "signature does not match" in forged.json()["error"]["message"]
    body, headers = signed(evt)
    tampered = await hook.client.post("/webhooks/stripe", content=body.replace(b"10000", b"1"), headers=headers)
    assert tampered.status_code == 400
    expired = await hook.deliver(evt, at=int(time.time()) - 301)
    assert expired.status_code == 400 and "too old" in expired.json()["error"]["message"]
    unsigned = await hook.client.post("/webhooks/stripe", content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 400 and "Stripe-Signature" in unsigned.json()["error"]["message"]
    garbage = await hook.client.post("/webhooks/stripe", content=b"not json", headers={"Stripe-Signature": signed(evt)[1]["Stripe-Signature"]})
    assert garbage.status_code == 400
    assert await hook.count(StripeEvent) == 0
    assert await hook.state(charge_id) == ("unpaid", 0, 0, ["pending"])
    # The genuine delivery of the same event still works afterwards.
    assert (await hook.deliver(evt)).status_code == 200
    assert await hook.state(charge_id) == ("paid", 10_000, 0, ["succeeded"])


async def test_replayed_event_is_applied_once(hook: Hook) -> None:
    charge_id, payment_id, intent_id = await hook.payment(7_000)
    evt = succeeded(intent_id, 7_000, T0 + 10)
    first = await hook.deliver(evt)
    assert first.status_code == 200 and first.json() == {"received": evt["id"], "outcome": "applied", "replay": False}
    audits = await hook.count(AuditEvent)
    for _ in range(3):
        again = await hook.deliver(evt)
        assert again.status_code == 200 and again.json()["replay"] is True
    assert await hook.count(AuditEvent) == audits
    assert await hook.count(StripeEvent) == 1
    assert await hook.state(charge_id) == ("paid", 7_000, 0, ["succeeded"])
    async with hook.db.session() as session:
        payment = await session.get(Payment, payment_id)
    assert payment.amount_received_fen == 7_000 and payment.succeeded_at is not None


def history(intent_id: str, amount: int, steps: list[str]) -> list[dict[str, Any]]:
    """A PaymentIntent's life as Stripe would report it, one event per step, a second apart."""
    kinds = {"processing": "payment_intent.processing", "failed": "payment_intent.payment_failed",
             "succeeded": "payment_intent.succeeded", "canceled": "payment_intent.canceled"}
    return [
        event(kinds[step], intent_object(intent_id, step, amount, created=T0, decline="Your card was declined."), created=T0 + 1 + i)
        for i, step in enumerate(steps)
    ]


@pytest.mark.parametrize(
    ("steps", "final_payment", "final_charge"),
    [
        (["processing", "succeeded"], "succeeded", "paid"),
        (["failed", "processing", "succeeded"], "succeeded", "paid"),
        (["processing", "failed"], "failed", "unpaid"),
        (["failed", "canceled"], "canceled", "unpaid"),
        (["processing"], "processing", "processing"),
    ],
)
async def test_events_in_reverse_order_end_in_the_right_state(hook: Hook, steps: list[str], final_payment: str,
                                                              final_charge: str) -> None:
    charge_id, _payment_id, intent_id = await hook.payment(5_000)
    for evt in reversed(history(intent_id, 5_000, steps)):
        assert (await hook.deliver(evt)).status_code == 200
    status, paid_fen, _refunded, payments = await hook.state(charge_id)
    assert (status, payments) == (final_charge, [final_payment])
    assert paid_fen == (5_000 if final_payment == "succeeded" else 0)
    if len(steps) > 1:
        assert await hook.count(StripeEvent, StripeEvent.outcome == "stale") >= 1


async def test_every_order_of_a_retried_payment_ends_paid(hook: Hook) -> None:
    """processing → failed → processing → succeeded, delivered in all 24 orders."""
    steps = ["processing", "failed", "processing", "succeeded"]
    for order in itertools.permutations(range(len(steps))):
        charge_id, _payment_id, intent_id = await hook.payment(3_000)
        events = history(intent_id, 3_000, steps)
        for index in order:
            assert (await hook.deliver(events[index])).status_code == 200
        assert await hook.state(charge_id) == ("paid", 3_000, 0, ["succeeded"]), order


async def test_late_news_of_the_same_second_never_moves_a_payment_back(hook: Hook) -> None:
    charge_id, _payment_id, intent_id = await hook.payment(2_000)
    at = T0 + 50
    assert (await hook.deliver(succeeded(intent_id, 2_000, at))).status_code == 200
    late = event("payment_intent.processing", intent_object(intent_id, "processing", 2_000, created=T0), created=at)
    response = await hook.deliver(late)
    assert response.status_code == 200 and response.json()["outcome"] == "stale"
    assert await hook.state(charge_id) == ("paid", 2_000, 0, ["succeeded"])


async def paid_payment(hook: Hook, amount: int) -> tuple[int, int, str]:
    charge_id, payment_id, intent_id = await hook.payment(amount)
    assert (await hook.deliver(succeeded(intent_id, amount, T0 + 5))).status_code == 200
    return charge_id, payment_id, intent_id


async def test_refund_events_in_reverse_order_and_a_failed_refund(hook: Hook) -> None:
    charge_id, _payment_id, intent_id = await paid_payment(hook, 10_000)
    created = event("refund.created", refund_object("re_a", intent_id, 4_000, "pending", created=T0 + 20), created=T0 + 20)
    done = event("refund.updated", refund_object("re_a", intent_id, 4_000, "succeeded", created=T0 + 20), created=T0 + 21)
    for evt in (done, created):
        assert (await hook.deliver(evt)).status_code == 200
    assert await hook.state(charge_id) == ("paid", 10_000, 4_000, ["succeeded"])
    # A second refund, partial ones add up; then the first one fails at the bank.
    rest = event("refund.created", refund_object("re_b", intent_id, 6_000, "succeeded", created=T0 + 30), created=T0 + 30)
    assert (await hook.deliver(rest)).status_code == 200
    assert await hook.state(charge_id) == ("refunded", 10_000, 10_000, ["succeeded"])
    failed = event("refund.updated", refund_object("re_a", intent_id, 4_000, "failed", created=T0 + 20), created=T0 + 40)
    assert (await hook.deliver(failed)).status_code == 200
    assert await hook.state(charge_id) == ("paid", 10_000, 6_000, ["succeeded"])
    # A late "succeeded" for the failed refund is stale.
    stale = event("refund.updated", refund_object("re_a", intent_id, 4_000, "succeeded", created=T0 + 20), created=T0 + 22)
    assert (await hook.deliver(stale)).json()["outcome"] == "stale"
    assert await hook.state(charge_id) == ("paid", 10_000, 6_000, ["succeeded"])


async def test_charge_refunded_event_records_its_refunds_and_never_more_than_paid(hook: Hook) -> None:
    charge_id, _payment_id, intent_id = await paid_payment(hook, 8_000)
    refunds = [refund_object("re_x", intent_id, 3_000, "succeeded", created=T0 + 30)]
    evt = event("charge.refunded", charge_refunded_object(intent_id, 8_000, refunds, created=T0), created=T0 + 31)
    assert (await hook.deliver(evt)).json()["outcome"] == "applied"
    assert await hook.state(charge_id) == ("paid", 8_000, 3_000, ["succeeded"])
    # A refund beyond what is left (a peer that allows it) is not recorded.
    too_much = event("refund.created", refund_object("re_y", intent_id, 5_001, "succeeded", created=T0 + 40), created=T0 + 40)
    response = await hook.deliver(too_much)
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    assert await hook.state(charge_id) == ("paid", 8_000, 3_000, ["succeeded"])
    assert await hook.count(Refund) == 1


async def test_unknown_objects_and_types_are_stored_as_ignored(hook: Hook) -> None:
    stranger = succeeded("pi_not_ours", 1_000, T0 + 1)
    assert (await hook.deliver(stranger)).json()["outcome"] == "ignored"
    other = event("customer.created", {"id": "cus_1", "object": "customer"}, created=T0 + 2)
    assert (await hook.deliver(other)).json()["outcome"] == "ignored"
    async with hook.db.session() as session:
        notes = dict((await session.execute(select(StripeEvent.id, StripeEvent.note))).all())
    assert "no local payment for pi_not_ours" in notes[stranger["id"]]


async def test_webhook_is_absent_in_offline_mode(imported: Database, database_url: str) -> None:
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url, "FACILITY_SHARE_SWEEP_INTERVAL": "0"}),
                     database=imported)
    async with AsyncTestClient(app) as client:
        body, headers = signed(succeeded("pi_x", 100, T0), secret=WEBHOOK_SECRET)
        response = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 404
