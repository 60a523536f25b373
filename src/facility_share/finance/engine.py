"""From the database's facts to stored settlement lines: the seam between the SQL gathering
(``facts``) and the pure subsidy and award functions.

Nothing here reads the database; ``compute`` is deterministic in its arguments, which is what
makes a recomputed draft byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from facility_share.finance import award as award_rules
from facility_share.finance.explain import explain_both, policy_class_names
from facility_share.finance import subsidy as subsidy_rules
from facility_share.finance.facts import EnterpriseRow, SubsidyGroup, UnitRow
from facility_share.finance.periods import Period
from facility_share.finance.policy import policy_from_document
from facility_share.usage.figures import DISTRICT_ZONE


@dataclass
class Result:
    lines: list[dict[str, Any]] = field(default_factory=list)
    subsidy_total_fen: int = 0
    award_total_fen: int = 0
    subsidy_budget_fen: int = 0
    award_budget_fen: int = 0


def _charge_facts(groups: list[SubsidyGroup]) -> list[subsidy_rules.ChargeFact]:
    out = []
    # One Standing per status version rather than per group (the facts share one StandingRow
    # object per version, so identity is the cheap key).
    standings: dict[int, subsidy_rules.Standing] = {}
    ChargeFact = subsidy_rules.ChargeFact
    for g in groups:
        s = g.standing
        standing = standings.get(id(s))
        if standing is None:
            standing = standings[id(s)] = subsidy_rules.Standing(
                registered_in_district=s.registered_in_district, verified=s.verified, tech_sme=s.tech_sme, hnte=s.hnte,
                tier=s.tier, controller=s.controller,
            )
        out.append(
            ChargeFact(
                g.first_charge_id, g.enterprise_id, g.last_service_at.astimezone(DISTRICT_ZONE).date(), g.paid_fen,
                g.refunded_fen, "", g.unit_code, g.resource_open, g.relation, standing, g.charges,
            )
        )
    return out


def default_budgets(document: dict[str, Any], period: Period) -> tuple[int, int]:
    """The policy's yearly budgets prorated to the period (subsidy, award), in fen."""
    policy = policy_from_document(document, f"{document.get('code')}@{document.get('version')}")
    return policy.subsidy_budget_fen(period), policy.award_budget_fen(period)


def compute(
    document: dict[str, Any],
    settlement: Any,
    period: Period,
    groups: list[SubsidyGroup],
    enterprises: dict[int, EnterpriseRow],
    units: list[UnitRow],
    granted: dict[int, int],
    awarded: dict[int, int],
    controllers: dict[str, int],
) -> Result:
    policy = policy_from_document(document, f"{document.get('code')}@{document.get('version')}")
    result = Result()

    facts = {
        e.id: subsidy_rules.EnterpriseFact(enterprise_id=e.id, uscc=e.uscc, name=e.name, granted_this_year_fen=granted.get(e.id, 0))
        for e in enterprises.values()
    }
    result.subsidy_budget_fen = (
        settlement.subsidy_budget_fen if settlement.subsidy_budget_fen is not None else policy.subsidy_budget_fen(period)
    )
    subsidy_lines = subsidy_rules.compute_subsidies(
        policy, period, _charge_facts(groups), facts, budget_fen=result.subsidy_budget_fen, controllers=controllers
    )
    class_names = policy_class_names(policy)
    for position, line in enumerate(subsidy_lines, start=1):
        explanation_zh, explanation_en = explain_both(line.steps, class_names=class_names)
        result.lines.append({
            "kind": "subsidy", "position": position, "subject_id": line.enterprise_id, "subject_code": line.uscc,
            "subject_name": line.name, "category": line.enterprise_class, "basis_fen": line.eligible_spend_fen,
            "before_budget_fen": line.before_budget_fen, "adjustment_fen": 0, "amount_fen": line.amount_fen,
            "flags": list(line.flags),
            "figures": {**plain(line.figures()), "granted_this_year_fen": granted.get(line.enterprise_id, 0)},
            # The subsidy's steps are JSON-ready as made (subsidy.py): no copy of every value.
            "steps": list(line.steps),
            "explanation_zh": explanation_zh, "explanation_en": explanation_en,
        })
        result.subsidy_total_fen += line.amount_fen

    unit_facts = [
        award_rules.UnitFact(
            unit_id=u.unit_id, unit_code=u.unit_code, name=u.name, resources_total=u.resources_total,
            resources_open=u.resources_open, effective_minutes=u.effective_minutes, external_minutes=u.external_minutes,
            enterprises_served=u.enterprises_served, rating_sum=u.rating_sum, rating_count=u.rating_count,
            external_income_fen=u.external_income_fen, awarded_this_year_fen=awarded.get(u.unit_id, 0),
        )
        for u in units
    ]
    result.award_budget_fen = (
        settlement.award_budget_fen if settlement.award_budget_fen is not None else policy.award_budget_fen(period)
    )
    award_lines = award_rules.compute_awards(policy, period, unit_facts, budget_fen=result.award_budget_fen)
    for position, line in enumerate(award_lines, start=1):
        result.lines.append(_award_line(position, line, awarded, policy))
        result.award_total_fen += line.amount_fen
    return result


_PLAIN_SCALARS = frozenset({str, int, bool, float, type(None)})


def plain(value: Any) -> Any:
    """JSON-ready: Decimal and Fraction as exact text, containers recursively."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (Decimal, Fraction)):
        return str(value)
    return value


def _award_line(position: int, line: award_rules.AwardLine, awarded: dict[int, int], policy: Any) -> dict[str, Any]:
    figures = {**plain(line.figures()), "awarded_this_year_fen": awarded.get(line.unit_id, 0)}
    explanation_zh, explanation_en = explain_both(line.steps)
    return {
        "kind": "award", "position": position, "subject_id": line.unit_id, "subject_code": line.unit_code,
        "subject_name": line.name, "category": line.grade, "basis_fen": line.base_fen,
        "before_budget_fen": line.before_budget_fen, "adjustment_fen": 0, "amount_fen": line.amount_fen,
        "flags": list(line.flags), "figures": figures, "steps": plain(list(line.steps)),
        "explanation_zh": explanation_zh, "explanation_en": explanation_en,
    }
