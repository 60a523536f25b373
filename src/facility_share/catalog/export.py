"""Exporting the catalogue in the field layout of the national large-instrument platform.

The national platform (and most provincial ones) publish each instrument with these fields;
keeping the same headers lets a unit re-use our export for its reporting.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from facility_share.db.models import Resource

NATIONAL_FIELDS = (
    "仪器编号",
    "分类编码",
    "分类名称",
    "中文名称",
    "英文名称",
    "型号规格",
    "主要技术指标",
    "主要功能",
    "生产厂商",
    "产地国别",
    "原值（万元）",
    "启用日期",
    "安放地址",
    "所属单位",
    "联系人",
    "联系电话",
    "电子邮箱",
    "共享模式",
    "开放机时安排",
    "参考收费标准",
)

SHARING_MODE_NAMES = {
    "staff_operated": "委托操作",
    "self_operated": "自主操作",
    "sample_testing": "送样检测",
    "workshop_rental": "车间租用",
}
WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
BASIS_ZH = {"hour": "小时", "sample": "样", "shift": "班", "day": "天", "setup": "次"}


def _yuan(fen: int) -> str:
    whole, part = divmod(fen, 100)
    return f"{whole}.{part:02d}"


def _wan_yuan(fen: int) -> str:
    """Original value in 万元 (10,000 yuan) with two decimals, as the national forms ask."""
    # Integer arithmetic, rounded half up at the second decimal of 万元 (i.e. 100 yuan).
    hundreds = (fen + 5_000) // 10_000
    whole, part = divmod(hundreds, 100)
    return f"{whole}.{part:02d}"


def _opening(resource: Resource) -> str:
    by_day: dict[int, list[str]] = {}
    for h in resource.opening_hours:
        closes = "24:00" if (h.closes.hour, h.closes.minute) == (0, 0) else f"{h.closes:%H:%M}"
        by_day.setdefault(h.weekday, []).append(f"{h.opens:%H:%M}-{closes}")
    parts = [f"{WEEKDAYS_ZH[d]} {'、'.join(ranges)}" for d, ranges in sorted(by_day.items())]
    if resource.working_calendar:
        parts.append("法定节假日除外，调休工作日开放")
    return "；".join(parts)


def _fees(resource: Resource) -> str:
    return "；".join(
        f"{f.label_zh}：校内/本单位 {_yuan(f.internal_fen)} 元/{BASIS_ZH[f.basis]}，"
        f"区内企业 {_yuan(f.district_fen)} 元/{BASIS_ZH[f.basis]}，区外 {_yuan(f.external_fen)} 元/{BASIS_ZH[f.basis]}"
        for f in resource.fee_items
    )


def national_rows(resources: Sequence[Resource]) -> list[dict[str, str]]:
    rows = []
    for r in resources:
        contact_name = r.contact_name or r.unit.contact_name
        rows.append(
            {
                "仪器编号": r.code,
                "分类编码": r.category.code,
                "分类名称": r.category.name_zh,
                "中文名称": r.name_zh,
                "英文名称": r.name_en,
                "型号规格": r.model,
                "主要技术指标": r.specs_zh,
                "主要功能": r.functions_zh,
                "生产厂商": r.maker,
                "产地国别": r.country,
                "原值（万元）": _wan_yuan(r.original_value_fen),
                "启用日期": r.commissioned_on.isoformat() if r.commissioned_on else "",
                "安放地址": r.location_zh,
                "所属单位": r.unit.name_zh,
                "联系人": contact_name,
                "联系电话": r.contact_phone or r.unit.contact_phone,
                "电子邮箱": r.contact_email or r.unit.contact_email,
                "共享模式": "、".join(SHARING_MODE_NAMES.get(m, m) for m in r.sharing_modes or [])
                + ("" if r.open_for_sharing else "（暂不对外开放）"),
                "开放机时安排": _opening(r),
                "参考收费标准": _fees(r),
            }
        )
    return rows


def to_csv(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    # The BOM makes Excel on Chinese Windows open UTF-8 CSV correctly.
    buffer.write("\ufeff")
    writer = csv.DictWriter(buffer, fieldnames=NATIONAL_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_json(rows: list[dict[str, str]]) -> str:
    return json.dumps(rows, ensure_ascii=False, indent=2)
