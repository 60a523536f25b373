"""Notifications by e-mail, in the recipient's language.

``events`` is what services call where a state changes (one INSERT of a job in the same
transaction); ``handlers`` are the worker's side: find recipients, write the messages
(``messages``), send them (``mailer``) with retries and backoff.
"""

from facility_share.notifications.events import booking_event, bookings_expired, charge_issued, settlement_approved

__all__ = ["booking_event", "bookings_expired", "charge_issued", "settlement_approved"]
