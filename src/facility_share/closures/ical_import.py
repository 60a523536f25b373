"""Pure parsing of an iCalendar (.ics) file into closure periods in UTC; no database.

Rules (what the importer relies on):

* all-day events (``VALUE=DATE``) close whole local days in the resource's timezone, from the
  first day's midnight to the midnight after the last day (``DTEND`` is exclusive, as in
  RFC 5545; without ``DTEND``/``DURATION`` one day);
* timed events use their ``TZID`` (an IANA zone such as ``Asia/Shanghai``, or the Windows name
  Outlook writes, such as ``China Standard Time``, which icalendar maps) or UTC (``Z``);
  floating times (neither) are the resource's local time; a timed event needs ``DTEND`` or
  ``DURATION``;
* recurring events (``RRULE``, plus ``RDATE``/``EXDATE`` and ``RECURRENCE-ID`` overrides)
  are expanded; a rule without ``COUNT``/``UNTIL`` only up to ``window_end`` (the booking
  horizon); a rule that would give more than ``MAX_OCCURRENCES`` occurrences is refused;
* ``STATUS:CANCELLED`` events and occurrences close nothing; occurrences that ended before
  ``window_start`` are left out;
* anything malformed raises :class:`CalendarInvalid` listing every problem (event UID,
  SUMMARY and line where known, and how to fix it); the caller then imports nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from facility_share.errors import CatalogInvalid, Problem

MAX_OCCURRENCES = 1000
MAX_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One closure period: [starts_at, ends_at) in UTC, with the event's SUMMARY and key."""

    starts_at: datetime
    ends_at: datetime
    reason: str
    uid: str  # "<UID>#<occurrence start, UTC ISO>": stable across re-imports of the file


class CalendarInvalid(CatalogInvalid):
    """The calendar file has defects; nothing was imported."""

    code = "calendar_invalid"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        count = len(problems)
        self.message = f"calendar file has {count} problem{'s' if count != 1 else ''}; nothing was imported"
        self.args = (self.message,)


class _Refused(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _event_lines(text: str) -> list[tuple[int, list[tuple[int, str]]]]:
    """For each VEVENT in document order: its BEGIN line and its (line number, unfolded line)s."""
    events: list[tuple[int, list[tuple[int, str]]]] = []
    current: list[tuple[int, str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw[:1] in (" ", "\t"):
            continue  # a folded continuation: the property's line is where it starts
        upper = raw.strip().upper()
        if upper == "BEGIN:VEVENT":
            current = []
            events.append((number, current))
        elif upper == "END:VEVENT":
            current = None
        elif current is not None:
            current.append((number, raw))
    return events


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _Refused("TZID", f"unknown time zone {name!r}; use an IANA name such as Asia/Shanghai") from exc


def _value(event: Any, name: str) -> Any:
    prop = event.get(name)
    if prop is None:
        return None
    try:
        return prop.dt
    except Exception as exc:  # icalendar's broken property
        raise _Refused(name, f"cannot read the value ({exc}); write it as e.g. 20261201T090000") from exc


def _aware(value: datetime, prop: Any, local: ZoneInfo) -> datetime:
    """A DATE-TIME as an aware datetime: TZID, UTC, or floating = the resource's local time."""
    if value.tzinfo is not None:
        return value
    tzid = prop.params.get("TZID") if prop is not None and hasattr(prop, "params") else None
    if tzid:
        return value.replace(tzinfo=_zone(str(tzid)))
    return value.replace(tzinfo=local)


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _utc_key(value: datetime | date, zone: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)
    return _midnight(value, zone).astimezone(UTC)


def _dates(event: Any, name: str, local: ZoneInfo, all_day: bool) -> list[datetime]:
    """RDATE/EXDATE values as aware datetimes (days: local midnight)."""
    found: list[datetime] = []
    props = event.get(name)
    if props is None:
        return found
    for prop in props if isinstance(props, list) else [props]:
        for item in getattr(prop, "dts", []):
            try:
                value = item.dt
            except Exception as exc:
                raise _Refused(name, f"cannot read the value ({exc})") from exc
            if isinstance(value, tuple):  # RDATE period
                value = value[0]
            if isinstance(value, datetime):
                # For an all-day event a date-time names the day it falls on.
                found.append(_midnight(value.date(), local) if all_day else _aware(value, item, local))
            elif isinstance(value, date):
                found.append(_midnight(value, local))
    return found


def _rule_starts(event: Any, start: datetime, all_day: bool, local: ZoneInfo, window_end: datetime) -> list[datetime]:
    """The starts of a recurring event (aware; for all-day events naive local midnights)."""
    from dateutil.rrule import rrulestr

    prop = event.get("RRULE")
    try:
        text = prop.to_ical().decode()
    except Exception as exc:
        raise _Refused("RRULE", f"cannot read the rule ({exc}); write e.g. FREQ=WEEKLY;COUNT=10") from exc
    parts = [p for p in text.split(";") if p]
    until_raw = next((p.split("=", 1)[1] for p in parts if p.upper().startswith("UNTIL=")), None)
    bounded = until_raw is not None or any(p.upper().startswith("COUNT=") for p in parts)
    rule_text = ";".join(p for p in parts if not p.upper().startswith("UNTIL="))
    anchor = start.replace(tzinfo=None) if all_day else start
    try:
        rule = rrulestr(rule_text, dtstart=anchor)
        if until_raw is not None:
            until_value = prop.get("UNTIL")[0] if prop.get("UNTIL") else None
            if isinstance(until_value, datetime):
                until_aware = until_value if until_value.tzinfo else until_value.replace(tzinfo=start.tzinfo or local)
            elif isinstance(until_value, date):
                until_aware = _midnight(until_value + timedelta(days=1), start.tzinfo or local) - timedelta(microseconds=1)
            else:
                raise ValueError(f"UNTIL={until_raw} is not a date or date-time")
            rule = rule.replace(until=until_aware.astimezone(local).replace(tzinfo=None) if all_day else until_aware)
    except _Refused:
        raise
    except Exception as exc:
        raise _Refused("RRULE", f"cannot use the rule {text!r} ({exc}); write e.g. FREQ=WEEKLY;BYDAY=MO;COUNT=10") from exc
    starts: list[datetime] = []
    limit_end = None if bounded else (window_end.astimezone(local).replace(tzinfo=None) if all_day else window_end)
    for value in itertools.islice(rule, MAX_OCCURRENCES + 1):
        if limit_end is not None and value >= limit_end:
            break
        starts.append(value.replace(tzinfo=local) if all_day else value)
    if len(starts) > MAX_OCCURRENCES:
        span = "" if bounded else " within the booking horizon"
        raise _Refused(
            "RRULE",
            f"the rule {text!r} gives more than {MAX_OCCURRENCES} occurrences{span}; "
            "split the event or give it a smaller COUNT or an earlier UNTIL",
        )
    return starts


def parse_closures(
    text: str,
    *,
    zone: str | ZoneInfo,
    window_start: datetime,
    window_end: datetime,
    filename: str = "calendar.ics",
) -> list[Occurrence]:
    """The closures an .ics file describes for a resource in ``zone`` (see the module rules).

    Raises :class:`CalendarInvalid` with every problem found; returns the occurrences that end
    after ``window_start`` ordered by start.
    """
    from icalendar import Calendar

    local = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
    problems: list[Problem] = []

    def refuse(record: str, field: str, message: str) -> CalendarInvalid:
        return CalendarInvalid([Problem(filename, record, field, message)])

    if not text.strip():
        raise refuse("", "", "the file is empty; export the calendar again as an .ics file (BEGIN:VCALENDAR … END:VCALENDAR)")
    if "BEGIN:VCALENDAR" not in text.upper():
        raise refuse("", "", "this is not an iCalendar file (no BEGIN:VCALENDAR); export the calendar as .ics and upload that")
    try:
        calendar = Calendar.from_ical(text)
    except Exception as exc:
        message = str(exc).split("\n")[0][:300]
        line = ""
        found = re.search(r"'([^']+)'", message)
        if found:
            for number, raw in enumerate(text.splitlines(), start=1):
                if found.group(1) in raw:
                    line = f"line {number}"
                    break
        raise refuse(line, "", f"the file cannot be read as iCalendar ({message}); check the line and that every "
                     "BEGIN: has its END:") from exc
    if getattr(calendar, "name", "") != "VCALENDAR":
        raise refuse("", "", "the file does not hold a VCALENDAR; export the calendar as .ics and upload that")
    events = list(calendar.walk("VEVENT"))
    if not events:
        raise refuse("", "", "the calendar holds no events (VEVENT); add the closures as events and export again")

    places = _event_lines(text)
    masters: list[tuple[str, Any, int]] = []
    overrides: dict[str, list[tuple[Any, int]]] = {}
    seen_uids: dict[str, int] = {}
    for index, event in enumerate(events):
        line = places[index][0] if index < len(places) else 0
        uid = str(event.get("UID") or "").strip()
        if not uid:
            digest = hashlib.sha256(f"{event.get('SUMMARY', '')}|{event.get('DTSTART').to_ical() if event.get('DTSTART') else ''}".encode()).hexdigest()[:16]
            uid = f"nouid-{digest}"
        if event.get("RECURRENCE-ID") is not None:
            overrides.setdefault(uid, []).append((event, index))
            continue
        if uid in seen_uids:
            problems.append(Problem(filename, _where(uid, event, line), "UID",
                                    f"the UID is also used by the event at line {seen_uids[uid]}; give every event its own UID"))
            continue
        seen_uids[uid] = line
        masters.append((uid, event, index))

    occurrences: list[Occurrence] = []

    def field_line(index: int, name: str) -> int:
        if index >= len(places):
            return 0
        for number, raw in places[index][1]:
            if raw.upper().startswith(name.upper()) and raw[len(name):len(name) + 1] in (":", ";"):
                return number
        return 0

    def single(event: Any, index: int) -> tuple[datetime, timedelta | None, bool]:
        """(start aware, length or None for whole days, all-day?) of one event."""
        for name, message in getattr(event, "errors", []) or []:
            raise _Refused(str(name), f"cannot read the value ({message})")
        if event.get("DTSTART") is None:
            raise _Refused("DTSTART", "the event has no DTSTART; give the first day (DTSTART;VALUE=DATE:20261201) "
                                      "or the start time (DTSTART;TZID=Asia/Shanghai:20261201T090000)")
        start_value = _value(event, "DTSTART")
        end_value = _value(event, "DTEND")
        duration = _value(event, "DURATION")
        all_day = not isinstance(start_value, datetime)
        if all_day:
            if end_value is not None and isinstance(end_value, datetime):
                raise _Refused("DTEND", "DTSTART is a day but DTEND a time; give both as days (VALUE=DATE) or both as times")
            start = _midnight(start_value, local)
            days = (end_value - start_value).days if end_value is not None else (
                max(1, duration.days) if isinstance(duration, timedelta) else 1)
            if days <= 0:
                raise _Refused("DTEND", "DTEND is not after DTSTART; DTEND is the day after the last closed day")
            return start, timedelta(days=days), True
        start = _aware(start_value, event.get("DTSTART"), local)
        if end_value is not None:
            if not isinstance(end_value, datetime):
                raise _Refused("DTEND", "DTSTART is a time but DTEND a day; give both as times or both as days")
            end = _aware(end_value, event.get("DTEND"), local)
            length = end.astimezone(UTC) - start.astimezone(UTC)
        elif isinstance(duration, timedelta):
            length = duration
        else:
            raise _Refused("DTEND", "the event has a start time but no DTEND or DURATION; add the end time")
        if length <= timedelta(0):
            raise _Refused("DTEND", "DTEND is not after DTSTART; make the end later than the start")
        return start, length, False

    def span(start: datetime, length: timedelta, all_day: bool) -> tuple[datetime, datetime]:
        if all_day:
            first = start.date()
            return _midnight(first, local).astimezone(UTC), _midnight(first + timedelta(days=length.days), local).astimezone(UTC)
        return start.astimezone(UTC), (start + length).astimezone(UTC)

    for uid, event, index in masters:
        line = places[index][0] if index < len(places) else 0
        try:
            start, length, all_day = single(event, index)
            cancelled = str(event.get("STATUS") or "").upper() == "CANCELLED"
            reason = str(event.get("SUMMARY") or "").strip()[:300]
            starts = [start]
            if event.get("RRULE") is not None:
                starts = _rule_starts(event, start, all_day, local, window_end)
            starts += _dates(event, "RDATE", local, all_day)
            excluded = {_utc_key(d, local) for d in _dates(event, "EXDATE", local, all_day)}
            replaced: dict[datetime, Any] = {}
            for override, o_index in overrides.pop(uid, []):
                try:
                    rid_prop = override.get("RECURRENCE-ID")
                    rid = rid_prop.dt
                    key = _utc_key(_aware(rid, rid_prop, local) if isinstance(rid, datetime) else rid, local)
                except _Refused:
                    raise
                except Exception as exc:
                    raise _Refused("RECURRENCE-ID", f"cannot read the value ({exc})") from exc
                replaced[key] = (override, o_index)
            if len(starts) > MAX_OCCURRENCES:
                raise _Refused("RDATE", f"the event gives more than {MAX_OCCURRENCES} occurrences; split it")
            for occurrence_start in sorted(set(starts), key=lambda d: d.astimezone(UTC)):
                key = occurrence_start.astimezone(UTC)
                if key in excluded:
                    continue
                if key in replaced:
                    override, o_index = replaced.pop(key)
                    if str(override.get("STATUS") or "").upper() == "CANCELLED":
                        continue
                    o_start, o_length, o_all_day = single(override, o_index)
                    s, e = span(o_start, o_length, o_all_day)
                    o_reason = str(override.get("SUMMARY") or reason).strip()[:300]
                    if e > window_start:
                        occurrences.append(Occurrence(s, e, o_reason, f"{uid}#{key.isoformat()}"))
                    continue
                if cancelled:
                    continue
                s, e = span(occurrence_start, length, all_day)
                if e > window_start:
                    occurrences.append(Occurrence(s, e, reason, f"{uid}#{key.isoformat()}"))
        except _Refused as refused:
            problems.append(Problem(filename, _where(uid, event, field_line(index, refused.field) or line), refused.field,
                                    refused.message))
        except Exception as exc:  # anything else the library lets through: still a problem, not a crash
            problems.append(Problem(filename, _where(uid, event, line), "",
                                    f"cannot use this event ({str(exc)[:200]}); check its DTSTART, DTEND and RRULE"))
    for uid, leftovers in overrides.items():
        for override, o_index in leftovers:
            line = places[o_index][0] if o_index < len(places) else 0
            if uid not in seen_uids:
                problems.append(Problem(filename, _where(uid, override, line), "RECURRENCE-ID",
                                        "this changes one occurrence of an event that is not in the file; "
                                        "export the whole series"))
    if problems:
        raise CalendarInvalid(problems)
    occurrences.sort(key=lambda o: (o.starts_at, o.uid))
    return occurrences


def _where(uid: str, event: Any, line: int) -> str:
    summary = str(event.get("SUMMARY") or "").strip()
    text = f"event {uid}"
    if summary:
        text += f" “{summary[:60]}”"
    if line:
        text += f" at line {line}"
    return text


__all__ = ["MAX_BYTES", "MAX_OCCURRENCES", "CalendarInvalid", "Occurrence", "parse_closures"]
