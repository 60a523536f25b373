"""The one error hierarchy. Web and CLI layers map these to status codes and exit codes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self


def N_(message: str) -> str:
    """Marks an English message id for the catalogues (babel extracts ``N_``); it is
    translated where it is shown."""
    return message


@dataclass(frozen=True, slots=True)
class Term:
    """A parameter of a message that is itself shown in the reader's words: a code of a
    vocabulary (``kind``: a booking or charge status) or an amount in fen. In the plain English
    message it reads as the code, or as ``<n> fen``."""

    kind: str
    value: Any

    def __str__(self) -> str:
        return f"{self.value} fen" if self.kind == "fen" else str(self.value)


def booking_status(status: str) -> Term:
    return Term("booking_status", status)


def charge_status(status: str) -> Term:
    return Term("charge_status", status)


def fen(amount: int) -> Term:
    return Term("fen", amount)


class FacilityShareError(Exception):
    """Base of every error the service raises on purpose.

    ``message`` is the plain English text (the JSON API, the CLI, logs). An error made with
    ``translatable`` also keeps its message id, parameters and the field it is about, so a page
    translates the message once from the catalogue instead of recognising its English; its
    ``message`` is ``"<field>: " + msgid % params``.
    """

    status_code = 400
    code = "bad_request"
    msgid: str | None = None
    params: Mapping[str, Any] = {}
    field: str = ""

    def __init__(self, message: str, *, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    @classmethod
    def translatable(cls, msgid: str, /, *, field: str = "", detail: object | None = None, **params: Any) -> Self:
        """The error whose message is ``msgid`` (English, ``%(name)s`` placeholders, marked
        with ``N_``) with ``params``; ``field`` names the input it is about, if any. A parameter
        the reader should see in their own words is a ``Term`` (``booking_status``, ``fen``…)."""
        text = msgid % params if params else msgid
        error = cls(f"{field}: {text}" if field else text, detail=detail)
        error.msgid, error.params, error.field = msgid, dict(params), field
        return error


class SettingsError(FacilityShareError):
    """A setting from the environment is missing or malformed."""

    code = "bad_setting"

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class NotFound(FacilityShareError):
    status_code = 404
    code = "not_found"


class Conflict(FacilityShareError):
    status_code = 409
    code = "conflict"


class Forbidden(FacilityShareError):
    status_code = 403
    code = "forbidden"


class Unauthorized(FacilityShareError):
    status_code = 401
    code = "unauthorized"


class TooManyRequests(FacilityShareError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidInput(FacilityShareError):
    """A request or argument is malformed; the message says what and how to fix it."""

    status_code = 400
    code = "invalid_input"


class ServiceUnavailable(FacilityShareError):
    status_code = 503
    code = "unavailable"


@dataclass(frozen=True, slots=True)
class Problem:
    """One defect in a catalogue file: where it is and what is expected instead."""

    file: str
    record: str
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.record:
            where += f" › {self.record}"
        if self.field:
            where += f" › {self.field}"
        return f"{where}: {self.message}"


class CatalogInvalid(FacilityShareError):
    """The catalogue has defects; nothing was imported."""

    status_code = 422
    code = "catalog_invalid"

    def __init__(self, problems: list[Problem]) -> None:
        count = len(problems)
        super().__init__(
            f"catalogue has {count} problem{'s' if count != 1 else ''}; nothing was imported",
            detail=[str(p) for p in problems],
        )
        self.problems = problems
