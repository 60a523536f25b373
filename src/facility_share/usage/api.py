"""Usage API: check-in/out, walk-ins, corrections, the instrument agent, charges, ratings, figures."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import or_, select

from facility_share.accounts.principal import Principal
from facility_share.db.models import AgentKey, Charge, Resource, UsageLog
from facility_share.errors import NotFound, Unauthorized
from facility_share.usage import figures, schemas, services
from facility_share.web.deps import DbSession, RecordId
from facility_share.web.openapi import error_responses


def _visible_charges(principal: Principal):  # type: ignore[no-untyped-def]
    if principal.reads_all():
        return None
    conditions = []
    if principal.managed_unit_ids:
        conditions.append(Resource.unit_id.in_(principal.managed_unit_ids))
    if principal.enterprise_id is not None:
        conditions.append(Charge.enterprise_id == principal.enterprise_id)
    return or_(*conditions) if conditions else Charge.id.is_(None)


class UsageApi(Controller):
    path = "/api/v1"
    tags = ["usage"]

    @post("/bookings/{booking_id:int}/check-in", summary="Start the session of an approved booking", status_code=201,
          opt={"access": "authenticated"}, responses=error_responses(400, 401, 403, 404, 409))
    async def check_in(self, request: Request, db_session: DbSession, booking_id: RecordId,
                       data: JSONBody[schemas.CheckInIn | None] = None) -> schemas.UsageOut:
        log = await services.check_in(db_session, request.user, booking_id, operator=data.operator if data else "")
        await db_session.commit()
        return schemas.usage_out(log)

    @post("/bookings/{booking_id:int}/check-out", summary="End the session; completes the booking and issues its charge",
          status_code=200, opt={"access": "authenticated"}, responses=error_responses(400, 401, 403, 404, 409))
    async def check_out(self, request: Request, db_session: DbSession, booking_id: RecordId,
                        data: JSONBody[schemas.CheckOutIn | None] = None) -> schemas.UsageOut:
        log, _charge = await services.check_out(db_session, request.user, booking_id, samples=data.samples if data else 0,
                                                note=data.note if data else "")
        await db_session.commit()
        return schemas.usage_out(log)

    @post("/usage/walk-ins", summary="Record usage with no booking (managers)", status_code=201, opt={"access": "manager"},
          responses=error_responses(400, 401, 403, 404))
    async def walk_in(self, request: Request, db_session: DbSession, data: JSONBody[schemas.WalkInIn]) -> schemas.UsageOut:
        log, _charge = await services.record_walk_in(db_session, request.user, services.WalkIn(**data.__dict__))
        await db_session.commit()
        return schemas.usage_out(log)

    @post("/usage/{log_id:int}/corrections", summary="Correct a session: a new version with a reason", status_code=201,
          opt={"access": "manager"}, responses=error_responses(400, 401, 403, 404, 409))
    async def correct(self, request: Request, db_session: DbSession, log_id: RecordId, data: JSONBody[schemas.CorrectionIn]) -> schemas.UsageOut:
        log, _charge = await services.correct(db_session, request.user, log_id, started_at=data.started_at, ended_at=data.ended_at,
                                              samples=data.samples, reason=data.reason)
        await db_session.commit()
        return schemas.usage_out(log)

    @get("/usage", summary="Usage sessions (current versions, or every version with history=true)",
         opt={"access": "staff"}, responses=error_responses(400, 401, 403))
    async def list_usage(self, request: Request, db_session: DbSession,
                         resource: Annotated[str | None, QueryParameter(max_length=40)] = None,
                         start: FromQuery[datetime | None] = None, end: FromQuery[datetime | None] = None,
                         history: FromQuery[bool] = False,
                         limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200) -> list[schemas.UsageOut]:
        principal: Principal = request.user
        statement = select(UsageLog).join(Resource, UsageLog.resource_id == Resource.id)
        if not principal.reads_all():
            statement = statement.where(Resource.unit_id.in_(principal.managed_unit_ids))
        if resource:
            statement = statement.where(Resource.code == resource)
        if start:
            statement = statement.where(UsageLog.started_at >= start)
        if end:
            statement = statement.where(UsageLog.started_at < end)
        if not history:
            statement = statement.where(services.current_versions())
        rows = (await db_session.execute(statement.order_by(UsageLog.started_at.desc(), UsageLog.id.desc()).limit(limit))).scalars()
        return [schemas.usage_out(log) for log in rows]

    @get("/charges", summary="Charges the caller may see (own enterprise, managed units, or all for finance)",
         opt={"access": "authenticated"}, responses=error_responses(401))
    async def charges(self, request: Request, db_session: DbSession, status: FromQuery[str | None] = None,
                      limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200) -> list[schemas.ChargeOut]:
        statement = select(Charge).join(Resource, Charge.resource_id == Resource.id)
        visible = _visible_charges(request.user)
        if visible is not None:
            statement = statement.where(visible)
        if status:
            statement = statement.where(Charge.status == status)
        rows = (await db_session.execute(statement.order_by(Charge.id.desc()).limit(limit))).scalars()
        return [schemas.charge_out(c) for c in rows]

    @get("/charges/{charge_id:int}", summary="One charge with its lines and explanation", opt={"access": "authenticated"},
         responses=error_responses(401, 404))
    async def charge(self, request: Request, db_session: DbSession, charge_id: RecordId) -> schemas.ChargeOut:
        statement = select(Charge).join(Resource, Charge.resource_id == Resource.id).where(Charge.id == charge_id)
        visible = _visible_charges(request.user)
        if visible is not None:
            statement = statement.where(visible)
        charge = (await db_session.execute(statement)).scalar_one_or_none()
        if charge is None:
            raise NotFound(f"no charge {charge_id}")
        return schemas.charge_out(charge)

    @post("/charges/{charge_id:int}/mark-paid", summary="Record an offline payment (managers)", status_code=200,
          opt={"access": "manager"}, responses=error_responses(400, 401, 403, 404, 409))
    async def mark_paid(self, request: Request, db_session: DbSession, charge_id: RecordId, data: JSONBody[schemas.MarkPaidIn]) -> schemas.ChargeOut:
        charge = await services.mark_paid(db_session, request.user, charge_id, method=data.method, reference=data.reference)
        await db_session.commit()
        return schemas.charge_out(charge)

    @post("/bookings/{booking_id:int}/rating", summary="Rate a completed service, once", status_code=201,
          opt={"access": "enterprise"}, responses=error_responses(400, 401, 403, 404, 409))
    async def rate(self, request: Request, db_session: DbSession, booking_id: RecordId, data: JSONBody[schemas.RatingIn]) -> schemas.RatingOut:
        rating = await services.rate(db_session, request.user, booking_id, stars=data.stars, comment=data.comment)
        await db_session.commit()
        return schemas.RatingOut(rating.id, rating.booking_id, rating.stars, rating.comment, rating.created_at)

    @get("/figures", summary="Sharing figures per unit and resource for local dates [start, end)",
         opt={"access": "staff"}, responses=error_responses(400, 401, 403))
    async def sharing_figures(self, request: Request, db_session: DbSession, start: FromQuery[date], end: FromQuery[date]) -> schemas.ReportOut:
        principal: Principal = request.user
        units = None if principal.reads_all() else principal.managed_unit_ids
        return schemas.report_out(await figures.sharing_figures(db_session, start, end, unit_ids=units))


class AgentKeyApi(Controller):
    path = "/api/v1"
    tags = ["instrument agent"]
    opt = {"access": "manager"}

    @get("/resources/{code:str}/agent-keys", summary="Agent keys of a resource", responses=error_responses(401, 403, 404))
    async def list_keys(self, request: Request, db_session: DbSession, code: FromPath[str]) -> list[schemas.AgentKeyOut]:
        resource = (await db_session.execute(select(Resource).where(Resource.code == code))).scalar_one_or_none()
        if resource is None or not request.user.manages(resource.unit_id):
            raise NotFound(f"no resource {code!r} in the units you manage")
        rows = (await db_session.execute(select(AgentKey).where(AgentKey.resource_id == resource.id).order_by(AgentKey.id))).scalars()
        return [schemas.AgentKeyOut(k.id, k.resource_id, k.name, k.prefix, k.created_at, k.last_used_at, k.revoked_at) for k in rows]

    @post("/resources/{code:str}/agent-keys", summary="Create an agent key (its value is shown only in this answer)",
          status_code=201, responses=error_responses(400, 401, 403, 404))
    async def create_key(self, request: Request, db_session: DbSession, code: FromPath[str], data: JSONBody[schemas.AgentKeyIn]) -> schemas.NewAgentKey:
        row, key = await services.create_agent_key(db_session, request.user, code, data.name)
        await db_session.commit()
        return schemas.NewAgentKey(row.id, row.resource_id, row.name, row.prefix, row.created_at, row.last_used_at, row.revoked_at, key)

    @post("/agent-keys/{key_id:int}/revoke", summary="Revoke an agent key", status_code=204, responses=error_responses(401, 403, 404))
    async def revoke_key(self, request: Request, db_session: DbSession, key_id: RecordId) -> None:
        await services.revoke_agent_key(db_session, request.user, key_id)
        await db_session.commit()


class AgentApi(Controller):
    path = "/api/v1/agent"
    tags = ["instrument agent"]
    opt = {"access": "agent"}

    @post("/sessions", summary="Post a usage session from the instrument (Authorization: Bearer fsa_…)",
          description="The idempotency key identifies the session: retries answer 200 with the recorded session "
                      "and record nothing new.", status_code=201, responses=error_responses(400, 401))
    async def post_session(self, request: Request, db_session: DbSession, data: JSONBody[schemas.AgentSessionIn]) -> Response[schemas.UsageOut]:
        # The middleware read the key in its own, closed session; use this transaction's copy.
        key = await db_session.get(AgentKey, request.scope["agent"].id)
        if key is None or key.revoked_at is not None:
            raise Unauthorized("the agent key was revoked")
        log, created = await services.record_agent_session(db_session, key, services.AgentSession(**data.__dict__))
        await db_session.commit()
        return Response(schemas.usage_out(log), status_code=201 if created else 200)
