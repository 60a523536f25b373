"""Application wiring: database, dependencies, error mapping, templates, static files, routes."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlencode
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, ValidationException
from litestar.response import Redirect
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.template.config import TemplateConfig
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
import swagger_ui_bundle

import facility_share
from facility_share.catalog.api import CatalogApi
from facility_share.catalog.pages import CatalogPages
from facility_share.db.engine import Database
from facility_share.accounts.api import AdminApi, MeApi, QualificationApi
from facility_share.accounts.auth import AuthenticationMiddleware, access_guard
from facility_share.bookings.api import AvailabilityApi, BookingApi
from facility_share.feeds.api import FeedApi
from facility_share.finance.report_api import FinanceReportApi
from facility_share.finance.settlement_api import SettlementApi
from facility_share.payments.advances import sweep_forever as payments_sweep_forever
from facility_share.payments.webhooks import StripeWebhooks
from facility_share.usage.api import AgentApi, AgentKeyApi, UsageApi
from facility_share.errors import FacilityShareError, TooManyRequests, Unauthorized
from facility_share.web.pages_registry import PAGE_CONTROLLERS
from facility_share.settings import Settings, load_settings
from facility_share.web.i18n import LOCALE_COOKIE, I18n, choose_locale, error_text
from facility_share.web.pages import set_language
from facility_share.web import observability
from facility_share.web.openapi import error_responses
from facility_share.web.render import render

log = logging.getLogger("facility_share")
PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATE_DIRS = [PACKAGE_DIR / context / "templates" for context in ("web", "catalog", "accounts", "bookings", "usage", "feeds", "closures", "payments", "finance", "jobs")]
STATIC_DIR = PACKAGE_DIR / "web" / "static"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def provide_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session, opened by the authentication middleware (write methods get a
    write session: ``BEGIN IMMEDIATE`` on SQLite). The handler commits what it changed; the
    middleware rolls back anything left open when the response has been sent."""
    opened = request.scope.get("db_session")
    if opened is not None:
        yield opened
        return
    db: Database = request.app.state.db
    async with db.session(write=request.method in WRITE_METHODS) as session:
        yield session


def provide_settings(request: Request) -> Settings:
    return request.app.state.settings


def provide_i18n(request: Request) -> I18n:
    settings: Settings = request.app.state.settings
    return I18n(choose_locale(request.cookies.get(LOCALE_COOKIE), request.query_params.get("lang"), settings.locale))


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/schema", "/healthz", "/readyz", "/webhooks/")) and "text/html" in request.headers.get("accept", "")


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """The one JSON shape of every error the service answers."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if detail is not None:
        body["error"]["detail"] = detail
    return body


def _render_error(
    request: Request, status: int, code: str, message: str, detail: Any = None, headers: dict | None = None
) -> Response:
    if _wants_html(request):
        page = render(request, provide_i18n(request), "error.html", status=status, message=message, detail=detail)
        page.status_code = status
        if headers:
            page.headers.update(headers)
        return page
    return Response(error_body(code, message, detail), status_code=status, media_type=MediaType.JSON, headers=headers)


def handle_domain_error(request: Request, exc: FacilityShareError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    if isinstance(exc, Unauthorized) and _wants_html(request):
        return _to_login(request)
    message = exc.message
    if exc.msgid is not None and _wants_html(request):
        message = error_text(provide_i18n(request), exc)  # the page speaks the reader's language; the API English
    return _render_error(request, exc.status_code, exc.code, message, exc.detail, headers=headers)


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?{urlencode({'next': target})}", status_code=303)


def handle_http_error(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, ValidationException):
        return _render_error(request, 400, "invalid_input", "request parameters are invalid", exc.extra)
    if isinstance(exc, NotFoundException):
        return _render_error(request, 404, "not_found", exc.detail or "not found")
    if isinstance(exc, NotAuthorizedException) and _wants_html(request):
        return _to_login(request)
    code = {401: "unauthorized", 403: "forbidden", 405: "method_not_allowed", 429: "too_many_requests"}.get(exc.status_code, "http_error")
    return _render_error(request, exc.status_code, code, exc.detail, headers=exc.headers)


def handle_database_down(request: Request, exc: Exception) -> Response:
    observability.note_database_unavailable(exc)
    return _render_error(request, 503, "database_unavailable", "the database is unavailable; try again shortly",
                         headers={"Retry-After": str(observability.DATABASE_RETRY_AFTER)})


def handle_unexpected(request: Request, exc: Exception) -> Response:
    # A connect or statement timeout inside the driver, or a raw driver error, reaches here
    # rather than the SQLAlchemy handler: still an outage, not a bug.
    if observability.is_database_unavailable(exc):
        return handle_database_down(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _render_error(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "an unexpected error occurred; it has been logged")


def handle_sqlalchemy_error(request: Request, exc: sa_exc.SQLAlchemyError) -> Response:
    if observability.is_database_unavailable(exc):
        return handle_database_down(request, exc)
    return handle_unexpected(request, exc)


@get("/healthz", tags=["health"], summary="Liveness: the process answers", responses=error_responses(), opt={"access": "public"})
async def healthz(state: State) -> Response:
    # Liveness must not depend on the database: an outage would otherwise restart every web
    # process at once instead of letting them answer 503 and recover (readiness says that).
    db: Database = state.db
    return Response({"status": "ok", "dialect": db.dialect, "version": facility_share.__version__})


@get("/readyz", tags=["health"], summary="Readiness: database reachable and migrations at head",
     responses=error_responses(), opt={"access": "public"})
async def readyz(state: State) -> Response:
    from facility_share.db.migrate import current_revision, head_revision

    db: Database = state.db
    try:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
        revision = await current_revision(db.engine)
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        return Response(
            {"status": "unavailable", "database": "unreachable", "error": exc.__class__.__name__, "version": facility_share.__version__},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    head = head_revision()
    if revision != head:
        return Response(
            {"status": "unavailable", "database": "ok", "migrations": {"current": revision, "head": head},
             "hint": "run `facility-share db upgrade`", "version": facility_share.__version__},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return Response({"status": "ok", "database": "ok", "migrations": {"current": revision, "head": head},
                     "dialect": db.dialect, "version": facility_share.__version__})


async def sweep_forever(db: Database, interval: int, settings: Settings | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the background jobs inside the web process (SQLite mode, which has no separate
    worker): the same job queue and handlers as `facility-share worker` — request expiry,
    no-shows, reminders, e-mail notifications — with the sweeps every ``interval`` seconds.
    Safe in several processes: jobs are claimed once and each sweep is scheduled once per tick.
    (The advance-payment sweep runs beside it, in its own task.) Setting ``stop`` ends it after
    the jobs in hand."""
    from facility_share.jobs.runner import Worker, load_handlers, periodic_jobs

    settings = settings or load_settings()
    every = max(1, interval)
    # The first round after one interval, as the sweeps always did: a process that lives only
    # briefly (a test, a one-off) never starts background work.
    stop = stop or asyncio.Event()
    await _wait_or_stop(stop, interval)
    if stop.is_set():
        return
    load_handlers()
    periodic = [p for p in periodic_jobs(settings, every) if p.kind != "payments.advances"]
    worker = Worker(db, settings, every_seconds=every, periodic=periodic, poll_seconds=min(1.0, every))
    try:
        await worker.run(stop)
    finally:
        await worker.close()


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


SWEEP_STOP_SECONDS = 10.0


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> Litestar:
    """Build the ASGI application. ``database`` lets tests share one engine."""
    settings = settings or load_settings()
    db = database or observability.bounded_waits(
        Database(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow),
        connect_timeout=settings.db_connect_timeout, command_timeout=settings.db_command_timeout)

    sweeper: list[asyncio.Task] = []
    stop_sweeping = asyncio.Event()

    async def start_sweeper(app: Litestar) -> None:
        if settings.sweep_interval > 0:
            sweeper.append(asyncio.create_task(sweep_forever(db, settings.sweep_interval, settings, stop_sweeping)))
            sweeper.append(asyncio.create_task(payments_sweep_forever(db, settings, settings.sweep_interval, stop_sweeping)))

    async def dispose_database(app: Litestar) -> None:
        # Ask the sweeps to stop after the job in hand; cancel only what is still busy after
        # SWEEP_STOP_SECONDS. A cancel mid-statement can leave a connection in its transaction.
        stop_sweeping.set()
        if sweeper:
            _done, busy = await asyncio.wait(sweeper, timeout=SWEEP_STOP_SECONDS)
            for task in busy:
                task.cancel()
            await asyncio.gather(*sweeper, return_exceptions=True)
        if database is None:
            await db.dispose()

    template_config = TemplateConfig(directory=TEMPLATE_DIRS, engine=JinjaTemplateEngine)

    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            observability.metrics_route(),
            CatalogApi,
            CatalogPages,
            AvailabilityApi,
            BookingApi,
            MeApi,
            AdminApi,
            QualificationApi,
            UsageApi,
            AgentKeyApi,
            AgentApi,
            FeedApi,
            FinanceReportApi,
            SettlementApi,
            StripeWebhooks,
            *PAGE_CONTROLLERS,
            set_language,
            create_static_files_router(
                path="/static", directories=[STATIC_DIR], include_in_schema=False, opt={"access": "public"}
            ),
            create_static_files_router(
                path="/static/swagger-ui",
                directories=[swagger_ui_bundle.swagger_ui_path],
                include_in_schema=False,
                name="swagger-static",
                opt={"access": "public"},
            ),
        ],
        middleware=[AuthenticationMiddleware()],
        guards=[access_guard],
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name="fs_csrf",
            cookie_secure=settings.secure_cookies,
            cookie_httponly=True,
            # The API authenticates state changes by bearer token only (see accounts.auth),
            # which a cross-site form cannot send.
            exclude=["/api/", "/webhooks/"],
        ),
        dependencies={
            "db_session": Provide(provide_db_session),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "i18n": Provide(provide_i18n, sync_to_thread=False),
        },
        exception_handlers={
            FacilityShareError: handle_domain_error,
            HTTPException: handle_http_error,
            sa_exc.SQLAlchemyError: handle_sqlalchemy_error,
            ConnectionError: handle_database_down,
            Exception: handle_unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="facility-share API",
            version=facility_share.__version__,
            description="Open catalogue of the district's shared large instruments and pilot workshops.",
            path="/schema",
            render_plugins=[
                SwaggerRenderPlugin(
                    path="/docs",
                    js_url="/static/swagger-ui/swagger-ui-bundle.js",
                    css_url="/static/swagger-ui/swagger-ui.css",
                    standalone_preset_js_url="/static/swagger-ui/swagger-ui-standalone-preset.js",
                    favicon="<link rel='icon' type='image/png' href='/static/swagger-ui/favicon-32x32.png'>",
                )
            ],
        ),
        template_config=template_config,
        state=State({"db": db, "settings": settings}),
        on_startup=[start_sweeper],
        on_shutdown=[dispose_database],
        debug=settings.debug,
        # Logging is configured once per process by `facility-share serve` (observability.logging_config);
        # Litestar's default would replace the root handler (and the JSON format) on every app.
        logging_config=None,
    )
    # Request ids, request metrics and access lines around the whole app (404s and errors included).
    return observability.instrument(app, settings)
