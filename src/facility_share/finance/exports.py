"""Usage reports as files: CSV (one view), XLSX (a summary sheet and one sheet per view) and JSON.

Every writer is a pure function of the report and the language, so the same data gives the same
bytes: nothing reads the clock. The XLSX's document times and its zip entries carry the report's
``data_as_of`` stamp instead of the moment of writing (openpyxl would otherwise write both).

Headers are Chinese by default and English on request, taken from the same gettext catalogue as
the pages. Money is integer fen in the report: JSON keeps fen; CSV writes yuan with two decimals;
XLSX stores the exact yuan amount with a money format. Hours come from exact minutes; rates and
averages stay exact until written (rounded half-up in CSV, full precision under a percentage
format in XLSX).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.writer.excel import ExcelWriter

from facility_share.errors import InvalidInput
from facility_share.finance.reports import VIEW_TITLES, VIEWS, Column, Measures, Row, UsageReport, check_view, last_day
from facility_share.usage.figures import DISTRICT_ZONE
from facility_share.web.i18n import I18n

FORMATS = ("json", "csv", "xlsx")
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
LANGUAGES = ("zh_CN", "en")
BOM = "\ufeff"
CLASS_LABELS = {
    "eaglet": "Eaglet",
    "gazelle": "Gazelle",
    "leader_candidate": "Leader candidate",
    "leader": "Leader",
    "tech_sme": "Tech SME",
}
NUMBER_FORMATS = {
    "count": "#,##0",
    "hours": "#,##0.00",
    "rated_hours": "#,##0.00",
    "rate": "0.00%",
    "rating": "0.00",
    "money": "#,##0.00",
}
_NAME_KEYS = {"unit_name", "resource_name", "enterprise_name"}


def N_(message: str) -> str:
    return message


SUMMARY_LABELS = (
    N_("Summary"), N_("Usage report"), N_("Period"), N_("First day"), N_("Last day"), N_("Number of days"), N_("Time zone"),
    N_("Data as of"), N_("Settlements counted"), N_("Subsidy granted"), N_("Award granted"),
)


def check_format(fmt: str | None, *, default: str = "json") -> str:
    """A file format name.

    Raises:
        InvalidInput: anything but json, csv or xlsx.
    """
    if fmt is None or fmt == "":
        return default
    if fmt not in FORMATS:
        raise InvalidInput(f"format: expected json, csv or xlsx, got {fmt[:20]!r}", detail={"field": "format", "reason": "format"})
    return fmt


def check_language(lang: str | None) -> str:
    """``zh_CN`` (the default) or ``en``.

    Raises:
        InvalidInput: any other language.
    """
    if not lang:
        return "zh_CN"
    if lang not in LANGUAGES:
        raise InvalidInput(f"lang: expected zh_CN or en, got {lang[:20]!r}", detail={"field": "lang", "reason": "lang"})
    return lang


# --- exact numbers as text --------------------------------------------------------------------------


def decimal_half_up(value: Fraction | int, places: int) -> Decimal:
    """An exact non-negative fraction rounded half-up to ``places`` decimals."""
    scaled = Fraction(value) * 10**places
    rounded = (scaled.numerator * 2 + scaled.denominator) // (scaled.denominator * 2)
    return Decimal(rounded).scaleb(-places)


def yuan_text(fen: int) -> str:
    """1234 fen → ``12.34`` (exact; no currency sign, for files)."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def hours_text(minutes: int) -> str:
    return f"{decimal_half_up(Fraction(minutes, 60), 2):.2f}"


def _exact(row: Row, column: Column) -> Any:
    value = row.value(column)
    if column.kind == "hours":
        return Fraction(value, 60)
    return value


# --- language-dependent cells ----------------------------------------------------------------------


def _text(row: Row, column: Column, i18n: I18n) -> str:
    value = row.value(column)
    if column.key in _NAME_KEYS and not i18n.is_zh:
        return row.labels.get(f"{column.key}_en") or value or ""
    if column.kind == "bool":
        return i18n.gettext("Yes") if value else i18n.gettext("No")
    if column.kind == "class":
        return class_label(value, i18n)
    return "" if value is None else str(value)


def class_label(code: str, i18n: I18n) -> str:
    """An enterprise class in the reader's language (empty for none)."""
    return i18n.gettext(CLASS_LABELS[code]) if code in CLASS_LABELS else code


def header(column: Column, i18n: I18n) -> str:
    return i18n.gettext(column.label)


def view_title(view: str, i18n: I18n) -> str:
    return i18n.gettext(VIEW_TITLES[view])


def filename(report: UsageReport, fmt: str, view: str | None = None) -> str:
    """``usage-report-2026-Q3-unit.csv``, ``usage-report-2026-Q3.xlsx``."""
    label = report.period.label.replace("..", "_")
    return f"usage-report-{label}{'-' + view if view else ''}.{fmt}"


# --- CSV -------------------------------------------------------------------------------------------


def csv_cell(row: Row, column: Column, i18n: I18n) -> str:
    """One cell as CSV text: hours and ratings with two decimals, rates with four, yuan with two."""
    value = row.value(column)
    if column.kind == "hours":
        return hours_text(value)
    if column.kind == "money":
        return yuan_text(value)
    if column.kind in ("rate", "rating", "rated_hours"):
        return "" if value is None else f"{decimal_half_up(value, 4 if column.kind == 'rate' else 2)}"
    if column.kind == "count":
        return str(value)
    return _text(row, column, i18n)


def to_csv(report: UsageReport, view: str, *, lang: str = "zh_CN") -> bytes:
    """One view as CSV: UTF-8 with a byte-order mark (so Excel reads the Chinese), CRLF lines."""
    i18n = I18n(check_language(lang))
    chosen = report.view(check_view(view) or "unit")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([header(c, i18n) for c in chosen.columns])
    for row in chosen.rows:
        writer.writerow([csv_cell(row, c, i18n) for c in chosen.columns])
    return (BOM + buffer.getvalue()).encode("utf-8")


# --- JSON ------------------------------------------------------------------------------------------


def _number(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def json_row(row: Row, columns: tuple[Column, ...]) -> dict[str, Any]:
    """A row for JSON: exact minutes and fen beside hours and rates as numbers."""
    out: dict[str, Any] = {}
    for column in columns:
        value = row.value(column)
        if column.kind == "hours":
            out[column.key.replace("_hours", "_minutes")] = value
            out[column.key] = float(Fraction(value, 60))
        elif column.kind == "money":
            out[f"{column.key}_fen"] = value
        elif column.kind in ("rate", "rating", "rated_hours"):
            out[column.key] = _number(value)
        else:
            out[column.key] = value
        if column.key in _NAME_KEYS:
            out[f"{column.key}_en"] = row.labels.get(f"{column.key}_en", "")
    return out


def measures_json(m: Measures) -> dict[str, Any]:
    return {
        "sessions": m.sessions,
        "effective_minutes": m.effective_minutes,
        "external_minutes": m.external_minutes,
        "related_minutes": m.related_minutes,
        "internal_minutes": m.internal_minutes,
        "effective_hours": float(Fraction(m.effective_minutes, 60)),
        "external_hours": float(Fraction(m.external_minutes, 60)),
        "related_hours": float(Fraction(m.related_minutes, 60)),
        "internal_hours": float(Fraction(m.internal_minutes, 60)),
        "sharing_rate": _number(m.sharing_rate),
        "rated_hours": float(m.rated_hours),
        "utilisation": _number(m.utilisation),
        "enterprises_served": m.enterprises_served,
        "external_enterprises": m.external_enterprises,
        "income_fen": m.income_fen,
        "paid_income_fen": m.paid_income_fen,
        "external_income_fen": m.external_income_fen,
        "no_shows": m.no_shows,
        "ratings": m.ratings,
        "average_rating": _number(m.average_rating),
    }


def report_json(report: UsageReport, *, view: str | None = None, lang: str = "zh_CN") -> dict[str, Any]:
    """The report as plain data (every view, or one); labels in ``lang``, values language-free."""
    i18n = I18n(check_language(lang))
    names = [check_view(view)] if view else list(VIEWS)
    period = report.period
    return {
        "report": "usage",
        "period": {
            "label": period.label, "kind": period.kind, "first_day": period.start.isoformat(),
            "last_day": last_day(period).isoformat(), "days": period.days, "timezone": "Asia/Shanghai",
        },
        "data_as_of": report.data_as_of.isoformat(),
        "currency": "CNY",
        "totals": {**measures_json(report.totals), "subsidy_granted_fen": report.subsidy_total_fen,
                   "award_granted_fen": report.award_total_fen},
        "settlements": [
            {"id": s.id, "label": s.label, "first_day": s.first_day.isoformat(), "last_day": s.last_day.isoformat(),
             "approved_at": s.approved_at.isoformat() if s.approved_at else None, "subsidy_fen": s.subsidy_fen,
             "award_fen": s.award_fen}
            for s in report.settlements
        ],
        "granted_by_category": [
            {"kind": c.kind, "category": c.category, "name_zh": c.name_zh, "name_en": c.name_en, "lines": c.lines,
             "amount_fen": c.amount_fen}
            for c in report.categories
        ],
        "views": {
            name: {
                "title": view_title(name, i18n),  # type: ignore[arg-type]
                "columns": [{"key": c.key, "label": header(c, i18n), "kind": c.kind} for c in report.views[name].columns],  # type: ignore[index]
                "rows": [json_row(row, report.views[name].columns) for row in report.views[name].rows],  # type: ignore[index]
            }
            for name in names
        },
    }


def to_json(report: UsageReport, *, view: str | None = None, lang: str = "zh_CN") -> bytes:
    """The report as UTF-8 JSON (Chinese kept readable, keys in a fixed order)."""
    return (json.dumps(report_json(report, view=view, lang=lang), ensure_ascii=False, indent=1) + "\n").encode("utf-8")


# --- XLSX ------------------------------------------------------------------------------------------

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="E8EEF4")


def _width(text: str) -> int:
    # CJK characters take about two columns of a Latin font.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def xlsx_value(row: Row, column: Column, i18n: I18n) -> Any:
    """A cell's value: numbers stay numbers (yuan as an exact Decimal), text in the language."""
    value = row.value(column)
    if column.kind == "hours":
        return float(Fraction(value, 60))
    if column.kind == "money":
        return Decimal(value).scaleb(-2)
    if column.kind in ("rate", "rating", "rated_hours"):
        return None if value is None else float(value)
    if column.kind == "count":
        return value
    return _text(row, column, i18n)


def _sheet_title(text: str) -> str:
    for bad in "[]:*?/\\":
        text = text.replace(bad, " ")
    return text[:31]


def _fit_columns(sheet: Any, widths: list[int]) -> None:
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = min(max(width + 2, 8), 60)


def _local(stamp: datetime) -> str:
    return stamp.astimezone(DISTRICT_ZONE).strftime("%Y-%m-%d %H:%M:%S")


def _cell(sheet: Any, value: Any, *, number_format: str | None = None, font: Font | None = None, fill: PatternFill | None = None) -> Any:
    cell = WriteOnlyCell(sheet, value=value)
    if number_format:
        cell.number_format = number_format
    if font is not None:
        cell.font = font
    if fill is not None:
        cell.fill = fill
    return cell


def _summary_sheet(workbook: Workbook, report: UsageReport, i18n: I18n) -> None:
    _ = i18n.gettext
    sheet = workbook.create_sheet(_sheet_title(_("Summary")))
    for column, width in zip("ABCD", (24, 26, 16, 16), strict=True):
        sheet.column_dimensions[column].width = width
    period = report.period
    t = report.totals
    title = Font(bold=True, size=13)
    sheet.append([_cell(sheet, _("Usage report"), font=title), _cell(sheet, period.label, font=title)])
    rows: list[tuple[str, Any, str | None]] = [
        (_("First day"), period.start.isoformat(), None),
        (_("Last day"), last_day(period).isoformat(), None),
        (_("Number of days"), period.days, NUMBER_FORMATS["count"]),
        (_("Time zone"), "Asia/Shanghai", None),
        (_("Data as of"), _local(report.data_as_of), None),
        (_("Sessions"), t.sessions, NUMBER_FORMATS["count"]),
        (_("Effective hours"), float(Fraction(t.effective_minutes, 60)), NUMBER_FORMATS["hours"]),
        (_("External hours"), float(Fraction(t.external_minutes, 60)), NUMBER_FORMATS["hours"]),
        (_("Related hours"), float(Fraction(t.related_minutes, 60)), NUMBER_FORMATS["hours"]),
        (_("Internal hours"), float(Fraction(t.internal_minutes, 60)), NUMBER_FORMATS["hours"]),
        (_("Sharing rate"), _number(t.sharing_rate), NUMBER_FORMATS["rate"]),
        (_("Utilisation"), _number(t.utilisation), NUMBER_FORMATS["rate"]),
        (_("Enterprises served"), t.enterprises_served, NUMBER_FORMATS["count"]),
        (_("Income"), Decimal(t.income_fen).scaleb(-2), NUMBER_FORMATS["money"]),
        (_("Paid income"), Decimal(t.paid_income_fen).scaleb(-2), NUMBER_FORMATS["money"]),
        (_("No-shows"), t.no_shows, NUMBER_FORMATS["count"]),
        (_("Subsidy granted"), Decimal(report.subsidy_total_fen).scaleb(-2), NUMBER_FORMATS["money"]),
        (_("Award granted"), Decimal(report.award_total_fen).scaleb(-2), NUMBER_FORMATS["money"]),
    ]
    for label, value, number_format in rows:
        sheet.append([label, _cell(sheet, value, number_format=number_format)])
    sheet.append([])
    sheet.append([_cell(sheet, _("Settlements counted"), font=HEADER_FONT)])
    money = NUMBER_FORMATS["money"]
    for s in report.settlements:
        sheet.append([s.label, f"{s.first_day.isoformat()} – {s.last_day.isoformat()}",
                      _cell(sheet, Decimal(s.subsidy_fen).scaleb(-2), number_format=money),
                      _cell(sheet, Decimal(s.award_fen).scaleb(-2), number_format=money)])
    if not report.settlements:
        sheet.append([_("No approved settlement covers this period.")])


def _view_sheet(workbook: Workbook, report: UsageReport, name: str, i18n: I18n) -> None:
    view = report.views[name]
    sheet = workbook.create_sheet(_sheet_title(view_title(name, i18n)))
    heads = [header(c, i18n) for c in view.columns]
    formats = [NUMBER_FORMATS.get(c.kind) for c in view.columns]
    table = [[xlsx_value(row, c, i18n) for c in view.columns] for row in view.rows]
    # A write-only sheet takes its widths, panes and filter before the first row.
    widths = [_width(h) for h in heads]
    for values in table:
        for index, (value, number_format) in enumerate(zip(values, formats, strict=True)):
            widths[index] = max(widths[index], 12 if number_format else _width(str(value)))
    _fit_columns(sheet, widths)
    sheet.freeze_panes = "A2"
    if view.rows:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(view.columns))}{len(view.rows) + 1}"
    sheet.append([_cell(sheet, h, font=HEADER_FONT, fill=HEADER_FILL) for h in heads])
    for values in table:
        sheet.append([_cell(sheet, value, number_format=number_format) if number_format else value
                      for value, number_format in zip(values, formats, strict=True)])


def _fixed_zip(data: bytes, when: datetime) -> bytes:
    """The same archive with every entry stamped ``when`` (zip times are local, naive)."""
    stamp = when.astimezone(DISTRICT_ZONE).timetuple()[:6]
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            fixed.create_system = 3
            target.writestr(fixed, source.read(info.filename))
    return out.getvalue()


def to_xlsx(report: UsageReport, *, views: tuple[str, ...] | list[str] | None = None, lang: str = "zh_CN") -> bytes:
    """A workbook: the summary (period, data as of, totals, settlements counted), then one sheet
    per view with a bold frozen header row, filters, number formats and fitted column widths."""
    i18n = I18n(check_language(lang))
    names = [check_view(v) for v in views] if views else list(VIEWS)
    # Write-only: rows stream out as they are added, without a cell object kept per value.
    workbook = Workbook(write_only=True)
    workbook.properties.creator = "facility-share"
    workbook.properties.lastModifiedBy = "facility-share"
    workbook.properties.title = f"{i18n.gettext('Usage report')} {report.period.label}"
    _summary_sheet(workbook, report, i18n)
    for name in names:
        _view_sheet(workbook, report, name, i18n)  # type: ignore[arg-type]
    return workbook_bytes(workbook, report.data_as_of)


def workbook_bytes(workbook: Workbook, stamp: datetime) -> bytes:
    """An openpyxl workbook as XLSX bytes that depend only on its content and ``stamp``: the
    document's created/modified times and every zip entry's time are ``stamp`` (openpyxl would
    write the current time into both). Usable for any export that must be byte-identical."""
    workbook.properties.created = workbook.properties.modified = stamp.astimezone(UTC).replace(tzinfo=None)
    buffer = io.BytesIO()
    # ExcelWriter rather than Workbook.save: save() stamps the document with the current time.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(workbook, archive).write_data()
    return _fixed_zip(buffer.getvalue(), stamp)


def export(report: UsageReport, fmt: str, *, view: str | None = None, lang: str = "zh_CN") -> tuple[bytes, str, str]:
    """(content, media type, file name) of the report in ``fmt``: JSON (all views or one), CSV
    (one view, ``unit`` by default) or XLSX (all views or one).

    Raises:
        InvalidInput: an unknown format, view or language.
    """
    fmt = check_format(fmt)
    view = check_view(view)
    lang = check_language(lang)
    if fmt == "csv":
        chosen = view or "unit"
        return to_csv(report, chosen, lang=lang), MEDIA_TYPES["csv"], filename(report, "csv", chosen)
    if fmt == "xlsx":
        return to_xlsx(report, views=[view] if view else None, lang=lang), MEDIA_TYPES["xlsx"], filename(report, "xlsx", view)
    return to_json(report, view=view, lang=lang), MEDIA_TYPES["json"], filename(report, "json", view)


__all__ = [
    "FORMATS",
    "LANGUAGES",
    "MEDIA_TYPES",
    "check_format",
    "check_language",
    "class_label",
    "csv_cell",
    "decimal_half_up",
    "export",
    "filename",
    "header",
    "hours_text",
    "report_json",
    "to_csv",
    "to_json",
    "to_xlsx",
    "view_title",
    "workbook_bytes",
    "yuan_text",
]
