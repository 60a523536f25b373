"""Soak test on PostgreSQL: a mixed load against `facility-share serve --workers 2` for a long
while, watching for leaks and for latency that creeps up.

    .venv/bin/python bench/soak.py [--admin-url postgresql://postgres@127.0.0.1/postgres]
                                   [--seconds 600] [--warmup 30] [--warmup-requests 2000]
                                   [--clients 16] [--workers 2]
                                   [--enterprises 8] [--open-bookings 8] [--subscriptions 3]

The load: closed-loop clients, each picking its next request at random by weight --
browsing the catalogue's pages (home, catalogue list and search, a resource, the units) and
its API (search, one resource), a week's availability, booking a free unit found that way,
cancelling one of its enterprise's bookings, refreshing a calendar subscription, and the
finance usage report API (JSON and CSV). Booking conflicts between clients (409: two clients
took the same free unit) are expected answers; 5xx are not.

The clients are a steady population, not a stream of new data:
- each client books for one of ``--enterprises`` enterprises (clients share them round-robin),
  and an enterprise keeps at most ``--open-bookings`` bookings open: when a booking takes it
  beyond that, the client cancels the enterprise's oldest (timed as a cancel), so the active
  bookings stay bounded however long the run. The "cancel" kind cancels a random one of them
  (a change of plans). What still grows is history: cancelled bookings, which the feeds keep
  showing (as cancelled) for 30 days -- the minute table prints how many bookings exist;
- each client subscribes, like a calendar application, to its member's own feed, its
  enterprise's feed, one managing unit's feed and ``--subscriptions`` resources' public
  feeds (every kind of feed), and refreshes one of them in turn, sending If-None-Match and
  If-Modified-Since from that feed's previous answer (304 when nothing changed; the table
  prints 200s and 304s).

Measured after a warm-up (--warmup seconds and at least --warmup-requests requests) whose
requests are not counted:
- throughput (requests per second) overall and per kind of request, with p50 and p99 latency;
- every minute: throughput, p50, p99, the server's CPU time per request, its memory, the
  number of bookings, the load average of the machine and a probe of its speed (the CPU time
  a fixed piece of work takes in the bench's process);
- the resident memory (VmRSS from /proc) of the server's worker processes, summed, right after
  the warm-up and at the end. Target: growth < 10 %;
- p99 stable: the p99 latency of the last full minute is at most 1.5 times that of the first
  full minute after the warm-up (halves when the run is shorter than two minutes). A leak or
  a cost that grows with the data would keep pushing the tail up; a busy machine's noise
  rarely moves it by half again. Printed as a ratio with PASS or FAIL;
- no 5xx answer at all.
The server's CPU time per request is printed beside the latency: on a shared machine a p99
that grows while CPU per request does not points at other processes taking the CPU, not at
the server. CPU per request itself rises when other processes slow the cores down (a busy
hyperthread sibling, a thrashed cache); the probe is a rough gauge of how much of a rise the
machine explains (it is one small piece of work, so it is noisy).

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
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url
from stdnum.cn import uscc as uscc_number

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from facility_share.accounts import services as accounts  # noqa: E402
from facility_share.catalog.files import load_catalog  # noqa: E402
from facility_share.catalog.importer import import_catalog  # noqa: E402
from facility_share.db import Database, migrate  # noqa: E402
from facility_share.db.models import Resource, User  # noqa: E402
from facility_share.feeds import services as feeds  # noqa: E402
from tests.live import LiveServer  # noqa: E402
from tests.world import PASSWORD, build_world  # noqa: E402

# Relative weights of the kinds of request in the mix.
MIX = {
    "page": 20,          # catalogue pages (HTML)
    "api": 12,           # catalogue API (JSON)
    "availability": 20,  # a week of one resource
    "book": 15,          # availability, then a booking of a free unit (timed: the POST)
    "cancel": 8,         # cancel one of the enterprise's open bookings
    "feed": 15,          # refresh one calendar subscription (ICS, conditional)
    "report": 5,         # the finance usage report API
}
PAGES = ("/", "/catalog", "/catalog?q=%E6%98%BE%E5%BE%AE", "/catalog?page=2", "/units", "/?lang=en")
MEMORY_TARGET = 0.10
P99_TARGET = 1.5


@dataclass
class Member:
    """One enterprise of the population: its member's API token, the member's own feed and the
    enterprise's feed."""

    token: str
    user_feed: str
    enterprise_feed: str
    open: deque[int] = field(default_factory=deque)  # its open bookings, oldest first


@dataclass
class Site:
    """What the clients need to know about the database they load."""

    resources: list[str]
    bookable: dict[str, int]  # code -> minimum booking minutes (capacity-1 slot resources)
    members: list[Member]
    finance_token: str
    public_feeds: list[str]
    unit_feeds: list[str]


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


def uscc(n: int) -> str:
    """A valid 统一社会信用代码, different for each n."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    digits = ""
    for _ in range(7):
        n, digit = divmod(n, len(alphabet))
        digits = alphabet[digit] + digits
    body = "91120222MB" + digits
    return body + uscc_number.calc_check_digit(body)


async def prepare(url: str, enterprises: int) -> Site:
    """The shipped catalogue, the test world's staff, ``enterprises`` verified enterprises with a
    member each (an API token, the member's feed and the enterprise's feed), and a feed for each
    managing unit that owns a resource the load books."""
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
            rows = (await session.execute(
                select(Resource.code, Resource.min_minutes, Resource.unit_id).where(
                    Resource.capacity == 1, Resource.booking_unit == "slot", Resource.open_for_sharing.is_(True),
                    Resource.lead_minutes <= 24 * 60, Resource.horizon_days >= 48, Resource.retired_at.is_(None),
                    Resource.parent_id.is_(None)).order_by(Resource.code)
            )).all()
            bookable = {code: minutes for code, minutes, _unit in rows}
            unit_ids = sorted({unit for _code, _minutes, unit in rows})
            admin_id = (await session.execute(select(User.id).where(User.email == "admin@t.example.cn"))).scalar_one()
            members = []
            for n in range(enterprises):
                user = await accounts.register(session, accounts.Registration(
                    email=f"soak{n}@e{n}.example.cn", password=PASSWORD, name=f"Soak member {n}", uscc=uscc(n),
                    enterprise_name=f"Soak enterprise {n} Ltd"))
                assert user.enterprise_id is not None
                await accounts.update_enterprise_status(
                    session, user.enterprise_id,
                    accounts.EnterpriseUpdate(True, True, True, False, "eaglet", effective_from=date(2026, 1, 1)), actor_id=admin_id)
                _row, token = await accounts.create_api_token(session, user.id, "soak")
                own = await feeds.create_token(session, "user", user.id, created_by=user.id)
                feed = await feeds.create_token(session, "enterprise", user.enterprise_id, created_by=user.id)
                members.append(Member(token, f"/feeds/{own}/calendar.ics", f"/feeds/{feed}/calendar.ics"))
            unit_feeds = [f"/feeds/{await feeds.create_token(session, 'unit', unit, created_by=None)}/calendar.ics"
                          for unit in unit_ids]
            await session.commit()
    finally:
        await db.dispose()
    public_feeds = [f"/feeds/resources/{code}/calendar.ics" for code in bookable]
    return Site(resources, bookable, members, world.tokens["finance"], public_feeds, unit_feeds)


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


def machine_probe() -> float:
    """CPU milliseconds a fixed piece of pure-Python work takes here and now (the median of
    five). When other processes share the cores (a busy hyperthread sibling, a thrashed cache)
    the same work costs more CPU time; the server's CPU per request is divided by this to
    tell a server that does more per request from a machine that runs slower."""
    def once() -> float:
        began = time.thread_time()
        table: dict[int, int] = {}
        for i in range(60_000):
            table[i % 997] = table.get(i % 997, 0) + i * i
        "".join(str(v) for v in table.values())
        return 1000 * (time.thread_time() - began)
    return sorted(once() for _ in range(5))[2]


def load_average() -> float:
    with open("/proc/loadavg") as loadavg:
        return float(loadavg.read().split()[0])


async def booking_counts(dsn: str) -> tuple[int, int]:
    """(all bookings, active ones) in the database."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT count(*), count(*) FILTER (WHERE status IN ('requested', 'approved')) FROM bookings")
    finally:
        await conn.close()
    return int(row[0]), int(row[1])


async def client_loop(index: int, base_url: str, site: Site, recorder: Recorder, stop: asyncio.Event,
                      http: httpx.AsyncClient, args: argparse.Namespace) -> None:
    rng = random.Random(index)
    enterprise = site.members[index % len(site.members)]
    member = {"authorization": f"Bearer {enterprise.token}"}
    finance = {"authorization": f"Bearer {site.finance_token}"}
    kinds, weights = list(MIX), list(MIX.values())
    bookable = list(site.bookable)
    today = datetime.now(UTC).date()
    # A calendar application's subscriptions and what it kept of each feed's last answer.
    subscriptions = [enterprise.user_feed, enterprise.enterprise_feed, site.unit_feeds[index % len(site.unit_feeds)],
                     *rng.sample(site.public_feeds, min(args.subscriptions, len(site.public_feeds)))]
    validators: dict[str, dict[str, str]] = {}
    turn = rng.randrange(len(subscriptions))

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

    async def cancel(booking_id: int) -> None:
        await timed("cancel", "POST", f"/api/v1/bookings/{booking_id}/cancel", headers=member, json={"reason": "soak"})

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
                        enterprise.open.append(booked.json()["id"])
                        if len(enterprise.open) > args.open_bookings:
                            await cancel(enterprise.open.popleft())
        elif kind == "cancel":
            if enterprise.open:
                chosen = rng.randrange(len(enterprise.open))
                booking_id = enterprise.open[chosen]
                del enterprise.open[chosen]
                await cancel(booking_id)
        elif kind == "feed":
            path = subscriptions[turn % len(subscriptions)]
            turn += 1
            response = await timed("feed", "GET", path, headers=validators.get(path, {}))
            if response is not None and response.status_code == 200:
                kept = {}
                if "etag" in response.headers:
                    kept["if-none-match"] = response.headers["etag"]
                if "last-modified" in response.headers:
                    kept["if-modified-since"] = response.headers["last-modified"]
                validators[path] = kept
        elif kind == "report":
            period = rng.choice((str(today.year), f"{today.year}-{today.month:02d}", f"{today.year}-Q{(today.month - 1) // 3 + 1}"))
            params = {"period": period} if rng.random() < 0.7 else {"period": period, "format": "csv", "view": "unit"}
            await timed("report", "GET", "/api/v1/finance/reports", params=params, headers=finance)


@dataclass
class Tick:
    """The state of things at the end of a minute (t seconds after the warm-up)."""

    t: float
    rss: int
    cpu: float
    bookings: tuple[int, int]
    load: float
    probe: float


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def soak(base_url: str, site: Site, supervisor: int, dsn: str, args: argparse.Namespace) -> bool:
    started = time.perf_counter()
    recorder = Recorder(began=started + args.warmup)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        tasks = [asyncio.create_task(client_loop(i, base_url, site, recorder, stop, http, args)) for i in range(args.clients)]
        await asyncio.sleep(args.warmup)
        # On a busy machine the warm-up's seconds may hold few requests: it lasts until the
        # workers have also answered --warmup-requests (their memory is measured from there).
        while len(recorder.samples) < args.warmup_requests and time.perf_counter() - started < 10 * args.warmup:
            await asyncio.sleep(1.0)
        shift = recorder.began - time.perf_counter()
        recorder.began -= shift
        for sample in recorder.samples:
            sample.at += shift
        workers = server_workers(supervisor)
        ticks = [Tick(0.0, rss_bytes(workers), cpu_seconds(workers), await booking_counts(dsn), load_average(),
                      await asyncio.to_thread(machine_probe))]
        print(f"warm-up done ({time.perf_counter() - started:.0f} s, {len(recorder.samples)} requests); server worker processes {workers}, "
              f"RSS {ticks[0].rss / 2**20:.1f} MiB, {ticks[0].bookings[0]} bookings", flush=True)
        began = recorder.began
        while (elapsed := time.perf_counter() - began) < args.seconds:
            await asyncio.sleep(min(60.0, args.seconds - elapsed))
            now = time.perf_counter() - began
            current = server_workers(supervisor)
            ticks.append(Tick(now, rss_bytes(current), cpu_seconds(current), await booking_counts(dsn), load_average(),
                              await asyncio.to_thread(machine_probe)))
            done = [s for s in recorder.samples if 0 <= s.at < now]
            print(f"  {now:5.0f} s: {len(done) / now:6.1f} req/s so far, RSS {ticks[-1].rss / 2**20:.1f} MiB, "
                  f"{ticks[-1].bookings[0]} bookings ({ticks[-1].bookings[1]} active), load {ticks[-1].load:.1f}", flush=True)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    end_workers = server_workers(supervisor)

    duration = args.seconds
    measured = [s for s in recorder.samples if 0 <= s.at < duration]
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in measured:
        by_kind[s.kind].append(s)
    print(f"\n{len(measured)} requests in {duration:.0f} s: {len(measured) / duration:.1f} req/s "
          f"({args.clients} clients for {len(site.members)} enterprises of at most {args.open_bookings} open bookings each, "
          f"server --workers {args.workers})")
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

    # Minute by minute. CPU per request tells a slower server (it grows) from a busier machine
    # (latency grows, CPU per request does not).
    print(f"\n  {'minute':<13}{'requests':>9}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/req':>11}{'RSS MiB':>9}"
          f"{'feeds 200/304':>15}{'bookings':>10}{'active':>7}{'load':>6}{'probe ms':>9}")
    per_request = []
    for before, after in zip(ticks, ticks[1:]):
        window = [s for s in measured if before.t <= s.at < after.t]
        latencies = [s.seconds for s in window]
        seconds = max(after.t - before.t, 1e-9)
        cpu = 1000 * (after.cpu - before.cpu) / max(len(window), 1)
        per_request.append(cpu)
        feed = Counter(s.status for s in window if s.kind == "feed")
        print(f"  {f'{before.t:.0f}-{after.t:.0f} s':<13}{len(window):>9}{len(window) / seconds:>7.1f}"
              f"{1000 * percentile(latencies, 0.5):>8.0f}{1000 * percentile(latencies, 0.99):>8.0f}{cpu:>11.1f}"
              f"{after.rss / 2**20:>9.1f}{f'{feed[200]}/{feed[304]}':>15}{after.bookings[0]:>10}{after.bookings[1]:>7}{after.load:>6.1f}"
              f"{after.probe:>9.1f}")

    # p99 stable: the last full minute against the first full minute after the warm-up.
    window = 60.0 if duration >= 120 else duration / 2
    first = [s.seconds for s in measured if s.at < window]
    last = [s.seconds for s in measured if duration - window <= s.at < duration]
    p99_first, p99_last = percentile(first, 0.99), percentile(last, 0.99)
    p99_ratio = p99_last / p99_first
    p99_ok = p99_ratio <= P99_TARGET
    print(f"\np99 of the first {window:.0f} s after the warm-up: {1000 * p99_first:.1f} ms ({len(first)} requests); "
          f"of the last {window:.0f} s: {1000 * p99_last:.1f} ms ({len(last)} requests)")
    if len(per_request) >= 2:
        cpu_ratio = per_request[-1] / max(per_request[0], 1e-9)
        probe_ratio = ticks[-1].probe / max(ticks[1].probe, 1e-9)
        print(f"  server CPU per request: first minute {per_request[0]:.1f} ms, last {per_request[-1]:.1f} ms "
              f"(x{cpu_ratio:.2f}); the machine probe x{probe_ratio:.2f}, so per unit of machine speed x{cpu_ratio / probe_ratio:.2f}")
    for kind in MIX:
        f = [s.seconds for s in by_kind.get(kind, []) if s.at < window]
        la = [s.seconds for s in by_kind.get(kind, []) if s.at >= duration - window]
        if f and la:
            print(f"  {kind:<13} p99 {1000 * percentile(f, 0.99):7.1f} -> {1000 * percentile(la, 0.99):7.1f} ms "
                  f"(x{percentile(la, 0.99) / percentile(f, 0.99):.2f})")

    start_rss, end_rss = ticks[0].rss, ticks[-1].rss
    growth = (end_rss - start_rss) / start_rss if start_rss else float("inf")
    memory_ok = growth < MEMORY_TARGET
    print(f"\nserver worker processes' RSS (summed): start {start_rss / 2**20:.1f} MiB, end {end_rss / 2**20:.1f} MiB, "
          f"growth {100 * growth:+.1f} %")
    if sorted(end_workers) != sorted(workers):
        print(f"  note: the worker processes changed during the run ({workers} -> {end_workers}): a worker was restarted")
    loads = [tick.load for tick in ticks]
    print(f"machine load average (1 min) during the run: {min(loads):.1f} to {max(loads):.1f}, "
          f"mean {sum(loads) / len(loads):.1f} ({os.cpu_count()} CPUs)")

    errors = sum(1 for s in measured if s.status >= 500)
    results = [
        (f"memory growth: {100 * growth:+.1f} % (target < {100 * MEMORY_TARGET:.0f} %)", memory_ok),
        (f"p99 stable: last / first minute x{p99_ratio:.2f} (target <= x{P99_TARGET})", p99_ok),
        (f"5xx answers: {errors} (target 0)", errors == 0),
    ]
    print()
    for line, ok in results:
        print(f"{verdict(ok)}  {line}")
    return all(ok for _line, ok in results)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to measure, after the warm-up")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of warm-up, not measured")
    parser.add_argument("--warmup-requests", type=int, default=2000, help="and at least this many requests")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--enterprises", type=int, default=8, help="enterprises the clients book for")
    parser.add_argument("--open-bookings", type=int, default=8,
                        help="open bookings an enterprise keeps; booking beyond that cancels its oldest")
    parser.add_argument("--subscriptions", type=int, default=3,
                        help="resources' public feeds each client subscribes to (besides its own, its enterprise's and a unit's)")
    args = parser.parse_args()

    admin = make_url(args.admin_url)
    name = f"facility_share_soak_{uuid.uuid4().hex[:8]}"
    admin_dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    dsn = admin.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    ok = False
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        site = await prepare(url, args.enterprises)
        print(f"database {name}: {len(site.resources)} resources, {len(site.bookable)} bookable by the load, "
              f"{len(site.members)} enterprises (a user and an enterprise feed each), {len(site.public_feeds)} public "
              f"and {len(site.unit_feeds)} unit feeds")
        with tempfile.TemporaryDirectory(prefix="soak-") as folder:
            # Requests waiting for approval count against an enterprise's limit of open requests;
            # the population keeps its own bound (--open-bookings), so the limit is lifted.
            server = LiveServer(url, workers=args.workers, log_path=Path(folder) / "server.log",
                                extra_env={"FACILITY_SHARE_MAX_OPEN_REQUESTS": "1000000"})
            await asyncio.to_thread(server.start)
            try:
                assert server.process is not None
                ok = await soak(server.url, site, server.process.pid, dsn, args)
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
