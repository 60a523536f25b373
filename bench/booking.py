"""Booking benchmark on PostgreSQL: the HTTP API against a raw asyncpg loop, and availability
queries against a long history.

    .venv/bin/python bench/booking.py [--admin-url postgresql://postgres@127.0.0.1/postgres]
                                      [--seconds 10] [--workers 2] [--client light|httpx]
                                      [--no-availability]

1. Throughput of non-conflicting bookings through `POST /api/v1/bookings` on a server process
   (uvicorn, --workers N) at 16 and 64 concurrent clients, with p50/p99 latency; and a raw
   asyncpg loop running the booking transaction the service runs (lock the resource row, read
   overlapping active bookings, insert the booking with its audit event and notification job in
   one statement, commit) on the same database with the same concurrency. Prints the ratio (target >= 0.5).
   Everything shares one machine, so each line also gives the CPU time per booking of the
   server processes, of PostgreSQL and of the load generator (read from /proc). The load
   generator is, by default, a minimal keep-alive HTTP/1.1 client (about 0.1 ms of CPU per
   request); ``--client httpx`` uses httpx instead, which costs about 1 ms per request at 16
   clients and several at 64 -- CPU taken from the server under test, whereas the raw loop's
   client is asyncpg.
2. Availability of one resource for a week with 10,000 and with 1,000,000 bookings in its
   history (target ratio <= 1.5).

It creates a throwaway database, `facility_share_bench_<random>`, and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
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


class LightClient:
    """One keep-alive HTTP/1.1 connection that posts JSON and reads the status and body: just
    what the load needs, so the load generator's CPU stays small next to the server's."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port or 80
        self.head = "".join(f"{name}: {value}\r\n" for name, value in
                            {"host": f"{self.host}:{self.port}", "content-type": "application/json", **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        body = json.dumps(payload).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\n{self.head}content-length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length = int(head[9:12]), None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"response without content-length: {head!r}")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class HttpxClient:
    """The same through httpx (``--client httpx``), for comparison."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    async def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        response = await self.client.post(path, json=payload, headers=self.headers)
        return response.status_code, response.content

    async def close(self) -> None:
        pass


async def http_load(base_url: str, tokens: list[str], clients: int, seconds: float, origin: datetime,
                    kind: str = "light") -> tuple[float, list[float], int]:
    """Each client books consecutive 30-minute slots on its own resource: nothing conflicts."""
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as shared:
        async def run(index: int) -> int:
            done = 0
            resource = f"BENCH-R{index % RESOURCES:03d}"
            # Clients sharing a resource take interleaved slots.
            lane, lanes = index // RESOURCES, max(1, clients // RESOURCES)
            headers = {"authorization": f"Bearer {tokens[index % len(tokens)]}"}
            client = LightClient(base_url, headers) if kind == "light" else HttpxClient(shared, headers)
            slot = 0
            try:
                while time.perf_counter() < deadline:
                    start = origin + timedelta(minutes=30 * (slot * lanes + lane))
                    payload = {"resource_code": resource, "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}
                    began = time.perf_counter()
                    status, body = await client.post("/api/v1/bookings", payload)
                    latencies.append(time.perf_counter() - began)
                    if status != 201:
                        failures.append(f"{status} {body[:300]!r}")
                    slot += 1
                    done += 1
            finally:
                await client.close()
            return done

        began = time.perf_counter()
        counts = await asyncio.gather(*(run(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    if failures:
        print(f"  {len(failures)} booking(s) not answered 201, e.g. {failures[0]}")
    return sum(counts) / elapsed, latencies, len(failures)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (0 for any that has gone)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def process_tree(pid: int) -> list[int]:
    found = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            for child in children.read().split():
                found += process_tree(int(child))
    except OSError:
        pass
    return found


def postgres_pids(database: str) -> list[int]:
    """PostgreSQL's backends serving ``database`` (its title names the database; the shared
    background processes, WAL writer and checkpointer, are left out)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    title = cmdline.read().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres:") and f" {database} " in title:
                pids.append(int(entry))
    return pids


def backend_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``database`` (its process title
    names the database; the shared WAL writer and checkpointer are left out)."""
    return {pid: cpu_seconds([pid]) for pid in postgres_pids(database)}


@dataclass
class CpuMeter:
    """CPU time per booking of the server, of PostgreSQL's backends for the bench database and
    of this process (the load generator), over one run. Backends are sampled every second, so
    a pooled connection closed and reopened during the run is counted too."""

    server: list[int]
    database: str
    readings: tuple[float, float] = (0.0, 0.0)
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    sampler: asyncio.Task | None = None

    def start(self) -> None:
        self.first = backend_cpu(self.database)
        self.last = dict(self.first)
        self.readings = (cpu_seconds(self.server), time.process_time())
        self.sampler = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.last.update(backend_cpu(self.database))

    def per_booking(self, bookings: float) -> str:
        if self.sampler is not None:
            self.sampler.cancel()
        self.last.update(backend_cpu(self.database))
        database = sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())
        server, me = cpu_seconds(self.server) - self.readings[0], time.process_time() - self.readings[1]
        ms = [1000 * value / max(bookings, 1) for value in (server, database, me)]
        prefix = f"server {ms[0]:.2f}, " if self.server else ""
        return f"CPU ms/booking: {prefix}PostgreSQL {ms[1]:.2f}, load generator {ms[2]:.2f}"


RAW_OVERLAP = (
    "SELECT starts_at, ends_at, quantity FROM bookings WHERE resource_id = $1 AND starts_at >= $2 AND starts_at < $3 "
    "AND ends_at > $4 AND status IN ('requested', 'approved')"
)
# The service's insert on PostgreSQL: the booking, its audit event and its notification job in
# one statement (bookings.services._INSERT_BOOKING_AUDIT_AND_JOB).
RAW_INSERT = (
    "WITH placed AS (INSERT INTO bookings (resource_id, enterprise_id, user_id, starts_at, ends_at, quantity, samples, exclusive, "
    "mode, purpose, status, decided_at, decision_reason, customer_class, estimate_fen, version, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, 1, 0, true, 'staff_operated', '', 'approved', now(), 'approved automatically', 'district', "
    "10000, 0, now(), now()) RETURNING id), "
    "notified AS (INSERT INTO jobs (kind, run_at, status, attempts, max_attempts, last_error, created_at, payload, dedupe_key) "
    "SELECT 'notify', now(), 'queued', 0, 8, '', now(), json_build_object('event', 'booking.approved', 'booking_id', placed.id), "
    "'notify:booking.approved:' || placed.id FROM placed ON CONFLICT (dedupe_key) DO NOTHING) "
    "INSERT INTO audit_events (at, actor_id, actor_kind, action, entity, after, reason, entity_id) "
    "SELECT now(), $3, 'user', 'request_auto_approved', 'booking', $6::json, '', placed.id FROM placed RETURNING entity_id"
)


async def raw_load(dsn: str, clients: int, seconds: float, origin: datetime) -> tuple[float, str]:
    pool = await asyncpg.create_pool(dsn, min_size=clients, max_size=clients)
    ids = await pool.fetch("SELECT id FROM resources WHERE code LIKE 'BENCH-R%' ORDER BY code")
    resource_ids = [row["id"] for row in ids]
    member = await pool.fetchrow("SELECT id, enterprise_id FROM users WHERE enterprise_id IS NOT NULL ORDER BY id LIMIT 1")
    meter = CpuMeter([], make_url(dsn).database or "")

    async def run(index: int, origin: datetime, deadline: float) -> int:
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
                    after = json.dumps({"status": "approved", "starts_at": start.isoformat(), "ends_at": end.isoformat(), "quantity": 1,
                                        "mode": "staff_operated", "decision_reason": "approved automatically", "version": 0})
                    await conn.fetchval(RAW_INSERT, resource_id, member["enterprise_id"], member["id"], start, end, after)
                slot += 1
                done += 1
        return done

    # Warm up as the HTTP side does (each connection prepares its statements), then time.
    warm_until = time.perf_counter() + 1.0
    await asyncio.gather(*(run(i, origin, warm_until) for i in range(clients)))
    origin += timedelta(days=30)
    meter.start()
    began = time.perf_counter()
    deadline = began + seconds
    counts = await asyncio.gather(*(run(i, origin, deadline) for i in range(clients)))
    elapsed = time.perf_counter() - began
    cpu = meter.per_booking(sum(counts))
    await pool.close()
    return sum(counts) / elapsed, cpu


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
    parser.add_argument("--client", choices=("light", "httpx"), default="light", help="the HTTP load generator")
    parser.add_argument("--no-availability", action="store_true", help="skip part 2 (filling a million bookings takes a while)")
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
            # runs (PostgreSQL here allows 100 connections in all). The pool is sized for the
            # largest run, 64 clients over the workers, with no overflow: an overflow
            # connection is closed when it is returned to a full pool and opened again on the
            # next burst (50 new PostgreSQL sessions in 6 s at 64 clients with 16 + 16).
            pool_size = -(-64 // args.workers)
            server = LiveServer(url, workers=args.workers, log_path=Path(tmp) / "server.log",
                                extra_env={"FACILITY_SHARE_DB_POOL_SIZE": str(pool_size), "FACILITY_SHARE_DB_MAX_OVERFLOW": "0"})
            print(f"PostgreSQL database {name}; server: uvicorn, {args.workers} worker process(es) with {pool_size} pooled "
                  f"connections each; {args.seconds:.0f} s per run; load generator: {args.client}")
            origin = datetime(2027, 1, 4, tzinfo=UTC)
            results = {}
            await asyncio.to_thread(server.start)
            try:
                # Warm up: every worker opens its pooled connections and fills its caches
                # (prepared statements, resource definitions) before anything is timed.
                await http_load(server.url, tokens, 64, 2.0, origin, args.client)
                origin += timedelta(days=30)
                meter = CpuMeter(process_tree(server.process.pid), name)
                for clients in (16, 64):
                    meter.start()
                    rate, latencies, failures = await http_load(server.url, tokens, clients, args.seconds, origin, args.client)
                    results[clients] = rate, latencies, failures, meter.per_booking(rate * args.seconds)
                    origin += timedelta(days=365)
            finally:
                await asyncio.to_thread(server.stop)
            for clients in (16, 64):
                raw_rate, raw_cpu = await raw_load(dsn, clients, args.seconds, origin)
                origin += timedelta(days=365)
                http_rate, latencies, failures, http_cpu = results[clients]
                print(f"{clients:3d} clients  HTTP {http_rate:7.0f} bookings/s  p50 {percentile(latencies, 0.5) * 1000:6.1f} ms  "
                      f"p99 {percentile(latencies, 0.99) * 1000:6.1f} ms  non-201 {failures}  |  raw asyncpg {raw_rate:7.0f} tx/s  "
                      f"|  ratio {http_rate / raw_rate:.2f} (target >= 0.5)")
                print(f"             HTTP {http_cpu}  |  raw asyncpg {raw_cpu}")
            if args.no_availability:
                return
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
