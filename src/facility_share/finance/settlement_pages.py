"""Settlement pages for finance: the list, the draft form, a settlement with its subsidy and
award lines, each line's explanation, and the review actions (recompute, approve, discard).

Forms work without JavaScript. A POST that fails re-renders the page with what was typed and
a message in the reader's language (400 bad input, 409 conflicting state); one that succeeds
redirects (303) with a notice. Approving asks for a confirmation and sends the results digest
of the lines on the screen, so lines recomputed meanwhile are never approved unseen. Downloads
are the API's export route (GET, which a signed-in browser may call).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy import select

from facility_share.accounts.pages import checked, read_form, split_field, text, with_status
from facility_share.catalog.records import yuan_to_fen
from facility_share.db.models import PolicyVersion, Settlement, SettlementLine, User, utcnow
from facility_share.errors import Conflict, FacilityShareError, InvalidInput, NotFound
from facility_share.finance import settlement_api, settlements
from facility_share.finance.periods import parse_period
from facility_share.finance.settlement_exports import WARNING_FLAGS, SettlementLabels, fen_to_yuan
from facility_share.usage.figures import DISTRICT_ZONE
from facility_share.usage.pages import UsageWords, error_status
from facility_share.bookings.pages import local_input, parse_local
from facility_share.web.deps import DbSession, Lang, RecordId
from facility_share.web.i18n import I18n
from facility_share.web.render import render

BASE = "/finance/settlements"


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


FIGURE_LABELS = {
    # subsidy lines
    "controller": N_("Actual controller"),
    "charges": N_("Charges in the period"),
    "eligible_charges": N_("Eligible charges"),
    "eligible_spend_fen": N_("Eligible spend"),
    "computed_fen": N_("Subsidy at the class rates"),
    "after_annual_cap_fen": N_("After the annual cap"),
    "after_controller_cap_fen": N_("After the shared controller cap"),
    "granted_this_year_fen": N_("Granted earlier this year"),
    # award lines
    "resources_total": N_("Resources of the unit"),
    "resources_open": N_("Resources open for sharing"),
    "effective_minutes": N_("Effective hours"),
    "external_minutes": N_("External hours"),
    "enterprises_served": N_("Enterprises served"),
    "rating_count": N_("Ratings"),
    "external_income_fen": N_("External income"),
    "awarded_this_year_fen": N_("Awarded earlier this year"),
    "days": N_("Days in the period"),
    "score": N_("Score"),
    "multiplier": N_("Grade multiplier"),
    "base_fen": N_("Base amount (rate × external income)"),
}
# Shown elsewhere on the page, or as a whole table.
HIDDEN_FIGURES = frozenset({"grade", "grade_zh", "grade_en", "parts", "score_parts", "rating_sum"})
SCORE_PART_LABELS = {
    "organisation": N_("Organisation"),
    "operation": N_("Operation"),
    "sharing_hours": N_("External hours per open resource"),
    "sharing_rate": N_("Sharing rate"),
    "enterprises": N_("Enterprises served"),
    "rating": N_("Average rating"),
}


class SettlementWords(UsageWords):
    """Translated labels and messages of the settlement pages."""

    def __init__(self, i18n: I18n, policy: PolicyVersion | None = None) -> None:
        super().__init__(i18n)
        self.labels = SettlementLabels(i18n, policy)

    def settlement_status(self, status: str) -> str:
        return self.labels.status(status)

    def category(self, kind: str, code: str) -> str:
        return self.labels.category(kind, code)

    def flag(self, code: str) -> str:
        return self.labels.flag(code)

    def flag_class(self, code: str) -> str:
        return "badge-warn" if code in WARNING_FLAGS else "badge-role"

    def step(self, step: dict[str, Any]) -> str:
        return self.labels.step(step)

    def explanation(self, line: Any) -> str:  # type: ignore[override]
        return self.labels.explanation(line)

    def period(self, settlement: Settlement) -> str:
        kind = {"year": self._("year"), "quarter": self._("quarter"), "month": self._("month")}.get(settlement.period_kind, "")
        return f"{settlement.period_label} ({kind})" if kind else settlement.period_label

    def share(self, part: int | None, whole: int | None) -> str:
        """``part`` as a percentage of ``whole`` (— without a whole)."""
        if not whole or part is None:
            return "—"
        return f"{part * 100 / whole:.1f}%"

    def figure_label(self, key: str) -> str:
        label = FIGURE_LABELS.get(key)
        return self._(label) if label else key

    def figure_value(self, key: str, value: Any) -> str:
        if value is None or value == "":
            return "—"
        if key.endswith("_fen"):
            try:
                return self.i18n.yuan(int(value))
            except (TypeError, ValueError):
                return str(value)
        if key.endswith("_minutes"):
            try:
                return self._("%(hours)s h", hours=f"{int(value) / 60:,.1f}")
            except (TypeError, ValueError):
                return str(value)
        return str(value)

    def exact_yuan(self, fen: Any) -> str:
        """Exact fen (an integer, or decimal text such as ``"12345.5"``) as yuan, keeping any
        digits below the fen: ``"12345.5"`` → ``¥123.455``."""
        try:
            amount = Decimal(str(fen)) / 100
        except (InvalidOperation, ValueError):
            return str(fen)
        whole, _sep, decimals = format(amount, ",f").partition(".")
        return f"¥{whole}.{decimals.rstrip('0').ljust(2, '0')}"

    def figures(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        """A line's figures as (label, value), known ones first in a fixed order."""
        known = [k for k in FIGURE_LABELS if k in figures]
        rest = sorted(k for k in figures if k not in FIGURE_LABELS and k not in HIDDEN_FIGURES)
        rows = [(self.figure_label(k), self.figure_value(k, figures[k])) for k in known + rest]
        if figures.get("rating_count"):
            try:
                average = int(figures["rating_sum"]) / int(figures["rating_count"])
                rows.append((self._("Average rating"), f"{average:.2f}"))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                pass
        return rows

    def score_parts(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        parts = figures.get("score_parts") or {}
        return [(self._(SCORE_PART_LABELS[k]) if k in SCORE_PART_LABELS else k, str(v)) for k, v in parts.items()]

    def exclusion(self, reason: str | None) -> str:
        return self._("Counted") if reason is None else self.flag(reason)


# --- the draft form ---------------------------------------------------------------------------------


@dataclass
class DraftForm:
    period: str = ""
    policy: str = ""
    cutoff: str = ""
    subsidy_budget: str = ""
    award_budget: str = ""
    note: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: Any = "") -> Any:
        return getattr(self, name, default)


# Service field names → form field names.
FORM_FIELDS = {"period": "period", "policy": "policy", "cutoff_at": "cutoff", "subsidy_budget_fen": "subsidy_budget",
               "award_budget_fen": "award_budget", "note": "note"}


async def policy_choices(session: Any, i18n: I18n) -> list[tuple[str, str]]:
    """(value, label) for the policy select: each code (the version in force), then each version."""
    rows = list((await session.execute(select(PolicyVersion).order_by(PolicyVersion.code, PolicyVersion.effective_from))).scalars())
    choices: list[tuple[str, str]] = []
    for code in sorted({r.code for r in rows}):
        versions = [r for r in rows if r.code == code]
        title = i18n.pick(versions[-1], "title") or code
        choices.append((code, i18n.gettext("%(title)s — the version in force for the period", title=title)))
        for r in versions:
            until = r.effective_until.isoformat() if r.effective_until else "…"
            choices.append((f"{code}@{r.version}", i18n.gettext("%(code)s version %(version)s (%(start)s – %(end)s)", code=code,
                                                                 version=r.version, start=r.effective_from.isoformat(), end=until)))
    return choices


def default_period() -> str:
    """The previous month: the usual thing to settle."""
    today = utcnow().astimezone(DISTRICT_ZONE).date()
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year}-{month:02d}"


def read_budget(raw: str, form: DraftForm, name: str, i18n: I18n) -> int | None:
    if not raw:
        return None
    try:
        fen = yuan_to_fen(raw)
    except ValueError:
        form.errors[name] = i18n.gettext("Enter the budget in yuan, e.g. 250000 or 250000.50, or leave it empty for the policy's budget.")
        return None
    if fen > settlement_api.MAX_BUDGET_FEN:
        form.errors[name] = i18n.gettext("A budget is at most 100,000,000 yuan.")
        return None
    return fen


def parse_draft(form: DraftForm, choices: list[tuple[str, str]], i18n: I18n) -> settlements.DraftRequest | None:
    """The form as the service's request, or None with ``form.errors`` filled."""
    _ = i18n.gettext
    words = SettlementWords(i18n)
    try:
        period = parse_period(form.period)
    except InvalidInput as exc:
        form.errors["period"] = words.error(exc)
        period = None
    code, version = form.policy, None
    if form.policy not in {value for value, _label in choices}:
        form.errors["policy"] = _("Choose one of the loaded policies.")
    elif "@" in form.policy:
        code, version = form.policy.split("@", 1)
    cutoff: datetime | None = None
    if form.cutoff:
        try:
            cutoff = parse_local(form.cutoff, DISTRICT_ZONE)
        except ValueError:
            form.errors["cutoff"] = _("Enter the cut-off as a date and time, e.g. 2026-10-15 00:00, or leave it empty for now.")
    subsidy_budget = read_budget(form.subsidy_budget, form, "subsidy_budget", i18n)
    award_budget = read_budget(form.award_budget, form, "award_budget", i18n)
    if len(form.note) > 1000:
        form.errors["note"] = _("Write at most 1000 characters.")
    if form.errors or period is None:
        return None
    return settlements.DraftRequest(period=period.label, policy_code=code, policy_version=version, cutoff_at=cutoff,
                                    subsidy_budget_fen=subsidy_budget, award_budget_fen=award_budget, note=form.note)


# --- the pages ----------------------------------------------------------------------------------------


def settlement_url(settlement_id: int, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{BASE}/{settlement_id}" + (f"?{query}" if query else "")


class SettlementPages(Controller):
    path = BASE
    include_in_schema = False
    opt = {"access": "finance"}

    @get("", name="finance-settlements", cache=False)
    async def index(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        rows = await settlements.list_settlements(db_session)
        counts = await settlement_api.line_counts(db_session, [s.id for s, _p in rows])
        words = SettlementWords(i18n)
        done = request.query_params.get("done", "")
        return render(request, i18n, "finance/settlement_list.html", rows=rows, counts=counts, words=words,
                      labels={p.id: SettlementLabels(i18n, p) for _s, p in rows},
                      done=done if done in ("discard",) else "", discarded=request.query_params.get("id", "")[:12])

    async def _form_page(self, request: Request, session: Any, i18n: I18n, form: DraftForm, status: int = 200) -> Template:
        choices = await policy_choices(session, i18n)
        if not form.policy and choices:
            form.policy = choices[0][0]
        page = render(request, i18n, "finance/settlement_new.html", form=form, choices=choices, words=SettlementWords(i18n),
                      now_local=local_input(utcnow(), DISTRICT_ZONE))
        return with_status(page, status)

    @get("/new", name="finance-settlement-new", cache=False)
    async def new(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        form = DraftForm(period=(request.query_params.get("period") or default_period())[:20],
                         policy=(request.query_params.get("policy") or "")[:100])
        return await self._form_page(request, db_session, i18n, form)

    @post("", name="finance-settlement-create")
    async def create(self, request: Request, db_session: DbSession, i18n: Lang) -> Template | Redirect:
        data = await read_form(request)
        form = DraftForm(period=text(data, "period", 20), policy=text(data, "policy", 100), cutoff=text(data, "cutoff", 40),
                         subsidy_budget=text(data, "subsidy_budget", 30), award_budget=text(data, "award_budget", 30),
                         note=text(data, "note", 1100))
        choices = await policy_choices(db_session, i18n)
        draft = parse_draft(form, choices, i18n)
        if draft is None:
            return await self._form_page(request, db_session, i18n, form, status=400)
        try:
            settlement = await settlement_api.draft(db_session, request.user, draft)
        except FacilityShareError as exc:
            await db_session.rollback()
            name, _rest = split_field(exc.message)
            form.errors[FORM_FIELDS.get(name, "form")] = SettlementWords(i18n).error(exc)
            return await self._form_page(request, db_session, i18n, form, status=error_status(exc))
        settlement_id = settlement.id
        await db_session.commit()
        return Redirect(settlement_url(settlement_id, done="draft"), status_code=303)

    async def _page(self, request: Request, session: Any, i18n: I18n, settlement_id: int, *, error: str = "",
                    confirm_errors: dict[str, str] | None = None, status: int = 200) -> Template:
        settlement, policy = await settlements.load(session, settlement_id)
        lines = await settlements.lines_of(session, settlement_id)
        words = SettlementWords(i18n, policy)
        people = {}
        ids = [i for i in (settlement.created_by_id, settlement.approved_by_id) if i]
        if ids:
            people = {u.id: u.name for u in (await session.execute(select(User).where(User.id.in_(ids)))).scalars()}
        subsidy = [x for x in lines if x.kind == "subsidy"]
        award = [x for x in lines if x.kind == "award"]
        done = request.query_params.get("done", "")
        page = render(
            request, i18n, "finance/settlement.html",
            settlement=settlement, policy=policy, subsidy=subsidy, award=award, words=words, people=people,
            flagged={kind: sum(1 for x in rows if x.flags) for kind, rows in (("subsidy", subsidy), ("award", award))},
            totals={kind: {k: sum(int(getattr(x, k) or 0) for x in rows) for k in ("basis_fen", "before_budget_fen", "amount_fen")}
                    for kind, rows in (("subsidy", subsidy), ("award", award))},
            error=error, confirm_errors=confirm_errors or {},
            done=done if done in ("draft", "recompute", "approve", "unchanged") else "",
            export_base=f"/api/v1/finance/settlements/{settlement.id}/export", lang="en" if not i18n.is_zh else "zh_CN",
        )
        return with_status(page, status)

    @get("/{settlement_id:int}", name="finance-settlement", cache=False)
    async def show(self, request: Request, db_session: DbSession, i18n: Lang, settlement_id: RecordId) -> Template:
        return await self._page(request, db_session, i18n, settlement_id)

    @get("/{settlement_id:int}/lines/{line_id:int}", name="finance-settlement-line", cache=False)
    async def line(self, request: Request, db_session: DbSession, i18n: Lang, settlement_id: RecordId, line_id: RecordId) -> Template:
        settlement, policy = await settlements.load(db_session, settlement_id)
        item: SettlementLine = await settlements.line(db_session, settlement_id, line_id)
        words = SettlementWords(i18n, policy)
        charges = await settlement_api.counted_charges(db_session, settlement, policy, item.subject_id) if item.kind == "subsidy" else []
        siblings = await settlements.lines_of(db_session, settlement_id, item.kind)
        index = next((i for i, x in enumerate(siblings) if x.id == item.id), 0)
        return render(
            request, i18n, "finance/settlement_line.html",
            settlement=settlement, policy=policy, line=item, words=words, charges=charges,
            counted_total=sum(c.net_paid_fen for c in charges if c.counted),
            previous=siblings[index - 1] if index > 0 else None,
            following=siblings[index + 1] if index + 1 < len(siblings) else None,
        )

    async def _act(self, request: Request, session: Any, i18n: I18n, settlement_id: int, action: str) -> Template | Redirect:
        words = SettlementWords(i18n)
        data = await read_form(request)
        current, _policy = await settlements.load(session, settlement_id)
        if current.status != "draft":
            # Final: whatever was sent, nothing changes (the service and the database refuse too).
            return await self._page(request, session, i18n, settlement_id, status=409,
                                    error=words._("This settlement is approved; an approved settlement never changes."))
        confirm_errors: dict[str, str] = {}
        if action in ("approve", "discard") and not checked(data, "confirm"):
            confirm_errors[action] = (
                words._("Tick the box to confirm that you reviewed every line; approval cannot be undone.") if action == "approve"
                else words._("Tick the box to confirm that this draft should be discarded.")
            )
            return await self._page(request, session, i18n, settlement_id, confirm_errors=confirm_errors, status=400)
        try:
            if action == "recompute":
                before = current.results_digest
                settlement = await settlements.recompute(session, request.user, settlement_id)
                outcome = "unchanged" if settlement.results_digest == before else "recompute"
            elif action == "approve":
                digest = text(data, "results_digest", 80).lower()
                if not re.fullmatch(r"[0-9a-f]{64}", digest):
                    raise InvalidInput("results_digest: send the results digest of the lines you reviewed")
                await settlements.approve(session, request.user, settlement_id, expected_results_digest=digest)
                outcome = "approve"
            else:
                await settlements.discard(session, request.user, settlement_id)
                outcome = "discard"
        except FacilityShareError as exc:
            await session.rollback()
            if isinstance(exc, NotFound):
                raise
            message = words.error(exc)
            if isinstance(exc, InvalidInput) and exc.message.startswith("results_digest"):
                message = words._("The page did not send the digest of the lines you reviewed; reload the page and approve again.")
            return await self._page(request, session, i18n, settlement_id, error=message,
                                    status=409 if isinstance(exc, Conflict) else error_status(exc))
        await session.commit()
        if outcome == "discard":
            return Redirect(f"{BASE}?{urlencode({'done': 'discard', 'id': settlement_id})}", status_code=303)
        return Redirect(settlement_url(settlement_id, done=outcome), status_code=303)

    @post("/{settlement_id:int}/recompute", name="finance-settlement-recompute")
    async def recompute(self, request: Request, db_session: DbSession, i18n: Lang, settlement_id: RecordId) -> Template | Redirect:
        return await self._act(request, db_session, i18n, settlement_id, "recompute")

    @post("/{settlement_id:int}/approve", name="finance-settlement-approve")
    async def approve(self, request: Request, db_session: DbSession, i18n: Lang, settlement_id: RecordId) -> Template | Redirect:
        return await self._act(request, db_session, i18n, settlement_id, "approve")

    @post("/{settlement_id:int}/discard", name="finance-settlement-discard")
    async def discard(self, request: Request, db_session: DbSession, i18n: Lang, settlement_id: RecordId) -> Template | Redirect:
        return await self._act(request, db_session, i18n, settlement_id, "discard")


__all__ = ["SettlementPages", "SettlementWords", "fen_to_yuan"]
