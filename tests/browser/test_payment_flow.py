"""Paying a charge in a real browser (Chinese), against localstripe.

The server runs with Stripe keys pointing at localstripe, whose webhook is registered to the
server. Stripe.js cannot load offline, so it is stubbed at the browser's boundary only: a
``page.route`` for https://js.stripe.com/v3/ serves a small fake whose Payment Element is a
placeholder and whose ``confirmPayment`` asks the test (another routed address) to confirm the
PaymentIntent at localstripe with the test card, then returns to the platform's return URL as
Stripe does. Everything on the server side is real: the intent was created by the platform at
localstripe, and the charge turns paid only when localstripe's signed webhook arrives.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.browser.test_booking_flow import PASSWORD, check
from tests.live import LiveServer
from tests.payments_peer import CARD_OK, SECRET_KEY, StripePeer, stripe_env

pytestmark = pytest.mark.browser

MEMBER = "chen@yunqi-bio.example.cn"
TOTAL_FEN = 23_450

FAKE_STRIPE_JS = """
window.Stripe = function (publishableKey) {
  var options = null;
  return {
    elements: function (given) {
      options = given;
      return {
        create: function (kind) {
          return {
            mount: function (selector) {
              document.querySelector(selector).innerHTML =
                '<div class="fake-payment-element" data-kind="' + kind + '">' +
                '<label>卡号 <input name="fake-card" value="4242 4242 4242 4242" readonly></label></div>';
            }
          };
        }
      };
    },
    confirmPayment: function (args) {
      var secret = options.clientSecret;
      var intent = secret.split("_secret_")[0];
      return fetch("https://stripe.test/confirm", {
        method: "POST", body: JSON.stringify({ intent: intent, key: publishableKey })
      }).then(function (r) { return r.json(); }).then(function (result) {
        if (result.error) { return { error: result.error }; }
        window.location.href = args.confirmParams.return_url + "?payment_intent=" + intent +
          "&payment_intent_client_secret=" + encodeURIComponent(secret) + "&redirect_status=" + result.status;
        return new Promise(function () {});
      });
    }
  };
};
"""


def in_thread(work: Any, *args: Any) -> Any:
    """Run ``work(*args)`` in its own thread (Playwright's sync API holds this thread's event
    loop, and ``asyncio.run`` needs one of its own); a coroutine function is run to completion."""
    def run() -> Any:
        result = work(*args)
        return asyncio.run(result) if asyncio.iscoroutine(result) else result

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@pytest.fixture(scope="module")
def paying_site(tmp_path_factory: pytest.TempPathFactory, localstripe: StripePeer, chromium_path: str) -> Iterator[tuple[str, str, int]]:
    """A demo site served with Stripe keys for localstripe, and a fresh unpaid charge of
    Yunqi's (the demo member ``chen``)."""
    from tests.site import demo_site

    from sqlalchemy import select

    from facility_share.db import Database
    from facility_share.db.models import User
    from tests.payments_peer import make_charge

    settings = in_thread(demo_site, tmp_path_factory, "payment-browser")

    async def charge() -> int:
        database = Database(settings.database_url, null_pool=True)
        try:
            async with database.session() as session:
                enterprise_id = (await session.execute(select(User.enterprise_id).where(User.email == MEMBER))).scalar_one()
            return await make_charge(database, enterprise_id, total_fen=TOTAL_FEN)
        finally:
            await database.dispose()

    charge_id = in_thread(charge)
    log = Path(settings.database_url.split("///", 1)[1]).parent / "server.log"
    localstripe.reset()
    server = LiveServer(settings.database_url, log_path=log, extra_env=stripe_env(settings.database_url, localstripe.url))
    with server:
        localstripe.register_webhook(server.url + "/webhooks/stripe")
        yield server.url, settings.database_url, charge_id


def confirm_at_localstripe(url: str, intent_id: str) -> str:
    """What Stripe does when Stripe.js confirms: the card is charged (synchronously here)."""
    client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": url}, max_network_retries=0)
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": CARD_OK, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
    return client.v1.payment_intents.confirm(intent_id).status


def test_enterprise_pays_a_charge_online_and_sees_it_paid_after_the_webhook(
        browser, paying_site: tuple[str, str, int], localstripe: StripePeer) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    base_url, database_url, charge_id = paying_site
    amount = f"¥{TOTAL_FEN // 100:,}.{TOTAL_FEN % 100:02d}"
    confirmed: list[str] = []

    def stripe_js(route) -> None:  # type: ignore[no-untyped-def]
        route.fulfill(status=200, content_type="application/javascript", body=FAKE_STRIPE_JS)

    def confirm(route) -> None:  # type: ignore[no-untyped-def]
        payload = json.loads(route.request.post_data or "{}")
        assert payload["key"].startswith("pk_test_")
        status = confirm_at_localstripe(localstripe.url, payload["intent"])
        confirmed.append(payload["intent"])
        route.fulfill(status=200, content_type="application/json", headers={"Access-Control-Allow-Origin": "*"},
                      body=json.dumps({"status": status}))

    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base_url)
    context.set_default_timeout(15_000)
    context.add_cookies([{"name": "lang", "value": "zh_CN", "url": base_url}])
    context.route("https://js.stripe.com/v3/", stripe_js)
    context.route("https://stripe.test/confirm", confirm)
    page = context.new_page()
    try:
        page.goto("/login")
        page.get_by_label("电子邮箱").fill(MEMBER)
        page.get_by_label("密码").fill(PASSWORD)
        page.locator("main").get_by_role("button", name="登录").click()
        page.wait_for_url(re.compile(r"/me"))

        # The unpaid charge, with a link to pay it.
        page.get_by_role("navigation", name="我的工作台").get_by_role("link", name="费用").click()
        page.wait_for_url(re.compile(r"/me/charges$"))
        card = page.locator(f"#charge-{charge_id}")
        expect(card.locator(".badge")).to_have_text("未付款")
        check(page)
        card.get_by_role("link", name=f"支付费用 #{charge_id}").click()
        page.wait_for_url(re.compile(rf"/me/charges/{charge_id}/pay$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(f"支付费用 #{charge_id}")
        check(page)
        page.get_by_role("button", name=f"在线支付 {amount}", exact=True).click()

        # Stripe's Payment Element (the stub) on the platform's payment page.
        page.wait_for_url(re.compile(r"/me/payments/\d+$"))
        expect(page.locator("#payment-element .fake-payment-element")).to_be_visible()
        expect(page.locator("#payment-element .fake-payment-element")).to_have_attribute("data-kind", "payment")
        check(page)
        page.get_by_role("button", name=f"支付 {amount}", exact=True).click()

        # Back from "Stripe": processing until the webhook arrives, then paid.
        page.wait_for_url(re.compile(r"/me/payments/\d+\?returned=succeeded$"))
        expect(page.locator("#charge-status")).to_have_text("处理中")
        expect(page.get_by_role("status")).to_contain_text("Stripe 正在确认付款")
        expect(page.locator("#charge-status")).to_have_text("已付款", timeout=20_000)
        expect(page.get_by_role("status")).to_contain_text(f"已付款。Stripe 已确认收到 {amount}")
        check(page)
        assert len(confirmed) == 1

        page.goto("/me/charges")
        expect(page.locator(f"#charge-{charge_id} .badge")).to_have_text("已付款")
        expect(page.locator(f"#charge-{charge_id}").get_by_role("link", name=f"支付费用 #{charge_id}")).to_have_count(0)
    finally:
        context.close()

    async def webhook_applied() -> list[Any]:
        from sqlalchemy import select

        from facility_share.db import Database
        from facility_share.db.models import StripeEvent

        database = Database(database_url, null_pool=True)
        try:
            async with database.session() as session:
                return list((await session.execute(
                    select(StripeEvent.type, StripeEvent.outcome).where(StripeEvent.object_id == confirmed[0]))).all())
        finally:
            await database.dispose()

    assert in_thread(webhook_applied) == [("payment_intent.succeeded", "applied")]
