"""Who is calling, decided once per request, and the one guard that checks every route.

Browsers sign in with a session cookie (a random token whose hash is in ``web_sessions``);
programs send ``Authorization: Bearer <personal API token>``. State-changing API calls
(POST/PUT/PATCH/DELETE under /api/) accept only bearer tokens: the API is exempt from the
CSRF check that protects the cookie-authenticated forms, so it must not honour cookies there.

Every route declares who may call it in ``opt["access"]``; a route without it is refused.
That makes "forgot to protect a route" impossible, and the authorisation matrix test reads
the declarations.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.enums import ScopeType

from facility_share.accounts import services
from facility_share.accounts.principal import Principal

SESSION_COOKIE = "fs_session"
# "staff" is anyone who works the platform: unit managers (their units) and finance (all).
ACCESS_LEVELS = ("public", "authenticated", "enterprise", "manager", "finance", "staff", "admin", "agent")
# Instrument agents authenticate with per-resource keys (``fsa_…``), never as users.
AGENT_KEY_PREFIX = "fsa_"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    for header, value in scope.get("headers", []):
        if header == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, content = part.strip().partition("=")
                if key == name and content:
                    return content
    return None


class AuthenticationMiddleware(ASGIMiddleware):
    """Opens the request's database session, resolves the caller in it, and hands the same
    session to the handler (``web.app.provide_db_session``): one connection and one
    transaction per request, not one for authentication and another for the work."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = None
        scope["auth"] = None
        scope["agent"] = None
        path: str = scope.get("path", "")
        # /metrics needs no caller (it checks its own token) and must answer during an outage.
        if path.startswith(("/static/", "/healthz", "/metrics")):
            await next_app(scope, receive, send)
            return
        db = scope["app"].state.db
        write = scope.get("method", "GET") in WRITE_METHODS
        async with db.session(write=write) as session:
            scope["db_session"] = session
            principal = await self._resolve(scope, path, session, write)
            scope["user"] = principal
            scope["auth"] = principal.via if principal else None
            await next_app(scope, receive, send)

    async def _resolve(self, scope: Scope, path: str, session, write: bool) -> Principal | None:  # type: ignore[no-untyped-def]
        token = _bearer(scope)
        if token and token.startswith(AGENT_KEY_PREFIX):
            from facility_share.usage.services import agent_for_key

            scope["agent"] = await agent_for_key(session, token)
            return None
        if token:
            principal, due = await services.principal_for_token(session, token)
            if principal is not None and due:
                await self._touch(scope, session, write, services.touch_api_token, token)
            return principal
        if path.startswith("/api/") and scope.get("method", "GET") not in SAFE_METHODS:
            return None
        cookie = _cookie(scope, SESSION_COOKIE)
        if not cookie:
            return None
        principal, due = await services.principal_for_session(session, cookie)
        if principal is not None and due:
            await self._touch(scope, session, write, services.touch_session, cookie)
        return principal

    @staticmethod
    async def _touch(scope: Scope, session, write: bool, action, token: str) -> None:  # type: ignore[no-untyped-def]
        """Record last use at most every few minutes. A write request does it in its own
        transaction (committed with the handler's work); a read request opens a short write
        transaction, since its own session never commits."""
        if write:
            await action(session, token)
            return
        async with scope["app"].state.db.session(write=True) as writer:
            await action(writer, token)
            await writer.commit()


def allowed(principal: Principal | None, level: str) -> bool:
    if level == "public":
        return True
    if principal is None or level == "agent":
        return False
    if principal.is_admin or level == "authenticated":
        return True
    return {
        "enterprise": principal.is_enterprise_member,
        "manager": principal.is_manager,
        "finance": principal.is_finance,
        "staff": principal.is_manager or principal.is_finance,
        "admin": principal.is_admin,
    }[level]


async def access_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """The app-wide guard: the route's declared access level against the caller.

    A coroutine on purpose: Litestar runs a plain-function guard in its thread pool, a hop
    (and GIL hand-over) on every request for what is a few dictionary look-ups."""
    level = handler.opt.get("access")
    if level is None:
        if connection.scope.get("path", "").startswith("/schema"):
            return  # the OpenAPI document and its viewer are public
        raise PermissionDeniedException("this route declares no access level")
    if level == "agent":
        if connection.scope.get("agent") is None:
            raise NotAuthorizedException("send a valid instrument agent key: Authorization: Bearer fsa_…")
        return
    principal: Principal | None = connection.scope.get("user")
    if allowed(principal, level):
        return
    if principal is None:
        raise NotAuthorizedException("sign in first")
    raise PermissionDeniedException(f"this needs the {level} role")
