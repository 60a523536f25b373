"""Settlement benchmark on PostgreSQL: a year of usage settled, against one SQL pass over it.

    .venv/bin/python bench/settlement.py [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
                                         [--usage 500000] [--enterprises 2000] [--resources 400]
                                         [--seed 2026] [--units-per-enterprise 5] [--runs 3]
                                         [--keep] [--reuse] [--no-double] [--sql] [--tracemalloc]

It creates a database on the server of --database-url (`fs_bench_settlement`; the database
named in the URL is only used to create it), migrates it, and loads one year (2026) of data:
the given numbers of finished usage logs, enterprises and resources, with everything a
settlement reads — enterprises' status history (tiers changing mid-year, controllers shared by
groups, some unregistered or unverified), unit relations, bookings, one charge per usage log,
payments (a few after the cut-off), refunds and ratings; each enterprise buys from about
--units-per-enterprise units (see bench/settlement_data.py; a fixed seed makes runs
comparable). Then, in a fresh process so that memory figures are its own:

(a) the baseline: one SQL aggregation pass over the usage table,
    SELECT resource_id, count(*), sum(extract(epoch FROM ended_at - started_at))
    FROM usage_logs GROUP BY resource_id — median of 5 runs after one warm-up;
(b) the settlement: `finance.settlements.create_draft` for period 2026 under wuqing-default
    (cut-off 1 April 2027), each run in its own transaction, rolled back afterwards — median of
    --runs runs, split into its phases (the SQL facts, the pure computation, the rest: storing
    lines and digests), with the process's peak RSS and its growth during the settlements;
(c) both again on a second database with double the usage logs, enterprises and resources
    (`fs_bench_settlement_2x`).

Targets (issue 7): settlement ÷ SQL pass ≤ 3; peak RSS < 512 MB; time at double the data ≤ 2.2×
the time at the given size. The databases are dropped at the end unless --keep; --reuse skips
generation when a kept database holds data generated with the same numbers and seed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from settlement_data import CUTOFF, Scale, generate, load_policy, vacuum_analyze  # noqa: E402

from facility_share.db import migrate  # noqa: E402

BASELINE_SQL = (
    "SELECT resource_id, count(*), sum(extract(epoch FROM ended_at - started_at)) FROM usage_logs GROUP BY resource_id"
)
BASELINE_RUNS = 5
TARGET_RATIO, TARGET_MB, TARGET_SCALING = 3.0, 512, 2.2


def rss_mb() -> float:
    """The process's resident set now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def backend_cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by a PostgreSQL backend on this machine (None if it is elsewhere)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"postgres" not in cmdline.read():
                return None
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- preparing the databases ---------------------------------------------------------------------


async def prepare(admin_dsn: str, url: str, dsn: str, name: str, scale: Scale, *, reuse: bool) -> dict[str, Any]:
    """Create, migrate and fill database ``name``; returns what was done and how long it took."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = $1", name)
        if oid is not None and reuse:
            comment = await conn.fetchval("SELECT shobj_description($1, 'pg_database')", oid)
            if comment == scale.label():
                return {"reused": True}
        if oid is not None:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    started = time.perf_counter()
    await asyncio.to_thread(migrate.upgrade, url)
    migrated = time.perf_counter()
    counts = await generate(dsn, scale, progress=lambda text: print(text, end="\r", flush=True))
    policy = await load_policy(url)
    loaded = time.perf_counter()
    await vacuum_analyze(dsn)
    analysed = time.perf_counter()
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{scale.label()}'")
    finally:
        await conn.close()
    print(" " * 60, end="\r")
    return {"reused": False, "migrate": migrated - started, "load": loaded - migrated, "vacuum": analysed - loaded,
            "counts": counts, "policy": policy}


async def drop(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --- measuring (in a fresh process) --------------------------------------------------------------


def measure(url: str, runs: int, with_tracemalloc: bool) -> dict[str, Any]:
    """Runs in a spawned process: the baseline, then the settlement; returns the figures."""
    return asyncio.run(_measure(url, runs, with_tracemalloc))


async def _measure(url: str, runs: int, with_tracemalloc: bool) -> dict[str, Any]:
    from sqlalchemy import event, func, select, text

    from facility_share.accounts.principal import Principal
    from facility_share.db import Database
    from facility_share.db.models import SettlementLine
    from facility_share.finance import facts, settlements

    out: dict[str, Any] = {"rss_start": rss_mb()}
    db = Database(url, pool_size=2, max_overflow=0)
    try:
        async with db.session() as session:
            await session.execute(text(BASELINE_SQL))  # warm-up: connection, catalogue, buffers
            times = []
            for _ in range(BASELINE_RUNS):
                started = time.perf_counter()
                rows = (await session.execute(text(BASELINE_SQL))).all()
                times.append(time.perf_counter() - started)
            out["baseline"] = statistics.median(times)
            out["baseline_runs"] = times
            out["baseline_rows"] = len(rows)

        try:
            from facility_share.finance import engine
        except ImportError as exc:
            out["error"] = f"the settlement cannot run yet: {exc}"
            return out

        # Time each phase: the SQL facts, the pure computation, and every statement sent.
        phases: dict[str, float] = defaultdict(float)
        statements: dict[str, list[float]] = defaultdict(list)

        def timed_async(name: str, function: Any) -> Any:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    phases[name] += time.perf_counter() - started
            return wrapper

        def timed_sync(name: str, function: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    phases[name] += time.perf_counter() - started
            return wrapper

        facts.service_charges = timed_async("facts: service charges", facts.service_charges)  # type: ignore[method-assign]
        facts.enterprises_by_id = timed_async("facts: enterprises", facts.enterprises_by_id)  # type: ignore[method-assign]
        facts.unit_facts = timed_async("facts: unit figures", facts.unit_facts)  # type: ignore[method-assign]
        engine.compute = timed_sync("compute (pure functions)", engine.compute)  # type: ignore[attr-defined]

        def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            context._bench_started = time.perf_counter()

        def after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            statements[" ".join(statement.split())[:110]].append(time.perf_counter() - context._bench_started)

        event.listen(db.engine.sync_engine, "before_cursor_execute", before)
        event.listen(db.engine.sync_engine, "after_cursor_execute", after)

        principal = Principal(user_id=2, email="finance@bench.example.cn", name="finance", roles=frozenset({"finance"}))
        request = settlements.DraftRequest(period="2026", policy_code="wuqing-default")
        gc.collect()
        out["load"] = os.getloadavg()[0]
        out["rss_before"] = rss_mb()
        out["peak_before"] = peak_rss_mb()
        results = []
        for _ in range(runs):
            phases.clear()
            statements.clear()
            async with db.session(write=True) as session:
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                server_cpu = backend_cpu_seconds(pid)
                client_cpu = time.process_time()
                started = time.perf_counter()
                try:
                    settlement = await settlements.create_draft(session, principal, request, now=CUTOFF)
                except Exception as exc:  # report it beside the baseline instead of losing both
                    import traceback

                    out["error"] = "the settlement failed:\n" + "".join(traceback.format_exception(exc)[-6:])
                    return out
                elapsed = time.perf_counter() - started
                client_cpu = time.process_time() - client_cpu
                if server_cpu is not None:
                    server_cpu = (backend_cpu_seconds(pid) or 0) - server_cpu
                kinds = dict((await session.execute(
                    select(SettlementLine.kind, func.count()).where(SettlementLine.settlement_id == settlement.id)
                    .group_by(SettlementLine.kind)
                )).all())
                results.append({
                    "seconds": elapsed, "client_cpu": client_cpu, "server_cpu": server_cpu, "phases": dict(phases),
                    "statements": {k: (len(v), sum(v)) for k, v in statements.items()},
                    "subsidy_lines": kinds.get("subsidy", 0), "award_lines": kinds.get("award", 0),
                    "subsidy_total_fen": settlement.subsidy_total_fen, "award_total_fen": settlement.award_total_fen,
                    "subsidy_budget_fen": settlement.subsidy_budget_fen, "award_budget_fen": settlement.award_budget_fen,
                    "results_digest": settlement.results_digest, "inputs_digest": settlement.inputs_digest,
                    "rss_after": rss_mb(),
                })
                await session.rollback()
            gc.collect()
        out["peak"] = peak_rss_mb()
        out["runs"] = results
        out["settlement"] = statistics.median(r["seconds"] for r in results)
        out["median_run"] = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]

        if with_tracemalloc:
            import tracemalloc

            tracemalloc.start()
            async with db.session(write=True) as session:
                await settlements.create_draft(session, principal, request, now=CUTOFF)
                await session.rollback()
            out["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        return out
    finally:
        await db.dispose()


def measure_in_fresh_process(url: str, runs: int, with_tracemalloc: bool) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, url, runs, with_tracemalloc).result()


# --- printing ------------------------------------------------------------------------------------


def _yuan(fen: int | None) -> str:
    return "-" if fen is None else f"{fen / 100:,.2f}"


def report(columns: list[tuple[str, Scale, dict[str, Any], dict[str, Any]]], show_sql: bool) -> None:
    width = 26

    def row(label: str, values: list[str]) -> None:
        print(f"{label:<{width}}" + "".join(f"{v:>24}" for v in values))

    print()
    row("", [label for label, *_ in columns])
    row("usage logs", [f"{s.usage:,}" for _, s, _, _ in columns])
    row("enterprises", [f"{s.enterprises:,}" for _, s, _, _ in columns])
    row("resources", [f"{s.resources:,}" for _, s, _, _ in columns])
    row("generate + load", ["reused" if p["reused"] else f"{p['migrate'] + p['load']:.1f} s" for _, _, p, _ in columns])
    row("VACUUM ANALYZE", ["-" if p["reused"] else f"{p['vacuum']:.1f} s" for _, _, p, _ in columns])
    row(f"SQL pass (median of {BASELINE_RUNS})", [f"{m['baseline'] * 1000:.0f} ms" for *_, m in columns])
    if any("error" in m for *_, m in columns):
        for label, _, _, m in columns:
            print(f"{label}: {m.get('error')}")
        return
    row("machine load (1 min)", [f"{m['load']:.1f}" for *_, m in columns])
    row("settlement (median)", [f"{m['settlement'] * 1000:.0f} ms" for *_, m in columns])
    row("  runs", [" ".join(f"{r['seconds']:.2f}" for r in m["runs"]) + " s" for *_, m in columns])
    phase_names = sorted({p for *_, m in columns for p in m["median_run"]["phases"]})
    for phase in phase_names:
        row(f"  {phase}", [f"{m['median_run']['phases'].get(phase, 0) * 1000:.0f} ms" for *_, m in columns])
    row("  other (store lines, …)", [
        f"{(m['median_run']['seconds'] - sum(m['median_run']['phases'].values())) * 1000:.0f} ms" for *_, m in columns
    ])
    row("  SQL statements", [
        f"{sum(n for n, _ in m['median_run']['statements'].values())}, "
        f"{sum(t for _, t in m['median_run']['statements'].values()) * 1000:.0f} ms" for *_, m in columns
    ])
    row("  CPU: this process", [f"{m['median_run']['client_cpu'] * 1000:.0f} ms" for *_, m in columns])
    row("  CPU: its PG backend", ["-" if m["median_run"]["server_cpu"] is None else f"{m['median_run']['server_cpu'] * 1000:.0f} ms"
                                  for *_, m in columns])
    row("settlement ÷ SQL pass", [f"{m['settlement'] / m['baseline']:.2f}" for *_, m in columns])
    row("lines subsidy / award", [f"{m['median_run']['subsidy_lines']:,} / {m['median_run']['award_lines']:,}"
                                  for *_, m in columns])
    row("subsidy total (yuan)", [f"{_yuan(m['median_run']['subsidy_total_fen'])}" for *_, m in columns])
    row("  budget", [f"{_yuan(m['median_run']['subsidy_budget_fen'])}" for *_, m in columns])
    row("award total (yuan)", [f"{_yuan(m['median_run']['award_total_fen'])}" for *_, m in columns])
    row("  budget", [f"{_yuan(m['median_run']['award_budget_fen'])}" for *_, m in columns])
    row("same digest every run", ["yes" if len({r["results_digest"] for r in m["runs"]}) == 1 else "NO" for *_, m in columns])
    row("RSS at start", [f"{m['rss_start']:.0f} MB" for *_, m in columns])
    row("RSS before settlement", [f"{m['rss_before']:.0f} MB" for *_, m in columns])
    row("peak RSS", [f"{m['peak']:.0f} MB" for *_, m in columns])
    row("  growth in settlement", [f"{m['peak'] - m['rss_before']:.0f} MB" for *_, m in columns])
    if all("tracemalloc_peak" in m for *_, m in columns):
        row("Python heap peak", [f"{m['tracemalloc_peak']:.0f} MB" for *_, m in columns])

    if show_sql:
        for label, _, _, m in columns:
            print(f"\nslowest statements of the median settlement run ({label}):")
            ranked = sorted(m["median_run"]["statements"].items(), key=lambda item: -item[1][1])[:8]
            for statement, (count, seconds) in ranked:
                print(f"  {seconds * 1000:8.1f} ms  ×{count:<4d} {statement}")

    first = columns[0][3]
    print("\ntargets")
    ratio = first["settlement"] / first["baseline"]
    print(f"  settlement ÷ SQL pass ({columns[0][0]})   {ratio:6.2f}   target <= {TARGET_RATIO:g}: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    print(f"  peak RSS ({columns[0][0]})                {first['peak']:6.0f} MB  target < {TARGET_MB} MB: "
          f"{'met' if first['peak'] < TARGET_MB else 'NOT met'}")
    if len(columns) > 1:
        scaling = columns[1][3]["settlement"] / first["settlement"]
        print(f"  time {columns[1][0]} ÷ time {columns[0][0]}          {scaling:6.2f}   target <= {TARGET_SCALING:g}: "
              f"{'met' if scaling <= TARGET_SCALING else 'NOT met'}")


# --- main ----------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server to create the benchmark databases on")
    parser.add_argument("--database-name", default="fs_bench_settlement")
    parser.add_argument("--usage", type=int, default=500_000)
    parser.add_argument("--enterprises", type=int, default=2_000)
    parser.add_argument("--resources", type=int, default=400)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--units-per-enterprise", type=int, default=5,
                        help="how many units an enterprise buys from, on average (0: every unit alike)")
    parser.add_argument("--runs", type=int, default=3, help="settlement runs per size (the median is reported)")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse kept databases generated with the same numbers")
    parser.add_argument("--no-double", action="store_true", help="measure the given size only")
    parser.add_argument("--sql", action="store_true", help="list the slowest statements of a settlement")
    parser.add_argument("--tracemalloc", action="store_true", help="one more (untimed) run measuring the Python heap")
    args = parser.parse_args()

    server = make_url(args.database_url)
    if not server.drivername.startswith("postgresql"):
        parser.error("--database-url: the benchmark runs on PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    scale = Scale(args.usage, args.enterprises, args.resources, args.seed, args.units_per_enterprise)
    sizes = [("1x", args.database_name, scale)]
    if not args.no_double:
        sizes.append(("2x", f"{args.database_name}_2x",
                      replace(scale, usage=2 * scale.usage, enterprises=2 * scale.enterprises, resources=2 * scale.resources)))

    conn = await asyncpg.connect(admin_dsn)
    version = await conn.fetchval("SHOW server_version")
    settings = {name: await conn.fetchval(f"SHOW {name}") for name in ("shared_buffers", "work_mem", "jit",
                                                                        "max_parallel_workers_per_gather")}
    await conn.close()
    print(f"PostgreSQL {version} at {server.host}:{server.port or 5432} ("
          + ", ".join(f"{k} {v}" for k, v in settings.items()) + f"); seed {args.seed}; {args.runs} settlement runs per size")
    # Timings on a shared machine drift with its load: say what it was.
    print(f"this machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    columns = []
    try:
        for label, name, size in sizes:
            dsn = server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
            url = server.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
            print(f"{label}: database {name}: {size.usage:,} usage logs, {size.enterprises:,} enterprises, "
                  f"{size.resources:,} resources", flush=True)
            prepared = await prepare(admin_dsn, url, dsn, name, size, reuse=args.reuse)
            if prepared["reused"]:
                print("  reused the data already there")
            else:
                counts = ", ".join(f"{table} {n:,}" for table, n in prepared["counts"].items())
                print(f"  loaded in {prepared['migrate'] + prepared['load']:.1f} s (migrate {prepared['migrate']:.1f} s), "
                      f"VACUUM ANALYZE {prepared['vacuum']:.1f} s; policy {prepared['policy']}\n  rows: {counts}")
            measured = await asyncio.to_thread(measure_in_fresh_process, url, args.runs, args.tracemalloc)
            columns.append((label, size, prepared, measured))
    finally:
        if not args.keep:
            for _, name, _ in sizes:
                await drop(admin_dsn, name)
    report(columns, args.sql)


if __name__ == "__main__":
    asyncio.run(main())
