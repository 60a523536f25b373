"""Calendar feed routes (iCalendar), for calendar clients that poll them.

* ``GET /feeds/resources/{code}/calendar.ics``: a resource's busy blocks, public, with nothing
  about who booked or why;
* ``GET /feeds/{token}/calendar.ics``: a private feed (a user's, an enterprise's or a managing
  unit's bookings). The token in the address is the secret, so the route is public at guard
  level; an unknown or revoked token answers a bare 404 that reveals nothing.

Every answer carries a strong ``ETag`` (feed kind, owner, language and the bookings' change
stamp) and ``Last-Modified``; a matching ``If-None-Match`` (or, without it, a not-older
``If-Modified-Since``) gets 304 from one aggregate query, without building the calendar.
``HEAD`` is answered from the stamp as well. ``?lang=en`` switches summaries and locations
to English (default Chinese).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from litestar import Controller, Request, Response, route
from litestar.params import FromPath
from sqlalchemy import select

from facility_share.bookings.pages import BookingWords
from facility_share.db.models import Booking, Enterprise, ManagingUnit, Resource
from facility_share.feeds import services
from facility_share.feeds.calendar import FeedEvent, booking_uid, build_calendar
from facility_share.settings import SUPPORTED_LOCALES
from facility_share.web.deps import DbSession
from facility_share.web.i18n import I18n

MEDIA_TYPE = "text/calendar"  # Litestar appends "; charset=utf-8" to text types
FORMAT_VERSION = "1"  # bump when the feed's content changes shape, to invalidate cached copies
EMPTY_FEED_TIME = datetime(2000, 1, 1, tzinfo=UTC)
CACHE_CONTROL = {"public": "public, max-age=300", "private": "private, max-age=300"}


def N_(message: str) -> str:
    return message


STATUS_TAGS = {
    "requested": N_("awaiting approval"),
    "cancelled": N_("cancelled"),
    "rejected": N_("rejected"),
    "expired": N_("expired"),
    "no_show": N_("no-show"),
}


def feed_language(request: Request) -> I18n:
    """The feed's language: ``?lang=`` if supported, else Chinese (clients send no cookie)."""
    asked = request.query_params.get("lang")
    return I18n(asked if asked in SUPPORTED_LOCALES else "zh_CN")


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def etag_for(feed: services.Feed, stamp: services.Stamp, language: str) -> str:
    last = stamp.last_change.isoformat() if stamp.last_change else "-"
    digest = hashlib.sha256(f"{FORMAT_VERSION}|{feed.kind}|{feed.owner_id}|{language}|{last}|{stamp.count}".encode())
    return f'"{digest.hexdigest()[:32]}"'


def last_modified(stamp: services.Stamp) -> datetime:
    return (stamp.last_change or EMPTY_FEED_TIME).astimezone(UTC).replace(microsecond=0)


def not_modified(request: Request, etag: str, modified: datetime) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; else If-Modified-Since."""
    match = request.headers.get("if-none-match")
    if match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError, IndexError):
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return modified <= when
    return False


def _headers(etag: str, modified: datetime, visibility: str) -> dict[str, str]:
    return {
        "ETag": etag,
        "Last-Modified": format_datetime(modified, usegmt=True),
        "Cache-Control": CACHE_CONTROL[visibility],
        "X-Content-Type-Options": "nosniff",
    }


def gone() -> Response:
    """A wrong or revoked token: nothing about why, nothing about the platform's data."""
    return Response(content=b"", status_code=404, media_type="text/plain",
                    headers={"Cache-Control": "no-store"})


def _summary(words: BookingWords, booking: Booking, title: str) -> str:
    tag = STATUS_TAGS.get(booking.status)
    return f"{title} ({words._(tag)})" if tag else title


def _location(i18n: I18n, resource: Resource) -> str:
    place = i18n.pick(resource, "location")
    unit = resource.unit
    unit_name = i18n.pick(unit, "name") if unit is not None else ""
    return ", ".join(part for part in (place, unit_name) if part)


def public_events(bookings: list[Booking], i18n: I18n, link: str) -> list[FeedEvent]:
    """Busy blocks only: no enterprise, user, purpose or booking number."""
    words = BookingWords(i18n)
    booked = words._("Booked")
    events = []
    for b in bookings:
        events.append(FeedEvent(
            uid=booking_uid(b.id), start=b.starts_at, end=b.ends_at, status=b.status, sequence=b.version,
            created=b.created_at, updated=b.updated_at,
            summary=booked if b.status in ("requested", "approved", "completed") else _summary(words, b, booked),
            location=_location(i18n, b.resource), url=link,
        ))
    return events


def private_events(bookings: list[Booking], i18n: I18n, link: str, *, customer_details: bool) -> list[FeedEvent]:
    """The owner's view: resource, status, mode and purpose; a unit's feed adds who booked."""
    words = BookingWords(i18n)
    events = []
    for b in bookings:
        resource = b.resource
        lines = [
            words._("Booking #%(id)d", id=b.id),
            f"{words._('Status')}: {words.status(b.status)}",
            f"{words._('Resource')}: {i18n.pick(resource, 'name')} ({resource.code})",
            f"{words._('Time')}: {words.span(b.starts_at, b.ends_at, resource.timezone)} ({resource.timezone})",
            f"{words._('Operation')}: {words.mode(b.mode)}",
        ]
        if b.quantity > 1:
            lines.append(f"{words._('Quantity')}: {b.quantity}")
        if customer_details:
            enterprise = b.enterprise
            user = b.user
            lines.append(f"{words._('Enterprise')}: {enterprise.name if enterprise else ''}")
            contact = user.name if user else ""
            phone = (user.phone if user else "") or (enterprise.contact_phone if enterprise else "")
            lines.append(f"{words._('Contact person')}: {contact}" + (f", {phone}" if phone else ""))
        if b.purpose:
            lines.append(f"{words._('Purpose')}: {b.purpose}")
        if b.decision_reason and b.status in ("rejected", "cancelled"):
            lines.append(f"{words._('Reason')}: {b.decision_reason}")
        events.append(FeedEvent(
            uid=booking_uid(b.id), start=b.starts_at, end=b.ends_at, status=b.status, sequence=b.version,
            created=b.created_at, updated=b.updated_at,
            summary=_summary(words, b, i18n.pick(resource, "name")),
            location=_location(i18n, resource), description="\n".join(lines), url=link,
        ))
    return events


class FeedApi(Controller):
    path = "/feeds"
    tags = ["feeds"]
    include_in_schema = False
    # The token in a private feed's address is the secret; calendar clients send no cookies.
    opt = {"access": "public"}

    async def _answer(self, request: Request, db_session: DbSession, feed: services.Feed, visibility: str,
                      build) -> Response:  # type: ignore[no-untyped-def]
        i18n = feed_language(request)
        stamp = await services.feed_stamp(db_session, feed)
        etag = etag_for(feed, stamp, i18n.locale)
        modified = last_modified(stamp)
        headers = _headers(etag, modified, visibility)
        if not_modified(request, etag, modified):
            return Response(content=b"", status_code=304, headers=headers)
        if request.method == "HEAD":  # validators only: answered from the stamp, like a 304
            return Response(content=b"", status_code=200, media_type=MEDIA_TYPE, headers=headers)
        bookings = await services.feed_bookings(db_session, feed)
        name, events = await build(i18n, bookings)
        text = build_calendar(events, name=name, language=i18n.locale)
        return Response(content=text.encode("utf-8"), status_code=200, media_type=MEDIA_TYPE, headers=headers)

    @route("/resources/{code:str}/calendar.ics", http_method=["GET", "HEAD"], name="feed-public", cache=False)
    async def public_feed(self, request: Request, db_session: DbSession, code: FromPath[str]) -> Response:
        """A resource's booked times, for anyone to subscribe to."""
        resource = await services.public_resource(db_session, code)
        if resource is None:
            return gone()
        link = f"{base_url(request)}/resources/{resource.code}/calendar"

        async def build(i18n: I18n, bookings: list[Booking]):  # type: ignore[no-untyped-def]
            name = i18n.gettext("%(name)s – booked times", name=i18n.pick(resource, "name"))
            return name, public_events(bookings, i18n, link)

        return await self._answer(request, db_session, services.Feed("public", resource.id), "public", build)

    @route("/{token:str}/calendar.ics", http_method=["GET", "HEAD"], name="feed-private", cache=False)
    async def private_feed(self, request: Request, db_session: DbSession, token: FromPath[str]) -> Response:
        """A user's, an enterprise's or a managing unit's bookings, opened by the feed token."""
        feed = await services.feed_for_token(db_session, token)
        if feed is None:
            return gone()
        root = base_url(request)

        async def build(i18n: I18n, bookings: list[Booking]):  # type: ignore[no-untyped-def]
            if feed.kind == "unit":
                unit = await db_session.get(ManagingUnit, feed.owner_id)
                name = i18n.gettext("%(name)s – unit bookings", name=i18n.pick(unit, "name") if unit else "")
                return name, private_events(bookings, i18n, f"{root}/manage/calendar", customer_details=True)
            if feed.kind == "enterprise":
                enterprise_name = (
                    await db_session.execute(select(Enterprise.name).where(Enterprise.id == feed.owner_id))
                ).scalar_one_or_none() or ""
                name = i18n.gettext("%(name)s – bookings", name=enterprise_name)
            else:
                name = i18n.gettext("My bookings – Wuqing shared instruments")
            return name, private_events(bookings, i18n, f"{root}/me/bookings", customer_details=False)

        return await self._answer(request, db_session, feed, "private", build)
