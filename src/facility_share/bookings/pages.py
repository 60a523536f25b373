"""Booking pages: calendars, the booking form, my bookings, the approval queue (being built)."""

from __future__ import annotations

from litestar import Controller


class BookingPages(Controller):
    path = "/"
    include_in_schema = False
    opt = {"access": "public"}
