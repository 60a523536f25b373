"""A small populated platform for database and HTTP tests: staff, enterprises, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from facility_share.accounts import services as accounts
from facility_share.accounts.principal import Principal
from facility_share.db import Database
from facility_share.db.models import User

PASSWORD = "correct horse battery"
ZONE = ZoneInfo("Asia/Shanghai")

ENTERPRISE_A = "91120222MA3AGYGL1F"
ENTERPRISE_B = "91120222MAW7WKKH6D"
ENTERPRISE_UNVERIFIED = "91120222MATWMFMA3Y"


@dataclass
class World:
    principals: dict[str, Principal] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    enterprise_ids: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Principal:
        return self.principals[role]


ROLES = ("admin", "finance", "manager", "other_manager", "member_a", "member_b", "unverified")


async def build_world(db: Database) -> World:
    """Staff of every role and three enterprises (two verified), each with an API token."""
    world = World()
    async with db.session(write=True) as session:
        await accounts.create_user(session, email="admin@t.example.cn", password=PASSWORD, name="Admin", role="admin")
        await accounts.create_user(session, email="finance@t.example.cn", password=PASSWORD, name="Finance", role="finance")
        await accounts.create_user(session, email="manager@t.example.cn", password=PASSWORD, name="Manager", role="unit_manager",
                                   unit_codes=("WQ-TJMAT",))
        await accounts.create_user(session, email="other@t.example.cn", password=PASSWORD, name="Other manager",
                                   role="unit_manager", unit_codes=("WQ-JGU-BIO",))
        admin_id = (await session.execute(select(User.id).where(User.email == "admin@t.example.cn"))).scalar_one()
        for key, uscc, email, verified in (
            ("member_a", ENTERPRISE_A, "a@a.example.cn", True),
            ("member_b", ENTERPRISE_B, "b@b.example.cn", True),
            ("unverified", ENTERPRISE_UNVERIFIED, "u@u.example.cn", False),
        ):
            user = await accounts.register(
                session, accounts.Registration(email=email, password=PASSWORD, name=key, uscc=uscc, enterprise_name=f"{key} Ltd")
            )
            world.enterprise_ids[key] = user.enterprise_id  # type: ignore[assignment]
            if verified:
                await accounts.update_enterprise_status(
                    session, user.enterprise_id,  # type: ignore[arg-type]
                    accounts.EnterpriseUpdate(True, True, True, False, "eaglet", effective_from=date(2026, 1, 1)),
                    actor_id=admin_id,
                )
        await session.commit()
        emails = {
            "admin": "admin@t.example.cn", "finance": "finance@t.example.cn", "manager": "manager@t.example.cn",
            "other_manager": "other@t.example.cn", "member_a": "a@a.example.cn", "member_b": "b@b.example.cn",
            "unverified": "u@u.example.cn",
        }
        for role, email in emails.items():
            user_id = (await session.execute(select(User.id).where(User.email == email))).scalar_one()
            principal = await accounts.load_principal(session, user_id, "token")
            assert principal is not None
            world.principals[role] = principal
            _row, token = await accounts.create_api_token(session, user_id, "tests")
            world.tokens[role] = token
        await session.commit()
    return world


def next_weekday(after: datetime, weekday: int = 1, weeks: int = 1) -> date:
    """A date ``weeks`` weeks ahead on ``weekday`` (default Tuesday), avoiding holiday weeks."""
    from facility_share.bookings.working_calendar import DayKind, classify

    day = after.astimezone(ZONE).date() + timedelta(weeks=weeks)
    day += timedelta(days=(weekday - day.weekday()) % 7)
    while classify(day) is not DayKind.WORKDAY:
        day += timedelta(days=7)
    return day


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE).astimezone(UTC)




@asynccontextmanager
async def catalogue_values(db: Database, code: str, **values: object) -> AsyncIterator[None]:
    """Change some columns of a catalogue resource for one test and put them back after
    (the catalogue rows outlive each test)."""
    from sqlalchemy import update

    from facility_share.db.models import Resource

    columns = [getattr(Resource, name) for name in values] + [Resource.updated_at]
    async with db.session(write=True) as session:
        before = (await session.execute(select(*columns).where(Resource.code == code))).one()
        await session.execute(update(Resource).where(Resource.code == code).values(**values))
        await session.commit()
    try:
        yield
    finally:
        restore = dict(zip([*values, "updated_at"], before, strict=True))
        async with db.session(write=True) as session:
            await session.execute(update(Resource).where(Resource.code == code).values(**restore))
            await session.commit()
