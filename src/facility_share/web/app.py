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
from facility_share.usage.api import AgentApi, AgentKeyApi, UsageApi
from facility_share.errors import FacilityShareError, TooManyRequests, Unauthorized
from facility_share.web.pages_registry import PAGE_CONTROLLERS
from facility_share.settings import Settings, load_settings
from facility_share.web.i18n import LOCALE_COOKIE, I18n, choose_locale
from facility_share.web.pages import set_language
from facility_share.web.openapi import error_responses
from facility_share.web.render import render

log = logging.getLogger("facility_share")
PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATE_DIRS = [PACKAGE_DIR / context / "templates" for context in ("web", "catalog", "accounts", "bookings", "usage", "feeds", "closures")]
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
    return not request.url.path.startswith(("/api/", "/schema", "/healthz", "/webhooks/")) and "text/html" in request.headers.get("accept", "")


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
    return _render_error(request, exc.status_code, exc.code, exc.message, exc.detail, headers=headers)


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
    log.warning("database unavailable: %s", exc.__class__.__name__)
    return _render_error(request, 503, "database_unavailable", "the database is unavailable; try again shortly", headers={"Retry-After": "5"})


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _render_error(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "an unexpected error occurred; it has been logged")


def _is_disconnect(exc: Exception) -> bool:
    return isinstance(exc, sa_exc.DBAPIError) and (exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError))


def handle_sqlalchemy_error(request: Request, exc: sa_exc.SQLAlchemyError) -> Response:
    if _is_disconnect(exc) or isinstance(exc, sa_exc.TimeoutError):
        return handle_database_down(request, exc)
    return handle_unexpected(request, exc)


@get("/healthz", tags=["health"], summary="Liveness and database reachability", responses=error_responses(), opt={"access": "public"})
async def healthz(state: State) -> Response:
    db: Database = state.db
    try:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        return Response(
            {"status": "degraded", "database": "unreachable", "error": exc.__class__.__name__, "version": facility_share.__version__},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return Response({"status": "ok", "database": "ok", "dialect": db.dialect, "version": facility_share.__version__})


async def sweep_forever(db: Database, interval: int) -> None:
    """Expire overdue requests and mark no-shows periodically (SQLite mode). Safe in several
    processes: each booking is switched by one UPDATE whose WHERE clause only one can match."""
    from facility_share.bookings.services import expire_overdue
    from facility_share.db.models import utcnow
    from facility_share.usage.services import sweep_no_shows

    while True:
        await asyncio.sleep(interval)
        try:
            async with db.session(write=True) as session:
                expired = await expire_overdue(session, utcnow())
                no_shows = await sweep_no_shows(session, utcnow())
                await session.commit()
            if expired or no_shows:
                log.info("expired %d request(s); %d no-show(s)", len(expired), len(no_shows))
        except Exception:  # keep sweeping; the next round retries
            log.exception("expiry sweep failed")


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> Litestar:
    """Build the ASGI application. ``database`` lets tests share one engine."""
    settings = settings or load_settings()
    db = database or Database(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)

    sweeper: list[asyncio.Task] = []

    async def start_sweeper(app: Litestar) -> None:
        if settings.sweep_interval > 0:
            sweeper.append(asyncio.create_task(sweep_forever(db, settings.sweep_interval)))

    async def dispose_database(app: Litestar) -> None:
        for task in sweeper:
            task.cancel()
        if database is None:
            await db.dispose()

    template_config = TemplateConfig(directory=TEMPLATE_DIRS, engine=JinjaTemplateEngine)

    return Litestar(
        route_handlers=[
            healthz,
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
    )
