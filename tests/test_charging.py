"""Charging, pure: peak/off-peak splits, one rounding per line, increments, and estimate = charge.

No database: the booking estimate (``bookings.services.price_estimate``) and the final charge
(``usage.charging.price_service``) are fed transient rows and plain values, as the services
feed them rows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from facility_share.billing.pricing import (
    CUSTOMER_CLASSES,
    FeeRule,
    ServiceQuantity,
    billable_increments,
    customer_class,
    half_up_div,
    peak_minutes,
    price,
    total,
)
from facility_share.bookings import availability as av
from facility_share.bookings import services as bookings
from facility_share.db.models import Enterprise, FeeItem, OpeningHours, Resource
from facility_share.usage.charging import line_dicts, parse_peak_hours, price_service

SHANGHAI = "Asia/Shanghai"
ZONE = ZoneInfo(SHANGHAI)
FAST = settings(max_examples=150, deadline=None)


def at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = ZONE) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


# --- peak and off-peak ---------------------------------------------------------------------------

GRID = [time(h, m) for h in range(24) for m in (0, 30)]


@st.composite
def weekly_windows(draw: st.DrawFn) -> list[tuple[int, time, time]]:
    """Weekly peak windows as the catalogue allows them: per weekday, ordered and not overlapping;
    a window may close at 00:00 (the end of the day)."""
    windows = []
    for weekday in draw(st.sets(st.integers(0, 6), max_size=7)):
        points = sorted(draw(st.sets(st.sampled_from(GRID[1:]), min_size=1, max_size=6)))
        if draw(st.booleans()):
            points = [time(0, 0), *points]
        to_midnight = len(points) % 2 == 1
        if to_midnight:
            points.append(time(0, 0))  # the last window runs to the end of the day
        windows += [(weekday, points[i], points[i + 1]) for i in range(0, len(points), 2)]
    return windows


INSTANTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))


def brute_peak(start: datetime, end: datetime, windows: list[tuple[int, time, time]], zone: ZoneInfo) -> int:
    """Minute by minute: is the local time of each minute of [start, end) inside a window?"""
    count, cursor = 0, start
    while cursor < end:
        local = cursor.astimezone(zone)
        for weekday, opens, closes in windows:
            if weekday == local.weekday() and opens <= local.time() and (closes == time(0, 0) or local.time() < closes):
                count += 1
                break
        cursor += timedelta(minutes=1)
    return count


@FAST
@given(weekly_windows(), INSTANTS, st.integers(0, 4 * 24 * 60), st.sampled_from([SHANGHAI, "UTC", "Europe/Berlin", "America/New_York"]))
def test_peak_and_off_peak_minutes_add_up_to_the_session(windows, start, minutes, timezone) -> None:  # type: ignore[no-untyped-def]
    end = start + timedelta(minutes=minutes)
    priced = price_service([], "district", start=start, end=end, samples=0, units=0, booking_unit="slot",
                           peak_hours=windows, timezone=timezone)
    q = priced.quantity
    assert q.minutes == minutes
    assert 0 <= q.peak_minutes <= q.minutes
    assert 0 <= q.off_peak_minutes <= q.minutes
    assert q.peak_minutes + q.off_peak_minutes == q.minutes


@settings(max_examples=60, deadline=None)
@given(weekly_windows(), INSTANTS.map(lambda d: d.replace(second=0, microsecond=0)), st.integers(0, 2 * 24 * 60),
       st.sampled_from([SHANGHAI, "UTC"]))
def test_peak_minutes_match_a_minute_by_minute_count(windows, start, minutes, timezone) -> None:  # type: ignore[no-untyped-def]
    end = start + timedelta(minutes=minutes)
    assert peak_minutes(start, end, windows, timezone) == brute_peak(start, end, windows, ZoneInfo(timezone))


@FAST
@given(weekly_windows(), INSTANTS.map(lambda d: d.replace(second=0, microsecond=0)), st.integers(0, 3000), st.integers(0, 3000))
def test_peak_minutes_are_additive_over_adjacent_intervals(windows, start, first, second) -> None:  # type: ignore[no-untyped-def]
    middle, end = start + timedelta(minutes=first), start + timedelta(minutes=first + second)
    assert peak_minutes(start, end, windows, SHANGHAI) == (
        peak_minutes(start, middle, windows, SHANGHAI) + peak_minutes(middle, end, windows, SHANGHAI)
    )


def test_peak_minutes_by_hand() -> None:
    tuesday = date(2026, 12, 1)
    windows = parse_peak_hours([[1, "09:00", "12:00"], [1, "14:00", "00:00"], [2, "00:00", "06:00"]])
    assert peak_minutes(at(tuesday, 8), at(tuesday, 10), windows, SHANGHAI) == 60
    assert peak_minutes(at(tuesday, 11, 30), at(tuesday, 14, 30), windows, SHANGHAI) == 60
    # Tuesday 23:00 to Wednesday 07:00: one hour to midnight, six after it.
    assert peak_minutes(at(tuesday, 23), at(tuesday + timedelta(days=1), 7), windows, SHANGHAI) == 7 * 60
    assert peak_minutes(at(tuesday, 10), at(tuesday, 10), windows, SHANGHAI) == 0
    assert peak_minutes(at(tuesday, 10), at(tuesday, 11), [], SHANGHAI) == 0


RATE = st.integers(0, 500_000)
UNIT = st.sampled_from([1, 5, 10, 15, 20, 30, 45, 60, 90])
ROUNDING = st.sampled_from(["up", "nearest", "down"])


def hour_rule(rate: int, *, period: str, unit: int = 60, minimum: int = 1, rounding: str = "up") -> FeeRule:
    return FeeRule("hour", f"机时费（{period}）", f"Time ({period})", rate, rate, rate, unit_minutes=unit,
                   minimum_units=minimum, period=period, rounding=rounding)


@FAST
@given(RATE, RATE, UNIT, st.integers(1, 4), ROUNDING, weekly_windows(), INSTANTS, st.integers(1, 2 * 24 * 60))
def test_peak_and_off_peak_items_bill_each_part_at_their_own_rate(
    peak_rate, off_rate, unit, minimum, rounding, windows, start, minutes  # type: ignore[no-untyped-def]
) -> None:
    rules = [hour_rule(peak_rate, period="peak", unit=unit, minimum=minimum, rounding=rounding),
             hour_rule(off_rate, period="off_peak", unit=unit, minimum=minimum, rounding=rounding)]
    end = start + timedelta(minutes=minutes)
    priced = price_service(rules, "external", start=start, end=end, samples=0, units=0, booking_unit="slot",
                           peak_hours=windows, timezone=SHANGHAI)
    parts = {"peak": priced.quantity.peak_minutes, "off_peak": priced.quantity.off_peak_minutes}
    expected = []
    for rule in rules:
        part = parts[rule.period]
        if part > 0:
            increments = max(billable_increments(part, unit, rounding), minimum)
            expected.append((rule.rate("external"), increments, half_up_div(rule.rate("external") * increments * unit, 60)))
    assert [(l.rate_fen, l.units, l.amount_fen) for l in priced.lines] == expected
    assert priced.total_fen == sum(amount for *_rest, amount in expected)


@FAST
@given(st.integers(0, 10_000), weekly_windows(), INSTANTS, st.integers(1, 3 * 24 * 60))
def test_equal_peak_and_off_peak_rates_per_minute_cost_what_one_all_time_item_costs(
    per_minute, windows, start, minutes  # type: ignore[no-untyped-def]
) -> None:
    rate = 60 * per_minute  # a whole number of fen per minute: no rounding anywhere
    end = start + timedelta(minutes=minutes)
    split = [hour_rule(rate, period="peak", unit=1), hour_rule(rate, period="off_peak", unit=1)]
    common = {"start": start, "end": end, "samples": 0, "units": 0, "booking_unit": "slot", "peak_hours": windows,
              "timezone": SHANGHAI}
    whole = price_service([hour_rule(rate, period="all", unit=1)], "district", **common)
    assert price_service(split, "district", **common).total_fen == whole.total_fen == rate * minutes // 60


@FAST
@given(RATE, weekly_windows(), INSTANTS, st.integers(1, 3 * 24 * 60))
def test_equal_rates_at_any_rate_differ_from_one_item_by_the_second_rounding_only(rate, windows, start, minutes) -> None:  # type: ignore[no-untyped-def]
    end = start + timedelta(minutes=minutes)
    common = {"start": start, "end": end, "samples": 0, "units": 0, "booking_unit": "slot", "peak_hours": windows,
              "timezone": SHANGHAI}
    split = price_service([hour_rule(rate, period="peak", unit=1), hour_rule(rate, period="off_peak", unit=1)], "internal", **common)
    whole = price_service([hour_rule(rate, period="all", unit=1)], "internal", **common)
    # Each line is rounded on its own (half up, at most half a fen each way).
    assert abs(split.total_fen - whole.total_fen) <= 1


def test_a_session_across_the_peak_boundary_by_hand() -> None:
    tuesday = date(2026, 12, 1)
    windows = parse_peak_hours([[1, "09:00", "12:00"]])
    rules = [hour_rule(60_000, period="peak", unit=30), hour_rule(30_000, period="off_peak", unit=30)]
    priced = price_service(rules, "district", start=at(tuesday, 8, 20), end=at(tuesday, 10, 10), samples=0, units=0,
                           booking_unit="slot", peak_hours=windows, timezone=SHANGHAI)
    # 70 peak minutes → 3 half hours at 600 yuan/h; 40 off-peak minutes → 2 half hours at 300 yuan/h.
    assert [(l.units, l.amount_fen) for l in priced.lines] == [(3, 90_000), (2, 30_000)]
    assert priced.total_fen == 120_000
    assert "(peak)" in priced.lines[0].explanation and "(off-peak)" in priced.lines[1].explanation


# --- one rounding per line -----------------------------------------------------------------------


@st.composite
def schedules(draw: st.DrawFn) -> list[FeeRule]:
    rules = []
    for _ in range(draw(st.integers(1, 5))):
        basis = draw(st.sampled_from(["hour", "hour", "sample", "shift", "day", "setup"]))
        low, mid, high = sorted(draw(st.lists(RATE, min_size=3, max_size=3)))
        rules.append(FeeRule(basis, "费", "Fee", low, mid, high, unit_minutes=draw(UNIT), minimum_units=draw(st.integers(1, 4)),
                             period=draw(st.sampled_from(["all", "peak", "off_peak"])) if basis == "hour" else "all",
                             rounding=draw(ROUNDING)))
    return rules


@FAST
@given(schedules(), st.sampled_from(CUSTOMER_CLASSES), weekly_windows(), INSTANTS, st.integers(1, 3000),
       st.integers(0, 300), st.integers(0, 5), st.integers(1, 3))
def test_each_line_is_rounded_once_and_the_total_is_their_sum(
    rules, klass, windows, start, minutes, samples, units, quantity  # type: ignore[no-untyped-def]
) -> None:
    priced = price_service(rules, klass, start=start, end=start + timedelta(minutes=minutes), samples=samples, units=units,
                           booking_unit="shift", peak_hours=windows, timezone=SHANGHAI, quantity=quantity)
    q = priced.quantity
    parts = {"all": q.minutes, "peak": q.peak_minutes, "off_peak": q.off_peak_minutes}
    counts = {"sample": samples, "shift": units, "day": 0, "setup": 1}
    billed = [r for r in rules if (parts[r.period] if r.basis == "hour" else counts[r.basis]) > 0]
    assert len(priced.lines) == len(billed)
    for line, rule in zip(priced.lines, billed, strict=True):
        assert line.amount_fen >= 0 and isinstance(line.amount_fen, int)
        if rule.basis == "hour":
            increments = max(billable_increments(parts[rule.period], rule.unit_minutes, rule.rounding), rule.minimum_units)
            assert line.units == increments * quantity
            # Rounded once, on the line; places multiply the rounded line.
            assert line.amount_fen == half_up_div(rule.rate(klass) * increments * rule.unit_minutes, 60) * quantity
        else:
            count = 1 if rule.basis == "setup" else max(counts[rule.basis], rule.minimum_units)
            assert line.amount_fen == rule.rate(klass) * count * quantity
    assert priced.total_fen == sum(l.amount_fen for l in priced.lines) == total(priced.lines)
    assert [d["amount_fen"] for d in line_dicts(priced.lines)] == [l.amount_fen for l in priced.lines]


def test_the_explanations_name_minutes_samples_lines_and_total() -> None:
    rules = [FeeRule("hour", "机时费", "Instrument time", 20_000, 40_000, 50_000, unit_minutes=30),
             FeeRule("sample", "制样", "Preparation", 1_000, 2_000, 3_000)]
    tuesday = date(2026, 12, 1)
    priced = price_service(rules, "district", start=at(tuesday, 9), end=at(tuesday, 10, 5), samples=3, units=0,
                           booking_unit="slot", peak_hours=[], timezone=SHANGHAI)
    # 65 minutes → 3 half hours at 400 yuan/h = 600 yuan; 3 samples at 20 yuan = 60 yuan.
    assert [(l.units, l.amount_fen) for l in priced.lines] == [(3, 60_000), (3, 6_000)]
    assert priced.total_fen == 66_000
    assert "区内企业" in priced.explanation_zh and "65 分钟" in priced.explanation_zh and "样品 3 个" in priced.explanation_zh
    assert priced.explanation_zh.endswith("合计 660.00 元。")
    assert "district enterprise" in priced.explanation_en and "65 minutes" in priced.explanation_en
    assert "3 samples" in priced.explanation_en and priced.explanation_en.endswith("Total 660.00 yuan.")


# --- increments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "unit", "up", "nearest", "down"),
    [
        (0, 30, 0, 0, 0),
        (1, 30, 1, 0, 0),
        (14, 30, 1, 0, 0),
        (15, 30, 1, 1, 0),  # half an increment counts for "nearest"
        (30, 30, 1, 1, 1),
        (44, 30, 2, 1, 1),
        (45, 30, 2, 2, 1),
        (61, 60, 2, 1, 1),
        (90, 60, 2, 2, 1),
        (7, 1, 7, 7, 7),
    ],
)
def test_billable_increments_by_hand(minutes: int, unit: int, up: int, nearest: int, down: int) -> None:
    assert billable_increments(minutes, unit, "up") == up
    assert billable_increments(minutes, unit) == up  # "up" is the default
    assert billable_increments(minutes, unit, "nearest") == nearest
    assert billable_increments(minutes, unit, "down") == down


@FAST
@given(st.integers(0, 100_000), st.integers(1, 240))
def test_billable_increments_are_ceiling_half_up_and_floor(minutes: int, unit: int) -> None:
    up, nearest, down = (billable_increments(minutes, unit, r) for r in ("up", "nearest", "down"))
    assert up == -(-minutes // unit)
    assert down == minutes // unit
    assert nearest == half_up_div(minutes, unit)
    assert down <= nearest <= up <= down + 1
    assert down * unit <= minutes <= up * unit


@FAST
@given(st.integers(0, 5000), st.integers(0, 600), st.integers(1, 240), ROUNDING)
def test_billable_increments_never_decrease_with_minutes(minutes: int, more: int, unit: int, rounding: str) -> None:
    assert billable_increments(minutes + more, unit, rounding) >= billable_increments(minutes, unit, rounding)


def test_the_minimum_applies_after_rounding_down() -> None:
    (line,) = price([hour_rule(6_000, period="all", unit=30, minimum=1, rounding="down")], "internal", ServiceQuantity(minutes=10))
    assert (line.units, line.amount_fen) == (1, 3_000)
    (line,) = price([hour_rule(6_000, period="all", unit=30, minimum=1, rounding="nearest")], "internal", ServiceQuantity(minutes=75))
    assert (line.units, line.amount_fen) == (3, 9_000)


# --- the estimate at booking equals the charge for the same use ----------------------------------

# WQ-TJMAT-SEM01 as the catalogue has it: Mon–Fri 08:30–12:00 and 13:30–17:30, 30-minute slots,
# time billed per started half hour plus a per-service sputter coating.
OPENING = [(weekday, time(8, 30), time(12, 0)) for weekday in range(5)] + [(weekday, time(13, 30), time(17, 30)) for weekday in range(5)]


def sem_like(hour_rates: tuple[int, int, int], setup_rates: tuple[int, int, int] | None, sample_rates: tuple[int, int, int] | None,
             unit_minutes: int = 30) -> Resource:
    items = [FeeItem(position=0, basis="hour", label_zh="机时费（含能谱）", label_en="Instrument time incl. EDS",
                     internal_fen=hour_rates[0], district_fen=hour_rates[1], external_fen=hour_rates[2],
                     unit_minutes=unit_minutes, minimum_units=1, period="all", rounding="up")]
    if setup_rates:
        items.append(FeeItem(position=1, basis="setup", label_zh="喷金制样", label_en="Gold sputter coating",
                             internal_fen=setup_rates[0], district_fen=setup_rates[1], external_fen=setup_rates[2],
                             unit_minutes=60, minimum_units=1, period="all", rounding="up"))
    if sample_rates:
        items.append(FeeItem(position=2, basis="sample", label_zh="每样", label_en="Per sample",
                             internal_fen=sample_rates[0], district_fen=sample_rates[1], external_fen=sample_rates[2],
                             unit_minutes=60, minimum_units=1, period="all", rounding="up"))
    return Resource(
        code="TEST-SEM", kind="instrument", unit_id=1, timezone=SHANGHAI, capacity=1, booking_unit="slot", slot_minutes=30,
        working_calendar=True, shifts=[], peak_hours=[], billing_basis="actual",
        opening_hours=[OpeningHours(weekday=w, opens=a, closes=b) for w, a, b in OPENING], fee_items=items,
    )


def charge_for_use_as_booked(resource: Resource, klass: str, span: av.Interval, samples: int, quantity: int = 1) -> int:
    """What ``usage.services.issue_charge`` computes for a session that ran exactly as booked."""
    calendar = bookings.calendar_of(resource, [])
    units = bookings.count_units(calendar, span) if resource.booking_unit != "slot" else 0
    priced = price_service(
        bookings.fee_rules_of(resource.fee_items), klass, start=span.start, end=span.end, samples=samples, units=units,
        booking_unit=resource.booking_unit, peak_hours=parse_peak_hours(resource.peak_hours or []), timezone=resource.timezone,
        quantity=quantity,
    )
    return priced.total_fen


@st.composite
def sem_bookings(draw: st.DrawFn) -> av.Interval:
    """A booking SEM01's rules allow: a workday, inside one opening interval, on slots, at least an hour."""
    day = draw(st.dates(min_value=date(2026, 11, 30), max_value=date(2027, 6, 30)).filter(lambda d: d.weekday() < 5))
    opens, closes = draw(st.sampled_from([(time(8, 30), time(12, 0)), (time(13, 30), time(17, 30))]))
    slots = (closes.hour * 60 + closes.minute - opens.hour * 60 - opens.minute) // 30
    first = draw(st.integers(0, slots - 2))
    length = draw(st.integers(2, slots - first))
    start = at(day, opens.hour, opens.minute) + timedelta(minutes=30 * first)
    return av.Interval(start, start + timedelta(minutes=30 * length))


def rates() -> st.SearchStrategy[tuple[int, int, int]]:
    return st.lists(st.integers(0, 200_000), min_size=3, max_size=3).map(lambda r: tuple(sorted(r)))  # type: ignore[return-value]


RELATIONS = st.sampled_from([None, "internal", "related"])


@settings(max_examples=150, deadline=None)
@given(rates(), st.none() | rates(), st.none() | rates(), st.sampled_from([15, 30, 60]), sem_bookings(), st.integers(0, 50),
       RELATIONS, st.booleans(), st.integers(1, 3))
@example((20_000, 40_000, 50_000), (2_000, 4_000, 5_000), None, 30,
         av.Interval(at(date(2026, 12, 1), 9), at(date(2026, 12, 1), 10)), 0, None, True, 1)
def test_the_estimate_equals_the_charge_for_use_exactly_as_booked(
    hour_rates, setup_rates, sample_rates, unit, span, samples, relation, in_district, quantity  # type: ignore[no-untyped-def]
) -> None:
    resource = sem_like(hour_rates, setup_rates, sample_rates, unit)
    enterprise = Enterprise(registered_in_district=in_district)
    klass, estimate = bookings.price_estimate(resource, bookings.calendar_of(resource, []), enterprise, relation, span, samples, quantity)
    assert klass == customer_class(relation, in_district)
    assert estimate == charge_for_use_as_booked(resource, klass, span, samples, quantity) >= 0


def test_the_estimate_of_sem01_by_hand() -> None:
    resource = sem_like((20_000, 40_000, 50_000), (2_000, 4_000, 5_000), None)
    span = av.Interval(at(date(2026, 12, 1), 9), at(date(2026, 12, 1), 10, 30))
    calendar = bookings.calendar_of(resource, [])
    assert bookings.price_estimate(resource, calendar, Enterprise(registered_in_district=True), None, span, 0, 1) == ("district", 64_000)
    assert bookings.price_estimate(resource, calendar, Enterprise(registered_in_district=False), None, span, 0, 1) == ("external", 80_000)
    assert bookings.price_estimate(resource, calendar, Enterprise(registered_in_district=False), "internal", span, 0, 1) == ("internal", 32_000)
    assert charge_for_use_as_booked(resource, "district", span, 0) == 64_000


@settings(max_examples=100, deadline=None)
@given(rates(), st.none() | rates(), rates(), sem_bookings(), st.integers(0, 8), st.integers(0, 50), st.integers(0, 50),
       st.sampled_from(CUSTOMER_CLASSES))
def test_the_charge_never_falls_with_more_time_or_more_samples(
    hour_rates, setup_rates, sample_rates, span, more_slots, samples, more_samples, klass  # type: ignore[no-untyped-def]
) -> None:
    resource = sem_like(hour_rates, setup_rates, sample_rates)
    longer = av.Interval(span.start, span.end + timedelta(minutes=30 * more_slots))
    base = charge_for_use_as_booked(resource, klass, span, samples)
    assert base >= 0
    assert charge_for_use_as_booked(resource, klass, longer, samples) >= base
    assert charge_for_use_as_booked(resource, klass, span, samples + more_samples) >= base
    # The estimate at booking grows the same way.
    calendar, enterprise = bookings.calendar_of(resource, []), Enterprise(registered_in_district=klass != "external")
    relation = "internal" if klass == "internal" else None
    estimate = bookings.price_estimate(resource, calendar, enterprise, relation, span, samples, 1)[1]
    assert estimate == base
    assert bookings.price_estimate(resource, calendar, enterprise, relation, longer, samples, 1)[1] >= estimate
    assert bookings.price_estimate(resource, calendar, enterprise, relation, span, samples + more_samples, 1)[1] >= estimate
    # Actual use, to the minute, too.
    for extra in (1, 7, 29, 31):
        assert charge_for_use_as_booked(resource, klass, av.Interval(span.start, span.end + timedelta(minutes=extra)), samples) >= base


def pilot_like() -> Resource:
    """WQ-TJMAT-PILOT: booked by shift (day 08:00–16:00, evening 16:00–24:00), billed on booked time."""
    return Resource(
        code="TEST-PILOT", kind="workshop", unit_id=1, timezone=SHANGHAI, capacity=3, booking_unit="shift", slot_minutes=480,
        working_calendar=False, peak_hours=[], billing_basis="booked",
        shifts=[{"code": "day", "hours": "08:00-16:00"}, {"code": "evening", "hours": "16:00-24:00"}],
        opening_hours=[OpeningHours(weekday=w, opens=time(8), closes=time(0)) for w in range(7)],
        fee_items=[
            FeeItem(position=0, basis="shift", label_zh="每线每班", label_en="Per line per shift", internal_fen=120_000,
                    district_fen=240_000, external_fen=320_000, unit_minutes=60, minimum_units=1, period="all", rounding="up"),
            FeeItem(position=1, basis="setup", label_zh="换线清洁", label_en="Changeover cleaning", internal_fen=30_000,
                    district_fen=60_000, external_fen=80_000, unit_minutes=60, minimum_units=1, period="all", rounding="up"),
        ],
    )


@settings(max_examples=60, deadline=None)
@given(st.dates(min_value=date(2026, 11, 30), max_value=date(2027, 6, 30)), st.integers(0, 1), st.integers(1, 6),
       st.integers(1, 3), RELATIONS, st.booleans())
def test_the_estimate_equals_the_charge_for_shift_bookings(day, first, shifts, quantity, relation, in_district) -> None:  # type: ignore[no-untyped-def]
    resource = pilot_like()

    def shift_start(index: int) -> datetime:  # shifts in order: day, evening, next day's day shift, …
        return at(day + timedelta(days=index // 2), 8 + 8 * (index % 2))

    last = first + shifts - 1
    span = av.Interval(shift_start(first), shift_start(last) + timedelta(hours=8))  # nights (00:00–08:00) between are closed
    klass, estimate = bookings.price_estimate(resource, bookings.calendar_of(resource, []), Enterprise(registered_in_district=in_district),
                                              relation, span, 0, quantity)
    shift_rate = {"internal": 120_000, "district": 240_000, "external": 320_000}[klass]
    setup_rate = {"internal": 30_000, "district": 60_000, "external": 80_000}[klass]
    assert estimate == (shift_rate * shifts + setup_rate) * quantity
    assert estimate == charge_for_use_as_booked(resource, klass, span, 0, quantity)


# --- fee items with a period, through the fee schedule (fixed in 924ed61) ------------------------


def test_fee_rules_keep_the_period_and_rounding_of_the_fee_items() -> None:
    items = [
        FeeItem(position=0, basis="hour", label_zh="高峰机时", label_en="Peak time", internal_fen=60_000, district_fen=60_000,
                external_fen=60_000, unit_minutes=30, minimum_units=1, period="peak", rounding="down"),
        FeeItem(position=1, basis="hour", label_zh="低谷机时", label_en="Off-peak time", internal_fen=30_000, district_fen=30_000,
                external_fen=30_000, unit_minutes=30, minimum_units=1, period="off_peak", rounding="nearest"),
    ]
    rules = bookings.fee_rules_of(items)
    assert [(r.period, r.rounding) for r in rules] == [("peak", "down"), ("off_peak", "nearest")]
    # Consequence: a 60-minute session entirely off-peak costs 300 yuan, not 300 + 600 yuan.
    tuesday = date(2026, 12, 1)
    priced = price_service(rules, "district", start=at(tuesday, 14), end=at(tuesday, 15), samples=0, units=0, booking_unit="slot",
                           peak_hours=parse_peak_hours([[1, "09:00", "12:00"]]), timezone=SHANGHAI)
    assert priced.total_fen == 30_000


def test_the_estimate_equals_the_charge_with_peak_and_off_peak_items() -> None:
    resource = sem_like((0, 0, 0), None, None)
    resource.fee_items = [
        FeeItem(position=0, basis="hour", label_zh="高峰机时", label_en="Peak time", internal_fen=60_000, district_fen=60_000,
                external_fen=60_000, unit_minutes=30, minimum_units=1, period="peak", rounding="up"),
        FeeItem(position=1, basis="hour", label_zh="低谷机时", label_en="Off-peak time", internal_fen=30_000, district_fen=30_000,
                external_fen=30_000, unit_minutes=30, minimum_units=1, period="off_peak", rounding="up"),
    ]
    resource.peak_hours = [[1, "09:00", "12:00"]]
    tuesday = date(2026, 12, 1)
    span = av.Interval(at(tuesday, 8, 30), at(tuesday, 10))  # 30 min off-peak, 60 min peak
    _klass, estimate = bookings.price_estimate(resource, bookings.calendar_of(resource, []), Enterprise(registered_in_district=True),
                                               None, span, 0, 1)
    correct_rules = [hour_rule(60_000, period="peak", unit=30), hour_rule(30_000, period="off_peak", unit=30)]
    charge = price_service(correct_rules, "district", start=span.start, end=span.end, samples=0, units=0, booking_unit="slot",
                           peak_hours=parse_peak_hours(resource.peak_hours), timezone=SHANGHAI)
    assert charge.total_fen == 60_000 + 15_000  # 2 peak half hours at 600 yuan/h, 1 off-peak half hour at 300 yuan/h
    assert estimate == charge.total_fen


@settings(max_examples=100, deadline=None)
@given(rates(), rates(), UNIT, ROUNDING, ROUNDING, weekly_windows(), sem_bookings(), st.integers(0, 20), RELATIONS, st.booleans())
def test_the_estimate_equals_the_charge_for_any_peak_schedule(
    peak_rates, off_rates, unit, peak_rounding, off_rounding, windows, span, samples, relation, in_district  # type: ignore[no-untyped-def]
) -> None:
    resource = sem_like((0, 0, 0), (2_000, 4_000, 5_000), None)
    resource.fee_items = [
        FeeItem(position=0, basis="hour", label_zh="高峰", label_en="Peak", internal_fen=peak_rates[0], district_fen=peak_rates[1],
                external_fen=peak_rates[2], unit_minutes=unit, minimum_units=1, period="peak", rounding=peak_rounding),
        FeeItem(position=1, basis="hour", label_zh="低谷", label_en="Off-peak", internal_fen=off_rates[0], district_fen=off_rates[1],
                external_fen=off_rates[2], unit_minutes=unit, minimum_units=1, period="off_peak", rounding=off_rounding),
        *resource.fee_items[1:],
    ]
    resource.peak_hours = [[w, f"{a:%H:%M}", f"{b:%H:%M}"] for w, a, b in windows]
    klass, estimate = bookings.price_estimate(resource, bookings.calendar_of(resource, []), Enterprise(registered_in_district=in_district),
                                              relation, span, samples, 1)
    rules = [hour_rule(0, period="peak", unit=unit, rounding=peak_rounding), hour_rule(0, period="off_peak", unit=unit, rounding=off_rounding)]
    rules = [FeeRule("hour", r.label_zh, r.label_en, *rates_, unit_minutes=unit, period=r.period, rounding=r.rounding)
             for r, rates_ in zip(rules, (peak_rates, off_rates), strict=True)]
    rules.append(FeeRule("setup", "喷金制样", "Gold sputter coating", 2_000, 4_000, 5_000))
    expected = price_service(rules, klass, start=span.start, end=span.end, samples=samples, units=0, booking_unit="slot",
                             peak_hours=windows, timezone=SHANGHAI)
    assert estimate == charge_for_use_as_booked(resource, klass, span, samples) == expected.total_fen >= 0
