"""What operators watch: request ids, structured logs, Prometheus metrics, and the one place
that decides whether an error means "the database is unavailable" (answered 503 with
Retry-After, never 500).

**Request ids.** Every HTTP request gets an id: the incoming ``X-Request-ID`` when it is a
sane token (the proxy's ``$request_id``, a client's UUID), else a new one. It is echoed in the
response's ``X-Request-ID`` and put in a context variable that every log line of the request
carries, so one id ties the proxy's log, the service's log and a user's report together.

**Logs.** One JSON object a line (``time, level, logger, message, request_id`` and, within a
request, ``method, path``; the access line adds ``status, duration_ms, route``), or plain text
for development (``FACILITY_SHARE_LOG_FORMAT``). Secret path segments (calendar feed tokens)
are masked. ``facility-share serve`` hands :func:`logging_config` to uvicorn, which applies it
in every worker process before the application is built.

**Metrics** at ``/metrics`` (Prometheus text format): requests and their latency by route
template (never the raw path: one series per route, not per booking id), method and status;
bookings by status and the job queue, read from the database when scraped (cached briefly,
bounded by a statement timeout); the connection pool's use. With several server processes
(``serve --workers N``) a scrape reaches one process at random, so per-process scraping cannot
work: the processes share their counters through prometheus_client's multi-process mode
(``PROMETHEUS_MULTIPROC_DIR``, set up by ``serve``), and each scrape answers for all of them.

**Who may scrape.** Without ``FACILITY_SHARE_METRICS_TOKEN``, only direct callers from loopback
or private addresses (Prometheus scraping the pod or container); a request relayed by a proxy
(it carries ``X-Forwarded-For`` or ``Forwarded``) is refused whatever address it claims, since a
proxy that is trusted for forwarded addresses would otherwise let anyone claim ``10.0.0.1``.
With the token set, only ``Authorization: Bearer <token>`` is accepted, from anywhere. A refused
scrape gets 404, the answer the public proxy gives for ``/metrics``, and a log line saying why.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light imports at module level: uvicorn applies the logging configuration, which names
# the formatter classes below, in each worker before the worker answers the supervisor's health
# pings; importing Litestar there (seconds on a busy machine) gets the worker killed as hung.
# Litestar and SQLAlchemy are imported where they are used.
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from litestar import Litestar, Request, Response
    from litestar.datastructures import State
    from litestar.handlers import HTTPRouteHandler
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from facility_share.db.engine import Database
    from facility_share.settings import Settings

log = logging.getLogger("facility_share.observability")
access_log = logging.getLogger("facility_share.access")

REQUEST_ID_HEADER = "x-request-id"
# Letters, digits and . _ : - up to 128: a UUID, nginx's $request_id, a trace id. Anything else
# (spaces, quotes, newlines that could forge log lines, a 10 kB header) is replaced.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Path parameters that are credentials: a calendar feed's token is the whole of its access.
SECRET_PATH_PARAMS = frozenset({"token"})
UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds a client is told to wait when the database is unavailable.
DATABASE_RETRY_AFTER = 5


# --- request context ------------------------------------------------------------------------


@dataclass(slots=True)
class RequestContext:
    request_id: str
    method: str
    raw_path: str
    # The ASGI scope, where routing puts the path parameters (read for masking).
    scope: dict[str, Any]

    @property
    def path(self) -> str:
        return masked_path(self.raw_path, self.scope.get("path_params"))


_context: ContextVar[RequestContext | None] = ContextVar("facility_share_request", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this task, or None outside a request."""
    context = _context.get()
    return context.request_id if context else None


def incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client's or proxy's ``X-Request-ID`` if it is a sane token, else None."""
    for name, value in headers:
        if name == b"x-request-id":
            try:
                candidate = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return candidate if _SANE_REQUEST_ID.fullmatch(candidate) else None
    return None


def masked_path(path: str, params: dict[str, Any] | None) -> str:
    """``path`` with the values of credential path parameters masked (for logs)."""
    for name in SECRET_PATH_PARAMS & (params or {}).keys():
        value = str(params[name])  # type: ignore[index]
        if value:
            path = path.replace(value, "***")
    return path


# --- logging ----------------------------------------------------------------------------------


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request), ``method`` and ``path`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        if context is None:
            if not hasattr(record, "request_id"):
                record.request_id = None
            return True
        record.request_id = context.request_id
        if not hasattr(record, "method"):
            record.method = context.method
        if not hasattr(record, "path"):
            record.path = context.path
        return True


# Fields copied from a record into the JSON object when present.
_EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "route", "client")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, request_id, and the
    request's fields when known; ``exception`` holds a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII escapes: valid JSON every log shipper decodes, whatever the container's locale.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Plain lines for a developer's terminal, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_label)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.request_label = getattr(record, "request_id", None) or "-"
        return super().format(record)


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def logging_config(log_format: str = "json", level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: one handler on standard error, with the
    request filter and the chosen formatter. Libraries log warnings and above; the service and
    uvicorn at ``level``. (The ``default`` and ``access`` formatter names are the ones uvicorn
    expects to find.)"""
    formatter = {"()": f"{__name__}.{'JsonFormatter' if log_format == 'json' else 'TextFormatter'}"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": f"{__name__}.RequestContextFilter"}},
        "formatters": {"default": formatter, "access": dict(formatter)},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["request"], "stream": "ext://sys.stderr"},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
        "loggers": {
            "facility_share": {"level": level},
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Requests are logged by RequestObserver, with the request id.
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def configure_logging(log_format: str = "json", level: str = "INFO") -> None:
    """Apply :func:`logging_config` (for commands that run outside uvicorn)."""
    import logging.config

    logging.config.dictConfig(logging_config(log_format, level))


# --- metrics -----------------------------------------------------------------------------------

# The *_created series (a timestamp per label set) only add to what Prometheus stores.
disable_created_metrics()
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "facility_share_http_requests", "HTTP requests answered, by route template, method and status.",
    ("method", "route", "status"),
)
LATENCY = Histogram(
    "facility_share_http_request_duration_seconds", "Time from receiving a request to its last byte, by route template, method and status.",
    ("method", "route", "status"), buckets=LATENCY_BUCKETS,
)
DATABASE_UNAVAILABLE = Counter(
    "facility_share_database_unavailable_responses", "Requests answered 503 because the database was unavailable, by the error's type.",
    ("error",),
)
# Per process; summed over the live processes in multi-process mode.
POOL_SIZE = Gauge("facility_share_db_pool_size", "Connections the pool keeps (configured size, summed over server processes).",
                  multiprocess_mode="livesum")
POOL_MAX_OVERFLOW = Gauge("facility_share_db_pool_max_overflow", "Connections the pool may open beyond its size under load.",
                          multiprocess_mode="livesum")
POOL_CHECKED_OUT = Gauge("facility_share_db_pool_checked_out", "Connections in use by requests right now.",
                         multiprocess_mode="livesum")
POOL_OVERFLOW = Gauge("facility_share_db_pool_overflow", "Connections open beyond the pool's size right now.",
                      multiprocess_mode="livesum")

_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency (label children cached: this runs on every request)."""
    key = (method if method in KNOWN_METHODS else "OTHER", route, str(status))
    pair = _children.get(key)
    if pair is None:
        pair = _children[key] = (REQUESTS.labels(*key), LATENCY.labels(*key))
    pair[0].inc()
    pair[1].observe(seconds)


def sample_pool(db: Database) -> None:
    """Copy the connection pool's current use into the pool gauges (NullPool has none)."""
    pool = db.engine.pool
    size = getattr(pool, "size", None)
    if size is None:
        return
    POOL_SIZE.set(size())
    POOL_MAX_OVERFLOW.set(getattr(pool, "_max_overflow", 0))
    POOL_CHECKED_OUT.set(pool.checkedout())
    POOL_OVERFLOW.set(max(0, pool.overflow()))


def multiprocess_dir() -> str | None:
    """The directory the server processes share their metrics through, if any."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def forget_dead_processes(directory: str) -> list[int]:
    """Drop the live gauges of server processes that are gone (a worker uvicorn restarted):
    their pool use would otherwise be summed for ever. Counters and histograms of a dead
    process are kept, so totals never go down."""
    from prometheus_client import multiprocess

    dead = []
    for path in Path(directory).glob("gauge_live*_*.db"):
        try:
            pid = int(path.stem.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        multiprocess.mark_process_dead(pid, directory)
        dead.append(pid)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- facts read from the database at scrape time ------------------------------------------------

# The job queue's table (facility_share.jobs): waiting means queued, or failed and due for a retry.
JOB_STATUSES = ("queued", "running", "failed", "done", "dead")
JOB_WAITING = ("queued", "failed")
FACTS_TTL_SECONDS = 5.0
FACTS_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class DatabaseFacts:
    """What a scrape reports from the database; ``up`` is False when it could not be read."""

    up: bool
    bookings: dict[str, int] = field(default_factory=dict)
    # None: no jobs table (a database migrated before the job queue existed).
    jobs: dict[str, int] | None = None
    jobs_unfinished: dict[tuple[str, str], int] = field(default_factory=dict)
    job_queue_depth: int = 0
    job_oldest_due_seconds: float = 0.0
    seconds: float = 0.0


@dataclass(slots=True)
class _FactsCache:
    expires: float = 0.0
    facts: DatabaseFacts | None = None
    jobs_table: bool | None = None
    jobs_checked: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_facts_caches: weakref.WeakKeyDictionary[Any, _FactsCache] = weakref.WeakKeyDictionary()


async def database_facts(db: Database, *, now: datetime | None = None) -> DatabaseFacts:
    """Bookings by status and the job queue, read at most every few seconds per process (two
    Prometheus replicas scraping every process must not turn into load), each statement capped
    by a short statement timeout on PostgreSQL and the whole by a deadline."""
    cache = _facts_caches.setdefault(db, _FactsCache())
    async with cache.lock:
        if cache.facts is not None and time.monotonic() < cache.expires:
            return cache.facts
        started = time.perf_counter()
        try:
            facts = await asyncio.wait_for(_read_facts(db, cache, now), FACTS_TIMEOUT_SECONDS)
        except Exception as exc:  # the scrape still answers: process and request metrics, up=0
            log.warning("metrics: the database could not be read (%s)", exc.__class__.__name__)
            facts = DatabaseFacts(up=False)
        facts = DatabaseFacts(**{**_asdict(facts), "seconds": time.perf_counter() - started})
        cache.facts, cache.expires = facts, time.monotonic() + FACTS_TTL_SECONDS
        return facts


def _asdict(facts: DatabaseFacts) -> dict[str, Any]:
    return {name: getattr(facts, name) for name in DatabaseFacts.__slots__}


async def _read_facts(db: Database, cache: _FactsCache, now: datetime | None) -> DatabaseFacts:
    from sqlalchemy import column, func, select, table, text

    from facility_share.db.models import BOOKING_STATUSES, Booking

    _jobs = table("jobs", column("kind"), column("status"), column("run_at"))
    now = now or datetime.now(UTC)
    async with db.session() as session:
        if db.dialect == "postgresql":
            await session.execute(text("SET LOCAL statement_timeout = 2000"))
        # An index-only scan on PostgreSQL (ix_bookings_status_deadline leads with status).
        counted = dict((await session.execute(select(Booking.status, func.count()).group_by(Booking.status))).all())
        bookings = {status: int(counted.get(status, 0)) for status in (*BOOKING_STATUSES, *counted)}
        if not await _has_jobs_table(session, db.dialect, cache):
            return DatabaseFacts(up=True, bookings=bookings)
        by_status = dict((await session.execute(select(_jobs.c.status, func.count()).group_by(_jobs.c.status))).all())
        jobs = {status: int(by_status.get(status, 0)) for status in (*JOB_STATUSES, *by_status)}
        unfinished = {
            (kind, status): int(count)
            for kind, status, count in (await session.execute(
                select(_jobs.c.kind, _jobs.c.status, func.count())
                .where(_jobs.c.status.in_(("queued", "running", "failed", "dead")))
                .group_by(_jobs.c.kind, _jobs.c.status)
            )).all()
        }
        due = _jobs.c.status.in_(JOB_WAITING) & (_jobs.c.run_at <= _as_column_value(now, db.dialect))
        depth, oldest = (await session.execute(select(func.count(), func.min(_jobs.c.run_at)).where(due))).one()
    oldest_at = _parse_time(oldest)
    waited = max(0.0, (now - oldest_at).total_seconds()) if oldest_at else 0.0
    return DatabaseFacts(up=True, bookings=bookings, jobs=jobs, jobs_unfinished=unfinished,
                         job_queue_depth=int(depth), job_oldest_due_seconds=waited)


async def _has_jobs_table(session: Any, dialect: str, cache: _FactsCache) -> bool:
    # Found once, it stays; not found, look again a minute later (a migration may add it).
    if cache.jobs_table or (cache.jobs_table is False and time.monotonic() - cache.jobs_checked < 60):
        return bool(cache.jobs_table)
    from sqlalchemy import text

    if dialect == "postgresql":
        found = (await session.execute(text("SELECT to_regclass('jobs') IS NOT NULL"))).scalar()
    else:
        found = (await session.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"))).scalar()
    cache.jobs_table, cache.jobs_checked = bool(found), time.monotonic()
    return cache.jobs_table


def _as_column_value(moment: datetime, dialect: str) -> Any:
    # run_at is stored as advanced-alchemy's DateTimeUTC: timestamptz on PostgreSQL, and on
    # SQLite the naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff", which compares as text.
    if dialect == "sqlite":
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return moment


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _FactsCollector:
    """Presents :class:`DatabaseFacts` as metric families for one exposition."""

    def __init__(self, facts: DatabaseFacts) -> None:
        self.facts = facts

    def collect(self) -> Iterator[Metric]:
        facts = self.facts
        yield GaugeMetricFamily("facility_share_database_up", "1 when this scrape could read the database, else 0.", value=int(facts.up))
        yield GaugeMetricFamily("facility_share_database_scrape_seconds", "Time this scrape spent reading the database.",
                                value=facts.seconds)
        if not facts.up:
            return
        bookings = GaugeMetricFamily("facility_share_bookings", "Bookings in the database, by status.", labels=("status",))
        for status, count in sorted(facts.bookings.items()):
            bookings.add_metric((status,), count)
        yield bookings
        if facts.jobs is None:
            return
        jobs = GaugeMetricFamily("facility_share_jobs", "Background jobs in the queue table, by status (failed: waiting for a retry; "
                                 "dead: gave up).", labels=("status",))
        for status, count in sorted(facts.jobs.items()):
            jobs.add_metric((status,), count)
        yield jobs
        unfinished = GaugeMetricFamily("facility_share_jobs_unfinished", "Jobs not done yet, by kind and status.", labels=("kind", "status"))
        for (kind, status), count in sorted(facts.jobs_unfinished.items()):
            unfinished.add_metric((kind, status), count)
        yield unfinished
        yield GaugeMetricFamily("facility_share_job_queue_depth", "Jobs due now and waiting for a worker (queued, or failed and due for a retry).",
                                value=facts.job_queue_depth)
        yield GaugeMetricFamily("facility_share_job_queue_oldest_due_seconds", "How long the oldest due job has been waiting.",
                                value=facts.job_oldest_due_seconds)


class _Exposition:
    """The collectors of one scrape, as the registry-like object prometheus_client's encoders take."""

    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def render_metrics(facts: DatabaseFacts, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition (body, content type) of every process's metrics plus ``facts``."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        forget_dead_processes(directory)
        registry: Any = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, directory)
    else:
        registry = REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Exposition(registry, _FactsCollector(facts))), content_type


# --- who may scrape ------------------------------------------------------------------------------

_PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")
# Loopback and the private ranges (RFC 1918, unique local IPv6), and carrier-grade NAT space,
# which some Kubernetes network plugins number pods from. (Not ipaddress's is_private, which
# also admits documentation and other special ranges.)
_SCRAPER_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "::1/128", "fc00::/7"))


def metrics_refusal(scope: Scope, token: str) -> str | None:
    """Why a scrape is refused, or None if it may read the metrics (rules in the module docstring)."""
    headers = scope.get("headers", [])
    if token:
        for name, value in headers:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
                    return None
                return "wrong bearer token"
        return "FACILITY_SHARE_METRICS_TOKEN is set and no bearer token was sent"
    if any(name in _PROXY_HEADERS for name, _ in headers):
        return "relayed by a proxy (set FACILITY_SHARE_METRICS_TOKEN to scrape through one)"
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"caller {host!r} is not an IP address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in network for network in _SCRAPER_NETWORKS if network.version == address.version):
        return None
    return f"caller {host} is not on a loopback or private network"


async def metrics(request: Request, state: State) -> Response:
    """Prometheus metrics (who may read them: module docstring)."""
    from litestar import Response

    settings: Settings = state.settings
    refusal = metrics_refusal(request.scope, settings.metrics_token)
    if refusal:
        client = request.scope.get("client")
        log.warning("metrics scrape refused from %s: %s", client[0] if client else "?", refusal)
        return Response({"error": {"code": "not_found", "message": "not found"}}, status_code=404)
    db: Database = state.db
    sample_pool(db)
    facts = await database_facts(db)
    body, content_type = render_metrics(facts, request.headers.get("accept"))
    # Set as a header: Litestar would append a second charset to a text/ media type.
    return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def metrics_route() -> HTTPRouteHandler:
    """The ``GET /metrics`` route handler (built on demand: see the note on imports)."""
    from litestar import Request, Response, get
    from litestar.datastructures import State

    return get("/metrics", include_in_schema=False, opt={"access": "public"},
               signature_namespace={"Request": Request, "Response": Response, "State": State})(metrics)


# --- wiring ----------------------------------------------------------------------------------------


class RequestObserver:
    """ASGI wrapper around the whole application, outside Litestar's routing and exception
    handling, so that it sees every response: the 404 of an unknown path and the 503 of an
    error raised in a middleware included (route middleware sees neither). It assigns the
    request id, times the request, counts it, and writes the access line when asked."""

    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = False) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = incoming_request_id(scope.get("headers", ())) or uuid.uuid4().hex
        method: str = scope.get("method", "GET")
        context = RequestContext(request_id, method, scope.get("path", ""), scope)  # type: ignore[arg-type]
        token = _context.set(context)
        header = (b"x-request-id", request_id.encode("ascii"))
        status = 500  # if nothing is sent, the server answers 500
        complete = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]  # type: ignore[typeddict-item]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if not complete:
                raise
            # The answer is out in full; what failed afterwards (typically closing the request's
            # session on a connection the database dropped) cannot change it. Raising would make
            # the server close the connection, and a client's next request on it would fail.
            if is_database_unavailable(exc):
                log.info("after the response: the database connection was lost (%s)", exc.__class__.__name__)
            else:
                log.warning("error after the response was sent", exc_info=exc)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or UNMATCHED_ROUTE
            record_request(method, route, status, elapsed)
            if self.access_log_enabled:
                duration_ms = round(elapsed * 1000, 1)
                client = scope.get("client")
                access_log.info("%s %s %d %.1f ms", method, context.path, status, duration_ms,
                                extra={"status": status, "duration_ms": duration_ms, "route": route,
                                       "client": client[0] if client else None})
            _context.reset(token)


POOL_SAMPLE_SECONDS = 5.0


def instrument(app: Litestar, settings: Settings) -> Litestar:
    """Wrap ``app`` in :class:`RequestObserver`; with several server processes, sample each
    process's pool every few seconds (a scrape reaches only one of them)."""
    app.asgi_handler = RequestObserver(app.asgi_handler, access_log_enabled=settings.access_log)
    sampler: list[asyncio.Task] = []

    async def start_pool_sampler(app: Litestar) -> None:
        if multiprocess_dir():
            sampler.append(asyncio.create_task(_sample_pool_forever(app.state.db)))

    async def stop_pool_sampler(app: Litestar) -> None:
        for task in sampler:
            task.cancel()

    app.on_startup.append(start_pool_sampler)
    app.on_shutdown.insert(0, stop_pool_sampler)
    return app


async def _sample_pool_forever(db: Database) -> None:
    while True:
        try:
            sample_pool(db)
        except Exception:  # a metric must never take the process down
            log.exception("sampling the connection pool failed")
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


# --- database outages ------------------------------------------------------------------------------

# SQLSTATEs that mean "the server cannot serve now, try again": class 08 (connection exception),
# admin/crash shutdown, cannot connect now (starting up, shutting down, in recovery), too many
# connections.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
_UNAVAILABLE_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.ETIMEDOUT, errno.EPIPE, errno.ENETDOWN, errno.EHOSTDOWN,
})
_DRIVER_MODULES = ("asyncpg", "sqlalchemy", "aiosqlite")


def is_database_unavailable(exc: BaseException) -> bool:
    """True if ``exc`` means the database cannot be reached or cannot serve right now (so the
    request should be answered 503 with Retry-After), False for any other error.

    Covers a refused or reset connection, a connection closed mid-statement, a connect or
    statement timeout inside the driver, a server starting up or shutting down, too many
    connections, and an exhausted pool (SQLAlchemy's TimeoutError).
    """
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _unavailable_here(exc):
            return True
        exc = exc.__cause__ or (exc.orig if isinstance(exc, sa_exc.DBAPIError) else None)  # type: ignore[assignment]
    return False


def _unavailable_here(exc: BaseException) -> bool:
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
    # asyncpg's errors and SQLAlchemy's wrappers of them both carry the SQLSTATE.
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES):
        return True
    if isinstance(exc, ConnectionError | socket.gaierror):
        return True
    if isinstance(exc, TimeoutError):
        return _raised_in_driver(exc)
    return isinstance(exc, OSError) and exc.errno in _UNAVAILABLE_ERRNOS


def _raised_in_driver(exc: BaseException) -> bool:
    # A bare TimeoutError is the database's only if it came out of the driver (asyncpg's
    # connect or command timeout), not from some other await in the handler.
    traceback = exc.__traceback__
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module.startswith(_DRIVER_MODULES):
            return True
        traceback = traceback.tb_next
    return False


def bounded_waits(db: Database, *, connect_timeout: float, command_timeout: float) -> Database:
    """Bound how long one request can wait on PostgreSQL: opening a connection (a black-holed
    server would otherwise hold it for the OS's TCP timeout, minutes) and one statement (a
    frozen server). Set through SQLAlchemy's ``do_connect`` event, on the connect arguments
    asyncpg receives; SQLite is left alone (its busy timeout is the engine's)."""
    if db.dialect != "postgresql":
        return db
    from sqlalchemy import event

    @event.listens_for(db.engine.sync_engine, "do_connect")
    def _with_timeouts(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams.setdefault("timeout", connect_timeout)
        cparams.setdefault("command_timeout", command_timeout)

    return db


@dataclass(slots=True)
class _OutageLog:
    """At most one warning per interval and process, with the count since the last one: an
    outage under load would otherwise write a line per request."""

    interval: float = 10.0
    last: float = float("-inf")
    suppressed: int = 0


_outage_log = _OutageLog()


def note_database_unavailable(exc: BaseException, clock: Callable[[], float] = time.monotonic) -> None:
    """Count a request answered 503 for a database outage, and log it (rate-limited)."""
    name = exc.__class__.__name__
    DATABASE_UNAVAILABLE.labels(name).inc()
    now = clock()
    if now - _outage_log.last < _outage_log.interval:
        _outage_log.suppressed += 1
        return
    more = f"; {_outage_log.suppressed} more since the last report" if _outage_log.suppressed else ""
    log.warning("database unavailable (%s: %s); answering 503 with Retry-After%s", name, str(exc)[:200], more)
    _outage_log.last, _outage_log.suppressed = now, 0
