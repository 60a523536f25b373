"""The managing-unit award: hand-computed scores at every grade boundary, caps, rounding,
a unit without ratings or open resources, benchmarks prorated for a short period, the
budget, and properties.

Default policy: organisation 20, operation 40 (1,599 h), sharing 15 (273 h) + 10 (16 %) + 5
(10 enterprises) + 10 (rating; none: 5); 优秀 ≥ 90 ×1.0, 良好 ≥ 75 ×0.7, 合格 ≥ 60 ×0.3, 较差 0 and
rectification; award = min(500,000 yuan − awarded this year, 40 % × external income) × multiplier.

In a whole year (365 days) with one resource open of one, full sharing parts (external hours
≥ 273 h, sharing rate ≥ 16 %, 10 enterprises) and all ratings 5, the score is 60 + operation,
and operation = 40 × minutes ÷ (60 × 1,599) = minutes ÷ 2,398.5.
"""

from __future__ import annotations

import json
import random
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facility_share.errors import InvalidInput
from facility_share.finance.award import UnitFact, compute_awards
from facility_share.finance.explain import explain_award, explain_en, explain_zh
from facility_share.finance.policy import Period, load_policy_file

ROOT = Path(__file__).resolve().parent.parent
POLICY = load_policy_file(ROOT / "catalog" / "policies" / "wuqing-default.toml").policy
YEAR = Period(date(2026, 1, 1), date(2027, 1, 1), "2026", "year")
Q3 = Period(date(2026, 7, 1), date(2026, 10, 1), "2026-Q3", "quarter")
UNLIMITED = 10**12
YUAN = 100


def unit(code: str = "WQ-TJMAT", *, unit_id: int = 1, total: int = 1, open_: int = 1, effective: int = 0,
         external: int = 0, enterprises: int = 10, ratings: tuple[int, int] = (50, 10), income_fen: int = 0,
         awarded_fen: int = 0) -> UnitFact:
    return UnitFact(unit_id=unit_id, unit_code=code, name=f"单位 {code}", resources_total=total, resources_open=open_,
                    effective_minutes=effective, external_minutes=external, enterprises_served=enterprises,
                    rating_sum=ratings[0], rating_count=ratings[1], external_income_fen=income_fen,
                    awarded_this_year_fen=awarded_fen)


FULL_SHARING = 273 * 60  # external minutes for 273 h on one resource


@pytest.mark.parametrize(("fact", "score", "grade", "amount"), [
    # 60 + 71,955 / 2,398.5 = 90 exactly → 优秀; 400,000 yuan × 1.0.
    (unit(effective=71_955, external=FULL_SHARING, income_fen=1_000_000 * YUAN), "90.00", "excellent", 400_000 * YUAN),
    # 60 + 71,920 / 2,398.5 = 89.98541 → 89.99 → 良好 (× 0.7).
    (unit(effective=71_920, external=FULL_SHARING, income_fen=1_000_000 * YUAN), "89.99", "good", 280_000 * YUAN),
    # Two open resources: operation = minutes ÷ 4,797; 71,955 → 15 → 75.00 → 良好.
    (unit(total=2, open_=2, effective=71_955, external=2 * FULL_SHARING, income_fen=1_000_000 * YUAN),
     "75.00", "good", 280_000 * YUAN),
    # 71,900 / 4,797 = 14.98853 → 74.99 → 合格 (× 0.3).
    (unit(total=2, open_=2, effective=71_900, external=2 * FULL_SHARING, income_fen=1_000_000 * YUAN),
     "74.99", "pass", 120_000 * YUAN),
    # All ratings 1 (rating 0): 50 + minutes / 2,398.5; 23,985 → 60.00 → 合格.
    (unit(effective=23_985, external=FULL_SHARING, ratings=(10, 10), income_fen=1_000_000 * YUAN),
     "60.00", "pass", 120_000 * YUAN),
    # 23,960 → 59.98957 → 59.99 → 较差: nothing, and rectification.
    (unit(effective=23_960, external=FULL_SHARING, ratings=(10, 10), income_fen=1_000_000 * YUAN),
     "59.99", "poor", 0),
])
def test_grade_boundaries(fact: UnitFact, score: str, grade: str, amount: int) -> None:
    line = compute_awards(POLICY, YEAR, [fact], budget_fen=UNLIMITED)[0]
    assert f"{line.score:.2f}" == score
    assert line.grade == grade
    assert line.amount_fen == line.before_budget_fen == amount
    assert ("rectification" in line.flags) == (grade == "poor")


def test_the_failing_grade_is_flagged_for_rectification_with_its_names() -> None:
    line = compute_awards(POLICY, YEAR, [unit(effective=100, external=100, enterprises=0, ratings=(1, 1),
                                              income_fen=50_000 * YUAN)], budget_fen=UNLIMITED)[0]
    assert (line.grade, line.grade_zh, line.grade_en, line.amount_fen) == ("poor", "较差", "Poor", 0)
    assert line.flags == ("rectification",)
    assert "不予奖励（0.00 元），并责令整改" in explain_zh(line.steps)


def test_award_cap_and_what_was_awarded_earlier_in_the_year() -> None:
    excellent = dict(effective=80_000, external=FULL_SHARING)
    # 2,000,000 yuan of income → 800,000 base, capped at 500,000.
    line = compute_awards(POLICY, YEAR, [unit(**excellent, income_fen=2_000_000 * YUAN)], budget_fen=UNLIMITED)[0]
    assert line.grade == "excellent" and line.amount_fen == 500_000 * YUAN and line.flags == ("award_cap",)
    # 300,000 already awarded this year: 200,000 left, × 0.7 for 良好.
    good = unit(effective=71_920, external=FULL_SHARING, income_fen=2_000_000 * YUAN, awarded_fen=300_000 * YUAN)
    line = compute_awards(POLICY, YEAR, [good], budget_fen=UNLIMITED)[0]
    assert line.grade == "good" and line.amount_fen == 140_000 * YUAN
    cap = next(s for s in line.steps if s["rule"] == "award_cap")["values"]
    assert cap["remaining_fen"] == 200_000 * YUAN and cap["applied"] is True
    # More awarded than the cap: nothing left, never negative.
    line = compute_awards(POLICY, YEAR, [unit(**excellent, income_fen=10 * YUAN, awarded_fen=600_000 * YUAN)],
                          budget_fen=UNLIMITED)[0]
    assert line.amount_fen == 0


def test_the_award_is_rounded_half_up_once() -> None:
    # 1,234,567 fen × 40 % = 493,826.8; × 0.7 = 345,678.76 → 345,679 (rounding the base first
    # would give 493,827 × 0.7 = 345,678.9 → 345,679 too, but 0.3 shows the difference:
    # 493,826.8 × 0.3 = 148,148.04 → 148,148; 493,827 × 0.3 = 148,148.1 → 148,148).
    good = unit(effective=71_920, external=FULL_SHARING, income_fen=1_234_567)
    assert compute_awards(POLICY, YEAR, [good], budget_fen=UNLIMITED)[0].amount_fen == 345_679
    # 5 fen × 40 % = 2 fen; × 0.3 = 0.6 → 1 fen.
    passing = unit(effective=23_985, external=FULL_SHARING, ratings=(10, 10), income_fen=5)
    assert compute_awards(POLICY, YEAR, [passing], budget_fen=UNLIMITED)[0].amount_fen == 1


def test_a_unit_with_no_ratings_gets_five_points_for_them() -> None:
    rated = compute_awards(POLICY, YEAR, [unit(effective=71_955, external=FULL_SHARING, ratings=(30, 10))],
                           budget_fen=UNLIMITED)[0]
    unrated = compute_awards(POLICY, YEAR, [unit(effective=71_955, external=FULL_SHARING, ratings=(0, 0))],
                             budget_fen=UNLIMITED)[0]
    # Average 3 is worth 10 × (3 − 1) ÷ 4 = 5 points: the same as no ratings.
    assert rated.score_parts["rating"] == unrated.score_parts["rating"] == Decimal(5)
    assert rated.score == unrated.score == Decimal("85.00")
    assert unrated.flags == ("no_ratings",) and "no_ratings" not in rated.flags
    assert "本期没有用户评价：评价项计 5 分。" in explain_zh(unrated.steps)


def test_a_unit_with_no_open_resources_scores_only_what_it_can() -> None:
    closed = compute_awards(POLICY, YEAR, [unit(total=3, open_=0, ratings=(0, 0), enterprises=0, income_fen=0)],
                            budget_fen=UNLIMITED)[0]
    assert closed.score == Decimal("0.00") and closed.grade == "poor" and closed.amount_fen == 0
    assert closed.flags == ("no_open_resources", "rectification")
    assert all(value == 0 for value in closed.score_parts.values())
    empty = compute_awards(POLICY, YEAR, [unit(total=0, open_=0, ratings=(0, 0), enterprises=0)], budget_fen=UNLIMITED)[0]
    assert empty.score == Decimal("0.00")
    # Open resources but no use at all: no division by zero effective hours.
    idle = compute_awards(POLICY, YEAR, [unit(ratings=(0, 0), enterprises=0)], budget_fen=UNLIMITED)[0]
    assert idle.score_parts["sharing_rate"] == 0 and idle.score == Decimal("25.00")  # 20 + 5 for no ratings


def test_a_short_period_prorates_the_count_benchmarks_not_the_rate() -> None:
    # Q3 is 92 days. One of two resources open; 200 effective and 50 external hours; 2
    # enterprises; three ratings averaging 4; 10,000 yuan of external income.
    fact = unit(total=2, open_=1, effective=200 * 60, external=50 * 60, enterprises=2, ratings=(12, 3),
                income_fen=10_000 * YUAN)
    line = compute_awards(POLICY, Q3, [fact], budget_fen=UNLIMITED)[0]
    f = Fraction(92, 365)
    expected = {
        "organisation": Fraction(20 * 1, 2),  # 10
        "operation": 40 * Fraction(200) / (1599 * f),  # 19.8494
        "sharing_hours": 15 * Fraction(50) / (273 * f),  # 10.8994
        "sharing_rate": Fraction(10),  # 25 % ≥ 16 %: full
        "enterprises": 5 * Fraction(2) / (10 * f),  # 3.9674 (benchmark 2.52)
        "rating": 10 * Fraction(4 - 1, 4),  # 7.5
    }
    exact = sum(expected.values())
    assert round(float(exact), 4) == 62.2162
    assert line.score == Decimal("62.22") and line.grade == "pass"
    assert line.score_parts["operation"] == Decimal("19.8494")
    assert line.amount_fen == 1_200 * YUAN  # 4,000 × 0.3
    operation = next(s for s in line.steps if s["rule"] == "score_operation")["values"]
    assert operation["benchmark_hours"] == "403.04" and operation["days"] == 92
    assert "基准 1599 小时 × 92/365 = 403.04 小时" in explain_zh(line.steps)
    assert "benchmark 10 × 92/365 = 2.52" in explain_en(line.steps)
    # The same figures over a whole year are much weaker against the full benchmarks.
    assert compute_awards(POLICY, YEAR, [fact], budget_fen=UNLIMITED)[0].score < line.score


def test_budget_scaling_sums_exactly_and_ties_go_to_the_lower_unit_code() -> None:
    excellent = dict(effective=80_000, external=FULL_SHARING, income_fen=250 * YUAN)  # 100 yuan each
    units = [unit("WQ-B", unit_id=2, **excellent), unit("WQ-A", unit_id=1, **excellent),
             unit("WQ-C", unit_id=3, **excellent)]
    lines = compute_awards(POLICY, YEAR, units, budget_fen=10_000)
    assert [line.unit_code for line in lines] == ["WQ-A", "WQ-B", "WQ-C"]
    assert [line.amount_fen for line in lines] == [3_334, 3_333, 3_333]
    assert all("budget_scaled" in line.flags for line in lines)
    # The default budget: 3,000,000 yuan a year, prorated by days.
    line = compute_awards(POLICY, Q3, units[:1])[0]
    assert next(s for s in line.steps if s["rule"] == "budget")["values"]["budget_fen"] == 75_616_438


def test_lines_carry_figures_and_explanations() -> None:
    line = compute_awards(POLICY, YEAR, [unit(effective=71_955, external=FULL_SHARING, income_fen=1_000_000 * YUAN)],
                          budget_fen=UNLIMITED)[0]
    figures = line.figures()
    assert figures["score"] == "90.00" and figures["grade_zh"] == "优秀" and figures["base_fen"] == 400_000 * YUAN
    assert json.loads(json.dumps(line.as_dict(), ensure_ascii=False))["amount_fen"] == 400_000 * YUAN
    assert (line.subject_code, line.category, line.basis_fen) == ("WQ-TJMAT", "excellent", 1_000_000 * YUAN)
    zh = explain_award(line, "zh_CN", POLICY)
    assert "评价等级：优秀（90 分及以上），奖励系数 1。" in zh
    assert "奖励基数：对外服务收入 1,000,000.00 元 × 40% = 400,000.00 元。" in zh
    assert "总分 90 分，四舍五入保留两位小数为 90.00 分。" in zh
    en = explain_award(line, "en")
    assert "Grade: Excellent (90 points or more), award multiplier 1." in en


@pytest.mark.parametrize(("fact", "message"), [
    (unit(open_=2, total=1), "open resources but only"),
    (unit(effective=-1), "must not be negative"),
    (unit(ratings=(60, 10)), "cannot sum to 60"),
    (unit(ratings=(5, 10)), "cannot sum to 5"),
])
def test_bad_figures_are_refused(fact: UnitFact, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        compute_awards(POLICY, YEAR, [fact], budget_fen=UNLIMITED)


def test_a_unit_passed_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="passed twice"):
        compute_awards(POLICY, YEAR, [unit(), unit(unit_id=2)], budget_fen=UNLIMITED)


# --- properties -----------------------------------------------------------------------------


@st.composite
def unit_facts(draw, code: str, unit_id: int):  # type: ignore[no-untyped-def]
    total = draw(st.integers(min_value=0, max_value=30))
    open_ = draw(st.integers(min_value=0, max_value=total))
    effective = draw(st.sampled_from((0, 60, 6_000, 100_000, 3_000_000)) | st.integers(min_value=0, max_value=10**7))
    external = draw(st.integers(min_value=0, max_value=effective))
    count = draw(st.integers(min_value=0, max_value=50))
    rating_sum = draw(st.integers(min_value=count, max_value=5 * count))
    return UnitFact(unit_id, code, code, total, open_, effective, external, draw(st.integers(min_value=0, max_value=40)),
                    rating_sum, count, draw(st.sampled_from((0, 10**6, 10**8, 2 * 10**8)) | st.integers(0, 10**9)),
                    draw(st.sampled_from((0, 0, 20_000_000, 49_999_999, 60_000_000))))


@st.composite
def award_scenarios(draw):  # type: ignore[no-untyped-def]
    count = draw(st.integers(min_value=0, max_value=8))
    units = [draw(unit_facts(f"WQ-U{n:02d}", n)) for n in range(count)]
    period = draw(st.sampled_from((YEAR, Q3, Period(date(2026, 2, 1), date(2026, 3, 1), "2026-02", "month"))))
    budget = draw(st.sampled_from((0, 1, 10_000_000, 10**12)) | st.integers(min_value=0, max_value=10**8))
    return units, period, budget


PROPERTY_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(award_scenarios())
def test_award_properties(scenario) -> None:  # type: ignore[no-untyped-def]
    units, period, budget = scenario
    lines = compute_awards(POLICY, period, units, budget_fen=budget)
    by_code = {u.unit_code: u for u in units}
    for line in lines:
        fact = by_code[line.unit_code]
        assert Decimal(0) <= line.score <= Decimal(100)
        assert line.grade == POLICY.award.grade_for(line.score).code
        cap_left = max(0, POLICY.award.cap_per_unit_year_fen - fact.awarded_this_year_fen)
        assert 0 <= line.amount_fen <= line.before_budget_fen <= cap_left
        assert line.before_budget_fen <= -(-fact.external_income_fen * 40 // 100)  # ≤ 40 % of income (rounded up)
        if line.grade == "poor":
            assert line.before_budget_fen == 0 and "rectification" in line.flags
    assert sum(line.amount_fen for line in lines) == min(budget, sum(line.before_budget_fen for line in lines))


@PROPERTY_SETTINGS
@given(award_scenarios(), st.randoms(use_true_random=False))
def test_awards_do_not_depend_on_input_order(scenario, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    units, period, budget = scenario
    first = compute_awards(POLICY, period, units, budget_fen=budget)
    shuffled = list(units)
    rnd.shuffle(shuffled)
    again = compute_awards(POLICY, period, shuffled, budget_fen=budget)
    assert json.dumps([l.as_dict() for l in again], sort_keys=True) == json.dumps(
        [l.as_dict() for l in first], sort_keys=True)
