"""Which bookings each calendar feed shows, the feed tokens, and the cheap change stamp.

A feed is one of:

* ``public``: the busy blocks of one resource (no customer details at all);
* ``user``: the bookings a user made;
* ``enterprise``: all bookings of an enterprise;
* ``unit``: all bookings of a managing unit's resources, with customer details.

Every feed covers the same window: bookings ending in the last 30 days up to those starting
in the next 180 days. Cancelled, rejected and expired bookings stay in it for 30 days after
their last change, as STATUS:CANCELLED, so subscribed clients show what became of them -- the
100 most recently changed of them: a subscribing client replaces the whole calendar on each
refresh (an event that is gone from the feed is gone from the calendar too), so older ones
would only make every refresh longer for an owner who cancels a lot.

Private feeds are addressed by a secret token (``fsf_…``); only its SHA-256 is stored, and the
plain token is shown once, when it is made. Rotating revokes the old token and makes a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from facility_share.accounts.principal import Principal
from facility_share.accounts.security import hash_token, new_token
from facility_share.bookings.availability import MAX_BOOKING
from facility_share.db.models import Booking, Enterprise, FeedToken, ManagingUnit, Resource, RoleGrant, User, utcnow

TOKEN_PREFIX = "fsf"
OWNER_KINDS = ("user", "enterprise", "unit")
PAST = timedelta(days=30)
AHEAD = timedelta(days=180)
GONE_KEPT = timedelta(days=30)
GONE_STATUSES = ("cancelled", "rejected", "expired")
GONE_SHOWN = 100
MAX_EVENTS = 20_000  # a runaway feed is cut, not served in full


@dataclass(frozen=True, slots=True)
class Feed:
    """What a feed shows: ``kind`` public|user|enterprise|unit and the owner's id (a
    resource id for public feeds)."""

    kind: str
    owner_id: int


@dataclass(frozen=True, slots=True)
class Stamp:
    """The feed's change marker: the newest change among its bookings and the rows whose names
    it shows (their resources and units; a unit's feed also its customers; the owner named in
    the calendar's title), and how many bookings there are."""

    last_change: datetime | None
    count: int


def _owner_condition(feed: Feed) -> Any:
    if feed.kind == "public":
        return Booking.resource_id == feed.owner_id
    if feed.kind == "user":
        return Booking.user_id == feed.owner_id
    if feed.kind == "enterprise":
        return Booking.enterprise_id == feed.owner_id
    if feed.kind == "unit":
        # Not correlated: the stamp's query joins resources itself.
        return Booking.resource_id.in_(select(Resource.id).where(Resource.unit_id == feed.owner_id).correlate(None))
    raise ValueError(f"unknown feed kind {feed.kind!r}")


def _window(feed: Feed, now: datetime) -> list[Any]:
    return [
        _owner_condition(feed),
        Booking.ends_at > now - PAST,
        # Implied by the line above (no booking is longer than MAX_BOOKING), and what lets an
        # index on (owner, starts_at) read only the window instead of the owner's whole history.
        Booking.starts_at > now - PAST - MAX_BOOKING,
        Booking.starts_at < now + AHEAD,
    ]


def _conditions(feed: Feed, now: datetime) -> list[Any]:
    return [
        *_window(feed, now),
        or_(Booking.status.not_in(GONE_STATUSES), and_(Booking.status.in_(GONE_STATUSES), Booking.updated_at >= now - GONE_KEPT)),
    ]


@dataclass(frozen=True, slots=True)
class FeedBooking:
    """A booking as a feed shows it: its own columns and its resource (with the unit loaded),
    enterprise and user, each loaded once per feed however many bookings share it."""

    id: int
    starts_at: datetime
    ends_at: datetime
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    mode: str
    quantity: int
    purpose: str
    decision_reason: str
    resource: Resource
    enterprise: Enterprise | None
    user: User | None


_COLUMNS = (
    Booking.id, Booking.starts_at, Booking.ends_at, Booking.status, Booking.version, Booking.created_at,
    Booking.updated_at, Booking.mode, Booking.quantity, Booking.purpose, Booking.decision_reason,
    Booking.resource_id, Booking.enterprise_id, Booking.user_id,
)


async def feed_bookings(session: AsyncSession, feed: Feed, *, now: datetime | None = None,
                        people: bool = True) -> list[FeedBooking]:
    """The feed's bookings, in (start, id) order, with their resource (and unit) and, when
    ``people``, their enterprise and user. Bookings are read as plain rows, not ORM objects:
    a feed can hold thousands of them and is rebuilt on every unconditional GET."""
    now = now or utcnow()
    window = _window(feed, now)
    active = select(*_COLUMNS).where(*window, Booking.status.not_in(GONE_STATUSES)).order_by(Booking.starts_at, Booking.id)
    gone = (
        select(*_COLUMNS)
        .where(*window, Booking.status.in_(GONE_STATUSES), Booking.updated_at >= now - GONE_KEPT)
        .order_by(Booking.updated_at.desc(), Booking.id.desc())
        .limit(GONE_SHOWN)
    )
    rows = sorted(
        [*(await session.execute(active.limit(MAX_EVENTS))).all(), *(await session.execute(gone)).all()],
        key=lambda row: (row.starts_at, row.id),
    )[:MAX_EVENTS]
    resources = await _by_id(session, Resource, {row.resource_id for row in rows}, selectinload(Resource.unit))
    enterprises = await _by_id(session, Enterprise, {row.enterprise_id for row in rows}) if people else {}
    users = await _by_id(session, User, {row.user_id for row in rows}) if people else {}
    return [
        FeedBooking(
            row.id, row.starts_at, row.ends_at, row.status, row.version, row.created_at, row.updated_at, row.mode,
            row.quantity, row.purpose or "", row.decision_reason or "", resources[row.resource_id],
            enterprises.get(row.enterprise_id), users.get(row.user_id),
        )
        for row in rows
    ]


async def _by_id(session: AsyncSession, model: Any, ids: set[int], *options: Any) -> dict[int, Any]:
    if not ids:
        return {}
    found = (await session.execute(select(model).where(model.id.in_(sorted(ids))).options(*options))).scalars()
    return {item.id: item for item in found}


def _owner_changed(feed: Feed) -> Any:
    """When the rows named in the calendar's title last changed (scalar subqueries)."""
    if feed.kind == "public":
        return [
            select(Resource.updated_at).where(Resource.id == feed.owner_id).scalar_subquery(),
            select(ManagingUnit.updated_at).join(Resource, Resource.unit_id == ManagingUnit.id)
            .where(Resource.id == feed.owner_id).scalar_subquery(),
        ]
    if feed.kind == "enterprise":
        return [select(Enterprise.updated_at).where(Enterprise.id == feed.owner_id).scalar_subquery()]
    if feed.kind == "unit":
        return [select(ManagingUnit.updated_at).where(ManagingUnit.id == feed.owner_id).scalar_subquery()]
    return []


def _aware(value: Any) -> datetime | None:
    if isinstance(value, str):  # an aggregate over DateTimeUTC comes back raw on SQLite
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


async def feed_stamp(session: AsyncSession, feed: Feed, *, now: datetime | None = None) -> Stamp:
    """The feed's ``Stamp`` from one aggregate query, for ETag and Last-Modified without
    loading or building anything. A renamed resource, unit or customer changes it too: their
    names are in the events, and a client holding the old ETag would otherwise keep them."""
    now = now or utcnow()
    unit = aliased(ManagingUnit)
    changed = [func.max(Booking.updated_at), func.max(Resource.updated_at), func.max(unit.updated_at)]
    if feed.kind == "unit":  # the customers' names and telephone numbers are in its events
        changed += [func.max(Enterprise.updated_at), func.max(User.updated_at)]
    statement = (
        select(func.count(), *changed, *_owner_changed(feed))
        .select_from(Booking)
        .join(Resource, Resource.id == Booking.resource_id)
        .join(unit, unit.id == Resource.unit_id)
    )
    if feed.kind == "unit":
        statement = (
            statement.outerjoin(Enterprise, Enterprise.id == Booking.enterprise_id).outerjoin(User, User.id == Booking.user_id)
        )
    statement = statement.where(*_conditions(feed, now))
    count, *times = (await session.execute(statement)).one()
    known = [t for t in map(_aware, times) if t is not None]
    return Stamp(max(known) if known else None, int(count))


async def public_resource(session: AsyncSession, code: str) -> Resource | None:
    """The resource whose public feed ``code`` names, or None (unknown or retired)."""
    resource = (await session.execute(select(Resource).where(Resource.code == code))).scalar_one_or_none()
    if resource is None or getattr(resource, "retired_at", None) is not None:
        return None
    return resource


# --- tokens -------------------------------------------------------------------------------------


async def active_token(session: AsyncSession, kind: str, owner_id: int) -> FeedToken | None:
    statement = select(FeedToken).where(
        FeedToken.owner_kind == kind, FeedToken.owner_id == owner_id, FeedToken.revoked_at.is_(None)
    ).order_by(FeedToken.id.desc())
    return (await session.execute(statement)).scalars().first()


async def ever_had_token(session: AsyncSession, kind: str, owner_id: int) -> bool:
    statement = select(func.count()).where(FeedToken.owner_kind == kind, FeedToken.owner_id == owner_id)
    return (await session.execute(statement)).scalar_one() > 0


async def revoke_tokens(session: AsyncSession, kind: str, owner_id: int, *, now: datetime | None = None) -> int:
    """Revoke every live token of the feed; returns how many were live."""
    result = await session.execute(
        update(FeedToken)
        .where(FeedToken.owner_kind == kind, FeedToken.owner_id == owner_id, FeedToken.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    return result.rowcount or 0


async def create_token(session: AsyncSession, kind: str, owner_id: int, *, created_by: int | None,
                       now: datetime | None = None) -> str:
    """A new token for the feed, revoking any live one (so a feed has at most one). Returns the
    plain token: shown once, never stored. Raises ValueError for an unknown kind."""
    if kind not in OWNER_KINDS:
        raise ValueError(f"unknown feed owner kind {kind!r}")
    now = now or utcnow()
    await revoke_tokens(session, kind, owner_id, now=now)
    token, digest = new_token(TOKEN_PREFIX)
    session.add(FeedToken(owner_kind=kind, owner_id=owner_id, token_hash=digest, created_by_id=created_by, created_at=now))
    await session.flush()
    return token


rotate_token = create_token  # rotating is revoking the live token and making a new one


async def feed_for_token(session: AsyncSession, token: str) -> Feed | None:
    """The feed a token opens, or None when it is unknown or revoked (the caller answers 404)."""
    if not token.startswith(TOKEN_PREFIX + "_") or len(token) > 100:
        return None
    row = (
        await session.execute(select(FeedToken).where(FeedToken.token_hash == hash_token(token), FeedToken.revoked_at.is_(None)))
    ).scalar_one_or_none()
    if row is None or not await _still_entitled(session, row):
        return None
    return Feed(row.owner_kind, row.owner_id)


async def _still_entitled(session: AsyncSession, row: FeedToken) -> bool:
    """A token stops working when whoever made it loses the right to what it shows: a
    deactivated user, a member who left the enterprise, a manager no longer of the unit."""
    user_id = row.owner_id if row.owner_kind == "user" else row.created_by_id
    if user_id is None:
        return True  # made by the system (tests, imports): no person to check
    user = (await session.execute(select(User.is_active, User.enterprise_id).where(User.id == user_id))).one_or_none()
    if user is None or not user.is_active:
        return False
    if row.owner_kind == "enterprise":
        return user.enterprise_id == row.owner_id
    if row.owner_kind == "unit":
        grant = select(func.count()).where(
            RoleGrant.user_id == user_id,
            or_(RoleGrant.role == "admin", and_(RoleGrant.role == "unit_manager", RoleGrant.unit_id == row.owner_id)),
        )
        return (await session.execute(grant)).scalar_one() > 0
    return True


# --- what a signed-in user may subscribe to ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnedFeed:
    """A private feed the principal may manage; ``key`` names it in URLs (``user``,
    ``enterprise``, ``unit-12``)."""

    key: str
    kind: str
    owner_id: int
    unit: ManagingUnit | None = None


async def feeds_of(session: AsyncSession, principal: Principal) -> list[OwnedFeed]:
    """The user's own feed, their enterprise's (members) and their managed units' (managers)."""
    feeds = [OwnedFeed("user", "user", principal.user_id)]
    if principal.enterprise_id is not None:
        feeds.append(OwnedFeed("enterprise", "enterprise", principal.enterprise_id))
    if principal.managed_unit_ids:
        units = (
            await session.execute(select(ManagingUnit).where(ManagingUnit.id.in_(principal.managed_unit_ids)).order_by(ManagingUnit.code))
        ).scalars().all()
        feeds.extend(OwnedFeed(f"unit-{unit.id}", "unit", unit.id, unit) for unit in units)
    return feeds


async def owned_feed(session: AsyncSession, principal: Principal, key: str) -> OwnedFeed | None:
    """The feed ``key`` names if the principal may manage it, else None."""
    return next((feed for feed in await feeds_of(session, principal) if feed.key == key), None)


async def user_name(session: AsyncSession, user_id: int) -> str:
    return (await session.execute(select(User.name).where(User.id == user_id))).scalar_one_or_none() or ""
