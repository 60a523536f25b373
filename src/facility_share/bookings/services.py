"""Booking operations around the pure core: request, decide, cancel, expire, and reads.

The capacity invariant (DESIGN.md, invariant 1) is kept here: a request is checked and
inserted inside one transaction that first serialises on the resource — a row lock on
PostgreSQL (``SELECT … FOR UPDATE``), the database-wide write lock on SQLite (write sessions
begin with ``BEGIN IMMEDIATE``). Two requests for one resource therefore never check
capacity at the same time, however many arrive. On PostgreSQL, capacity-1 resources also
carry an exclusion constraint; its violation becomes a 409 Conflict.

Callers own the transaction: these functions flush, the handler or command commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import String, and_, bindparam, cast, exists, func, insert, literal_column, null, or_, select, union_all, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, make_transient_to_detached, selectinload

from facility_share import audit, notifications
from facility_share.jobs import queue as jobs_queue
from facility_share.accounts.principal import Principal
from facility_share.accounts.services import qualified_until
from facility_share.billing.pricing import FeeRule, customer_class
from facility_share.bookings import availability as av
from facility_share.bookings.lifecycle import BookingState, decision_deadline, next_status
from facility_share.bookings.rules import BookingRules, Context, Request, check_request
from facility_share.db.models import (
    ACTIVE_STATUSES,
    AuditEvent,
    Booking,
    Closure,
    Enterprise,
    FeeItem,
    Job,
    ManagingUnit,
    Resource,
    UnitRelation,
    utcnow,
)
from facility_share.errors import Conflict, Forbidden, InvalidInput, NotFound

AUDITED = ("status", "starts_at", "ends_at", "quantity", "mode", "decision_reason", "version")


# --- from rows to the pure core's records ------------------------------------------------------


def calendar_of(resource: Resource, closures: Sequence[Closure]) -> av.ResourceCalendar:
    return av.ResourceCalendar(
        timezone=resource.timezone,
        capacity=resource.capacity,
        weekly=tuple(av.WeeklyHours(h.weekday, h.opens, h.closes) for h in resource.opening_hours),
        working_calendar=resource.working_calendar,
        booking_unit=resource.booking_unit,
        slot_minutes=resource.slot_minutes,
        shifts=tuple(
            av.ShiftTimes(s["code"], *_shift_times(s["hours"])) for s in (resource.shifts or [])
        ),
        closures=tuple(av.Interval(c.starts_at, c.ends_at) for c in closures),
    )


def _shift_times(hours: str):  # type: ignore[no-untyped-def]
    from facility_share.catalog.records import parse_interval

    return parse_interval(hours)


def rules_of(resource: Resource) -> BookingRules:
    return BookingRules(
        min_minutes=resource.min_minutes,
        max_minutes=resource.max_minutes,
        lead_minutes=resource.lead_minutes,
        horizon_days=resource.horizon_days,
        self_operation_allowed=resource.self_operation_allowed,
        qualification_required=resource.qualification_required,
        approval_required=resource.approval_required,
        cancellation_hours=resource.cancellation_hours,
    )


def fee_rules_of(items: Sequence[FeeItem]) -> list[FeeRule]:
    return [
        FeeRule(i.basis, i.label_zh, i.label_en, i.internal_fen, i.district_fen, i.external_fen, i.unit_minutes, i.minimum_units,
                period=i.period, rounding=i.rounding)
        for i in items
    ]


async def load_resource(session: AsyncSession, code: str) -> Resource:
    """A current resource with opening hours and fees loaded. Raises NotFound."""
    # One round trip: the few opening-hours and fee rows come joined.
    resource = (
        (
            await session.execute(
                select(Resource)
                .where(Resource.code == code, Resource.retired_at.is_(None))
                .options(joinedload(Resource.opening_hours), joinedload(Resource.fee_items), joinedload(Resource.unit))
            )
        )
        .unique()
        .scalar_one_or_none()
    )
    if resource is None:
        raise NotFound(f"no resource with code {code!r}")
    return resource


async def closures_in(session: AsyncSession, resource: Resource, start: datetime, end: datetime) -> list[Closure]:
    # A line is closed whenever its workshop is.
    ids = [resource.id] + ([resource.parent_id] if resource.parent_id else [])
    return list(
        (
            await session.execute(
                select(Closure).where(Closure.resource_id.in_(ids), Closure.starts_at < end, Closure.ends_at > start)
            )
        ).scalars()
    )


async def active_loads(
    session: AsyncSession, resource_id: int, start: datetime, end: datetime, *, exclude_id: int | None = None
) -> list[av.Load]:
    """Active bookings overlapping [start, end).

    ``starts_at >= start - MAX_BOOKING`` bounds the index range scan, so the cost does not grow
    with the resource's history.
    """
    conditions = [
        Booking.resource_id == resource_id,
        Booking.starts_at >= start - av.MAX_BOOKING,
        Booking.starts_at < end,
        Booking.ends_at > start,
        Booking.status.in_(ACTIVE_STATUSES),
    ]
    if exclude_id is not None:
        conditions.append(Booking.id != exclude_id)
    rows = await session.execute(select(Booking.starts_at, Booking.ends_at, Booking.quantity).where(*conditions))
    return [av.Load(s, e, q) for s, e, q in rows]


# --- availability ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Availability:
    resource_code: str
    timezone: str
    capacity: int
    booking_unit: str
    start: datetime
    end: datetime
    open: list[av.Interval]
    free: list[av.Interval]
    busy: list[av.Interval]
    units: list[av.Unit]


MAX_AVAILABILITY_WINDOW = timedelta(days=62)


EARLIEST_YEAR, LATEST_YEAR = 2000, 2100


def check_bounds(start: datetime, end: datetime) -> None:
    """Times a booking system can mean: aware, and within this century (date arithmetic
    near year 1 or 9999 would overflow)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start/end: give times with a timezone, e.g. 2026-12-01T00:00:00+08:00 or …Z")
    for name, value in (("start", start), ("end", end)):
        if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
            raise InvalidInput(f"{name}: give a time between the years {EARLIEST_YEAR} and {LATEST_YEAR}")


def check_window(start: datetime, end: datetime) -> None:
    check_bounds(start, end)
    if end <= start:
        raise InvalidInput("end: must be after start")
    if end - start > MAX_AVAILABILITY_WINDOW:
        raise InvalidInput(f"end: the window may span at most {MAX_AVAILABILITY_WINDOW.days} days")


async def availability(session: AsyncSession, code: str, start: datetime, end: datetime) -> Availability:
    """Free and busy time and bookable units of one resource (public: no customer data)."""
    check_window(start, end)
    resource = await load_resource(session, code)
    calendar = calendar_of(resource, await closures_in(session, resource, start, end))
    loads = await active_loads(session, resource.id, start, end)
    free, busy = av.free_and_busy(calendar, loads, start, end)
    return Availability(
        resource_code=resource.code,
        timezone=resource.timezone,
        capacity=resource.capacity,
        booking_unit=resource.booking_unit,
        start=start,
        end=end,
        open=av.open_intervals(calendar, start, end),
        free=free,
        busy=busy,
        units=av.bookable_units(calendar, loads, start, end),
    )


async def free_resources(session: AsyncSession, candidates: Sequence[Resource], start: datetime, end: datetime, quantity: int = 1) -> list[Resource]:
    """Which of ``candidates`` can take a booking for all of [start, end) right now."""
    check_window(start, end)
    found = []
    span = av.Interval(start, end)
    for resource in candidates:
        if resource.kind == "workshop" and await _has_lines(session, resource.id):
            continue
        calendar = calendar_of(resource, await closures_in(session, resource, start, end))
        if av.is_bookable_span(calendar, span) is not None:
            continue
        loads = await active_loads(session, resource.id, start, end)
        if resource.capacity - av.peak_load(loads, span) >= quantity:
            found.append(resource)
    return found


async def _has_lines(session: AsyncSession, resource_id: int) -> bool:
    return (
        await session.execute(select(Resource.id).where(Resource.parent_id == resource_id, Resource.retired_at.is_(None)).limit(1))
    ).first() is not None


# --- requesting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookingInput:
    resource_code: str
    start: datetime
    end: datetime
    quantity: int = 1
    mode: str = "staff_operated"
    purpose: str = ""
    samples: int = 0


async def lock_resource(session: AsyncSession, resource_id: int) -> None:
    """Serialise booking transactions of one resource (see module docstring)."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(Resource.id).where(Resource.id == resource_id).with_for_update())
    # SQLite: the write session already holds the database's write lock (BEGIN IMMEDIATE).


async def relation_to_unit(session: AsyncSession, enterprise_id: int, unit_id: int) -> str | None:
    return (
        await session.execute(
            select(UnitRelation.relation).where(UnitRelation.enterprise_id == enterprise_id, UnitRelation.unit_id == unit_id)
        )
    ).scalar_one_or_none()


def count_units(calendar: av.ResourceCalendar, span: av.Interval) -> int:
    margin = timedelta(days=1)
    return sum(1 for unit, _ in av.candidate_units(calendar, span.start - margin, span.end + margin) if span.contains(unit))


async def estimate(session: AsyncSession, resource: Resource, calendar: av.ResourceCalendar, enterprise: Enterprise,
                   span: av.Interval, samples: int, quantity: int) -> tuple[str, int]:
    """The customer class and the estimated fee of a booking by ``enterprise``."""
    relation = await relation_to_unit(session, enterprise.id, resource.unit_id)
    return price_estimate(resource, calendar, enterprise, relation, span, samples, quantity)


def price_estimate(resource: Resource, calendar: av.ResourceCalendar, enterprise: Enterprise, relation: str | None,
                   span: av.Interval, samples: int, quantity: int) -> tuple[str, int]:
    """The customer class and the estimated fee, given the enterprise's relation to the unit.

    It is the charge that usage exactly as booked would get: the same pricing function.
    """
    from facility_share.usage.charging import parse_peak_hours

    klass = customer_class(relation, enterprise.registered_in_district)
    return klass, _estimate_fen(fee_rules_of(resource.fee_items), parse_peak_hours(resource.peak_hours or []), calendar, klass,
                                span, samples, quantity)


def _estimate_fen(fee_rules: Sequence[FeeRule], peak_hours: Sequence[tuple[int, time, time]], calendar: av.ResourceCalendar,
                  klass: str, span: av.Interval, samples: int, quantity: int) -> int:
    from facility_share.usage.charging import price_service

    units = count_units(calendar, span) if calendar.booking_unit != "slot" else 0
    return price_service(
        fee_rules, klass, start=span.start, end=span.end, samples=samples, units=units, booking_unit=calendar.booking_unit,
        peak_hours=peak_hours, timezone=calendar.timezone, quantity=quantity,
    ).total_fen


async def expire_overdue(session: AsyncSession, now: datetime, *, resource_id: int | None = None) -> list[int]:
    """Expire requests whose decision deadline has passed; safe to run in many processes.

    One UPDATE … WHERE status = 'requested' decides each row once: a second process running
    the same sweep finds the rows no longer 'requested'.
    """
    conditions = [Booking.status == "requested", Booking.decision_deadline <= now]
    if resource_id is not None:
        conditions.append(Booking.resource_id == resource_id)
    result = await session.execute(
        update(Booking)
        .where(*conditions)
        .values(status="expired", version=Booking.version + 1, updated_at=now)
        .returning(Booking.id)
    )
    expired = [row[0] for row in result]
    for booking_id in expired:
        audit.record(session, action="expire", entity="booking", entity_id=booking_id, actor_id=None, actor_kind="system",
                     before={"status": "requested"}, after={"status": "expired"}, reason="not decided before the deadline", at=now)
    await notifications.bookings_expired(session, expired)
    return expired


# --- the booking transaction ------------------------------------------------------------------
#
# The busiest write of the platform, so it is written for few round trips and little work per
# request: Core statements over the tables (no ORM objects), the resource's definition from a
# per-process cache, and one statement for everything read under the lock. On PostgreSQL:
# lock, read, insert (with its audit event and notification job), commit.


@dataclass(frozen=True, slots=True)
class ResourceDefinition:
    """What a booking request needs to know of a resource, as plain data.

    Built from the resource's rows (rules, opening hours, fee items) and kept per process
    between requests; ``stamp`` names the version of the resource row it was built from.
    """

    id: int
    code: str
    kind: str
    parent_id: int | None
    unit_id: int
    name_zh: str
    name_en: str
    open_for_sharing: bool
    calendar: av.ResourceCalendar  # without closures: those are read with each request
    rules: BookingRules
    fee_rules: tuple[FeeRule, ...]
    peak_hours: tuple[tuple[int, time, time], ...]
    stamp: tuple[Any, ...]


def definition_of(resource: Resource) -> ResourceDefinition:
    """The definition of a resource loaded with its opening hours and fee items."""
    from facility_share.usage.charging import parse_peak_hours

    return ResourceDefinition(
        id=resource.id, code=resource.code, kind=resource.kind, parent_id=resource.parent_id, unit_id=resource.unit_id,
        name_zh=resource.name_zh, name_en=resource.name_en, open_for_sharing=resource.open_for_sharing,
        calendar=calendar_of(resource, ()), rules=rules_of(resource), fee_rules=tuple(fee_rules_of(resource.fee_items)),
        peak_hours=tuple(parse_peak_hours(resource.peak_hours or [])),
        stamp=_stamp(resource.id, resource.updated_at, resource.content_hash),
    )


def _stamp(resource_id: int, updated_at: datetime, content_hash: str) -> tuple[Any, ...]:
    return (resource_id, updated_at, content_hash)


# Keyed by (database, code). Whatever changes a resource's rules, hours or fees updates its row
# (the catalogue import rewrites the row with the hours and fees it replaces; ``updated_at`` is
# set on every UPDATE), so a definition whose stamp matches the row read under the booking
# lock is current. A process talks to one database in production, to several in tests.
_definitions: dict[tuple[Any, str], ResourceDefinition] = {}
DEFINITION_CACHE_SIZE = 4096


async def resource_definition(session: AsyncSession, code: str, stamp: tuple[Any, ...]) -> ResourceDefinition:
    """The definition of the current resource ``code`` whose row has ``stamp``; from the cache
    when the stamp matches, else read (and cached)."""
    key = (session.bind.sync_engine.url, code)
    cached = _definitions.get(key)
    if cached is not None and cached.stamp == stamp:
        return cached
    definition = definition_of(await load_resource(session, code))
    if len(_definitions) >= DEFINITION_CACHE_SIZE:
        _definitions.clear()
    _definitions[key] = definition
    return definition


_resources, _bookings, _closures = Resource.__table__, Booking.__table__, Closure.__table__
_enterprises, _relations, _units, _audit = Enterprise.__table__, UnitRelation.__table__, ManagingUnit.__table__, AuditEvent.__table__
_jobs = Job.__table__

# The resource row locked (PostgreSQL; SQLite's write transaction already holds the database's
# lock), with the stamp of its definition and the booking enterprise's side of the price.
# Nothing read here may decide capacity: rows joined to a locking statement are read as of
# its start, possibly before the previous holder of the lock committed.
_LOCK_RESOURCE = (
    select(
        _resources.c.id, _resources.c.updated_at, _resources.c.content_hash, _units.c.code.label("unit_code"),
        _enterprises.c.registered_in_district, _enterprises.c.uscc, _enterprises.c.name.label("enterprise_name"),
        _relations.c.relation,
    )
    .select_from(
        _resources.join(_units, _units.c.id == _resources.c.unit_id)
        .join(_enterprises, _enterprises.c.id == bindparam("enterprise_id"))
        .outerjoin(_relations, and_(_relations.c.enterprise_id == _enterprises.c.id, _relations.c.unit_id == _resources.c.unit_id))
    )
    .where(_resources.c.code == bindparam("code"), _resources.c.retired_at.is_(None))
    .with_for_update(of=_resources)
)

# Read once the lock is held (a statement of its own, so it sees every booking committed
# before): 0 = active bookings near the request (the index range is bounded as in
# ``active_loads``), 1 = closures of the resource and its workshop, 2 = a marker if the
# resource has requests past their decision deadline (to expire before counting), and, for
# resources that need approval, 3 = the enterprise's open requests.
# The active statuses written into the statement: a list of values would be an "expanding"
# parameter, whose SQL SQLAlchemy rewrites on every execution.
_ACTIVE_LITERALS = [literal_column(f"'{status}'") for status in ACTIVE_STATUSES]
_NEAR_PARTS = (
    select(literal_column("0").label("part"), _bookings.c.starts_at, _bookings.c.ends_at, _bookings.c.quantity).where(
        _bookings.c.resource_id == bindparam("resource_id"),
        _bookings.c.starts_at >= bindparam("reach"),
        _bookings.c.starts_at < bindparam("end"),
        _bookings.c.ends_at > bindparam("start"),
        _bookings.c.status.in_(_ACTIVE_LITERALS),
    ),
    select(literal_column("1"), _closures.c.starts_at, _closures.c.ends_at, literal_column("0")).where(
        _closures.c.resource_id.in_([bindparam("resource_id"), bindparam("parent_id")]),
        _closures.c.starts_at < bindparam("closures_end"),
        _closures.c.ends_at > bindparam("closures_start"),
    ),
    select(literal_column("2"), null(), null(), literal_column("0")).where(
        exists().where(
            _bookings.c.resource_id == bindparam("resource_id"),
            _bookings.c.status == "requested",
            _bookings.c.decision_deadline <= bindparam("now"),
        )
    ),
)
_OPEN_REQUESTS = select(literal_column("3"), null(), null(), func.count()).where(
    _bookings.c.enterprise_id == bindparam("enterprise_id"), _bookings.c.status == "requested"
)
_NEAR = union_all(*_NEAR_PARTS)
_NEAR_AND_OPEN_REQUESTS = union_all(*_NEAR_PARTS, _OPEN_REQUESTS)

_BOOKING_COLUMNS = (
    "resource_id", "enterprise_id", "user_id", "starts_at", "ends_at", "quantity", "samples", "exclusive", "mode", "purpose",
    "status", "decision_deadline", "decided_at", "decision_reason", "customer_class", "estimate_fen", "version", "created_at",
    "updated_at",
)
_INSERT_BOOKING = insert(_bookings).values({name: bindparam(name) for name in _BOOKING_COLUMNS}).returning(_bookings.c.id)
_AUDIT_VALUES = {
    "at": bindparam("at", type_=_audit.c.at.type),
    "actor_id": bindparam("actor_id", type_=_audit.c.actor_id.type),
    "actor_kind": literal_column("'user'"),
    "action": bindparam("action", type_=_audit.c.action.type),
    "entity": literal_column("'booking'"),
    "after": bindparam("after", type_=_audit.c.after.type),
    "reason": literal_column("''"),
}
_INSERT_AUDIT = insert(_audit).values(entity_id=bindparam("entity_id", type_=_audit.c.entity_id.type), **_AUDIT_VALUES)
# PostgreSQL: the booking, its audit event and its notification job in one statement. The job
# is the row ``notifications.booking_event`` enqueues (``jobs.queue``: same columns, same
# ``ON CONFLICT (dedupe_key) DO NOTHING``); its payload and dedupe key name the booking's id,
# which only the insert knows, so they are built here from the event and the key's prefix.
_placed = _INSERT_BOOKING.cte("placed")
_INSERT_BOOKING_AND_AUDIT = (
    insert(_audit)
    .from_select(
        [*_AUDIT_VALUES, "entity_id"],
        select(*_AUDIT_VALUES.values(), _placed.c.id).select_from(_placed),
    )
    .returning(_audit.c.entity_id)
)
_JOB_FIXED = ("kind", "run_at", "status", "attempts", "max_attempts", "last_error", "created_at")
_notified = (
    postgresql.insert(_jobs)
    .from_select(
        [*_JOB_FIXED, "payload", "dedupe_key"],
        select(
            *(bindparam(f"job_{name}", type_=_jobs.c[name].type) for name in _JOB_FIXED),
            func.json_build_object(literal_column("'event'"), cast(bindparam("job_event", type_=String()), String()),
                                   literal_column("'booking_id'"), _placed.c.id),
            cast(bindparam("job_key_prefix", type_=String()), String()) + cast(_placed.c.id, String()),
        ).select_from(_placed),
    )
    .on_conflict_do_nothing(index_elements=["dedupe_key"])
    .cte("notified")
)
_INSERT_BOOKING_AUDIT_AND_JOB = _INSERT_BOOKING_AND_AUDIT.add_cte(_notified)


def _job_values(action: str, now: datetime) -> dict[str, Any] | None:
    """The parameters of the notification job of a booking placed with audit ``action`` (None:
    the action notifies nobody): the columns ``jobs.queue`` would give it, and the event and
    dedupe-key prefix from which the statement builds the payload and key once the id is known."""
    event = notifications.events.BOOKING_EVENTS.get(action)
    if event is None:
        return None
    row = jobs_queue._row(notifications.events.NOTIFY, {}, None, None, None, now)
    prefix = notifications.events.event_key(event, 0).removesuffix("0")
    return {**{f"job_{name}": row[name] for name in _JOB_FIXED}, "job_event": event, "job_key_prefix": prefix}


@dataclass(frozen=True, slots=True)
class PlacedBooking:
    """A booking just inserted, with what its confirmation shows of the resource and enterprise."""

    id: int
    resource: ResourceDefinition
    unit_code: str
    enterprise_uscc: str
    enterprise_name: str
    values: dict[str, Any]  # the booking's columns, as inserted


@dataclass(frozen=True, slots=True)
class _Near:
    loads: list[av.Load]
    closures: tuple[av.Interval, ...]
    overdue: bool
    open_requests: int


async def _near(connection: Any, resource: ResourceDefinition, data: BookingInput, enterprise_id: int, now: datetime) -> _Near:
    statement = _NEAR_AND_OPEN_REQUESTS if resource.rules.approval_required else _NEAR
    rows = await connection.execute(statement, {
        "resource_id": resource.id, "parent_id": resource.parent_id, "enterprise_id": enterprise_id, "now": now,
        "reach": data.start - av.MAX_BOOKING, "start": data.start, "end": data.end,
        "closures_start": data.start - timedelta(days=1), "closures_end": data.end + timedelta(days=1),
    })
    loads, closures, overdue, open_requests = [], [], False, 0
    for part, starts_at, ends_at, number in rows:
        if part == 0:
            loads.append(av.Load(starts_at, ends_at, number))
        elif part == 1:
            closures.append(av.Interval(starts_at, ends_at))
        elif part == 2:
            overdue = True
        else:
            open_requests = number
    return _Near(loads, tuple(closures), overdue, open_requests)


async def place_booking(session: AsyncSession, principal: Principal, data: BookingInput, *, max_open_requests: int,
                        now: datetime | None = None) -> PlacedBooking:
    """Check every rule and insert the booking with its audit event, atomically with respect
    to capacity (see the module docstring).

    Raises:
        Forbidden: not an enterprise member, or the enterprise is not verified yet.
        NotFound: no such resource.
        InvalidInput: a booking rule is broken (the message lists each rule and how to comply).
        Conflict: not enough capacity left for that time.
    """
    now = now or utcnow()
    if principal.enterprise_id is None:
        raise Forbidden("only members of an enterprise can book; register your enterprise first")
    if not principal.enterprise_verified:
        raise Forbidden("your enterprise has not been verified yet; you can browse, and book once an admin verifies it")
    if session.new or session.deleted or session.dirty:
        await session.flush()  # the Core statements below must see what the caller changed
    connection = await session.connection()
    row = (await connection.execute(_LOCK_RESOURCE, {"code": data.resource_code, "enterprise_id": principal.enterprise_id})).first()
    if row is None:
        raise NotFound(f"no resource with code {data.resource_code!r}")
    resource = await resource_definition(session, data.resource_code, _stamp(row.id, row.updated_at, row.content_hash))
    if resource.kind == "workshop" and await _has_lines(session, resource.id):
        raise InvalidInput("this workshop is booked by line or bay; choose one of its lines")
    if not resource.open_for_sharing and row.relation != "internal":
        raise Forbidden("this resource is not open for sharing; only its own unit can book it")
    check_bounds(data.start, data.end)
    if data.samples < 0 or data.samples > 10_000:
        raise InvalidInput("samples: give the expected number of samples, 0–10000")
    if len(data.purpose) > 2000:
        raise InvalidInput("purpose: at most 2000 characters")

    near = await _near(connection, resource, data, principal.enterprise_id, now)
    if near.overdue:
        # Overdue requests hold no slot: expire them (with their audit events), then read again.
        await expire_overdue(session, now, resource_id=resource.id)
        near = await _near(connection, resource, data, principal.enterprise_id, now)
    rules = resource.rules
    calendar = replace(resource.calendar, closures=near.closures)
    context = Context(
        now=now,
        loads=near.loads if data.end > data.start else (),
        qualified_until=(
            await qualified_until(session, principal.user_id, resource.id) if data.mode == "self_operated" else None
        ),
        # The open-request limit guards against requests hoarding slots; bookings approved
        # automatically are not requests.
        open_requests=near.open_requests if rules.approval_required else 0,
        max_open_requests=max_open_requests,
    )
    violations = check_request(rules, calendar, Request(data.start, data.end, data.quantity, data.mode), context)
    if violations:
        detail = [{"rule": v.rule, "message": str(v)} for v in violations]
        if all(v.rule == "capacity" for v in violations):
            raise Conflict(str(violations[0]), detail=detail)
        raise InvalidInput("; ".join(str(v) for v in violations), detail=detail)

    klass = customer_class(row.relation, row.registered_in_district)
    estimate_fen = _estimate_fen(resource.fee_rules, resource.peak_hours, calendar, klass, av.Interval(data.start, data.end),
                                 data.samples, data.quantity)
    status = "requested" if rules.approval_required else "approved"
    values = {
        "resource_id": resource.id,
        "enterprise_id": principal.enterprise_id,
        "user_id": principal.user_id,
        "starts_at": data.start,
        "ends_at": data.end,
        "quantity": data.quantity,
        "samples": data.samples,
        "exclusive": calendar.capacity == 1,
        "mode": data.mode,
        "purpose": data.purpose.strip(),
        "status": status,
        "decision_deadline": decision_deadline(now, data.start) if status == "requested" else None,
        "decided_at": now if status == "approved" else None,
        "decision_reason": "" if status == "requested" else "approved automatically",
        "customer_class": klass,
        "estimate_fen": estimate_fen,
        "version": 0,
        "created_at": now,
        "updated_at": now,
    }
    audit_values = {
        "at": now,
        "actor_id": principal.user_id,
        "action": "request" if status == "requested" else "request_auto_approved",
        "after": audit.snapshot(SimpleNamespace(**values), AUDITED),
    }
    # The job's times are the enqueue's (the clock now, as ``jobs.queue.enqueue`` takes them).
    job = _job_values(audit_values["action"], utcnow()) if connection.dialect.name == "postgresql" else None
    try:
        if job is not None:
            booking_id = (await connection.execute(_INSERT_BOOKING_AUDIT_AND_JOB, {**values, **audit_values, **job})).scalar_one()
        elif connection.dialect.name == "postgresql":
            booking_id = (await connection.execute(_INSERT_BOOKING_AND_AUDIT, {**values, **audit_values})).scalar_one()
        else:
            booking_id = (await connection.execute(_INSERT_BOOKING, values)).scalar_one()
            await connection.execute(_INSERT_AUDIT, {**audit_values, "entity_id": booking_id})
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == "23P01":
            raise Conflict("that time has just been booked by someone else; choose another time") from None
        raise
    if job is None:
        await notifications.booking_event(session, audit_values["action"], booking_id)
    return PlacedBooking(booking_id, resource, row.unit_code, row.uscc, row.enterprise_name, values)


async def request_booking(session: AsyncSession, principal: Principal, data: BookingInput, *, max_open_requests: int,
                          now: datetime | None = None) -> Booking:
    """``place_booking``, returning the booking as an ORM object of ``session`` (no extra query),
    for callers that go on to change it. Raises as ``place_booking``."""
    placed = await place_booking(session, principal, data, max_open_requests=max_open_requests, now=now)
    booking = Booking(id=placed.id, **placed.values, decided_by_id=None)
    make_transient_to_detached(booking)
    session.add(booking)
    return booking


# --- decisions -----------------------------------------------------------------------------------


async def _locked_booking(session: AsyncSession, booking_id: int) -> Booking | None:
    statement = select(Booking).where(Booking.id == booking_id)
    if session.bind.dialect.name == "postgresql":
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


def can_see(principal: Principal, booking: Booking, unit_id: int) -> bool:
    return principal.reads_all() or principal.manages(unit_id) or booking.enterprise_id == principal.enterprise_id


async def change_status(session: AsyncSession, principal: Principal, booking_id: int, action: str, *, reason: str = "",
                        now: datetime | None = None) -> Booking:
    """Approve, reject, cancel, complete or mark a no-show.

    A booking the caller may not see is reported as missing (NotFound), so guessed ids reveal
    nothing. Raises Forbidden, Conflict or InvalidInput as ``lifecycle.next_status`` decides.
    """
    now = now or utcnow()
    booking = await _locked_booking(session, booking_id)
    resource = await session.get(Resource, booking.resource_id) if booking else None
    if booking is None or resource is None or not can_see(principal, booking, resource.unit_id):
        raise NotFound(f"no booking {booking_id}")
    manager = principal.manages(resource.unit_id)
    if not manager and booking.enterprise_id != principal.enterprise_id:
        raise NotFound(f"no booking {booking_id}")  # finance reads, but does not act
    if action == "reject" and not reason.strip():
        raise InvalidInput("reason: say why the request is rejected; the enterprise will read it")
    if action == "cancel" and manager and booking.enterprise_id != principal.enterprise_id and not reason.strip():
        raise InvalidInput("reason: say why the unit cancels this booking; the enterprise will read it")
    if booking.status == "requested" and booking.decision_deadline and booking.decision_deadline <= now:
        await expire_overdue(session, now, resource_id=booking.resource_id)
        await session.refresh(booking)
    state = BookingState(booking.status, booking.starts_at, booking.ends_at, resource.cancellation_hours)
    target = next_status(state, action, by_manager=manager, now=now)
    before = audit.snapshot(booking, AUDITED)
    booking.status = target
    booking.version += 1
    booking.updated_at = now
    if action in ("approve", "reject"):
        booking.decided_by_id, booking.decided_at = principal.user_id, now
    if reason.strip():
        booking.decision_reason = reason.strip()[:500]
    await session.flush()
    audit.record(session, action=action, entity="booking", entity_id=booking.id, actor_id=principal.user_id,
                 before=before, after=audit.snapshot(booking, AUDITED), reason=reason.strip(), at=now)
    await notifications.booking_event(session, action, booking.id)
    return booking


# --- reads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookingFilter:
    status: str | None = None
    resource_code: str | None = None
    unit_code: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    offset: int = 0


def _visible(principal: Principal):  # type: ignore[no-untyped-def]
    if principal.reads_all():
        return None
    conditions = []
    if principal.managed_unit_ids:
        conditions.append(Resource.unit_id.in_(principal.managed_unit_ids))
    if principal.enterprise_id is not None:
        conditions.append(Booking.enterprise_id == principal.enterprise_id)
    return or_(*conditions) if conditions else Booking.id.is_(None)


async def list_bookings(session: AsyncSession, principal: Principal, f: BookingFilter, *, scope: str = "all") -> tuple[list[Booking], int]:
    """Bookings the principal may see. ``scope``: ``mine`` (own enterprise), ``managed``
    (units the principal manages) or ``all`` (whatever they may see)."""
    statement = select(Booking).join(Resource, Booking.resource_id == Resource.id)
    visible = _visible(principal)
    if visible is not None:
        statement = statement.where(visible)
    if scope == "mine":
        statement = statement.where(Booking.enterprise_id == (principal.enterprise_id or -1))
    elif scope == "managed" and not principal.is_admin:
        statement = statement.where(Resource.unit_id.in_(principal.managed_unit_ids or {-1}))
    if f.status:
        statement = statement.where(Booking.status == f.status)
    if f.resource_code:
        statement = statement.where(Resource.code == f.resource_code)
    if f.unit_code:
        statement = statement.join(ManagingUnit, Resource.unit_id == ManagingUnit.id).where(ManagingUnit.code == f.unit_code)
    if f.start:
        statement = statement.where(Booking.ends_at > f.start)
    if f.end:
        statement = statement.where(Booking.starts_at < f.end)
    count = (await session.execute(select(func.count()).select_from(statement.subquery()))).scalar_one()
    rows = (
        await session.execute(
            statement.options(
                selectinload(Booking.resource).selectinload(Resource.unit),
                selectinload(Booking.enterprise),
                selectinload(Booking.user),
            )
            .order_by(Booking.starts_at.desc(), Booking.id.desc())
            .limit(f.limit)
            .offset(f.offset)
        )
    ).scalars().all()
    return list(rows), count


async def get_booking(session: AsyncSession, principal: Principal, booking_id: int) -> Booking:
    """Raises NotFound for a booking the principal may not see (as for a missing one)."""
    booking = (
        await session.execute(
            select(Booking)
            .where(Booking.id == booking_id)
            .options(
                selectinload(Booking.resource).selectinload(Resource.unit),
                selectinload(Booking.enterprise),
                selectinload(Booking.user),
            )
        )
    ).scalar_one_or_none()
    if booking is None or not can_see(principal, booking, booking.resource.unit_id):
        raise NotFound(f"no booking {booking_id}")
    return booking


