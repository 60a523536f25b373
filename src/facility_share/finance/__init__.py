"""Finance: policies, enterprise subsidies, managing-unit awards, settlements and usage reports.

The rules are pure functions over frozen dataclasses (``policy``, ``allocation``, ``subsidy``,
``award``, ``explain``); ``policy_store`` keeps policy versions in the database; the
settlement and report services gather the facts and store the results.
"""

from facility_share.finance.allocation import limit_total, scale_to_total
from facility_share.finance.award import AwardLine, UnitFact, compute_awards
# ``explain`` stays the submodule's name here (``from facility_share.finance import explain``).
from facility_share.finance.explain import explain_award, explain_en, explain_subsidy, explain_zh
from facility_share.finance.policy import (
    LoadedPolicy,
    Period,
    Policy,
    load_policies,
    load_policy_file,
    period_budget_fen,
    policy_digest,
    policy_from_document,
    policy_in_force,
)
from facility_share.finance.subsidy import (
    ChargeFact,
    ControllerFact,
    EnterpriseFact,
    RatePart,
    Standing,
    SubsidyLine,
    compute_subsidies,
    enterprise_class,
)

__all__ = [
    "AwardLine",
    "ChargeFact",
    "ControllerFact",
    "EnterpriseFact",
    "LoadedPolicy",
    "Period",
    "Policy",
    "RatePart",
    "Standing",
    "SubsidyLine",
    "UnitFact",
    "compute_awards",
    "compute_subsidies",
    "enterprise_class",
    "explain_award",
    "explain_en",
    "explain_subsidy",
    "explain_zh",
    "limit_total",
    "load_policies",
    "load_policy_file",
    "period_budget_fen",
    "policy_digest",
    "policy_from_document",
    "policy_in_force",
    "scale_to_total",
]
