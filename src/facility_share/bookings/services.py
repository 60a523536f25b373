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
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from facility_share import audit
from facility_share.accounts.principal import Principal
from facility_share.accounts.services import qualified_until
from facility_share.billing.pricing import FeeRule, customer_class
from facility_share.bookings import availability as av
from facility_share.bookings.lifecycle import BookingState, decision_deadline, next_status
from facility_share.bookings.rules import BookingRules, Context, Request, check_request
from facility_share.db.models import (
    ACTIVE_STATUSES,
    Booking,
    Closure,
    Enterprise,
    FeeItem,
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
    from facility_share.usage.charging import parse_peak_hours, price_service

    klass = customer_class(relation, enterprise.registered_in_district)
    units = count_units(calendar, span) if resource.booking_unit != "slot" else 0
    priced = price_service(
        fee_rules_of(resource.fee_items), klass, start=span.start, end=span.end, samples=samples, units=units,
        booking_unit=resource.booking_unit, peak_hours=parse_peak_hours(resource.peak_hours or []),
        timezone=resource.timezone, quantity=quantity,
    )
    return klass, priced.total_fen


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
    return expired


async def request_booking(session: AsyncSession, principal: Principal, data: BookingInput, *, max_open_requests: int,
                          now: datetime | None = None) -> Booking:
    """Check every rule and insert the booking, atomically with respect to capacity.

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
    resource = await load_resource(session, data.resource_code)
    if resource.kind == "workshop" and await _has_lines(session, resource.id):
        raise InvalidInput("this workshop is booked by line or bay; choose one of its lines")
    enterprise = await session.get(Enterprise, principal.enterprise_id)
    assert enterprise is not None
    relation = await relation_to_unit(session, enterprise.id, resource.unit_id)
    if not resource.open_for_sharing and relation != "internal":
        raise Forbidden("this resource is not open for sharing; only its own unit can book it")
    check_bounds(data.start, data.end)
    if data.samples < 0 or data.samples > 10_000:
        raise InvalidInput("samples: give the expected number of samples, 0–10000")
    if len(data.purpose) > 2000:
        raise InvalidInput("purpose: at most 2000 characters")

    await lock_resource(session, resource.id)
    await expire_overdue(session, now, resource_id=resource.id)
    span = av.Interval(data.start, data.end)
    calendar = calendar_of(resource, await closures_in(session, resource, data.start - timedelta(days=1), data.end + timedelta(days=1)))
    # The open-request limit guards against requests hoarding slots; bookings approved
    # automatically are not requests.
    open_requests = 0
    if resource.approval_required:
        open_requests = (
            await session.execute(
                select(func.count()).where(Booking.enterprise_id == enterprise.id, Booking.status == "requested")
            )
        ).scalar_one()
    context = Context(
        now=now,
        loads=await active_loads(session, resource.id, data.start, data.end) if data.end > data.start else (),
        qualified_until=(
            await qualified_until(session, principal.user_id, resource.id) if data.mode == "self_operated" else None
        ),
        open_requests=open_requests,
        max_open_requests=max_open_requests,
    )
    violations = check_request(rules_of(resource), calendar, Request(data.start, data.end, data.quantity, data.mode), context)
    if violations:
        detail = [{"rule": v.rule, "message": str(v)} for v in violations]
        if all(v.rule == "capacity" for v in violations):
            raise Conflict(str(violations[0]), detail=detail)
        raise InvalidInput("; ".join(str(v) for v in violations), detail=detail)

    klass, estimate_fen = price_estimate(resource, calendar, enterprise, relation, span, data.samples, data.quantity)
    status = "requested" if resource.approval_required else "approved"
    booking = Booking(
        resource_id=resource.id,
        enterprise_id=enterprise.id,
        user_id=principal.user_id,
        starts_at=data.start,
        ends_at=data.end,
        quantity=data.quantity,
        samples=data.samples,
        exclusive=resource.capacity == 1,
        mode=data.mode,
        purpose=data.purpose.strip(),
        status=status,
        decision_deadline=decision_deadline(now, data.start) if status == "requested" else None,
        decided_at=now if status == "approved" else None,
        decision_reason="" if status == "requested" else "approved automatically",
        customer_class=klass,
        estimate_fen=estimate_fen,
        created_at=now,
        updated_at=now,
    )
    # The response is built from these rows without reading them back.
    booking.resource, booking.enterprise = resource, enterprise
    session.add(booking)
    try:
        await session.flush()
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == "23P01":
            raise Conflict("that time has just been booked by someone else; choose another time") from None
        raise
    audit.record(session, action="request" if status == "requested" else "request_auto_approved", entity="booking",
                 entity_id=booking.id, actor_id=principal.user_id, after=audit.snapshot(booking, AUDITED), at=now)
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


