"""Availability as pure functions, checked against brute-force oracles.

Random resources (weekly hours with 1–3 intervals per weekday on 15-minute boundaries,
capacities 1–4, closures, overlapping bookings) over windows of 1–21 days in 2026 — around the
National Day holiday and the 调休 Saturday 2026-10-10 — and in 2027, against the real working
calendar.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from facility_share.bookings.availability import (
    Interval,
    Load,
    ResourceCalendar,
    ShiftTimes,
    WeeklyHours,
    bookable_units,
    candidate_units,
    clip,
    free_and_busy,
    is_bookable_span,
    load_profile,
    merge,
    open_intervals,
    opening_intervals,
    peak_load,
    subtract,
)
from facility_share.bookings.working_calendar import DayKind, classify

SHANGHAI = ZoneInfo("Asia/Shanghai")
Q = timedelta(minutes=15)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def local(day: date, clock: time, *, end: bool = False, zone: ZoneInfo = SHANGHAI) -> datetime:
    if end and clock == time(0):
        day = day + timedelta(days=1)
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def quarter(n: int) -> time:
    """The n-th quarter hour of a day as a clock time; 96 (24:00) is 00:00, the end of the day."""
    return time((n // 4) % 24, (n % 4) * 15)


# --- oracles ------------------------------------------------------------------------------------


def expected_weekly(calendar: ResourceCalendar, day: date) -> list[WeeklyHours]:
    """Which weekly hours apply on a local day, written out from the documented rule."""
    if calendar.working_calendar:
        kind = classify(day)
        if kind is DayKind.HOLIDAY:
            return []
        if kind is DayKind.MAKEUP_WORKDAY:
            for weekday in range(5):
                hours = [h for h in calendar.weekly if h.weekday == weekday]
                if hours:
                    return sorted(hours, key=lambda h: h.opens)
            return []
    return sorted((h for h in calendar.weekly if h.weekday == day.weekday()), key=lambda h: h.opens)


def day_intervals(calendar: ResourceCalendar, day: date) -> list[Interval]:
    return [Interval(local(day, h.opens), local(day, h.closes, end=True)) for h in expected_weekly(calendar, day)]


def local_days(start: datetime, end: datetime) -> list[date]:
    first = start.astimezone(SHANGHAI).date() - timedelta(days=1)
    last = end.astimezone(SHANGHAI).date() + timedelta(days=1)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def inside(point: datetime, intervals: Sequence[Interval]) -> bool:
    return any(i.start <= point < i.end for i in intervals)


def coverage(loads: Sequence[Load], point: datetime) -> int:
    return sum(load.quantity for load in loads if load.start <= point < load.end)


def brute_peak(loads: Sequence[Load], span: Interval) -> int:
    """The peak load over ``span``: the load is a step function, so it is enough to look at the
    start of the span and at every load starting inside it."""
    points = [span.start] + [load.start for load in loads if span.start < load.start < span.end]
    return max(coverage(loads, p) for p in points)


def segments(points: set[datetime]) -> list[Interval]:
    ordered = sorted(points)
    return [Interval(a, b) for a, b in zip(ordered, ordered[1:]) if a < b]


def mid(interval: Interval) -> datetime:
    return interval.start + (interval.end - interval.start) / 2


def assert_normalised(intervals: Sequence[Interval]) -> None:
    """Sorted, non-empty, neither overlapping nor touching."""
    for i in intervals:
        assert i.start < i.end
    for a, b in zip(intervals, intervals[1:]):
        assert a.end < b.start


# --- strategies ---------------------------------------------------------------------------------

KEY_DATES = [
    date(2026, 1, 1),
    date(2026, 1, 4),
    date(2026, 2, 14),
    date(2026, 2, 28),
    date(2026, 9, 25),
    date(2026, 9, 30),
    date(2026, 10, 1),
    date(2026, 10, 5),
    date(2026, 10, 9),
    date(2026, 10, 10),
    date(2026, 12, 28),
    date(2027, 1, 1),
    date(2027, 9, 28),
]
ANCHORS = st.one_of(
    st.sampled_from(KEY_DATES),
    st.dates(min_value=date(2026, 9, 15), max_value=date(2026, 10, 15)),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
    st.dates(min_value=date(2027, 1, 1), max_value=date(2027, 12, 31)),
)


@st.composite
def day_hours(draw: st.DrawFn, weekday: int) -> list[WeeklyHours]:
    count = draw(st.integers(1, 3))
    points = sorted(draw(st.lists(st.integers(0, 96), min_size=2 * count, max_size=2 * count, unique=True)))
    return [WeeklyHours(weekday, quarter(a), quarter(b)) for a, b in zip(points[::2], points[1::2])]


@st.composite
def weekly_hours(draw: st.DrawFn) -> tuple[WeeklyHours, ...]:
    closed = draw(st.sets(st.integers(0, 6), max_size=2))
    hours: list[WeeklyHours] = []
    for weekday in range(7):
        if weekday not in closed:
            hours.extend(draw(day_hours(weekday)))
    # The order of the records must not matter.
    return tuple(draw(st.permutations(hours)))


@st.composite
def windows(draw: st.DrawFn) -> tuple[datetime, datetime]:
    anchor = draw(ANCHORS)
    start = local(anchor, time(0)) + draw(st.integers(-95, 95)) * Q
    end = start + draw(st.integers(96, 21 * 96)) * Q
    return start, end


@st.composite
def closures(draw: st.DrawFn, start: datetime, end: datetime) -> tuple[Interval, ...]:
    quarters = int((end - start) / Q)
    out = []
    for _ in range(draw(st.integers(0, 3))):
        first = start + draw(st.integers(-96, quarters + 96)) * Q
        out.append(Interval(first, first + draw(st.integers(1, 2 * 96)) * Q))
    return tuple(out)


@st.composite
def loads(draw: st.DrawFn, start: datetime, end: datetime, max_size: int = 10) -> list[Load]:
    """Bookings on a 5-minute grid, overlapping freely (and possibly overbooked)."""
    fives = int((end - start) / timedelta(minutes=5))
    # Half of them crowd into one day, so that they overlap and share units.
    hot = draw(st.integers(-288, fives))
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        offset = draw(st.one_of(st.integers(-288, fives), st.integers(hot, hot + 288)))
        first = start + offset * timedelta(minutes=5)
        length = draw(st.one_of(st.integers(1, 36), st.integers(1, 576))) * timedelta(minutes=5)
        out.append(Load(first, first + length, draw(st.integers(1, 3))))
    return out


@st.composite
def scenarios(draw: st.DrawFn, unit: str = "slot") -> tuple[ResourceCalendar, list[Load], datetime, datetime]:
    start, end = draw(windows())
    calendar = ResourceCalendar(
        timezone="Asia/Shanghai",
        capacity=draw(st.integers(1, 4)),
        weekly=draw(weekly_hours()),
        working_calendar=draw(st.booleans()),
        booking_unit=unit,
        slot_minutes=draw(st.sampled_from([15, 20, 30, 45, 60, 90, 120])),
        closures=draw(closures(start, end)),
    )
    booked = draw(loads(start, end))
    # And bookings aimed at the open hours: parts of units, runs of units, back to back.
    units = [u for u, _ in candidate_units(calendar, start, end)]
    if units:
        five = timedelta(minutes=5)
        for _ in range(draw(st.integers(0, 8))):
            u = draw(st.sampled_from(units))
            first = u.start + draw(st.integers(-3, 6)) * five
            length = draw(st.one_of(st.integers(1, 6), st.integers(1, 60))) * five
            booked.append(Load(first, first + length, draw(st.integers(1, 3))))
    return calendar, booked, start, end


# --- 1. no offered slot would break capacity ------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_no_offered_unit_breaks_capacity(scenario) -> None:  # type: ignore[no-untyped-def]
    calendar, booked, start, end = scenario
    units = bookable_units(calendar, booked, start, end)
    for u in units:
        span = Interval(u.start, u.end)
        assert 0 <= u.remaining <= calendar.capacity
        assert u.remaining == max(0, calendar.capacity - brute_peak(booked, span))
        if u.remaining > 0:
            assert peak_load([*booked, Load(u.start, u.end, u.remaining)], span) <= calendar.capacity
        assert peak_load([*booked, Load(u.start, u.end, u.remaining + 1)], span) > calendar.capacity
    # The units are exactly the candidates, with the same labels.
    assert [(Interval(u.start, u.end), u.label) for u in units] == candidate_units(calendar, start, end)


def test_remaining_counts_the_peak_not_the_sum() -> None:
    """Two bookings one after the other inside a slot take one place, not two."""
    weekly = (WeeklyHours(1, time(8), time(12)),)
    calendar = ResourceCalendar("Asia/Shanghai", 2, weekly, working_calendar=False, slot_minutes=60)
    day = date(2026, 3, 10)  # a Tuesday
    booked = [Load(local(day, time(8)), local(day, time(8, 30))), Load(local(day, time(8, 30)), local(day, time(9)))]
    units = bookable_units(calendar, booked, local(day, time(0)), local(day, time(23)))
    assert [u.remaining for u in units] == [1, 2, 2, 2]
    overbooked = [Load(local(day, time(9)), local(day, time(10)), 3)]
    assert [u.remaining for u in bookable_units(calendar, overbooked, local(day, time(0)), local(day, time(23)))] == [2, 0, 2, 2]


# --- 2. free and busy split the open hours ------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_free_and_busy_partition_the_open_hours(scenario) -> None:  # type: ignore[no-untyped-def]
    calendar, booked, start, end = scenario
    opened = open_intervals(calendar, start, end)
    free, busy = free_and_busy(calendar, booked, start, end)
    assert_normalised(opened)
    assert_normalised(free)
    assert_normalised(busy)
    assert merge([*free, *busy]) == opened
    assert not any(f.overlaps(b) for f in free for b in busy)
    # Exact: between any two consecutive boundaries, a piece is busy iff it is open and full.
    points = {start, end}
    for i in [*opened, *free, *busy]:
        points |= {i.start, i.end}
    for load in booked:
        points |= {min(max(load.start, start), end), min(max(load.end, start), end)}
    for piece in segments(points):
        m = mid(piece)
        is_open = inside(m, opened)
        full = coverage(booked, m) >= calendar.capacity
        assert inside(m, busy) == (is_open and full), piece
        assert inside(m, free) == (is_open and not full), piece


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_open_intervals_match_the_weekly_hours_calendar_and_closures(scenario) -> None:  # type: ignore[no-untyped-def]
    calendar, _booked, start, end = scenario
    opened = open_intervals(calendar, start, end)
    before_closures = opening_intervals(calendar, start, end)
    assert_normalised(opened)
    hours = [i for day in local_days(start, end) for i in day_intervals(calendar, day)]
    # Every boundary is on the 15-minute grid, so one sample per quarter hour is exact.
    cell = start
    while cell < end:
        m = cell + Q / 2
        in_hours = inside(m, hours)
        assert inside(m, before_closures) == in_hours, cell
        assert inside(m, opened) == (in_hours and not inside(m, calendar.closures)), cell
        cell += Q
    for i in opened:
        assert start <= i.start and i.end <= end


# --- 4. slot granularity ------------------------------------------------------------------------


def expected_slots(calendar: ResourceCalendar, start: datetime, end: datetime) -> list[Interval]:
    window = Interval(start, end)
    step = timedelta(minutes=calendar.slot_minutes)
    out = []
    for day in local_days(start, end):
        for opened in day_intervals(calendar, day):
            cursor = opened.start
            while cursor + step <= opened.end:
                out.append(Interval(cursor, cursor + step))
                cursor += step
    return sorted(u for u in out if window.contains(u) and not any(u.overlaps(c) for c in calendar.closures))


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_slots_are_on_the_grid_inside_open_hours(scenario) -> None:  # type: ignore[no-untyped-def]
    calendar, _booked, start, end = scenario
    units = candidate_units(calendar, start, end)
    opened = open_intervals(calendar, start, end)
    step = timedelta(minutes=calendar.slot_minutes)
    hours = [i for day in local_days(start, end) for i in day_intervals(calendar, day)]
    for u, label in units:
        assert label == ""
        assert u.end - u.start == step
        assert any(o.contains(u) for o in opened)
        assert not any(u.overlaps(c) for c in calendar.closures)
        home = [h for h in hours if h.contains(u)]
        assert len(home) == 1
        assert (u.start - home[0].start) % step == timedelta(0)
    assert sorted(u for u, _ in units) == expected_slots(calendar, start, end)


def contiguous_runs(units: list[Interval]) -> list[list[Interval]]:
    runs: list[list[Interval]] = []
    for u in sorted(units):
        if runs and runs[-1][-1].end == u.start:
            runs[-1].append(u)
        else:
            runs.append([u])
    return runs


@settings(max_examples=50, deadline=None)
@given(scenarios(), st.data())
def test_span_checks_for_slots(scenario, data) -> None:  # type: ignore[no-untyped-def]
    calendar, _booked, start, end = scenario
    units = [u for u, _ in candidate_units(calendar, start, end)]
    assume(units)

    def expect(span: Interval, code: str | None) -> None:
        if any(span.overlaps(c) for c in calendar.closures):
            code = "closure"
        assert is_bookable_span(calendar, span) == code, span

    # Any chain of contiguous slots is bookable.
    for _ in range(3):
        run = data.draw(st.sampled_from(contiguous_runs(units)))
        i = data.draw(st.integers(0, len(run) - 1))
        j = data.draw(st.integers(i, min(i + 40, len(run) - 1)))
        expect(Interval(run[i].start, run[j].end), None)

    step = timedelta(minutes=calendar.slot_minutes)
    hours = sorted({i for day in local_days(start, end) for i in day_intervals(calendar, day)})
    # Off the grid, still inside the same opening interval: granularity.
    u = data.draw(st.sampled_from(units))
    shift = data.draw(st.sampled_from([timedelta(minutes=5), Q, timedelta(minutes=-5), -Q]))
    shifted = Interval(u.start + shift, u.end + shift)
    if abs(shift) < step and any(h.contains(shifted) for h in hours):
        expect(shifted, "granularity")
    # Shorter than a slot, on the grid: granularity.
    if step > Q:
        expect(Interval(u.start, u.end - Q), "granularity")
        longer = Interval(u.start, u.end + Q)
        if any(h.contains(longer) for h in hours):
            expect(longer, "granularity")
    # Across a break between two opening intervals of the day: opening_hours.
    for earlier, later in zip(hours, hours[1:]):
        if earlier.end < later.start:
            before = [v for v in units if v.end <= earlier.end and earlier.contains(v)]
            after = [v for v in units if v.start >= later.start and later.contains(v)]
            if before and after:
                expect(Interval(before[-1].start, after[0].end), "opening_hours")
                break


def test_slot_span_examples() -> None:
    """08:00–12:00 and 13:00–17:00 on Tuesdays, 30-minute slots, a closure 15:00–15:30."""
    day = date(2026, 3, 10)
    closure = Interval(local(day, time(15)), local(day, time(15, 30)))
    weekly = (WeeklyHours(1, time(8), time(12)), WeeklyHours(1, time(13), time(17)))
    calendar = ResourceCalendar("Asia/Shanghai", 1, weekly, slot_minutes=30, closures=(closure,))

    def span(a: time, b: time) -> str | None:
        return is_bookable_span(calendar, Interval(local(day, a), local(day, b)))

    assert span(time(8), time(8, 30)) is None
    assert span(time(8), time(12)) is None
    assert span(time(13), time(15)) is None
    assert span(time(15, 30), time(17)) is None
    assert span(time(11, 30), time(13, 30)) == "opening_hours"  # across lunch
    assert span(time(7, 30), time(8, 30)) == "opening_hours"  # before opening
    assert span(time(16, 30), time(17, 30)) == "opening_hours"  # after closing
    assert span(time(8, 15), time(8, 45)) == "granularity"  # off the grid
    assert span(time(8), time(8, 45)) == "granularity"  # not a whole number of slots
    assert span(time(14, 30), time(15, 30)) == "closure"
    wednesday = date(2026, 3, 11)  # no Wednesday hours
    assert is_bookable_span(calendar, Interval(local(wednesday, time(8)), local(wednesday, time(9)))) == "opening_hours"
    # The grid counts from each opening interval's own start.
    odd_hours = (WeeklyHours(1, time(8), time(12)), WeeklyHours(1, time(13, 15), time(17)))
    odd = ResourceCalendar("Asia/Shanghai", 1, odd_hours, slot_minutes=60)
    slots = [u for u, _ in candidate_units(odd, local(day, time(0)), local(day, time(23)))]
    assert [u.start.astimezone(SHANGHAI).time() for u in slots] == [
        time(8), time(9), time(10), time(11), time(13, 15), time(14, 15), time(15, 15)
    ]
    assert is_bookable_span(odd, Interval(local(day, time(13, 15)), local(day, time(15, 15)))) is None
    assert is_bookable_span(odd, Interval(local(day, time(14)), local(day, time(15)))) == "granularity"


def test_slots_run_through_midnight_when_the_days_touch() -> None:
    """Open round the clock with 45-minute slots: 32 a day, and a booking may cross midnight."""
    weekly = tuple(WeeklyHours(d, time(0), time(0)) for d in range(7))
    calendar = ResourceCalendar("Asia/Shanghai", 1, weekly, working_calendar=False, slot_minutes=45)
    day = date(2026, 10, 1)
    units = candidate_units(calendar, local(day, time(0)), local(day + timedelta(days=2), time(0)))
    assert len(units) == 64
    assert open_intervals(calendar, local(day, time(0)), local(day + timedelta(days=2), time(0))) == [
        Interval(local(day, time(0)), local(day + timedelta(days=2), time(0)))
    ]
    assert is_bookable_span(calendar, Interval(local(day, time(23, 15)), local(day + timedelta(days=1), time(0, 45)))) is None


# --- 5. shifts and days -------------------------------------------------------------------------


@st.composite
def shift_scenarios(draw: st.DrawFn) -> tuple[ResourceCalendar, datetime, datetime]:
    start, end = draw(windows())
    points = sorted(draw(st.lists(st.integers(0, 96), min_size=2, max_size=4, unique=True)))
    shifts = tuple(ShiftTimes(f"s{i}", quarter(a), quarter(b)) for i, (a, b) in enumerate(zip(points, points[1:])))
    closed = draw(st.sets(st.integers(0, 6), max_size=3))
    weekly = []
    for weekday in range(7):
        if weekday in closed:
            continue
        opens = draw(st.integers(0, points[0]))
        closes = draw(st.integers(points[-1], 96))
        weekly.append(WeeklyHours(weekday, quarter(opens), quarter(closes)))
    calendar = ResourceCalendar(
        timezone="Asia/Shanghai",
        capacity=draw(st.integers(1, 4)),
        weekly=tuple(weekly),
        working_calendar=draw(st.booleans()),
        booking_unit="shift",
        shifts=shifts,
        closures=draw(closures(start, end)),
    )
    return calendar, start, end


def expected_shift_units(calendar: ResourceCalendar, start: datetime, end: datetime) -> list[tuple[Interval, str]]:
    window = Interval(start, end)
    out = []
    for day in local_days(start, end):
        if not expected_weekly(calendar, day):
            continue
        for shift in calendar.shifts:
            out.append((Interval(local(day, shift.starts), local(day, shift.ends, end=True)), shift.code))
    return sorted(
        (u, code) for u, code in out if window.contains(u) and not any(u.overlaps(c) for c in calendar.closures)
    )


@settings(max_examples=60, deadline=None)
@given(shift_scenarios(), st.data())
def test_shift_units_and_spans(scenario, data) -> None:  # type: ignore[no-untyped-def]
    calendar, start, end = scenario
    units = candidate_units(calendar, start, end)
    assert sorted(units) == expected_shift_units(calendar, start, end)
    assume(units)
    ordered = sorted(u for u, _ in units)

    def expect(span: Interval, code: str | None) -> None:
        if any(span.overlaps(c) for c in calendar.closures):
            code = "closure"
        assert is_bookable_span(calendar, span) == code, span

    for _ in range(3):
        i = data.draw(st.integers(0, len(ordered) - 1))
        j = data.draw(st.integers(i, len(ordered) - 1))
        # From a shift start to a later shift end, through the closed nights and days between.
        expect(Interval(ordered[i].start, ordered[j].end), None)
        # Starting or ending inside a shift.
        expect(Interval(ordered[i].start + timedelta(minutes=5), ordered[j].end), "granularity")
        expect(Interval(ordered[i].start, ordered[j].end - timedelta(minutes=5)), "granularity")


def test_shift_examples_across_the_night_and_the_national_day() -> None:
    weekly = tuple(WeeklyHours(d, time(8), time(0)) for d in range(5))
    shifts = (ShiftTimes("day", time(8), time(16)), ShiftTimes("evening", time(16), time(0)))
    calendar = ResourceCalendar("Asia/Shanghai", 2, weekly, booking_unit="shift", shifts=shifts)

    def at(d: int, clock: time, *, month: int = 10, end: bool = False) -> datetime:
        return local(date(2026, month, d), clock, end=end)

    units = candidate_units(calendar, at(28, time(0), month=9), at(12, time(0)))
    days = sorted({u.start.astimezone(SHANGHAI).date() for u, _ in units})
    # Mon 28 Sep – Wed 30 Sep, Thu 8, Fri 9 and the make-up Saturday 10 Oct, Mon 12 not in the window.
    assert days == [
        date(2026, 9, 28), date(2026, 9, 29), date(2026, 9, 30), date(2026, 10, 8), date(2026, 10, 9), date(2026, 10, 10)
    ]
    assert [label for _, label in units[:2]] == ["day", "evening"]
    assert units[1][0] == Interval(at(28, time(16), month=9), at(29, time(0), month=9))
    assert units[-1] == (Interval(at(10, time(16)), at(10, time(0), end=True)), "evening")
    # Evening shift to the next day's day shift: runs through the closed night.
    assert is_bookable_span(calendar, Interval(at(29, time(16), month=9), at(30, time(16), month=9))) is None
    # From before the holiday to after it.
    assert is_bookable_span(calendar, Interval(at(30, time(8), month=9), at(8, time(16)))) is None
    assert is_bookable_span(calendar, Interval(at(29, time(12), month=9), at(29, time(0), month=9, end=True))) == "granularity"
    assert is_bookable_span(calendar, Interval(at(29, time(8), month=9), at(29, time(12), month=9))) == "granularity"
    assert is_bookable_span(calendar, Interval(at(29, time(2), month=9), at(29, time(4), month=9))) == "opening_hours"
    assert is_bookable_span(calendar, Interval(at(2, time(8)), at(2, time(16)))) == "opening_hours"  # holiday


@settings(max_examples=40, deadline=None)
@given(scenarios(unit="day"), st.data())
def test_day_units_and_spans(scenario, data) -> None:  # type: ignore[no-untyped-def]
    calendar, _booked, start, end = scenario
    window = Interval(start, end)
    expected = []
    for day in local_days(start, end):
        hours = day_intervals(calendar, day)
        if hours:
            u = Interval(hours[0].start, hours[-1].end)
            if window.contains(u) and not any(u.overlaps(c) for c in calendar.closures):
                expected.append((u, day.isoformat()))
    units = candidate_units(calendar, start, end)
    assert units == expected
    assume(units)
    i = data.draw(st.integers(0, len(units) - 1))
    j = data.draw(st.integers(i, len(units) - 1))
    span = Interval(units[i][0].start, units[j][0].end)
    closed = any(span.overlaps(c) for c in calendar.closures)
    assert is_bookable_span(calendar, span) == ("closure" if closed else None)
    if units[i][0].end - units[i][0].start > Q:
        late = Interval(units[i][0].start + Q, units[j][0].end)
        assert is_bookable_span(calendar, late) == ("closure" if closed else "granularity")


# --- 6. load profile ----------------------------------------------------------------------------

SMALL_LOADS = st.lists(
    st.tuples(st.integers(-10, 130), st.integers(1, 60), st.integers(1, 4)).map(
        lambda t: Load(EPOCH + timedelta(minutes=t[0]), EPOCH + timedelta(minutes=t[0] + t[1]), t[2])
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(SMALL_LOADS, st.integers(0, 60), st.integers(1, 90))
def test_load_profile_against_a_minute_count(booked: list[Load], offset: int, length: int) -> None:
    window = Interval(EPOCH + timedelta(minutes=offset), EPOCH + timedelta(minutes=offset + length))
    profile = load_profile(booked, window)
    for (a, level_a), (b, level_b) in zip(profile, profile[1:]):
        assert a.end <= b.start
        if a.end == b.start:
            assert level_a != level_b  # equal neighbours are joined
    for step, level in profile:
        assert level > 0
        assert window.contains(step)
    counts = []
    for minute in range(length):
        t = window.start + timedelta(minutes=minute)
        count = coverage(booked, t)
        counts.append(count)
        in_profile = [level for step, level in profile if step.start <= t < step.end]
        assert in_profile == ([count] if count else [])
    assert peak_load(booked, window) == max(counts)


def test_load_profile_examples() -> None:
    m = lambda n: EPOCH + timedelta(minutes=n)  # noqa: E731
    booked = [Load(m(0), m(60)), Load(m(30), m(90), 2), Load(m(60), m(120))]
    assert load_profile(booked, Interval(m(0), m(120))) == [
        (Interval(m(0), m(30)), 1),
        (Interval(m(30), m(90)), 3),
        (Interval(m(90), m(120)), 1),
    ]
    assert peak_load(booked, Interval(m(0), m(30))) == 1
    assert peak_load(booked, Interval(m(90), m(200))) == 1
    assert peak_load(booked, Interval(m(120), m(200))) == 0  # half-open: ends do not count
    assert peak_load([], Interval(m(0), m(1))) == 0


# --- 7. merge and subtract ----------------------------------------------------------------------

INTERVALS = st.lists(
    st.tuples(st.integers(0, 200), st.integers(1, 60)).map(
        lambda t: Interval(EPOCH + timedelta(minutes=t[0]), EPOCH + timedelta(minutes=t[0] + t[1]))
    ),
    max_size=10,
)


def intersection(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out = []
    for x in a:
        for y in b:
            s, e = max(x.start, y.start), min(x.end, y.end)
            if s < e:
                out.append(Interval(s, e))
    return merge(out)


def minutes_in(intervals: Sequence[Interval]) -> set[int]:
    minute = timedelta(minutes=1)
    return {m for i in intervals for m in range((i.start - EPOCH) // minute, (i.end - EPOCH) // minute)}


@settings(max_examples=200, deadline=None)
@given(INTERVALS, INTERVALS)
def test_merge_and_subtract_algebra(a: list[Interval], b: list[Interval]) -> None:
    merged = merge(a)
    assert_normalised(merged)
    assert minutes_in(merged) == minutes_in(a)
    assert merge(merged) == merged
    assert merge(list(reversed(a))) == merged

    rest = subtract(a, b)
    assert_normalised(rest)
    assert not any(r.overlaps(c) for r in rest for c in b)
    assert all(any(m.contains(r) for m in merged) for r in rest)
    assert merge([*rest, *intersection(a, b)]) == merged
    assert minutes_in(rest) == minutes_in(a) - minutes_in(b)
    assert subtract(a, []) == merged
    assert subtract(a, a) == []


def test_merge_joins_touching_intervals() -> None:
    m = lambda n: EPOCH + timedelta(minutes=n)  # noqa: E731
    assert merge([Interval(m(30), m(40)), Interval(m(0), m(10)), Interval(m(10), m(20))]) == [
        Interval(m(0), m(20)),
        Interval(m(30), m(40)),
    ]
    assert subtract([Interval(m(0), m(60))], [Interval(m(10), m(20)), Interval(m(15), m(30))]) == [
        Interval(m(0), m(10)),
        Interval(m(30), m(60)),
    ]
    assert clip([Interval(m(0), m(60)), Interval(m(70), m(80))], Interval(m(50), m(70))) == [Interval(m(50), m(60))]


def test_intervals_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Interval(datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC))


# --- time zones ---------------------------------------------------------------------------------


def test_local_hours_are_converted_day_by_day() -> None:
    """Shanghai is UTC+8; a zone with daylight saving shifts its UTC hours on the change day."""
    weekly = tuple(WeeklyHours(d, time(8), time(12)) for d in range(7))
    shanghai = ResourceCalendar("Asia/Shanghai", 1, weekly, working_calendar=False)
    opened = open_intervals(shanghai, datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))
    assert opened == [Interval(datetime(2026, 3, 10, 0, tzinfo=UTC), datetime(2026, 3, 10, 4, tzinfo=UTC))]
    berlin = ResourceCalendar("Europe/Berlin", 1, weekly, working_calendar=False)
    opened = open_intervals(berlin, datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC))
    assert opened == [
        Interval(datetime(2026, 3, 28, 7, tzinfo=UTC), datetime(2026, 3, 28, 11, tzinfo=UTC)),  # CET
        Interval(datetime(2026, 3, 29, 6, tzinfo=UTC), datetime(2026, 3, 29, 10, tzinfo=UTC)),  # CEST
    ]
