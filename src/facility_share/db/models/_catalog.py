from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Time,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from facility_share.db.models._base import Base, TimestampMixin


class ManagingUnit(TimestampMixin, Base):
    """管理单位: the university lab, institute, enterprise or incubator that runs resources."""

    __tablename__ = "managing_units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    uscc: Mapped[str | None] = mapped_column(String(18))
    address_zh: Mapped[str] = mapped_column(String(300), default="")
    address_en: Mapped[str] = mapped_column(String(300), default="")
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_phone: Mapped[str] = mapped_column(String(50), default="")
    contact_email: Mapped[str] = mapped_column(String(200), default="")
    website: Mapped[str] = mapped_column(String(300), default="")
    description_zh: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    source_file: Mapped[str] = mapped_column(String(300), default="")
    # Digest of the unit's catalogue file as last imported: an unchanged file is not even
    # parsed again. Anything but the importer that changes this unit's catalogue rows must
    # clear it, so the next import compares record by record.
    source_digest: Mapped[str] = mapped_column(String(64), default="")
    # Hash of the record as last imported: an unchanged record is skipped without a write.
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    retired_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())

    resources: Mapped[list[Resource]] = relationship(back_populates="unit", lazy="raise")


class Category(TimestampMixin, Base):
    """A class of the national large-instrument classification (two or more levels)."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    level: Mapped[int] = mapped_column(SmallInteger, default=1)
    position: Mapped[int] = mapped_column(Integer, default=0)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    retired_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())


class Resource(TimestampMixin, Base):
    """An instrument, a shared workshop, or a line/bay of a workshop."""

    __tablename__ = "resources"
    __table_args__ = (
        CheckConstraint("capacity >= 1", name="capacity_positive"),
        CheckConstraint("kind IN ('instrument', 'workshop', 'line')", name="kind_known"),
        CheckConstraint("original_value_fen >= 0", name="original_value_not_negative"),
        Index("ix_resources_unit_retired", "unit_id", "retired_at"),
        Index("ix_resources_category", "category_id"),
        # Substring search in Chinese and English; LIKE '%…%' uses a trigram index on PostgreSQL.
        Index(
            "ix_resources_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("resources.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("managing_units.id"))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200), default="")
    maker: Mapped[str] = mapped_column(String(200), default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    original_value_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    commissioned_on: Mapped[date | None] = mapped_column(Date)
    location_zh: Mapped[str] = mapped_column(String(300), default="")
    location_en: Mapped[str] = mapped_column(String(300), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    open_for_sharing: Mapped[bool] = mapped_column(Boolean, default=True)
    rated_hours_per_year: Mapped[int] = mapped_column(Integer, default=1400)
    specs_zh: Mapped[str] = mapped_column(Text, default="")
    specs_en: Mapped[str] = mapped_column(Text, default="")
    functions_zh: Mapped[str] = mapped_column(Text, default="")
    functions_en: Mapped[str] = mapped_column(Text, default="")
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    sharing_modes: Mapped[list[str]] = mapped_column(JSON, default=list)
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_phone: Mapped[str] = mapped_column(String(50), default="")
    contact_email: Mapped[str] = mapped_column(String(200), default="")
    # Booking rules (checked by the booking context).
    booking_unit: Mapped[str] = mapped_column(String(10), default="slot")
    slot_minutes: Mapped[int] = mapped_column(Integer, default=30)
    min_minutes: Mapped[int] = mapped_column(Integer, default=30)
    max_minutes: Mapped[int] = mapped_column(Integer, default=480)
    lead_minutes: Mapped[int] = mapped_column(Integer, default=0)
    horizon_days: Mapped[int] = mapped_column(Integer, default=60)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=True)
    self_operation_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    qualification_required: Mapped[bool] = mapped_column(Boolean, default=True)
    working_calendar: Mapped[bool] = mapped_column(Boolean, default=True)
    cancellation_hours: Mapped[int] = mapped_column(Integer, default=24)
    billing_basis: Mapped[str] = mapped_column(String(10), default="actual")
    # Weekly peak hours [[weekday, "HH:MM", "HH:MM"], …] for fee items billed by period.
    # (Server defaults fill the rows that existed before these columns.)
    peak_hours: Mapped[list[list[Any]]] = mapped_column(JSON, default=list, server_default="[]")
    no_show_fee_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    checkin_grace_minutes: Mapped[int] = mapped_column(Integer, default=15, server_default="15")
    no_show_grace_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    shifts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Lower-cased names, model, maker and capabilities in both languages: substring search
    # (LIKE) works for Chinese, where word tokenisers fail; PostgreSQL adds a trigram index.
    search_text: Mapped[str] = mapped_column(Text, default="")
    # Lowest hourly (or per-sample/shift/day) district-enterprise rate, for the price filter.
    min_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    source_file: Mapped[str] = mapped_column(String(300), default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    retired_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())

    unit: Mapped[ManagingUnit] = relationship(back_populates="resources", lazy="raise")
    category: Mapped[Category] = relationship(lazy="raise")
    opening_hours: Mapped[list[OpeningHours]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="(OpeningHours.weekday, OpeningHours.opens)"
    )
    closures: Mapped[list[Closure]] = relationship(lazy="raise", cascade="all, delete-orphan", order_by="Closure.starts_at")
    fee_items: Mapped[list[FeeItem]] = relationship(lazy="raise", cascade="all, delete-orphan", order_by="FeeItem.position")


class OpeningHours(Base):
    """One weekly opening interval, in the resource's own timezone (weekday 0 = Monday)."""

    __tablename__ = "opening_hours"
    __table_args__ = (CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)
    opens: Mapped[time] = mapped_column(Time)
    # 00:00 here means midnight at the end of the day.
    closes: Mapped[time] = mapped_column(Time)


class Closure(Base):
    """A period in which a resource cannot be booked (maintenance, holidays), in UTC."""

    __tablename__ = "closures"
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ends_after_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(DateTimeUTC())
    ends_at: Mapped[datetime] = mapped_column(DateTimeUTC())
    reason: Mapped[str] = mapped_column(String(300), default="")
    # Where the closure came from: the catalogue files own 'catalog' rows, calendar
    # imports and managers own theirs, so a catalogue re-import never drops the others.
    source: Mapped[str] = mapped_column(String(20), default="catalog")
    external_uid: Mapped[str | None] = mapped_column(String(300))


class FeeItem(Base):
    """One line of a resource's published fee schedule, with a rate per customer class (fen)."""

    __tablename__ = "fee_items"
    __table_args__ = (
        CheckConstraint("basis IN ('hour', 'sample', 'shift', 'day', 'setup')", name="basis_known"),
        CheckConstraint(
            "internal_fen >= 0 AND district_fen >= 0 AND external_fen >= 0", name="rates_not_negative"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    basis: Mapped[str] = mapped_column(String(10))
    label_zh: Mapped[str] = mapped_column(String(200))
    label_en: Mapped[str] = mapped_column(String(200))
    internal_fen: Mapped[int] = mapped_column(BigInteger)
    district_fen: Mapped[int] = mapped_column(BigInteger)
    external_fen: Mapped[int] = mapped_column(BigInteger)
    # Billable increment for hourly items (e.g. 30: billed per started half hour).
    unit_minutes: Mapped[int] = mapped_column(Integer, default=60)
    minimum_units: Mapped[int] = mapped_column(Integer, default=1)
    period: Mapped[str] = mapped_column(String(10), default="all", server_default="all")
    rounding: Mapped[str] = mapped_column(String(10), default="up", server_default="up")
    note_zh: Mapped[str] = mapped_column(String(300), default="")
    note_en: Mapped[str] = mapped_column(String(300), default="")
