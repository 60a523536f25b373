"""Service errors carry their message id and parameters; pages translate them once from the
catalogue, the JSON API keeps the plain English message.

The unit tests need no database; the last tests raise real errors through the services and the
API on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from babel.messages.extract import extract_from_file
from litestar.testing import AsyncTestClient

from facility_share.accounts.principal import Principal
from facility_share.bookings import services as bookings
from facility_share.db.models import PolicyVersion, Settlement, utcnow
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
from facility_share.finance import settlement_api, settlements
from facility_share.finance.periods import parse_period
from facility_share.finance.settlement_pages import SettlementWords
from facility_share.payments import services as payment_services
from facility_share.payments.gateway import _translate
from facility_share.payments.pages import PaymentWords
from facility_share.settings import load_settings
from facility_share.usage import services as usage_services
from facility_share.usage.pages import UsageWords
from facility_share.web.app import create_app
from facility_share.web.i18n import I18n, error_text, translations
from tests.world import ENTERPRISE_B, build_world, local, next_weekday

SRC = Path(__file__).resolve().parent.parent / "src" / "facility_share"
CONVERTED = [SRC / "usage" / "services.py", SRC / "payments" / "services.py", SRC / "payments" / "advances.py",
             SRC / "payments" / "gateway.py", SRC / "finance" / "settlements.py", SRC / "finance" / "periods.py",
             SRC / "finance" / "policy_store.py"]
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
    # A sentence, unless it opens with a parameter (a period's label: "2026-07 overlaps …").
    assert (english[0].isupper() or msgid.startswith("%(")) and english.endswith("."), english
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
    # The ledger's plain English message is still recognised.
    ledger = Conflict("the charge is void; only unpaid charges can be marked paid")
    assert UsageWords(ZH).error(ledger) == f"该费用状态为“{ZH.gettext('Void')}”；只有未付款的费用才能登记付款。"


def test_a_catalogue_entry_that_does_not_fit_falls_back_to_the_english_message() -> None:
    error = Conflict.translatable(N_("only approved bookings can be checked in; this one is %(status)s"), status="requested")
    error.params = {"state": "requested"}  # parameters that no longer fit the catalogue's entry
    assert error_text(ZH, error) == error.message == "only approved bookings can be checked in; this one is requested"
    with pytest.raises(KeyError):  # a raise site whose parameters do not fit fails where it is written
        Conflict.translatable(N_("only approved bookings can be checked in; this one is %(status)s"), state="x")


# --- Stripe's failures (payments.gateway) ---------------------------------------------------------


STRIPE_FAILURES = [
    # (Stripe's error, what was being done, the API's English, the page's Chinese)
    (stripe.APIConnectionError("connection reset"), "start the payment",
     "Stripe could not be reached to start the payment; try again in a minute", "无法连接 Stripe，请一分钟后重试。"),
    (stripe.RateLimitError("too many requests"), "read payment pi_123",
     "Stripe is busy; try again in a minute to read payment pi_123", "无法连接 Stripe，请一分钟后重试。"),
    (stripe.AuthenticationError("bad key"), "refund the payment",
     "the platform's Stripe keys were refused when trying to refund the payment; tell the administrator",
     "Stripe 拒绝了平台的密钥，请告知平台管理员。"),
    (stripe.PermissionError("restricted key"), "cancel payment pi_9",
     "the platform's Stripe keys were refused when trying to cancel payment pi_9; tell the administrator",
     "Stripe 拒绝了平台的密钥，请告知平台管理员。"),
    (stripe.CardError("Your card was declined.", None, "card_declined"), "start the payment",
     "the payment was declined: Your card was declined.", "付款被拒绝：Your card was declined."),
    (stripe.InvalidRequestError("card expired", None), "refund the payment",
     "Stripe refused to refund the payment: card expired", "Stripe 拒绝了该请求：card expired"),
    (stripe.InvalidRequestError(None, None, code="resource_missing"), "read payment pi_1",
     "Stripe refused to read payment pi_1: resource_missing", "Stripe 拒绝了该请求：resource_missing"),
    (stripe.IdempotencyError("keys reused"), "start the payment",
     "Stripe saw a different request with the same idempotency key while trying to start the payment",
     "Stripe 收到了使用相同幂等键的不同请求，该操作未完成。"),
    (stripe.APIError("internal error"), "list the refunds of payment pi_2",
     "Stripe failed to list the refunds of payment pi_2; try again later", "Stripe 未能完成该请求，请稍后重试。"),
]


@pytest.mark.parametrize(("failure", "doing", "english", "chinese"), STRIPE_FAILURES,
                         ids=[type(f[0]).__name__ for f in STRIPE_FAILURES])
def test_stripes_failures_are_translated_on_pages_and_kept_in_english_for_the_api(
        failure: stripe.StripeError, doing: str, english: str, chinese: str) -> None:
    error = _translate(failure, doing)
    assert isinstance(error, FacilityShareError) and error.msgid is not None
    assert error.message == english  # what the API and the logs say
    assert PaymentWords(ZH).error(error) == chinese
    assert PaymentWords(EN).error(error) == english[0].upper() + english[1:] + ("" if english.endswith(".") else ".")


def test_stripes_failures_keep_their_statuses() -> None:
    statuses = {type(f).__name__: _translate(f, d).status_code for f, d, _e, _c in STRIPE_FAILURES}
    assert statuses == {"APIConnectionError": 503, "RateLimitError": 503, "AuthenticationError": 503, "PermissionError": 503,
                        "CardError": 400, "InvalidRequestError": 409, "IdempotencyError": 409, "APIError": 503}


# --- the settlement service (finance) -------------------------------------------------------------


FINANCE = Principal(user_id=1, email="finance@example.org", name="Finance", roles=frozenset({"finance"}))
NOW = datetime(2026, 8, 10, tzinfo=UTC)


class Rows:
    """What ``session.execute`` answers, read as the settlement service reads it."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def scalar_one_or_none(self) -> Any:
        return self.value

    def scalars(self) -> Rows:
        return self

    def all(self) -> list[Any]:
        return list(self.value or [])


class Session:
    """Just enough of a session for the settlement service to reach its refusals: records by
    (class, id), and the answers of successive queries."""

    def __init__(self, *records: Any, answers: tuple[Any, ...] = ()) -> None:
        self.records = {(type(r), r.id): r for r in records}
        self.answers = list(answers)

    async def get(self, cls: type, key: int) -> Any:
        return self.records.get((cls, key))

    async def execute(self, _query: Any) -> Rows:
        return Rows(self.answers.pop(0) if self.answers else None)


def policy(**kw: Any) -> PolicyVersion:
    return PolicyVersion(**{"id": 1, "code": "wuqing-default", "version": "2026.1", "effective_from": date(2026, 1, 1),
                            "effective_until": None, **kw})


def settlement(status: str = "draft", **kw: Any) -> Settlement:
    return Settlement(**{"id": 5, "status": status, "period_label": "2026-07", "policy_version_id": 1,
                         "results_digest": "a" * 64, "inputs_digest": "b" * 64, **kw})


def draft_request(**kw: Any) -> settlements.DraftRequest:
    return settlements.DraftRequest(**{"period": "2026-07", "policy_code": "wuqing-default", **kw})


async def refusal(action: Any) -> FacilityShareError:
    with pytest.raises(FacilityShareError) as caught:
        await action
    return caught.value


def shown(error: FacilityShareError) -> tuple[int, str, str, str]:
    """(status, the API's English, the page's Chinese, the page's English)."""
    return error.status_code, error.message, SettlementWords(ZH).error(error), SettlementWords(EN).error(error)


async def test_the_settlement_reviews_refusals_are_translated_on_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    approved, draft, clash = settlement("approved"), settlement(), settlement("approved", id=3, period_label="2026-Q3")

    missing = await refusal(settlements.load(Session(), 99))
    assert shown(missing) == (404, "settlement 99 does not exist", "没有该结算。", "Settlement 99 does not exist.")

    error = await refusal(settlements.recompute(Session(approved, policy()), FINANCE, 5))
    assert shown(error) == (409, "settlement 5 is approved; approved settlements never change",
                            "该结算已批准；已批准的结算不可更改。", "Settlement 5 is approved; approved settlements never change.")
    error = await refusal(settlements.recompute(Session(draft, policy(), answers=(clash,)), FINANCE, 5))
    assert shown(error)[:3] == (409, "settlement 5: its period overlaps approved settlement #3; discard this draft",
                                "其期间与已批准的结算 #3 重叠；请删除此草稿。")

    error = await refusal(settlements.approve(Session(approved, policy()), FINANCE, 5))
    assert shown(error) == (409, "settlement 5 is already approved", "该结算已经批准。", "Settlement 5 is already approved.")
    error = await refusal(settlements.approve(Session(draft, policy()), FINANCE, 5, expected_results_digest="0" * 64))
    assert shown(error)[:3] == (
        409, "settlement 5 changed after you opened it; review the recomputed lines and approve again",
        "打开本页后结算明细已发生变化；请复核重新计算的明细后再批准。")
    error = await refusal(settlements.approve(Session(draft, policy(), answers=(clash,)), FINANCE, 5))
    assert shown(error)[:3] == (409, "settlement 5: its period overlaps approved settlement #3",
                                "其期间与已批准的结算 #3 重叠；请删除此草稿。")

    async def changed_inputs(*_args: Any) -> tuple[dict[str, Any], Any]:
        return {"a refund": "recorded since"}, None

    monkeypatch.setattr(settlements, "_gather", changed_inputs)
    error = await refusal(settlements.approve(Session(draft, policy()), FINANCE, 5, expected_results_digest="a" * 64))
    assert shown(error)[:3] == (
        409, ("settlement 5: the data it was computed from has changed since (payments, refunds, statuses or usage); "
              "recompute it, review the lines, then approve"),
        "计算此草稿后，付款、退款、企业状态或使用记录已有变化；请重新计算并复核明细后再批准。")

    error = await refusal(settlements.discard(Session(approved, policy()), FINANCE, 5))
    assert shown(error) == (409, "settlement 5 is approved; approved settlements are kept for ever",
                            "该结算已批准；已批准的结算永久保留。", "Settlement 5 is approved; approved settlements are kept for ever.")


async def test_a_drafts_refusals_are_translated_on_the_form() -> None:
    async def draft(session: Session, **kw: Any) -> FacilityShareError:
        return await refusal(settlements.create_draft(session, FINANCE, draft_request(**kw), now=NOW))

    error = await draft(Session(), cutoff_at=NOW + timedelta(days=1))
    assert shown(error) == (400, "cutoff_at: the cut-off cannot be in the future; payments after it would be unknown yet",
                            "截止时间不能晚于当前时间；之后的付款尚不可知。",
                            "The cut-off cannot be in the future; payments after it would be unknown yet.")
    assert error.field == "cutoff_at"
    error = await draft(Session(), cutoff_at=datetime(2026, 6, 30, tzinfo=UTC))
    assert shown(error)[:3] == (400, "cutoff_at: the cut-off is before the period 2026-07 starts; nothing could be paid by then",
                                "截止时间早于期间开始，届时不可能有任何付款。")

    error = await draft(Session(answers=(None,)), policy_version="9.9")
    assert shown(error)[:3] == (404, "policy: no version '9.9' of policy 'wuqing-default' is loaded; run `facility-share policies import`",
                                "该政策的 9.9 版本尚未载入。")
    error = await draft(Session(answers=([],)), policy_code="nope")
    assert shown(error)[:3] == (404, "policy: no policy 'nope' is loaded; run `facility-share policies import`",
                                "尚未载入政策 nope；请用 facility-share policies import 载入政策。")
    error = await draft(Session(answers=([policy(effective_from=date(2026, 7, 15))],)))
    assert shown(error) == (
        400, "policy: no version of 'wuqing-default' is in force for the whole of 2026-07; name a version explicitly or split the period",
        "wuqing-default 没有在 2026-07 全期有效的版本；请指定版本或缩短期间。",
        "No version of 'wuqing-default' is in force for the whole of 2026-07; name a version explicitly or split the period.")
    error = await draft(Session(answers=([policy()], settlement("approved", id=2, period_label="2026-Q3"))))
    assert shown(error)[:3] == (
        409, ("period: 2026-07 overlaps approved settlement #2 (2026-Q3); an approved period is not settled again — "
              "later settlements carry its corrections"),
        "2026-07 与已批准的结算 #2 重叠；已批准的期间不再重复结算，更正由之后的结算承接。")
    assert error.field == "period"


async def test_the_api_reports_an_unknown_policy_as_bad_input_and_the_page_still_translates_it() -> None:
    with pytest.raises(InvalidInput) as caught:
        await settlement_api.draft(Session(answers=([],)), FINANCE, draft_request(policy_code="nope"))
    error = caught.value
    assert shown(error)[:3] == (400, "policy: no policy 'nope' is loaded; run `facility-share policies import`",
                                "尚未载入政策 nope；请用 facility-share policies import 载入政策。")
    assert error.field == "policy"


@pytest.mark.parametrize(
    ("raw", "english", "chinese"),
    [
        ("someday", "period: expected a year (2026), a quarter (2026-Q3) or a month (2026-07), got 'someday'",
         "请输入年份（2026）、季度（2026-Q3）或月份（2026-07）。"),
        ("1999", "period: the year must be between 2000 and 2100, got 1999", "请选择 2000 至 2100 年之间的年份。"),
        ("2101-Q1", "period: the year must be between 2000 and 2100, got 2101", "请选择 2000 至 2100 年之间的年份。"),
        ("1999-07", "period: the year must be between 2000 and 2100, got 1999", "请选择 2000 至 2100 年之间的年份。"),
        ("2026-13", "period: the month must be 01 to 12, got 13", "月份应为 01 至 12。"),
    ],
)
def test_a_malformed_period_is_translated_on_the_form(raw: str, english: str, chinese: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_period(raw)
    assert shown(caught.value)[:3] == (400, english, chinese)
    assert caught.value.field == "period"


def test_the_pages_no_longer_recognise_english_by_pattern() -> None:
    from facility_share.finance import settlement_pages
    from facility_share.payments import pages as payment_pages

    assert not hasattr(settlement_pages, "SERVICE_ERRORS") and not hasattr(payment_pages, "GATEWAY_ERRORS")
    # An English message without a message id is shown as gettext of itself, as anywhere else.
    plain = Conflict("settlement 5 is already approved")
    assert SettlementWords(ZH).error(plain) == PaymentWords(ZH).error(plain) == "settlement 5 is already approved"


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
