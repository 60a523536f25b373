"""Settlements against the database, on SQLite and PostgreSQL: what the SQL gathers, the
hand-computed scenario of a quarter, and the finality of an approved settlement.

Policy wuqing-default 2026.1. Quarter 2026-Q3 ([1 July, 1 October)), cut-off 15 October 2026
00:00 Beijing time. Every charge is on WQ-TJMAT-SEM01 (open, unit WQ-TJMAT) unless noted:

    enterprise      class (in force)          charge(s), fen                      subsidy, fen
    EAGLET          eaglet                    1 000 000 paid                      × 50 % =   500 000
    REFUNDED        tech SME                  2 000 000 paid; 500 000 refunded    1 500 000 × 40 % = 600 000
                                              before the cut-off, 300 000 after
    RELATED         gazelle, related party    1 000 000 paid                      0 (related party)
    INTERNAL        leader, the unit itself   1 000 000 paid                      0 (internal use)
    TIERCHANGE      eaglet, leader from 1 Aug 1 000 000 in July, 1 000 000 in Aug  500 000 + 300 000 = 800 000
    LATEPAY         eaglet                    1 000 000 paid 20 Oct (after cut-off) 0 (nothing paid)
    UNREGISTERED    eaglet, not in district   1 000 000 paid                      0 (not registered)
    CLOSEDRES       eaglet                    1 000 000 on closed WQ-CGG-NM-FAT01 0 (resource not open)
    CAPPED          eaglet (cap 100 000 yuan) Q2 (approved): 18 000 000 → 9 000 000
                                              Q3: 4 000 000 → 2 000 000, capped to 1 000 000
    GROUP1, GROUP2  gazelle, one controller   70 000 000 each → 28 000 000 each (under the
                                              gazelle cap of 30 000 000); the group's cap of
                                              50 000 000 splits 25 000 000 + 25 000 000

    total 500 000 + 600 000 + 800 000 + 1 000 000 + 50 000 000 = 52 900 000 fen
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from facility_share.db import Database
from facility_share.db.models import (
    Charge,
    Enterprise,
    EnterpriseStatus,
    ManagingUnit,
    Payment,
    Refund,
    Resource,
    Settlement,
    SettlementLine,
    UnitRelation,
)
from facility_share.errors import Conflict, Forbidden, InvalidInput, NotFound
from facility_share.finance import settlements
from facility_share.finance.settlements import DraftRequest
from tests.world import build_world

ZONE = ZoneInfo("Asia/Shanghai")
ROOT_CATALOG = Path(__file__).resolve().parent.parent / "catalog"
SEM, CLOSED = "WQ-TJMAT-SEM01", "WQ-CGG-NM-FAT01"
CUTOFF = datetime(2026, 10, 15, tzinfo=ZONE)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZONE).astimezone(UTC)


async def load_policies(db: Database) -> None:
    from facility_share.finance import policy_store
    from facility_share.finance.policy import load_policies as read_policies

    async with db.session(write=True) as session:
        await policy_store.import_policies(session, read_policies(ROOT_CATALOG / "policies"))
        await session.commit()


class Builder:
    """Enterprises, statuses, relations, charges, payments and refunds written directly."""

    def __init__(self, session) -> None:  # type: ignore[no-untyped-def]
        self.session = session
        self.count = 0

    async def resource(self, code: str) -> Resource:
        return (await self.session.execute(select(Resource).where(Resource.code == code))).scalar_one()

    async def enterprise(self, name: str, tier: str = "eaglet", *, registered: bool = True, tech_sme: bool = False,
                         controller: str = "", changes: tuple[tuple[date, str], ...] = ()) -> Enterprise:
        self.count += 1
        enterprise = Enterprise(uscc=f"91120222TEST{self.count:05d}X", name=name, registered_in_district=registered,
                                tech_sme=tech_sme, tier=tier, controller=controller, verified_at=NOW)
        self.session.add(enterprise)
        await self.session.flush()
        for day, new_tier in ((date(2026, 1, 1), tier), *changes):
            self.session.add(EnterpriseStatus(enterprise_id=enterprise.id, effective_from=day, registered_in_district=registered,
                                              verified=True, tech_sme=tech_sme, hnte=False, tier=new_tier, controller=controller))
        await self.session.flush()
        return enterprise

    async def relate(self, enterprise: Enterprise, unit_code: str, relation: str) -> None:
        unit = (await self.session.execute(select(ManagingUnit).where(ManagingUnit.code == unit_code))).scalar_one()
        self.session.add(UnitRelation(enterprise_id=enterprise.id, unit_id=unit.id, relation=relation))
        await self.session.flush()

    async def charge(self, enterprise: Enterprise, served: date, fen: int, *, paid_on: date | None = date(2026, 9, 20),
                     refunds: tuple[tuple[date, int], ...] = (), code: str = SEM) -> Charge:
        resource = await self.resource(code)
        charge = Charge(kind="service", resource_id=resource.id, enterprise_id=enterprise.id, service_date=at(served),
                        customer_class="district", lines=[], total_fen=fen, status="paid" if paid_on else "unpaid",
                        paid_fen=fen if paid_on else 0)
        self.session.add(charge)
        await self.session.flush()
        if paid_on is not None:
            payment = Payment(charge_id=charge.id, provider="offline", status="succeeded", amount_fen=fen, amount_received_fen=fen,
                              method="bank_transfer", idempotency_key=f"test-{charge.id}", succeeded_at=at(paid_on))
            self.session.add(payment)
            await self.session.flush()
            for day, amount in refunds:
                self.session.add(Refund(payment_id=payment.id, charge_id=charge.id, amount_fen=amount, status="succeeded",
                                        cause="manager", idempotency_key=f"test-refund-{charge.id}-{day}", succeeded_at=at(day)))
                payment.refunded_fen += amount
                charge.refunded_fen += amount
            await self.session.flush()
        return charge


@pytest.fixture
async def quarter(imported):  # type: ignore[no-untyped-def]
    """The scenario above, with Q2 of CAPPED settled and approved; returns (db, world, enterprises)."""
    db = imported
    world = await build_world(db)
    await load_policies(db)
    e: dict[str, Enterprise] = {}
    async with db.session(write=True) as session:
        b = Builder(session)
        e["EAGLET"] = await b.enterprise("Eaglet Ltd")
        e["REFUNDED"] = await b.enterprise("Refunded Ltd", "none", tech_sme=True)
        e["RELATED"] = await b.enterprise("Related Ltd", "gazelle")
        e["INTERNAL"] = await b.enterprise("Internal Ltd", "leader")
        e["TIERCHANGE"] = await b.enterprise("Tier Change Ltd", changes=((date(2026, 8, 1), "leader"),))
        e["LATEPAY"] = await b.enterprise("Late Payer Ltd")
        e["UNREGISTERED"] = await b.enterprise("Elsewhere Ltd", registered=False)
        e["CLOSEDRES"] = await b.enterprise("Closed Resource Ltd")
        e["CAPPED"] = await b.enterprise("Capped Ltd")
        e["GROUP1"] = await b.enterprise("Group One Ltd", "gazelle", controller="Zhang San")
        e["GROUP2"] = await b.enterprise("Group Two Ltd", "gazelle", controller="Zhang San")
        await b.relate(e["RELATED"], "WQ-TJMAT", "related")
        await b.relate(e["INTERNAL"], "WQ-TJMAT", "internal")
        july, august = date(2026, 7, 14), date(2026, 8, 11)
        await b.charge(e["EAGLET"], july, 1_000_000)
        await b.charge(e["REFUNDED"], july, 2_000_000, refunds=((date(2026, 9, 1), 500_000), (date(2026, 10, 20), 300_000)))
        await b.charge(e["RELATED"], july, 1_000_000)
        await b.charge(e["INTERNAL"], july, 1_000_000)
        await b.charge(e["TIERCHANGE"], july, 1_000_000)
        await b.charge(e["TIERCHANGE"], august, 1_000_000)
        await b.charge(e["LATEPAY"], july, 1_000_000, paid_on=date(2026, 10, 20))
        await b.charge(e["UNREGISTERED"], july, 1_000_000)
        await b.charge(e["CLOSEDRES"], july, 1_000_000, code=CLOSED)
        await b.charge(e["CAPPED"], date(2026, 5, 12), 18_000_000, paid_on=date(2026, 6, 1))
        await b.charge(e["CAPPED"], august, 4_000_000)
        await b.charge(e["GROUP1"], july, 70_000_000)
        await b.charge(e["GROUP2"], august, 70_000_000)
        await session.commit()
    async with db.session(write=True) as session:
        q2 = await settlements.create_draft(session, world["finance"], DraftRequest("2026-Q2", "wuqing-default",
                                            cutoff_at=datetime(2026, 7, 15, tzinfo=ZONE)), now=NOW)
        await settlements.approve(session, world["finance"], q2.id, now=NOW)
        await session.commit()
    return db, world, e


async def draft(db: Database, world, period: str = "2026-Q3", **kwargs) -> Settlement:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        s = await settlements.create_draft(session, world["finance"], DraftRequest(period, "wuqing-default", cutoff_at=CUTOFF, **kwargs),
                                           now=NOW)
        await session.commit()
        return s


async def amounts(db: Database, settlement_id: int, kind: str = "subsidy") -> dict[str, SettlementLine]:
    async with db.session() as session:
        return {line.subject_name: line for line in await settlements.lines_of(session, settlement_id, kind)}


async def test_the_quarter_by_hand(quarter) -> None:  # type: ignore[no-untyped-def]
    db, world, _e = quarter
    s = await draft(db, world)
    lines = await amounts(db, s.id)
    got = {name: line.amount_fen for name, line in lines.items()}
    assert got == {
        "Eaglet Ltd": 500_000,
        "Refunded Ltd": 600_000,
        "Related Ltd": 0,
        "Internal Ltd": 0,
        "Tier Change Ltd": 800_000,
        "Late Payer Ltd": 0,
        "Elsewhere Ltd": 0,
        "Closed Resource Ltd": 0,
        "Capped Ltd": 1_000_000,
        "Group One Ltd": 25_000_000,
        "Group Two Ltd": 25_000_000,
    }
    assert s.subsidy_total_fen == 52_900_000
    flags = {name: set(line.flags) for name, line in lines.items()}
    assert "related_party" in flags["Related Ltd"]
    assert "internal_use" in flags["Internal Ltd"]
    assert "nothing_paid" in flags["Late Payer Ltd"]
    assert "not_registered" in flags["Elsewhere Ltd"]
    assert "resource_not_open" in flags["Closed Resource Ltd"]
    assert "annual_cap" in flags["Capped Ltd"]
    assert "controller_cap" in flags["Group One Ltd"] and "controller_cap" in flags["Group Two Ltd"]
    # The tier change: two rates, the latest class (leader) named on the line.
    assert lines["Tier Change Ltd"].category == "leader"
    rates = [step["values"]["rate_percent"] for step in lines["Tier Change Ltd"].steps if step["rule"] == "rate"]
    assert sorted(rates) == ["30", "50"]
    assert lines["Refunded Ltd"].basis_fen == 1_500_000
    assert lines["Capped Ltd"].figures["granted_this_year_fen"] == 9_000_000
    # Every line explains itself in both languages.
    for line in lines.values():
        assert line.explanation_zh and line.explanation_en


async def test_budget_scaling_sums_exactly(quarter) -> None:  # type: ignore[no-untyped-def]
    db, world, _e = quarter
    s = await draft(db, world, subsidy_budget_fen=1_000_001)
    lines = await amounts(db, s.id)
    assert sum(line.amount_fen for line in lines.values()) == 1_000_001
    assert s.subsidy_total_fen == 1_000_001
    assert all(line.amount_fen <= line.before_budget_fen for line in lines.values())
    assert "budget_scaled" in lines["Group One Ltd"].flags


async def test_unit_figures_count_external_paid_income_only(quarter) -> None:  # type: ignore[no-untyped-def]
    db, world, _e = quarter
    s = await draft(db, world)
    awards = await amounts(db, s.id, "award")
    tjmat = next(line for line in awards.values() if line.subject_code == "WQ-TJMAT")
    # External, open, paid net of refunds by the cut-off: everything on SEM01 but RELATED,
    # INTERNAL and LATEPAY: 1.0 + 1.5 + 2.0 + 1.0 (unregistered still buys) + 4.0 + 140 million fen.
    assert tjmat.figures["external_income_fen"] == 149_500_000


async def test_recomputing_gives_the_same_bytes(quarter) -> None:  # type: ignore[no-untyped-def]
    db, world, _e = quarter
    s = await draft(db, world)
    async with db.session(write=True) as session:
        settlement, policy = await settlements.load(session, s.id)
        first = settlements.lines_csv(settlement, policy, await settlements.lines_of(session, s.id))
        again = await settlements.recompute(session, world["finance"], s.id, now=NOW + timedelta(hours=1))
        await session.commit()
        assert again.results_digest == s.results_digest and again.inputs_digest == s.inputs_digest
    async with db.session() as session:
        settlement, policy = await settlements.load(session, s.id)
        second = settlements.lines_csv(settlement, policy, await settlements.lines_of(session, s.id))
    assert first == second
    assert first.startswith("\ufeff".encode())


async def test_approval_stops_when_the_inputs_changed(quarter) -> None:  # type: ignore[no-untyped-def]
    db, world, e = quarter
    s = await draft(db, world)
    async with db.session(write=True) as session:
        # A refund dated before the cut-off, recorded after the draft was computed.
        b = Builder(session)
        charge = await b.charge(e["EAGLET"], date(2026, 9, 1), 200_000, refunds=((date(2026, 9, 30), 200_000),))
        assert charge.id
        await session.commit()
    async with db.session(write=True) as session:
        with pytest.raises(Conflict, match="changed"):
            await settlements.approve(session, world["finance"], s.id, now=NOW)
        await session.rollback()
    async with db.session(write=True) as session:
        await settlements.recompute(session, world["finance"], s.id, now=NOW)
        approved = await settlements.approve(session, world["finance"], s.id, now=NOW)
        await session.commit()
        assert approved.status == "approved"


async def test_an_approved_settlement_never_changes(quarter, dialect: str) -> None:  # type: ignore[no-untyped-def]
    db, world, _e = quarter
    s = await draft(db, world)
    async with db.session(write=True) as session:
        await settlements.approve(session, world["finance"], s.id, now=NOW)
        await session.commit()
    async with db.session(write=True) as session:
        for attempt in (
            settlements.recompute(session, world["finance"], s.id, now=NOW),
            settlements.approve(session, world["finance"], s.id, now=NOW),
            settlements.discard(session, world["finance"], s.id),
        ):
            with pytest.raises(Conflict):
                await attempt
        with pytest.raises(Conflict, match="overlaps approved"):
            await settlements.create_draft(session, world["finance"], DraftRequest("2026-09", "wuqing-default", cutoff_at=CUTOFF), now=NOW)
        with pytest.raises(Conflict, match="overlaps approved"):
            await settlements.create_draft(session, world["finance"], DraftRequest("2026", "wuqing-default", cutoff_at=CUTOFF), now=NOW)
    # Below the service, the database itself refuses.
    for statement in (
        f"UPDATE settlements SET subsidy_total_fen = 1 WHERE id = {s.id}",
        f"DELETE FROM settlements WHERE id = {s.id}",
        f"UPDATE settlement_lines SET amount_fen = amount_fen + 1 WHERE settlement_id = {s.id}",
        f"DELETE FROM settlement_lines WHERE settlement_id = {s.id}",
        "INSERT INTO settlement_lines (settlement_id, kind, position, subject_id, subject_code, subject_name, category,"
        " basis_fen, before_budget_fen, adjustment_fen, amount_fen, flags, figures, steps, explanation_zh, explanation_en)"
        f" VALUES ({s.id}, 'subsidy', 99, 1, 'X', 'X', '', 0, 0, 0, 1, '[]', '{{}}', '[]', '', '')",
    ):
        async with db.session(write=True) as session:
            with pytest.raises(Exception, match="approved settlements are final"):
                await session.execute(text(statement))
                await session.commit()
    async with db.session() as session:
        after = await session.get(Settlement, s.id)
        assert after is not None and after.subsidy_total_fen == s.subsidy_total_fen and after.status == "approved"


async def test_bad_requests_change_nothing(quarter) -> None:  # type: ignore[no-untyped-def]
    db, world, _e = quarter
    async with db.session(write=True) as session:
        before = (await session.execute(select(Settlement.id))).scalars().all()
        with pytest.raises(InvalidInput, match="period"):
            await settlements.create_draft(session, world["finance"], DraftRequest("2026-Q5", "wuqing-default"), now=NOW)
        with pytest.raises(InvalidInput, match="budget"):
            await settlements.create_draft(session, world["finance"], DraftRequest("2026-Q3", "wuqing-default", subsidy_budget_fen=-1), now=NOW)
        with pytest.raises(InvalidInput, match="future"):
            await settlements.create_draft(session, world["finance"], DraftRequest("2026-Q3", "wuqing-default",
                                           cutoff_at=NOW + timedelta(days=1)), now=NOW)
        with pytest.raises(NotFound, match="policy"):
            await settlements.create_draft(session, world["finance"], DraftRequest("2026-Q3", "no-such-policy"), now=NOW)
        with pytest.raises(Forbidden):
            await settlements.create_draft(session, world["manager"], DraftRequest("2026-Q3", "wuqing-default"), now=NOW)
        await session.rollback()
        assert (await session.execute(select(Settlement.id))).scalars().all() == before


async def test_award_minutes_are_floored_per_session_like_the_usage_figures(quarter) -> None:  # type: ignore[no-untyped-def]
    """90 min 59.6 s and 0 min 59.6 s count as 90 and 0 minutes, as usage.figures counts them."""
    from facility_share.db.models import UsageLog

    db, world, e = quarter
    async with db.session(write=True) as session:
        resource = await Builder(session).resource(SEM)
        start = at(date(2026, 8, 18))
        for seconds in (90 * 60 + 59.6, 59.6):
            session.add(UsageLog(resource_id=resource.id, enterprise_id=e["EAGLET"].id, started_at=start,
                                 ended_at=start + timedelta(seconds=seconds), source="manager"))
            start += timedelta(hours=3)
        await session.commit()
    s = await draft(db, world)
    awards = await amounts(db, s.id, "award")
    tjmat = next(line for line in awards.values() if line.subject_code == "WQ-TJMAT")
    assert tjmat.figures["effective_minutes"] == 90
    assert tjmat.figures["external_minutes"] == 90
