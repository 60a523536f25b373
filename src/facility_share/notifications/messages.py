"""The text of each notification, in the recipient's language: plain text and simple HTML.

Pure functions over plain records (no database): the handlers gather the facts, these write
the words. Message ids are English; the Chinese is in ``locale/zh_CN/LC_MESSAGES/
notifications.po``. Times are shown in the resource's timezone.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from facility_share.feeds.calendar import FeedEvent, booking_uid, build_calendar
from facility_share.settings import SUPPORTED_LOCALES
from facility_share.web.i18n import I18n

DEFAULT_ZONE = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "text/calendar; method=PUBLISH"
    data: str


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class BookingFacts:
    id: int
    status: str
    version: int
    resource_code: str
    resource_name_zh: str
    resource_name_en: str
    location_zh: str
    location_en: str
    unit_name_zh: str
    unit_name_en: str
    timezone: str
    starts_at: datetime
    ends_at: datetime
    quantity: int
    mode: str
    purpose: str
    enterprise_name: str
    booker_name: str
    reason: str
    decision_deadline: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ChargeFacts:
    id: int
    kind: str
    total_fen: int
    outstanding_fen: int
    resource_name_zh: str
    resource_name_en: str
    timezone: str
    service_date: datetime
    booking_id: int | None
    enterprise_name: str


@dataclass(frozen=True, slots=True)
class SettlementFacts:
    id: int
    period_label: str
    policy: str
    subsidy_total_fen: int
    award_total_fen: int
    subsidy_lines: int
    award_lines: int
    approved_by: str
    approved_at: datetime | None


@dataclass
class _Body:
    """A message being written: paragraphs, a table of facts, a link."""

    i18n: I18n
    greeting: str
    paragraphs: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    link_text: str = ""
    link: str = ""

    def text(self) -> str:
        parts = [self.greeting, "", *[p for para in self.paragraphs for p in (para, "")]]
        if self.facts:
            colon = "：" if self.i18n.is_zh else ": "
            parts += [f"{label}{colon}{value}" for label, value in self.facts] + [""]
        if self.link:
            parts += [self.link_text, self.link, ""]
        parts += ["-- ", self.i18n.gettext("This message was sent automatically by the shared instrument platform; "
                                           "replies are not read.")]
        return "\n".join(parts) + "\n"

    def html(self) -> str:
        e = html.escape
        rows = "".join(
            f'<tr><th style="text-align:left;padding:2px 12px 2px 0;vertical-align:top">{e(label)}</th>'
            f'<td style="padding:2px 0;white-space:pre-line">{e(value)}</td></tr>'
            for label, value in self.facts
        )
        body = [f"<p>{e(self.greeting)}</p>", *(f"<p>{e(p)}</p>" for p in self.paragraphs)]
        if rows:
            body.append(f'<table style="border-collapse:collapse">{rows}</table>')
        if self.link:
            body.append(f'<p><a href="{e(self.link, quote=True)}">{e(self.link_text)}</a></p>')
        footer = e(self.i18n.gettext("This message was sent automatically by the shared instrument platform; replies are not read."))
        body.append(f'<p style="color:#666;font-size:small">{footer}</p>')
        return (f'<!DOCTYPE html><html lang="{self.i18n.html_lang}"><head><meta charset="utf-8"></head>'
                f'<body style="font-family:sans-serif;line-height:1.5">{"".join(body)}</body></html>')


def language(locale: str | None, default: str = "zh_CN") -> I18n:
    """The recipient's language (Chinese unless they chose English)."""
    return I18n(locale if locale in SUPPORTED_LOCALES else default)


def _pick(i18n: I18n, zh: str, en: str) -> str:
    return en if (not i18n.is_zh and en) else zh


def local_span(start: datetime, end: datetime, zone_name: str) -> str:
    """``2026-12-02 09:00–10:00``, or both dates when it spans days; the zone is named unless
    it is China Standard Time."""
    zone = ZoneInfo(zone_name or DEFAULT_ZONE)
    s, e = start.astimezone(zone), end.astimezone(zone)
    text = f"{s:%Y-%m-%d %H:%M}–{e:%H:%M}" if s.date() == e.date() else f"{s:%Y-%m-%d %H:%M} – {e:%Y-%m-%d %H:%M}"
    return text if (zone_name or DEFAULT_ZONE) == DEFAULT_ZONE else f"{text} ({zone_name})"


def local_time(value: datetime, zone_name: str) -> str:
    text = f"{value.astimezone(ZoneInfo(zone_name or DEFAULT_ZONE)):%Y-%m-%d %H:%M}"
    return text if (zone_name or DEFAULT_ZONE) == DEFAULT_ZONE else f"{text} ({zone_name})"


def _mode(i18n: I18n, mode: str) -> str:
    return {"staff_operated": i18n.gettext("Operated by the unit's staff"), "self_operated": i18n.gettext("Self-operated")}.get(mode, mode)


def _booking_facts(i18n: I18n, b: BookingFacts, *, who: bool = False) -> list[tuple[str, str]]:
    _ = i18n.gettext
    facts = [
        (_("Booking no."), f"#{b.id}"),
        (_("Instrument or workshop"), f"{_pick(i18n, b.resource_name_zh, b.resource_name_en)} ({b.resource_code})"),
        (_("Time"), local_span(b.starts_at, b.ends_at, b.timezone)),
    ]
    place = ", ".join(x for x in (_pick(i18n, b.location_zh, b.location_en), _pick(i18n, b.unit_name_zh, b.unit_name_en)) if x)
    if place:
        facts.append((_("Location"), place))
    facts.append((_("Operated by"), _mode(i18n, b.mode)))
    if b.quantity > 1:
        facts.append((_("Quantity"), str(b.quantity)))
    if who:
        facts.append((_("Enterprise"), b.enterprise_name))
        facts.append((_("Booked by"), b.booker_name))
    if b.purpose:
        facts.append((_("Purpose"), b.purpose))
    return facts


def booking_calendar(b: BookingFacts, i18n: I18n, link: str) -> str:
    """The approved booking as an iCalendar object (METHOD:PUBLISH): one event whose UID is the
    one the booking has in every calendar feed, so a client that also subscribes updates it."""
    _ = i18n.gettext
    name = _pick(i18n, b.resource_name_zh, b.resource_name_en)
    description = "\n".join(f"{label}: {value}" for label, value in _booking_facts(i18n, b))
    event = FeedEvent(
        uid=booking_uid(b.id), start=b.starts_at, end=b.ends_at, status=b.status, sequence=b.version, created=b.created_at,
        updated=b.updated_at, summary=name, description=description, url=link,
        location=", ".join(x for x in (_pick(i18n, b.location_zh, b.location_en), _pick(i18n, b.unit_name_zh, b.unit_name_en)) if x),
    )
    text = build_calendar([event], name=_("Booking #%(id)d", id=b.id), language=i18n.locale)
    # A calendar sent by e-mail says what the receiver should do with it: PUBLISH (add it),
    # not REQUEST (no reply is expected). build_calendar writes feeds, which carry no METHOD.
    head = "BEGIN:VCALENDAR\r\n"
    assert text.startswith(head)
    return head + "METHOD:PUBLISH\r\n" + text[len(head):]


def booking_message(event: str, b: BookingFacts, *, recipient_name: str, i18n: I18n, public_url: str,
                    reminder_hours: int = 24) -> Message:
    """The message about booking event ``event`` (booking.requested, .approved, .rejected,
    .expired, .reminder, .cancelled_by_unit, .cancelled_by_enterprise, .no_show) for one
    recipient."""
    _ = i18n.gettext
    name = _pick(i18n, b.resource_name_zh, b.resource_name_en)
    body = _Body(i18n, _("Hello %(name)s,", name=recipient_name))
    attachments: tuple[Attachment, ...] = ()
    if event == "booking.requested":
        subject = _("New booking request #%(id)d: %(resource)s", id=b.id, resource=name)
        body.paragraphs.append(_("%(enterprise)s has requested %(resource)s. Please approve or reject the request.",
                                 enterprise=b.enterprise_name, resource=name))
        body.facts = _booking_facts(i18n, b, who=True)
        if b.decision_deadline is not None:
            body.facts.append((_("Decide by"), local_time(b.decision_deadline, b.timezone)))
            body.paragraphs.append(_("If it is not decided by then, the request expires and its time becomes free again."))
        body.link_text, body.link = _("Decide on requests:"), f"{public_url}/manage/requests"
    elif event == "booking.approved":
        subject = _("Booking #%(id)d approved: %(resource)s", id=b.id, resource=name)
        body.paragraphs.append(_("Your booking has been approved. The attached calendar file adds it to your calendar."))
        body.facts = _booking_facts(i18n, b)
        body.link_text, body.link = _("Your bookings:"), f"{public_url}/me/bookings"
        attachments = (Attachment(f"booking-{b.id}.ics", "text/calendar; method=PUBLISH",
                                  booking_calendar(b, i18n, f"{public_url}/me/bookings")),)
    elif event == "booking.rejected":
        subject = _("Booking #%(id)d rejected: %(resource)s", id=b.id, resource=name)
        body.paragraphs.append(_("Your booking request has been rejected by the managing unit."))
        body.facts = _booking_facts(i18n, b)
        body.facts.append((_("Reason"), b.reason or "—"))
        body.link_text, body.link = _("Book another time:"), f"{public_url}/resources/{b.resource_code}/calendar"
    elif event == "booking.expired":
        subject = _("Booking request #%(id)d expired: %(resource)s", id=b.id, resource=name)
        body.paragraphs.append(_("Your booking request was not decided before its deadline, so it has expired and its time "
                                 "is free again. You may book again."))
        body.facts = _booking_facts(i18n, b)
        body.link_text, body.link = _("Book another time:"), f"{public_url}/resources/{b.resource_code}/calendar"
    elif event == "booking.reminder":
        when = local_span(b.starts_at, b.ends_at, b.timezone)
        subject = _("Reminder: %(resource)s, %(time)s", resource=name, time=when)
        body.paragraphs.append(i18n.ngettext("Your booking starts within %(num)d hour.", "Your booking starts within %(num)d hours.",
                                             reminder_hours))
        body.facts = _booking_facts(i18n, b)
        body.link_text, body.link = _("Your bookings:"), f"{public_url}/me/bookings"
    elif event == "booking.cancelled_by_unit":
        subject = _("Booking #%(id)d cancelled by the unit: %(resource)s", id=b.id, resource=name)
        body.paragraphs.append(_("The managing unit has cancelled your booking. Please remove it from your calendar; "
                                 "anything you paid in advance for it is refunded in full."))
        body.facts = _booking_facts(i18n, b)
        body.facts.append((_("Reason"), b.reason or "—"))
        body.link_text, body.link = _("Book another time:"), f"{public_url}/resources/{b.resource_code}/calendar"
    elif event == "booking.cancelled_by_enterprise":
        subject = _("Booking #%(id)d cancelled by %(enterprise)s: %(resource)s", id=b.id, enterprise=b.enterprise_name,
                    resource=name)
        body.paragraphs.append(_("%(enterprise)s has cancelled this booking; its time is free again.", enterprise=b.enterprise_name))
        body.facts = _booking_facts(i18n, b, who=True)
        if b.reason:
            body.facts.append((_("Reason"), b.reason))
        body.link_text, body.link = _("The unit's calendar:"), f"{public_url}/manage/calendar"
    elif event == "booking.no_show":
        subject = _("Booking #%(id)d recorded as a no-show: %(resource)s", id=b.id, resource=name)
        body.paragraphs.append(_("The managing unit has recorded that nobody came for this booking. If that is wrong, "
                                 "please contact the unit."))
        body.facts = _booking_facts(i18n, b)
        body.link_text, body.link = _("Your bookings:"), f"{public_url}/me/bookings"
    else:
        raise ValueError(f"unknown booking event {event!r}")
    return Message(subject, body.text(), body.html(), attachments)


def charge_message(c: ChargeFacts, *, recipient_name: str, i18n: I18n, public_url: str) -> Message:
    """A charge is due: what for, how much is outstanding, where to pay."""
    _ = i18n.gettext
    name = _pick(i18n, c.resource_name_zh, c.resource_name_en)
    subject = _("Charge #%(id)d due: %(amount)s", id=c.id, amount=i18n.yuan(c.outstanding_fen))
    body = _Body(i18n, _("Hello %(name)s,", name=recipient_name))
    body.paragraphs.append(
        _("A no-show fee has been charged to %(enterprise)s.", enterprise=c.enterprise_name) if c.kind == "no_show"
        else _("A charge has been issued to %(enterprise)s for a service it used.", enterprise=c.enterprise_name)
    )
    body.facts = [(_("Charge no."), f"#{c.id}"), (_("Instrument or workshop"), name),
                  (_("Service date"), local_time(c.service_date, c.timezone)[:10])]
    if c.booking_id is not None:
        body.facts.append((_("Booking no."), f"#{c.booking_id}"))
    body.facts.append((_("Amount"), i18n.yuan(c.total_fen)))
    if c.outstanding_fen != c.total_fen:
        body.facts.append((_("Outstanding"), i18n.yuan(c.outstanding_fen)))
    body.link_text, body.link = _("See its lines and pay it:"), f"{public_url}/me/charges"
    return Message(subject, body.text(), body.html())


def settlement_message(s: SettlementFacts, *, recipient_name: str, i18n: I18n, public_url: str) -> Message:
    """A settlement became final: its period, policy and totals."""
    _ = i18n.gettext
    subject = _("Settlement #%(id)d approved: %(period)s", id=s.id, period=s.period_label)
    body = _Body(i18n, _("Hello %(name)s,", name=recipient_name))
    body.paragraphs.append(_("A settlement of subsidies and awards has been approved. It is final and can no longer be changed."))
    body.facts = [
        (_("Settlement no."), f"#{s.id}"),
        (_("Period"), s.period_label),
        (_("Policy"), s.policy),
        (_("Enterprise subsidies"), f"{i18n.yuan(s.subsidy_total_fen)} ({s.subsidy_lines})"),
        (_("Managing-unit awards"), f"{i18n.yuan(s.award_total_fen)} ({s.award_lines})"),
        (_("Approved by"), s.approved_by or "—"),
    ]
    if s.approved_at is not None:
        body.facts.append((_("Approved at"), local_time(s.approved_at, DEFAULT_ZONE)))
    body.link_text, body.link = _("Review it and download its files:"), f"{public_url}/finance/settlements/{s.id}"
    return Message(subject, body.text(), body.html())
