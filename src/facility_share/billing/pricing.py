"""Pricing as a pure function: a fee schedule and a quantity of service in, charge lines out.

Money is integer fen. Each line is rounded once, half up to the fen; the total is the sum of
the lines. The same function prices a finished service and gives the estimate at booking.

Hourly items bill whole increments of ``unit_minutes``; how a started increment counts is the
item's ``rounding``: ``up`` (every started increment, the usual rule), ``nearest`` (half an
increment or more) or ``down`` (only complete ones). An item may apply to peak or off-peak
time only (``period``); the minutes of a session are split by the resource's peak hours and
each part is billed by its own item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

CUSTOMER_CLASSES = ("internal", "district", "external")


@dataclass(frozen=True, slots=True)
class FeeRule:
    basis: str  # hour | sample | shift | day | setup
    label_zh: str
    label_en: str
    internal_fen: int
    district_fen: int
    external_fen: int
    unit_minutes: int = 60  # billable increment of hourly items
    minimum_units: int = 1
    period: str = "all"  # all | peak | off_peak (hourly items)
    rounding: str = "up"  # up | nearest | down (hourly items)

    def rate(self, customer_class: str) -> int:
        return {"internal": self.internal_fen, "district": self.district_fen, "external": self.external_fen}[customer_class]


@dataclass(frozen=True, slots=True)
class ServiceQuantity:
    minutes: int = 0
    samples: int = 0
    shifts: int = 0
    days: int = 0
    # The part of ``minutes`` in peak hours (only used by items with a period).
    peak_minutes: int = 0

    @property
    def off_peak_minutes(self) -> int:
        return self.minutes - self.peak_minutes


@dataclass(frozen=True, slots=True)
class ChargeLine:
    label_zh: str
    label_en: str
    basis: str
    units: int  # billable units: increments of unit_minutes for hours, else samples/shifts/days/1
    rate_fen: int
    amount_fen: int
    explanation: str
    unit_minutes: int = 0  # hourly lines: the length of one billed increment


def half_up_div(numerator: int, denominator: int) -> int:
    """numerator ÷ denominator rounded half up, for non-negative integers."""
    return (2 * numerator + denominator) // (2 * denominator)


def billable_increments(minutes: int, unit_minutes: int, rounding: str = "up") -> int:
    """How many increments of ``unit_minutes`` a use of ``minutes`` bills."""
    whole, part = divmod(minutes, unit_minutes)
    if part == 0:
        return whole
    if rounding == "up" or (rounding == "nearest" and 2 * part >= unit_minutes):
        return whole + 1
    return whole


def peak_minutes(start: datetime, end: datetime, peak_hours: Sequence[tuple[int, time, time]], timezone: str) -> int:
    """Minutes of [start, end) inside the weekly peak hours (weekday, from, to) in ``timezone``.

    A window's ``to`` of 00:00 means the end of the day.
    """
    if not peak_hours or end <= start:
        return 0
    zone = ZoneInfo(timezone)
    total = 0
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    while day <= last:
        for weekday, opens, closes in peak_hours:
            if weekday != day.weekday():
                continue
            window_start = datetime.combine(day, opens, tzinfo=zone).astimezone(UTC)
            close_day = day + timedelta(days=1) if closes == time(0, 0) else day
            window_end = datetime.combine(close_day, closes, tzinfo=zone).astimezone(UTC)
            overlap = min(end, window_end) - max(start, window_start)
            if overlap > timedelta(0):
                total += int(overlap.total_seconds() // 60)
        day += timedelta(days=1)
    return total


def customer_class(relation: str | None, registered_in_district: bool) -> str:
    """internal for the unit itself; district for enterprises registered in the district; else external."""
    if relation == "internal":
        return "internal"
    return "district" if registered_in_district else "external"


def price(rules: Sequence[FeeRule], klass: str, quantity: ServiceQuantity) -> list[ChargeLine]:
    """The charge lines for ``quantity`` of service at ``klass`` rates; items with no use are left out."""
    lines: list[ChargeLine] = []
    for rule in rules:
        rate = rule.rate(klass)
        if rule.basis == "hour":
            minutes = {"all": quantity.minutes, "peak": quantity.peak_minutes, "off_peak": quantity.off_peak_minutes}[rule.period]
            if minutes <= 0:
                continue
            increments = max(billable_increments(minutes, rule.unit_minutes, rule.rounding), rule.minimum_units)
            amount = half_up_div(rate * increments * rule.unit_minutes, 60)
            text = f"{minutes} min → {increments} × {rule.unit_minutes} min at {rate / 100:.2f} yuan/hour"
            if rule.period != "all":
                text += f" ({rule.period.replace('_', '-')})"
            lines.append(ChargeLine(rule.label_zh, rule.label_en, rule.basis, increments, rate, amount, text, rule.unit_minutes))
            continue
        count = {"sample": quantity.samples, "shift": quantity.shifts, "day": quantity.days, "setup": 1}[rule.basis]
        if count <= 0:
            continue
        count = max(count, rule.minimum_units) if rule.basis != "setup" else 1
        unit_name = {"sample": "sample", "shift": "shift", "day": "day", "setup": "service"}[rule.basis]
        lines.append(
            ChargeLine(rule.label_zh, rule.label_en, rule.basis, count, rate, rate * count,
                       f"{count} × {rate / 100:.2f} yuan/{unit_name}")
        )
    return lines


def total(lines: Sequence[ChargeLine]) -> int:
    return sum(line.amount_fen for line in lines)
