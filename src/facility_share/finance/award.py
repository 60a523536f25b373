"""The managing-unit award (对相关管理单位给予奖励) as a pure function.

Per unit, over its resources open for sharing and the services completed in the period:

**Score** (100 points, weights and benchmarks from the policy; default in brackets)::

    organisation   w_org  [20] × open resources ÷ all the unit's resources
    operation      w_op   [40] × min(1, avg effective hours per open resource ÷ (B_eff [1,599 h] × f))
    sharing hours  w_hrs  [15] × min(1, avg external hours per open resource ÷ (B_ext [273 h] × f))
    sharing rate   w_rate [10] × min(1, (external ÷ effective hours) ÷ B_rate [16 %])
    enterprises    w_ent   [5] × min(1, distinct enterprises served ÷ (B_ent [10] × f))
    rating         w_rat  [10] × (average rating − 1) ÷ (5 − 1); no ratings: [5] points

with f = days in the period ÷ 365 (the sharing-rate benchmark is not prorated). Every part is
computed exactly; the total is rounded half up to two decimals, then graded by the policy's
thresholds (89.99 is 良好, 90.00 is 优秀).

A unit with no open resources has nothing shared to evaluate: every part is 0 (the division by
zero open resources is never made) and it is flagged ``no_open_resources``. No effective hours:
the sharing rate part is 0.

**Award** = min(cap − awarded this year, base rate × external income) × grade multiplier,
rounded half up to the fen once; the failing grade (``rectification``) gets 0 and the
``rectification`` flag. Then the budget: if the lines exceed it, all scale pro rata (largest
remainder, ties to the lower unit code) to sum exactly to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from facility_share.errors import InvalidInput
from facility_share.finance.allocation import limit_total
from facility_share.finance.policy import (
    BENCHMARK_YEAR_DAYS,
    Period,
    Policy,
    decimal_text,
    round_half_up,
    round_half_up_2,
)

SCORE_PARTS = ("organisation", "operation", "sharing_hours", "sharing_rate", "enterprises", "rating")
FLAGS = ("no_open_resources", "no_ratings", "award_cap", "rectification", "budget_scaled")


@dataclass(frozen=True, slots=True)
class UnitFact:
    """A managing unit's figures for the period, over its open resources.

    Effective minutes count all usage; external minutes, external income (paid net of
    refunds) and enterprises served count only enterprises neither internal nor related to
    the unit; ratings are those of the period's services.
    """

    unit_id: int
    unit_code: str
    name: str
    resources_total: int
    resources_open: int
    effective_minutes: int
    external_minutes: int
    enterprises_served: int
    rating_sum: int
    rating_count: int
    external_income_fen: int
    # Awarded by approved settlements of the same calendar year (earlier periods).
    awarded_this_year_fen: int


@dataclass(frozen=True)
class AwardLine:
    """One unit's award for the period, with its score, grade and steps."""

    unit_id: int
    unit_code: str
    name: str
    score_parts: dict[str, Decimal]  # points per part, rounded half up to 4 decimals for display
    score: Decimal  # rounded half up to 2 decimals; what the grade is read from
    grade: str  # the grade's code
    grade_zh: str
    grade_en: str
    multiplier: Decimal
    base_fen: int  # base rate × external income, rounded half up (for display; the award uses it exactly)
    before_budget_fen: int
    amount_fen: int
    flags: tuple[str, ...]
    unit_figures: dict[str, Any] = field(repr=False)
    steps: tuple[dict[str, Any], ...] = field(repr=False)

    kind = "award"

    @property
    def subject_id(self) -> int:
        return self.unit_id

    @property
    def subject_code(self) -> str:
        return self.unit_code

    @property
    def subject_name(self) -> str:
        return self.name

    @property
    def category(self) -> str:
        return self.grade

    @property
    def basis_fen(self) -> int:
        return int(self.unit_figures["external_income_fen"])

    def figures(self) -> dict[str, Any]:
        """The unit's figures, score parts and grade, JSON-ready (for ``settlement_lines.figures``)."""
        return {
            **self.unit_figures,
            "score_parts": {name: decimal_text(value) for name, value in self.score_parts.items()},
            "score": f"{self.score:.2f}",
            "grade": self.grade,
            "grade_zh": self.grade_zh,
            "grade_en": self.grade_en,
            "multiplier": decimal_text(self.multiplier),
            "base_fen": self.base_fen,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "unit_id": self.unit_id,
            "unit_code": self.unit_code,
            "name": self.name,
            **self.figures(),
            "before_budget_fen": self.before_budget_fen,
            "amount_fen": self.amount_fen,
            "flags": list(self.flags),
            "steps": [dict(step) for step in self.steps],
        }


def _check(unit: UnitFact, policy: Policy) -> None:
    where = f"unit {unit.unit_code}"
    for name in ("resources_total", "resources_open", "effective_minutes", "external_minutes",
                 "enterprises_served", "rating_sum", "rating_count", "external_income_fen", "awarded_this_year_fen"):
        if getattr(unit, name) < 0:
            raise InvalidInput(f"{where}: {name} must not be negative, got {getattr(unit, name)}")
    if unit.resources_open > unit.resources_total:
        raise InvalidInput(f"{where}: {unit.resources_open} open resources but only {unit.resources_total} in all")
    low, high = policy.award.rating.scale_min, policy.award.rating.scale_max
    if not low * unit.rating_count <= unit.rating_sum <= high * unit.rating_count:
        raise InvalidInput(f"{where}: {unit.rating_count} ratings cannot sum to {unit.rating_sum} "
                           f"on a {low}–{high} scale")


def _ratio(numerator: Fraction, denominator: Fraction) -> Fraction:
    """min(1, numerator ÷ denominator) for a positive denominator."""
    return min(Fraction(1), numerator / denominator)


def _score(policy: Policy, period: Period, unit: UnitFact, steps: list[dict[str, Any]],
           flags: set[str]) -> dict[str, Fraction]:
    rules = policy.award
    weights, bench = rules.weights, rules.benchmarks
    factor = Fraction(period.days, BENCHMARK_YEAR_DAYS)
    w = {name: Fraction(getattr(weights, name)) for name in SCORE_PARTS}
    parts: dict[str, Fraction] = dict.fromkeys(SCORE_PARTS, Fraction(0))
    open_count = unit.resources_open

    share_open = Fraction(open_count, unit.resources_total) if unit.resources_total else Fraction(0)
    parts["organisation"] = w["organisation"] * share_open
    steps.append({"rule": "score_organisation", "values": {
        "resources_open": open_count, "resources_total": unit.resources_total,
        "weight": decimal_text(w["organisation"]), "points": decimal_text(parts["organisation"])}})

    if open_count == 0:
        flags.add("no_open_resources")
        steps.append({"rule": "score_no_open_resources", "values": {
            "weight": decimal_text(sum(w[name] for name in SCORE_PARTS[1:]))}})
        return parts

    effective_hours = Fraction(unit.effective_minutes, 60)
    external_hours = Fraction(unit.external_minutes, 60)
    avg_effective = effective_hours / open_count
    avg_external = external_hours / open_count
    bench_effective = Fraction(bench.effective_hours_per_resource) * factor
    bench_external = Fraction(bench.external_hours_per_resource) * factor
    bench_enterprises = Fraction(bench.enterprises_served) * factor
    bench_rate = Fraction(bench.sharing_rate_percent) / 100

    parts["operation"] = w["operation"] * _ratio(avg_effective, bench_effective)
    steps.append({"rule": "score_operation", "values": {
        "effective_hours": decimal_text(effective_hours, 2), "resources_open": open_count,
        "average_hours": decimal_text(avg_effective, 2), "benchmark_year_hours": decimal_text(bench.effective_hours_per_resource),
        "benchmark_hours": decimal_text(bench_effective, 2),
        "days": period.days, "weight": decimal_text(w["operation"]), "points": decimal_text(parts["operation"])}})

    parts["sharing_hours"] = w["sharing_hours"] * _ratio(avg_external, bench_external)
    steps.append({"rule": "score_sharing_hours", "values": {
        "external_hours": decimal_text(external_hours, 2), "resources_open": open_count,
        "average_hours": decimal_text(avg_external, 2), "benchmark_year_hours": decimal_text(bench.external_hours_per_resource),
        "benchmark_hours": decimal_text(bench_external, 2),
        "days": period.days, "weight": decimal_text(w["sharing_hours"]),
        "points": decimal_text(parts["sharing_hours"])}})

    rate = Fraction(unit.external_minutes, unit.effective_minutes) if unit.effective_minutes else Fraction(0)
    parts["sharing_rate"] = w["sharing_rate"] * _ratio(rate, bench_rate)
    steps.append({"rule": "score_sharing_rate", "values": {
        "external_hours": decimal_text(external_hours, 2), "effective_hours": decimal_text(effective_hours, 2),
        "rate_percent": decimal_text(rate * 100, 2), "benchmark_percent": decimal_text(bench_rate * 100),
        "weight": decimal_text(w["sharing_rate"]), "points": decimal_text(parts["sharing_rate"])}})

    parts["enterprises"] = w["enterprises"] * _ratio(Fraction(unit.enterprises_served), bench_enterprises)
    steps.append({"rule": "score_enterprises", "values": {
        "enterprises": unit.enterprises_served, "benchmark_year": decimal_text(bench.enterprises_served),
        "benchmark": decimal_text(bench_enterprises, 2), "days": period.days,
        "weight": decimal_text(w["enterprises"]), "points": decimal_text(parts["enterprises"])}})

    low, high = rules.rating.scale_min, rules.rating.scale_max
    if unit.rating_count:
        average = Fraction(unit.rating_sum, unit.rating_count)
        parts["rating"] = w["rating"] * (average - low) / (high - low)
        steps.append({"rule": "score_rating", "values": {
            "ratings": unit.rating_count, "average": decimal_text(average, 2), "scale_min": low, "scale_max": high,
            "weight": decimal_text(w["rating"]), "points": decimal_text(parts["rating"])}})
    else:
        flags.add("no_ratings")
        parts["rating"] = Fraction(rules.rating.points_without_ratings)
        steps.append({"rule": "score_no_ratings", "values": {"points": decimal_text(parts["rating"])}})
    return parts


def _award_line(policy: Policy, period: Period, unit: UnitFact) -> tuple[AwardLine, set[str], list[dict[str, Any]]]:
    rules = policy.award
    steps: list[dict[str, Any]] = []
    flags: set[str] = set()
    parts = _score(policy, period, unit, steps, flags)
    exact = sum(parts.values(), Fraction(0))
    score = round_half_up_2(exact)
    grade = rules.grade_for(score)
    steps.append({"rule": "score", "values": {"exact": decimal_text(exact, 6), "score": f"{score:.2f}"}})
    steps.append({"rule": "grade", "values": {
        "score": f"{score:.2f}", "grade": grade.code, "grade_zh": grade.name_zh, "grade_en": grade.name_en,
        "min_score": decimal_text(grade.min_score), "multiplier": decimal_text(grade.multiplier),
        "rectification": grade.rectification}})

    base = Fraction(unit.external_income_fen) * Fraction(rules.base_rate_percent) / 100
    cap = rules.cap_per_unit_year_fen
    remaining = max(0, cap - unit.awarded_this_year_fen)
    capped = min(base, Fraction(remaining))
    steps.append({"rule": "award_base", "values": {
        "external_income_fen": unit.external_income_fen, "rate_percent": decimal_text(rules.base_rate_percent),
        "base_exact_fen": decimal_text(base, 6)}})
    cap_applied = base > remaining
    if cap_applied:
        flags.add("award_cap")
    steps.append({"rule": "award_cap", "values": {
        "cap_fen": cap, "awarded_this_year_fen": unit.awarded_this_year_fen, "remaining_fen": remaining,
        "before_exact_fen": decimal_text(base, 6), "after_exact_fen": decimal_text(capped, 6),
        "applied": cap_applied}})
    if grade.rectification:
        flags.add("rectification")
        amount = 0
        steps.append({"rule": "rectification", "values": {"grade_zh": grade.name_zh, "grade_en": grade.name_en,
                                                          "amount_fen": 0}})
    else:
        amount = round_half_up(capped * Fraction(grade.multiplier))
        steps.append({"rule": "grade_multiplier", "values": {
            "before_exact_fen": decimal_text(capped, 6), "multiplier": decimal_text(grade.multiplier),
            "exact_fen": decimal_text(capped * Fraction(grade.multiplier), 6), "amount_fen": amount}})

    figures = {
        "resources_total": unit.resources_total,
        "resources_open": unit.resources_open,
        "effective_minutes": unit.effective_minutes,
        "external_minutes": unit.external_minutes,
        "enterprises_served": unit.enterprises_served,
        "rating_count": unit.rating_count,
        "rating_sum": unit.rating_sum,
        "external_income_fen": unit.external_income_fen,
        "awarded_this_year_fen": unit.awarded_this_year_fen,
        "days": period.days,
    }
    line = AwardLine(
        unit_id=unit.unit_id, unit_code=unit.unit_code, name=unit.name,
        score_parts={name: Decimal(decimal_text(parts[name])) for name in SCORE_PARTS},
        score=score, grade=grade.code, grade_zh=grade.name_zh, grade_en=grade.name_en,
        multiplier=grade.multiplier, base_fen=round_half_up(base), before_budget_fen=amount, amount_fen=amount,
        flags=(), unit_figures=figures, steps=(),
    )
    return line, flags, steps


def compute_awards(
    policy: Policy,
    period: Period,
    units: Iterable[UnitFact],
    *,
    budget_fen: int | None = None,
) -> list[AwardLine]:
    """Award lines for a period under a policy version, one per unit passed, by unit code.

    Args:
        policy: the version in force.
        period: the settlement period (its days prorate the count benchmarks).
        units: the figures of each managing unit, any order.
        budget_fen: the period's budget; None: the policy's yearly budget prorated by days.

    Raises:
        InvalidInput: a negative figure, more open resources than resources, ratings outside
            the scale, a negative budget, or a unit code passed twice.
    """
    if budget_fen is None:
        budget_fen = policy.award_budget_fen(period)
    if budget_fen < 0:
        raise InvalidInput(f"the award budget must not be negative, got {budget_fen}")
    ordered = sorted(units, key=lambda u: (u.unit_code, u.unit_id))
    codes = [u.unit_code for u in ordered]
    for first, second in zip(codes, codes[1:], strict=False):
        if first == second:
            raise InvalidInput(f"unit {first} is passed twice; pass each unit once")
    drafts = []
    for unit in ordered:
        _check(unit, policy)
        drafts.append(_award_line(policy, period, unit))

    wanted = {line.unit_code: line.before_budget_fen for line, _, _ in drafts}
    total_before = sum(wanted.values())
    amounts, scaled = limit_total(wanted, budget_fen)
    lines = []
    for line, flags, steps in drafts:
        amount = amounts[line.unit_code]
        applied = scaled and line.before_budget_fen > 0
        if applied:
            flags.add("budget_scaled")
        steps.append({"rule": "budget", "values": {
            "budget_fen": budget_fen, "total_before_fen": total_before, "before_fen": line.before_budget_fen,
            "after_fen": amount, "applied": applied}})
        steps.append({"rule": "result", "values": {"amount_fen": amount}})
        lines.append(replace(line, amount_fen=amount, flags=tuple(f for f in FLAGS if f in flags), steps=tuple(steps)))
    return lines
