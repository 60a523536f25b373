"""Booking API under /api/v1: availability (public), free-resource search (public), bookings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from facility_share.accounts.principal import Principal
from facility_share.bookings import schemas, services
from facility_share.catalog import queries
from facility_share.db.models import BOOKING_STATUSES
from facility_share.settings import Settings
from facility_share.web.deps import DbSession, RecordId
from facility_share.web.openapi import error_responses

Status = Literal[tuple(BOOKING_STATUSES)]  # type: ignore[valid-type]
ACTIONS = {"approve": "approve", "reject": "reject", "cancel": "cancel", "complete": "complete", "no-show": "no_show"}


class AvailabilityApi(Controller):
    path = "/api/v1"
    tags = ["availability"]
    opt = {"access": "public"}

    @get("/resources/{code:str}/availability", summary="Free and busy time of one resource, and its bookable units",
         responses=error_responses(400, 404))
    async def resource_availability(
        self, db_session: DbSession, code: FromPath[str],
        start: Annotated[datetime, QueryParameter(description="Window start, ISO 8601 with offset")],
        end: Annotated[datetime, QueryParameter(description="Window end (at most 62 days after start)")],
    ) -> schemas.AvailabilityOut:
        return schemas.availability_out(await services.availability(db_session, code, start, end))

    @get("/availability/search", summary="Which resources are free for a whole window", responses=error_responses(400))
    async def search_free(
        self, db_session: DbSession,
        start: FromQuery[datetime],
        end: FromQuery[datetime],
        q: Annotated[str, QueryParameter(max_length=200, description="Words in names, model, maker or capabilities")] = "",
        category: Annotated[str | None, QueryParameter(pattern=r"^[0-9A-Z]{2,12}$")] = None,
        unit: Annotated[str | None, QueryParameter(pattern=r"^[A-Z0-9][A-Z0-9-]{1,38}[A-Z0-9]$")] = None,
        quantity: Annotated[int, QueryParameter(ge=1, le=1000)] = 1,
    ) -> list[schemas.FreeResource]:
        services.check_window(start, end)
        page = await queries.search_resources(
            db_session, queries.ResourceFilter(q=q, category=category, unit=unit, include_lines=True, per_page=100, open_for_sharing=True)
        )
        codes = [item.code for item in page.items]
        candidates = [await services.load_resource(db_session, code) for code in codes]
        free = await services.free_resources(db_session, candidates, start, end, quantity)
        return [schemas.FreeResource(r.code, r.name_zh, r.name_en, r.kind, r.unit.code, r.capacity) for r in free]


def placed_out(placed: services.PlacedBooking, user_name: str) -> schemas.BookingOut:
    """The confirmation of a booking just placed, from what the transaction already had."""
    v = placed.values
    return schemas.BookingOut(
        id=placed.id,
        resource_code=placed.resource.code,
        resource_name_zh=placed.resource.name_zh,
        resource_name_en=placed.resource.name_en,
        unit_code=placed.unit_code,
        enterprise_uscc=placed.enterprise_uscc,
        enterprise_name=placed.enterprise_name,
        user_name=user_name,
        start=v["starts_at"],
        end=v["ends_at"],
        quantity=v["quantity"],
        samples=v["samples"],
        mode=v["mode"],
        purpose=v["purpose"],
        status=v["status"],
        decision_deadline=v["decision_deadline"],
        decision_reason=v["decision_reason"],
        customer_class=v["customer_class"],
        estimate_fen=v["estimate_fen"],
        version=v["version"],
        created_at=v["created_at"],
        updated_at=v["updated_at"],
    )


class BookingApi(Controller):
    path = "/api/v1/bookings"
    tags = ["bookings"]

    @post("/", summary="Request a booking (enterprise members of verified enterprises)", status_code=201,
          opt={"access": "enterprise"}, responses=error_responses(400, 401, 403, 404, 409))
    async def create(self, request: Request, db_session: DbSession, data: JSONBody[schemas.BookingIn]) -> schemas.BookingOut:
        # Settings come from the application state, not as a second injected dependency:
        # Litestar resolves two dependencies of one handler concurrently, in a task group with
        # a task each, which costs more than the rest of the handler's framework overhead.
        settings: Settings = request.app.state.settings
        principal: Principal = request.user
        placed = await services.place_booking(
            db_session, principal,
            services.BookingInput(data.resource_code, data.start, data.end, data.quantity, data.mode, data.purpose, data.samples),
            max_open_requests=settings.max_open_requests,
        )
        await db_session.commit()
        return placed_out(placed, principal.name)

    @get("/", summary="Bookings the caller may see (own enterprise, managed units, or all for finance)",
         opt={"access": "authenticated"}, responses=error_responses(400, 401))
    async def list(
        self, request: Request, db_session: DbSession,
        # "scope" is a name Litestar reserves for the ASGI scope; the query parameter keeps it.
        view: Annotated[Literal["all", "mine", "managed"], QueryParameter(name="scope")] = "all",
        status: FromQuery[Status | None] = None,  # type: ignore[valid-type]
        resource: Annotated[str | None, QueryParameter(max_length=40)] = None,
        unit: Annotated[str | None, QueryParameter(max_length=40)] = None,
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
    ) -> schemas.BookingPage:
        rows, count = await services.list_bookings(
            db_session, request.user, services.BookingFilter(status, resource, unit, start, end, limit, offset), scope=view
        )
        return schemas.BookingPage(items=[schemas.booking_out(b) for b in rows], total=count)

    @get("/{booking_id:int}", summary="One booking", opt={"access": "authenticated"}, responses=error_responses(401, 404))
    async def one(self, request: Request, db_session: DbSession, booking_id: RecordId) -> schemas.BookingOut:
        return schemas.booking_out(await services.get_booking(db_session, request.user, booking_id))

    @post("/{booking_id:int}/{action:str}", summary="approve, reject, cancel, complete or no-show", status_code=200,
          opt={"access": "authenticated"}, responses=error_responses(400, 401, 403, 404, 409))
    async def act(self, request: Request, db_session: DbSession, booking_id: RecordId,
                  action: FromPath[Literal["approve", "reject", "cancel", "complete", "no-show"]],
                  data: JSONBody[schemas.DecisionIn | None] = None) -> schemas.BookingOut:
        principal: Principal = request.user
        await services.change_status(db_session, principal, booking_id, ACTIONS[action], reason=(data.reason if data else ""))
        await db_session.commit()
        return schemas.booking_out(await services.get_booking(db_session, principal, booking_id))

