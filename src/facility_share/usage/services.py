"""Recording usage, charging it, and rating it. Callers own the transaction (we flush).

Usage logs are append-only (DESIGN.md invariant 4). Every change of a session — the check-out
of an open check-in, a correction, a late samples count — is a new row that supersedes the
previous version; the current version is the one nobody supersedes. Charges follow the current
version: when a session is corrected its charge is voided and a new one issued, and what was
paid on the old charge moves onto the new one (``payments.advances.carry_over``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from facility_share import audit, notifications
from facility_share.accounts.principal import Principal
from facility_share.accounts.security import hash_token, new_token
from facility_share.accounts.services import qualified_until
from facility_share.billing.pricing import customer_class
from facility_share.bookings import availability as av
from facility_share.bookings import services as bookings
from facility_share.db.models import (
    AgentKey,
    Booking,
    Charge,
    Enterprise,
    Rating,
    Resource,
    UsageLog,
    utcnow,
)
from facility_share.errors import N_, Conflict, Forbidden, InvalidInput, NotFound, booking_status, charge_status, fen
from facility_share.usage.charging import line_dicts, parse_peak_hours, price_service

LOG_FIELDS = ("started_at", "ended_at", "samples", "operator", "mode", "source", "supersedes_id", "session_id", "reason")
MAX_SESSION = timedelta(days=31)


def current_versions():  # type: ignore[no-untyped-def]
    """A condition selecting the current version of every session (nobody supersedes it)."""
    newer = aliased(UsageLog)
    return ~exists().where(newer.supersedes_id == UsageLog.id)


# --- helpers -------------------------------------------------------------------------------------


async def _resource(session: AsyncSession, resource_id: int) -> Resource:
    resource = await session.get(Resource, resource_id)
    if resource is None:
        raise NotFound(f"no resource {resource_id}")
    return resource


async def _manageable_booking(session: AsyncSession, principal: Principal, booking_id: int) -> tuple[Booking, Resource]:
    booking = await session.get(Booking, booking_id)
    resource = await session.get(Resource, booking.resource_id) if booking else None
    if booking is None or resource is None or not bookings.can_see(principal, booking, resource.unit_id):
        raise NotFound.translatable(N_("no booking %(booking)s"), booking=booking_id)
    return booking, resource


async def _latest_for_booking(session: AsyncSession, booking_id: int) -> UsageLog | None:
    return (
        await session.execute(
            select(UsageLog).where(UsageLog.booking_id == booking_id, current_versions()).order_by(UsageLog.id.desc()).limit(1)
        )
    ).scalar_one_or_none()


def _check_times(start: datetime, end: datetime | None, now: datetime) -> None:
    if start.tzinfo is None or (end is not None and end.tzinfo is None):
        raise InvalidInput("times: give times with a timezone, e.g. 2026-12-01T09:00:00+08:00")
    bookings.check_bounds(start, end or start)
    if end is not None and end <= start:
        raise InvalidInput.translatable(N_("must be after started_at"), field="ended_at")
    if end is not None and end - start > MAX_SESSION:
        raise InvalidInput.translatable(N_("a session lasts at most %(days)s days; split longer use"), field="ended_at",
                                        days=MAX_SESSION.days)
    if start > now + timedelta(minutes=5):
        raise InvalidInput.translatable(N_("usage cannot start in the future"), field="started_at")


def _check_samples(samples: int) -> None:
    if not 0 <= samples <= 100_000:
        raise InvalidInput.translatable(N_("give the number of samples as a whole number from 0 to 100000"), field="samples")


# --- charges -------------------------------------------------------------------------------------


async def issue_charge(session: AsyncSession, log: UsageLog, resource: Resource, *, booking: Booking | None) -> Charge | None:
    """Price a finished session and record its charge (none without an enterprise)."""
    if log.enterprise_id is None or log.ended_at is None:
        return None
    enterprise = await session.get(Enterprise, log.enterprise_id)
    assert enterprise is not None
    relation = await bookings.relation_to_unit(session, enterprise.id, resource.unit_id)
    klass = customer_class(relation, enterprise.registered_in_district)
    full = await bookings.load_resource(session, resource.code)
    # Billing on booked time uses the booking's span when there is one.
    start, end = log.started_at, log.ended_at
    if resource.billing_basis == "booked" and booking is not None:
        start, end = booking.starts_at, booking.ends_at
    calendar = bookings.calendar_of(full, [])
    units = bookings.count_units(calendar, av.Interval(start, end)) if resource.booking_unit != "slot" else 0
    priced = price_service(
        bookings.fee_rules_of(full.fee_items), klass, start=start, end=end, samples=log.samples, units=units,
        booking_unit=resource.booking_unit, peak_hours=parse_peak_hours(resource.peak_hours or []), timezone=resource.timezone,
        quantity=booking.quantity if booking else 1,
    )
    charge = Charge(
        kind="service", usage_log_id=log.id, booking_id=log.booking_id, resource_id=resource.id, enterprise_id=enterprise.id,
        service_date=log.started_at, customer_class=klass, lines=line_dicts(priced.lines), total_fen=priced.total_fen,
        explanation_zh=priced.explanation_zh, explanation_en=priced.explanation_en, status="unpaid",
    )
    session.add(charge)
    await session.flush()
    audit.record(session, action="issue", entity="charge", entity_id=charge.id, actor_id=log.recorded_by_id,
                 actor_kind="system", after={"total_fen": charge.total_fen, "usage_log_id": log.id})
    await notifications.charge_issued(session, charge.id)
    if booking is not None:
        # A booking paid in advance: the advance covers the fee, its surplus goes back.
        from facility_share.payments.advances import apply_advance

        await apply_advance(session, charge, actor_id=log.recorded_by_id)
    return charge


async def _void_charges_of_session(session: AsyncSession, session_id: int, actor_id: int | None,
                                   reason: str) -> list[tuple[Charge, int]]:
    """Void the session's charges that hold no money; return those that do (money received on
    them, in full or in part, e.g. from an advance), with what each holds, for the correction
    to carry over. What a charge holds is what it received less its refunds, succeeded or
    still under way (a refund waiting for Stripe is money already going back)."""
    from facility_share.payments.advances import held_fen

    statement = (
        select(Charge).join(UsageLog, Charge.usage_log_id == UsageLog.id)
        .where(UsageLog.session_id == session_id, Charge.status != "void").order_by(Charge.id)
    )
    if session.bind.dialect.name == "postgresql":
        # No payment lands on them between reading what they hold and moving it (as the
        # ledger locks a charge; SQLite's write transactions are serialised already).
        statement = statement.with_for_update(of=Charge)
    charges = (await session.execute(statement)).scalars().all()
    holding = []
    for charge in charges:
        if charge.status == "processing":
            raise Conflict.translatable(
                N_("charge %(charge)s of this session is being paid online; correct it once Stripe has answered"), charge=charge.id
            )
        held = await held_fen(session, charge.id) if charge.paid_fen > charge.refunded_fen else 0
        if held > 0:
            holding.append((charge, held))
            continue
        before = {"status": charge.status}
        charge.status, charge.void_reason = "void", reason[:500]
        audit.record(session, action="void", entity="charge", entity_id=charge.id, actor_id=actor_id,
                     before=before, after={"status": "void"}, reason=reason)
    return holding


async def _carry_over_to_corrected(session: AsyncSession, holding: list[tuple[Charge, int]], corrected: Charge | None, *,
                                   actor_id: int | None, reason: str) -> None:
    """Move the money paid on the session's earlier charges onto the corrected one, then void
    them. Money is never silently given back here: if more was paid than the corrected charge
    asks, the unit refunds the difference first (on the payments page, to wherever it came
    from), and the correction is refused until then."""
    from facility_share.payments.advances import carry_over
    from facility_share.payments.rules import outstanding

    held = sum(fen_held for _charge, fen_held in holding)
    due = outstanding(corrected.total_fen, corrected.paid_fen) if corrected is not None else 0
    if held > due:
        first, _held = holding[0]
        raise Conflict.translatable(
            N_("charge %(charge)s of this session holds %(held)s paid, more than the corrected charge of %(corrected)s; refund the "
               "difference of %(difference)s on the payments page first, then correct the session"),
            held=fen(held), charge=first.id, corrected=fen(corrected.total_fen if corrected else 0),
            difference=fen(held - due),
        )
    assert corrected is not None  # held > 0 = due would have been refused above
    for charge, _held in holding:
        await carry_over(session, charge, corrected, method="correction", reason=reason, actor_id=actor_id)
        before = {"status": charge.status}
        charge.status, charge.void_reason = "void", f"{reason}; its payments moved to charge #{corrected.id}"[:500]
        audit.record(session, action="void", entity="charge", entity_id=charge.id, actor_id=actor_id,
                     before=before, after={"status": "void", "moved_to": corrected.id}, reason=reason)
    await session.flush()


async def mark_paid(session: AsyncSession, principal: Principal, charge_id: int, *, method: str, reference: str) -> Charge:
    """A manager records an offline payment (bank transfer, invoice or cash) of what is
    outstanding: an offline payment row, with the charge's sums and status kept in step."""
    from facility_share.payments import ledger

    charge = await session.get(Charge, charge_id)
    resource = await session.get(Resource, charge.resource_id) if charge else None
    if charge is None or resource is None or not principal.manages(resource.unit_id):
        raise NotFound.translatable(N_("no charge %(charge)s in the units you manage"), charge=charge_id)
    if method not in ("bank_transfer", "invoice", "cash"):
        raise InvalidInput.translatable(N_("expected bank_transfer, invoice or cash"), field="method")
    if not reference.strip():
        raise InvalidInput.translatable(N_("give the bank transfer number or the invoice number"), field="reference")
    charge = await ledger.locked_charge(session, charge_id)
    if charge.status != "unpaid":
        raise Conflict.translatable(N_("the charge is %(status)s; only unpaid charges can be marked paid"),
                                    status=charge_status(charge.status))
    before = {"status": charge.status}
    await ledger.record_offline_payment(session, charge, method=method, reference=reference.strip(), actor_id=principal.user_id)
    audit.record(session, action="mark_paid", entity="charge", entity_id=charge.id, actor_id=principal.user_id,
                 before=before, after={"status": charge.status, "method": method, "reference": charge.payment_reference})
    return charge


# --- recording usage -----------------------------------------------------------------------------


async def _append(session: AsyncSession, log: UsageLog, *, previous: UsageLog | None) -> UsageLog:
    if previous is not None:
        log.supersedes_id, log.session_id = previous.id, previous.session_id or previous.id
    session.add(log)
    try:
        await session.flush()
    except IntegrityError:
        # Someone else appended a version of this session at the same moment.
        raise Conflict.translatable(N_("this session was changed at the same time by someone else; reload and try again")) from None
    if log.session_id is None:
        log.session_id = log.id
        await session.flush()
    audit.record(session, action="record" if previous is None else "supersede", entity="usage_log", entity_id=log.id,
                 actor_id=log.recorded_by_id, actor_kind="agent" if log.source == "agent" else "user",
                 before=audit.snapshot(previous, LOG_FIELDS) if previous else None, after=audit.snapshot(log, LOG_FIELDS),
                 reason=log.reason)
    return log


async def check_in(session: AsyncSession, principal: Principal, booking_id: int, *, operator: str = "", now: datetime | None = None) -> UsageLog:
    """Start a session from an approved booking: by the unit's manager at any time once the
    booking's day has come, or by a qualified user of the booking's enterprise within the grace
    window around the booked start."""
    now = now or utcnow()
    booking, resource = await _manageable_booking(session, principal, booking_id)
    manager = principal.manages(resource.unit_id)
    if not manager and booking.enterprise_id != principal.enterprise_id:
        raise NotFound.translatable(N_("no booking %(booking)s"), booking=booking_id)
    if booking.status != "approved":
        raise Conflict.translatable(N_("only approved bookings can be checked in; this one is %(status)s"),
                                    status=booking_status(booking.status))
    if await _latest_for_booking(session, booking.id) is not None:
        raise Conflict.translatable(N_("this booking is already checked in"))
    grace = timedelta(minutes=resource.checkin_grace_minutes)
    if not manager:
        if booking.mode != "self_operated":
            raise Forbidden.translatable(N_("staff-operated services are checked in by the managing unit"))
        until = await qualified_until(session, principal.user_id, resource.id)
        if until is None or until < now.date():
            raise Forbidden.translatable(N_("checking in yourself needs a valid qualification for this resource"))
        if not booking.starts_at - grace <= now <= booking.starts_at + grace:
            raise Forbidden.translatable(
                N_("self check-in is open from %(minutes)s minutes before to %(minutes)s minutes after the booked start"),
                minutes=resource.checkin_grace_minutes,
            )
    elif now < booking.starts_at - timedelta(hours=12):
        raise Conflict.translatable(N_("the booking has not begun yet; check it in when the user arrives"))
    log = UsageLog(
        resource_id=resource.id, booking_id=booking.id, enterprise_id=booking.enterprise_id, started_at=now,
        operator=(operator or principal.name)[:100], mode=booking.mode, source="manager" if manager else "self",
        recorded_by_id=principal.user_id, recorded_at=now,
    )
    return await _append(session, log, previous=None)


async def check_out(session: AsyncSession, principal: Principal, booking_id: int, *, samples: int = 0, note: str = "",
                    now: datetime | None = None) -> tuple[UsageLog, Charge | None]:
    """End the open session of a booking: the booking is completed and its charge issued."""
    now = now or utcnow()
    _check_samples(samples)
    booking, resource = await _manageable_booking(session, principal, booking_id)
    manager = principal.manages(resource.unit_id)
    if not manager and booking.enterprise_id != principal.enterprise_id:
        raise NotFound.translatable(N_("no booking %(booking)s"), booking=booking_id)
    open_log = await _latest_for_booking(session, booking.id)
    if open_log is None or open_log.ended_at is not None:
        raise Conflict.translatable(N_("this booking has no open session; check it in first"))
    if not manager and open_log.source != "self":
        raise Forbidden.translatable(N_("a session checked in by the managing unit is checked out by it"))
    if now <= open_log.started_at:
        raise InvalidInput.translatable(N_("the check-out must come after the check-in"))
    if now - open_log.started_at > MAX_SESSION:
        raise InvalidInput.translatable(
            N_("the session has been open for more than %(days)s days; record the real times as a correction"),
            days=MAX_SESSION.days,
        )
    log = UsageLog(
        resource_id=resource.id, booking_id=booking.id, enterprise_id=booking.enterprise_id, started_at=open_log.started_at,
        ended_at=now, samples=samples, operator=open_log.operator, mode=open_log.mode, source=open_log.source,
        note=note[:500], reason="check-out", recorded_by_id=principal.user_id, recorded_at=now,
    )
    await _append(session, log, previous=open_log)
    await _complete_booking(session, booking, principal.user_id, now)
    return log, await issue_charge(session, log, resource, booking=booking)


async def _complete_booking(session: AsyncSession, booking: Booking, actor_id: int | None, now: datetime) -> None:
    if booking.status == "approved":
        before = audit.snapshot(booking, bookings.AUDITED)
        booking.status, booking.version, booking.updated_at = "completed", booking.version + 1, now
        await session.flush()
        audit.record(session, action="complete", entity="booking", entity_id=booking.id, actor_id=actor_id,
                     before=before, after=audit.snapshot(booking, bookings.AUDITED), reason="service recorded", at=now)


@dataclass(frozen=True)
class WalkIn:
    resource_code: str
    started_at: datetime
    ended_at: datetime
    enterprise_uscc: str | None = None
    samples: int = 0
    operator: str = ""
    mode: str = "staff_operated"
    note: str = ""


async def record_walk_in(session: AsyncSession, principal: Principal, data: WalkIn, *, now: datetime | None = None) -> tuple[UsageLog, Charge | None]:
    """Usage with no booking, recorded by the unit's manager (and charged if a customer is named)."""
    now = now or utcnow()
    _check_times(data.started_at, data.ended_at, now)
    _check_samples(data.samples)
    if data.mode not in ("staff_operated", "self_operated"):
        raise InvalidInput.translatable(N_("expected staff_operated or self_operated"), field="mode")
    resource = (await session.execute(select(Resource).where(Resource.code == data.resource_code))).scalar_one_or_none()
    if resource is None or not principal.manages(resource.unit_id):
        raise NotFound.translatable(N_("no resource '%(code)s' in the units you manage"), code=data.resource_code)
    enterprise_id = None
    if data.enterprise_uscc:
        enterprise_id = (await session.execute(select(Enterprise.id).where(Enterprise.uscc == data.enterprise_uscc.strip().upper()))).scalar_one_or_none()
        if enterprise_id is None:
            raise NotFound.translatable(N_("no enterprise with USCC %(uscc)s"), field="enterprise_uscc", uscc=data.enterprise_uscc)
    log = UsageLog(
        resource_id=resource.id, enterprise_id=enterprise_id, started_at=data.started_at, ended_at=data.ended_at,
        samples=data.samples, operator=(data.operator or principal.name)[:100], mode=data.mode, source="walk_in",
        note=data.note[:500], recorded_by_id=principal.user_id, recorded_at=now,
    )
    await _append(session, log, previous=None)
    return log, await issue_charge(session, log, resource, booking=None)


async def correct(session: AsyncSession, principal: Principal, log_id: int, *, started_at: datetime, ended_at: datetime,
                  samples: int, reason: str, now: datetime | None = None) -> tuple[UsageLog, Charge | None]:
    """A manager corrects a finished session: a new version with a reason; its charge is reissued."""
    now = now or utcnow()
    if not reason.strip():
        raise InvalidInput.translatable(N_("say why the record is corrected; it stays in the history"), field="reason")
    _check_times(started_at, ended_at, now)
    _check_samples(samples)
    previous = await session.get(UsageLog, log_id)
    resource = await session.get(Resource, previous.resource_id) if previous else None
    if previous is None or resource is None or not principal.manages(resource.unit_id):
        raise NotFound.translatable(N_("no usage record %(record)s in the units you manage"), record=log_id)
    if (await session.execute(select(UsageLog.id).where(UsageLog.supersedes_id == log_id))).first():
        raise Conflict.translatable(N_("this is not the current version of the session; correct the latest one"))
    if previous.ended_at is None:
        raise Conflict.translatable(N_("the session is still open; check it out first"))
    holding = await _void_charges_of_session(session, previous.session_id or previous.id, principal.user_id,
                                             f"usage corrected: {reason}")
    log = UsageLog(
        resource_id=previous.resource_id, booking_id=previous.booking_id, enterprise_id=previous.enterprise_id,
        started_at=started_at, ended_at=ended_at, samples=samples, operator=previous.operator, mode=previous.mode,
        source=previous.source, reason=reason.strip()[:500], note=previous.note, recorded_by_id=principal.user_id, recorded_at=now,
        agent_key_id=previous.agent_key_id,
    )
    await _append(session, log, previous=previous)
    booking = await session.get(Booking, previous.booking_id) if previous.booking_id else None
    charge = await issue_charge(session, log, resource, booking=booking)
    if holding:
        await _carry_over_to_corrected(session, holding, charge, actor_id=principal.user_id, reason=f"usage corrected: {reason}")
    return log, charge


# --- the instrument agent ------------------------------------------------------------------------


async def create_agent_key(session: AsyncSession, principal: Principal, resource_code: str, name: str) -> tuple[AgentKey, str]:
    resource = (await session.execute(select(Resource).where(Resource.code == resource_code))).scalar_one_or_none()
    if resource is None or not principal.manages(resource.unit_id):
        raise NotFound.translatable(N_("no resource '%(code)s' in the units you manage"), code=resource_code)
    if not 1 <= len(name.strip()) <= 100:
        raise InvalidInput.translatable(N_("name the key after the computer or program that uses it (1–100 characters)"),
                                        field="name")
    key, digest = new_token("fsa")
    row = AgentKey(resource_id=resource.id, name=name.strip(), key_hash=digest, prefix=key[:12], created_by_id=principal.user_id)
    session.add(row)
    await session.flush()
    audit.record(session, action="create", entity="agent_key", entity_id=row.id, actor_id=principal.user_id,
                 after={"resource": resource.code, "name": row.name})
    return row, key


async def revoke_agent_key(session: AsyncSession, principal: Principal, key_id: int) -> None:
    row = await session.get(AgentKey, key_id)
    resource = await session.get(Resource, row.resource_id) if row else None
    if row is None or resource is None or not principal.manages(resource.unit_id):
        raise NotFound.translatable(N_("no agent key %(key)s in the units you manage"), key=key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(session, action="revoke", entity="agent_key", entity_id=row.id, actor_id=principal.user_id)
    await session.flush()


async def agent_for_key(session: AsyncSession, key: str) -> AgentKey | None:
    row = (await session.execute(select(AgentKey).where(AgentKey.key_hash == hash_token(key)))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row


@dataclass(frozen=True)
class AgentSession:
    idempotency_key: str
    started_at: datetime
    ended_at: datetime
    samples: int = 0
    operator: str = ""
    booking_id: int | None = None


async def record_agent_session(session: AsyncSession, key: AgentKey, data: AgentSession, *, now: datetime | None = None) -> tuple[UsageLog, bool]:
    """Record a session posted by an instrument agent; the same idempotency key records once.

    Returns the log and whether it was created now (False: a retry of a recorded session).
    The session is matched to the approved booking it falls in, if any.
    """
    now = now or utcnow()
    if not 1 <= len(data.idempotency_key) <= 100:
        raise InvalidInput("idempotency_key: give a unique id of the session, 1–100 characters (e.g. a UUID)")
    existing = (
        await session.execute(
            select(UsageLog).where(UsageLog.resource_id == key.resource_id, UsageLog.idempotency_key == data.idempotency_key)
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing, False
    _check_times(data.started_at, data.ended_at, now)
    _check_samples(data.samples)
    resource = await _resource(session, key.resource_id)
    booking = None
    if data.booking_id is not None:
        booking = await session.get(Booking, data.booking_id)
        if booking is None or booking.resource_id != resource.id:
            raise InvalidInput(f"booking_id: booking {data.booking_id} is not a booking of this resource")
        if booking.status not in ("approved", "completed"):
            raise InvalidInput(f"booking_id: booking {data.booking_id} is {booking.status}; only approved bookings take usage")
        if await _latest_for_booking(session, booking.id) is not None:
            raise Conflict(f"booking {data.booking_id} already has a usage session; ask the unit to correct it instead")
    else:
        booking = (
            await session.execute(
                select(Booking).where(
                    Booking.resource_id == resource.id, Booking.status == "approved",
                    Booking.starts_at < data.ended_at, Booking.ends_at > data.started_at,
                    # A booking already checked in is not matched twice.
                    ~exists().where(UsageLog.booking_id == Booking.id),
                ).order_by(Booking.starts_at).limit(1)
            )
        ).scalar_one_or_none()
    log = UsageLog(
        resource_id=resource.id, booking_id=booking.id if booking else None,
        enterprise_id=booking.enterprise_id if booking else None, started_at=data.started_at, ended_at=data.ended_at,
        samples=data.samples, operator=data.operator[:100], mode=booking.mode if booking else "staff_operated", source="agent",
        idempotency_key=data.idempotency_key, agent_key_id=key.id, recorded_at=now,
    )
    try:
        async with session.begin_nested():
            await _append(session, log, previous=None)
    except (IntegrityError, Conflict):
        # A retry raced this one: the other insert won; answer with its record.
        existing = (
            await session.execute(
                select(UsageLog).where(UsageLog.resource_id == key.resource_id, UsageLog.idempotency_key == data.idempotency_key)
            )
        ).scalar_one()
        return existing, False
    key.last_used_at = now
    if booking is not None:
        await _complete_booking(session, booking, None, now)
    await issue_charge(session, log, resource, booking=booking)
    return log, True


# --- no-shows ------------------------------------------------------------------------------------


async def sweep_no_shows(session: AsyncSession, now: datetime | None = None) -> list[int]:
    """Approved bookings with no usage by their end plus the resource's grace become no-shows
    (with the resource's no-show fee, if any). Safe with several processes: each booking is
    switched by one UPDATE whose condition only one of them can still match."""
    now = now or utcnow()
    candidates = (
        await session.execute(
            select(Booking.id, Resource.no_show_grace_minutes)
            .join(Resource, Booking.resource_id == Resource.id)
            .where(Booking.status == "approved", Booking.ends_at < now, ~exists().where(UsageLog.booking_id == Booking.id))
        )
    ).all()
    switched = []
    for booking_id, grace in candidates:
        result = await session.execute(
            update(Booking)
            .where(Booking.id == booking_id, Booking.status == "approved", Booking.ends_at < now - timedelta(minutes=grace),
                   ~exists().where(UsageLog.booking_id == booking_id))
            .values(status="no_show", version=Booking.version + 1, updated_at=now)
            .returning(Booking.id)
        )
        if result.first() is None:
            continue
        switched.append(booking_id)
        audit.record(session, action="no_show", entity="booking", entity_id=booking_id, actor_id=None, actor_kind="system",
                     before={"status": "approved"}, after={"status": "no_show"}, reason="no usage recorded by the end of the grace period", at=now)
        booking = await session.get(Booking, booking_id)
        resource = await session.get(Resource, booking.resource_id)
        if resource.no_show_fee_fen > 0:
            charge = Charge(kind="no_show", booking_id=booking.id, resource_id=resource.id, enterprise_id=booking.enterprise_id,
                            service_date=booking.starts_at, customer_class=booking.customer_class,
                            lines=[{"label_zh": "爽约费", "label_en": "No-show fee", "basis": "setup", "units": 1,
                                    "rate_fen": resource.no_show_fee_fen, "amount_fen": resource.no_show_fee_fen,
                                    "unit_minutes": 0, "explanation": "booking not used"}],
                            total_fen=resource.no_show_fee_fen,
                            explanation_zh=f"预约未使用，按规定收取爽约费 {resource.no_show_fee_fen / 100:.2f} 元。",
                            explanation_en=f"The booking was not used: no-show fee of {resource.no_show_fee_fen / 100:.2f} yuan.")
            session.add(charge)
            await session.flush()
            audit.record(session, action="issue", entity="charge", entity_id=charge.id, actor_id=None, actor_kind="system",
                         after={"total_fen": charge.total_fen, "kind": "no_show"})
            await notifications.charge_issued(session, charge.id)
    return switched


# --- ratings -------------------------------------------------------------------------------------


async def rate(session: AsyncSession, principal: Principal, booking_id: int, *, stars: int, comment: str = "") -> Rating:
    """The enterprise rates a completed service once."""
    booking = await session.get(Booking, booking_id)
    if booking is None or booking.enterprise_id != principal.enterprise_id:
        raise NotFound.translatable(N_("no booking %(booking)s"), booking=booking_id)
    if booking.status != "completed":
        raise Conflict.translatable(N_("only a completed service can be rated"))
    if not 1 <= stars <= 5:
        raise InvalidInput.translatable(N_("give 1 to 5 stars"), field="stars")
    if len(comment) > 2000:
        raise InvalidInput.translatable(N_("at most 2000 characters"), field="comment")
    if (await session.execute(select(Rating.id).where(Rating.booking_id == booking_id))).first():
        raise Conflict.translatable(N_("this service has already been rated"))
    rating = Rating(booking_id=booking.id, resource_id=booking.resource_id, enterprise_id=booking.enterprise_id,
                    user_id=principal.user_id, stars=stars, comment=comment.strip())
    session.add(rating)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict.translatable(N_("this service has already been rated")) from None
    audit.record(session, action="rate", entity="booking", entity_id=booking.id, actor_id=principal.user_id,
                 after={"stars": stars})
    return rating


def local_date(value: datetime, timezone: str) -> str:
    return value.astimezone(ZoneInfo(timezone)).date().isoformat()


