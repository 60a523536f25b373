"""Payment pages.

The enterprise (``/me/charges/{id}/pay``, ``/me/payments/{id}``): with Stripe keys, a payment
page with Stripe's Payment Element (card, and Alipay / WeChat Pay where the account enables
them); the charge shows "processing" until Stripe confirms, and the page refreshes itself (a
meta refresh, no script needed) until it does. Without keys (offline mode), the same address
explains how to pay by bank transfer or invoice, and no request to Stripe is ever made.

The unit's manager (``/manage/payments``): the unit's charges with their payments and
refunds, and a refund form (amount and reason) on each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy import or_, select

from facility_share.accounts.pages import read_form, text, with_status
from facility_share.accounts.principal import Principal
from facility_share.db.models import Charge, Enterprise, Payment, Refund, Resource, utcnow
from facility_share.errors import Conflict, FacilityShareError, NotFound
from facility_share.payments import advances, ledger, rules, services
from facility_share.payments.webhooks import app_gateway
from facility_share.settings import Settings
from facility_share.usage.pages import UsageWords, choose_unit, error_status, managed_units
from facility_share.web import paging
from facility_share.web.deps import DbSession, Lang, RecordId
from facility_share.web.i18n import I18n
from facility_share.web.render import render

STRIPE_JS = "https://js.stripe.com/v3/"
HISTORY = timedelta(days=180)
PAGE_SIZE = 20
YUAN = re.compile(r"^\s*(?:¥|￥)?\s*(\d{1,9})(?:\.(\d{1,2}))?\s*$")


def parse_yuan(raw: str) -> int | None:
    """A yuan amount typed by a person ("120", "120.5", "¥120.50") in fen, or None."""
    found = YUAN.match(raw or "")
    if not found:
        return None
    whole, part = found.group(1), (found.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(part)


class PaymentWords(UsageWords):
    """Labels and messages of the payment pages."""

    def charge_status(self, status: str) -> str:
        return {
            "unpaid": self._("Unpaid"), "paid": self._("Paid"), "void": self._("Void"),
            "processing": self._("Processing"), "refunded": self._("Refunded"),
        }.get(status, status)

    def payment_status(self, status: str) -> str:
        return {
            "pending": self._("Waiting for the payer"), "processing": self._("Processing"),
            "succeeded": self._("Succeeded"), "failed": self._("Declined"), "canceled": self._("Cancelled"),
        }.get(status, status)

    def refund_status(self, status: str) -> str:
        return {
            "pending": self._("Under way"), "succeeded": self._("Refunded"), "failed": self._("Failed"),
            "canceled": self._("Cancelled"),
        }.get(status, status)

    def method(self, method: str) -> str:
        return {
            "bank_transfer": self._("Bank transfer"), "invoice": self._("Invoice"), "cash": self._("Cash"),
            "card": self._("Card"), "alipay": self._("Alipay"), "wechat_pay": self._("WeChat Pay"),
            "advance": self._("Advance payment"), "correction": self._("Moved from a corrected charge"), "": "—",
        }.get(method, method)

    def provider(self, provider: str) -> str:
        return {"stripe": self._("Online (Stripe)"), "offline": self._("Offline")}.get(provider, provider)

    def cause(self, cause: str) -> str:
        return {
            "manager": self._("By the managing unit"), "cancellation": self._("Booking cancelled"),
            "stripe": self._("At Stripe"), "applied": self._("Applied to the service charge"),
            "advance_surplus": self._("Advance surplus"), "correction": self._("Usage corrected"),
        }.get(cause, cause)

    def charge_kind(self, kind: str) -> str:
        return {"service": self._("Service"), "no_show": self._("No-show fee"), "advance": self._("Advance payment")}.get(kind, kind)


# --- the enterprise ----------------------------------------------------------------------------------


class EnterprisePaymentPages(Controller):
    path = "/me"
    include_in_schema = False
    opt = {"access": "enterprise"}

    async def _charge_page(self, request: Request, session: Any, i18n: I18n, charge_id: int, *, error: str = "",
                           status: int = 200) -> Template:
        principal: Principal = request.user
        settings: Settings = request.app.state.settings
        charge = await session.get(Charge, charge_id)
        if charge is None or principal.enterprise_id is None or charge.enterprise_id != principal.enterprise_id:
            raise NotFound(f"no charge {charge_id}")
        resource = await session.get(Resource, charge.resource_id)
        payments = await ledger.payments_of(session, charge.id)
        refunds = await ledger.refunds_of(session, charge.id)
        page = render(
            request, i18n, "payments/pay.html",
            charge=charge, resource=resource, payments=payments, refunds=refunds, words=PaymentWords(i18n),
            online=settings.stripe_enabled, due=rules.outstanding(charge.total_fen, charge.paid_fen), error=error,
            method_names=("、" if i18n.is_zh else ", ").join(PaymentWords(i18n).method(m) for m in settings.stripe_payment_methods),
        )
        return with_status(page, status)

    @get("/charges/{charge_id:int}/pay", name="pay-charge", cache=False)
    async def pay_page(self, request: Request, db_session: DbSession, i18n: Lang, charge_id: RecordId) -> Template:
        return await self._charge_page(request, db_session, i18n, charge_id)

    @post("/charges/{charge_id:int}/pay", name="pay-charge-start")
    async def start(self, request: Request, db_session: DbSession, i18n: Lang, charge_id: RecordId) -> Template | Redirect:
        settings: Settings = request.app.state.settings
        try:
            payment = await services.start_payment(db_session, request.user, charge_id, gateway=app_gateway(request),
                                                   settings=settings)
        except FacilityShareError as exc:
            await db_session.rollback()
            if isinstance(exc, NotFound):
                raise
            return await self._charge_page(request, db_session, i18n, charge_id, error=PaymentWords(i18n).error(exc),
                                           status=error_status(exc))
        await db_session.commit()
        return Redirect(f"/me/payments/{payment.id}", status_code=303)

    @post("/bookings/{booking_id:int}/advance", name="pay-booking-in-advance")
    async def advance(self, request: Request, db_session: DbSession, i18n: Lang, booking_id: RecordId) -> Redirect:
        """Pay an approved booking before its slot: its fee estimate becomes an advance charge."""
        try:
            charge = await advances.open_advance(db_session, request.user, booking_id)
        except Conflict as exc:
            await db_session.rollback()
            raise Conflict(PaymentWords(i18n).error(exc)) from None
        await db_session.commit()
        return Redirect(f"/me/charges/{charge.id}/pay", status_code=303)

    @get("/payments/{payment_id:int}", name="my-payment", cache=False)
    async def payment_page(self, request: Request, db_session: DbSession, i18n: Lang, payment_id: RecordId) -> Template:
        settings: Settings = request.app.state.settings
        payment, charge = await services.own_payment(db_session, request.user, payment_id)
        resource = await db_session.get(Resource, charge.resource_id)
        client_secret, error = "", ""
        words = PaymentWords(i18n)
        if payment.provider == "stripe" and payment.status in ("pending", "failed") and charge.status == "unpaid":
            gateway = app_gateway(request)
            if gateway is None:
                error = words._("Online payment is not available; pay by bank transfer or invoice as the managing unit explains.")
            else:
                try:
                    intent = await gateway.retrieve_intent(payment.stripe_payment_intent_id or "")
                    client_secret = intent.client_secret
                except FacilityShareError as exc:
                    error = words.error(exc)
        return_url = str(request.base_url).rstrip("/") + f"/me/payments/{payment.id}/return"
        page = render(
            request, i18n, "payments/payment.html",
            payment=payment, charge=charge, resource=resource, words=words, client_secret=client_secret, error=error,
            publishable_key=settings.stripe_publishable_key if client_secret else "", stripe_js=STRIPE_JS,
            return_url=return_url, waiting=payment.status == "processing" or charge.status == "processing",
        )
        page.headers["Cache-Control"] = "no-store"
        return page

    @get("/payments/{payment_id:int}/return", name="my-payment-return", cache=False)
    async def returned(self, request: Request, payment_id: RecordId) -> Redirect:
        """Where Stripe sends the payer back (``redirect_status`` says what Stripe.js saw)."""
        redirect_status = (request.query_params.get("redirect_status") or "")[:20]
        # Stripe returns the payer with a GET, whose request session only reads; the claim is
        # written in a write transaction of its own (BEGIN IMMEDIATE on SQLite, so it waits for
        # a webhook writing the same charge instead of failing on a stale snapshot).
        async with request.app.state.db.session(write=True) as writer:
            await services.payer_returned(writer, request.user, payment_id, redirect_status)
            await writer.commit()
        query = urlencode({"returned": redirect_status}) if redirect_status in ("succeeded", "processing", "failed") else ""
        return Redirect(f"/me/payments/{payment_id}" + (f"?{query}" if query else ""), status_code=303)


# --- the managing unit -------------------------------------------------------------------------------


@dataclass
class RefundForm:
    amount: str = ""
    reason: str = ""
    error: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: Any = "") -> Any:
        return getattr(self, name, default)


class ManagerPaymentPages(Controller):
    path = "/manage"
    include_in_schema = False
    opt = {"access": "manager"}

    async def _page(self, request: Request, session: Any, i18n: I18n, *, unit_code: str,
                    forms: dict[int, RefundForm] | None = None, status: int = 200, number: int | None = None) -> Template:
        """The unit's charges with money, page ``number`` (else the query string's ``page``)."""
        units = await managed_units(session, request.user)
        unit = choose_unit(units, unit_code)
        since = utcnow() - HISTORY
        statement = (
            select(Charge, Resource, Enterprise)
            .join(Resource, Charge.resource_id == Resource.id)
            .join(Enterprise, Charge.enterprise_id == Enterprise.id)
            .where(Resource.unit_id == unit.id, or_(Charge.paid_fen > 0, Charge.status == "processing"),
                   Charge.updated_at >= since)
        )
        page = paging.paginate(
            await paging.count_rows(session, statement),
            paging.page_number(request.query_params) if number is None else number,
            size=PAGE_SIZE, path="/manage/payments", params={"unit": unit.code}, anchor="charges",
        )
        rows = (
            await session.execute(
                statement.order_by(Charge.updated_at.desc(), Charge.id.desc()).offset(page.offset).limit(page.size)
            )
        ).all()
        ids = [c.id for c, _r, _e in rows]
        payments: dict[int, list[Payment]] = {i: [] for i in ids}
        refunds: dict[int, list[Refund]] = {i: [] for i in ids}
        if ids:
            for p in (await session.execute(select(Payment).where(Payment.charge_id.in_(ids)).order_by(Payment.id))).scalars():
                payments[p.charge_id].append(p)
            for r in (await session.execute(select(Refund).where(Refund.charge_id.in_(ids)).order_by(Refund.id))).scalars():
                refunds[r.charge_id].append(r)
        refundable = {
            cid: sum(rules.refundable(p.amount_received_fen, [(r.amount_fen, r.status) for r in refunds[cid] if r.payment_id == p.id])
                     for p in payments[cid] if p.status == "succeeded")
            for cid in ids
        }
        done = request.query_params.get("done", "")
        page = render(
            request, i18n, "payments/manage.html",
            units=units, unit=unit, rows=rows, payments=payments, refunds=refunds, refundable=refundable,
            forms=forms or {}, words=PaymentWords(i18n), done=done if done in ("refund",) else "",
            online=request.app.state.settings.stripe_enabled, page=page,
        )
        return with_status(page, status)

    @get("/payments", name="manage-payments", cache=False)
    async def payments(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        return await self._page(request, db_session, i18n, unit_code=request.query_params.get("unit") or "")

    @post("/charges/{charge_id:int}/refund", name="manage-charge-refund")
    async def refund(self, request: Request, db_session: DbSession, i18n: Lang, charge_id: RecordId) -> Template | Redirect:
        words = PaymentWords(i18n)
        data = await read_form(request)
        unit_code = text(data, "unit", 40)
        # The form says which page it was on: shown again there, or gone back to.
        number = paging.page_number(data)
        form = RefundForm(amount=text(data, "amount", 20), reason=text(data, "reason", 600))
        amount = parse_yuan(form.amount)
        if amount is None or amount <= 0:
            form.errors["amount"] = words._("Give the amount in yuan, e.g. 120.50.")
        if not form.reason:
            form.errors["reason"] = words._("Say why the money is returned; the enterprise will read it.")
        elif len(form.reason) > 500:
            form.errors["reason"] = words._("Write at most 500 characters.")
        if not form.errors:
            try:
                await services.manager_refund(db_session, request.user, charge_id, amount or 0, reason=form.reason,
                                              gateway=app_gateway(request))
            except FacilityShareError as exc:
                await db_session.rollback()
                if isinstance(exc, NotFound):
                    raise
                form.error = words.error(exc)
                return await self._page(request, db_session, i18n, unit_code=unit_code, forms={charge_id: form},
                                        status=error_status(exc), number=number)
            await db_session.commit()
            query = {"unit": unit_code, **({"page": number} if number > 1 else {}), "done": "refund"}
            return Redirect(f"/manage/payments?{urlencode(query)}#charge-{charge_id}", status_code=303)
        return await self._page(request, db_session, i18n, unit_code=unit_code, forms={charge_id: form}, status=400,
                                number=number)


__all__ = ["EnterprisePaymentPages", "ManagerPaymentPages", "PaymentWords", "parse_yuan"]
