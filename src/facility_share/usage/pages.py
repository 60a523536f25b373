"""Usage pages: the manager's usage screen (check-in/out, walk-ins, corrections and their
history, no-shows, unpaid charges, instrument agent keys), the sharing figures, and the
enterprise's charges, usage and ratings.

Times typed into these forms are the unit's (or resource's) local time, as on the booking
pages; the services work in UTC. Forms work without JavaScript: a POST that fails re-renders
the page with what was typed and a translated message next to the form; one that succeeds
redirects (303) back with a notice.

Controllers, one access level each:

* ``ManagerUsagePages`` (manager): ``/manage/usage…``, ``/manage/charges/{id}/mark-paid``,
  ``/manage/agent-keys…``;
* ``FiguresPages`` (staff): ``/manage/figures``;
* ``EnterpriseUsagePages`` (enterprise): ``/me/charges``, ``/me/usage``,
  ``/bookings/{id}/rate``, ``/me/bookings/{id}/check-in|check-out``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import selectinload

from facility_share.accounts.pages import read_form, split_field, text, with_status
from facility_share.accounts.principal import Principal
from facility_share.bookings import services as bookings
from facility_share.bookings.pages import BookingWords, local_input, my_bookings_page, my_bookings_url, parse_local
from facility_share.db.models import (
    AgentKey,
    Booking,
    Charge,
    Enterprise,
    ManagingUnit,
    Payment,
    Rating,
    Resource,
    UsageLog,
    User,
    utcnow,
)
from facility_share.errors import N_, Conflict, FacilityShareError, NotFound, charge_status
from facility_share.usage import figures as usage_figures
from facility_share.usage import services
from facility_share.usage.services import current_versions
from facility_share.web.deps import DbSession, Lang, RecordId
from facility_share.web import paging
from facility_share.web.i18n import I18n, error_text
from facility_share.web.render import render

DISTRICT_ZONE = ZoneInfo("Asia/Shanghai")
RECENT = timedelta(days=30)
DEFAULT_PERIOD_DAYS = 90
PAYMENT_METHODS = ("bank_transfer", "invoice", "cash")
MODES = ("staff_operated", "self_operated")
MAX_SAMPLES = 100_000
# The manager's screen pages its two lists independently, each by a parameter of its own.
RECENT_PAGE = "recent_page"
CHARGES_PAGE = "charges_page"
MANAGER_PAGE_SIZE = 25
# The enterprise's charges are cards with their lines, so fewer to a page than table rows.
CHARGES_PAGE_SIZE = 20
USAGE_PAGE_SIZE = 50


# payments.ledger refuses an offline payment of a charge that is not unpaid with a plain English
# message; mark_paid makes the same check first, so this is only a fallback for that message.
LEDGER_NOT_UNPAID = re.compile(r"^the charge is (?P<status>\w+); only unpaid charges can be marked paid$")
STAR_LABELS = {1: N_("Poor"), 2: N_("Fair"), 3: N_("Good"), 4: N_("Very good"), 5: N_("Excellent")}


class UsageWords(BookingWords):
    """Translated labels and messages of the usage pages."""

    def source(self, source: str) -> str:
        return {
            "manager": self._("Checked in by the unit"),
            "self": self._("Self check-in"),
            "agent": self._("Instrument agent"),
            "walk_in": self._("Walk-in"),
        }.get(source, source)

    def charge_status(self, status: str) -> str:
        return {"unpaid": self._("Unpaid"), "paid": self._("Paid"), "void": self._("Void"), "processing": self._("Processing"),
                "refunded": self._("Refunded")}.get(status, status)

    def method(self, method: str) -> str:
        return {
            "bank_transfer": self._("Bank transfer"),
            "invoice": self._("Invoice"),
            "cash": self._("Cash"),
            "card": self._("Card"),
            "alipay": self._("Alipay"),
            "wechat_pay": self._("WeChat Pay"),
            "advance": self._("Advance payment"),
            "correction": self._("Moved from a corrected charge"),
        }.get(method, method)

    def charge_kind(self, kind: str) -> str:
        return {"service": self._("Service"), "no_show": self._("No-show fee"), "advance": self._("Advance payment")}.get(kind, kind)

    def basis(self, basis: str) -> str:
        return {
            "hour": self._("hour"), "sample": self._("sample"), "shift": self._("shift"),
            "day": self._("day"), "setup": self._("order"),
        }.get(basis, basis)

    def line_units(self, line: dict[str, Any]) -> str:
        units = line.get("units", 0)
        basis = line.get("basis", "")
        if basis == "hour" and line.get("unit_minutes") and line.get("unit_minutes") != 60:
            return f"{units} × {self.duration(int(line['unit_minutes']))}"
        return f"{units} × {self.basis(basis)}"

    def enterprise(self, enterprise: Enterprise | None) -> str:
        if enterprise is None:
            return self._("The unit's own use")
        return enterprise.name_en if (enterprise.name_en and not self.i18n.is_zh) else enterprise.name

    def explanation(self, charge: Charge) -> str:
        if self.i18n.is_zh:
            return charge.explanation_zh or charge.explanation_en
        return charge.explanation_en or charge.explanation_zh

    def star_label(self, stars: int) -> str:
        return self._(STAR_LABELS.get(stars, "")) if stars in STAR_LABELS else ""

    def stars_text(self, stars: int) -> str:
        return self._("%(stars)d of 5 stars", stars=stars)

    def percent(self, value: float | None) -> str:
        return "—" if value is None else f"{value * 100:.1f}%"

    def number(self, value: float | None) -> str:
        return "—" if value is None else f"{value:,.1f}"

    def minutes_between(self, start: datetime, end: datetime | None) -> str:
        if end is None:
            return "—"
        return self.duration(max(0, int((end - start).total_seconds() // 60)))

    def terms(self) -> dict[str, Callable[[Any], str]]:
        """The words for the ``Term`` parameters of service errors."""
        return {"booking_status": self.status, "charge_status": self.charge_status}

    def error(self, exc: FacilityShareError) -> str:
        """A service error in the reader's language."""
        if exc.msgid is None and (found := LEDGER_NOT_UNPAID.match(exc.message)):
            exc = Conflict.translatable(N_("the charge is %(status)s; only unpaid charges can be marked paid"),
                                        status=charge_status(found["status"]))
        return error_text(self.i18n, exc, self.terms())


def error_status(exc: FacilityShareError) -> int:
    return exc.status_code if exc.status_code in (400, 403, 404, 409) else 400


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return (
        datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC),
        datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC),
    )


def read_day(raw: str | None, zone: ZoneInfo, i18n: I18n) -> tuple[date, str]:
    today = utcnow().astimezone(zone).date()
    if not raw:
        return today, ""
    try:
        day = date.fromisoformat(raw.strip())
        if not 2000 <= day.year <= 2100:
            raise ValueError
        return day, ""
    except ValueError:
        return today, i18n.gettext("Enter the day as a date, e.g. 2026-12-01; showing today instead.")


def whole(raw: str, low: int, high: int) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


async def managed_units(session: Any, principal: Principal) -> list[ManagingUnit]:
    statement = select(ManagingUnit).where(ManagingUnit.retired_at.is_(None)).order_by(ManagingUnit.code)
    if not principal.is_admin:
        statement = statement.where(ManagingUnit.id.in_(principal.managed_unit_ids or {-1}))
    return list((await session.execute(statement)).scalars())


def choose_unit(units: list[ManagingUnit], wanted: str) -> ManagingUnit:
    if not units:
        raise NotFound("you manage no unit")
    wanted = (wanted or "").strip()
    unit = next((u for u in units if u.code == wanted), None) if wanted else units[0]
    if unit is None:
        raise NotFound(f"no managing unit {wanted!r} among the units you manage")
    return unit


async def unit_resources(session: Any, unit: ManagingUnit) -> list[Resource]:
    return list(
        (
            await session.execute(
                select(Resource).where(Resource.unit_id == unit.id, Resource.retired_at.is_(None)).order_by(Resource.code)
            )
        ).scalars()
    )


# --- the manager's usage screen -------------------------------------------------------------------


@dataclass
class WalkInForm:
    resource: str = ""
    uscc: str = ""
    start: str = ""
    end: str = ""
    samples: str = "0"
    operator: str = ""
    mode: str = "staff_operated"
    note: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: Any = "") -> Any:
        return getattr(self, name, default)


@dataclass
class RowForm:
    """What was typed into one row's form (check-out, correction, mark paid) and its error."""

    values: dict[str, str] = field(default_factory=dict)
    error: str = ""

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


def back_to(unit: str, day: str, anchor: str = "", pages: Mapping[str, Any] | None = None, **params: Any) -> str:
    """The manager's screen for ``unit`` and ``day``, on the pages of its lists named in ``pages``
    (a posted form carries them, so a row's form comes back to the page it was on)."""
    query = {"unit": unit}
    if day:
        query["day"] = day
    query.update(list_pages(pages))
    query.update({k: str(v) for k, v in params.items()})
    return f"/manage/usage?{urlencode(query)}" + (f"#{anchor}" if anchor else "")


def list_pages(params: Mapping[str, Any] | None) -> dict[str, str]:
    """The page numbers of the screen's lists other than the first, as query parameters."""
    numbers = {name: paging.page_number(params, name) for name in (RECENT_PAGE, CHARGES_PAGE)}
    return {name: str(number) for name, number in numbers.items() if number > 1}


class ManagerUsagePages(Controller):
    path = "/manage"
    include_in_schema = False
    opt = {"access": "manager"}

    async def _page(self, request: Request, session: Any, i18n: I18n, *, unit_code: str, day_raw: str,
                    rows: dict[str, RowForm] | None = None, walk: WalkInForm | None = None, status: int = 200,
                    pages: Mapping[str, Any] | None = None) -> Template:
        """The screen; ``pages`` holds the page numbers of its lists (the query string, or the
        posted form when a form is shown again with its error)."""
        principal: Principal = request.user
        pages = request.query_params if pages is None else pages
        words = UsageWords(i18n)
        units = await managed_units(session, principal)
        unit = choose_unit(units, unit_code)
        zone = ZoneInfo(unit.timezone)
        day, day_error = read_day(day_raw, zone, i18n)
        start, end = day_bounds(day, zone)
        now = utcnow()
        resources = await unit_resources(session, unit)
        day_bookings, _total = await bookings.list_bookings(
            session, principal, bookings.BookingFilter(unit_code=unit.code, start=start, end=end, limit=500), scope="managed"
        )
        day_bookings.sort(key=lambda b: (b.starts_at, b.resource.code, b.id))
        working = [b for b in day_bookings if b.status in ("approved", "completed")]
        no_shows = [b for b in day_bookings if b.status == "no_show"]
        logs: dict[int, UsageLog] = {}
        if working:
            for log in (
                await session.execute(
                    select(UsageLog).where(UsageLog.booking_id.in_([b.id for b in working]), current_versions())
                )
            ).scalars():
                logs[log.booking_id] = log
        # Both lists link back to this screen with the unit, the day and the other list's page.
        links = {"unit": unit.code, **({"day": day.isoformat()} if day_raw and not day_error else {}), **list_pages(pages)}
        recent_statement = (
            select(UsageLog, Resource, Enterprise)
            .join(Resource, UsageLog.resource_id == Resource.id)
            .outerjoin(Enterprise, UsageLog.enterprise_id == Enterprise.id)
            .where(Resource.unit_id == unit.id, UsageLog.started_at >= now - RECENT, current_versions())
        )
        recent_page = paging.paginate(
            await paging.count_rows(session, recent_statement), paging.page_number(pages, RECENT_PAGE),
            size=MANAGER_PAGE_SIZE, name=RECENT_PAGE, path="/manage/usage", params=links, anchor="recent",
        )
        recent = (
            await session.execute(
                recent_statement.order_by(UsageLog.started_at.desc(), UsageLog.id.desc())
                .offset(recent_page.offset).limit(recent_page.size)
            )
        ).all()
        session_ids = [log.session_id or log.id for log, _r, _e in recent]
        versions: dict[int, int] = {}
        if session_ids:
            versions = dict(
                (
                    await session.execute(
                        select(UsageLog.session_id, func.count(UsageLog.id))
                        .where(UsageLog.session_id.in_(session_ids)).group_by(UsageLog.session_id)
                    )
                ).all()
            )
        def of_unpaid(*columns: Any) -> Any:
            return (
                select(*columns).select_from(Charge)
                .join(Resource, Charge.resource_id == Resource.id)
                .join(Enterprise, Charge.enterprise_id == Enterprise.id)
                .where(Resource.unit_id == unit.id, Charge.status == "unpaid")
            )

        # The count and the sum cover every unpaid charge of the unit, not only the page shown.
        unpaid_count, unpaid_total = (
            await session.execute(of_unpaid(func.count(Charge.id), func.coalesce(func.sum(Charge.total_fen - Charge.paid_fen), 0)))
        ).one()
        unpaid_page = paging.paginate(
            unpaid_count, paging.page_number(pages, CHARGES_PAGE), size=MANAGER_PAGE_SIZE, name=CHARGES_PAGE,
            path="/manage/usage", params=links, anchor="charges",
        )
        unpaid = (
            await session.execute(
                of_unpaid(Charge, Resource, Enterprise)
                .order_by(Charge.service_date.desc(), Charge.id.desc())
                .offset(unpaid_page.offset).limit(unpaid_page.size)
            )
        ).all()
        done = request.query_params.get("done", "")
        page = render(
            request, i18n, "usage/manage_usage.html",
            units=units, unit=unit, zone=zone, day=day, day_error=day_error, words=words, now=now,
            prev_day=(day - timedelta(days=1)).isoformat(), next_day=(day + timedelta(days=1)).isoformat(),
            today=now.astimezone(zone).date(), resources=resources, working=working, no_shows=no_shows, logs=logs,
            recent=recent, versions=versions, unpaid=unpaid, unpaid_total=int(unpaid_total), unpaid_count=int(unpaid_count),
            recent_page=recent_page, unpaid_page=unpaid_page,
            rows=rows or {}, walk=walk or WalkInForm(mode="staff_operated"), methods=PAYMENT_METHODS, modes=MODES,
            local_input=lambda value: local_input(value, zone),
            done=done if done in ("check-in", "check-out", "walk-in", "correct", "paid") else "",
        )
        return with_status(page, 400 if day_error and status == 200 else status)

    @get("/usage", name="manage-usage", cache=False)
    async def usage(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        return await self._page(request, db_session, i18n, unit_code=request.query_params.get("unit") or "",
                                day_raw=request.query_params.get("day") or "")

    @post("/usage/bookings/{booking_id:int}/check-in", name="manage-usage-check-in")
    async def check_in(self, request: Request, db_session: DbSession, i18n: Lang, booking_id: RecordId) -> Template | Redirect:
        data = await read_form(request)
        unit, day = text(data, "unit", 40), text(data, "day", 20)
        operator = text(data, "operator", 100)
        try:
            await services.check_in(db_session, request.user, booking_id, operator=operator)
        except FacilityShareError as exc:
            await db_session.rollback()
            rows = {f"booking-{booking_id}": RowForm({"operator": operator}, UsageWords(i18n).error(exc))}
            return await self._page(request, db_session, i18n, pages=data, unit_code=unit, day_raw=day, rows=rows, status=error_status(exc))
        await db_session.commit()
        return Redirect(back_to(unit, day, f"booking-{booking_id}", done="check-in", pages=data), status_code=303)

    @post("/usage/bookings/{booking_id:int}/check-out", name="manage-usage-check-out")
    async def check_out(self, request: Request, db_session: DbSession, i18n: Lang, booking_id: RecordId) -> Template | Redirect:
        words = UsageWords(i18n)
        data = await read_form(request)
        unit, day = text(data, "unit", 40), text(data, "day", 20)
        values = {"samples": text(data, "samples", 10) or "0", "note": text(data, "note", 500)}
        key = f"booking-{booking_id}"
        samples = whole(values["samples"], 0, MAX_SAMPLES)
        if samples is None:
            rows = {key: RowForm(values, words._("Give the number of samples as a whole number from 0 to 100000."))}
            return await self._page(request, db_session, i18n, pages=data, unit_code=unit, day_raw=day, rows=rows, status=400)
        try:
            await services.check_out(db_session, request.user, booking_id, samples=samples, note=values["note"])
        except FacilityShareError as exc:
            await db_session.rollback()
            rows = {key: RowForm(values, words.error(exc))}
            return await self._page(request, db_session, i18n, pages=data, unit_code=unit, day_raw=day, rows=rows, status=error_status(exc))
        await db_session.commit()
        return Redirect(back_to(unit, day, key, done="check-out", pages=data), status_code=303)

    @post("/usage/walk-ins", name="manage-usage-walk-in")
    async def walk_in(self, request: Request, db_session: DbSession, i18n: Lang) -> Template | Redirect:
        _ = i18n.gettext
        words = UsageWords(i18n)
        principal: Principal = request.user
        data = await read_form(request)
        unit_code, day = text(data, "unit", 40), text(data, "day", 20)
        form = WalkInForm(
            resource=text(data, "resource", 40), uscc=text(data, "uscc", 30).upper(), start=text(data, "start", 40),
            end=text(data, "end", 40), samples=text(data, "samples", 10) or "0", operator=text(data, "operator", 100),
            mode=text(data, "mode", 30) or "staff_operated", note=text(data, "note", 500),
        )
        units = await managed_units(db_session, principal)
        unit = choose_unit(units, unit_code)
        resources = {r.code: r for r in await unit_resources(db_session, unit)}
        resource = resources.get(form.resource)
        if resource is None:
            form.errors["resource"] = _("Choose an instrument or workshop of this unit.")
        zone = ZoneInfo(resource.timezone if resource else unit.timezone)
        started = ended = None
        try:
            started = parse_local(form.start, zone)
        except ValueError:
            form.errors["start"] = _("Enter the start as a date and time, e.g. 2026-12-01 09:00.")
        try:
            ended = parse_local(form.end, zone)
        except ValueError:
            form.errors["end"] = _("Enter the end as a date and time, e.g. 2026-12-01 11:00.")
        if started and ended and ended <= started:
            form.errors["end"] = _("The end must be after the start.")
        samples = whole(form.samples, 0, MAX_SAMPLES)
        if samples is None:
            form.errors["samples"] = _("Give the number of samples as a whole number from 0 to 100000.")
        if form.mode not in MODES:
            form.errors["mode"] = _("Choose how the instrument was operated from the list.")
        if form.uscc and not re.fullmatch(r"[0-9A-Z]{18}", form.uscc):
            form.errors["uscc"] = _("A USCC has 18 letters and digits; leave it empty for the unit's own use.")
        if not form.errors and resource is not None and started and ended and samples is not None:
            try:
                await services.record_walk_in(
                    db_session, principal,
                    services.WalkIn(resource.code, started, ended, form.uscc or None, samples, form.operator, form.mode, form.note),
                )
            except FacilityShareError as exc:
                await db_session.rollback()
                name = exc.field or split_field(exc.message)[0]
                target = {"started_at": "start", "ended_at": "end", "enterprise_uscc": "uscc", "samples": "samples",
                          "mode": "mode"}.get(name, "form")
                form.errors[target] = words.error(exc)
                return await self._page(request, db_session, i18n, pages=data, unit_code=unit.code, day_raw=day, walk=form,
                                        status=error_status(exc))
            await db_session.commit()
            return Redirect(back_to(unit.code, day, "recent", done="walk-in", pages=data), status_code=303)
        return await self._page(request, db_session, i18n, pages=data, unit_code=unit.code, day_raw=day, walk=form, status=400)

    @post("/usage/{log_id:int}/correct", name="manage-usage-correct")
    async def correct(self, request: Request, db_session: DbSession, i18n: Lang, log_id: RecordId) -> Template | Redirect:
        _ = i18n.gettext
        words = UsageWords(i18n)
        data = await read_form(request)
        unit_code, day = text(data, "unit", 40), text(data, "day", 20)
        values = {"start": text(data, "start", 40), "end": text(data, "end", 40), "samples": text(data, "samples", 10) or "0",
                  "reason": text(data, "reason", 500)}
        key = f"log-{log_id}"
        log = await db_session.get(UsageLog, log_id)
        resource = await db_session.get(Resource, log.resource_id) if log else None
        if log is None or resource is None or not request.user.manages(resource.unit_id):
            raise NotFound(f"no usage record {log_id} in the units you manage")
        zone = ZoneInfo(resource.timezone)
        problem = ""
        started = ended = None
        try:
            started, ended = parse_local(values["start"], zone), parse_local(values["end"], zone)
        except ValueError:
            problem = _("Enter the start and the end as dates and times, e.g. 2026-12-01 09:00.")
        samples = whole(values["samples"], 0, MAX_SAMPLES)
        if not problem and samples is None:
            problem = _("Give the number of samples as a whole number from 0 to 100000.")
        if not problem and not values["reason"]:
            problem = _("Say why the record is corrected; the reason stays in the history.")
        if problem:
            return await self._page(request, db_session, i18n, pages=data, unit_code=unit_code, day_raw=day,
                                    rows={key: RowForm(values, problem)}, status=400)
        try:
            await services.correct(db_session, request.user, log_id, started_at=started, ended_at=ended,  # type: ignore[arg-type]
                                   samples=samples, reason=values["reason"])  # type: ignore[arg-type]
        except FacilityShareError as exc:
            await db_session.rollback()
            return await self._page(request, db_session, i18n, pages=data, unit_code=unit_code, day_raw=day,
                                    rows={key: RowForm(values, words.error(exc))}, status=error_status(exc))
        await db_session.commit()
        return Redirect(back_to(unit_code, day, "recent", done="correct", pages=data), status_code=303)

    @get("/usage/{log_id:int}/history", name="manage-usage-history", cache=False)
    async def history(self, request: Request, db_session: DbSession, i18n: Lang, log_id: RecordId) -> Template:
        log = await db_session.get(UsageLog, log_id)
        resource = await db_session.get(Resource, log.resource_id) if log else None
        if log is None or resource is None or not request.user.manages(resource.unit_id):
            raise NotFound.translatable(N_("no usage record %(record)s in the units you manage"), record=log_id)
        session_id = log.session_id or log.id
        chain = (
            await db_session.execute(
                select(UsageLog, User)
                .outerjoin(User, UsageLog.recorded_by_id == User.id)
                .where(or_(UsageLog.session_id == session_id, UsageLog.id == session_id))
                .order_by(UsageLog.id)
            )
        ).all()
        enterprise = await db_session.get(Enterprise, log.enterprise_id) if log.enterprise_id else None
        unit = await db_session.get(ManagingUnit, resource.unit_id)
        current_id = chain[-1][0].id if chain else log.id
        return render(
            request, i18n, "usage/history.html",
            log=log, chain=chain, resource=resource, enterprise=enterprise, unit=unit, words=UsageWords(i18n),
            current_id=current_id, session_id=session_id,
        )

    @post("/charges/{charge_id:int}/mark-paid", name="manage-charge-mark-paid")
    async def mark_paid(self, request: Request, db_session: DbSession, i18n: Lang, charge_id: RecordId) -> Template | Redirect:
        data = await read_form(request)
        unit_code, day = text(data, "unit", 40), text(data, "day", 20)
        values = {"method": text(data, "method", 20), "reference": text(data, "reference", 100)}
        try:
            await services.mark_paid(db_session, request.user, charge_id, method=values["method"], reference=values["reference"])
        except FacilityShareError as exc:
            await db_session.rollback()
            rows = {f"charge-{charge_id}": RowForm(values, UsageWords(i18n).error(exc))}
            return await self._page(request, db_session, i18n, pages=data, unit_code=unit_code, day_raw=day, rows=rows,
                                    status=error_status(exc))
        await db_session.commit()
        return Redirect(back_to(unit_code, day, "charges", done="paid", pages=data), status_code=303)

    # --- instrument agent keys ---------------------------------------------------------------

    async def _keys_page(self, request: Request, session: Any, i18n: I18n, *, unit_code: str, form: dict[str, str] | None = None,
                         error: str = "", new_key: str = "", new_row: AgentKey | None = None, status: int = 200) -> Template:
        units = await managed_units(session, request.user)
        unit = choose_unit(units, unit_code)
        resources = await unit_resources(session, unit)
        keys: dict[int, list[AgentKey]] = {r.id: [] for r in resources}
        if resources:
            for key in (
                await session.execute(
                    select(AgentKey).where(AgentKey.resource_id.in_(list(keys))).order_by(AgentKey.revoked_at.is_not(None), AgentKey.id)
                )
            ).scalars():
                keys[key.resource_id].append(key)
        revoked = request.query_params.get("revoked", "")
        page = render(
            request, i18n, "usage/agent_keys.html",
            units=units, unit=unit, resources=resources, keys=keys, words=UsageWords(i18n), form=form or {}, error=error,
            new_key=new_key, new_row=new_row, by_id={r.id: r for r in resources}, revoked=revoked.isdigit(),
        )
        return with_status(page, status)

    @get("/agent-keys", name="manage-agent-keys", cache=False)
    async def agent_keys(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        return await self._keys_page(request, db_session, i18n, unit_code=request.query_params.get("unit") or "")

    @post("/agent-keys", name="manage-agent-keys-create")
    async def create_key(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        data = await read_form(request)
        unit_code = text(data, "unit", 40)
        form = {"resource": text(data, "resource", 40), "name": text(data, "name", 120)}
        _ = i18n.gettext
        if not form["resource"]:
            return await self._keys_page(request, db_session, i18n, unit_code=unit_code, form=form, status=400,
                                         error=_("Choose an instrument or workshop of this unit."))
        if not 1 <= len(form["name"]) <= 100:
            return await self._keys_page(request, db_session, i18n, unit_code=unit_code, form=form, status=400,
                                         error=_("Name the key after the computer or program that uses it (1–100 characters)."))
        try:
            row, key = await services.create_agent_key(db_session, request.user, form["resource"], form["name"])
        except FacilityShareError as exc:
            await db_session.rollback()
            return await self._keys_page(request, db_session, i18n, unit_code=unit_code, form=form,
                                         error=UsageWords(i18n).error(exc), status=error_status(exc))
        await db_session.commit()
        # The key is shown in this answer only (never redirected to, never stored in clear).
        page = await self._keys_page(request, db_session, i18n, unit_code=unit_code, new_key=key, new_row=row, status=201)
        page.headers["Cache-Control"] = "no-store"
        return page

    @post("/agent-keys/{key_id:int}/revoke", name="manage-agent-keys-revoke")
    async def revoke_key(self, request: Request, db_session: DbSession, i18n: Lang, key_id: RecordId) -> Redirect:
        data = await read_form(request)
        await services.revoke_agent_key(db_session, request.user, key_id)
        await db_session.commit()
        return Redirect(f"/manage/agent-keys?{urlencode({'unit': text(data, 'unit', 40), 'revoked': key_id})}", status_code=303)


# --- sharing figures ---------------------------------------------------------------------------------


def bar_rows(report: usage_figures.Report, i18n: I18n) -> list[dict[str, Any]]:
    """Each resource with its two bar lengths (0–100, of the largest effective hours)."""
    top = max((r.figures.effective_hours for r in report.resources), default=0.0) or 1.0
    return [
        {
            "name": i18n.pick(r, "name"), "code": r.code, "effective": r.figures.effective_hours,
            "external": r.figures.external_hours,
            "effective_pct": round(r.figures.effective_hours / top * 100, 2),
            "external_pct": round(r.figures.external_hours / top * 100, 2),
        }
        for r in report.resources
    ]


class FiguresPages(Controller):
    path = "/manage"
    include_in_schema = False
    opt = {"access": "staff"}

    @get("/figures", name="manage-figures", cache=False)
    async def figures(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        _ = i18n.gettext
        principal: Principal = request.user
        params = request.query_params
        today = utcnow().astimezone(DISTRICT_ZONE).date()
        default_start, default_end = today - timedelta(days=DEFAULT_PERIOD_DAYS - 1), today
        errors: dict[str, str] = {}
        values = {"start": (params.get("start") or "")[:20], "end": (params.get("end") or "")[:20],
                  "unit": (params.get("unit") or "")[:40]}
        start, end = default_start, default_end
        try:
            if values["start"]:
                start = date.fromisoformat(values["start"])
        except ValueError:
            errors["start"] = _("Enter the first day as a date, e.g. 2026-01-01.")
        try:
            if values["end"]:
                end = date.fromisoformat(values["end"])
        except ValueError:
            errors["end"] = _("Enter the last day as a date, e.g. 2026-03-31.")
        if not errors and end < start:
            errors["end"] = _("The last day must not be before the first day.")
        if not errors and (end - start).days > 3650:
            errors["end"] = _("A period spans at most ten years.")
        if not errors and not (2000 <= start.year <= 2100 and 2000 <= end.year <= 2100):
            errors["start"] = _("Choose days between the years 2000 and 2100.")
        if errors:
            start, end = default_start, default_end
        statement = select(ManagingUnit).where(ManagingUnit.retired_at.is_(None)).order_by(ManagingUnit.code)
        if not principal.reads_all():
            statement = statement.where(ManagingUnit.id.in_(principal.managed_unit_ids or {-1}))
        units = list((await db_session.execute(statement)).scalars())
        chosen = next((u for u in units if u.code == values["unit"]), None)
        if values["unit"] and chosen is None:
            errors["unit"] = _("Choose one of the listed units.")
        unit_ids = [chosen.id] if chosen else [u.id for u in units]
        report = await usage_figures.sharing_figures(db_session, start, end + timedelta(days=1), unit_ids=unit_ids)
        words = UsageWords(i18n)
        page = render(
            request, i18n, "usage/figures.html",
            report=report, units=units, chosen=chosen, start=start, end=end, values=values, errors=errors, words=words,
            bars=bar_rows(report, i18n), days=(end - start).days + 1,
            unit_names={u.code: i18n.pick(u, "name") for u in units},
        )
        return with_status(page, 400) if errors else page


# --- the enterprise's charges, usage and ratings -------------------------------------------------


@dataclass
class RatingForm:
    stars: str = ""
    comment: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: Any = "") -> Any:
        return getattr(self, name, default)


class EnterpriseUsagePages(Controller):
    path = "/"
    include_in_schema = False
    opt = {"access": "enterprise"}

    @get("/me/charges", name="my-charges", cache=False)
    async def charges(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        principal: Principal = request.user
        rows: list[Any] = []
        unpaid_count = unpaid_total = paid_total = 0
        page = paging.paginate(0, 1, size=CHARGES_PAGE_SIZE, path="/me/charges", params=request.query_params,
                               anchor="charges")
        if principal.enterprise_id is not None:
            own = (Charge.enterprise_id == principal.enterprise_id, Charge.status != "void")
            # The figures cover every charge of the enterprise, not only the page shown.
            count, unpaid_count, unpaid_total, paid_total = (
                await db_session.execute(
                    select(
                        func.count(Charge.id),
                        func.coalesce(func.sum(case((Charge.status == "unpaid", 1), else_=0)), 0),
                        func.coalesce(func.sum(case((Charge.status == "unpaid", Charge.total_fen - Charge.paid_fen), else_=0)), 0),
                        func.coalesce(func.sum(Charge.paid_fen - Charge.refunded_fen), 0),
                    ).where(*own)
                )
            ).one()
            page = paging.paginate(count, paging.page_number(request.query_params), size=CHARGES_PAGE_SIZE,
                                   path="/me/charges", params=request.query_params, anchor="charges")
            rows = list(
                (
                    await db_session.execute(
                        select(Charge, Resource)
                        .join(Resource, Charge.resource_id == Resource.id)
                        .where(*own)
                        .order_by(Charge.service_date.desc(), Charge.id.desc())
                        .offset(page.offset).limit(page.size)
                    )
                ).all()
            )
        unpaid = [c for c, _r in rows if c.status == "unpaid"]
        # The latest online attempt of each unpaid charge, to show why it was declined.
        declined: dict[int, str] = {}
        if unpaid:
            for payment in (
                await db_session.execute(
                    select(Payment).where(Payment.charge_id.in_([c.id for c in unpaid]), Payment.provider == "stripe")
                    .order_by(Payment.id)
                )
            ).scalars():
                declined[payment.charge_id] = payment.failure_message if payment.status == "failed" else ""
        # Approved bookings still ahead, with a fee estimate and no advance yet: payable before the slot.
        payable: list[Any] = []
        if principal.enterprise_id is not None:
            advanced = select(Charge.id).where(Charge.booking_id == Booking.id, Charge.kind == "advance", Charge.status != "void")
            payable = list(
                (
                    await db_session.execute(
                        select(Booking, Resource).join(Resource, Booking.resource_id == Resource.id)
                        .where(Booking.enterprise_id == principal.enterprise_id, Booking.status == "approved",
                               Booking.starts_at > utcnow(), Booking.estimate_fen > 0, ~advanced.exists())
                        .order_by(Booking.starts_at).limit(50)
                    )
                ).all()
            )
        return render(
            request, i18n, "usage/my_charges.html",
            rows=rows, words=UsageWords(i18n), unpaid_count=int(unpaid_count), payable=payable, page=page,
            unpaid_total=int(unpaid_total), paid_total=int(paid_total),
            declined=declined, online=request.app.state.settings.stripe_enabled,
        )

    @get("/me/usage", name="my-usage", cache=False)
    async def usage(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        principal: Principal = request.user
        rows: list[Any] = []
        page = paging.paginate(0, 1, size=USAGE_PAGE_SIZE, path="/me/usage", params=request.query_params, anchor="sessions")
        if principal.enterprise_id is not None:
            statement = (
                select(UsageLog, Resource)
                .join(Resource, UsageLog.resource_id == Resource.id)
                .where(UsageLog.enterprise_id == principal.enterprise_id, current_versions())
            )
            page = paging.paginate(await paging.count_rows(db_session, statement), paging.page_number(request.query_params),
                                   size=USAGE_PAGE_SIZE, path="/me/usage", params=request.query_params, anchor="sessions")
            rows = list(
                (
                    await db_session.execute(
                        statement.order_by(UsageLog.started_at.desc(), UsageLog.id.desc()).offset(page.offset).limit(page.size)
                    )
                ).all()
            )
        return render(request, i18n, "usage/my_usage.html", rows=rows, words=UsageWords(i18n), page=page)

    async def _rating_page(self, request: Request, session: Any, i18n: I18n, booking_id: int, form: RatingForm | None = None,
                           status: int = 200, error: str = "") -> Template:
        principal: Principal = request.user
        booking = (
            await session.execute(
                select(Booking).where(Booking.id == booking_id)
                .options(selectinload(Booking.resource), selectinload(Booking.enterprise), selectinload(Booking.user))
            )
        ).scalar_one_or_none()
        if booking is None or principal.enterprise_id is None or booking.enterprise_id != principal.enterprise_id:
            raise NotFound(f"no booking {booking_id}")
        rating = (await session.execute(select(Rating).where(Rating.booking_id == booking.id))).scalar_one_or_none()
        words = UsageWords(i18n)
        if not error and rating is None and booking.status != "completed":
            error = words._("Only a completed service can be rated.")
            status = 409 if status == 200 else status
        page = render(
            request, i18n, "usage/rate.html",
            booking=booking, rating=rating, form=form or RatingForm(), words=words, error=error,
            done=request.query_params.get("done") == "1", stars=list(range(5, 0, -1)),
        )
        return with_status(page, status)

    @get("/bookings/{booking_id:int}/rate", name="rate-booking", cache=False)
    async def rate_page(self, request: Request, db_session: DbSession, i18n: Lang, booking_id: RecordId) -> Template:
        return await self._rating_page(request, db_session, i18n, booking_id)

    @post("/bookings/{booking_id:int}/rate", name="rate-booking-submit")
    async def rate(self, request: Request, db_session: DbSession, i18n: Lang, booking_id: RecordId) -> Template | Redirect:
        _ = i18n.gettext
        data = await read_form(request)
        form = RatingForm(stars=text(data, "stars", 2), comment=text(data, "comment", 2100))
        stars = whole(form.stars, 1, 5)
        if stars is None:
            form.errors["stars"] = _("Choose from 1 to 5 stars.")
        if len(form.comment) > 2000:
            form.errors["comment"] = _("Write at most 2000 characters.")
        if form.errors:
            return await self._rating_page(request, db_session, i18n, booking_id, form, status=400)
        try:
            await services.rate(db_session, request.user, booking_id, stars=stars, comment=form.comment)  # type: ignore[arg-type]
        except FacilityShareError as exc:
            await db_session.rollback()
            if isinstance(exc, NotFound):
                raise
            return await self._rating_page(request, db_session, i18n, booking_id, form, status=error_status(exc),
                                           error=UsageWords(i18n).error(exc))
        await db_session.commit()
        return Redirect(f"/bookings/{booking_id}/rate?done=1", status_code=303)

    async def _self_service(self, request: Request, session: Any, i18n: I18n, booking_id: int, action: str) -> Template | Redirect:
        principal: Principal = request.user
        booking = await session.get(Booking, booking_id)
        words = UsageWords(i18n)
        data = await read_form(request)
        # The form says which page of the list it was on, to come back to it.
        number = paging.page_number(data)
        try:
            if booking is None or booking.enterprise_id != principal.enterprise_id or booking.user_id != principal.user_id:
                raise NotFound(f"no booking {booking_id}")
            if action == "check-in":
                await services.check_in(session, principal, booking_id)
            else:
                samples = whole(text(data, "samples", 10) or "0", 0, MAX_SAMPLES)
                if samples is None:
                    return await my_bookings_page(
                        request, session, i18n, status=400, number=number,
                        error=words._("Give the number of samples as a whole number from 0 to 100000."),
                    )
                await services.check_out(session, principal, booking_id, samples=samples, note=text(data, "note", 500))
        except FacilityShareError as exc:
            await session.rollback()
            return await my_bookings_page(request, session, i18n, error=words.error(exc), status=error_status(exc), number=number)
        await session.commit()
        key = "checked_in" if action == "check-in" else "checked_out"
        return Redirect(f"{my_bookings_url(number, **{key: booking_id})}#booking-{booking_id}", status_code=303)

    @post("/me/bookings/{booking_id:int}/check-in", name="my-booking-check-in")
    async def self_check_in(self, request: Request, db_session: DbSession, i18n: Lang, booking_id: RecordId) -> Template | Redirect:
        return await self._self_service(request, db_session, i18n, booking_id, "check-in")

    @post("/me/bookings/{booking_id:int}/check-out", name="my-booking-check-out")
    async def self_check_out(self, request: Request, db_session: DbSession, i18n: Lang, booking_id: RecordId) -> Template | Redirect:
        return await self._self_service(request, db_session, i18n, booking_id, "check-out")


__all__ = ["EnterpriseUsagePages", "FiguresPages", "ManagerUsagePages", "UsageWords"]
