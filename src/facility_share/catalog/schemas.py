"""What the catalogue API returns: plain dataclasses, built from ORM rows in one place.

Money is integer fen (``*_fen``); times are ISO 8601 in UTC; opening hours are local times in
the resource's own timezone, which is named beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from facility_share.db.models import Category, Closure, ManagingUnit, Resource

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class UnitRef:
    code: str
    name_zh: str
    name_en: str


@dataclass
class CategoryRef:
    code: str
    name_zh: str
    name_en: str


@dataclass
class ResourceSummary:
    code: str
    kind: str
    name_zh: str
    name_en: str
    model: str
    maker: str
    country: str
    category: CategoryRef
    unit: UnitRef
    location_zh: str
    location_en: str
    capacity: int
    open_for_sharing: bool
    original_value_fen: int
    min_price_fen: int | None
    capabilities: list[str]
    booking_unit: str


@dataclass
class ResourcePage:
    items: list[ResourceSummary]
    total: int
    page: int
    per_page: int
    pages: int


@dataclass
class FeeLine:
    basis: str
    label_zh: str
    label_en: str
    internal_fen: int
    district_fen: int
    external_fen: int
    unit_minutes: int
    minimum_units: int
    note_zh: str
    note_en: str


@dataclass
class OpeningInterval:
    weekday: str
    opens: str
    closes: str


@dataclass
class ClosureOut:
    starts_at: datetime
    ends_at: datetime
    reason: str


@dataclass
class Shift:
    code: str
    name_zh: str
    name_en: str
    hours: str


@dataclass
class BookingRulesOut:
    booking_unit: str
    slot_minutes: int
    min_minutes: int
    max_minutes: int
    lead_minutes: int
    horizon_days: int
    approval_required: bool
    self_operation_allowed: bool
    qualification_required: bool
    working_calendar: bool
    cancellation_hours: int
    billing_basis: str
    shifts: list[Shift]
    peak_hours: list[OpeningInterval] = field(default_factory=list)
    no_show_fee_fen: int = 0
    checkin_grace_minutes: int = 15
    no_show_grace_minutes: int = 30


@dataclass
class Contact:
    name: str
    phone: str
    email: str


@dataclass
class ResourceDetail(ResourceSummary):
    timezone: str
    commissioned_on: date | None
    rated_hours_per_year: int
    specs_zh: str
    specs_en: str
    functions_zh: str
    functions_en: str
    sharing_modes: list[str]
    contact: Contact
    parent_category: CategoryRef | None
    booking_rules: BookingRulesOut
    opening_hours: list[OpeningInterval]
    closures: list[ClosureOut]
    fees: list[FeeLine]
    parent: UnitRef | None = None
    lines: list[UnitRef] = field(default_factory=list)


@dataclass
class UnitSummary:
    code: str
    name_zh: str
    name_en: str
    kind: str
    address_zh: str
    address_en: str
    resource_count: int


@dataclass
class UnitDetail:
    code: str
    name_zh: str
    name_en: str
    kind: str
    uscc: str | None
    address_zh: str
    address_en: str
    contact: Contact
    website: str
    description_zh: str
    description_en: str
    resources: list[ResourceSummary]


@dataclass
class CategoryNode:
    code: str
    name_zh: str
    name_en: str
    resource_count: int
    children: list[CategoryNode]


def _category(c: Category) -> CategoryRef:
    return CategoryRef(code=c.code, name_zh=c.name_zh, name_en=c.name_en)


def _summary_fields(r: Resource) -> dict:
    return {
        "code": r.code,
        "kind": r.kind,
        "name_zh": r.name_zh,
        "name_en": r.name_en,
        "model": r.model,
        "maker": r.maker,
        "country": r.country,
        "category": _category(r.category),
        "unit": UnitRef(code=r.unit.code, name_zh=r.unit.name_zh, name_en=r.unit.name_en),
        "location_zh": r.location_zh,
        "location_en": r.location_en,
        "capacity": r.capacity,
        "open_for_sharing": r.open_for_sharing,
        "original_value_fen": r.original_value_fen,
        "min_price_fen": r.min_price_fen,
        "capabilities": list(r.capabilities or []),
        "booking_unit": r.booking_unit,
    }


def resource_summary(r: Resource) -> ResourceSummary:
    return ResourceSummary(**_summary_fields(r))


def resource_detail(
    r: Resource,
    closures: Sequence[Closure],
    parent_category: Category | None,
    lines: Sequence[Resource],
    parent: Resource | None,
) -> ResourceDetail:
    contact = Contact(
        name=r.contact_name or r.unit.contact_name,
        phone=r.contact_phone or r.unit.contact_phone,
        email=r.contact_email or r.unit.contact_email,
    )
    return ResourceDetail(
        **_summary_fields(r),
        timezone=r.timezone,
        commissioned_on=r.commissioned_on,
        rated_hours_per_year=r.rated_hours_per_year,
        specs_zh=r.specs_zh,
        specs_en=r.specs_en,
        functions_zh=r.functions_zh,
        functions_en=r.functions_en,
        sharing_modes=list(r.sharing_modes or []),
        contact=contact,
        parent_category=_category(parent_category) if parent_category else None,
        booking_rules=BookingRulesOut(
            booking_unit=r.booking_unit,
            slot_minutes=r.slot_minutes,
            min_minutes=r.min_minutes,
            max_minutes=r.max_minutes,
            lead_minutes=r.lead_minutes,
            horizon_days=r.horizon_days,
            approval_required=r.approval_required,
            self_operation_allowed=r.self_operation_allowed,
            qualification_required=r.qualification_required,
            working_calendar=r.working_calendar,
            cancellation_hours=r.cancellation_hours,
            billing_basis=r.billing_basis,
            shifts=[Shift(**s) for s in (r.shifts or [])],
            peak_hours=[
                OpeningInterval(weekday=WEEKDAY_NAMES[w], opens=opens, closes="24:00" if closes == "00:00" else closes)
                for w, opens, closes in (r.peak_hours or [])
            ],
            no_show_fee_fen=r.no_show_fee_fen,
            checkin_grace_minutes=r.checkin_grace_minutes,
            no_show_grace_minutes=r.no_show_grace_minutes,
        ),
        opening_hours=[
            OpeningInterval(weekday=WEEKDAY_NAMES[h.weekday], opens=f"{h.opens:%H:%M}", closes=_closes(h.closes))
            for h in r.opening_hours
        ],
        closures=[ClosureOut(starts_at=c.starts_at, ends_at=c.ends_at, reason=c.reason) for c in closures],
        fees=[
            FeeLine(
                basis=f.basis,
                label_zh=f.label_zh,
                label_en=f.label_en,
                internal_fen=f.internal_fen,
                district_fen=f.district_fen,
                external_fen=f.external_fen,
                unit_minutes=f.unit_minutes,
                minimum_units=f.minimum_units,
                note_zh=f.note_zh,
                note_en=f.note_en,
            )
            for f in r.fee_items
        ],
        parent=UnitRef(code=parent.code, name_zh=parent.name_zh, name_en=parent.name_en) if parent else None,
        lines=[UnitRef(code=line.code, name_zh=line.name_zh, name_en=line.name_en) for line in lines],
    )


def _closes(t) -> str:  # type: ignore[no-untyped-def]
    # Midnight as a closing time is the end of the day.
    return "24:00" if (t.hour, t.minute) == (0, 0) else f"{t:%H:%M}"


def unit_summary(u: ManagingUnit, resource_count: int) -> UnitSummary:
    return UnitSummary(
        code=u.code,
        name_zh=u.name_zh,
        name_en=u.name_en,
        kind=u.kind,
        address_zh=u.address_zh,
        address_en=u.address_en,
        resource_count=resource_count,
    )


def unit_detail(u: ManagingUnit, resources: list[ResourceSummary]) -> UnitDetail:
    return UnitDetail(
        code=u.code,
        name_zh=u.name_zh,
        name_en=u.name_en,
        kind=u.kind,
        uscc=u.uscc,
        address_zh=u.address_zh,
        address_en=u.address_en,
        contact=Contact(name=u.contact_name, phone=u.contact_phone, email=u.contact_email),
        website=u.website,
        description_zh=u.description_zh,
        description_en=u.description_en,
        resources=resources,
    )
