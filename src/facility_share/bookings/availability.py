"""Availability as pure functions: opening hours, the working calendar, closures, capacity and
existing bookings in; open, free and busy intervals and bookable units out.

Everything is in UTC at the edges. Opening hours and shifts are local times of the resource's
timezone and are converted day by day, so a timezone with daylight saving would still be right.

How a resource's day is decided when it follows the working calendar (``working_calendar``):
a public holiday is closed; a make-up working day (调休) opens with the hours of a regular
weekday (Monday's, or the first weekday that has hours); every other day opens with its own
weekday's hours. Resources that do not follow the calendar (a 24/7 instrument, a workshop
running through holidays) always use their weekday hours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from facility_share.bookings.working_calendar import DayKind, classify

# No booking may be longer than this; it bounds the history the capacity check reads.
MAX_BOOKING = timedelta(days=31)


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be timezone-aware")

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    weekday: int  # 0 = Monday
    opens: time
    closes: time  # 00:00 means the end of the day


@dataclass(frozen=True, slots=True)
class ShiftTimes:
    code: str
    starts: time
    ends: time  # 00:00 means the end of the day


@dataclass(frozen=True, slots=True)
class Load:
    """An active booking as availability sees it: when, and how much capacity it takes."""

    start: datetime
    end: datetime
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class ResourceCalendar:
    timezone: str
    capacity: int
    weekly: tuple[WeeklyHours, ...]
    working_calendar: bool = True
    booking_unit: str = "slot"  # slot | shift | day
    slot_minutes: int = 30
    shifts: tuple[ShiftTimes, ...] = ()
    closures: tuple[Interval, ...] = ()


@dataclass(frozen=True, slots=True)
class Unit:
    """One bookable unit (a slot, a shift or a day) with the capacity still free in it."""

    start: datetime
    end: datetime
    remaining: int
    label: str = ""


DayClassifier = Callable[[date], DayKind]


def _local(day: date, clock: time, zone: ZoneInfo, *, end: bool = False) -> datetime:
    if end and clock == time(0, 0):
        day, clock = day + timedelta(days=1), time(0, 0)
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def hours_for_day(calendar: ResourceCalendar, day: date, classify_day: DayClassifier = classify) -> list[WeeklyHours]:
    """The weekly hours that apply on ``day`` (local date), after holidays and make-up days."""
    by_day: dict[int, list[WeeklyHours]] = {}
    for hours in calendar.weekly:
        by_day.setdefault(hours.weekday, []).append(hours)
    if not calendar.working_calendar:
        return sorted(by_day.get(day.weekday(), []), key=lambda h: h.opens)
    kind = classify_day(day)
    if kind is DayKind.HOLIDAY:
        return []
    if kind is DayKind.MAKEUP_WORKDAY:
        for weekday in range(5):
            if by_day.get(weekday):
                return sorted(by_day[weekday], key=lambda h: h.opens)
        return []
    return sorted(by_day.get(day.weekday(), []), key=lambda h: h.opens)


def _local_days(calendar: ResourceCalendar, start: datetime, end: datetime) -> Iterable[date]:
    zone = ZoneInfo(calendar.timezone)
    # One day of margin each side: a local day can start before ``start`` in UTC.
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals joined."""
    merged: list[Interval] = []
    for interval in sorted(intervals):
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return merged


def subtract(intervals: Sequence[Interval], cuts: Iterable[Interval]) -> list[Interval]:
    """``intervals`` minus ``cuts``; both may be unsorted, the result is sorted and merged."""
    result = merge(intervals)
    for cut in merge(cuts):
        pieces: list[Interval] = []
        for interval in result:
            if not interval.overlaps(cut):
                pieces.append(interval)
                continue
            if interval.start < cut.start:
                pieces.append(Interval(interval.start, cut.start))
            if cut.end < interval.end:
                pieces.append(Interval(cut.end, interval.end))
        result = pieces
    return result


def clip(intervals: Iterable[Interval], window: Interval) -> list[Interval]:
    out = []
    for interval in intervals:
        start, end = max(interval.start, window.start), min(interval.end, window.end)
        if start < end:
            out.append(Interval(start, end))
    return out


def opening_intervals(
    calendar: ResourceCalendar, start: datetime, end: datetime, classify_day: DayClassifier = classify
) -> list[Interval]:
    """When the resource is open within [start, end), before closures."""
    zone = ZoneInfo(calendar.timezone)
    intervals = []
    for day in _local_days(calendar, start, end):
        for hours in hours_for_day(calendar, day, classify_day):
            intervals.append(Interval(_local(day, hours.opens, zone), _local(day, hours.closes, zone, end=True)))
    return clip(merge(intervals), Interval(start, end))


def open_intervals(
    calendar: ResourceCalendar, start: datetime, end: datetime, classify_day: DayClassifier = classify
) -> list[Interval]:
    """When the resource is open within [start, end): opening hours minus closures."""
    return subtract(opening_intervals(calendar, start, end, classify_day), calendar.closures)


def load_profile(loads: Iterable[Load], window: Interval) -> list[tuple[Interval, int]]:
    """The booked quantity as a step function over ``window`` (only steps with load > 0)."""
    events: dict[datetime, int] = {}
    for load in loads:
        start, end = max(load.start, window.start), min(load.end, window.end)
        if start < end:
            events[start] = events.get(start, 0) + load.quantity
            events[end] = events.get(end, 0) - load.quantity
    profile: list[tuple[Interval, int]] = []
    level = 0
    points = sorted(events)
    for here, following in zip(points, points[1:], strict=False):
        level += events[here]
        if level > 0:
            if profile and profile[-1][0].end == here and profile[-1][1] == level:
                profile[-1] = (Interval(profile[-1][0].start, following), level)
            else:
                profile.append((Interval(here, following), level))
    return profile


def peak_load(loads: Iterable[Load], window: Interval) -> int:
    """The largest booked quantity at any instant of ``window``."""
    return max((level for _interval, level in load_profile(loads, window)), default=0)


def free_and_busy(
    calendar: ResourceCalendar,
    loads: Iterable[Load],
    start: datetime,
    end: datetime,
    classify_day: DayClassifier = classify,
) -> tuple[list[Interval], list[Interval]]:
    """Open time split into free (some capacity left) and busy (fully booked) intervals."""
    opened = open_intervals(calendar, start, end, classify_day)
    full = [interval for interval, level in load_profile(loads, Interval(start, end)) if level >= calendar.capacity]
    busy = merge(clip_all(opened, full))
    free = subtract(opened, full)
    return free, busy


def clip_all(intervals: Sequence[Interval], windows: Iterable[Interval]) -> list[Interval]:
    """The parts of ``intervals`` inside any of ``windows``."""
    out: list[Interval] = []
    for window in windows:
        out.extend(clip(intervals, window))
    return out


def candidate_units(
    calendar: ResourceCalendar, start: datetime, end: datetime, classify_day: DayClassifier = classify
) -> list[tuple[Interval, str]]:
    """The bookable units (slots, shifts or days) in [start, end), ignoring existing bookings."""
    zone = ZoneInfo(calendar.timezone)
    window = Interval(start, end)
    units: list[tuple[Interval, str]] = []
    for day in _local_days(calendar, start, end):
        hours = hours_for_day(calendar, day, classify_day)
        if not hours:
            continue
        day_open = [Interval(_local(day, h.opens, zone), _local(day, h.closes, zone, end=True)) for h in hours]
        if calendar.booking_unit == "day":
            units.append((Interval(day_open[0].start, day_open[-1].end), day.isoformat()))
        elif calendar.booking_unit == "shift":
            for shift in calendar.shifts:
                interval = Interval(_local(day, shift.starts, zone), _local(day, shift.ends, zone, end=True))
                if any(o.contains(interval) for o in day_open):
                    units.append((interval, shift.code))
        else:
            step = timedelta(minutes=calendar.slot_minutes)
            for opened in day_open:
                cursor = opened.start
                while cursor + step <= opened.end:
                    units.append((Interval(cursor, cursor + step), ""))
                    cursor += step
    return [(u, label) for u, label in units if window.contains(u) and not any(u.overlaps(c) for c in calendar.closures)]


def bookable_units(
    calendar: ResourceCalendar,
    loads: Sequence[Load],
    start: datetime,
    end: datetime,
    classify_day: DayClassifier = classify,
) -> list[Unit]:
    """Every unit in [start, end) with the capacity still free in it (0 = fully booked)."""
    units = []
    for interval, label in candidate_units(calendar, start, end, classify_day):
        remaining = calendar.capacity - peak_load(loads, interval)
        units.append(Unit(interval.start, interval.end, max(0, remaining), label))
    return units


def is_bookable_span(
    calendar: ResourceCalendar, span: Interval, classify_day: DayClassifier = classify
) -> str | None:
    """Why ``span`` cannot be booked as a whole number of units, or None if it can.

    Slots must tile the span without a gap (no booking across a lunch break or a closure);
    shifts and days must start and end on unit boundaries and the span may run through the
    closed hours between them (a multi-day workshop booking holds the nights too).
    Returns a rule code: ``opening_hours``, ``granularity`` or ``closure``.
    """
    if any(span.overlaps(c) for c in calendar.closures):
        return "closure"
    margin = timedelta(days=1)
    units = [u for u, _ in candidate_units(calendar, span.start - margin, span.end + margin, classify_day)]
    inside = [u for u in units if span.contains(u)]
    opened = opening_intervals(calendar, span.start - margin, span.end + margin, classify_day)
    if calendar.booking_unit == "slot":
        if not any(o.contains(span) for o in opened):
            return "opening_hours"
        if not inside or inside[0].start != span.start or inside[-1].end != span.end:
            return "granularity"
        for earlier, later in zip(inside, inside[1:], strict=False):
            if earlier.end != later.start:
                return "granularity"
        return None
    starts = {u.start for u in units}
    ends = {u.end for u in units}
    if span.start not in starts or span.end not in ends:
        if not any(o.overlaps(span) for o in opened):
            return "opening_hours"
        return "granularity"
    return None
