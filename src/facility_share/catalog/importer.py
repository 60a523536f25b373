"""Writing a validated catalogue into the database: an idempotent upsert.

Each category, unit and resource carries the hash of its record as last imported. A record
whose hash has not changed is skipped without a single write, so a second import of the same
files only reads (one query per table). Records that disappeared from the files are retired
(``retired_at`` set), never deleted: bookings, usage and settlements keep pointing at them.

The caller owns the transaction; this module only flushes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.catalog.records import Catalog, CategoryRecord, KnownFile, ResourceRecord, UnitRecord
from facility_share.db.models import Category, Closure, FeeItem, ManagingUnit, OpeningHours, Resource, utcnow

BATCH = 500


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    retired: int = 0
    unchanged: int = 0

    @property
    def written(self) -> int:
        return self.created + self.updated + self.retired


@dataclass
class ImportSummary:
    categories: Counts = field(default_factory=Counts)
    units: Counts = field(default_factory=Counts)
    resources: Counts = field(default_factory=Counts)

    @property
    def written(self) -> int:
        return self.categories.written + self.units.written + self.resources.written

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            name: {"created": c.created, "updated": c.updated, "retired": c.retired, "unchanged": c.unchanged}
            for name, c in (("categories", self.categories), ("units", self.units), ("resources", self.resources))
        }


def record_hash(record: Any, *context: str) -> str:
    """A stable hash of a record and its context (unit, parent, source file)."""
    payload = json.dumps(
        [record.model_dump(mode="json", by_alias=True), *context], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def search_text(record: ResourceRecord) -> str:
    parts = [record.code, record.name_zh, record.name_en, record.model, record.maker, *record.capabilities]
    return " ".join(p for p in parts if p).lower()


def min_price(record: ResourceRecord) -> int | None:
    rates = [fee.district for fee in record.fees if fee.basis != "setup"]
    return min(rates) if rates else None


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _category_values(record: CategoryRecord, parent_ids: dict[str, int], digest: str) -> dict[str, Any]:
    return {
        "code": record.code,
        "parent_id": parent_ids.get(record.parent) if record.parent else None,
        "name_zh": record.name_zh,
        "name_en": record.name_en,
        "level": record.level,
        "position": record.position,
        "content_hash": digest,
        "retired_at": None,
    }


def _unit_values(record: UnitRecord, source: str, digest: str, file_digest: str) -> dict[str, Any]:
    values = record.model_dump(exclude={"uscc"})
    return {
        **values,
        "uscc": record.uscc,
        "source_file": source,
        "source_digest": file_digest,
        "content_hash": digest,
        "retired_at": None,
    }


def _resource_values(
    record: ResourceRecord, unit_id: int, category_id: int, parent_id: int | None, source: str, digest: str
) -> dict[str, Any]:
    rules = record.booking
    return {
        "code": record.code,
        "kind": record.kind,
        "parent_id": parent_id,
        "unit_id": unit_id,
        "category_id": category_id,
        "name_zh": record.name_zh,
        "name_en": record.name_en,
        "model": record.model,
        "maker": record.maker,
        "country": record.country,
        "original_value_fen": record.original_value,
        "commissioned_on": record.commissioned_on,
        "location_zh": record.location_zh,
        "location_en": record.location_en,
        "timezone": record.timezone or "Asia/Shanghai",
        "capacity": record.capacity,
        "open_for_sharing": record.open_for_sharing,
        "rated_hours_per_year": record.rated_hours_per_year,
        "specs_zh": record.specs_zh,
        "specs_en": record.specs_en,
        "functions_zh": record.functions_zh,
        "functions_en": record.functions_en,
        "capabilities": list(record.capabilities),
        "sharing_modes": list(record.sharing_modes),
        "contact_name": record.contact_name,
        "contact_phone": record.contact_phone,
        "contact_email": record.contact_email,
        "booking_unit": rules.unit,
        "slot_minutes": rules.slot_minutes,
        "min_minutes": rules.min_minutes,
        "max_minutes": rules.max_minutes,
        "lead_minutes": rules.lead_hours * 60,
        "horizon_days": rules.horizon_days,
        "approval_required": rules.approval_required,
        "self_operation_allowed": rules.self_operation_allowed,
        "qualification_required": rules.qualification_required,
        "working_calendar": rules.working_calendar,
        "cancellation_hours": rules.cancellation_hours,
        "billing_basis": rules.billing,
        "peak_hours": [[i.weekday, f"{i.opens:%H:%M}", f"{i.closes:%H:%M}"] for i in record.peak_hours],
        "no_show_fee_fen": record.no_show_fee,
        "checkin_grace_minutes": record.checkin_grace_minutes,
        "no_show_grace_minutes": record.no_show_grace_minutes,
        "shifts": [shift.model_dump() for shift in rules.shifts],
        "search_text": search_text(record),
        "min_price_fen": min_price(record),
        "source_file": source,
        "content_hash": digest,
        "retired_at": None,
    }


def _children(record: ResourceRecord, resource_id: int) -> tuple[list[dict], list[dict], list[dict]]:
    hours = [
        {"resource_id": resource_id, "weekday": i.weekday, "opens": i.opens, "closes": i.closes}
        for i in record.opening_hours
    ]
    closures = [
        {
            "resource_id": resource_id,
            "starts_at": c.starts_at,
            "ends_at": c.ends_at,
            "reason": c.reason,
            "source": "catalog",
        }
        for c in record.closures
    ]
    fees = [
        {
            "resource_id": resource_id,
            "position": position,
            "basis": fee.basis,
            "label_zh": fee.label_zh,
            "label_en": fee.label_en,
            "internal_fen": fee.internal,
            "district_fen": fee.district,
            "external_fen": fee.external,
            "unit_minutes": fee.unit_minutes,
            "minimum_units": fee.minimum_units,
            "period": fee.period,
            "rounding": fee.rounding,
            "note_zh": fee.note_zh,
            "note_en": fee.note_en,
        }
        for position, fee in enumerate(record.fees)
    ]
    return hours, closures, fees


async def known_files(session: AsyncSession) -> dict[str, KnownFile]:
    """The unit files as last imported, for ``files.load_catalog(known=...)``."""
    units = (
        await session.execute(
            select(ManagingUnit.id, ManagingUnit.code, ManagingUnit.source_file, ManagingUnit.source_digest).where(
                ManagingUnit.retired_at.is_(None), ManagingUnit.source_digest != ""
            )
        )
    ).all()
    codes: dict[int, set[str]] = {}
    rows = await session.execute(select(Resource.unit_id, Resource.code).where(Resource.retired_at.is_(None)))
    for unit_id, code in rows:
        codes.setdefault(unit_id, set()).add(code)
    return {
        source: KnownFile(digest=digest, unit_code=code, resource_codes=frozenset(codes.get(unit_id, ())))
        for unit_id, code, source, digest in units
    }


async def _existing(session: AsyncSession, model: Any) -> dict[str, tuple[int, str, bool]]:
    rows = await session.execute(select(model.code, model.id, model.content_hash, model.retired_at))
    return {code: (row_id, digest, retired is not None) for code, row_id, digest, retired in rows}


async def import_catalog(
    session: AsyncSession, catalog: Catalog, *, progress: Callable[[int], None] | None = None
) -> ImportSummary:
    """Upsert the catalogue; flushes, never commits.

    ``progress`` is called with the number of resources handled since the last call.
    """
    summary = ImportSummary()
    now = utcnow()
    tick = progress or (lambda _n: None)

    # Categories: parents first (records are in tree order: a parent precedes its children).
    existing = await _existing(session, Category)
    category_ids = {code: row[0] for code, row in existing.items()}
    for record in catalog.categories:
        digest = record_hash(record)
        current = existing.get(record.code)
        if current and current[1] == digest and not current[2]:
            summary.categories.unchanged += 1
            continue
        values = _category_values(record, category_ids, digest)
        if current:
            await session.execute(update(Category).where(Category.id == current[0]).values(**values))
            summary.categories.updated += 1
        else:
            statement = insert(Category).values(**values).returning(Category.id)
            category_ids[record.code] = (await session.execute(statement)).scalar_one()
            summary.categories.created += 1
    summary.categories.retired = await _retire(
        session, Category, existing, {r.code for r in catalog.categories}, now
    )

    existing = await _existing(session, ManagingUnit)
    stored_file_digests = dict((await session.execute(select(ManagingUnit.code, ManagingUnit.source_digest))).all())
    unit_ids = {code: row[0] for code, row in existing.items()}
    unchanged_units = {known.unit_code for known in catalog.unchanged_files.values()}
    unchanged_resources = {code for known in catalog.unchanged_files.values() for code in known.resource_codes}
    summary.units.unchanged += len(unchanged_units)
    summary.resources.unchanged += len(unchanged_resources)
    for record in catalog.units:
        source = catalog.sources.get(record.code, "")
        digest = record_hash(record, source)
        file_digest = catalog.file_digests.get(source, "")
        current = existing.get(record.code)
        if current and current[1] == digest and not current[2]:
            summary.units.unchanged += 1
            if stored_file_digests.get(record.code) != file_digest:
                # The file changed elsewhere (a resource, a comment): remember its new digest.
                await session.execute(
                    update(ManagingUnit).where(ManagingUnit.id == current[0]).values(source_digest=file_digest)
                )
            continue
        values = _unit_values(record, source, digest, file_digest)
        if current:
            await session.execute(update(ManagingUnit).where(ManagingUnit.id == current[0]).values(**values))
            summary.units.updated += 1
        else:
            unit_ids[record.code] = (
                await session.execute(insert(ManagingUnit).values(**values).returning(ManagingUnit.id))
            ).scalar_one()
            summary.units.created += 1
    summary.units.retired = await _retire(
        session, ManagingUnit, existing, {u.code for u in catalog.units} | unchanged_units, now
    )

    existing = await _existing(session, Resource)
    resource_ids = {code: row[0] for code, row in existing.items()}
    # Workshops before their lines, so a line can point at its parent's id.
    ordered = sorted(catalog.resources, key=lambda r: r.parent is not None)
    to_insert: list[tuple[ResourceRecord, dict[str, Any]]] = []
    to_update: list[tuple[ResourceRecord, int, dict[str, Any]]] = []
    for record in ordered:
        unit_code = catalog.resource_units[record.code]
        source = catalog.sources.get(record.code, "")
        digest = record_hash(record, unit_code, source)
        current = existing.get(record.code)
        if current and current[1] == digest and not current[2]:
            summary.resources.unchanged += 1
            continue
        parent_id = resource_ids.get(record.parent) if record.parent else None
        values = _resource_values(record, unit_ids[unit_code], category_ids[record.category], parent_id, source, digest)
        if current:
            to_update.append((record, current[0], values))
        else:
            to_insert.append((record, values))

    if summary.resources.unchanged:
        tick(summary.resources.unchanged)

    # Top-level resources go first, in their own batches, so a line can point at its
    # workshop's new id.
    top_level = [item for item in to_insert if item[0].parent is None]
    lines = [item for item in to_insert if item[0].parent is not None]
    for group in (top_level, lines):
        for batch in _chunks(group):
            rows = []
            for record, values in batch:
                if record.parent:
                    values["parent_id"] = resource_ids[record.parent]
                rows.append(values)
            statement = insert(Resource).returning(Resource.id, Resource.code, sort_by_parameter_order=True)
            for resource_id, code in (await session.execute(statement, rows)).all():
                resource_ids[code] = resource_id
            await _insert_children(session, [(record, resource_ids[record.code]) for record, _ in batch])
            summary.resources.created += len(batch)
            tick(len(batch))

    for batch in _chunks(to_update):
        ids = [resource_id for _, resource_id, _ in batch]
        for record, resource_id, values in batch:
            if record.parent:
                values["parent_id"] = resource_ids[record.parent]
            await session.execute(update(Resource).where(Resource.id == resource_id).values(**values))
        await session.execute(delete(OpeningHours).where(OpeningHours.resource_id.in_(ids)))
        await session.execute(delete(FeeItem).where(FeeItem.resource_id.in_(ids)))
        await session.execute(delete(Closure).where(Closure.resource_id.in_(ids), Closure.source == "catalog"))
        await _insert_children(session, [(record, resource_id) for record, resource_id, _ in batch])
        summary.resources.updated += len(batch)
        tick(len(batch))

    summary.resources.retired = await _retire(
        session, Resource, existing, {r.code for r in catalog.resources} | unchanged_resources, now
    )
    await session.flush()
    return summary


async def _insert_children(session: AsyncSession, items: list[tuple[ResourceRecord, int]]) -> None:
    hours: list[dict] = []
    closures: list[dict] = []
    fees: list[dict] = []
    for record, resource_id in items:
        h, c, f = _children(record, resource_id)
        hours += h
        closures += c
        fees += f
    if hours:
        await session.execute(insert(OpeningHours), hours)
    if closures:
        await session.execute(insert(Closure), closures)
    if fees:
        await session.execute(insert(FeeItem), fees)


async def _retire(session: AsyncSession, model: Any, existing: dict[str, tuple[int, str, bool]], present: set[str], now: Any) -> int:
    gone = [row_id for code, (row_id, _digest, retired) in existing.items() if code not in present and not retired]
    for batch in _chunks(gone):
        await session.execute(update(model).where(model.id.in_(batch)).values(retired_at=now))
    return len(gone)
