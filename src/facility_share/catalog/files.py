"""Reading the catalogue folder: YAML files in, a validated ``Catalog`` or a list of problems out.

Layout of the folder::

    categories.yaml          the classification tree
    units/<UNIT-CODE>.yaml   one file per managing unit: ``unit``, optional ``defaults``
                             for its resources, and ``resources`` (workshops may list ``lines``)

Every problem names the file, the record (unit or resource code) and the field, and says what
is expected. All problems are collected, not just the first, so one run of ``catalog validate``
shows an editor everything to fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import ValidationError

from facility_share.catalog.records import (
    SCHEMA_VERSION,
    Catalog,
    KnownFile,
    CategoryRecord,
    ClosureRecord,
    ResourceRecord,
    UnitRecord,
)
from facility_share.errors import CatalogInvalid, Problem

# Fields a workshop passes on to its lines unless a line sets them itself.
INHERITED_BY_LINES = (
    "category",
    "timezone",
    "location_zh",
    "location_en",
    "open_for_sharing",
    "rated_hours_per_year",
    "sharing_modes",
    "contact_name",
    "contact_phone",
    "contact_email",
    "booking",
    "opening_hours",
    "fees",
    "peak_hours",
    "no_show_fee",
    "checkin_grace_minutes",
    "no_show_grace_minutes",
    "maker",
    "country",
)


# libyaml's parser when PyYAML was built with it (the wheels are): several times faster.
_SafeLoaderBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoaderBase):  # type: ignore[misc,valid-type]
    """YAML without implicit timestamps: dates stay text until the schema checks them, so a
    bad date is reported against its field instead of failing the whole file."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _field_path(loc: Iterable[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def _problems_from(error: ValidationError, file: str, record: str, prefix: str = "") -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        field = _field_path(loc)
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field; check the spelling against catalog/README.md"
        elif item["type"] == "missing":
            message = "required field is missing"
        problems.append(Problem(file, record, field, message))
    return problems


def _read_yaml(path: Path, root: Path, problems: list[Problem]) -> Any:
    name = str(path.relative_to(root))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(name, "", "", "is not UTF-8 text; save it as UTF-8"))
        return None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(name, "", "", f"is not valid YAML{where}: {problem}"))
        return None


def _to_utc(closure: ClosureRecord, tz: str) -> ClosureRecord:
    """Closures written without an offset are local times of the resource."""
    zone = ZoneInfo(tz)

    def fix(value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)

    return closure.model_copy(update={"starts_at": fix(closure.starts_at), "ends_at": fix(closure.ends_at)})


def _load_categories(root: Path, problems: list[Problem]) -> list[CategoryRecord]:
    path = root / "categories.yaml"
    if not path.exists():
        problems.append(Problem("categories.yaml", "", "", "is missing; the catalogue needs its classification tree"))
        return []
    data = _read_yaml(path, root, problems)
    if data is None:
        return []
    if not isinstance(data, list):
        problems.append(Problem("categories.yaml", "", "", "expected a list of top-level categories"))
        return []
    records: list[CategoryRecord] = []

    def walk(items: list[Any], parent: str | None, level: int, trail: str) -> None:
        for index, item in enumerate(items):
            where = f"{trail}[{index}]"
            if not isinstance(item, dict):
                problems.append(Problem("categories.yaml", where, "", "expected a mapping with code, name_zh, name_en"))
                continue
            children = item.get("children") or []
            fields = {k: v for k, v in item.items() if k != "children"}
            code = str(fields.get("code", where))
            try:
                records.append(
                    CategoryRecord.model_validate({**fields, "parent": parent, "level": level, "position": index})
                )
            except ValidationError as exc:
                problems.extend(_problems_from(exc, "categories.yaml", code))
                continue
            if not isinstance(children, list):
                problems.append(Problem("categories.yaml", code, "children", "expected a list of categories"))
                continue
            walk(children, code, level + 1, f"{code}.children")

    walk(data, None, 1, "")
    return records


def _unit_file(
    path: Path, root: Path, problems: list[Problem]
) -> tuple[UnitRecord | None, list[tuple[ResourceRecord, str]]]:
    name = str(path.relative_to(root))
    data = _read_yaml(path, root, problems)
    if data is None:
        return None, []
    if not isinstance(data, Mapping) or "unit" not in data:
        problems.append(Problem(name, "", "unit", "expected a top-level 'unit' mapping and a 'resources' list"))
        return None, []
    unknown = set(data) - {"unit", "defaults", "resources"}
    for key in sorted(unknown):
        problems.append(Problem(name, "", key, "unknown top-level key; expected unit, defaults, resources"))

    unit: UnitRecord | None = None
    raw_unit = data["unit"]
    unit_code = str(raw_unit.get("code", "unit")) if isinstance(raw_unit, Mapping) else "unit"
    try:
        unit = UnitRecord.model_validate(raw_unit)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, name, unit_code, "unit"))

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        problems.append(Problem(name, "", "defaults", "expected a mapping of resource fields"))
        defaults = {}
    resources_raw = data.get("resources") or []
    if not isinstance(resources_raw, list):
        problems.append(Problem(name, "", "resources", "expected a list of resources"))
        return unit, []

    unit_tz = unit.timezone if unit else "Asia/Shanghai"
    out: list[tuple[ResourceRecord, str]] = []

    def build(raw: Mapping[str, Any], where: str) -> ResourceRecord | None:
        code = str(raw.get("code") or where)
        try:
            record = ResourceRecord.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, name, code))
            return None
        tz = record.timezone or unit_tz
        return record.model_copy(
            update={"timezone": tz, "closures": tuple(_to_utc(c, tz) for c in record.closures)}
        )

    for index, raw in enumerate(resources_raw):
        where = f"resources[{index}]"
        if not isinstance(raw, Mapping):
            problems.append(Problem(name, where, "", "expected a mapping describing one resource"))
            continue
        merged = {**defaults, **{k: v for k, v in raw.items() if k != "lines"}}
        record = build(merged, where)
        lines = raw.get("lines") or []
        if lines and raw.get("kind") != "workshop":
            problems.append(Problem(name, str(raw.get("code", where)), "lines", "only a workshop can have lines"))
            continue
        if not isinstance(lines, list):
            problems.append(Problem(name, str(raw.get("code", where)), "lines", "expected a list of lines/bays"))
            continue
        if record is not None:
            out.append((record, name))
        for line_index, line in enumerate(lines):
            line_where = f"{raw.get('code', where)}.lines[{line_index}]"
            if not isinstance(line, Mapping):
                problems.append(Problem(name, line_where, "", "expected a mapping describing one line or bay"))
                continue
            inherited = {k: merged[k] for k in INHERITED_BY_LINES if k in merged}
            line_record = build(
                {**inherited, "kind": "line", **line, "parent": raw.get("code")}, line_where
            )
            if line_record is not None:
                out.append((line_record, name))
    return unit, out


def file_digest(categories_bytes: bytes, unit_bytes: bytes) -> str:
    """What a unit file's records depend on: its bytes, the classification and the schema."""
    digest = hashlib.sha256(SCHEMA_VERSION.encode())
    digest.update(hashlib.sha256(categories_bytes).digest())
    digest.update(unit_bytes)
    return digest.hexdigest()


def load_catalog(root: Path | str, known: Mapping[str, KnownFile] | None = None) -> Catalog:
    """Read and validate the whole catalogue folder.

    ``known`` describes unit files as the database last imported them (see
    ``importer.known_files``). A file whose digest still matches is not parsed again: its
    codes take part in the cross-file checks and the importer counts it as unchanged. This
    is what makes re-importing an unchanged catalogue cheap.

    Raises:
        CatalogInvalid: with every problem found; nothing should be imported then.
    """
    root = Path(root)
    known = known or {}
    problems: list[Problem] = []
    if not root.is_dir():
        raise CatalogInvalid([Problem(str(root), "", "", "is not a folder; pass the catalogue folder, e.g. catalog/")])

    categories_path = root / "categories.yaml"
    categories_bytes = categories_path.read_bytes() if categories_path.is_file() else b""
    categories = _load_categories(root, problems)
    digests: dict[str, str] = {}
    unchanged_files: dict[str, KnownFile] = {}
    units: list[UnitRecord] = []
    resources: list[ResourceRecord] = []
    resource_units: dict[str, str] = {}
    sources: dict[str, str] = {}
    unit_sources: dict[str, str] = {}

    unit_files = sorted((root / "units").glob("*.yaml")) + sorted((root / "units").glob("*.yml"))
    if not unit_files:
        problems.append(Problem("units/", "", "", "holds no unit files; add units/<UNIT-CODE>.yaml"))
    for path in unit_files:
        name = str(path.relative_to(root))
        digests[name] = file_digest(categories_bytes, path.read_bytes())
        previous = known.get(name)
        if previous is not None and previous.digest == digests[name]:
            unchanged_files[name] = previous
            unit_sources.setdefault(previous.unit_code, name)
            for code in previous.resource_codes:
                sources.setdefault(code, name)
                resource_units[code] = previous.unit_code
            continue
        unit, unit_resources = _unit_file(path, root, problems)
        if unit is not None and unit.code != path.stem:
            problems.append(
                Problem(
                    name,
                    unit.code,
                    "unit.code",
                    f"the file is named for unit {path.stem!r} but declares unit {unit.code!r}; "
                    f"rename the file to units/{unit.code}.yaml or fix the code",
                )
            )
        elif unit is not None:
            if unit.code in unit_sources:
                problems.append(
                    Problem(name, unit.code, "unit.code", f"duplicate unit code; already used in {unit_sources[unit.code]}")
                )
            else:
                unit_sources[unit.code] = name
                units.append(unit)
        for record, source in unit_resources:
            if record.code in sources:
                problems.append(
                    Problem(source, record.code, "code", f"duplicate resource code; already used in {sources[record.code]}")
                )
                continue
            sources[record.code] = source
            resources.append(record)
            if unit is not None:
                resource_units[record.code] = unit.code

    # Cross-record checks: every reference must resolve.
    category_codes: dict[str, CategoryRecord] = {}
    for category in categories:
        if category.code in category_codes:
            problems.append(Problem("categories.yaml", category.code, "code", "duplicate category code"))
        category_codes[category.code] = category
    for category in categories:
        if category.parent and category.parent not in category_codes:
            problems.append(Problem("categories.yaml", category.code, "parent", f"unknown parent {category.parent!r}"))
    known_categories = ", ".join(sorted(c.code for c in categories if not any(o.parent == c.code for o in categories)))
    for record in resources:
        if record.category not in category_codes:
            problems.append(
                Problem(
                    sources[record.code],
                    record.code,
                    "category",
                    f"unknown category {record.category!r}; use a code from categories.yaml ({known_categories})",
                )
            )

    if problems:
        raise CatalogInvalid(problems)
    return Catalog(
        categories=tuple(categories),
        units=tuple(units),
        resources=tuple(resources),
        resource_units=resource_units,
        sources={**sources, **{code: src for code, src in unit_sources.items()}},
        file_digests=digests,
        unchanged_files=unchanged_files,
    )
