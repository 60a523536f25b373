"""The manager's closures page: upcoming closures of a unit's resources, importing an .ics
file for one resource or the whole unit, and deleting imported or manager closures.

``GET /manage/closures?unit=CODE``, ``POST /manage/closures/import`` (multipart: ``unit``,
``target`` = a resource code or ``"unit"``, ``file``), ``POST /manage/closures/{id}/delete``.
A bad file re-renders the page (400) with its problems and imports nothing; a good one
redirects (303) back with what changed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template

from facility_share.accounts.pages import read_form, text, with_status
from facility_share.accounts.principal import Principal
from facility_share.bookings.pages import BookingWords
from facility_share.closures import services
from facility_share.closures.ical_import import MAX_BYTES, CalendarInvalid
from facility_share.errors import FacilityShareError, NotFound
from facility_share.usage.pages import choose_unit, managed_units, unit_resources
from facility_share.web.deps import DbSession, Lang, RecordId
from facility_share.web.i18n import I18n
from facility_share.web.render import render


class ClosureWords(BookingWords):
    """Translated labels of the closures page."""

    def source(self, source: str) -> str:
        return {
            "catalog": self._("Catalogue"),
            "ics": self._("Calendar file"),
            "manager": self._("Managing unit"),
        }.get(source, source)


def _allowed_ids(principal: Principal) -> set[int] | None:
    return None if principal.is_admin else set(principal.managed_unit_ids or ())


class ClosurePages(Controller):
    path = "/manage/closures"
    include_in_schema = False
    opt = {"access": "manager"}

    async def _page(self, request: Request, session: Any, i18n: I18n, *, unit_code: str, status: int = 200,
                    error: str = "", problems: list[str] | None = None, target: str = "") -> Template:
        principal: Principal = request.user
        units = await managed_units(session, principal)
        unit = choose_unit(units, unit_code)
        resources = await unit_resources(session, unit)
        rows = await services.upcoming(session, unit.id)
        params = request.query_params
        done = None
        if params.get("imported") is not None:
            try:
                added, updated, removed, unchanged = (int(x) for x in (params.get("imported") or "").split(","))
                done = {"added": added, "updated": updated, "removed": removed, "unchanged": unchanged}
            except ValueError:
                done = None
        page = render(
            request, i18n, "closures/manage_closures.html",
            units=units, unit=unit, resources=resources, rows=rows, words=ClosureWords(i18n), error=error,
            problems=problems or [], target=target, done=done, deleted=params.get("deleted") == "1",
            max_mb=MAX_BYTES // 1_000_000,
        )
        return with_status(page, status)

    @get("/", name="manage-closures", cache=False)
    async def page(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        return await self._page(request, db_session, i18n, unit_code=(request.query_params.get("unit") or "")[:40])

    @post("/import", name="manage-closures-import")
    async def import_file(self, request: Request, db_session: DbSession, i18n: Lang) -> Template | Redirect:
        _ = i18n.gettext
        principal: Principal = request.user
        data = await read_form(request)
        unit_code = text(data, "unit", 40)
        target = text(data, "target", 40)
        upload = data.get("file")
        units = await managed_units(db_session, principal)
        unit = choose_unit(units, unit_code)
        # Plain values: a rollback below expires the loaded rows.
        chosen_code, chosen_id = unit.code, unit.id

        def again(message: str, status: int = 400, problems: list[str] | None = None) -> Any:
            return self._page(request, db_session, i18n, unit_code=chosen_code, status=status, error=message,
                              problems=problems, target=target)

        if not target:
            return await again(_("Choose what to close: one instrument or workshop, or the whole unit."))
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await again(_("Choose the .ics calendar file to import."))
        raw = await upload.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            return await again(_("The file is larger than %(mb)s MB; split the calendar into smaller files.", mb=MAX_BYTES // 1_000_000))
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return await again(_("The file is not UTF-8 text; export the calendar again as an .ics file."))
        try:
            result = await services.import_ics(
                db_session, content, filename=upload.filename,
                resource_code=None if target == "unit" else target, unit_code=chosen_code if target == "unit" else None,
                actor_id=principal.user_id, allowed_unit_ids={chosen_id},
            )
        except CalendarInvalid as exc:
            await db_session.rollback()
            return await again(_("The calendar file has problems; nothing was imported. Correct the file and upload it again."),
                               problems=[str(p) for p in exc.problems])
        except NotFound:
            await db_session.rollback()
            return await again(_("Choose an instrument or workshop of a unit you manage."), status=404)
        except FacilityShareError as exc:
            await db_session.rollback()
            return await again(i18n.gettext(exc.message))
        await db_session.commit()
        counts = ",".join(str(n) for n in (result.added, result.updated, result.removed, result.unchanged))
        return Redirect(f"/manage/closures?{urlencode({'unit': chosen_code, 'imported': counts})}", status_code=303)

    @post("/{closure_id:int}/delete", name="manage-closure-delete")
    async def delete(self, request: Request, db_session: DbSession, i18n: Lang, closure_id: RecordId) -> Template | Redirect:
        principal: Principal = request.user
        data = await read_form(request)
        unit_code = text(data, "unit", 40)
        try:
            _closure, resource = await services.delete_closure(
                db_session, closure_id, actor_id=principal.user_id, allowed_unit_ids=_allowed_ids(principal)
            )
        except NotFound:
            await db_session.rollback()
            raise
        except FacilityShareError:
            await db_session.rollback()
            return await self._page(request, db_session, i18n, unit_code=unit_code, status=409,
                                    error=i18n.gettext("Closures from the catalogue are changed in the catalogue files."))
        unit_id = resource.unit_id
        await db_session.commit()
        units = await managed_units(db_session, principal)
        code = next((u.code for u in units if u.id == unit_id), unit_code)
        return Redirect(f"/manage/closures?{urlencode({'unit': code, 'deleted': '1'})}", status_code=303)


__all__ = ["ClosurePages", "ClosureWords"]
