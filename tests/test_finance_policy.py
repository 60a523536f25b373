"""Policy files: the shipped default, validation errors that say where and how to fix, the
version in force, and policy versions in the database (SQLite and PostgreSQL) and the CLI."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from facility_share.cli import main
from facility_share.db import Database, migrate
from facility_share.db.models import AuditEvent, PolicyVersion, Resource, Settlement
from facility_share.errors import CatalogInvalid, Conflict, NotFound
from facility_share.finance.policy import (
    Period,
    load_policies,
    load_policy_file,
    parse_policy,
    period_budget_fen,
    policy_digest,
    policy_from_document,
    policy_in_force,
)
from facility_share.finance.policy_store import (
    get_policy_version,
    import_policies,
    list_policy_versions,
    policy_version_in_force,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "catalog" / "policies" / "wuqing-default.toml"
DEFAULT_TEXT = DEFAULT_FILE.read_text(encoding="utf-8")


def test_the_shipped_default_implements_the_design_table() -> None:
    loaded = load_policies(ROOT / "catalog" / "policies")
    assert [(item.code, item.version) for item in loaded] == [("wuqing-default", "2026.1")]
    policy = loaded[0].policy
    classes = {key: (rule.rate_percent, rule.annual_cap_fen) for key, rule in policy.subsidy.classes.items()}
    assert classes == {
        "eaglet": (Decimal(50), 10_000_000),
        "tech_sme": (Decimal(40), 20_000_000),
        "gazelle": (Decimal(40), 30_000_000),
        "leader_candidate": (Decimal(30), 50_000_000),
        "leader": (Decimal(30), 50_000_000),
    }
    assert policy.subsidy.controller_cap_fen == 50_000_000
    exclusions = policy.subsidy.exclusions
    assert exclusions.related_parties and exclusions.internal_use and exclusions.unpaid and exclusions.closed_resources
    award = policy.award
    assert award.base_rate_percent == 40 and award.cap_per_unit_year_fen == 50_000_000
    weights = award.weights
    assert (weights.organisation, weights.operation, weights.sharing_hours, weights.sharing_rate, weights.enterprises,
            weights.rating) == (20, 40, 15, 10, 5, 10)
    bench = award.benchmarks
    assert (bench.effective_hours_per_resource, bench.external_hours_per_resource, bench.sharing_rate_percent,
            bench.enterprises_served) == (1599, 273, 16, 10)
    assert [(g.name_zh, g.min_score, g.multiplier, g.rectification) for g in award.grades] == [
        ("优秀", 90, Decimal("1"), False), ("良好", 75, Decimal("0.7"), False),
        ("合格", 60, Decimal("0.3"), False), ("较差", 0, Decimal(0), True)]
    assert award.grade_for(Decimal("89.99")).name_zh == "良好"
    assert award.grade_for(Decimal("90.00")).name_zh == "优秀"


def test_the_digest_is_of_the_meaning_not_the_formatting() -> None:
    policy = parse_policy(DEFAULT_TEXT, "a.toml")
    reformatted = "\n".join(line.split("#")[0].rstrip() if not line.lstrip().startswith(("title", "name")) else line
                            for line in DEFAULT_TEXT.splitlines())
    reformatted = reformatted.replace("multiplier = 1.0", "multiplier = 1").replace("rate_percent = 40", "rate_percent = 40.00")
    assert policy_digest(parse_policy(reformatted, "b.toml")) == policy_digest(policy)
    changed = DEFAULT_TEXT.replace("minimum_claim_yuan = 100", "minimum_claim_yuan = 100.01")
    assert policy_digest(parse_policy(changed, "c.toml")) != policy_digest(policy)
    # The canonical document (what the database keeps) reads back to the same policy, money in yuan.
    document = policy.document()
    assert document["subsidy"]["classes"]["eaglet"]["annual_cap_yuan"] == "100000"
    assert policy_from_document(document, "db") == policy


def _mutated(old: str, new: str) -> str:
    assert old in DEFAULT_TEXT, old
    return DEFAULT_TEXT.replace(old, new, 1)


BAD_FILES = [
    ("toml syntax", _mutated('code = "wuqing-default"', 'code = "wuqing-default'), "", "",
     "is not valid TOML"),
    ("missing key", _mutated("yearly_budget_yuan = 5000000", ""), "subsidy", "yearly_budget_yuan",
     "required key is missing; add it"),
    ("unknown key", _mutated("rate_percent = 50", "rate_percent = 50\nrate = 50"), "subsidy.classes.eaglet", "rate",
     "unknown key; check its spelling"),
    ("rate above 100", _mutated("rate_percent = 50", "rate_percent = 150"), "subsidy.classes.eaglet", "rate_percent",
     "between 0 and 100, got 150"),
    ("rate not a number", _mutated("rate_percent = 50", 'rate_percent = "half"'), "subsidy.classes.eaglet",
     "rate_percent", "expected a percentage"),
    ("rate zero", _mutated("rate_percent = 50", "rate_percent = 0"), "subsidy.classes.eaglet", "rate_percent",
     "remove the class to make it ineligible"),
    ("cap finer than a fen", _mutated("annual_cap_yuan = 200000", 'annual_cap_yuan = "12.345"'),
     "subsidy.classes.tech_sme", "annual_cap_yuan", "more decimals than a fen"),
    ("negative cap", _mutated("annual_cap_yuan = 200000", "annual_cap_yuan = -1"), "subsidy.classes.tech_sme",
     "annual_cap_yuan", "must not be negative"),
    ("cap a boolean", _mutated("annual_cap_yuan = 200000", "annual_cap_yuan = true"), "subsidy.classes.tech_sme",
     "annual_cap_yuan", "expected an amount in yuan"),
    ("unknown class", _mutated("[subsidy.classes.gazelle]", "[subsidy.classes.unicorn]"), "subsidy.classes.unicorn",
     "", "unknown enterprise class; use one of eaglet, tech_sme"),
    ("class none", _mutated("[subsidy.classes.gazelle]", "[subsidy.classes.none]"), "subsidy.classes.none", "",
     "class 'none' can never be eligible"),
    ("unpaid false", _mutated("unpaid = true", "unpaid = false"), "subsidy.exclusions", "unpaid",
     "only true is supported"),
    ("weights", _mutated("organisation = 20", "organisation = 25"), "award.weights", "",
     "add up to 105; they must add up to 100"),
    ("grades order", _mutated("min_score = 75", "min_score = 95"), "award.grades[1]", "min_score",
     "from the highest to the lowest"),
    ("lowest grade", _mutated("min_score = 0", "min_score = 10"), "award.grades[3]", "min_score",
     "must start at 0"),
    ("rectification with an award", _mutated("multiplier = 0\n", "multiplier = 0.5\n"), "award.grades[3]",
     "multiplier", "set multiplier = 0"),
    ("multiplier above 1", _mutated("multiplier = 0.7", "multiplier = 1.5"), "award.grades[1]", "multiplier",
     "between 0 and 1"),
    ("duplicate grade", _mutated('code = "pass"', 'code = "good"'), "award.grades[2]", "code",
     "duplicate grade code 'good'"),
    ("grade code", _mutated('code = "pass"', 'code = "Pass!"'), "award.grades[2]", "code",
     "lowercase letters, digits and underscores"),
    ("no-rating points", _mutated("points_without_ratings = 5", "points_without_ratings = 15"), "award.rating",
     "points_without_ratings", "must not exceed the rating weight (10 points)"),
    ("benchmark zero", _mutated("enterprises_served = 10", "enterprises_served = 0"), "award.benchmarks",
     "enterprises_served", "must be greater than 0"),
    ("until before from", _mutated("effective_from = 2026-01-01", "effective_from = 2026-01-01\neffective_until = 2025-12-31"),
     "", "effective_until", "is before effective_from"),
    ("bad date", _mutated("effective_from = 2026-01-01", 'effective_from = "2026-13-01"'), "", "effective_from",
     "valid date"),
    ("policy code", _mutated('code = "wuqing-default"', 'code = "Wuqing Default"'), "", "code",
     "lowercase letters, digits and hyphens"),
    ("version", _mutated('version = "2026.1"', 'version = "2026 first"'), "", "version", "e.g. 2026.1"),
    ("table expected", _mutated("cap_per_unit_year_yuan = 500000", 'cap_per_unit_year_yuan = 500000\nweights = "heavy"')
     .replace("[award.weights]", "[award.old_weights]"), "award", "weights", "expected a table of keys here"),
]


@pytest.mark.parametrize(("text", "table", "key", "message"), [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_a_bad_file_names_file_table_key_and_the_fix(text: str, table: str, key: str, message: str) -> None:
    with pytest.raises(CatalogInvalid) as caught:
        parse_policy(text, "wuqing-default.toml")
    problems = caught.value.problems
    assert any(p.file == "wuqing-default.toml" and p.record == table and p.field == key and message in p.message
               for p in problems), [str(p) for p in problems]


def test_every_problem_of_every_file_is_reported_and_nothing_loaded(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(_mutated("rate_percent = 50", "rate_percent = 150"), encoding="utf-8")
    (tmp_path / "b.toml").write_text(DEFAULT_TEXT.replace('version = "2026.1"', 'version = "2027.1"')
                                     .replace("organisation = 20", "organisation = 21"), encoding="utf-8")
    (tmp_path / "c.toml").write_bytes("code = '武清'".encode("gbk"))
    with pytest.raises(CatalogInvalid) as caught:
        load_policies(tmp_path)
    text = [str(p) for p in caught.value.problems]
    assert any(t.startswith("a.toml › subsidy.classes.eaglet › rate_percent:") for t in text), text
    assert any(t.startswith("b.toml › award.weights:") for t in text), text
    assert "c.toml: is not UTF-8 text; save it as UTF-8" in text
    assert "nothing was imported" in caught.value.message


def test_versions_of_one_code_must_be_distinguishable(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_FILE, tmp_path / "one.toml")
    shutil.copy(DEFAULT_FILE, tmp_path / "two.toml")
    with pytest.raises(CatalogInvalid, match="problem") as caught:
        load_policies(tmp_path)
    assert "two.toml › version: wuqing-default version 2026.1 is also defined in one.toml" in str(caught.value.problems[0])
    (tmp_path / "two.toml").write_text(DEFAULT_TEXT.replace('version = "2026.1"', 'version = "2026.2"'), encoding="utf-8")
    with pytest.raises(CatalogInvalid) as caught:
        load_policies(tmp_path)
    assert "both start on 2026-01-01; a later version must start on a later day" in caught.value.problems[0].message


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: d / "missing", "is not a folder"),
    (lambda d: d, "holds no policy files"),
])
def test_a_folder_that_is_not_one_of_policies(tmp_path: Path, setup, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogInvalid, match="problem") as caught:
        load_policies(setup(tmp_path))
    assert message in caught.value.problems[0].message
    with pytest.raises(CatalogInvalid):
        load_policy_file(tmp_path / "nope.toml")


def _version(version: str, start: str, until: str | None = None) -> str:
    text = DEFAULT_TEXT.replace('version = "2026.1"', f'version = "{version}"').replace(
        "effective_from = 2026-01-01", f"effective_from = {start}" + (f"\neffective_until = {until}" if until else ""))
    return text


def test_the_version_in_force_is_the_latest_starting_that_covers_the_date(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(_version("2026.1", "2026-01-01"), encoding="utf-8")
    (tmp_path / "b.toml").write_text(_version("2027.1", "2027-01-01"), encoding="utf-8")
    # A temporary rule for the summer of 2027 only.
    (tmp_path / "c.toml").write_text(_version("2027.s", "2027-07-01", "2027-08-31"), encoding="utf-8")
    loaded = load_policies(tmp_path)
    assert [item.version for item in loaded] == ["2026.1", "2027.1", "2027.s"]

    def version_on(day: date) -> str:
        return policy_in_force(loaded, "wuqing-default", day).version

    assert version_on(date(2026, 12, 31)) == "2026.1"
    assert version_on(date(2027, 1, 1)) == "2027.1"
    assert version_on(date(2027, 7, 1)) == "2027.s"
    assert version_on(date(2027, 8, 31)) == "2027.s"
    assert version_on(date(2027, 9, 1)) == "2027.1"
    with pytest.raises(NotFound, match="in force on 2025-12-31"):
        version_on(date(2025, 12, 31))
    with pytest.raises(NotFound, match="no policy 'elsewhere'; known policies: wuqing-default"):
        policy_in_force(loaded, "elsewhere", date(2026, 5, 1))


def test_period_budgets_are_prorated_by_days_and_rounded_once() -> None:
    yearly = 500_000_000
    quarters = [Period(date(2026, m, 1), date(2026, m + 3, 1) if m < 10 else date(2027, 1, 1), f"Q{m}", "quarter")
                for m in (1, 4, 7, 10)]
    # 90, 91, 92, 92 days of 365.
    assert [period_budget_fen(yearly, q) for q in quarters] == [123_287_671, 124_657_534, 126_027_397, 126_027_397]
    assert period_budget_fen(yearly, Period(date(2026, 1, 1), date(2027, 1, 1), "2026", "year")) == yearly
    # Across a new year each year's part counts with its own length (2027: 365, 2028: 366).
    span = Period(date(2027, 12, 1), date(2028, 2, 1), "x", "quarter")
    assert period_budget_fen(36_500 * 366, span) == 31 * 36_600 + 31 * 36_500


# --- the database ---------------------------------------------------------------------------


async def _import(db: Database, loaded) -> object:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        summary = await import_policies(session, loaded)
        await session.commit()
    return summary


async def _count(db: Database, model) -> int:  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_import_is_idempotent_and_keeps_the_canonical_document(db: Database) -> None:
    loaded = load_policies(ROOT / "catalog" / "policies")
    first = await _import(db, loaded)
    assert first.as_dict() == {"created": ["wuqing-default@2026.1"], "updated": [], "unchanged": []}
    second = await _import(db, loaded)
    assert second.as_dict() == {"created": [], "updated": [], "unchanged": ["wuqing-default@2026.1"]}
    assert await _count(db, PolicyVersion) == 1
    async with db.session() as session:
        row = (await session.execute(select(PolicyVersion))).scalar_one()
        assert row.digest == loaded[0].digest and row.source_file == "wuqing-default.toml"
        assert (row.title_zh, row.effective_from, row.effective_until) == (loaded[0].policy.title_zh, date(2026, 1, 1), None)
        stored = await get_policy_version(session, row.id)
        assert stored.policy == loaded[0].policy
        in_force = await policy_version_in_force(session, "wuqing-default", date(2026, 8, 1))
        assert in_force.id == row.id and in_force.digest == row.digest
        assert [s.version for s in await list_policy_versions(session)] == ["2026.1"]
        with pytest.raises(NotFound, match="in force on 2025-06-01"):
            await policy_version_in_force(session, "wuqing-default", date(2025, 6, 1))
        with pytest.raises(NotFound, match="policies import"):
            await policy_version_in_force(session, "elsewhere", date(2026, 6, 1))
        with pytest.raises(NotFound):
            await get_policy_version(session, row.id + 100)
    assert await _count(db, AuditEvent) == 1


async def _approve_settlement_on(db: Database, version_id: int) -> int:
    async with db.session(write=True) as session:
        settlement = Settlement(period_label="2026-Q1", period_kind="quarter", period_start=date(2026, 1, 1),
                                period_end=date(2026, 4, 1), policy_version_id=version_id,
                                cutoff_at=datetime(2026, 4, 15, tzinfo=UTC), status="approved")
        session.add(settlement)
        await session.commit()
        return settlement.id


async def test_a_changed_version_is_rewritten_until_an_approved_settlement_uses_it(db: Database, tmp_path: Path) -> None:
    shutil.copy(DEFAULT_FILE, tmp_path / "wuqing-default.toml")
    await _import(db, load_policies(tmp_path))
    (tmp_path / "wuqing-default.toml").write_text(_mutated("minimum_claim_yuan = 100", "minimum_claim_yuan = 200"),
                                                  encoding="utf-8")
    changed = load_policies(tmp_path)
    summary = await _import(db, changed)
    assert summary.as_dict()["updated"] == ["wuqing-default@2026.1"]
    async with db.session() as session:
        row = (await session.execute(select(PolicyVersion))).scalar_one()
    assert row.digest == changed[0].digest
    assert row.document["subsidy"]["minimum_claim_yuan"] == "200"

    settlement_id = await _approve_settlement_on(db, row.id)
    (tmp_path / "wuqing-default.toml").write_text(_mutated("minimum_claim_yuan = 100", "minimum_claim_yuan = 300"),
                                                  encoding="utf-8")
    with pytest.raises(Conflict) as caught:
        await _import(db, load_policies(tmp_path))
    message = caught.value.message
    assert f"approved settlement #{settlement_id} used it" in message
    assert "publish the change as a new version" in message
    async with db.session() as session:
        assert (await session.execute(select(PolicyVersion.digest))).scalar_one() == changed[0].digest
    # Restoring the file is fine, and so is a new version beside it.
    (tmp_path / "wuqing-default.toml").write_text(_mutated("minimum_claim_yuan = 100", "minimum_claim_yuan = 200"),
                                                  encoding="utf-8")
    (tmp_path / "wuqing-default-2027.toml").write_text(_version("2027.1", "2027-01-01"), encoding="utf-8")
    summary = await _import(db, load_policies(tmp_path))
    assert summary.as_dict() == {"created": ["wuqing-default@2027.1"], "updated": [],
                                 "unchanged": ["wuqing-default@2026.1"]}
    async with db.session() as session:
        assert (await policy_version_in_force(session, "wuqing-default", date(2027, 3, 1))).version == "2027.1"
        assert (await policy_version_in_force(session, "wuqing-default", date(2026, 12, 31))).version == "2026.1"


async def test_a_version_starting_on_the_day_of_one_already_stored_is_refused(db: Database, tmp_path: Path) -> None:
    shutil.copy(DEFAULT_FILE, tmp_path / "wuqing-default.toml")
    await _import(db, load_policies(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    (other / "renamed.toml").write_text(_version("2026.2", "2026-01-01"), encoding="utf-8")
    with pytest.raises(CatalogInvalid) as caught:
        await _import(db, load_policies(other))
    assert "both start on 2026-01-01" in str(caught.value.problems[0])
    assert await _count(db, PolicyVersion) == 1


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "cli.sqlite3"
    monkeypatch.setenv("FACILITY_SHARE_DATABASE_URL", f"sqlite:///{path}")
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return f"sqlite+aiosqlite:///{path}"


def _scalar(url: str, statement):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        db = Database(url, null_pool=True)
        try:
            async with db.session() as session:
                return (await session.execute(statement)).scalar_one()
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_cli_validate_and_import(cli_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["policies", "validate", str(ROOT / "catalog" / "policies")])
    assert result.exit_code == 0, result.output
    assert "wuqing-default 2026.1" in result.output
    result = runner.invoke(main, ["policies", "import", str(ROOT / "catalog" / "policies")])
    assert result.exit_code == 0, result.output
    assert "created: wuqing-default@2026.1" in result.output
    result = runner.invoke(main, ["policies", "import", str(ROOT / "catalog" / "policies"), "--json"])
    assert '"unchanged": [\n    "wuqing-default@2026.1"' in result.output

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.toml").write_text(_mutated("rate_percent = 50", "rate_percent = 150"), encoding="utf-8")
    result = runner.invoke(main, ["policies", "validate", str(bad)])
    assert result.exit_code == 1
    assert "x.toml › subsidy.classes.eaglet › rate_percent: a percentage must be between 0 and 100" in result.output


def test_catalog_import_brings_the_policies_and_a_bad_policy_imports_nothing(cli_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    catalog = tmp_path / "catalog"
    shutil.copytree(ROOT / "catalog", catalog)
    (catalog / "policies" / "wuqing-default.toml").write_text(_mutated("organisation = 20", "organisation = 2"),
                                                               encoding="utf-8")
    result = runner.invoke(main, ["catalog", "import", str(catalog)])
    assert result.exit_code == 1
    assert "award.weights" in result.output
    assert _scalar(cli_env, select(func.count()).select_from(Resource)) == 0
    assert _scalar(cli_env, select(func.count()).select_from(PolicyVersion)) == 0

    shutil.copy(DEFAULT_FILE, catalog / "policies" / "wuqing-default.toml")
    result = runner.invoke(main, ["catalog", "import", str(catalog)])
    assert result.exit_code == 0, result.output
    assert "policies: 1 created" in result.output
    assert _scalar(cli_env, select(func.count()).select_from(PolicyVersion)) == 1
    assert _scalar(cli_env, select(func.count()).select_from(Resource)) > 0
