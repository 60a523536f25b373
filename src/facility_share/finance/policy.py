"""Subsidy-and-award policies: TOML files in ``catalog/policies/`` in, validated ``Policy`` out.

One file holds one version of one policy (``code`` + ``version``), in force from
``effective_from`` through ``effective_until`` (both inclusive; no ``effective_until``: open
ended). Where versions of one code overlap, the one that starts later is in force (a new
version supersedes the old one from its first day without editing the old file, which an
approved settlement may have used); two versions of one code may not start on the same day.

Units in the files, chosen once:

- money in **yuan** (keys end in ``_yuan``: ``annual_cap_yuan = 100000``, ``"85.50"`` allowed;
  never finer than a fen); the validated model holds **integer fen** (attributes end in
  ``_fen``), and every computed amount is fen;
- rates in **percent** (keys end in ``_percent``: ``rate_percent = 40``), exact decimals;
- grade multipliers as fractions of 1 (``multiplier = 0.7``); score weights in points of 100.

Every problem names the file, the TOML table and the key, and says how to fix it; all
problems of all files are collected and nothing is loaded if there is any. The digest of a
version is the SHA-256 of its canonical document (the validated model as sorted, compact
JSON), so reformatting a file or editing its comments does not change it, but any change of
meaning does.

Pure: no database and no framework import (``policy_store`` writes versions to the database).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from facility_share.catalog.records import yuan_to_fen
from facility_share.errors import CatalogInvalid, NotFound, Problem
from facility_share.finance.periods import Period

# Enterprise classes a subsidy table may name. An enterprise's class is its tier if it has one,
# else ``tech_sme`` if flagged as a tech SME, else ``none`` (never eligible).
SUBSIDY_CLASSES = ("eaglet", "tech_sme", "gazelle", "leader_candidate", "leader")
# The year the count benchmarks are stated for: a period's benchmark is the yearly one
# × days in the period ÷ 365 (so a leap year's full period asks 366/365 of it).
BENCHMARK_YEAR_DAYS = 365
REFERENCE_FILE = "catalog/policies/wuqing-default.toml"


# --- exact arithmetic -----------------------------------------------------------------------


def round_half_up(value: Fraction | Decimal | int) -> int:
    """Round a non-negative exact amount half up to an integer (fen).

    Raises:
        ValueError: the amount is negative (no rule here produces one).
    """
    exact = Fraction(value)
    if exact < 0:
        raise ValueError(f"cannot round a negative amount: {value}")
    return (2 * exact.numerator + exact.denominator) // (2 * exact.denominator)


def round_half_up_2(value: Fraction) -> Decimal:
    """Round a non-negative exact value half up to two decimals (scores)."""
    return Decimal(round_half_up(value * 100)) / 100


def decimal_text(value: Fraction | Decimal, places: int = 4) -> str:
    """A readable decimal for explanations: exact if short, else rounded half up to ``places``."""
    if isinstance(value, int):
        return str(value)
    exact = value if isinstance(value, Fraction) else Fraction(value)
    if exact.denominator == 1:
        return str(exact.numerator)
    scaled = exact * 10**places
    if scaled.denominator == 1:
        text = format(Decimal(scaled.numerator) / 10**places, "f")
    else:
        sign = -1 if exact < 0 else 1
        text = format(Decimal(sign * round_half_up(abs(scaled))) / 10**places, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fen_to_yuan_text(fen: int) -> str:
    """``12345`` → ``"123.45"``; whole yuan without decimals (``10000000`` → ``"100000"``)."""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}" if cents == 0 else f"{sign}{yuan}.{cents:02d}"


# --- periods --------------------------------------------------------------------------------


def period_budget_fen(yearly_fen: int, period: Period) -> int:
    """A period's share of a yearly budget: yearly × days in the period ÷ days in the year,
    rounded half up to the fen once (a period across a new year takes each year's part)."""
    share = Fraction(0)
    day = period.start
    while day < period.end:
        year_end = date(day.year + 1, 1, 1)
        segment_end = min(year_end, period.end)
        days_in_year = 366 if calendar.isleap(day.year) else 365
        share += Fraction(yearly_fen * (segment_end - day).days, days_in_year)
        day = segment_end
    return round_half_up(share)


# --- field types ----------------------------------------------------------------------------


def _plain_decimal(value: Decimal) -> str:
    """Canonical text of a decimal: no exponent, no trailing zeros (40.0 and 40 are one value)."""
    text = format(value.normalize(), "f")
    return text


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected {what}, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"expected {what}, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"expected a finite number ({what}), got {value!r}")
    return Decimal(_plain_decimal(number))


def _percent(value: object) -> Decimal:
    number = _decimal(value, "a percentage such as 40 or 12.5")
    if not 0 <= number <= 100:
        raise ValueError(f"a percentage must be between 0 and 100, got {value}")
    return number


def _multiplier(value: object) -> Decimal:
    number = _decimal(value, "a multiplier between 0 and 1 such as 0.7")
    if not 0 <= number <= 1:
        raise ValueError(f"a multiplier must be between 0 and 1 (1.0 = the whole award), got {value}")
    return number


def _points(value: object) -> Decimal:
    number = _decimal(value, "points out of 100 such as 20")
    if not 0 <= number <= 100:
        raise ValueError(f"points must be between 0 and 100, got {value}")
    return number


def _positive(value: object) -> Decimal:
    number = _decimal(value, "a positive number")
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return number


def _yuan(value: object) -> int:
    if isinstance(value, str) and not value.strip():
        raise ValueError("expected an amount in yuan, e.g. 100000 or 85.50")
    return yuan_to_fen(value)


_as_text = PlainSerializer(_plain_decimal, return_type=str)
Percent = Annotated[Decimal, BeforeValidator(_percent), _as_text]
Multiplier = Annotated[Decimal, BeforeValidator(_multiplier), _as_text]
Points = Annotated[Decimal, BeforeValidator(_points), _as_text]
PositiveNumber = Annotated[Decimal, BeforeValidator(_positive), _as_text]
# Written in yuan in the file, held in fen; written back in yuan in the canonical document.
FenFromYuan = Annotated[int, BeforeValidator(_yuan), PlainSerializer(fen_to_yuan_text, return_type=str)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --- the schema -----------------------------------------------------------------------------


class SubsidyClass(_Table):
    """Rate and annual cap of one eligible enterprise class."""

    name_zh: Text
    name_en: Text
    rate_percent: Percent
    annual_cap_fen: FenFromYuan = Field(alias="annual_cap_yuan")


class SubsidyExclusions(_Table):
    """Charges that never count as eligible spend (each ``true`` excludes them)."""

    related_parties: bool = True  # an enterprise of the unit's own group
    internal_use: bool = True  # the unit itself
    closed_resources: bool = True  # resources not open for sharing in the catalogue
    # Subsidies are claimed on charges already paid ("pay full, then claim"); a "pay net"
    # voucher mode would need another rule, so only ``true`` is accepted for now.
    unpaid: bool = True


class SubsidyRules(_Table):
    """The enterprise service-purchase subsidy (购买大型科学仪器服务补贴)."""

    require_registered_in_district: bool = True
    require_verified: bool = True
    # Eligible classes are exactly those with a table here: [subsidy.classes.<class>].
    classes: dict[str, SubsidyClass]
    # One cap shared by all enterprises under one actual controller; absent: no shared cap.
    controller_cap_fen: FenFromYuan | None = Field(default=None, alias="controller_cap_yuan")
    # A line below this after the caps pays nothing (flagged); 0: no minimum.
    minimum_claim_fen: FenFromYuan = Field(default=0, alias="minimum_claim_yuan")
    # A period's budget is this × days in period ÷ days in year unless the settlement sets one.
    yearly_budget_fen: FenFromYuan = Field(alias="yearly_budget_yuan")
    exclusions: SubsidyExclusions = SubsidyExclusions()


class AwardWeights(_Table):
    """Points of the 100-point evaluation; they must add up to 100."""

    organisation: Points  # × share of the unit's resources open
    operation: Points  # × average effective hours per open resource vs benchmark
    sharing_hours: Points  # × average external hours per open resource vs benchmark
    sharing_rate: Points  # × (external ÷ effective hours) vs benchmark
    enterprises: Points  # × distinct enterprises served vs benchmark
    rating: Points  # × (average rating − lowest) ÷ (highest − lowest)


class AwardBenchmarks(_Table):
    """Yearly benchmarks; the hour and enterprise counts are prorated by days ÷ 365."""

    effective_hours_per_resource: PositiveNumber
    external_hours_per_resource: PositiveNumber
    sharing_rate_percent: Percent
    enterprises_served: PositiveNumber


class AwardRating(_Table):
    scale_min: int = Field(default=1, ge=0, le=100)
    scale_max: int = Field(default=5, ge=1, le=100)
    # Points given when the period has no ratings at all.
    points_without_ratings: Points


class Grade(_Table):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name_zh: Text
    name_en: Text
    min_score: Points
    multiplier: Multiplier
    # The failing grade: no award, and the unit is told to rectify.
    rectification: bool = False


class AwardRules(_Table):
    """The managing-unit award (对相关管理单位给予奖励)."""

    base_rate_percent: Percent  # of external service income
    cap_per_unit_year_fen: FenFromYuan = Field(alias="cap_per_unit_year_yuan")
    yearly_budget_fen: FenFromYuan = Field(alias="yearly_budget_yuan")
    weights: AwardWeights
    benchmarks: AwardBenchmarks
    rating: AwardRating
    # Highest first; the last must start at 0 so every score has a grade.
    grades: tuple[Grade, ...] = Field(min_length=1)

    def grade_for(self, score: Decimal) -> Grade:
        """The first grade (highest first) whose ``min_score`` the score reaches."""
        for grade in self.grades:
            if score >= grade.min_score:
                return grade
        return self.grades[-1]


class Policy(_Table):
    """One validated version of a policy."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
    title_zh: Text
    title_en: Text
    effective_from: date
    effective_until: date | None = None  # inclusive; None: until further notice
    subsidy: SubsidyRules
    award: AwardRules

    def in_force(self, on: date) -> bool:
        """Whether the date lies within this version's own dates (a later version may
        still supersede it: see ``policy_in_force``)."""
        return self.effective_from <= on and (self.effective_until is None or on <= self.effective_until)

    def document(self) -> dict[str, Any]:
        """The canonical document: what the database keeps and the digest is taken of."""
        return self.model_dump(mode="json", by_alias=True)

    def subsidy_budget_fen(self, period: Period) -> int:
        return period_budget_fen(self.subsidy.yearly_budget_fen, period)

    def award_budget_fen(self, period: Period) -> int:
        return period_budget_fen(self.award.yearly_budget_fen, period)


def canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def policy_digest(policy: Policy) -> str:
    """SHA-256 of the policy's canonical document."""
    return hashlib.sha256(canonical_json(policy.document())).hexdigest()


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A policy version as read from its file."""

    policy: Policy
    source_file: str
    digest: str

    @property
    def code(self) -> str:
        return self.policy.code

    @property
    def version(self) -> str:
        return self.policy.version


# --- validation -----------------------------------------------------------------------------


def _split_loc(loc: Iterable[Any]) -> tuple[str, str]:
    """A pydantic location → (TOML table, key): ("award", "grades", 2, "multiplier") →
    ("award.grades[2]", "multiplier")."""
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    key = ""
    if parts and isinstance(parts[-1], str):
        key = parts.pop()
    table = ""
    for part in parts:
        table += f"[{part}]" if isinstance(part, int) else ("." if table else "") + str(part)
    return table, key


def _problems_from(error: ValidationError, file: str) -> list[Problem]:
    problems = []
    for item in error.errors():
        table, key = _split_loc(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = f"required key is missing; add it (every key is shown in {REFERENCE_FILE})"
        elif item["type"] == "extra_forbidden":
            message = f"unknown key; check its spelling and table against {REFERENCE_FILE}"
        elif item["type"] == "string_pattern_mismatch" and key == "code" and not table:
            message = "a policy code is lowercase letters, digits and hyphens, e.g. wuqing-default"
        elif item["type"] == "string_pattern_mismatch" and key == "version":
            message = "a version is letters, digits, dots, hyphens or underscores, e.g. 2026.1"
        elif item["type"] == "string_pattern_mismatch" and key == "code":
            message = "a grade code is lowercase letters, digits and underscores, e.g. excellent"
        elif item["type"] in ("model_type", "dict_type"):
            message = "expected a table of keys here, e.g. [" + ".".join(p for p in (table, key) if p) + "]"
        problems.append(Problem(file, table, key, message))
    return problems


def _semantic_problems(policy: Policy, file: str) -> list[Problem]:
    """Checks across keys, each naming the table and key to change."""
    problems: list[Problem] = []

    def add(table: str, key: str, message: str) -> None:
        problems.append(Problem(file, table, key, message))

    if policy.effective_until is not None and policy.effective_until < policy.effective_from:
        add("", "effective_until", f"is before effective_from ({policy.effective_from}); "
            "it is the last day in force, on or after effective_from")
    subsidy = policy.subsidy
    if not subsidy.classes:
        add("subsidy.classes", "", "no eligible class; add a table such as [subsidy.classes.tech_sme]")
    for key, rule in subsidy.classes.items():
        if key not in SUBSIDY_CLASSES:
            hint = "class 'none' can never be eligible; remove it" if key == "none" else (
                f"unknown enterprise class; use one of {', '.join(SUBSIDY_CLASSES)}")
            add(f"subsidy.classes.{key}", "", hint)
        if rule.rate_percent <= 0:
            add(f"subsidy.classes.{key}", "rate_percent", "must be greater than 0; remove the class to make it ineligible")
    if not subsidy.exclusions.unpaid:
        add("subsidy.exclusions", "unpaid", "only true is supported: a subsidy is claimed on charges already paid "
            "(pay in full, then claim)")
    award = policy.award
    weights = award.weights
    total = sum((weights.organisation, weights.operation, weights.sharing_hours, weights.sharing_rate,
                 weights.enterprises, weights.rating), Decimal(0))
    if total != 100:
        add("award.weights", "", f"the weights add up to {_plain_decimal(total)}; they must add up to 100")
    if award.rating.scale_max <= award.rating.scale_min:
        add("award.rating", "scale_max", f"must be above scale_min ({award.rating.scale_min})")
    if award.rating.points_without_ratings > weights.rating:
        add("award.rating", "points_without_ratings",
            f"must not exceed the rating weight ({_plain_decimal(weights.rating)} points)")
    if award.benchmarks.sharing_rate_percent <= 0:
        add("award.benchmarks", "sharing_rate_percent", "must be greater than 0")
    codes: set[str] = set()
    previous: Decimal | None = None
    for index, grade in enumerate(award.grades):
        table = f"award.grades[{index}]"
        if grade.code in codes:
            add(table, "code", f"duplicate grade code {grade.code!r}; each grade needs its own code")
        codes.add(grade.code)
        if previous is not None and grade.min_score >= previous:
            add(table, "min_score", f"grades go from the highest to the lowest; {_plain_decimal(grade.min_score)} "
                f"must be below the previous grade's {_plain_decimal(previous)}")
        previous = grade.min_score
        if grade.rectification and grade.multiplier != 0:
            add(table, "multiplier", "a grade with rectification = true gets no award; set multiplier = 0")
    if award.grades and award.grades[-1].min_score != 0:
        add(f"award.grades[{len(award.grades) - 1}]", "min_score",
            "the lowest grade must start at 0 so that every score has a grade")
    return problems


def parse_policy(text: str, file: str) -> Policy:
    """Validate one policy document (TOML text); ``file`` names it in problems.

    Raises:
        CatalogInvalid: with every problem found.
    """
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogInvalid([Problem(file, "", "", f"is not valid TOML: {exc}")]) from None
    return policy_from_document(data, file)


def policy_from_document(data: Mapping[str, Any], file: str) -> Policy:
    """Validate a document already parsed (from TOML, or the database's canonical JSON).

    Raises:
        CatalogInvalid: with every problem found.
    """
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise CatalogInvalid(_problems_from(exc, file)) from None
    problems = _semantic_problems(policy, file)
    if problems:
        raise CatalogInvalid(problems)
    return policy


def _read_file(path: Path, name: str, problems: list[Problem]) -> LoadedPolicy | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(name, "", "", "is not UTF-8 text; save it as UTF-8"))
        return None
    try:
        policy = parse_policy(text, name)
    except CatalogInvalid as exc:
        problems.extend(exc.problems)
        return None
    return LoadedPolicy(policy, name, policy_digest(policy))


def load_policy_file(path: Path | str) -> LoadedPolicy:
    """Read and validate one policy file.

    Raises:
        CatalogInvalid: the file is missing or has problems.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogInvalid([Problem(str(path), "", "", "no such file; pass a policy file such as "
                                      f"{REFERENCE_FILE}")])
    problems: list[Problem] = []
    loaded = _read_file(path, path.name, problems)
    if problems or loaded is None:
        raise CatalogInvalid(problems)
    return loaded


def overlap_problems(versions: Iterable[tuple[Any, str]]) -> list[Problem]:
    """Versions of one code that cannot be told apart: the same version twice, or two
    versions starting on the same day. (Versions may otherwise overlap: the one that starts
    later is in force, so a new version never requires editing an older one.)

    ``versions`` pairs anything with ``code``, ``version``, ``effective_from`` (a ``Policy``
    or a stored row) with the file it came from.
    """
    problems: list[Problem] = []
    by_code: dict[str, list[tuple[Any, str]]] = {}
    for policy, source in versions:
        by_code.setdefault(policy.code, []).append((policy, source))
    for code, items in sorted(by_code.items()):
        versions_seen: dict[str, str] = {}
        starts_seen: dict[date, tuple[str, str]] = {}
        for policy, source in items:
            if policy.version in versions_seen:
                problems.append(Problem(source, "", "version", f"{code} version {policy.version} is also defined in "
                                        f"{versions_seen[policy.version]}; give each file its own version"))
                continue
            versions_seen[policy.version] = source
            if policy.effective_from in starts_seen:
                other_version, other_source = starts_seen[policy.effective_from]
                problems.append(Problem(
                    source, "", "effective_from",
                    f"{code} versions {other_version} ({other_source}) and {policy.version} both start on "
                    f"{policy.effective_from}; a later version must start on a later day"))
                continue
            starts_seen[policy.effective_from] = (policy.version, source)
    return problems


def load_policies(directory: Path | str) -> tuple[LoadedPolicy, ...]:
    """Read and validate every ``*.toml`` file of a folder (``catalog/policies``).

    Returns every version, ordered by code, then effective date.

    Raises:
        CatalogInvalid: with every problem of every file; nothing is returned then.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CatalogInvalid([Problem(str(root), "", "", "is not a folder; pass the policies folder, e.g. catalog/policies")])
    files = sorted(root.glob("*.toml"))
    if not files:
        raise CatalogInvalid([Problem(str(root), "", "", "holds no policy files; add one such as wuqing-default.toml")])
    problems: list[Problem] = []
    loaded = [item for path in files if (item := _read_file(path, path.name, problems)) is not None]
    problems.extend(overlap_problems((item.policy, item.source_file) for item in loaded))
    if problems:
        raise CatalogInvalid(problems)
    return tuple(sorted(loaded, key=lambda item: (item.code, item.policy.effective_from, item.version)))


def policy_in_force(policies: Iterable[Policy | LoadedPolicy], code: str, on: date) -> Policy:
    """The version of policy ``code`` in force on a date: of the versions whose own dates
    cover it, the one that starts latest.

    Raises:
        NotFound: no version of that code covers the date (the message lists those that exist).
    """
    versions = [p.policy if isinstance(p, LoadedPolicy) else p for p in policies]
    matching = [p for p in versions if p.code == code]
    for policy in sorted(matching, key=lambda p: p.effective_from, reverse=True):
        if policy.in_force(on):
            return policy
    if not matching:
        known = ", ".join(sorted({p.code for p in versions})) or "none"
        raise NotFound(f"no policy {code!r}; known policies: {known}")
    spans = "; ".join(f"{p.version}: {p.effective_from} – {p.effective_until or 'open'}"
                      for p in sorted(matching, key=lambda p: p.effective_from))
    raise NotFound(f"no version of policy {code!r} is in force on {on} ({spans}); publish one that covers it")
