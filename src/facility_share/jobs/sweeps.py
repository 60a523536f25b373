"""The periodic sweeps as job handlers: request expiry, no-shows, payments, pruning.

The database sweeps are transactional: their effect (bookings switched, audit events, the
notification jobs they enqueue) and the job's completion commit together. The payments sweeps
talk to Stripe and commit per item themselves (each item's step is idempotent), so they run
outside the job's transaction.
"""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta
from typing import Any

from facility_share.jobs.queue import handler
from facility_share.jobs.runner import JobContext, prune

log = logging.getLogger("facility_share.jobs")


@handler("bookings.expire", max_attempts=2)
async def expire_requests(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    from facility_share.bookings.services import expire_overdue

    assert ctx.session is not None
    expired = await expire_overdue(ctx.session, ctx.now)
    if expired:
        log.info("expired %d undecided request(s): %s", len(expired), ", ".join(map(str, expired[:50])))
    return {"expired": len(expired)}


@handler("bookings.no_shows", max_attempts=2)
async def mark_no_shows(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    from facility_share.usage.services import sweep_no_shows

    assert ctx.session is not None
    switched = await sweep_no_shows(ctx.session, ctx.now)
    if switched:
        log.info("%d booking(s) unused: no-show: %s", len(switched), ", ".join(map(str, switched[:50])))
    return {"no_shows": len(switched)}


@handler("jobs.prune", max_attempts=2)
async def prune_jobs(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    assert ctx.session is not None
    return {"deleted": await prune(ctx.session, now=ctx.now)}


@handler("payments.reconcile", transactional=False, max_attempts=2)
async def reconcile_payments(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    from facility_share.payments.reconcile import run_reconcile

    if not ctx.settings.stripe_enabled:
        return {"skipped": "offline mode"}
    summary = await run_reconcile(ctx.settings, ctx.now - timedelta(days=2))
    return {"checked": summary.checked, "changed": summary.changed, "errors": summary.errors[:20]}


# The advance-payment sweep (settling advances of cancelled bookings, sending refunds waiting
# for Stripe), where the payments package provides it.
try:
    _advances = importlib.import_module("facility_share.payments.advances")
except ImportError:  # pragma: no cover - an older payments package
    _advances = None

if _advances is not None and hasattr(_advances, "sweep"):

    @handler("payments.advances", transactional=False, max_attempts=2)
    async def sweep_advances(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
        from facility_share.payments.gateway import gateway_for

        gateway = gateway_for(ctx.settings)
        try:
            lines = await _advances.sweep(ctx.database, ctx.settings, gateway)
            for line in lines:
                log.info("payments sweep: %s", line)
        finally:
            if gateway is not None:
                await gateway.close()
        return {"steps": lines[:50]}
