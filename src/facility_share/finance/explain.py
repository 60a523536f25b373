"""Readable explanations of settlement lines, in Chinese and English.

A subsidy or award line carries its steps (``{"rule": ..., "values": {...}}``); this module
renders them with one message template per rule and language, one numbered sentence per step.
Amounts ending in ``_fen`` are shown in yuan with two decimals (exact sub-fen amounts keep
their extra digits), so finance reads the same numbers the computation used.

A step with a rule this module does not know (a newer computation read by an older program)
is still shown, as its rule and values, rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

# Enterprise classes (the policy file may give longer names; these are the short ones).
CLASS_LABELS: dict[str, tuple[str, str]] = {
    "eaglet": ("雏鹰企业", "Eaglet enterprise"),
    "tech_sme": ("科技型中小企业", "Tech SME"),
    "gazelle": ("瞪羚企业", "Gazelle enterprise"),
    "leader_candidate": ("领军培育企业", "Tech leader candidate"),
    "leader": ("科技领军企业", "Tech leader"),
    "none": ("无适用类别", "No eligible class"),
}

# Line flags and exclusion reasons. The English labels are also message ids in finance.po,
# whose Chinese is the same as here (a test keeps them equal).
FLAG_LABELS: dict[str, tuple[str, str]] = {
    "not_registered": ("未在本区注册", "Not registered in the district"),
    "not_verified": ("未经平台认证", "Not verified by the platform"),
    "class_not_eligible": ("企业类别不在补贴范围", "Enterprise class not eligible"),
    "internal_use": ("本单位内部使用", "Internal use of the unit"),
    "related_party": ("关联方使用", "Related party"),
    "resource_not_open": ("仪器未开放共享", "Resource not open for sharing"),
    "nothing_paid": ("扣除退款后无实付金额", "Nothing paid net of refunds"),
    "no_eligible_spend": ("无符合条件的支出", "No eligible spend"),
    "annual_cap": ("达到年度上限", "Annual cap reached"),
    "controller_cap": ("达到同一实际控制人共享上限", "Shared controller cap reached"),
    "below_minimum": ("低于最低申领额", "Below the minimum claim"),
    "budget_scaled": ("按预算比例缩减", "Scaled to the budget"),
    "no_open_resources": ("无开放共享仪器", "No resources open for sharing"),
    "no_ratings": ("本期无用户评价", "No ratings in the period"),
    "award_cap": ("达到单位年度奖励上限", "Unit's annual award cap reached"),
    "rectification": ("责令整改", "Rectification required"),
}

_ZH = 0
_EN = 1

# rule → (Chinese, English); "rule:applied" is used instead when the step's ``applied`` is true.
TEMPLATES: dict[str, tuple[str, str]] = {
    # --- subsidy ---
    "charges": (
        "本期服务费用 {charges} 笔，扣除退款后实付合计 {net_paid_fen} 元；符合条件 {eligible} 笔，不计入 {excluded} 笔。",
        "Charges for services in the period: {charges}, {net_paid_fen} yuan paid net of refunds; "
        "eligible: {eligible}, not counted: {excluded}.",
    ),
    "excluded": (
        "不计入（{reason}）：{charges} 笔，实付 {net_paid_fen} 元（费用编号 {charge_ids}）。",
        "Not counted ({reason}): charges: {charges}, {net_paid_fen} yuan paid (charge ids {charge_ids}).",
    ),
    "no_eligible_spend": (
        "没有符合条件的支出，补贴为 0.00 元。",
        "No eligible spend: the subsidy is 0.00 yuan.",
    ),
    "rate": (
        "{class}：{charges} 笔，符合条件支出 {spend_fen} 元 × 补贴比例 {rate_percent}% = {subsidy_exact_fen} 元。",
        "{class} (charges: {charges}): eligible spend {spend_fen} yuan × rate {rate_percent}% = "
        "{subsidy_exact_fen} yuan.",
    ),
    "rounding": (
        "符合条件支出合计 {eligible_spend_fen} 元，补贴合计 {exact_fen} 元，四舍五入到分为 {amount_fen} 元。",
        "Eligible spend {eligible_spend_fen} yuan in all; subsidy {exact_fen} yuan, rounded half up to the fen: "
        "{amount_fen} yuan.",
    ),
    "annual_cap": (
        "年度上限：按 {as_of} 的类别（{class}）为 {cap_fen} 元，本年度已核定 {granted_this_year_fen} 元，尚余 "
        "{remaining_fen} 元；{before_fen} 元未超出，不变。",
        "Annual cap of the class on {as_of} ({class}): {cap_fen} yuan, {granted_this_year_fen} yuan already granted "
        "this year, {remaining_fen} yuan left; {before_fen} yuan is within it, unchanged.",
    ),
    "annual_cap:applied": (
        "年度上限：按 {as_of} 的类别（{class}）为 {cap_fen} 元，本年度已核定 {granted_this_year_fen} 元，尚余 "
        "{remaining_fen} 元；{before_fen} 元封顶为 {after_fen} 元。",
        "Annual cap of the class on {as_of} ({class}): {cap_fen} yuan, {granted_this_year_fen} yuan already granted "
        "this year, {remaining_fen} yuan left; {before_fen} yuan is capped to {after_fen} yuan.",
    ),
    "controller_cap": (
        "同一实际控制人（{controller}）名下企业 {members} 共享上限 {cap_fen} 元，本年度已核定 "
        "{granted_this_year_fen} 元，尚余 {remaining_fen} 元；本组合计 {group_total_fen} 元未超出，"
        "本企业 {before_fen} 元不变。",
        "Enterprises under one actual controller ({controller}): {members} share a cap of {cap_fen} yuan, "
        "{granted_this_year_fen} yuan already granted this year, {remaining_fen} yuan left; the group's "
        "{group_total_fen} yuan is within it, so {before_fen} yuan is unchanged.",
    ),
    "controller_cap:applied": (
        "同一实际控制人（{controller}）名下企业 {members} 共享上限 {cap_fen} 元，本年度已核定 "
        "{granted_this_year_fen} 元，尚余 {remaining_fen} 元；本组合计 {group_total_fen} 元超出，"
        "按比例分配（最大余额法）：{before_fen} 元 → {after_fen} 元。",
        "Enterprises under one actual controller ({controller}): {members} share a cap of {cap_fen} yuan, "
        "{granted_this_year_fen} yuan already granted this year, {remaining_fen} yuan left; the group's "
        "{group_total_fen} yuan exceeds it and is shared pro rata (largest remainder): "
        "{before_fen} → {after_fen} yuan.",
    ),
    "minimum_claim": (
        "最低申领额 {minimum_fen} 元：{before_fen} 元不低于最低额，不变。",
        "Minimum claim {minimum_fen} yuan: {before_fen} yuan reaches it, unchanged.",
    ),
    "minimum_claim:applied": (
        "最低申领额 {minimum_fen} 元：{before_fen} 元低于最低额，不予补贴（0.00 元）。",
        "Minimum claim {minimum_fen} yuan: {before_fen} yuan is below it, so nothing is paid (0.00 yuan).",
    ),
    # --- award ---
    "score_organisation": (
        "组织管理：开放共享 {resources_open} / 全部 {resources_total} 台（套）× {weight} 分 = {points} 分。",
        "Organisation: {resources_open} of {resources_total} resources open × {weight} points = {points} points.",
    ),
    "score_no_open_resources": (
        "没有开放共享的仪器：运行使用与开放共享各项（共 {weight} 分）均为 0 分。",
        "No resources open for sharing: the operation and sharing parts ({weight} points) score 0.",
    ),
    "score_operation": (
        "运行使用：有效机时 {effective_hours} 小时 ÷ 开放仪器 {resources_open} 台 = 平均 {average_hours} 小时；"
        "基准 {benchmark_year_hours} 小时 × {days}/365 = {benchmark_hours} 小时；得分 {points} 分（满分 {weight} 分）。",
        "Operation: {effective_hours} effective hours ÷ {resources_open} open resources = {average_hours} h on "
        "average; benchmark {benchmark_year_hours} h × {days}/365 = {benchmark_hours} h; {points} of {weight} points.",
    ),
    "score_sharing_hours": (
        "对外服务机时：{external_hours} 小时 ÷ 开放仪器 {resources_open} 台 = 平均 {average_hours} 小时；"
        "基准 {benchmark_year_hours} 小时 × {days}/365 = {benchmark_hours} 小时；得分 {points} 分（满分 {weight} 分）。",
        "External hours: {external_hours} h ÷ {resources_open} open resources = {average_hours} h on average; "
        "benchmark {benchmark_year_hours} h × {days}/365 = {benchmark_hours} h; {points} of {weight} points.",
    ),
    "score_sharing_rate": (
        "共享率：对外机时 {external_hours} ÷ 有效机时 {effective_hours} = {rate_percent}%，基准 {benchmark_percent}%；"
        "得分 {points} 分（满分 {weight} 分）。",
        "Sharing rate: {external_hours} external ÷ {effective_hours} effective hours = {rate_percent}%, "
        "benchmark {benchmark_percent}%; {points} of {weight} points.",
    ),
    "score_enterprises": (
        "服务企业：{enterprises} 家；基准 {benchmark_year} 家 × {days}/365 = {benchmark} 家；得分 {points} 分（满分 {weight} 分）。",
        "Enterprises served: {enterprises}; benchmark {benchmark_year} × {days}/365 = {benchmark}; "
        "{points} of {weight} points.",
    ),
    "score_rating": (
        "用户评价：{ratings} 条，平均 {average} 分（{scale_min}–{scale_max} 分制）；得分 {points} 分（满分 {weight} 分）。",
        "Ratings: {ratings}, averaging {average} on a {scale_min}–{scale_max} scale; {points} of {weight} points.",
    ),
    "score_no_ratings": (
        "本期没有用户评价：评价项计 {points} 分。",
        "No ratings in the period: the rating part counts {points} points.",
    ),
    "score": (
        "总分 {exact} 分，四舍五入保留两位小数为 {score} 分。",
        "Total {exact} points, rounded half up to two decimals: {score}.",
    ),
    "grade": (
        "评价等级：{grade_zh}（{min_score} 分及以上），奖励系数 {multiplier}。",
        "Grade: {grade_en} ({min_score} points or more), award multiplier {multiplier}.",
    ),
    "award_base": (
        "奖励基数：对外服务收入 {external_income_fen} 元 × {rate_percent}% = {base_exact_fen} 元。",
        "Award base: external service income {external_income_fen} yuan × {rate_percent}% = {base_exact_fen} yuan.",
    ),
    "award_cap": (
        "单位年度奖励上限 {cap_fen} 元，本年度已奖励 {awarded_this_year_fen} 元，尚余 {remaining_fen} 元；"
        "{before_exact_fen} 元未超出，不变。",
        "Annual award cap per unit {cap_fen} yuan, {awarded_this_year_fen} yuan already awarded this year, "
        "{remaining_fen} yuan left; {before_exact_fen} yuan is within it, unchanged.",
    ),
    "award_cap:applied": (
        "单位年度奖励上限 {cap_fen} 元，本年度已奖励 {awarded_this_year_fen} 元，尚余 {remaining_fen} 元；"
        "{before_exact_fen} 元封顶为 {after_exact_fen} 元。",
        "Annual award cap per unit {cap_fen} yuan, {awarded_this_year_fen} yuan already awarded this year, "
        "{remaining_fen} yuan left; {before_exact_fen} yuan is capped to {after_exact_fen} yuan.",
    ),
    "grade_multiplier": (
        "{before_exact_fen} 元 × 等级系数 {multiplier} = {exact_fen} 元，四舍五入到分为 {amount_fen} 元。",
        "{before_exact_fen} yuan × grade multiplier {multiplier} = {exact_fen} yuan, rounded half up to the fen: "
        "{amount_fen} yuan.",
    ),
    "rectification": (
        "评价等级为“{grade_zh}”：不予奖励（0.00 元），并责令整改。",
        "Grade {grade_en}: no award (0.00 yuan), and the unit must rectify.",
    ),
    # --- both ---
    "budget": (
        "本期预算 {budget_fen} 元，全部明细合计 {total_before_fen} 元，未超出预算：{before_fen} 元不变。",
        "Budget of the period {budget_fen} yuan; all lines total {total_before_fen} yuan, within the budget: "
        "{before_fen} yuan unchanged.",
    ),
    "budget:applied": (
        "本期预算 {budget_fen} 元，全部明细合计 {total_before_fen} 元，超出预算，各项按比例缩减"
        "（最大余额法，合计恰等于预算）：{before_fen} 元 → {after_fen} 元。",
        "Budget of the period {budget_fen} yuan; all lines total {total_before_fen} yuan, above the budget, so "
        "every line is scaled pro rata (largest remainder, summing exactly to the budget): "
        "{before_fen} → {after_fen} yuan.",
    ),
    "result": (
        "核定金额：{amount_fen} 元。",
        "Amount: {amount_fen} yuan.",
    ),
}


def _yuan(value: Any) -> str:
    """Fen (an integer, or exact decimal text) → yuan with a thousands separator and at
    least two decimals: 1234567 → "12,345.67", "12345.5" → "123.455"."""
    if type(value) is int:  # the common case, without Decimal: the same text
        sign = "-" if value < 0 else ""
        whole, cents = divmod(abs(value), 100)
        return f"{sign}{whole:,}.{cents:02d}"
    try:
        amount = Decimal(str(value)) / 100
    except InvalidOperation:
        return str(value)
    text = format(amount, ",f")
    whole, _, decimals = text.partition(".")
    decimals = decimals.rstrip("0")
    return f"{whole}.{decimals.ljust(2, '0')}"


def class_label(klass: str, locale: str = "zh_CN") -> str:
    """A subsidy class key in the locale's words (the key itself if unknown)."""
    labels = CLASS_LABELS.get(klass)
    return labels[_lang(locale)] if labels else klass


def flag_label(flag: str, locale: str = "zh_CN") -> str:
    """A line flag or exclusion reason in the locale's words (the flag itself if unknown)."""
    labels = FLAG_LABELS.get(flag)
    return labels[_lang(locale)] if labels else flag


def _lang(locale: str) -> int:
    return _ZH if locale.lower().startswith("zh") else _EN


def _view(values: Mapping[str, Any], lang: int, class_names: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    view: dict[str, str] = {}
    separator = "、" if lang == _ZH else ", "
    for key, value in values.items():
        if key.endswith("_fen") and not isinstance(value, bool):
            view[key] = _yuan(value)
        elif key == "class":
            names = class_names.get(str(value)) or CLASS_LABELS.get(str(value))
            view[key] = names[lang] if names else str(value)
        elif key == "reason":
            view[key] = flag_label(str(value), "zh_CN" if lang == _ZH else "en")
        elif isinstance(value, list | tuple):
            view[key] = separator.join(str(v) for v in value)
        else:
            view[key] = str(value)
    return view


def render_step(step: Mapping[str, Any], locale: str = "zh_CN", *,
                class_names: Mapping[str, tuple[str, str]] | None = None) -> str:
    """One step as a sentence in the locale (``zh_CN`` or ``en``)."""
    lang = _lang(locale)
    rule = str(step.get("rule", ""))
    values = step.get("values") or {}
    template = None
    if values.get("applied") is True:
        template = TEMPLATES.get(f"{rule}:applied")
    template = template or TEMPLATES.get(rule)
    view = _view(values, lang, class_names or {})
    if template is not None:
        try:
            return template[lang].format(**view)
        except (KeyError, IndexError):
            pass
    details = ", ".join(f"{key}={text}" for key, text in view.items())
    return f"{rule}: {details}" if details else rule


def explain(steps: Iterable[Mapping[str, Any]], locale: str = "zh_CN", *,
            class_names: Mapping[str, tuple[str, str]] | None = None) -> str:
    """A line's steps as numbered sentences, one per line of text.

    ``class_names`` (class → (Chinese, English)) may give the policy's own class names.
    """
    return "\n".join(f"{number}. {render_step(step, locale, class_names=class_names)}"
                     for number, step in enumerate(steps, start=1))


def _views(values: Mapping[str, Any], class_names: Mapping[str, tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """``_view`` in Chinese and in English at once: the texts that do not depend on the
    language are made once and shared."""
    zh: dict[str, str] = {}
    en: dict[str, str] = {}
    for key, value in values.items():
        if key.endswith("_fen") and not isinstance(value, bool):
            zh[key] = en[key] = _yuan(value)
        elif key == "class":
            names = class_names.get(str(value)) or CLASS_LABELS.get(str(value))
            zh[key], en[key] = (names[_ZH], names[_EN]) if names else (str(value), str(value))
        elif key == "reason":
            zh[key], en[key] = flag_label(str(value), "zh_CN"), flag_label(str(value), "en")
        elif isinstance(value, list | tuple):
            texts = [str(v) for v in value]
            zh[key], en[key] = "、".join(texts), ", ".join(texts)
        else:
            zh[key] = en[key] = value if type(value) is str else str(value)
    return zh, en


def _render(rule: str, template: tuple[str, str] | None, view: dict[str, str], lang: int) -> str:
    if template is not None:
        try:
            return template[lang].format(**view)
        except (KeyError, IndexError):
            pass
    details = ", ".join(f"{key}={text}" for key, text in view.items())
    return f"{rule}: {details}" if details else rule


def explain_both(steps: Iterable[Mapping[str, Any]], *,
                 class_names: Mapping[str, tuple[str, str]] | None = None) -> tuple[str, str]:
    """``(explain(steps, "zh_CN"), explain(steps, "en"))``, in one pass over the steps."""
    names = class_names or {}
    zh_lines: list[str] = []
    en_lines: list[str] = []
    for number, step in enumerate(steps, start=1):
        rule = str(step.get("rule", ""))
        values = step.get("values") or {}
        template = None
        if values.get("applied") is True:
            template = TEMPLATES.get(f"{rule}:applied")
        template = template or TEMPLATES.get(rule)
        zh, en = _views(values, names)
        zh_lines.append(f"{number}. {_render(rule, template, zh, _ZH)}")
        en_lines.append(f"{number}. {_render(rule, template, en, _EN)}")
    return "\n".join(zh_lines), "\n".join(en_lines)


def explain_zh(steps: Iterable[Mapping[str, Any]], **options: Any) -> str:
    """The steps in Chinese."""
    return explain(steps, "zh_CN", **options)


def explain_en(steps: Iterable[Mapping[str, Any]], **options: Any) -> str:
    """The steps in English."""
    return explain(steps, "en", **options)


def policy_class_names(policy: Any) -> dict[str, tuple[str, str]]:
    """Class → (Chinese, English) names as a policy version states them."""
    return {key: (rule.name_zh, rule.name_en) for key, rule in policy.subsidy.classes.items()}


def explain_subsidy(line: Any, locale: str = "zh_CN", policy: Any = None) -> str:
    """A subsidy line's explanation; with the policy, classes carry the policy's own names."""
    names = policy_class_names(policy) if policy is not None else None
    return explain(line.steps, locale, class_names=names)


def explain_award(line: Any, locale: str = "zh_CN", policy: Any = None) -> str:
    """An award line's explanation (the grade names travel in its steps)."""
    return explain(line.steps, locale)
