"""Service errors carry their message id and parameters; pages translate them once from the
catalogue, the JSON API keeps the plain English message.

The unit tests need no database; the last tests raise real errors through the services and the
API on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from litestar.testing import AsyncTestClient

from facility_share.bookings import services as bookings
from facility_share.db.models import utcnow
from facility_share.errors import (
    N_,
    Conflict,
    FacilityShareError,
    InvalidInput,
    NotFound,
    Term,
    booking_status,
    charge_status,
    fen,
)
from facility_share.payments import services as payment_services
from facility_share.payments.pages import PaymentWords
from facility_share.settings import load_settings
from facility_share.usage import services as usage_services
from facility_share.usage.pages import UsageWords
from facility_share.web.app import create_app
from facility_share.web.i18n import I18n, error_text, translations
from tests.world import ENTERPRISE_B, build_world, local, next_weekday

SRC = Path(__file__).resolve().parent.parent / "src" / "facility_share"
CONVERTED = [SRC / "usage" / "services.py", SRC / "payments" / "services.py", SRC / "payments" / "advances.py"]
ZH, EN = I18n("zh_CN"), I18n("en")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def marked_msgids() -> list[str]:
    """The message ids the converted services mark with N_ (what babel extracts)."""
    found: set[str] = set()
    for path in CONVERTED:
        for _line, message, _comments, _context in extract_from_file("python", str(path), keywords={"N_": None}):
            found.add(message)
    return sorted(found)


# --- the error itself ---------------------------------------------------------------------------


def test_the_plain_constructor_is_unchanged() -> None:
    error = Conflict("the slot is taken", detail={"slot": 3})
    assert (error.message, str(error), error.detail) == ("the slot is taken", "the slot is taken", {"slot": 3})
    assert (error.msgid, dict(error.params), error.field) == (None, {}, "")
    assert (error.status_code, error.code) == (409, "conflict")


def test_the_translatable_form_formats_the_plain_message() -> None:
    error = InvalidInput.translatable(N_("a session lasts at most %(days)s days; split longer use"), field="ended_at", days=31)
    assert isinstance(error, InvalidInput) and error.status_code == 400
    assert error.message == str(error) == "ended_at: a session lasts at most 31 days; split longer use"
    assert (error.msgid, error.params, error.field) == ("a session lasts at most %(days)s days; split longer use", {"days": 31}, "ended_at")
    status = Conflict.translatable(N_("the charge is %(status)s; only unpaid charges can be paid"), status=charge_status("void"))
    assert status.message == "the charge is void; only unpaid charges can be paid"
    assert status.params["status"] == Term("charge_status", "void")
    refund = Conflict.translatable(
        N_("the refund of %(amount)s exceeds the %(left)s that can still be refunded on charge %(charge)s"),
        amount=fen(12_000), left=fen(5_000), charge=7,
    )
    assert refund.message == "the refund of 12000 fen exceeds the 5000 fen that can still be refunded on charge 7"


# --- every converted message ----------------------------------------------------------------------


def test_the_converted_services_mark_their_messages() -> None:
    msgids = marked_msgids()
    assert len(msgids) >= 40
    assert "only approved bookings can be checked in; this one is %(status)s" in msgids
    assert "the refund of %(amount)s exceeds the %(left)s that can still be refunded on charge %(charge)s" in msgids


@pytest.mark.parametrize("msgid", marked_msgids())
def test_each_converted_error_renders_in_chinese_and_english_with_its_parameters(msgid: str) -> None:
    names = sorted(set(PLACEHOLDER.findall(msgid)))
    params = {name: f"<{name}>" for name in names}
    error = Conflict.translatable(msgid, **params)

    chinese = error_text(ZH, error)
    template = translations("zh_CN").gettext(msgid)
    assert template != msgid, f"no Chinese for {msgid!r}"
    # The Chinese may leave out what the page already shows (the charge a form is on).
    assert set(PLACEHOLDER.findall(template)) <= set(names), template
    assert chinese == template % params
    english = error_text(EN, error)
    assert english[0].isupper() and english.endswith("."), english
    assert english[1:-1] == (msgid % params)[1:]
    for name, value in params.items():
        assert value in english and (value in chinese or f"%({name})s" not in template)


def test_statuses_and_amounts_are_shown_in_the_readers_words() -> None:
    check_in = Conflict.translatable(N_("only approved bookings can be checked in; this one is %(status)s"),
                                     status=booking_status("requested"))
    assert UsageWords(ZH).error(check_in) == "只有已批准的预约才能签到；该预约当前状态为“待审批”。"
    assert UsageWords(EN).error(check_in) == "Only approved bookings can be checked in; this one is Awaiting approval."
    advance = Conflict.translatable(N_("only approved bookings can be paid in advance; this one is %(status)s"),
                                    status=booking_status("cancelled"))
    assert PaymentWords(ZH).error(advance) == "只有已批准的预约可以预付；该预约的状态为“已取消”。"
    assert PaymentWords(EN).error(advance) == "Only approved bookings can be paid in advance; this one is Cancelled."
    paid = Conflict.translatable(N_("the charge is %(status)s; only unpaid charges can be marked paid"), status=charge_status("paid"))
    assert UsageWords(ZH).error(paid) == "该费用状态为“已付款”；只有未付款的费用才能登记付款。"
    assert UsageWords(EN).error(paid) == "The charge is Paid; only unpaid charges can be marked paid."
    processing = Conflict.translatable(N_("the charge is %(status)s; only unpaid charges can be paid"),
                                       status=charge_status("processing"))
    assert PaymentWords(ZH).error(processing) == f"该费用状态为“{ZH.gettext('Processing')}”，只有未付款的费用可以支付。"
    assert PaymentWords(EN).error(processing) == "The charge is Processing; only unpaid charges can be paid."
    refund = Conflict.translatable(
        N_("the refund of %(amount)s exceeds the %(left)s that can still be refunded on charge %(charge)s"),
        amount=fen(12_000), left=fen(5_050), charge=7,
    )
    assert PaymentWords(ZH).error(refund) == "退款 ¥120.00 超过了该费用仍可退还的 ¥50.50。"
    assert PaymentWords(EN).error(refund) == "The refund of ¥120.00 exceeds the ¥50.50 that can still be refunded on charge 7."
    # Without the page's words a status reads as its code, never as an error.
    assert error_text(EN, paid) == "The charge is paid; only unpaid charges can be marked paid."


def test_the_field_is_kept_apart_from_the_sentence() -> None:
    samples = InvalidInput.translatable(N_("give the number of samples as a whole number from 0 to 100000"), field="samples")
    assert samples.message == "samples: give the number of samples as a whole number from 0 to 100000"
    assert UsageWords(EN).error(samples) == "Give the number of samples as a whole number from 0 to 100000."
    assert UsageWords(ZH).error(samples) == "请填写样品数，为 0 到 100000 之间的整数。"


def test_an_error_without_the_translatable_form_shows_gettext_of_its_message() -> None:
    known = Conflict("that time has just been booked by someone else; choose another time")
    assert UsageWords(ZH).error(known) == ZH.gettext(known.message) != known.message
    assert UsageWords(EN).error(known) == known.message
    unknown = FacilityShareError("something nobody translated")
    assert UsageWords(ZH).error(unknown) == PaymentWords(ZH).error(unknown) == "something nobody translated"
    # The messages of modules that still raise plain English are recognised as before.
    assert PaymentWords(ZH).error(Conflict("Stripe refused to refund the payment: card expired")) == "Stripe 拒绝了该请求：card expired"
    ledger = Conflict("the charge is void; only unpaid charges can be marked paid")
    assert UsageWords(ZH).error(ledger) == f"该费用状态为“{ZH.gettext('Void')}”；只有未付款的费用才能登记付款。"


def test_a_catalogue_entry_that_does_not_fit_falls_back_to_the_english_message() -> None:
    error = Conflict.translatable(N_("only approved bookings can be checked in; this one is %(status)s"), status="requested")
    error.params = {"state": "requested"}  # parameters that no longer fit the catalogue's entry
    assert error_text(ZH, error) == error.message == "only approved bookings can be checked in; this one is requested"
    with pytest.raises(KeyError):  # a raise site whose parameters do not fit fails where it is written
        Conflict.translatable(N_("only approved bookings can be checked in; this one is %(status)s"), state="x")


# --- through the services and the API -------------------------------------------------------------


PAST_DAY = next_weekday(utcnow() - timedelta(days=35))  # the API takes the real clock: bookings in the past
XRD = "WQ-TJMAT-XRD01"
SEM = "WQ-TJMAT-SEM01"


@pytest.fixture
async def world(imported):  # type: ignore[no-untyped-def]
    return await build_world(imported)


@pytest.fixture
async def client(imported, world, database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[no-untyped-def]
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)
    async with AsyncTestClient(app) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "accept": "application/json"}


async def test_the_apis_english_messages_are_unchanged(imported, world, client) -> None:  # type: ignore[no-untyped-def]
    start = local(PAST_DAY, 9)
    then = start - timedelta(days=3)
    async with imported.session(write=True) as session:
        approved = await bookings.request_booking(session, world["member_a"], bookings.BookingInput(XRD, start, start + timedelta(hours=1)),
                                                  max_open_requests=20, now=then)
        await bookings.change_status(session, world["manager"], approved.id, "approve", now=then)
        requested = await bookings.request_booking(
            session, world["member_a"], bookings.BookingInput(XRD, start + timedelta(hours=1), start + timedelta(hours=2)),
            max_open_requests=20, now=then,
        )
        await session.commit()
    manager = bearer(world.tokens["manager"])

    async def message(path: str, status: int, **kw) -> str:  # type: ignore[no-untyped-def]
        response = await client.post(path, headers=manager, **kw)
        assert response.status_code == status, response.text
        return response.json()["error"]["message"]

    assert await message(f"/api/v1/bookings/{approved.id}/check-out", 409) == "this booking has no open session; check it in first"
    assert await message(f"/api/v1/bookings/{requested.id}/check-in", 409) == (
        "only approved bookings can be checked in; this one is requested")
    assert (await client.post(f"/api/v1/bookings/{approved.id}/check-in", headers=manager)).status_code == 201
    assert await message(f"/api/v1/bookings/{approved.id}/check-in", 409) == "this booking is already checked in"
    rating = await client.post(f"/api/v1/bookings/{approved.id}/rating", json={"stars": 5}, headers=bearer(world.tokens["member_a"]))
    assert (rating.status_code, rating.json()["error"]["message"]) == (409, "only a completed service can be rated")
    assert await message("/api/v1/charges/999999/mark-paid", 404, json={"method": "cash", "reference": "R"}) == (
        "no charge 999999 in the units you manage")

    walk_in = await client.post("/api/v1/usage/walk-ins", headers=manager, json={
        "resource_code": SEM, "started_at": start.isoformat(), "ended_at": (start + timedelta(hours=1)).isoformat(),
        "enterprise_uscc": ENTERPRISE_B})
    assert walk_in.status_code == 201, walk_in.text
    charge_id = (await client.get("/api/v1/charges", headers=manager)).json()[0]["id"]
    mark_paid = f"/api/v1/charges/{charge_id}/mark-paid"
    assert await message(mark_paid, 400, json={"method": "alipay", "reference": "R"}) == "method: expected bank_transfer, invoice or cash"
    assert (await client.post(mark_paid, json={"method": "cash", "reference": "R"}, headers=manager)).status_code == 200
    assert await message(mark_paid, 409, json={"method": "cash", "reference": "R"}) == (
        "the charge is paid; only unpaid charges can be marked paid")

    # The same errors on a page: one translation, the status in the reader's words.
    async with imported.session(write=True) as session:
        with pytest.raises(Conflict) as caught:
            await usage_services.check_in(session, world["manager"], requested.id, now=start + timedelta(hours=1))
    assert UsageWords(ZH).error(caught.value) == "只有已批准的预约才能签到；该预约当前状态为“待审批”。"
    assert UsageWords(EN).error(caught.value) == "Only approved bookings can be checked in; this one is Awaiting approval."
    async with imported.session(write=True) as session:
        with pytest.raises(Conflict) as refused:
            await payment_services.manager_refund(session, world["manager"], charge_id, 10**9, reason="too much", gateway=None)
    assert refused.value.message.startswith("the refund of 1000000000 fen exceeds the ")
    assert refused.value.message.endswith(f" fen that can still be refunded on charge {charge_id}")
    assert PaymentWords(ZH).error(refused.value).startswith("退款 ¥10,000,000.00 超过了该费用仍可退还的 ¥")


async def test_not_found_keeps_its_status_and_translates(imported, world) -> None:  # type: ignore[no-untyped-def]
    async with imported.session(write=True) as session:
        with pytest.raises(NotFound) as missing:
            await usage_services.revoke_agent_key(session, world["manager"], 999_999)
    assert missing.value.status_code == 404 and missing.value.message == "no agent key 999999 in the units you manage"
    assert UsageWords(ZH).error(missing.value) == "您所管理的单位中没有采集程序密钥 #999999。"
