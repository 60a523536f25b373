"""The booking lifecycle as a pure state machine.

    requested → approved | rejected | expired | cancelled (withdrawn by the enterprise)
    approved  → cancelled | completed | no_show

Who may take which step, and until when, is decided here; services apply the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from facility_share.errors import Conflict, Forbidden

TRANSITIONS: dict[str, dict[str, str]] = {
    "requested": {"approve": "approved", "reject": "rejected", "expire": "expired", "cancel": "cancelled"},
    "approved": {"cancel": "cancelled", "complete": "completed", "no_show": "no_show"},
}
# How long a request may wait for a decision at most; it also expires when its slot begins.
DECISION_WINDOW = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class BookingState:
    status: str
    starts_at: datetime
    ends_at: datetime
    cancellation_hours: int


def decision_deadline(created_at: datetime, starts_at: datetime) -> datetime:
    return min(created_at + DECISION_WINDOW, starts_at)


def next_status(state: BookingState, action: str, *, by_manager: bool, now: datetime) -> str:
    """The status after ``action``.

    Raises:
        Conflict: the action is not possible from the current status or at this time.
        Forbidden: only the managing unit may take this step, or the enterprise's
            cancellation deadline has passed.
    """
    target = TRANSITIONS.get(state.status, {}).get(action)
    if target is None:
        raise Conflict(f"a {state.status} booking cannot be {_past(action)}")
    if action in ("approve", "reject", "complete", "no_show") and not by_manager:
        raise Forbidden(f"only the managing unit can mark a booking {target}")
    if action in ("complete", "no_show") and now < state.starts_at:
        raise Conflict(f"a booking can be marked {target} only once it has started")
    if action == "approve" and now >= state.starts_at:
        raise Conflict("the requested time has already begun; the request can only be rejected")
    if action == "cancel" and state.status == "approved" and not by_manager:
        deadline = state.starts_at - timedelta(hours=state.cancellation_hours)
        if now > deadline:
            raise Forbidden(
                f"approved bookings of this resource can be cancelled until {state.cancellation_hours} hours "
                f"before the start ({deadline.isoformat(timespec='minutes')}); contact the managing unit"
            )
    if action == "cancel" and now >= state.ends_at:
        raise Conflict("a booking that has ended cannot be cancelled")
    return target


def _past(action: str) -> str:
    return {"approve": "approved", "reject": "rejected", "expire": "expired", "cancel": "cancelled",
            "complete": "completed", "no_show": "marked a no-show"}[action]
