"""The audit log: every state change records who, when, before, after and why."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.db.models import AuditEvent, utcnow


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: _plain(getattr(obj, name)) for name in fields}


def record(
    session: AsyncSession,
    *,
    action: str,
    entity: str,
    entity_id: int,
    actor_id: int | None,
    actor_kind: str = "user",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> AuditEvent:
    """Add an audit event to the caller's transaction."""
    event = AuditEvent(
        at=at or utcnow(),
        actor_id=actor_id,
        actor_kind=actor_kind,
        action=action,
        entity=entity,
        entity_id=entity_id,
        before={k: _plain(v) for k, v in before.items()} if before is not None else None,
        after={k: _plain(v) for k, v in after.items()} if after is not None else None,
        reason=reason[:500],
    )
    session.add(event)
    return event
