"""Paying charges through Stripe, applying what Stripe reports, refunding, reconciling.

Every way news reaches us — a webhook, the payer coming back from the payment page, the
reconcile command, Stripe's answer to a refund — goes through the same two functions,
``apply_intent`` and ``apply_refund``, which only move state forward (``rules``) and recompute
the charge's sums from the rows (``ledger``). Each state change writes an audit event.

Callers own the transaction (we flush). A charge is locked (row lock on PostgreSQL; SQLite's
write transactions are serialised) before its money changes.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share import audit
from facility_share.accounts.principal import Principal
from facility_share.db.models import Charge, Payment, Refund, Resource, StripeEvent, utcnow
from facility_share.errors import N_, Conflict, FacilityShareError, InvalidInput, NotFound, charge_status, fen
from facility_share.payments import ledger, rules
from facility_share.payments.gateway import Gateway, Intent, StripeRefund
from facility_share.settings import Settings

PAYMENT_AUDITED = ("status", "amount_fen", "amount_received_fen", "refunded_fen", "method", "stripe_payment_intent_id",
                   "stripe_charge_id", "failure_code", "failure_message")
REFUND_AUDITED = ("status", "amount_fen", "cause", "stripe_refund_id", "failure_message")
REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
MAX_REASON = 500


@dataclass(frozen=True)
class Change:
    """One thing that moved, for reports (the reconcile command prints one line each)."""

    payment_id: int
    charge_id: int
    what: str

    def __str__(self) -> str:
        return f"payment {self.payment_id} (charge {self.charge_id}): {self.what}"


def _stripe_time(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


# --- paying ----------------------------------------------------------------------------------------


async def _own_charge(session: AsyncSession, principal: Principal, charge_id: int) -> Charge:
    charge = await ledger.locked_charge(session, charge_id)
    if principal.enterprise_id is None or charge.enterprise_id != principal.enterprise_id:
        raise NotFound.translatable(N_("no charge %(charge)s"), charge=charge_id)
    return charge


async def start_payment(session: AsyncSession, principal: Principal, charge_id: int, *, gateway: Gateway | None,
                        settings: Settings) -> Payment:
    """Open (or reuse) the Stripe payment of a charge: a PaymentIntent in CNY for what is
    outstanding, created with the payment's idempotency key.

    A pending attempt for the same amount is reused, so a double click or a reload never makes
    a second intent. Raises NotFound (not the caller's charge), Conflict (nothing to pay, or a
    payment is being confirmed), ServiceUnavailable (offline mode, or Stripe unreachable).
    """
    charge = await _own_charge(session, principal, charge_id)
    if gateway is None:
        raise Conflict.translatable(
            N_("online payment is not available; pay by bank transfer or invoice as the managing unit explains")
        )
    if charge.status == "processing":
        raise Conflict.translatable(N_("a payment of this charge is being confirmed; wait for Stripe's answer"))
    if charge.status != "unpaid":
        raise Conflict.translatable(N_("the charge is %(status)s; only unpaid charges can be paid"),
                                    status=charge_status(charge.status))
    due = rules.outstanding(charge.total_fen, charge.paid_fen)
    if due <= 0:
        raise Conflict.translatable(N_("nothing is outstanding on this charge"))
    stale: list[Payment] = []
    for payment in await ledger.payments_of(session, charge.id):
        if payment.provider == "stripe" and payment.status in ("pending", "failed") and payment.stripe_payment_intent_id:
            if payment.amount_fen == due:
                return payment
            stale.append(payment)
    methods = settings.stripe_payment_methods
    payment = Payment(charge_id=charge.id, provider="stripe", status="pending", currency="cny", amount_fen=due,
                      method=methods[0] if len(methods) == 1 else "",
                      idempotency_key=f"pay-{charge.id}-{uuid.uuid4().hex}", created_by_id=principal.user_id)
    session.add(payment)
    await session.flush()
    intent = await gateway.create_intent(
        amount_fen=due, currency="cny", methods=settings.stripe_payment_methods,
        metadata={"charge_id": str(charge.id), "payment_id": str(payment.id)}, idempotency_key=payment.idempotency_key,
    )
    payment.stripe_payment_intent_id = intent.id
    await session.flush()
    audit.record(session, action="start", entity="payment", entity_id=payment.id, actor_id=principal.user_id,
                 after=audit.snapshot(payment, PAYMENT_AUDITED))
    for old in stale:
        # An attempt for an amount no longer due must not be completed any more.
        try:
            intent = await gateway.cancel_intent(old.stripe_payment_intent_id or "")
        except Conflict:
            continue
        await apply_intent(session, old, rules.intent_status(intent.status), reported_at=utcnow(), intent=intent,
                           actor_id=principal.user_id, actor_kind="user", note="replaced by a new attempt")
    return payment


async def own_payment(session: AsyncSession, principal: Principal, payment_id: int) -> tuple[Payment, Charge]:
    """A payment of the caller's enterprise with its charge.

    Raises:
        NotFound: no such payment, or another enterprise's.
    """
    payment = await session.get(Payment, payment_id)
    charge = await session.get(Charge, payment.charge_id) if payment else None
    if payment is None or charge is None or principal.enterprise_id is None or charge.enterprise_id != principal.enterprise_id:
        raise NotFound(f"no payment {payment_id}")
    return payment, charge


async def payer_returned(session: AsyncSession, principal: Principal, payment_id: int, redirect_status: str) -> Payment:
    """The payer came back from Stripe's page. If Stripe accepted the payment for confirmation,
    the charge shows "processing" until Stripe's own word (webhook or reconcile) settles it;
    this claim never overrides anything Stripe said."""
    payment, charge = await own_payment(session, principal, payment_id)
    await ledger.locked_charge(session, charge.id)
    if redirect_status in ("succeeded", "processing") and payment.status in ("pending", "failed"):
        before = audit.snapshot(payment, PAYMENT_AUDITED)
        payment.status = "processing"
        payment.updated_at = utcnow()
        await session.flush()
        audit.record(session, action="submitted", entity="payment", entity_id=payment.id, actor_id=principal.user_id,
                     before=before, after=audit.snapshot(payment, PAYMENT_AUDITED), reason=f"payer returned: {redirect_status}")
        await ledger.recompute(session, charge, actor_id=principal.user_id, actor_kind="user", reason="payment submitted")
    return payment


# --- applying what Stripe reports ------------------------------------------------------------------


async def apply_intent(session: AsyncSession, payment: Payment, status: str, *, reported_at: datetime,
                       intent: Intent | None = None, actor_id: int | None = None, actor_kind: str = "stripe",
                       note: str = "") -> tuple[rules.Verdict, Change | None]:
    """Move a payment to ``status`` as Stripe reported it at ``reported_at`` (Stripe's clock),
    if that is news (``rules.payment_verdict``); then recompute its charge."""
    charge = await ledger.locked_charge(session, payment.charge_id)
    await session.refresh(payment)
    verdict = rules.payment_verdict(payment.status, payment.stripe_updated_at, status, reported_at)
    if verdict is rules.Verdict.STALE:
        return verdict, None
    before = audit.snapshot(payment, PAYMENT_AUDITED)
    charge_before = charge.status
    if payment.stripe_updated_at is None or reported_at > payment.stripe_updated_at:
        payment.stripe_updated_at = reported_at
    if intent is not None:
        payment.stripe_charge_id = intent.latest_charge_id or payment.stripe_charge_id
        payment.method = (intent.payment_method_type or payment.method)[:20]
    if verdict is rules.Verdict.APPLIED:
        payment.status = status
        if status == "succeeded":
            received = intent.amount_received_fen if intent is not None and intent.amount_received_fen else payment.amount_fen
            payment.amount_received_fen = min(received, payment.amount_fen)
            # When the money was taken (finance cuts off by it), not when we heard of it.
            payment.succeeded_at = (intent.charged_at if intent is not None and intent.charged_at else None) or reported_at
            payment.failure_code = payment.failure_message = ""
        elif status == "failed":
            payment.failure_code = (intent.error_code if intent else "")[:100]
            payment.failure_message = (intent.error_message if intent else "")[:500] or "the payment was declined"
        elif status == "canceled":
            payment.failure_message = payment.failure_message or (note or "the payment was cancelled")[:500]
        elif status in ("processing", "pending"):
            payment.failure_code = payment.failure_message = ""
    payment.updated_at = utcnow()
    await session.flush()
    after = audit.snapshot(payment, PAYMENT_AUDITED)
    if after == before:
        return verdict, None
    audit.record(session, action=f"stripe_{status}" if verdict is rules.Verdict.APPLIED else "stripe_details",
                 entity="payment", entity_id=payment.id, actor_id=actor_id, actor_kind=actor_kind,
                 before=before, after=after, reason=note[:MAX_REASON])
    await ledger.recompute(session, charge, actor_id=actor_id, actor_kind=actor_kind, reason=f"payment {payment.id} {payment.status}")
    what = f"{before['status']} → {payment.status}" if before["status"] != payment.status else "details updated"
    if charge.status != charge_before:
        what += f"; charge {charge_before} → {charge.status}"
    return verdict, Change(payment.id, charge.id, what)


async def _payment_for_intent(session: AsyncSession, intent_id: str) -> Payment | None:
    if not intent_id:
        return None
    return (await session.execute(select(Payment).where(Payment.stripe_payment_intent_id == intent_id))).scalar_one_or_none()


async def apply_refund(session: AsyncSession, news: StripeRefund, *, reported_at: datetime, actor_kind: str = "stripe",
                       refund: Refund | None = None) -> tuple[rules.Verdict | None, Change | None, str]:
    """Record what Stripe says about one refund: a refund we asked for moves forward; one made
    elsewhere (Stripe's dashboard) is recorded if it fits in what the payment received.

    Returns the verdict (None: not ours or refused), the change, and a note.
    """
    if refund is None and news.id:
        refund = (await session.execute(select(Refund).where(Refund.stripe_refund_id == news.id))).scalar_one_or_none()
    if refund is None and (news.metadata or {}).get("refund_id", "").isdigit():
        candidate = await session.get(Refund, int((news.metadata or {})["refund_id"]))
        if candidate is not None and candidate.stripe_refund_id in (None, news.id):
            refund = candidate
    if refund is None:
        payment = await _payment_for_intent(session, news.payment_intent_id)
        if payment is None:
            return None, None, f"no local payment for {news.payment_intent_id or 'this refund'}"
        charge = await ledger.locked_charge(session, payment.charge_id)
        taken = [(r.amount_fen, r.status) for r in await ledger.refunds_of(session, charge.id) if r.payment_id == payment.id]
        if news.status in ("pending", "succeeded") and news.amount_fen > rules.refundable(payment.amount_received_fen, taken):
            return None, None, f"refund {news.id} of {news.amount_fen} fen exceeds what payment {payment.id} can still refund; not recorded"
        refund = Refund(payment_id=payment.id, charge_id=charge.id, amount_fen=news.amount_fen, status="pending",
                        cause="stripe", reason="refunded at Stripe", stripe_refund_id=news.id,
                        idempotency_key=f"stripe-{news.id}")
        session.add(refund)
        await session.flush()
        audit.record(session, action="record", entity="refund", entity_id=refund.id, actor_id=None, actor_kind=actor_kind,
                     after=audit.snapshot(refund, REFUND_AUDITED), reason="refund found at Stripe")
    charge = await ledger.locked_charge(session, refund.charge_id)
    status = news.status if news.status in rules.REFUND_RANK else "pending"
    verdict = rules.refund_verdict(refund.status, status)
    if verdict is rules.Verdict.STALE:
        return verdict, None, f"refund is already {refund.status}"
    before = audit.snapshot(refund, REFUND_AUDITED)
    charge_before = charge.status
    refund.stripe_refund_id = refund.stripe_refund_id or news.id or None
    if verdict is rules.Verdict.APPLIED:
        refund.status = status
        if status == "succeeded":
            refund.succeeded_at = reported_at
        if status in ("failed", "canceled"):
            refund.failure_message = (news.failure_reason or f"the refund {status}")[:500]
    refund.updated_at = utcnow()
    await session.flush()
    after = audit.snapshot(refund, REFUND_AUDITED)
    if after == before:
        return verdict, None, ""
    audit.record(session, action=f"stripe_{refund.status}", entity="refund", entity_id=refund.id, actor_id=None,
                 actor_kind=actor_kind, before=before, after=after)
    await ledger.recompute(session, charge, actor_kind=actor_kind, reason=f"refund {refund.id} {refund.status}")
    what = f"refund {refund.id} {before['status']} → {refund.status}" if before["status"] != refund.status else f"refund {refund.id} recorded"
    if charge.status != charge_before:
        what += f"; charge {charge_before} → {charge.status}"
    return verdict, Change(refund.payment_id, charge.id, what), ""


async def handle_event(session: AsyncSession, event: dict[str, Any], *,
                       gateway: Gateway | None = None) -> tuple[StripeEvent, bool]:
    """Apply one verified webhook event once: it is stored by id first, so a replay finds it
    and changes nothing (returned with True). Unknown types and objects are stored as
    ``ignored``; news older than what we know is stored as ``stale``."""
    obj = event["data"]["object"]
    stored = StripeEvent(id=str(event["id"])[:255], type=str(event["type"])[:100], object_id=str(obj.get("id") or "")[:255],
                         stripe_created_at=_stripe_time(event.get("created") or 0), received_at=utcnow(), payload=event,
                         outcome="applied")
    try:
        async with session.begin_nested():
            session.add(stored)
            await session.flush()
    except IntegrityError:
        existing = await session.get(StripeEvent, str(event["id"]))
        if existing is None:  # pragma: no cover - the other insert rolled back meanwhile
            raise Conflict("the same Stripe event is being stored at this moment; Stripe will retry") from None
        return existing, True
    reported_at = stored.stripe_created_at
    kind = stored.type
    outcome, notes = "ignored", []
    if kind in rules.INTENT_EVENTS:
        intent = Intent.from_dict(obj)
        payment = await _payment_for_intent(session, intent.id)
        if payment is None:
            notes.append(f"no local payment for {intent.id}")
        else:
            if kind == "payment_intent.succeeded" and not (intent.payment_method_type or payment.method) and gateway is not None:
                # Which method paid (card, Alipay, WeChat Pay) is only on the payment method; ask
                # for it, but never let that question stop the event from being applied.
                try:
                    intent = dataclasses.replace(intent, payment_method_type=(await gateway.retrieve_intent(intent.id)).payment_method_type)
                except FacilityShareError:
                    pass
            verdict, _change = await apply_intent(session, payment, rules.INTENT_EVENTS[kind], reported_at=reported_at,
                                                  intent=intent, note=f"event {stored.id}")
            outcome = "stale" if verdict is rules.Verdict.STALE else "applied"
    elif kind in REFUND_EVENTS:
        verdict, _change, note = await apply_refund(session, StripeRefund.from_dict(obj), reported_at=reported_at)
        outcome = "ignored" if verdict is None else ("stale" if verdict is rules.Verdict.STALE else "applied")
        notes.append(note)
    elif kind == "charge.refunded":
        outcome, note = await _charge_refunded(session, obj, reported_at, gateway)
        notes.append(note)
    else:
        notes.append("event type not used by the platform")
    stored.outcome = outcome
    stored.note = "; ".join(n for n in notes if n)[:2000]
    await session.flush()
    return stored, False


async def _charge_refunded(session: AsyncSession, obj: dict[str, Any], reported_at: datetime,
                           gateway: Gateway | None) -> tuple[str, str]:
    """``charge.refunded`` carries a Stripe charge; its refunds come inline (older API versions)
    or are read from Stripe when a gateway is at hand."""
    intent_id = obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else ""
    refunds = [StripeRefund.from_dict({"payment_intent": intent_id, **r}) for r in ((obj.get("refunds") or {}).get("data") or [])]
    if not refunds and gateway is not None and intent_id:
        refunds = await gateway.list_refunds(intent_id)
    if not refunds:
        return "ignored", "charge.refunded without its refunds; run facility-share payments reconcile"
    verdicts, notes = [], []
    for news in refunds:
        verdict, _change, note = await apply_refund(session, news, reported_at=reported_at)
        verdicts.append(verdict)
        notes.append(note)
    if any(v is rules.Verdict.APPLIED for v in verdicts):
        return "applied", "; ".join(n for n in notes if n)
    if all(v is None for v in verdicts):
        return "ignored", "; ".join(n for n in notes if n)
    return "stale" if any(v is rules.Verdict.STALE for v in verdicts) else "applied", "; ".join(n for n in notes if n)


# --- refunds ---------------------------------------------------------------------------------------


async def refund_charge(session: AsyncSession, charge: Charge, amount_fen: int, *, reason: str, cause: str,
                        gateway: Gateway | None, actor_id: int | None, now: datetime | None = None) -> list[Refund]:
    """Return ``amount_fen`` of what a charge received (newest payments first): through Stripe
    for Stripe payments, recorded as returned for offline ones. Never more than was received
    and not yet refunded, checked under the charge's lock.

    Raises:
        InvalidInput: no reason, or a non-positive amount.
        Conflict: more than can still be refunded, or a Stripe payment without Stripe keys.
    """
    now = now or utcnow()
    reason = reason.strip()
    if not reason:
        raise InvalidInput.translatable(N_("say why the money is returned; the enterprise will read it"), field="reason")
    if amount_fen <= 0:
        raise InvalidInput.translatable(N_("give a positive amount in yuan, e.g. 120.50"), field="amount")
    charge = await ledger.locked_charge(session, charge.id)
    payments = [p for p in await ledger.payments_of(session, charge.id) if p.status == "succeeded"]
    refunds = await ledger.refunds_of(session, charge.id)
    available = [
        (p.id, rules.refundable(p.amount_received_fen, [(r.amount_fen, r.status) for r in refunds if r.payment_id == p.id]))
        for p in sorted(payments, key=lambda p: (p.succeeded_at or p.created_at, p.id), reverse=True)
    ]
    try:
        shares = rules.split_refund(amount_fen, available)
    except ValueError:
        left = sum(fen for _id, fen in available)
        raise Conflict.translatable(
            N_("the refund of %(amount)s exceeds the %(left)s that can still be refunded on charge %(charge)s"),
            amount=fen(amount_fen), left=fen(left), charge=charge.id,
        ) from None
    by_id = {p.id: p for p in payments}
    created = []
    for share in shares:
        payment = by_id[share.payment_id]
        if payment.provider == "stripe" and gateway is None:
            raise Conflict.translatable(N_("this charge was paid through Stripe; refunds need the Stripe keys configured"))
        refund = Refund(payment_id=payment.id, charge_id=charge.id, amount_fen=share.amount_fen, status="pending", cause=cause[:20],
                        reason=reason[:MAX_REASON], idempotency_key=f"refund-{charge.id}-{uuid.uuid4().hex}",
                        requested_by_id=actor_id, created_at=now, updated_at=now)
        session.add(refund)
        await session.flush()
        audit.record(session, action="request", entity="refund", entity_id=refund.id, actor_id=actor_id,
                     actor_kind="user" if actor_id else "system", after=audit.snapshot(refund, REFUND_AUDITED), reason=reason, at=now)
        if payment.provider == "stripe":
            assert gateway is not None
            news = await gateway.create_refund(
                intent_id=payment.stripe_payment_intent_id or "", amount_fen=share.amount_fen,
                metadata={"refund_id": str(refund.id), "charge_id": str(charge.id)}, idempotency_key=refund.idempotency_key,
            )
            await apply_refund(session, news, reported_at=news.created_at or now, actor_kind="stripe", refund=refund)
        else:
            # Offline money goes back the way it came (a transfer by the unit); recorded as done.
            await apply_refund(session, StripeRefund("", "", share.amount_fen, "succeeded", now), reported_at=now,
                               actor_kind="user" if actor_id else "system", refund=refund)
        created.append(refund)
    return created


async def manager_refund(session: AsyncSession, principal: Principal, charge_id: int, amount_fen: int, *, reason: str,
                         gateway: Gateway | None) -> list[Refund]:
    """A unit's manager returns money on a charge of their unit, with a reason."""
    charge = await session.get(Charge, charge_id)
    resource = await session.get(Resource, charge.resource_id) if charge else None
    if charge is None or resource is None or not principal.manages(resource.unit_id):
        raise NotFound.translatable(N_("no charge %(charge)s in the units you manage"), charge=charge_id)
    return await refund_charge(session, charge, amount_fen, reason=reason, cause="manager", gateway=gateway,
                               actor_id=principal.user_id)


# --- reconciliation --------------------------------------------------------------------------------


async def payments_to_reconcile(session: AsyncSession, since: datetime) -> list[int]:
    """Stripe payments still open (pending, processing) and any touched since ``since`` (a
    declined attempt the payer may still retry counts as touched while it is recent)."""
    statement = (
        select(Payment.id)
        .where(Payment.provider == "stripe", Payment.stripe_payment_intent_id.is_not(None),
               or_(Payment.status.in_(("pending", "processing")), Payment.updated_at >= since,
                   Payment.created_at >= since))
        .order_by(Payment.id)
    )
    return list((await session.execute(statement)).scalars())


async def reconcile_payment(session: AsyncSession, gateway: Gateway, payment_id: int, *, now: datetime | None = None) -> list[Change]:
    """Compare one payment with Stripe and repair what missed webhooks left behind (its state
    and its refunds), through the same functions the webhooks use."""
    now = now or utcnow()
    payment = await session.get(Payment, payment_id)
    if payment is None or not payment.stripe_payment_intent_id:
        return []
    intent = await gateway.retrieve_intent(payment.stripe_payment_intent_id)
    changes = []
    status = rules.intent_status(intent.status, has_error=bool(intent.error_code or intent.error_message))
    _verdict, change = await apply_intent(session, payment, status, reported_at=now, intent=intent, actor_kind="system",
                                          note="reconcile")
    if change:
        changes.append(change)
    if payment.status == "succeeded":
        for news in await gateway.list_refunds(intent.id):
            _verdict, change, note = await apply_refund(session, news, reported_at=news.created_at or now, actor_kind="system")
            if change:
                changes.append(change)
            elif note and "exceeds" in note:
                changes.append(Change(payment.id, payment.charge_id, note))
    return changes
