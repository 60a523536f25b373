"""What a settlement needs from the database, aggregated in SQL so a year of usage is one pass.

The subsidy's rate applies per charge, but the amount is rounded once per enterprise, so charges
that share an enterprise, a standing (the status version in force on their service date), a unit,
a relation and an open/closed resource can be summed before the rate is applied without changing a
single fen. ``subsidy_groups`` returns those sums; ``unit_facts`` returns each unit's figures for the
award. Both read payments and refunds as they stood at the settlement's cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Date, and_, case, cast, exists, func, or_, select
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
from facility_share.usage.services import current_versions


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


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name  # type: ignore[union-attr]


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


def _net_paid_subqueries(cutoff: datetime):  # type: ignore[no-untyped-def]
    paid = (
        select(Payment.charge_id, func.sum(Payment.amount_received_fen).label("fen"))
        .where(Payment.status == "succeeded", Payment.succeeded_at <= cutoff)
        .group_by(Payment.charge_id)
        .subquery("paid")
    )
    refunded = (
        select(Refund.charge_id, func.sum(Refund.amount_fen).label("fen"))
        .where(Refund.status == "succeeded", Refund.succeeded_at <= cutoff)
        .group_by(Refund.charge_id)
        .subquery("refunded")
    )
    return paid, refunded


def _leaf_resources():  # type: ignore[no-untyped-def]
    """Resources counted on their own: not retired, and not a workshop whose lines are booked."""
    child = aliased(Resource)
    has_lines = select(child.id).where(child.parent_id == Resource.id, child.retired_at.is_(None)).exists()
    return and_(Resource.retired_at.is_(None), ~has_lines)


def _related(enterprise_id: ColumnElement) -> ColumnElement:
    """The enterprise is internal or related to the resource's unit (NOT EXISTS of this is the
    planner-friendly anti-join: a LEFT JOIN … IS NULL on a column outside the join condition is
    estimated at one row, and the plans built on that estimate took minutes)."""
    return exists().where(UnitRelation.enterprise_id == enterprise_id, UnitRelation.unit_id == Resource.unit_id)


async def subsidy_groups(session: AsyncSession, period: Period, cutoff: datetime) -> list[SubsidyGroup]:
    since, until = period_bounds(period.start, period.end)
    paid, refunded = _net_paid_subqueries(cutoff)
    history = select(
        EnterpriseStatus.id,
        EnterpriseStatus.enterprise_id,
        EnterpriseStatus.effective_from,
        func.lead(EnterpriseStatus.effective_from)
        .over(partition_by=EnterpriseStatus.enterprise_id, order_by=(EnterpriseStatus.effective_from, EnterpriseStatus.id))
        .label("effective_until"),
    ).subquery("standing")
    service_day = local_date(session, Charge.service_date)
    per_charge = (
        select(
            Charge.id.label("charge_id"),
            Charge.enterprise_id,
            Charge.service_date,
            history.c.id.label("standing_id"),
            ManagingUnit.code.label("unit_code"),
            func.coalesce(UnitRelation.relation, "none").label("relation"),
            Resource.open_for_sharing.label("resource_open"),
            func.coalesce(paid.c.fen, 0).label("paid_fen"),
            func.coalesce(refunded.c.fen, 0).label("refunded_fen"),
        )
        .join(Resource, Resource.id == Charge.resource_id)
        .join(ManagingUnit, ManagingUnit.id == Resource.unit_id)
        .outerjoin(UnitRelation, and_(UnitRelation.enterprise_id == Charge.enterprise_id, UnitRelation.unit_id == Resource.unit_id))
        .outerjoin(
            history,
            and_(
                history.c.enterprise_id == Charge.enterprise_id,
                history.c.effective_from <= service_day,
                or_(history.c.effective_until.is_(None), history.c.effective_until > service_day),
            ),
        )
        .outerjoin(paid, paid.c.charge_id == Charge.id)
        .outerjoin(refunded, refunded.c.charge_id == Charge.id)
        .where(Charge.kind == "service", Charge.status != "void", Charge.service_date >= since, Charge.service_date < until)
        .subquery("per_charge")
    )
    grouped = (
        select(
            per_charge.c.enterprise_id,
            per_charge.c.standing_id,
            per_charge.c.unit_code,
            per_charge.c.relation,
            per_charge.c.resource_open,
            func.count().label("charges"),
            func.min(per_charge.c.charge_id).label("first_charge_id"),
            func.max(per_charge.c.service_date).label("last_service_at"),
            func.sum(per_charge.c.paid_fen).label("paid_fen"),
            func.sum(per_charge.c.refunded_fen).label("refunded_fen"),
        )
        .group_by(
            per_charge.c.enterprise_id, per_charge.c.standing_id, per_charge.c.unit_code,
            per_charge.c.relation, per_charge.c.resource_open,
        )
        .order_by(per_charge.c.enterprise_id, per_charge.c.standing_id, per_charge.c.unit_code,
                  per_charge.c.relation, per_charge.c.resource_open)
    )
    rows = (await session.execute(grouped)).all()
    standing_ids = {row.standing_id for row in rows if row.standing_id is not None}
    standings: dict[int, StandingRow] = {}
    if standing_ids:
        for s in (await session.execute(select(EnterpriseStatus).where(EnterpriseStatus.id.in_(standing_ids)))).scalars():
            standings[s.id] = StandingRow(s.id, s.effective_from, s.registered_in_district, s.verified, s.tech_sme, s.hnte, s.tier, s.controller)
    out = []
    for row in rows:
        last = row.last_service_at
        if isinstance(last, str):  # SQLite returns MAX() of a timestamp as text
            last = datetime.fromisoformat(last)
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        out.append(
            SubsidyGroup(
                enterprise_id=row.enterprise_id,
                standing=standings.get(row.standing_id, NO_STANDING) if row.standing_id is not None else NO_STANDING,
                unit_code=row.unit_code,
                relation=row.relation,
                resource_open=bool(row.resource_open),
                charges=int(row.charges),
                first_charge_id=int(row.first_charge_id),
                last_service_at=last,
                paid_fen=int(row.paid_fen or 0),
                refunded_fen=int(row.refunded_fen or 0),
            )
        )
    return out


async def enterprises_by_id(session: AsyncSession, ids: set[int]) -> dict[int, EnterpriseRow]:
    if not ids:
        return {}
    rows = await session.execute(select(Enterprise.id, Enterprise.uscc, Enterprise.name).where(Enterprise.id.in_(ids)))
    return {r.id: EnterpriseRow(r.id, r.uscc, r.name) for r in rows}


async def unit_facts(session: AsyncSession, period: Period, cutoff: datetime) -> list[UnitRow]:
    """Per managing unit, over its open resources and services in the period."""
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
               UsageLog.started_at >= since, UsageLog.started_at < until, current_versions())
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

    # Ratings of external services of the period: a booking's start, or a walk-in session's.
    session_log = aliased(UsageLog)
    served_at = func.coalesce(Booking.starts_at, session_log.started_at)
    ratings = (
        await session.execute(
            select(Resource.unit_id, func.coalesce(func.sum(Rating.stars), 0), func.count(Rating.id))
            .join(Resource, Resource.id == Rating.resource_id)
            .outerjoin(Booking, Booking.id == Rating.booking_id)
            .outerjoin(session_log, session_log.id == Rating.usage_session_id)
            .where(Resource.open_for_sharing.is_(True), leaf, ~_related(Rating.enterprise_id), served_at >= since, served_at < until)
            .group_by(Resource.unit_id)
        )
    ).all()
    by_unit_ratings = {row[0]: (int(row[1]), int(row[2])) for row in ratings}

    paid, refunded = _net_paid_subqueries(cutoff)
    income = (
        await session.execute(
            select(Resource.unit_id, func.coalesce(func.sum(func.coalesce(paid.c.fen, 0) - func.coalesce(refunded.c.fen, 0)), 0))
            .select_from(Charge)
            .join(Resource, Resource.id == Charge.resource_id)
            .outerjoin(paid, paid.c.charge_id == Charge.id)
            .outerjoin(refunded, refunded.c.charge_id == Charge.id)
            .where(Charge.kind == "service", Charge.status != "void", Resource.open_for_sharing.is_(True), leaf,
                   ~_related(Charge.enterprise_id), Charge.service_date >= since, Charge.service_date < until)
            .group_by(Resource.unit_id)
        )
    ).all()
    by_unit_income = {row[0]: int(row[1]) for row in income}

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
    "SubsidyGroup",
    "UnitRow",
    "enterprises_by_id",
    "local_date",
    "minutes_between",
    "subsidy_groups",
    "unit_facts",
]
