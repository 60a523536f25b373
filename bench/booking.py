"""Booking benchmark on PostgreSQL: the HTTP API against a raw asyncpg loop, and availability
queries against a long history.

    .venv/bin/python bench/booking.py [--admin-url postgresql://postgres@127.0.0.1/postgres]
                                      [--seconds 10] [--workers 2]

1. Throughput of non-conflicting bookings through `POST /api/v1/bookings` on a server process
   (uvicorn, --workers N) at 16 and 64 concurrent clients, with p50/p99 latency; and a raw
   asyncpg loop running the booking transaction (lock the resource row, read overlapping
   active bookings, insert the booking and its audit event, commit) on the same database with
   the same concurrency. Prints the ratio (target >= 0.5).
2. Availability of one resource for a week with 10,000 and with 1,000,000 bookings in its
   history (target ratio <= 1.5).

It creates a throwaway database, `facility_share_bench_<random>`, and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from facility_share.accounts import services as accounts  # noqa: E402
from facility_share.catalog.files import load_catalog  # noqa: E402
from facility_share.catalog.importer import import_catalog  # noqa: E402
from facility_share.db import Database, migrate  # noqa: E402
from tests.live import LiveServer  # noqa: E402

RESOURCES = 64
PASSWORD = "bench-password-123"


def write_catalogue(root: Path) -> None:
    """64 capacity-1 instruments open around the clock, approved automatically, no lead time."""
    (root / "units").mkdir(parents=True)
    (root / "categories.yaml").write_text((ROOT / "catalog" / "categories.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    document = {
        "unit": {"code": "BENCH", "name_zh": "基准单位", "name_en": "Bench unit", "kind": "institute"},
        "defaults": {
            "opening_hours": {"daily": ["00:00-24:00"]},
            "booking": {"slot_minutes": 30, "min_minutes": 30, "max_minutes": 240, "lead_hours": 0, "horizon_days": 730,
                        "approval_required": False, "working_calendar": False},
        },
        "resources": [
            {"code": f"BENCH-R{i:03d}", "kind": "instrument", "category": "0105", "name_zh": f"色谱仪 {i}", "name_en": f"HPLC {i}",
             "fees": [{"basis": "hour", "label_zh": "机时", "label_en": "Hour", "internal": 100, "district": 200, "external": 300}]}
            for i in range(RESOURCES)
        ],
    }
    (root / "units" / "BENCH.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")


async def prepare(url: str, folder: Path, members: int) -> list[str]:
    """Import the catalogue and create verified enterprises with a member and a token each."""
    db = Database(url, null_pool=True)
    tokens = []
    try:
        async with db.session(write=True) as session:
            await import_catalog(session, load_catalog(folder))
            admin = await accounts.create_user(session, email="admin@bench.example.cn", password=PASSWORD, name="admin", role="admin")
            from stdnum.cn import uscc

            for i in range(members):
                body = f"91120222MA{i:07d}"
                user = await accounts.register(session, accounts.Registration(
                    email=f"m{i}@bench.example.cn", password=PASSWORD, name=f"m{i}", uscc=body + uscc.calc_check_digit(body),
                    enterprise_name=f"Bench {i}"))
                await accounts.update_enterprise_status(
                    session, user.enterprise_id, accounts.EnterpriseUpdate(True, True, False, False, "none"), actor_id=admin.id)
                _row, token = await accounts.create_api_token(session, user.id, "bench")
                tokens.append(token)
            await session.commit()
    finally:
        await db.dispose()
    return tokens


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def http_load(base_url: str, tokens: list[str], clients: int, seconds: float, origin: datetime) -> tuple[float, list[float], int]:
    """Each client books consecutive 30-minute slots on its own resource: nothing conflicts."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        async def run(index: int) -> int:
            nonlocal failures
            done = 0
            resource = f"BENCH-R{index % RESOURCES:03d}"
            # Clients sharing a resource take interleaved slots.
            lane, lanes = index // RESOURCES, max(1, clients // RESOURCES)
            headers = {"authorization": f"Bearer {tokens[index % len(tokens)]}"}
            slot = 0
            while time.perf_counter() < deadline:
                start = origin + timedelta(minutes=30 * (slot * lanes + lane))
                payload = {"resource_code": resource, "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}
                began = time.perf_counter()
                response = await client.post("/api/v1/bookings", json=payload, headers=headers)
                latencies.append(time.perf_counter() - began)
                if response.status_code != 201:
                    failures += 1
                slot += 1
                done += 1
            return done

        began = time.perf_counter()
        counts = await asyncio.gather(*(run(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    return sum(counts) / elapsed, latencies, failures


RAW_OVERLAP = (
    "SELECT starts_at, ends_at, quantity FROM bookings WHERE resource_id = $1 AND starts_at >= $2 AND starts_at < $3 "
    "AND ends_at > $4 AND status IN ('requested', 'approved')"
)
RAW_INSERT = (
    "INSERT INTO bookings (resource_id, enterprise_id, user_id, starts_at, ends_at, quantity, samples, exclusive, mode, purpose, "
    "status, decided_at, decision_reason, customer_class, estimate_fen, version, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, 1, 0, true, 'staff_operated', '', 'approved', now(), '', 'district', 10000, 0, now(), now()) RETURNING id"
)
RAW_AUDIT = (
    "INSERT INTO audit_events (at, actor_id, actor_kind, action, entity, entity_id, reason) "
    "VALUES (now(), $1, 'user', 'request_auto_approved', 'booking', $2, '')"
)


async def raw_load(dsn: str, clients: int, seconds: float, origin: datetime) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=clients, max_size=clients)
    ids = await pool.fetch("SELECT id FROM resources WHERE code LIKE 'BENCH-R%' ORDER BY code")
    resource_ids = [row["id"] for row in ids]
    member = await pool.fetchrow("SELECT id, enterprise_id FROM users WHERE enterprise_id IS NOT NULL ORDER BY id LIMIT 1")
    deadline = time.perf_counter() + seconds

    async def run(index: int) -> int:
        done, slot = 0, 0
        resource_id = resource_ids[index % RESOURCES]
        lane, lanes = index // RESOURCES, max(1, clients // RESOURCES)
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                start = origin + timedelta(minutes=30 * (slot * lanes + lane))
                end = start + timedelta(minutes=30)
                async with conn.transaction():
                    await conn.fetchval("SELECT id FROM resources WHERE id = $1 FOR UPDATE", resource_id)
                    await conn.fetch(RAW_OVERLAP, resource_id, start - timedelta(days=31), end, start)
                    booking_id = await conn.fetchval(RAW_INSERT, resource_id, member["enterprise_id"], member["id"], start, end)
                    await conn.execute(RAW_AUDIT, member["id"], booking_id)
                slot += 1
                done += 1
        return done

    began = time.perf_counter()
    counts = await asyncio.gather(*(run(i) for i in range(clients)))
    elapsed = time.perf_counter() - began
    await pool.close()
    return sum(counts) / elapsed


async def availability_timing(dsn: str, base_url: str, history: int, code: str) -> float:
    """Fill ``code``'s history up to ``history`` past bookings, then time a week's availability."""
    conn = await asyncpg.connect(dsn)
    try:
        resource_id = await conn.fetchval("SELECT id FROM resources WHERE code = $1", code)
        member = await conn.fetchrow("SELECT id, enterprise_id FROM users WHERE enterprise_id IS NOT NULL ORDER BY id LIMIT 1")
        have = await conn.fetchval("SELECT count(*) FROM bookings WHERE resource_id = $1", resource_id)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        records = []
        for i in range(have, history):
            start = now - timedelta(days=40) - timedelta(minutes=30 * (i + 1))
            records.append((resource_id, member["enterprise_id"], member["id"], start, start + timedelta(minutes=30), 1, 0, True,
                            "staff_operated", "", "completed", "", "district", 0, 0, now, now))
        if records:
            await conn.copy_records_to_table(
                "bookings", records=records,
                columns=["resource_id", "enterprise_id", "user_id", "starts_at", "ends_at", "quantity", "samples", "exclusive", "mode",
                         "purpose", "status", "decision_reason", "customer_class", "estimate_fen", "version", "created_at", "updated_at"],
            )
            # Settle the table (visibility map, statistics) so autovacuum does not run during timing.
            await conn.execute("VACUUM ANALYZE bookings")
    finally:
        await conn.close()
    start = datetime.now(UTC) + timedelta(days=400)
    params = {"start": start.isoformat(), "end": (start + timedelta(days=7)).isoformat()}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for _ in range(20):  # warm up
            await client.get(f"/api/v1/resources/{code}/availability", params=params)
        timings = []
        for _ in range(30):
            began = time.perf_counter()
            response = await client.get(f"/api/v1/resources/{code}/availability", params=params)
            timings.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
    return statistics.median(timings)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    admin = make_url(args.admin_url)
    name = f"facility_share_bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    dsn = admin.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    url = admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "catalog"
            write_catalogue(folder)
            tokens = await prepare(url, folder, members=64)
            # Each side gets the database to itself: the server is stopped while the raw loop
            # runs (PostgreSQL here allows 100 connections in all).
            server = LiveServer(url, workers=args.workers, log_path=Path(tmp) / "server.log",
                                extra_env={"FACILITY_SHARE_DB_POOL_SIZE": "16", "FACILITY_SHARE_DB_MAX_OVERFLOW": "16"})
            print(f"PostgreSQL database {name}; server: uvicorn, {args.workers} worker process(es); {args.seconds:.0f} s per run")
            origin = datetime(2027, 1, 4, tzinfo=UTC)
            results = {}
            await asyncio.to_thread(server.start)
            try:
                for clients in (16, 64):
                    results[clients] = await http_load(server.url, tokens, clients, args.seconds, origin)
                    origin += timedelta(days=365)
            finally:
                await asyncio.to_thread(server.stop)
            for clients in (16, 64):
                raw_rate = await raw_load(dsn, clients, args.seconds, origin)
                origin += timedelta(days=365)
                http_rate, latencies, failures = results[clients]
                print(f"{clients:3d} clients  HTTP {http_rate:7.0f} bookings/s  p50 {percentile(latencies, 0.5) * 1000:6.1f} ms  "
                      f"p99 {percentile(latencies, 0.99) * 1000:6.1f} ms  non-201 {failures}  |  raw asyncpg {raw_rate:7.0f} tx/s  "
                      f"|  ratio {http_rate / raw_rate:.2f} (target >= 0.5)")
            await asyncio.to_thread(server.start)
            try:
                small = await availability_timing(dsn, server.url, 10_000, "BENCH-R000")
                large = await availability_timing(dsn, server.url, 1_000_000, "BENCH-R000")
                print(f"availability of one week: {small * 1000:.1f} ms with 10,000 bookings in history, "
                      f"{large * 1000:.1f} ms with 1,000,000  |  ratio {large / small:.2f} (target <= 1.5)")
            finally:
                await asyncio.to_thread(server.stop)
    finally:
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
