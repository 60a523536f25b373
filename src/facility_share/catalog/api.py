"""The public catalogue API under /api/v1 (no login): resources, units, categories, export."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, Response, get
from litestar.params import FromPath, FromQuery, QueryParameter

from facility_share.catalog import export, queries, schemas
from facility_share.web.deps import DbSession
from facility_share.web.openapi import error_responses


class CatalogApi(Controller):
    path = "/api/v1"
    tags = ["catalogue"]
    opt = {"access": "public"}

    @get("/resources", summary="Search and filter the open catalogue", responses=error_responses(400))
    async def list_resources(
        self,
        db_session: DbSession,
        q: Annotated[str, QueryParameter(description="Words to find in names (zh/en), model, maker, capabilities", max_length=200)] = "",
        kind: Annotated[Literal["instrument", "workshop", "line"] | None, QueryParameter()] = None,
        category: Annotated[str | None, QueryParameter(description="Category code; includes its sub-categories", pattern=r"^[0-9A-Z]{2,12}$")] = None,
        unit: Annotated[str | None, QueryParameter(description="Managing unit code", pattern=r"^[A-Z0-9][A-Z0-9-]{1,38}[A-Z0-9]$")] = None,
        location: Annotated[str, QueryParameter(description="Substring of the location", max_length=100)] = "",
        # schema_extra repeats the minimum because the generated schema drops a bound of 0.
        max_price_fen: Annotated[int | None, QueryParameter(ge=0, le=10**12, description="Starting price ceiling, fen", schema_extra={"minimum": 0})] = None,
        open_for_sharing: FromQuery[bool | None] = None,
        sort: Annotated[Literal[tuple(queries.SORTS)], QueryParameter()] = "code",  # type: ignore[valid-type]
        page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
        per_page: Annotated[int, QueryParameter(ge=1, le=queries.MAX_PER_PAGE)] = 20,
    ) -> schemas.ResourcePage:
        return await queries.search_resources(
            db_session,
            queries.ResourceFilter(
                q=q,
                kind=kind,
                category=category,
                unit=unit,
                location=location,
                max_price_fen=max_price_fen,
                open_for_sharing=open_for_sharing,
                sort=sort,
                page=page,
                per_page=per_page,
            ),
        )

    @get("/resources/{code:str}", summary="One resource with its fee table and booking rules", responses=error_responses(404))
    async def get_resource(self, db_session: DbSession, code: FromPath[str]) -> schemas.ResourceDetail:
        return await queries.get_resource(db_session, code)

    @get("/units", summary="Managing units", responses=error_responses())
    async def list_units(self, db_session: DbSession) -> list[schemas.UnitSummary]:
        return await queries.list_units(db_session)

    @get("/units/{code:str}", summary="One managing unit and its resources", responses=error_responses(404))
    async def get_unit(self, db_session: DbSession, code: FromPath[str]) -> schemas.UnitDetail:
        return await queries.get_unit(db_session, code)

    @get("/categories", summary="The classification tree with resource counts", responses=error_responses())
    async def list_categories(self, db_session: DbSession) -> list[schemas.CategoryNode]:
        return await queries.category_tree(db_session)

    @get(
        "/catalog/export.csv",
        summary="The catalogue as CSV in the national large-instrument platform's layout",
        description="UTF-8 with a byte-order mark so that Excel opens it correctly.",
        media_type="text/csv",
        responses=error_responses(),
    )
    async def export_csv(self, db_session: DbSession) -> Response[str]:
        rows = export.national_rows(await queries.export_rows(db_session))
        return Response(
            export.to_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="catalogue.csv"'},
        )

    @get(
        "/catalog/export.json",
        summary="The catalogue as JSON in the national large-instrument platform's layout",
        responses=error_responses(),
    )
    async def export_json(self, db_session: DbSession) -> list[dict[str, str]]:
        return export.national_rows(await queries.export_rows(db_session))
