"""The catalogue as plain, validated records: what the YAML files say, checked field by field.

These models know nothing of the database; ``files.load_catalog`` builds them from a folder
and ``importer`` writes them. Money in the files is written in yuan (``1250000`` or
``"85.50"``) because that is how fee schedules are published; it becomes integer fen here,
exactly, with no floating point on the way.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from stdnum.cn import uscc as uscc_number

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNIT_KINDS = ("university", "institute", "enterprise", "incubator", "pilot_base")
RESOURCE_KINDS = ("instrument", "workshop", "line")
SHARING_MODES = ("staff_operated", "self_operated", "sample_testing", "workshop_rental")
CODE_PATTERN = r"^[A-Z0-9][A-Z0-9-]{1,38}[A-Z0-9]$"
# Part of every unit file's digest: bump it when parsing or defaults change, so that files
# imported by an older version are parsed again.
SCHEMA_VERSION = "2"


def yuan_to_fen(value: object) -> int:
    """Convert a yuan amount written in a file (int, float or string) to integer fen.

    Raises:
        ValueError: not a number, negative, or more precise than a fen.
    """
    if isinstance(value, bool):
        raise ValueError("expected an amount in yuan, e.g. 1250000 or 85.50")
    try:
        amount = Decimal(str(value).replace(",", "").strip())
    except InvalidOperation:
        raise ValueError(f"expected an amount in yuan, e.g. 1250000 or 85.50, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"expected a finite amount in yuan, got {value!r}")
    if amount < 0:
        raise ValueError(f"must not be negative, got {value}")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"has more decimals than a fen (0.01 yuan): {value}")
    return int(fen)


Fen = Annotated[int, BeforeValidator(yuan_to_fen)]


def _parse_clock(text: str) -> time:
    match = re.fullmatch(r"([01]\d|2[0-4]):([0-5]\d)", text.strip())
    if not match:
        raise ValueError(f"expected a time like 08:30, got {text!r}")
    hours, minutes = int(match[1]), int(match[2])
    if hours == 24:
        if minutes:
            raise ValueError(f"24:00 is the latest time, got {text!r}")
        return time(0, 0)  # end of day
    return time(hours, minutes)


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def parse_interval(text: str) -> tuple[time, time]:
    """Parse ``"08:30-12:00"``; ``24:00`` (end of day) is returned as 00:00.

    Raises:
        ValueError: malformed, or the end is not after the start.
    """
    parts = str(text).split("-")
    if len(parts) != 2:
        raise ValueError(f"expected an interval like 08:30-12:00, got {text!r}")
    start, end = _parse_clock(parts[0]), _parse_clock(parts[1])
    end_minutes = _minutes(end) or 24 * 60
    if end_minutes <= _minutes(start):
        raise ValueError(f"the end must be after the start in {text!r}")
    return start, end


def expand_days(spec: str) -> list[int]:
    """``"mon-fri"`` → [0..4], ``"sat"`` → [5], ``"daily"`` → [0..6].

    Raises:
        ValueError: an unknown day name.
    """
    spec = spec.strip().lower()
    if spec in ("daily", "every day", "all"):
        return list(range(7))
    days: list[int] = []
    for piece in spec.split(","):
        piece = piece.strip()
        if "-" in piece:
            first, last = (p.strip() for p in piece.split("-", 1))
            if first not in WEEKDAYS or last not in WEEKDAYS:
                raise ValueError(f"unknown day range {piece!r}; use mon, tue, wed, thu, fri, sat, sun")
            a, b = WEEKDAYS.index(first), WEEKDAYS.index(last)
            if b < a:
                raise ValueError(f"day range {piece!r} runs backwards")
            days.extend(range(a, b + 1))
        elif piece in WEEKDAYS:
            days.append(WEEKDAYS.index(piece))
        else:
            raise ValueError(f"unknown day {piece!r}; use mon, tue, wed, thu, fri, sat, sun, mon-fri or daily")
    return days


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class OpeningInterval(Record):
    weekday: int = Field(ge=0, le=6)
    opens: time
    closes: time  # 00:00 means end of day


class ClosureRecord(Record):
    starts_at: datetime = Field(alias="from")
    ends_at: datetime = Field(alias="to")
    reason: str = ""

    @model_validator(mode="after")
    def _ends_after_start(self) -> ClosureRecord:
        if self.ends_at <= self.starts_at:
            raise ValueError("'to' must be after 'from'")
        return self


class FeeRecord(Record):
    basis: Literal["hour", "sample", "shift", "day", "setup"]
    label_zh: str = Field(min_length=1, max_length=200)
    label_en: str = Field(min_length=1, max_length=200)
    internal: Fen
    district: Fen
    external: Fen
    unit_minutes: int = Field(default=60, ge=1, le=24 * 60)
    minimum_units: int = Field(default=1, ge=0)
    # Hourly items only: which time they bill (peak hours are the resource's ``peak_hours``)
    # and how a started increment counts.
    period: Literal["all", "peak", "off_peak"] = "all"
    rounding: Literal["up", "nearest", "down"] = "up"
    note_zh: str = ""
    note_en: str = ""


class ShiftRecord(Record):
    code: str = Field(pattern=r"^[a-z0-9_]+$")
    name_zh: str
    name_en: str
    hours: str  # "08:00-16:00"

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_interval(value)
        return value


class BookingRules(Record):
    unit: Literal["slot", "shift", "day"] = "slot"
    slot_minutes: int = Field(default=30, ge=5, le=24 * 60)
    min_minutes: int = Field(default=30, ge=5)
    max_minutes: int = Field(default=480, ge=5)
    lead_hours: int = Field(default=24, ge=0)
    horizon_days: int = Field(default=60, ge=1, le=730)
    approval_required: bool = True
    self_operation_allowed: bool = False
    qualification_required: bool = True
    working_calendar: bool = True
    cancellation_hours: int = Field(default=24, ge=0)
    billing: Literal["actual", "booked"] = "actual"
    shifts: tuple[ShiftRecord, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> BookingRules:
        if self.max_minutes < self.min_minutes:
            raise ValueError("max_minutes must not be below min_minutes")
        if self.min_minutes % self.slot_minutes:
            raise ValueError("min_minutes must be a multiple of slot_minutes")
        if self.unit == "shift" and not self.shifts:
            raise ValueError("booking by shift needs a list of shifts")
        return self


def _opening_hours(value: object) -> tuple[OpeningInterval, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ValueError('expected a mapping of days to intervals, e.g. {"mon-fri": ["08:30-17:30"]}')
    intervals: list[OpeningInterval] = []
    for spec, ranges in value.items():
        days = expand_days(str(spec))
        if isinstance(ranges, str):
            ranges = [ranges]
        if not isinstance(ranges, list):
            raise ValueError(f"{spec}: expected a list of intervals like ['08:30-12:00']")
        for text in ranges:
            opens, closes = parse_interval(str(text))
            intervals.extend(OpeningInterval(weekday=d, opens=opens, closes=closes) for d in days)
    by_day: dict[int, list[OpeningInterval]] = {}
    for interval in intervals:
        by_day.setdefault(interval.weekday, []).append(interval)
    for day, day_intervals in by_day.items():
        day_intervals.sort(key=lambda i: i.opens)
        for earlier, later in zip(day_intervals, day_intervals[1:], strict=False):
            earlier_end = _minutes(earlier.closes) or 24 * 60
            if _minutes(later.opens) < earlier_end:
                raise ValueError(
                    f"intervals overlap on {WEEKDAYS[day]}: "
                    f"{earlier.opens:%H:%M}-{earlier.closes:%H:%M} and {later.opens:%H:%M}-{later.closes:%H:%M}"
                )
    return tuple(sorted(intervals, key=lambda i: (i.weekday, i.opens)))


OpeningHoursField = Annotated[tuple[OpeningInterval, ...], BeforeValidator(_opening_hours)]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {value!r}; use a name like Asia/Shanghai") from None
    return value


TimezoneName = Annotated[str, BeforeValidator(lambda v: _check_timezone(str(v)))]


class ResourceRecord(Record):
    code: str = Field(pattern=CODE_PATTERN)
    kind: Literal["instrument", "workshop", "line"]
    category: str
    name_zh: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    model: str = ""
    maker: str = ""
    country: str = Field(default="", pattern=r"^([A-Z]{2})?$")
    original_value: Fen = 0
    commissioned_on: date | None = None
    location_zh: str = ""
    location_en: str = ""
    timezone: TimezoneName | None = None
    capacity: int = Field(default=1, ge=1, le=1000)
    open_for_sharing: bool = True
    rated_hours_per_year: int = Field(default=1400, ge=0, le=8784)
    specs_zh: str = ""
    specs_en: str = ""
    functions_zh: str = ""
    functions_en: str = ""
    capabilities: tuple[str, ...] = ()
    sharing_modes: tuple[Literal["staff_operated", "self_operated", "sample_testing", "workshop_rental"], ...] = (
        "staff_operated",
    )
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""
    booking: BookingRules = BookingRules()
    opening_hours: OpeningHoursField = ()
    closures: tuple[ClosureRecord, ...] = ()
    fees: tuple[FeeRecord, ...] = ()
    # Weekly peak hours for fee items with a period, e.g. {mon-fri: ["08:00-18:00"]}.
    peak_hours: OpeningHoursField = ()
    # Charged when an approved booking is not used (0: no fee).
    no_show_fee: Fen = 0
    # Self check-in opens this many minutes before the booked start and closes as long after it.
    checkin_grace_minutes: int = Field(default=15, ge=0, le=240)
    # An approved booking with no usage this long after its end becomes a no-show.
    no_show_grace_minutes: int = Field(default=30, ge=0, le=24 * 60)
    parent: str | None = None  # set for lines, from the enclosing workshop

    @model_validator(mode="after")
    def _consistent(self) -> ResourceRecord:
        if not self.opening_hours:
            raise ValueError("opening_hours: at least one weekly interval is needed, e.g. {mon-fri: ['08:30-17:30']}")
        if not self.fees:
            raise ValueError("fees: a published fee schedule with at least one item is needed")
        periods = {fee.period for fee in self.fees if fee.basis == "hour"}
        if periods & {"peak", "off_peak"} and not self.peak_hours:
            raise ValueError("peak_hours: fee items for peak or off-peak time need the resource's weekly peak hours")
        if self.kind == "line" and not self.parent:
            raise ValueError("kind 'line' is only allowed inside a workshop's 'lines' list")
        return self


class UnitRecord(Record):
    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    kind: Literal["university", "institute", "enterprise", "incubator", "pilot_base"]
    uscc: str | None = None
    address_zh: str = ""
    address_en: str = ""
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""
    website: str = ""
    description_zh: str = ""
    description_en: str = ""
    timezone: TimezoneName = "Asia/Shanghai"

    @field_validator("uscc")
    @classmethod
    def _uscc(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return uscc_number.validate(value)
        except Exception as exc:  # stdnum raises a family of ValidationError subclasses
            raise ValueError(
                f"{value!r} is not a valid 统一社会信用代码 (USCC): {exc}; check the 18 characters and the check digit"
            ) from None


class CategoryRecord(Record):
    code: str = Field(pattern=r"^[0-9A-Z]{2,12}$")
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    parent: str | None = None
    level: int = 1
    position: int = 0


class KnownFile(BaseModel):
    """A unit file as the database last imported it."""

    model_config = ConfigDict(frozen=True)

    digest: str
    unit_code: str
    resource_codes: frozenset[str]


class Catalog(BaseModel):
    """The whole catalogue: categories, units and resources, all codes unique."""

    model_config = ConfigDict(frozen=True)

    categories: tuple[CategoryRecord, ...]
    units: tuple[UnitRecord, ...]
    resources: tuple[ResourceRecord, ...]
    # code -> unit code, and code -> file it came from
    resource_units: dict[str, str]
    sources: dict[str, str]
    # file -> digest, for every unit file; and the files skipped because the database
    # already holds exactly what they say
    file_digests: dict[str, str] = {}
    unchanged_files: dict[str, KnownFile] = {}
