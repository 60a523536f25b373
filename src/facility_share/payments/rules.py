"""The rules of payments as pure functions: no database, no Stripe, no framework.

* which Stripe news may move a payment (state only moves forward, whatever order webhooks
  arrive in);
* what a charge's status is, given its sums;
* how much may still be refunded;
* how much of an advance comes back when a booking is cancelled, and how an advance covers the
  service charge that follows it.

Money is integer fen throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

# How far along a payment is. Succeeded and canceled are final: nothing Stripe says later moves
# them. A failed attempt is not final (the payer may try again on the same PaymentIntent).
PAYMENT_RANK = {"pending": 0, "failed": 1, "processing": 2, "succeeded": 3, "canceled": 3}
FINAL_PAYMENT_STATES = frozenset({"succeeded", "canceled"})
# Refunds: pending → succeeded → (rarely, later) failed; failed and canceled are final.
REFUND_RANK = {"pending": 0, "succeeded": 1, "failed": 2, "canceled": 2}
FINAL_REFUND_STATES = frozenset({"failed", "canceled"})

# The webhook events that carry a PaymentIntent's new state.
INTENT_EVENTS = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "canceled",
    "payment_intent.processing": "processing",
}


def intent_status(stripe_status: str, *, has_error: bool = False) -> str:
    """The local payment status for a PaymentIntent's ``status`` as Stripe reports it.

    ``requires_payment_method`` after a declined attempt (``has_error``) is a failure the payer
    may retry; before any attempt it is simply waiting.
    """
    if stripe_status == "succeeded":
        return "succeeded"
    if stripe_status == "canceled":
        return "canceled"
    if stripe_status in ("processing", "requires_capture"):
        return "processing"
    if stripe_status == "requires_payment_method" and has_error:
        return "failed"
    return "pending"


class Verdict(str, Enum):
    APPLIED = "applied"
    STALE = "stale"
    UNCHANGED = "unchanged"


def payment_verdict(current: str, known_at: datetime | None, new: str, reported_at: datetime) -> Verdict:
    """Whether news that a payment is ``new`` (as of ``reported_at``, Stripe's clock) moves it.

    ``known_at`` is the time of the latest Stripe news already applied (None if only local
    claims, such as the payer's return from the payment page, moved it). Older news is stale;
    news of the same second only moves forward in rank; final states never move.
    """
    if new == current:
        return Verdict.UNCHANGED
    if current in FINAL_PAYMENT_STATES:
        return Verdict.STALE
    if known_at is not None:
        if reported_at < known_at:
            return Verdict.STALE
        if reported_at == known_at and PAYMENT_RANK[new] < PAYMENT_RANK[current]:
            return Verdict.STALE
    return Verdict.APPLIED


def refund_verdict(current: str, new: str) -> Verdict:
    """Refund states only move forward: pending → succeeded → failed; failed/canceled are final."""
    if new == current:
        return Verdict.UNCHANGED
    if current in FINAL_REFUND_STATES or REFUND_RANK[new] < REFUND_RANK[current]:
        return Verdict.STALE
    return Verdict.APPLIED


def charge_status(current: str, *, total_fen: int, paid_fen: int, refunded_fen: int, in_flight: bool) -> str:
    """A charge's status from its sums.

    ``paid_fen`` is what succeeded payments received, ``refunded_fen`` what succeeded refunds
    returned; ``in_flight`` says a Stripe payment is being confirmed. A void charge stays void.
    A partly paid charge is still unpaid (its outstanding amount is smaller).
    """
    if current == "void":
        return "void"
    if paid_fen > 0 and refunded_fen >= paid_fen:
        return "refunded"
    if paid_fen > 0 and paid_fen >= total_fen:
        return "paid"
    if total_fen == 0 and current == "paid":
        return "paid"
    if in_flight:
        return "processing"
    return "unpaid"


def outstanding(total_fen: int, paid_fen: int) -> int:
    """What is still to pay on a charge (refunds return money; they do not reopen the debt)."""
    return max(0, total_fen - paid_fen)


def refundable(received_fen: int, refunds_fen: list[tuple[int, str]]) -> int:
    """What may still be refunded on a payment: received minus refunds succeeded or under way."""
    taken = sum(amount for amount, status in refunds_fen if status in ("pending", "succeeded"))
    return max(0, received_fen - taken)


@dataclass(frozen=True, slots=True)
class RefundShare:
    """How much of ``available`` one payment gives to a refund of ``amount``."""

    payment_id: int
    amount_fen: int


def split_refund(amount_fen: int, available: list[tuple[int, int]]) -> list[RefundShare]:
    """Spread a refund over a charge's payments, newest first (``available``: (payment id,
    refundable fen) in that order).

    Raises:
        ValueError: the amount is not positive or exceeds what is refundable in all.
    """
    if amount_fen <= 0:
        raise ValueError("a refund must be a positive amount")
    if amount_fen > sum(fen for _id, fen in available):
        raise ValueError("a refund cannot exceed what was paid and not yet refunded")
    shares, left = [], amount_fen
    for payment_id, fen in available:
        if left == 0:
            break
        take = min(fen, left)
        if take > 0:
            shares.append(RefundShare(payment_id, take))
            left -= take
    return shares


class CancellationRule(str, Enum):
    IN_TIME = "in_time"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class CancellationRefund:
    amount_fen: int
    rule: CancellationRule
    percent: int


def percent_of(fen: int, percent: int) -> int:
    """``percent`` % of ``fen``, rounded half-up to the fen."""
    return (fen * percent * 2 + 100) // 200


def cancellation_refund(paid_fen: int, *, starts_at: datetime, cancelled_at: datetime, cancellation_hours: int,
                        late_percent: int) -> CancellationRefund:
    """What comes back of an advance when its booking is cancelled: everything if cancelled at
    least ``cancellation_hours`` before the start, otherwise ``late_percent`` % of it.

    Only the time counts, not who pressed the button: a late cancellation is made by the unit
    (the enterprise's own deadline has passed), often at the enterprise's request. A unit that
    cancels for its own reasons returns the rest with a refund of its own, with the reason.
    """
    if paid_fen <= 0 or cancelled_at <= starts_at - timedelta(hours=cancellation_hours):
        return CancellationRefund(max(paid_fen, 0), CancellationRule.IN_TIME, 100)
    return CancellationRefund(percent_of(paid_fen, late_percent), CancellationRule.LATE, late_percent)


@dataclass(frozen=True, slots=True)
class AdvanceSettlement:
    """How an advance meets the service charge: ``applied`` covers the fee, ``surplus`` goes
    back to the enterprise, ``shortfall`` stays to pay."""

    applied_fen: int
    surplus_fen: int
    shortfall_fen: int


def settle_advance(advance_fen: int, fee_fen: int) -> AdvanceSettlement:
    """Cover a service fee from an advance (both non-negative fen)."""
    applied = min(advance_fen, fee_fen)
    return AdvanceSettlement(applied, advance_fen - applied, fee_fen - applied)
