"""The booking lifecycle: every (status, action) pair, who may take each step, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility_share.bookings.lifecycle import DECISION_WINDOW, TRANSITIONS, BookingState, decision_deadline, next_status
from facility_share.errors import Conflict, Forbidden

START = datetime(2026, 10, 12, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
END = START + timedelta(hours=4)
STATUSES = ("requested", "approved", "rejected", "expired", "cancelled", "completed", "no_show")
ACTIONS = ("approve", "reject", "expire", "cancel", "complete", "no_show")
# The documented state machine.
ALLOWED = {
    ("requested", "approve"): "approved",
    ("requested", "reject"): "rejected",
    ("requested", "expire"): "expired",
    ("requested", "cancel"): "cancelled",
    ("approved", "cancel"): "cancelled",
    ("approved", "complete"): "completed",
    ("approved", "no_show"): "no_show",
}
MANAGER_ONLY = {"approve", "reject", "complete", "no_show"}


def state(status: str, cancellation_hours: int = 24) -> BookingState:
    return BookingState(status, START, END, cancellation_hours)


def good_time(action: str) -> datetime:
    """A moment at which the action is possible."""
    return START + timedelta(minutes=30) if action in ("complete", "no_show") else START - timedelta(hours=72)


def test_the_table_is_the_documented_one() -> None:
    assert {(s, a): t for s, actions in TRANSITIONS.items() for a, t in actions.items()} == ALLOWED
    assert not issubclass(Forbidden, Conflict) and not issubclass(Conflict, Forbidden)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
def test_every_status_and_action(status: str, action: str) -> None:
    target = ALLOWED.get((status, action))
    if target is None:
        for by_manager in (True, False):
            for now in (START - timedelta(hours=72), START + timedelta(minutes=30), END + timedelta(days=1)):
                with pytest.raises(Conflict):
                    next_status(state(status), action, by_manager=by_manager, now=now)
        return
    assert next_status(state(status), action, by_manager=True, now=good_time(action)) == target
    if action in MANAGER_ONLY:
        with pytest.raises(Forbidden):
            next_status(state(status), action, by_manager=False, now=good_time(action))
    else:
        assert next_status(state(status), action, by_manager=False, now=good_time(action)) == target


@pytest.mark.parametrize("action", ["complete", "no_show"])
def test_complete_and_no_show_only_once_started(action: str) -> None:
    with pytest.raises(Conflict, match="once it has started"):
        next_status(state("approved"), action, by_manager=True, now=START - timedelta(seconds=1))
    assert next_status(state("approved"), action, by_manager=True, now=START) == ALLOWED[("approved", action)]
    assert next_status(state("approved"), action, by_manager=True, now=END + timedelta(days=3)) == ALLOWED[("approved", action)]


def test_approve_only_before_the_start_but_reject_any_time() -> None:
    assert next_status(state("requested"), "approve", by_manager=True, now=START - timedelta(seconds=1)) == "approved"
    with pytest.raises(Conflict, match="already begun"):
        next_status(state("requested"), "approve", by_manager=True, now=START)
    assert next_status(state("requested"), "reject", by_manager=True, now=START + timedelta(hours=1)) == "rejected"


def test_enterprise_cancellation_deadline() -> None:
    approved = state("approved", cancellation_hours=48)
    deadline = START - timedelta(hours=48)
    assert next_status(approved, "cancel", by_manager=False, now=deadline) == "cancelled"
    with pytest.raises(Forbidden, match="48 hours before the start") as caught:
        next_status(approved, "cancel", by_manager=False, now=deadline + timedelta(seconds=1))
    assert deadline.isoformat(timespec="minutes") in caught.value.message
    with pytest.raises(Forbidden):
        next_status(approved, "cancel", by_manager=False, now=START - timedelta(minutes=5))
    # The managing unit can still cancel, up to the end.
    assert next_status(approved, "cancel", by_manager=True, now=START - timedelta(minutes=5)) == "cancelled"
    assert next_status(approved, "cancel", by_manager=True, now=START + timedelta(hours=1)) == "cancelled"
    with pytest.raises(Conflict, match="has ended"):
        next_status(approved, "cancel", by_manager=True, now=END)


def test_a_request_can_be_withdrawn_until_it_ends() -> None:
    requested = state("requested", cancellation_hours=48)
    assert next_status(requested, "cancel", by_manager=False, now=START - timedelta(minutes=5)) == "cancelled"
    assert next_status(requested, "cancel", by_manager=False, now=END - timedelta(seconds=1)) == "cancelled"
    with pytest.raises(Conflict):
        next_status(requested, "cancel", by_manager=False, now=END)


def test_zero_cancellation_hours_allows_cancelling_until_the_start() -> None:
    approved = state("approved", cancellation_hours=0)
    assert next_status(approved, "cancel", by_manager=False, now=START) == "cancelled"
    with pytest.raises(Forbidden):
        next_status(approved, "cancel", by_manager=False, now=START + timedelta(seconds=1))


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from(STATUSES),
    action=st.sampled_from(ACTIONS),
    by_manager=st.booleans(),
    offset=st.integers(-7 * 24 * 60, 7 * 24 * 60),
    hours=st.integers(0, 200),
)
def test_next_status_matches_a_model(status: str, action: str, by_manager: bool, offset: int, hours: int) -> None:
    now = START + timedelta(minutes=offset)
    expected: type[Exception] | str
    if (status, action) not in ALLOWED:
        expected = Conflict
    elif action in MANAGER_ONLY and not by_manager:
        expected = Forbidden
    elif action in ("complete", "no_show") and now < START:
        expected = Conflict
    elif action == "approve" and now >= START:
        expected = Conflict
    elif action == "cancel" and status == "approved" and not by_manager and now > START - timedelta(hours=hours):
        expected = Forbidden
    elif action == "cancel" and now >= END:
        expected = Conflict
    else:
        expected = ALLOWED[(status, action)]
    if isinstance(expected, str):
        assert next_status(state(status, hours), action, by_manager=by_manager, now=now) == expected
    else:
        with pytest.raises(expected):
            next_status(state(status, hours), action, by_manager=by_manager, now=now)


@settings(max_examples=100, deadline=None)
@given(created=st.integers(-10_000, 10_000), lead=st.integers(-10_000, 10_000))
def test_decision_deadline_is_48_hours_or_the_start(created: int, lead: int) -> None:
    created_at = START + timedelta(minutes=created)
    starts_at = created_at + timedelta(minutes=lead)
    deadline = decision_deadline(created_at, starts_at)
    assert deadline == min(created_at + timedelta(hours=48), starts_at)
    assert deadline <= starts_at and deadline <= created_at + DECISION_WINDOW


def test_decision_deadline_examples() -> None:
    created = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)
    assert DECISION_WINDOW == timedelta(hours=48)
    assert decision_deadline(created, created + timedelta(days=10)) == created + timedelta(hours=48)
    assert decision_deadline(created, created + timedelta(hours=30)) == created + timedelta(hours=30)
    assert decision_deadline(created, created + timedelta(hours=48)) == created + timedelta(hours=48)
