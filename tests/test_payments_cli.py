"""``facility-share payments reconcile`` against localstripe: a payment confirmed (and partly
refunded) at Stripe while the platform missed the webhooks is repaired, one line per change, a
summary at the end; a second run finds nothing; offline mode says there is nothing to compare
with; a bad --since is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from facility_share.cli import main, run_import
from facility_share.db import Database, migrate
from facility_share.db.models import Charge, Payment, Refund
from facility_share.payments import services
from facility_share.payments.gateway import Gateway
from facility_share.settings import load_settings
from tests.payments_peer import SECRET_KEY, StripePeer, make_charge, stripe_env
from tests.world import build_world

ROOT = Path(__file__).resolve().parent.parent


def test_reconcile_repairs_missed_webhooks_and_reports_each_change(tmp_path: Path, peer: StripePeer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = stripe_env(url, peer.url)
    settings = load_settings(env)
    migrate.upgrade(settings.database_url)
    asyncio.run(run_import(settings, ROOT / "catalog"))
    peer.unregister_webhook()  # the platform misses every event

    async def setup() -> tuple[int, int]:
        database = Database(settings.database_url, null_pool=True)
        gateway = Gateway(SECRET_KEY, api_base=peer.url)
        try:
            world = await build_world(database)
            charge_id = await make_charge(database, world.enterprise_ids["member_a"], total_fen=6_600)
            async with database.session(write=True) as session:
                payment = await services.start_payment(session, world["member_a"], charge_id, gateway=gateway, settings=settings)
                await session.commit()
            await peer.pay(payment.stripe_payment_intent_id)
            await peer.refund(payment.stripe_payment_intent_id, 600)
            return charge_id, payment.id
        finally:
            await gateway.close()
            await database.dispose()

    charge_id, payment_id = asyncio.run(setup())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["payments", "reconcile", "--since", "2026-01-01"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert f"payment {payment_id} (charge {charge_id}): pending → succeeded; charge unpaid → paid" in lines
    assert any(line.startswith(f"payment {payment_id} (charge {charge_id}): refund ") and "pending → succeeded" in line for line in lines)
    assert lines[-1] == "1 payment(s) checked since 2026-01-01; 1 repaired; 2 change(s); 0 advance or refund step(s); 0 error(s)"

    async def state() -> tuple[Charge, Payment, list[Refund]]:
        database = Database(settings.database_url, null_pool=True)
        try:
            async with database.session() as session:
                return (await session.get(Charge, charge_id), await session.get(Payment, payment_id),
                        list((await session.execute(select(Refund))).scalars()))
        finally:
            await database.dispose()

    charge, payment, refunds = asyncio.run(state())
    assert (charge.status, charge.paid_fen, charge.refunded_fen) == ("paid", 6_600, 600)
    assert payment.status == "succeeded" and payment.succeeded_at is not None
    assert [(r.amount_fen, r.cause, r.status) for r in refunds] == [(600, "stripe", "succeeded")]

    again = CliRunner().invoke(main, ["payments", "reconcile"])
    assert again.exit_code == 0 and "0 repaired; 0 change(s)" in again.output

    bad = CliRunner().invoke(main, ["payments", "reconcile", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_reconcile_in_offline_mode_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECRET_KEY", "PUBLISHABLE_KEY", "WEBHOOK_SECRET"):
        monkeypatch.delenv(f"FACILITY_SHARE_STRIPE_{name}", raising=False)
    monkeypatch.setenv("FACILITY_SHARE_DATABASE_URL", f"sqlite:///{tmp_path / 'offline.sqlite3'}")
    result = CliRunner().invoke(main, ["payments", "reconcile"])
    assert result.exit_code == 1 and "offline mode" in result.output
