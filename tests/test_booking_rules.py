"""Booking rules: each rule on its own, with the numbers a person needs to comply."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility_share.bookings.availability import Interval, Load, ResourceCalendar, ShiftTimes, WeeklyHours
from facility_share.bookings.rules import MESSAGES, BookingRules, Context, Request, Violation, check_request
from facility_share.bookings.working_calendar import DayKind

SHANGHAI = ZoneInfo("Asia/Shanghai")
TUESDAY = date(2026, 3, 10)


def at(clock: time, day: date = TUESDAY) -> datetime:
    """A local Shanghai time, in UTC."""
    return datetime.combine(day, clock, tzinfo=SHANGHAI).astimezone(UTC)


def plain_weeks(day: date) -> DayKind:
    """A calendar without holidays, so that these tests do not depend on the real one."""
    return DayKind.WEEKEND if day.weekday() >= 5 else DayKind.WORKDAY


WEEKLY = tuple(h for d in range(5) for h in (WeeklyHours(d, time(8), time(12)), WeeklyHours(d, time(13), time(17))))
CALENDAR = ResourceCalendar("Asia/Shanghai", 3, WEEKLY, slot_minutes=30)
RULES = BookingRules(
    min_minutes=60,
    max_minutes=180,
    lead_minutes=24 * 60,
    horizon_days=30,
    self_operation_allowed=True,
    qualification_required=True,
)
NOW = at(time(9), date(2026, 3, 2))  # Monday of the week before
GOOD = Request(at(time(9)), at(time(10)))  # Tuesday 09:00–10:00, one hour
CONTEXT = Context(now=NOW, qualified_until=date(2026, 12, 31))


def check(
    request: Request = GOOD,
    context: Context = CONTEXT,
    rules: BookingRules = RULES,
    calendar: ResourceCalendar = CALENDAR,
) -> list[Violation]:
    return check_request(rules, calendar, request, context, plain_weeks)


def only(violations: list[Violation], rule: str) -> Violation:
    assert [v.rule for v in violations] == [rule]
    return violations[0]


def test_a_valid_request_passes() -> None:
    assert check() == []
    assert check(Request(at(time(8)), at(time(11)), quantity=3, mode="self_operated")) == []
    assert check(Request(at(time(13)), at(time(17)), 1), rules=replace(RULES, max_minutes=240)) == []


def test_every_rule_has_a_message() -> None:
    for rule in ("time_order", "opening_hours", "closure", "granularity", "min_length", "max_length", "lead_time",
                 "horizon", "quantity", "capacity", "mode", "self_operation", "qualification", "open_requests"):
        assert rule in MESSAGES


@pytest.mark.parametrize("end", [at(time(9)), at(time(8, 30))])
def test_time_order(end: datetime) -> None:
    # Nothing else is checked when the end is not after the start.
    v = only(check(Request(at(time(9)), end, quantity=99, mode="bogus")), "time_order")
    assert "end must be after the start" in str(v)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (at(time(17)), at(time(18))),  # after closing
        (at(time(7)), at(time(8))),  # before opening
        (at(time(11, 30)), at(time(13, 30))),  # across the lunch break
        (at(time(9), date(2026, 3, 14)), at(time(10), date(2026, 3, 14))),  # Saturday
    ],
)
def test_opening_hours(start: datetime, end: datetime) -> None:
    v = only(check(Request(start, end)), "opening_hours")
    assert "opening hours" in str(v)


def test_opening_hours_on_a_holiday() -> None:
    v = check_request(RULES, CALENDAR, GOOD, CONTEXT, lambda d: DayKind.HOLIDAY)
    assert only(v, "opening_hours").rule == "opening_hours"


def test_closure() -> None:
    calendar = replace(CALENDAR, closures=(Interval(at(time(9, 30)), at(time(9, 45))),))
    v = only(check(calendar=calendar), "closure")
    assert "closed" in str(v)
    # A closure elsewhere does not matter.
    elsewhere = replace(CALENDAR, closures=(Interval(at(time(10)), at(time(12))),))
    assert check(calendar=elsewhere) == []


def test_granularity() -> None:
    v = only(check(Request(at(time(9, 15)), at(time(10, 15)))), "granularity")
    assert str(v) == "bookings must start and end on the resource's slot boundaries; choose whole slots"
    assert v.values == {"unit": "slot"}
    only(check(Request(at(time(9)), at(time(10, 10)))), "granularity")


def test_granularity_names_the_shift() -> None:
    weekly = tuple(WeeklyHours(d, time(8), time(0)) for d in range(5))
    shifts = (ShiftTimes("day", time(8), time(16)), ShiftTimes("evening", time(16), time(0)))
    calendar = ResourceCalendar("Asia/Shanghai", 1, weekly, booking_unit="shift", shifts=shifts)
    rules = replace(RULES, max_minutes=7 * 1440)
    assert check(Request(at(time(8)), at(time(16))), calendar=calendar, rules=rules) == []
    # Evening to the next day's day shift, through the closed night.
    assert check(Request(at(time(16)), at(time(16), TUESDAY + timedelta(days=1))), calendar=calendar, rules=rules) == []
    v = only(check(Request(at(time(12)), at(time(16))), calendar=calendar, rules=rules), "granularity")
    assert "shift boundaries" in str(v) and "whole shifts" in str(v)


def test_min_length() -> None:
    v = only(check(Request(at(time(9)), at(time(9, 30)))), "min_length")
    assert v.values == {"minutes": 30, "min_minutes": 60}
    assert "30 minutes" in str(v) and "minimum is 60 minutes" in str(v)


def test_max_length() -> None:
    v = only(check(Request(at(time(8)), at(time(12)))), "max_length")
    assert v.values == {"minutes": 240, "max_minutes": 180}
    assert "240 minutes" in str(v) and "maximum is 180 minutes" in str(v)


def test_max_length_is_capped_at_31_days() -> None:
    weekly = tuple(WeeklyHours(d, time(0), time(0)) for d in range(7))
    calendar = ResourceCalendar("Asia/Shanghai", 1, weekly, working_calendar=False, slot_minutes=60)
    rules = replace(RULES, max_minutes=10**9, horizon_days=400)
    start = at(time(0))
    assert check(Request(start, start + timedelta(days=31)), rules=rules, calendar=calendar) == []
    v = only(check(Request(start, start + timedelta(days=32)), rules=rules, calendar=calendar), "max_length")
    assert v.values["max_minutes"] == 31 * 1440
    assert str(31 * 1440) in str(v) and str(32 * 1440) in str(v)


def test_lead_time() -> None:
    now = GOOD.start - timedelta(hours=23)
    v = only(check(context=replace(CONTEXT, now=now)), "lead_time")
    assert "at least 24 hours ahead" in str(v)
    assert v.values["earliest"] == (now + timedelta(hours=24)).isoformat(timespec="minutes")
    assert v.values["earliest"] in str(v)
    # Exactly the lead time ahead is fine.
    assert check(context=replace(CONTEXT, now=GOOD.start - timedelta(hours=24))) == []
    # In the past is too late too.
    only(check(context=replace(CONTEXT, now=GOOD.end)), "lead_time")


def test_horizon() -> None:
    now = GOOD.start - timedelta(days=30, minutes=30)
    v = only(check(context=replace(CONTEXT, now=now)), "horizon")
    assert "at most 30 days ahead" in str(v)
    assert v.values["latest"] == (now + timedelta(days=30)).isoformat(timespec="minutes")
    assert v.values["latest"] in str(v)
    assert check(context=replace(CONTEXT, now=GOOD.start - timedelta(days=30))) == []


@pytest.mark.parametrize("quantity", [0, -1, 4, 100])
def test_quantity(quantity: int) -> None:
    v = only(check(replace(GOOD, quantity=quantity)), "quantity")
    assert v.values == {"capacity": 3}
    assert "between 1 and the capacity, 3" in str(v)


def test_capacity_three_overlapping_bookings_fill_a_capacity_of_three() -> None:
    loads = (
        Load(at(time(8)), at(time(9, 30))),
        Load(at(time(9, 30)), at(time(11))),  # ends the first: still three at once from 9:30
        Load(at(time(9)), at(time(10))),
        Load(at(time(9, 30)), at(time(10, 30))),
    )
    context = replace(CONTEXT, loads=loads)
    v = only(check(context=context), "capacity")
    assert v.values == {"remaining": 0, "capacity": 3}
    assert "only 0 of 3 places are free" in str(v)
    assert check(Request(at(time(10, 30)), at(time(11, 30))), context=context) == []


def test_capacity_counts_quantities() -> None:
    context = replace(CONTEXT, loads=(Load(at(time(9, 30)), at(time(10)), 2),))
    assert check(replace(GOOD, quantity=1), context=context) == []
    v = only(check(replace(GOOD, quantity=2), context=context), "capacity")
    assert "only 1 of 3" in str(v)
    # Overbooked (a manager's override): remaining is reported as 0, not negative.
    context = replace(CONTEXT, loads=(Load(at(time(9)), at(time(10)), 5),))
    assert only(check(context=context), "capacity").values["remaining"] == 0


def test_capacity_ignores_bookings_that_only_touch() -> None:
    context = replace(CONTEXT, loads=(Load(at(time(8)), at(time(9)), 3), Load(at(time(10)), at(time(11)), 3)))
    assert check(replace(GOOD, quantity=3), context=context) == []


def test_mode() -> None:
    v = only(check(replace(GOOD, mode="bogus")), "mode")
    assert "staff_operated or self_operated" in str(v)


def test_self_operation() -> None:
    rules = replace(RULES, self_operation_allowed=False)
    v = only(check(replace(GOOD, mode="self_operated"), rules=rules), "self_operation")
    assert "choose staff_operated" in str(v)
    assert check(rules=rules) == []  # staff-operated is fine


def test_qualification_must_last_through_the_end_date() -> None:
    request = replace(GOOD, mode="self_operated")
    v = only(check(request, context=replace(CONTEXT, qualified_until=None)), "qualification")
    assert v.values == {"end_date": "2026-03-10"}
    assert "valid until 2026-03-10" in str(v)
    assert only(check(request, context=replace(CONTEXT, qualified_until=date(2026, 3, 9))), "qualification")
    assert check(request, context=replace(CONTEXT, qualified_until=date(2026, 3, 10))) == []
    assert check(request, context=replace(CONTEXT, qualified_until=date(2027, 1, 1))) == []
    # Not needed when staff operate it, nor when the resource needs no qualification.
    assert check(context=replace(CONTEXT, qualified_until=None)) == []
    no_training = replace(RULES, qualification_required=False)
    assert check(request, context=replace(CONTEXT, qualified_until=None), rules=no_training) == []


def test_qualification_for_a_multi_day_booking_uses_the_last_day() -> None:
    weekly = tuple(WeeklyHours(d, time(8), time(0)) for d in range(5))
    shifts = (ShiftTimes("day", time(8), time(16)), ShiftTimes("evening", time(16), time(0)))
    calendar = ResourceCalendar("Asia/Shanghai", 1, weekly, booking_unit="shift", shifts=shifts)
    rules = replace(RULES, max_minutes=7 * 1440)
    request = Request(at(time(8)), at(time(16), date(2026, 3, 12)), mode="self_operated")
    context = replace(CONTEXT, qualified_until=date(2026, 3, 11))
    v = only(check(request, context=context, rules=rules, calendar=calendar), "qualification")
    assert "2026-03-12" in str(v)
    assert check(request, context=replace(context, qualified_until=date(2026, 3, 12)), rules=rules, calendar=calendar) == []


def test_qualification_end_date_is_the_local_date() -> None:
    weekly = tuple(WeeklyHours(d, time(0), time(0)) for d in range(7))
    calendar = ResourceCalendar("Asia/Shanghai", 1, weekly, working_calendar=False, slot_minutes=60)
    wednesday = date(2026, 3, 11)
    request = Request(at(time(2), wednesday), at(time(6), wednesday), mode="self_operated")
    context = replace(CONTEXT, qualified_until=date(2026, 3, 10))
    v = only(check(request, context=context, rules=replace(RULES, max_minutes=600), calendar=calendar), "qualification")
    assert v.values == {"end_date": "2026-03-11"}


def test_open_requests() -> None:
    v = only(check(context=replace(CONTEXT, open_requests=10)), "open_requests")
    assert v.values == {"open": 10, "limit": 10}
    assert "already has 10 requests" in str(v) and "the limit is 10" in str(v)
    assert check(context=replace(CONTEXT, open_requests=9)) == []
    only(check(context=replace(CONTEXT, open_requests=3, max_open_requests=2)), "open_requests")


def test_several_rules_are_reported_in_order() -> None:
    request = Request(at(time(9, 15)), at(time(9, 45)), quantity=4, mode="self_operated")
    context = replace(CONTEXT, now=at(time(9)), qualified_until=None, open_requests=10)
    rules = [v.rule for v in check(request, context=context)]
    assert rules == ["min_length", "lead_time", "granularity", "qualification", "quantity", "open_requests"]


@settings(max_examples=150, deadline=None)
@given(
    start=st.integers(0, 48),
    length=st.integers(1, 24),
    quantity=st.integers(1, 3),
    loads=st.lists(st.tuples(st.integers(0, 48), st.integers(1, 24), st.integers(1, 3)), max_size=5),
)
def test_capacity_rule_agrees_with_a_count(start: int, length: int, quantity: int, loads: list[tuple[int, int, int]]) -> None:
    """On a 24/7 resource with 15-minute slots, only capacity can fail; it fails exactly when
    some quarter hour of the request would hold more than the capacity."""
    weekly = tuple(WeeklyHours(d, time(0), time(0)) for d in range(7))
    calendar = ResourceCalendar("Asia/Shanghai", 3, weekly, working_calendar=False, slot_minutes=15)
    rules = replace(RULES, min_minutes=15, max_minutes=1440, lead_minutes=0)
    base = at(time(0))
    q = timedelta(minutes=15)
    booked = [Load(base + s * q, base + (s + n) * q, k) for s, n, k in loads]
    request = Request(base + start * q, base + (start + length) * q, quantity)
    peak = max(sum(k for s, n, k in loads if s <= t < s + n) for t in range(start, start + length))
    violations = check_request(rules, calendar, request, replace(CONTEXT, loads=booked), plain_weeks)
    if quantity + peak <= 3:
        assert violations == []
    else:
        v = only(violations, "capacity")
        assert v.values == {"remaining": max(0, 3 - peak), "capacity": 3}


# A shift resource configured like WQ-YHLG-IM in the shipped catalogue: Monday–Friday
# 08:00–24:00, a day and an evening shift, slot_minutes 480, 480–2400 minutes. The catalogue
# page presents those limits as "1 shift to 5 shifts" (max_minutes // slot_minutes).
SHIFT_WEEKLY = tuple(WeeklyHours(d, time(8), time(0)) for d in range(5))
SHIFTS = (ShiftTimes("day", time(8), time(16)), ShiftTimes("evening", time(16), time(0)))
SHIFT_CALENDAR = ResourceCalendar("Asia/Shanghai", 2, SHIFT_WEEKLY, booking_unit="shift", slot_minutes=480, shifts=SHIFTS)
SHIFT_RULES = replace(RULES, min_minutes=480, max_minutes=2400, lead_minutes=48 * 60, horizon_days=60)
MONDAY = date(2026, 3, 9)


def test_shift_bookings_of_one_to_four_shifts_pass() -> None:
    def request(last_day: int, last_end: time) -> Request:
        return Request(at(time(8), MONDAY), at(last_end, MONDAY + timedelta(days=last_day)))

    assert check(request(0, time(16)), rules=SHIFT_RULES, calendar=SHIFT_CALENDAR) == []  # 1 shift
    assert check(Request(at(time(8), MONDAY), at(time(0), MONDAY + timedelta(days=1))), rules=SHIFT_RULES,
                 calendar=SHIFT_CALENDAR) == []  # 2 shifts, to 24:00
    assert check(request(1, time(16)), rules=SHIFT_RULES, calendar=SHIFT_CALENDAR) == []  # 3 shifts over a night
    # Evening and the next day shift: 2 shifts, 24 hours of wall-clock time.
    evening = Request(at(time(16), MONDAY), at(time(16), MONDAY + timedelta(days=1)))
    assert check(evening, rules=SHIFT_RULES, calendar=SHIFT_CALENDAR) == []


def test_a_shift_booking_of_the_advertised_maximum_number_of_shifts_passes() -> None:
    five_shifts = Request(at(time(8), MONDAY), at(time(16), MONDAY + timedelta(days=2)))
    assert check(five_shifts, rules=SHIFT_RULES, calendar=SHIFT_CALENDAR) == []


# ``slot_span_problem`` is the booking path's fast form of ``is_bookable_span`` for slot
# resources; it must answer the same for every calendar and span, odd ones included
# (overlapping or inverted hours, a daylight-saving timezone, closures, holidays).
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC")
clocks = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 20, 30, 45]))
weekly_hours = st.builds(WeeklyHours, st.integers(0, 6), clocks, clocks)
holidays = st.sets(st.integers(0, 6), max_size=2)


@settings(max_examples=600, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    weekly=st.lists(weekly_hours, max_size=9),
    around_the_clock=st.booleans(),
    slot_minutes=st.sampled_from([10, 15, 30, 45, 60, 90, 480]),
    working_calendar=st.booleans(),
    closed_weekdays=holidays,
    day=st.dates(date(2026, 1, 1), date(2026, 12, 31)),
    start_minutes=st.integers(0, 3 * 1440).map(lambda m: m - m % 15),
    length_minutes=st.integers(15, 2 * 1440).map(lambda m: m - m % 15),
    closures=st.lists(st.tuples(st.integers(0, 4 * 1440), st.integers(15, 600)), max_size=2),
)
def test_slot_span_problem_agrees_with_is_bookable_span(zone, weekly, around_the_clock, slot_minutes, working_calendar,
                                                       closed_weekdays, day, start_minutes, length_minutes, closures) -> None:
    from facility_share.bookings.availability import is_bookable_span
    from facility_share.bookings.rules import slot_span_problem

    if around_the_clock:
        weekly = [*weekly, *(WeeklyHours(d, time(0), time(0)) for d in range(7))]
    origin = datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    calendar = ResourceCalendar(
        zone, 1, tuple(weekly), working_calendar=working_calendar, slot_minutes=slot_minutes,
        closures=tuple(Interval(origin + timedelta(minutes=s), origin + timedelta(minutes=s + n)) for s, n in closures),
    )

    def classify_day(d: date) -> DayKind:
        if d.weekday() in closed_weekdays:
            return DayKind.HOLIDAY
        return DayKind.MAKEUP_WORKDAY if d.day == 1 else plain_weeks(d)

    span = Interval(origin + timedelta(minutes=start_minutes), origin + timedelta(minutes=start_minutes + length_minutes))
    assert slot_span_problem(calendar, span, classify_day) == is_bookable_span(calendar, span, classify_day)


def test_slot_span_problem_on_the_usual_cases() -> None:
    from facility_share.bookings.rules import slot_span_problem

    assert slot_span_problem(CALENDAR, Interval(at(time(9)), at(time(10))), plain_weeks) is None
    assert slot_span_problem(CALENDAR, Interval(at(time(9, 15)), at(time(10, 15))), plain_weeks) == "granularity"
    assert slot_span_problem(CALENDAR, Interval(at(time(11, 30)), at(time(13, 30))), plain_weeks) == "opening_hours"
    closed = replace(CALENDAR, closures=(Interval(at(time(9, 30)), at(time(9, 45))),))
    assert slot_span_problem(closed, Interval(at(time(9)), at(time(10))), plain_weeks) == "closure"
