"""The booking transaction keeps resource definitions (rules, opening hours, fees) per process:
every change of a resource reaches the next booking, and the confirmation the API returns
without reading the booking back says what the database holds. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from facility_share.accounts import services as accounts
from facility_share.bookings import services
from facility_share.catalog.files import load_catalog
from facility_share.catalog.importer import import_catalog
from facility_share.db import Database
from facility_share.db.models import AuditEvent, Booking, Resource
from facility_share.errors import InvalidInput, NotFound
from facility_share.settings import load_settings
from facility_share.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
CODE = "CACHE-R1"
NOW = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
DAY = datetime(2026, 11, 25, tzinfo=UTC)  # a Wednesday; opening hours below are in UTC


def write_catalogue(folder: Path, *, hours: str, district_rate: int, approval: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "units").mkdir(exist_ok=True)
    (folder / "categories.yaml").write_text((ROOT / "catalog" / "categories.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    document = {
        "unit": {"code": "CACHE", "name_zh": "缓存单位", "name_en": "Cache unit", "kind": "institute"},
        "defaults": {
            "timezone": "UTC",
            "opening_hours": {"daily": [hours]},
            "booking": {"slot_minutes": 30, "min_minutes": 30, "max_minutes": 240, "lead_hours": 0, "horizon_days": 60,
                        "approval_required": approval, "working_calendar": False},
        },
        "resources": [{
            "code": CODE, "kind": "instrument", "category": "0105", "name_zh": "色谱仪", "name_en": "HPLC",
            "fees": [{"basis": "hour", "label_zh": "机时", "label_en": "Hour", "internal": 100, "district": district_rate,
                      "external": 900}],
        }],
    }
    (folder / "units" / "CACHE.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return folder


async def import_version(db: Database, folder: Path) -> None:
    async with db.session(write=True) as session:
        await import_catalog(session, load_catalog(folder))
        await session.commit()


async def member(db: Database):  # type: ignore[no-untyped-def]
    """A verified district enterprise's member, and an API token."""
    async with db.session(write=True) as session:
        admin = await accounts.create_user(session, email="admin@cache.example.cn", password="correct horse battery",
                                           name="Admin", role="admin")
        user = await accounts.register(session, accounts.Registration(
            email="m@cache.example.cn", password="correct horse battery", name="Member", uscc="91120222MA3AGYGL1F",
            enterprise_name="Cache Ltd"))
        await accounts.update_enterprise_status(
            session, user.enterprise_id, accounts.EnterpriseUpdate(True, True, False, False, "none", effective_from=date(2026, 1, 1)),
            actor_id=admin.id)
        _row, token = await accounts.create_api_token(session, user.id, "tests")
        principal = await accounts.load_principal(session, user.id, "token")
        await session.commit()
    return principal, token


async def book(db: Database, principal, start: datetime, hours: int = 1) -> Booking:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        booking = await services.request_booking(
            session, principal, services.BookingInput(CODE, start, start + timedelta(hours=hours)), max_open_requests=10, now=NOW
        )
        await session.commit()
        return booking


async def test_a_new_import_reaches_the_next_booking(db: Database, tmp_path: Path) -> None:
    await import_version(db, write_catalogue(tmp_path / "v1", hours="08:00-18:00", district_rate=200, approval=False))
    principal, _token = await member(db)
    first = await book(db, principal, DAY.replace(hour=9))
    assert first.status == "approved" and first.estimate_fen == 200_00

    # New hours, a new rate and approval now needed: the cached definition must not survive.
    await import_version(db, write_catalogue(tmp_path / "v2", hours="08:00-12:00", district_rate=300, approval=True))
    second = await book(db, principal, DAY.replace(hour=10))
    assert second.status == "requested" and second.estimate_fen == 300_00
    with pytest.raises(InvalidInput, match="not open"):
        await book(db, principal, DAY.replace(hour=13))


async def test_an_edit_of_the_resource_row_reaches_the_next_booking(db: Database, tmp_path: Path) -> None:
    await import_version(db, write_catalogue(tmp_path / "v1", hours="08:00-18:00", district_rate=200, approval=False))
    principal, _token = await member(db)
    assert (await book(db, principal, DAY.replace(hour=9))).status == "approved"
    async with db.session(write=True) as session:
        resource = (await session.execute(select(Resource).where(Resource.code == CODE))).scalar_one()
        resource.approval_required, resource.max_minutes = True, 60
        await session.commit()
    assert (await book(db, principal, DAY.replace(hour=10))).status == "requested"
    with pytest.raises(InvalidInput, match="maximum is 60 minutes"):
        await book(db, principal, DAY.replace(hour=11), hours=2)


async def test_an_unchanged_resource_is_read_once(db: Database, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    await import_version(db, write_catalogue(tmp_path / "v1", hours="08:00-18:00", district_rate=200, approval=False))
    principal, _token = await member(db)
    reads: list[str] = []
    load_resource = services.load_resource

    async def counting(session, code):  # type: ignore[no-untyped-def]
        reads.append(code)
        return await load_resource(session, code)

    monkeypatch.setattr(services, "load_resource", counting)
    services._definitions.clear()
    for hour in (9, 10, 11):
        await book(db, principal, DAY.replace(hour=hour))
    assert reads == [CODE]  # the stamp read under the lock matched the cached definition twice


async def test_a_retired_resource_cannot_be_booked_from_the_cache(db: Database, tmp_path: Path) -> None:
    await import_version(db, write_catalogue(tmp_path / "v1", hours="08:00-18:00", district_rate=200, approval=False))
    principal, _token = await member(db)
    await book(db, principal, DAY.replace(hour=9))
    async with db.session(write=True) as session:
        resource = (await session.execute(select(Resource).where(Resource.code == CODE))).scalar_one()
        resource.retired_at = NOW
        await session.commit()
    with pytest.raises(NotFound):
        await book(db, principal, DAY.replace(hour=10))


async def test_the_confirmation_is_what_the_database_holds(db: Database, database_url: str, tmp_path: Path) -> None:
    await import_version(db, write_catalogue(tmp_path / "v1", hours="00:00-24:00", district_rate=200, approval=False))
    _principal, token = await member(db)
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=db)
    headers = {"authorization": f"Bearer {token}"}
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    async with AsyncTestClient(app) as client:
        for hour in (0, 1):  # the second one comes from a warm cache
            begins = start + timedelta(hours=hour)
            response = await client.post("/api/v1/bookings", headers=headers, json={
                "resource_code": CODE, "start": begins.isoformat(), "end": (begins + timedelta(hours=1)).isoformat(),
                "purpose": "  HPLC of a batch  ", "samples": 3})
            assert response.status_code == 201, response.text
            placed = response.json()
            stored = (await client.get(f"/api/v1/bookings/{placed['id']}", headers=headers)).json()
            assert placed == stored
            assert placed["purpose"] == "HPLC of a batch" and placed["estimate_fen"] == 200_00
            assert placed["unit_code"] == "CACHE" and placed["enterprise_name"] == "Cache Ltd"
    async with db.session() as session:
        events = (await session.execute(select(AuditEvent).where(AuditEvent.entity == "booking"))).scalars().all()
        assert sorted(e.action for e in events) == ["request_auto_approved"] * 2
        assert {e.entity_id for e in events} == set(
            (await session.execute(select(Booking.id))).scalars()
        )
        assert all(e.after["status"] == "approved" and e.after["version"] == 0 for e in events)
        assert (await session.execute(select(func.count()).select_from(Booking))).scalar_one() == 2
