"""What a settlement needs from the database, aggregated in SQL so a year of usage is one pass.

The subsidy's rate applies per charge, but the amount is rounded once per enterprise, so charges
that share an enterprise, a standing (the status version in force on their service date), a unit,
a relation and an open/closed resource can be summed before the rate is applied without changing a
single fen. ``subsidy_groups`` returns those sums; ``unit_facts`` returns each unit's figures for the
award. Both read payments and refunds as they stood at the settlement's cut-off.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Date, DateTime, Integer, and_, any_, bindparam, case, cast, exists, func, or_, select, text, type_coerce, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from facility_share.db.models import (
    Booking,
    Charge,
    Enterprise,
    EnterpriseStatus,
    ManagingUnit,
    Payment,
    Rating,
    Refund,
    Resource,
    UnitRelation,
    UsageLog,
)
from facility_share.finance.periods import Period
from facility_share.usage.figures import period_bounds


@dataclass(frozen=True, slots=True)
class StandingRow:
    """An enterprise's status as in force from ``effective_from`` (None: no status recorded yet)."""

    id: int | None
    effective_from: date | None
    registered_in_district: bool
    verified: bool
    tech_sme: bool
    hnte: bool
    tier: str
    controller: str


NO_STANDING = StandingRow(None, None, False, False, False, False, "none", "")


@dataclass(frozen=True, slots=True)
class SubsidyGroup:
    """Charges of one enterprise that share everything the subsidy rules look at."""

    enterprise_id: int
    standing: StandingRow
    unit_code: str
    relation: str  # none | internal | related
    resource_open: bool
    charges: int
    first_charge_id: int
    last_service_at: datetime
    paid_fen: int
    refunded_fen: int


@dataclass(frozen=True, slots=True)
class EnterpriseRow:
    id: int
    uscc: str
    name: str


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit_id: int
    unit_code: str
    name: str
    resources_total: int
    resources_open: int
    effective_minutes: int
    external_minutes: int
    enterprises_served: int
    rating_sum: int
    rating_count: int
    external_income_fen: int


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection during a stretch of work that allocates hundreds of
    thousands of small objects, none of them in cycles, so that each collection would only
    walk the whole heap for nothing. Nestable (an inner one leaves it paused)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@asynccontextmanager
async def planner_settings(session: AsyncSession) -> AsyncIterator[None]:
    """On PostgreSQL, for the settlement's few big aggregations: no JIT compilation (compiling
    them costs more than running them, and their cost estimates, which count a paid-late
    charge's look-up of its payments for every charge, always ask for it), and memory enough to
    group a year of charges without spilling to disk. Restored afterwards, so the caller's
    transaction keeps its own settings."""
    if _dialect(session) != "postgresql":
        yield
        return
    jit, work_mem = (await session.execute(text("SELECT current_setting('jit'), current_setting('work_mem')"))).one()
    await session.execute(text("SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)"))
    try:
        yield
    finally:
        await session.execute(text("SELECT set_config('jit', :jit, true), set_config('work_mem', :work_mem, true)"),
                              {"jit": jit, "work_mem": work_mem})


# PostgreSQL's plan settings that leave it hash joins and a hash aggregate.
_HASH_PLANS = ("enable_mergejoin", "enable_nestloop", "enable_sort", "enable_incremental_sort")


@asynccontextmanager
async def hash_plans(session: AsyncSession) -> AsyncIterator[None]:
    """On PostgreSQL, for the grouping of a year of charges: hash joins and a hash aggregate.
    The planner multiplies the group keys' distinct counts and so expects a group per charge
    (an enterprise's standing, units and relations are few, which it cannot know), sorts half
    a million joined rows to group them, and spills the sort to disk; hashing the actual
    groups (a few percent of the rows) took half the time. The final ORDER BY still sorts.
    Restored afterwards."""
    if _dialect(session) != "postgresql":
        yield
        return
    names = ", ".join(f"current_setting('{name}')" for name in _HASH_PLANS)
    before = (await session.execute(text(f"SELECT {names}"))).one()
    await session.execute(text("SELECT " + ", ".join(f"set_config('{name}', 'off', true)" for name in _HASH_PLANS)))
    try:
        yield
    finally:
        await session.execute(
            text("SELECT " + ", ".join(f"set_config('{name}', :v{i}, true)" for i, name in enumerate(_HASH_PLANS))),
            {f"v{i}": value for i, value in enumerate(before)},
        )


def _among(session: AsyncSession, column: ColumnElement, ids: set[int] | list[int]) -> ColumnElement:
    """``column IN ids``; on PostgreSQL as ``= ANY`` of one array parameter, since an IN list of
    a few thousand ids is a new statement to render, send and plan each time (80 ms for the
    2,000 enterprises of a year's settlement, against a few for the array)."""
    if _dialect(session) == "postgresql":
        return column == any_(bindparam(None, sorted(ids), type_=ARRAY(Integer)))
    return column.in_(sorted(ids))


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name  # type: ignore[union-attr]


DISTRICT_ZONE_NAME = "Asia/Shanghai"


def local_date(session: AsyncSession, column: ColumnElement) -> ColumnElement:
    """The district-local date of a UTC timestamp (Asia/Shanghai keeps UTC+8 all year)."""
    if _dialect(session) == "postgresql":
        return cast(func.timezone("Asia/Shanghai", column), Date)
    return func.date(column, "+8 hours")


def minutes_between(session: AsyncSession, start: ColumnElement, end: ColumnElement) -> ColumnElement:
    """Whole minutes from start to end, floored per session as the usage figures and the usage
    reports floor them (one definition for both, so the award and the reports agree)."""
    from facility_share.finance.reports import whole_minutes

    return whole_minutes(session, start, end)


def _known_by(cutoff: datetime) -> ColumnElement:
    """The charge's own sums are its money as of ``cutoff``: every succeeded payment and refund
    of it succeeded by then (``money_as_of``, kept by the payments ledger). True for nearly
    every charge, which spares reading its payments and refunds; NULL (unknown) is not true."""
    return Charge.money_as_of <= cutoff


async def _money_from_rows(session: AsyncSession, charge_ids: list[int], cutoff: datetime) -> dict[int, tuple[int, int]]:
    """Paid and refunded fen as of ``cutoff`` from the payment and refund rows of a few charges
    (those whose own sums do not tell), in batches of ids rather than one look-up per charge."""
    money: dict[int, tuple[int, int]] = {}
    postgresql = _dialect(session) == "postgresql"
    size = len(charge_ids) if postgresql else 500  # one array parameter; SQLite binds each id
    for start in range(0, len(charge_ids), max(size, 1)):
        batch = charge_ids[start:start + size]

        def among(column: ColumnElement) -> ColumnElement:
            return column == any_(bindparam("ids", batch, type_=ARRAY(Integer))) if postgresql else column.in_(batch)

        paid = await session.execute(
            select(Payment.charge_id, func.sum(Payment.amount_received_fen))
            .where(among(Payment.charge_id), Payment.status == "succeeded", Payment.succeeded_at <= cutoff)
            .group_by(Payment.charge_id)
        )
        for charge_id, fen in paid.all():
            money[charge_id] = (int(fen), 0)
        refunded = await session.execute(
            select(Refund.charge_id, func.sum(Refund.amount_fen))
            .where(among(Refund.charge_id), Refund.status == "succeeded", Refund.succeeded_at <= cutoff)
            .group_by(Refund.charge_id)
        )
        for charge_id, fen in refunded.all():
            money[charge_id] = (money.get(charge_id, (0, 0))[0], int(fen))
    return money


def _leaf_resources():  # type: ignore[no-untyped-def]
    """Resources counted on their own: not retired, and not a workshop whose lines are booked."""
    child = aliased(Resource)
    has_lines = select(child.id).where(child.parent_id == Resource.id, child.retired_at.is_(None)).exists()
    return and_(Resource.retired_at.is_(None), ~has_lines)


def _current_versions() -> ColumnElement:
    """The current version of every session (nobody supersedes it), as ``usage.services``
    selects them, written as NOT IN over the few superseded ids: PostgreSQL keeps those in a
    hash and reads the year's logs in one scan, where NOT EXISTS made it walk them in id order
    against the superseding index."""
    newer = aliased(UsageLog)
    return UsageLog.id.not_in(select(newer.supersedes_id).where(newer.supersedes_id.is_not(None)))


def _related(enterprise_id: ColumnElement) -> ColumnElement:
    """The enterprise is internal or related to the resource's unit (NOT EXISTS of this is the
    planner-friendly anti-join: a LEFT JOIN … IS NULL on a column outside the join condition is
    estimated at one row, and the plans built on that estimate took minutes)."""
    return exists().where(UnitRelation.enterprise_id == enterprise_id, UnitRelation.unit_id == Resource.unit_id)


@dataclass(frozen=True, slots=True)
class ServiceCharges:
    """The period's service charges, as the subsidy and the award read them."""

    groups: list[SubsidyGroup]
    # Per managing unit id: external service income (paid net of refunds by the cut-off, to
    # enterprises not related to the unit, for its open resources counted on their own).
    income_by_unit: dict[int, int]


async def service_charges(session: AsyncSession, period: Period, cutoff: datetime) -> ServiceCharges:
    """One pass over the period's service charges for both the subsidy groups and the units'
    external income: the groups are also split by whether the resource counts on its own
    for the award (``leaf``), and merged again here."""
    since, until = period_bounds(period.start, period.end)
    next_from = func.lead(EnterpriseStatus.effective_from).over(
        partition_by=EnterpriseStatus.enterprise_id, order_by=(EnterpriseStatus.effective_from, EnterpriseStatus.id)
    )
    postgresql = _dialect(session) == "postgresql"
    if postgresql:
        # The status versions' local midnights as instants, so that each charge is matched by
        # comparing timestamps instead of converting its own to a local date.
        history = select(
            EnterpriseStatus.id, EnterpriseStatus.enterprise_id,
            func.timezone(DISTRICT_ZONE_NAME, cast(EnterpriseStatus.effective_from, DateTime)).label("effective_from"),
            func.timezone(DISTRICT_ZONE_NAME, cast(next_from, DateTime)).label("effective_until"),
        ).subquery("standing")
        served: ColumnElement = Charge.service_date
    else:
        history = select(
            EnterpriseStatus.id, EnterpriseStatus.enterprise_id, EnterpriseStatus.effective_from, next_from.label("effective_until"),
        ).subquery("standing")
        served = local_date(session, Charge.service_date)
    child = aliased(Resource)
    resources = select(
        Resource.id,
        Resource.unit_id,
        ManagingUnit.code.label("unit_code"),
        Resource.open_for_sharing.label("resource_open"),
        and_(
            Resource.retired_at.is_(None),
            ~select(child.id).where(child.parent_id == Resource.id, child.retired_at.is_(None)).exists(),
        ).label("leaf"),
    ).join(ManagingUnit, ManagingUnit.id == Resource.unit_id).subquery("resource")
    known = _known_by(cutoff)
    unknown = or_(Charge.money_as_of.is_(None), Charge.money_as_of > cutoff)
    # The ids of a group's charges whose sums do not tell (their money is read from the rows).
    if postgresql:
        unknown_ids: ColumnElement = func.array_agg(Charge.id).filter(unknown)
    else:
        unknown_ids = func.group_concat(case((unknown, Charge.id)))
    keys = (
        Charge.enterprise_id,
        history.c.id,
        resources.c.unit_code,
        UnitRelation.relation,
        resources.c.resource_open,
        resources.c.leaf,
        resources.c.unit_id,
    )
    # The groups' order (the inputs digest lists them in it): a missing relation is 'none'.
    order = (*keys[:3], func.coalesce(UnitRelation.relation, "none"), *keys[4:6])
    grouped = (
        select(
            *keys,
            func.count().label("charges"),
            func.min(Charge.id).label("first_charge_id"),
            # Plain timestamps: the rows are many, and the column type's converter is per value.
            type_coerce(func.max(Charge.service_date), DateTime(timezone=True)).label("last_service_at"),
            func.sum(case((known, Charge.paid_fen), else_=0)).label("paid_fen"),
            func.sum(case((known, Charge.refunded_fen), else_=0)).label("refunded_fen"),
            unknown_ids.label("unknown_ids"),
        )
        .select_from(Charge)
        .join(resources, resources.c.id == Charge.resource_id)
        .outerjoin(UnitRelation, and_(UnitRelation.enterprise_id == Charge.enterprise_id, UnitRelation.unit_id == resources.c.unit_id))
        .outerjoin(
            history,
            and_(
                history.c.enterprise_id == Charge.enterprise_id,
                history.c.effective_from <= served,
                or_(history.c.effective_until.is_(None), history.c.effective_until > served),
            ),
        )
        .where(Charge.kind == "service", Charge.status != "void", Charge.service_date >= since, Charge.service_date < until)
        .group_by(*keys)
        .order_by(*order)
    )
    # Through the connection: plain rows, without the ORM's per-row loading.
    async with hash_plans(session):
        rows = (await (await session.connection()).execute(grouped)).all()
    standing_ids = {row[1] for row in rows if row[1] is not None}
    standings: dict[int, StandingRow] = {}
    if standing_ids:
        for s in (await session.execute(
            select(EnterpriseStatus.id, EnterpriseStatus.effective_from, EnterpriseStatus.registered_in_district,
                   EnterpriseStatus.verified, EnterpriseStatus.tech_sme, EnterpriseStatus.hnte, EnterpriseStatus.tier,
                   EnterpriseStatus.controller).where(_among(session, EnterpriseStatus.id, standing_ids))
        )).all():
            standings[s[0]] = StandingRow(*s)
    late: list[int] = []
    for row in rows:
        if row[-1]:
            late.extend(row[-1] if postgresql else (int(i) for i in str(row[-1]).split(",")))
    money = await _money_from_rows(session, sorted(late), cutoff) if late else {}
    with paused_gc():
        return _merge(rows, standings, money, postgresql)


def _merge(rows: list, standings: dict[int, StandingRow], money: dict[int, tuple[int, int]],  # type: ignore[type-arg]
           postgresql: bool) -> ServiceCharges:
    """Rows in group order → groups (rows differing only in ``leaf`` are one group) and income;
    ``money`` holds the paid and refunded fen of the charges whose own sums did not tell."""
    groups: list[SubsidyGroup] = []
    income: dict[int, int] = {}
    previous = None
    for (enterprise_id, standing_id, unit_code, relation, resource_open, leaf, unit_id, count, first, last, paid, refunded,
         unknown_ids) in rows:
        paid, refunded = int(paid or 0), int(refunded or 0)
        if unknown_ids:
            for charge_id in (unknown_ids if postgresql else (int(i) for i in str(unknown_ids).split(","))):
                late_paid, late_refunded = money.get(charge_id, (0, 0))
                paid, refunded = paid + late_paid, refunded + late_refunded
        if relation is None and resource_open and leaf:
            income[unit_id] = income.get(unit_id, 0) + paid - refunded
        if isinstance(last, str):  # SQLite returns MAX() of a timestamp as text
            last = datetime.fromisoformat(last)
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        key = (enterprise_id, standing_id, unit_code, relation, bool(resource_open))
        if key == previous:
            g = groups[-1]
            groups[-1] = SubsidyGroup(
                enterprise_id, g.standing, unit_code, g.relation, g.resource_open, g.charges + int(count),
                min(g.first_charge_id, int(first)), max(g.last_service_at, last), g.paid_fen + paid, g.refunded_fen + refunded,
            )
            continue
        previous = key
        standing = standings.get(standing_id, NO_STANDING) if standing_id is not None else NO_STANDING
        groups.append(SubsidyGroup(
            enterprise_id, standing, unit_code, relation or "none", bool(resource_open), int(count), int(first), last, paid, refunded,
        ))
    return ServiceCharges(groups, income)


async def subsidy_groups(session: AsyncSession, period: Period, cutoff: datetime) -> list[SubsidyGroup]:
    return (await service_charges(session, period, cutoff)).groups


async def enterprises_by_id(session: AsyncSession, ids: set[int]) -> dict[int, EnterpriseRow]:
    if not ids:
        return {}
    rows = await session.execute(select(Enterprise.id, Enterprise.uscc, Enterprise.name).where(_among(session, Enterprise.id, ids)))
    return {r.id: EnterpriseRow(r.id, r.uscc, r.name) for r in rows}


async def unit_facts(session: AsyncSession, period: Period, cutoff: datetime,
                     income_by_unit: dict[int, int] | None = None) -> list[UnitRow]:
    """Per managing unit, over its open resources and services in the period.

    ``income_by_unit`` is ``ServiceCharges.income_by_unit`` when the caller has read the
    charges already; otherwise they are read here.
    """
    since, until = period_bounds(period.start, period.end)
    leaf = _leaf_resources()
    counts = (
        await session.execute(
            select(
                ManagingUnit.id, ManagingUnit.code, ManagingUnit.name_zh,
                func.count(Resource.id),
                func.coalesce(func.sum(case((Resource.open_for_sharing, 1), else_=0)), 0),
            )
            .outerjoin(Resource, and_(Resource.unit_id == ManagingUnit.id, leaf))
            .where(ManagingUnit.retired_at.is_(None))
            .group_by(ManagingUnit.id, ManagingUnit.code, ManagingUnit.name_zh)
            .order_by(ManagingUnit.code)
        )
    ).all()

    # Two steps: minutes per unit and enterprise, then per unit. Counting the distinct external
    # enterprises over the second step's few rows spares PostgreSQL sorting the whole year's
    # sessions for COUNT(DISTINCT); sums of sums are the same sums.
    minutes = minutes_between(session, UsageLog.started_at, UsageLog.ended_at)
    per_enterprise = (
        select(
            Resource.unit_id.label("unit_id"),
            UsageLog.enterprise_id.label("enterprise_id"),
            UnitRelation.relation.label("relation"),
            func.sum(minutes).label("minutes"),
        )
        .join(Resource, Resource.id == UsageLog.resource_id)
        .outerjoin(UnitRelation, and_(UnitRelation.enterprise_id == UsageLog.enterprise_id, UnitRelation.unit_id == Resource.unit_id))
        .where(Resource.open_for_sharing.is_(True), leaf, UsageLog.ended_at.is_not(None),
               UsageLog.started_at >= since, UsageLog.started_at < until, _current_versions())
        .group_by(Resource.unit_id, UsageLog.enterprise_id, UnitRelation.relation)
        .subquery("per_enterprise")
    )
    external = and_(per_enterprise.c.enterprise_id.is_not(None), per_enterprise.c.relation.is_(None))
    usage = (
        await session.execute(
            select(
                per_enterprise.c.unit_id,
                func.coalesce(func.sum(per_enterprise.c.minutes), 0),
                func.coalesce(func.sum(case((external, per_enterprise.c.minutes), else_=0)), 0),
                func.count(case((external, per_enterprise.c.enterprise_id), else_=None)),
            ).group_by(per_enterprise.c.unit_id)
        )
    ).all()
    by_unit_usage = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in usage}

    # Ratings of external services of the period: a booked service's start, or a walk-in
    # session's. Two joins by primary key, each only for its own ratings (one outer join to
    # both would read every booking and every session to find the few rated ones).
    booked = (
        select(Rating.id, Rating.resource_id, Rating.enterprise_id, Rating.stars)
        .join(Booking, Booking.id == Rating.booking_id)
        .where(Booking.starts_at >= since, Booking.starts_at < until)
    )
    walk_in = (
        select(Rating.id, Rating.resource_id, Rating.enterprise_id, Rating.stars)
        .join(UsageLog, UsageLog.id == Rating.usage_session_id)
        .where(Rating.booking_id.is_(None), UsageLog.started_at >= since, UsageLog.started_at < until)
    )
    rated = union_all(booked, walk_in).subquery("rated")
    ratings = (
        await session.execute(
            select(Resource.unit_id, func.coalesce(func.sum(rated.c.stars), 0), func.count(rated.c.id))
            .select_from(rated)
            .join(Resource, Resource.id == rated.c.resource_id)
            .where(Resource.open_for_sharing.is_(True), leaf, ~_related(rated.c.enterprise_id))
            .group_by(Resource.unit_id)
        )
    ).all()
    by_unit_ratings = {row[0]: (int(row[1]), int(row[2])) for row in ratings}

    by_unit_income = income_by_unit if income_by_unit is not None else (await service_charges(session, period, cutoff)).income_by_unit

    out = []
    for unit_id, code, name, total, open_count in counts:
        effective, external_minutes, served = by_unit_usage.get(unit_id, (0, 0, 0))
        stars, rated = by_unit_ratings.get(unit_id, (0, 0))
        out.append(
            UnitRow(
                unit_id=unit_id, unit_code=code, name=name, resources_total=int(total), resources_open=int(open_count),
                effective_minutes=effective, external_minutes=external_minutes, enterprises_served=served,
                rating_sum=stars, rating_count=rated, external_income_fen=by_unit_income.get(unit_id, 0),
            )
        )
    return out


__all__ = [
    "NO_STANDING",
    "EnterpriseRow",
    "StandingRow",
    "ServiceCharges",
    "SubsidyGroup",
    "UnitRow",
    "enterprises_by_id",
    "hash_plans",
    "local_date",
    "minutes_between",
    "paused_gc",
    "planner_settings",
    "service_charges",
    "subsidy_groups",
    "unit_facts",
]
