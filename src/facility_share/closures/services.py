"""Closures from calendar files in the database: apply an .ics file to a resource or to every
current resource of a unit, list upcoming closures, delete one.

The per-file rule: an imported closure has source ``"ics"`` and ``external_uid`` =
``"<file name>:<event UID>#<occurrence start, UTC ISO>"``. Importing a file compares with the
closures of the same file name on the target resources that have not ended yet: new
occurrences are added, changed ones (end or reason) updated, ones no longer in the file
removed, the rest left alone, so re-importing the same file changes nothing. Closures that
ended are history and are never touched; neither are the catalogue's (source ``"catalog"``)
nor other files' closures. Everything happens in the caller's transaction (flush only).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share import audit
from facility_share.closures.ical_import import Occurrence, parse_closures
from facility_share.db.models import Closure, ManagingUnit, Resource, utcnow
from facility_share.errors import Conflict, InvalidInput, NotFound

DELETABLE_SOURCES = ("ics", "manager")
UID_LENGTH = 300


@dataclass
class ImportResult:
    """What one import did: per the module's per-file rule."""

    target: str
    scope: str
    resources: list[str] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "file": self.scope, "resources": self.resources, "added": self.added,
            "updated": self.updated, "removed": self.removed, "unchanged": self.unchanged,
        }


def file_scope(filename: str) -> str:
    """The file's name as the key of its closures (no folders; no ':' or '#'; at most 80 characters)."""
    name = PurePath((filename or "").replace("\\", "/")).name.strip()
    name = re.sub(r"[:#%\s]+", "_", name)[:80]
    return name or "calendar.ics"


def external_uid(scope: str, occurrence: Occurrence) -> str:
    key = f"{scope}:{occurrence.uid}"
    if len(key) <= UID_LENGTH:
        return key
    return f"{scope}:{hashlib.sha256(occurrence.uid.encode()).hexdigest()}"


async def _targets(
    session: AsyncSession, *, resource_code: str | None, unit_code: str | None, allowed_unit_ids: set[int] | None
) -> tuple[str, str, int, list[Resource]]:
    """(entity, label, entity id, resources) of the import target; one of the codes must be given."""
    if bool(resource_code) == bool(unit_code):
        raise InvalidInput("target: give either a resource code or a unit code")
    if resource_code:
        resource = (
            await session.execute(select(Resource).where(Resource.code == resource_code, Resource.retired_at.is_(None)))
        ).scalar_one_or_none()
        if resource is None or (allowed_unit_ids is not None and resource.unit_id not in allowed_unit_ids):
            raise NotFound(f"no resource {resource_code!r} in the units you manage")
        return "resource", resource.code, resource.id, [resource]
    unit = (
        await session.execute(select(ManagingUnit).where(ManagingUnit.code == unit_code, ManagingUnit.retired_at.is_(None)))
    ).scalar_one_or_none()
    if unit is None or (allowed_unit_ids is not None and unit.id not in allowed_unit_ids):
        raise NotFound(f"no managing unit {unit_code!r} among the units you manage")
    resources = list(
        (
            await session.execute(
                select(Resource).where(Resource.unit_id == unit.id, Resource.retired_at.is_(None)).order_by(Resource.code)
            )
        ).scalars()
    )
    if not resources:
        raise InvalidInput(f"unit {unit.code} has no current resources to close")
    return "managing_unit", unit.code, unit.id, resources


def parse_for(text: str, resources: list[Resource], *, filename: str, now: datetime) -> dict[int, list[Occurrence]]:
    """The occurrences for each resource (parsed once per time zone; the horizon is the
    largest of the resources). Raises CalendarInvalid: then nothing is imported."""
    horizon = max(r.horizon_days for r in resources)
    window_end = now + timedelta(days=horizon)
    by_zone: dict[str, list[Occurrence]] = {}
    result: dict[int, list[Occurrence]] = {}
    for resource in resources:
        zone = resource.timezone or "Asia/Shanghai"
        if zone not in by_zone:
            by_zone[zone] = parse_closures(text, zone=ZoneInfo(zone), window_start=now, window_end=window_end, filename=filename)
        result[resource.id] = by_zone[zone]
    return result


async def import_ics(
    session: AsyncSession,
    text: str,
    *,
    filename: str,
    resource_code: str | None = None,
    unit_code: str | None = None,
    actor_id: int | None = None,
    actor_kind: str = "user",
    allowed_unit_ids: set[int] | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Apply an .ics file to one resource or every current resource of a unit (module rule).

    ``allowed_unit_ids`` limits the targets to those units (None: any, e.g. the CLI or an admin).
    Raises CalendarInvalid (nothing changed), NotFound or InvalidInput.
    """
    now = now or utcnow()
    entity, label, entity_id, resources = await _targets(
        session, resource_code=resource_code, unit_code=unit_code, allowed_unit_ids=allowed_unit_ids
    )
    scope = file_scope(filename)
    wanted = parse_for(text, resources, filename=scope, now=now)
    result = ImportResult(target=label, scope=scope, resources=[r.code for r in resources])
    ids = [r.id for r in resources]
    existing: dict[tuple[int, str], Closure] = {}
    for closure in (
        await session.execute(
            select(Closure).where(
                Closure.resource_id.in_(ids),
                Closure.source == "ics",
                Closure.external_uid.startswith(f"{scope}:", autoescape=True),
                Closure.ends_at > now,
            )
        )
    ).scalars():
        existing[(closure.resource_id, closure.external_uid or "")] = closure
    keep: set[tuple[int, str]] = set()
    for resource in resources:
        for occurrence in wanted[resource.id]:
            key = (resource.id, external_uid(scope, occurrence))
            if key in keep:
                continue
            keep.add(key)
            found = existing.get(key)
            if found is None:
                session.add(Closure(resource_id=resource.id, starts_at=occurrence.starts_at, ends_at=occurrence.ends_at,
                                    reason=occurrence.reason, source="ics", external_uid=key[1]))
                result.added += 1
            elif (found.starts_at, found.ends_at, found.reason) != (occurrence.starts_at, occurrence.ends_at, occurrence.reason):
                found.starts_at, found.ends_at, found.reason = occurrence.starts_at, occurrence.ends_at, occurrence.reason
                result.updated += 1
            else:
                result.unchanged += 1
    gone = [closure.id for key, closure in existing.items() if key not in keep]
    if gone:
        await session.execute(delete(Closure).where(Closure.id.in_(gone)))
        result.removed = len(gone)
    await session.flush()
    audit.record(
        session, action="closures.import", entity=entity, entity_id=entity_id, actor_id=actor_id, actor_kind=actor_kind,
        after=result.as_dict(), reason=f"calendar file {scope}",
    )
    await session.flush()
    return result


async def upcoming(session: AsyncSession, unit_id: int, *, now: datetime | None = None, limit: int = 500) -> list[tuple[Closure, Resource]]:
    """The closures of a unit's current resources that have not ended, by start."""
    now = now or utcnow()
    rows = await session.execute(
        select(Closure, Resource)
        .join(Resource, Closure.resource_id == Resource.id)
        .where(Resource.unit_id == unit_id, Resource.retired_at.is_(None), Closure.ends_at > now)
        .order_by(Closure.starts_at, Resource.code, Closure.id)
        .limit(limit)
    )
    return [(c, r) for c, r in rows.all()]


async def delete_closure(
    session: AsyncSession, closure_id: int, *, actor_id: int | None, allowed_unit_ids: set[int] | None
) -> tuple[Closure, Resource]:
    """Delete an imported or manager closure of a unit the actor manages (catalogue ones stay)."""
    row = (
        await session.execute(
            select(Closure, Resource).join(Resource, Closure.resource_id == Resource.id).where(Closure.id == closure_id)
        )
    ).one_or_none()
    if row is None or (allowed_unit_ids is not None and row[1].unit_id not in allowed_unit_ids):
        raise NotFound(f"no closure {closure_id} in the units you manage")
    closure, resource = row
    if closure.source not in DELETABLE_SOURCES:
        raise Conflict("closures from the catalogue are changed in the catalogue files, not here")
    before = audit.snapshot(closure, ("resource_id", "starts_at", "ends_at", "reason", "source", "external_uid"))
    await session.delete(closure)
    await session.flush()
    audit.record(session, action="closure.delete", entity="closure", entity_id=closure_id, actor_id=actor_id, before=before)
    await session.flush()
    return closure, resource


__all__ = ["ImportResult", "delete_closure", "external_uid", "file_scope", "import_ics", "parse_for", "upcoming"]
