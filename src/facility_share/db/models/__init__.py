"""ORM models, one private module per bounded context, re-exported here.

Alembic imports this package to see the whole schema.
"""

from facility_share.db.models._accounts import (
    ROLES,
    TIERS,
    ApiToken,
    Enterprise,
    EnterpriseStatus,
    LoginAttempt,
    Qualification,
    RoleGrant,
    UnitRelation,
    User,
    WebSession,
)
from facility_share.db.models._base import Base, utcnow
from facility_share.db.models._bookings import ACTIVE_STATUSES, BOOKING_STATUSES, AuditEvent, Booking, FeedToken
from facility_share.db.models._catalog import Category, Closure, FeeItem, ManagingUnit, OpeningHours, Resource
from facility_share.db.models._jobs import JOB_STATUSES, Job
from facility_share.db.models._finance import (
    LINE_KINDS,
    PERIOD_KINDS,
    SETTLEMENT_STATUSES,
    PolicyVersion,
    Settlement,
    SettlementLine,
)
from facility_share.db.models._payments import PAYMENT_STATUSES, REFUND_STATUSES, Payment, Refund, StripeEvent
from facility_share.db.models._usage import CHARGE_KINDS, CHARGE_STATUSES, USAGE_SOURCES, AgentKey, Charge, Rating, UsageLog

__all__ = [
    "JOB_STATUSES",
    "Job",
    "CHARGE_KINDS",
    "LINE_KINDS",
    "PAYMENT_STATUSES",
    "PERIOD_KINDS",
    "REFUND_STATUSES",
    "SETTLEMENT_STATUSES",
    "Payment",
    "PolicyVersion",
    "Refund",
    "Settlement",
    "SettlementLine",
    "StripeEvent",
    "ACTIVE_STATUSES",
    "CHARGE_STATUSES",
    "USAGE_SOURCES",
    "AgentKey",
    "Charge",
    "Rating",
    "UsageLog",
    "BOOKING_STATUSES",
    "ROLES",
    "TIERS",
    "ApiToken",
    "AuditEvent",
    "Base",
    "Booking",
    "Category",
    "Closure",
    "Enterprise",
    "EnterpriseStatus",
    "FeeItem",
    "FeedToken",
    "LoginAttempt",
    "ManagingUnit",
    "OpeningHours",
    "Qualification",
    "Resource",
    "RoleGrant",
    "UnitRelation",
    "User",
    "WebSession",
    "utcnow",
]
