from __future__ import annotations

from datetime import datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from facility_share.db.models._base import Base, TimestampMixin, utcnow

BOOKING_STATUSES = ("requested", "approved", "rejected", "expired", "cancelled", "completed", "no_show")
ACTIVE_STATUSES = ("requested", "approved")


class Booking(TimestampMixin, Base):
    """A reservation of a resource for [starts_at, ends_at) in UTC.

    A request holds its slot while it waits, so ``requested`` and ``approved`` both count
    against capacity. ``exclusive`` is set for capacity-1 resources: on PostgreSQL an
    exclusion constraint over it is the second guard against overlaps (migration 0002).
    """

    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("samples >= 0", name="samples_not_negative"),
        CheckConstraint(f"status IN {BOOKING_STATUSES}", name="status_known"),
        CheckConstraint("mode IN ('self_operated', 'staff_operated')", name="mode_known"),
        Index("ix_bookings_resource_window", "resource_id", "starts_at", "ends_at"),
        Index("ix_bookings_enterprise_status", "enterprise_id", "status"),
        # The enterprise's and the user's calendar feeds read a window of their bookings by start.
        Index("ix_bookings_enterprise_start", "enterprise_id", "starts_at"),
        Index("ix_bookings_user_start", "user_id", "starts_at"),
        Index("ix_bookings_status_deadline", "status", "decision_deadline"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    starts_at: Mapped[datetime] = mapped_column(DateTimeUTC())
    ends_at: Mapped[datetime] = mapped_column(DateTimeUTC())
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    # Expected number of samples, for resources that charge per sample (the estimate).
    samples: Mapped[int] = mapped_column(Integer, default=0)
    exclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    mode: Mapped[str] = mapped_column(String(20), default="staff_operated")
    purpose: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="requested")
    # A request not decided by then expires (the sweep in bookings.services).
    decision_deadline: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    decision_reason: Mapped[str] = mapped_column(String(500), default="")
    customer_class: Mapped[str] = mapped_column(String(20), default="external")
    estimate_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped on every change: calendar clients need an increasing SEQUENCE.
    version: Mapped[int] = mapped_column(Integer, default=0)

    resource = relationship("Resource", lazy="raise")
    enterprise = relationship("Enterprise", lazy="raise")
    user = relationship("User", lazy="raise", foreign_keys=[user_id])


class AuditEvent(Base):
    """Who did what to which record, when, with the state before and after and a reason."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # "user", "system" (sweeps, workers), "agent", "import"
    actor_kind: Mapped[str] = mapped_column(String(20), default="user")
    action: Mapped[str] = mapped_column(String(50))
    entity: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(500), default="")


class FeedToken(Base):
    """The secret in a private calendar feed's address (only its hash is stored).

    A feed belongs to a user (their own bookings), an enterprise (all its bookings) or a
    managing unit (its resources' bookings, with customer details). Rotating a token revokes
    it and issues a new one; a revoked or unknown token answers 404.
    """

    __tablename__ = "feed_tokens"
    __table_args__ = (
        CheckConstraint("owner_kind IN ('user', 'enterprise', 'unit')", name="owner_kind_known"),
        Index("ix_feed_tokens_owner", "owner_kind", "owner_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(12))
    owner_id: Mapped[int] = mapped_column(Integer)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
