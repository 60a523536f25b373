"""The catalogue files: the shipped catalogue is valid and rich enough; every kind of defect
is reported with its file, record and field."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

from facility_share.catalog.files import load_catalog
from facility_share.catalog.records import expand_days, parse_interval, yuan_to_fen
from facility_share.errors import CatalogInvalid

CATEGORIES = """\
- code: "01"
  name_zh: 分析仪器
  name_en: Analytical instruments
  children:
    - {code: "0105", name_zh: 色谱仪器, name_en: Chromatographs}
- code: "90"
  name_zh: 共享制造车间
  name_en: Shared manufacturing workshops
  children:
    - {code: "9002", name_zh: 精密机械加工车间, name_en: Precision machining workshops}
"""

UNIT = """\
unit:
  code: WQ-TEST
  name_zh: 测试单位
  name_en: Test unit
  kind: institute
  uscc: 1212022252601815J4
defaults:
  opening_hours:
    mon-fri: ["08:30-12:00", "13:30-17:30"]
resources:
  - code: WQ-TEST-GC01
    kind: instrument
    category: "0105"
    name_zh: 气相色谱仪
    name_en: Gas chromatograph
    model: 7890B
    original_value: 650000
    fees:
      - {basis: sample, label_zh: 每样, label_en: Per sample, internal: 80, district: 150, external: 200}
  - code: WQ-TEST-CNC
    kind: workshop
    category: "9002"
    name_zh: 数控加工车间
    name_en: CNC workshop
    capacity: 4
    opening_hours:
      daily: ["08:00-24:00"]
    booking:
      unit: shift
      slot_minutes: 480
      min_minutes: 480
      max_minutes: 960
      shifts:
        - {code: day, name_zh: 白班, name_en: Day, hours: "08:00-16:00"}
    fees:
      - {basis: shift, label_zh: 每班, label_en: Per shift, internal: 800, district: 1200, external: 1600}
    lines:
      - {code: WQ-TEST-CNC-L1, name_zh: 一号线, name_en: Line 1}
"""


def write_catalog(root: Path, unit_text: str = UNIT, categories: str = CATEGORIES, name: str = "WQ-TEST") -> Path:
    (root / "units").mkdir(parents=True, exist_ok=True)
    (root / "categories.yaml").write_text(categories, encoding="utf-8")
    (root / "units" / f"{name}.yaml").write_text(unit_text, encoding="utf-8")
    return root


def problems_of(root: Path) -> list:
    with pytest.raises(CatalogInvalid) as caught:
        load_catalog(root)
    return caught.value.problems


def test_shipped_catalogue_is_valid_and_realistic(loaded_catalog) -> None:
    kinds = Counter(r.kind for r in loaded_catalog.resources)
    instruments = [r for r in loaded_catalog.resources if r.kind == "instrument"]
    assert len(loaded_catalog.units) >= 8
    assert kinds["instrument"] >= 40
    assert kinds["workshop"] >= 4
    assert len({r.category for r in instruments}) >= 8
    assert {u.kind for u in loaded_catalog.units} >= {"university", "institute", "enterprise", "incubator", "pilot_base"}
    # Mostly "large" instruments: original value of at least 500,000 yuan.
    large = [r for r in instruments if r.original_value >= 500_000_00]
    assert len(large) / len(instruments) >= 0.8
    # Workshops are booked by shift or day and have several bays or lines.
    for workshop in (r for r in loaded_catalog.resources if r.kind == "workshop"):
        lines = [r for r in loaded_catalog.resources if r.parent == workshop.code]
        assert workshop.booking.unit in ("shift", "day"), workshop.code
        assert workshop.capacity > 1 or len(lines) > 1, workshop.code
    # Every resource has names in both languages.
    assert all(r.name_zh and r.name_en for r in loaded_catalog.resources)


def test_minimal_catalogue_loads_with_line_inheritance(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path))
    by_code = {r.code: r for r in catalog.resources}
    line = by_code["WQ-TEST-CNC-L1"]
    assert line.kind == "line" and line.parent == "WQ-TEST-CNC"
    assert line.category == "9002" and line.booking.unit == "shift"
    assert line.fees == by_code["WQ-TEST-CNC"].fees
    assert by_code["WQ-TEST-GC01"].original_value == 65_000_000  # fen
    assert by_code["WQ-TEST-GC01"].timezone == "Asia/Shanghai"
    assert catalog.resource_units["WQ-TEST-CNC-L1"] == "WQ-TEST"


# Each case: (description, how to break the unit file, expected record, expected field fragment, message fragment)
BREAKAGES = [
    ("bad YAML", lambda t: t.replace("kind: institute", "kind: [institute"), "", "", "not valid YAML"),
    ("unknown category", lambda t: t.replace('category: "0105"', 'category: "0199"'), "WQ-TEST-GC01", "category", "unknown category"),
    ("negative fee", lambda t: t.replace("internal: 80", "internal: -80"), "WQ-TEST-GC01", "fees[0].internal", "negative"),
    ("fee finer than a fen", lambda t: t.replace("internal: 80", "internal: 80.005"), "WQ-TEST-GC01", "fees[0].internal", "fen"),
    ("bad timezone", lambda t: t.replace("    model: 7890B", "    model: 7890B\n    timezone: Asia/Beijing"), "WQ-TEST-GC01", "timezone", "unknown IANA timezone"),
    ("overlapping opening hours", lambda t: t.replace('["08:30-12:00", "13:30-17:30"]', '["08:30-12:00", "11:30-17:30"]'), "WQ-TEST-GC01", "opening_hours", "overlap"),
    ("opening interval ends before it starts", lambda t: t.replace('"13:30-17:30"', '"17:30-13:30"'), "WQ-TEST-GC01", "opening_hours", "after the start"),
    ("unknown weekday", lambda t: t.replace("mon-fri:", "mon-fry:"), "WQ-TEST-GC01", "opening_hours", "unknown day"),
    ("unknown field", lambda t: t.replace("    model: 7890B", "    modle: 7890B"), "WQ-TEST-GC01", "modle", "unknown field"),
    ("missing English name", lambda t: t.replace("    name_en: Gas chromatograph\n", ""), "WQ-TEST-GC01", "name_en", "missing"),
    ("unknown resource kind", lambda t: t.replace("kind: instrument", "kind: robot"), "WQ-TEST-GC01", "kind", "instrument"),
    ("zero capacity", lambda t: t.replace("capacity: 4", "capacity: 0"), "WQ-TEST-CNC", "capacity", "greater than or equal to 1"),
    ("bad USCC check digit", lambda t: t.replace("1212022252601815J4", "1212022252601815J5"), "WQ-TEST", "unit.uscc", "统一社会信用代码"),
    ("unknown unit kind", lambda t: t.replace("kind: institute", "kind: ministry"), "WQ-TEST", "unit.kind", "university"),
    ("shift booking without shifts", lambda t: t.replace("      shifts:\n        - {code: day, name_zh: 白班, name_en: Day, hours: \"08:00-16:00\"}\n", ""), "WQ-TEST-CNC", "booking", "shifts"),
    ("no fees", lambda t: t.replace("    fees:\n      - {basis: sample, label_zh: 每样, label_en: Per sample, internal: 80, district: 150, external: 200}\n", ""), "WQ-TEST-GC01", "", "fee schedule"),
    ("unknown fee basis", lambda t: t.replace("basis: sample", "basis: minute"), "WQ-TEST-GC01", "fees[0].basis", "hour"),
    ("lines on an instrument", lambda t: t.replace("    original_value: 650000\n", "    original_value: 650000\n    lines: [{code: WQ-TEST-X1, name_zh: x, name_en: x}]\n"), "WQ-TEST-GC01", "lines", "only a workshop"),
    ("bad commission date", lambda t: t.replace("    model: 7890B", "    model: 7890B\n    commissioned_on: 2019-13-45"), "WQ-TEST-GC01", "commissioned_on", "date"),
    ("bad resource code", lambda t: t.replace("code: WQ-TEST-GC01", "code: wq test gc"), "wq test gc", "code", "pattern"),
]


@pytest.mark.parametrize(("what", "breaker", "record", "field", "message"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_each_defect_names_file_record_and_field(tmp_path: Path, what, breaker, record, field, message) -> None:
    root = write_catalog(tmp_path, breaker(UNIT))
    problems = problems_of(root)
    assert problems, what
    matching = [p for p in problems if p.file == "units/WQ-TEST.yaml" and p.record == record and field in p.field]
    assert matching, f"{what}: no problem for {record}/{field} in {[str(p) for p in problems]}"
    assert any(message.lower() in p.message.lower() for p in matching), [str(p) for p in matching]


def test_duplicate_codes_across_files(tmp_path: Path) -> None:
    root = write_catalog(tmp_path)
    second = UNIT.replace("code: WQ-TEST\n", "code: WQ-TEST2\n")
    (root / "units" / "WQ-TEST2.yaml").write_text(second, encoding="utf-8")
    problems = problems_of(root)
    duplicates = [p for p in problems if "duplicate resource code" in p.message]
    assert {p.record for p in duplicates} == {"WQ-TEST-GC01", "WQ-TEST-CNC", "WQ-TEST-CNC-L1"}
    assert all(p.file == "units/WQ-TEST2.yaml" and "units/WQ-TEST.yaml" in p.message for p in duplicates)


def test_file_named_for_another_unit(tmp_path: Path) -> None:
    problems = problems_of(write_catalog(tmp_path, name="WQ-OTHER"))
    assert any(p.file == "units/WQ-OTHER.yaml" and p.field == "unit.code" and "WQ-TEST" in p.message for p in problems)


def test_category_with_unknown_parent_and_duplicate(tmp_path: Path) -> None:
    categories = CATEGORIES + '- {code: "0105", name_zh: 重复, name_en: Dup}\n'
    problems = problems_of(write_catalog(tmp_path, categories=categories))
    assert any(p.file == "categories.yaml" and p.record == "0105" and "duplicate" in p.message for p in problems)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    broken = UNIT.replace("internal: 80", "internal: -80").replace("capacity: 4", "capacity: 0")
    problems = problems_of(write_catalog(tmp_path, broken))
    assert {p.record for p in problems} >= {"WQ-TEST-GC01", "WQ-TEST-CNC"}


def test_not_a_folder_and_empty_folder(tmp_path: Path) -> None:
    assert "not a folder" in problems_of(tmp_path / "missing")[0].message
    (tmp_path / "empty").mkdir()
    messages = " ".join(p.message for p in problems_of(tmp_path / "empty"))
    assert "categories.yaml" in " ".join(p.file for p in problems_of(tmp_path / "empty")) and "no unit files" in messages


def test_closure_local_times_become_utc(tmp_path: Path) -> None:
    text = UNIT.replace(
        "    model: 7890B",
        '    model: 7890B\n    closures:\n      - {from: "2027-01-04T08:00", to: "2027-01-04T12:00", reason: 维护}',
    )
    gc = next(r for r in load_catalog(write_catalog(tmp_path, text)).resources if r.code == "WQ-TEST-GC01")
    assert gc.closures[0].starts_at.isoformat() == "2027-01-04T00:00:00+00:00"


@pytest.mark.parametrize(
    ("value", "fen"), [(0, 0), (1, 100), ("85.50", 8550), (85.5, 8550), (1250000, 125_000_000), ("1,200.05", 120005), (0.1, 10)]
)
def test_yuan_to_fen_is_exact(value, fen) -> None:
    assert yuan_to_fen(value) == fen


@pytest.mark.parametrize("value", [-1, "abc", "1.001", True, float("nan"), float("inf")])
def test_yuan_to_fen_refuses(value) -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(value)


def test_interval_and_day_parsing() -> None:
    assert expand_days("mon-fri") == [0, 1, 2, 3, 4]
    assert expand_days("sat,sun") == [5, 6]
    assert expand_days("daily") == list(range(7))
    start, end = parse_interval("08:00-24:00")
    assert (start.hour, end.hour, end.minute) == (8, 0, 0)
    for bad in ("8-9", "09:00-08:00", "24:30-25:00", "09:00"):
        with pytest.raises(ValueError):
            parse_interval(bad)
    assert textwrap.dedent("x") == "x"
