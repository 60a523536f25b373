"""The usage report API for finance: ``GET /api/v1/finance/reports`` as JSON, CSV or XLSX."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIFormat, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import QueryParameter

from facility_share.finance import exports, reports
from facility_share.web.deps import DbSession, Lang
from facility_share.web.openapi import error_responses

PERIOD_HELP = (
    "A year (2026), a quarter (2026-Q3), a month (2026-07), a day (2026-07-15) or a range of days "
    "(2026-07-01..2026-09-30, both included); local dates in Asia/Shanghai."
)


@dataclass
class ReportOperation(Operation):
    """Documents the one 200 answer in each of its three formats."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.description = "The report: JSON (every view, or the one asked for), CSV (one view) or XLSX (a summary and a sheet per view)"
            ok.content = {
                "application/json": OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT)),  # type: ignore[arg-type]
                "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),  # type: ignore[arg-type]
                exports.MEDIA_TYPES["xlsx"]: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)),  # type: ignore[arg-type]
            }


class FinanceReportApi(Controller):
    path = "/api/v1/finance"
    tags = ["finance"]
    opt = {"access": "finance"}

    @get(
        "/reports",
        summary="Usage report of a period per unit, resource, enterprise or month",
        description=(
            "Effective, external, related and internal hours, sharing rate, utilisation against rated hours, "
            "enterprises served, income (fen in JSON, yuan in CSV and XLSX), no-shows, ratings, and the subsidies "
            "(per enterprise) and awards (per unit) granted by approved settlements whose period overlaps. "
            "CSV is UTF-8 with a byte-order mark; headers are Chinese unless lang=en. The same data always "
            "gives the same bytes."
        ),
        responses=error_responses(400, 401, 403),
        operation_class=ReportOperation,
        cache=False,
    )
    async def report(
        self,
        db_session: DbSession,
        i18n: Lang,
        period: Annotated[str | None, QueryParameter(description=PERIOD_HELP, max_length=60)] = None,
        # Plain strings with the choices documented, so a wrong value gets this module's message
        # (naming the parameter as the caller wrote it), not a generic validation error.
        view: Annotated[str | None, QueryParameter(description="One view (CSV needs one and takes unit by default)",
                                                   max_length=20, schema_extra={"enum": list(reports.VIEWS)})] = None,
        fmt: Annotated[str, QueryParameter(name="format", description="File format", max_length=10,
                                           schema_extra={"enum": list(exports.FORMATS)})] = "json",
        lang: Annotated[str | None, QueryParameter(description="Language of headers and names (default: the page language, Chinese)",
                                                   max_length=10, schema_extra={"enum": list(exports.LANGUAGES)})] = None,
    ) -> Response[bytes]:
        fmt = exports.check_format(fmt)
        view = reports.check_view(view)
        language = exports.check_language(lang) if lang else i18n.locale
        report = await reports.build_report(db_session, reports.parse_report_period(period))
        content, media_type, name = exports.export(report, fmt, view=view, lang=language)
        disposition = "inline" if fmt == "json" else "attachment"
        headers: dict[str, Any] = {"Content-Disposition": f'{disposition}; filename="{name}"'}
        # Litestar adds the charset to text types itself.
        return Response(content, media_type=media_type.split(";")[0], headers=headers)
