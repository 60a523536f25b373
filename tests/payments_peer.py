"""A Stripe peer for the payment tests: ``localstripe`` (from PyPI) as a real HTTP server, the
platform served over HTTP in the test's event loop so that localstripe's signed webhooks reach
it, and recorded events signed with Stripe's scheme for what localstripe does not send.

localstripe sends ``payment_intent.succeeded`` and ``payment_intent.payment_failed`` only.
``payment_intent.processing``, ``payment_intent.canceled``, ``charge.refunded`` and
``refund.created`` / ``refund.updated`` are recorded events below (shapes as Stripe's API
documents them), signed in the test with the real scheme: ``v1 = HMAC-SHA256(secret,
f"{t}.{payload}")``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from sqlalchemy import select

from facility_share.db import Database
from facility_share.db.models import Charge, Resource, utcnow

SECRET_KEY = "sk_test_facility_share_local"
PUBLISHABLE_KEY = "pk_test_facility_share_local"
WEBHOOK_SECRET = "whsec_facility_share_local_0123456789"
LOCALSTRIPE = str(Path(sys.executable).parent / "localstripe")
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000341"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StripePeer:
    """A running localstripe: reset it, register the platform's webhook, pay like Stripe.js."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop: Any = None
        self._client: stripe.StripeClient | None = None

    @property
    def client(self) -> stripe.StripeClient:
        """A client for the running event loop (an HTTP connection pool belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": self.url}, max_network_retries=0,
                                               http_client=stripe.HTTPXClient())
        return self._client

    def _call(self, method: str, path: str, form: dict[str, str] | None = None) -> int:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    def reset(self) -> None:
        """Forget every object (webhook registrations stay)."""
        self._call("DELETE", "/_config/data")

    def register_webhook(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        self._call("POST", "/_config/webhooks/facility-share", {"url": url, "secret": secret})

    def unregister_webhook(self) -> None:
        """Point the webhook at a closed port: deliveries fail, as when the platform was down."""
        self.register_webhook(f"http://127.0.0.1:{free_port()}/webhooks/stripe")

    async def pay(self, intent_id: str, card: str = CARD_OK) -> str:
        """What Stripe.js does when the payer submits the Payment Element: attach a card and
        confirm. Returns the intent's status (a declined card raises stripe.CardError)."""
        method = await self.client.v1.payment_methods.create_async(
            params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
        )
        await self.client.v1.payment_intents.update_async(intent_id, params={"payment_method": method.id})
        intent = await self.client.v1.payment_intents.confirm_async(intent_id)
        return intent.status

    async def intent(self, intent_id: str) -> Any:
        return await self.client.v1.payment_intents.retrieve_async(intent_id)

    async def refunds(self, intent_id: str) -> list[Any]:
        return list((await self.client.v1.refunds.list_async(params={"payment_intent": intent_id})).data)

    async def refund(self, intent_id: str, amount: int) -> Any:
        """A refund made at Stripe directly (as from Stripe's dashboard)."""
        return await self.client.v1.refunds.create_async(params={"payment_intent": intent_id, "amount": amount})


def start_localstripe() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([LOCALSTRIPE, "--port", str(port), "--from-scratch"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}")
        try:
            urllib.request.urlopen(url + "/v1/customers", timeout=1)
        except urllib.error.HTTPError:
            return process, url  # it answers (401 without a key): it is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
            continue
        return process, url
    process.terminate()
    raise RuntimeError("localstripe did not start within 20 s")


@pytest.fixture(scope="session")
def localstripe() -> Iterator[StripePeer]:
    """localstripe for the whole run (about 1 s to start)."""
    if not Path(LOCALSTRIPE).exists():
        pytest.fail(f"localstripe is not installed at {LOCALSTRIPE}; run: .uv/bin/uv sync", pytrace=False)
    process, url = start_localstripe()
    try:
        yield StripePeer(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def peer(localstripe: StripePeer) -> StripePeer:
    """localstripe emptied for this test."""
    localstripe.reset()
    return localstripe


def stripe_env(database_url: str, api_base: str = "", **extra: str) -> dict[str, str]:
    env = {
        "FACILITY_SHARE_DATABASE_URL": database_url,
        "FACILITY_SHARE_SWEEP_INTERVAL": "0",
        "FACILITY_SHARE_STRIPE_SECRET_KEY": SECRET_KEY,
        "FACILITY_SHARE_STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "FACILITY_SHARE_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    if api_base:
        env["FACILITY_SHARE_STRIPE_API_BASE"] = api_base
    env.update(extra)
    return env


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """The app served over HTTP (uvicorn) in this event loop; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        raise RuntimeError("the app did not start serving")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def wait_for(check: Any, *, timeout: float = 10.0, every: float = 0.1) -> Any:
    """Poll ``await check()`` until it returns something truthy (localstripe delivers 1 s late)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            return result
        await asyncio.sleep(every)


# --- recorded events -----------------------------------------------------------------------------------


def sign(payload: str, secret: str = WEBHOOK_SECRET, *, at: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload`` with Stripe's scheme."""
    t = int(time.time()) if at is None else at
    v1 = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={v1}"


def event(kind: str, obj: dict[str, Any], *, created: int, event_id: str | None = None) -> dict[str, Any]:
    """A Stripe event as its API documents it."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "api_version": "2024-06-20",
        "created": created, "type": kind, "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "data": {"object": obj},
    }


STRIPE_STATUS = {"succeeded": "succeeded", "failed": "requires_payment_method", "canceled": "canceled",
                 "processing": "processing", "pending": "requires_payment_method"}


def intent_object(intent_id: str, status: str, amount: int, *, created: int, metadata: dict[str, str] | None = None,
                  decline: str = "") -> dict[str, Any]:
    """A PaymentIntent in ``status`` (our words: succeeded, failed, canceled, processing)."""
    charge_id = f"ch_{intent_id[3:]}"
    return {
        "id": intent_id, "object": "payment_intent", "amount": amount, "currency": "cny", "created": created,
        "status": STRIPE_STATUS[status], "amount_received": amount if status == "succeeded" else 0,
        "client_secret": f"{intent_id}_secret_x", "payment_method_types": ["card", "alipay"],
        "latest_charge": charge_id if status in ("succeeded", "failed", "processing") else None,
        "cancellation_reason": "abandoned" if status == "canceled" else None,
        "last_payment_error": {"code": "card_declined", "decline_code": "generic_decline", "message": decline,
                               "type": "card_error"} if status == "failed" else None,
        "metadata": metadata or {},
    }


def refund_object(refund_id: str, intent_id: str, amount: int, status: str, *, created: int,
                  metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": refund_id, "object": "refund", "amount": amount, "currency": "cny", "created": created,
            "payment_intent": intent_id, "charge": f"ch_{intent_id[3:]}", "status": status, "metadata": metadata or {},
            "failure_reason": "expired_or_canceled_card" if status == "failed" else None}


def charge_refunded_object(intent_id: str, amount: int, refunds: list[dict[str, Any]], *, created: int) -> dict[str, Any]:
    return {"id": f"ch_{intent_id[3:]}", "object": "charge", "amount": amount, "currency": "cny", "created": created,
            "payment_intent": intent_id, "paid": True, "refunded": sum(r["amount"] for r in refunds) >= amount,
            "amount_refunded": sum(r["amount"] for r in refunds if r["status"] == "succeeded"),
            "refunds": {"object": "list", "data": refunds, "has_more": False}}


def signed(evt: dict[str, Any], *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery of ``evt``."""
    payload = json.dumps(evt, separators=(",", ":"))
    return payload.encode(), {"Stripe-Signature": sign(payload, secret, at=at), "Content-Type": "application/json"}


# --- data --------------------------------------------------------------------------------------------


async def make_charge(db: Database, enterprise_id: int, *, total_fen: int = 12_345, code: str = "WQ-TJMAT-SEM01",
                      kind: str = "service", booking_id: int | None = None) -> int:
    """An unpaid charge of ``total_fen`` on a catalogue resource for one enterprise."""
    async with db.session(write=True) as session:
        resource = (await session.execute(select(Resource).where(Resource.code == code))).scalar_one()
        charge = Charge(kind=kind, resource_id=resource.id, enterprise_id=enterprise_id, booking_id=booking_id,
                        service_date=utcnow() - timedelta(days=1), customer_class="district",
                        lines=[{"label_zh": "测试", "label_en": "Test", "basis": "hour", "units": 1, "rate_fen": total_fen,
                                "amount_fen": total_fen, "unit_minutes": 60, "explanation": "test"}],
                        total_fen=total_fen, explanation_zh="测试费用", explanation_en="A test charge", status="unpaid")
        session.add(charge)
        await session.commit()
        return charge.id


def environ_without_stripe() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FACILITY_SHARE_STRIPE_")}
