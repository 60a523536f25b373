"""Rendering pages: every template gets the request's language helpers and the page's URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request
from litestar.response import Template

from facility_share.web.i18n import I18n


def url_with(request: Request, **changes: Any) -> str:
    """The current URL with some query parameters replaced (``None`` removes one)."""
    params = {k: v for k, v in request.query_params.items() if k != "lang"}
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    return request.url.path + (f"?{query}" if query else "")


def render(request: Request, i18n: I18n, template: str, **context: Any) -> Template:
    return Template(
        template_name=template,
        context={
            "i18n": i18n,
            "_": i18n.gettext,
            "gettext": i18n.gettext,
            "ngettext": i18n.ngettext,
            "path": request.url.path,
            "full_path": url_with(request),
            "url_with": lambda **changes: url_with(request, **changes),
            # The signed-in Principal, or None (set by accounts.auth.AuthenticationMiddleware).
            "user": request.scope.get("user"),
            **context,
        },
    )
