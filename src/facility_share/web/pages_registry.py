"""The page controllers of every context, in one list the app wires (pages grow per issue)."""

from __future__ import annotations

from facility_share.accounts.pages import AccountPages
from facility_share.bookings.pages import BookingPages

PAGE_CONTROLLERS = [AccountPages, BookingPages]
