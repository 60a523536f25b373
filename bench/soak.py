"""Soak test on PostgreSQL: a mixed load against `facility-share serve --workers 2` for a long
while, watching for leaks and for latency that creeps up.

    .venv/bin/python bench/soak.py [--admin-url postgresql://postgres@127.0.0.1/postgres]
                                   [--seconds 600] [--warmup 30] [--clients 16] [--workers 2]

The load: closed-loop clients, each picking its next request at random by weight --
browsing the catalogue's pages (home, catalogue list and search, a resource, the units) and
its API (search, one resource), a week's availability, booking a free unit found that way,
cancelling one of its own earlier bookings, calendar feeds (a resource's public feed, an
enterprise's and a managing unit's private feeds), and the finance usage report API (JSON
and CSV). Booking conflicts between clients (409: two clients took the same free unit) are
expected answers; 5xx are not.

Measured, after a warm-up whose requests are not counted:
- throughput (requests per second) overall and per kind of request, with p50 and p99 latency;
- the resident memory (VmRSS from /proc) of the server's worker processes, summed, right after
  the warm-up and at the end (and every minute in between). Target: growth < 10 %;
- p99 latency of the first and of the last minute of the run (halves when the run is shorter
  than two minutes). Target: last / first <= 1.5 ("stable": a leak or a growing queue would
  keep pushing the tail up; a busy machine's noise rarely moves it by half again);
- no 5xx answer at all.
It also prints the server's CPU time per request each minute: on a shared machine a p99 that
grows while CPU per request does not points at other processes taking the CPU, not the server.

It creates a throwaway database, `facility_share_soak_<random>`, with the shipped catalogue
and a few accounts, and drops it at the end. The server logs go to a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from facility_share.catalog.files import load_catalog  # noqa: E402
from facility_share.catalog.importer import import_catalog  # noqa: E402
from facility_share.db import Database, migrate  # noqa: E402
from facility_share.db.models import ManagingUnit, Resource  # noqa: E402
from facility_share.feeds import services as feeds  # noqa: E402
from tests.live import LiveServer  # noqa: E402
from tests.world import build_world  # noqa: E402

# Relative weights of the kinds of request in the mix.
MIX = {
    "page": 20,          # catalogue pages (HTML)
    "api": 12,           # catalogue API (JSON)
    "availability": 20,  # a week of one resource
    "book": 15,          # availability, then a booking of a free unit (timed: the POST)
    "cancel": 8,         # cancel one of this client's bookings
    "feed": 15,          # calendar feeds (ICS)
    "report": 5,         # the finance usage report API
}
PAGES = ("/", "/catalog", "/catalog?q=%E6%98%BE%E5%BE%AE", "/catalog?page=2", "/units", "/?lang=en")
MEMORY_TARGET = 0.10
P99_TARGET = 1.5


@dataclass
class Site:
    """What the clients need to know about the database they load."""

    resources: list[str]
    bookable: dict[str, int]  # code -> minimum booking minutes (capacity-1 slot resources)
    units: list[str]
    member_tokens: list[str]
    finance_token: str
    feed_paths: list[str]


@dataclass
class Sample:
    at: float  # seconds since the measurement began (negative during the warm-up)
    kind: str
    seconds: float
    status: int


@dataclass
class Recorder:
    began: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    transport_errors: Counter = field(default_factory=Counter)
    # The first body of each unexpected answer (4xx other than a booking conflict, 5xx), by kind and status.
    examples: dict[tuple[str, int], str] = field(default_factory=dict)

    def add(self, kind: str, started: float, status: int) -> None:
        now = time.perf_counter()
        self.samples.append(Sample(started - self.began, kind, now - started, status))


async def prepare(url: str) -> Site:
    """The shipped catalogue, the test world's accounts, and feed tokens for an enterprise and a unit."""
    db = Database(url, null_pool=True)
    try:
        async with db.session(write=True) as session:
            await import_catalog(session, load_catalog(ROOT / "catalog"))
            await session.commit()
        world = await build_world(db)
        async with db.session(write=True) as session:
            resources = list((await session.execute(
                select(Resource.code).where(Resource.open_for_sharing.is_(True), Resource.retired_at.is_(None)).order_by(Resource.code)
            )).scalars())
            bookable = dict((await session.execute(
                select(Resource.code, Resource.min_minutes).where(
                    Resource.capacity == 1, Resource.booking_unit == "slot", Resource.open_for_sharing.is_(True),
                    Resource.lead_minutes <= 24 * 60, Resource.horizon_days >= 48, Resource.retired_at.is_(None),
                    Resource.parent_id.is_(None))
            )).all())
            units = list((await session.execute(select(ManagingUnit.code).where(ManagingUnit.retired_at.is_(None)))).scalars())
            unit_id = (await session.execute(select(ManagingUnit.id).where(ManagingUnit.code == "WQ-TJMAT"))).scalar_one()
            enterprise = await feeds.create_token(session, "enterprise", world.enterprise_ids["member_a"], created_by=None)
            unit = await feeds.create_token(session, "unit", unit_id, created_by=None)
            await session.commit()
    finally:
        await db.dispose()
    feed_paths = [f"/feeds/resources/{code}/calendar.ics" for code in list(bookable)[:20]]
    feed_paths += [f"/feeds/{enterprise}/calendar.ics", f"/feeds/{unit}/calendar.ics"]
    return Site(resources, bookable, units, [world.tokens["member_a"], world.tokens["member_b"]], world.tokens["finance"], feed_paths)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def covered(free: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    """Whether free units (sorted, as the API lists them) cover [start, end) without a gap: a
    booking of the resource's minimum length from a free unit's start may run past closing
    time or into a taken unit."""
    reached = start
    for unit_start, unit_end in free:
        if unit_start <= reached < unit_end:
            reached = unit_end
            if reached >= end:
                return True
    return False


def server_workers(pid: int) -> list[int]:
    """The server's worker processes: the supervisor's children, less multiprocessing's helper."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            pids = [int(p) for p in children.read().split()]
    except OSError:
        return []
    found = []
    for child in pids:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                if b"resource_tracker" in cmdline.read():
                    continue
        except OSError:
            continue
        found.append(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


async def client_loop(index: int, base_url: str, site: Site, recorder: Recorder, stop: asyncio.Event,
                      http: httpx.AsyncClient) -> None:
    rng = random.Random(index)
    token = site.member_tokens[index % len(site.member_tokens)]
    member = {"authorization": f"Bearer {token}"}
    finance = {"authorization": f"Bearer {site.finance_token}"}
    kinds, weights = list(MIX), list(MIX.values())
    mine: list[int] = []
    bookable = list(site.bookable)
    today = datetime.now(UTC).date()

    async def timed(kind: str, method: str, path: str, **kwargs) -> httpx.Response | None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            response = await http.request(method, base_url + path, **kwargs)
        except httpx.TransportError as error:
            recorder.transport_errors[f"{kind}: {type(error).__name__}"] += 1
            return None
        recorder.add(kind, started, response.status_code)
        if response.status_code >= 400 and response.status_code != 409:
            recorder.examples.setdefault((kind, response.status_code), response.text[:300])
        return response

    def week() -> dict[str, str]:
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=rng.randint(2, 40))
        return {"start": start.isoformat(), "end": (start + timedelta(days=7)).isoformat()}

    while not stop.is_set():
        kind = rng.choices(kinds, weights)[0]
        if kind == "page":
            if rng.random() < 0.4:
                await timed("page", "GET", f"/resources/{rng.choice(site.resources)}")
            else:
                await timed("page", "GET", rng.choice(PAGES))
        elif kind == "api":
            if rng.random() < 0.5:
                await timed("api", "GET", f"/api/v1/resources/{rng.choice(site.resources)}")
            else:
                await timed("api", "GET", "/api/v1/resources", params={"q": rng.choice(("光谱", "显微", "测试", "")), "limit": "20"})
        elif kind in ("availability", "book"):
            code = rng.choice(bookable)
            response = await timed("availability", "GET", f"/api/v1/resources/{code}/availability", params=week())
            if kind == "book" and response is not None and response.status_code == 200:
                free = [(datetime.fromisoformat(u["start"]), datetime.fromisoformat(u["end"]))
                        for u in response.json().get("units", []) if u.get("remaining", 0) > 0]
                start = rng.choice(free)[0] if free else None
                end = start + timedelta(minutes=site.bookable[code]) if start else None
                if start and end and covered(free, start, end):
                    booked = await timed("book", "POST", "/api/v1/bookings", headers=member,
                                         json={"resource_code": code, "start": start.isoformat(), "end": end.isoformat()})
                    if booked is not None and booked.status_code == 201:
                        mine.append(booked.json()["id"])
        elif kind == "cancel":
            if mine:
                booking_id = mine.pop(rng.randrange(len(mine)))
                await timed("cancel", "POST", f"/api/v1/bookings/{booking_id}/cancel", headers=member,
                            json={"reason": "soak"})
        elif kind == "feed":
            await timed("feed", "GET", rng.choice(site.feed_paths))
        elif kind == "report":
            period = rng.choice((str(today.year), f"{today.year}-{today.month:02d}", f"{today.year}-Q{(today.month - 1) // 3 + 1}"))
            params = {"period": period} if rng.random() < 0.7 else {"period": period, "format": "csv", "view": "unit"}
            await timed("report", "GET", "/api/v1/finance/reports", params=params, headers=finance)


def ratio_line(label: str, value: str, target: str, met: bool) -> str:
    return f"{label}: {value} (target {target}) -> {'met' if met else 'NOT met'}"


async def soak(base_url: str, site: Site, supervisor: int, args: argparse.Namespace) -> bool:
    recorder = Recorder(began=time.perf_counter() + args.warmup)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        tasks = [asyncio.create_task(client_loop(i, base_url, site, recorder, stop, http)) for i in range(args.clients)]
        await asyncio.sleep(args.warmup)
        workers = server_workers(supervisor)
        memory = [(0.0, rss_bytes(workers))]
        cpu = [(0.0, cpu_seconds(workers))]
        print(f"warm-up done ({args.warmup:.0f} s, {len(recorder.samples)} requests); server worker processes {workers}, "
              f"RSS {memory[0][1] / 2**20:.1f} MiB")
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < args.seconds:
            await asyncio.sleep(min(60.0, args.seconds - elapsed))
            now = time.perf_counter() - began
            memory.append((now, rss_bytes(server_workers(supervisor))))
            cpu.append((now, cpu_seconds(server_workers(supervisor))))
            done = [s for s in recorder.samples if 0 <= s.at < now]
            print(f"  {now:5.0f} s: {len(done) / now:6.1f} req/s so far, RSS {memory[-1][1] / 2**20:.1f} MiB", flush=True)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    end_workers = server_workers(supervisor)

    duration = args.seconds
    measured = [s for s in recorder.samples if 0 <= s.at < duration]
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in measured:
        by_kind[s.kind].append(s)
    print(f"\n{len(measured)} requests in {duration:.0f} s: {len(measured) / duration:.1f} req/s "
          f"({args.clients} clients, server --workers {args.workers})")
    print(f"  {'kind':<13}{'count':>8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}  answers")
    for kind in [*MIX, *sorted(set(by_kind) - set(MIX))]:
        samples = by_kind.get(kind, [])
        if not samples:
            continue
        latencies = [s.seconds for s in samples]
        answers = ", ".join(f"{code}×{n}" for code, n in sorted(Counter(s.status for s in samples).items()))
        print(f"  {kind:<13}{len(samples):>8}{len(samples) / duration:>8.1f}{1000 * percentile(latencies, 0.5):>9.1f}"
              f"{1000 * percentile(latencies, 0.99):>9.1f}  {answers}")
    for (kind, status), body in sorted(recorder.examples.items()):
        print(f"  e.g. {kind} {status}: {body}")
    if recorder.transport_errors:
        print(f"  transport errors: {dict(recorder.transport_errors)}")

    window = min(60.0, duration / 2)
    first = [s.seconds for s in measured if s.at < window]
    last = [s.seconds for s in measured if s.at >= duration - window]
    p99_first, p99_last = percentile(first, 0.99), percentile(last, 0.99)
    print(f"\np99 of the first {window:.0f} s: {1000 * p99_first:.1f} ms ({len(first)} requests); "
          f"of the last {window:.0f} s: {1000 * p99_last:.1f} ms ({len(last)} requests)")
    # Whether a slower tail means a slower server or a busier machine: the server's CPU time per
    # request stays put when other processes take the CPU (latency grows, CPU/request does not).
    per_request = []
    for (t0, c0), (t1, c1) in zip(cpu, cpu[1:]):
        n = sum(1 for s in measured if t0 <= s.at < t1)
        per_request.append(1000 * (c1 - c0) / max(n, 1))
    if per_request:
        print(f"  server CPU per request, each minute: {', '.join(f'{v:.1f}' for v in per_request)} ms "
              f"(first {per_request[0]:.1f}, last {per_request[-1]:.1f}: x{per_request[-1] / max(per_request[0], 1e-9):.2f})")
    for kind in MIX:
        f = [s.seconds for s in by_kind.get(kind, []) if s.at < window]
        la = [s.seconds for s in by_kind.get(kind, []) if s.at >= duration - window]
        if f and la:
            print(f"  {kind:<13} p99 {1000 * percentile(f, 0.99):7.1f} -> {1000 * percentile(la, 0.99):7.1f} ms "
                  f"(x{percentile(la, 0.99) / percentile(f, 0.99):.2f})")

    start_rss, end_rss = memory[0][1], memory[-1][1]
    growth = (end_rss - start_rss) / start_rss if start_rss else float("inf")
    print(f"\nserver worker processes' RSS (summed): start {start_rss / 2**20:.1f} MiB, end {end_rss / 2**20:.1f} MiB, "
          f"growth {100 * growth:+.1f} %")
    print("  per minute: " + ", ".join(f"{t:.0f} s {b / 2**20:.1f}" for t, b in memory))
    if sorted(end_workers) != sorted(workers):
        print(f"  note: the worker processes changed during the run ({workers} -> {end_workers}): a worker was restarted")

    errors = sum(1 for s in measured if s.status >= 500)
    results = [
        (ratio_line("memory growth", f"{100 * growth:+.1f} %", f"< {100 * MEMORY_TARGET:.0f} %", growth < MEMORY_TARGET),
         growth < MEMORY_TARGET),
        (ratio_line("p99 last / first minute", f"x{p99_last / p99_first:.2f}", f"<= x{P99_TARGET}", p99_last / p99_first <= P99_TARGET),
         p99_last / p99_first <= P99_TARGET),
        (f"5xx answers: {errors} (target 0) -> {'met' if errors == 0 else 'NOT met'}", errors == 0),
    ]
    print()
    for line, _ok in results:
        print(line)
    return all(ok for _line, ok in results)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to measure, after the warm-up")
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    args = parser.parse_args()

    admin = make_url(args.admin_url)
    name = f"facility_share_soak_{uuid.uuid4().hex[:8]}"
    admin_dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    ok = False
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        site = await prepare(url)
        print(f"database {name}: {len(site.resources)} resources, {len(site.bookable)} bookable by the load, "
              f"{len(site.feed_paths)} feeds")
        with tempfile.TemporaryDirectory(prefix="soak-") as folder:
            server = LiveServer(url, workers=args.workers, log_path=Path(folder) / "server.log",
                                extra_env={"FACILITY_SHARE_MAX_OPEN_REQUESTS": "1000000"})
            await asyncio.to_thread(server.start)
            try:
                assert server.process is not None
                ok = await soak(server.url, site, server.process.pid, args)
            finally:
                await asyncio.to_thread(server.stop)
                log = (Path(folder) / "server.log").read_text(errors="replace")
                tracebacks = log.count("Traceback (most recent call last)")
                if tracebacks:
                    print(f"\nthe server log has {tracebacks} traceback(s); the last one:\n"
                          + log[log.rindex("Traceback (most recent call last)"):][:3000])
    finally:
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    asyncio.run(main())
