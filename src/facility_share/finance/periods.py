"""Settlement and report periods: a year (``2026``), a quarter (``2026-Q3``) or a month
(``2026-07``), and for usage reports any range of days.

Periods are local dates in the district's timezone, half-open ``[start, end)``. A settlement
period never spans two calendar years, because caps and budgets are annual. Pure: the policy
rules take the same ``Period`` the services read from a label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from facility_share.errors import N_, InvalidInput

_YEAR = re.compile(r"^(\d{4})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
YEAR_RANGE = N_("the year must be between 2000 and 2100, got %(year)s")


# Settlements are made for the first three; usage reports also cover any range of days.
PERIOD_KINDS = ("month", "quarter", "year", "range")


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` of local dates, with its label (``2026-Q3``) and kind."""

    start: date
    end: date  # exclusive
    label: str
    kind: str  # month | quarter | year | range

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidInput(f"period {self.label!r}: the end {self.end} must be after the start {self.start}")
        if self.kind not in PERIOD_KINDS:
            raise InvalidInput(f"period {self.label!r}: kind {self.kind!r} is not one of {', '.join(PERIOD_KINDS)}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end

    @property
    def year(self) -> int:
        return self.start.year

    @property
    def days_in_year(self) -> int:
        return (date(self.year + 1, 1, 1) - date(self.year, 1, 1)).days


def _month_end(year: int, month: int) -> date:
    return date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)


def parse_period(text: str, *, field: str = "period") -> Period:
    """Read ``2026``, ``2026-Q3`` or ``2026-07``.

    Raises:
        InvalidInput: anything else, with the accepted forms in the message.
    """
    raw = (text or "").strip()
    if match := _YEAR.match(raw):
        year = int(match.group(1))
        if not 2000 <= year <= 2100:
            raise InvalidInput.translatable(YEAR_RANGE, field=field, year=year)
        return Period(date(year, 1, 1), date(year + 1, 1, 1), raw, "year")
    if match := _QUARTER.match(raw):
        year, quarter = int(match.group(1)), int(match.group(2))
        if not 2000 <= year <= 2100:
            raise InvalidInput.translatable(YEAR_RANGE, field=field, year=year)
        first = 3 * (quarter - 1) + 1
        return Period(date(year, first, 1), _month_end(year, first + 2), f"{year}-Q{quarter}", "quarter")
    if match := _MONTH.match(raw):
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise InvalidInput.translatable(N_("the month must be 01 to 12, got %(month)s"), field=field, month=f"{month:02d}")
        if not 2000 <= year <= 2100:
            raise InvalidInput.translatable(YEAR_RANGE, field=field, year=year)
        return Period(date(year, month, 1), _month_end(year, month), f"{year}-{month:02d}", "month")
    raise InvalidInput.translatable(N_("expected a year (2026), a quarter (2026-Q3) or a month (2026-07), got %(text)s"),
                                    field=field, text=repr(raw))
