from __future__ import annotations

from datetime import date, datetime

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from facility_share.db.models._base import Base, TimestampMixin, utcnow

ROLES = ("enterprise_member", "unit_manager", "finance", "admin")
TIERS = ("none", "eaglet", "gazelle", "leader_candidate", "leader")


class Enterprise(TimestampMixin, Base):
    """企业: a customer, identified by its 统一社会信用代码 (USCC).

    The current status lives here; every change of it is also appended to
    ``enterprise_status_history`` because subsidies use what was in force on the service date.
    """

    __tablename__ = "enterprises"
    __table_args__ = (CheckConstraint(f"tier IN {TIERS}", name="tier_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(300), default="")
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_phone: Mapped[str] = mapped_column(String(50), default="")
    registered_in_district: Mapped[bool] = mapped_column(Boolean, default=False)
    tech_sme: Mapped[bool] = mapped_column(Boolean, default=False)
    hnte: Mapped[bool] = mapped_column(Boolean, default=False)
    tier: Mapped[str] = mapped_column(String(20), default="none")
    # 实际控制人: enterprises with the same controller share one subsidy cap.
    controller: Mapped[str] = mapped_column(String(200), default="")
    verified_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", use_alter=True))

    @property
    def verified(self) -> bool:
        return self.verified_at is not None


class EnterpriseStatus(Base):
    """One version of an enterprise's status, in force from ``effective_from`` (inclusive)."""

    __tablename__ = "enterprise_status_history"
    __table_args__ = (Index("ix_enterprise_status_history_enterprise_effective", "enterprise_id", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    effective_from: Mapped[date] = mapped_column(Date)
    registered_in_district: Mapped[bool] = mapped_column(Boolean)
    verified: Mapped[bool] = mapped_column(Boolean)
    tech_sme: Mapped[bool] = mapped_column(Boolean)
    hnte: Mapped[bool] = mapped_column(Boolean)
    tier: Mapped[str] = mapped_column(String(20))
    controller: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class UnitRelation(Base):
    """How an enterprise relates to a managing unit: ``internal`` (it is the unit, or part of
    it) or ``related`` (same group). No row means unrelated (an external customer)."""

    __tablename__ = "unit_relations"
    __table_args__ = (
        UniqueConstraint("enterprise_id", "unit_id", name="uq_unit_relations_enterprise_unit"),
        CheckConstraint("relation IN ('internal', 'related')", name="relation_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("managing_units.id", ondelete="CASCADE"))
    relation: Mapped[str] = mapped_column(String(10))


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(50), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(10), default="zh_CN")
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())

    roles: Mapped[list[RoleGrant]] = relationship(lazy="raise", cascade="all, delete-orphan")
    enterprise: Mapped[Enterprise | None] = relationship(lazy="raise", foreign_keys=[enterprise_id])


class RoleGrant(Base):
    """A role held by a user; ``unit_manager`` grants name the unit they manage."""

    __tablename__ = "role_grants"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES}", name="role_known"),
        CheckConstraint("(role = 'unit_manager') = (unit_id IS NOT NULL)", name="unit_only_for_managers"),
        UniqueConstraint("user_id", "role", "unit_id", name="uq_role_grants_user_role_unit"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("managing_units.id", ondelete="CASCADE"))
    granted_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)


class WebSession(Base):
    """A browser session kept in the database, so every process and replica shares it.

    Only a hash of the cookie's token is stored: a copy of the table opens no session.
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC())
    last_seen_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")


class ApiToken(Base):
    """A personal API token: shown once, stored as a hash, revocable."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, so a person can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())


class LoginAttempt(Base):
    """Failed sign-ins, counted in the database so throttling holds across processes."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_email_at", "email", "at"), Index("ix_login_attempts_ip_at", "ip", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)


class Qualification(Base):
    """Permission for a user to operate a resource themselves, granted by its unit's manager."""

    __tablename__ = "qualifications"
    __table_args__ = (Index("ix_qualifications_user_resource", "user_id", "resource_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    valid_until: Mapped[date] = mapped_column(Date)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    granted_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    note: Mapped[str] = mapped_column(String(300), default="")
