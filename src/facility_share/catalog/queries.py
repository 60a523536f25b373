"""Reading the public catalogue: search, filters, paging, and one resource, unit or category.

Everything here is read-only and returns plain dataclasses (``schemas``), so the API, the pages
and the CSV/JSON export share one query path. Retired records are never shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from facility_share.catalog import schemas
from facility_share.db.models import Category, Closure, ManagingUnit, Resource, utcnow
from facility_share.errors import InvalidInput, NotFound

SORTS = {
    "code": (Resource.code,),
    "name": (Resource.name_zh, Resource.code),
    "name_en": (Resource.name_en, Resource.code),
    "price": (Resource.min_price_fen, Resource.code),
    "-price": (Resource.min_price_fen.desc(), Resource.code),
    "value": (Resource.original_value_fen, Resource.code),
    "-value": (Resource.original_value_fen.desc(), Resource.code),
    "newest": (Resource.commissioned_on.desc(), Resource.code),
}
KINDS = ("instrument", "workshop", "line")
MAX_PER_PAGE = 100


@dataclass(frozen=True, slots=True)
class ResourceFilter:
    q: str = ""
    kind: str | None = None
    category: str | None = None
    unit: str | None = None
    location: str = ""
    max_price_fen: int | None = None
    open_for_sharing: bool | None = None
    include_lines: bool = False
    # Only these codes (e.g. the resources found free for a time window), if given.
    codes: frozenset[str] | None = None
    sort: str = "code"
    page: int = 1
    per_page: int = 20

    def checked(self) -> ResourceFilter:
        """Raises InvalidInput naming the parameter that is out of range."""
        if self.kind is not None and self.kind not in KINDS:
            raise InvalidInput(f"kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.sort not in SORTS:
            raise InvalidInput(f"sort: expected one of {', '.join(SORTS)}, got {self.sort!r}")
        if self.page < 1:
            raise InvalidInput(f"page: must be 1 or more, got {self.page}")
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise InvalidInput(f"per_page: must be between 1 and {MAX_PER_PAGE}, got {self.per_page}")
        if self.max_price_fen is not None and self.max_price_fen < 0:
            raise InvalidInput(f"max_price_fen: must not be negative, got {self.max_price_fen}")
        if len(self.q) > 200:
            raise InvalidInput("q: at most 200 characters")
        return self


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _category_ids(session: AsyncSession, code: str) -> list[int]:
    """The category with ``code`` and all of its descendants."""
    rows = (await session.execute(select(Category.id, Category.code, Category.parent_id))).all()
    by_code = {c: i for i, c, _ in rows}
    if code not in by_code:
        return []  # an unknown category matches nothing, like an unknown unit
    children: dict[int | None, list[int]] = {}
    for row_id, _code, parent in rows:
        children.setdefault(parent, []).append(row_id)
    found, stack = [], [by_code[code]]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


async def _filtered(session: AsyncSession, f: ResourceFilter) -> Select:
    conditions = [Resource.retired_at.is_(None), ManagingUnit.retired_at.is_(None)]
    for term in f.q.lower().split():
        conditions.append(Resource.search_text.like(_like(term), escape="\\"))
    if f.codes is not None:
        conditions.append(Resource.code.in_(sorted(f.codes)))
    if f.kind:
        conditions.append(Resource.kind == f.kind)
    elif not f.include_lines:
        conditions.append(Resource.kind != "line")
    if f.category:
        conditions.append(Resource.category_id.in_(await _category_ids(session, f.category)))
    if f.unit:
        conditions.append(ManagingUnit.code == f.unit)
    if f.location.strip():
        pattern = _like(f.location.strip().lower())
        conditions.append(
            or_(
                func.lower(Resource.location_zh).like(pattern, escape="\\"),
                func.lower(Resource.location_en).like(pattern, escape="\\"),
            )
        )
    if f.max_price_fen is not None:
        conditions.append(Resource.min_price_fen <= f.max_price_fen)
    if f.open_for_sharing is not None:
        conditions.append(Resource.open_for_sharing.is_(f.open_for_sharing))
    return select(Resource).join(ManagingUnit, Resource.unit_id == ManagingUnit.id).where(and_(*conditions))


async def search_resources(session: AsyncSession, f: ResourceFilter) -> schemas.ResourcePage:
    """One page of resources matching the filter, with the total count.

    Raises:
        InvalidInput: a parameter is out of range or names an unknown category.
    """
    f = f.checked()
    base = await _filtered(session, f)
    total = (await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
    statement = (
        base.options(selectinload(Resource.unit), selectinload(Resource.category))
        .order_by(*SORTS[f.sort])
        .limit(f.per_page)
        .offset((f.page - 1) * f.per_page)
    )
    rows = (await session.execute(statement)).scalars().all()
    return schemas.ResourcePage(
        items=[schemas.resource_summary(r) for r in rows],
        total=total,
        page=f.page,
        per_page=f.per_page,
        pages=max(1, math.ceil(total / f.per_page)),
    )


async def get_resource(session: AsyncSession, code: str, *, now: datetime | None = None) -> schemas.ResourceDetail:
    """A resource with its fee table, booking rules, opening hours and coming closures.

    Raises:
        NotFound: no current resource has this code.
    """
    now = now or utcnow()
    statement = (
        select(Resource)
        .where(Resource.code == code, Resource.retired_at.is_(None))
        .options(
            selectinload(Resource.unit),
            selectinload(Resource.category),
            selectinload(Resource.opening_hours),
            selectinload(Resource.fee_items),
        )
    )
    resource = (await session.execute(statement)).scalar_one_or_none()
    if resource is None:
        raise NotFound(f"no resource with code {code!r}")
    closures = (
        await session.execute(
            select(Closure).where(Closure.resource_id == resource.id, Closure.ends_at > now).order_by(Closure.starts_at)
        )
    ).scalars().all()
    parent_category = None
    if resource.category.parent_id is not None:
        parent_category = await session.get(Category, resource.category.parent_id)
    lines = (
        await session.execute(
            select(Resource).where(Resource.parent_id == resource.id, Resource.retired_at.is_(None)).order_by(Resource.code)
        )
    ).scalars().all()
    parent = await session.get(Resource, resource.parent_id) if resource.parent_id else None
    return schemas.resource_detail(resource, closures, parent_category, lines, parent)


async def list_units(session: AsyncSession) -> list[schemas.UnitSummary]:
    counts = (
        select(Resource.unit_id, func.count().label("n"))
        .where(Resource.retired_at.is_(None), Resource.kind != "line")
        .group_by(Resource.unit_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(ManagingUnit, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.unit_id == ManagingUnit.id)
            .where(ManagingUnit.retired_at.is_(None))
            .order_by(ManagingUnit.code)
        )
    ).all()
    return [schemas.unit_summary(unit, count) for unit, count in rows]


async def get_unit(session: AsyncSession, code: str) -> schemas.UnitDetail:
    """Raises NotFound for an unknown or retired unit."""
    unit = (
        await session.execute(select(ManagingUnit).where(ManagingUnit.code == code, ManagingUnit.retired_at.is_(None)))
    ).scalar_one_or_none()
    if unit is None:
        raise NotFound(f"no managing unit with code {code!r}")
    resources = (
        await session.execute(
            select(Resource)
            .where(Resource.unit_id == unit.id, Resource.retired_at.is_(None), Resource.kind != "line")
            .options(selectinload(Resource.unit), selectinload(Resource.category))
            .order_by(Resource.code)
        )
    ).scalars().all()
    return schemas.unit_detail(unit, [schemas.resource_summary(r) for r in resources])


async def category_tree(session: AsyncSession) -> list[schemas.CategoryNode]:
    categories = (
        await session.execute(
            select(Category).where(Category.retired_at.is_(None)).order_by(Category.level, Category.position)
        )
    ).scalars().all()
    counts = dict(
        (
            await session.execute(
                select(Resource.category_id, func.count())
                .where(Resource.retired_at.is_(None), Resource.kind != "line")
                .group_by(Resource.category_id)
            )
        ).all()
    )
    nodes = {c.id: schemas.CategoryNode(code=c.code, name_zh=c.name_zh, name_en=c.name_en, resource_count=counts.get(c.id, 0), children=[]) for c in categories}
    roots: list[schemas.CategoryNode] = []
    for c in categories:
        node = nodes[c.id]
        if c.parent_id in nodes:
            nodes[c.parent_id].children.append(node)
        else:
            roots.append(node)

    def total(node: schemas.CategoryNode) -> int:
        node.resource_count += sum(total(child) for child in node.children)
        return node.resource_count

    for root in roots:
        total(root)
    return roots


async def catalogue_counts(session: AsyncSession) -> dict[str, int]:
    rows = (
        await session.execute(
            select(Resource.kind, func.count()).where(Resource.retired_at.is_(None)).group_by(Resource.kind)
        )
    ).all()
    counts = {kind: 0 for kind in KINDS}
    counts.update(dict(rows))
    counts["units"] = (
        await session.execute(select(func.count()).select_from(ManagingUnit).where(ManagingUnit.retired_at.is_(None)))
    ).scalar_one()
    return counts


async def export_rows(session: AsyncSession) -> Sequence[Resource]:
    """Every current resource with what the national-platform export needs, eagerly loaded."""
    statement = (
        select(Resource)
        .where(Resource.retired_at.is_(None))
        .options(
            selectinload(Resource.unit),
            selectinload(Resource.category),
            selectinload(Resource.opening_hours),
            selectinload(Resource.fee_items),
        )
        .order_by(Resource.code)
    )
    return (await session.execute(statement)).scalars().all()
