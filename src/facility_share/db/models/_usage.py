from __future__ import annotations

from datetime import datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, SmallInteger, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from facility_share.db.models._base import Base, utcnow

USAGE_SOURCES = ("manager", "self", "agent", "walk_in")
# processing: a Stripe payment is being confirmed; refunded: every fen paid went back.
CHARGE_STATUSES = ("unpaid", "processing", "paid", "refunded", "void")
# service: a finished session; no_show: a missed booking; advance: a booking paid before its slot.
CHARGE_KINDS = ("service", "no_show", "advance")


class UsageLog(Base):
    """What really happened on a resource: who used it, from when to when, how many samples.

    Append-only. A check-out, a correction or a late samples count is a new row that
    supersedes the previous version (``supersedes_id``) with a reason; the current version of
    a session is the row nobody supersedes. A row with no ``ended_at`` is a session still open.
    """

    __tablename__ = "usage_logs"
    __table_args__ = (
        CheckConstraint(f"source IN {USAGE_SOURCES}", name="source_known"),
        CheckConstraint("mode IN ('self_operated', 'staff_operated')", name="mode_known"),
        CheckConstraint("ended_at IS NULL OR ended_at > started_at", name="ends_after_start"),
        CheckConstraint("samples >= 0", name="samples_not_negative"),
        # A version is superseded at most once: history is a chain, never a fork.
        UniqueConstraint("supersedes_id", name="uq_usage_logs_supersedes_id"),
        # Agents retry; the same idempotency key on the same resource is one session.
        UniqueConstraint("resource_id", "idempotency_key", name="uq_usage_logs_resource_idempotency"),
        Index("ix_usage_logs_resource_started", "resource_id", "started_at"),
        Index("ix_usage_logs_booking", "booking_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC())
    ended_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    samples: Mapped[int] = mapped_column(Integer, default=0)
    operator: Mapped[str] = mapped_column(String(100), default="")
    mode: Mapped[str] = mapped_column(String(20), default="staff_operated")
    source: Mapped[str] = mapped_column(String(10))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("usage_logs.id"))
    # The first version of the session; every later version points at it too.
    session_id: Mapped[int | None] = mapped_column(Integer, index=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    note: Mapped[str] = mapped_column(String(500), default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    agent_key_id: Mapped[int | None] = mapped_column(ForeignKey("agent_keys.id"))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)


class AgentKey(Base):
    """A per-resource key for the instrument agent (a program on the instrument PC)."""

    __tablename__ = "agent_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())


def _money_as_of_at_issue(context) -> datetime | None:  # type: ignore[no-untyped-def]
    """A charge issued with nothing paid or refunded has no payments yet (they refer to it), so
    its sums hold from its creation; one inserted with sums already set is left unknown."""
    params = context.get_current_parameters()
    if params.get("paid_fen") or params.get("refunded_fen"):
        return None
    return params.get("created_at") or utcnow()


class Charge(Base):
    """The fee for one completed service (or a no-show), with its lines and explanation.

    A corrected usage voids its charge and a new one is issued; amounts are never edited.
    """

    __tablename__ = "charges"
    __table_args__ = (
        CheckConstraint(f"status IN {CHARGE_STATUSES}", name="status_known"),
        CheckConstraint("total_fen >= 0", name="total_not_negative"),
        CheckConstraint(f"kind IN {CHARGE_KINDS}", name="kind_known"),
        CheckConstraint("paid_fen >= 0 AND refunded_fen >= 0 AND refunded_fen <= paid_fen", name="refunds_within_paid"),
        Index("ix_charges_enterprise_status", "enterprise_id", "status"),
        Index("ix_charges_resource", "resource_id"),
        # What a settlement reads of a year's service charges, without their wide lines and
        # explanations: an index-only scan instead of reading the whole table.
        Index(
            "ix_charges_settlement",
            "service_date",
            postgresql_include=["enterprise_id", "resource_id", "id", "paid_fen", "refunded_fen", "money_as_of"],
            postgresql_where=text("kind = 'service' AND status <> 'void'"),
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), default="service")
    usage_log_id: Mapped[int | None] = mapped_column(ForeignKey("usage_logs.id"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    # The date the service was done (resource's local date): subsidies use status in force then.
    service_date: Mapped[datetime] = mapped_column(DateTimeUTC())
    customer_class: Mapped[str] = mapped_column(String(20))
    lines: Mapped[list[dict]] = mapped_column(JSON, default=list)
    total_fen: Mapped[int] = mapped_column(BigInteger)
    explanation_zh: Mapped[str] = mapped_column(Text, default="")
    explanation_en: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="unpaid")
    paid_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    # Sums over the charge's payments and refunds, kept with them in one transaction.
    paid_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Every succeeded payment and refund of the charge succeeded at or before this time, so
    # paid_fen and refunded_fen are also its money as of any later cut-off (a settlement reads
    # them instead of the rows). Kept by payments.ledger.recompute; NULL when unknown, and then
    # readers sum the payment and refund rows themselves.
    money_as_of: Mapped[datetime | None] = mapped_column(DateTimeUTC(), default=_money_as_of_at_issue)
    payment_method: Mapped[str] = mapped_column(String(20), default="")
    payment_reference: Mapped[str] = mapped_column(String(100), default="")
    void_reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow, onupdate=utcnow)


class Rating(Base):
    """An enterprise's 1–5 rating of a finished service; one per booking (or walk-in session)."""

    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),
        UniqueConstraint("booking_id", name="uq_ratings_booking_id"),
        UniqueConstraint("usage_session_id", name="uq_ratings_usage_session_id"),
        Index("ix_ratings_resource", "resource_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    usage_session_id: Mapped[int | None] = mapped_column(Integer)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    stars: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
