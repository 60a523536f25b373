"""Settlements over HTTP: draft, review, recompute, approve, discard, export (finance and admins).

Every route is ``finance`` access. Approval names the results digest the caller reviewed, so
lines recomputed in between are never approved unseen. An approved settlement answers 409 to
every change; the database refuses it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromQuery, JSONBody
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share.accounts.principal import Principal
from facility_share.db.models import (
    Charge,
    EnterpriseStatus,
    ManagingUnit,
    Payment,
    PolicyVersion,
    Refund,
    Resource,
    Settlement,
    SettlementLine,
    UnitRelation,
)
from facility_share.errors import InvalidInput, NotFound
from facility_share.finance import settlement_exports as exports
from facility_share.finance import settlements
from facility_share.finance.periods import parse_period
from facility_share.usage.figures import DISTRICT_ZONE, period_bounds
from facility_share.web.deps import DbSession, RecordId
from facility_share.web.openapi import error_responses

# A budget above this (one hundred million yuan) is a typing slip, not a district budget.
MAX_BUDGET_FEN = 10_000_000_000
LINE_KINDS = ("subsidy", "award")


# --- shapes -------------------------------------------------------------------------------------


@dataclass
class DraftIn:
    """A draft to compute: the period (2026, 2026-Q3 or 2026-07) and the policy code; the version
    in force for the whole period is used unless one is named. Budgets in fen; absent: the
    policy's yearly budget prorated to the period. The cut-off defaults to now."""

    period: str
    policy: str
    version: str | None = None
    cutoff_at: datetime | None = None
    subsidy_budget_fen: int | None = None
    award_budget_fen: int | None = None
    note: str = ""


@dataclass
class ApproveIn:
    """The results digest of the lines the caller reviewed (``results_digest`` of the settlement)."""

    results_digest: str


@dataclass
class PolicyRef:
    code: str
    version: str
    title_zh: str
    title_en: str
    digest: str


@dataclass
class SettlementOut:
    id: int
    period: str
    period_kind: str
    period_start: date
    period_end: date
    policy: PolicyRef
    status: str
    cutoff_at: datetime
    subsidy_budget_fen: int | None
    award_budget_fen: int | None
    subsidy_total_fen: int
    award_total_fen: int
    subsidy_lines: int
    award_lines: int
    inputs_digest: str
    results_digest: str
    note: str
    created_at: datetime
    computed_at: datetime | None
    approved_at: datetime | None


@dataclass
class LineOut:
    id: int
    kind: str
    position: int
    subject_id: int
    subject_code: str
    subject_name: str
    category: str
    basis_fen: int
    before_budget_fen: int
    adjustment_fen: int
    amount_fen: int
    flags: list[str]
    explanation_zh: str
    explanation_en: str


@dataclass
class CountedCharge:
    """One of the enterprise's charges for services in the period, and whether it counted."""

    charge_id: int
    service_date: date
    resource_code: str
    resource_name: str
    unit_code: str
    total_fen: int
    paid_fen: int
    refunded_fen: int
    net_paid_fen: int
    enterprise_class: str
    counted: bool
    excluded_because: str | None


@dataclass
class LineDetailOut(LineOut):
    figures: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    charges: list[CountedCharge] = field(default_factory=list)


def policy_ref(policy: PolicyVersion) -> PolicyRef:
    return PolicyRef(policy.code, policy.version, policy.title_zh, policy.title_en, policy.digest)


def utc(value: datetime | None) -> datetime | None:
    """A stored time in UTC (as it reads back from the database, whatever zone it was given in)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def settlement_out(settlement: Settlement, policy: PolicyVersion, counts: dict[str, int]) -> SettlementOut:
    s = settlement
    return SettlementOut(
        s.id, s.period_label, s.period_kind, s.period_start, s.period_end, policy_ref(policy), s.status, utc(s.cutoff_at),  # type: ignore[arg-type]
        s.subsidy_budget_fen, s.award_budget_fen, s.subsidy_total_fen, s.award_total_fen, counts.get("subsidy", 0),
        counts.get("award", 0), s.inputs_digest, s.results_digest, s.note, utc(s.created_at), utc(s.computed_at),  # type: ignore[arg-type]
        utc(s.approved_at),
    )


def line_out(line: SettlementLine) -> LineOut:
    return LineOut(line.id, line.kind, line.position, line.subject_id, line.subject_code, line.subject_name, line.category,
                   line.basis_fen, line.before_budget_fen, line.adjustment_fen, line.amount_fen, list(line.flags or []),
                   line.explanation_zh, line.explanation_en)


# --- queries the API and the pages share --------------------------------------------------------


async def line_counts(session: AsyncSession, settlement_ids: list[int]) -> dict[int, dict[str, int]]:
    """How many lines of each kind each settlement has."""
    if not settlement_ids:
        return {}
    rows = await session.execute(
        select(SettlementLine.settlement_id, SettlementLine.kind, func.count(SettlementLine.id))
        .where(SettlementLine.settlement_id.in_(settlement_ids))
        .group_by(SettlementLine.settlement_id, SettlementLine.kind)
    )
    counts: dict[int, dict[str, int]] = {}
    for settlement_id, kind, n in rows.all():
        counts.setdefault(settlement_id, {})[kind] = int(n)
    return counts


def check_kind(kind: str | None) -> str | None:
    if kind in (None, ""):
        return None
    if kind not in LINE_KINDS:
        raise InvalidInput(f"kind: expected subsidy or award, got {kind!r}")
    return kind


def check_draft(request: DraftIn) -> settlements.DraftRequest:
    """The API's draft as the service's request, with the checks the service leaves to callers.

    Raises:
        InvalidInput: an empty policy, a budget out of range, or a note too long.
    """
    parse_period(request.period)
    if request.cutoff_at is not None and not 2000 <= request.cutoff_at.year <= 2100:
        raise InvalidInput(f"cutoff_at: give a time between the years 2000 and 2100, got {request.cutoff_at.isoformat()}")
    if not (request.policy or "").strip():
        raise InvalidInput("policy: name the policy to settle under, e.g. wuqing-default")
    for name in ("subsidy_budget_fen", "award_budget_fen"):
        value = getattr(request, name)
        if value is not None and not 0 <= value <= MAX_BUDGET_FEN:
            raise InvalidInput(f"{name}: a budget is a whole number of fen from 0 to {MAX_BUDGET_FEN}; got {value}")
    if len(request.note or "") > 1000:
        raise InvalidInput("note: write at most 1000 characters")
    return settlements.DraftRequest(
        period=request.period.strip(), policy_code=request.policy.strip(), policy_version=(request.version or "").strip() or None,
        cutoff_at=request.cutoff_at, subsidy_budget_fen=request.subsidy_budget_fen, award_budget_fen=request.award_budget_fen,
        note=request.note or "",
    )


async def draft(session: AsyncSession, principal: Principal, request: settlements.DraftRequest) -> Settlement:
    """``settlements.create_draft``, with an unknown policy reported as bad input (400): the
    caller named it, so it is the request that is wrong, not a missing record."""
    try:
        return await settlements.create_draft(session, principal, request)
    except NotFound as exc:
        if exc.msgid is not None:
            raise InvalidInput.translatable(exc.msgid, field=exc.field, detail=exc.detail, **exc.params) from None
        raise InvalidInput(exc.message, detail=exc.detail) from None


def _in_force(history: list[EnterpriseStatus], day: date) -> EnterpriseStatus | None:
    found = None
    for row in history:  # ordered by (effective_from, id): the last one started is in force
        if row.effective_from <= day:
            found = row
    return found


def _class_of(status: EnterpriseStatus | None) -> str:
    if status is None:
        return "none"
    if status.tier and status.tier != "none":
        return status.tier
    return "tech_sme" if status.tech_sme else "none"


async def counted_charges(session: AsyncSession, settlement: Settlement, policy: PolicyVersion,
                          enterprise_id: int) -> list[CountedCharge]:
    """An enterprise's charges for services in the settlement's period, each with what was paid
    and refunded by the cut-off, and whether it counted as eligible spend (else the first
    reason it did not, in the order the subsidy rules check them)."""
    since, until = period_bounds(settlement.period_start, settlement.period_end)
    cutoff = settlement.cutoff_at
    paid = (
        select(Payment.charge_id, func.sum(Payment.amount_received_fen).label("fen"))
        .where(Payment.status == "succeeded", Payment.succeeded_at <= cutoff).group_by(Payment.charge_id).subquery("paid")
    )
    refunded = (
        select(Refund.charge_id, func.sum(Refund.amount_fen).label("fen"))
        .where(Refund.status == "succeeded", Refund.succeeded_at <= cutoff).group_by(Refund.charge_id).subquery("refunded")
    )
    rows = (
        await session.execute(
            select(Charge, Resource, ManagingUnit.code, func.coalesce(UnitRelation.relation, "none"),
                   func.coalesce(paid.c.fen, 0), func.coalesce(refunded.c.fen, 0))
            .join(Resource, Resource.id == Charge.resource_id)
            .join(ManagingUnit, ManagingUnit.id == Resource.unit_id)
            .outerjoin(UnitRelation, and_(UnitRelation.enterprise_id == Charge.enterprise_id, UnitRelation.unit_id == Resource.unit_id))
            .outerjoin(paid, paid.c.charge_id == Charge.id)
            .outerjoin(refunded, refunded.c.charge_id == Charge.id)
            .where(Charge.enterprise_id == enterprise_id, Charge.kind == "service", Charge.status != "void",
                   Charge.service_date >= since, Charge.service_date < until)
            .order_by(Charge.service_date, Charge.id)
        )
    ).all()
    history = list(
        (
            await session.execute(
                select(EnterpriseStatus).where(EnterpriseStatus.enterprise_id == enterprise_id)
                .order_by(EnterpriseStatus.effective_from, EnterpriseStatus.id)
            )
        ).scalars()
    )
    rules = (policy.document or {}).get("subsidy") or {}
    classes = rules.get("classes") or {}
    exclusions = rules.get("exclusions") or {}
    out = []
    for charge, resource, unit_code, relation, paid_fen, refunded_fen in rows:
        day = charge.service_date.astimezone(DISTRICT_ZONE).date()
        status = _in_force(history, day)
        klass = _class_of(status)
        net = max(0, int(paid_fen) - int(refunded_fen))
        reason = None
        if rules.get("require_registered_in_district", True) and not (status and status.registered_in_district):
            reason = "not_registered"
        elif rules.get("require_verified", True) and not (status and status.verified):
            reason = "not_verified"
        elif klass not in classes:
            reason = "class_not_eligible"
        elif relation == "internal" and exclusions.get("internal_use", True):
            reason = "internal_use"
        elif relation == "related" and exclusions.get("related_parties", True):
            reason = "related_party"
        elif not resource.open_for_sharing and exclusions.get("closed_resources", True):
            reason = "resource_not_open"
        elif net <= 0:
            reason = "nothing_paid"
        out.append(CountedCharge(
            charge.id, day, resource.code, resource.name_zh, unit_code, charge.total_fen, int(paid_fen), int(refunded_fen), net,
            klass, reason is None, reason,
        ))
    return out


async def line_detail(session: AsyncSession, settlement: Settlement, policy: PolicyVersion, item: SettlementLine) -> LineDetailOut:
    charges = await counted_charges(session, settlement, policy, item.subject_id) if item.kind == "subsidy" else []
    base = line_out(item)
    return LineDetailOut(**base.__dict__, figures=dict(item.figures or {}), steps=list(item.steps or []), charges=charges)


def export_response(settlement: Settlement, policy: PolicyVersion, lines: list[SettlementLine], fmt: str, *,
                    locale: str, kind: str | None) -> Response[bytes]:
    """The export as a download; the ETag is the bytes' own digest (they never vary)."""
    import hashlib

    if fmt not in exports.EXPORT_FORMATS:
        raise InvalidInput(f"format: expected csv, xlsx or json, got {fmt!r}")
    body = exports.export(settlement, policy, lines, fmt, locale=locale, kind=kind)
    name = exports.file_name(settlement, fmt, kind)
    return Response(
        # Litestar adds the charset to text types itself.
        body, media_type=exports.MEDIA_TYPES[fmt].split(";")[0],
        headers={"Content-Disposition": f'attachment; filename="{name}"', "ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"',
                 "Cache-Control": "private, no-cache"},
    )


# --- the controller -----------------------------------------------------------------------------


@dataclass
class ExportOperation(Operation):
    """Documents the export's one 200 answer in each of its three formats."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.description = "The settlement's lines as CSV (UTF-8 with a byte-order mark), XLSX or JSON"
            ok.content = {
                "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),  # type: ignore[arg-type]
                exports.XLSX_MEDIA_TYPE: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)),  # type: ignore[arg-type]
                "application/json": OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT)),  # type: ignore[arg-type]
            }


class SettlementApi(Controller):
    path = "/api/v1/finance/settlements"
    tags = ["finance"]
    opt = {"access": "finance"}

    async def _out(self, session: AsyncSession, settlement: Settlement, policy: PolicyVersion) -> SettlementOut:
        counts = await line_counts(session, [settlement.id])
        return settlement_out(settlement, policy, counts.get(settlement.id, {}))

    @get("", summary="Settlements, newest period first", responses=error_responses(401, 403))
    async def list_settlements(self, db_session: DbSession) -> list[SettlementOut]:
        rows = await settlements.list_settlements(db_session)
        counts = await line_counts(db_session, [s.id for s, _p in rows])
        return [settlement_out(s, p, counts.get(s.id, {})) for s, p in rows]

    @post("", summary="Draft and compute a settlement for a period under a policy", status_code=201,
          description="Bad input (period, policy, budget, cut-off) answers 400 and creates nothing; a period that "
                      "overlaps an approved settlement answers 409.",
          responses=error_responses(400, 401, 403, 409))
    async def create(self, request: Request, db_session: DbSession, data: JSONBody[DraftIn]) -> SettlementOut:
        settlement = await draft(db_session, request.user, check_draft(data))
        _s, policy = await settlements.load(db_session, settlement.id)
        out = await self._out(db_session, settlement, policy)
        await db_session.commit()
        return out

    @get("/{settlement_id:int}", summary="One settlement with its totals and digests", responses=error_responses(401, 403, 404))
    async def show(self, db_session: DbSession, settlement_id: RecordId) -> SettlementOut:
        settlement, policy = await settlements.load(db_session, settlement_id)
        return await self._out(db_session, settlement, policy)

    @get("/{settlement_id:int}/lines", summary="The settlement's lines (kind=subsidy or award for one kind)",
         responses=error_responses(400, 401, 403, 404))
    async def lines(self, db_session: DbSession, settlement_id: RecordId, kind: FromQuery[str | None] = None) -> list[LineOut]:
        await settlements.load(db_session, settlement_id)
        return [line_out(x) for x in await settlements.lines_of(db_session, settlement_id, check_kind(kind))]

    @get("/{settlement_id:int}/lines/{line_id:int}",
         summary="One line with its figures, steps, explanation and (subsidies) the enterprise's charges of the period",
         responses=error_responses(401, 403, 404))
    async def line(self, db_session: DbSession, settlement_id: RecordId, line_id: RecordId) -> LineDetailOut:
        settlement, policy = await settlements.load(db_session, settlement_id)
        item = await settlements.line(db_session, settlement_id, line_id)
        return await line_detail(db_session, settlement, policy, item)

    @post("/{settlement_id:int}/recompute", summary="Recompute a draft from the data as it stands now", status_code=200,
          responses=error_responses(401, 403, 404, 409))
    async def recompute(self, request: Request, db_session: DbSession, settlement_id: RecordId) -> SettlementOut:
        settlement = await settlements.recompute(db_session, request.user, settlement_id)
        _s, policy = await settlements.load(db_session, settlement.id)
        out = await self._out(db_session, settlement, policy)
        await db_session.commit()
        return out

    @post("/{settlement_id:int}/approve", summary="Approve a draft (final): send the results digest you reviewed",
          status_code=200, responses=error_responses(400, 401, 403, 404, 409))
    async def approve(self, request: Request, db_session: DbSession, settlement_id: RecordId,
                      data: JSONBody[ApproveIn]) -> SettlementOut:
        digest = (data.results_digest or "").strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidInput("results_digest: send the 64-character results_digest of the settlement you reviewed")
        settlement = await settlements.approve(db_session, request.user, settlement_id, expected_results_digest=digest)
        _s, policy = await settlements.load(db_session, settlement.id)
        out = await self._out(db_session, settlement, policy)
        await db_session.commit()
        return out

    @delete("/{settlement_id:int}", summary="Discard a draft (approved settlements are kept for ever)", status_code=204,
            responses=error_responses(401, 403, 404, 409))
    async def discard(self, request: Request, db_session: DbSession, settlement_id: RecordId) -> None:
        await settlements.discard(db_session, request.user, settlement_id)
        await db_session.commit()

    @get("/{settlement_id:int}/export", summary="The lines as CSV, XLSX or JSON (the same settlement, the same bytes)",
         description="format: csv, xlsx or json; kind: subsidy or award for one kind only; lang: zh_CN (default) or en "
                     "for the headers and explanations.",
         responses=error_responses(400, 401, 403, 404), operation_class=ExportOperation, cache=False)
    async def export(self, db_session: DbSession, settlement_id: RecordId, format: FromQuery[str] = "csv",  # noqa: A002
                     kind: FromQuery[str | None] = None, lang: FromQuery[str | None] = None) -> Response[bytes]:
        settlement, policy = await settlements.load(db_session, settlement_id)
        chosen = check_kind(kind)
        if lang not in (None, "", "zh_CN", "en"):
            raise InvalidInput(f"lang: expected zh_CN or en, got {lang!r}")
        lines = await settlements.lines_of(db_session, settlement_id, chosen)
        return export_response(settlement, policy, lines, format, locale=lang or "zh_CN", kind=chosen)


__all__ = ["SettlementApi", "counted_charges", "draft", "export_response", "line_counts", "line_detail"]
