"""Stripe settings: all three keys or none, never in a repr or a log line; the payment methods
offered follow the account's setting (card always; Alipay and WeChat Pay when enabled)."""

from __future__ import annotations

from typing import Any

import logging

import pytest

from facility_share.errors import SettingsError
from facility_share.payments.gateway import Gateway, gateway_for
from facility_share.settings import load_settings
from tests.payments_peer import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, stripe_env


def test_offline_by_default() -> None:
    settings = load_settings({})
    assert not settings.stripe_enabled and settings.stripe_payment_methods == ("card",)
    assert gateway_for(settings) is None
    assert settings.late_cancellation_refund_percent == 50


def test_keys_never_appear_in_the_settings_repr_or_the_gateways() -> None:
    settings = load_settings(stripe_env("sqlite:///x.sqlite3"))
    assert settings.stripe_enabled
    assert SECRET_KEY not in repr(settings) and WEBHOOK_SECRET not in repr(settings)
    assert PUBLISHABLE_KEY in repr(settings)  # public by nature
    assert SECRET_KEY not in repr(Gateway(SECRET_KEY))


@pytest.mark.parametrize(
    ("env", "variable", "fragment"),
    [
        ({"STRIPE_SECRET_KEY": SECRET_KEY}, "FACILITY_SHARE_STRIPE_PUBLISHABLE_KEY", "all three"),
        ({"STRIPE_SECRET_KEY": "pk_live_wrong", "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET},
         "FACILITY_SHARE_STRIPE_SECRET_KEY", "starting with sk_"),
        ({"STRIPE_API_BASE": "localhost:12111"}, "FACILITY_SHARE_STRIPE_API_BASE", "http"),
        ({"STRIPE_PAYMENT_METHODS": "card,paypal"}, "FACILITY_SHARE_STRIPE_PAYMENT_METHODS", "paypal"),
        ({"LATE_CANCELLATION_REFUND_PERCENT": "150"}, "FACILITY_SHARE_LATE_CANCELLATION_REFUND_PERCENT", "0–100"),
    ],
)
def test_bad_stripe_settings_name_the_variable_and_never_echo_a_key(env: dict[str, str], variable: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({f"FACILITY_SHARE_{k}": v for k, v in env.items()})
    assert caught.value.variable == variable and fragment in str(caught.value)
    assert "pk_live_wrong" not in str(caught.value)


def test_methods_follow_the_setting() -> None:
    settings = load_settings({"FACILITY_SHARE_STRIPE_PAYMENT_METHODS": "wechat_pay, alipay"})
    assert settings.stripe_payment_methods == ("card", "wechat_pay", "alipay")


class RecordingIntents:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def create_async(self, params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        self.calls.append({**params, "idempotency_key": options["idempotency_key"]})
        return {"id": "pi_recorded", "status": "requires_payment_method", "amount": params["amount"], "currency": "cny",
                "client_secret": "pi_recorded_secret_x"}


@pytest.mark.parametrize(
    ("methods", "options"),
    [(("card",), None), (("card", "alipay"), None), (("card", "alipay", "wechat_pay"), {"wechat_pay": {"client": "web"}})],
)
async def test_intent_offers_the_enabled_methods_with_the_idempotency_key(methods: tuple[str, ...], options: Any) -> None:
    gateway = Gateway(SECRET_KEY, api_base="http://127.0.0.1:9")
    recording = RecordingIntents()
    gateway._client = type("C", (), {"v1": type("V1", (), {"payment_intents": recording})()})()  # noqa: SLF001
    intent = await gateway.create_intent(amount_fen=12_345, currency="cny", methods=methods,
                                         metadata={"charge_id": "7", "payment_id": "9"}, idempotency_key="pay-7-abc")
    await gateway.close()
    (call,) = recording.calls
    assert call["payment_method_types"] == list(methods) and call["amount"] == 12_345 and call["currency"] == "cny"
    assert call["idempotency_key"] == "pay-7-abc" and call["metadata"] == {"charge_id": "7", "payment_id": "9"}
    assert call.get("payment_method_options") == options
    assert intent.client_secret == "pi_recorded_secret_x"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + " " + repr(record.args) + " " + str(record.__dict__.get("extra", "")))


async def test_webhook_logs_never_carry_the_secrets(imported: Any, database_url: str) -> None:
    from litestar.testing import AsyncTestClient

    from facility_share.web.app import create_app
    from tests.payments_peer import event, intent_object, signed

    app = create_app(load_settings(stripe_env(database_url, "http://127.0.0.1:9")), database=imported)
    collect = Collect()
    names = ("", "facility_share", "facility_share.payments", "stripe", "litestar", "httpx", "sqlalchemy")
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).addHandler(collect)
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        async with AsyncTestClient(app) as client:
            body, headers = signed(event("payment_intent.succeeded", intent_object("pi_log", "succeeded", 100, created=1), created=1))
            await client.post("/webhooks/stripe", content=body, headers=headers)
            body, headers = signed(event("payment_intent.succeeded", intent_object("pi_log", "succeeded", 100, created=1), created=2))
            await client.post("/webhooks/stripe", content=body, headers=headers)
            await client.post("/webhooks/stripe", content=body, headers={**headers, "Stripe-Signature": "t=1,v1=forged"})
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(collect)
            logging.getLogger(name).setLevel(saved[name])
    logged = "\n".join(collect.lines)
    assert "stripe event" in logged
    for secret in (SECRET_KEY, WEBHOOK_SECRET):
        assert secret not in logged
