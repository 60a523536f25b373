"""Observability: request ids, JSON log lines, Prometheus metrics (by route template, bookings
and jobs read at scrape time, pool use), who may scrape, and several server processes sharing
their metrics (multi-process mode) through a real ``facility-share serve --workers 2``."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import JSON, Integer, String, Text, column, insert, table, text

from facility_share.bookings import services as bookings
from facility_share.db import Database
from facility_share.errors import SettingsError
from facility_share.settings import load_settings
from facility_share.web import observability
from facility_share.web.app import create_app
from tests.live import LiveServer
from tests.world import build_world, local, next_weekday

SEM = "WQ-TJMAT-SEM01"


# --- helpers ---------------------------------------------------------------------------------


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(body: str, name: str, **labels: str) -> float:
    return samples(body).get((name, tuple(sorted(labels.items()))), 0.0)


def client_for(app, address: str = "127.0.0.1") -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    """An HTTP client calling ``app`` in-process as if from ``address`` (no lifespan: no
    background tasks)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://service")


@pytest.fixture
async def app_on(imported, database_url: str):  # type: ignore[no-untyped-def]
    return create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)


# --- request ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("6f1c0e5b8d2a4c7e9f3b1a2d4c6e8f0a", True),  # nginx's $request_id
        ("0b7c2a0e-3c4d-4f6a-9e8b-1a2b3c4d5e6f", True),  # a UUID
        ("trace:abc.DEF_1", True),
        ("two words", False),
        ('x"}\n{"forged": 1', False),
        ("a" * 129, False),
        ("标识", False),
        ("", False),
    ],
)
async def test_request_id_is_kept_when_sane_and_made_otherwise(sent: str, kept: bool) -> None:
    app = create_app(load_settings({}))
    async with client_for(app) as client:
        response = await client.get("/healthz", headers={"X-Request-ID": sent.encode("utf-8")})
    assert response.status_code == 200
    echoed = response.headers["x-request-id"]
    if kept:
        assert echoed == sent
    else:
        assert echoed != sent and len(echoed) == 32 and int(echoed, 16) >= 0


async def test_each_request_gets_its_own_id_on_every_kind_of_answer() -> None:
    app = create_app(load_settings({}))
    async with client_for(app) as client:
        answers = [await client.get(path) for path in ("/healthz", "/healthz", "/no/such/page", "/metrics")]
    ids = [response.headers["x-request-id"] for response in answers]
    assert [response.status_code for response in answers] == [200, 200, 404, 200]
    assert len(set(ids)) == 4


# --- log lines -----------------------------------------------------------------------------------


def capture(formatter: logging.Formatter) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(observability.RequestContextFilter())
    return stream, handler


async def _feed_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """A stand-in application: routed like the calendar feed, logs one line, answers 201."""
    scope["path_template"] = "/feeds/{token}/calendar.ics"
    scope["path_params"] = {"token": "fsf_SECRET123"}
    logging.getLogger("facility_share.test").warning("inside the handler")
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_json_lines_carry_the_request_context_and_mask_feed_tokens() -> None:
    stream, handler = capture(observability.JsonFormatter())
    loggers = [logging.getLogger("facility_share.test"), logging.getLogger("facility_share.access")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        observer = observability.RequestObserver(_feed_app, access_log_enabled=True)
        transport = httpx.ASGITransport(app=observer, client=("198.51.100.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            response = await client.get("/feeds/fsf_SECRET123/calendar.ics", headers={"X-Request-ID": "req-42"})
        logging.getLogger("facility_share.test").warning("outside any request")
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert response.status_code == 201 and response.headers["x-request-id"] == "req-42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    inside, access, outside = lines
    for entry in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= entry.keys()
        assert entry["time"].endswith("Z") and datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert inside["message"] == "inside the handler" and inside["level"] == "WARNING"
    assert inside["request_id"] == "req-42" and inside["method"] == "GET"
    assert access["logger"] == "facility_share.access" and access["request_id"] == "req-42"
    assert access["status"] == 201 and access["duration_ms"] >= 0 and access["route"] == "/feeds/{token}/calendar.ics"
    assert access["path"] == "/feeds/***/calendar.ics" and access["client"] == "198.51.100.7"
    assert "SECRET" not in stream.getvalue()
    assert outside["request_id"] is None and "method" not in outside


def _answers_then_fails(*, finish: bool):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"busy", "more_body": not finish})
        raise ConnectionResetError("closing the session on a dropped connection")

    return app


async def test_an_error_after_the_whole_answer_keeps_the_connection() -> None:
    """Closing a request's session on a connection the database dropped fails after the 503
    went out: the server must not close the client's connection for it (its next request on
    the connection would fail), but must for an answer cut short."""
    observer = observability.RequestObserver(_answers_then_fails(finish=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=observer), base_url="http://service") as client:
        response = await client.get("/anything")
    assert response.status_code == 503 and response.text == "busy"
    cut_short = observability.RequestObserver(_answers_then_fails(finish=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cut_short), base_url="http://service") as client:
        with pytest.raises(ConnectionResetError):
            await client.get("/anything")


def test_json_lines_hold_tracebacks_and_any_text() -> None:
    stream, handler = capture(observability.JsonFormatter())
    logger = logging.getLogger("facility_share.test.errors")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception('a "quoted"\nmulti-line 消息')
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == 'a "quoted"\nmulti-line 消息' and entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]


def test_text_lines_for_a_terminal() -> None:
    stream, handler = capture(observability.TextFormatter())
    logger = logging.getLogger("facility_share.test.text")
    logger.addHandler(handler)
    try:
        logger.warning("plain %s", "words")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().rstrip().endswith("WARNING facility_share.test.text [-] plain words")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_logging_configuration_serve_hands_to_uvicorn(log_format: str) -> None:
    """Applied in a fresh interpreter, as uvicorn does in each worker: libraries at WARNING,
    the service at the chosen level, and importing the formatters stays cheap (uvicorn's
    supervisor kills a worker that does not answer its health ping within 5 s)."""
    program = (
        "import logging, sys\n"
        "from facility_share.web.observability import configure_logging\n"
        f"configure_logging({log_format!r}, 'INFO')\n"
        "assert 'litestar' not in sys.modules and 'sqlalchemy' not in sys.modules, 'heavy import'\n"
        "logging.getLogger('facility_share.x').info('service line')\n"
        "logging.getLogger('sqlalchemy.engine').info('library chatter')\n"
        "logging.getLogger('uvicorn.error').info('server line')\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "library chatter" not in result.stderr
    if log_format == "json":
        assert [json.loads(line)["message"] for line in lines] == ["service line", "server line"]
    else:
        assert lines[0].endswith("INFO    facility_share.x [-] service line")


# --- settings ----------------------------------------------------------------------------------------


def test_operations_settings_defaults_and_production() -> None:
    development = load_settings({})
    assert (development.log_format, development.log_level, development.access_log) == ("text", "INFO", False)
    assert (development.db_connect_timeout, development.db_command_timeout) == (5, 30)
    assert development.metrics_token == "" and development.forwarded_allow_ips == "127.0.0.1,::1"
    production = load_settings({"FACILITY_SHARE_ENV": "production", "FACILITY_SHARE_SECRET_KEY": "k" * 40})
    assert production.log_format == "json"
    # uvicorn's own variable (what Compose and the ConfigMap set) is the fallback.
    assert load_settings({"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == "*"
    both = load_settings({"FORWARDED_ALLOW_IPS": "*", "FACILITY_SHARE_FORWARDED_ALLOW_IPS": "10.0.0.0/8, 127.0.0.1"})
    assert both.forwarded_allow_ips == "10.0.0.0/8, 127.0.0.1"
    token = "t" * 24
    settings = load_settings({"FACILITY_SHARE_METRICS_TOKEN": token})
    assert settings.metrics_token == token and token not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "raw", "fragment"),
    [
        ("LOG_FORMAT", "xml", "json or text"),
        ("LOG_LEVEL", "LOUD", "DEBUG, INFO"),
        ("ACCESS_LOG", "sometimes", "true or false"),
        ("METRICS_TOKEN", "short", "16+"),
        ("METRICS_TOKEN", "a token with spaces in it", "16+"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/8,proxy.internal", "proxy.internal"),
        ("DB_CONNECT_TIMEOUT", "0", "at least 1"),
        ("DB_COMMAND_TIMEOUT", "soon", "whole number"),
    ],
)
def test_bad_operations_settings_name_the_variable(variable: str, raw: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({f"FACILITY_SHARE_{variable}": raw})
    assert caught.value.variable == f"FACILITY_SHARE_{variable}" and fragment in caught.value.message
    assert raw not in caught.value.message or variable != "METRICS_TOKEN"


# --- who may scrape ----------------------------------------------------------------------------------


def scope(host: str, *headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http", "client": (host, 5000), "headers": list(headers)}


@pytest.mark.parametrize(
    ("host", "headers", "allowed"),
    [
        ("127.0.0.1", (), True),
        ("::1", (), True),
        ("10.42.0.17", (), True),  # a pod
        ("172.18.0.5", (), True),  # a Compose network
        ("192.168.1.20", (), True),
        ("100.64.3.2", (), True),  # CGNAT space some network plugins use
        ("::ffff:10.0.0.1", (), True),
        ("fd00::5", (), True),
        ("8.8.8.8", (), False),
        ("203.0.113.9", (), False),
        ("2606:4700::1111", (), False),
        ("169.254.1.1", (), False),
        ("testclient", (), False),
        # Relayed by a proxy: refused whatever it claims (uvicorn may have believed the header).
        ("10.0.0.1", ((b"x-forwarded-for", b"10.0.0.1"),), False),
        ("127.0.0.1", ((b"forwarded", b"for=127.0.0.1"),), False),
    ],
)
def test_without_a_token_only_direct_private_callers_may_scrape(host: str, headers: tuple, allowed: bool) -> None:
    assert (observability.metrics_refusal(scope(host, *headers), "") is None) is allowed


def test_with_a_token_only_its_bearer_may_scrape() -> None:
    token = "s3cret-metrics-token-0123456789"
    assert observability.metrics_refusal(scope("203.0.113.9", (b"authorization", f"Bearer {token}".encode())), token) is None
    assert observability.metrics_refusal(scope("203.0.113.9", (b"x-forwarded-for", b"1.2.3.4"),
                                               (b"authorization", f"bearer {token}".encode())), token) is None
    assert "wrong" in observability.metrics_refusal(scope("127.0.0.1", (b"authorization", b"Bearer nope")), token)
    assert "no bearer token" in observability.metrics_refusal(scope("127.0.0.1"), token)


async def test_metrics_route_refuses_with_404_and_serves_with_the_token() -> None:
    token = "s3cret-metrics-token-0123456789"
    app = create_app(load_settings({"FACILITY_SHARE_METRICS_TOKEN": token}))
    async with client_for(app, "203.0.113.9") as client:
        refused = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-the-token-at-all"})
        served = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == wrong.status_code == 404
    assert refused.json() == {"error": {"code": "not_found", "message": "not found"}}
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "facility_share_http_requests_total" in served.text
    async with client_for(app, "10.0.0.3") as client:
        assert (await client.get("/metrics")).status_code == 404, "with a token, the network alone is not enough"


async def test_openmetrics_when_asked_for() -> None:
    app = create_app(load_settings({}))
    async with client_for(app) as client:
        response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


# --- what the metrics say ------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template_method_and_status(app_on) -> None:  # type: ignore[no-untyped-def]
    async with client_for(app_on) as client:
        before = (await client.get("/metrics")).text
        for code in (SEM, SEM, "NO-SUCH-THING"):
            await client.get(f"/api/v1/resources/{code}")
        await client.get("/no/such/page/12345")
        await client.post("/api/v1/bookings", json={})
        after = (await client.get("/metrics")).text

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/api/v1/resources/{code}"
    assert delta("facility_share_http_requests_total", method="GET", route=route, status="200") == 2
    assert delta("facility_share_http_requests_total", method="GET", route=route, status="404") == 1
    assert delta("facility_share_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert delta("facility_share_http_requests_total", method="POST", route="/api/v1/bookings", status="401") == 1
    assert delta("facility_share_http_request_duration_seconds_count", method="GET", route=route, status="200") == 2
    # No series names a concrete resource code or the unknown path.
    assert SEM not in after and "12345" not in after


async def test_bookings_and_jobs_are_read_from_the_database_when_scraped(app_on, imported) -> None:  # type: ignore[no-untyped-def]
    world = await build_world(imported)
    day = next_weekday(bookings.utcnow())
    async with imported.session(write=True) as session:
        for hour in (9, 10):
            await bookings.request_booking(session, world["member_a"], bookings.BookingInput(SEM, local(day, hour), local(day, hour + 1)),
                                           max_open_requests=10)
        await session.commit()
    has_jobs = await _has_table(imported, "jobs")
    now = datetime.now(UTC)
    if has_jobs:
        await _add_jobs(imported, [
            ("email.send", "queued", now - timedelta(minutes=10)),
            ("email.send", "queued", now + timedelta(hours=1)),  # not due yet
            ("email.send", "failed", now - timedelta(minutes=2)),  # due for a retry
            ("payments.reconcile", "dead", now - timedelta(days=1)),
            ("bookings.expire", "done", now - timedelta(days=1)),
            ("bookings.expire", "running", now - timedelta(seconds=5)),
        ])
    async with client_for(app_on) as client:
        body = (await client.get("/metrics")).text
    assert value(body, "facility_share_database_up") == 1
    assert value(body, "facility_share_bookings", status="requested") == 2
    assert ("facility_share_bookings", (("status", "approved"),)) in samples(body), "every status is reported, 0 too"
    if not has_jobs:
        assert "facility_share_jobs" not in body
        pytest.skip("this database has no jobs table yet: the job queue metrics are left out, as they should be")
    assert value(body, "facility_share_jobs", status="queued") == 2
    assert value(body, "facility_share_jobs", status="dead") == 1
    assert value(body, "facility_share_jobs_unfinished", kind="email.send", status="failed") == 1
    assert ("facility_share_jobs_unfinished", (("kind", "bookings.expire"), ("status", "done"))) not in samples(body)
    assert value(body, "facility_share_job_queue_depth") == 2
    assert 590 < value(body, "facility_share_job_queue_oldest_due_seconds") < 700


async def test_database_facts_leave_out_the_job_queue_where_there_is_none(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        async with db.session(write=True) as session:
            await session.execute(text("CREATE TABLE bookings (id INTEGER PRIMARY KEY, status VARCHAR(20))"))
            await session.execute(text("INSERT INTO bookings (status) VALUES ('approved'), ('approved'), ('cancelled')"))
            await session.commit()
        facts = await observability.database_facts(db)
    finally:
        await db.dispose()
    assert facts.up and facts.jobs is None
    assert facts.bookings["approved"] == 2 and facts.bookings["cancelled"] == 1 and facts.bookings["requested"] == 0


async def test_pool_use_is_sampled(database_url: str) -> None:
    db = Database(database_url, pool_size=3, max_overflow=2)
    try:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
            observability.sample_pool(db)
            held = (observability.POOL_SIZE._value.get(), observability.POOL_CHECKED_OUT._value.get(),  # noqa: SLF001
                    observability.POOL_MAX_OVERFLOW._value.get())  # noqa: SLF001
        observability.sample_pool(db)
        released = observability.POOL_CHECKED_OUT._value.get()  # noqa: SLF001
    finally:
        await db.dispose()
    # SQLite keeps SQLAlchemy's default sizes; PostgreSQL takes the ones given.
    expected = (3, 1, 2) if db.dialect == "postgresql" else (db.engine.pool.size(), 1, db.engine.pool._max_overflow)  # noqa: SLF001
    assert held == expected and released == 0


def test_dead_processes_lose_their_live_gauges_but_keep_their_counts(tmp_path: Path) -> None:
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    for name in (f"gauge_livesum_{dead}.db", f"gauge_livesum_{os.getpid()}.db", f"counter_{dead}.db", f"histogram_{dead}.db"):
        (tmp_path / name).write_bytes(b"")
    assert observability.forget_dead_processes(str(tmp_path)) == [dead]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{dead}.db", f"histogram_{dead}.db"])


async def _has_table(db: Database, name: str) -> bool:
    async with db.session() as session:
        if db.dialect == "postgresql":
            return bool((await session.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name})).scalar())
        return bool((await session.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"),
                                           {"name": name})).scalar())


async def _add_jobs(db: Database, rows: list[tuple[str, str, datetime]]) -> None:
    from advanced_alchemy.types import DateTimeUTC

    jobs = table("jobs", column("kind", String), column("payload", JSON), column("run_at", DateTimeUTC(timezone=True)),
                 column("status", String), column("attempts", Integer), column("max_attempts", Integer),
                 column("last_error", Text), column("created_at", DateTimeUTC(timezone=True)))
    async with db.session(write=True) as session:
        await session.execute(text("DELETE FROM jobs"))  # e.g. the notifications the bookings above queued
        for kind, status, run_at in rows:
            await session.execute(insert(jobs).values(kind=kind, payload={}, run_at=run_at, status=status, attempts=0,
                                                      max_attempts=8, last_error="", created_at=run_at))
        await session.commit()


# --- several server processes ------------------------------------------------------------------------------


def worker_pids(parent: int) -> set[int]:
    """uvicorn's worker processes (spawned children), not multiprocessing's resource tracker."""
    pids = set()
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in cmdline:
            pids.add(int(child))
    return pids


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    return response.text


async def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.3)


@pytest.fixture
async def two_processes(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[tuple[LiveServer, Path]]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"a previous run's counts")  # serve must start from zero
    server = LiveServer(database_urls["sqlite"], workers=2, log_path=tmp_path / "server.log", extra_env={
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "FACILITY_SHARE_LOG_FORMAT": "json", "FACILITY_SHARE_ACCESS_LOG": "true",
        "FACILITY_SHARE_SWEEP_INTERVAL": "0",
    })
    await asyncio.to_thread(server.start)
    try:
        yield server, metrics_dir
    finally:
        await asyncio.to_thread(server.stop)


@pytest.mark.slow
async def test_two_server_processes_answer_for_each_other(two_processes) -> None:  # type: ignore[no-untyped-def]
    """Each scrape reaches one process; every scrape reports the requests both answered, and a
    worker killed and restarted by uvicorn keeps its counts and drops its pool figures."""
    server, metrics_dir = two_processes
    assert server.process is not None

    probe = Database(server.env["FACILITY_SHARE_DATABASE_URL"])
    per_process = probe.engine.pool.size()  # SQLite keeps SQLAlchemy's default pool size
    await probe.dispose()

    async def both_serving() -> bool:
        return value(await scrape(server.url), "facility_share_db_pool_size") == 2 * per_process

    await wait_for(both_serving)
    assert not (metrics_dir / "counter_1.db").exists()
    route = "/api/v1/categories"
    ids = [f"multi-{n:03d}" for n in range(40)]
    for request_id in ids:  # a new connection each time, so both processes get some
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{server.url}{route}", headers={"X-Request-ID": request_id})).status_code == 200
    counted = {value(await scrape(server.url), "facility_share_http_requests_total", method="GET", route=route, status="200")
               for _ in range(6)}
    assert counted == {40.0}
    answered_by = {path.stem.split("_")[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(answered_by) == 2, "both processes answered requests"

    # Every line is JSON; each request has its access line with its id.
    entries = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    access = {entry["request_id"]: entry for entry in entries if entry["logger"] == "facility_share.access"}
    assert set(ids) <= access.keys()
    assert all(access[i]["status"] == 200 and access[i]["route"] == route and access[i]["method"] == "GET" for i in ids)

    # Through a proxy the server trusts (loopback, by default): the client's address is taken
    # from X-Forwarded-For, and /metrics is refused as relayed.
    async with httpx.AsyncClient(timeout=10) as client:
        proxied = {"X-Forwarded-For": "198.51.100.23", "X-Forwarded-Proto": "https", "X-Request-ID": "via-proxy"}
        assert (await client.get(f"{server.url}{route}", headers=proxied)).status_code == 200
        assert (await client.get(f"{server.url}/metrics", headers=proxied)).status_code == 404
    await asyncio.sleep(0.2)
    entries = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    # The access line is written once the response has gone, so the two may land in either order.
    assert sorted((e["route"], e["status"], e["client"]) for e in entries if e.get("request_id") == "via-proxy" and e["logger"] == "facility_share.access") \
        == sorted([(route, 200, "198.51.100.23"), ("/metrics", 404, "198.51.100.23")])

    # kill -9 one worker: uvicorn starts another; the counts stay, the dead one's pool goes.
    victim = min(worker_pids(server.process.pid))
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> bool:
        pids = worker_pids(server.process.pid)
        return len(pids) == 2 and victim not in pids and value(await scrape(server.url), "facility_share_db_pool_size") == 2 * per_process

    await wait_for(replaced, timeout=90)
    body = await scrape(server.url)
    assert value(body, "facility_share_http_requests_total", method="GET", route=route, status="200") == 41  # with the proxied one
    assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))


def test_serve_hands_its_settings_to_uvicorn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What `facility-share serve` passes on: the trusted proxies, the shutdown timeout, the log
    configuration (applied in each worker), the access-log choice (through the environment the
    workers read), and a fresh metrics directory shared by several workers, removed at exit."""
    import uvicorn
    from click.testing import CliRunner

    from facility_share.cli import main

    seen: dict = {}

    def fake_run(app: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
        seen.update(kwargs, app=app, env={k: os.environ.get(k) for k in ("PROMETHEUS_MULTIPROC_DIR", "FACILITY_SHARE_ACCESS_LOG")})
        seen["dir_existed"] = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).is_dir()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    for name in ("PROMETHEUS_MULTIPROC_DIR", "FACILITY_SHARE_ACCESS_LOG"):
        # serve sets these in this process's environment: monkeypatch takes them away again.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    env = {"FACILITY_SHARE_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite3'}", "FACILITY_SHARE_FORWARDED_ALLOW_IPS": "10.0.0.0/8",
           "FACILITY_SHARE_LOG_FORMAT": "json", "FACILITY_SHARE_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(main, ["serve", "--workers", "3", "--access-log", "--shutdown-timeout", "7"], env=env)
    assert result.exit_code == 0, result.output
    assert seen["app"] == "facility_share.web.app:create_app" and seen["factory"] and seen["workers"] == 3
    assert seen["forwarded_allow_ips"] == "10.0.0.0/8" and seen["proxy_headers"] is True
    assert seen["timeout_graceful_shutdown"] == 7 and seen["access_log"] is False and seen["log_level"] == "warning"
    assert seen["log_config"]["formatters"]["default"]["()"].endswith("JsonFormatter")
    assert seen["env"]["FACILITY_SHARE_ACCESS_LOG"] == "true" and seen["dir_existed"]
    assert not Path(seen["env"]["PROMETHEUS_MULTIPROC_DIR"]).exists(), "its own metrics directory is removed at exit"


def test_the_environment_is_left_as_found() -> None:
    """(Runs after the test above: serve's changes to os.environ did not leak.)"""
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ and "FACILITY_SHARE_ACCESS_LOG" not in os.environ
