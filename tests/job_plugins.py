"""Job kinds for the tests only, loaded with ``facility-share worker --import tests.job_plugins``.

Their effect is an audit event (entity ``test_job``, the payload's ``n``) written in the job's
own transaction, so the tests can count how often each job's effect was applied.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from facility_share import audit
from facility_share.jobs import Permanent, handler
from facility_share.jobs.runner import JobContext

ENTITY = "test_job"


def _record(ctx: JobContext, payload: dict[str, Any]) -> None:
    assert ctx.session is not None
    audit.record(ctx.session, action="run", entity=ENTITY, entity_id=int(payload["n"]), actor_id=None, actor_kind="system",
                 after={"job": ctx.job.id, "attempt": ctx.job.attempts, "worker": ctx.job.locked_by})


@handler("test.record")
async def record(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    _record(ctx, payload)
    if payload.get("pause"):
        await asyncio.sleep(float(payload["pause"]))
    return {"n": payload["n"]}


@handler("test.slow")
async def slow(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Writes its effect, tells the test it is mid-job (a marker file), then takes its time
    before the job commits: a kill now must leave no trace of the effect."""
    _record(ctx, payload)
    await ctx.session.flush()  # the effect is in the open transaction, not committed
    marker = Path(payload["marker"]) / f"attempt-{ctx.job.attempts}"
    marker.write_text(ctx.job.locked_by)
    await asyncio.sleep(float(payload.get("seconds", 30)))
    return {"n": payload["n"]}


@handler("test.flaky", max_attempts=3)
async def flaky(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Applies its effect, then fails until attempt ``succeed_on`` (the effect must roll back)."""
    _record(ctx, payload)
    if ctx.job.attempts < int(payload.get("succeed_on", 99)):
        raise RuntimeError(f"flaky failure on attempt {ctx.job.attempts}")
    return {"attempt": ctx.job.attempts}


@handler("test.permanent")
async def permanent(ctx: JobContext, payload: dict[str, Any]) -> None:
    raise Permanent("this job can never succeed")
