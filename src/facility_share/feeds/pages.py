"""``/me/feeds``: the signed-in user's calendar subscriptions.

Each feed the user may manage (their own bookings; their enterprise's, for members; each
managed unit's, for managers) gets a secret address. The plain address is shown once, right
after it is made: on the first visit, or after "new address". Only its hash is stored, so a
lost address cannot be shown again; the user makes a new one, which stops the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from facility_share.accounts.pages import with_status
from facility_share.accounts.principal import Principal
from facility_share.catalog.pages import Words
from facility_share.errors import NotFound
from facility_share.feeds import services
from facility_share.web.deps import DbSession, Lang
from facility_share.web.i18n import I18n
from facility_share.web.render import render

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "testserver", "testserver.local")


@dataclass
class FeedRow:
    key: str
    kind: str
    title: str
    about: str
    active_since: datetime | None = None
    https_url: str = ""
    webcal_url: str = ""


def feed_urls(request: Request, token: str, i18n: I18n) -> tuple[str, str]:
    """The feed's address as https:// (or http:// on a local development host) and webcal://."""
    host = request.url.netloc
    scheme = request.url.scheme
    if scheme != "https" and host.split(":")[0] not in LOCAL_HOSTS:
        scheme = "https"  # deployed behind TLS: never hand out a plain-http secret address
    path = f"/feeds/{token}/calendar.ics" + ("" if i18n.is_zh else "?lang=en")
    return f"{scheme}://{host}{path}", f"webcal://{host}{path}"


def describe(feed: services.OwnedFeed, i18n: I18n) -> tuple[str, str]:
    _ = i18n.gettext
    if feed.kind == "user":
        return _("My bookings"), _("The bookings you made yourself.")
    if feed.kind == "enterprise":
        return _("My enterprise's bookings"), _("Every booking of your enterprise, made by any of its members.")
    unit_name = i18n.pick(feed.unit, "name") if feed.unit else ""
    return (
        _("Unit: %(name)s", name=unit_name),
        _("Every booking of the unit's instruments and workshops, with the enterprise, contact person and operating mode."),
    )


async def feeds_page(request: Request, session: DbSession, i18n: I18n, fresh: dict[str, str], *,
                     revoked: str = "", status: int = 200) -> Template:
    principal: Principal = request.user
    rows = []
    for feed in await services.feeds_of(session, principal):
        title, about = describe(feed, i18n)
        row = FeedRow(feed.key, feed.kind, title, about)
        live = await services.active_token(session, feed.kind, feed.owner_id)
        if live is not None:
            row.active_since = live.created_at
        if feed.key in fresh:
            row.https_url, row.webcal_url = feed_urls(request, fresh[feed.key], i18n)
        rows.append(row)
    page = render(request, i18n, "feeds/my_feeds.html", feeds=rows, revoked=revoked,
                  fresh=bool(fresh), words=Words(i18n))
    return with_status(page, status)


class FeedPages(Controller):
    path = "/me/feeds"
    include_in_schema = False
    opt = {"access": "authenticated"}

    @get("/", name="my-feeds", cache=False)
    async def my_feeds(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        principal: Principal = request.user
        missing = [
            feed for feed in await services.feeds_of(db_session, principal)
            if not await services.ever_had_token(db_session, feed.kind, feed.owner_id)
        ]
        fresh: dict[str, str] = {}
        if missing:
            # A first visit makes the addresses; this read request writes in its own short
            # transaction (its own session is read-only).
            async with request.app.state.db.session(write=True) as writer:
                for feed in missing:
                    if not await services.ever_had_token(writer, feed.kind, feed.owner_id):
                        fresh[feed.key] = await services.create_token(writer, feed.kind, feed.owner_id,
                                                                      created_by=principal.user_id)
                await writer.commit()
        revoked = request.query_params.get("revoked", "")
        return await feeds_page(request, db_session, i18n, fresh, revoked=revoked[:40])

    async def _new_address(self, request: Request, db_session: DbSession, i18n: I18n, key: str) -> Template:
        feed = await services.owned_feed(db_session, request.user, key)
        if feed is None:
            raise NotFound("no such feed")
        token = await services.rotate_token(db_session, feed.kind, feed.owner_id, created_by=request.user.user_id)
        await db_session.commit()
        # Shown now or never: only the hash is kept.
        return await feeds_page(request, db_session, i18n, {feed.key: token})

    @post("/{key:str}/create", name="my-feeds-create")
    async def create(self, request: Request, db_session: DbSession, i18n: Lang, key: FromPath[str]) -> Template:
        return await self._new_address(request, db_session, i18n, key)

    @post("/{key:str}/rotate", name="my-feeds-rotate")
    async def rotate(self, request: Request, db_session: DbSession, i18n: Lang, key: FromPath[str]) -> Template:
        return await self._new_address(request, db_session, i18n, key)

    @post("/{key:str}/revoke", name="my-feeds-revoke")
    async def revoke(self, request: Request, db_session: DbSession, key: FromPath[str]) -> Redirect:
        feed = await services.owned_feed(db_session, request.user, key)
        if feed is None:
            raise NotFound("no such feed")
        await services.revoke_tokens(db_session, feed.kind, feed.owner_id)
        await db_session.commit()
        return Redirect(f"/me/feeds?revoked={feed.key}", status_code=303)
