"""Server-rendered catalogue pages: home, search and filters, resource detail, managing units.

Every page is plain HTML with GET forms and links, so every journey works without JavaScript.
Handlers read the query string themselves (rather than letting the framework reject it) so a
malformed filter re-renders the form with an inline message and status 400, never a bare
error page or a 500. Words shown to people are English message ids translated through
``I18n``; the wording of booking rules and fee bases lives here, next to the logic that picks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime
from litestar import Controller, Request, get
from litestar.params import FromPath
from litestar.response import Template

from facility_share.catalog import queries, schemas
from facility_share.errors import InvalidInput
from facility_share.web.deps import DbSession, Lang
from facility_share.web.i18n import I18n
from facility_share.web.render import render

PER_PAGE = 20
MAX_PRICE_YUAN = Decimal(100_000_000)  # a ceiling far above any published rate
WEEKDAYS = schemas.WEEKDAY_NAMES
SORT_CHOICES = ("code", "name", "price", "-price", "-value", "newest")


class Words:
    """Translated labels and phrases for catalogue values, in the request's language."""

    def __init__(self, i18n: I18n) -> None:
        self.i18n = i18n

    def _(self, message: str, **variables: Any) -> str:
        return self.i18n.gettext(message, **variables)

    def ngettext(self, singular: str, plural: str, n: int, **variables: Any) -> str:
        return self.i18n.ngettext(singular, plural, n, **variables)

    # --- codes to words -----------------------------------------------------------------

    def kind(self, kind: str) -> str:
        return {
            "instrument": self._("Large instrument"),
            "workshop": self._("Shared workshop"),
            "line": self._("Production line"),
        }.get(kind, kind)

    def kind_plural(self, kind: str) -> str:
        return {
            "instrument": self._("Large instruments"),
            "workshop": self._("Shared workshops"),
            "line": self._("Production lines"),
        }.get(kind, kind)

    def unit_kind(self, kind: str) -> str:
        return {
            "university": self._("University"),
            "institute": self._("Research institute"),
            "enterprise": self._("Enterprise"),
            "incubator": self._("Incubator"),
            "pilot_base": self._("Pilot production base"),
        }.get(kind, kind)

    def sharing_mode(self, mode: str) -> str:
        return {
            "staff_operated": self._("Operated by the unit's staff"),
            "self_operated": self._("Self-operated by trained users"),
            "sample_testing": self._("Sample testing (send samples)"),
            "workshop_rental": self._("Workshop rental"),
        }.get(mode, mode)

    def weekday(self, code: str) -> str:
        return {
            "mon": self._("Monday"),
            "tue": self._("Tuesday"),
            "wed": self._("Wednesday"),
            "thu": self._("Thursday"),
            "fri": self._("Friday"),
            "sat": self._("Saturday"),
            "sun": self._("Sunday"),
        }.get(code, code)

    def sort(self, code: str) -> str:
        return {
            "code": self._("Catalogue code"),
            "name": self._("Name"),
            "price": self._("Starting price, low to high"),
            "-price": self._("Starting price, high to low"),
            "-value": self._("Original value, high to low"),
            "newest": self._("Newest first"),
        }.get(code, code)

    # --- amounts and times --------------------------------------------------------------

    def duration(self, minutes: int) -> str:
        if minutes >= 1440 and minutes % 1440 == 0:
            return self.ngettext("%(num)d day", "%(num)d days", minutes // 1440)
        hours, rest = divmod(minutes, 60)
        parts = []
        if hours:
            parts.append(self.ngettext("%(num)d hour", "%(num)d hours", hours))
        if rest or not hours:
            parts.append(self.ngettext("%(num)d minute", "%(num)d minutes", rest))
        return " ".join(parts)

    def date(self, value: date | None) -> str:
        if value is None:
            return "—"
        return format_date(value, format="long", locale=self.i18n.babel)

    def local_datetime(self, value: datetime, timezone: str) -> str:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            value = value.astimezone(ZoneInfo(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            pass
        return format_datetime(value, format="yyyy-MM-dd HH:mm", locale=self.i18n.babel)

    def starting_price(self, r: schemas.ResourceSummary, *, prefix: bool = True) -> str:
        """The cheapest published district-enterprise rate, e.g. "From ¥450.00 / shift".

        The summary does not say which fee basis the cheapest rate is charged on (an hour, a
        sample …), so only shift- and day-booked resources get a "per" suffix.
        """
        if r.min_price_fen is None:
            return self._("Price on request")
        price = self.i18n.yuan(r.min_price_fen)
        if prefix:
            if r.booking_unit == "shift":
                return self._("From %(price)s / shift", price=price)
            if r.booking_unit == "day":
                return self._("From %(price)s / day", price=price)
            return self._("From %(price)s", price=price)
        if r.booking_unit == "shift":
            return self._("%(price)s / shift", price=price)
        if r.booking_unit == "day":
            return self._("%(price)s / day", price=price)
        return price

    def fee_basis(self, fee: schemas.FeeLine) -> str:
        if fee.basis == "hour":
            # The rate is always per hour; the increment only says how started time is billed.
            text = self._("per hour")
            if fee.unit_minutes != 60:
                text += self._("; billed per %(duration)s", duration=self.duration(fee.unit_minutes))
        else:
            text = {
                "sample": self._("per sample"),
                "shift": self._("per shift"),
                "day": self._("per day"),
                "setup": self._("once per order"),
            }.get(fee.basis, fee.basis)
        if fee.minimum_units > 1:
            if fee.basis == "hour":
                minimum = self.duration(fee.unit_minutes * fee.minimum_units)
                text += self._("; minimum charge %(duration)s", duration=minimum)
            else:
                text += self._("; minimum %(num)d units", num=fee.minimum_units)
        return text

    def list_join(self, items: list[str]) -> str:
        return ("、" if self.i18n.is_zh else ", ").join(items)

    # --- booking rules in plain words ---------------------------------------------------

    def booking_rules(self, rules: schemas.BookingRulesOut) -> list[str]:
        _ = self._
        out: list[str] = []
        if rules.booking_unit == "shift" and rules.shifts:
            shifts = self.list_join(
                [f"{self.i18n.pick(s, 'name')} {s.hours.replace('-', '–')}" for s in rules.shifts]
            )
            size = max(rules.slot_minutes, 1)
            out.append(
                _(
                    "Booked by the shift (%(shifts)s); a booking covers %(min)s to %(max)s.",
                    shifts=shifts,
                    min=self.ngettext("%(num)d shift", "%(num)d shifts", max(1, rules.min_minutes // size)),
                    max=self.ngettext("%(num)d shift", "%(num)d shifts", max(1, rules.max_minutes // size)),
                )
            )
        elif rules.booking_unit == "day":
            out.append(
                _(
                    "Booked by the whole day; a booking covers %(min)s to %(max)s.",
                    min=self.ngettext("%(num)d day", "%(num)d days", max(1, rules.min_minutes // 1440)),
                    max=self.ngettext("%(num)d day", "%(num)d days", max(1, rules.max_minutes // 1440)),
                )
            )
        else:
            out.append(
                _(
                    "Booked in time slots of %(slot)s; one booking lasts from %(min)s to %(max)s.",
                    slot=self.duration(rules.slot_minutes),
                    min=self.duration(rules.min_minutes),
                    max=self.duration(rules.max_minutes),
                )
            )
        if rules.lead_minutes:
            out.append(
                _(
                    "Book at least %(lead)s before the start, and at most %(horizon)s ahead.",
                    lead=self.duration(rules.lead_minutes),
                    horizon=self.ngettext("%(num)d day", "%(num)d days", rules.horizon_days),
                )
            )
        else:
            out.append(
                _(
                    "Bookings can start right away, up to %(horizon)s ahead.",
                    horizon=self.ngettext("%(num)d day", "%(num)d days", rules.horizon_days),
                )
            )
        if rules.approval_required:
            out.append(_("The managing unit reviews each booking; it is confirmed once approved."))
        else:
            out.append(_("Bookings are confirmed at once, without review."))
        if rules.self_operation_allowed:
            out.append(_("Trained users may operate it themselves; staff operation is also available."))
        else:
            out.append(_("Only the managing unit's staff operate it."))
        if rules.qualification_required:
            out.append(_("Users need a valid qualification for it (training or induction) before booking."))
        if rules.working_calendar:
            out.append(
                _(
                    "Follows the national working calendar: closed on Chinese public holidays, "
                    "and open on the make-up working days (调休) that replace them."
                )
            )
        else:
            out.append(_("Also open on public holidays, following the weekly hours below."))
        if rules.cancellation_hours:
            out.append(
                _(
                    "Cancel at least %(time)s before the start.",
                    time=self.ngettext("%(num)d hour", "%(num)d hours", rules.cancellation_hours),
                )
            )
        else:
            out.append(_("Bookings can be cancelled until they start."))
        if rules.billing_basis == "booked":
            out.append(_("Charged for the time booked."))
        else:
            out.append(_("Charged for the time actually used."))
        if rules.peak_hours:
            windows = self.list_join(
                [f"{self.weekday(p.weekday)} {p.opens}–{p.closes}" for p in rules.peak_hours]
            )
            out.append(_("Peak hours (the peak rates apply): %(windows)s.", windows=windows))
        if rules.no_show_fee_fen:
            out.append(_("A booking that is not used costs a no-show fee of %(fee)s.", fee=self.i18n.yuan(rules.no_show_fee_fen)))
        return out

    def opening_table(self, hours: list[schemas.OpeningInterval]) -> list[tuple[str, str]]:
        by_day: dict[str, list[str]] = {day: [] for day in WEEKDAYS}
        for interval in hours:
            by_day.setdefault(interval.weekday, []).append(f"{interval.opens}–{interval.closes}")
        closed = self._("Closed")
        return [(self.weekday(day), ", ".join(by_day[day]) or closed) for day in WEEKDAYS]


# --- the list page's form ---------------------------------------------------------------


@dataclass
class ListForm:
    """What the filter form holds, as typed, plus any problems found in it."""

    q: str = ""
    kind: str = ""
    category: str = ""
    unit: str = ""
    location: str = ""
    max_price: str = ""
    open_only: bool = False
    sort: str = "code"
    page: int = 1
    free_from: str = ""
    free_to: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    # The window the resources must be free in (UTC), when both ends were given and valid.
    free_window: tuple[datetime, datetime] | None = None

    @property
    def active(self) -> bool:
        fields = (self.q, self.kind, self.category, self.unit, self.location, self.max_price, self.free_from, self.free_to)
        return any(fields) or self.open_only


def _flatten(nodes: list[schemas.CategoryNode], depth: int = 0) -> list[tuple[schemas.CategoryNode, int]]:
    out: list[tuple[schemas.CategoryNode, int]] = []
    for node in nodes:
        out.append((node, depth))
        out.extend(_flatten(node.children, depth + 1))
    return out


def parse_yuan(text: str) -> int:
    """A price typed in yuan ("500", "85.5", "1,200") to integer fen.

    Raises:
        ValueError: not a plain non-negative amount with at most two decimals.
    """
    cleaned = text.strip().replace(",", "").replace("，", "").lstrip("¥￥").strip()
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_PRICE_YUAN:
        raise ValueError("out of range")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValueError("more precise than a fen")
    return int(fen)


def read_list_form(
    params: Any, i18n: I18n, category_codes: set[str], unit_codes: set[str]
) -> tuple[ListForm, queries.ResourceFilter | None]:
    """The form as typed and, when it is valid, the filter to run."""
    _ = i18n.gettext
    form = ListForm(
        q=(params.get("q") or "").strip(),
        kind=(params.get("kind") or "").strip(),
        category=(params.get("category") or "").strip(),
        unit=(params.get("unit") or "").strip(),
        location=(params.get("location") or "").strip(),
        max_price=(params.get("max_price") or "").strip(),
        open_only=(params.get("open") or "") in ("1", "on", "true", "yes"),
        sort=(params.get("sort") or "code").strip(),
        free_from=(params.get("free_from") or "").strip(),
        free_to=(params.get("free_to") or "").strip(),
    )
    if form.free_from or form.free_to:
        form.free_window = _read_free_window(form, i18n)
    if len(form.q) > 200:
        form.errors["q"] = _("The search text can be at most 200 characters long.")
    if form.kind and form.kind not in queries.KINDS:
        form.errors["kind"] = _("Choose a type from the list.")
    if form.category and form.category not in category_codes:
        form.errors["category"] = _("There is no category with this code; choose one from the list.")
    if form.unit and form.unit not in unit_codes:
        form.errors["unit"] = _("There is no managing unit with this code; choose one from the list.")
    if len(form.location) > 100:
        form.errors["location"] = _("The location can be at most 100 characters long.")
    max_price_fen = None
    if form.max_price:
        try:
            max_price_fen = parse_yuan(form.max_price)
        except ValueError:
            form.errors["max_price"] = _(
                "Enter the maximum price as an amount in yuan of zero or more, with at most two decimals, "
                "for example 500 or 85.50."
            )
    if form.sort not in SORT_CHOICES:
        form.errors["sort"] = _("Choose an order from the list.")
    raw_page = (params.get("page") or "1").strip()
    try:
        form.page = int(raw_page)
        if not 1 <= form.page <= 100_000:
            raise ValueError
    except ValueError:
        form.page = 1
        form.errors["page"] = _("The page number must be a whole number of 1 or more.")
    if form.errors:
        return form, None
    sort = "name_en" if form.sort == "name" and not i18n.is_zh else form.sort
    return form, queries.ResourceFilter(
        q=form.q,
        kind=form.kind or None,
        category=form.category or None,
        unit=form.unit or None,
        location=form.location,
        max_price_fen=max_price_fen,
        open_for_sharing=True if form.open_only else None,
        sort=sort,
        page=form.page,
        per_page=PER_PAGE,
    )


SEARCH_ZONE = ZoneInfo("Asia/Shanghai")


def _read_free_window(form: ListForm, i18n: I18n) -> tuple[datetime, datetime] | None:
    """Both ends as Beijing local times (the district's clock), checked; errors go on the form."""
    _ = i18n.gettext
    ends = []
    for name in ("free_from", "free_to"):
        text = getattr(form, name)
        if not text:
            form.errors[name] = _("Give both the start and the end of the time to search.")
            continue
        try:
            ends.append(datetime.fromisoformat(text).replace(tzinfo=SEARCH_ZONE).astimezone(UTC))
        except ValueError:
            form.errors[name] = _("Enter a date and time such as 2026-12-01T09:00.")
    if len(ends) != 2:
        return None
    if ends[1] <= ends[0]:
        form.errors["free_to"] = _("The end must be after the start.")
        return None
    if ends[1] - ends[0] > timedelta(days=31):
        form.errors["free_to"] = _("Search at most 31 days at a time.")
        return None
    return ends[0], ends[1]


async def free_codes(session: Any, resource_filter: queries.ResourceFilter, window: tuple[datetime, datetime]) -> frozenset[str]:
    """Codes of the resources matching the filter that are free for the whole window."""
    from facility_share.bookings import services as booking_services

    found: list[str] = []
    page = 1
    while True:
        result = await queries.search_resources(
            session, replace(resource_filter, include_lines=True, page=page, per_page=queries.MAX_PER_PAGE, sort="code")
        )
        found.extend(item.code for item in result.items)
        if page >= result.pages:
            break
        page += 1
    candidates = [await booking_services.load_resource(session, code) for code in found]
    free = await booking_services.free_resources(session, candidates, *window)
    return frozenset(r.code for r in free)


def page_numbers(current: int, pages: int, around: int = 2) -> list[int | None]:
    """Page links to show: first, last and a window around the current page; None is a gap."""
    wanted = {1, pages, *range(current - around, current + around + 1)}
    shown = sorted(p for p in wanted if 1 <= p <= pages)
    out: list[int | None] = []
    for number in shown:
        if out and number - (out[-1] or 0) > 1:
            out.append(None)
        out.append(number)
    return out


class CatalogPages(Controller):
    path = "/"
    include_in_schema = False
    opt = {"access": "public"}

    @get("/", name="home")
    async def home(
        self,
        request: Request,
        db_session: DbSession,
        i18n: Lang,
    ) -> Template:
        counts = await queries.catalogue_counts(db_session)
        categories = await queries.category_tree(db_session)
        units = await queries.list_units(db_session)
        return render(
            request,
            i18n,
            "catalog/home.html",
            counts=counts,
            categories=categories,
            units=units,
            words=Words(i18n),
        )

    @get("/catalog", name="catalog")
    async def catalog(
        self,
        request: Request,
        db_session: DbSession,
        i18n: Lang,
    ) -> Template:
        tree = await queries.category_tree(db_session)
        categories = _flatten(tree)
        units = await queries.list_units(db_session)
        form, resource_filter = read_list_form(
            request.query_params, i18n, {node.code for node, _depth in categories}, {u.code for u in units}
        )
        result = None
        if resource_filter is not None:
            try:
                if form.free_window is not None:
                    codes = await free_codes(db_session, resource_filter, form.free_window)
                    resource_filter = replace(resource_filter, codes=codes, include_lines=True)
                result = await queries.search_resources(db_session, resource_filter)
            except InvalidInput as exc:  # a limit the form above does not know of
                form.errors["form"] = exc.message
        page = render(
            request,
            i18n,
            "catalog/list.html",
            form=form,
            result=result,
            categories=categories,
            units=units,
            kinds=queries.KINDS,
            sorts=SORT_CHOICES,
            pages=page_numbers(result.page, result.pages) if result else [],
            words=Words(i18n),
        )
        if form.errors:
            page.status_code = 400
        return page

    @get("/resources/{code:str}", name="resource")
    async def resource(
        self,
        request: Request,
        db_session: DbSession,
        i18n: Lang,
        code: FromPath[str],
    ) -> Template:
        resource = await queries.get_resource(db_session, code)
        words = Words(i18n)
        return render(
            request,
            i18n,
            "catalog/detail.html",
            r=resource,
            words=words,
            rules=words.booking_rules(resource.booking_rules),
            opening=words.opening_table(resource.opening_hours),
            closures=[
                (
                    words.local_datetime(c.starts_at, resource.timezone),
                    words.local_datetime(c.ends_at, resource.timezone),
                    c.reason,
                )
                for c in resource.closures
            ],
        )

    @get("/units", name="units")
    async def units(
        self,
        request: Request,
        db_session: DbSession,
        i18n: Lang,
    ) -> Template:
        units = await queries.list_units(db_session)
        return render(request, i18n, "catalog/units.html", units=units, words=Words(i18n))

    @get("/units/{code:str}", name="unit")
    async def unit(
        self,
        request: Request,
        db_session: DbSession,
        i18n: Lang,
        code: FromPath[str],
    ) -> Template:
        unit = await queries.get_unit(db_session, code)
        return render(request, i18n, "catalog/unit.html", unit=unit, words=Words(i18n))
