"""Finance pages: the finance home (``/finance``) and the usage reports (``/finance/reports``).

The report page takes a period (typed, picked from the quick links, or two dates), shows the
totals, four charts drawn here as inline SVG (no script, no chart library), one table per view
behind tabs, and links to the CSV, XLSX and JSON files of the API. Everything works without
JavaScript; the language follows the site's switch (Chinese by default).

The chart geometry is computed by pure functions (``bar_chart``, ``column_chart``) and drawn by
the template, so it is tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get
from litestar.response import Template

from facility_share.accounts.pages import with_status
from facility_share.db.models import utcnow
from facility_share.errors import InvalidInput
from facility_share.finance import exports, reports
from facility_share.finance.periods import Period
from facility_share.usage.figures import DISTRICT_ZONE
from facility_share.web.deps import DbSession, Lang
from facility_share.web.i18n import I18n
from facility_share.web.render import render

SETTLEMENTS_URL = "/finance/settlements"
API_URL = "/api/v1/finance/reports"
PALETTE = {"external": "#1f6f8b", "related": "#e39b2d", "internal": "#8a9aa9", "bar": "#1f6f8b", "award": "#6a8f3a",
           "subsidy": "#b5553c", "track": "#eef1f4", "grid": "#d6dde4", "text": "#2b3640", "muted": "#5f6b76"}


def N_(message: str) -> str:
    return message


# Messages for the period errors of reports.parse_report_period, by detail["reason"].
PERIOD_ERRORS = {
    "missing": N_("Enter a year (2026), a quarter (2026-Q3), a month (2026-07) or a range of days (2026-07-01..2026-09-30)."),
    "format": N_("Enter a year (2026), a quarter (2026-Q3), a month (2026-07) or a range of days (2026-07-01..2026-09-30)."),
    "year": N_("Choose days between the years 2000 and 2100."),
    "quarter": N_("A year has the quarters Q1 to Q4."),
    "month": N_("Months are numbered 01 to 12."),
    "day": N_("Write each day as a date, e.g. 2026-07-01."),
    "order": N_("The last day must not be before the first day."),
    "length": N_("A report spans at most ten years."),
}


# --- chart geometry (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    title: str
    value_text: str
    y: float
    width: float  # of the plot area, in SVG units
    fill: str


@dataclass(frozen=True, slots=True)
class BarChart:
    """Horizontal bars, one row each: a label on the left, the bar, its value on the right."""

    width: int
    height: int
    label_width: int
    plot_width: int
    row_height: int
    bars: list[Bar]
    # x of a reference line (e.g. 100 % utilisation), or None.
    reference_x: float | None = None
    reference_text: str = ""


def bar_chart(items: list[tuple[str, str, Fraction | int, str]], *, fill: str, reference: Fraction | int | None = None,
              reference_text: str = "", width: int = 720, label_width: int = 150, value_width: int = 130,
              row_height: int = 26) -> BarChart:
    """Bars for (label, title, value ≥ 0, value text) items, scaled to the largest value; the
    reference (e.g. 100 %) is drawn as a line where the largest value reaches it."""
    plot = width - label_width - value_width
    top = max((Fraction(v) for _l, _t, v, _x in items), default=Fraction(0))
    scale = Fraction(plot) / top if top > 0 else Fraction(0)
    bars = [
        Bar(label, title, text, 8 + index * row_height, round(float(Fraction(value) * scale), 2), fill)
        for index, (label, title, value, text) in enumerate(items)
    ]
    reached = reference is not None and top > 0 and Fraction(reference) <= top
    ref_x = round(float(label_width + Fraction(reference) * scale), 2) if reached else None  # type: ignore[arg-type]
    return BarChart(width, 16 + len(items) * row_height, label_width, plot, row_height, bars, ref_x, reference_text)


@dataclass(frozen=True, slots=True)
class Segment:
    y: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True, slots=True)
class ColumnBar:
    x: float
    width: float
    label: str  # shown under the column ('' to skip a crowded label)
    segments: list[Segment]


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class ColumnChart:
    """Stacked columns (one per month) over a y axis with gridlines."""

    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    columns: list[ColumnBar]
    ticks: list[Tick] = field(default_factory=list)


def nice_ceiling(value: Fraction | int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at least ``value`` (at least 1)."""
    value = Fraction(value)
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def column_chart(months: list[tuple[str, list[tuple[int, str, str]]]], *, width: int = 720, height: int = 260) -> ColumnChart:
    """Stacked columns for (label, [(minutes, fill, title), …]) per month, y axis in hours."""
    left, top, bottom, right = 56, 26, 30, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(m for m, _f, _t in parts) for _label, parts in months]
    top_hours = nice_ceiling(Fraction(max(totals, default=0), 60))
    per_minute = Fraction(plot_h, top_hours * 60)
    slot = Fraction(plot_w, max(len(months), 1))
    every = max(1, -(-len(months) // 12))  # at most about twelve labels
    columns = []
    for index, (label, parts) in enumerate(months):
        baseline = Fraction(top + plot_h)
        segments = []
        for minutes, fill, title in parts:
            h = minutes * per_minute
            baseline -= h
            if minutes:
                segments.append(Segment(round(float(baseline), 2), round(float(h), 2), fill, title))
        columns.append(ColumnBar(round(float(left + slot * index + slot * Fraction(1, 5)), 2), round(float(slot * Fraction(3, 5)), 2),
                                 label if index % every == 0 else "", segments))
    ticks = [Tick(round(float(top + plot_h - Fraction(plot_h * k, 4)), 2), _plain(Fraction(top_hours * k, 4))) for k in range(5)]
    return ColumnChart(width, height, left, top, plot_w, plot_h, columns, ticks)


def _plain(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


# --- page words ------------------------------------------------------------------------------------


class ReportWords:
    """Numbers and labels of the report page in the reader's language."""

    def __init__(self, i18n: I18n) -> None:
        self.i18n = i18n
        self._ = i18n.gettext

    def hours(self, minutes: int) -> str:
        return f"{exports.decimal_half_up(Fraction(minutes, 60), 1):,.1f}"

    def percent(self, value: Fraction | None) -> str:
        return "—" if value is None else f"{exports.decimal_half_up(value * 100, 1):.1f}%"

    def rating(self, value: Fraction | None) -> str:
        return "—" if value is None else f"{exports.decimal_half_up(value, 2):.2f}"

    def cell(self, row: reports.Row, column: reports.Column) -> str:
        value = row.value(column)
        if column.kind == "hours":
            return self.hours(value)
        if column.kind == "rated_hours":
            return f"{exports.decimal_half_up(value, 1):,.1f}"
        if column.kind == "money":
            return self.i18n.yuan(value)
        if column.kind == "rate":
            return self.percent(value)
        if column.kind == "rating":
            return self.rating(value)
        if column.kind == "count":
            return f"{value:,}"
        if column.key in ("unit_name", "resource_name", "enterprise_name"):
            return (row.labels.get(f"{column.key}_en") if not self.i18n.is_zh else "") or value
        if column.kind == "bool":
            return self._("Yes") if value else self._("No")
        if column.kind == "class":
            return exports.class_label(value, self.i18n) or "—"
        return str(value)

    def category(self, total: reports.CategoryTotal) -> str:
        """A class or grade as the policy names it, else the class's usual name, else its code."""
        named = total.name_en if not self.i18n.is_zh and total.name_en else total.name_zh
        if named:
            return named
        if total.kind == "subsidy" and total.category in exports.CLASS_LABELS:
            return exports.class_label(total.category, self.i18n)
        return total.category or self._("Unclassified")


def quick_periods(today: date) -> list[tuple[str, str]]:
    """(period, label) links: this year and last, this year's quarters so far, the last months."""
    year = today.year
    quarter = (today.month - 1) // 3 + 1
    out = [(str(year), str(year)), (str(year - 1), str(year - 1))]
    out += [(f"{year}-Q{q}", f"{year}-Q{q}") for q in range(1, quarter + 1)]
    month = date(year, today.month, 1)
    months = []
    for _ in range(6):
        months.append((f"{month.year}-{month.month:02d}", f"{month.year}-{month.month:02d}"))
        month = (month - timedelta(days=1)).replace(day=1)
    return out + list(reversed(months))


def default_period(today: date) -> Period:
    quarter = (today.month - 1) // 3 + 1
    return reports.parse_report_period(f"{today.year}-Q{quarter}")


def download_links(period: Period, view: str, i18n: I18n) -> list[tuple[str, str]]:
    def url(**params: str) -> str:
        return f"{API_URL}?{urlencode({'period': period.label, **params, 'lang': i18n.locale})}"

    _ = i18n.gettext
    return [
        (_("CSV of this view"), url(view=view, format="csv")),
        (_("XLSX, every view"), url(format="xlsx")),
        (_("JSON, every view"), url(format="json")),
    ]


def charts(report: reports.UsageReport, words: ReportWords) -> dict[str, Any]:
    """The four charts of the report page (None where there is nothing to draw)."""
    _ = words._
    i18n = words.i18n
    units = report.views["unit"].rows
    utilisation = [
        (row.labels["unit_code"], words.cell(row, reports.COLUMNS["unit"][1]), row.measures.utilisation or Fraction(0),
         words.percent(row.measures.utilisation))
        for row in units if row.measures.rated_hour_days
    ]
    monthly = reports.monthly_totals(report)
    has_hours = any(m.effective_minutes for _label, m in monthly)
    series = (("external", _("External hours")), ("related", _("Related hours")), ("internal", _("Internal hours")))
    one_year = report.period.start.year == reports.last_day(report.period).year
    columns = [
        (label[5:] if one_year else label[2:],
         [(getattr(m, f"{key}_minutes"), PALETTE[key], f"{label} · {name}: {words.hours(getattr(m, f'{key}_minutes'))} h")
          for key, name in series])
        for label, m in monthly
    ]
    subsidy = report.by_category("subsidy")
    award = report.by_category("award")
    return {
        "utilisation": bar_chart(utilisation, fill=PALETTE["bar"], reference=1, reference_text="100%") if utilisation else None,
        "monthly": column_chart(columns) if has_hours else None,
        "series": [(PALETTE[key], name) for key, name in series],
        "subsidy": bar_chart([(words.category(c), words.category(c), c.amount_fen, f"{i18n.yuan(c.amount_fen)} · {c.lines}")
                              for c in subsidy], fill=PALETTE["subsidy"]) if subsidy else None,
        "award": bar_chart([(words.category(c), words.category(c), c.amount_fen, f"{i18n.yuan(c.amount_fen)} · {c.lines}")
                            for c in award], fill=PALETTE["award"]) if award else None,
    }


# --- pages -----------------------------------------------------------------------------------------


class FinanceReportPages(Controller):
    path = "/finance"
    include_in_schema = False
    opt = {"access": "finance"}

    @get("/", name="finance-home", cache=False)
    async def home(self, request: Request, i18n: Lang) -> Template:
        today = utcnow().astimezone(DISTRICT_ZONE).date()
        return render(request, i18n, "finance/finance_home.html", quick=quick_periods(today),
                      current=default_period(today), settlements_url=SETTLEMENTS_URL)

    @get("/reports", name="finance-reports", cache=False)
    async def reports_page(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        _ = i18n.gettext
        params = request.query_params
        today = utcnow().astimezone(DISTRICT_ZONE).date()
        values = {name: (params.get(name) or "").strip()[:60] for name in ("period", "first", "last", "view")}
        errors: dict[str, str] = {}
        view = values["view"] if values["view"] in reports.VIEWS else "unit"
        if values["view"] and values["view"] not in reports.VIEWS:
            errors["view"] = _("Choose one of the listed views.")
        period: Period | None = None
        try:
            if values["first"] or values["last"]:
                if not (values["first"] and values["last"]):
                    raise InvalidInput("period: give both days", detail={"reason": "both"})
                period = reports.parse_report_period(f"{values['first']}..{values['last']}")
            elif values["period"]:
                period = reports.parse_report_period(values["period"])
            else:
                period = default_period(today)
        except InvalidInput as exc:
            reason = (exc.detail or {}).get("reason", "format") if isinstance(exc.detail, dict) else "format"
            field_name = "first" if values["first"] or values["last"] else "period"
            errors[field_name] = (_("Give both the first and the last day.") if reason == "both"
                                  else _(PERIOD_ERRORS.get(reason, PERIOD_ERRORS["format"])))
            period = None
        report = await reports.build_report(db_session, period) if period is not None else None
        words = ReportWords(i18n)
        page = render(
            request, i18n, "finance/reports.html",
            report=report, period=period, view=view, values=values, errors=errors, words=words,
            views=[(name, _(reports.VIEW_TITLES[name])) for name in reports.VIEWS],
            quick=quick_periods(today), downloads=download_links(period, view, i18n) if period else [],
            charts=charts(report, words) if report else {}, palette=PALETTE,
            last_day=reports.last_day(period) if period else None, settlements_url=SETTLEMENTS_URL,
            as_of=report.data_as_of.astimezone(DISTRICT_ZONE).strftime("%Y-%m-%d %H:%M") if report else "",
        )
        return with_status(page, 400) if errors else page
