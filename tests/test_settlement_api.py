"""The settlement API and commands over HTTP, on SQLite and PostgreSQL: drafting with bad input,
reviewing lines and their explanations, recomputing, approving with the reviewed digest,
exports that never change, and the finality of an approved settlement (every route, the
command line, and raw SQL against the database's triggers).

Data: two verified eaglet enterprises of the test world (rate 50 %) with services on the SEM of
WQ-TJMAT in the third quarter of 2026, paid in September; one of them also used a closed
resource. The API runs on the real clock, so the cut-off of 15 October 2026 lies in the past.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from facility_share.db import Database
from facility_share.db.models import AuditEvent, Charge, Payment, Refund, Resource, Settlement, SettlementLine, utcnow
from facility_share.settings import load_settings
from facility_share.web.app import create_app
from tests.world import build_world

ZONE = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parent.parent
SEM, CLOSED = "WQ-TJMAT-SEM01", "WQ-CGG-NM-FAT01"
CUTOFF = "2026-10-15T00:00:00+08:00"
BASE = "/api/v1/finance/settlements"


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZONE).astimezone(UTC)


async def load_policies(db: Database) -> None:
    from facility_share.finance.policy import load_policies as read_files
    from facility_share.finance.policy_store import import_policies

    async with db.session(write=True) as session:
        await import_policies(session, read_files(ROOT / "catalog" / "policies"))
        await session.commit()


async def add_charge(db: Database, enterprise_id: int, served: date, fen: int, *, code: str = SEM,
                     paid_on: date | None = date(2026, 9, 20), refund: tuple[date, int] | None = None) -> int:
    async with db.session(write=True) as session:
        resource = (await session.execute(select(Resource).where(Resource.code == code))).scalar_one()
        charge = Charge(kind="service", resource_id=resource.id, enterprise_id=enterprise_id, service_date=at(served),
                        customer_class="district", lines=[], total_fen=fen, status="paid" if paid_on else "unpaid",
                        paid_fen=fen if paid_on else 0)
        session.add(charge)
        await session.flush()
        if paid_on is not None:
            payment = Payment(charge_id=charge.id, provider="offline", status="succeeded", amount_fen=fen, amount_received_fen=fen,
                              method="bank_transfer", idempotency_key=f"api-test-{charge.id}", succeeded_at=at(paid_on))
            session.add(payment)
            await session.flush()
            if refund is not None:
                session.add(Refund(payment_id=payment.id, charge_id=charge.id, amount_fen=refund[1], status="succeeded",
                                   cause="manager", idempotency_key=f"api-test-refund-{charge.id}", succeeded_at=at(refund[0])))
                payment.refunded_fen += refund[1]
                charge.refunded_fen += refund[1]
        await session.commit()
        return charge.id


@pytest.fixture
async def world(imported):  # type: ignore[no-untyped-def]
    world = await build_world(imported)
    await load_policies(imported)
    a, b = world.enterprise_ids["member_a"], world.enterprise_ids["member_b"]
    await add_charge(imported, a, date(2026, 7, 14), 1_000_000)  # 10,000 yuan → 5,000 yuan subsidy
    await add_charge(imported, a, date(2026, 8, 11), 200_000, code=CLOSED)  # closed resource: not counted
    await add_charge(imported, b, date(2026, 8, 12), 600_000, refund=(date(2026, 9, 25), 100_000))  # 5,000 net → 2,500
    return world


@pytest.fixture
async def client(imported, world, database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[no-untyped-def]
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)
    async with AsyncTestClient(app) as c:
        yield c


def auth(world, role: str = "finance") -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"authorization": f"Bearer {world.tokens[role]}", "accept": "application/json"}


async def count(db: Database, model) -> int:  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def draft(client: AsyncTestClient, world, period: str = "2026-Q3", **extra) -> dict:  # type: ignore[no-untyped-def,type-arg]
    response = await client.post(BASE, json={"period": period, "policy": "wuqing-default", "cutoff_at": CUTOFF, **extra},
                                 headers=auth(world))
    assert response.status_code == 201, response.text
    return response.json()


async def snapshot(db: Database, settlement_id: int) -> tuple:  # type: ignore[type-arg]
    """Everything stored about a settlement, to compare before and after a refused change."""
    async with db.session() as session:
        s = await session.get(Settlement, settlement_id)
        assert s is not None
        lines = (await session.execute(select(SettlementLine).where(SettlementLine.settlement_id == settlement_id)
                                       .order_by(SettlementLine.id))).scalars().all()
        return ((s.status, s.results_digest, s.inputs_digest, s.subsidy_total_fen, s.award_total_fen, s.computed_at,
                 s.approved_at, s.note), [(x.id, x.amount_fen, x.flags, x.steps) for x in lines])


# --- access -----------------------------------------------------------------------------------------


async def test_only_finance_and_admins_may_settle(client, world) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get(BASE)).status_code == 401
    for role in ("manager", "member_a"):
        assert (await client.get(BASE, headers=auth(world, role))).status_code == 403
        response = await client.post(BASE, json={"period": "2026-Q3", "policy": "wuqing-default"}, headers=auth(world, role))
        assert response.status_code == 403
    for role in ("finance", "admin"):
        response = await client.get(BASE, headers=auth(world, role))
        assert response.status_code == 200 and response.json() == []


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"period": "2026-13"}, "period: the month must be 01 to 12"),
        ({"period": "next year"}, "period: expected a year (2026), a quarter (2026-Q3) or a month (2026-07)"),
        ({"period": "1999"}, "period: the year must be between 2000 and 2100"),
        ({"policy": "no-such-policy"}, "policy: no policy 'no-such-policy' is loaded"),
        ({"policy": " "}, "policy: name the policy"),
        ({"version": "9.9"}, "policy: no version '9.9' of policy 'wuqing-default' is loaded"),
        ({"subsidy_budget_fen": -1}, "subsidy_budget_fen: a budget is a whole number of fen"),
        ({"award_budget_fen": 10**16}, "award_budget_fen: a budget is a whole number of fen"),
        ({"cutoff_at": "2026-10-15T00:00:00"}, "cutoff_at: give the time zone"),
        ({"cutoff_at": "2099-01-01T00:00:00+08:00"}, "cutoff_at: the cut-off cannot be in the future"),
        ({"cutoff_at": "2026-06-30T00:00:00+08:00"}, "cutoff_at: the cut-off is before the period 2026-Q3 starts"),
        ({"cutoff_at": "0001-01-01T00:00:00+08:00"}, "cutoff_at: give a time between the years 2000 and 2100"),
        ({"note": "x" * 1001}, "note: write at most 1000 characters"),
    ],
)
async def test_bad_input_is_a_400_that_creates_nothing(client, world, imported, body, message) -> None:  # type: ignore[no-untyped-def]
    request = {"period": "2026-Q3", "policy": "wuqing-default", "cutoff_at": CUTOFF, **body}
    response = await client.post(BASE, json=request, headers=auth(world))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(message), response.json()
    assert await count(imported, Settlement) == 0
    assert await count(imported, SettlementLine) == 0


async def test_a_malformed_body_is_a_400(client, world, imported) -> None:  # type: ignore[no-untyped-def]
    for body in ({}, {"period": 2026}, {"period": "2026", "policy": "wuqing-default", "subsidy_budget_fen": "lots"}):
        response = await client.post(BASE, json=body, headers=auth(world))
        assert response.status_code == 400, (body, response.text)
    assert await count(imported, Settlement) == 0


# --- review, recompute, export, approve ----------------------------------------------------------------


async def test_draft_review_and_approve(client, world, imported) -> None:  # type: ignore[no-untyped-def]
    created = await draft(client, world)
    sid = created["id"]
    assert created["status"] == "draft" and created["period"] == "2026-Q3"
    assert created["policy"]["code"] == "wuqing-default" and len(created["results_digest"]) == 64
    assert created["subsidy_total_fen"] == 500_000 + 250_000
    assert created["subsidy_lines"] == 2 and created["award_lines"] >= 1
    assert (await client.get(f"{BASE}/{sid}", headers=auth(world))).json() == created
    assert [s["id"] for s in (await client.get(BASE, headers=auth(world))).json()] == [sid]

    subsidy = (await client.get(f"{BASE}/{sid}/lines?kind=subsidy", headers=auth(world))).json()
    assert {x["subject_code"]: x["amount_fen"] for x in subsidy} == {"91120222MA3AGYGL1F": 500_000, "91120222MAW7WKKH6D": 250_000}
    every = (await client.get(f"{BASE}/{sid}/lines", headers=auth(world))).json()
    assert {x["kind"] for x in every} == {"subsidy", "award"}
    assert (await client.get(f"{BASE}/{sid}/lines?kind=bonus", headers=auth(world))).status_code == 400

    # A line's detail: steps, figures, both explanations and the enterprise's charges of the period.
    line_a = next(x for x in subsidy if x["subject_code"] == "91120222MA3AGYGL1F")
    detail = (await client.get(f"{BASE}/{sid}/lines/{line_a['id']}", headers=auth(world))).json()
    assert detail["steps"] and all("rule" in step for step in detail["steps"])
    assert "resource_not_open" in detail["flags"]
    assert "10,000.00" in detail["explanation_zh"] and "10,000.00" in detail["explanation_en"]
    counted = {c["resource_code"]: (c["counted"], c["excluded_because"]) for c in detail["charges"]}
    assert counted == {SEM: (True, None), CLOSED: (False, "resource_not_open")}
    assert (await client.get(f"{BASE}/{sid}/lines/999999", headers=auth(world))).status_code == 404
    award_line = next(x for x in every if x["kind"] == "award")
    award_detail = (await client.get(f"{BASE}/{sid}/lines/{award_line['id']}", headers=auth(world))).json()
    assert award_detail["charges"] == [] and "score" in award_detail["figures"]

    # Recomputing with the same inputs leaves every digest as it was.
    again = await client.post(f"{BASE}/{sid}/recompute", headers=auth(world))
    assert again.status_code == 200
    assert again.json()["results_digest"] == created["results_digest"]
    assert again.json()["inputs_digest"] == created["inputs_digest"]

    # Approval needs the digest the caller reviewed.
    wrong = await client.post(f"{BASE}/{sid}/approve", json={"results_digest": "0" * 64}, headers=auth(world))
    assert wrong.status_code == 409 and "changed after you opened it" in wrong.json()["error"]["message"]
    malformed = await client.post(f"{BASE}/{sid}/approve", json={"results_digest": "abc"}, headers=auth(world))
    assert malformed.status_code == 400
    assert (await client.post(f"{BASE}/{sid}/approve", json={}, headers=auth(world))).status_code == 400
    assert (await client.get(f"{BASE}/{sid}", headers=auth(world))).json()["status"] == "draft"
    approved = await client.post(f"{BASE}/{sid}/approve", json={"results_digest": created["results_digest"]}, headers=auth(world))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["approved_at"]
    async with imported.session() as session:
        actions = (await session.execute(select(AuditEvent.action).where(AuditEvent.entity == "settlement", AuditEvent.entity_id == sid)
                                         .order_by(AuditEvent.id))).scalars().all()
    assert actions == ["draft", "recompute", "approve"]


async def test_exports_are_the_same_bytes_every_time(client, world) -> None:  # type: ignore[no-untyped-def]
    created = await draft(client, world)
    sid = created["id"]
    for fmt in ("csv", "xlsx", "json"):
        first = await client.get(f"{BASE}/{sid}/export?format={fmt}", headers=auth(world))
        assert first.status_code == 200, first.text
        second = await client.get(f"{BASE}/{sid}/export?format={fmt}", headers=auth(world))
        assert first.content == second.content, fmt
        assert f"settlement-{sid}-2026-Q3.{fmt}" in first.headers["content-disposition"]
    # Recomputing the draft with the same inputs keeps the CSV byte for byte.
    before = (await client.get(f"{BASE}/{sid}/export?format=csv", headers=auth(world))).content
    await client.post(f"{BASE}/{sid}/recompute", headers=auth(world))
    assert (await client.get(f"{BASE}/{sid}/export?format=csv", headers=auth(world))).content == before
    assert before.startswith("\ufeff".encode()) and "91120222MA3AGYGL1F" in before.decode("utf-8-sig")

    # The workbook: a summary and one sheet per kind, Chinese headers, exact yuan, fixed dates.
    from openpyxl import load_workbook

    raw = (await client.get(f"{BASE}/{sid}/export?format=xlsx", headers=auth(world))).content
    book = load_workbook(io.BytesIO(raw))
    assert book.sheetnames == ["概要", "企业补贴", "单位奖励"]
    sheet = book["企业补贴"]
    header = [c.value for c in sheet[1]]
    assert header[1] == "统一社会信用代码" and header[2] == "企业"
    rows = {r[1]: r for r in sheet.iter_rows(min_row=2, values_only=True) if r[1]}
    assert float(rows["91120222MA3AGYGL1F"][7]) == 5000.0 and rows["91120222MA3AGYGL1F"][7] * 100 == 500_000
    summary = {r[0]: r[1] for r in book["概要"].iter_rows(values_only=True)}
    assert summary["结算期间"] == "2026-Q3" and summary["结果摘要"] == created["results_digest"]
    # Its times are the settlement's last computation (the recompute above), not the clock's.
    current = (await client.get(f"{BASE}/{sid}", headers=auth(world))).json()
    computed = datetime.fromisoformat(current["computed_at"]).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    assert book.properties.modified == computed and book.properties.created == computed
    assert {info.date_time for info in zipfile.ZipFile(io.BytesIO(raw)).infolist()} == {(2000, 1, 1, 0, 0, 0)}
    english = load_workbook(io.BytesIO((await client.get(f"{BASE}/{sid}/export?format=xlsx&lang=en", headers=auth(world))).content))
    assert english.sheetnames == ["Summary", "Enterprise subsidies", "Managing-unit awards"]
    only = load_workbook(io.BytesIO((await client.get(f"{BASE}/{sid}/export?format=xlsx&kind=award", headers=auth(world))).content))
    assert only.sheetnames == ["概要", "单位奖励"]
    for bad in ("format=pdf", "kind=bonus", "lang=fr"):
        assert (await client.get(f"{BASE}/{sid}/export?{bad}", headers=auth(world))).status_code == 400
    assert (await client.get(f"{BASE}/999999/export?format=csv", headers=auth(world))).status_code == 404


async def test_approval_stops_when_the_data_changed_since_the_draft(client, world, imported) -> None:  # type: ignore[no-untyped-def]
    created = await draft(client, world, cutoff_at=None)  # cut-off: now, so a new payment counts
    sid = created["id"]
    await add_charge(imported, world.enterprise_ids["member_a"], date(2026, 9, 1), 400_000, paid_on=date(2026, 9, 2))
    response = await client.post(f"{BASE}/{sid}/approve", json={"results_digest": created["results_digest"]}, headers=auth(world))
    assert response.status_code == 409 and "has changed since" in response.json()["error"]["message"]
    recomputed = (await client.post(f"{BASE}/{sid}/recompute", headers=auth(world))).json()
    assert recomputed["results_digest"] != created["results_digest"]
    assert recomputed["subsidy_total_fen"] == created["subsidy_total_fen"] + 200_000
    # The digest of the first review no longer approves anything.
    stale = await client.post(f"{BASE}/{sid}/approve", json={"results_digest": created["results_digest"]}, headers=auth(world))
    assert stale.status_code == 409
    fresh = await client.post(f"{BASE}/{sid}/approve", json={"results_digest": recomputed["results_digest"]}, headers=auth(world))
    assert fresh.status_code == 200


async def test_a_draft_can_be_discarded(client, world, imported) -> None:  # type: ignore[no-untyped-def]
    sid = (await draft(client, world))["id"]
    response = await client.delete(f"{BASE}/{sid}", headers=auth(world))
    assert response.status_code == 204
    assert (await client.get(f"{BASE}/{sid}", headers=auth(world))).status_code == 404
    assert await count(imported, Settlement) == 0 and await count(imported, SettlementLine) == 0
    assert (await client.delete(f"{BASE}/{sid}", headers=auth(world))).status_code == 404


# --- an approved settlement is final --------------------------------------------------------------------


async def test_an_approved_settlement_cannot_be_changed_by_any_route(client, world, imported) -> None:  # type: ignore[no-untyped-def]
    created = await draft(client, world)
    sid = created["id"]
    response = await client.post(f"{BASE}/{sid}/approve", json={"results_digest": created["results_digest"]}, headers=auth(world))
    assert response.status_code == 200
    before = await snapshot(imported, sid)
    csv_before = (await client.get(f"{BASE}/{sid}/export?format=csv", headers=auth(world))).content
    xlsx_before = (await client.get(f"{BASE}/{sid}/export?format=xlsx", headers=auth(world))).content
    attempts = [
        ("POST", f"{BASE}/{sid}/recompute", None),
        ("POST", f"{BASE}/{sid}/approve", {"results_digest": created["results_digest"]}),
        ("DELETE", f"{BASE}/{sid}", None),
        # A new draft of an overlapping period would settle the same services twice.
        ("POST", BASE, {"period": "2026-08", "policy": "wuqing-default", "cutoff_at": CUTOFF}),
        ("POST", BASE, {"period": "2026", "policy": "wuqing-default", "cutoff_at": CUTOFF}),
    ]
    for method, url, body in attempts:
        response = await client.request(method, url, json=body, headers=auth(world))
        assert response.status_code == 409, (method, url, response.text)
    for role in ("admin",):
        assert (await client.delete(f"{BASE}/{sid}", headers=auth(world, role))).status_code == 409
    assert await snapshot(imported, sid) == before
    assert await count(imported, Settlement) == 1
    assert (await client.get(f"{BASE}/{sid}/export?format=csv", headers=auth(world))).content == csv_before
    assert (await client.get(f"{BASE}/{sid}/export?format=xlsx", headers=auth(world))).content == xlsx_before
    # A period after it is settled normally.
    assert (await client.post(BASE, json={"period": "2026-10", "policy": "wuqing-default"}, headers=auth(world))).status_code == 201


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE settlements SET note = 'edited' WHERE id = :id",
        "UPDATE settlements SET status = 'draft' WHERE id = :id",
        "DELETE FROM settlements WHERE id = :id",
        "UPDATE settlement_lines SET amount_fen = amount_fen + 1 WHERE settlement_id = :id",
        "DELETE FROM settlement_lines WHERE settlement_id = :id",
        "INSERT INTO settlement_lines (settlement_id, kind, position, subject_id, subject_code, subject_name, category, basis_fen, "
        "before_budget_fen, adjustment_fen, amount_fen, flags, figures, steps, explanation_zh, explanation_en) "
        "VALUES (:id, 'award', 99, 1, 'FORGED', 'forged', '', 0, 0, 0, 100, '[]', '{}', '[]', '', '')",
    ],
)
async def test_the_database_refuses_raw_changes_to_an_approved_settlement(client, world, imported, statement) -> None:  # type: ignore[no-untyped-def]
    created = await draft(client, world)
    sid = created["id"]
    await client.post(f"{BASE}/{sid}/approve", json={"results_digest": created["results_digest"]}, headers=auth(world))
    before = await snapshot(imported, sid)
    with pytest.raises((IntegrityError, DBAPIError)) as raised:
        async with imported.session(write=True) as session:
            await session.execute(text(statement), {"id": sid})
            await session.commit()
    assert "approved settlements are final" in str(raised.value)
    assert await snapshot(imported, sid) == before


async def test_the_database_still_lets_a_draft_change(client, world, imported) -> None:  # type: ignore[no-untyped-def]
    sid = (await draft(client, world))["id"]
    async with imported.session(write=True) as session:
        await session.execute(text("UPDATE settlements SET note = 'checked' WHERE id = :id"), {"id": sid})
        await session.commit()
    assert (await client.get(f"{BASE}/{sid}", headers=auth(world))).json()["note"] == "checked"


# --- the command line ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_url(dialect: str, catalog_database_urls: dict[str, str]) -> str:
    """The URL of the database ``imported`` uses (the command opens its own connection)."""
    return catalog_database_urls[dialect]


def run_cli(database_url: str, *args: str):  # type: ignore[no-untyped-def]
    """Run the command; its output with line wrapping undone (errors wrap at the console width)."""
    from click.testing import CliRunner

    from facility_share.cli import main

    result = CliRunner().invoke(main, list(args), env={"FACILITY_SHARE_DATABASE_URL": database_url})
    return result, " ".join(result.output.split())


async def test_the_settle_command_drafts_approves_and_lists(world, imported, cli_url: str) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    result, said = await asyncio.to_thread(run_cli, cli_url, "finance", "settle", "--period", "2026-Q3", "--policy", "wuqing-default",
                                     "--cutoff", CUTOFF, "--subsidy-budget", "6000")
    assert result.exit_code == 0, result.output
    assert "draft" in said and "results digest" in said
    async with imported.session() as session:
        s = (await session.execute(select(Settlement))).scalar_one()
    assert s.status == "draft" and s.subsidy_budget_fen == 600_000 and s.subsidy_total_fen == 600_000
    assert s.created_by_id is None
    # Approving from the command line, as a named finance account.
    await asyncio.to_thread(run_cli, cli_url, "finance", "settle", "--period", "2026-10", "--policy", "wuqing-default")
    result, said = await asyncio.to_thread(run_cli, cli_url, "finance", "settle", "--period", "2026-09", "--policy", "wuqing-default",
                                     "--cutoff", CUTOFF, "--approve", "--by", "finance@t.example.cn")
    assert result.exit_code == 0, result.output
    assert "approved" in said
    listing, _said = await asyncio.to_thread(run_cli, cli_url, "finance", "settlements", "--json")
    assert listing.exit_code == 0, listing.output
    import json

    rows = json.loads(listing.output)
    assert [(r["period"], r["status"]) for r in rows] == [("2026-10", "draft"), ("2026-09", "approved"), ("2026-Q3", "draft")]
    approved = next(r for r in rows if r["status"] == "approved")
    async with imported.session() as session:
        s = await session.get(Settlement, approved["id"])
        assert s is not None and s.approved_by_id == world["finance"].user_id

    # Against the approved month: settling an overlapping period again is refused; nothing changes.
    before = await snapshot(imported, approved["id"])
    count_before = await count(imported, Settlement)
    for period in ("2026-09", "2026-Q3", "2026"):
        result, said = await asyncio.to_thread(run_cli, cli_url, "finance", "settle", "--period", period, "--policy", "wuqing-default",
                                         "--approve")
        assert result.exit_code == 1 and "overlaps approved settlement" in said, said
    assert await snapshot(imported, approved["id"]) == before
    assert await count(imported, Settlement) == count_before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-Q5"], "period:"),
        (["--policy", "nope"], "policy: no policy 'nope' is loaded"),
        (["--subsidy-budget", "-3"], "--subsidy-budget:"),
        (["--award-budget", "12.345"], "--award-budget:"),
        (["--cutoff", "yesterday"], "--cutoff:"),
        (["--cutoff", "2026-10-15T00:00:00"], "cutoff_at: give the time zone"),
        (["--by", "member@nowhere.example.cn"], "--by: no user"),
        (["--by", "a@a.example.cn"], "only finance staff and administrators"),
    ],
)
async def test_the_settle_command_refuses_bad_input(world, imported, cli_url: str, args, message) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    options = {"--period": "2026-Q3", "--policy": "wuqing-default"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        options[flag] = value
    flat = [item for pair in options.items() for item in pair]
    result, said = await asyncio.to_thread(run_cli, cli_url, "finance", "settle", *flat)
    assert result.exit_code != 0
    assert message in said, said
    assert "Traceback" not in said and result.exception is None or isinstance(result.exception, SystemExit)
    assert await count(imported, Settlement) == 0


def test_xlsx_bytes_depend_only_on_the_settlement() -> None:
    """Two workbooks of one settlement written a second apart are the same bytes."""
    import time

    from facility_share.db.models import PolicyVersion
    from facility_share.finance.settlement_exports import lines_xlsx

    policy = PolicyVersion(id=1, code="p", version="1", title_zh="办法", title_en="Rules", digest="d" * 64,
                           document={"subsidy": {"classes": {"eaglet": {"name_zh": "雏鹰企业", "name_en": "Eaglet"}}}, "award": {}})
    settlement = Settlement(id=7, period_label="2026-07", period_kind="month", period_start=date(2026, 7, 1),
                            period_end=date(2026, 8, 1), status="draft", cutoff_at=utcnow() - timedelta(days=1),
                            subsidy_total_fen=12345, award_total_fen=0, subsidy_budget_fen=100000, award_budget_fen=None,
                            inputs_digest="i" * 64, results_digest="r" * 64, created_at=utcnow(),
                            computed_at=datetime(2026, 8, 2, 3, 4, 5, tzinfo=UTC))
    line = SettlementLine(id=1, settlement_id=7, kind="subsidy", position=1, subject_id=1, subject_code="91120222MA3AGYGL1F",
                          subject_name="云启", category="eaglet", basis_fen=24690, before_budget_fen=12345, adjustment_fen=0,
                          amount_fen=12345, flags=["budget_scaled"], figures={}, steps=[], explanation_zh="说明", explanation_en="why")
    first = lines_xlsx(settlement, policy, [line])
    time.sleep(1.1)
    assert lines_xlsx(settlement, policy, [line]) == first
