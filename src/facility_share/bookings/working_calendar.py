"""China's working calendar: public holidays and make-up working days (调休).

The State Council publishes each year's holiday arrangement late in the year before. Years it
has published come from ``chinese_calendar`` (holidays and make-up days). For later years the
arrangement does not exist yet; there ``holidays.China`` gives the statutory holidays, with no
make-up days, and ``is_published`` says so, so pages can show that the calendar is provisional.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from functools import cache

import chinese_calendar
import holidays


class DayKind(StrEnum):
    WORKDAY = "workday"  # an ordinary Monday–Friday
    WEEKEND = "weekend"  # an ordinary Saturday or Sunday
    HOLIDAY = "holiday"  # a public holiday (including the weekend days folded into it)
    MAKEUP_WORKDAY = "makeup_workday"  # a weekend day worked in exchange for a holiday (调休)


@cache
def _statutory(year: int) -> frozenset[date]:
    return frozenset(holidays.China(years=year).keys())


def is_published(day: date) -> bool:
    """Whether the official arrangement for ``day``'s year is known."""
    try:
        chinese_calendar.is_workday(day)
    except NotImplementedError:
        return False
    return True


@cache
def classify(day: date) -> DayKind:
    """What kind of day ``day`` is in China's working calendar."""
    weekend = day.weekday() >= 5
    try:
        off, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        if day in _statutory(day.year):
            return DayKind.HOLIDAY
        return DayKind.WEEKEND if weekend else DayKind.WORKDAY
    if name is not None:
        return DayKind.HOLIDAY if off else DayKind.MAKEUP_WORKDAY
    return DayKind.WEEKEND if weekend else DayKind.WORKDAY
