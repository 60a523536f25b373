"""Paying through Stripe end to end, against localstripe as a real HTTP peer, on SQLite and
PostgreSQL: the platform runs over HTTP with its webhook registered at localstripe; the
enterprise starts a payment on its pages, the card is confirmed at localstripe as Stripe.js
would, and localstripe's signed webhook makes the charge paid. A declined card leaves the charge
unpaid with the reason shown; refunds (partial, then the rest) go to localstripe and never
exceed what was paid; reconciliation repairs what a missed webhook left behind.

localstripe sends payment_intent.succeeded and payment_intent.payment_failed itself. It sends
no refund events: the refund tests below read Stripe's answer to the refund call, and a
recorded charge.refunded / refund.created event (signed in the test) covers the webhook side.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import func, select

from facility_share.accounts import services as accounts
from facility_share.accounts.auth import SESSION_COOKIE
from facility_share.db import Database
from facility_share.db.models import AuditEvent, Charge, Payment, Refund, StripeEvent
from facility_share.payments import services
from facility_share.payments.gateway import Gateway
from facility_share.settings import load_settings
from facility_share.web.app import create_app
from tests.payments_peer import (
    CARD_DECLINED,
    SECRET_KEY,
    StripePeer,
    charge_refunded_object,
    event,
    make_charge,
    refund_object,
    serving,
    signed,
    stripe_env,
    wait_for,
)
from tests.world import build_world

HTML = {"Accept": "text/html"}


@dataclass
class Site:
    url: str
    db: Database
    peer: StripePeer
    member: httpx.AsyncClient
    manager: httpx.AsyncClient
    enterprise_id: int

    async def charge(self, charge_id: int) -> Charge:
        async with self.db.session() as session:
            return await session.get(Charge, charge_id)

    async def payments(self, charge_id: int) -> list[Payment]:
        async with self.db.session() as session:
            return list((await session.execute(select(Payment).where(Payment.charge_id == charge_id).order_by(Payment.id))).scalars())

    async def refunds(self, charge_id: int) -> list[Refund]:
        async with self.db.session() as session:
            return list((await session.execute(select(Refund).where(Refund.charge_id == charge_id).order_by(Refund.id))).scalars())

    async def count(self, model: Any, *where: Any) -> int:
        async with self.db.session() as session:
            return (await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def signed_in(db: Database, url: str, user_id: int) -> httpx.AsyncClient:
    async with db.session(write=True) as session:
        token = await accounts.start_session(session, user_id, "127.0.0.1", "pytest")
        await session.commit()
    client = httpx.AsyncClient(base_url=url, headers=HTML, cookies={SESSION_COOKIE: token, "lang": "en"}, timeout=20)
    await client.get("/")  # the CSRF cookie, as a browser gets it
    return client


async def form_post(client: httpx.AsyncClient, path: str, data: dict[str, str] | None = None) -> httpx.Response:
    return await client.post(path, data={**(data or {}), "_csrf_token": client.cookies.get("fs_csrf") or ""})


@pytest.fixture
async def site(imported: Database, peer: StripePeer, database_url: str) -> AsyncIterator[Site]:
    world = await build_world(imported)
    app = create_app(load_settings(stripe_env(database_url, peer.url)), database=imported)
    async with serving(app) as url:
        peer.register_webhook(url + "/webhooks/stripe")
        member = await signed_in(imported, url, world["member_a"].user_id)
        manager = await signed_in(imported, url, world["manager"].user_id)
        try:
            yield Site(url, imported, peer, member, manager, world.enterprise_ids["member_a"])
        finally:
            await member.aclose()
            await manager.aclose()


async def start(site: Site, charge_id: int) -> Payment:
    response = await form_post(site.member, f"/me/charges/{charge_id}/pay")
    assert response.status_code == 303, response.text[-2000:]
    payment_id = int(response.headers["location"].rsplit("/", 1)[1])
    (payment,) = [p for p in await site.payments(charge_id) if p.id == payment_id]
    return payment


async def paid(site: Site, charge_id: int) -> Charge:
    async def check() -> Charge | None:
        charge = await site.charge(charge_id)
        return charge if charge.status == "paid" else None

    charge = await wait_for(check)
    assert charge, f"charge {charge_id} is still {(await site.charge(charge_id)).status}"
    return charge


async def test_card_payment_is_confirmed_by_localstripes_signed_webhook(site: Site) -> None:
    charge_id = await make_charge(site.db, site.enterprise_id, total_fen=12_345)
    page = await site.member.get(f"/me/charges/{charge_id}/pay")
    assert page.status_code == 200 and "Pay ¥12,345.00 online" not in page.text and "Pay ¥123.45 online" in page.text

    payment = await start(site, charge_id)
    assert payment.status == "pending" and payment.provider == "stripe" and payment.amount_fen == 12_345
    assert payment.stripe_payment_intent_id and payment.stripe_payment_intent_id.startswith("pi_")
    intent = await site.peer.intent(payment.stripe_payment_intent_id)
    assert (intent.amount, intent.currency, intent.status) == (12_345, "cny", "requires_payment_method")
    assert intent.metadata.to_dict() == {"charge_id": str(charge_id), "payment_id": str(payment.id)}

    # A second click (or a reload of the form) reuses the same attempt: one intent, one row.
    assert (await start(site, charge_id)).id == payment.id
    assert len(await site.payments(charge_id)) == 1

    element = await site.member.get(f"/me/payments/{payment.id}")
    assert element.status_code == 200
    assert "https://js.stripe.com/v3/" in element.text and 'data-key="pk_test_' in element.text
    assert f'data-secret="{intent.client_secret}"' in element.text
    assert element.headers["cache-control"] == "no-store"

    assert await site.peer.pay(payment.stripe_payment_intent_id) == "succeeded"
    back = await site.member.get(f"/me/payments/{payment.id}/return",
                                 params={"payment_intent": payment.stripe_payment_intent_id, "redirect_status": "succeeded"})
    assert back.status_code == 303
    assert (await site.charge(charge_id)).status in ("processing", "paid")

    charge = await paid(site, charge_id)
    assert (charge.paid_fen, charge.refunded_fen, charge.payment_method) == (12_345, 0, "card")
    (payment,) = await site.payments(charge_id)
    assert payment.status == "succeeded" and payment.amount_received_fen == 12_345
    assert payment.succeeded_at is not None and payment.stripe_charge_id.startswith("ch_")
    assert await site.count(StripeEvent, StripeEvent.type == "payment_intent.succeeded", StripeEvent.outcome == "applied") == 1
    assert await site.count(AuditEvent, AuditEvent.entity == "payment", AuditEvent.action == "stripe_succeeded") == 1
    assert await site.count(AuditEvent, AuditEvent.entity == "charge", AuditEvent.entity_id == charge_id) >= 1
    listing = await site.member.get("/me/charges")
    assert re.search(rf'id="charge-{charge_id}".*?charge-paid', listing.text, re.S)
    # Paid: the pay form is gone, a new attempt is refused.
    again = await form_post(site.member, f"/me/charges/{charge_id}/pay")
    assert again.status_code == 409 and "only unpaid charges can be paid" in again.text


async def test_declined_card_leaves_the_charge_unpaid_with_the_reason_shown(site: Site) -> None:
    charge_id = await make_charge(site.db, site.enterprise_id, total_fen=8_800)
    payment = await start(site, charge_id)
    with pytest.raises(stripe.CardError) as declined:
        await site.peer.pay(payment.stripe_payment_intent_id, CARD_DECLINED)
    assert declined.value.code == "card_declined" and declined.value.http_status == 402

    async def failed() -> Payment | None:
        (row,) = await site.payments(charge_id)
        return row if row.status == "failed" else None

    row = await wait_for(failed)
    assert row, "the payment_failed webhook did not arrive"
    assert row.failure_code == "card_declined" and row.failure_message == "Your card was declined."
    charge = await site.charge(charge_id)
    assert (charge.status, charge.paid_fen) == ("unpaid", 0)
    listing = await site.member.get("/me/charges")
    assert "The last online payment was declined: Your card was declined." in listing.text
    page = await site.member.get(f"/me/payments/{payment.id}")
    assert "The payment was declined" in page.text and "Your card was declined." in page.text
    # The payer may try again on the same attempt (localstripe cannot confirm a declined intent
    # twice; the webhook tests cover a success after a failure with recorded events).
    assert "data-secret=" in page.text
    assert (await start(site, charge_id)).id == payment.id


async def pay_fully(site: Site, charge_id: int) -> Payment:
    payment = await start(site, charge_id)
    await site.peer.pay(payment.stripe_payment_intent_id)
    await paid(site, charge_id)
    (payment,) = await site.payments(charge_id)
    return payment


async def test_partial_then_full_refund_never_more_than_paid(site: Site) -> None:
    charge_id = await make_charge(site.db, site.enterprise_id, total_fen=12_345)
    payment = await pay_fully(site, charge_id)
    intent_id = payment.stripe_payment_intent_id
    refund_url = f"/manage/charges/{charge_id}/refund"

    # More than was paid: refused here, before Stripe is asked (localstripe would accept it).
    too_much = await form_post(site.manager, refund_url, {"unit": "WQ-TJMAT", "amount": "123.46", "reason": "overcharged"})
    assert too_much.status_code == 409 and "can still be refunded" in too_much.text
    assert await site.peer.refunds(intent_id) == []
    no_reason = await form_post(site.manager, refund_url, {"unit": "WQ-TJMAT", "amount": "10", "reason": ""})
    assert no_reason.status_code == 400 and not await site.refunds(charge_id)

    partial = await form_post(site.manager, refund_url, {"unit": "WQ-TJMAT", "amount": "30.00", "reason": "one sample not measured"})
    assert partial.status_code == 303, partial.text[-2000:]
    (refund,) = await site.refunds(charge_id)
    assert (refund.amount_fen, refund.status, refund.cause) == (3_000, "succeeded", "manager")
    assert refund.stripe_refund_id and refund.succeeded_at is not None
    at_stripe = await site.peer.refunds(intent_id)
    assert [(r.id, r.amount, r.status) for r in at_stripe] == [(refund.stripe_refund_id, 3_000, "succeeded")]
    charge = await site.charge(charge_id)
    assert (charge.status, charge.paid_fen, charge.refunded_fen) == ("paid", 12_345, 3_000)

    rest = await form_post(site.manager, refund_url, {"unit": "WQ-TJMAT", "amount": "93.45", "reason": "service cancelled"})
    assert rest.status_code == 303
    charge = await site.charge(charge_id)
    assert (charge.status, charge.refunded_fen) == ("refunded", 12_345)
    assert sum(r.amount for r in await site.peer.refunds(intent_id)) == 12_345
    (payment,) = await site.payments(charge_id)
    assert payment.refunded_fen == 12_345

    one_fen = await form_post(site.manager, refund_url, {"unit": "WQ-TJMAT", "amount": "0.01", "reason": "again"})
    assert one_fen.status_code == 409
    assert len(await site.peer.refunds(intent_id)) == 2 and len(await site.refunds(charge_id)) == 2

    # localstripe sends no charge.refunded: a recorded one (signed here) repeats what we know.
    refunds = [refund_object(r.stripe_refund_id, intent_id, r.amount_fen, "succeeded", created=int(time.time()))
               for r in await site.refunds(charge_id)]
    body, headers = signed(event("charge.refunded", charge_refunded_object(intent_id, 12_345, refunds, created=int(time.time())),
                                 created=int(time.time())))
    response = await site.member.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200
    charge = await site.charge(charge_id)
    assert (charge.status, charge.refunded_fen) == ("refunded", 12_345) and len(await site.refunds(charge_id)) == 2


async def test_refund_made_at_stripe_is_recorded_from_a_signed_event(site: Site) -> None:
    charge_id = await make_charge(site.db, site.enterprise_id, total_fen=5_000)
    payment = await pay_fully(site, charge_id)
    outside = await site.peer.refund(payment.stripe_payment_intent_id, 1_200)
    obj = refund_object(outside.id, payment.stripe_payment_intent_id, 1_200, "succeeded", created=outside.created)
    body, headers = signed(event("refund.created", obj, created=outside.created))
    assert (await site.member.post("/webhooks/stripe", content=body, headers=headers)).status_code == 200
    (refund,) = await site.refunds(charge_id)
    assert (refund.amount_fen, refund.cause, refund.stripe_refund_id) == (1_200, "stripe", outside.id)
    charge = await site.charge(charge_id)
    assert (charge.status, charge.refunded_fen) == ("paid", 1_200)


async def test_reconcile_repairs_a_payment_whose_webhook_was_missed(site: Site) -> None:
    charge_id = await make_charge(site.db, site.enterprise_id, total_fen=4_200)
    payment = await start(site, charge_id)
    site.peer.unregister_webhook()  # the platform is "down" when Stripe confirms
    paid_at = int(time.time())
    await site.peer.pay(payment.stripe_payment_intent_id)
    outside = await site.peer.refund(payment.stripe_payment_intent_id, 200)
    await asyncio.sleep(1.5)  # reconciled later than it was paid
    assert (await site.charge(charge_id)).status == "unpaid"

    gateway = Gateway(SECRET_KEY, api_base=site.peer.url)
    try:
        async with site.db.session(write=True) as session:
            changes = await services.reconcile_payment(session, gateway, payment.id)
            await session.commit()
        async with site.db.session(write=True) as session:
            again = await services.reconcile_payment(session, gateway, payment.id)
            await session.commit()
    finally:
        await gateway.close()
    assert [str(c) for c in changes] == [
        f"payment {payment.id} (charge {charge_id}): pending → succeeded; charge unpaid → paid",
        f"payment {payment.id} (charge {charge_id}): refund {(await site.refunds(charge_id))[0].id} pending → succeeded",
    ]
    assert again == []
    charge = await site.charge(charge_id)
    assert (charge.status, charge.paid_fen, charge.refunded_fen) == ("paid", 4_200, 200)
    (refund,) = await site.refunds(charge_id)
    assert refund.stripe_refund_id == outside.id and refund.cause == "stripe"
    # Finance's cut-off reads when the money moved at Stripe, not when reconcile found out.
    (payment,) = await site.payments(charge_id)
    assert paid_at <= payment.succeeded_at.timestamp() <= paid_at + 1
    assert refund.succeeded_at.timestamp() == outside.created
