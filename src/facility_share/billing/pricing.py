"""Pricing as a pure function: a fee schedule and a quantity of service in, charge lines out.

Money is integer fen. Each line is rounded once, half up to the fen; the total is the sum of
the lines. The same function prices a finished service and gives the estimate at booking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

    def rate(self, customer_class: str) -> int:
        return {"internal": self.internal_fen, "district": self.district_fen, "external": self.external_fen}[customer_class]


@dataclass(frozen=True, slots=True)
class ServiceQuantity:
    minutes: int = 0
    samples: int = 0
    shifts: int = 0
    days: int = 0


@dataclass(frozen=True, slots=True)
class ChargeLine:
    label_zh: str
    label_en: str
    basis: str
    units: int  # billable units: increments of unit_minutes for hours, else samples/shifts/days/1
    rate_fen: int
    amount_fen: int
    explanation: str


def half_up_div(numerator: int, denominator: int) -> int:
    """numerator ÷ denominator rounded half up, for non-negative integers."""
    return (2 * numerator + denominator) // (2 * denominator)


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
            if quantity.minutes <= 0:
                continue
            increments = max(-(-quantity.minutes // rule.unit_minutes), rule.minimum_units)
            amount = half_up_div(rate * increments * rule.unit_minutes, 60)
            text = f"{increments} × {rule.unit_minutes} min at {rate / 100:.2f} yuan/hour"
            lines.append(ChargeLine(rule.label_zh, rule.label_en, rule.basis, increments, rate, amount, text))
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
