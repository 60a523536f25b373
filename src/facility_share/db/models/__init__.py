"""ORM models, one private module per bounded context, re-exported here.

Alembic imports this package to see the whole schema.
"""

from facility_share.db.models._base import Base, utcnow
from facility_share.db.models._catalog import Category, Closure, FeeItem, ManagingUnit, OpeningHours, Resource

__all__ = ["Base", "Category", "Closure", "FeeItem", "ManagingUnit", "OpeningHours", "Resource", "utcnow"]
