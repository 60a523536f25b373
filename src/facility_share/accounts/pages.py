"""Account pages: sign in and out, registration, the profile, personal API tokens, the admin
pages for enterprises and roles, and the managers' qualification page.

Every page is a plain HTML form that works without JavaScript. Handlers read the form
themselves, so a malformed or incomplete form re-renders with what was typed and an inline
message per field (status 400, or the domain error's own status), never a bare error page.
The controllers are split by access level, so each one declares exactly one level:

* ``SignInPages`` (public): ``/login``, ``/register``;
* ``ProfilePages`` (authenticated): ``/me``, ``/me/tokens``;
* ``AdminPages`` (admin): ``/admin/enterprises``, ``/admin/users``;
* ``QualificationPages`` (manager): ``/manage/qualifications``;
* ``SignOutPage`` (public): ``POST /logout``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from math import ceil
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template
from sqlalchemy import func, or_, select

from facility_share.accounts import services
from facility_share.accounts.auth import SESSION_COOKIE
from facility_share.accounts.principal import Principal
from facility_share.accounts.security import MIN_PASSWORD_LENGTH
from facility_share.catalog.pages import Words
from facility_share.db.models import (
    TIERS,
    ApiToken,
    Enterprise,
    EnterpriseStatus,
    ManagingUnit,
    Qualification,
    Resource,
    RoleGrant,
    User,
    utcnow,
)
from facility_share.errors import Conflict, FacilityShareError, InvalidInput, NotFound, TooManyRequests, Unauthorized
from facility_share.settings import Settings
from facility_share.web import paging
from facility_share.web.deps import AppSettings, DbSession, Lang, RecordId
from facility_share.web.i18n import I18n
from facility_share.web.pages import safe_next
from facility_share.web.render import render

SESSION_MAX_AGE = int(services.SESSION_LIFETIME.total_seconds())
GRANTABLE_ROLES = ("unit_manager", "finance", "admin")
# Rows on one page of the admin and qualification lists.
LIST_PAGE_SIZE = 50


# --- small helpers shared by the account and booking pages ------------------------------------


async def read_form(request: Request) -> Any:
    """The posted form (an empty one for any other body, e.g. JSON)."""
    return await request.form()


def text(form: Any, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def checked(form: Any, name: str) -> bool:
    return text(form, name) in ("1", "on", "true", "yes")


def split_field(message: str) -> tuple[str, str]:
    """Service messages name the field first (``"uscc: …"``); returns (field, rest)."""
    head, sep, rest = message.partition(": ")
    if sep and head.replace("_", "").isalnum() and head.islower():
        return head, rest
    return "", message


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def parse_date(value: str) -> date:
    """An ISO date as a ``<input type=date>`` sends it. Raises ValueError."""
    return date.fromisoformat(value.strip())


def with_status(page: Template, status: int) -> Template:
    page.status_code = status
    return page


def session_cookie(token: str, settings: Settings) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        max_age=SESSION_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )


def local_next(raw: str | None) -> str:
    """The ``next`` page if it is a path on this site (see ``safe_next``), else ""."""
    if not raw:
        return ""
    target = safe_next(raw)
    return "" if target == "/" and raw != "/" else target


def landing_page(principal: Principal | None) -> str:
    """Where a person goes after signing in without a ``next`` page."""
    if principal is None:
        return "/"
    if principal.is_admin:
        return "/admin/enterprises"
    if principal.is_manager:
        return "/manage/requests"
    if principal.is_enterprise_member:
        return "/me/bookings"
    return "/me"


class AccountWords(Words):
    """Translated labels for account values."""

    def tier(self, tier: str) -> str:
        return {
            "none": self._("No tier"),
            "eaglet": self._("Eaglet"),
            "gazelle": self._("Gazelle"),
            "leader_candidate": self._("Leader candidate"),
            "leader": self._("Leader"),
        }.get(tier, tier)

    def role(self, role: str) -> str:
        return {
            "enterprise_member": self._("Enterprise member"),
            "unit_manager": self._("Unit manager"),
            "finance": self._("Finance"),
            "admin": self._("Platform administrator"),
        }.get(role, role)

    def yes_no(self, value: bool) -> str:
        return self._("Yes") if value else self._("No")

    def moment(self, value: datetime | None, timezone: str) -> str:
        return "—" if value is None else self.local_datetime(value, timezone)

    def uscc_problem(self, message: str) -> str:
        """The service's reason a 统一社会信用代码 is refused, in the reader's language."""
        found = re.search(r"\((.*)\); it has", message)
        lowered = (found.group(1) if found else message).lower()
        if "checksum" in lowered:
            reason = self._("the check digit (the last character) does not match the other 17.")
        elif "length" in lowered:
            reason = self._("it must have exactly 18 characters.")
        elif "format" in lowered:
            reason = self._("it may contain only digits and capital letters other than I, O, S, V and Z.")
        elif "component" in lowered or "unknown" in lowered:
            reason = self._("the registration authority or region code at its start is not valid.")
        else:
            reason = self._("check it against the business licence.")
        return self._("This unified social credit code is not valid: %(reason)s", reason=reason)

    def service_message(self, field_name: str, message: str) -> str:
        """A field-level message of the account services, translated where it is known."""
        if field_name == "uscc":
            if "already registered" in message:
                return self._(
                    "This enterprise is already registered. Ask a colleague who has an account, or the platform "
                    "administrator, to add you."
                )
            return self.uscc_problem(message)
        if field_name == "email":
            if "already exists" in message or "already has an account" in message:
                return self._("An account with this e-mail address already exists. Sign in instead.")
            if "no account" in message:
                return self._("There is no account with this e-mail address.")
            return self._("Enter an e-mail address such as name@example.cn.")
        if field_name == "password":
            if "spaces" in message:
                return self._("The password must not start or end with a space.")
            return self._("The password must have at least %(num)d characters.", num=MIN_PASSWORD_LENGTH)
        if field_name == "name":
            return self._("Enter your name.")
        if field_name == "enterprise_name":
            return self._("Enter the enterprise's registered name.")
        if field_name == "valid_until":
            return self._("The date has passed; choose a date from today on.")
        if field_name == "tier":
            return self._("Choose a tier from the list.")
        if field_name == "unit":
            return self._("Choose a managing unit from the list.")
        return message


@dataclass
class Form:
    """A form as typed, and the problems found in it (field name → message)."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: Any = "") -> Any:
        return self.values.get(name, default)


def domain_status(exc: FacilityShareError) -> int:
    return exc.status_code if exc.status_code in (400, 403, 404, 409) else 400


# --- sign in, register -------------------------------------------------------------------------


class SignInPages(Controller):
    path = "/"
    include_in_schema = False
    opt = {"access": "public"}

    @get("/login", name="login", cache=False)
    async def login_page(self, request: Request, i18n: Lang) -> Template:
        form = Form({"email": "", "next": local_next(request.query_params.get("next"))})
        return render(request, i18n, "accounts/login.html", form=form, error="")

    @post("/login", name="login-submit")
    async def login(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings) -> Template | Redirect:
        _ = i18n.gettext
        data = await read_form(request)
        form = Form({"email": text(data, "email", 254), "next": local_next(text(data, "next"))})
        password = data.get("password") if isinstance(data.get("password"), str) else ""
        if not form.values["email"]:
            form.errors["email"] = _("Enter your e-mail address.")
        if not password:
            form.errors["password"] = _("Enter your password.")
        if form.errors:
            return with_status(render(request, i18n, "accounts/login.html", form=form, error=""), 400)
        try:
            user = await services.authenticate(db_session, form.values["email"], password, client_ip(request))
        except TooManyRequests as exc:
            minutes = max(1, ceil(exc.retry_after / 60))
            page = render(
                request, i18n, "accounts/login.html", form=form,
                error=_("Too many failed sign-ins. For your security, try again in %(minutes)d minutes.", minutes=minutes),
            )
            page.headers["Retry-After"] = str(exc.retry_after)
            return with_status(page, 429)
        except Unauthorized:
            await db_session.commit()  # the failed attempt counts towards the throttle
            page = render(request, i18n, "accounts/login.html", form=form, error=_("Wrong e-mail or password."))
            return with_status(page, 401)
        token = await services.start_session(db_session, user.id, client_ip(request), request.headers.get("user-agent", ""))
        principal = await services.load_principal(db_session, user.id, "session")
        await db_session.commit()
        target = form.values["next"] or landing_page(principal)
        return Redirect(target, status_code=303, cookies=[session_cookie(token, settings)])

    @get("/register", name="register", cache=False)
    async def register_page(self, request: Request, i18n: Lang) -> Template:
        return render(request, i18n, "accounts/register.html", form=Form(), words=AccountWords(i18n),
                      min_password=MIN_PASSWORD_LENGTH)

    @post("/register", name="register-submit")
    async def register(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings) -> Template | Redirect:
        _ = i18n.gettext
        words = AccountWords(i18n)
        data = await read_form(request)
        form = Form({
            "name": text(data, "name", 100),
            "email": text(data, "email", 254),
            "phone": text(data, "phone", 50),
            "enterprise_name": text(data, "enterprise_name", 200),
            "uscc": text(data, "uscc", 40).upper(),
        })
        password = data.get("password") if isinstance(data.get("password"), str) else ""
        password2 = data.get("password2") if isinstance(data.get("password2"), str) else ""
        if not form.values["name"]:
            form.errors["name"] = _("Enter your name.")
        if not form.values["email"]:
            form.errors["email"] = _("Enter your e-mail address.")
        if form.values["phone"] and not all(ch.isdigit() or ch in "+-() " for ch in form.values["phone"]):
            form.errors["phone"] = _("Enter a phone number with digits only, e.g. 022-82110001 or 13800138000.")
        if not password:
            form.errors["password"] = _("Choose a password of at least %(num)d characters.", num=MIN_PASSWORD_LENGTH)
        elif password != password2:
            form.errors["password2"] = _("The two passwords differ; type the same password twice.")
        if not form.values["enterprise_name"]:
            form.errors["enterprise_name"] = _("Enter the enterprise's registered name.")
        if not form.values["uscc"]:
            form.errors["uscc"] = _("Enter the enterprise's 18-character unified social credit code.")

        def again(status: int) -> Template:
            page = render(request, i18n, "accounts/register.html", form=form, words=words, min_password=MIN_PASSWORD_LENGTH)
            return with_status(page, status)

        if form.errors:
            return again(400)
        try:
            user = await services.register(
                db_session,
                services.Registration(
                    email=form.values["email"], password=password, name=form.values["name"], uscc=form.values["uscc"],
                    enterprise_name=form.values["enterprise_name"], phone=form.values["phone"], locale=i18n.locale,
                ),
            )
        except (InvalidInput, Conflict) as exc:
            await db_session.rollback()
            name, message = split_field(exc.message)
            form.errors[name or "form"] = words.service_message(name, message)
            return again(domain_status(exc))
        token = await services.start_session(db_session, user.id, client_ip(request), request.headers.get("user-agent", ""))
        await db_session.commit()
        return Redirect("/me?registered=1", status_code=303, cookies=[session_cookie(token, settings)])


class SignOutPage(Controller):
    """``POST /logout``. Listed last in ``PAGE_CONTROLLERS``: see web/pages_registry.py."""

    path = "/"
    include_in_schema = False
    opt = {"access": "public"}

    @post("/logout", name="logout")
    async def logout(self, request: Request, db_session: DbSession) -> Redirect:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await services.end_session(db_session, token)
            await db_session.commit()
        response = Redirect("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


# --- the profile and personal tokens ----------------------------------------------------------


async def _units_of(session: Any, user_id: int) -> list[tuple[str, ManagingUnit | None]]:
    rows = (
        await session.execute(
            select(RoleGrant.role, ManagingUnit)
            .outerjoin(ManagingUnit, RoleGrant.unit_id == ManagingUnit.id)
            .where(RoleGrant.user_id == user_id)
            .order_by(RoleGrant.role, ManagingUnit.code)
        )
    ).all()
    return [(role, unit) for role, unit in rows]


def token_state(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


class ProfilePages(Controller):
    path = "/me"
    include_in_schema = False
    opt = {"access": "authenticated"}

    @get("/", name="me", cache=False)
    async def me(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings) -> Template:
        principal: Principal = request.user
        user = await db_session.get(User, principal.user_id)
        enterprise = await db_session.get(Enterprise, principal.enterprise_id) if principal.enterprise_id else None
        grants = await _units_of(db_session, principal.user_id)
        roles = sorted({role for role, _unit in grants} | ({"enterprise_member"} if enterprise else set()))
        return render(
            request, i18n, "accounts/me.html",
            account=user, enterprise=enterprise, roles=roles,
            units=[unit for role, unit in grants if role == "unit_manager" and unit is not None],
            registered=request.query_params.get("registered") == "1",
            words=AccountWords(i18n), tz=settings.timezone,
        )

    async def _tokens_page(self, request: Request, db_session: Any, i18n: I18n, settings: Settings, *,
                           form: Form | None = None, new_token: str = "", new_row: ApiToken | None = None) -> Template:
        tokens = await services.list_api_tokens(db_session, request.user.user_id)
        revoked = request.query_params.get("revoked", "")
        return render(
            request, i18n, "accounts/tokens.html",
            tokens=[(t, token_state(t, utcnow())) for t in tokens],
            form=form or Form({"name": "", "days": "90"}),
            new_token=new_token, new_row=new_row, revoked=revoked if revoked.isdigit() else "",
            words=AccountWords(i18n), tz=settings.timezone,
        )

    @get("/tokens", name="tokens", cache=False)
    async def tokens(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings) -> Template:
        return await self._tokens_page(request, db_session, i18n, settings)

    @post("/tokens", name="tokens-create")
    async def create_token(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings) -> Template:
        _ = i18n.gettext
        data = await read_form(request)
        form = Form({"name": text(data, "name", 200), "days": text(data, "days", 10)})
        days: int | None = None
        if not form.values["name"] or len(form.values["name"]) > 100:
            form.errors["name"] = _("Give the token a name of 1 to 100 characters, e.g. the program that will use it.")
        if form.values["days"]:
            try:
                days = int(form.values["days"])
                if not 1 <= days <= 3660:
                    raise ValueError
            except ValueError:
                form.errors["days"] = _("A token lives between 1 and 3660 days; leave the field empty for no expiry.")
        if form.errors:
            return with_status(await self._tokens_page(request, db_session, i18n, settings, form=form), 400)
        row, token = await services.create_api_token(db_session, request.user.user_id, form.values["name"], days)
        await db_session.commit()
        page = await self._tokens_page(request, db_session, i18n, settings, new_token=token, new_row=row)
        page.headers["Cache-Control"] = "no-store"
        return with_status(page, 201)

    @post("/tokens/{token_id:int}/revoke", name="tokens-revoke")
    async def revoke_token(self, request: Request, db_session: DbSession, token_id: RecordId) -> Redirect:
        await services.revoke_api_token(db_session, request.user.user_id, token_id)
        await db_session.commit()
        return Redirect(f"/me/tokens?revoked={token_id}", status_code=303)


# --- admin: enterprises and roles ---------------------------------------------------------------


ENTERPRISE_FILTERS = ("all", "unverified", "verified")


def enterprise_form(enterprise: Enterprise, today: date) -> Form:
    return Form({
        "verified": enterprise.verified_at is not None,
        "registered_in_district": enterprise.registered_in_district,
        "tech_sme": enterprise.tech_sme,
        "hnte": enterprise.hnte,
        "tier": enterprise.tier,
        "controller": enterprise.controller,
        "effective_from": today.isoformat(),
        "reason": "",
    })


class AdminPages(Controller):
    path = "/admin"
    include_in_schema = False
    opt = {"access": "admin"}

    @get("/enterprises", name="admin-enterprises", cache=False)
    async def enterprises(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        show = request.query_params.get("status") or "all"
        q = (request.query_params.get("q") or "").strip()[:100]
        error = ""
        if show not in ENTERPRISE_FILTERS:
            error, show = i18n.gettext("Choose a status from the list."), "all"
        members = (
            select(User.enterprise_id, func.count().label("members")).group_by(User.enterprise_id).subquery()
        )
        statement = (
            select(Enterprise, func.coalesce(members.c.members, 0))
            .outerjoin(members, members.c.enterprise_id == Enterprise.id)
        )
        if show == "unverified":
            statement = statement.where(Enterprise.verified_at.is_(None))
        elif show == "verified":
            statement = statement.where(Enterprise.verified_at.is_not(None))
        if q:
            like = f"%{q.replace('%', '').replace('_', '')}%"
            statement = statement.where(or_(Enterprise.name.ilike(like), Enterprise.name_en.ilike(like), Enterprise.uscc.ilike(like)))
        page = paging.paginate(
            await paging.count_rows(db_session, statement), paging.page_number(request.query_params), size=LIST_PAGE_SIZE,
            path="/admin/enterprises", params={"status": show if show != "all" else "", "q": q}, anchor="enterprises",
        )
        rows = (
            await db_session.execute(
                statement.order_by(Enterprise.verified_at.is_not(None), Enterprise.created_at.desc(), Enterprise.id.desc())
                .offset(page.offset).limit(page.size)
            )
        ).all()
        waiting = (await db_session.execute(select(func.count()).where(Enterprise.verified_at.is_(None)))).scalar_one()
        shown = render(request, i18n, "accounts/admin_enterprises.html", rows=rows, show=show, q=q, waiting=waiting,
                       error=error, filters=ENTERPRISE_FILTERS, words=AccountWords(i18n), page=page)
        return with_status(shown, 400) if error else shown

    async def _enterprise_page(self, request: Request, db_session: Any, i18n: I18n, settings: Settings,
                               enterprise_id: int, form: Form | None = None) -> Template:
        enterprise = await db_session.get(Enterprise, enterprise_id)
        if enterprise is None:
            raise NotFound(f"no enterprise {enterprise_id}")
        recorder = User.__table__.alias("recorder")
        history = (
            await db_session.execute(
                select(EnterpriseStatus, recorder.c.name)
                .outerjoin(recorder, recorder.c.id == EnterpriseStatus.recorded_by_id)
                .where(EnterpriseStatus.enterprise_id == enterprise_id)
                .order_by(EnterpriseStatus.effective_from.desc(), EnterpriseStatus.id.desc())
            )
        ).all()
        members = (
            await db_session.execute(select(User).where(User.enterprise_id == enterprise_id).order_by(User.email))
        ).scalars().all()
        today = utcnow().date()
        return render(
            request, i18n, "accounts/admin_enterprise.html",
            enterprise=enterprise, history=history, members=members, tiers=TIERS,
            form=form or enterprise_form(enterprise, today), saved=request.query_params.get("saved") == "1",
            words=AccountWords(i18n), tz=settings.timezone,
        )

    @get("/enterprises/{enterprise_id:int}", name="admin-enterprise", cache=False)
    async def enterprise(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings,
                         enterprise_id: RecordId) -> Template:
        return await self._enterprise_page(request, db_session, i18n, settings, enterprise_id)

    @post("/enterprises/{enterprise_id:int}", name="admin-enterprise-update")
    async def update_enterprise(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings,
                                enterprise_id: RecordId) -> Template | Redirect:
        _ = i18n.gettext
        data = await read_form(request)
        form = Form({
            "verified": checked(data, "verified"),
            "registered_in_district": checked(data, "registered_in_district"),
            "tech_sme": checked(data, "tech_sme"),
            "hnte": checked(data, "hnte"),
            "tier": text(data, "tier", 40),
            "controller": text(data, "controller", 400),
            "effective_from": text(data, "effective_from", 20),
            "reason": text(data, "reason", 1000),
        })
        if form.values["tier"] not in TIERS:
            form.errors["tier"] = _("Choose a tier from the list.")
        if len(form.values["controller"]) > 200:
            form.errors["controller"] = _("The actual controller can be at most 200 characters long.")
        effective: date | None = None
        try:
            effective = parse_date(form.values["effective_from"])
        except ValueError:
            form.errors["effective_from"] = _("Enter the date from which the status applies, e.g. 2026-01-01.")
        if not form.values["reason"]:
            form.errors["reason"] = _("Say why the status changes, e.g. checked against the business licence.")
        elif len(form.values["reason"]) > 500:
            form.errors["reason"] = _("The reason can be at most 500 characters long.")
        if form.errors:
            page = await self._enterprise_page(request, db_session, i18n, settings, enterprise_id, form)
            return with_status(page, 400)
        try:
            await services.update_enterprise_status(
                db_session, enterprise_id,
                services.EnterpriseUpdate(
                    verified=form.values["verified"], registered_in_district=form.values["registered_in_district"],
                    tech_sme=form.values["tech_sme"], hnte=form.values["hnte"], tier=form.values["tier"],
                    controller=form.values["controller"], effective_from=effective, reason=form.values["reason"],
                ),
                actor_id=request.user.user_id,
            )
        except InvalidInput as exc:
            await db_session.rollback()
            name, message = split_field(exc.message)
            form.errors[name or "form"] = AccountWords(i18n).service_message(name, message)
            page = await self._enterprise_page(request, db_session, i18n, settings, enterprise_id, form)
            return with_status(page, 400)
        await db_session.commit()
        return Redirect(f"/admin/enterprises/{enterprise_id}?saved=1", status_code=303)

    async def _users_page(self, request: Request, db_session: Any, i18n: I18n, *, form: Form | None = None,
                          error: str = "") -> Template:
        q = (request.query_params.get("q") or "").strip()[:100]
        statement = select(User, Enterprise.name).outerjoin(Enterprise, User.enterprise_id == Enterprise.id)
        if q:
            like = f"%{q.replace('%', '').replace('_', '')}%"
            statement = statement.where(or_(User.email.ilike(like), User.name.ilike(like), Enterprise.name.ilike(like)))
        # A form shown again with its error is posted to another address: its links go to the list.
        page = paging.paginate(
            await paging.count_rows(db_session, statement), paging.page_number(request.query_params), size=LIST_PAGE_SIZE,
            path="/admin/users", params={"q": q}, anchor="users",
        )
        rows = (
            await db_session.execute(statement.order_by(User.email, User.id).offset(page.offset).limit(page.size))
        ).all()
        ids = [user.id for user, _name in rows]
        grants: dict[int, list[tuple[str, ManagingUnit | None]]] = {}
        if ids:
            for grant, unit in (
                await db_session.execute(
                    select(RoleGrant, ManagingUnit)
                    .outerjoin(ManagingUnit, RoleGrant.unit_id == ManagingUnit.id)
                    .where(RoleGrant.user_id.in_(ids))
                    .order_by(RoleGrant.role, ManagingUnit.code)
                )
            ).all():
                grants.setdefault(grant.user_id, []).append((grant.role, unit))
        units = (
            await db_session.execute(select(ManagingUnit).where(ManagingUnit.retired_at.is_(None)).order_by(ManagingUnit.code))
        ).scalars().all()
        return render(
            request, i18n, "accounts/admin_users.html",
            rows=rows, grants=grants, units=units, q=q, roles=GRANTABLE_ROLES,
            form=form or Form({"email": "", "role": "", "unit": ""}), error=error,
            done=request.query_params.get("done", ""), words=AccountWords(i18n), page=page,
        )

    @get("/users", name="admin-users", cache=False)
    async def users(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        return await self._users_page(request, db_session, i18n)

    @post("/users/grant", name="admin-users-grant")
    async def grant(self, request: Request, db_session: DbSession, i18n: Lang) -> Template | Redirect:
        _ = i18n.gettext
        data = await read_form(request)
        form = Form({"email": text(data, "email", 254), "role": text(data, "role", 40), "unit": text(data, "unit", 40)})
        if not form.values["email"]:
            form.errors["email"] = _("Enter the e-mail address of the account.")
        if form.values["role"] not in GRANTABLE_ROLES:
            form.errors["role"] = _("Choose a role from the list.")
        elif form.values["role"] == "unit_manager" and not form.values["unit"]:
            form.errors["unit"] = _("A unit manager manages a unit: choose it from the list.")
        if form.errors:
            return with_status(await self._users_page(request, db_session, i18n, form=form), 400)
        user = None
        try:
            email = services.normalise_email(form.values["email"])
            user = (await db_session.execute(select(User).where(User.email == email))).scalar_one_or_none()
        except InvalidInput:
            pass
        if user is None:
            form.errors["email"] = _("There is no account with this e-mail address.")
            return with_status(await self._users_page(request, db_session, i18n, form=form), 400)
        units = (form.values["unit"],) if form.values["role"] == "unit_manager" else ()
        try:
            await services.grant_role(db_session, user.id, form.values["role"], unit_codes=units, actor_id=request.user.user_id)
        except NotFound:
            await db_session.rollback()
            form.errors["unit"] = _("Choose a managing unit from the list.")
            return with_status(await self._users_page(request, db_session, i18n, form=form), 400)
        await db_session.commit()
        return Redirect("/admin/users?" + urlencode({"done": "granted", "q": user.email}), status_code=303)

    @post("/users/{user_id:int}/revoke", name="admin-users-revoke")
    async def revoke(self, request: Request, db_session: DbSession, i18n: Lang, user_id: RecordId) -> Template | Redirect:
        _ = i18n.gettext
        data = await read_form(request)
        role, unit_code = text(data, "role", 40), text(data, "unit", 40)
        if role not in GRANTABLE_ROLES:
            return with_status(await self._users_page(request, db_session, i18n, error=_("Choose a role to revoke.")), 400)
        if role == "admin" and user_id == request.user.user_id:
            return with_status(
                await self._users_page(
                    request, db_session, i18n,
                    error=_("You cannot revoke your own administrator role; ask another administrator."),
                ),
                409,
            )
        unit_id = None
        if role == "unit_manager":
            unit_id = (await db_session.execute(select(ManagingUnit.id).where(ManagingUnit.code == unit_code))).scalar_one_or_none()
            if unit_id is None:
                return with_status(await self._users_page(request, db_session, i18n, error=_("Choose a managing unit from the list.")), 400)
        try:
            await services.revoke_role(db_session, user_id, role, unit_id, request.user.user_id)
        except NotFound:
            await db_session.rollback()
            return with_status(await self._users_page(request, db_session, i18n, error=_("That role is not held.")), 404)
        await db_session.commit()
        return Redirect("/admin/users?done=revoked", status_code=303)


# --- managers: qualifications --------------------------------------------------------------------


class QualificationPages(Controller):
    path = "/manage/qualifications"
    include_in_schema = False
    opt = {"access": "manager"}

    async def _page(self, request: Request, db_session: Any, i18n: I18n, settings: Settings, *,
                    form: Form | None = None) -> Template:
        principal: Principal = request.user
        granter = User.__table__.alias("granter")
        statement = (
            select(Qualification, User, Resource, granter.c.name)
            .join(User, Qualification.user_id == User.id)
            .join(Resource, Qualification.resource_id == Resource.id)
            .outerjoin(granter, granter.c.id == Qualification.granted_by_id)
        )
        resources_q = select(Resource, ManagingUnit).join(ManagingUnit, Resource.unit_id == ManagingUnit.id).where(
            Resource.retired_at.is_(None)
        )
        if not principal.is_admin:
            statement = statement.where(Resource.unit_id.in_(principal.managed_unit_ids))
            resources_q = resources_q.where(Resource.unit_id.in_(principal.managed_unit_ids))
        page = paging.paginate(
            await paging.count_rows(db_session, statement), paging.page_number(request.query_params), size=LIST_PAGE_SIZE,
            path="/manage/qualifications", anchor="qualifications",
        )
        rows = (
            await db_session.execute(
                statement.order_by(Qualification.revoked_at.is_not(None), Qualification.valid_until.desc(), Qualification.id.desc())
                .offset(page.offset).limit(page.size)
            )
        ).all()
        resources = (await db_session.execute(resources_q.order_by(ManagingUnit.code, Resource.code))).all()
        groups: dict[str, tuple[ManagingUnit, list[Resource]]] = {}
        for resource, unit in resources:
            groups.setdefault(unit.code, (unit, []))[1].append(resource)
        today = utcnow().date()
        default = Form({"email": "", "resource": "", "valid_until": (today + timedelta(days=365)).isoformat(), "note": ""})
        done = request.query_params.get("done", "")
        return render(
            request, i18n, "accounts/qualifications.html",
            rows=rows, groups=list(groups.values()), form=form or default, today=today,
            done=done if done in ("granted", "revoked") else "", words=AccountWords(i18n), tz=settings.timezone, page=page,
        )

    @get("/", name="qualifications", cache=False)
    async def qualifications(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings) -> Template:
        return await self._page(request, db_session, i18n, settings)

    @post("/", name="qualifications-grant")
    async def grant(self, request: Request, db_session: DbSession, i18n: Lang, settings: AppSettings) -> Template | Redirect:
        _ = i18n.gettext
        data = await read_form(request)
        form = Form({
            "email": text(data, "email", 254), "resource": text(data, "resource", 40),
            "valid_until": text(data, "valid_until", 20), "note": text(data, "note", 600),
        })
        if not form.values["email"]:
            form.errors["email"] = _("Enter the e-mail address of the person to qualify.")
        if not form.values["resource"]:
            form.errors["resource"] = _("Choose an instrument or workshop from the list.")
        valid_until = None
        try:
            valid_until = parse_date(form.values["valid_until"])
        except ValueError:
            form.errors["valid_until"] = _("Enter the last day of validity, e.g. 2027-06-30.")
        if len(form.values["note"]) > 300:
            form.errors["note"] = _("The note can be at most 300 characters long.")
        if form.errors:
            return with_status(await self._page(request, db_session, i18n, settings, form=form), 400)
        assert valid_until is not None
        try:
            await services.grant_qualification(
                db_session, request.user, user_email=form.values["email"], resource_code=form.values["resource"],
                valid_until=valid_until, note=form.values["note"],
            )
        except (InvalidInput, NotFound) as exc:
            await db_session.rollback()
            name, message = split_field(exc.message)
            if name == "user" or name == "email" or (not name and "e-mail" in message):
                form.errors["email"] = _("There is no account with this e-mail address.")
            elif name == "valid_until":
                form.errors["valid_until"] = _("The date has passed; choose a date from today on.")
            else:
                form.errors["resource"] = _("Choose an instrument or workshop of a unit you manage.")
            return with_status(await self._page(request, db_session, i18n, settings, form=form), domain_status(exc))
        await db_session.commit()
        return Redirect("/manage/qualifications?done=granted", status_code=303)

    @post("/{qualification_id:int}/revoke", name="qualifications-revoke")
    async def revoke(self, request: Request, db_session: DbSession, qualification_id: RecordId) -> Redirect:
        await services.revoke_qualification(db_session, request.user, qualification_id)
        await db_session.commit()
        return Redirect("/manage/qualifications?done=revoked", status_code=303)


__all__ = ["AdminPages", "ProfilePages", "QualificationPages", "SignInPages", "SignOutPage"]
