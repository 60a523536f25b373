"""Catalogue import benchmark: 10,000 generated resources, first import vs. re-import.

    .venv/bin/python bench/catalog_import.py [--resources 10000] [--database-url URL]

Prints the time to validate the files, the first import and the re-import of the unchanged
files, each timed the way `facility-share catalog import` runs (read what the database holds,
parse what changed, validate, upsert, commit); the target is a re-import of at most 1/3 of the
first with zero rows written. Also the process's peak memory.
Without --database-url it uses a fresh SQLite file; pass a PostgreSQL URL to measure there (the
database must be empty and migrated: `facility-share db upgrade`).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml
from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from facility_share.catalog.files import load_catalog  # noqa: E402
from facility_share.catalog.importer import import_catalog, known_files  # noqa: E402
from facility_share.db import Database, migrate  # noqa: E402
from facility_share.settings import normalise_database_url  # noqa: E402

CATEGORIES = ["0101", "0102", "0103", "0104", "0105", "0106", "0109", "0201", "1301", "1302"]


def generate(root: Path, total: int, per_unit: int = 200) -> None:
    (root / "units").mkdir(parents=True)
    (root / "categories.yaml").write_text((ROOT / "catalog" / "categories.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    units = max(1, total // per_unit)
    made = 0
    for u in range(units):
        code = f"BENCH-U{u:03d}"
        count = per_unit if u < units - 1 else total - made
        resources = []
        for i in range(count):
            resources.append(
                {
                    "code": f"{code}-R{i:04d}",
                    "kind": "instrument",
                    "category": CATEGORIES[(u + i) % len(CATEGORIES)],
                    "name_zh": f"高效液相色谱仪 {i}",
                    "name_en": f"HPLC system {i}",
                    "model": f"LC-{1000 + i}",
                    "maker": "Example Instruments",
                    "country": "CN",
                    "original_value": 500000 + i * 1000,
                    "commissioned_on": "2020-01-15",
                    "capabilities": ["色谱分析", "HPLC", "purity"],
                    "specs_zh": "流速 0.001–10 mL/min；压力 600 bar",
                    "fees": [
                        {"basis": "hour", "label_zh": "机时", "label_en": "Hour", "internal": 100, "district": 200, "external": 260, "unit_minutes": 30},
                        {"basis": "setup", "label_zh": "开机", "label_en": "Start-up", "internal": 20, "district": 40, "external": 50},
                    ],
                }
            )
            made += 1
        document = {
            "unit": {"code": code, "name_zh": f"基准单位 {u}", "name_en": f"Bench unit {u}", "kind": "institute"},
            "defaults": {"opening_hours": {"mon-fri": ["08:30-12:00", "13:30-17:30"], "sat": ["09:00-12:00"]}},
            "resources": resources,
        }
        (root / "units" / f"{code}.yaml").write_text(yaml.dump(document, Dumper=getattr(yaml, 'CSafeDumper', yaml.SafeDumper), allow_unicode=True, sort_keys=False), encoding="utf-8")


async def timed_import(db: Database, folder: Path) -> tuple[float, int, object]:
    """What `facility-share catalog import` does: read what the database holds, parse the
    files that changed, validate, upsert, commit."""
    writes = 0

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        nonlocal writes
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes += len(parameters) if executemany and isinstance(parameters, list) else 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    started = time.perf_counter()
    async with db.session(write=True) as session:
        catalog = load_catalog(folder, known=await known_files(session))
        summary = await import_catalog(session, catalog)
        await session.commit()
    elapsed = time.perf_counter() - started
    event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    return elapsed, writes, summary


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "catalog"
        started = time.perf_counter()
        generate(folder, args.resources)
        generated = time.perf_counter() - started
        url = normalise_database_url(args.database_url) if args.database_url else f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        if not args.database_url:
            await asyncio.to_thread(migrate.upgrade, url)

        started = time.perf_counter()
        catalog = load_catalog(folder)
        validated = time.perf_counter() - started
        rss_after_load = peak_rss_mb()

        db = Database(url, null_pool=True)
        try:
            first, first_writes, first_summary = await timed_import(db, folder)
            rss_after_first = peak_rss_mb()
            again, again_writes, again_summary = await timed_import(db, folder)
        finally:
            await db.dispose()

    print(f"database               {url.split('://')[0]}")
    print(f"resources              {len(catalog.resources):,} in {len(catalog.units)} unit files")
    print(f"generate files         {generated:7.2f} s")
    print(f"validate files         {validated:7.2f} s  ({len(catalog.resources) / validated:,.0f} resources/s; `catalog validate` alone)")
    print(f"first import           {first:7.2f} s  (parse + validate + write; {first_writes:,} rows written; created {first_summary.resources.created:,})")  # type: ignore[attr-defined]
    print(f"re-import (unchanged)  {again:7.2f} s  (digests + compare; {again_writes:,} rows written; unchanged {again_summary.resources.unchanged:,})")  # type: ignore[attr-defined]
    ratio = again / first
    print(f"re-import / first      {ratio:7.3f}   target <= 0.333: {'met' if ratio <= 1 / 3 and again_writes == 0 else 'NOT met'}")
    print(f"peak RSS               {peak_rss_mb():7.0f} MB  (after validation {rss_after_load:.0f} MB, after first import {rss_after_first:.0f} MB)")


if __name__ == "__main__":
    asyncio.run(main())
