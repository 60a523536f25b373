"""The enterprise service-purchase subsidy (购买大型科学仪器服务补贴) as a pure function.

For one period, one line per enterprise that had any charge for a service completed in the
period, computed in exactly this order:

1. **eligible spend**: each charge paid net of refunds by the cut-off, unless excluded (not
   registered in the district, not verified, class not eligible, internal use, related party,
   resource not open for sharing, nothing paid net of refunds); registration, verification,
   class and controller are those in force on the charge's service date;
2. **rate**: each eligible charge at the rate of the class in force on its service date, the
   parts summed exactly and rounded half up to the fen **once**;
3. **annual cap** of the enterprise's latest class in the period (the class in force on its
   latest eligible service date), minus what approved settlements of the same calendar year
   already granted it;
4. **shared controller cap**: enterprises under one actual controller (taken on each one's
   latest eligible service date) share one cap, minus what the group already got this year;
   if the group's lines exceed it they are scaled pro rata within the group;
5. **minimum claim**: a line below it pays nothing (flagged);
6. **budget**: if all lines together exceed the period's budget, every line scales pro rata
   so that they sum exactly to it.

Scaling is by largest remainder (``allocation``), ties to the lower USCC. Every line carries
its steps (``{"rule": ..., "values": {...}}``, JSON-ready) with every intermediate amount;
``explain`` renders them in Chinese and English. Same inputs, same lines, in USCC order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from facility_share.errors import InvalidInput
from facility_share.finance.allocation import limit_total
from facility_share.finance.policy import Period, Policy, decimal_text, round_half_up

RELATIONS = ("none", "internal", "related")
TIERS = ("none", "eaglet", "gazelle", "leader_candidate", "leader")
# Why a charge is not eligible, in the order they are checked; a charge is reported under the
# first that applies.
EXCLUSION_REASONS = (
    "not_registered",
    "not_verified",
    "class_not_eligible",
    "internal_use",
    "related_party",
    "resource_not_open",
    "nothing_paid",
)
# Every flag a subsidy line may carry, in the order they are listed on a line.
FLAGS = (*EXCLUSION_REASONS, "no_eligible_spend", "annual_cap", "controller_cap", "below_minimum", "budget_scaled")


@dataclass(frozen=True, slots=True)
class Standing:
    """An enterprise's status as in force on a date (from its status history)."""

    registered_in_district: bool
    verified: bool
    tech_sme: bool
    hnte: bool
    tier: str  # none | eaglet | gazelle | leader_candidate | leader
    controller: str  # actual controller (实际控制人); "" if none recorded


@dataclass(frozen=True, slots=True)
class ChargeFact:
    """One charge for a service completed in the period, with what it needs to be judged."""

    charge_id: int
    enterprise_id: int
    service_date: date  # local date the service was completed
    paid_fen: int  # paid by the settlement's cut-off
    refunded_fen: int  # refunded by the cut-off
    resource_code: str
    unit_code: str
    resource_open: bool  # open for sharing in the catalogue
    relation: str  # 'none' | 'internal' | 'related' (enterprise to the resource's unit)
    standing: Standing  # in force on service_date
    # How many charges this fact stands for: 1, or more when the caller has already summed
    # charges that agree on everything above (enterprise, date, unit, openness, relation,
    # standing); ``charge_id`` is then the group's first charge.
    charges: int = 1

    @property
    def net_paid_fen(self) -> int:
        return max(0, self.paid_fen - self.refunded_fen)


@dataclass(frozen=True, slots=True)
class EnterpriseFact:
    enterprise_id: int
    uscc: str
    name: str
    # Granted by approved settlements of the same calendar year (earlier periods).
    granted_this_year_fen: int


@dataclass(frozen=True, slots=True)
class ControllerFact:
    controller: str
    # Granted to all enterprises under this controller by approved settlements of the year.
    granted_this_year_fen: int


@dataclass(frozen=True, slots=True)
class RatePart:
    """Eligible spend of one class (rate) within a line."""

    enterprise_class: str
    rate_percent: Decimal
    charges: int
    spend_fen: int
    subsidy_exact_fen: Fraction  # spend × rate, not yet rounded

    def as_dict(self) -> dict[str, Any]:
        return {
            "class": self.enterprise_class,
            "rate_percent": decimal_text(self.rate_percent),
            "charges": self.charges,
            "spend_fen": self.spend_fen,
            "subsidy_exact_fen": decimal_text(self.subsidy_exact_fen, 6),
        }


@dataclass(frozen=True)
class SubsidyLine:
    """One enterprise's subsidy for the period, with every step that produced it."""

    enterprise_id: int
    uscc: str
    name: str
    # Class in force on the latest eligible service date (else on the latest service date).
    enterprise_class: str
    controller: str
    charges: int
    eligible_charges: int
    eligible_spend_fen: int
    parts: tuple[RatePart, ...]
    computed_fen: int  # the parts at their rates, rounded once
    after_annual_cap_fen: int
    after_controller_cap_fen: int
    before_budget_fen: int  # after the minimum claim
    amount_fen: int
    flags: tuple[str, ...]
    steps: tuple[dict[str, Any], ...] = field(repr=False)

    kind = "subsidy"

    # The columns of a settlement line, named the same for subsidies and awards.
    @property
    def subject_id(self) -> int:
        return self.enterprise_id

    @property
    def subject_code(self) -> str:
        return self.uscc

    @property
    def subject_name(self) -> str:
        return self.name

    @property
    def category(self) -> str:
        return self.enterprise_class

    @property
    def basis_fen(self) -> int:
        return self.eligible_spend_fen

    def figures(self) -> dict[str, Any]:
        """The line's figures, JSON-ready (for ``settlement_lines.figures``)."""
        return {
            "controller": self.controller,
            "charges": self.charges,
            "eligible_charges": self.eligible_charges,
            "eligible_spend_fen": self.eligible_spend_fen,
            "parts": [part.as_dict() for part in self.parts],
            "computed_fen": self.computed_fen,
            "after_annual_cap_fen": self.after_annual_cap_fen,
            "after_controller_cap_fen": self.after_controller_cap_fen,
        }

    def as_dict(self) -> dict[str, Any]:
        """Everything about the line, JSON-ready."""
        return {
            "kind": self.kind,
            "enterprise_id": self.enterprise_id,
            "uscc": self.uscc,
            "name": self.name,
            "class": self.enterprise_class,
            **self.figures(),
            "before_budget_fen": self.before_budget_fen,
            "amount_fen": self.amount_fen,
            "flags": list(self.flags),
            "steps": [dict(step) for step in self.steps],
        }


def enterprise_class(standing: Standing) -> str:
    """An enterprise's subsidy class: its tier if it has one, else ``tech_sme`` if flagged,
    else ``none``."""
    if standing.tier and standing.tier != "none":
        return standing.tier
    return "tech_sme" if standing.tech_sme else "none"


# --- the computation ------------------------------------------------------------------------


@dataclass
class _Excluded:
    charges: int = 0
    net_paid_fen: int = 0
    charge_ids: list[int] = field(default_factory=list)


@dataclass
class _Part:
    charges: int = 0
    spend_fen: int = 0


@dataclass
class _Account:
    """What one enterprise's charges add up to."""

    fact: EnterpriseFact
    charges: int = 0
    net_paid_fen: int = 0
    excluded: dict[str, _Excluded] = field(default_factory=dict)
    parts: dict[str, _Part] = field(default_factory=dict)
    latest_eligible: tuple[date, int, Standing] | None = None
    latest_any: tuple[date, int, Standing] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    enterprise_class: str = "none"
    controller: str = ""
    spend_fen: int = 0
    computed_fen: int = 0
    after_annual_fen: int = 0
    after_controller_fen: int = 0
    before_budget_fen: int = 0
    amount_fen: int = 0


def _refuse(charge: ChargeFact, period: Period, seen: set[int]) -> None:
    """Raise the first reason a charge is malformed (called only when a quick check failed)."""
    where = f"charge {charge.charge_id}"
    if charge.charge_id in seen:
        raise InvalidInput(f"{where} is passed twice; pass each charge once")
    if not period.start <= charge.service_date < period.end:
        raise InvalidInput(
            f"{where} was served on {charge.service_date}, outside the period {period.label} "
            f"[{period.start}, {period.end}); pass only charges for services completed in the period")
    if charge.paid_fen < 0 or charge.refunded_fen < 0:
        raise InvalidInput(f"{where}: paid and refunded amounts must not be negative "
                           f"(paid {charge.paid_fen}, refunded {charge.refunded_fen})")
    if charge.charges < 1:
        raise InvalidInput(f"{where}: charges must be at least 1, got {charge.charges}")
    if charge.relation not in RELATIONS:
        raise InvalidInput(f"{where}: relation {charge.relation!r} is not one of {', '.join(RELATIONS)}")
    raise InvalidInput(f"{where}: tier {charge.standing.tier!r} is not one of {', '.join(TIERS)}")


def _index_enterprises(enterprises: Iterable[EnterpriseFact] | Mapping[int, EnterpriseFact]) -> dict[int, EnterpriseFact]:
    items = enterprises.values() if isinstance(enterprises, Mapping) else enterprises
    index: dict[int, EnterpriseFact] = {}
    for fact in items:
        if fact.enterprise_id in index:
            raise InvalidInput(f"enterprise {fact.enterprise_id} is passed twice; pass each enterprise once")
        if fact.granted_this_year_fen < 0:
            raise InvalidInput(f"enterprise {fact.uscc}: granted_this_year_fen must not be negative")
        index[fact.enterprise_id] = fact
    return index


def _controller_grants(controllers: Mapping[str, ControllerFact | int] | None) -> dict[str, int]:
    grants: dict[str, int] = {}
    for name, value in (controllers or {}).items():
        granted = value.granted_this_year_fen if isinstance(value, ControllerFact) else int(value)
        if granted < 0:
            raise InvalidInput(f"controller {name!r}: granted_this_year_fen must not be negative")
        grants[name] = granted
    return grants


def _accumulate(policy: Policy, period: Period, charges: Iterable[ChargeFact],
                facts: Mapping[int, EnterpriseFact]) -> dict[int, _Account]:
    """One pass over the charges: checks, exclusions (in ``EXCLUSION_REASONS`` order) and sums.

    The hot loop of a settlement (one iteration per charge), hence written out inline.
    """
    rules = policy.subsidy
    eligible_classes = frozenset(rules.classes)
    need_registered, need_verified = rules.require_registered_in_district, rules.require_verified
    exclude_internal, exclude_related = rules.exclusions.internal_use, rules.exclusions.related_parties
    exclude_closed = rules.exclusions.closed_resources
    start, end = period.start, period.end
    relations, tiers = frozenset(RELATIONS), frozenset(TIERS)
    accounts: dict[int, _Account] = {}
    seen: set[int] = set()
    for charge in charges:
        charge_id, day, standing, relation = charge.charge_id, charge.service_date, charge.standing, charge.relation
        paid, refunded, count = charge.paid_fen, charge.refunded_fen, charge.charges
        tier = standing.tier
        if (charge_id in seen or not start <= day < end or paid < 0 or refunded < 0 or count < 1
                or relation not in relations or tier not in tiers):
            _refuse(charge, period, seen)
        seen.add(charge_id)
        account = accounts.get(charge.enterprise_id)
        if account is None:
            fact = facts.get(charge.enterprise_id)
            if fact is None:
                raise InvalidInput(f"charge {charge_id} is for enterprise {charge.enterprise_id}, "
                                   "which is not among the enterprises passed; pass its EnterpriseFact")
            account = accounts[charge.enterprise_id] = _Account(fact)
        net = paid - refunded if paid > refunded else 0
        account.charges += count
        account.net_paid_fen += net
        latest = account.latest_any
        if latest is None or (day, charge_id) > (latest[0], latest[1]):
            account.latest_any = (day, charge_id, standing)
        klass = tier if tier != "none" else ("tech_sme" if standing.tech_sme else "none")
        if need_registered and not standing.registered_in_district:
            reason = "not_registered"
        elif need_verified and not standing.verified:
            reason = "not_verified"
        elif klass not in eligible_classes:
            reason = "class_not_eligible"
        elif relation == "internal" and exclude_internal:
            reason = "internal_use"
        elif relation == "related" and exclude_related:
            reason = "related_party"
        elif exclude_closed and not charge.resource_open:
            reason = "resource_not_open"
        elif net <= 0:
            reason = "nothing_paid"
        else:
            part = account.parts.get(klass)
            if part is None:
                part = account.parts[klass] = _Part()
            part.charges += count
            part.spend_fen += net
            latest = account.latest_eligible
            if latest is None or (day, charge_id) > (latest[0], latest[1]):
                account.latest_eligible = (day, charge_id, standing)
            continue
        excluded = account.excluded.get(reason)
        if excluded is None:
            excluded = account.excluded[reason] = _Excluded()
        excluded.charges += count
        excluded.net_paid_fen += net
        excluded.charge_ids.append(charge_id)
    return accounts


def _rate_and_annual_cap(policy: Policy, account: _Account) -> tuple[RatePart, ...]:
    """Steps 1–3 for one enterprise; fills the account and returns its rate parts."""
    rules = policy.subsidy
    steps, flags = account.steps, account.flags
    excluded_count = sum(e.charges for e in account.excluded.values())
    steps.append({"rule": "charges", "values": {
        "charges": account.charges, "eligible": account.charges - excluded_count, "excluded": excluded_count,
        "net_paid_fen": account.net_paid_fen}})
    for reason in EXCLUSION_REASONS:
        if reason in account.excluded:
            excluded = account.excluded[reason]
            flags.add(reason)
            steps.append({"rule": "excluded", "values": {
                "reason": reason, "charges": excluded.charges, "net_paid_fen": excluded.net_paid_fen,
                "charge_ids": sorted(excluded.charge_ids)}})
    if account.latest_eligible is None:
        standing = account.latest_any[2] if account.latest_any else None
        account.enterprise_class = enterprise_class(standing) if standing else "none"
        account.controller = standing.controller if standing else ""
        flags.add("no_eligible_spend")
        steps.append({"rule": "no_eligible_spend", "values": {"amount_fen": 0}})
        return ()

    parts = []
    exact = Fraction(0)
    for klass in sorted(account.parts, key=lambda k: (-rules.classes[k].rate_percent, k)):
        part = account.parts[klass]
        rate = rules.classes[klass].rate_percent
        subsidy = Fraction(part.spend_fen) * Fraction(rate) / 100
        exact += subsidy
        parts.append(RatePart(klass, rate, part.charges, part.spend_fen, subsidy))
        steps.append({"rule": "rate", "values": {
            "class": klass, "rate_percent": decimal_text(rate), "charges": part.charges,
            "spend_fen": part.spend_fen, "subsidy_exact_fen": decimal_text(subsidy, 6)}})
    account.spend_fen = sum(p.spend_fen for p in parts)
    account.computed_fen = round_half_up(exact)
    steps.append({"rule": "rounding", "values": {
        "eligible_spend_fen": account.spend_fen, "exact_fen": decimal_text(exact, 6),
        "amount_fen": account.computed_fen}})

    latest_date, _, standing = account.latest_eligible
    account.enterprise_class = enterprise_class(standing)
    account.controller = standing.controller
    cap = rules.classes[account.enterprise_class].annual_cap_fen
    granted = account.fact.granted_this_year_fen
    remaining = max(0, cap - granted)
    account.after_annual_fen = min(account.computed_fen, remaining)
    applied = account.after_annual_fen < account.computed_fen
    if applied:
        flags.add("annual_cap")
    steps.append({"rule": "annual_cap", "values": {
        "class": account.enterprise_class, "as_of": latest_date.isoformat(), "cap_fen": cap,
        "granted_this_year_fen": granted, "remaining_fen": remaining,
        "before_fen": account.computed_fen, "after_fen": account.after_annual_fen, "applied": applied}})
    return tuple(parts)


def _controller_caps(policy: Policy, accounts: Sequence[_Account], grants: Mapping[str, int]) -> None:
    """Step 4: enterprises under one controller share one cap (pro rata within the group)."""
    cap = policy.subsidy.controller_cap_fen
    groups: dict[str, list[_Account]] = {}
    for account in accounts:
        account.after_controller_fen = account.after_annual_fen
        if cap is not None and account.controller and account.latest_eligible is not None:
            groups.setdefault(account.controller, []).append(account)
    for controller, members in groups.items():
        granted = grants.get(controller, 0)
        remaining = max(0, cap - granted)
        wanted = {m.fact.uscc: m.after_annual_fen for m in members}
        shares, scaled = limit_total(wanted, remaining)
        group_total = sum(wanted.values())
        member_codes = sorted(wanted)
        for member in members:
            member.after_controller_fen = shares[member.fact.uscc]
            applied = scaled and member.after_controller_fen < member.after_annual_fen
            if applied:
                member.flags.add("controller_cap")
            member.steps.append({"rule": "controller_cap", "values": {
                "controller": controller, "cap_fen": cap, "granted_this_year_fen": granted,
                "remaining_fen": remaining, "members": member_codes, "group_total_fen": group_total,
                "before_fen": member.after_annual_fen, "after_fen": member.after_controller_fen,
                "applied": applied}})


def compute_subsidies(
    policy: Policy,
    period: Period,
    charges: Iterable[ChargeFact],
    enterprises: Iterable[EnterpriseFact] | Mapping[int, EnterpriseFact],
    *,
    budget_fen: int | None = None,
    controllers: Mapping[str, ControllerFact | int] | None = None,
) -> list[SubsidyLine]:
    """Subsidy lines for a period under a policy version.

    Args:
        policy: the version in force (see ``policy_in_force``).
        period: the settlement period; every charge's service date must fall in it.
        charges: every charge for services completed in the period, any order.
        enterprises: the EnterpriseFact of (at least) every enterprise with a charge, as a
            sequence or a mapping by enterprise id.
        budget_fen: the period's budget; None: the policy's yearly budget prorated by days.
        controllers: controller → ControllerFact (or the granted amount in fen) for what
            each controller's group already got this year; a controller not listed got 0.

    Returns:
        One line per enterprise with a charge, sorted by USCC.

    Raises:
        InvalidInput: a charge outside the period or passed twice, an unknown enterprise or
            relation or tier, a negative amount or budget, or two enterprises with one USCC.
    """
    facts = _index_enterprises(enterprises)
    grants = _controller_grants(controllers)
    if budget_fen is None:
        budget_fen = policy.subsidy_budget_fen(period)
    if budget_fen < 0:
        raise InvalidInput(f"the subsidy budget must not be negative, got {budget_fen}")
    accounts = sorted(_accumulate(policy, period, charges, facts).values(),
                      key=lambda a: (a.fact.uscc, a.fact.enterprise_id))
    usccs = [a.fact.uscc for a in accounts]
    if len(set(usccs)) != len(usccs):
        duplicate = next(u for u in usccs if usccs.count(u) > 1)
        raise InvalidInput(f"two enterprises with charges share USCC {duplicate}; each line needs its own USCC")

    parts = {a.fact.enterprise_id: _rate_and_annual_cap(policy, a) for a in accounts}
    _controller_caps(policy, accounts, grants)

    minimum = policy.subsidy.minimum_claim_fen
    for account in accounts:
        account.before_budget_fen = account.after_controller_fen
        if account.latest_eligible is None:
            continue
        applied = 0 < account.after_controller_fen < minimum
        if applied:
            account.before_budget_fen = 0
            account.flags.add("below_minimum")
        account.steps.append({"rule": "minimum_claim", "values": {
            "minimum_fen": minimum, "before_fen": account.after_controller_fen,
            "after_fen": account.before_budget_fen, "applied": applied}})

    wanted = {a.fact.uscc: a.before_budget_fen for a in accounts}
    total_before = sum(wanted.values())
    amounts, scaled = limit_total(wanted, budget_fen)
    lines = []
    for account in accounts:
        account.amount_fen = amounts[account.fact.uscc]
        if account.latest_eligible is not None:
            applied = scaled and account.before_budget_fen > 0
            if applied:
                account.flags.add("budget_scaled")
            account.steps.append({"rule": "budget", "values": {
                "budget_fen": budget_fen, "total_before_fen": total_before,
                "before_fen": account.before_budget_fen, "after_fen": account.amount_fen, "applied": applied}})
        account.steps.append({"rule": "result", "values": {"amount_fen": account.amount_fen}})
        fact = account.fact
        lines.append(SubsidyLine(
            enterprise_id=fact.enterprise_id, uscc=fact.uscc, name=fact.name,
            enterprise_class=account.enterprise_class, controller=account.controller,
            charges=account.charges, eligible_charges=sum(p.charges for p in parts[fact.enterprise_id]),
            eligible_spend_fen=account.spend_fen, parts=parts[fact.enterprise_id],
            computed_fen=account.computed_fen, after_annual_cap_fen=account.after_annual_fen,
            after_controller_cap_fen=account.after_controller_fen, before_budget_fen=account.before_budget_fen,
            amount_fen=account.amount_fen, flags=tuple(f for f in FLAGS if f in account.flags),
            steps=tuple(account.steps),
        ))
    return lines
