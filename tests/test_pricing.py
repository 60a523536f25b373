"""Pricing: integer fen, one half-up rounding per line, and the properties a bill must have."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility_share.billing.pricing import (
    CUSTOMER_CLASSES,
    FeeRule,
    ServiceQuantity,
    customer_class,
    half_up_div,
    price,
    total,
)

HOURLY = FeeRule("hour", "机时费", "Instrument time", 20000, 30000, 40000, unit_minutes=30, minimum_units=1)


def fee(basis: str, rate: int, **kw: int) -> FeeRule:
    return FeeRule(basis, "费", "Fee", rate, rate, rate, **kw)


def test_hourly_billing_rounds_up_to_whole_increments() -> None:
    rule = fee("hour", 6000, unit_minutes=30)
    (line,) = price([rule], "internal", ServiceQuantity(minutes=61))
    assert line.units == 3  # 61 minutes in 30-minute increments
    assert line.amount_fen == 9000
    assert line.rate_fen == 6000
    assert line.explanation == "61 min → 3 × 30 min at 60.00 yuan/hour"
    assert price([rule], "internal", ServiceQuantity(minutes=60))[0].units == 2
    assert price([rule], "internal", ServiceQuantity(minutes=1))[0].amount_fen == 3000


def test_minimum_units() -> None:
    rule = fee("hour", 6000, unit_minutes=60, minimum_units=4)
    (line,) = price([rule], "district", ServiceQuantity(minutes=61))
    assert (line.units, line.amount_fen) == (4, 24000)
    assert price([rule], "district", ServiceQuantity(minutes=5 * 60 + 1))[0].units == 6
    samples = fee("sample", 1500, minimum_units=3)
    assert price([samples], "district", ServiceQuantity(samples=1))[0].amount_fen == 4500
    assert price([samples], "district", ServiceQuantity(samples=5))[0].amount_fen == 7500


def test_half_up_rounding_of_a_fractional_fen() -> None:
    rule = fee("hour", 333, unit_minutes=30)
    assert price([rule], "external", ServiceQuantity(minutes=30))[0].amount_fen == 167  # 166.5 → 167
    assert price([fee("hour", 331, unit_minutes=30)], "external", ServiceQuantity(minutes=30))[0].amount_fen == 166  # 165.5 → 166
    assert price([fee("hour", 100, unit_minutes=20)], "external", ServiceQuantity(minutes=20))[0].amount_fen == 33  # 33.3 → 33
    assert price([fee("hour", 101, unit_minutes=20)], "external", ServiceQuantity(minutes=20))[0].amount_fen == 34  # 33.67 → 34
    assert half_up_div(5, 2) == 3
    assert half_up_div(7, 2) == 4
    assert half_up_div(4, 3) == 1
    assert half_up_div(0, 7) == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 10**4))
def test_half_up_div_is_rounding_half_up(numerator: int, denominator: int) -> None:
    q = half_up_div(numerator, denominator)
    # q - 1/2 <= n/d < q + 1/2
    assert 2 * q * denominator - denominator <= 2 * numerator < 2 * q * denominator + denominator


def test_each_basis() -> None:
    rules = [
        fee("sample", 500),
        fee("shift", 120000, minimum_units=2),
        fee("day", 300000),
        fee("setup", 8000),
    ]
    lines = price(rules, "internal", ServiceQuantity(samples=3, shifts=1, days=2))
    assert [(l.basis, l.units, l.amount_fen) for l in lines] == [
        ("sample", 3, 1500),
        ("shift", 2, 240000),
        ("day", 2, 600000),
        ("setup", 1, 8000),
    ]
    assert total(lines) == 1500 + 240000 + 600000 + 8000
    assert lines[0].explanation == "3 × 5.00 yuan/sample"
    assert lines[3].explanation == "1 × 80.00 yuan/service"


def test_unused_items_are_left_out() -> None:
    rules = [HOURLY, fee("sample", 500), fee("shift", 1000), fee("day", 1000)]
    assert price(rules, "internal", ServiceQuantity()) == []
    assert price(rules, "internal", ServiceQuantity(minutes=-5, samples=-1)) == []
    assert [l.basis for l in price(rules, "internal", ServiceQuantity(samples=2))] == ["sample"]
    assert total([]) == 0


def test_class_rates() -> None:
    q = ServiceQuantity(minutes=90)
    assert [total(price([HOURLY], k, q)) for k in CUSTOMER_CLASSES] == [30000, 45000, 60000]
    with pytest.raises(KeyError):
        HOURLY.rate("vip")


@pytest.mark.parametrize(
    ("relation", "registered", "klass"),
    [
        ("internal", True, "internal"),
        ("internal", False, "internal"),
        ("district", True, "district"),
        (None, True, "district"),
        ("partner", True, "district"),
        (None, False, "external"),
        ("district", False, "external"),
        ("external", False, "external"),
    ],
)
def test_customer_class(relation: str | None, registered: bool, klass: str) -> None:
    assert customer_class(relation, registered) == klass


# --- properties ---------------------------------------------------------------------------------

RATES = st.integers(0, 500_000)


@st.composite
def fee_rules(draw: st.DrawFn, basis: str | None = None) -> FeeRule:
    basis = basis or draw(st.sampled_from(["hour", "sample", "shift", "day", "setup"]))
    low, mid, high = sorted(draw(st.lists(RATES, min_size=3, max_size=3)))
    return FeeRule(
        basis, "费", "Fee", low, mid, high,
        unit_minutes=draw(st.sampled_from([1, 10, 15, 20, 30, 45, 60, 90, 120])),
        minimum_units=draw(st.integers(1, 8)),
    )


QUANTITIES = st.builds(
    ServiceQuantity,
    minutes=st.integers(0, 5000),
    samples=st.integers(0, 500),
    shifts=st.integers(0, 30),
    days=st.integers(0, 30),
)
SCHEDULES = st.lists(fee_rules(), min_size=1, max_size=5)


@settings(max_examples=100, deadline=None)
@given(SCHEDULES, QUANTITIES, st.sampled_from(CUSTOMER_CLASSES))
def test_lines_are_never_negative_and_add_up(rules: list[FeeRule], q: ServiceQuantity, klass: str) -> None:
    lines = price(rules, klass, q)
    assert all(isinstance(l.amount_fen, int) and l.amount_fen >= 0 for l in lines)
    assert total(lines) == sum(l.amount_fen for l in lines) >= 0
    used = {"hour": q.minutes, "sample": q.samples, "shift": q.shifts, "day": q.days, "setup": 1}
    billed = [r for r in rules if used[r.basis] > 0]
    assert [(l.basis, l.rate_fen) for l in lines] == [(r.basis, r.rate(klass)) for r in billed]
    for line, rule in zip(lines, billed):
        assert line.units >= 1
        if line.basis == "hour":
            assert line.amount_fen == half_up_div(line.rate_fen * line.units * rule.unit_minutes, 60)
        else:
            assert line.amount_fen == line.rate_fen * line.units


@settings(max_examples=100, deadline=None)
@given(SCHEDULES, QUANTITIES, st.sampled_from(CUSTOMER_CLASSES), st.integers(0, 600), st.integers(0, 50))
def test_price_is_monotonic_in_minutes_and_samples(
    rules: list[FeeRule], q: ServiceQuantity, klass: str, more_minutes: int, more_samples: int
) -> None:
    base = total(price(rules, klass, q))
    assert total(price(rules, klass, replace(q, minutes=q.minutes + more_minutes))) >= base
    assert total(price(rules, klass, replace(q, samples=q.samples + more_samples))) >= base
    assert total(price(rules, klass, replace(q, shifts=q.shifts + 1, days=q.days + 1))) >= base


@settings(max_examples=100, deadline=None)
@given(fee_rules("hour"), st.integers(1, 5000))
def test_hourly_increments(rule: FeeRule, minutes: int) -> None:
    (line,) = price([rule], "external", ServiceQuantity(minutes=minutes))
    assert line.units == max(-(-minutes // rule.unit_minutes), rule.minimum_units)
    assert line.units * rule.unit_minutes >= minutes  # every started increment is billed
    if line.units > rule.minimum_units:
        assert (line.units - 1) * rule.unit_minutes < minutes  # but no more


@settings(max_examples=100, deadline=None)
@given(SCHEDULES, QUANTITIES)
def test_internal_le_district_le_external(rules: list[FeeRule], q: ServiceQuantity) -> None:
    internal, district, external = (total(price(rules, k, q)) for k in CUSTOMER_CLASSES)
    assert internal <= district <= external
