"""Demo data: what `make run` loads so that every feature can be tried right away, as every role.

Loading is idempotent: a database that already has the demo accounts is left alone, so the
demo keeps what people did in it between runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from facility_share import audit
from facility_share.accounts import services as accounts
from facility_share.accounts.principal import Principal
from facility_share.bookings import availability as av
from facility_share.bookings import services as bookings
from facility_share.db import Database
from facility_share.db.models import Booking, Enterprise, Job, ManagingUnit, Resource, UnitRelation, User, utcnow
from facility_share.settings import Settings

DEMO_PASSWORD = "demo-password-2026"
ZONE = ZoneInfo("Asia/Shanghai")

TOUR = """\
facility-share is ready at http://{host}:{port}/

  Catalogue (no login):   http://{host}:{port}/catalog
  A workshop:             http://{host}:{port}/resources/{workshop}
  Managing units:         http://{host}:{port}/units
  JSON API and its docs:  http://{host}:{port}/schema/docs   (OpenAPI: /schema/openapi.json)
  Catalogue export (CSV): http://{host}:{port}/api/v1/catalog/export.csv
  Health:                 http://{host}:{port}/healthz
  English pages:          add ?lang=en to any page, or use the switch in the header

Demo accounts (password for all: {password}), sign in at http://{host}:{port}/login
{accounts}
"""


@dataclass(frozen=True)
class DemoEnterprise:
    uscc: str
    name: str
    name_en: str
    tier: str
    tech_sme: bool
    hnte: bool
    registered: bool
    verified: bool
    controller: str
    member_email: str
    member_name: str


ENTERPRISES = (
    DemoEnterprise("91120222MA3AGYGL1F", "天津云启生物科技有限公司", "Tianjin Yunqi Biotech", "eaglet", True, False, True, True,
                   "陈云启", "chen@yunqi-bio.example.cn", "陈思远"),
    DemoEnterprise("91120222MAW7WKKH6D", "天津瞪羚新材料科技有限公司", "Tianjin Gazelle New Materials", "gazelle", True, True, True, True,
                   "刘建华", "liu@gazelle-mat.example.cn", "刘佳"),
    DemoEnterprise("91120222MARJHTPQ7M", "天津京滨智能装备有限公司", "Tianjin Jingbin Intelligent Equipment", "leader_candidate", False, True,
                   True, True, "王振宇", "wang@jb-equip.example.cn", "王磊"),
    DemoEnterprise("91120222MAQQJE709J", "天津武清领航医药集团有限公司", "Wuqing Linghang Pharma Group", "leader", False, True, True, True,
                   "赵领航", "zhao@linghang-pharma.example.cn", "赵敏"),
    DemoEnterprise("91120222MA239T3E01", "天津微测科技有限公司", "Tianjin Weice Technology", "none", True, False, True, True,
                   "孙微", "sun@weice-tech.example.cn", "孙浩"),
    DemoEnterprise("91110108MA01ABCDEN", "北京远方检测技术有限公司", "Beijing Yuanfang Testing", "none", False, False, False, True,
                   "周远方", "zhou@yuanfang-test.example.cn", "周婷"),
    DemoEnterprise("91120222MATWMFMA3Y", "天津新芽创新科技有限公司", "Tianjin Xinya Innovation", "none", False, False, True, False,
                   "吴新芽", "wu@xinya.example.cn", "吴凡"),
    # The leading enterprise that runs the WQ-CGG-NM unit books its own instruments (internal use).
    DemoEnterprise("91120222MAC8BXBR6C", "天津汊沽港新材料科技股份有限公司", "Tianjin Chagugang New Materials", "leader", False, True, True, True,
                   "钱汊沽", "qian@cgg-nm.example.cn", "钱程"),
    # Same controller as Linghang Pharma: the two share one subsidy cap.
    DemoEnterprise("91120222MAPGL2PA1W", "天津领航生物制剂有限公司", "Linghang Biologics", "gazelle", True, True, True, True,
                   "赵领航", "li@linghang-bio.example.cn", "李娜"),
)
STAFF = (
    ("admin@demo.example.cn", "平台管理员", "admin", ()),
    ("finance@demo.example.cn", "财务专员", "finance", ()),
    ("manager.tjmat@demo.example.cn", "李晓燕", "unit_manager", ("WQ-TJMAT",)),
    ("manager.jgu@demo.example.cn", "周明轩", "unit_manager", ("WQ-JGU-BIO",)),
    ("manager.pilot@demo.example.cn", "郑建国", "unit_manager", ("WQ-DWGZ-PILOT", "WQ-KJG-INC")),
)


async def _principal(session: AsyncSession, email: str) -> Principal:
    user_id = (await session.execute(select(User.id).where(User.email == email))).scalar_one()
    principal = await accounts.load_principal(session, user_id, "session")
    assert principal is not None
    return principal


def _local(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=ZONE).astimezone(av.UTC)


async def _free_span(session: AsyncSession, code: str, after: datetime, minutes: int, skip: int = 0) -> tuple[datetime, datetime] | None:
    """The ``skip``-th earliest free span of ``minutes`` made of whole units after ``after``."""
    found = 0
    window = await bookings.availability(session, code, after, after + timedelta(days=30))
    units = [u for u in window.units if u.remaining > 0]
    for index, unit in enumerate(units):
        end = unit.start + timedelta(minutes=minutes)
        chain = [u for u in units[index:] if u.start < end]
        contiguous = all(a.end == b.start for a, b in zip(chain, chain[1:], strict=False))
        if chain and chain[-1].end == end and (contiguous or window.booking_unit != "slot"):
            if found == skip:
                return unit.start, end
            found += 1
    return None


async def _past_booking(session: AsyncSession, *, code: str, enterprise: Enterprise, user_id: int, day: date, start: time,
                        hours: int, status: str, reason: str = "", quantity: int = 1, mode: str = "staff_operated") -> None:
    resource = (await session.execute(select(Resource).where(Resource.code == code))).scalar_one()
    starts = _local(day, start)
    booking = Booking(
        resource_id=resource.id, enterprise_id=enterprise.id, user_id=user_id, starts_at=starts,
        ends_at=starts + timedelta(hours=hours), quantity=quantity, exclusive=resource.capacity == 1, mode=mode,
        purpose="样品表征 / sample characterisation", status=status, decision_reason=reason,
        customer_class="district" if enterprise.registered_in_district else "external",
        created_at=starts - timedelta(days=5), updated_at=starts, decided_at=starts - timedelta(days=4),
    )
    session.add(booking)
    await session.flush()
    audit.record(session, action=f"demo_{status}", entity="booking", entity_id=booking.id, actor_id=None,
                 actor_kind="system", after={"status": status}, reason="demo data", at=starts)
    if status == "completed":
        from facility_share.db.models import UsageLog
        from facility_share.usage import services as usage

        log = UsageLog(resource_id=resource.id, booking_id=booking.id, enterprise_id=enterprise.id, started_at=starts,
                       ended_at=booking.ends_at, samples=3, operator="操作员", mode=mode, source="manager", recorded_at=booking.ends_at)
        session.add(log)
        await session.flush()
        log.session_id = log.id
        await usage.issue_charge(session, log, resource, booking=booking)


async def load_demo(settings: Settings) -> str:
    """Create the demo accounts, enterprises, qualifications and bookings; returns the account list."""
    started = utcnow()
    database = Database(settings.database_url, null_pool=True)
    try:
        async with database.session(write=True) as session:
            exists = (await session.execute(select(User.id).where(User.email == STAFF[0][0]))).first()
            agent_key = None
            if not exists:
                agent_key = await _create(session)
                await session.commit()
        await _demo_settlements(database)
        # The demo's invented history is not news: nobody is e-mailed about it (what people book
        # and decide once the service runs is notified as usual).
        async with database.session(write=True) as session:
            await session.execute(delete(Job).where(Job.kind == "notify", Job.status == "queued", Job.created_at >= started))
            await session.commit()
    finally:
        await database.dispose()
    lines = [f"  {role:<18} {email}" + (f"  ({', '.join(units)})" if units else "") for email, _n, role, units in STAFF]
    if agent_key:
        lines.append(f"  instrument agent   key for WQ-TJMAT-XRD01: {agent_key}  (POST /api/v1/agent/sessions)")
    for e in ENTERPRISES:
        state = "verified" if e.verified else "NOT verified: can browse, cannot book"
        lines.append(f"  {'enterprise':<18} {e.member_email}  ({e.name}, {e.tier}, {state})")
    return "\n".join(lines)


async def _create(session: AsyncSession) -> str:
    """Everything the demo holds; returns an instrument agent key to try the agent API with."""
    now = utcnow()
    for email, name, role, units in STAFF:
        await accounts.create_user(session, email=email, password=DEMO_PASSWORD, name=name, role=role, unit_codes=units)
    admin = await _principal(session, STAFF[0][0])

    enterprises: dict[str, Enterprise] = {}
    members: dict[str, int] = {}
    for e in ENTERPRISES:
        user = await accounts.register(
            session,
            accounts.Registration(email=e.member_email, password=DEMO_PASSWORD, name=e.member_name, uscc=e.uscc,
                                  enterprise_name=e.name),
        )
        enterprise = await session.get(Enterprise, user.enterprise_id)
        assert enterprise is not None
        enterprise.name_en = e.name_en
        if e.verified:
            await accounts.update_enterprise_status(
                session, enterprise.id,
                accounts.EnterpriseUpdate(verified=True, registered_in_district=e.registered, tech_sme=e.tech_sme, hnte=e.hnte,
                                          tier=e.tier, controller=e.controller, effective_from=date(2026, 1, 1),
                                          reason="demo: verified from the business licence"),
                actor_id=admin.user_id,
            )
        enterprises[e.uscc] = enterprise
        members[e.uscc] = user.id

    cgg = (await session.execute(select(ManagingUnit).where(ManagingUnit.code == "WQ-CGG-NM"))).scalar_one_or_none()
    if cgg is not None:
        session.add(UnitRelation(enterprise_id=enterprises["91120222MAC8BXBR6C"].id, unit_id=cgg.id, relation="internal"))
    dwgz = (await session.execute(select(ManagingUnit).where(ManagingUnit.code == "WQ-DWGZ-PILOT"))).scalar_one_or_none()
    if dwgz is not None:
        session.add(UnitRelation(enterprise_id=enterprises["91120222MAQQJE709J"].id, unit_id=dwgz.id, relation="related"))
    await session.flush()

    # Qualifications: Yunqi's member may run the SEM and the TGA themselves.
    manager = await _principal(session, "manager.tjmat@demo.example.cn")
    for code in ("WQ-TJMAT-SEM01", "WQ-TJMAT-TGA01"):
        await accounts.grant_qualification(session, manager, user_email="chen@yunqi-bio.example.cn", resource_code=code,
                                           valid_until=(now + timedelta(days=365)).date(), note="培训考核通过 / trained")

    yunqi, gazelle, jingbin = enterprises["91120222MA3AGYGL1F"], enterprises["91120222MAW7WKKH6D"], enterprises["91120222MARJHTPQ7M"]
    weice, yuanfang = enterprises["91120222MA239T3E01"], enterprises["91110108MA01ABCDEN"]
    today = now.astimezone(ZONE).date()
    monday = today - timedelta(days=today.weekday())

    # The past weeks: every final status.
    past = [
        ("WQ-TJMAT-SEM01", yunqi, 3, "completed", ""), ("WQ-TJMAT-XRD01", gazelle, 2, "completed", ""),
        ("WQ-TJMAT-UTM01", jingbin, 2, "no_show", ""), ("WQ-TJMAT-TGA01", weice, 1, "cancelled", "项目延期 / project postponed"),
        ("WQ-TJMAT-SEM01", yuanfang, 1, "rejected", "样品含放射性物质，不符合安全要求 / radioactive samples not accepted"),
        ("WQ-TJMAT-XRD01", weice, 1, "expired", ""),
    ]
    for weeks_ago in (1, 2, 3):
        for index, (code, enterprise, hours, status, reason) in enumerate(past):
            day = monday - timedelta(weeks=weeks_ago) + timedelta(days=index % 5)
            await _past_booking(session, code=code, enterprise=enterprise, user_id=members[enterprise.uscc], day=day,
                                start=time(9 if index % 2 else 14), hours=hours, status=status, reason=reason)

    # The coming weeks: requests waiting for approval, approved and auto-approved bookings.
    coming = [
        ("chen@yunqi-bio.example.cn", "WQ-TJMAT-SEM01", 120, "self_operated", 0, "approve"),
        ("liu@gazelle-mat.example.cn", "WQ-TJMAT-SEM01", 60, "staff_operated", 0, None),
        ("liu@gazelle-mat.example.cn", "WQ-TJMAT-XRD01", 60, "staff_operated", 6, None),
        ("wang@jb-equip.example.cn", "WQ-TJMAT-UTM01", 120, "staff_operated", 10, "approve"),
        ("sun@weice-tech.example.cn", "WQ-TJMAT-TGA01", 60, "staff_operated", 4, None),
        ("zhou@yuanfang-test.example.cn", "WQ-TJMAT-XRD01", 90, "staff_operated", 3, None),
        ("zhao@linghang-pharma.example.cn", "WQ-TJMAT-PILOT", 480, "staff_operated", 0, "approve"),
        ("chen@yunqi-bio.example.cn", "WQ-TJMAT-TGA01", 60, "self_operated", 2, None),
    ]
    after = now + timedelta(days=2)
    for index, (email, code, minutes, mode, samples, decision) in enumerate(coming):
        principal = await _principal(session, email)
        span = await _free_span(session, code, after + timedelta(days=index % 4), minutes)
        if span is None:
            continue
        booking = await bookings.request_booking(
            session, principal,
            bookings.BookingInput(code, span[0], span[1], 1, mode, "新产品研发测试 / R&D testing", samples),
            max_open_requests=50, now=now,
        )
        if decision and booking.status == "requested":
            resource = await session.get(Resource, booking.resource_id)
            assert resource is not None
            unit_manager = manager if resource.unit_id in manager.managed_unit_ids else admin
            await bookings.change_status(session, unit_manager, booking.id, decision, reason="已安排 / scheduled", now=now)
    await session.flush()
    await _usage_history(session, enterprises, members, admin, now)
    from facility_share.payments.demo import add_demo_payments

    # Yunqi's charges show online payments in every state (paid, refunded in part, processing, declined).
    await add_demo_payments(session, yunqi.id, now)
    from facility_share.usage.services import create_agent_key

    _row, key = await create_agent_key(session, manager, "WQ-TJMAT-XRD01", "XRD 工作站 / XRD workstation")
    return key


# Resources with a usage history in the demo, and how their customers are drawn.
HISTORY_RESOURCES = (
    "WQ-TJMAT-SEM01", "WQ-TJMAT-XRD01", "WQ-TJMAT-TGA01", "WQ-TJMAT-UTM01",
    "WQ-JJKG-TEST-GC01", "WQ-JJKG-TEST-HPLC01", "WQ-JGU-BIO-CLSM01", "WQ-CGG-NM-DMA01",
)
HISTORY_DAYS = 120
# A well-run materials lab: its four instruments are busy most working days, so that its
# sharing score reaches a paying grade and the demo settlements show an award (the other
# units' light use grades them "poor", which shows the rectification flag).
BUSY_RESOURCES = ("WQ-TJMAT-SEM01", "WQ-TJMAT-XRD01", "WQ-TJMAT-TGA01", "WQ-TJMAT-UTM01")


async def _usage_history(session: AsyncSession, enterprises: dict[str, Enterprise], members: dict[str, int],
                         admin: Principal, now: datetime) -> None:
    """Four months of finished services: bookings, usage sessions, charges (most paid) and
    ratings, so that usage pages, charges and sharing figures have something to show."""
    import random

    from facility_share.db.models import Rating, UsageLog
    from facility_share.usage import services as usage

    rng = random.Random(20261123)
    customers = [e for e in ENTERPRISES if e.verified]
    resources = [
        r for r in (await session.execute(select(Resource).where(Resource.code.in_(HISTORY_RESOURCES)))).scalars()
    ]
    manager_ids = {}
    for email, _name, role, units in STAFF:
        if role == "unit_manager":
            principal = await _principal(session, email)
            for unit_id in principal.managed_unit_ids:
                manager_ids[unit_id] = principal
    today = now.astimezone(ZONE).date()
    for offset in range(HISTORY_DAYS, 7, -1):
        day = today - timedelta(days=offset)
        if day.weekday() >= 5:
            continue
        for resource in resources:
            busy = resource.code in BUSY_RESOURCES
            if rng.random() < (0.15 if busy else 0.45):
                continue
            customer = rng.choice(customers)
            enterprise = enterprises[customer.uscc]
            if busy:
                hours = rng.choice((4, 6, 8))
                start = _local(day, time(9))
            else:
                hours = rng.choice((1, 1, 2, 2, 3))
                start = _local(day, time(rng.choice((9, 14))))
            booking = Booking(
                resource_id=resource.id, enterprise_id=enterprise.id, user_id=members[customer.uscc], starts_at=start,
                ends_at=start + timedelta(hours=hours), exclusive=resource.capacity == 1, status="completed",
                purpose="检测服务 / testing service", customer_class="district" if enterprise.registered_in_district else "external",
                created_at=start - timedelta(days=3), updated_at=start + timedelta(hours=hours), decided_at=start - timedelta(days=2),
                decision_reason="已安排 / scheduled", version=2,
            )
            session.add(booking)
            await session.flush()
            # Real use rarely matches the booking to the minute.
            began = start + timedelta(minutes=rng.choice((0, 5, 10)))
            ended = start + timedelta(hours=hours) - timedelta(minutes=rng.choice((0, 10, 20)))
            log = UsageLog(resource_id=resource.id, booking_id=booking.id, enterprise_id=enterprise.id, started_at=began,
                           ended_at=ended, samples=rng.randint(0, 12), operator="操作员", mode="staff_operated",
                           source=rng.choice(("manager", "manager", "agent")), recorded_at=ended)
            session.add(log)
            await session.flush()
            log.session_id = log.id
            charge = await usage.issue_charge(session, log, resource, booking=booking)
            manager = manager_ids.get(resource.unit_id, admin)
            if charge is not None and rng.random() < 0.7:
                await usage.mark_paid(session, manager, charge.id, method=rng.choice(("bank_transfer", "invoice")),
                                      reference=f"WQ{day:%Y%m%d}{charge.id:05d}")
            if rng.random() < 0.5:
                session.add(Rating(booking_id=booking.id, resource_id=resource.id, enterprise_id=enterprise.id,
                                   user_id=members[customer.uscc], stars=rng.choice((3, 4, 4, 5, 5, 5)),
                                   comment=rng.choice(("", "数据质量好，响应及时。", "预约方便 / easy to book", "报告出具稍慢。"))))
    await session.flush()


async def _demo_settlements(database: Database) -> None:
    """Two settlements under the default policy, once its versions are loaded: the month before
    last approved, last month still a draft (finance can review, recompute and approve it).

    Idempotent: nothing is done if any settlement exists, if the policy or the finance account
    is missing, or if a period cannot be settled (e.g. before the policy took effect).
    """
    from facility_share.db.models import PolicyVersion, Settlement
    from facility_share.errors import FacilityShareError
    from facility_share.finance import settlements

    today = utcnow().astimezone(ZONE).date()
    first = today.replace(day=1)
    last_month = first - timedelta(days=1)
    month_before = last_month.replace(day=1) - timedelta(days=1)
    for label, approve in ((f"{month_before:%Y-%m}", True), (f"{last_month:%Y-%m}", False)):
        async with database.session(write=True) as session:
            if approve and (await session.execute(select(Settlement.id).limit(1))).first():
                return
            policy = (await session.execute(select(PolicyVersion.id).where(PolicyVersion.code == "wuqing-default").limit(1))).first()
            finance = (await session.execute(select(User.id).where(User.email == "finance@demo.example.cn"))).first()
            if policy is None or finance is None:
                return
            principal = await _principal(session, "finance@demo.example.cn")
            try:
                settlement = await settlements.create_draft(
                    session, principal, settlements.DraftRequest(period=label, policy_code="wuqing-default", note="demo"))
                if approve:
                    await settlements.approve(session, principal, settlement.id, expected_results_digest=settlement.results_digest)
            except FacilityShareError:
                await session.rollback()
                continue
            await session.commit()
