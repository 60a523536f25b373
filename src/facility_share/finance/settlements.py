"""Settlements: draft → approved, for one period under one policy version.

The service gathers the period's facts (``facts``), hands them to the pure subsidy and award
functions, and stores the lines with their steps and explanations. A draft can be recomputed at
will: the same inputs give byte-identical lines (the digests prove it). Approval is final: no
function here changes an approved settlement, and the database refuses to (migration 0005).
Corrections after approval — a refund, a late payment — reach finance as the caps and grants of
later settlements of the year see them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share import audit, notifications
from facility_share.accounts.principal import Principal
from facility_share.db.models import PolicyVersion, Settlement, SettlementLine, utcnow
from facility_share.errors import N_, Conflict, Forbidden, InvalidInput, NotFound
from facility_share.finance import facts
from facility_share.finance.periods import Period, parse_period


def _require_finance(principal: Principal) -> None:
    if not (principal.is_finance or principal.is_admin):
        raise Forbidden("only finance staff and administrators settle subsidies and awards")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the one byte form digests and exports use."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def period_of(settlement: Settlement) -> Period:
    return parse_period(settlement.period_label)


@dataclass(frozen=True)
class DraftRequest:
    period: str
    policy_code: str
    policy_version: str | None = None
    cutoff_at: datetime | None = None
    subsidy_budget_fen: int | None = None
    award_budget_fen: int | None = None
    note: str = ""


async def _policy_for(session: AsyncSession, code: str, version: str | None, period: Period) -> PolicyVersion:
    query = select(PolicyVersion).where(PolicyVersion.code == code)
    if version:
        row = (await session.execute(query.where(PolicyVersion.version == version))).scalar_one_or_none()
        if row is None:
            raise NotFound.translatable(N_("no version '%(version)s' of policy '%(code)s' is loaded; run `facility-share policies import`"),
                                        field="policy", version=version, code=code)
        return row
    rows = (await session.execute(query.order_by(PolicyVersion.effective_from.desc(), PolicyVersion.version.desc()))).scalars().all()
    if not rows:
        raise NotFound.translatable(N_("no policy '%(code)s' is loaded; run `facility-share policies import`"), field="policy", code=code)
    for row in rows:
        if row.effective_from <= period.start and (row.effective_until is None or row.effective_until >= period.end - timedelta(days=1)):
            return row
    raise InvalidInput.translatable(
        N_("no version of '%(code)s' is in force for the whole of %(label)s; name a version explicitly or split the period"),
        field="policy", code=code, label=period.label,
    )


async def _approved_overlapping(session: AsyncSession, period: Period, *, exclude_id: int | None = None) -> Settlement | None:
    query = select(Settlement).where(
        Settlement.status == "approved", Settlement.period_start < period.end, Settlement.period_end > period.start
    )
    if exclude_id is not None:
        query = query.where(Settlement.id != exclude_id)
    return (await session.execute(query.order_by(Settlement.id).limit(1))).scalar_one_or_none()


def _check_budget(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise InvalidInput(f"{name}: a budget is a whole number of fen, zero or more; got {value}")


async def create_draft(session: AsyncSession, principal: Principal, request: DraftRequest, *, now: datetime | None = None) -> Settlement:
    """Create and compute a draft settlement.

    Raises:
        Forbidden: the caller is not finance or admin.
        InvalidInput: a malformed period, budget or cut-off.
        NotFound: the policy (version) is not loaded.
        Conflict: an approved settlement already covers part of the period.
    """
    _require_finance(principal)
    now = now or utcnow()
    period = parse_period(request.period)
    _check_budget("subsidy_budget_fen", request.subsidy_budget_fen)
    _check_budget("award_budget_fen", request.award_budget_fen)
    cutoff = request.cutoff_at or now
    if cutoff.tzinfo is None:
        raise InvalidInput("cutoff_at: give the time zone, e.g. 2026-10-15T00:00:00+08:00")
    if cutoff > now:
        raise InvalidInput.translatable(N_("the cut-off cannot be in the future; payments after it would be unknown yet"),
                                        field="cutoff_at")
    if cutoff.astimezone(UTC).date() < period.start:
        raise InvalidInput.translatable(N_("the cut-off is before the period %(label)s starts; nothing could be paid by then"),
                                        field="cutoff_at", label=period.label)
    policy = await _policy_for(session, request.policy_code, request.policy_version, period)
    clash = await _approved_overlapping(session, period)
    if clash is not None:
        raise Conflict.translatable(
            N_("%(label)s overlaps approved settlement #%(other)s (%(other_label)s); an approved period is not settled "
               "again — later settlements carry its corrections"),
            field="period", label=period.label, other=clash.id, other_label=clash.period_label,
        )
    settlement = Settlement(
        period_label=period.label, period_kind=period.kind, period_start=period.start, period_end=period.end,
        policy_version_id=policy.id, cutoff_at=cutoff, status="draft",
        subsidy_budget_fen=request.subsidy_budget_fen, award_budget_fen=request.award_budget_fen,
        note=request.note[:1000], created_by_id=principal.user_id, created_at=now,
    )
    session.add(settlement)
    await session.flush()
    await _compute(session, settlement, policy, now=now)
    audit.record(session, action="draft", entity="settlement", entity_id=settlement.id, actor_id=principal.user_id,
                 after=_summary(settlement, policy), at=now)
    return settlement


def _summary(settlement: Settlement, policy: PolicyVersion) -> dict[str, Any]:
    return {
        "period": settlement.period_label, "policy": f"{policy.code}@{policy.version}", "status": settlement.status,
        "cutoff_at": settlement.cutoff_at.isoformat(), "subsidy_total_fen": settlement.subsidy_total_fen,
        "award_total_fen": settlement.award_total_fen, "inputs_digest": settlement.inputs_digest,
        "results_digest": settlement.results_digest,
    }


async def load(session: AsyncSession, settlement_id: int) -> tuple[Settlement, PolicyVersion]:
    settlement = await session.get(Settlement, settlement_id)
    if settlement is None:
        raise NotFound.translatable(N_("settlement %(settlement)s does not exist"), settlement=settlement_id)
    policy = await session.get(PolicyVersion, settlement.policy_version_id)
    assert policy is not None
    return settlement, policy


async def recompute(session: AsyncSession, principal: Principal, settlement_id: int, *, now: datetime | None = None) -> Settlement:
    """Recompute a draft from the database as it stands (same cut-off, same policy version).

    Raises:
        Conflict: the settlement is approved.
    """
    _require_finance(principal)
    settlement, policy = await load(session, settlement_id)
    if settlement.status != "draft":
        raise Conflict.translatable(N_("settlement %(settlement)s is approved; approved settlements never change"),
                                    settlement=settlement_id)
    clash = await _approved_overlapping(session, period_of(settlement), exclude_id=settlement.id)
    if clash is not None:
        raise Conflict.translatable(N_("settlement %(settlement)s: its period overlaps approved settlement #%(other)s; discard this draft"),
                                    settlement=settlement_id, other=clash.id)
    before = settlement.results_digest
    await _compute(session, settlement, policy, now=now or utcnow())
    audit.record(session, action="recompute", entity="settlement", entity_id=settlement.id, actor_id=principal.user_id,
                 before={"results_digest": before}, after=_summary(settlement, policy))
    return settlement


async def approve(session: AsyncSession, principal: Principal, settlement_id: int, *, expected_results_digest: str | None = None,
                  now: datetime | None = None) -> Settlement:
    """Approve a draft: it becomes final.

    Before approving, the inputs are read again; if anything the draft was computed from has
    changed since (a refund recorded, a status corrected), approval stops so that finance reviews
    the new figures first. ``expected_results_digest`` (sent by the review page) guards against
    approving lines other than the ones on the reviewer's screen.

    Raises:
        Conflict: already approved, the inputs changed, another approved settlement overlaps, or
            the digest does not match what the reviewer saw.
    """
    _require_finance(principal)
    now = now or utcnow()
    settlement, policy = await load(session, settlement_id)
    if settlement.status != "draft":
        raise Conflict.translatable(N_("settlement %(settlement)s is already approved"), settlement=settlement_id)
    if expected_results_digest is not None and expected_results_digest != settlement.results_digest:
        raise Conflict.translatable(
            N_("settlement %(settlement)s changed after you opened it; review the recomputed lines and approve again"),
            settlement=settlement_id)
    clash = await _approved_overlapping(session, period_of(settlement), exclude_id=settlement.id)
    if clash is not None:
        raise Conflict.translatable(N_("settlement %(settlement)s: its period overlaps approved settlement #%(other)s"),
                                    settlement=settlement_id, other=clash.id)
    inputs, _ = await _gather(session, settlement, policy)
    if digest(inputs) != settlement.inputs_digest:
        raise Conflict.translatable(
            N_("settlement %(settlement)s: the data it was computed from has changed since (payments, refunds, "
               "statuses or usage); recompute it, review the lines, then approve"),
            settlement=settlement_id,
        )
    settlement.status, settlement.approved_by_id, settlement.approved_at = "approved", principal.user_id, now
    await session.flush()
    audit.record(session, action="approve", entity="settlement", entity_id=settlement.id, actor_id=principal.user_id,
                 before={"status": "draft"}, after=_summary(settlement, policy), at=now)
    await notifications.settlement_approved(session, settlement.id)
    return settlement


async def discard(session: AsyncSession, principal: Principal, settlement_id: int) -> None:
    """Delete a draft and its lines (approved settlements cannot be deleted)."""
    _require_finance(principal)
    settlement, policy = await load(session, settlement_id)
    if settlement.status != "draft":
        raise Conflict.translatable(N_("settlement %(settlement)s is approved; approved settlements are kept for ever"),
                                    settlement=settlement_id)
    summary = _summary(settlement, policy)
    await session.execute(delete(SettlementLine).where(SettlementLine.settlement_id == settlement.id))
    await session.delete(settlement)
    await session.flush()
    audit.record(session, action="discard", entity="settlement", entity_id=settlement_id, actor_id=principal.user_id, before=summary)


async def list_settlements(session: AsyncSession) -> list[tuple[Settlement, PolicyVersion]]:
    rows = await session.execute(
        select(Settlement, PolicyVersion).join(PolicyVersion, PolicyVersion.id == Settlement.policy_version_id)
        .order_by(Settlement.period_start.desc(), Settlement.id.desc())
    )
    return [(s, p) for s, p in rows.all()]


async def lines_of(session: AsyncSession, settlement_id: int, kind: str | None = None) -> list[SettlementLine]:
    query = select(SettlementLine).where(SettlementLine.settlement_id == settlement_id)
    if kind is not None:
        if kind not in ("subsidy", "award"):
            raise InvalidInput(f"kind: expected subsidy or award, got {kind!r}")
        query = query.where(SettlementLine.kind == kind)
    return list((await session.execute(query.order_by(SettlementLine.kind.desc(), SettlementLine.position))).scalars())


async def line(session: AsyncSession, settlement_id: int, line_id: int) -> SettlementLine:
    row = await session.get(SettlementLine, line_id)
    if row is None or row.settlement_id != settlement_id:
        raise NotFound(f"settlement {settlement_id} has no line {line_id}")
    return row


async def granted_this_year(session: AsyncSession, year: int, *, kind: str, exclude_id: int | None = None) -> dict[int, int]:
    """What approved settlements of ``year`` already granted, per enterprise or unit id."""
    query = (
        select(SettlementLine.subject_id, func.sum(SettlementLine.amount_fen))
        .join(Settlement, Settlement.id == SettlementLine.settlement_id)
        .where(Settlement.status == "approved", SettlementLine.kind == kind,
               Settlement.period_start >= datetime(year, 1, 1).date(), Settlement.period_start < datetime(year + 1, 1, 1).date())
        .group_by(SettlementLine.subject_id)
    )
    if exclude_id is not None:
        query = query.where(Settlement.id != exclude_id)
    return {subject: int(total) for subject, total in (await session.execute(query)).all()}


async def controllers_granted_this_year(session: AsyncSession, year: int, *, exclude_id: int | None = None) -> dict[str, int]:
    """What approved settlements of ``year`` granted per actual controller (recorded on each line)."""
    rows = await session.execute(
        select(SettlementLine.figures, SettlementLine.amount_fen)
        .join(Settlement, Settlement.id == SettlementLine.settlement_id)
        .where(Settlement.status == "approved", SettlementLine.kind == "subsidy", SettlementLine.amount_fen > 0,
               Settlement.period_start >= datetime(year, 1, 1).date(), Settlement.period_start < datetime(year + 1, 1, 1).date(),
               *( [Settlement.id != exclude_id] if exclude_id is not None else []))
    )
    totals: dict[str, int] = {}
    for figures, amount in rows.all():
        controller = (figures or {}).get("controller") or ""
        if controller:
            totals[controller] = totals.get(controller, 0) + int(amount)
    return totals


# --- computing ----------------------------------------------------------------------------------


async def _gather(session: AsyncSession, settlement: Settlement, policy: PolicyVersion) -> tuple[dict[str, Any], Any]:
    """Everything the computation reads, as plain data (its digest is the inputs digest)."""
    period = period_of(settlement)
    async with facts.planner_settings(session):
        charges = await facts.service_charges(session, period, settlement.cutoff_at)
        groups = charges.groups
        enterprises = await facts.enterprises_by_id(session, {g.enterprise_id for g in groups})
        units = await facts.unit_facts(session, period, settlement.cutoff_at, charges.income_by_unit)
    granted = await granted_this_year(session, period.year, kind="subsidy", exclude_id=settlement.id)
    awarded = await granted_this_year(session, period.year, kind="award", exclude_id=settlement.id)
    controllers = await controllers_granted_this_year(session, period.year, exclude_id=settlement.id)
    inputs = {
        "period": {"label": period.label, "start": period.start.isoformat(), "end": period.end.isoformat()},
        "cutoff_at": settlement.cutoff_at.astimezone(UTC).isoformat(),
        "policy": {"code": policy.code, "version": policy.version, "digest": policy.digest},
        "budgets": {"subsidy": settlement.subsidy_budget_fen, "award": settlement.award_budget_fen},
        "groups": [
            [g.enterprise_id, g.standing.id, g.unit_code, g.relation, g.resource_open, g.charges, g.first_charge_id,
             g.last_service_at.astimezone(UTC).isoformat(), g.paid_fen, g.refunded_fen]
            for g in groups
        ],
        "enterprises": [[e.id, e.uscc, e.name] for e in sorted(enterprises.values(), key=lambda e: e.id)],
        "units": [[u.unit_id, u.unit_code, u.name, u.resources_total, u.resources_open, u.effective_minutes,
                   u.external_minutes, u.enterprises_served, u.rating_sum, u.rating_count, u.external_income_fen]
                  for u in units],
        "granted": sorted(granted.items()),
        "awarded": sorted(awarded.items()),
        "controllers": sorted(controllers.items()),
    }
    return inputs, (period, groups, enterprises, units, granted, awarded, controllers)


async def _compute(session: AsyncSession, settlement: Settlement, policy: PolicyVersion, *, now: datetime) -> None:
    from facility_share.finance import engine as finance_engine

    # The budgets are part of the inputs: fill the policy's prorated ones in first.
    if settlement.subsidy_budget_fen is None or settlement.award_budget_fen is None:
        subsidy_default, award_default = finance_engine.default_budgets(policy.document, period_of(settlement))
        if settlement.subsidy_budget_fen is None:
            settlement.subsidy_budget_fen = subsidy_default
        if settlement.award_budget_fen is None:
            settlement.award_budget_fen = award_default
    # No cyclic collection from the first fact to the last line: the facts are a few hundred
    # thousand small acyclic objects, and each full collection triggered while they pile up
    # walked them all for nothing (70 ms of a year's settlement). Other requests served
    # meanwhile keep their cycles until the end, a second or two later.
    with facts.paused_gc():
        inputs, gathered = await _gather(session, settlement, policy)
        result = finance_engine.compute(policy.document, settlement, *gathered)
        inputs_digest, results_digest = digest(inputs), digest(result.lines)
        rows = [{"settlement_id": settlement.id, **row} for row in result.lines]
    await session.execute(delete(SettlementLine).where(SettlementLine.settlement_id == settlement.id))
    # One multi-row INSERT per batch rather than a unit of work over thousands of objects.
    if rows:
        await session.execute(insert(SettlementLine), rows)
    settlement.subsidy_total_fen = result.subsidy_total_fen
    settlement.award_total_fen = result.award_total_fen
    settlement.inputs_digest = inputs_digest
    settlement.results_digest = results_digest
    settlement.computed_at = now
    await session.flush()


# --- export -------------------------------------------------------------------------------------

CSV_COLUMNS = ("kind", "position", "subject_code", "subject_name", "category", "basis_fen", "before_budget_fen",
               "adjustment_fen", "amount_fen", "flags")


def lines_csv(settlement: Settlement, policy: PolicyVersion, lines: list[SettlementLine], *, locale: str = "zh_CN") -> bytes:
    """The lines as CSV (UTF-8 with BOM for Excel); the same lines give the same bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["settlement", settlement.id, settlement.period_label, f"{policy.code}@{policy.version}", settlement.status,
                     settlement.results_digest])
    writer.writerow([*CSV_COLUMNS, "explanation"])
    for item in lines:
        explanation = item.explanation_zh if locale.startswith("zh") else item.explanation_en
        writer.writerow([item.kind, item.position, item.subject_code, item.subject_name, item.category, item.basis_fen,
                         item.before_budget_fen, item.adjustment_fen, item.amount_fen, " ".join(item.flags or []), explanation])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")
