"""Site-wide pages that belong to no domain: the language switch."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.datastructures import Cookie
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect

from facility_share.errors import InvalidInput
from facility_share.settings import SUPPORTED_LOCALES
from facility_share.web.i18n import LOCALE_COOKIE

ONE_YEAR = 365 * 24 * 60 * 60
MAX_NEXT = 2000


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/``.

    Only a path that starts with exactly one slash is kept: ``//host`` and ``/\\host`` are
    read by browsers as another site, and anything with a scheme or control characters is
    refused outright.
    """
    if not target or len(target) > MAX_NEXT or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return "/"
    return target


@get("/lang/{locale:str}", name="set-language", include_in_schema=False, cache=False, opt={"access": "public"})
async def set_language(
    locale: FromPath[str],
    next_path: Annotated[str | None, QueryParameter(name="next")] = None,
) -> Redirect:
    """Remember the chosen language in a cookie for a year and go back to the page."""
    if locale not in SUPPORTED_LOCALES:
        raise InvalidInput(f"unsupported language {locale!r}; choose one of {', '.join(SUPPORTED_LOCALES)}")
    return Redirect(
        path=safe_next(next_path),
        status_code=303,
        cookies=[
            Cookie(
                key=LOCALE_COOKIE,
                value=locale,
                max_age=ONE_YEAR,
                path="/",
                samesite="lax",
                httponly=True,
            )
        ],
    )
