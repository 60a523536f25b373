"""The payment pages on the demo site (offline mode, SQLite), in Chinese and English: the
enterprise's charges show online payments in every state (paid, partly refunded, processing,
declined with its reason) and the bookings payable in advance; the unit's payments page lists
payments and refunds with the refund form; bad input is a 4xx with a message and changes
nothing; other enterprises' charges and other units' refunds are not found."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select

from facility_share.db.models import Booking, Charge, ManagingUnit, Payment, Refund, Resource, User, utcnow
from facility_share.demo import DEMO_PASSWORD
from facility_share.payments import ledger
from facility_share.settings import Settings
from facility_share.web.app import create_app
from tests.site import demo_site, query, run_in

HTML = {"Accept": "text/html"}
CHEN = "chen@yunqi-bio.example.cn"
LIU = "liu@gazelle-mat.example.cn"
MANAGER = "manager.tjmat@demo.example.cn"
OTHER_MANAGER = "manager.jgu@demo.example.cn"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return demo_site(tmp_path_factory, "payment-pages")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def sign_in(client: TestClient, email: str, lang: str = "en") -> None:
    client.cookies.clear()
    client.cookies.set("lang", lang)
    client.get("/login", headers=HTML)
    response = client.post("/login", data={"email": email, "password": DEMO_PASSWORD, "_csrf_token": client.cookies.get("fs_csrf")},
                           headers=HTML, follow_redirects=False)
    assert response.status_code == 303


def post(client: TestClient, url: str, data: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post(url, data={**(data or {}), "_csrf_token": client.cookies.get("fs_csrf")}, headers=HTML,
                       follow_redirects=False)


def chen_charges(settings: Settings) -> dict[str, list[int]]:
    rows = query(settings, select(Charge.id, Charge.status, Charge.refunded_fen, Payment.status)
                 .join(User, User.enterprise_id == Charge.enterprise_id).outerjoin(Payment, Payment.charge_id == Charge.id)
                 .where(User.email == CHEN, Payment.provider == "stripe"))
    found: dict[str, list[int]] = {}
    for charge_id, status, refunded, payment_status in rows:
        key = "refunded" if refunded else payment_status
        found.setdefault(key, []).append(charge_id)
        assert status in ("paid", "processing", "unpaid")
    return found


def every_page(client: TestClient, url: str) -> str:
    """The text of a paged list's pages, following its "next" links to the last."""
    texts = []
    while url:
        page = client.get(url, headers=HTML)
        assert page.status_code == 200
        texts.append(page.text)
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = html.unescape(found.group(1)) if found else ""
    return "".join(texts)


def test_enterprise_sees_online_payments_in_every_state(client: TestClient, settings: Settings) -> None:
    found = chen_charges(settings)
    assert set(found) == {"succeeded", "refunded", "processing", "failed"}
    for lang, words in (("en", ("Processing", "The last online payment was declined: Your card was declined.", "Refunded: ¥")),
                        ("zh_CN", ("处理中", "最近一次在线付款被拒绝：Your card was declined.", "已退款：¥"))):
        sign_in(client, CHEN, lang)
        text = every_page(client, "/me/charges")
        for word in words:
            assert word in text, (lang, word)
    sign_in(client, CHEN)
    refunded = client.get(f"/me/charges/{found['refunded'][0]}/pay", headers=HTML)
    assert "one sample not measured" in refunded.text and "Online (Stripe)" in refunded.text
    processing = client.get(f"/me/charges/{found['processing'][0]}/pay", headers=HTML)
    assert "being confirmed by Stripe" in processing.text
    (payment_id,) = query(settings, select(Payment.id).where(Payment.charge_id == found["processing"][0]))[0]
    waiting = client.get(f"/me/payments/{payment_id}", headers=HTML)
    assert waiting.status_code == 200 and '<meta http-equiv="refresh" content="3">' in waiting.text


def test_other_enterprises_charges_and_payments_are_not_found(client: TestClient, settings: Settings) -> None:
    found = chen_charges(settings)
    (payment_id,) = query(settings, select(Payment.id).where(Payment.charge_id == found["succeeded"][0]))[0]
    sign_in(client, LIU)
    assert client.get(f"/me/charges/{found['succeeded'][0]}/pay", headers=HTML).status_code == 404
    assert client.get(f"/me/payments/{payment_id}", headers=HTML).status_code == 404
    assert post(client, f"/me/charges/{found['failed'][0]}/pay").status_code == 404
    assert client.get(f"/me/payments/{payment_id}/return?redirect_status=succeeded", headers=HTML).status_code == 404


def test_unit_refunds_with_a_reason_and_bad_input_changes_nothing(client: TestClient, settings: Settings) -> None:
    # One paid online in the manager's unit (the demo pays online in other units too).
    charge_id = query(settings, select(Charge.id).join(Resource, Charge.resource_id == Resource.id)
                      .join(ManagingUnit, Resource.unit_id == ManagingUnit.id)
                      .where(Charge.id.in_(chen_charges(settings)["succeeded"]), ManagingUnit.code == "WQ-TJMAT")
                      .order_by(Charge.id).limit(1))[0][0]
    before = query(settings, select(func.count()).select_from(Refund))[0][0]
    sign_in(client, MANAGER, "zh_CN")
    text = every_page(client, "/manage/payments?unit=WQ-TJMAT")
    assert f'id="charge-{charge_id}"' in text and "收款与退款" in text
    for data, status, message in (
        ({"amount": "abc", "reason": "x"}, 400, "请以元为单位填写金额"),
        ({"amount": "10", "reason": ""}, 400, "请说明退款原因"),
        ({"amount": "9999999", "reason": "too much"}, 409, "超过了该费用仍可退还的"),
    ):
        response = post(client, f"/manage/charges/{charge_id}/refund", {"unit": "WQ-TJMAT", **data})
        assert response.status_code == status and message in response.text, response.text[-3000:]
    assert query(settings, select(func.count()).select_from(Refund))[0][0] == before
    # Online payments need the Stripe keys to be refunded; this site is offline.
    response = post(client, f"/manage/charges/{charge_id}/refund", {"unit": "WQ-TJMAT", "amount": "1", "reason": "goodwill"})
    assert response.status_code == 409 and "Stripe 密钥" in response.text
    offline = query(settings, select(Charge.id).join(Payment, Payment.charge_id == Charge.id)
                    .where(Payment.provider == "offline", Charge.status == "paid", Charge.refunded_fen == 0,
                           Charge.resource_id.in_(select(Charge.resource_id).where(Charge.id == charge_id))).limit(1))[0][0]
    response = post(client, f"/manage/charges/{offline}/refund", {"unit": "WQ-TJMAT", "amount": "1.50", "reason": "goodwill"})
    assert response.status_code == 303 and "done=refund" in response.headers["location"]
    assert query(settings, select(Charge.refunded_fen).where(Charge.id == offline))[0][0] == 150
    sign_in(client, OTHER_MANAGER)
    response = post(client, f"/manage/charges/{offline}/refund", {"unit": "WQ-JGU-BIO", "amount": "1", "reason": "x"})
    assert response.status_code == 404


def test_booking_paid_in_advance_from_the_charges_page(client: TestClient, settings: Settings) -> None:
    async def future_booking(session):  # type: ignore[no-untyped-def]
        booking = (await session.execute(select(Booking).join(User, Booking.user_id == User.id)
                                          .where(User.email == CHEN, Booking.status == "approved",
                                                 Booking.starts_at > utcnow() + timedelta(days=1)).limit(1))).scalar_one()
        booking.estimate_fen = booking.estimate_fen or 36_000
        return booking.id, booking.estimate_fen

    booking_id, estimate = run_in(settings, future_booking)
    sign_in(client, CHEN)
    page = client.get("/me/charges", headers=HTML)
    assert f'action="/me/bookings/{booking_id}/advance"' in page.text
    response = post(client, f"/me/bookings/{booking_id}/advance")
    assert response.status_code == 303
    charge_id = int(re.search(r"/me/charges/(\d+)/pay", response.headers["location"]).group(1))
    assert post(client, f"/me/bookings/{booking_id}/advance").headers["location"] == response.headers["location"]
    pay = client.get(response.headers["location"], headers=HTML)
    assert "Advance payment" in pay.text and "Online payment is not set up on this platform." in pay.text

    async def charge(session):  # type: ignore[no-untyped-def]
        row = await session.get(Charge, charge_id)
        return row.kind, row.total_fen, row.status, await ledger.payments_of(session, charge_id)

    assert run_in(settings, charge, write=False) == ("advance", estimate, "unpaid", [])
    assert f'action="/me/bookings/{booking_id}/advance"' not in client.get("/me/charges", headers=HTML).text
