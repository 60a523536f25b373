"""Offline mode (no Stripe keys): the payment pages explain bank transfer and invoice, the unit
marks a charge paid (an offline payment row, the charge's sums in step) and refunds it, and no
request to Stripe is ever attempted: the Stripe address points at a listener that counts
connections, and building a Stripe client fails the test. SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import stripe
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from facility_share.accounts import services as accounts
from facility_share.accounts.auth import SESSION_COOKIE
from facility_share.db import Database
from facility_share.db.models import Charge, Payment, Refund
from facility_share.payments import gateway as gateway_module
from facility_share.settings import load_settings
from facility_share.web.app import create_app
from tests.payments_peer import make_charge
from tests.world import build_world

HTML = {"Accept": "text/html"}


class Listener:
    """A TCP listener that counts who connects (nobody should)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


@pytest.fixture
def no_stripe_client(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail loudly if anything builds a Stripe client or gateway."""
    built: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        built.append("constructed")
        raise AssertionError("a Stripe client was built in offline mode")

    monkeypatch.setattr(stripe, "StripeClient", refuse)
    monkeypatch.setattr(gateway_module, "Gateway", refuse)
    return built


@pytest.fixture
async def offline(imported: Database, database_url: str, listener: Listener, no_stripe_client: list[str]) -> AsyncIterator[Any]:
    world = await build_world(imported)
    settings = load_settings({
        "FACILITY_SHARE_DATABASE_URL": database_url, "FACILITY_SHARE_SWEEP_INTERVAL": "0",
        # An address but no keys: still offline, and the address must never be called.
        "FACILITY_SHARE_STRIPE_API_BASE": f"http://127.0.0.1:{listener.port}",
    })
    assert not settings.stripe_enabled
    app = create_app(settings, database=imported)
    async with imported.session(write=True) as session:
        cookies = {role: await accounts.start_session(session, world[role].user_id, "127.0.0.1", "pytest")
                   for role in ("member_a", "manager")}
        await session.commit()
    async with AsyncTestClient(app) as client:
        yield client, world, cookies


async def as_user(client: AsyncTestClient, cookie: str) -> None:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    client.cookies.set("lang", "en")
    await client.get("/", headers=HTML)


async def post(client: AsyncTestClient, url: str, data: dict[str, str] | None = None) -> Any:
    return await client.post(url, data={**(data or {}), "_csrf_token": client.cookies.get("fs_csrf") or ""}, headers=HTML,
                             follow_redirects=False)


async def test_offline_payment_pages_mark_paid_and_refund_without_any_stripe_request(
        offline: Any, imported: Database, listener: Listener, no_stripe_client: list[str]) -> None:
    client, world, cookies = offline
    charge_id = await make_charge(imported, world.enterprise_ids["member_a"], total_fen=45_600)

    await as_user(client, cookies["member_a"])
    listing = await client.get("/me/charges", headers=HTML)
    assert f'href="/me/charges/{charge_id}/pay"' in listing.text
    page = await client.get(f"/me/charges/{charge_id}/pay", headers=HTML)
    assert page.status_code == 200
    assert "Online payment is not set up on this platform." in page.text
    assert "Pay by bank transfer or invoice" in page.text and f"Quote charge #{charge_id}" in page.text
    assert "js.stripe.com" not in page.text and 'action="/me/charges/' not in page.text
    refused = await post(client, f"/me/charges/{charge_id}/pay")
    assert refused.status_code == 409 and "Online payment is not available" in refused.text

    await as_user(client, cookies["manager"])
    marked = await post(client, f"/manage/charges/{charge_id}/mark-paid",
                        {"unit": "WQ-TJMAT", "method": "bank_transfer", "reference": "ICBC-20261201-0042"})
    assert marked.status_code == 303
    async with imported.session() as session:
        charge = await session.get(Charge, charge_id)
        (payment,) = (await session.execute(select(Payment).where(Payment.charge_id == charge_id))).scalars()
    assert (charge.status, charge.paid_fen, charge.payment_method) == ("paid", 45_600, "bank_transfer")
    assert (payment.provider, payment.status, payment.amount_received_fen, payment.reference) == (
        "offline", "succeeded", 45_600, "ICBC-20261201-0042")
    assert payment.succeeded_at is not None and payment.stripe_payment_intent_id is None
    twice = await post(client, f"/manage/charges/{charge_id}/mark-paid",
                       {"unit": "WQ-TJMAT", "method": "bank_transfer", "reference": "again"})
    assert twice.status_code == 409

    manage = await client.get("/manage/payments?unit=WQ-TJMAT", headers=HTML)
    assert manage.status_code == 200 and f'id="charge-{charge_id}"' in manage.text
    refund = await post(client, f"/manage/charges/{charge_id}/refund",
                        {"unit": "WQ-TJMAT", "amount": "100", "reason": "two samples not measured"})
    assert refund.status_code == 303
    too_much = await post(client, f"/manage/charges/{charge_id}/refund",
                          {"unit": "WQ-TJMAT", "amount": "356.01", "reason": "more"})
    assert too_much.status_code == 409 and "can still be refunded" in too_much.text
    async with imported.session() as session:
        charge = await session.get(Charge, charge_id)
        refunds = list((await session.execute(select(Refund).where(Refund.charge_id == charge_id))).scalars())
    assert (charge.status, charge.refunded_fen) == ("paid", 10_000)
    assert [(r.amount_fen, r.status, r.stripe_refund_id) for r in refunds] == [(10_000, "succeeded", None)]

    await as_user(client, cookies["member_a"])
    page = await client.get(f"/me/charges/{charge_id}/pay", headers=HTML)
    assert "This charge is paid." in page.text and "two samples not measured" in page.text
    assert listener.connections == 0 and no_stripe_client == []
