"""The documented shape of error responses, shared by every API handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.datastructures import ResponseSpec


@dataclass
class ErrorDetail:
    code: str
    message: str
    detail: Any | None = None


@dataclass
class ErrorBody:
    """Every error: ``{"error": {"code", "message", "detail"?}}``."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Invalid input; the message says which parameter and how to fix it",
    401: "Not signed in",
    403: "Not allowed for this account",
    404: "No such record",
    409: "Conflicts with the current state",
    503: "The database is unavailable; retry after the Retry-After header",
}


def error_responses(*status_codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for these error status codes, plus 503 which any handler may answer."""
    codes = sorted({*status_codes, 503})
    return {
        code: ResponseSpec(data_container=ErrorBody, description=_DESCRIPTIONS[code], generate_examples=False)
        for code in codes
    }
