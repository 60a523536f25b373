"""Where state changes ask for notifications: one cheap INSERT of a ``notify`` job in the same
transaction as the change (a rolled-back change sends nothing). The job, run by the worker,
finds the recipients, writes each message in the recipient's language and queues one e-mail
per recipient (``handlers``).

Each event has a dedupe key, so an event is notified once however often it is reported.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.jobs.queue import enqueue, enqueue_many

NOTIFY = "notify"
# Audit actions of a booking → the event people are told about (others notify nobody).
BOOKING_EVENTS = {
    "request": "booking.requested",
    "request_auto_approved": "booking.approved",
    "approve": "booking.approved",
    "reject": "booking.rejected",
    # Who hears of a cancellation depends on who cancelled (the handler reads it from the audit log).
    "cancel": "booking.cancelled",
    "no_show": "booking.no_show",
}


def event_key(event: str, object_id: int, extra: str = "") -> str:
    return f"notify:{event}:{object_id}" + (f":{extra}" if extra else "")


async def booking_event(session: AsyncSession, action: str, booking_id: int) -> None:
    """After a booking's audit action: a request (→ the unit's managers), an approval, automatic
    or by the unit, a rejection or a no-show (→ whoever booked), a cancellation (→ the other side:
    the booker when the unit cancelled, the unit's managers when the enterprise did). Other
    actions notify nobody."""
    event = BOOKING_EVENTS.get(action)
    if event is not None:
        await enqueue(session, NOTIFY, {"event": event, "booking_id": booking_id}, dedupe_key=event_key(event, booking_id))


async def bookings_expired(session: AsyncSession, booking_ids: Iterable[int]) -> None:
    """Requests that expired undecided (→ whoever booked each); one statement for all."""
    await enqueue_many(session, NOTIFY, [
        ({"event": "booking.expired", "booking_id": booking_id}, event_key("booking.expired", booking_id)) for booking_id in booking_ids
    ])


async def charge_issued(session: AsyncSession, charge_id: int) -> None:
    """A charge is due (→ the enterprise's users)."""
    await enqueue(session, NOTIFY, {"event": "charge.issued", "charge_id": charge_id}, dedupe_key=event_key("charge.issued", charge_id))


async def settlement_approved(session: AsyncSession, settlement_id: int) -> None:
    """A settlement became final (→ finance users)."""
    await enqueue(session, NOTIFY, {"event": "settlement.approved", "settlement_id": settlement_id},
                  dedupe_key=event_key("settlement.approved", settlement_id))
