"""Importing the catalogue: idempotent, retiring instead of deleting, all or nothing.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from facility_share.catalog.files import load_catalog
from facility_share.catalog.importer import import_catalog
from facility_share.db.models import Category, Closure, FeeItem, ManagingUnit, OpeningHours, Resource
from tests.test_catalog_files import UNIT, write_catalog


class WriteCounter:
    """Counts INSERT/UPDATE/DELETE statements sent to the database."""

    def __init__(self, engine=None) -> None:  # type: ignore[no-untyped-def]
        # None: every engine of the process (commands open their own).
        from sqlalchemy.engine import Engine

        self.engine = engine.sync_engine if engine is not None else Engine
        self.writes: list[str] = []

    def __enter__(self) -> WriteCounter:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement: str, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            self.writes.append(statement)


async def run(db, catalog) -> object:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        summary = await import_catalog(session, catalog)
        await session.commit()
    return summary


async def count(db, model) -> int:  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_full_catalogue_import_then_reimport_writes_nothing(db, loaded_catalog) -> None:
    first = await run(db, loaded_catalog)
    assert first.resources.created == len(loaded_catalog.resources)
    assert first.units.created == len(loaded_catalog.units)
    assert first.categories.created == len(loaded_catalog.categories)
    assert await count(db, FeeItem) >= len(loaded_catalog.resources)

    with WriteCounter(db.engine) as counter:
        second = await run(db, loaded_catalog)
    assert second.written == 0
    assert second.resources.unchanged == len(loaded_catalog.resources)
    assert counter.writes == []


async def test_changes_update_and_removals_retire(db, tmp_path: Path) -> None:
    await run(db, load_catalog(write_catalog(tmp_path)))

    changed = UNIT.replace("district: 150", "district: 160").replace(
        "      - {code: WQ-TEST-CNC-L1, name_zh: 一号线, name_en: Line 1}\n", ""
    )
    write_catalog(tmp_path, changed)
    summary = await run(db, load_catalog(tmp_path))
    assert (summary.resources.updated, summary.resources.retired, summary.resources.created) == (1, 1, 0)
    assert summary.resources.unchanged == 1

    async with db.session() as session:
        gc = (await session.execute(select(Resource).where(Resource.code == "WQ-TEST-GC01"))).scalar_one()
        fees = (await session.execute(select(FeeItem).where(FeeItem.resource_id == gc.id))).scalars().all()
        assert [f.district_fen for f in fees] == [16000]
        line = (await session.execute(select(Resource).where(Resource.code == "WQ-TEST-CNC-L1"))).scalar_one()
        assert line.retired_at is not None  # retired, never deleted
        # Opening hours were replaced, not duplicated.
        hours = (await session.execute(select(func.count()).where(OpeningHours.resource_id == gc.id))).scalar_one()
        assert hours == 10

    # The line comes back: it is restored, not duplicated.
    write_catalog(tmp_path, UNIT.replace("district: 150", "district: 160"))
    summary = await run(db, load_catalog(tmp_path))
    assert summary.resources.updated == 1 and summary.resources.created == 0
    async with db.session() as session:
        line = (await session.execute(select(Resource).where(Resource.code == "WQ-TEST-CNC-L1"))).scalar_one()
        assert line.retired_at is None
        workshop = (await session.execute(select(Resource).where(Resource.code == "WQ-TEST-CNC"))).scalar_one()
        assert line.parent_id == workshop.id


async def test_removed_unit_is_retired(db, tmp_path: Path) -> None:
    root = write_catalog(tmp_path)
    other = UNIT.replace("code: WQ-TEST\n", "code: WQ-TEST2\n").replace("WQ-TEST-", "WQ-TEST2-")
    (root / "units" / "WQ-TEST2.yaml").write_text(other, encoding="utf-8")
    await run(db, load_catalog(root))
    (root / "units" / "WQ-TEST2.yaml").unlink()
    summary = await run(db, load_catalog(root))
    assert summary.units.retired == 1 and summary.resources.retired == 3
    assert await count(db, ManagingUnit) == 2


async def test_failure_midway_leaves_database_untouched(db, loaded_catalog) -> None:
    """The caller's transaction is all or nothing: a failure after some batches rolls back all."""

    def explode(_n: int) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        async with db.session(write=True) as session:
            await import_catalog(session, loaded_catalog, progress=explode)
            await session.commit()
    for model in (Category, ManagingUnit, Resource, FeeItem, OpeningHours, Closure):
        assert await count(db, model) == 0, model.__name__


async def test_manager_closures_survive_reimport(db, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    await run(db, load_catalog(write_catalog(tmp_path)))
    async with db.session(write=True) as session:
        gc = (await session.execute(select(Resource).where(Resource.code == "WQ-TEST-GC01"))).scalar_one()
        session.add(
            Closure(resource_id=gc.id, starts_at=datetime(2027, 1, 1, tzinfo=UTC), ends_at=datetime(2027, 1, 2, tzinfo=UTC), source="ics")
        )
        await session.commit()
    write_catalog(tmp_path, UNIT.replace("district: 150", "district: 170"))
    await run(db, load_catalog(tmp_path))
    assert await count(db, Closure) == 1


async def _import_folder(db, root: Path):  # type: ignore[no-untyped-def]
    """As `catalog import` does it: known files first, then parse what changed."""
    from facility_share.catalog.importer import known_files

    async with db.session(write=True) as session:
        catalog = load_catalog(root, known=await known_files(session))
        summary = await import_catalog(session, catalog)
        await session.commit()
    return catalog, summary


async def test_unchanged_files_are_not_parsed_again(db, tmp_path: Path) -> None:
    root = write_catalog(tmp_path)
    other = UNIT.replace("code: WQ-TEST\n", "code: WQ-TEST2\n").replace("WQ-TEST-", "WQ-TEST2-")
    (root / "units" / "WQ-TEST2.yaml").write_text(other, encoding="utf-8")
    first, _ = await _import_folder(db, root)
    assert not first.unchanged_files and len(first.resources) == 6

    with WriteCounter(db.engine) as counter:
        again, summary = await _import_folder(db, root)
    assert set(again.unchanged_files) == {"units/WQ-TEST.yaml", "units/WQ-TEST2.yaml"}
    assert again.resources == () and summary.resources.unchanged == 6 and summary.units.unchanged == 2
    assert counter.writes == []

    # One file changes: only it is parsed; the other's codes still count for duplicates.
    (root / "units" / "WQ-TEST2.yaml").write_text(other.replace("district: 150", "district: 155"), encoding="utf-8")
    changed, summary = await _import_folder(db, root)
    assert set(changed.unchanged_files) == {"units/WQ-TEST.yaml"}
    assert summary.resources.updated == 1 and summary.resources.unchanged == 5 and summary.resources.retired == 0

    clash = other.replace("code: WQ-TEST2-GC01", "code: WQ-TEST-GC01")
    (root / "units" / "WQ-TEST2.yaml").write_text(clash, encoding="utf-8")
    from facility_share.errors import CatalogInvalid

    with pytest.raises(CatalogInvalid) as caught:
        await _import_folder(db, root)
    assert any(p.record == "WQ-TEST-GC01" and "duplicate" in p.message for p in caught.value.problems)


async def test_a_comment_edit_is_remembered_without_counting_as_a_change(db, tmp_path: Path) -> None:
    root = write_catalog(tmp_path)
    await _import_folder(db, root)
    write_catalog(tmp_path, "# edited\n" + UNIT)
    _, summary = await _import_folder(db, root)
    assert summary.written == 0
    again, _ = await _import_folder(db, root)
    assert set(again.unchanged_files) == {"units/WQ-TEST.yaml"}


async def test_changed_categories_reparse_every_file(db, tmp_path: Path) -> None:
    from tests.test_catalog_files import CATEGORIES

    root = write_catalog(tmp_path)
    await _import_folder(db, root)
    write_catalog(tmp_path, categories=CATEGORIES.replace("色谱仪器", "色谱仪"))
    catalog, summary = await _import_folder(db, root)
    assert catalog.unchanged_files == {} and summary.categories.updated == 1


@pytest.mark.parametrize("breaker", [
    lambda t: t.replace("internal: 80", "internal: -80"),
    lambda t: t.replace('category: "0105"', 'category: "0199"'),
    lambda t: t.replace("kind: institute", "kind: [institute"),
])
async def test_a_malformed_catalogue_changes_nothing_in_the_database(db, tmp_path: Path, breaker) -> None:  # type: ignore[no-untyped-def]
    """The import command validates everything before it writes: a bad file imports nothing,
    and a database that held the previous catalogue keeps it unchanged."""
    from facility_share.cli import run_import
    from facility_share.errors import CatalogInvalid
    from facility_share.settings import load_settings

    settings = load_settings({"FACILITY_SHARE_DATABASE_URL": db.url})
    root = write_catalog(tmp_path)
    await run_import(settings, root)
    before = {model.__name__: await count(db, model) for model in (Category, ManagingUnit, Resource, FeeItem, OpeningHours)}
    async with db.session() as session:
        hashes = dict((await session.execute(select(Resource.code, Resource.content_hash))).all())

    write_catalog(tmp_path, breaker(UNIT.replace("district: 150", "district: 999")))
    with WriteCounter() as counter, pytest.raises(CatalogInvalid):
        await run_import(settings, root)
    assert counter.writes == []
    after = {model.__name__: await count(db, model) for model in (Category, ManagingUnit, Resource, FeeItem, OpeningHours)}
    assert after == before
    async with db.session() as session:
        assert dict((await session.execute(select(Resource.code, Resource.content_hash))).all()) == hashes
