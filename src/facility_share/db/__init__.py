"""Database access: engines, sessions and the ORM models (one import point for Alembic)."""

from facility_share.db.engine import Database, create_engine

__all__ = ["Database", "create_engine"]
