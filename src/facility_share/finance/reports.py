"""Usage reports for finance: the sharing figures of a period per unit, resource, enterprise and
month, with the subsidies and awards that approved settlements granted.

The figures mean what ``usage.figures`` means by them (the current version of each finished
session that started in the period; internal = the unit itself or no customer, related = the
unit's group, external = anyone else; income = charges that are not void, by service date;
utilisation = effective hours against rated hours prorated to the days), but every sum, count
and distinct count is computed by the database: a year of half a million sessions is a handful
of aggregate queries whose results are a few rows per resource and month, never the sessions.
Everything after the queries is integer arithmetic in Python, so SQLite and PostgreSQL give the
same report; hours come from exact minutes and rates are exact fractions, rounded only when
they are displayed or exported.

A period is ``2026``, ``2026-Q3``, ``2026-07`` or a range of local dates
``2026-07-01..2026-09-15`` (both days included), read by :func:`parse_report_period`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Integer, and_, case, cast, func, literal, null, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from facility_share.db.models import (
    Booking,
    Charge,
    Enterprise,
    ManagingUnit,
    PolicyVersion,
    Rating,
    Resource,
    Settlement,
    SettlementLine,
    UnitRelation,
    UsageLog,
)
from facility_share.errors import InvalidInput
from facility_share.finance.periods import Period, parse_period
from facility_share.usage.figures import DISTRICT_ZONE, period_bounds
from facility_share.usage.services import current_versions

VIEWS = ("unit", "resource", "enterprise", "month")
REPORT_WORK_MEM = "64MB"
MAX_RANGE_DAYS = 3660  # ten years and their leap days
_DAY = r"(\d{4}-\d{1,2}-\d{1,2})"
_RANGE = re.compile(rf"^{_DAY}\s*(?:\.\.|~|/|to)\s*{_DAY}$", re.IGNORECASE)
_SINGLE_DAY = re.compile(rf"^{_DAY}$")
# Session classes, as small integers so the database groups and compares numbers.
EXTERNAL, RELATED, INTERNAL = 0, 1, 2
# Steps of build_report, for progress bars.
STEPS = ("catalogue", "usage", "charges", "no-shows and ratings", "settlements", "enterprises")
Progress = Callable[[str], None]


# --- periods ---------------------------------------------------------------------------------------


def _day(raw: str, what: str) -> date:
    try:
        year, month, day = (int(part) for part in raw.split("-"))
        return date(year, month, day)
    except ValueError:
        raise InvalidInput(f"period: the {what} day {raw!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-07-01",
                           detail={"field": "period", "reason": "day"}) from None


def period_of_days(first: date, last: date) -> Period:
    """The period from ``first`` to ``last`` (both included), named as a year, quarter or month
    when it is exactly one, else as a range ``first..last``.

    Raises:
        InvalidInput: ``last`` before ``first``, a span over ten years, or days outside 2000–2100.
    """
    if last < first:
        raise InvalidInput(f"period: the last day {last.isoformat()} comes before the first day {first.isoformat()}",
                           detail={"field": "period", "reason": "order"})
    if not (2000 <= first.year <= 2100 and 2000 <= last.year <= 2100):
        raise InvalidInput("period: choose days between the years 2000 and 2100", detail={"field": "period", "reason": "year"})
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput("period: a report spans at most ten years", detail={"field": "period", "reason": "length"})
    end = last + timedelta(days=1)
    if first.day == 1 and end.day == 1:
        months = (end.year - first.year) * 12 + end.month - first.month
        if months == 12 and first.month == 1:
            return parse_period(str(first.year))
        if months == 3 and first.month % 3 == 1:
            return parse_period(f"{first.year}-Q{first.month // 3 + 1}")
        if months == 1:
            return parse_period(f"{first.year}-{first.month:02d}")
    return Period(first, end, f"{first.isoformat()}..{last.isoformat()}", "range")


def parse_report_period(text: str | None) -> Period:
    """Read a report period: a year ``2026``, a quarter ``2026-Q3``, a month ``2026-07``, a day
    ``2026-07-15`` or a range of days ``2026-07-01..2026-09-15`` (both included; ``~``, ``/``
    and ``to`` work as separators too). Periods are local dates in Asia/Shanghai.

    Raises:
        InvalidInput: the text is none of these, names a day, month or quarter that does not
            exist, ends before it starts, or spans more than ten years; ``detail["reason"]``
            says which.
    """
    raw = (text or "").strip()
    if not raw:
        raise InvalidInput("period: give a year (2026), a quarter (2026-Q3), a month (2026-07) or a range of days "
                           "(2026-07-01..2026-09-30)", detail={"field": "period", "reason": "missing"})
    if len(raw) <= 40:
        if match := _RANGE.match(raw):
            return period_of_days(_day(match.group(1), "first"), _day(match.group(2), "last"))
        if match := _SINGLE_DAY.match(raw):
            day = _day(match.group(1), "")
            return period_of_days(day, day)
        if re.fullmatch(r"\d{4}(?:-[Qq]\d|-\d{1,2})?", raw):
            year = int(raw[:4])
            if not 2000 <= year <= 2100:
                raise InvalidInput(f"period: the year must be between 2000 and 2100, got {year}",
                                   detail={"field": "period", "reason": "year"})
            if raw[5:6] in ("Q", "q") and not 1 <= int(raw[6]) <= 4:
                raise InvalidInput(f"period: a year has quarters Q1 to Q4, got {raw[5:]!r}",
                                   detail={"field": "period", "reason": "quarter"})
            if raw[5:6].isdigit() and not 1 <= int(raw[5:]) <= 12:
                raise InvalidInput(f"period: the month must be 01 to 12, got {raw[5:]!r}",
                                   detail={"field": "period", "reason": "month"})
            return parse_period(raw)
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    raise InvalidInput(f"period: {shown!r} is not a period; write a year (2026), a quarter (2026-Q3), a month (2026-07) "
                       "or a range of days (2026-07-01..2026-09-30)", detail={"field": "period", "reason": "format"})


def last_day(period: Period) -> date:
    return period.end - timedelta(days=1)


def period_months(period: Period) -> list[tuple[str, date, date]]:
    """The calendar months the period touches, as (``YYYY-MM``, first day, exclusive end),
    clipped to the period."""
    out = []
    cursor = date(period.start.year, period.start.month, 1)
    while cursor < period.end:
        following = date(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1)
        out.append((f"{cursor.year}-{cursor.month:02d}", max(cursor, period.start), min(following, period.end)))
        cursor = following
    return out


# --- report rows -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Measures:
    """Exact sums and counts behind one report row; hours and rates are derived, never stored."""

    sessions: int = 0
    effective_minutes: int = 0
    external_minutes: int = 0
    related_minutes: int = 0
    internal_minutes: int = 0
    # Σ rated hours per year × days of the period; the rated hours are this ÷ 365.
    rated_hour_days: int = 0
    enterprises_served: int = 0
    external_enterprises: int = 0
    income_fen: int = 0
    paid_income_fen: int = 0
    external_income_fen: int = 0
    no_shows: int = 0
    ratings: int = 0
    rating_sum: int = 0
    granted_fen: int = 0

    @property
    def sharing_rate(self) -> Fraction | None:
        """External ÷ effective minutes (None when nothing was used)."""
        return Fraction(self.external_minutes, self.effective_minutes) if self.effective_minutes else None

    @property
    def rated_hours(self) -> Fraction:
        return Fraction(self.rated_hour_days, 365)

    @property
    def utilisation(self) -> Fraction | None:
        """Effective hours ÷ rated hours of the period (None without rated hours)."""
        return Fraction(self.effective_minutes * 365, self.rated_hour_days * 60) if self.rated_hour_days else None

    @property
    def average_rating(self) -> Fraction | None:
        return Fraction(self.rating_sum, self.ratings) if self.ratings else None

    def add_usage(self, other: Measures) -> None:
        """Add the additive figures of ``other`` (not the distinct counts, which never add up)."""
        for name in ("sessions", "effective_minutes", "external_minutes", "related_minutes", "internal_minutes",
                     "rated_hour_days", "income_fen", "paid_income_fen", "external_income_fen", "no_shows", "ratings",
                     "rating_sum"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a view: ``key`` names it in JSON, ``label`` (an English message id) heads it
    in CSV, XLSX and on the page, ``kind`` says how to write it."""

    key: str
    label: str
    kind: str  # text | code | bool | class | count | hours | rated_hours | rate | rating | money


@dataclass(slots=True)
class Row:
    labels: dict[str, Any]
    measures: Measures = field(default_factory=Measures)

    def value(self, column: Column) -> Any:
        """The exact value of a column: text, int, bool, minutes (hours), fen (money) or a Fraction."""
        if column.key in self.labels:
            return self.labels[column.key]
        return getattr(self.measures, _MEASURE_OF.get(column.key, column.key))


_MEASURE_OF = {
    "effective_hours": "effective_minutes",
    "external_hours": "external_minutes",
    "related_hours": "related_minutes",
    "internal_hours": "internal_minutes",
    "income": "income_fen",
    "paid_income": "paid_income_fen",
    "external_income": "external_income_fen",
    "award_granted": "granted_fen",
    "subsidy_granted": "granted_fen",
}


def N_(message: str) -> str:
    """Marks a message id for the catalogue; it is translated where it is written."""
    return message


USAGE_COLUMNS = (
    Column("sessions", N_("Sessions"), "count"),
    Column("effective_hours", N_("Effective hours"), "hours"),
    Column("external_hours", N_("External hours"), "hours"),
    Column("related_hours", N_("Related hours"), "hours"),
    Column("internal_hours", N_("Internal hours"), "hours"),
    Column("sharing_rate", N_("Sharing rate"), "rate"),
    Column("rated_hours", N_("Rated hours"), "rated_hours"),
    Column("utilisation", N_("Utilisation"), "rate"),
    Column("enterprises_served", N_("Enterprises served"), "count"),
    Column("external_enterprises", N_("External enterprises"), "count"),
    Column("income", N_("Income"), "money"),
    Column("paid_income", N_("Paid income"), "money"),
    Column("external_income", N_("External income"), "money"),
    Column("no_shows", N_("No-shows"), "count"),
    Column("ratings", N_("Ratings"), "count"),
    Column("average_rating", N_("Average rating"), "rating"),
)
COLUMNS: dict[str, tuple[Column, ...]] = {
    "unit": (
        Column("unit_code", N_("Unit code"), "code"),
        Column("unit_name", N_("Managing unit"), "text"),
        Column("resources", N_("Resources"), "count"),
        Column("open_resources", N_("Open resources"), "count"),
        *USAGE_COLUMNS,
        Column("award_granted", N_("Award granted"), "money"),
    ),
    "resource": (
        Column("resource_code", N_("Resource code"), "code"),
        Column("resource_name", N_("Instrument or workshop"), "text"),
        Column("unit_code", N_("Unit code"), "code"),
        Column("open_for_sharing", N_("Open for sharing"), "bool"),
        *USAGE_COLUMNS,
    ),
    "enterprise": (
        Column("uscc", N_("USCC"), "code"),
        Column("enterprise_name", N_("Enterprise"), "text"),
        Column("enterprise_class", N_("Enterprise class"), "class"),
        Column("sessions", N_("Sessions"), "count"),
        Column("effective_hours", N_("Effective hours"), "hours"),
        Column("external_hours", N_("External hours"), "hours"),
        Column("related_hours", N_("Related hours"), "hours"),
        Column("internal_hours", N_("Internal hours"), "hours"),
        Column("resources_used", N_("Instruments used"), "count"),
        Column("units_used", N_("Units used"), "count"),
        Column("income", N_("Income"), "money"),
        Column("paid_income", N_("Paid income"), "money"),
        Column("no_shows", N_("No-shows"), "count"),
        Column("ratings", N_("Ratings"), "count"),
        Column("average_rating", N_("Average rating"), "rating"),
        Column("subsidy_granted", N_("Subsidy granted"), "money"),
    ),
    "month": (
        Column("month", N_("Month"), "code"),
        Column("unit_code", N_("Unit code"), "code"),
        Column("unit_name", N_("Managing unit"), "text"),
        Column("days", N_("Number of days"), "count"),
        *USAGE_COLUMNS,
    ),
}
VIEW_TITLES = {
    "unit": N_("By managing unit"),
    "resource": N_("By instrument or workshop"),
    "enterprise": N_("By enterprise"),
    "month": N_("By month"),
}


@dataclass(frozen=True, slots=True)
class View:
    name: str
    columns: tuple[Column, ...]
    rows: list[Row]


@dataclass(frozen=True, slots=True)
class SettlementRef:
    """An approved settlement whose period overlaps the report's: its lines are counted."""

    id: int
    label: str
    first_day: date
    last_day: date
    approved_at: datetime | None
    subsidy_fen: int
    award_fen: int


@dataclass(frozen=True, slots=True)
class CategoryTotal:
    """Lines of one kind and category (enterprise class or award grade) in the settlements
    counted, named as the settlements' policy versions name them (empty if they do not)."""

    kind: str
    category: str
    lines: int
    amount_fen: int
    name_zh: str = ""
    name_en: str = ""


@dataclass(frozen=True, slots=True)
class UsageReport:
    period: Period
    # The latest change among the records behind the report: equal data, equal stamp, so two
    # exports of the same data are the same bytes. The period's start when there is nothing.
    data_as_of: datetime
    views: dict[str, View]
    totals: Measures
    subsidy_total_fen: int
    award_total_fen: int
    settlements: tuple[SettlementRef, ...]
    categories: tuple[CategoryTotal, ...]

    def view(self, name: str) -> View:
        """One view by name.

        Raises:
            InvalidInput: an unknown view name.
        """
        if name not in self.views:
            raise InvalidInput(f"view: expected one of {', '.join(VIEWS)}, got {name!r}", detail={"field": "view", "reason": "view"})
        return self.views[name]

    def by_category(self, kind: str) -> list[CategoryTotal]:
        return [c for c in self.categories if c.kind == kind]


def check_view(name: str | None, *, default: str | None = None) -> str | None:
    """A view name, or ``default`` when none is given.

    Raises:
        InvalidInput: a name that is not unit, resource, enterprise or month.
    """
    if name is None or name == "":
        return default
    if name not in VIEWS:
        shown = name[:40]
        raise InvalidInput(f"view: expected one of {', '.join(VIEWS)}, got {shown!r}", detail={"field": "view", "reason": "view"})
    return name


def enterprise_class(tier: str, tech_sme: bool) -> str:
    """The class as the policies read it: the tier if any, else tech SME if flagged, else none."""
    if tier and tier != "none":
        return tier
    return "tech_sme" if tech_sme else ""


# --- queries ---------------------------------------------------------------------------------------


def _int(value: Any) -> int:
    # PostgreSQL sums integers as numeric (Decimal); SQLite as int.
    return int(value or 0)


def _stamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite answers MAX() of a timestamp as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _leaf_resources() -> ColumnElement[bool]:
    """Resources counted on their own, as the sharing figures count them: not retired, and not
    a workshop whose lines are booked (it is counted through its lines)."""
    child = aliased(Resource)
    has_lines = select(child.id).where(child.parent_id == Resource.id, child.retired_at.is_(None)).exists()
    return and_(Resource.retired_at.is_(None), ~has_lines)


def whole_minutes(session: AsyncSession, start: Any, end: Any) -> Any:
    """Whole minutes from ``start`` to ``end``, floored per session exactly as
    ``usage.figures`` floors them in Python (fractions of a second included)."""
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        # date_part gives the seconds as a double, EXTRACT (since PostgreSQL 14) as numeric,
        # whose arithmetic took a third of a year's aggregation. The double is exact enough:
        # a whole number of seconds is exact, and a session 1 µs short of a whole minute is
        # still well over the rounding error (about 1e-9 s at a few months' length) below it.
        return cast(func.floor(func.date_part("epoch", end - start) / 60), BigInteger)
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text: whole seconds and microseconds apart
    # (strftime('%s') would round the fraction; a shorter or missing fraction is padded), then
    # integer division, which floors here because the end always comes after the start.
    def micros(column: Any) -> Any:
        seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), Integer)
        fraction = cast(func.substr(func.substr(column, 21) + literal("000000"), 1, 6), Integer)
        return seconds * 1_000_000 + fraction

    return (micros(end) - micros(start)) // literal(60_000_000, Integer)


def _bucket(column: Any, months: list[tuple[str, date, date]]) -> Any:
    """The index of the period's month a UTC timestamp falls in (the WHERE clause keeps it in
    the period). Boundaries are computed here, so both databases bucket identically without
    any timezone arithmetic of their own."""
    if len(months) == 1:
        return literal(0, Integer)
    whens = [
        (column < datetime.combine(end, time(0), tzinfo=DISTRICT_ZONE).astimezone(UTC), index)
        for index, (_label, _start, end) in enumerate(months[:-1])
    ]
    return case(*whens, else_=len(months) - 1)


def _materialised(statement: Any, name: str) -> Any:
    """``statement`` as a CTE the database computes once, however many groupings read it
    (``MATERIALIZED`` is understood by PostgreSQL 12+ and SQLite 3.35+)."""
    return statement.cte(name).prefix_with("MATERIALIZED")


def _inline(statement: Any, name: str) -> Any:
    """``statement`` as a subquery each grouping scans itself: cheaper than writing it out when
    the groupings only sum (a hash aggregate streams straight from the scan)."""
    return statement.subquery(name)


Grouping = tuple[str, list[Any], list[Any], Any, Any]


async def _grouped(session: AsyncSession, groupings: list[Grouping]) -> dict[str, list[tuple[tuple[int, ...], list[int], datetime | None]]]:
    """Several GROUP BYs over one source in one statement (UNION ALL of aggregates).

    Each grouping is (name, key columns (at most two), integer aggregates, a timestamp
    aggregate or None, a filter or None); the answer maps each name to rows of
    (key, values, timestamp), with NULL sums read as 0.
    """
    width = max(len(aggregates) for _n, _k, aggregates, _t, _w in groupings)
    selects = []
    for tag, (_name, keys, aggregates, stamp, where) in enumerate(groupings):
        columns = [literal(tag, Integer).label("tag")]
        columns += [cast(keys[i], Integer) if i < len(keys) else cast(null(), Integer) for i in range(2)]
        columns += [cast(aggregates[i], BigInteger) if i < len(aggregates) else cast(null(), BigInteger) for i in range(width)]
        columns.append(stamp if stamp is not None else cast(null(), DateTimeUTC()))
        statement = select(*[column.label(f"c{i}") for i, column in enumerate(columns)])
        if where is not None:
            statement = statement.where(where)
        if keys:
            statement = statement.group_by(*keys)
        selects.append(statement)
    out: dict[str, list[tuple[tuple[int, ...], list[int], datetime | None]]] = {name: [] for name, *_rest in groupings}
    for row in (await session.execute(union_all(*selects))).all():
        name, keys, aggregates, _stamp_, _where = groupings[row[0]]
        if any(k is None for k in row[1:1 + len(keys)]):
            continue
        key = tuple(int(k) for k in row[1:1 + len(keys)])
        out[name].append((key, [_int(v) for v in row[3:3 + len(aggregates)]], _stamp(row[-1])))
    return out


async def _category_names(session: AsyncSession, settlement_ids: list[int]) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, category) → (Chinese, English) names of enterprise classes and award grades, read
    from the policy versions the settlements used (``subsidy.classes.<code>`` and
    ``award.grades[]``); later versions win where two name a code differently."""
    if not settlement_ids:
        return {}
    documents = (
        await session.execute(
            select(PolicyVersion.document)
            .where(PolicyVersion.id.in_(select(Settlement.policy_version_id).where(Settlement.id.in_(settlement_ids))))
            .order_by(PolicyVersion.effective_from, PolicyVersion.id)
        )
    ).scalars().all()
    names: dict[tuple[str, str], tuple[str, str]] = {}
    for document in documents:
        if not isinstance(document, dict):
            continue
        classes = (document.get("subsidy") or {}).get("classes") or {}
        if isinstance(classes, dict):
            for code, table in classes.items():
                if isinstance(table, dict):
                    names[("subsidy", str(code))] = (str(table.get("name_zh", "")), str(table.get("name_en", "")))
        grades = (document.get("award") or {}).get("grades") or []
        if isinstance(grades, list):
            for grade in grades:
                if isinstance(grade, dict) and grade.get("code"):
                    names[("award", str(grade["code"]))] = (str(grade.get("name_zh", "")), str(grade.get("name_en", "")))
    return names


async def build_report(session: AsyncSession, period: Period, *, progress: Progress | None = None) -> UsageReport:
    """The usage report of a period: every view, the platform totals and the settlements counted.

    ``progress`` is called with the name of each step (see ``STEPS``) as it starts.
    """
    tick = progress or (lambda _step: None)
    since, until = period_bounds(period.start, period.end)
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        # Counting distinct enterprises sorts the period's sessions several times; with the
        # default 4 MB each sort of a busy year spills to disk. For this transaction only.
        await session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
    months = period_months(period)
    stamps: list[datetime | None] = []

    # Catalogue: the units and the resources counted on their own.
    tick(STEPS[0])
    leaf = _leaf_resources()
    resources = (
        await session.execute(
            select(Resource.id, Resource.code, Resource.name_zh, Resource.name_en, Resource.unit_id, Resource.open_for_sharing,
                   Resource.rated_hours_per_year, Resource.updated_at)
            .where(leaf)
            .order_by(Resource.code)
        )
    ).all()
    units = {
        row.id: row
        for row in (
            await session.execute(
                select(ManagingUnit.id, ManagingUnit.code, ManagingUnit.name_zh, ManagingUnit.name_en, ManagingUnit.updated_at)
                .where(ManagingUnit.retired_at.is_(None))
            )
        ).all()
    }
    stamps += [r.updated_at for r in resources] + [u.updated_at for u in units.values()]
    resources = [r for r in resources if r.unit_id in units]

    # One row per session of the period, classified; every usage figure aggregates it. The
    # database reads the sessions once (a materialised CTE) and answers every grouping in the
    # same statement.
    minutes = whole_minutes(session, UsageLog.started_at, UsageLog.ended_at)
    session_class = case(
        (or_(UsageLog.enterprise_id.is_(None), UnitRelation.relation == "internal"), INTERNAL),
        (UnitRelation.relation == "related", RELATED),
        else_=EXTERNAL,
    )
    sessions = _materialised(
        select(
            UsageLog.resource_id.label("resource_id"),
            Resource.unit_id.label("unit_id"),
            UsageLog.enterprise_id.label("enterprise_id"),
            session_class.label("cls"),
            minutes.label("minutes"),
            _bucket(UsageLog.started_at, months).label("month"),
            UsageLog.recorded_at.label("recorded_at"),
        )
        .join(Resource, Resource.id == UsageLog.resource_id)
        .outerjoin(UnitRelation, and_(UnitRelation.enterprise_id == UsageLog.enterprise_id, UnitRelation.unit_id == Resource.unit_id))
        .where(leaf, UsageLog.ended_at.is_not(None), UsageLog.started_at >= since, UsageLog.started_at < until, current_versions()),
        "sessions",
    )
    s = sessions.c

    def by_class(cls: int) -> Any:
        return func.sum(case((s.cls == cls, s.minutes), else_=0))

    usage = [func.count(), func.sum(s.minutes), by_class(EXTERNAL), by_class(RELATED), by_class(INTERNAL)]

    # Distinct counts as two GROUP BYs (the distinct pairs, then their number): databases hash
    # a GROUP BY, where COUNT(DISTINCT …) sorts every session of the period once per count.
    def pairs(*keys: Any) -> Any:
        """Each enterprise once per ``keys``, with whether it was external there."""
        return (
            select(*keys, s.enterprise_id, func.max(case((s.cls == EXTERNAL, 1), else_=0)).label("external"))
            .where(s.enterprise_id.is_not(None))
            .group_by(*keys, s.enterprise_id)
            .subquery()
        )

    def served(*keys: Any) -> tuple[list[Any], list[Any]]:
        counted = pairs(*keys)
        return [counted.c[k.name] for k in keys], [func.count(), func.sum(counted.c.external)]

    def used(column: Any) -> tuple[Any, Any]:
        counted = select(s.enterprise_id, column).where(s.enterprise_id.is_not(None)).group_by(s.enterprise_id, column).subquery()
        return counted.c.enterprise_id, func.count()

    tick(STEPS[1])
    resources_used, units_used = used(s.resource_id), used(s.unit_id)
    answers = await _grouped(session, [
        ("cell", [s.resource_id, s.month], usage, func.max(s.recorded_at), None),
        ("resource", *served(s.resource_id), None, None),
        ("unit", *served(s.unit_id), None, None),
        ("unit-month", *served(s.unit_id, s.month), None, None),
        ("all", *served(), None, None),
        ("enterprise", [s.enterprise_id], usage, None, s.enterprise_id.is_not(None)),
        ("enterprise-resources", [resources_used[0]], [resources_used[1]], None, None),
        ("enterprise-units", [units_used[0]], [units_used[1]], None, None),
    ])
    cells: dict[tuple[int, int], Measures] = {}
    for (resource_id, month), values, recorded in answers["cell"]:
        count, total, external, related, internal = values
        cells[(resource_id, month)] = Measures(sessions=count, effective_minutes=total, external_minutes=external,
                                               related_minutes=related, internal_minutes=internal)
        stamps.append(recorded)
    served_by_resource = {key: (v[0], v[1]) for key, v, _stamp_ in answers["resource"]}
    served_by_unit = {key: (v[0], v[1]) for key, v, _stamp_ in answers["unit"]}
    served_by_unit_month = {key: (v[0], v[1]) for key, v, _stamp_ in answers["unit-month"]}
    served_in_all = next(((v[0], v[1]) for _key, v, _stamp_ in answers["all"]), (0, 0))
    by_enterprise: dict[int, Measures] = {}
    for (enterprise_id,), values, _recorded in answers["enterprise"]:
        count, total, external, related, internal = values
        by_enterprise[enterprise_id] = Measures(sessions=count, effective_minutes=total, external_minutes=external,
                                                related_minutes=related, internal_minutes=internal)
    instruments = {key[0]: values[0] for key, values, _stamp_ in answers["enterprise-resources"]}
    managing = {key[0]: values[0] for key, values, _stamp_ in answers["enterprise-units"]}

    def enterprise_measures(enterprise_id: int) -> Measures:
        return by_enterprise.setdefault(enterprise_id, Measures())

    def cell(resource_id: int, month: int) -> Measures:
        return cells.setdefault((resource_id, month), Measures())

    # Charges by service date: income (not void), paid net of refunds, and income from
    # customers neither internal nor related. A charge marked paid before payments were
    # recorded has no paid sum yet: its total was paid.
    tick(STEPS[2])
    charges = _inline(
        select(Charge.resource_id.label("resource_id"), Charge.enterprise_id.label("enterprise_id"),
               _bucket(Charge.service_date, months).label("month"), Charge.status, Charge.total_fen, Charge.paid_fen,
               Charge.refunded_fen, Charge.updated_at, UnitRelation.id.label("relation_id"))
        .join(Resource, Resource.id == Charge.resource_id)
        .outerjoin(UnitRelation, and_(UnitRelation.enterprise_id == Charge.enterprise_id, UnitRelation.unit_id == Resource.unit_id))
        .where(leaf, Charge.service_date >= since, Charge.service_date < until),
        "charges",
    )
    c = charges.c
    c_counted = c.status != "void"
    c_income = func.sum(case((c_counted, c.total_fen), else_=0))
    c_paid = func.sum(case(
        (c.status == "void", 0), (and_(c.status == "paid", c.paid_fen == 0), c.total_fen), else_=c.paid_fen - c.refunded_fen))
    c_external = func.sum(case((and_(c_counted, c.relation_id.is_(None)), c.total_fen), else_=0))
    answers = await _grouped(session, [
        ("cell", [c.resource_id, c.month], [c_income, c_paid, c_external], func.max(c.updated_at), None),
        ("enterprise", [c.enterprise_id], [c_income, c_paid], None, None),
    ])
    for (resource_id, month), (total, paid_sum, external_sum), changed in answers["cell"]:
        m = cell(resource_id, month)
        m.income_fen, m.paid_income_fen, m.external_income_fen = total, paid_sum, external_sum
        stamps.append(changed)
    for (enterprise_id,), (total, paid_sum), _changed in answers["enterprise"]:
        m = enterprise_measures(enterprise_id)
        m.income_fen, m.paid_income_fen = total, paid_sum

    # No-shows by the booked start; ratings by the service they rate (a booking's start, or
    # the walk-in session's), as the award reads them.
    tick(STEPS[3])
    no_shows = _inline(
        select(Booking.resource_id.label("resource_id"), Booking.enterprise_id.label("enterprise_id"),
               _bucket(Booking.starts_at, months).label("month"), Booking.updated_at.label("changed"))
        .join(Resource, Resource.id == Booking.resource_id)
        .where(leaf, Booking.status == "no_show", Booking.starts_at >= since, Booking.starts_at < until),
        "no_shows",
    )
    n = no_shows.c
    answers = await _grouped(session, [
        ("cell", [n.resource_id, n.month], [func.count()], func.max(n.changed), None),
        ("enterprise", [n.enterprise_id], [func.count()], None, None),
    ])
    for (resource_id, month), (count,), changed in answers["cell"]:
        cell(resource_id, month).no_shows = count
        stamps.append(changed)
    for (enterprise_id,), (count,), _changed in answers["enterprise"]:
        enterprise_measures(enterprise_id).no_shows = count

    session_log = aliased(UsageLog)
    served_at = func.coalesce(Booking.starts_at, session_log.started_at)
    ratings = _inline(
        select(Rating.resource_id.label("resource_id"), Rating.enterprise_id.label("enterprise_id"),
               _bucket(served_at, months).label("month"), Rating.stars.label("stars"), Rating.created_at.label("created"))
        .join(Resource, Resource.id == Rating.resource_id)
        .outerjoin(Booking, Booking.id == Rating.booking_id)
        .outerjoin(session_log, session_log.id == Rating.usage_session_id)
        .where(leaf, served_at >= since, served_at < until),
        "ratings",
    )
    r = ratings.c
    answers = await _grouped(session, [
        ("cell", [r.resource_id, r.month], [func.count(), func.sum(r.stars)], func.max(r.created), None),
        ("enterprise", [r.enterprise_id], [func.count(), func.sum(r.stars)], None, None),
    ])
    for (resource_id, month), (count, stars), created in answers["cell"]:
        m = cell(resource_id, month)
        m.ratings, m.rating_sum = count, stars
        stamps.append(created)
    for (enterprise_id,), (count, stars), _created in answers["enterprise"]:
        m = enterprise_measures(enterprise_id)
        m.ratings, m.rating_sum = count, stars

    # Approved settlements whose period overlaps the report's.
    tick(STEPS[4])
    overlapping = and_(Settlement.status == "approved", Settlement.period_start < period.end, Settlement.period_end > period.start)
    settlements = tuple(
        SettlementRef(row.id, row.period_label, row.period_start, row.period_end - timedelta(days=1), _stamp(row.approved_at),
                      _int(row.subsidy_total_fen), _int(row.award_total_fen))
        for row in (
            await session.execute(
                select(Settlement.id, Settlement.period_label, Settlement.period_start, Settlement.period_end, Settlement.approved_at,
                       Settlement.subsidy_total_fen, Settlement.award_total_fen)
                .where(overlapping)
                .order_by(Settlement.period_start, Settlement.period_end, Settlement.id)
            )
        ).all()
    )
    stamps += [ref.approved_at for ref in settlements]
    granted: dict[tuple[str, int], int] = {}
    for kind, subject_id, amount in (
        await session.execute(
            select(SettlementLine.kind, SettlementLine.subject_id, func.sum(SettlementLine.amount_fen))
            .join(Settlement, Settlement.id == SettlementLine.settlement_id)
            .where(overlapping)
            .group_by(SettlementLine.kind, SettlementLine.subject_id)
        )
    ).all():
        granted[(kind, subject_id)] = _int(amount)
    names = await _category_names(session, [ref.id for ref in settlements])
    categories = tuple(
        CategoryTotal(kind, category or "", _int(lines), _int(amount), *names.get((kind, category or ""), ("", "")))
        for kind, category, lines, amount in (
            await session.execute(
                select(SettlementLine.kind, SettlementLine.category, func.count(), func.sum(SettlementLine.amount_fen))
                .join(Settlement, Settlement.id == SettlementLine.settlement_id)
                .where(overlapping)
                .group_by(SettlementLine.kind, SettlementLine.category)
                .order_by(SettlementLine.kind, SettlementLine.category)
            )
        ).all()
    )
    for (kind, subject_id), amount in granted.items():
        if kind == "subsidy":
            enterprise_measures(subject_id).granted_fen = amount

    # Assemble the views.
    tick(STEPS[5])
    days = period.days
    resource_rows: list[Row] = []
    unit_rows: dict[int, Row] = {}
    month_rows: dict[tuple[int, int], Row] = {}
    unit_resources: dict[int, list[Any]] = {}
    for res in resources:
        unit_resources.setdefault(res.unit_id, []).append(res)
    for unit_id in sorted(units, key=lambda i: units[i].code):
        if unit_id not in unit_resources and ("award", unit_id) not in granted:
            continue
        unit = units[unit_id]
        members = unit_resources.get(unit_id, [])
        unit_rows[unit_id] = Row({"unit_code": unit.code, "unit_name": unit.name_zh, "unit_name_en": unit.name_en,
                                  "resources": len(members), "open_resources": sum(1 for m in members if m.open_for_sharing)})
        for index, (label, first, end) in enumerate(months):
            month_rows[(unit_id, index)] = Row({"month": label, "unit_code": unit.code, "unit_name": unit.name_zh,
                                                "unit_name_en": unit.name_en, "days": (end - first).days})
    for res in sorted(resources, key=lambda x: (units[x.unit_id].code, x.code)):
        row = Row({"resource_code": res.code, "resource_name": res.name_zh, "resource_name_en": res.name_en,
                   "unit_code": units[res.unit_id].code, "open_for_sharing": bool(res.open_for_sharing)})
        row.measures.rated_hour_days = res.rated_hours_per_year * days
        for index, (_label, first, end) in enumerate(months):
            m = cells.get((res.id, index))
            month_row = month_rows[(res.unit_id, index)]
            month_row.measures.rated_hour_days += res.rated_hours_per_year * (end - first).days
            if m is not None:
                row.measures.add_usage(m)
                month_row.measures.add_usage(m)
        row.measures.enterprises_served, row.measures.external_enterprises = served_by_resource.get((res.id,), (0, 0))
        unit_rows[res.unit_id].measures.add_usage(row.measures)
        resource_rows.append(row)
    for unit_id, row in unit_rows.items():
        row.measures.enterprises_served, row.measures.external_enterprises = served_by_unit.get((unit_id,), (0, 0))
        row.measures.granted_fen = granted.get(("award", unit_id), 0)
    for (unit_id, index), row in month_rows.items():
        row.measures.enterprises_served, row.measures.external_enterprises = served_by_unit_month.get((unit_id, index), (0, 0))

    enterprise_rows: list[Row] = []
    ids = sorted(by_enterprise)
    info: dict[int, Any] = {}
    for chunk in range(0, len(ids), 1000):
        for e in (
            await session.execute(
                select(Enterprise.id, Enterprise.uscc, Enterprise.name, Enterprise.name_en, Enterprise.tier, Enterprise.tech_sme,
                       Enterprise.updated_at)
                .where(Enterprise.id.in_(ids[chunk:chunk + 1000]))
            )
        ).all():
            info[e.id] = e
            stamps.append(e.updated_at)
    for enterprise_id in sorted(info, key=lambda i: info[i].uscc):
        e = info[enterprise_id]
        row = Row({"uscc": e.uscc, "enterprise_name": e.name, "enterprise_name_en": e.name_en,
                   "enterprise_class": enterprise_class(e.tier, e.tech_sme)}, by_enterprise[enterprise_id])
        row.labels["resources_used"], row.labels["units_used"] = instruments.get(enterprise_id, 0), managing.get(enterprise_id, 0)
        enterprise_rows.append(row)

    totals = Measures()
    for row in unit_rows.values():
        totals.add_usage(row.measures)
    totals.enterprises_served, totals.external_enterprises = served_in_all
    subsidy_total = sum(amount for (kind, _id), amount in granted.items() if kind == "subsidy")
    award_total = sum(amount for (kind, _id), amount in granted.items() if kind == "award")
    known = [stamp for stamp in (_stamp(x) for x in stamps) if stamp is not None]
    as_of = max(known) if known else datetime.combine(period.start, time(0), tzinfo=DISTRICT_ZONE).astimezone(UTC)
    views = {
        "unit": View("unit", COLUMNS["unit"], list(unit_rows.values())),
        "resource": View("resource", COLUMNS["resource"], resource_rows),
        "enterprise": View("enterprise", COLUMNS["enterprise"], enterprise_rows),
        "month": View("month", COLUMNS["month"], [month_rows[key] for key in sorted(month_rows, key=lambda k: (units[k[0]].code, k[1]))]),
    }
    return UsageReport(period, as_of.astimezone(UTC).replace(microsecond=0), views, totals, subsidy_total, award_total,
                       settlements, categories)


def monthly_totals(report: UsageReport) -> list[tuple[str, Measures]]:
    """The month view summed over units: one (``YYYY-MM``, measures) per month, in order."""
    out: dict[str, Measures] = {}
    for row in report.views["month"].rows:
        out.setdefault(row.labels["month"], Measures()).add_usage(row.measures)
    return list(out.items())


__all__ = [
    "COLUMNS",
    "STEPS",
    "VIEWS",
    "VIEW_TITLES",
    "CategoryTotal",
    "Column",
    "Measures",
    "Row",
    "SettlementRef",
    "UsageReport",
    "View",
    "build_report",
    "check_view",
    "enterprise_class",
    "last_day",
    "monthly_totals",
    "parse_report_period",
    "period_months",
    "period_of_days",
    "whole_minutes",
]
