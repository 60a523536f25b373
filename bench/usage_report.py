"""Usage report benchmark: a year of usage on PostgreSQL and SQLite, the report of the year and of
a quarter, against one SQL aggregation pass over the same usage table.

    .venv/bin/python bench/usage_report.py [--usage 500000] [--enterprises 2000] [--resources 400]
                                           [--dialect postgresql|sqlite|both] [--double] [--runs 3]
                                           [--admin-url postgresql://postgres@127.0.0.1/postgres]

For each database it fills a fresh migrated schema inside the database itself (INSERT … SELECT
over a generated series, so filling is quick on both): units of eight resources, enterprises,
unit relations (internal and related), the usage logs of 2026 (resources and enterprises drawn
independently, so each instrument serves many enterprises; one in twenty the unit's own use, one
in fifty corrected by a second version), a charge per session (most paid, some refunded,
unpaid or void), no-shows, ratings, and an approved settlement with a line per enterprise and
unit. Then it prints:

- the time of ``build_report`` for 2026 and for 2026-Q3 (median of ``--runs``), and of one
  aggregation pass (effective minutes per resource over the current versions of the year's
  sessions) on the same table; their ratio;
- the time to write the XLSX (every view), each view's CSV, and the JSON;
- the peak of Python allocations while building and writing (tracemalloc) and the process's peak
  RSS;
- with ``--double``, the same at twice the usage (ratio of the report times).

PostgreSQL databases are created as ``facility_share_bench_report_<random>`` and dropped at the
end; SQLite files live in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource as os_resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from facility_share.db import Database, migrate  # noqa: E402
from facility_share.db.models import (  # noqa: E402
    Category,
    Enterprise,
    ManagingUnit,
    PolicyVersion,
    Resource,
    Settlement,
    SettlementLine,
    UnitRelation,
    User,
)
from facility_share.finance import exports, reports  # noqa: E402

STAMP = datetime(2026, 1, 1, tzinfo=UTC)


def _series(dialect: str) -> str:
    if dialect == "postgresql":
        return "WITH s(n) AS (SELECT generate_series(CAST(1 AS BIGINT), CAST(:count AS BIGINT)))"
    return "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count)"


def _at(dialect: str, days: str, minutes: str) -> str:
    """A UTC timestamp ``days`` and ``minutes`` after local midnight of 1 January 2026."""
    if dialect == "postgresql":
        return f"(TIMESTAMPTZ '2025-12-31 16:00:00+00' + ({days}) * INTERVAL '1 day' + ({minutes}) * INTERVAL '1 minute')"
    return (f"(strftime('%Y-%m-%d %H:%M:%S', '2025-12-31 16:00:00', '+' || ({days}) || ' days', '+' || ({minutes}) || ' minutes')"
            " || '.000000')")


async def fill(url: str, usage: int, enterprises: int, resources: int) -> dict[str, float]:
    """The synthetic year; returns how long each part took."""
    db = Database(url, null_pool=True)
    dialect = db.dialect
    took: dict[str, float] = {}
    try:
        started = time.perf_counter()
        async with db.session(write=True) as session:
            category = Category(code="01", name_zh="分析仪器", name_en="Analytical instruments", level=1, position=0, content_hash="",
                                created_at=STAMP, updated_at=STAMP)
            session.add(category)
            units = [ManagingUnit(code=f"BU{u:03d}", name_zh=f"基准单位 {u}", name_en=f"Bench unit {u}", kind="institute",
                                  created_at=STAMP, updated_at=STAMP) for u in range(max(1, resources // 8))]
            session.add_all(units)
            await session.flush()
            session.add_all([
                Resource(code=f"BR{r:04d}", kind="instrument", unit_id=units[r % len(units)].id, category_id=category.id,
                         name_zh=f"仪器 {r}", name_en=f"Instrument {r}", open_for_sharing=r % 10 != 0,
                         rated_hours_per_year=800 if r % 5 == 0 else 1400, created_at=STAMP, updated_at=STAMP)
                for r in range(resources)
            ])
            companies = [Enterprise(uscc=f"91120222BE{e:07d}X"[:18], name=f"基准企业 {e}", name_en=f"Bench enterprise {e}",
                                    tier=("none", "eaglet", "gazelle", "leader_candidate", "leader")[e % 5], tech_sme=e % 3 == 0,
                                    registered_in_district=True, created_at=STAMP, updated_at=STAMP) for e in range(enterprises)]
            session.add_all(companies)
            session.add(User(email="bench@report.example.cn", name="bench", password_hash="x", created_at=STAMP, updated_at=STAMP))
            await session.flush()
            for u, unit in enumerate(units):
                session.add(UnitRelation(enterprise_id=companies[(u * 7) % enterprises].id, unit_id=unit.id, relation="internal"))
                session.add(UnitRelation(enterprise_id=companies[(u * 7 + 1) % enterprises].id, unit_id=unit.id, relation="related"))
            policy = PolicyVersion(code="bench", version="1", effective_from=date(2026, 1, 1), digest="0" * 64, document={})
            session.add(policy)
            await session.flush()
            settlement = Settlement(period_label="2026", period_kind="year", period_start=date(2026, 1, 1), period_end=date(2027, 1, 1),
                                    policy_version_id=policy.id, cutoff_at=STAMP)
            session.add(settlement)
            await session.flush()
            session.add_all([SettlementLine(settlement_id=settlement.id, kind="subsidy", position=i, subject_id=c.id, subject_code=c.uscc,
                                            subject_name=c.name, category=c.tier, amount_fen=1000 + i) for i, c in enumerate(companies)])
            session.add_all([SettlementLine(settlement_id=settlement.id, kind="award", position=i, subject_id=u.id, subject_code=u.code,
                                            subject_name=u.name_zh, category=("excellent", "good", "pass", "poor")[i % 4], amount_fen=50_000 * (i % 4))
                             for i, u in enumerate(units)])
            await session.flush()
            settlement.status = "approved"
            await session.commit()
            r0 = (await session.execute(text("SELECT min(id) FROM resources"))).scalar_one()
            e0 = (await session.execute(text("SELECT min(id) FROM enterprises"))).scalar_one()
            user_id = (await session.execute(text("SELECT min(id) FROM users"))).scalar_one()
        took["catalogue, enterprises, settlement"] = time.perf_counter() - started

        start = _at(dialect, "n % 365", "480 + (n * 37) % 600")
        end = _at(dialect, "n % 365", "480 + (n * 37) % 600 + 30 + ((n * 17) % 8) * 30 + n % 7")
        statements = {
            "usage logs": f"""{_series(dialect)}
                INSERT INTO usage_logs (resource_id, enterprise_id, started_at, ended_at, samples, operator, mode, source, reason, note,
                                        recorded_at)
                SELECT {r0} + ((n * 2654435761) % 4294967291) % {resources},
                       CASE WHEN n % 20 = 0 THEN NULL ELSE {e0} + ((n * 2246822519) % 4294967279) % {enterprises} END,
                       {start}, {end}, 0, '', 'staff_operated', 'manager', '', '', {end}
                FROM s""",
            "session ids": "UPDATE usage_logs SET session_id = id",
            "corrections": """INSERT INTO usage_logs (resource_id, enterprise_id, started_at, ended_at, samples, operator, mode, source,
                                                     reason, note, recorded_at, supersedes_id, session_id)
                SELECT resource_id, enterprise_id, started_at, ended_at, 1, '', mode, source, 'samples corrected', '', recorded_at, id, id
                FROM usage_logs WHERE id % 50 = 0""",
            "charges": """INSERT INTO charges (kind, usage_log_id, resource_id, enterprise_id, service_date, customer_class, lines, total_fen,
                                               explanation_zh, explanation_en, status, paid_fen, refunded_fen, payment_method,
                                               payment_reference, void_reason, created_at, updated_at)
                SELECT 'service', id, resource_id, enterprise_id, started_at, 'district', '[]', (id % 8 + 1) * 15000, '', '',
                       CASE WHEN id % 97 = 0 THEN 'void' WHEN id % 10 = 0 THEN 'unpaid' ELSE 'paid' END,
                       CASE WHEN id % 97 = 0 OR id % 10 = 0 THEN 0 ELSE (id % 8 + 1) * 15000 END,
                       CASE WHEN id % 97 <> 0 AND id % 10 <> 0 AND id % 50 = 7 THEN (id % 8 + 1) * 5000 ELSE 0 END,
                       '', '', '', recorded_at, recorded_at
                FROM usage_logs WHERE enterprise_id IS NOT NULL AND supersedes_id IS NULL""",
            "no-shows": f"""{_series(dialect)}
                INSERT INTO bookings (resource_id, enterprise_id, user_id, starts_at, ends_at, quantity, samples, exclusive, mode, purpose,
                                      status, decision_reason, customer_class, estimate_fen, version, created_at, updated_at)
                SELECT {r0} + (n * 31) % {resources}, {e0} + (n * 13) % {enterprises}, {user_id}, {start}, {end}, 1, 0, :no,
                       'staff_operated', '', 'no_show', '', 'district', 0, 1, {start}, {end}
                FROM s""",
            "ratings": f"""INSERT INTO ratings (usage_session_id, resource_id, enterprise_id, user_id, stars, comment, created_at)
                SELECT id, resource_id, enterprise_id, {user_id}, 1 + id % 5, '', recorded_at
                FROM usage_logs WHERE enterprise_id IS NOT NULL AND supersedes_id IS NULL AND id % 5 = 0""",
        }
        counts = {"usage logs": usage, "no-shows": max(1, usage // 50)}
        for name, statement in statements.items():
            started = time.perf_counter()
            async with db.session(write=True) as session:
                await session.execute(text(statement), {"count": counts.get(name, 0), "no": False})
                await session.commit()
            took[name] = time.perf_counter() - started
        started = time.perf_counter()
        async with db.engine.connect() as conn:
            if dialect == "postgresql":
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
            else:
                await conn.execute(text("ANALYZE"))
                await conn.commit()
        took["analyze"] = time.perf_counter() - started
    finally:
        await db.dispose()
    return took


async def baseline(db: Database, period: Any) -> float:
    """One aggregation pass: effective minutes per resource over the year's current sessions."""
    from sqlalchemy import func, select

    from facility_share.db.models import UsageLog
    from facility_share.usage.figures import period_bounds
    from facility_share.usage.services import current_versions

    since, until = period_bounds(period.start, period.end)
    async with db.session() as session:
        minutes = reports.whole_minutes(session, UsageLog.started_at, UsageLog.ended_at)
        started = time.perf_counter()
        rows = (await session.execute(
            select(UsageLog.resource_id, func.sum(minutes))
            .where(UsageLog.ended_at.is_not(None), UsageLog.started_at >= since, UsageLog.started_at < until, current_versions())
            .group_by(UsageLog.resource_id)
        )).all()
        elapsed = time.perf_counter() - started
    assert rows
    return elapsed


async def measure(url: str, runs: int) -> dict[str, Any]:
    db = Database(url, null_pool=True)
    out: dict[str, Any] = {}
    try:
        for label in ("2026", "2026-Q3"):
            period = reports.parse_report_period(label)
            times, base = [], []
            for _ in range(runs):
                base.append(await baseline(db, period))
                gc.collect()
                started = time.perf_counter()
                async with db.session() as session:
                    report = await reports.build_report(session, period)
                times.append(time.perf_counter() - started)
            out[label] = {"report": statistics.median(times), "baseline": statistics.median(base),
                          "rows": {name: len(v.rows) for name, v in report.views.items()},
                          "sessions": report.totals.sessions, "hours": report.totals.effective_minutes / 60}
        period = reports.parse_report_period("2026")
        async with db.session() as session:
            report = await reports.build_report(session, period)
        for name, write in (("xlsx", lambda: exports.to_xlsx(report)), ("json", lambda: exports.to_json(report)),
                            *((f"csv {v}", (lambda v=v: exports.to_csv(report, v))) for v in reports.VIEWS)):
            started = time.perf_counter()
            size = len(write())
            out[f"write {name}"] = (time.perf_counter() - started, size)
        gc.collect()
        tracemalloc.start()
        async with db.session() as session:
            report = await reports.build_report(session, period)
        exports.to_xlsx(report)
        out["python peak MB"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    finally:
        await db.dispose()
    out["peak RSS MB"] = os_resource.getrusage(os_resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


async def admin(admin_url: str, statement: str) -> None:
    u = make_url(admin_url)
    conn = await asyncpg.connect(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres", password=u.password,
                                 database=u.database or "postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def one(dialect: str, usage: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    if dialect == "postgresql":
        name = f"facility_share_bench_report_{uuid.uuid4().hex[:8]}"
        await admin(args.admin_url, f'CREATE DATABASE "{name}"')
        url = make_url(args.admin_url).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    else:
        name = ""
        url = f"sqlite+aiosqlite:///{folder / f'report-{usage}.sqlite3'}"
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        filled = await fill(url, usage, args.enterprises, args.resources)
        print(f"  {dialect}, {usage:,} sessions filled in {sum(filled.values()):.1f} s "
              f"({', '.join(f'{k} {v:.1f}' for k, v in filled.items())})", flush=True)
        return await measure(url, args.runs)
    finally:
        if name:
            await admin(args.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def show(dialect: str, usage: int, m: dict[str, Any]) -> None:
    print(f"\n{dialect}, {usage:,} sessions:")
    for label in ("2026", "2026-Q3"):
        r = m[label]
        print(f"  report {label:8} {r['report']:7.3f} s   one aggregation pass {r['baseline']:6.3f} s   ratio {r['report'] / r['baseline']:5.1f}"
              f"   ({r['sessions']:,} sessions, {r['hours']:,.0f} h; rows {r['rows']})")
    for key, value in m.items():
        if key.startswith("write "):
            print(f"  {key:18} {value[0]:7.3f} s   {value[1]:,} bytes")
    print(f"  python peak {m['python peak MB']:.1f} MB (report of the year and its XLSX); process peak RSS {m['peak RSS MB']:.0f} MB")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--usage", type=int, default=500_000)
    parser.add_argument("--enterprises", type=int, default=2_000)
    parser.add_argument("--resources", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dialect", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--double", action="store_true", help="also measure at twice the usage")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    dialects = ("postgresql", "sqlite") if args.dialect == "both" else (args.dialect,)
    with tempfile.TemporaryDirectory() as tmp:
        for dialect in dialects:
            sizes = (args.usage, 2 * args.usage) if args.double else (args.usage,)
            results = {}
            for usage in sizes:
                results[usage] = await one(dialect, usage, args, Path(tmp))
                show(dialect, usage, results[usage])
            if args.double:
                a, b = results[sizes[0]]["2026"]["report"], results[sizes[1]]["2026"]["report"]
                print(f"  twice the usage: the year's report takes {b / a:.2f}× as long")


if __name__ == "__main__":
    asyncio.run(main())
