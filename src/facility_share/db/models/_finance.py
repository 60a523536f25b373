from __future__ import annotations

from datetime import date, datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from facility_share.db.models._base import Base, utcnow

SETTLEMENT_STATUSES = ("draft", "approved")
PERIOD_KINDS = ("month", "quarter", "year")
LINE_KINDS = ("subsidy", "award")


class PolicyVersion(Base):
    """One version of a subsidy-and-award policy, loaded from ``catalog/policies/*.toml``.

    The whole validated document is kept, so a settlement can be recomputed from the database
    alone years later even if the file has changed since.
    """

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("code", "version", name="uq_policy_versions_code_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    title_zh: Mapped[str] = mapped_column(String(200), default="")
    title_en: Mapped[str] = mapped_column(String(200), default="")
    effective_from: Mapped[date] = mapped_column(Date)
    effective_until: Mapped[date | None] = mapped_column(Date)
    digest: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict] = mapped_column(JSON)
    source_file: Mapped[str] = mapped_column(String(300), default="")
    loaded_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)


class Settlement(Base):
    """Subsidies and awards for one period under one policy version.

    ``draft`` may be recomputed (same inputs give byte-identical lines); ``approved`` is final:
    the service has no path to change it and database triggers refuse any UPDATE or DELETE of an
    approved settlement or its lines (migration 0006). Later corrections are adjustments carried
    by a later settlement.
    """

    __tablename__ = "settlements"
    __table_args__ = (
        CheckConstraint(f"status IN {SETTLEMENT_STATUSES}", name="status_known"),
        CheckConstraint(f"period_kind IN {PERIOD_KINDS}", name="period_kind_known"),
        CheckConstraint("period_end > period_start", name="period_not_empty"),
        Index("ix_settlements_period", "period_start", "period_end"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period_label: Mapped[str] = mapped_column(String(16))
    period_kind: Mapped[str] = mapped_column(String(8))
    # [period_start, period_end) as local dates in the district's timezone.
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    # Payments and refunds count only if they happened before the cut-off.
    cutoff_at: Mapped[datetime] = mapped_column(DateTimeUTC())
    status: Mapped[str] = mapped_column(String(8), default="draft")
    subsidy_budget_fen: Mapped[int | None] = mapped_column(BigInteger)
    award_budget_fen: Mapped[int | None] = mapped_column(BigInteger)
    subsidy_total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    award_total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # SHA-256 of the canonical inputs and of the canonical lines: equal digests, equal settlement.
    inputs_digest: Mapped[str] = mapped_column(String(64), default="")
    results_digest: Mapped[str] = mapped_column(String(64), default="")
    note: Mapped[str] = mapped_column(String(1000), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    computed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())


class SettlementLine(Base):
    """One enterprise's subsidy or one unit's award in a settlement, with the steps that made it."""

    __tablename__ = "settlement_lines"
    __table_args__ = (
        CheckConstraint(f"kind IN {LINE_KINDS}", name="kind_known"),
        CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        UniqueConstraint("settlement_id", "kind", "subject_code", name="uq_settlement_lines_settlement_id"),
        Index("ix_settlement_lines_subject", "kind", "subject_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"))
    kind: Mapped[str] = mapped_column(String(8))
    position: Mapped[int] = mapped_column(Integer)
    # The enterprise (kind subsidy) or the managing unit (kind award).
    subject_id: Mapped[int] = mapped_column(Integer)
    subject_code: Mapped[str] = mapped_column(String(64))
    subject_name: Mapped[str] = mapped_column(String(200))
    # Enterprise class (subsidy) or grade (award).
    category: Mapped[str] = mapped_column(String(32), default="")
    basis_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    before_budget_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    adjustment_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    figures: Mapped[dict] = mapped_column(JSON, default=dict)
    # A list of steps: {"rule": ..., "values": {...}}; rendered in Chinese or English on demand.
    steps: Mapped[list[dict]] = mapped_column(JSON, default=list)
    explanation_zh: Mapped[str] = mapped_column(Text, default="")
    explanation_en: Mapped[str] = mapped_column(Text, default="")
