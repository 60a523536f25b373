"""iCalendar text of a booking feed, built with ``ics`` 0.7.3 (pure: no database, no request).

This is the one place the gaps of ``ics`` 0.7.3 are handled (FIELD-NOTES "iCal with ics"):

* DTSTAMP is written only when ``created`` is set: we set it to the booking's last change and
  never add a DTSTAMP line of our own (the strict ``ical`` parser refuses duplicates);
* there is no SEQUENCE attribute: it goes into ``extra`` as a ``ContentLine``;
* calendar properties (X-WR-CALNAME, X-WR-TIMEZONE, REFRESH-INTERVAL, X-PUBLISHED-TTL) go into
  the calendar's ``extra``;
* ``cal.events`` is a set whose order follows UID hashes: events are sorted by (start, uid);
* the output has CRLF but no line folding: ``fold`` folds to 75 octets, UTF-8 safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import ics
from ics.grammar.parse import ContentLine

MAX_OCTETS = 75
CRLF = "\r\n"
FEED_TIMEZONE = "Asia/Shanghai"
REFRESH = "PT1H"
PRODID = "-//facility-share//Wuqing shared instruments//ZH"

# Booking status → iCalendar STATUS (RFC 5545 §3.8.1.11).
STATUS_MAP = {
    "requested": "TENTATIVE",
    "approved": "CONFIRMED",
    "completed": "CONFIRMED",
    "cancelled": "CANCELLED",
    "rejected": "CANCELLED",
    "expired": "CANCELLED",
    "no_show": "CANCELLED",
}


def booking_uid(booking_id: int) -> str:
    """The UID of a booking's event: stable across changes, so clients update it in place."""
    return f"booking-{booking_id}@facility-share"


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One booking as a calendar event; times are aware datetimes (converted to UTC)."""

    uid: str
    start: datetime
    end: datetime
    status: str  # a booking status: requested, approved, cancelled, …
    sequence: int
    created: datetime
    updated: datetime
    summary: str
    location: str = ""
    description: str = ""
    url: str = ""


def ical_status(status: str) -> str:
    """The iCalendar STATUS of a booking status (unknown statuses read as TENTATIVE)."""
    return STATUS_MAP.get(status, "TENTATIVE")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:  # SQLite hands back naive UTC in some paths
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def fold_line(line: str) -> list[str]:
    """One content line folded into physical lines of at most 75 octets (RFC 5545 §3.1).

    Continuation lines start with one space, which counts towards their 75 octets. A
    multi-byte UTF-8 character is never split.
    """
    if len(line.encode("utf-8")) <= MAX_OCTETS:
        return [line]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    limit = MAX_OCTETS
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, MAX_OCTETS - 1
        current.append(char)
        size += width
    parts.append("".join(current))
    return [parts[0], *(" " + part for part in parts[1:])]


def fold(text: str) -> str:
    """Fold every content line of ``text`` (CRLF or LF separated) and end each with CRLF."""
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return "".join(physical + CRLF for line in lines for physical in fold_line(line))


def _event(item: FeedEvent) -> ics.Event:
    event = ics.Event(
        name=item.summary,
        begin=_utc(item.start),
        end=_utc(item.end),
        uid=item.uid,
        # ics writes ``created`` as DTSTAMP: the time this version of the event was made.
        created=_utc(item.updated),
        status=ical_status(item.status),
        location=item.location or None,
        description=item.description or None,
        url=item.url or None,
    )
    event.extra.append(ContentLine(name="SEQUENCE", value=str(max(0, int(item.sequence)))))
    return event


def sort_key(item: FeedEvent) -> tuple[datetime, str]:
    return (_utc(item.start), item.uid)


def build_calendar(events: Iterable[FeedEvent], *, name: str, language: str = "zh_CN",
                   now: datetime | None = None) -> str:
    """The feed as iCalendar text: CRLF line ends, folded to 75 octets, events sorted by
    (start, uid). Summaries and locations arrive already in ``language``, which is only
    recorded as the calendar's X-WR-CALNAME language tag. ``now`` does not enter the text:
    DTSTAMP is each event's last change, so an unchanged feed serialises to the same bytes.
    """
    calendar = ics.Calendar(creator=PRODID)
    calendar.extra.append(ContentLine(name="X-WR-CALNAME", params={"LANGUAGE": [_language_tag(language)]}, value=_escape_text(name)))
    calendar.extra.append(ContentLine(name="X-WR-TIMEZONE", value=FEED_TIMEZONE))
    calendar.extra.append(ContentLine(name="REFRESH-INTERVAL", params={"VALUE": ["DURATION"]}, value=REFRESH))
    calendar.extra.append(ContentLine(name="X-PUBLISHED-TTL", value=REFRESH))
    calendar.extra.append(ContentLine(name="CALSCALE", value="GREGORIAN"))
    # ``events`` is a set in ics 0.7.3, iterated in hash order by the serializer; a sorted
    # list in its place is iterated as given, which keeps the output byte-stable.
    calendar.events = [_event(item) for item in sorted(events, key=sort_key)]  # type: ignore[assignment]
    return fold(calendar.serialize())


def _escape_text(value: str) -> str:
    """TEXT escaping (RFC 5545 §3.3.11) for values put into ``extra`` by hand."""
    return (
        value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\r\n", "\\n").replace("\n", "\\n")
    )


def _language_tag(language: str) -> str:
    return "zh-CN" if language.startswith("zh") else "en"
