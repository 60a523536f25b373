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
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime as http_date
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime

from litestar import Controller, Request, Response, route
from litestar.params import FromPath
from sqlalchemy import select

from facility_share.bookings.pages import BookingWords
from facility_share.db.models import Enterprise, ManagingUnit, Resource
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
        "Last-Modified": http_date(modified, usegmt=True),
        "Cache-Control": CACHE_CONTROL[visibility],
        "X-Content-Type-Options": "nosniff",
    }


def gone() -> Response:
    """A wrong or revoked token: nothing about why, nothing about the platform's data."""
    return Response(content=b"", status_code=404, media_type="text/plain",
                    headers={"Cache-Control": "no-store"})


class FeedWords(BookingWords):
    """The booking pages' words, with babel's locale parsed once: given the name ("zh_CN")
    instead, babel matched it against every locale it knows on each call, about 0.4 ms per
    date, which made the events of a large feed cost ten times their serialisation."""

    def local_datetime(self, value: datetime, timezone: str) -> str:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            value = value.astimezone(ZoneInfo(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            pass
        return format_datetime(value, format="yyyy-MM-dd HH:mm", locale=self.i18n.babel)


def _summaries(words: BookingWords, title: str) -> dict[str, str]:
    """The summary for each booking status: the title, tagged unless the booking stands."""
    return {status: f"{title} ({words._(tag)})" for status, tag in STATUS_TAGS.items()}


def _location(i18n: I18n, resource: Resource) -> str:
    place = i18n.pick(resource, "location")
    unit = resource.unit
    unit_name = i18n.pick(unit, "name") if unit is not None else ""
    return ", ".join(part for part in (place, unit_name) if part)


# What the event builders read of a booking: a feeds.services.FeedBooking (or a Booking with its
# resource, enterprise and user loaded). Everything that depends only on the resource, the
# status or the language is worked out once per feed, not once per event.


def public_events(bookings: Sequence[Any], i18n: I18n, link: str) -> list[FeedEvent]:
    """Busy blocks only: no enterprise, user, purpose or booking number."""
    words = FeedWords(i18n)
    booked = words._("Booked")
    tagged = _summaries(words, booked)
    locations: dict[int, str] = {}
    events = []
    for b in bookings:
        location = locations.get(b.resource.id)
        if location is None:
            location = locations[b.resource.id] = _location(i18n, b.resource)
        events.append(FeedEvent(
            uid=booking_uid(b.id), start=b.starts_at, end=b.ends_at, status=b.status, sequence=b.version,
            created=b.created_at, updated=b.updated_at,
            summary=booked if b.status in ("requested", "approved", "completed") else tagged.get(b.status, booked),
            location=location, url=link,
        ))
    return events


def private_events(bookings: Sequence[Any], i18n: I18n, link: str, *, customer_details: bool) -> list[FeedEvent]:
    """The owner's view: resource, status, mode and purpose; a unit's feed adds who booked."""
    words = FeedWords(i18n)
    status_label, resource_label, time_label = words._("Status"), words._("Resource"), words._("Time")
    operation_label, quantity_label = words._("Operation"), words._("Quantity")
    enterprise_label, contact_label = words._("Enterprise"), words._("Contact person")
    purpose_label, reason_label = words._("Purpose"), words._("Reason")
    statuses: dict[str, str] = {}
    modes: dict[str, str] = {}
    # resource id -> (its line, its timezone, its location, the summary by status)
    resources: dict[int, tuple[str, str, str, dict[str, str], str]] = {}
    customers: dict[tuple[int | None, int | None], list[str]] = {}
    events = []
    for b in bookings:
        resource = b.resource
        known = resources.get(resource.id)
        if known is None:
            title = i18n.pick(resource, "name")
            known = resources[resource.id] = (
                f"{resource_label}: {title} ({resource.code})", resource.timezone, _location(i18n, resource),
                _summaries(words, title), title,
            )
        resource_line, timezone, location, summaries, title = known
        status = statuses.get(b.status)
        if status is None:
            status = statuses[b.status] = words.status(b.status)
        mode = modes.get(b.mode)
        if mode is None:
            mode = modes[b.mode] = words.mode(b.mode)
        lines = [
            words._("Booking #%(id)d", id=b.id),
            f"{status_label}: {status}",
            resource_line,
            f"{time_label}: {words.span(b.starts_at, b.ends_at, timezone)} ({timezone})",
            f"{operation_label}: {mode}",
        ]
        if b.quantity > 1:
            lines.append(f"{quantity_label}: {b.quantity}")
        if customer_details:
            enterprise, user = b.enterprise, b.user
            key = (enterprise.id if enterprise else None, user.id if user else None)
            customer = customers.get(key)
            if customer is None:
                contact = user.name if user else ""
                phone = (user.phone if user else "") or (enterprise.contact_phone if enterprise else "")
                customer = customers[key] = [
                    f"{enterprise_label}: {enterprise.name if enterprise else ''}",
                    f"{contact_label}: {contact}" + (f", {phone}" if phone else ""),
                ]
            lines.extend(customer)
        if b.purpose:
            lines.append(f"{purpose_label}: {b.purpose}")
        if b.decision_reason and b.status in ("rejected", "cancelled"):
            lines.append(f"{reason_label}: {b.decision_reason}")
        events.append(FeedEvent(
            uid=booking_uid(b.id), start=b.starts_at, end=b.ends_at, status=b.status, sequence=b.version,
            created=b.created_at, updated=b.updated_at, summary=summaries.get(b.status, title),
            location=location, description="\n".join(lines), url=link,
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
        bookings = await services.feed_bookings(db_session, feed, people=feed.kind != "public")
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

        async def build(i18n: I18n, bookings: list[services.FeedBooking]):  # type: ignore[no-untyped-def]
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

        async def build(i18n: I18n, bookings: list[services.FeedBooking]):  # type: ignore[no-untyped-def]
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
