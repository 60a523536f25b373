"""China's working calendar (调休): known 2026 dates from the published arrangement, the
provisional 2027 calendar, and how a resource's opening hours follow it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility_share.bookings.availability import (
    Interval,
    ResourceCalendar,
    WeeklyHours,
    candidate_units,
    hours_for_day,
    open_intervals,
    opening_intervals,
)
from facility_share.bookings.working_calendar import DayKind, classify, is_published

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=SHANGHAI).astimezone(UTC)


def local_day_window(day: date, days: int = 1) -> tuple[datetime, datetime]:
    return local(day, 0), local(day + timedelta(days=days), 0)


# --- classify -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "kind"),
    [
        (date(2026, 1, 1), DayKind.HOLIDAY),  # New Year's Day (Thursday)
        (date(2026, 1, 2), DayKind.HOLIDAY),  # Friday folded into the New Year holiday
        (date(2026, 1, 3), DayKind.HOLIDAY),  # Saturday inside the holiday
        (date(2026, 1, 4), DayKind.MAKEUP_WORKDAY),  # Sunday worked (调休)
        (date(2026, 2, 14), DayKind.MAKEUP_WORKDAY),  # Saturday before the Spring Festival
        (date(2026, 2, 17), DayKind.HOLIDAY),  # Spring Festival
        (date(2026, 2, 28), DayKind.MAKEUP_WORKDAY),
        (date(2026, 10, 1), DayKind.HOLIDAY),  # National Day
        (date(2026, 10, 4), DayKind.HOLIDAY),  # a Sunday inside the National Day holiday
        (date(2026, 10, 7), DayKind.HOLIDAY),
        (date(2026, 10, 8), DayKind.WORKDAY),
        (date(2026, 10, 10), DayKind.MAKEUP_WORKDAY),  # Saturday worked for National Day
        (date(2026, 10, 11), DayKind.WEEKEND),  # the Sunday after is an ordinary weekend day
        (date(2026, 3, 10), DayKind.WORKDAY),  # an ordinary Tuesday
        (date(2026, 10, 13), DayKind.WORKDAY),  # an ordinary Tuesday
        (date(2026, 3, 14), DayKind.WEEKEND),  # an ordinary Saturday
        (date(2026, 3, 15), DayKind.WEEKEND),  # an ordinary Sunday
    ],
)
def test_classify_known_2026_days(day: date, kind: DayKind) -> None:
    assert classify(day) is kind
    assert is_published(day)


def test_national_day_2026_is_seven_holidays_then_a_makeup_saturday() -> None:
    kinds = [classify(date(2026, 10, d)) for d in range(1, 12)]
    assert kinds == [DayKind.HOLIDAY] * 7 + [DayKind.WORKDAY, DayKind.WORKDAY, DayKind.MAKEUP_WORKDAY, DayKind.WEEKEND]
    assert date(2026, 10, 10).weekday() == 5


def test_2027_is_provisional_with_statutory_holidays() -> None:
    assert classify(date(2027, 1, 1)) is DayKind.HOLIDAY
    assert classify(date(2027, 10, 1)) is DayKind.HOLIDAY
    assert not is_published(date(2027, 1, 1))
    assert not is_published(date(2027, 6, 1))
    # Ordinary days of an unpublished year are still weekdays and weekends.
    assert classify(date(2027, 3, 9)) is DayKind.WORKDAY  # Tuesday
    assert classify(date(2027, 3, 13)) is DayKind.WEEKEND  # Saturday
    # No make-up days are invented for an unpublished year.
    year = [date(2027, 1, 1) + timedelta(days=i) for i in range(365)]
    assert DayKind.MAKEUP_WORKDAY not in {classify(d) for d in year}


@settings(max_examples=150, deadline=None)
@given(st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)))
def test_classify_is_consistent_with_the_weekday(day: date) -> None:
    kind = classify(day)
    weekend = day.weekday() >= 5
    if kind is DayKind.WORKDAY:
        assert not weekend
    if kind is DayKind.WEEKEND:
        assert weekend
    if kind is DayKind.MAKEUP_WORKDAY:
        assert weekend  # only a weekend day can be worked in exchange
    assert is_published(day) == (day.year <= 2026)


# --- opening hours follow the calendar (调休) ---------------------------------------------------

MONDAY = (WeeklyHours(0, time(9, 0), time(12, 0)), WeeklyHours(0, time(13, 30), time(17, 15)))
OTHER_WEEKDAYS = tuple(WeeklyHours(d, time(8, 0), time(16, 0)) for d in range(1, 5))


def weekday_calendar(working_calendar: bool) -> ResourceCalendar:
    return ResourceCalendar("Asia/Shanghai", 1, MONDAY + OTHER_WEEKDAYS, working_calendar=working_calendar, slot_minutes=15)


def hours_on(calendar: ResourceCalendar, day: date) -> list[tuple[time, time]]:
    """The open intervals on a local day, as local clock times."""
    start, end = local_day_window(day)
    return [
        (i.start.astimezone(SHANGHAI).time(), i.end.astimezone(SHANGHAI).time())
        for i in open_intervals(calendar, start, end)
    ]


def test_makeup_saturday_opens_with_monday_hours() -> None:
    calendar = weekday_calendar(True)
    monday = [(h.opens, h.closes) for h in MONDAY]
    assert hours_on(calendar, date(2026, 10, 10)) == monday
    assert hours_on(calendar, date(2026, 10, 12)) == monday  # the real Monday after
    assert hours_on(calendar, date(2026, 1, 4)) == monday  # a make-up Sunday
    assert hours_on(calendar, date(2026, 2, 14)) == monday
    # Slots are offered on the make-up day, on Monday's grid.
    start, end = local_day_window(date(2026, 10, 10))
    slots = candidate_units(calendar, start, end)
    assert len(slots) == (180 + 225) // 15
    assert slots[0][0] == Interval(local(date(2026, 10, 10), 9), local(date(2026, 10, 10), 9, 15))


def test_national_day_holidays_are_closed() -> None:
    calendar = weekday_calendar(True)
    for d in range(1, 8):
        day = date(2026, 10, d)
        assert hours_on(calendar, day) == [], day
        start, end = local_day_window(day)
        assert candidate_units(calendar, start, end) == []
    # The whole week in one window: only the 8th, 9th and 10th are open.
    start, end = local_day_window(date(2026, 10, 1), 11)
    opened = open_intervals(calendar, start, end)
    assert {i.start.astimezone(SHANGHAI).date() for i in opened} == {date(2026, 10, 8), date(2026, 10, 9), date(2026, 10, 10)}
    assert hours_on(calendar, date(2026, 10, 8)) == [(time(8), time(16))]
    assert hours_on(calendar, date(2026, 10, 11)) == []  # ordinary Sunday, no Sunday hours


def test_without_the_working_calendar_holidays_use_their_weekday_hours() -> None:
    calendar = weekday_calendar(False)
    for d in range(1, 8):
        day = date(2026, 10, d)
        expected = [(h.opens, h.closes) for h in (MONDAY + OTHER_WEEKDAYS) if h.weekday == day.weekday()]
        assert hours_on(calendar, day) == expected, day
    assert hours_on(calendar, date(2026, 10, 1)) == [(time(8), time(16))]  # a Thursday
    assert hours_on(calendar, date(2026, 10, 5)) == [(h.opens, h.closes) for h in MONDAY]  # a Monday
    # A make-up Saturday is just a Saturday: no Saturday hours, closed.
    assert hours_on(calendar, date(2026, 10, 10)) == []
    assert hours_on(calendar, date(2026, 10, 4)) == []  # Sunday


def test_makeup_day_without_monday_hours_uses_the_first_weekday_with_hours() -> None:
    weekly = (WeeklyHours(2, time(10), time(11)), WeeklyHours(1, time(7, 45), time(9, 15)), WeeklyHours(3, time(6), time(7)))
    calendar = ResourceCalendar("Asia/Shanghai", 1, weekly)
    assert hours_on(calendar, date(2026, 10, 10)) == [(time(7, 45), time(9, 15))]  # Tuesday's
    weekend_only = ResourceCalendar("Asia/Shanghai", 1, (WeeklyHours(5, time(9), time(10)),))
    assert hours_on(weekend_only, date(2026, 10, 10)) == []  # no weekday hours to borrow
    assert hours_on(weekend_only, date(2026, 10, 17)) == [(time(9), time(10))]  # ordinary Saturday


def test_2027_holidays_close_a_calendar_resource() -> None:
    calendar = weekday_calendar(True)
    assert hours_on(calendar, date(2027, 1, 1)) == []  # Friday, New Year
    assert hours_on(calendar, date(2027, 1, 4)) == [(h.opens, h.closes) for h in MONDAY]
    assert hours_on(weekday_calendar(False), date(2027, 1, 1)) == [(time(8), time(16))]


def test_hours_for_day_uses_the_injected_classifier() -> None:
    calendar = weekday_calendar(True)
    tuesday = date(2026, 3, 10)
    assert hours_for_day(calendar, tuesday, lambda d: DayKind.HOLIDAY) == []
    assert hours_for_day(calendar, tuesday, lambda d: DayKind.WORKDAY) == [OTHER_WEEKDAYS[0]]
    saturday = date(2026, 3, 14)
    assert hours_for_day(calendar, saturday, lambda d: DayKind.MAKEUP_WORKDAY) == list(MONDAY)
    assert hours_for_day(calendar, saturday, lambda d: DayKind.WEEKEND) == []


KIND_DAYS = st.one_of(
    st.dates(min_value=date(2026, 9, 20), max_value=date(2026, 10, 20)),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 3, 10)),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)),
)


@settings(max_examples=120, deadline=None)
@given(day=KIND_DAYS, working_calendar=st.booleans())
def test_opening_hours_on_any_day_follow_the_day_kind(day: date, working_calendar: bool) -> None:
    weekly = MONDAY + OTHER_WEEKDAYS + (WeeklyHours(5, time(10), time(14)), WeeklyHours(6, time(22), time(0)))
    calendar = ResourceCalendar("Asia/Shanghai", 2, weekly, working_calendar=working_calendar)
    kind = classify(day)
    if not working_calendar:
        expected_weekday: int | None = day.weekday()
    elif kind is DayKind.HOLIDAY:
        expected_weekday = None
    elif kind is DayKind.MAKEUP_WORKDAY:
        expected_weekday = 0
    else:
        expected_weekday = day.weekday()
    expected = []
    if expected_weekday is not None:
        for h in weekly:
            if h.weekday == expected_weekday:
                end_day = day + timedelta(days=1) if h.closes == time(0) else day
                opens = local(day, h.opens.hour, h.opens.minute)
                expected.append(Interval(opens, local(end_day, h.closes.hour, h.closes.minute)))
    start, end = local_day_window(day)
    # A window a little wider than the day, so that nothing is clipped by it.
    got = opening_intervals(calendar, start - timedelta(minutes=1), end + timedelta(minutes=1))
    got_today = [i for i in got if i.start.astimezone(SHANGHAI).date() == day]
    assert got_today == sorted(expected)
