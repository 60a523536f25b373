"""The one error hierarchy. Web and CLI layers map these to status codes and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class FacilityShareError(Exception):
    """Base of every error the service raises on purpose."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


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
