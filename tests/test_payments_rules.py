"""The pure rules of payments, checked over many generated cases (no database, no Stripe)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facility_share.payments import rules
from facility_share.payments.pages import parse_yuan

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

# A PaymentIntent's life: attempts that process and fail, then possibly an end.
histories = st.tuples(
    st.lists(st.sampled_from(["processing", "failed"]), max_size=5),
    st.sampled_from([None, "succeeded", "canceled"]),
).map(lambda parts: [*parts[0], *([parts[1]] if parts[1] else [])]).filter(bool)


def replay(events: list[tuple[str, datetime]], start: str = "pending", known_at: datetime | None = None) -> str:
    status = start
    for new, at in events:
        verdict = rules.payment_verdict(status, known_at, new, at)
        if verdict is not rules.Verdict.STALE:
            status = new
            known_at = at if known_at is None or at > known_at else known_at
    return status


@given(histories, st.data())
def test_any_delivery_order_ends_where_stripe_ended(steps: list[str], data: st.DataObject) -> None:
    events = [(step, T0 + timedelta(seconds=i)) for i, step in enumerate(steps)]
    shuffled = data.draw(st.permutations(events))
    assert replay(events) == steps[-1]
    assert replay(shuffled) == steps[-1]


@given(histories, st.data())
def test_replays_change_nothing(steps: list[str], data: st.DataObject) -> None:
    events = [(step, T0 + timedelta(seconds=i)) for i, step in enumerate(steps)]
    repeated = data.draw(st.lists(st.sampled_from(events), max_size=10))
    assert replay(events + repeated) == steps[-1]


@given(st.sampled_from(sorted(rules.PAYMENT_RANK)), st.sampled_from(sorted(rules.PAYMENT_RANK)))
def test_final_states_never_move(current: str, new: str) -> None:
    verdict = rules.payment_verdict(current, T0, new, T0 + timedelta(days=1))
    if current in rules.FINAL_PAYMENT_STATES and new != current:
        assert verdict is rules.Verdict.STALE
    if current == new:
        assert verdict is rules.Verdict.UNCHANGED


def test_local_claims_yield_to_stripe() -> None:
    # The payer's return moved the payment to processing without Stripe's clock: Stripe's
    # failure, whenever it is dated, is applied.
    assert rules.payment_verdict("processing", None, "failed", T0) is rules.Verdict.APPLIED
    assert rules.payment_verdict("processing", T0, "failed", T0) is rules.Verdict.STALE
    assert rules.payment_verdict("failed", T0, "processing", T0) is rules.Verdict.APPLIED


@pytest.mark.parametrize(
    ("stripe_status", "has_error", "local"),
    [
        ("requires_payment_method", False, "pending"), ("requires_payment_method", True, "failed"),
        ("requires_confirmation", False, "pending"), ("requires_action", False, "pending"),
        ("processing", False, "processing"), ("requires_capture", False, "processing"),
        ("succeeded", False, "succeeded"), ("canceled", True, "canceled"),
    ],
)
def test_intent_status(stripe_status: str, has_error: bool, local: str) -> None:
    assert rules.intent_status(stripe_status, has_error=has_error) == local


@given(st.lists(st.sampled_from(["pending", "succeeded", "failed", "canceled"]), min_size=1, max_size=6))
def test_refunds_only_move_forward(steps: list[str]) -> None:
    status = "pending"
    seen = [status]
    for new in steps:
        if rules.refund_verdict(status, new) is rules.Verdict.APPLIED:
            status = new
            seen.append(status)
    ranks = [rules.REFUND_RANK[s] for s in seen]
    assert ranks == sorted(ranks)


@given(total=st.integers(0, 10**9), paid=st.integers(0, 10**9), refunded=st.integers(0, 10**9), in_flight=st.booleans(),
       current=st.sampled_from(["unpaid", "processing", "paid", "refunded", "void"]))
def test_charge_status(total: int, paid: int, refunded: int, in_flight: bool, current: str) -> None:
    refunded = min(refunded, paid)
    status = rules.charge_status(current, total_fen=total, paid_fen=paid, refunded_fen=refunded, in_flight=in_flight)
    if current == "void":
        assert status == "void"
    elif paid > 0 and refunded == paid:
        assert status == "refunded"
    elif paid > 0 and paid >= total:
        assert status == "paid"
    elif status == "processing":
        assert in_flight
    else:
        assert status in ("unpaid", "paid")
    assert rules.outstanding(total, paid) == max(0, total - paid)


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=5), st.integers(-10, 6 * 10**7))
def test_split_refund_never_exceeds_what_is_left(available: list[int], amount: int) -> None:
    pairs = list(enumerate(available, start=1))
    if amount <= 0 or amount > sum(available):
        with pytest.raises(ValueError):
            rules.split_refund(amount, pairs)
        return
    shares = rules.split_refund(amount, pairs)
    assert sum(s.amount_fen for s in shares) == amount
    left = dict(pairs)
    assert all(0 < s.amount_fen <= left[s.payment_id] for s in shares)


@given(received=st.integers(1, 10**8), refunds=st.lists(st.tuples(st.integers(1, 10**7),
       st.sampled_from(["pending", "succeeded", "failed", "canceled"])), max_size=5))
def test_refundable(received: int, refunds: list[tuple[int, str]]) -> None:
    live = sum(a for a, s in refunds if s in ("pending", "succeeded"))
    assert rules.refundable(received, refunds) == max(0, received - live)


@given(st.integers(0, 10**9), st.integers(0, 100))
def test_percent_of_rounds_half_up(fen: int, percent: int) -> None:
    expected = int((Decimal(fen) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert rules.percent_of(fen, percent) == expected


@given(paid=st.integers(0, 10**8), hours_before=st.integers(-48, 24 * 30), cancellation_hours=st.integers(0, 24 * 7),
       late=st.integers(0, 100))
def test_cancellation_refund(paid: int, hours_before: int, cancellation_hours: int, late: int) -> None:
    starts = T0 + timedelta(days=40)
    result = rules.cancellation_refund(paid, starts_at=starts, cancelled_at=starts - timedelta(hours=hours_before),
                                       cancellation_hours=cancellation_hours, late_percent=late)
    assert 0 <= result.amount_fen <= paid
    if hours_before >= cancellation_hours:
        assert (result.amount_fen, result.rule) == (paid, rules.CancellationRule.IN_TIME)
    elif paid:
        assert result.rule is rules.CancellationRule.LATE and result.amount_fen == rules.percent_of(paid, late)


def test_cancellation_refund_examples() -> None:
    starts = T0 + timedelta(days=3)
    in_time = rules.cancellation_refund(10_001, starts_at=starts, cancelled_at=starts - timedelta(hours=24),
                                        cancellation_hours=24, late_percent=50)
    assert (in_time.amount_fen, in_time.rule) == (10_001, rules.CancellationRule.IN_TIME)
    late = rules.cancellation_refund(10_001, starts_at=starts, cancelled_at=starts - timedelta(hours=23, minutes=59),
                                     cancellation_hours=24, late_percent=50)
    assert (late.amount_fen, late.rule) == (5_001, rules.CancellationRule.LATE)


@given(st.integers(0, 10**8), st.integers(0, 10**8))
def test_settle_advance(advance: int, fee: int) -> None:
    result = rules.settle_advance(advance, fee)
    assert result.applied_fen + result.surplus_fen == advance
    assert result.applied_fen + result.shortfall_fen == fee
    assert min(result.surplus_fen, result.shortfall_fen) == 0


@pytest.mark.parametrize(
    ("raw", "fen"),
    [("120", 12_000), ("120.5", 12_050), ("¥120.50", 12_050), (" 0.01 ", 1), ("1,000", None), ("-3", None), ("1.234", None),
     ("", None), ("abc", None)],
)
def test_parse_yuan(raw: str, fen: int | None) -> None:
    assert parse_yuan(raw) == fen
