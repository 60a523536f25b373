"""Largest-remainder scaling: hand-computed cases and its properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility_share.finance.allocation import limit_total, scale_to_total


def test_hand_computed_split() -> None:
    # 100 fen over three lines of 100 → 33.33 each; one fen left, remainders tie, the lowest
    # key gets it.
    assert scale_to_total({"B": 100, "A": 100, "C": 100}, 100) == {"A": 34, "B": 33, "C": 33}
    # 10 over 5, 3, 2 (sum 10) asked to 7: 3.5, 2.1, 1.4 → 3, 2, 1 and one fen to the largest
    # remainder (A's .5).
    assert scale_to_total({"A": 5, "B": 3, "C": 2}, 7) == {"A": 4, "B": 2, "C": 1}


def test_ties_go_to_the_lower_key_whatever_the_input_order() -> None:
    amounts = {"91120222MA05XXXX2": 50, "91120222MA05XXXX1": 50}
    assert scale_to_total(amounts, 51) == {"91120222MA05XXXX1": 26, "91120222MA05XXXX2": 25}
    reordered = dict(reversed(list(amounts.items())))
    assert scale_to_total(reordered, 51) == scale_to_total(amounts, 51)


def test_limit_total_leaves_amounts_within_the_limit_alone() -> None:
    assert limit_total({"A": 10, "B": 20}, 30) == ({"A": 10, "B": 20}, False)
    assert limit_total({"A": 10, "B": 20}, 1000) == ({"A": 10, "B": 20}, False)
    assert limit_total({"A": 10, "B": 20}, 15) == ({"A": 5, "B": 10}, True)
    assert limit_total({}, 0) == ({}, False)
    assert limit_total({"A": 0, "B": 0}, 0) == ({"A": 0, "B": 0}, False)
    assert limit_total({"A": 7, "B": 3}, 0) == ({"A": 0, "B": 0}, True)


@pytest.mark.parametrize(("amounts", "total", "error"), [
    ({"A": -1}, 0, ValueError),
    ({"A": 10}, 11, ValueError),
    ({"A": 10}, -1, ValueError),
    ({"A": 1.5}, 1, TypeError),
    ({"A": True}, 1, TypeError),
])
def test_bad_input_is_refused(amounts, total, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        scale_to_total(amounts, total)


amounts_strategy = st.dictionaries(
    st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=1, max_size=18),
    st.integers(min_value=0, max_value=10**12),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(amounts=amounts_strategy, data=st.data())
def test_properties(amounts: dict[str, int], data: st.DataObject) -> None:
    whole = sum(amounts.values())
    total = data.draw(st.integers(min_value=0, max_value=whole))
    shares = scale_to_total(amounts, total)
    # Sums exactly; no line above its amount; none negative.
    assert sum(shares.values()) == total
    assert set(shares) == set(amounts)
    assert all(0 <= shares[k] <= amounts[k] for k in amounts)
    # Each share is its exact quota rounded down or up: never off by a whole fen.
    for key, amount in amounts.items():
        if whole:
            assert abs(shares[key] * whole - total * amount) < whole
    # Independent of the input order.
    reordered = dict(data.draw(st.permutations(list(amounts.items()))))
    assert scale_to_total(reordered, total) == shares


@settings(max_examples=200, deadline=None)
@given(amounts=amounts_strategy, limit=st.integers(min_value=0, max_value=10**13))
def test_limit_total_properties(amounts: dict[str, int], limit: int) -> None:
    shares, scaled = limit_total(amounts, limit)
    assert sum(shares.values()) == min(limit, sum(amounts.values()))
    assert scaled == (sum(amounts.values()) > limit)
    assert all(0 <= shares[k] <= amounts[k] for k in amounts)


@settings(max_examples=200, deadline=None)
@given(amounts=amounts_strategy, data=st.data())
def test_a_larger_amount_never_gives_its_line_less(amounts: dict[str, int], data: st.DataObject) -> None:
    """A larger amount for one line, the total fixed, never gives that line less (what the
    subsidy's monotonicity within a controller group relies on)."""
    if not amounts:
        return
    key = data.draw(st.sampled_from(sorted(amounts)))
    whole = sum(amounts.values())
    total = data.draw(st.integers(min_value=0, max_value=whole))
    bump = data.draw(st.integers(min_value=1, max_value=10**6))
    before = scale_to_total(amounts, total)[key]
    after = scale_to_total({**amounts, key: amounts[key] + bump}, total)[key]
    assert after >= before
