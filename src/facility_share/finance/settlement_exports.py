"""A settlement's lines as files finance hands on: XLSX (one sheet per kind and a summary), CSV
and JSON, and the words shared by the exports and the pages (classes, grades, flags, headers).

Every export of the same settlement is the same bytes: rows come in the lines' stored order,
the workbook's created/modified times are the settlement's own (approval, else computation)
rather than the clock's, and the ZIP entries of the XLSX carry one fixed timestamp. Money is
written as exact decimal yuan (from integer fen, never through a float).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from facility_share.db.models import PolicyVersion, Settlement, SettlementLine
from facility_share.finance import settlements
from facility_share.finance.explain import class_label, flag_label, render_step
from facility_share.web.i18n import I18n

EXPORT_FORMATS = ("csv", "xlsx", "json")
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "xlsx": XLSX_MEDIA_TYPE, "json": "application/json"}
# ZIP timestamps cannot go before 1980; this is the date every XLSX entry carries.
ZIP_DATE = (2000, 1, 1, 0, 0, 0)
YUAN_FORMAT = "#,##0.00"


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


# Flags that ask finance to look twice (shown as warnings, the rest as notes).
WARNING_FLAGS = frozenset({"rectification", "below_minimum", "no_eligible_spend", "no_open_resources"})
KIND_LABELS = {"subsidy": N_("Enterprise subsidies"), "award": N_("Managing-unit awards")}
STATUS_LABELS = {"draft": N_("Draft"), "approved": N_("Approved")}


def fen_to_yuan(fen: int | None) -> Decimal | None:
    """Integer fen as an exact decimal yuan amount (12345 → Decimal('123.45'))."""
    if fen is None:
        return None
    return (Decimal(int(fen)) / 100).quantize(Decimal("0.01"))


class SettlementLabels:
    """Words for a settlement's codes in one language: classes, grades, flags, headers."""

    def __init__(self, i18n: I18n, policy: PolicyVersion | None = None) -> None:
        self.i18n = i18n
        self.policy = policy
        document = (policy.document or {}) if policy is not None else {}
        self._classes: dict[str, dict[str, Any]] = dict((document.get("subsidy") or {}).get("classes") or {})
        self._grades: dict[str, dict[str, Any]] = {
            g.get("code", ""): g for g in ((document.get("award") or {}).get("grades") or []) if isinstance(g, dict)
        }
        self._class_names = {k: (v.get("name_zh", k), v.get("name_en", k)) for k, v in self._classes.items()}

    def _(self, message: str, **variables: Any) -> str:
        return self.i18n.gettext(message, **variables)

    def _name(self, record: dict[str, Any] | None, fallback: str) -> str:
        if not record:
            return fallback
        return self.i18n.pick(record, "name") or fallback

    def category(self, kind: str, code: str) -> str:
        """An enterprise class (subsidy) or a grade (award) as the policy names it."""
        if not code:
            return "—"
        if kind == "award":
            return self._name(self._grades.get(code), code)
        return self._name(self._classes.get(code), class_label(code, self.i18n.locale))

    def flag(self, code: str) -> str:
        """A line flag in the reader's words (the code itself if unknown)."""
        return flag_label(code, self.i18n.locale)

    def step(self, step: dict[str, Any]) -> str:
        """One computation step as a sentence in the reader's language."""
        return render_step(step, self.i18n.locale, class_names=self._class_names)

    def flags(self, codes: Iterable[str] | None) -> str:
        return "; ".join(self.flag(c) for c in (codes or []))

    def kind(self, kind: str) -> str:
        return self._(KIND_LABELS[kind]) if kind in KIND_LABELS else kind

    def status(self, status: str) -> str:
        return self._(STATUS_LABELS[status]) if status in STATUS_LABELS else status

    def policy_title(self) -> str:
        if self.policy is None:
            return ""
        return (self.policy.title_en if not self.i18n.is_zh and self.policy.title_en else self.policy.title_zh) or self.policy.code

    def explanation(self, line: SettlementLine) -> str:
        if self.i18n.is_zh:
            return line.explanation_zh or line.explanation_en
        return line.explanation_en or line.explanation_zh

    def basis_header(self, kind: str) -> str:
        return self._("Eligible spend") if kind == "subsidy" else self._("External income")

    def subject_header(self, kind: str) -> tuple[str, str]:
        if kind == "subsidy":
            return self._("USCC"), self._("Enterprise")
        return self._("Unit code"), self._("Managing unit")

    def category_header(self, kind: str) -> str:
        return self._("Enterprise class") if kind == "subsidy" else self._("Grade")

    def amount_header(self, kind: str) -> str:
        return self._("Subsidy") if kind == "subsidy" else self._("Award")


def stamp_of(settlement: Settlement) -> datetime:
    """The time the exported content belongs to: approval, else the last computation."""
    moment = settlement.approved_at or settlement.computed_at or settlement.created_at
    if moment is None:
        return datetime(2000, 1, 1, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def file_name(settlement: Settlement, fmt: str, kind: str | None = None) -> str:
    suffix = f"-{kind}" if kind else ""
    return f"settlement-{settlement.id}-{settlement.period_label}{suffix}.{fmt}"


def summary_rows(settlement: Settlement, policy: PolicyVersion, lines: list[SettlementLine],
                 labels: SettlementLabels) -> list[tuple[str, Any]]:
    """(label, value) pairs describing the settlement; money as decimal yuan."""
    _ = labels._
    subsidy = [x for x in lines if x.kind == "subsidy"]
    award = [x for x in lines if x.kind == "award"]

    def when(value: datetime | None) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""

    return [
        (_("Settlement"), settlement.id),
        (_("Settlement period"), settlement.period_label),
        (_("Period dates"), f"{settlement.period_start.isoformat()} – {settlement.period_end.isoformat()}"),
        (_("Policy"), f"{policy.code}@{policy.version}"),
        (_("Policy title"), labels.policy_title()),
        (_("Status"), labels.status(settlement.status)),
        (_("Payments counted until"), when(settlement.cutoff_at)),
        (_("Subsidy budget (yuan)"), fen_to_yuan(settlement.subsidy_budget_fen)),
        (_("Subsidies granted (yuan)"), fen_to_yuan(settlement.subsidy_total_fen)),
        (_("Enterprises"), len(subsidy)),
        (_("Award budget (yuan)"), fen_to_yuan(settlement.award_budget_fen)),
        (_("Awards granted (yuan)"), fen_to_yuan(settlement.award_total_fen)),
        (_("Managing units"), len(award)),
        (_("Computed at"), when(settlement.computed_at)),
        (_("Approved at"), when(settlement.approved_at)),
        (_("Inputs digest"), settlement.inputs_digest),
        (_("Results digest"), settlement.results_digest),
    ]


def line_headers(kind: str, labels: SettlementLabels) -> list[str]:
    _ = labels._
    code, name = labels.subject_header(kind)
    return [
        _("No."), code, name, labels.category_header(kind), labels.basis_header(kind) + _(" (yuan)"),
        _("Before budget (yuan)"), _("Budget adjustment (yuan)"), labels.amount_header(kind) + _(" (yuan)"),
        _("Flags"), _("Explanation"),
    ]


def line_row(line: SettlementLine, labels: SettlementLabels) -> list[Any]:
    return [
        line.position, line.subject_code, line.subject_name, labels.category(line.kind, line.category),
        fen_to_yuan(line.basis_fen), fen_to_yuan(line.before_budget_fen), fen_to_yuan(line.adjustment_fen),
        fen_to_yuan(line.amount_fen), labels.flags(line.flags), labels.explanation(line),
    ]


def lines_xlsx(settlement: Settlement, policy: PolicyVersion, lines: list[SettlementLine], *, locale: str = "zh_CN",
               kind: str | None = None) -> bytes:
    """The settlement as a workbook: a summary sheet, then one sheet per kind of line.

    Headers are in ``locale`` (Chinese by default). The same settlement gives the same bytes.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter
    from openpyxl.writer.excel import ExcelWriter

    labels = SettlementLabels(I18n(locale), policy)
    # One style object each, shared by every cell (openpyxl compares styles cell by cell).
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    # Write-only: rows stream to the file as they are appended (a few times faster, little memory).
    book = Workbook(write_only=True)

    def cell(sheet: Any, value: Any, *, font: Font | None = None, align: Alignment | None = None) -> Any:
        if font is None and align is None and not isinstance(value, Decimal):
            return value  # a plain value needs no cell object
        item = WriteOnlyCell(sheet, value=value)
        if isinstance(value, Decimal):
            item.number_format = YUAN_FORMAT
        if font is not None:
            item.font = font
        if align is not None:
            item.alignment = align
        return item

    summary = book.create_sheet(labels._("Summary"))
    summary.column_dimensions["A"].width = 26
    summary.column_dimensions["B"].width = 70
    for label, value in summary_rows(settlement, policy, lines, labels):
        summary.append([cell(summary, label, font=bold), cell(summary, value)])

    for sheet_kind in ("subsidy", "award"):
        if kind is not None and sheet_kind != kind:
            continue
        sheet = book.create_sheet(labels.kind(sheet_kind))
        for index, width in enumerate((6, 22, 34, 16, 16, 16, 16, 16, 26, 90), start=1):
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        sheet.append([cell(sheet, header, font=bold, align=wrap) for header in line_headers(sheet_kind, labels)])
        kind_lines = [x for x in lines if x.kind == sheet_kind]
        for item in kind_lines:
            values = line_row(item, labels)
            sheet.append([cell(sheet, v, align=wrap if column == 9 else None) for column, v in enumerate(values)])
        if kind_lines:
            money = ("basis_fen", "before_budget_fen", "adjustment_fen", "amount_fen")
            totals = [fen_to_yuan(sum(int(getattr(x, name) or 0) for x in kind_lines)) for name in money]
            sheet.append([cell(sheet, labels._("Total"), font=bold), None, None, None,
                          *(cell(sheet, t, font=bold) for t in totals)])

    # The file's own times are the settlement's, so re-exporting never changes a byte.
    moment = stamp_of(settlement).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    book.properties.created = moment
    book.properties.modified = moment
    book.properties.creator = "facility-share"
    book.properties.title = f"settlement {settlement.id} {settlement.period_label}"
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        # ExcelWriter, not Workbook.save: save() stamps "modified" with the clock.
        ExcelWriter(book, archive).save()
    return _fixed_zip_times(raw.getvalue())


def _fixed_zip_times(data: bytes) -> bytes:
    """The same ZIP with every entry dated ``ZIP_DATE`` (zipfile stamps entries with the clock)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            target.writestr(entry, source.read(info.filename))
    return out.getvalue()


def line_document(line: SettlementLine) -> dict[str, Any]:
    """One line as plain JSON data (the API's and the JSON export's shape)."""
    return {
        "id": line.id, "kind": line.kind, "position": line.position, "subject_id": line.subject_id,
        "subject_code": line.subject_code, "subject_name": line.subject_name, "category": line.category,
        "basis_fen": line.basis_fen, "before_budget_fen": line.before_budget_fen, "adjustment_fen": line.adjustment_fen,
        "amount_fen": line.amount_fen, "flags": list(line.flags or []), "figures": dict(line.figures or {}),
        "steps": list(line.steps or []), "explanation_zh": line.explanation_zh, "explanation_en": line.explanation_en,
    }


def settlement_document(settlement: Settlement, policy: PolicyVersion) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.astimezone(UTC).isoformat() if value else None

    return {
        "id": settlement.id, "period": settlement.period_label, "period_kind": settlement.period_kind,
        "period_start": settlement.period_start.isoformat(), "period_end": settlement.period_end.isoformat(),
        "policy": {"code": policy.code, "version": policy.version, "digest": policy.digest},
        "status": settlement.status, "cutoff_at": when(settlement.cutoff_at),
        "subsidy_budget_fen": settlement.subsidy_budget_fen, "award_budget_fen": settlement.award_budget_fen,
        "subsidy_total_fen": settlement.subsidy_total_fen, "award_total_fen": settlement.award_total_fen,
        "inputs_digest": settlement.inputs_digest, "results_digest": settlement.results_digest,
        "computed_at": when(settlement.computed_at), "approved_at": when(settlement.approved_at),
    }


def lines_json(settlement: Settlement, policy: PolicyVersion, lines: list[SettlementLine]) -> bytes:
    """The settlement and its lines as JSON (sorted keys): the same settlement, the same bytes."""
    document = {
        "settlement": settlement_document(settlement, policy),
        # Line ids are storage details that change on every recompute; the content is what counts.
        "lines": [{k: v for k, v in line_document(x).items() if k != "id"} for x in lines],
    }
    return (json.dumps(document, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


def export(settlement: Settlement, policy: PolicyVersion, lines: list[SettlementLine], fmt: str, *, locale: str = "zh_CN",
           kind: str | None = None) -> bytes:
    """The lines (all, or one kind) in ``fmt`` (csv, xlsx or json)."""
    if fmt == "csv":
        return settlements.lines_csv(settlement, policy, lines, locale=locale)
    if fmt == "xlsx":
        return lines_xlsx(settlement, policy, lines, locale=locale, kind=kind)
    return lines_json(settlement, policy, lines)
