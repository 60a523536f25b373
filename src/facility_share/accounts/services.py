"""Account operations: registration, sign-in with throttling, sessions, API tokens, roles,
enterprise verification and qualifications. Callers own the transaction (we only flush)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.cn import uscc as uscc_number

from facility_share import audit
from facility_share.accounts.principal import Principal
from facility_share.accounts.security import hash_password, hash_token, needs_rehash, new_token, password_problem, verify_password
from facility_share.db.models import (
    ROLES,
    TIERS,
    ApiToken,
    Enterprise,
    EnterpriseStatus,
    LoginAttempt,
    ManagingUnit,
    Qualification,
    Resource,
    RoleGrant,
    User,
    WebSession,
    utcnow,
)
from facility_share.errors import Conflict, InvalidInput, NotFound, TooManyRequests, Unauthorized

SESSION_LIFETIME = timedelta(days=14)
# Sliding sessions: last_seen is written at most this often, not on every request.
SESSION_TOUCH_EVERY = timedelta(minutes=10)
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_IP = 30
ENTERPRISE_STATUS_FIELDS = ("registered_in_district", "tech_sme", "hnte", "tier", "controller")


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
        raise InvalidInput(f"email: {email!r} is not an e-mail address")
    return email


def check_uscc(value: str) -> str:
    """Raises InvalidInput with what is wrong with a 统一社会信用代码."""
    try:
        return uscc_number.validate(value.strip().upper())
    except Exception as exc:  # stdnum raises several ValidationError subclasses
        raise InvalidInput(
            f"uscc: {value!r} is not a valid 统一社会信用代码 ({exc}); it has 18 characters and ends in a check digit"
        ) from None


# --- principals --------------------------------------------------------------------------


# Every request resolves its caller, so these are Core statements over the tables (no ORM
# objects) and one round trip each: the token or session, the user, the enterprise and the
# role grants come together, one row per grant (or one row with no grant).
_users, _enterprises, _grants = User.__table__, Enterprise.__table__, RoleGrant.__table__
_api_tokens, _web_sessions = ApiToken.__table__, WebSession.__table__
_PRINCIPAL_COLUMNS = (
    _users.c.id, _users.c.email, _users.c.name, _users.c.locale, _users.c.enterprise_id, _users.c.is_active,
    _enterprises.c.verified_at, _grants.c.role, _grants.c.unit_id.label("grant_unit_id"),
)


def _principal_query(base):  # type: ignore[no-untyped-def]
    """The principal's columns over ``base`` (a FROM clause that contains ``users``)."""
    return (
        select(*_PRINCIPAL_COLUMNS)
        .select_from(
            base.outerjoin(_enterprises, _users.c.enterprise_id == _enterprises.c.id)
            .outerjoin(_grants, _grants.c.user_id == _users.c.id)
        )
    )


_PRINCIPAL_BY_ID = _principal_query(_users).where(_users.c.id == bindparam("user_id"))
_PRINCIPAL_BY_TOKEN = (
    _principal_query(_api_tokens.join(_users, _api_tokens.c.user_id == _users.c.id))
    .add_columns(_api_tokens.c.expires_at, _api_tokens.c.revoked_at, _api_tokens.c.last_used_at)
    .where(_api_tokens.c.token_hash == bindparam("token_hash"))
)
_PRINCIPAL_BY_SESSION = (
    _principal_query(_web_sessions.join(_users, _web_sessions.c.user_id == _users.c.id))
    .add_columns(_web_sessions.c.expires_at, _web_sessions.c.last_seen_at)
    .where(_web_sessions.c.token_hash == bindparam("token_hash"))
)


def _principal_from_rows(rows, via: str) -> Principal | None:  # type: ignore[no-untyped-def]
    """The principal from the rows of one of the statements above (one per role grant)."""
    if not rows or not rows[0].is_active:
        return None
    row = rows[0]
    grants = [(r.role, r.grant_unit_id) for r in rows if r.role is not None]
    roles = {role for role, _unit in grants}
    if row.enterprise_id is not None:
        roles.add("enterprise_member")
    return Principal(
        user_id=row.id,
        email=row.email,
        name=row.name,
        locale=row.locale,
        enterprise_id=row.enterprise_id,
        enterprise_verified=row.verified_at is not None,
        roles=frozenset(roles),
        managed_unit_ids=frozenset(unit for role, unit in grants if role == "unit_manager" and unit is not None),
        via=via,
    )


async def _rows(session: AsyncSession, statement, **params):  # type: ignore[no-untyped-def]
    connection = await session.connection()
    return (await connection.execute(statement, params)).all()


async def load_principal(session: AsyncSession, user_id: int, via: str) -> Principal | None:
    """The user with their roles, or None for a missing or deactivated account (one query)."""
    return _principal_from_rows(await _rows(session, _PRINCIPAL_BY_ID, user_id=user_id), via)


async def principal_for_token(session: AsyncSession, token: str) -> tuple[Principal | None, bool]:
    """The principal of a live API token, and whether its last-used time is due for a write."""
    now = utcnow()
    rows = await _rows(session, _PRINCIPAL_BY_TOKEN, token_hash=hash_token(token))
    if not rows:
        return None, False
    row = rows[0]
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None, False
    due = row.last_used_at is None or now - row.last_used_at > SESSION_TOUCH_EVERY
    return _principal_from_rows(rows, "token"), due


async def touch_api_token(session: AsyncSession, token: str) -> None:
    await session.execute(update(ApiToken).where(ApiToken.token_hash == hash_token(token)).values(last_used_at=utcnow()))


async def principal_for_session(session: AsyncSession, token: str) -> tuple[Principal | None, bool]:
    """The principal of a live browser session, and whether its expiry is due for sliding."""
    now = utcnow()
    rows = await _rows(session, _PRINCIPAL_BY_SESSION, token_hash=hash_token(token))
    if not rows or rows[0].expires_at <= now:
        return None, False
    return _principal_from_rows(rows, "session"), now - rows[0].last_seen_at > SESSION_TOUCH_EVERY


# --- users and enterprises ---------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    email: str
    password: str
    name: str
    uscc: str
    enterprise_name: str
    phone: str = ""
    locale: str = "zh_CN"


async def register(session: AsyncSession, form: Registration) -> User:
    """Self-registration: a user and, if new, an unverified enterprise (browse, not book).

    Raises:
        InvalidInput: a malformed field (the message names it).
        Conflict: the e-mail is taken, or the enterprise exists (ask its members or an admin).
    """
    email = normalise_email(form.email)
    problem = password_problem(form.password)
    if problem:
        raise InvalidInput(f"password: {problem}")
    if not form.name.strip():
        raise InvalidInput("name: please give your name")
    code = check_uscc(form.uscc)
    if not form.enterprise_name.strip():
        raise InvalidInput("enterprise_name: please give the enterprise's registered name")
    if (await session.execute(select(User.id).where(User.email == email))).first():
        raise Conflict("email: an account with this e-mail already exists; sign in or reset the password")
    if (await session.execute(select(Enterprise.id).where(Enterprise.uscc == code))).first():
        raise Conflict(
            "uscc: this enterprise is already registered; ask a colleague who has an account, or the platform admin, to add you"
        )
    enterprise = Enterprise(uscc=code, name=form.enterprise_name.strip(), contact_name=form.name.strip(), contact_phone=form.phone)
    session.add(enterprise)
    await session.flush()
    user = User(
        email=email,
        name=form.name.strip(),
        phone=form.phone.strip(),
        password_hash=hash_password(form.password),
        locale=form.locale,
        enterprise_id=enterprise.id,
    )
    session.add(user)
    await session.flush()
    await _record_status(session, enterprise, by=user.id, on=utcnow().date())
    audit.record(session, action="register", entity="enterprise", entity_id=enterprise.id, actor_id=user.id,
                 after={"uscc": code, "name": enterprise.name})
    return user


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    name: str,
    role: str,
    unit_codes: tuple[str, ...] = (),
    enterprise_uscc: str | None = None,
    actor_id: int | None = None,
) -> User:
    """Create a user with a role (CLI and admin pages).

    Raises:
        InvalidInput / NotFound / Conflict: with the field at fault.
    """
    if role not in ROLES:
        raise InvalidInput(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    email = normalise_email(email)
    problem = password_problem(password)
    if problem:
        raise InvalidInput(f"password: {problem}")
    if role == "unit_manager" and not unit_codes:
        raise InvalidInput("unit: a unit_manager needs --unit CODE (one or more)")
    if role == "enterprise_member" and not enterprise_uscc:
        raise InvalidInput("enterprise: an enterprise_member needs --enterprise USCC")
    enterprise_id = None
    if enterprise_uscc:
        code = check_uscc(enterprise_uscc)
        enterprise_id = (await session.execute(select(Enterprise.id).where(Enterprise.uscc == code))).scalar_one_or_none()
        if enterprise_id is None:
            raise NotFound(f"enterprise: no enterprise with USCC {code}; register it first")
    if (await session.execute(select(User.id).where(User.email == email))).first():
        raise Conflict(f"email: {email} already has an account")
    user = User(email=email, name=name or email.split("@")[0], password_hash=hash_password(password), enterprise_id=enterprise_id)
    session.add(user)
    await session.flush()
    await grant_role(session, user.id, role, unit_codes=unit_codes, actor_id=actor_id)
    audit.record(session, action="create", entity="user", entity_id=user.id, actor_id=actor_id,
                 actor_kind="user" if actor_id else "system", after={"email": email, "role": role, "units": list(unit_codes)})
    return user


async def grant_role(
    session: AsyncSession, user_id: int, role: str, *, unit_codes: tuple[str, ...] = (), actor_id: int | None = None
) -> None:
    if role == "enterprise_member":
        return  # membership is the user's enterprise, not a grant
    if role == "unit_manager":
        for code in unit_codes:
            unit_id = (await session.execute(select(ManagingUnit.id).where(ManagingUnit.code == code))).scalar_one_or_none()
            if unit_id is None:
                raise NotFound(f"unit: no managing unit with code {code!r}")
            exists = (
                await session.execute(
                    select(RoleGrant.id).where(RoleGrant.user_id == user_id, RoleGrant.role == role, RoleGrant.unit_id == unit_id)
                )
            ).first()
            if not exists:
                session.add(RoleGrant(user_id=user_id, role=role, unit_id=unit_id))
    else:
        exists = (await session.execute(select(RoleGrant.id).where(RoleGrant.user_id == user_id, RoleGrant.role == role))).first()
        if not exists:
            session.add(RoleGrant(user_id=user_id, role=role))
    await session.flush()
    audit.record(session, action="grant_role", entity="user", entity_id=user_id, actor_id=actor_id,
                 actor_kind="user" if actor_id else "system", after={"role": role, "units": list(unit_codes)})


async def revoke_role(session: AsyncSession, user_id: int, role: str, unit_id: int | None, actor_id: int) -> None:
    condition = [RoleGrant.user_id == user_id, RoleGrant.role == role]
    condition.append(RoleGrant.unit_id == unit_id if unit_id is not None else RoleGrant.unit_id.is_(None))
    result = await session.execute(delete(RoleGrant).where(*condition))
    if result.rowcount == 0:
        raise NotFound("that role is not held")
    audit.record(session, action="revoke_role", entity="user", entity_id=user_id, actor_id=actor_id,
                 before={"role": role, "unit_id": unit_id})


async def _record_status(session: AsyncSession, enterprise: Enterprise, *, by: int | None, on: date) -> None:
    session.add(
        EnterpriseStatus(
            enterprise_id=enterprise.id,
            effective_from=on,
            registered_in_district=enterprise.registered_in_district,
            verified=enterprise.verified_at is not None,
            tech_sme=enterprise.tech_sme,
            hnte=enterprise.hnte,
            tier=enterprise.tier,
            controller=enterprise.controller,
            recorded_by_id=by,
        )
    )


@dataclass(frozen=True)
class EnterpriseUpdate:
    verified: bool
    registered_in_district: bool
    tech_sme: bool
    hnte: bool
    tier: str
    controller: str = ""
    effective_from: date | None = None
    reason: str = ""


async def update_enterprise_status(session: AsyncSession, enterprise_id: int, change: EnterpriseUpdate, *, actor_id: int) -> Enterprise:
    """Verify an enterprise and set its registration, flags, tier and controller (admins).

    The change is appended to the status history, effective from ``effective_from`` (today
    by default), because subsidies use the status in force on each service date.
    """
    if change.tier not in TIERS:
        raise InvalidInput(f"tier: expected one of {', '.join(TIERS)}, got {change.tier!r}")
    enterprise = await session.get(Enterprise, enterprise_id)
    if enterprise is None:
        raise NotFound(f"no enterprise {enterprise_id}")
    fields = ("verified_at", *ENTERPRISE_STATUS_FIELDS)
    before = audit.snapshot(enterprise, fields)
    now = utcnow()
    if change.verified and enterprise.verified_at is None:
        enterprise.verified_at, enterprise.verified_by_id = now, actor_id
    elif not change.verified:
        enterprise.verified_at, enterprise.verified_by_id = None, None
    enterprise.registered_in_district = change.registered_in_district
    enterprise.tech_sme = change.tech_sme
    enterprise.hnte = change.hnte
    enterprise.tier = change.tier
    enterprise.controller = change.controller.strip()
    await session.flush()
    await _record_status(session, enterprise, by=actor_id, on=change.effective_from or now.date())
    audit.record(session, action="update_status", entity="enterprise", entity_id=enterprise.id, actor_id=actor_id,
                 before=before, after=audit.snapshot(enterprise, fields), reason=change.reason)
    return enterprise


# --- sign-in, sessions and tokens ----------------------------------------------------------


async def throttle_check(session: AsyncSession, email: str, ip: str, now: datetime) -> None:
    """Raises TooManyRequests while an e-mail or an address has too many recent failures."""
    since = now - THROTTLE_WINDOW
    by_email = (await session.execute(select(func.count()).where(LoginAttempt.email == email, LoginAttempt.at > since))).scalar_one()
    by_ip = (await session.execute(select(func.count()).where(LoginAttempt.ip == ip, LoginAttempt.at > since))).scalar_one()
    if by_email >= MAX_FAILURES_PER_EMAIL or by_ip >= MAX_FAILURES_PER_IP:
        raise TooManyRequests(
            f"too many failed sign-ins; try again in {int(THROTTLE_WINDOW.total_seconds() // 60)} minutes",
            retry_after=int(THROTTLE_WINDOW.total_seconds()),
        )


async def authenticate(session: AsyncSession, email: str, password: str, ip: str) -> User:
    """Check a password, with throttling per e-mail and per address.

    Raises:
        TooManyRequests: throttled (the attempt is not even checked).
        Unauthorized: wrong e-mail or password (the message does not say which).
    """
    now = utcnow()
    try:
        email = normalise_email(email)
    except InvalidInput:
        raise Unauthorized("wrong e-mail or password") from None
    await throttle_check(session, email, ip, now)
    user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if not verify_password(user.password_hash if user else None, password) or user is None or not user.is_active:
        session.add(LoginAttempt(email=email, ip=ip, at=now))
        await session.flush()
        raise Unauthorized("wrong e-mail or password")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    await session.execute(delete(LoginAttempt).where(LoginAttempt.email == email))
    return user


async def start_session(session: AsyncSession, user_id: int, ip: str, user_agent: str) -> str:
    """A new browser session; returns the cookie value (only its hash is stored)."""
    token, digest = new_token("fss")
    now = utcnow()
    session.add(
        WebSession(token_hash=digest, user_id=user_id, created_at=now, expires_at=now + SESSION_LIFETIME,
                   last_seen_at=now, ip=ip[:64], user_agent=user_agent[:300])
    )
    await session.flush()
    return token


async def touch_session(session: AsyncSession, token: str) -> None:
    now = utcnow()
    await session.execute(
        update(WebSession)
        .where(WebSession.token_hash == hash_token(token))
        .values(last_seen_at=now, expires_at=now + SESSION_LIFETIME)
    )


async def end_session(session: AsyncSession, token: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(token)))


async def create_api_token(session: AsyncSession, user_id: int, name: str, days: int | None = None) -> tuple[ApiToken, str]:
    """A personal API token; the plain value is returned once and never stored."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("name: give the token a name of 1–100 characters, e.g. the program that will use it")
    if days is not None and not 1 <= days <= 3660:
        raise InvalidInput("days: a token lives between 1 and 3660 days")
    token, digest = new_token("fst")
    now = utcnow()
    row = ApiToken(user_id=user_id, name=name, token_hash=digest, prefix=token[:12], created_at=now,
                   expires_at=now + timedelta(days=days) if days else None)
    session.add(row)
    await session.flush()
    audit.record(session, action="create", entity="api_token", entity_id=row.id, actor_id=user_id, after={"name": name})
    return row, token


async def revoke_api_token(session: AsyncSession, user_id: int, token_id: int) -> None:
    """Raises NotFound for another user's token as for a missing one."""
    row = await session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound("no such token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(session, action="revoke", entity="api_token", entity_id=row.id, actor_id=user_id)
    await session.flush()


async def list_api_tokens(session: AsyncSession, user_id: int) -> list[ApiToken]:
    return list(
        (await session.execute(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.created_at.desc()))).scalars()
    )


# --- qualifications ------------------------------------------------------------------------


async def grant_qualification(
    session: AsyncSession, principal: Principal, *, user_email: str, resource_code: str, valid_until: date, note: str = ""
) -> Qualification:
    """A manager lets a user operate a resource of their unit themselves, until a date."""
    resource = (await session.execute(select(Resource).where(Resource.code == resource_code))).scalar_one_or_none()
    if resource is None or not principal.manages(resource.unit_id):
        raise NotFound(f"no resource {resource_code!r} in the units you manage")
    user = (await session.execute(select(User).where(User.email == normalise_email(user_email)))).scalar_one_or_none()
    if user is None:
        raise NotFound(f"user: no account with e-mail {user_email!r}")
    if valid_until < utcnow().date():
        raise InvalidInput("valid_until: the date has passed; give a future date")
    qualification = Qualification(user_id=user.id, resource_id=resource.id, valid_until=valid_until,
                                  granted_by_id=principal.user_id, note=note[:300])
    session.add(qualification)
    await session.flush()
    audit.record(session, action="grant", entity="qualification", entity_id=qualification.id, actor_id=principal.user_id,
                 after={"user": user.email, "resource": resource.code, "valid_until": valid_until})
    return qualification


async def revoke_qualification(session: AsyncSession, principal: Principal, qualification_id: int) -> None:
    qualification = await session.get(Qualification, qualification_id)
    resource = await session.get(Resource, qualification.resource_id) if qualification else None
    if qualification is None or resource is None or not principal.manages(resource.unit_id):
        raise NotFound("no such qualification in the units you manage")
    if qualification.revoked_at is None:
        qualification.revoked_at = utcnow()
        audit.record(session, action="revoke", entity="qualification", entity_id=qualification.id, actor_id=principal.user_id)
    await session.flush()


async def qualified_until(session: AsyncSession, user_id: int, resource_id: int) -> date | None:
    return (
        await session.execute(
            select(func.max(Qualification.valid_until)).where(
                Qualification.user_id == user_id, Qualification.resource_id == resource_id, Qualification.revoked_at.is_(None)
            )
        )
    ).scalar_one_or_none()

