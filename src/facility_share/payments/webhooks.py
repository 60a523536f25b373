"""Stripe's webhooks: ``POST /webhooks/stripe``.

Public (Stripe has no account here) and authenticated by the signature alone: Stripe's own
check (HMAC-SHA256 over ``timestamp.payload`` with the endpoint's secret, at most 300 s old).
A bad or stale signature is a 400 and nothing is stored. A verified event is stored by its id
and applied in the same transaction; a replay answers 200 and changes nothing. Any other error
rolls back and answers 5xx, so Stripe delivers the event again later.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, MediaType, Request, Response, post

from facility_share.payments import services
from facility_share.payments.gateway import Gateway, gateway_for, verify_event
from facility_share.settings import Settings
from facility_share.web.deps import DbSession

log = logging.getLogger("facility_share.payments")
MAX_BODY = 512 * 1024


def app_gateway(request: Request) -> Gateway | None:
    """The application's Stripe gateway, built on first use; None in offline mode (never built)."""
    settings: Settings = request.app.state.settings
    if not settings.stripe_enabled:
        return None
    gateway = request.app.state.get("stripe_gateway")
    if gateway is None:
        gateway = gateway_for(settings)
        request.app.state.stripe_gateway = gateway
    return gateway


def _answer(status: int, body: dict[str, Any]) -> Response:
    return Response(body, status_code=status, media_type=MediaType.JSON)


class StripeWebhooks(Controller):
    path = "/webhooks"
    include_in_schema = False
    opt = {"access": "public"}

    @post("/stripe", name="stripe-webhook", status_code=200)
    async def stripe(self, request: Request, db_session: DbSession) -> Response:
        settings: Settings = request.app.state.settings
        if not settings.stripe_webhook_secret:
            return _answer(404, {"error": {"code": "not_found", "message": "online payments are not configured (offline mode)"}})
        payload = await request.body()
        if len(payload) > MAX_BODY:
            return _answer(413, {"error": {"code": "too_large", "message": "a Stripe event is at most 512 KiB"}})
        # verify_event raises InvalidInput (400) before anything is read from or written to the database.
        event = verify_event(payload, request.headers.get("stripe-signature"), settings.stripe_webhook_secret)
        stored, replay = await services.handle_event(db_session, event, gateway=app_gateway(request))
        await db_session.commit()
        log.info("stripe event %s %s: %s", stored.id, stored.type, "replay" if replay else stored.outcome)
        return _answer(200, {"received": stored.id, "outcome": stored.outcome, "replay": replay})
