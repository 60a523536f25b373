"""Sharing figures per resource and per unit for any period: the one place they are computed.

Effective hours are the current versions of finished sessions that started in the period.
Each session counts as *internal* (the unit itself, or no customer: the unit's own use),
*related* (an enterprise of the unit's group) or *external* (anyone else); the sharing rate
is external ÷ effective hours. Income is the sum of charges that are not void, by service
date; paid income only what has been paid. Utilisation is effective hours against the rated
hours prorated to the period's days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.db.models import Booking, Charge, ManagingUnit, Rating, Resource, UnitRelation, UsageLog
from facility_share.errors import InvalidInput
from facility_share.usage.services import current_versions

DISTRICT_ZONE = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True, slots=True)
class SessionRow:
    resource_id: int
    enterprise_id: int | None
    relation: str | None  # internal | related | None
    minutes: int


@dataclass
class Figures:
    effective_hours: float = 0.0
    external_hours: float = 0.0
    related_hours: float = 0.0
    internal_hours: float = 0.0
    enterprises_served: int = 0
    external_enterprises: int = 0
    sessions: int = 0
    no_shows: int = 0
    income_fen: int = 0
    paid_income_fen: int = 0
    external_income_fen: int = 0
    ratings: int = 0
    average_rating: float | None = None
    rated_hours: float = 0.0
    utilisation: float | None = None
    # Exact minutes behind the rounded hours: rates are computed from these.
    effective_minutes: int = 0
    external_minutes: int = 0

    @property
    def sharing_rate(self) -> float | None:
        return self.external_minutes / self.effective_minutes if self.effective_minutes else None


@dataclass
class ResourceFigures:
    code: str
    name_zh: str
    name_en: str
    unit_code: str
    open_for_sharing: bool
    figures: Figures = field(default_factory=Figures)


@dataclass
class UnitFigures:
    code: str
    name_zh: str
    name_en: str
    resources: int = 0
    open_resources: int = 0
    figures: Figures = field(default_factory=Figures)


@dataclass
class Report:
    start: date
    end: date  # exclusive
    resources: list[ResourceFigures]
    units: list[UnitFigures]


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """Local (district) dates [start, end) as UTC instants."""
    if end <= start:
        raise InvalidInput("end: the period must end after it starts")
    if (end - start).days > 3700:
        raise InvalidInput("end: a period spans at most ten years")
    return (
        datetime.combine(start, time(0), tzinfo=DISTRICT_ZONE).astimezone(UTC),
        datetime.combine(end, time(0), tzinfo=DISTRICT_ZONE).astimezone(UTC),
    )


def _hours(minutes: int) -> float:
    return round(minutes / 60, 2)


def aggregate(sessions: Iterable[SessionRow], *, rated_hours: float) -> Figures:
    """The figures of a set of sessions (pure; income, no-shows and ratings are added by the caller)."""
    f = Figures()
    external: set[int] = set()
    served: set[int] = set()
    minutes = {"effective": 0, "external": 0, "related": 0, "internal": 0}
    for s in sessions:
        f.sessions += 1
        minutes["effective"] += s.minutes
        if s.enterprise_id is None or s.relation == "internal":
            minutes["internal"] += s.minutes
        elif s.relation == "related":
            minutes["related"] += s.minutes
        else:
            minutes["external"] += s.minutes
            external.add(s.enterprise_id)
        if s.enterprise_id is not None:
            served.add(s.enterprise_id)
    f.effective_hours, f.external_hours = _hours(minutes["effective"]), _hours(minutes["external"])
    f.related_hours, f.internal_hours = _hours(minutes["related"]), _hours(minutes["internal"])
    f.effective_minutes, f.external_minutes = minutes["effective"], minutes["external"]
    f.enterprises_served, f.external_enterprises = len(served), len(external)
    f.rated_hours = round(rated_hours, 2)
    f.utilisation = round(minutes["effective"] / 60 / rated_hours, 4) if rated_hours else None
    return f


async def sharing_figures(session: AsyncSession, start: date, end: date, *, unit_ids: Iterable[int] | None = None) -> Report:
    """Figures per resource and per unit for local dates [start, end)."""
    since, until = period_bounds(start, end)
    days = (end - start).days
    resource_query = (
        select(Resource, ManagingUnit)
        .join(ManagingUnit, Resource.unit_id == ManagingUnit.id)
        .where(Resource.retired_at.is_(None))
        .order_by(ManagingUnit.code, Resource.code)
    )
    if unit_ids is not None:
        resource_query = resource_query.where(Resource.unit_id.in_(list(unit_ids)))
    everything = (await session.execute(resource_query)).all()
    # A workshop booked by its lines is counted through the lines.
    parents = {r.parent_id for r, _u in everything if r.parent_id is not None}
    resources = [(r, u) for r, u in everything if r.id not in parents]
    ids = [r.id for r, _u in resources]

    rows = (
        await session.execute(
            select(UsageLog.resource_id, UsageLog.enterprise_id, UnitRelation.relation, UsageLog.started_at, UsageLog.ended_at)
            .join(Resource, UsageLog.resource_id == Resource.id)
            .outerjoin(UnitRelation, and_(UnitRelation.enterprise_id == UsageLog.enterprise_id, UnitRelation.unit_id == Resource.unit_id))
            .where(UsageLog.resource_id.in_(ids), UsageLog.ended_at.is_not(None), UsageLog.started_at >= since,
                   UsageLog.started_at < until, current_versions())
        )
    ).all()
    by_resource: dict[int, list[SessionRow]] = defaultdict(list)
    for resource_id, enterprise_id, relation, started, ended in rows:
        by_resource[resource_id].append(SessionRow(resource_id, enterprise_id, relation, int((ended - started).total_seconds() // 60)))

    charges = (
        await session.execute(
            select(Charge.resource_id, Charge.enterprise_id, Charge.status, Charge.total_fen, UnitRelation.relation)
            .join(Resource, Charge.resource_id == Resource.id)
            .outerjoin(UnitRelation, and_(UnitRelation.enterprise_id == Charge.enterprise_id, UnitRelation.unit_id == Resource.unit_id))
            .where(Charge.resource_id.in_(ids), Charge.status != "void", Charge.service_date >= since, Charge.service_date < until)
        )
    ).all()
    no_shows = (
        await session.execute(
            select(Booking.resource_id).where(Booking.resource_id.in_(ids), Booking.status == "no_show",
                                               Booking.starts_at >= since, Booking.starts_at < until)
        )
    ).scalars().all()
    ratings = (
        await session.execute(
            select(Rating.resource_id, Rating.stars).join(Booking, Rating.booking_id == Booking.id)
            .where(Rating.resource_id.in_(ids), Booking.starts_at >= since, Booking.starts_at < until)
        )
    ).all()

    resource_out: list[ResourceFigures] = []
    unit_sessions: dict[int, list[SessionRow]] = defaultdict(list)
    unit_rows: dict[int, UnitFigures] = {}
    unit_rated: dict[int, float] = defaultdict(float)
    for resource, unit in resources:
        rated = resource.rated_hours_per_year * days / 365
        figures = aggregate(by_resource.get(resource.id, []), rated_hours=rated)
        resource_out.append(ResourceFigures(resource.code, resource.name_zh, resource.name_en, unit.code, resource.open_for_sharing, figures))
        uf = unit_rows.setdefault(unit.id, UnitFigures(unit.code, unit.name_zh, unit.name_en))
        uf.resources += 1
        uf.open_resources += int(resource.open_for_sharing)
        unit_sessions[unit.id].extend(by_resource.get(resource.id, []))
        unit_rated[unit.id] += rated
    for unit_id, uf in unit_rows.items():
        uf.figures = aggregate(unit_sessions[unit_id], rated_hours=unit_rated[unit_id])

    by_id = {resource.id: (rf, unit.id) for (resource, unit), rf in zip(resources, resource_out, strict=True)}
    stars: dict[int, list[int]] = defaultdict(list)
    unit_stars: dict[int, list[int]] = defaultdict(list)
    for resource_id, enterprise_id, status, amount, relation in charges:
        rf, unit_id = by_id[resource_id]
        for f in (rf.figures, unit_rows[unit_id].figures):
            f.income_fen += amount
            if status == "paid":
                f.paid_income_fen += amount
            if enterprise_id is not None and relation is None:
                f.external_income_fen += amount
    for resource_id in no_shows:
        rf, unit_id = by_id[resource_id]
        rf.figures.no_shows += 1
        unit_rows[unit_id].figures.no_shows += 1
    for resource_id, value in ratings:
        rf, unit_id = by_id[resource_id]
        stars[resource_id].append(value)
        unit_stars[unit_id].append(value)
    for resource_id, values in stars.items():
        f = by_id[resource_id][0].figures
        f.ratings, f.average_rating = len(values), round(sum(values) / len(values), 2)
    for unit_id, values in unit_stars.items():
        f = unit_rows[unit_id].figures
        f.ratings, f.average_rating = len(values), round(sum(values) / len(values), 2)
    return Report(start, end, resource_out, list(unit_rows.values()))


