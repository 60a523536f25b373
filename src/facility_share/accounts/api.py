"""Accounts API: the caller, personal tokens, enterprise verification, roles, qualifications."""

from __future__ import annotations

from typing import Literal

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from facility_share.accounts import schemas, services
from facility_share.accounts.principal import Principal
from facility_share.db.models import ApiToken, Enterprise, ManagingUnit, Qualification, Resource, RoleGrant, User
from facility_share.errors import NotFound
from facility_share.web.deps import DbSession, RecordId
from facility_share.web.openapi import error_responses


def token_out(t: ApiToken) -> schemas.TokenOut:
    return schemas.TokenOut(t.id, t.name, t.prefix, t.created_at, t.last_used_at, t.expires_at, t.revoked_at)


def enterprise_out(e: Enterprise) -> schemas.EnterpriseOut:
    return schemas.EnterpriseOut(e.id, e.uscc, e.name, e.verified_at is not None, e.registered_in_district, e.tech_sme,
                                 e.hnte, e.tier, e.controller, e.created_at)


class MeApi(Controller):
    path = "/api/v1/me"
    tags = ["accounts"]
    opt = {"access": "authenticated"}

    @get("/", summary="The signed-in user and their roles", responses=error_responses(401))
    async def me(self, request: Request) -> schemas.Me:
        p: Principal = request.user
        return schemas.Me(p.user_id, p.email, p.name, p.locale, sorted(p.roles), sorted(p.managed_unit_ids), p.enterprise_id,
                          p.enterprise_verified)

    @get("/tokens", summary="My personal API tokens", responses=error_responses(401))
    async def tokens(self, request: Request, db_session: DbSession) -> list[schemas.TokenOut]:
        return [token_out(t) for t in await services.list_api_tokens(db_session, request.user.user_id)]

    @post("/tokens", summary="Create a personal API token (its value is shown only in this answer)", status_code=201,
          responses=error_responses(400, 401))
    async def create_token(self, request: Request, db_session: DbSession, data: JSONBody[schemas.TokenIn]) -> schemas.NewToken:
        row, token = await services.create_api_token(db_session, request.user.user_id, data.name, data.days)
        await db_session.commit()
        return schemas.NewToken(**token_out(row).__dict__, token=token)

    @delete("/tokens/{token_id:int}", summary="Revoke one of my tokens", status_code=204, responses=error_responses(401, 404))
    async def revoke_token(self, request: Request, db_session: DbSession, token_id: RecordId) -> None:
        await services.revoke_api_token(db_session, request.user.user_id, token_id)
        await db_session.commit()


class AdminApi(Controller):
    path = "/api/v1/admin"
    tags = ["admin"]
    opt = {"access": "admin"}

    @get("/enterprises", summary="Enterprises, unverified first", responses=error_responses(401, 403))
    async def enterprises(self, db_session: DbSession, verified: FromQuery[bool | None] = None) -> list[schemas.EnterpriseOut]:
        statement = select(Enterprise).order_by(Enterprise.verified_at.is_not(None), Enterprise.created_at.desc())
        if verified is not None:
            statement = statement.where(Enterprise.verified_at.is_not(None) if verified else Enterprise.verified_at.is_(None))
        return [enterprise_out(e) for e in (await db_session.execute(statement)).scalars()]

    @patch("/enterprises/{enterprise_id:int}", summary="Verify an enterprise; set registration, flags, tier, controller",
           responses=error_responses(400, 401, 403, 404))
    async def update_enterprise(self, request: Request, db_session: DbSession, enterprise_id: RecordId,
                                data: JSONBody[schemas.EnterpriseStatusIn]) -> schemas.EnterpriseOut:
        enterprise = await services.update_enterprise_status(
            db_session, enterprise_id, services.EnterpriseUpdate(**data.__dict__), actor_id=request.user.user_id
        )
        await db_session.commit()
        return enterprise_out(enterprise)

    @get("/users", summary="Users and their roles", responses=error_responses(401, 403))
    async def users(self, db_session: DbSession) -> list[schemas.UserOut]:
        users = (await db_session.execute(select(User).options(selectinload(User.roles)).order_by(User.email))).scalars()
        return [schemas.UserOut(u.id, u.email, u.name, u.enterprise_id, sorted({g.role for g in u.roles}), u.is_active) for u in users]

    @post("/users/{user_id:int}/roles", summary="Grant a role", status_code=200, responses=error_responses(400, 401, 403, 404))
    async def grant(self, request: Request, db_session: DbSession, user_id: RecordId, data: JSONBody[schemas.RoleIn]) -> schemas.UserOut:
        if await db_session.get(User, user_id) is None:
            raise NotFound(f"no user {user_id}")
        from facility_share.db.models import ROLES
        from facility_share.errors import InvalidInput

        if data.role not in ROLES or data.role == "enterprise_member":
            raise InvalidInput("role: expected unit_manager, finance or admin")
        if data.role == "unit_manager" and not data.unit_code:
            raise InvalidInput("unit_code: a unit_manager grant names the unit")
        await services.grant_role(db_session, user_id, data.role, unit_codes=(data.unit_code,) if data.unit_code else (),
                                  actor_id=request.user.user_id)
        await db_session.commit()
        user = (await db_session.execute(select(User).where(User.id == user_id).options(selectinload(User.roles)))).scalar_one()
        await db_session.refresh(user, ["roles"])
        return schemas.UserOut(user.id, user.email, user.name, user.enterprise_id, sorted({g.role for g in user.roles}), user.is_active)

    @delete("/users/{user_id:int}/roles/{role:str}", summary="Revoke a role", status_code=204, responses=error_responses(401, 403, 404))
    async def revoke(self, request: Request, db_session: DbSession, user_id: RecordId,
                     role: FromPath[Literal["unit_manager", "finance", "admin"]], unit_code: FromQuery[str | None] = None) -> None:
        unit_id = None
        if unit_code:
            unit_id = (await db_session.execute(select(ManagingUnit.id).where(ManagingUnit.code == unit_code))).scalar_one_or_none()
            if unit_id is None:
                raise NotFound(f"no unit {unit_code!r}")
        await services.revoke_role(db_session, user_id, role, unit_id, request.user.user_id)
        await db_session.commit()


class QualificationApi(Controller):
    path = "/api/v1/qualifications"
    tags = ["qualifications"]
    opt = {"access": "manager"}

    @get("/", summary="Qualifications on resources of the units I manage", responses=error_responses(401, 403))
    async def list(self, request: Request, db_session: DbSession) -> list[schemas.QualificationOut]:
        p: Principal = request.user
        statement = (
            select(Qualification, User.email, Resource.code)
            .join(User, Qualification.user_id == User.id)
            .join(Resource, Qualification.resource_id == Resource.id)
            .order_by(Qualification.granted_at.desc())
        )
        if not p.is_admin:
            statement = statement.where(Resource.unit_id.in_(p.managed_unit_ids))
        rows = (await db_session.execute(statement)).all()
        return [schemas.QualificationOut(q.id, email, code, q.valid_until, q.revoked_at is not None) for q, email, code in rows]

    @post("/", summary="Grant a qualification", status_code=201, responses=error_responses(400, 401, 403, 404))
    async def grant(self, request: Request, db_session: DbSession, data: JSONBody[schemas.QualificationIn]) -> schemas.QualificationOut:
        q = await services.grant_qualification(db_session, request.user, user_email=data.user_email,
                                               resource_code=data.resource_code, valid_until=data.valid_until, note=data.note)
        await db_session.commit()
        return schemas.QualificationOut(q.id, services.normalise_email(data.user_email), data.resource_code, q.valid_until, False)

    @post("/{qualification_id:int}/revoke", summary="Revoke a qualification", status_code=204,
          responses=error_responses(401, 403, 404))
    async def revoke(self, request: Request, db_session: DbSession, qualification_id: RecordId) -> None:
        await services.revoke_qualification(db_session, request.user, qualification_id)
        await db_session.commit()


__all__ = ["AdminApi", "MeApi", "QualificationApi", "RoleGrant"]
