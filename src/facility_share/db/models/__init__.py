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
from facility_share.db.models._usage import CHARGE_STATUSES, USAGE_SOURCES, AgentKey, Charge, Rating, UsageLog

__all__ = [
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
