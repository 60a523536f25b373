"""What the usage API returns and accepts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from facility_share.db.models import Charge, UsageLog
from facility_share.usage.figures import Figures, Report


@dataclass
class UsageOut:
    id: int
    session_id: int
    resource_id: int
    booking_id: int | None
    enterprise_id: int | None
    started_at: datetime
    ended_at: datetime | None
    samples: int
    operator: str
    mode: str
    source: str
    supersedes_id: int | None
    reason: str
    note: str
    recorded_at: datetime


@dataclass
class AgentSessionIn:
    idempotency_key: str
    started_at: datetime
    ended_at: datetime
    samples: int = 0
    operator: str = ""
    booking_id: int | None = None


@dataclass
class CheckInIn:
    operator: str = ""


@dataclass
class CheckOutIn:
    samples: int = 0
    note: str = ""


@dataclass
class WalkInIn:
    resource_code: str
    started_at: datetime
    ended_at: datetime
    enterprise_uscc: str | None = None
    samples: int = 0
    operator: str = ""
    mode: str = "staff_operated"
    note: str = ""


@dataclass
class CorrectionIn:
    started_at: datetime
    ended_at: datetime
    samples: int
    reason: str


@dataclass
class ChargeLineOut:
    label_zh: str
    label_en: str
    basis: str
    units: int
    rate_fen: int
    amount_fen: int
    explanation: str


@dataclass
class ChargeOut:
    id: int
    kind: str
    usage_log_id: int | None
    booking_id: int | None
    resource_id: int
    enterprise_id: int
    service_date: datetime
    customer_class: str
    lines: list[ChargeLineOut]
    total_fen: int
    explanation_zh: str
    explanation_en: str
    status: str
    paid_at: datetime | None
    payment_method: str
    payment_reference: str
    void_reason: str


@dataclass
class MarkPaidIn:
    method: str
    reference: str


@dataclass
class RatingIn:
    stars: int
    comment: str = ""


@dataclass
class RatingOut:
    id: int
    booking_id: int | None
    stars: int
    comment: str
    created_at: datetime


@dataclass
class AgentKeyIn:
    name: str


@dataclass
class AgentKeyOut:
    id: int
    resource_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass
class NewAgentKey(AgentKeyOut):
    key: str  # shown once


@dataclass
class FiguresOut:
    effective_hours: float
    external_hours: float
    related_hours: float
    internal_hours: float
    sharing_rate: float | None
    enterprises_served: int
    external_enterprises: int
    sessions: int
    no_shows: int
    income_fen: int
    paid_income_fen: int
    external_income_fen: int
    ratings: int
    average_rating: float | None
    rated_hours: float
    utilisation: float | None


@dataclass
class ResourceFiguresOut:
    code: str
    name_zh: str
    name_en: str
    unit_code: str
    open_for_sharing: bool
    figures: FiguresOut


@dataclass
class UnitFiguresOut:
    code: str
    name_zh: str
    name_en: str
    resources: int
    open_resources: int
    figures: FiguresOut


@dataclass
class ReportOut:
    start: date
    end: date
    units: list[UnitFiguresOut]
    resources: list[ResourceFiguresOut]


def usage_out(log: UsageLog) -> UsageOut:
    return UsageOut(log.id, log.session_id or log.id, log.resource_id, log.booking_id, log.enterprise_id, log.started_at,
                    log.ended_at, log.samples, log.operator, log.mode, log.source, log.supersedes_id, log.reason, log.note,
                    log.recorded_at)


def charge_out(c: Charge) -> ChargeOut:
    lines = [ChargeLineOut(l["label_zh"], l["label_en"], l["basis"], l["units"], l["rate_fen"], l["amount_fen"], l["explanation"])
             for l in c.lines]
    return ChargeOut(c.id, c.kind, c.usage_log_id, c.booking_id, c.resource_id, c.enterprise_id, c.service_date, c.customer_class,
                     lines, c.total_fen, c.explanation_zh, c.explanation_en, c.status, c.paid_at, c.payment_method,
                     c.payment_reference, c.void_reason)


def figures_out(f: Figures) -> FiguresOut:
    return FiguresOut(f.effective_hours, f.external_hours, f.related_hours, f.internal_hours,
                      round(f.sharing_rate, 4) if f.sharing_rate is not None else None, f.enterprises_served,
                      f.external_enterprises, f.sessions, f.no_shows, f.income_fen, f.paid_income_fen, f.external_income_fen,
                      f.ratings, f.average_rating, f.rated_hours, f.utilisation)


def report_out(r: Report) -> ReportOut:
    return ReportOut(
        r.start, r.end,
        [UnitFiguresOut(u.code, u.name_zh, u.name_en, u.resources, u.open_resources, figures_out(u.figures)) for u in r.units],
        [ResourceFiguresOut(x.code, x.name_zh, x.name_en, x.unit_code, x.open_for_sharing, figures_out(x.figures)) for x in r.resources],
    )
