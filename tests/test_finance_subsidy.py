"""The enterprise subsidy: hand-computed scenarios under the shipped default policy, and its
properties (caps, exact budget, monotonicity, order independence).

Default policy (catalog/policies/wuqing-default.toml): 雏鹰 50 % cap 100,000 yuan; tech SME
40 % cap 200,000; 瞪羚 40 % cap 300,000; 领军培育 / 领军 30 % cap 500,000; one controller's
enterprises share 500,000; minimum claim 100 yuan; 5,000,000 yuan a year.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facility_share.errors import InvalidInput
from facility_share.finance.explain import explain_en, explain_subsidy, explain_zh
from facility_share.finance.policy import Period, load_policy_file, policy_from_document
from facility_share.finance.subsidy import (
    ChargeFact,
    ControllerFact,
    EnterpriseFact,
    Standing,
    SubsidyLine,
    compute_subsidies,
    enterprise_class,
)

ROOT = Path(__file__).resolve().parent.parent
POLICY = load_policy_file(ROOT / "catalog" / "policies" / "wuqing-default.toml").policy
Q1 = Period(date(2026, 1, 1), date(2026, 4, 1), "2026-Q1", "quarter")
Q2 = Period(date(2026, 4, 1), date(2026, 7, 1), "2026-Q2", "quarter")
Q3 = Period(date(2026, 7, 1), date(2026, 10, 1), "2026-Q3", "quarter")
UNLIMITED = 10**12
YUAN = 100


def standing(tier: str = "none", *, tech_sme: bool = False, controller: str = "", registered: bool = True,
             verified: bool = True) -> Standing:
    return Standing(registered_in_district=registered, verified=verified, tech_sme=tech_sme, hnte=False,
                    tier=tier, controller=controller)


TECH_SME = standing(tech_sme=True)


def charge(charge_id: int, enterprise_id: int, paid_fen: int, *, day: date = date(2026, 8, 3), refunded_fen: int = 0,
           relation: str = "none", resource_open: bool = True, status: Standing = TECH_SME) -> ChargeFact:
    return ChargeFact(charge_id=charge_id, enterprise_id=enterprise_id, service_date=day, paid_fen=paid_fen,
                      refunded_fen=refunded_fen, resource_code="WQ-TJMAT-SEM01", unit_code="WQ-TJMAT",
                      resource_open=resource_open, relation=relation, standing=status)


def uscc(n: int) -> str:
    return f"91120222MA{n:07d}X"


def enterprise(n: int, granted_fen: int = 0) -> EnterpriseFact:
    return EnterpriseFact(enterprise_id=n, uscc=uscc(n), name=f"企业{n}", granted_this_year_fen=granted_fen)


def one(lines: list[SubsidyLine], n: int) -> SubsidyLine:
    return next(line for line in lines if line.enterprise_id == n)


def rules(lines: SubsidyLine) -> list[str]:
    return [step["rule"] for step in lines.steps]


# --- classes and rates ------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "klass", "amount"), [
    # 10,000.01 yuan of eligible spend at each class's rate, rounded half up once.
    (standing("eaglet"), "eaglet", 500_001),  # 500,000.5 fen
    (standing(tech_sme=True), "tech_sme", 400_000),  # 400,000.4
    (standing("gazelle"), "gazelle", 400_000),
    (standing("leader_candidate"), "leader_candidate", 300_000),  # 300,000.3
    (standing("leader"), "leader", 300_000),
    # The tier decides even when the enterprise is also a tech SME.
    (standing("eaglet", tech_sme=True), "eaglet", 500_001),
])
def test_each_class_has_its_rate(status: Standing, klass: str, amount: int) -> None:
    lines = compute_subsidies(POLICY, Q3, [charge(1, 1, 1_000_001, status=status)], [enterprise(1)], budget_fen=UNLIMITED)
    assert len(lines) == 1
    line = lines[0]
    assert line.enterprise_class == klass
    assert line.eligible_spend_fen == 1_000_001
    assert line.computed_fen == line.before_budget_fen == line.amount_fen == amount
    assert line.flags == ()


def test_enterprise_class_is_tier_then_tech_sme_then_none() -> None:
    assert enterprise_class(standing("gazelle", tech_sme=True)) == "gazelle"
    assert enterprise_class(standing(tech_sme=True)) == "tech_sme"
    assert enterprise_class(standing()) == "none"


def test_an_enterprise_of_no_class_gets_a_line_with_the_reason() -> None:
    lines = compute_subsidies(POLICY, Q3, [charge(1, 1, 500_000, status=standing())], [enterprise(1)], budget_fen=UNLIMITED)
    assert lines[0].amount_fen == 0
    assert lines[0].enterprise_class == "none"
    assert lines[0].flags == ("class_not_eligible", "no_eligible_spend")


def test_rounding_happens_once_per_enterprise_not_per_charge() -> None:
    # Three tech-SME charges of 1.01 yuan, rounded one by one, would give 40 fen each
    # (40.4 → 40) = 120; summed first: 303 fen × 40 % = 121.2 → 121.
    charges = [charge(i, 1, 101) for i in (1, 2, 3)]
    policy = _policy(minimum_claim_yuan=0)
    line = compute_subsidies(policy, Q3, charges, [enterprise(1)], budget_fen=UNLIMITED)[0]
    assert line.computed_fen == 121


# --- annual cap across settlements ----------------------------------------------------------


def test_annual_cap_hit_across_two_settlements_of_one_year() -> None:
    # Q1: 300,000 yuan at 40 % = 120,000 yuan, within the tech-SME cap of 200,000.
    q1 = compute_subsidies(POLICY, Q1, [charge(1, 1, 300_000 * YUAN, day=date(2026, 2, 10))], [enterprise(1)],
                           budget_fen=UNLIMITED)[0]
    assert q1.amount_fen == 120_000 * YUAN
    assert "annual_cap" not in q1.flags
    # Q2: 250,000 yuan → 100,000 computed, but only 80,000 of the cap is left.
    q2 = compute_subsidies(POLICY, Q2, [charge(2, 1, 250_000 * YUAN, day=date(2026, 5, 10))],
                           [enterprise(1, granted_fen=q1.amount_fen)], budget_fen=UNLIMITED)[0]
    assert q2.computed_fen == 100_000 * YUAN
    assert q2.after_annual_cap_fen == q2.amount_fen == 80_000 * YUAN
    assert "annual_cap" in q2.flags
    cap_step = next(s for s in q2.steps if s["rule"] == "annual_cap")["values"]
    assert cap_step == {"class": "tech_sme", "as_of": "2026-05-10", "cap_fen": 200_000 * YUAN,
                        "granted_this_year_fen": 120_000 * YUAN, "remaining_fen": 80_000 * YUAN,
                        "before_fen": 100_000 * YUAN, "after_fen": 80_000 * YUAN, "applied": True}
    # Q3: the cap is used up.
    q3 = compute_subsidies(POLICY, Q3, [charge(3, 1, 10_000 * YUAN)],
                           [enterprise(1, granted_fen=q1.amount_fen + q2.amount_fen)], budget_fen=UNLIMITED)[0]
    assert q3.computed_fen == 4_000 * YUAN and q3.amount_fen == 0 and "annual_cap" in q3.flags


def test_granted_above_the_cap_leaves_nothing_never_a_negative_amount() -> None:
    # Earlier in the year the enterprise was a gazelle (cap 300,000); now a tech SME (200,000).
    line = compute_subsidies(POLICY, Q3, [charge(1, 1, 10_000 * YUAN)], [enterprise(1, granted_fen=250_000 * YUAN)],
                             budget_fen=UNLIMITED)[0]
    assert line.amount_fen == 0
    assert next(s for s in line.steps if s["rule"] == "annual_cap")["values"]["remaining_fen"] == 0


# --- shared controller cap ------------------------------------------------------------------


def test_enterprises_under_one_controller_share_one_cap() -> None:
    zhang = "张三"
    charges = [
        charge(1, 1, 1_000_000 * YUAN, status=standing("leader", controller=zhang)),  # 300,000 yuan
        charge(2, 2, 625_000 * YUAN, status=standing("gazelle", controller=zhang)),  # 250,000
        charge(3, 3, 200_000 * YUAN, status=standing("eaglet", controller=zhang)),  # 100,000 (its cap)
        charge(4, 4, 100_000 * YUAN, status=standing("leader", controller="李四")),  # 30,000, another group
        charge(5, 5, 100_000 * YUAN, status=standing("leader")),  # 30,000, no controller
    ]
    facts = [enterprise(n) for n in range(1, 6)]
    # The group already got 50,000 this year (from an enterprise with no charge this period):
    # 450,000 left for 650,000 asked → pro rata by largest remainder:
    #   1: 45,000,000 × 30/65 = 20,769,230.77   2: × 25/65 = 17,307,692.31   3: × 10/65 = 6,923,076.92
    #   floors sum to 44,999,998; the two fen go to 3 (.92) and 1 (.77).
    lines = compute_subsidies(POLICY, Q3, charges, facts, budget_fen=UNLIMITED,
                              controllers={zhang: ControllerFact(zhang, 50_000 * YUAN)})
    assert [one(lines, n).after_annual_cap_fen for n in (1, 2, 3)] == [30_000_000, 25_000_000, 10_000_000]
    assert [one(lines, n).amount_fen for n in (1, 2, 3)] == [20_769_231, 17_307_692, 6_923_077]
    assert sum(one(lines, n).amount_fen for n in (1, 2, 3)) == 45_000_000
    assert all("controller_cap" in one(lines, n).flags for n in (1, 2, 3))
    assert one(lines, 4).amount_fen == one(lines, 5).amount_fen == 3_000_000
    assert "controller_cap" not in one(lines, 4).flags
    assert "controller_cap" not in rules(one(lines, 5))  # no controller, no shared cap
    step = next(s for s in one(lines, 1).steps if s["rule"] == "controller_cap")["values"]
    assert step["members"] == [uscc(1), uscc(2), uscc(3)]
    assert step["remaining_fen"] == 45_000_000 and step["group_total_fen"] == 65_000_000
    # A plain granted amount works as well as a ControllerFact.
    again = compute_subsidies(POLICY, Q3, charges, facts, budget_fen=UNLIMITED, controllers={zhang: 50_000 * YUAN})
    assert [line.as_dict() for line in again] == [line.as_dict() for line in lines]


def test_a_group_within_its_cap_is_unchanged() -> None:
    charges = [charge(1, 1, 1000 * YUAN, status=standing("leader", controller="王")),
               charge(2, 2, 1000 * YUAN, status=standing("leader", controller="王"))]
    lines = compute_subsidies(POLICY, Q3, charges, [enterprise(1), enterprise(2)], budget_fen=UNLIMITED)
    assert [line.amount_fen for line in lines] == [300 * YUAN, 300 * YUAN]
    assert all("controller_cap" not in line.flags for line in lines)


# --- exclusions -----------------------------------------------------------------------------


def test_related_party_and_internal_use_are_excluded() -> None:
    charges = [
        charge(1, 1, 1000 * YUAN),
        charge(2, 1, 2000 * YUAN, relation="internal"),
        charge(3, 1, 3000 * YUAN, relation="related"),
        charge(4, 1, 3000 * YUAN, relation="related"),
    ]
    line = compute_subsidies(POLICY, Q3, charges, [enterprise(1)], budget_fen=UNLIMITED)[0]
    assert line.eligible_spend_fen == 1000 * YUAN
    assert line.amount_fen == 400 * YUAN
    assert line.charges == 4 and line.eligible_charges == 1
    assert line.flags == ("internal_use", "related_party")
    excluded = {s["values"]["reason"]: s["values"] for s in line.steps if s["rule"] == "excluded"}
    assert excluded["internal_use"] == {"reason": "internal_use", "charges": 1, "net_paid_fen": 2000 * YUAN,
                                        "charge_ids": [2]}
    assert excluded["related_party"]["charge_ids"] == [3, 4]
    assert excluded["related_party"]["net_paid_fen"] == 6000 * YUAN


def test_exclusions_are_policy_flags() -> None:
    policy = _policy(exclusions={"internal_use": False, "related_parties": False, "closed_resources": False})
    charges = [charge(1, 1, 1000 * YUAN, relation="internal"), charge(2, 1, 1000 * YUAN, relation="related"),
               charge(3, 1, 1000 * YUAN, resource_open=False)]
    line = compute_subsidies(policy, Q3, charges, [enterprise(1)], budget_fen=UNLIMITED)[0]
    assert line.eligible_spend_fen == 3000 * YUAN and line.flags == ()


@pytest.mark.parametrize(("fact", "reason"), [
    (charge(1, 1, 1000 * YUAN, status=standing(tech_sme=True, registered=False)), "not_registered"),
    (charge(1, 1, 1000 * YUAN, status=standing(tech_sme=True, verified=False)), "not_verified"),
    (charge(1, 1, 1000 * YUAN, resource_open=False), "resource_not_open"),
    (charge(1, 1, 0), "nothing_paid"),
    (charge(1, 1, 1000 * YUAN, refunded_fen=1000 * YUAN), "nothing_paid"),
])
def test_each_exclusion_gives_a_zero_line_that_says_why(fact: ChargeFact, reason: str) -> None:
    line = compute_subsidies(POLICY, Q3, [fact], [enterprise(1)], budget_fen=UNLIMITED)[0]
    assert line.amount_fen == 0
    assert line.flags == (reason, "no_eligible_spend")
    assert rules(line) == ["charges", "excluded", "no_eligible_spend", "result"]


def test_registration_and_verification_follow_the_policy() -> None:
    policy = _policy(require_registered_in_district=False, require_verified=False)
    fact = charge(1, 1, 1000 * YUAN, status=standing(tech_sme=True, registered=False, verified=False))
    assert compute_subsidies(policy, Q3, [fact], [enterprise(1)], budget_fen=UNLIMITED)[0].amount_fen == 400 * YUAN


def test_a_partly_refunded_charge_counts_net_and_a_fully_refunded_one_not_at_all() -> None:
    charges = [charge(1, 1, 1000 * YUAN, refunded_fen=400 * YUAN),  # 600 net
               charge(2, 1, 500 * YUAN, refunded_fen=500 * YUAN),  # nothing net
               charge(3, 1, 500 * YUAN, refunded_fen=700 * YUAN)]  # refunds above the payment: nothing, never negative
    line = compute_subsidies(POLICY, Q3, charges, [enterprise(1)], budget_fen=UNLIMITED)[0]
    assert line.eligible_spend_fen == 600 * YUAN
    assert line.amount_fen == 240 * YUAN
    assert line.flags == ("nothing_paid",)
    assert next(s for s in line.steps if s["rule"] == "excluded")["values"]["charge_ids"] == [2, 3]


# --- a tier change mid-period ---------------------------------------------------------------


def test_tier_change_mid_period_two_rates_and_the_latest_class_cap() -> None:
    charges = [
        charge(1, 1, 100_000 * YUAN, day=date(2026, 7, 10), status=standing(tech_sme=True)),  # 40 % → 40,000
        charge(2, 1, 200_000 * YUAN, day=date(2026, 9, 1), status=standing("eaglet", tech_sme=True)),  # 50 % → 100,000
        # A later charge that is not eligible does not decide the class.
        charge(3, 1, 50_000 * YUAN, day=date(2026, 9, 20), relation="internal", status=standing("leader")),
    ]
    line = compute_subsidies(POLICY, Q3, charges, [enterprise(1)], budget_fen=UNLIMITED)[0]
    assert [(p.enterprise_class, p.spend_fen) for p in line.parts] == [("eaglet", 200_000 * YUAN),
                                                                       ("tech_sme", 100_000 * YUAN)]
    assert line.computed_fen == 140_000 * YUAN
    # The class in force on the latest eligible service date (1 September: 雏鹰) caps at 100,000.
    assert line.enterprise_class == "eaglet"
    assert line.amount_fen == 100_000 * YUAN
    assert "annual_cap" in line.flags
    # The other way round the latest class is tech SME, capped at 200,000: nothing is cut.
    swapped = [
        charge(1, 1, 100_000 * YUAN, day=date(2026, 9, 1), status=standing(tech_sme=True)),
        charge(2, 1, 200_000 * YUAN, day=date(2026, 7, 10), status=standing("eaglet")),
    ]
    line = compute_subsidies(POLICY, Q3, swapped, [enterprise(1)], budget_fen=UNLIMITED)[0]
    assert line.enterprise_class == "tech_sme" and line.amount_fen == 140_000 * YUAN


# --- minimum claim and budget ---------------------------------------------------------------


def test_minimum_claim() -> None:
    charges = [charge(1, 1, 200 * YUAN), charge(2, 2, 250 * YUAN)]  # 80 yuan (below 100) and 100 yuan
    lines = compute_subsidies(POLICY, Q3, charges, [enterprise(1), enterprise(2)], budget_fen=UNLIMITED)
    assert one(lines, 1).computed_fen == 80 * YUAN and one(lines, 1).amount_fen == 0
    assert one(lines, 1).flags == ("below_minimum",)
    assert one(lines, 2).amount_fen == 100 * YUAN and one(lines, 2).flags == ()


def test_budget_scaling_sums_exactly_to_the_budget() -> None:
    charges = [charge(1, 1, 1000 * YUAN), charge(2, 2, 750 * YUAN), charge(3, 3, 750 * YUAN)]
    facts = [enterprise(n) for n in (1, 2, 3)]
    # 400 + 300 + 300 yuan asked, 500.01 yuan budget: 20,000.4 / 15,000.3 / 15,000.3 fen →
    # floors 50,000, the last fen to the largest remainder (enterprise 1).
    lines = compute_subsidies(POLICY, Q3, charges, facts, budget_fen=50_001)
    assert [line.before_budget_fen for line in lines] == [40_000, 30_000, 30_000]
    assert [line.amount_fen for line in lines] == [20_001, 15_000, 15_000]
    assert sum(line.amount_fen for line in lines) == 50_001
    assert all("budget_scaled" in line.flags for line in lines)
    budget = next(s for s in lines[0].steps if s["rule"] == "budget")["values"]
    assert budget == {"budget_fen": 50_001, "total_before_fen": 100_000, "before_fen": 40_000, "after_fen": 20_001,
                      "applied": True}


def test_the_default_budget_is_the_yearly_one_prorated_by_days() -> None:
    line = compute_subsidies(POLICY, Q3, [charge(1, 1, 1000 * YUAN)], [enterprise(1)])[0]
    budget = next(s for s in line.steps if s["rule"] == "budget")["values"]
    # 5,000,000 yuan × 92 / 365 = 1,260,273.9726 yuan → 126,027,397 fen.
    assert budget["budget_fen"] == 126_027_397
    assert POLICY.subsidy_budget_fen(Period(date(2028, 1, 1), date(2029, 1, 1), "2028", "year")) == 500_000_000
    assert POLICY.subsidy_budget_fen(Period(date(2028, 2, 1), date(2028, 3, 1), "2028-02", "month")) == 39_617_486


# --- shape, order, explanations, bad input ----------------------------------------------------


def test_lines_are_sorted_by_uscc_and_json_ready() -> None:
    charges = [charge(1, 3, 1000 * YUAN), charge(2, 1, 1000 * YUAN), charge(3, 2, 0)]
    facts = {n: enterprise(n) for n in (1, 2, 3, 4)}  # a mapping works; 4 had no charge: no line
    lines = compute_subsidies(POLICY, Q3, charges, facts, budget_fen=UNLIMITED)
    assert [line.uscc for line in lines] == [uscc(1), uscc(2), uscc(3)]
    document = json.dumps([line.as_dict() for line in lines], ensure_ascii=False, sort_keys=True)
    assert json.loads(document)[0]["steps"][-1] == {"rule": "result", "values": {"amount_fen": 400 * YUAN}}
    line = lines[0]
    assert (line.subject_id, line.subject_code, line.subject_name, line.category, line.basis_fen) == (
        1, uscc(1), "企业1", "tech_sme", 1000 * YUAN)


def test_explanations_read_in_chinese_and_english() -> None:
    charges = [charge(1, 1, 100_000 * YUAN, day=date(2026, 7, 10)),
               charge(2, 1, 200_000 * YUAN, day=date(2026, 9, 1), status=standing("eaglet")),
               charge(3, 1, 2_000 * YUAN, relation="related")]
    line = compute_subsidies(POLICY, Q3, charges, [enterprise(1)], budget_fen=UNLIMITED)[0]
    zh, en = explain_zh(line.steps), explain_en(line.steps)
    assert "关联方使用" in zh and "费用编号 3" in zh
    assert "雏鹰企业：1 笔，符合条件支出 200,000.00 元 × 补贴比例 50% = 100,000.00 元" in zh
    assert "封顶为 100,000.00 元" in zh
    assert "核定金额：100,000.00 元。" in zh
    assert "Related party" in en and "capped to 100,000.00 yuan" in en
    assert "Amount: 100,000.00 yuan." in en
    assert explain_subsidy(line, "zh_CN", POLICY).startswith("1. 本期服务费用 3 笔")
    assert len(zh.splitlines()) == len(line.steps)


@pytest.mark.parametrize(("charges", "facts", "message"), [
    ([charge(1, 1, 100, day=date(2026, 6, 30))], [enterprise(1)], "outside the period 2026-Q3"),
    ([charge(1, 1, 100), charge(1, 1, 100)], [enterprise(1)], "passed twice"),
    ([charge(1, 2, 100)], [enterprise(1)], "not among the enterprises passed"),
    ([charge(1, 1, -5)], [enterprise(1)], "must not be negative"),
    ([charge(1, 1, 100, relation="sister")], [enterprise(1)], "relation 'sister'"),
    ([charge(1, 1, 100, status=standing("unicorn"))], [enterprise(1)], "tier 'unicorn'"),
    ([charge(1, 1, 100), charge(2, 2, 100)], [enterprise(1), EnterpriseFact(2, uscc(1), "同码", 0)], "share USCC"),
])
def test_bad_input_is_refused_with_a_clear_message(charges, facts, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=message):
        compute_subsidies(POLICY, Q3, charges, facts, budget_fen=UNLIMITED)


def test_aggregated_charges_count_as_many() -> None:
    fact = ChargeFact(7, 1, date(2026, 8, 1), 3000 * YUAN, 0, "", "WQ-TJMAT", True, "none", TECH_SME, charges=3)
    line = compute_subsidies(POLICY, Q3, [fact], [enterprise(1)], budget_fen=UNLIMITED)[0]
    assert line.charges == line.eligible_charges == 3 and line.amount_fen == 1200 * YUAN


# --- properties -----------------------------------------------------------------------------


def _policy(**subsidy: object):  # type: ignore[no-untyped-def]
    document = POLICY.document()
    for key, value in subsidy.items():
        if isinstance(value, dict):
            document["subsidy"][key] = {**document["subsidy"][key], **value}
        else:
            document["subsidy"][key] = value
    return policy_from_document(document, "test")


CONTROLLERS = ("", "甲集团", "乙集团")
standings = st.builds(
    Standing,
    registered_in_district=st.sampled_from((True, True, True, False)),
    verified=st.sampled_from((True, True, True, False)),
    tech_sme=st.booleans(),
    hnte=st.booleans(),
    tier=st.sampled_from(("none", "eaglet", "gazelle", "leader_candidate", "leader")),
    controller=st.sampled_from(CONTROLLERS),
)


@st.composite
def scenarios(draw):  # type: ignore[no-untyped-def]
    count = draw(st.integers(min_value=1, max_value=6))
    facts = [enterprise(n, draw(st.sampled_from((0, 0, 5_000_000, 15_000_000, 40_000_000)))) for n in range(1, count + 1)]
    charges = []
    for charge_id in range(1, draw(st.integers(min_value=0, max_value=25)) + 1):
        # Spread over magnitudes (hypothesis favours small integers): from fen to above every cap.
        scale = draw(st.sampled_from((1, 100, 10_000, 1_000_000, 10_000_000)))
        paid = scale * draw(st.integers(min_value=0, max_value=100)) + draw(st.integers(min_value=0, max_value=99))
        charges.append(ChargeFact(
            charge_id=charge_id,
            enterprise_id=draw(st.integers(min_value=1, max_value=count)),
            service_date=Q3.start + timedelta(days=draw(st.integers(min_value=0, max_value=Q3.days - 1))),
            paid_fen=paid,
            refunded_fen=draw(st.sampled_from((0, 0, paid // 3, paid))),
            resource_code="R", unit_code="U",
            resource_open=draw(st.sampled_from((True, True, True, False))),
            relation=draw(st.sampled_from(("none", "none", "none", "none", "internal", "related"))),
            standing=draw(standings),
        ))
    controllers = {name: draw(st.sampled_from((0, 10_000_000, 45_000_000, 60_000_000))) for name in CONTROLLERS if name}
    budget = draw(st.sampled_from((0, 1, 1_000_000, 50_000_000, 10**12)) | st.integers(min_value=0, max_value=80_000_000))
    return charges, facts, controllers, budget


def _eligible(fact: ChargeFact) -> bool:
    s = fact.standing
    return (s.registered_in_district and s.verified and enterprise_class(s) in POLICY.subsidy.classes
            and fact.relation == "none" and fact.resource_open and fact.net_paid_fen > 0)


PROPERTY_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(scenarios())
def test_no_line_exceeds_its_caps_and_the_budget_is_met_exactly(scenario) -> None:  # type: ignore[no-untyped-def]
    charges, facts, controllers, budget = scenario
    lines = compute_subsidies(POLICY, Q3, charges, facts, budget_fen=budget, controllers=controllers)
    granted = {f.enterprise_id: f.granted_this_year_fen for f in facts}
    assert {line.enterprise_id for line in lines} == {c.enterprise_id for c in charges}
    for line in lines:
        assert 0 <= line.amount_fen <= line.before_budget_fen <= line.after_controller_cap_fen
        assert line.after_controller_cap_fen <= line.after_annual_cap_fen <= line.computed_fen
        if line.eligible_spend_fen:
            cap = POLICY.subsidy.classes[line.enterprise_class].annual_cap_fen
            assert line.after_annual_cap_fen <= max(0, cap - granted[line.enterprise_id])
        if 0 < line.before_budget_fen:
            assert line.before_budget_fen >= POLICY.subsidy.minimum_claim_fen
    for name, already in controllers.items():
        group = [line for line in lines if line.controller == name and line.eligible_spend_fen]
        assert sum(line.after_controller_cap_fen for line in group) <= max(0, POLICY.subsidy.controller_cap_fen - already)
    assert sum(line.amount_fen for line in lines) == min(budget, sum(line.before_budget_fen for line in lines))


@PROPERTY_SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_results_do_not_depend_on_input_order(scenario, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    charges, facts, controllers, budget = scenario
    first = compute_subsidies(POLICY, Q3, charges, facts, budget_fen=budget, controllers=controllers)
    charges, facts = list(charges), list(facts)
    rnd.shuffle(charges)
    rnd.shuffle(facts)
    again = compute_subsidies(POLICY, Q3, charges, facts, budget_fen=budget,
                              controllers=dict(reversed(list(controllers.items()))))
    assert json.dumps([l.as_dict() for l in again], sort_keys=True) == json.dumps(
        [l.as_dict() for l in first], sort_keys=True)


@PROPERTY_SETTINGS
@given(scenarios(), st.data())
def test_raising_one_enterprises_spend_never_lowers_its_subsidy_before_budget(scenario, data) -> None:  # type: ignore[no-untyped-def]
    charges, facts, controllers, budget = scenario
    eligible = [c for c in charges if _eligible(c)]
    if not eligible:
        return
    target = data.draw(st.sampled_from(eligible))
    extra = data.draw(st.integers(min_value=1, max_value=100_000_000))
    raised = [ChargeFact(**{**{f: getattr(c, f) for f in c.__dataclass_fields__}, "paid_fen": c.paid_fen + extra})
              if c.charge_id == target.charge_id else c for c in charges]
    before = one(compute_subsidies(POLICY, Q3, charges, facts, budget_fen=budget, controllers=controllers),
                 target.enterprise_id)
    after = one(compute_subsidies(POLICY, Q3, raised, facts, budget_fen=budget, controllers=controllers),
                target.enterprise_id)
    assert after.eligible_spend_fen > before.eligible_spend_fen
    assert after.computed_fen >= before.computed_fen
    assert after.before_budget_fen >= before.before_budget_fen


def test_every_flag_and_rule_has_words_in_both_languages() -> None:
    from facility_share.finance import award, explain
    from facility_share.finance import subsidy as subsidy_module
    from facility_share.web.i18n import I18n

    for flag in (*subsidy_module.FLAGS, *award.FLAGS):
        zh, en = explain.FLAG_LABELS[flag]
        # The pages translate the English label through finance.po: the same Chinese.
        assert I18n("zh_CN").gettext(en) == zh, flag
    for klass, (zh, en) in explain.CLASS_LABELS.items():
        assert I18n("zh_CN").gettext(en) == zh, klass
    rules_seen = set()
    charges = [charge(1, 1, 10 * YUAN), charge(2, 1, 500, relation="internal"),
               charge(3, 2, 900_000 * YUAN, status=standing("eaglet", controller="甲")),
               charge(4, 3, 900_000 * YUAN, status=standing("eaglet", controller="甲"))]
    for line in compute_subsidies(POLICY, Q3, charges, [enterprise(n) for n in (1, 2, 3)], budget_fen=1000):
        rules_seen |= {step["rule"] for step in line.steps}
        for step in line.steps:
            for locale in ("zh_CN", "en"):
                assert not explain.render_step(step, locale).startswith(step["rule"]), step
    assert rules_seen >= {"charges", "excluded", "rate", "rounding", "annual_cap", "controller_cap", "minimum_claim",
                          "budget", "result"}
    # An unknown rule (a newer computation read by an older program) is shown, not refused.
    assert explain.render_step({"rule": "surcharge", "values": {"amount_fen": 150}}, "en") == "surcharge: amount_fen=1.50"
