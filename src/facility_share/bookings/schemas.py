"""What the booking API returns and accepts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from facility_share.bookings.availability import Interval, Unit
from facility_share.bookings.services import Availability
from facility_share.db.models import Booking


@dataclass
class Span:
    start: datetime
    end: datetime


@dataclass
class SlotOut:
    start: datetime
    end: datetime
    remaining: int
    label: str


@dataclass
class AvailabilityOut:
    """Free/busy only: the public sees no customer data."""

    resource_code: str
    timezone: str
    capacity: int
    booking_unit: str
    start: datetime
    end: datetime
    open: list[Span]
    free: list[Span]
    busy: list[Span]
    units: list[SlotOut]


@dataclass
class FreeResource:
    code: str
    name_zh: str
    name_en: str
    kind: str
    unit_code: str
    capacity: int


@dataclass
class BookingIn:
    resource_code: str
    start: datetime
    end: datetime
    quantity: int = 1
    mode: str = "staff_operated"
    purpose: str = ""
    samples: int = 0


@dataclass
class DecisionIn:
    reason: str = ""


@dataclass
class BookingOut:
    id: int
    resource_code: str
    resource_name_zh: str
    resource_name_en: str
    unit_code: str
    enterprise_uscc: str
    enterprise_name: str
    user_name: str
    start: datetime
    end: datetime
    quantity: int
    samples: int
    mode: str
    purpose: str
    status: str
    decision_deadline: datetime | None
    decision_reason: str
    customer_class: str
    estimate_fen: int
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass
class BookingPage:
    items: list[BookingOut]
    total: int


def spans(intervals: list[Interval]) -> list[Span]:
    return [Span(i.start, i.end) for i in intervals]


def availability_out(a: Availability) -> AvailabilityOut:
    return AvailabilityOut(
        resource_code=a.resource_code,
        timezone=a.timezone,
        capacity=a.capacity,
        booking_unit=a.booking_unit,
        start=a.start,
        end=a.end,
        open=spans(a.open),
        free=spans(a.free),
        busy=spans(a.busy),
        units=[slot_out(u) for u in a.units],
    )


def slot_out(u: Unit) -> SlotOut:
    return SlotOut(u.start, u.end, u.remaining, u.label)


def booking_out(b: Booking, user_name: str | None = None) -> BookingOut:
    """Needs resource (with unit) and enterprise loaded, and the user unless ``user_name`` is given."""
    return BookingOut(
        id=b.id,
        resource_code=b.resource.code,
        resource_name_zh=b.resource.name_zh,
        resource_name_en=b.resource.name_en,
        unit_code=b.resource.unit.code,
        enterprise_uscc=b.enterprise.uscc,
        enterprise_name=b.enterprise.name,
        user_name=user_name if user_name is not None else b.user.name,
        start=b.starts_at,
        end=b.ends_at,
        quantity=b.quantity,
        samples=b.samples,
        mode=b.mode,
        purpose=b.purpose,
        status=b.status,
        decision_deadline=b.decision_deadline,
        decision_reason=b.decision_reason,
        customer_class=b.customer_class,
        estimate_fen=b.estimate_fen,
        version=b.version,
        created_at=b.created_at,
        updated_at=b.updated_at,
    )
