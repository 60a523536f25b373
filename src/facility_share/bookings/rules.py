"""Booking rules as pure functions: a request and its context in, the broken rules out.

Each violation names its rule and carries the values a person needs to comply, so the API can
answer in English and the pages in the reader's language from the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from facility_share.bookings.availability import (
    MAX_BOOKING,
    DayClassifier,
    Interval,
    Load,
    ResourceCalendar,
    _local,
    _local_days,
    candidate_units,
    clip,
    hours_for_day,
    is_bookable_span,
    merge,
    peak_load,
)
from facility_share.bookings.working_calendar import classify

MODES = ("staff_operated", "self_operated")


@dataclass(frozen=True, slots=True)
class BookingRules:
    min_minutes: int
    max_minutes: int
    lead_minutes: int
    horizon_days: int
    self_operation_allowed: bool
    qualification_required: bool
    approval_required: bool = True
    cancellation_hours: int = 24


@dataclass(frozen=True, slots=True)
class Request:
    start: datetime
    end: datetime
    quantity: int = 1
    mode: str = "staff_operated"


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules need to know beyond the request itself."""

    now: datetime
    loads: Sequence[Load] = ()  # other active bookings of the resource near the request
    qualified_until: date | None = None  # the user's qualification for this resource
    open_requests: int = 0  # the enterprise's bookings still waiting for a decision
    max_open_requests: int = 10


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    message: str  # English, with %(name)s placeholders filled from ``values``
    values: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message % self.values


# The English message of each rule; pages translate these templates through gettext.
MESSAGES = {
    "time_order": "the end must be after the start",
    "opening_hours": "the resource is not open for all of that time; choose a time inside its opening hours",
    "closure": "the resource is closed for part of that time (maintenance or holiday); choose another time",
    "granularity": "bookings must start and end on the resource's %(unit)s boundaries; choose whole %(unit)ss",
    "min_length": "the booking is %(minutes)s minutes; the minimum is %(min_minutes)s minutes",
    "max_length": "the booking is %(minutes)s minutes; the maximum is %(max_minutes)s minutes",
    "lead_time": "bookings must be made at least %(lead_hours)s hours ahead; the earliest start now is %(earliest)s",
    "horizon": "bookings can be made at most %(horizon_days)s days ahead; the latest start now is %(latest)s",
    "quantity": "the quantity must be between 1 and the capacity, %(capacity)s",
    "capacity": "only %(remaining)s of %(capacity)s places are free for that whole time; choose another time or a smaller quantity",
    "mode": "the operating mode must be staff_operated or self_operated",
    "self_operation": "this resource is only operated by its staff; choose staff_operated",
    "qualification": "operating this resource yourself needs a qualification valid until %(end_date)s; ask the managing unit for training, or choose staff_operated",
    "open_requests": "your enterprise already has %(open)s requests waiting for a decision (the limit is %(limit)s); wait for a decision or withdraw one",
}


def violation(rule: str, **values: Any) -> Violation:
    return Violation(rule, MESSAGES[rule], values)


def held_minutes(calendar: ResourceCalendar, span: Interval, classify_day: DayClassifier = classify) -> int:
    """The minutes of the shift or day units that lie inside ``span``."""
    margin = timedelta(days=1)
    units = candidate_units(calendar, span.start - margin, span.end + margin, classify_day)
    return sum(unit.minutes for unit, _label in units if span.contains(unit))


def slot_span_problem(calendar: ResourceCalendar, span: Interval, classify_day: DayClassifier = classify) -> str | None:
    """``is_bookable_span`` for a slot resource (``booking_unit == "slot"``), with the same
    result for every span, computed without listing every slot of the days around it.

    ``is_bookable_span`` lists all slots of the local days around ``span`` (about 250 for a
    resource open around the clock) and keeps those inside it; here the slots inside ``span``
    are computed directly from each opening interval (the same arithmetic: ``slot_minutes``
    steps from the interval's start while a whole slot fits), in the same order. The opening
    hours are checked on the same merged intervals of the same days. Slots inside ``span``
    cannot touch a closure once ``span`` itself does not, so the closure filter of
    ``candidate_units`` has nothing to remove from them.
    """
    if any(span.overlaps(c) for c in calendar.closures):
        return "closure"
    margin = timedelta(days=1)
    window_start, window_end = span.start - margin, span.end + margin
    zone = ZoneInfo(calendar.timezone)
    day_open = [
        Interval(_local(day, hours.opens, zone), _local(day, hours.closes, zone, end=True))
        for day in _local_days(calendar, window_start, window_end)
        for hours in hours_for_day(calendar, day, classify_day)
    ]
    opened = clip(merge(day_open), Interval(window_start, window_end))
    if not any(o.contains(span) for o in opened):
        return "opening_hours"
    step = timedelta(minutes=calendar.slot_minutes)
    # Where the first slot inside ``span`` starts, then the slots that follow it; the slot that
    # starts where the previous one ended is the only one that can keep the tiling unbroken.
    expected, first, last_end = span.start, None, None
    for interval in day_open:
        # The first slot of ``interval`` starting at or after span.start: ceil((span.start - start) / step).
        index = max(0, -((interval.start - span.start) // step))
        cursor = interval.start + index * step
        while cursor + step <= interval.end and cursor + step <= span.end:
            # (cursor >= span.start holds: the slot is inside span, as candidate_units keeps it.)
            if first is None:
                first = cursor
            elif cursor != expected:
                return "granularity"
            expected = last_end = cursor + step
            cursor = last_end
    if first is None or first != span.start or last_end != span.end:
        return "granularity"
    return None


def check_request(
    rules: BookingRules,
    calendar: ResourceCalendar,
    request: Request,
    context: Context,
    classify_day: DayClassifier = classify,
) -> list[Violation]:
    """Every rule ``request`` breaks, in the order a person should fix them (empty: all good)."""
    if request.end <= request.start:
        return [violation("time_order")]
    found: list[Violation] = []
    span = Interval(request.start, request.end)
    # Shift and day bookings are measured in the units they hold, not the closed nights
    # between them: "at most 5 shifts" is max_minutes = 5 × 480 however the shifts fall.
    minutes = span.minutes if calendar.booking_unit == "slot" else held_minutes(calendar, span, classify_day)

    problem = (slot_span_problem(calendar, span, classify_day) if calendar.booking_unit == "slot"
               else is_bookable_span(calendar, span, classify_day))
    # Units that do not fit make the held length meaningless: report only the fit then.
    if problem is None or calendar.booking_unit == "slot":
        if minutes < rules.min_minutes:
            found.append(violation("min_length", minutes=minutes, min_minutes=rules.min_minutes))
        if minutes > rules.max_minutes or request.end - request.start > MAX_BOOKING:
            found.append(violation("max_length", minutes=minutes, max_minutes=min(rules.max_minutes, MAX_BOOKING.days * 1440)))

    earliest = context.now + timedelta(minutes=rules.lead_minutes)
    if request.start < earliest:
        found.append(violation("lead_time", lead_hours=rules.lead_minutes // 60, earliest=earliest.isoformat(timespec="minutes")))
    latest = context.now + timedelta(days=rules.horizon_days)
    if request.start > latest:
        found.append(violation("horizon", horizon_days=rules.horizon_days, latest=latest.isoformat(timespec="minutes")))

    if problem is not None:
        found.append(violation(problem, unit=calendar.booking_unit))

    if request.mode not in MODES:
        found.append(violation("mode"))
    elif request.mode == "self_operated":
        if not rules.self_operation_allowed:
            found.append(violation("self_operation"))
        elif rules.qualification_required:
            # The date the booking ends on in the resource's own timezone (its last instant).
            needed = (request.end - timedelta(microseconds=1)).astimezone(ZoneInfo(calendar.timezone)).date()
            if context.qualified_until is None or context.qualified_until < needed:
                found.append(violation("qualification", end_date=needed.isoformat()))

    if not 1 <= request.quantity <= calendar.capacity:
        found.append(violation("quantity", capacity=calendar.capacity))
    else:
        remaining = calendar.capacity - peak_load(context.loads, span)
        if request.quantity > remaining:
            found.append(violation("capacity", remaining=max(0, remaining), capacity=calendar.capacity))

    if context.open_requests >= context.max_open_requests:
        found.append(violation("open_requests", open=context.open_requests, limit=context.max_open_requests))
    return found
