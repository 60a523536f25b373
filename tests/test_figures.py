"""Sharing figures against a hand-computed week on SQLite and PostgreSQL, and the pure aggregate.

The week of Monday 30 November 2026 on WQ-TJMAT-SEM01 (district rates: 400 yuan/h per started
half hour + 40 yuan coating; internal: 200 yuan/h + 20 yuan):

    session                                    hours  class     charge (fen)
    member_b (no relation: external)   Tue      2.0   district  4 × 20 000 + 4 000 =  84 000   rated 4
    member_a (relation internal)       Tue      1.0   internal  2 × 10 000 + 2 000 =  22 000   rated 5, paid
    third enterprise (relation related) Wed     1.5   district  3 × 20 000 + 4 000 =  64 000
    walk-in, no enterprise (internal)  Thu      0.5   —         no charge
    member_b walk-in, 3 h corrected to 2 h Thu  2.0   district  124 000 void; 84 000
    member_b booking never used        Wed      —     no-show   (no fee on SEM01)
    member_b walk-ins just outside the week     not counted

    effective 7.0 h = external 4.0 + internal 1.5 + related 1.5; sharing rate 4/7
    income 84 000 + 22 000 + 64 000 + 84 000 = 254 000 fen; paid 22 000; external 168 000
    rated hours 1400 × 7 / 365 = 26.85; utilisation 7 / 26.849… = 0.2607

Plus one hour by member_b on WQ-TJMAT-XRD01 (1 started hour × 300 yuan = 30 000 fen), which the
unit's figures add.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from facility_share.accounts import services as accounts
from facility_share.bookings import services as bookings
from facility_share.db import Database
from facility_share.db.models import Charge, ManagingUnit, UnitRelation
from facility_share.settings import load_settings
from facility_share.usage import figures, services
from facility_share.usage.figures import SessionRow, aggregate
from facility_share.web.app import create_app
from tests.world import ENTERPRISE_B, build_world, catalogue_values, local

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
MONDAY = date(2026, 11, 30)
TUESDAY, WEDNESDAY, THURSDAY = (MONDAY + timedelta(days=n) for n in (1, 2, 3))
WEEK = (MONDAY, MONDAY + timedelta(days=7))
SEM, XRD = "WQ-TJMAT-SEM01", "WQ-TJMAT-XRD01"
THIRD_USCC = "91120222MA0000001Y"


async def run(db: Database, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        result = await fn(session, *args, **kwargs)
        await session.commit()
        return result


async def used_booking(db: Database, world, principal, start: datetime, hours: float, *, stars: int | None = None) -> int:  # type: ignore[no-untyped-def]
    end = start + timedelta(hours=hours)
    async with db.session(write=True) as session:
        booking = await bookings.request_booking(session, principal, bookings.BookingInput(SEM, start, end), max_open_requests=20, now=NOW)
        await bookings.change_status(session, world["manager"], booking.id, "approve", now=NOW)
        await session.commit()
    await run(db, services.check_in, world["manager"], booking.id, now=start)
    _log, _charge = await run(db, services.check_out, world["manager"], booking.id, now=end)
    if stars is not None:
        await run(db, services.rate, principal, booking.id, stars=stars)
    return booking.id


@pytest.fixture
async def scenario(imported):  # type: ignore[no-untyped-def]
    """The week below, with SEM01 charging no no-show fee whatever the shipped catalogue says."""
    async with catalogue_values(imported, SEM, no_show_fee_fen=0):
        yield await _build_scenario(imported)


async def _build_scenario(imported):  # type: ignore[no-untyped-def]
    db = imported
    world = await build_world(db)
    async with db.session(write=True) as session:
        unit_id = (await session.execute(select(ManagingUnit.id).where(ManagingUnit.code == "WQ-TJMAT"))).scalar_one()
        session.add(UnitRelation(enterprise_id=world.enterprise_ids["member_a"], unit_id=unit_id, relation="internal"))
        user = await accounts.register(session, accounts.Registration(
            email="c@c.example.cn", password="correct horse battery", name="third", uscc=THIRD_USCC, enterprise_name="Group sister Ltd"))
        await accounts.update_enterprise_status(session, user.enterprise_id, accounts.EnterpriseUpdate(  # type: ignore[arg-type]
            True, True, False, False, "eaglet", effective_from=date(2026, 1, 1)), actor_id=world["admin"].user_id)
        session.add(UnitRelation(enterprise_id=user.enterprise_id, unit_id=unit_id, relation="related"))
        await session.commit()
        third = await accounts.load_principal(session, user.id, "token")
    assert third is not None and third.enterprise_verified
    manager, later = world["manager"], local(THURSDAY, 18)

    await used_booking(db, world, world["member_b"], local(TUESDAY, 9), 2, stars=4)
    internal = await used_booking(db, world, world["member_a"], local(TUESDAY, 13, 30), 1, stars=5)
    await used_booking(db, world, third, local(WEDNESDAY, 9), 1.5)
    async with db.session(write=True) as session:
        unused = await bookings.request_booking(session, world["member_b"], bookings.BookingInput(SEM, local(WEDNESDAY, 14), local(WEDNESDAY, 15)),
                                                max_open_requests=20, now=NOW)
        await bookings.change_status(session, manager, unused.id, "approve", now=NOW)
        await session.commit()
    await run(db, services.record_walk_in, manager, services.WalkIn(SEM, local(THURSDAY, 9), local(THURSDAY, 9, 30)), now=later)
    log, _charge = await run(db, services.record_walk_in, manager,
                             services.WalkIn(SEM, local(THURSDAY, 13, 30), local(THURSDAY, 16, 30), enterprise_uscc=ENTERPRISE_B), now=later)
    await run(db, services.correct, manager, log.id, started_at=local(THURSDAY, 13, 30), ended_at=local(THURSDAY, 15, 30), samples=0,
              reason="ran two hours, not three", now=later)
    assert await run(db, services.sweep_no_shows, now=later) == [unused.id]
    # Just outside the week on either side: not counted.
    for start in (local(MONDAY, 0) - timedelta(minutes=30), local(MONDAY + timedelta(days=7), 0)):
        await run(db, services.record_walk_in, manager, services.WalkIn(SEM, start, start + timedelta(minutes=20), enterprise_uscc=ENTERPRISE_B),
                  now=start + timedelta(hours=1))
    # Another resource of the unit: the unit's figures add it.
    await run(db, services.record_walk_in, manager, services.WalkIn(XRD, local(WEDNESDAY, 13, 30), local(WEDNESDAY, 14, 30),
                                                                    enterprise_uscc=ENTERPRISE_B), now=later)
    async with db.session() as session:
        internal_charge = (await session.execute(select(Charge.id).where(Charge.booking_id == internal))).scalar_one()
    await run(db, services.mark_paid, manager, internal_charge, method="invoice", reference="FP-1")
    return world


async def test_the_week_by_hand(imported, scenario) -> None:  # type: ignore[no-untyped-def]
    async with imported.session() as session:
        report = await figures.sharing_figures(session, *WEEK)
    sem = next(r for r in report.resources if r.code == SEM)
    f = sem.figures
    assert (sem.unit_code, sem.open_for_sharing) == ("WQ-TJMAT", True)
    assert f.sessions == 5
    assert f.effective_hours == 7.0
    assert (f.external_hours, f.internal_hours, f.related_hours) == (4.0, 1.5, 1.5)
    assert f.sharing_rate == pytest.approx(4 / 7)
    assert (f.enterprises_served, f.external_enterprises) == (3, 1)
    assert f.no_shows == 1
    assert f.income_fen == 84_000 + 22_000 + 64_000 + 84_000 == 254_000
    assert f.paid_income_fen == 22_000
    assert f.external_income_fen == 84_000 + 84_000
    assert (f.ratings, f.average_rating) == (2, 4.5)
    assert f.rated_hours == round(1400 * 7 / 365, 2) == 26.85
    assert f.utilisation == round(7 / (1400 * 7 / 365), 4) == 0.2607

    xrd = next(r for r in report.resources if r.code == XRD).figures
    assert (xrd.sessions, xrd.effective_hours, xrd.external_hours, xrd.income_fen, xrd.no_shows, xrd.ratings) == (1, 1.0, 1.0, 30_000, 0, 0)
    assert xrd.average_rating is None
    quiet = next(r for r in report.resources if r.code == "WQ-TJMAT-UTM01").figures
    assert (quiet.sessions, quiet.effective_hours, quiet.sharing_rate, quiet.income_fen) == (0, 0.0, None, 0)

    unit = next(u for u in report.units if u.code == "WQ-TJMAT")
    u = unit.figures
    assert (unit.resources, unit.open_resources) == (5, 5)
    assert (u.sessions, u.effective_hours, u.external_hours, u.internal_hours, u.related_hours) == (6, 8.0, 5.0, 1.5, 1.5)
    assert (u.enterprises_served, u.external_enterprises, u.no_shows) == (3, 1, 1)
    assert (u.income_fen, u.paid_income_fen, u.external_income_fen) == (284_000, 22_000, 198_000)
    assert (u.ratings, u.average_rating) == (2, 4.5)
    rated = (4 * 1400 + 2000) * 7 / 365  # SEM, XRD, TGA, UTM at 1400 h a year; the pilot workshop at 2000
    assert u.rated_hours == round(rated, 2) and u.utilisation == round(8 / rated, 4)
    others = [x for x in report.units if x.code != "WQ-TJMAT"]
    assert others and all(x.figures.sessions == 0 and x.figures.income_fen == 0 for x in others)


async def test_a_period_is_local_dates_with_an_exclusive_end(imported, scenario) -> None:  # type: ignore[no-untyped-def]
    async with imported.session() as session:
        tuesday = await figures.sharing_figures(session, TUESDAY, WEDNESDAY)
        thursday_on = await figures.sharing_figures(session, THURSDAY, THURSDAY + timedelta(days=30))
        wider = await figures.sharing_figures(session, MONDAY - timedelta(days=1), MONDAY + timedelta(days=8))
    t = next(r for r in tuesday.resources if r.code == SEM).figures
    assert (t.sessions, t.effective_hours, t.external_hours, t.internal_hours, t.income_fen, t.average_rating) == (2, 3.0, 2.0, 1.0, 106_000, 4.5)
    assert t.utilisation == round(3 / (1400 / 365), 4)
    th = next(r for r in thursday_on.resources if r.code == SEM).figures
    # The corrected walk-in (2 h), the anonymous half hour, and the walk-in at midnight after the week.
    assert (th.sessions, th.effective_hours, th.no_shows) == (3, 2.83, 0)
    w = next(r for r in wider.resources if r.code == SEM).figures
    assert (w.sessions, w.effective_hours) == (7, 7.67)


async def test_a_unit_manager_sees_the_figures_of_their_units_over_http(imported, scenario, database_url: str) -> None:  # type: ignore[no-untyped-def]
    world = scenario
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)
    params = {"start": WEEK[0].isoformat(), "end": WEEK[1].isoformat()}
    async with AsyncTestClient(app) as client:
        def auth(role: str) -> dict[str, str]:
            return {"authorization": f"Bearer {world.tokens[role]}"}

        mine = await client.get("/api/v1/figures", params=params, headers=auth("manager"))
        assert mine.status_code == 200
        body = mine.json()
        assert [u["code"] for u in body["units"]] == ["WQ-TJMAT"]
        assert {r["unit_code"] for r in body["resources"]} == {"WQ-TJMAT"}
        sem = next(r for r in body["resources"] if r["code"] == SEM)["figures"]
        assert sem == {
            "effective_hours": 7.0, "external_hours": 4.0, "related_hours": 1.5, "internal_hours": 1.5, "sharing_rate": 0.5714,
            "enterprises_served": 3, "external_enterprises": 1, "sessions": 5, "no_shows": 1, "income_fen": 254_000,
            "paid_income_fen": 22_000, "external_income_fen": 168_000, "ratings": 2, "average_rating": 4.5, "rated_hours": 26.85,
            "utilisation": 0.2607,
        }
        other = (await client.get("/api/v1/figures", params=params, headers=auth("other_manager"))).json()
        assert [u["code"] for u in other["units"]] == ["WQ-JGU-BIO"] and other["units"][0]["figures"]["sessions"] == 0
        everything = (await client.get("/api/v1/figures", params=params, headers=auth("admin"))).json()
        assert len(everything["units"]) > 1
        assert next(u for u in everything["units"] if u["code"] == "WQ-TJMAT")["figures"]["effective_hours"] == 8.0
        assert (await client.get("/api/v1/figures", params=params, headers=auth("member_a"))).status_code == 403
        assert (await client.get("/api/v1/figures", params=params)).status_code == 401
        backwards = {"start": WEEK[1].isoformat(), "end": WEEK[0].isoformat()}
        assert (await client.get("/api/v1/figures", params=backwards, headers=auth("manager"))).status_code == 400


# --- the pure aggregate --------------------------------------------------------------------------

TABLE = [
    SessionRow(1, None, None, 30),  # the unit's own use: internal
    SessionRow(1, 10, None, 120),  # external enterprise 10
    SessionRow(1, 10, None, 60),  # again: served once
    SessionRow(1, 11, "internal", 60),
    SessionRow(1, 12, "related", 90),
    SessionRow(2, 13, None, 15),  # external enterprise 13 on another resource
]


def test_aggregate_of_a_small_table() -> None:
    f = aggregate(TABLE, rated_hours=100)
    assert f.sessions == 6
    assert (f.effective_hours, f.external_hours, f.internal_hours, f.related_hours) == (6.25, 3.25, 1.5, 1.5)
    assert f.sharing_rate == pytest.approx(195 / 375)
    assert (f.enterprises_served, f.external_enterprises) == (4, 2)
    assert (f.rated_hours, f.utilisation) == (100, 0.0625)
    # The rest is the caller's.
    assert (f.no_shows, f.income_fen, f.ratings, f.average_rating) == (0, 0, 0, None)


def test_aggregate_of_nothing_and_without_rated_hours() -> None:
    f = aggregate([], rated_hours=26.849315)
    assert (f.sessions, f.effective_hours, f.sharing_rate, f.enterprises_served, f.rated_hours, f.utilisation) == (0, 0.0, None, 0, 26.85, 0.0)
    assert aggregate(TABLE, rated_hours=0).utilisation is None


ROWS = st.lists(st.builds(SessionRow, st.integers(1, 3), st.none() | st.integers(1, 6), st.sampled_from([None, "internal", "related"]),
                          st.integers(1, 600)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(ROWS, st.floats(1, 10_000))
def test_aggregate_properties(rows: list[SessionRow], rated: float) -> None:
    f = aggregate(rows, rated_hours=rated)
    minutes = sum(r.minutes for r in rows)
    assert f.sessions == len(rows)
    assert f.effective_hours == round(minutes / 60, 2)
    assert abs(f.external_hours + f.internal_hours + f.related_hours - f.effective_hours) <= 0.015
    assert f.external_enterprises <= f.enterprises_served == len({r.enterprise_id for r in rows if r.enterprise_id is not None})
    assert f.utilisation == round(minutes / 60 / rated, 4)
    if rows:
        assert 0 <= f.sharing_rate <= 1  # type: ignore[operator]


def test_the_sharing_rate_is_computed_from_minutes() -> None:
    f = aggregate([SessionRow(1, 10, None, 181), SessionRow(1, None, None, 180)], rated_hours=100)
    assert round(f.sharing_rate, 4) == round(181 / 361, 4) == 0.5014  # type: ignore[arg-type]
    f = aggregate([SessionRow(1, 10, None, 1), SessionRow(1, None, None, 1)], rated_hours=1)
    assert f.sharing_rate == pytest.approx(0.5)
