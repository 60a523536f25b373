"""The worker's side of notifications.

``notify`` (transactional): reads the event's record as it is now, finds the recipients, writes
each one's message in their language and queues one ``email.send`` job per recipient, all in
the job's transaction. An event whose record has moved on (a request already decided, a charge
already paid) is skipped. Recipients get separate jobs so that a failure to reach one does not
resend to the others.

``email.send`` (not transactional): sends one message. Its Message-ID was fixed when it was
written, so a retry is the same message (see ``mailer``). Failures are retried with backoff by
the job runner; a permanent refusal (5xx for the recipient) goes to the dead jobs at once.

``notifications.reminders`` (periodic, transactional): queues the reminder of every approved
booking starting within the reminder window, once per booking and start time (dedupe key).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from facility_share.db.models import AuditEvent, Booking, Charge, Enterprise, PolicyVersion, Resource, RoleGrant, Settlement, SettlementLine, User
from facility_share.jobs.queue import enqueue, enqueue_many, handler
from facility_share.jobs.runner import JobContext
from facility_share.notifications import messages as m
from facility_share.notifications.events import NOTIFY, event_key
from facility_share.notifications.mailer import Outgoing, backend_for, build_email, sender_domain

EMAIL_SEND = "email.send"


# --- facts ------------------------------------------------------------------------------------------


async def booking_facts(session: AsyncSession, booking_id: int) -> tuple[Booking, m.BookingFacts] | None:
    booking = (
        await session.execute(
            select(Booking).where(Booking.id == booking_id).options(
                selectinload(Booking.resource).selectinload(Resource.unit), selectinload(Booking.enterprise),
                selectinload(Booking.user),
            )
        )
    ).scalar_one_or_none()
    if booking is None:
        return None
    r, unit = booking.resource, booking.resource.unit
    return booking, m.BookingFacts(
        id=booking.id, status=booking.status, version=booking.version, resource_code=r.code, resource_name_zh=r.name_zh,
        resource_name_en=r.name_en, location_zh=r.location_zh or "", location_en=r.location_en or "",
        unit_name_zh=unit.name_zh if unit else "", unit_name_en=unit.name_en if unit else "", timezone=r.timezone,
        starts_at=booking.starts_at, ends_at=booking.ends_at, quantity=booking.quantity, mode=booking.mode,
        purpose=booking.purpose or "", enterprise_name=booking.enterprise.name if booking.enterprise else "",
        booker_name=booking.user.name if booking.user else "", reason=booking.decision_reason or "",
        decision_deadline=booking.decision_deadline, created_at=booking.created_at, updated_at=booking.updated_at,
    )


async def unit_managers(session: AsyncSession, unit_id: int) -> list[User]:
    return list((await session.execute(
        select(User).join(RoleGrant, RoleGrant.user_id == User.id)
        .where(RoleGrant.role == "unit_manager", RoleGrant.unit_id == unit_id, User.is_active.is_(True))
        .order_by(User.id).distinct()
    )).scalars())


async def role_holders(session: AsyncSession, role: str) -> list[User]:
    return list((await session.execute(
        select(User).join(RoleGrant, RoleGrant.user_id == User.id)
        .where(RoleGrant.role == role, User.is_active.is_(True)).order_by(User.id).distinct()
    )).scalars())


async def enterprise_users(session: AsyncSession, enterprise_id: int) -> list[User]:
    return list((await session.execute(
        select(User).where(User.enterprise_id == enterprise_id, User.is_active.is_(True)).order_by(User.id)
    )).scalars())


# --- fan-out -----------------------------------------------------------------------------------------


def message_id(key: str, sender: str) -> str:
    """A Message-ID fixed by the e-mail's dedupe key: the same message keeps its identity on retry."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{sender_domain(sender)}>"


async def queue_emails(ctx: JobContext, key: str, recipients: list[User], write: Any) -> int:
    """One ``email.send`` job per recipient with ``write(user, i18n) -> Message``."""
    assert ctx.session is not None
    jobs = []
    for user in recipients:
        if not user.email:
            continue
        i18n = m.language(user.locale, ctx.settings.locale)
        message: m.Message = write(user, i18n)
        email_key = f"email:{key}:{user.id}"
        jobs.append(({
            "to": user.email, "to_name": user.name, "user_id": user.id, "locale": i18n.locale,
            "subject": message.subject, "text": message.text, "html": message.html,
            "attachments": [{"filename": a.filename, "content_type": a.content_type, "data": a.data} for a in message.attachments],
            "message_id": message_id(email_key, ctx.settings.smtp_from),
        }, email_key))
    await enqueue_many(ctx.session, EMAIL_SEND, jobs)
    return len(jobs)


BOOKING_STATES = {
    "booking.requested": ("requested",),
    "booking.approved": ("approved", "completed"),
    "booking.rejected": ("rejected",),
    "booking.expired": ("expired",),
    "booking.reminder": ("approved",),
    "booking.cancelled": ("cancelled",),
    "booking.no_show": ("no_show",),
}


async def cancelled_by_enterprise(session: AsyncSession, booking: Booking) -> bool:
    """Whether the booking's cancellation was made by a user of its own enterprise (the audit
    log says who cancelled; a unit manager or an administrator is the unit's side)."""
    actor_id = (await session.execute(
        select(AuditEvent.actor_id).where(AuditEvent.entity == "booking", AuditEvent.entity_id == booking.id,
                                          AuditEvent.action == "cancel").order_by(AuditEvent.id.desc()).limit(1)
    )).scalar()
    if actor_id is None:
        return False
    actor = await session.get(User, actor_id)
    return actor is not None and actor.enterprise_id == booking.enterprise_id


@handler(NOTIFY)
async def notify(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    session = ctx.session
    assert session is not None
    event = payload["event"]
    settings = ctx.settings
    if event.startswith("booking."):
        found = await booking_facts(session, int(payload["booking_id"]))
        if found is None:
            return {"skipped": "no such booking"}
        booking, facts = found
        if booking.status not in BOOKING_STATES[event] or (event == "booking.reminder" and booking.starts_at <= ctx.now):
            return {"skipped": f"booking is {booking.status} now"}
        key = event_key(event, booking.id, str(int(booking.starts_at.timestamp())) if event == "booking.reminder" else "")
        message_event = event
        if event == "booking.cancelled":
            message_event = "booking.cancelled_by_enterprise" if await cancelled_by_enterprise(session, booking) else "booking.cancelled_by_unit"
        to_managers = message_event in ("booking.requested", "booking.cancelled_by_enterprise")
        recipients = await unit_managers(session, booking.resource.unit_id) if to_managers else [booking.user]

        def write(user: User, i18n: m.I18n) -> m.Message:
            return m.booking_message(message_event, facts, recipient_name=user.name, i18n=i18n, public_url=settings.public_url,
                                     reminder_hours=settings.reminder_hours)

        return {"emails": await queue_emails(ctx, key, recipients, write)}
    if event == "charge.issued":
        charge = await session.get(Charge, int(payload["charge_id"]))
        if charge is None:
            return {"skipped": "no such charge"}
        outstanding = max(0, charge.total_fen - max(0, charge.paid_fen - charge.refunded_fen))
        if charge.status in ("paid", "void", "processing", "refunded") or outstanding <= 0:
            return {"skipped": f"charge is {charge.status} now"}
        resource = await session.get(Resource, charge.resource_id)
        enterprise = await session.get(Enterprise, charge.enterprise_id)
        assert resource is not None and enterprise is not None
        facts = m.ChargeFacts(id=charge.id, kind=charge.kind, total_fen=charge.total_fen, outstanding_fen=outstanding,
                              resource_name_zh=resource.name_zh, resource_name_en=resource.name_en, timezone=resource.timezone,
                              service_date=charge.service_date, booking_id=charge.booking_id, enterprise_name=enterprise.name)
        recipients = await enterprise_users(session, charge.enterprise_id)
        return {"emails": await queue_emails(ctx, event_key(event, charge.id), recipients, lambda user, i18n: m.charge_message(
            facts, recipient_name=user.name, i18n=i18n, public_url=settings.public_url))}
    if event == "settlement.approved":
        settlement = await session.get(Settlement, int(payload["settlement_id"]))
        if settlement is None or settlement.status != "approved":
            return {"skipped": "no approved settlement"}
        policy = await session.get(PolicyVersion, settlement.policy_version_id)
        approver = await session.get(User, settlement.approved_by_id) if settlement.approved_by_id else None
        counts = dict((await session.execute(
            select(SettlementLine.kind, func.count()).where(SettlementLine.settlement_id == settlement.id).group_by(SettlementLine.kind)
        )).all())
        facts = m.SettlementFacts(
            id=settlement.id, period_label=settlement.period_label,
            policy=f"{policy.code} {policy.version}" if policy else "", subsidy_total_fen=settlement.subsidy_total_fen,
            award_total_fen=settlement.award_total_fen, subsidy_lines=counts.get("subsidy", 0), award_lines=counts.get("award", 0),
            approved_by=approver.name if approver else "", approved_at=settlement.approved_at,
        )
        recipients = await role_holders(session, "finance")
        return {"emails": await queue_emails(ctx, event_key(event, settlement.id), recipients, lambda user, i18n: m.settlement_message(
            facts, recipient_name=user.name, i18n=i18n, public_url=settings.public_url))}
    raise ValueError(f"unknown notification event {event!r}")


# --- sending ------------------------------------------------------------------------------------------


@handler(EMAIL_SEND, transactional=False, max_attempts=10)
async def send_email(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    outgoing = Outgoing.from_payload(payload)
    backend = ctx.worker.resources.get("email") if ctx.worker is not None else None
    if backend is None:
        backend = backend_for(ctx.settings)
        if ctx.worker is not None:
            ctx.worker.resources["email"] = backend
    await backend.send(build_email(outgoing, ctx.settings.smtp_from))
    return {"message_id": outgoing.message_id, "to": outgoing.to, "backend": ctx.settings.email_backend}


# --- reminders -----------------------------------------------------------------------------------------


@handler("notifications.reminders", max_attempts=2)
async def queue_reminders(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    assert ctx.session is not None
    hours = ctx.settings.reminder_hours
    if hours <= 0:
        return {"reminders": 0}
    rows = (await ctx.session.execute(
        select(Booking.id, Booking.starts_at)
        .where(Booking.status == "approved", Booking.starts_at > ctx.now, Booking.starts_at <= ctx.now + timedelta(hours=hours))
    )).all()
    await enqueue_many(ctx.session, NOTIFY, [
        ({"event": "booking.reminder", "booking_id": booking_id},
         event_key("booking.reminder", booking_id, str(int(starts_at.timestamp()))))
        for booking_id, starts_at in rows
    ])
    return {"candidates": len(rows)}


__all__ = ["EMAIL_SEND", "enqueue", "notify", "queue_reminders", "send_email"]
