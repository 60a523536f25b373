from __future__ import annotations

from datetime import datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from facility_share.db.models._base import Base, TimestampMixin, utcnow

PAYMENT_PROVIDERS = ("stripe", "offline")
# pending: created, waiting for the payer; processing: Stripe is confirming it;
# succeeded / failed / canceled are Stripe's outcomes (an offline payment is born succeeded).
PAYMENT_STATUSES = ("pending", "processing", "succeeded", "failed", "canceled")
REFUND_STATUSES = ("pending", "succeeded", "failed", "canceled")


class Payment(TimestampMixin, Base):
    """One attempt to pay a charge: a Stripe PaymentIntent, or an offline payment a manager recorded.

    Amounts are fen. ``refunded_fen`` is the sum of the succeeded refunds of this payment and can
    never exceed ``amount_received_fen`` (a check constraint holds it even against a buggy caller).
    """

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"provider IN {PAYMENT_PROVIDERS}", name="provider_known"),
        CheckConstraint(f"status IN {PAYMENT_STATUSES}", name="status_known"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("amount_received_fen >= 0 AND amount_received_fen <= amount_fen", name="received_within_amount"),
        CheckConstraint("refunded_fen >= 0 AND refunded_fen <= amount_received_fen", name="refunds_within_received"),
        UniqueConstraint("stripe_payment_intent_id", name="uq_payments_stripe_payment_intent_id"),
        UniqueConstraint("idempotency_key", name="uq_payments_idempotency_key"),
        Index("ix_payments_charge", "charge_id"),
        Index("ix_payments_status_updated", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"))
    provider: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    currency: Mapped[str] = mapped_column(String(3), default="cny")
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    amount_received_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # card, alipay, wechat_pay (Stripe); bank_transfer, invoice, cash (offline).
    method: Mapped[str] = mapped_column(String(20), default="")
    reference: Mapped[str] = mapped_column(String(100), default="")
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    stripe_charge_id: Mapped[str] = mapped_column(String(255), default="")
    idempotency_key: Mapped[str] = mapped_column(String(100))
    failure_code: Mapped[str] = mapped_column(String(100), default="")
    failure_message: Mapped[str] = mapped_column(String(500), default="")
    # When Stripe last told us about this intent (event.created), so a late, older event is
    # recorded but cannot move the state backwards.
    stripe_updated_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    succeeded_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Refund(TimestampMixin, Base):
    """Money returned on a payment: partial refunds add up, never beyond what was received."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(f"status IN {REFUND_STATUSES}", name="status_known"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        UniqueConstraint("stripe_refund_id", name="uq_refunds_stripe_refund_id"),
        UniqueConstraint("idempotency_key", name="uq_refunds_idempotency_key"),
        Index("ix_refunds_payment", "payment_id"),
        Index("ix_refunds_charge", "charge_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"))
    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    # cancellation (by the resource's refund policy), manager, correction.
    cause: Mapped[str] = mapped_column(String(20), default="manager")
    reason: Mapped[str] = mapped_column(String(500), default="")
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    failure_message: Mapped[str] = mapped_column(String(500), default="")
    succeeded_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class StripeEvent(Base):
    """Every verified webhook event, stored by its id so each is applied once."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_object", "object_id"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str] = mapped_column(String(255), default="")
    stripe_created_at: Mapped[datetime] = mapped_column(DateTimeUTC())
    received_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    # applied, ignored (unknown object or type), stale (older than what we already know).
    outcome: Mapped[str] = mapped_column(String(20), default="applied")
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(Text, default="")
