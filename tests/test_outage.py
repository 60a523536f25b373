"""When PostgreSQL goes away, requests fail fast with 503 and Retry-After (never 500, never a
hang), and the service recovers by itself when it returns, without a restart.

The fast tests point the service at a port where nothing listens and at a server that accepts
connections and never answers, and check which errors count as an outage. The slow ones start
a throwaway PostgreSQL cluster (initdb/pg_ctl; as the ``postgres`` user when run as root, since
PostgreSQL refuses to run as root), put a booking load on a real two-process server, stop the
cluster with ``pg_ctl stop -m immediate`` (a crash) in the middle of it and start it again; and
freeze the cluster (SIGSTOP) to check the connect and statement timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from facility_share.db import Database, migrate
from facility_share.db.models import Booking, Resource, utcnow
from facility_share.settings import load_settings
from facility_share.web import observability
from facility_share.web.app import create_app
from tests.live import LiveServer, free_port
from tests.world import build_world

# --- which errors are an outage --------------------------------------------------------------------


class _DriverError(Exception):
    """Stands in for asyncpg's errors: what matters is the SQLSTATE they carry."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(sqlstate: str, cls: type[sa_exc.DBAPIError] = sa_exc.DBAPIError) -> sa_exc.DBAPIError:
    return cls("SELECT 1", {}, _DriverError("driver says", sqlstate))


def _timeout_raised_in(module: str) -> TimeoutError:
    namespace: dict = {"__name__": module}
    exec(compile("def wait():\n    raise TimeoutError()\n", module, "exec"), namespace)  # noqa: S102
    try:
        namespace["wait"]()
    except TimeoutError as caught:
        return caught
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), True),
        (ConnectionResetError(), True),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), True),  # the database's host name is gone
        (OSError(errno.EHOSTUNREACH, "No route to host"), True),
        (_wrapped("57P03"), True),  # the database system is starting up / shutting down
        (_wrapped("57P01"), True),  # terminating connection due to administrator command
        (_wrapped("53300"), True),  # too many connections
        (_wrapped("08006"), True),  # connection failure
        (sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
        (sa_exc.TimeoutError("QueuePool limit of size 10 overflow 20 reached"), True),
        (_timeout_raised_in("asyncpg.connect_utils"), True),  # asyncpg's connect or command timeout
        (_wrapped("23P01", sa_exc.IntegrityError), False),  # an exclusion violation is a conflict
        (_wrapped("40001"), False),
        (_timeout_raised_in("facility_share.payments.stripe_calls"), False),  # someone else's timeout
        (OSError(errno.ENOENT, "No such file"), False),
        (ValueError("bad input"), False),
        (KeyError("x"), False),
    ],
)
def test_what_counts_as_the_database_being_unavailable(error: BaseException, outage: bool) -> None:
    assert observability.is_database_unavailable(error) is outage


def test_an_outage_found_in_the_cause_chain() -> None:
    try:
        try:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("while loading the caller") from inner
    except RuntimeError as outer:
        assert observability.is_database_unavailable(outer)


def test_outage_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = iter([1000.0, 1000.5, 1001.0, 1011.0]).__next__
    observability._outage_log.last = float("-inf")  # noqa: SLF001
    with caplog.at_level("WARNING", logger="facility_share.observability"):
        for _ in range(4):
            observability.note_database_unavailable(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), clock=clock)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert "ConnectionRefusedError" in lines[0] and "2 more since the last report" in lines[1]


# --- an unreachable database, in-process -----------------------------------------------------------


def _app(url: str, **extra: str):  # type: ignore[no-untyped-def]
    env = {"FACILITY_SHARE_DATABASE_URL": url, **{f"FACILITY_SHARE_{k}": v for k, v in extra.items()}}
    return create_app(load_settings(env))


def _client(app) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)), base_url="http://service", timeout=30)


async def _timed(client: httpx.AsyncClient, method: str, path: str, **kwargs) -> tuple[httpx.Response, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    response = await client.request(method, path, **kwargs)
    return response, time.perf_counter() - started


def _metric(body: str, name: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(body) for sample in family.samples if sample.name == name)


async def test_nothing_listening_is_answered_503_at_once() -> None:
    app = _app(f"postgresql://postgres@127.0.0.1:{free_port()}/facility_share")
    try:
        async with _client(app) as client:
            api, api_took = await _timed(client, "GET", "/api/v1/resources")
            page, _ = await _timed(client, "GET", "/catalog", headers={"Accept": "text/html"})
            write, _ = await _timed(client, "POST", "/api/v1/bookings", json={}, headers={"Authorization": "Bearer fst_x"})
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
            scraped = await client.get("/metrics")
    finally:
        await app.state.db.dispose()
    assert api.status_code == 503 and api_took < 1.0
    assert api.headers["retry-after"] == "5" and api.json()["error"]["code"] == "database_unavailable"
    assert page.status_code == 503 and page.headers["retry-after"] == "5" and "<html" in page.text
    assert write.status_code == 503 and write.headers["retry-after"] == "5"
    assert health.status_code == 200, "liveness never depends on the database"
    assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
    assert scraped.status_code == 200, "metrics answer during an outage"
    assert _metric(scraped.text, "facility_share_database_up") == 0
    assert _metric(scraped.text, "facility_share_database_unavailable_responses_total") >= 3


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never says a word: a database host whose
    PostgreSQL hangs, or a network that drops everything after the handshake."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_database_is_answered_503_after_the_connect_timeout() -> None:
    async with black_hole() as port:
        app = _app(f"postgresql://postgres@127.0.0.1:{port}/facility_share", DB_CONNECT_TIMEOUT="1")
        try:
            async with _client(app) as client:
                answers = await asyncio.gather(*(_timed(client, "GET", "/api/v1/resources") for _ in range(4)),
                                               _timed(client, "POST", "/api/v1/bookings", json={}, headers={"Authorization": "Bearer fst_x"}))
        finally:
            await app.state.db.dispose()
    for response, took in answers:
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert 0.9 < took < 2.5, took


# --- a throwaway PostgreSQL cluster ----------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                        if p.parent.parent.name.isdigit() else 0)
    return candidates[-1].parent if candidates else None


def _postgres_user_exists() -> bool:
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


PG_BIN = _postgres_bin()
AS_ROOT = os.geteuid() == 0
needs_cluster = pytest.mark.skipif(
    PG_BIN is None or (AS_ROOT and not _postgres_user_exists()),
    reason="needs PostgreSQL's server programs (initdb, pg_ctl), and a postgres user when run as root",
)


class ThrowawayCluster:
    """A PostgreSQL cluster of its own on a free port, in a temporary folder."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="facility-share-outage-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/facility_share"
        if AS_ROOT:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if AS_ROOT:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=check)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -h 127.0.0.1 -k {self.root} -c max_connections=200", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def processes(self) -> list[int]:
        """The postmaster and its children: exactly this cluster's processes."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        return [postmaster, *map(int, children)]

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    made = ThrowawayCluster()
    try:
        made.init()
        made.start()
        yield made
    finally:
        made.remove()


async def _prepare(cluster: ThrowawayCluster, loaded_catalog):  # type: ignore[no-untyped-def]
    """A migrated database with the catalogue, staff and enterprises; the bookable resources."""
    import asyncpg

    from facility_share.catalog.importer import import_catalog

    admin = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres", database="postgres")
    try:
        await admin.execute("CREATE DATABASE facility_share")
    finally:
        await admin.close()
    await asyncio.to_thread(migrate.upgrade, cluster.url)
    db = Database(cluster.url, null_pool=True)
    async with db.session(write=True) as session:
        await import_catalog(session, loaded_catalog)
        await session.commit()
    world = await build_world(db)
    async with db.session() as session:
        codes = dict((await session.execute(
            select(Resource.code, Resource.min_minutes).where(
                Resource.capacity == 1, Resource.booking_unit == "slot", Resource.open_for_sharing.is_(True),
                Resource.lead_minutes <= 24 * 60, Resource.retired_at.is_(None)).order_by(Resource.code).limit(12)
        )).all())
    return db, world, codes


def _worker_pids(parent: int) -> set[int]:
    pids = set()
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            pids.add(int(child))
    return pids


@dataclass
class Outcome:
    started: float
    took: float
    what: str
    status: int | None  # None: no HTTP answer at all
    retry_after: str | None = None
    booking_id: int | None = None
    error: str = ""


@dataclass
class Load:
    """Clients that look up availability and book what is free, recording every answer."""

    url: str
    tokens: list[str]
    codes: dict[str, int]  # resource code -> its shortest booking in minutes
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, index: int) -> None:
        rng = random.Random(index)
        start = utcnow() + timedelta(days=2)
        slot: tuple[str, str, str] | None = None
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                code = rng.choice(sorted(self.codes))
                answer = await self.call(client, "availability", "GET", f"/api/v1/resources/{code}/availability",
                                         params={"start": start.isoformat(), "end": (start + timedelta(days=14)).isoformat()})
                if answer is not None and answer.status_code == 200:
                    free = [u for u in answer.json()["units"] if u["remaining"] > 0]
                    if free:
                        unit = rng.choice(free)
                        end = datetime.fromisoformat(unit["start"]) + timedelta(minutes=self.codes[code])
                        slot = (code, unit["start"], end.isoformat())
                if slot is None:
                    await asyncio.sleep(0.05)
                    continue
                # During an outage the last free slot seen is tried: the write path must fail fast too.
                code_, begin, end_ = slot
                booked = await self.call(client, "booking", "POST", "/api/v1/bookings",
                                         json={"resource_code": code_, "start": begin, "end": end_},
                                         headers={"authorization": f"Bearer {self.tokens[index % len(self.tokens)]}"})
                if booked is not None and booked.status_code in (201, 409):
                    slot = None
                if booked is not None and booked.status_code == 503:
                    await asyncio.sleep(0.1)  # a client that honours Retry-After would wait longer

    async def call(self, client: httpx.AsyncClient, what: str, method: str, path: str, **kwargs) -> httpx.Response | None:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.outcomes.append(Outcome(started, time.monotonic() - started, what, None, error=repr(exc)))
            await asyncio.sleep(0.05)
            return None
        booking_id = response.json().get("id") if what == "booking" and response.status_code == 201 else None
        self.outcomes.append(Outcome(started, time.monotonic() - started, what, response.status_code,
                                     response.headers.get("retry-after"), booking_id))
        return response

    def between(self, since: float, until: float) -> list[Outcome]:
        return [o for o in self.outcomes if since <= o.started and o.started + o.took <= until]


async def _until(predicate, timeout: float, interval: float = 0.1) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate()`` is true (an AssertionError after ``timeout``)."""
    began = time.monotonic()
    while not await predicate():
        assert time.monotonic() - began < timeout, f"not within {timeout} s"
        await asyncio.sleep(interval)
    return time.monotonic() - began


async def _status(url: str, path: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(url + path)).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.slow
@needs_cluster
async def test_database_crash_under_load_503_then_recovery_without_restart(cluster, loaded_catalog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, world, codes = await _prepare(cluster, loaded_catalog)
    server = LiveServer(cluster.url, workers=2, log_path=tmp_path / "server.log", extra_env={
        "FACILITY_SHARE_MAX_OPEN_REQUESTS": "100000", "FACILITY_SHARE_LOG_FORMAT": "json",
        "FACILITY_SHARE_DB_CONNECT_TIMEOUT": "2", "FACILITY_SHARE_DB_COMMAND_TIMEOUT": "5",
    })
    await asyncio.to_thread(server.start)
    try:
        assert server.process is not None
        await _until(lambda: _ready_workers(server), timeout=90)
        workers_before = _worker_pids(server.process.pid)
        load = Load(server.url, [world.tokens["member_a"], world.tokens["member_b"]], codes)
        clients = [asyncio.create_task(load.client(i)) for i in range(12)]
        try:
            await _until(lambda: _acknowledged(load, 10), timeout=60)
            crashed_at = time.monotonic()
            await asyncio.to_thread(cluster.stop, "immediate")
            stopped_at = time.monotonic()
            await asyncio.sleep(4)
            during = {"healthz": await _status(server.url, "/healthz"), "readyz": await _status(server.url, "/readyz")}
            restart_at = time.monotonic()
            await asyncio.to_thread(cluster.start)
            started_at = time.monotonic()
            ready_after = await _until(lambda: _is(server.url, "/readyz", 200), timeout=30)
            ready_at = time.monotonic()
            await _until(lambda: _booked_since(load, ready_at), timeout=15)
            first_booking_after = max(0.0, min(o.started + o.took for o in load.outcomes
                                               if o.status == 201 and o.started >= ready_at) - started_at)
            await asyncio.sleep(2)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
        workers_after = _worker_pids(server.process.pid)
        async with httpx.AsyncClient(timeout=10) as client:
            scraped = (await client.get(f"{server.url}/metrics")).text
    finally:
        await asyncio.to_thread(server.stop)

    outcomes = load.outcomes
    outage = load.between(stopped_at + 0.2, restart_at)
    answered_503 = [o for o in outcomes if o.status == 503]
    acknowledged = [o.booking_id for o in outcomes if o.status == 201]
    summary = (f"{len(outcomes)} requests, {len(acknowledged)} bookings acknowledged, {len(answered_503)} answered 503; "
               f"outage {restart_at - stopped_at:.1f} s: {len(outage)} requests, slowest {max((o.took for o in outage), default=0):.3f} s; "
               f"stop took {stopped_at - crashed_at:.2f} s; /readyz 200 {ready_after:.2f} s after the cluster was up; "
               f"first booking {first_booking_after:.2f} s after")
    print("\n" + summary)

    assert not [o for o in outcomes if o.status is None], "the web server must keep answering: " + repr(
        [o.error for o in outcomes if o.status is None][:3])
    assert not [o for o in outcomes if o.status and o.status >= 500 and o.status != 503], "no 500s: " + repr(
        sorted({o.status for o in outcomes}))
    assert all(o.retry_after and int(o.retry_after) > 0 for o in answered_503), "every 503 says when to retry"
    assert len(outage) >= 20, summary
    assert {o.status for o in outage} == {503}, summary
    assert max(o.took for o in outage) < 2.0, summary
    assert during == {"healthz": 200, "readyz": 503}
    assert ready_after < 15 and first_booking_after < 10, summary
    assert workers_after == workers_before and server.process.returncode in (None, 0), "recovered without a restart"
    assert _metric(scraped, "facility_share_database_unavailable_responses_total") >= len(answered_503)
    assert _metric(scraped, "facility_share_database_up") == 1

    # Every booking acknowledged with 201 is stored; none is stored twice over one slot.
    async with db.session() as session:
        stored = set((await session.execute(select(Booking.id).where(Booking.id.in_(acknowledged)))).scalars())
    await db.dispose()
    assert stored == set(acknowledged)
    from tests.test_contention import overbooked

    check = Database(cluster.url, null_pool=True)
    try:
        assert await overbooked(check) == []
    finally:
        await check.dispose()
    log = (tmp_path / "server.log").read_text()
    assert "unhandled error" not in log and "Traceback" not in log.replace('"exception"', "")


async def _ready_workers(server: LiveServer) -> bool:
    assert server.process is not None
    return len(_worker_pids(server.process.pid)) == 2 and await _is(server.url, "/readyz", 200)


async def _is(url: str, path: str, status: int) -> bool:
    return await _status(url, path) == status


async def _acknowledged(load: Load, count: int) -> bool:
    return sum(1 for o in load.outcomes if o.status == 201) >= count


async def _booked_since(load: Load, since: float) -> bool:
    return any(o.status == 201 and o.started >= since for o in load.outcomes)


@pytest.mark.slow
@needs_cluster
async def test_a_frozen_database_is_answered_503_within_the_timeouts(cluster, loaded_catalog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP every process of the cluster: connections stay open and nothing answers. Requests
    must be answered 503 after the statement or connect timeout, not hang; after SIGCONT the
    service serves again by itself."""
    db, _world, codes = await _prepare(cluster, loaded_catalog)
    await db.dispose()
    server = LiveServer(cluster.url, workers=1, log_path=tmp_path / "server.log", extra_env={
        "FACILITY_SHARE_DB_CONNECT_TIMEOUT": "2", "FACILITY_SHARE_DB_COMMAND_TIMEOUT": "2", "FACILITY_SHARE_LOG_FORMAT": "json",
    })
    await asyncio.to_thread(server.start)
    frozen: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            # Warm the pool with a few connections, then freeze the database under them.
            codes = sorted(codes)
            warm = await asyncio.gather(*(client.get(f"/api/v1/resources/{code}") for code in codes[:4]))
            assert {r.status_code for r in warm} == {200}
            frozen = cluster.processes()
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)

            async def one(code: str) -> tuple[int, float, str | None]:
                began = time.monotonic()
                response = await client.get(f"/api/v1/resources/{code}")
                return response.status_code, time.monotonic() - began, response.headers.get("retry-after")

            answers = await asyncio.gather(*(one(code) for code in codes[:6]))
            healthz = await client.get("/healthz")
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            frozen = []
            thawed_at = time.monotonic()

            async def serving() -> bool:
                return (await client.get(f"/api/v1/resources/{codes[0]}")).status_code == 200

            recovered = await _until(serving, timeout=30, interval=0.2)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        await asyncio.to_thread(server.stop)
    print(f"\nfrozen database: answers {[(s, round(t, 2)) for s, t, _ in answers]}; serving again {recovered:.2f} s after SIGCONT")
    assert healthz.status_code == 200
    for status, took, retry_after in answers:
        assert status == 503 and retry_after == "5"
        # A statement timeout (2 s), then at most the rollback's and a reconnect's (2 s each).
        assert took < 7.0, answers
    assert recovered < 15 and time.monotonic() - thawed_at < 30
