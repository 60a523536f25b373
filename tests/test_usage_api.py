"""The usage API over HTTP on SQLite and PostgreSQL: instrument agent keys and sessions
(idempotency, revocation, one resource per key), corrections with history, charges, payment,
check-in/out and ratings.

The API takes the real clock, so the bookings used here lie in the past: they are requested
and approved through the service with a simulated ``now`` a few days before them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from facility_share.bookings import services as bookings
from facility_share.db import Database
from facility_share.db.models import AgentKey, Booking, Charge, Resource, UsageLog, utcnow
from facility_share.settings import load_settings
from facility_share.web.app import create_app
from tests.world import ENTERPRISE_B, build_world, local, next_weekday

SEM = "WQ-TJMAT-SEM01"
XRD = "WQ-TJMAT-XRD01"
PAST_DAY = next_weekday(utcnow() - timedelta(days=35))  # a workday some weeks ago


async def past_booking(db: Database, world, member: str, code: str, hour: int, *, approve: bool = True) -> Booking:  # type: ignore[no-untyped-def]
    start = local(PAST_DAY, hour)
    then = start - timedelta(days=3)
    async with db.session(write=True) as session:
        booking = await bookings.request_booking(session, world[member], bookings.BookingInput(code, start, start + timedelta(hours=1)),
                                                 max_open_requests=20, now=then)
        if approve:
            await bookings.change_status(session, world["manager"], booking.id, "approve", now=then)
        await session.commit()
        return booking


@pytest.fixture
async def world(imported):  # type: ignore[no-untyped-def]
    return await build_world(imported)


@pytest.fixture
async def client(imported, world, database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[no-untyped-def]
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)
    async with AsyncTestClient(app) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "accept": "application/json"}


def iso(value: datetime) -> str:
    return value.isoformat()


async def count(db: Database, statement) -> int:  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(statement.subquery()))).scalar_one()


async def resource_id(db: Database, code: str) -> int:
    async with db.session() as session:
        return (await session.execute(select(Resource.id).where(Resource.code == code))).scalar_one()


async def new_key(client: AsyncTestClient, world, code: str, name: str = "instrument PC") -> dict:  # type: ignore[no-untyped-def,type-arg]
    response = await client.post(f"/api/v1/resources/{code}/agent-keys", json={"name": name}, headers=bearer(world.tokens["manager"]))
    assert response.status_code == 201, response.text
    return response.json()


# --- agent keys ----------------------------------------------------------------------------------


async def test_an_agent_key_is_shown_once_and_only_to_the_units_managers(imported, world, client) -> None:
    created = await new_key(client, world, SEM, "SEM PC")
    assert created["key"].startswith("fsa_") and created["prefix"] == created["key"][:12]
    assert created["resource_id"] == await resource_id(imported, SEM) and created["revoked_at"] is None
    listing = await client.get(f"/api/v1/resources/{SEM}/agent-keys", headers=bearer(world.tokens["manager"]))
    assert listing.status_code == 200
    assert [(k["id"], k["name"], k["prefix"]) for k in listing.json()] == [(created["id"], "SEM PC", created["prefix"])]
    assert "key" not in listing.json()[0] and created["key"] not in listing.text
    async with imported.session() as session:
        stored = await session.get(AgentKey, created["id"])
    assert created["key"] not in (stored.key_hash, stored.prefix)  # only a digest is kept

    assert (await client.post(f"/api/v1/resources/{SEM}/agent-keys", json={"name": "x"},
                              headers=bearer(world.tokens["other_manager"]))).status_code == 404
    assert (await client.get(f"/api/v1/resources/{SEM}/agent-keys", headers=bearer(world.tokens["other_manager"]))).status_code == 404
    assert (await client.post(f"/api/v1/resources/{SEM}/agent-keys", json={"name": "x"},
                              headers=bearer(world.tokens["member_a"]))).status_code == 403
    assert (await client.post(f"/api/v1/resources/{SEM}/agent-keys", json={"name": "x"})).status_code == 401
    assert (await client.post(f"/api/v1/resources/{SEM}/agent-keys", json={"name": "  "},
                              headers=bearer(world.tokens["manager"]))).status_code == 400
    assert (await client.post(f"/api/v1/agent-keys/{created['id']}/revoke", headers=bearer(world.tokens["other_manager"]))).status_code == 404
    assert await count(imported, select(AgentKey)) == 1


# --- agent sessions ------------------------------------------------------------------------------


async def test_an_agent_session_posted_three_times_is_recorded_once(imported, world, client) -> None:
    booking = await past_booking(imported, world, "member_a", SEM, 9)
    key = (await new_key(client, world, SEM))["key"]
    body = {"idempotency_key": "0b9e7c52-sess-1", "started_at": iso(booking.starts_at), "ended_at": iso(booking.ends_at),
            "samples": 2, "operator": "李工"}
    answers = [await client.post("/api/v1/agent/sessions", json=body, headers=bearer(key)) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 200, 200]
    first = answers[0].json()
    assert all(a.json() == first for a in answers)
    assert (first["resource_id"], first["booking_id"], first["enterprise_id"], first["source"], first["samples"]) == (
        await resource_id(imported, SEM), booking.id, world.enterprise_ids["member_a"], "agent", 2)
    assert await count(imported, select(UsageLog)) == 1
    async with imported.session() as session:
        charges = (await session.execute(select(Charge))).scalars().all()
        row = await session.get(Booking, booking.id)
    assert [(c.usage_log_id, c.booking_id, c.total_fen) for c in charges] == [(first["id"], booking.id, 2 * 20_000 + 4_000)]
    assert row.status == "completed"
    # A retry with other content is still the recorded session.
    changed = {**body, "samples": 9, "ended_at": iso(booking.ends_at + timedelta(minutes=30))}
    again = await client.post("/api/v1/agent/sessions", json=changed, headers=bearer(key))
    assert again.status_code == 200 and again.json() == first
    assert await count(imported, select(UsageLog)) == 1 and await count(imported, select(Charge)) == 1


async def test_a_key_logs_usage_on_its_own_resource_only(imported, world, client) -> None:
    xrd_booking = await past_booking(imported, world, "member_b", XRD, 9)
    sem_key = (await new_key(client, world, SEM))["key"]
    xrd_key = (await new_key(client, world, XRD))["key"]
    start = local(PAST_DAY, 14)
    body = {"idempotency_key": "run-42", "started_at": iso(start), "ended_at": iso(start + timedelta(hours=1))}

    wrong = await client.post("/api/v1/agent/sessions", json={**body, "booking_id": xrd_booking.id}, headers=bearer(sem_key))
    assert wrong.status_code == 400 and "booking_id" in wrong.text
    missing = await client.post("/api/v1/agent/sessions", json={**body, "booking_id": 999_999}, headers=bearer(sem_key))
    assert missing.status_code == 400
    assert await count(imported, select(UsageLog)) == 0
    async with imported.session() as session:
        assert (await session.get(Booking, xrd_booking.id)).status == "approved"

    # Without a booking the session lands on the key's resource (no customer, no charge) …
    on_sem = await client.post("/api/v1/agent/sessions", json=body, headers=bearer(sem_key))
    assert on_sem.status_code == 201
    assert (on_sem.json()["resource_id"], on_sem.json()["booking_id"], on_sem.json()["enterprise_id"]) == (
        await resource_id(imported, SEM), None, None)
    # … and the same idempotency key on another resource is another session.
    on_xrd = await client.post("/api/v1/agent/sessions", json=body, headers=bearer(xrd_key))
    assert on_xrd.status_code == 201 and on_xrd.json()["resource_id"] == await resource_id(imported, XRD)
    assert on_xrd.json()["id"] != on_sem.json()["id"]
    assert await count(imported, select(UsageLog)) == 2 and await count(imported, select(Charge)) == 0


async def test_revoked_and_unknown_keys_get_401_and_record_nothing(imported, world, client) -> None:
    created = await new_key(client, world, SEM)
    key = created["key"]
    start = local(PAST_DAY, 9)
    body = {"idempotency_key": "s-1", "started_at": iso(start), "ended_at": iso(start + timedelta(minutes=40))}
    assert (await client.post("/api/v1/agent/sessions", json=body, headers=bearer(key))).status_code == 201

    revoked = await client.post(f"/api/v1/agent-keys/{created['id']}/revoke", headers=bearer(world.tokens["manager"]))
    assert revoked.status_code == 204
    for idempotency_key in ("s-1", "s-2"):  # neither a retry nor a new session
        answer = await client.post("/api/v1/agent/sessions", json={**body, "idempotency_key": idempotency_key}, headers=bearer(key))
        assert answer.status_code == 401
    listing = await client.get(f"/api/v1/resources/{SEM}/agent-keys", headers=bearer(world.tokens["manager"]))
    assert listing.json()[0]["revoked_at"] is not None

    for headers in (bearer("fsa_" + "x" * 40), bearer(key[:-1] + ("A" if key[-1] != "A" else "B")), bearer(world.tokens["manager"]), {}):
        assert (await client.post("/api/v1/agent/sessions", json={**body, "idempotency_key": "s-3"}, headers=headers)).status_code == 401
    # An agent key is no user: it opens no user route.
    assert (await client.get("/api/v1/charges", headers=bearer(key))).status_code == 401
    assert await count(imported, select(UsageLog)) == 1


async def test_bad_agent_sessions_are_400(imported, world, client) -> None:
    key = (await new_key(client, world, SEM))["key"]
    start = local(PAST_DAY, 9)
    good = {"idempotency_key": "k", "started_at": iso(start), "ended_at": iso(start + timedelta(hours=1))}
    for bad in (
        {**good, "idempotency_key": ""},
        {**good, "idempotency_key": "k" * 101},
        {**good, "ended_at": iso(start)},
        {**good, "samples": -1},
        {**good, "started_at": iso(utcnow() + timedelta(hours=1)), "ended_at": iso(utcnow() + timedelta(hours=2))},
        {**good, "started_at": "2026-11-01T09:00:00", "ended_at": "2026-11-01T10:00:00"},  # no timezone
    ):
        answer = await client.post("/api/v1/agent/sessions", json=bad, headers=bearer(key))
        assert answer.status_code == 400, bad
    assert await count(imported, select(UsageLog)) == 0


async def test_posting_a_session_records_when_the_key_was_last_used(imported, world, client) -> None:
    created = await new_key(client, world, SEM)
    start = local(PAST_DAY, 9)
    body = {"idempotency_key": "s-1", "started_at": iso(start), "ended_at": iso(start + timedelta(minutes=40))}
    assert (await client.post("/api/v1/agent/sessions", json=body, headers=bearer(created["key"]))).status_code == 201
    listing = await client.get(f"/api/v1/resources/{SEM}/agent-keys", headers=bearer(world.tokens["manager"]))
    assert listing.json()[0]["last_used_at"] is not None


# --- corrections, charges and payment ------------------------------------------------------------


async def test_corrections_history_charges_and_payment_over_http(imported, world, client) -> None:
    manager = bearer(world.tokens["manager"])
    start = local(PAST_DAY, 9)
    walk_in = await client.post("/api/v1/usage/walk-ins", headers=manager, json={
        "resource_code": SEM, "started_at": iso(start), "ended_at": iso(start + timedelta(hours=3)), "enterprise_uscc": ENTERPRISE_B})
    assert walk_in.status_code == 201, walk_in.text
    original = walk_in.json()
    assert original["session_id"] == original["id"] and original["supersedes_id"] is None

    correction = {"started_at": iso(start), "ended_at": iso(start + timedelta(hours=2)), "samples": 0, "reason": "the PC clock was wrong"}
    assert (await client.post(f"/api/v1/usage/{original['id']}/corrections", json={**correction, "reason": ""},
                              headers=manager)).status_code == 400
    assert (await client.post(f"/api/v1/usage/{original['id']}/corrections", json=correction,
                              headers=bearer(world.tokens["other_manager"]))).status_code == 404
    assert (await client.post(f"/api/v1/usage/{original['id']}/corrections", json=correction,
                              headers=bearer(world.tokens["member_b"]))).status_code == 403
    corrected = await client.post(f"/api/v1/usage/{original['id']}/corrections", json=correction, headers=manager)
    assert corrected.status_code == 201
    latest = corrected.json()
    assert (latest["supersedes_id"], latest["session_id"], latest["reason"]) == (original["id"], original["id"], "the PC clock was wrong")
    stale = await client.post(f"/api/v1/usage/{original['id']}/corrections", json=correction, headers=manager)
    assert stale.status_code == 409

    current = await client.get("/api/v1/usage", params={"resource": SEM}, headers=manager)
    history = await client.get("/api/v1/usage", params={"resource": SEM, "history": "true"}, headers=manager)
    assert [u["id"] for u in current.json()] == [latest["id"]]
    assert sorted(u["id"] for u in history.json()) == [original["id"], latest["id"]]
    assert {u["session_id"] for u in history.json()} == {original["id"]}
    assert (await client.get("/api/v1/usage", params={"history": "true"}, headers=bearer(world.tokens["other_manager"]))).json() == []
    assert (await client.get("/api/v1/usage", headers=bearer(world.tokens["member_b"]))).status_code == 403

    charges = (await client.get("/api/v1/charges", headers=manager)).json()
    # 3 h and then 2 h at 400 yuan/h plus the coating.
    assert [(c["usage_log_id"], c["status"], c["total_fen"]) for c in charges] == [
        (latest["id"], "unpaid", 84_000), (original["id"], "void", 124_000)]
    assert charges[1]["void_reason"] == "usage corrected: the PC clock was wrong"
    live = charges[0]
    assert live["explanation_zh"] and live["explanation_en"] and [l["basis"] for l in live["lines"]] == ["hour", "setup"]
    assert [c["id"] for c in (await client.get("/api/v1/charges", params={"status": "unpaid"},
                                               headers=bearer(world.tokens["member_b"]))).json()] == [live["id"]]
    assert (await client.get("/api/v1/charges", headers=bearer(world.tokens["member_a"]))).json() == []
    assert (await client.get(f"/api/v1/charges/{live['id']}", headers=bearer(world.tokens["member_b"]))).status_code == 200
    assert (await client.get(f"/api/v1/charges/{live['id']}", headers=bearer(world.tokens["member_a"]))).status_code == 404
    assert (await client.get(f"/api/v1/charges/{live['id']}", headers=bearer(world.tokens["finance"]))).status_code == 200

    pay = f"/api/v1/charges/{live['id']}/mark-paid"
    assert (await client.post(pay, json={"method": "bank_transfer", "reference": "TX"},
                              headers=bearer(world.tokens["other_manager"]))).status_code == 404
    assert (await client.post(pay, json={"method": "bank_transfer", "reference": "TX"},
                              headers=bearer(world.tokens["member_b"]))).status_code == 403
    assert (await client.post(pay, json={"method": "alipay", "reference": "TX"}, headers=manager)).status_code == 400
    assert (await client.post(pay, json={"method": "bank_transfer", "reference": ""}, headers=manager)).status_code == 400
    paid = await client.post(pay, json={"method": "bank_transfer", "reference": "TX-20261123-01"}, headers=manager)
    assert paid.status_code == 200
    assert (paid.json()["status"], paid.json()["payment_reference"]) == ("paid", "TX-20261123-01")
    assert (await client.post(pay, json={"method": "cash", "reference": "R"}, headers=manager)).status_code == 409
    assert (await client.post(f"/api/v1/charges/{charges[1]['id']}/mark-paid", json={"method": "cash", "reference": "R"},
                              headers=manager)).status_code == 409

    # Once paid, a correction asking less than was paid is refused until the unit refunds the
    # difference, and changes nothing ...
    blocked = await client.post(f"/api/v1/usage/{latest['id']}/corrections", headers=manager,
                                json={**correction, "ended_at": iso(start + timedelta(hours=1)), "reason": "an hour"})
    assert blocked.status_code == 409 and "paid" in blocked.text
    assert "holds 84000 fen paid, more than the corrected charge of 44000 fen; refund the difference of 40000 fen" in blocked.text
    assert len((await client.get("/api/v1/usage", params={"history": "true"}, headers=manager)).json()) == 2
    assert [c["status"] for c in (await client.get("/api/v1/charges", headers=manager)).json()] == ["paid", "void"]

    # ... while one asking as much moves the payment onto the reissued charge, paid in full.
    again = await client.post(f"/api/v1/usage/{latest['id']}/corrections", headers=manager, json={**correction, "reason": "again"})
    assert again.status_code == 201, again.text
    assert len((await client.get("/api/v1/usage", params={"history": "true"}, headers=manager)).json()) == 3
    after = (await client.get("/api/v1/charges", headers=manager)).json()
    assert [(c["usage_log_id"], c["status"], c["total_fen"]) for c in after] == [
        (again.json()["id"], "paid", 84_000), (latest["id"], "void", 84_000), (original["id"], "void", 124_000)]
    assert (after[0]["payment_method"], after[0]["payment_reference"]) == ("correction", f"charge #{live['id']}")
    assert after[1]["void_reason"] == f"usage corrected: again; its payments moved to charge #{after[0]['id']}"
    assert (await client.get("/api/v1/charges", params={"status": "unpaid"}, headers=bearer(world.tokens["member_b"]))).json() == []
    async with imported.session() as session:
        sums = [(c.paid_fen, c.refunded_fen) for c in (await session.execute(
            select(Charge).where(Charge.id.in_([c["id"] for c in after])).order_by(Charge.id.desc()))).scalars()]
    assert sums == [(84_000, 0), (84_000, 84_000), (0, 0)]  # received once, held once


# --- check-in, check-out and rating --------------------------------------------------------------


async def test_check_in_out_and_rating_over_http(imported, world, client) -> None:
    booking = await past_booking(imported, world, "member_a", XRD, 9)
    untouched = await past_booking(imported, world, "member_a", XRD, 10)
    manager = bearer(world.tokens["manager"])
    url = f"/api/v1/bookings/{booking.id}"
    assert (await client.post(f"/api/v1/bookings/{untouched.id}/check-out", headers=manager)).status_code == 409
    assert (await client.post(f"{url}/check-in", headers=bearer(world.tokens["member_b"]))).status_code == 404
    assert (await client.post(f"{url}/rating", json={"stars": 5}, headers=bearer(world.tokens["member_a"]))).status_code == 409
    checked_in = await client.post(f"{url}/check-in", json={"operator": "王工"}, headers=manager)
    assert checked_in.status_code == 201 and checked_in.json()["ended_at"] is None and checked_in.json()["operator"] == "王工"
    assert (await client.post(f"{url}/check-in", headers=manager)).status_code == 409
    checked_out = await client.post(f"{url}/check-out", json={"samples": 3, "note": "ok"}, headers=manager)
    assert checked_out.status_code == 200
    assert (checked_out.json()["supersedes_id"], checked_out.json()["samples"]) == (checked_in.json()["id"], 3)
    charge = (await client.get("/api/v1/charges", headers=bearer(world.tokens["member_a"]))).json()
    assert len(charge) == 1 and charge[0]["booking_id"] == booking.id and charge[0]["lines"][0] == {
        "label_zh": "常规物相扫描（每样）", "label_en": "Routine phase scan (per sample)", "basis": "sample", "units": 3,
        "rate_fen": 20_000, "amount_fen": 60_000, "explanation": "3 × 200.00 yuan/sample"}

    assert (await client.post(f"{url}/rating", json={"stars": 6}, headers=bearer(world.tokens["member_a"]))).status_code == 400
    assert (await client.post(f"{url}/rating", json={"stars": 4}, headers=bearer(world.tokens["member_b"]))).status_code == 404
    assert (await client.post(f"{url}/rating", json={"stars": 4}, headers=manager)).status_code == 403
    rated = await client.post(f"{url}/rating", json={"stars": 4, "comment": "快"}, headers=bearer(world.tokens["member_a"]))
    assert rated.status_code == 201 and (rated.json()["stars"], rated.json()["booking_id"]) == (4, booking.id)
    assert (await client.post(f"{url}/rating", json={"stars": 5}, headers=bearer(world.tokens["member_a"]))).status_code == 409
