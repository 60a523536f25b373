"""The only module that talks to Stripe: a thin wrapper around stripe-python's async client.

It answers with plain frozen records (``Intent``, ``StripeRefund``), never Stripe objects, so the
rest of the context works on data it owns. Stripe errors become the project's errors with a
message a person can act on; keys never appear in them.

In offline mode (no secret key) no gateway is ever built: ``gateway_for`` returns None and
nothing in this module runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from facility_share.errors import N_, Conflict, InvalidInput, ServiceUnavailable
from facility_share.settings import Settings

log = logging.getLogger("facility_share.payments")


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _id(value: Any) -> str:
    """An id from a field that is either an id or an expanded object."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(getattr(value, "id", "") or "")


@dataclass(frozen=True, slots=True)
class StripeRefund:
    id: str
    payment_intent_id: str
    amount_fen: int
    status: str
    created_at: datetime | None
    failure_reason: str = ""
    metadata: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StripeRefund:
        return cls(
            id=str(data.get("id") or ""), payment_intent_id=_id(data.get("payment_intent")),
            amount_fen=int(data.get("amount") or 0), status=str(data.get("status") or "pending"),
            created_at=_time(data.get("created")), failure_reason=str(data.get("failure_reason") or ""),
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Intent:
    """What the platform needs of a PaymentIntent."""

    id: str
    status: str
    amount_fen: int
    amount_received_fen: int
    currency: str
    client_secret: str
    latest_charge_id: str
    payment_method_type: str
    error_code: str
    error_message: str
    metadata: dict[str, str]
    created_at: datetime | None
    # When the money was taken (the latest charge's time), when Stripe says so.
    charged_at: datetime | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Intent:
        error = data.get("last_payment_error") or {}
        charge = data.get("latest_charge")
        method = ""
        details = charge.get("payment_method_details") if isinstance(charge, dict) else None
        if isinstance(details, dict):
            method = str(details.get("type") or "")
        if not method and isinstance(data.get("payment_method"), dict):
            method = str(data["payment_method"].get("type") or "")
        if not method and isinstance(error.get("payment_method"), dict):
            method = str(error["payment_method"].get("type") or "")
        types = data.get("payment_method_types") or []
        if not method and len(types) == 1:
            method = str(types[0])
        received = data.get("amount_received")
        if received is None:
            # Older API shapes (and the local Stripe peer) report it on the charge only.
            received = data.get("amount") if data.get("status") == "succeeded" else 0
        return cls(
            id=str(data.get("id") or ""), status=str(data.get("status") or ""), amount_fen=int(data.get("amount") or 0),
            amount_received_fen=int(received or 0), currency=str(data.get("currency") or ""),
            client_secret=str(data.get("client_secret") or ""), latest_charge_id=_id(charge),
            payment_method_type=method, error_code=str(error.get("decline_code") or error.get("code") or ""),
            error_message=str(error.get("message") or ""),
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
            created_at=_time(data.get("created")),
            charged_at=_time(charge.get("created")) if isinstance(charge, dict) and charge.get("status") == "succeeded" else None,
        )


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _translate(exc: stripe.StripeError, doing: str) -> Exception:
    """A Stripe error as one of the project's errors (logged without keys or card data).

    The English message names what was being done (``doing``); a page translates the message
    from its id and says only what the reader can act on."""
    log.warning("Stripe refused to %s: %s %s", doing, type(exc).__name__, getattr(exc, "code", "") or "")
    if isinstance(exc, stripe.APIConnectionError):
        return ServiceUnavailable.translatable(N_("Stripe could not be reached to %(doing)s; try again in a minute"), doing=doing)
    if isinstance(exc, stripe.RateLimitError):
        return ServiceUnavailable.translatable(N_("Stripe is busy; try again in a minute to %(doing)s"), doing=doing)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ServiceUnavailable.translatable(
            N_("the platform's Stripe keys were refused when trying to %(doing)s; tell the administrator"), doing=doing)
    if isinstance(exc, stripe.CardError):
        return InvalidInput.translatable(N_("the payment was declined: %(reason)s"), reason=exc.user_message or exc.code)
    if isinstance(exc, stripe.IdempotencyError):
        return Conflict.translatable(
            N_("Stripe saw a different request with the same idempotency key while trying to %(doing)s"), doing=doing)
    if isinstance(exc, stripe.InvalidRequestError):
        return Conflict.translatable(N_("Stripe refused to %(doing)s: %(why)s"), doing=doing,
                                     why=exc.user_message or exc.code or "invalid request")
    return ServiceUnavailable.translatable(N_("Stripe failed to %(doing)s; try again later"), doing=doing)


class Gateway:
    """Stripe's API as the platform uses it (PaymentIntents and refunds), async."""

    def __init__(self, secret_key: str, *, api_base: str = "", timeout: float = 20.0) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout)
        kwargs: dict[str, Any] = {"max_network_retries": 2, "http_client": self._http}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
            # A local peer answers at once or not at all; retries only slow a failing test.
            kwargs["max_network_retries"] = 0
        self._client = stripe.StripeClient(secret_key, **kwargs)

    def __repr__(self) -> str:
        return "Gateway(<stripe>)"

    async def close(self) -> None:
        await self._http.close_async()

    async def create_intent(self, *, amount_fen: int, currency: str, methods: tuple[str, ...], metadata: dict[str, str],
                            idempotency_key: str) -> Intent:
        params: dict[str, Any] = {"amount": amount_fen, "currency": currency, "payment_method_types": list(methods),
                                  "metadata": metadata}
        if "wechat_pay" in methods:
            # WeChat Pay on the web shows a QR code; Stripe needs to know the client kind.
            params["payment_method_options"] = {"wechat_pay": {"client": "web"}}
        try:
            intent = await self._client.v1.payment_intents.create_async(params=params, options={"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise _translate(exc, "start the payment") from None
        return Intent.from_dict(_plain(intent))

    async def retrieve_intent(self, intent_id: str) -> Intent:
        try:
            # Expanded: the payment method's type (card, alipay, wechat_pay) is the method shown,
            # and the latest charge's time is when the money was taken.
            intent = await self._client.v1.payment_intents.retrieve_async(
                intent_id, params={"expand": ["payment_method", "latest_charge"]})
        except stripe.StripeError as exc:
            raise _translate(exc, f"read payment {intent_id}") from None
        return Intent.from_dict(_plain(intent))

    async def cancel_intent(self, intent_id: str) -> Intent:
        try:
            intent = await self._client.v1.payment_intents.cancel_async(intent_id)
        except stripe.StripeError as exc:
            raise _translate(exc, f"cancel payment {intent_id}") from None
        return Intent.from_dict(_plain(intent))

    async def create_refund(self, *, intent_id: str, amount_fen: int, metadata: dict[str, str], idempotency_key: str) -> StripeRefund:
        try:
            refund = await self._client.v1.refunds.create_async(
                params={"payment_intent": intent_id, "amount": amount_fen, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _translate(exc, "refund the payment") from None
        return StripeRefund.from_dict(_plain(refund))

    async def list_refunds(self, intent_id: str) -> list[StripeRefund]:
        try:
            page = await self._client.v1.refunds.list_async(params={"payment_intent": intent_id, "limit": 100})
        except stripe.StripeError as exc:
            raise _translate(exc, f"list the refunds of payment {intent_id}") from None
        return [StripeRefund.from_dict(_plain(r)) for r in page.data]


def gateway_for(settings: Settings) -> Gateway | None:
    """A gateway when Stripe keys are configured; None in offline mode (nothing is built)."""
    if not settings.stripe_enabled:
        return None
    return Gateway(settings.stripe_secret_key, api_base=settings.stripe_api_base)


def verify_event(payload: bytes, signature: str | None, secret: str, *, tolerance: int = 300) -> dict[str, Any]:
    """A webhook's event after Stripe's own signature check (HMAC-SHA256 over ``t.payload``,
    at most ``tolerance`` seconds old).

    Raises:
        InvalidInput: no signature, a wrong one, a stale timestamp, or a body that is not an event.
    """
    if not signature:
        raise InvalidInput("Stripe-Signature: the header is missing; only Stripe's signed events are accepted")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        reason = "too old" if "tolerance" in str(exc).lower() else "does not match"
        raise InvalidInput(f"Stripe-Signature: the signature {reason}; the event was not accepted") from None
    except ValueError:
        raise InvalidInput("body: not a Stripe event (expected JSON with an id, a type and data.object)") from None
    data = _plain(event)
    if not data.get("id") or not data.get("type") or not isinstance((data.get("data") or {}).get("object"), dict):
        raise InvalidInput("body: not a Stripe event (expected JSON with an id, a type and data.object)")
    return data
