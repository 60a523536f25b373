"""From a finished session to its charge: quantity, customer class, lines and explanation.

Pure functions over plain values; ``services`` feeds them rows. The booking estimate and the
final charge share ``billing.pricing.price``, so a session used exactly as booked costs
exactly the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time

from facility_share.billing.pricing import ChargeLine, FeeRule, ServiceQuantity, peak_minutes, price, total

BASIS_ZH = {"hour": "小时", "sample": "样", "shift": "班", "day": "天", "setup": "次"}
CLASS_ZH = {"internal": "校内/本单位", "district": "区内企业", "external": "区外用户"}
CLASS_EN = {"internal": "internal", "district": "district enterprise", "external": "external"}


@dataclass(frozen=True, slots=True)
class PricedService:
    customer_class: str
    quantity: ServiceQuantity
    lines: list[ChargeLine]
    total_fen: int
    explanation_zh: str
    explanation_en: str


def parse_peak_hours(rows: Sequence[Sequence[object]]) -> list[tuple[int, time, time]]:
    return [(int(w), time.fromisoformat(str(a)), time.fromisoformat(str(b))) for w, a, b in rows]  # type: ignore[arg-type]


def price_service(
    rules: Sequence[FeeRule],
    klass: str,
    *,
    start: datetime,
    end: datetime,
    samples: int,
    units: int,
    booking_unit: str,
    peak_hours: Sequence[tuple[int, time, time]],
    timezone: str,
    quantity: int = 1,
) -> PricedService:
    """Price a service of [start, end) with ``samples`` and ``units`` shifts or days."""
    minutes = int((end - start).total_seconds() // 60)
    amount = ServiceQuantity(
        minutes=minutes,
        samples=samples,
        shifts=units if booking_unit == "shift" else 0,
        days=units if booking_unit == "day" else 0,
        peak_minutes=peak_minutes(start, end, peak_hours, timezone),
    )
    lines = price(rules, klass, amount)
    if quantity > 1:
        lines = [
            ChargeLine(line.label_zh, line.label_en, line.basis, line.units * quantity, line.rate_fen,
                       line.amount_fen * quantity, f"{line.explanation} × {quantity} places", line.unit_minutes)
            for line in lines
        ]
    zh = [f"按{CLASS_ZH[klass]}收费标准计费，实际使用 {minutes} 分钟"
          + (f"，样品 {samples} 个" if samples else "") + "。"]
    en = [f"Charged at the {CLASS_EN[klass]} rates for {minutes} minutes of use"
          + (f" and {samples} samples" if samples else "") + "."]
    for line in lines:
        if line.basis == "hour":
            zh.append(f"{line.label_zh}：计费 {line.units} × {line.unit_minutes} 分钟，单价 {line.rate_fen / 100:.2f} 元/小时"
                      f" = {line.amount_fen / 100:.2f} 元")
        else:
            zh.append(f"{line.label_zh}：{line.units} × {line.rate_fen / 100:.2f} 元/{BASIS_ZH[line.basis]}"
                      f" = {line.amount_fen / 100:.2f} 元")
        en.append(f"{line.label_en}: {line.explanation} = {line.amount_fen / 100:.2f} yuan")
    grand = total(lines)
    zh.append(f"合计 {grand / 100:.2f} 元。")
    en.append(f"Total {grand / 100:.2f} yuan.")
    return PricedService(klass, amount, lines, grand, "\n".join(zh), "\n".join(en))


def line_dicts(lines: Sequence[ChargeLine]) -> list[dict]:
    return [
        {"label_zh": l.label_zh, "label_en": l.label_en, "basis": l.basis, "units": l.units, "rate_fen": l.rate_fen,
         "amount_fen": l.amount_fen, "unit_minutes": l.unit_minutes, "explanation": l.explanation}
        for l in lines
    ]
