"""Closures from calendar (.ics) files: the pure parser, the import into the database (SQLite
and PostgreSQL), the command line and the manager's upload page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy import func, select

from facility_share.bookings import services as bookings
from facility_share.catalog.files import load_catalog
from facility_share.catalog.importer import import_catalog
from facility_share.cli import main, run_import
from facility_share.closures import services
from facility_share.closures.ical_import import MAX_OCCURRENCES, CalendarInvalid, parse_closures
from facility_share.db import Database, migrate
from facility_share.db.models import AuditEvent, Closure, Resource, utcnow
from facility_share.settings import Settings, load_settings
from facility_share.web.app import create_app
from tests.test_catalog_files import UNIT, write_catalog
from tests.world import PASSWORD, ZONE, build_world, local, next_weekday

ROOT = Path(__file__).resolve().parent.parent
HTML = {"Accept": "text/html,application/xhtml+xml"}
SEM = "WQ-TJMAT-SEM01"
TJMAT = "WQ-TJMAT"
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
WINDOW = {"zone": "Asia/Shanghai", "window_start": NOW, "window_end": NOW + timedelta(days=60)}


def ics(*events: str) -> str:
    body = "".join("BEGIN:VEVENT\r\n" + e.strip().replace("\n", "\r\n") + "\r\nEND:VEVENT\r\n" for e in events)
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//facility-share//tests//EN\r\n" + body + "END:VCALENDAR\r\n"


def d(day: date) -> str:
    return day.strftime("%Y%m%d")


# --- the parser -------------------------------------------------------------------------------


def test_all_day_event_closes_whole_local_days() -> None:
    [o] = parse_closures(ics("UID:h1\nSUMMARY:Holiday\nDTSTART;VALUE=DATE:20261201\nDTEND;VALUE=DATE:20261203"), **WINDOW)
    assert (o.starts_at, o.ends_at) == (datetime(2026, 11, 30, 16, tzinfo=UTC), datetime(2026, 12, 2, 16, tzinfo=UTC))
    assert o.reason == "Holiday" and o.uid == "h1#2026-11-30T16:00:00+00:00"
    # Without DTEND: one day; in another zone the local midnights differ.
    [o] = parse_closures(ics("UID:h2\nDTSTART;VALUE=DATE:20261201"), **{**WINDOW, "zone": "Europe/Berlin"})
    assert (o.starts_at, o.ends_at) == (datetime(2026, 11, 30, 23, tzinfo=UTC), datetime(2026, 12, 1, 23, tzinfo=UTC))


def test_timed_events_use_tzid_utc_or_the_local_time() -> None:
    found = parse_closures(ics(
        "UID:tz\nDTSTART;TZID=Europe/Berlin:20261201T090000\nDTEND;TZID=Europe/Berlin:20261201T100000",
        "UID:utc\nDTSTART:20261201T090000Z\nDURATION:PT2H",
        "UID:floating\nDTSTART:20261201T090000\nDTEND:20261201T103000",
    ), **WINDOW)
    spans = {o.uid.split("#")[0]: (o.starts_at, o.ends_at) for o in found}
    assert spans["tz"] == (datetime(2026, 12, 1, 8, tzinfo=UTC), datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert spans["utc"] == (datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 1, 11, tzinfo=UTC))
    assert spans["floating"] == (datetime(2026, 12, 1, 1, tzinfo=UTC), datetime(2026, 12, 1, 2, 30, tzinfo=UTC))


def test_windows_zone_names_from_outlook_are_understood() -> None:
    """Outlook and Exchange write Windows zone names as TZIDs; icalendar maps them to IANA."""
    found = parse_closures(ics(
        "UID:o\nDTSTART;TZID=China Standard Time:20261201T090000\nDTEND;TZID=China Standard Time:20261201T170000",
        "UID:w\nDTSTART;TZID=W. Europe Standard Time:20261201T090000\nDURATION:PT1H",
    ), **WINDOW)
    spans = {o.uid.split("#")[0]: (o.starts_at, o.ends_at) for o in found}
    assert spans["o"] == (datetime(2026, 12, 1, 1, tzinfo=UTC), datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert spans["w"] == (datetime(2026, 12, 1, 8, tzinfo=UTC), datetime(2026, 12, 1, 9, tzinfo=UTC))


def test_past_occurrences_are_left_out() -> None:
    assert parse_closures(ics("UID:old\nDTSTART;VALUE=DATE:20250101"), **WINDOW) == []


def test_recurrence_with_count_until_and_exdate() -> None:
    weekly = parse_closures(ics("UID:w\nSUMMARY:Calibration\nDTSTART;TZID=Asia/Shanghai:20261201T090000\n"
                                "DTEND;TZID=Asia/Shanghai:20261201T120000\nRRULE:FREQ=WEEKLY;COUNT=4\n"
                                "EXDATE;TZID=Asia/Shanghai:20261208T090000"), **WINDOW)
    assert [o.starts_at.astimezone(ZONE).day for o in weekly] == [1, 15, 22]
    assert all(o.ends_at - o.starts_at == timedelta(hours=3) and o.reason == "Calibration" for o in weekly)
    assert len({o.uid for o in weekly}) == 3
    until = parse_closures(ics("UID:u\nDTSTART:20261201T090000\nDTEND:20261201T100000\nRRULE:FREQ=DAILY;UNTIL=20261204T235959Z"),
                           **WINDOW)
    assert [o.starts_at.astimezone(ZONE).day for o in until] == [1, 2, 3, 4]
    days = parse_closures(ics("UID:a\nDTSTART;VALUE=DATE:20261201\nRRULE:FREQ=WEEKLY;UNTIL=20261222"), **WINDOW)
    assert len(days) == 4 and all(o.ends_at - o.starts_at == timedelta(days=1) for o in days)


def test_recurrence_without_end_is_expanded_over_the_horizon_only() -> None:
    found = parse_closures(ics("UID:daily\nDTSTART:20261124T090000\nDTEND:20261124T100000\nRRULE:FREQ=DAILY"), **WINDOW)
    assert len(found) == 60
    assert found[-1].starts_at < WINDOW["window_end"]


@pytest.mark.parametrize("rule", ["FREQ=DAILY;COUNT=1001", "FREQ=MINUTELY", "FREQ=HOURLY;UNTIL=20300101T000000Z"])
def test_more_than_a_thousand_occurrences_are_refused(rule: str) -> None:
    with pytest.raises(CalendarInvalid) as caught:
        parse_closures(ics(f"UID:many\nSUMMARY:Too many\nDTSTART:20261201T090000\nDTEND:20261201T091000\nRRULE:{rule}"), **WINDOW)
    [problem] = caught.value.problems
    assert f"more than {MAX_OCCURRENCES} occurrences" in problem.message
    assert "many" in problem.record and "Too many" in problem.record and problem.field == "RRULE"


GOOD = "UID:ok\nDTSTART;VALUE=DATE:20261201"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("   \n", "the file is empty"),
        ("hello, this is not a calendar", "not an iCalendar file"),
        ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nEND:VCALENDAR\n", "cannot be read as iCalendar"),
        (ics(), "holds no events"),
        (ics(GOOD, "UID:x\nSUMMARY:No start\nDTEND:20261201T100000"), "has no DTSTART"),
        (ics(GOOD, "UID:x\nDTSTART:20261201T100000\nDTEND:20261201T090000"), "DTEND is not after DTSTART"),
        (ics(GOOD, "UID:x\nDTSTART;VALUE=DATE:20261203\nDTEND;VALUE=DATE:20261201"), "DTEND is not after DTSTART"),
        (ics(GOOD, "UID:x\nDTSTART;TZID=Mars/Olympus:20261201T100000\nDTEND;TZID=Mars/Olympus:20261201T110000"),
         "unknown time zone 'Mars/Olympus'"),
        (ics(GOOD, "UID:x\nDTSTART:2026XX\nDTEND:20261201T090000"), "cannot read the value"),
        (ics(GOOD, "UID:x\nDTSTART:20261201T100000"), "no DTEND or DURATION"),
        (ics(GOOD, "UID:x\nDTSTART:20261201T100000\nDTEND:20261201T110000\nRRULE:FREQ=SOMETIMES"), "RRULE"),
        (ics(GOOD, "UID:ok\nDTSTART;VALUE=DATE:20261205"), "give every event its own UID"),
    ],
)
def test_malformed_files_are_refused_with_what_and_where(text: str, expected: str) -> None:
    with pytest.raises(CalendarInvalid) as caught:
        parse_closures(text, filename="plan.ics", **WINDOW)
    error = caught.value
    assert "nothing was imported" in error.message
    assert any(expected in str(p) for p in error.problems), [str(p) for p in error.problems]
    assert all(str(p).startswith("plan.ics") for p in error.problems)
    if "UID:x" in text:
        assert any("event x" in p.record and "line" in p.record for p in error.problems)


def test_problem_names_the_line_of_the_bad_property() -> None:
    text = ics(GOOD, "UID:x\nSUMMARY:Cleaning\nDTSTART:20261201T100000\nDTEND:20261201T090000")
    with pytest.raises(CalendarInvalid) as caught:
        parse_closures(text, **WINDOW)
    line = next(n for n, raw in enumerate(text.splitlines(), start=1) if raw.startswith("DTEND:"))
    assert f"at line {line}" in caught.value.problems[0].record
    assert "“Cleaning”" in caught.value.problems[0].record


# --- the database ---------------------------------------------------------------------------------


async def closures_of(db: Database, code: str, source: str = "ics") -> list[Closure]:
    async with db.session() as session:
        return list((await session.execute(
            select(Closure).join(Resource, Closure.resource_id == Resource.id)
            .where(Resource.code == code, Closure.source == source).order_by(Closure.starts_at)
        )).scalars())


async def apply(db: Database, text: str, filename: str = "plan.ics", **target: str) -> services.ImportResult:
    async with db.session(write=True) as session:
        result = await services.import_ics(session, text, filename=filename, actor_id=None, **target)
        await session.commit()
    return result


def plan(day: date, *extra: str) -> str:
    return ics(f"UID:maint\nSUMMARY:Maintenance\nDTSTART;VALUE=DATE:{d(day)}", *extra)


async def test_import_for_a_resource_is_idempotent_and_follows_the_file(imported) -> None:  # type: ignore[no-untyped-def]
    day = next_weekday(utcnow())
    second = f"UID:clean\nSUMMARY:Cleaning\nDTSTART;TZID=Asia/Shanghai:{d(day + timedelta(days=1))}T090000\nDURATION:PT3H"
    first = await apply(imported, plan(day, second), resource_code=SEM)
    assert (first.added, first.removed, first.unchanged) == (2, 0, 0)
    rows = await closures_of(imported, SEM)
    assert [r.reason for r in rows] == ["Maintenance", "Cleaning"]
    assert rows[0].starts_at == local(day, 0) and rows[0].ends_at == local(day + timedelta(days=1), 0)
    assert all(r.external_uid.startswith("plan.ics:") for r in rows)

    again = await apply(imported, plan(day, second), resource_code=SEM)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 2)
    assert len(await closures_of(imported, SEM)) == 2

    # An event removed from the file is removed; a changed one is updated; another file's stay.
    other = await apply(imported, ics(f"UID:x\nDTSTART;VALUE=DATE:{d(day + timedelta(days=7))}"), "other.ics", resource_code=SEM)
    assert other.added == 1
    shorter = plan(day).replace("SUMMARY:Maintenance", "SUMMARY:Annual maintenance")
    third = await apply(imported, shorter, resource_code=SEM)
    assert (third.added, third.updated, third.removed, third.unchanged) == (0, 1, 1, 0)
    assert [r.reason for r in await closures_of(imported, SEM)] == ["Annual maintenance", ""]
    async with imported.session() as session:
        assert (await session.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "closures.import"))).scalar_one() == 4


async def test_import_for_a_unit_closes_every_current_resource(imported) -> None:  # type: ignore[no-untyped-def]
    day = next_weekday(utcnow())
    result = await apply(imported, plan(day), unit_code=TJMAT)
    async with imported.session() as session:
        codes = set((await session.execute(
            select(Resource.code).where(Resource.retired_at.is_(None), Resource.unit_id == select(Resource.unit_id).where(Resource.code == SEM).scalar_subquery())
        )).scalars())
    assert set(result.resources) == codes and len(codes) > 1
    assert result.added == len(codes)
    for code in codes:
        assert len(await closures_of(imported, code)) == 1
    again = await apply(imported, plan(day), unit_code=TJMAT)
    assert (again.added, again.unchanged) == (0, len(codes))
    # The same file for one resource of the unit changes nothing there.
    single = await apply(imported, plan(day), resource_code=SEM)
    assert (single.added, single.unchanged) == (0, 1)


async def test_a_bad_file_imports_nothing(imported) -> None:  # type: ignore[no-untyped-def]
    day = next_weekday(utcnow())
    await apply(imported, plan(day), resource_code=SEM)
    with pytest.raises(CalendarInvalid):
        await apply(imported, ics(f"UID:a\nDTSTART;VALUE=DATE:{d(day + timedelta(days=2))}", "UID:b\nDTEND:20261201T100000"),
                    resource_code=SEM)
    assert [r.reason for r in await closures_of(imported, SEM)] == ["Maintenance"]


async def test_unknown_targets_are_refused(imported) -> None:  # type: ignore[no-untyped-def]
    from facility_share.errors import InvalidInput, NotFound

    with pytest.raises(NotFound):
        await apply(imported, plan(date(2027, 1, 5)), resource_code="WQ-NOPE")
    with pytest.raises(NotFound):
        await apply(imported, plan(date(2027, 1, 5)), unit_code="WQ-NOPE")
    with pytest.raises(InvalidInput):
        await apply(imported, plan(date(2027, 1, 5)), resource_code=SEM, unit_code=TJMAT)
    async with imported.session(write=True) as session:
        with pytest.raises(NotFound):
            await services.import_ics(session, plan(date(2027, 1, 5)), filename="p.ics", resource_code=SEM, allowed_unit_ids={-1})


async def test_an_imported_closure_closes_availability(imported) -> None:  # type: ignore[no-untyped-def]
    day = next_weekday(utcnow())
    start, end = local(day, 0), local(day + timedelta(days=1), 0)
    async with imported.session() as session:
        before = await bookings.availability(session, SEM, start, end)
    assert before.open, "the SEM is open on a working weekday"
    await apply(imported, plan(day), resource_code=SEM)
    async with imported.session() as session:
        after = await bookings.availability(session, SEM, start, end)
    assert after.open == [] and after.free == []


async def test_catalogue_reimport_keeps_ics_closures(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        await import_catalog(session, load_catalog(write_catalog(tmp_path)))
        await session.commit()
    await apply(db, plan(next_weekday(utcnow())), resource_code="WQ-TEST-GC01")
    write_catalog(tmp_path, UNIT.replace("district: 150", "district: 170"))
    async with db.session(write=True) as session:
        summary = await import_catalog(session, load_catalog(tmp_path))
        await session.commit()
    assert summary.resources.updated >= 1
    assert len(await closures_of(db, "WQ-TEST-GC01")) == 1


async def test_only_imported_and_manager_closures_can_be_deleted(imported) -> None:  # type: ignore[no-untyped-def]
    from facility_share.errors import Conflict, NotFound

    await apply(imported, plan(next_weekday(utcnow())), resource_code=SEM)
    [row] = await closures_of(imported, SEM)
    async with imported.session(write=True) as session:
        sem = (await session.execute(select(Resource).where(Resource.code == SEM))).scalar_one()
        catalogue = Closure(resource_id=sem.id, starts_at=datetime(2030, 1, 1, tzinfo=UTC), ends_at=datetime(2030, 1, 2, tzinfo=UTC),
                            source="catalog")
        session.add(catalogue)
        await session.commit()
        catalogue_id = catalogue.id
    try:
        async with imported.session(write=True) as session:
            with pytest.raises(NotFound):
                await services.delete_closure(session, row.id, actor_id=None, allowed_unit_ids={-1})
            with pytest.raises(Conflict):
                await services.delete_closure(session, catalogue_id, actor_id=None, allowed_unit_ids=None)
            await services.delete_closure(session, row.id, actor_id=None, allowed_unit_ids=None)
            await session.commit()
        assert await closures_of(imported, SEM) == []
    finally:
        async with imported.session(write=True) as session:
            await session.delete(await session.get(Closure, catalogue_id))
            await session.commit()


# --- the command line -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("closures-cli") / "cli.sqlite3"
    settings = load_settings({"FACILITY_SHARE_DATABASE_URL": f"sqlite:///{path}"})
    migrate.upgrade(settings.database_url)
    asyncio.run(run_import(settings, ROOT / "catalog"))
    return settings


def test_cli_imports_reimports_and_reports_bad_files(cli_settings: Settings, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACILITY_SHARE_DATABASE_URL", cli_settings.database_url)
    runner = CliRunner()
    day = next_weekday(utcnow())
    good = tmp_path / "holidays.ics"
    good.write_text(plan(day), encoding="utf-8")
    result = runner.invoke(main, ["closures", "import", str(good), "--resource", SEM])
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output and "holidays.ics" in result.output
    result = runner.invoke(main, ["closures", "import", str(good), "--resource", SEM])
    assert result.exit_code == 0 and "0 added" in result.output and "1 unchanged" in result.output
    result = runner.invoke(main, ["closures", "import", str(good), "--unit", TJMAT])
    assert result.exit_code == 0 and "1 unchanged" in result.output

    bad = tmp_path / "broken.ics"
    bad.write_text(ics("UID:x\nSUMMARY:Broken\nDTSTART:20261201T100000\nDTEND:20261201T090000"), encoding="utf-8")
    result = runner.invoke(main, ["closures", "import", str(bad), "--resource", SEM])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert "DTEND is not after DTSTART" in result.output and "nothing was imported" in result.output
    result = runner.invoke(main, ["closures", "import", str(good)])
    assert result.exit_code == 2 and "--resource" in result.output
    result = runner.invoke(main, ["closures", "import", str(good), "--resource", "WQ-NOPE"])
    assert result.exit_code == 1 and "no resource" in result.output


# --- the upload page -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("closures-pages") / "p.sqlite3"
    settings = load_settings({"FACILITY_SHARE_DATABASE_URL": f"sqlite:///{path}"})
    migrate.upgrade(settings.database_url)
    asyncio.run(run_import(settings, ROOT / "catalog"))

    async def world() -> None:
        database = Database(settings.database_url, null_pool=True)
        try:
            await build_world(database)
        finally:
            await database.dispose()

    asyncio.run(world())
    return settings


@pytest.fixture(scope="module")
def client(page_settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(page_settings)) as test_client:
        yield test_client


def sign_in(client: TestClient, email: str) -> None:
    client.cookies.clear()
    client.get("/login", headers=HTML)
    response = client.post("/login", data={"email": email, "password": PASSWORD, "_csrf_token": client.cookies.get("fs_csrf")},
                           headers=HTML, follow_redirects=False)
    assert response.status_code == 303, response.text[-1500:]


def upload(client: TestClient, target: str, text: str, name: str = "plan.ics", unit: str = TJMAT):  # type: ignore[no-untyped-def]
    return client.post(
        "/manage/closures/import",
        data={"unit": unit, "target": target, "_csrf_token": client.cookies.get("fs_csrf")},
        files={"file": (name, text.encode(), "text/calendar")},
        headers=HTML, follow_redirects=False,
    )


def page_closures(settings: Settings, code: str) -> list[Closure]:
    async def run() -> list[Closure]:
        database = Database(settings.database_url, null_pool=True)
        try:
            return await closures_of(database, code)
        finally:
            await database.dispose()

    return asyncio.run(run())


def test_manager_uploads_a_calendar_and_deletes_a_closure(client: TestClient, page_settings: Settings) -> None:
    sign_in(client, "manager@t.example.cn")
    response = client.get(f"/manage/closures?unit={TJMAT}", headers=HTML)
    assert response.status_code == 200 and 'enctype="multipart/form-data"' in response.text
    day = next_weekday(utcnow(), weeks=2)
    response = upload(client, SEM, plan(day))
    assert response.status_code == 303, response.text[-2000:]
    assert response.headers["location"].startswith("/manage/closures?unit=WQ-TJMAT&imported=1")
    page = client.get(response.headers["location"], headers=HTML)
    assert page.status_code == 200 and "Maintenance" in page.text
    [row] = page_closures(page_settings, SEM)
    response = client.post(f"/manage/closures/{row.id}/delete", data={"unit": TJMAT, "_csrf_token": client.cookies.get("fs_csrf")},
                           headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert page_closures(page_settings, SEM) == []


def test_a_bad_file_is_shown_with_its_problems_and_imports_nothing(client: TestClient, page_settings: Settings) -> None:
    sign_in(client, "manager@t.example.cn")
    day = next_weekday(utcnow(), weeks=3)
    response = upload(client, "unit", plan(day, "UID:x\nSUMMARY:Broken\nDTSTART;TZID=Mars/Olympus:20261201T100000\nDURATION:PT1H"))
    assert response.status_code == 400
    assert "Mars/Olympus" in response.text and "Broken" in response.text
    assert page_closures(page_settings, SEM) == []
    assert upload(client, SEM, "").status_code == 400
    assert upload(client, "", plan(day)).status_code == 400


def test_another_units_manager_cannot_target_this_units_resource(client: TestClient, page_settings: Settings) -> None:
    sign_in(client, "other@t.example.cn")
    day = next_weekday(utcnow(), weeks=4)
    assert upload(client, SEM, plan(day), unit="WQ-JGU-BIO").status_code == 404
    assert upload(client, SEM, plan(day), unit=TJMAT).status_code == 404
    assert upload(client, "unit", plan(day), unit=TJMAT).status_code == 404
    assert client.get(f"/manage/closures?unit={TJMAT}", headers=HTML).status_code == 404
    assert page_closures(page_settings, SEM) == []


def test_rdate_and_datetime_exdate_on_an_all_day_event() -> None:
    found = parse_closures(ics("UID:r\nDTSTART;VALUE=DATE:20261201\nRRULE:FREQ=DAILY;COUNT=3\n"
                               "EXDATE:20261202T000000\nRDATE;VALUE=DATE:20261210"), **WINDOW)
    assert [o.starts_at.astimezone(ZONE).day for o in found] == [1, 3, 10]


def test_a_moved_occurrence_and_a_cancelled_one() -> None:
    found = parse_closures(ics(
        "UID:s\nSUMMARY:Service\nDTSTART;TZID=Asia/Shanghai:20261201T090000\nDURATION:PT1H\nRRULE:FREQ=WEEKLY;COUNT=3",
        "UID:s\nRECURRENCE-ID;TZID=Asia/Shanghai:20261208T090000\nSUMMARY:Service (moved)\n"
        "DTSTART;TZID=Asia/Shanghai:20261209T140000\nDURATION:PT2H",
        "UID:s\nRECURRENCE-ID;TZID=Asia/Shanghai:20261215T090000\nSTATUS:CANCELLED\n"
        "DTSTART;TZID=Asia/Shanghai:20261215T090000\nDURATION:PT1H",
    ), **WINDOW)
    assert [(o.starts_at.astimezone(ZONE).day, o.reason) for o in found] == [(1, "Service"), (9, "Service (moved)")]
