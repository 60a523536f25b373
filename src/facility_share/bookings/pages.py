"""Booking pages: a resource's public week calendar, the booking form with its fee estimate,
my bookings, and the managers' approval queue and unit calendar.

Times on these pages are the resource's local time (its ``timezone``), as people read them on
the wall of the lab; the services work in UTC. The forms work without JavaScript; handlers read
them themselves and re-render with what was typed and an inline message when something is
wrong. Booking-rule violations come from the service as data (``InvalidInput.detail``); the
message of each rule is translated here from the English template in ``rules.MESSAGES``.

Controllers, one access level each:

* ``CalendarPages`` (public): ``/resources/{code}/calendar``;
* ``BookingFormPages`` (enterprise): ``/resources/{code}/book``, ``/me/bookings``;
* ``BookingActionPages`` (authenticated): ``POST /bookings/{booking_id}/{action}``;
* ``ManagerBookingPages`` (manager): ``/manage/requests``, ``/manage/calendar``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_skeleton
from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select

from facility_share.accounts.pages import read_form, text, with_status
from facility_share.accounts.principal import Principal
from facility_share.bookings import availability as av
from facility_share.bookings import rules as booking_rules
from facility_share.bookings import services
from facility_share.bookings.working_calendar import classify
from facility_share.catalog import queries
from facility_share.catalog.pages import Words
from facility_share.db.models import Booking, Enterprise, ManagingUnit, Rating, Resource, UsageLog, utcnow
from facility_share.errors import Conflict, FacilityShareError, Forbidden, InvalidInput, NotFound
from facility_share.web import paging
from facility_share.web.deps import AppSettings, DbSession, Lang, RecordId
from facility_share.web.i18n import I18n
from facility_share.web.pages import safe_next
from facility_share.web.render import render

WEEK = timedelta(days=7)
MAX_WEEKS_AWAY = 156  # calendars reach three years back and ahead
MAX_BULK = 200
ACTIONS = {"approve": "approve", "reject": "reject", "cancel": "cancel", "complete": "complete", "no-show": "no_show"}
SHOWN_ON_UNIT_CALENDAR = ("requested", "approved", "completed", "no_show")


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


# The English templates of rules.MESSAGES, marked for the catalogue (a test checks they match).
RULE_MESSAGES = {
    "time_order": N_("the end must be after the start"),
    "opening_hours": N_("the resource is not open for all of that time; choose a time inside its opening hours"),
    "closure": N_("the resource is closed for part of that time (maintenance or holiday); choose another time"),
    "granularity": N_("bookings must start and end on the resource's %(unit)s boundaries; choose whole %(unit)ss"),
    "min_length": N_("the booking is %(minutes)s minutes; the minimum is %(min_minutes)s minutes"),
    "max_length": N_("the booking is %(minutes)s minutes; the maximum is %(max_minutes)s minutes"),
    "lead_time": N_("bookings must be made at least %(lead_hours)s hours ahead; the earliest start now is %(earliest)s"),
    "horizon": N_("bookings can be made at most %(horizon_days)s days ahead; the latest start now is %(latest)s"),
    "quantity": N_("the quantity must be between 1 and the capacity, %(capacity)s"),
    "capacity": N_(
        "only %(remaining)s of %(capacity)s places are free for that whole time; choose another time or a smaller quantity"
    ),
    "mode": N_("the operating mode must be staff_operated or self_operated"),
    "self_operation": N_("this resource is only operated by its staff; choose staff_operated"),
    "qualification": N_(
        "operating this resource yourself needs a qualification valid until %(end_date)s; ask the managing unit for "
        "training, or choose staff_operated"
    ),
    "open_requests": N_(
        "your enterprise already has %(open)s requests waiting for a decision (the limit is %(limit)s); wait for a "
        "decision or withdraw one"
    ),
}
# Fixed messages of the booking service, translated as they are.
SERVICE_MESSAGES = (
    N_("only members of an enterprise can book; register your enterprise first"),
    N_("your enterprise has not been verified yet; you can browse, and book once an admin verifies it"),
    N_("this workshop is booked by line or bay; choose one of its lines"),
    N_("this resource is not open for sharing; only its own unit can book it"),
    N_("samples: give the expected number of samples, 0–10000"),
    N_("purpose: at most 2000 characters"),
    N_("that time has just been booked by someone else; choose another time"),
)


def _template_pattern(template: str) -> re.Pattern[str]:
    seen: set[str] = set()

    def group(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return f"(?P={name})"
        seen.add(name)
        return f"(?P<{name}>.+?)"

    escaped = re.escape(template).replace(r"%\(", "%(").replace(r"\)s", ")s")
    return re.compile("^" + re.sub(r"%\((\w+)\)s", group, escaped) + "$")


RULE_PATTERNS = {rule: _template_pattern(message) for rule, message in RULE_MESSAGES.items()}


class BookingWords(Words):
    """Translated labels, times and messages of the booking pages."""

    def status(self, status: str) -> str:
        return {
            "requested": self._("Awaiting approval"),
            "approved": self._("Approved"),
            "rejected": self._("Rejected"),
            "expired": self._("Expired"),
            "cancelled": self._("Cancelled"),
            "completed": self._("Completed"),
            "no_show": self._("No-show"),
        }.get(status, status)

    def mode(self, mode: str) -> str:
        return {
            "staff_operated": self._("Operated by the unit's staff"),
            "self_operated": self._("Self-operated"),
        }.get(mode, mode)

    def customer_class(self, klass: str) -> str:
        return {
            "internal": self._("internal rate"),
            "district": self._("district enterprise rate"),
            "external": self._("external rate"),
        }.get(klass, klass)

    def unit_word(self, unit: str) -> str:
        return {"slot": self._("slot"), "shift": self._("shift"), "day": self._("day")}.get(unit, unit)

    def clock(self, value: datetime, zone: ZoneInfo) -> str:
        return value.astimezone(zone).strftime("%H:%M")

    def hours(self, start: datetime, end: datetime, zone: ZoneInfo) -> str:
        """``09:00–11:00``; an end at midnight reads 24:00."""
        tail = self.clock(end, zone)
        if tail == "00:00" and end > start:
            tail = "24:00"
        return f"{self.clock(start, zone)}–{tail}"

    def day_label(self, day: date) -> str:
        return format_skeleton("MMMd", day, locale=self.i18n.babel)

    def span(self, start: datetime, end: datetime, timezone: str) -> str:
        """``2026-11-24 09:00–11:00``, or both dates when the span crosses midnight."""
        zone = ZoneInfo(timezone)
        local_start, local_end = start.astimezone(zone), end.astimezone(zone)
        head = self.local_datetime(start, timezone)
        same_day = local_start.date() == local_end.date() or (
            local_end.time() == time(0) and local_end.date() - local_start.date() == timedelta(days=1)
        )
        if same_day:
            tail = "24:00" if local_end.time() == time(0) and local_end.date() != local_start.date() else local_end.strftime("%H:%M")
            return f"{head}–{tail}"
        return f"{head} – {self.local_datetime(end, timezone)}"

    def violation(self, item: Any, timezone: str) -> str:
        """One broken booking rule (``{"rule", "message"}`` from the service) in the reader's language."""
        rule = item.get("rule", "") if isinstance(item, dict) else ""
        message = item.get("message", "") if isinstance(item, dict) else str(item)
        pattern = RULE_PATTERNS.get(rule)
        found = pattern.match(message) if pattern else None
        if found is None:
            return self.i18n.gettext(message)
        values: dict[str, Any] = found.groupdict()
        for name in ("earliest", "latest"):
            if name in values:
                try:
                    values[name] = self.local_datetime(datetime.fromisoformat(values[name]), timezone)
                except ValueError:
                    pass
        if "end_date" in values:
            try:
                values["end_date"] = self.date(date.fromisoformat(values["end_date"]))
            except ValueError:
                pass
        if "unit" in values:
            values["unit"] = self.unit_word(values["unit"])
        text_ = self.i18n.gettext(RULE_MESSAGES[rule])
        try:
            return text_ % values
        except (KeyError, ValueError, TypeError):
            return message

    def action_error(self, exc: FacilityShareError, timezone: str) -> str:
        """What went wrong with approve/reject/cancel/complete/no-show, in the reader's language."""
        message = exc.message
        if isinstance(exc, NotFound):
            return self._("There is no such booking, or it is not yours to change.")
        if found := re.match(r"^a (\w+) booking cannot be", message):
            return self._("This booking is %(status)s; it cannot be changed that way any more.",
                          status=self.status(found.group(1)))
        if "only the managing unit" in message:
            return self._("Only the managing unit can do this.")
        if "only once it has started" in message:
            return self._("A booking can be marked completed or no-show only once it has started.")
        if "already begun" in message:
            return self._("The requested time has already begun; the request can only be rejected.")
        if found := re.search(r"cancelled until (\d+) hours before the start \(([^)]+)\)", message):
            try:
                deadline = self.local_datetime(datetime.fromisoformat(found.group(2)), timezone)
            except ValueError:
                deadline = found.group(2)
            return self._(
                "Approved bookings of this resource can be cancelled until %(hours)s hours before the start "
                "(%(deadline)s); contact the managing unit.",
                hours=found.group(1), deadline=deadline,
            )
        if "has ended" in message:
            return self._("A booking that has ended cannot be cancelled.")
        if message.startswith("reason: say why the request is rejected"):
            return self._("Say why the request is rejected; the enterprise will read it.")
        if message.startswith("reason: say why the unit cancels"):
            return self._("Say why the unit cancels this booking; the enterprise will read it.")
        return self.i18n.gettext(message)


def local_monday(value: date) -> date:
    return value - timedelta(days=value.weekday())


def week_bounds(monday: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(monday, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(monday + WEEK, time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def read_week(raw: str | None, zone: ZoneInfo, i18n: I18n) -> tuple[date, str]:
    """The Monday of the week asked for (this week by default), and a message if ``raw`` is bad."""
    today = utcnow().astimezone(zone).date()
    this_monday = local_monday(today)
    if not raw:
        return this_monday, ""
    try:
        monday = local_monday(date.fromisoformat(raw.strip()))
    except ValueError:
        return this_monday, i18n.gettext("Give the week as a date such as 2026-12-07; showing this week instead.")
    if abs((monday - this_monday).days) > MAX_WEEKS_AWAY * 7:
        return this_monday, i18n.gettext("That week is too far away; showing this week instead.")
    return monday, ""


def local_input(value: datetime, zone: ZoneInfo) -> str:
    """A UTC time as a ``datetime-local`` input value in ``zone``."""
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def parse_local(raw: str, zone: ZoneInfo) -> datetime:
    """A ``datetime-local`` value (the resource's local time) to UTC. Raises ValueError."""
    value = datetime.fromisoformat(raw.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    if not 2000 <= value.year <= 2100:
        raise ValueError("out of range")
    return value.astimezone(UTC)


def principal_of(request: Request) -> Principal | None:
    return request.scope.get("user")


# --- the public week calendar ----------------------------------------------------------------


@dataclass
class Cell:
    state: str  # free | partly | full | closed | past | too_soon | beyond
    remaining: int = 0
    link: str = ""
    title: str = ""


@dataclass
class Row:
    label: str
    sub: str = ""
    cells: list[Cell] = field(default_factory=list)


@dataclass
class DayHead:
    day: date
    weekday: str
    label: str
    kind: str  # workday | weekend | holiday | makeup_workday
    today: bool = False
    short: str = ""


def day_heads(monday: date, words: BookingWords, today: date) -> list[DayHead]:
    heads = []
    for offset in range(7):
        day = monday + timedelta(days=offset)
        code = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day.weekday()]
        heads.append(DayHead(day, words.weekday(code), words.day_label(day), str(classify(day)), day == today,
                             format_date(day, "EEE", locale=words.i18n.babel)))
    return heads


def _prefill_end(units: list[av.Unit], index: int, resource: Resource) -> datetime:
    """Where a booking that starts at ``units[index]`` should end by default: the minimum length,
    if the following slots are free and adjacent; else the end of the unit."""
    unit = units[index]
    if resource.booking_unit != "slot":
        return unit.end
    wanted = unit.start + timedelta(minutes=max(resource.min_minutes, resource.slot_minutes))
    end = unit.end
    for following in units[index + 1:]:
        if end >= wanted:
            break
        if following.start != end or following.remaining <= 0:
            return unit.end
        end = following.end
    return end if end >= wanted else unit.end


def calendar_rows(resource: Resource, units: list[av.Unit], monday: date, words: BookingWords,
                  now: datetime) -> list[Row]:
    zone = ZoneInfo(resource.timezone)
    shift_names = {s.get("code"): s for s in (resource.shifts or [])}
    earliest = now + timedelta(minutes=resource.lead_minutes)
    latest = now + timedelta(days=resource.horizon_days)
    keys: dict[tuple[time, str, str], Row] = {}
    cells: dict[tuple[tuple[time, str, str], date], Cell] = {}
    for index, unit in enumerate(units):
        local_start, local_end = unit.start.astimezone(zone), unit.end.astimezone(zone)
        day = local_start.date()
        if not 0 <= (day - monday).days < 7:
            continue
        end_label = "24:00" if local_end.time() == time(0) else local_end.strftime("%H:%M")
        hours = f"{local_start.strftime('%H:%M')}–{end_label}"
        if resource.booking_unit == "day":
            key: tuple[time, str, str] = (time(0), "", "day")
            row = Row(words._("Whole day"))
        elif resource.booking_unit == "shift":
            key = (local_start.time(), end_label, unit.label)
            shift = shift_names.get(unit.label)
            row = Row(words.i18n.pick(shift, "name") if shift else unit.label, hours)
        else:
            key = (local_start.time(), end_label, "")
            row = Row(hours)
        keys.setdefault(key, row)
        if unit.start < now:
            cell = Cell("past")
        elif unit.start < earliest:
            cell = Cell("too_soon")
        elif unit.start > latest:
            cell = Cell("beyond")
        elif unit.remaining <= 0:
            cell = Cell("full")
        else:
            end = _prefill_end(units, index, resource)
            query = urlencode({"start": local_input(unit.start, zone), "end": local_input(end, zone)}, safe=":")
            state = "free" if unit.remaining >= resource.capacity else "partly"
            cell = Cell(state, unit.remaining, f"/resources/{resource.code}/book?{query}")
        cell.title = f"{words.day_label(day)} {hours}"
        cells[(key, day)] = cell
    rows = []
    for key, row in sorted(keys.items(), key=lambda item: item[0]):
        for offset in range(7):
            day = monday + timedelta(days=offset)
            row.cells.append(cells.get((key, day), Cell("closed")))
        rows.append(row)
    return rows


class CalendarPages(Controller):
    path = "/resources"
    include_in_schema = False
    opt = {"access": "public"}

    @get("/{code:str}/calendar", name="resource-calendar", cache=False)
    async def calendar(self, request: Request, db_session: DbSession, i18n: Lang, code: FromPath[str]) -> Template:
        words = BookingWords(i18n)
        detail = await queries.get_resource(db_session, code)
        resource = await services.load_resource(db_session, code)
        zone = ZoneInfo(resource.timezone)
        monday, error = read_week(request.query_params.get("week"), zone, i18n)
        start, end = week_bounds(monday, zone)
        now = utcnow()
        rows: list[Row] = []
        if not detail.lines:
            found = await services.availability(db_session, code, start, end)
            rows = calendar_rows(resource, found.units, monday, words, now)
        closed_week = not detail.lines and not rows
        if closed_week:  # still show the days, with their holidays
            rows = [Row("—", cells=[Cell("closed") for _day in range(7)])]
        today = now.astimezone(zone).date()
        page = render(
            request, i18n, "bookings/calendar.html",
            r=detail, resource=resource, rows=rows, days=day_heads(monday, words, today), monday=monday,
            sunday=monday + timedelta(days=6), error=error, words=words,
            prev_week=(monday - WEEK).isoformat(), next_week=(monday + WEEK).isoformat(),
            this_week=local_monday(today), rules=words.booking_rules(detail.booking_rules), closed_week=closed_week,
        )
        return with_status(page, 400) if error else page


# --- the booking form -------------------------------------------------------------------------


@dataclass
class BookingForm:
    start: str = ""
    end: str = ""
    quantity: str = "1"
    mode: str = "staff_operated"
    samples: str = "0"
    purpose: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def get(self, name: str, default: Any = "") -> Any:
        return getattr(self, name, default)


@dataclass
class Estimate:
    amount_fen: int
    customer_class: str
    units: int
    minutes: int


@dataclass
class ParsedBooking:
    start: datetime
    end: datetime
    quantity: int
    mode: str
    samples: int
    purpose: str


def has_sample_fees(resource: Resource) -> bool:
    return any(item.basis == "sample" for item in resource.fee_items)


def read_booking_form(values: Any, resource: Resource, i18n: I18n) -> tuple[BookingForm, ParsedBooking | None]:
    _ = i18n.gettext
    zone = ZoneInfo(resource.timezone)
    form = BookingForm(
        start=text(values, "start", 40), end=text(values, "end", 40),
        quantity=text(values, "quantity", 10) or "1", mode=text(values, "mode", 30) or "staff_operated",
        samples=text(values, "samples", 10) or "0", purpose=text(values, "purpose", 2100),
    )
    start = end = None
    try:
        start = parse_local(form.start, zone)
    except ValueError:
        form.errors["start"] = _("Enter the start as a date and time, e.g. 2026-12-01 09:00.")
    try:
        end = parse_local(form.end, zone)
    except ValueError:
        form.errors["end"] = _("Enter the end as a date and time, e.g. 2026-12-01 11:00.")
    if start and end and end <= start:
        form.errors["end"] = _("The end must be after the start.")
    quantity = 1
    try:
        quantity = int(form.quantity)
        if not 1 <= quantity <= resource.capacity:
            raise ValueError
    except ValueError:
        form.errors["quantity"] = _("Choose a quantity between 1 and %(capacity)d.", capacity=resource.capacity)
    if form.mode not in booking_rules.MODES or (form.mode == "self_operated" and not resource.self_operation_allowed):
        form.errors["mode"] = _("Choose how the instrument is operated from the list.")
    samples = 0
    try:
        samples = int(form.samples)
        if not 0 <= samples <= 10_000:
            raise ValueError
    except ValueError:
        form.errors["samples"] = _("Give the expected number of samples as a whole number from 0 to 10000.")
    if len(form.purpose) > 2000:
        form.errors["purpose"] = _("Describe the purpose in at most 2000 characters.")
    if form.errors or start is None or end is None:
        return form, None
    return form, ParsedBooking(start, end, quantity, form.mode, samples, form.purpose)


async def compute_estimate(session: Any, resource: Resource, principal: Principal, parsed: ParsedBooking) -> Estimate | None:
    if principal.enterprise_id is None:
        return None
    enterprise = await session.get(Enterprise, principal.enterprise_id)
    if enterprise is None:
        return None
    margin = timedelta(days=1)
    calendar = services.calendar_of(resource, await services.closures_in(session, resource, parsed.start - margin, parsed.end + margin))
    span = av.Interval(parsed.start, parsed.end)
    klass, amount = await services.estimate(session, resource, calendar, enterprise, span, parsed.samples, parsed.quantity)
    return Estimate(amount, klass, services.count_units(calendar, span), span.minutes)


MY_BOOKINGS_PAGE_SIZE = 25
# One-time notices of /me/bookings (after booking, cancelling, checking in or out): not carried
# to the other pages.
MY_BOOKINGS_NOTICES = ("created", "cancelled", "checked_in", "checked_out")


def my_bookings_url(number: int = 1, **notice: Any) -> str:
    """/me/bookings on page ``number``, with a notice (e.g. ``cancelled=12``)."""
    query = {**({"page": number} if number > 1 else {}), **notice}
    return "/me/bookings" + (f"?{urlencode(query)}" if query else "")


def page_of(target: str) -> int:
    """The page number in a /me/bookings address (a form's ``next``)."""
    return paging.page_number(dict(parse_qsl(urlsplit(target).query)))


async def _noticed(session: Any, principal: Principal, rows: list[Booking], raw: str | None) -> Booking | None:
    """The booking a notice speaks of: on the page shown, or else read on its own (it may be on
    another page), if it is the enterprise's."""
    if not raw or not raw.isdigit() or len(raw) > 12:
        return None
    found = next((b for b in rows if b.id == int(raw)), None)
    if found is None and principal.enterprise_id is not None:
        try:
            found = await services.get_booking(session, principal, int(raw))
        except NotFound:
            return None
        if found.enterprise_id != principal.enterprise_id:
            return None
    return found


async def my_bookings_page(request: Request, session: Any, i18n: I18n, *, error: str = "", status: int = 200,
                           number: int | None = None) -> Template:
    """The enterprise's bookings, one page of them: ``number``, else the query string's ``page``
    (a form shown again with its error passes the page it was posted from)."""
    principal: Principal = request.user
    words = BookingWords(i18n)
    rows: list[Booking] = []
    total = 0
    if number is None:
        number = paging.page_number(request.query_params)
    # Links keep the query of /me/bookings itself, not that of a form's address.
    params = request.query_params if request.method == "GET" else None

    def page_at(total: int, number: int) -> paging.Page:
        return paging.paginate(total, number, size=MY_BOOKINGS_PAGE_SIZE, path="/me/bookings", params=params,
                               drop=MY_BOOKINGS_NOTICES, anchor="bookings")

    page = page_at(0, 1)
    if principal.enterprise_id is not None:
        # The rows and their total come in one call, so the page asked for is read first.
        rows, total = await services.list_bookings(
            session, principal,
            services.BookingFilter(limit=MY_BOOKINGS_PAGE_SIZE, offset=(number - 1) * MY_BOOKINGS_PAGE_SIZE), scope="mine",
        )
        page = page_at(total, number)
        if page.number != number:  # past the last page (a stale link): show the last one
            rows, total = await services.list_bookings(
                session, principal, services.BookingFilter(limit=page.size, offset=page.offset), scope="mine"
            )
            page = page_at(total, page.number)
    now = utcnow()
    cancellable = set()
    for b in rows:
        if b.status not in ("requested", "approved") or now >= b.ends_at:
            continue
        if b.status == "approved" and now > b.starts_at - timedelta(hours=b.resource.cancellation_hours):
            continue
        cancellable.add(b.id)
    rated, self_check_in, self_check_out = await _usage_state(session, principal, rows, now)
    notices = {name: await _noticed(session, principal, rows, request.query_params.get(name)) for name in MY_BOOKINGS_NOTICES}
    shown = render(
        request, i18n, "bookings/my_bookings.html",
        rows=rows, total=total, page=page, cancellable=cancellable, words=words, now=now, error=error,
        rated=rated, self_check_in=self_check_in, self_check_out=self_check_out, **notices,
    )
    return with_status(shown, status)


async def _usage_state(session: Any, principal: Principal, rows: list[Booking],
                       now: datetime) -> tuple[dict[int, int], set[int], set[int]]:
    """Stars of the rated completed bookings, and the bookings the user may check in or out now."""
    from facility_share.usage.services import current_versions

    completed = [b.id for b in rows if b.status == "completed"]
    rated: dict[int, int] = {}
    if completed:
        rated = dict((await session.execute(select(Rating.booking_id, Rating.stars).where(Rating.booking_id.in_(completed)))).all())
    own = [b for b in rows if b.status == "approved" and b.mode == "self_operated" and b.user_id == principal.user_id]
    check_in, check_out = set(), set()
    if own:
        logs = {
            log.booking_id: log
            for log in (
                await session.execute(select(UsageLog).where(UsageLog.booking_id.in_([b.id for b in own]), current_versions()))
            ).scalars()
        }
        for b in own:
            log = logs.get(b.id)
            grace = timedelta(minutes=b.resource.checkin_grace_minutes)
            if log is None and b.starts_at - grace <= now <= b.starts_at + grace:
                check_in.add(b.id)
            elif log is not None and log.ended_at is None and log.source == "self":
                check_out.add(b.id)
    return rated, check_in, check_out


class BookingFormPages(Controller):
    path = "/"
    include_in_schema = False
    opt = {"access": "enterprise"}

    async def _form_page(self, request: Request, session: Any, i18n: I18n, resource: Resource, form: BookingForm,
                         estimate: Estimate | None = None) -> Template:
        principal: Principal = request.user
        words = BookingWords(i18n)
        detail = await queries.get_resource(session, resource.code)
        return render(
            request, i18n, "bookings/book.html",
            r=detail, resource=resource, form=form, estimate=estimate, words=words,
            rules=words.booking_rules(detail.booking_rules),
            member=principal.enterprise_id is not None, verified=principal.enterprise_verified,
            sample_fees=has_sample_fees(resource), week=self._week_of(form.start, resource),
        )

    @staticmethod
    def _week_of(start: str, resource: Resource) -> str:
        """The calendar week of the form's start, to go back to it."""
        zone = ZoneInfo(resource.timezone)
        try:
            return local_monday(parse_local(start, zone).astimezone(zone).date()).isoformat()
        except ValueError:
            return ""

    @get("/resources/{code:str}/book", name="book", cache=False)
    async def book_page(self, request: Request, db_session: DbSession, i18n: Lang, code: FromPath[str]) -> Template:
        resource = await services.load_resource(db_session, code)
        params = request.query_params
        zone = ZoneInfo(resource.timezone)
        form = BookingForm(start=(params.get("start") or "")[:40], end=(params.get("end") or "")[:40])
        estimate = None
        if form.start and form.end:
            parsed_form, parsed = read_booking_form({"start": form.start, "end": form.end}, resource, i18n)
            if parsed is not None and request.user.enterprise_id is not None:
                estimate = await compute_estimate(db_session, resource, request.user, parsed)
                form = BookingForm(start=local_input(parsed.start, zone), end=local_input(parsed.end, zone))
            elif parsed is None:
                form.errors = {k: v for k, v in parsed_form.errors.items() if k in ("start", "end")}
        page = await self._form_page(request, db_session, i18n, resource, form, estimate)
        return with_status(page, 400) if form.errors else page

    @post("/resources/{code:str}/book", name="book-submit")
    async def book(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings,
                   code: FromPath[str]) -> Template | Redirect:
        principal: Principal = request.user
        resource = await services.load_resource(db_session, code)
        data = await read_form(request)
        form, parsed = read_booking_form(data, resource, i18n)
        words = BookingWords(i18n)
        if parsed is None:
            return with_status(await self._form_page(request, db_session, i18n, resource, form), 400)
        if principal.enterprise_id is None or not principal.enterprise_verified:
            return with_status(await self._form_page(request, db_session, i18n, resource, form), 403)
        if text(data, "action") == "estimate":
            estimate = await compute_estimate(db_session, resource, principal, parsed)
            return await self._form_page(request, db_session, i18n, resource, form, estimate)
        try:
            booking = await services.request_booking(
                db_session, principal,
                services.BookingInput(code, parsed.start, parsed.end, parsed.quantity, parsed.mode, parsed.purpose, parsed.samples),
                max_open_requests=settings.max_open_requests,
            )
        except (InvalidInput, Conflict, Forbidden) as exc:
            await db_session.rollback()
            resource = await services.load_resource(db_session, code)  # the rollback expired it
            if isinstance(exc.detail, list) and exc.detail:
                form.violations = [words.violation(item, resource.timezone) for item in exc.detail]
            else:
                field_name, _sep, _rest = exc.message.partition(": ")
                if field_name in ("samples", "purpose"):
                    form.errors[field_name] = i18n.gettext(exc.message)
                else:
                    form.violations = [i18n.gettext(exc.message)]
            estimate = None
            if not isinstance(exc, Forbidden):
                estimate = await compute_estimate(db_session, resource, principal, parsed)
            page = await self._form_page(request, db_session, i18n, resource, form, estimate)
            return with_status(page, exc.status_code)
        await db_session.commit()
        return Redirect(f"/me/bookings?created={booking.id}", status_code=303)

    @get("/me/bookings", name="my-bookings", cache=False)
    async def my_bookings(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        return await my_bookings_page(request, db_session, i18n)


# --- acting on one booking ----------------------------------------------------------------------


def with_query(target: str, **params: Any) -> str:
    parts = urlsplit(target)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return f"{parts.path}?{query}"


class BookingActionPages(Controller):
    path = "/bookings"
    include_in_schema = False
    opt = {"access": "authenticated"}

    @post("/{booking_id:int}/{action:str}", name="booking-action")
    async def act(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings,
                  booking_id: RecordId, action: FromPath[str]) -> Template | Redirect:
        if action not in ACTIONS:
            raise NotFound(f"no action {action!r}; use approve, reject, cancel, complete or no-show")
        principal: Principal = request.user
        data = await read_form(request)
        reason = text(data, "reason", 500)
        next_raw = text(data, "next")
        target = safe_next(next_raw) if next_raw else ("/me/bookings" if action == "cancel" else "/manage/requests")
        words = BookingWords(i18n)
        try:
            booking = await services.change_status(db_session, principal, booking_id, ACTIONS[action], reason=reason)
        except FacilityShareError as exc:
            await db_session.rollback()
            resource_tz = (
                await db_session.execute(
                    select(Resource.timezone).join(Booking, Booking.resource_id == Resource.id).where(Booking.id == booking_id)
                )
            ).scalar_one_or_none()
            message = words.action_error(exc, resource_tz or settings.timezone)
            status = exc.status_code if exc.status_code in (400, 403, 404, 409) else 400
            if target.startswith("/me/bookings") and principal.enterprise_id is not None:
                return await my_bookings_page(request, db_session, i18n, error=message, status=status, number=page_of(target))
            page = render(request, i18n, "bookings/action_failed.html", message=message, back=target, words=words,
                          action=action, booking_id=booking_id)
            return with_status(page, status)
        await db_session.commit()
        if action == "cancel" and target.startswith("/me/bookings"):
            return Redirect(my_bookings_url(page_of(target), cancelled=booking.id), status_code=303)
        return Redirect(with_query(target, done=action, booking=booking.id), status_code=303)


# --- managers: the approval queue and the unit calendar --------------------------------------


@dataclass
class Outcome:
    booking_id: int
    ok: bool
    message: str = ""


class ManagerBookingPages(Controller):
    path = "/manage"
    include_in_schema = False
    opt = {"access": "manager"}

    async def _queue(self, request: Request, session: Any, i18n: I18n, *, outcomes: list[Outcome] | None = None,
                     bulk_error: str = "", reasons: dict[int, str] | None = None) -> Template:
        principal: Principal = request.user
        now = utcnow()
        rows, _total = await services.list_bookings(
            session, principal, services.BookingFilter(status="requested", limit=500), scope="managed"
        )
        rows = [b for b in rows if b.decision_deadline is None or b.decision_deadline > now]
        rows.sort(key=lambda b: (b.decision_deadline or b.starts_at, b.starts_at, b.id))
        outcomes = outcomes or []
        done = request.query_params.get("done", "")
        counts = {}
        for name in ("approved", "rejected"):
            raw = request.query_params.get(name, "")
            if raw.isdigit():
                counts[name] = int(raw)
        return render(
            request, i18n, "bookings/requests.html",
            rows=rows, words=BookingWords(i18n), now=now,
            outcomes=outcomes, errors={o.booking_id: o.message for o in outcomes if not o.ok},
            succeeded=[o for o in outcomes if o.ok], bulk_error=bulk_error, reasons=reasons or {},
            counts=counts, done=done if done in ("approve", "reject", "cancel", "complete", "no-show") else "",
        )

    @get("/requests", name="manage-requests", cache=False)
    async def requests(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        return await self._queue(request, db_session, i18n)

    @post("/requests/decide", name="manage-requests-decide")
    async def decide(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings) -> Template | Redirect:
        _ = i18n.gettext
        principal: Principal = request.user
        data = await read_form(request)
        decision = text(data, "decision", 20)
        reason = text(data, "reason", 500)
        try:
            raw_ids = list(data.getall("ids"))
        except (KeyError, AttributeError):
            raw_ids = []
        ids: list[int] = []
        for raw in raw_ids[:MAX_BULK]:
            if isinstance(raw, str) and raw.strip().isdigit() and 0 < int(raw) < 2_147_483_648:
                if int(raw) not in ids:
                    ids.append(int(raw))
        problem = ""
        if decision not in ("approve", "reject"):
            problem = _("Choose to approve or to reject.")
        elif not ids:
            problem = _("Select at least one request.")
        elif decision == "reject" and not reason:
            problem = _("Give a reason for rejecting; the enterprise will read it.")
        if problem:
            single = ids[0] if len(ids) == 1 and text(data, "single") else None
            outcomes = [Outcome(single, False, problem)] if single else []
            page = await self._queue(request, db_session, i18n, outcomes=outcomes, bulk_error="" if single else problem,
                                     reasons={single: reason} if single else {})
            return with_status(page, 400)
        words = BookingWords(i18n)
        outcomes = []
        for booking_id in ids:
            try:
                booking = await services.change_status(db_session, principal, booking_id, decision, reason=reason)
                await db_session.commit()
                outcomes.append(Outcome(booking.id, True))
            except FacilityShareError as exc:
                await db_session.rollback()
                outcomes.append(Outcome(booking_id, False, words.action_error(exc, settings.timezone)))
        succeeded = sum(1 for o in outcomes if o.ok)
        if succeeded == len(outcomes):
            name = "approved" if decision == "approve" else "rejected"
            return Redirect(f"/manage/requests?{name}={succeeded}", status_code=303)
        page = await self._queue(request, db_session, i18n, outcomes=outcomes,
                                 reasons={o.booking_id: reason for o in outcomes if not o.ok} if text(data, "single") else {})
        return with_status(page, 200 if succeeded else 409)

    @get("/calendar", name="manage-calendar", cache=False)
    async def unit_calendar(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        principal: Principal = request.user
        words = BookingWords(i18n)
        statement = select(ManagingUnit).where(ManagingUnit.retired_at.is_(None)).order_by(ManagingUnit.code)
        if not principal.is_admin:
            statement = statement.where(ManagingUnit.id.in_(principal.managed_unit_ids))
        units = list((await db_session.execute(statement)).scalars())
        if not units:
            raise NotFound("you manage no unit")
        wanted = (request.query_params.get("unit") or "").strip()
        unit = next((u for u in units if u.code == wanted), None) if wanted else units[0]
        if unit is None:
            raise NotFound(f"no managing unit {wanted!r} among the units you manage")
        zone = ZoneInfo(unit.timezone)
        monday, error = read_week(request.query_params.get("week"), zone, i18n)
        start, end = week_bounds(monday, zone)
        resources = list(
            (
                await db_session.execute(
                    select(Resource).where(Resource.unit_id == unit.id, Resource.retired_at.is_(None)).order_by(Resource.code)
                )
            ).scalars()
        )
        bookings, _total = await services.list_bookings(
            db_session, principal, services.BookingFilter(unit_code=unit.code, start=start, end=end, limit=1000), scope="managed"
        )
        now = utcnow()
        days = day_heads(monday, words, now.astimezone(zone).date())
        grid: dict[int, list[list[Booking]]] = {r.id: [[] for _ in range(7)] for r in resources}
        for b in sorted(bookings, key=lambda b: (b.starts_at, b.id)):
            if b.status not in SHOWN_ON_UNIT_CALENDAR or b.resource_id not in grid:
                continue
            first = b.starts_at.astimezone(zone).date()
            last = (b.ends_at - timedelta(microseconds=1)).astimezone(zone).date()
            for offset in range(7):
                day = monday + timedelta(days=offset)
                if first <= day <= last:
                    grid[b.resource_id][offset].append(b)
        by_id = {r.id: r for r in resources}
        agenda = [
            (days[offset], sorted(((by_id[rid], b) for rid, cells in grid.items() for b in cells[offset]),
                                  key=lambda item: (item[1].starts_at, item[0].code)))
            for offset in range(7)
        ]
        week_total = sum(1 for b in bookings if b.status in SHOWN_ON_UNIT_CALENDAR)
        done = request.query_params.get("done", "")
        page = render(
            request, i18n, "bookings/manage_calendar.html",
            units=units, unit=unit, resources=resources, grid=grid, agenda=agenda, days=days, monday=monday,
            sunday=monday + timedelta(days=6), words=words, now=now, zone=zone, error=error,
            prev_week=(monday - WEEK).isoformat(), next_week=(monday + WEEK).isoformat(),
            week_total=week_total, done=done if done in ("cancel", "complete", "no-show") else "",
            this_week=local_monday(now.astimezone(zone).date()),
        )
        return with_status(page, 400) if error else page


__all__ = ["BookingActionPages", "BookingFormPages", "CalendarPages", "ManagerBookingPages"]
