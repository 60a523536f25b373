"""Calendar feeds: the pure iCalendar builder, and every feed kind over HTTP on SQLite and
PostgreSQL (validity with two parsers, SEQUENCE and cancellation, privacy, tokens, 304s)."""

from __future__ import annotations

import importlib.util
import random
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import icalendar
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from facility_share.accounts import services as accounts
from facility_share.accounts.auth import SESSION_COOKIE
from facility_share.bookings import services as bookings
from facility_share.db.models import Booking, Enterprise, ManagingUnit, Resource
from facility_share.feeds import services as feeds
from facility_share.feeds.calendar import MAX_OCTETS, FeedEvent, booking_uid, build_calendar, fold_line
from facility_share.settings import load_settings
from facility_share.web.app import create_app
from tests.world import build_world, local, next_weekday

SEM = "WQ-TJMAT-SEM01"  # capacity 1, approval needed, unit WQ-TJMAT (the "manager" role's)
PURPOSE = "XPS of secret coating formula"
HAS_STRICT_ICAL = importlib.util.find_spec("ical") is not None


# --- checks every feed must pass ---------------------------------------------------------------


def check_ics(text: str) -> icalendar.Calendar:
    """Both parsers accept it, and what they let through is checked here: CRLF only, lines of
    at most 75 octets, one DTSTAMP and a unique UID per VEVENT, DTEND after DTSTART."""
    raw = text.encode("utf-8")
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    for line in raw.split(b"\r\n"):
        assert len(line) <= MAX_OCTETS, line
        line.decode("utf-8")  # no character split across physical lines
    parsed = icalendar.Calendar.from_ical(text)
    uids = []
    for event in parsed.walk("VEVENT"):
        assert event.get("DTSTAMP") is not None
        assert not isinstance(event.get("DTSTAMP"), list), "duplicate DTSTAMP"
        assert event.get("SEQUENCE") is not None
        assert event.decoded("DTEND") > event.decoded("DTSTART")
        uids.append(str(event["UID"]))
    assert len(uids) == len(set(uids))
    assert text.count("BEGIN:VEVENT") == text.count("DTSTAMP:") == len(uids)
    if HAS_STRICT_ICAL:
        from ical.calendar_stream import IcsCalendarStream

        strict = IcsCalendarStream.calendar_from_ics(text)
        assert len(strict.events) == len(uids)
    return parsed


def events_by_uid(text: str) -> dict[str, icalendar.Event]:
    return {str(e["UID"]): e for e in icalendar.Calendar.from_ical(text).walk("VEVENT")}


# --- pure ------------------------------------------------------------------------------------------


T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def sample(n: int = 5, summary: str = "扫描电子显微镜") -> list[FeedEvent]:
    statuses = ["requested", "approved", "cancelled", "completed", "rejected", "expired", "no_show"]
    return [
        FeedEvent(uid=booking_uid(i), start=T0 + timedelta(hours=i % 3), end=T0 + timedelta(hours=i % 3 + 1),
                  status=statuses[i % len(statuses)], sequence=i, created=T0 - timedelta(days=1),
                  updated=T0 - timedelta(hours=i), summary=f"{summary} {i}", location="天津市武清区 材料楼 2 层",
                  description="企业：某某科技有限公司\n目的：" + "测试，分号；逗号," * 20, url="https://example.cn/me/bookings")
        for i in range(1, n + 1)
    ]


def test_fold_never_splits_a_character() -> None:
    for line in ("SUMMARY:" + "扫描电镜" * 60, "DESCRIPTION:" + "a😀é中" * 50, "X:" + "b" * 300):
        parts = fold_line(line)
        assert all(len(p.encode()) <= MAX_OCTETS for p in parts)
        assert all(p.startswith(" ") for p in parts[1:])
        assert "".join([parts[0], *(p[1:] for p in parts[1:])]) == line
    assert fold_line("SHORT:x") == ["SHORT:x"]


def test_long_chinese_lines_fold_and_parse() -> None:
    text = build_calendar(sample(3, "超高分辨场发射扫描电子显微镜（含能谱仪）" * 8), name="测试日历" * 30, language="zh_CN")
    parsed = check_ics(text)
    summaries = sorted(str(e["SUMMARY"]) for e in parsed.walk("VEVENT"))
    assert summaries[0].startswith("超高分辨场发射扫描电子显微镜（含能谱仪）超高") and summaries[0].endswith(" 1")
    assert str(parsed["X-WR-CALNAME"]) == "测试日历" * 30


def test_output_is_stable_and_sorted() -> None:
    events = sample(12)
    first = build_calendar(events, name="x", language="en")
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    assert build_calendar(shuffled, name="x", language="en") == first
    starts = [(e.decoded("DTSTART"), str(e["UID"])) for e in icalendar.Calendar.from_ical(first).walk("VEVENT")]
    assert starts == sorted(starts)


def test_calendar_properties_status_and_sequence() -> None:
    text = build_calendar(sample(7), name="SEM01 – booked times", language="en")
    check_ics(text)
    for needle in ("X-WR-TIMEZONE:Asia/Shanghai", "REFRESH-INTERVAL;VALUE=DURATION:PT1H", "X-PUBLISHED-TTL:PT1H",
                   "X-WR-CALNAME;LANGUAGE=en:SEM01 – booked times"):
        assert needle + "\r\n" in text
    found = events_by_uid(text)
    expected = {1: "CONFIRMED", 2: "CANCELLED", 3: "CONFIRMED", 4: "CANCELLED", 5: "CANCELLED", 6: "CANCELLED", 7: "TENTATIVE"}
    for i, status in expected.items():
        event = found[booking_uid(i)]
        assert str(event["STATUS"]) == status
        assert int(event["SEQUENCE"]) == i
        assert event.decoded("DTSTAMP") == T0 - timedelta(hours=i)  # the last change


def test_empty_calendar_is_valid() -> None:
    check_ics(build_calendar([], name="empty", language="zh_CN"))


@pytest.mark.skipif(not HAS_STRICT_ICAL, reason="the strict `ical` parser is not installed in .venv (add ical>=14.3 to dev)")
def test_strict_parser_accepts_a_feed() -> None:
    from ical.calendar_stream import IcsCalendarStream

    calendar = IcsCalendarStream.calendar_from_ics(build_calendar(sample(7), name="x", language="zh_CN"))
    assert len(calendar.events) == 7


def ics_calendar(events: list[FeedEvent], *, name: str, language: str) -> str:
    """The same calendar built with the ``ics`` library, as the feeds were before they wrote
    the text themselves: the layout they must keep."""
    import ics
    from ics.grammar.parse import ContentLine

    from facility_share.feeds.calendar import PRODID, _escape_text, _language_tag, _utc, fold, ical_status, sort_key

    calendar = ics.Calendar(creator=PRODID)
    calendar.extra.append(ContentLine(name="X-WR-CALNAME", params={"LANGUAGE": [_language_tag(language)]}, value=_escape_text(name)))
    calendar.extra.append(ContentLine(name="X-WR-TIMEZONE", value="Asia/Shanghai"))
    calendar.extra.append(ContentLine(name="REFRESH-INTERVAL", params={"VALUE": ["DURATION"]}, value="PT1H"))
    calendar.extra.append(ContentLine(name="X-PUBLISHED-TTL", value="PT1H"))
    calendar.extra.append(ContentLine(name="CALSCALE", value="GREGORIAN"))
    built = []
    for item in sorted(events, key=sort_key):
        event = ics.Event(name=item.summary, begin=_utc(item.start), end=_utc(item.end), uid=item.uid,
                          created=_utc(item.updated), status=ical_status(item.status), location=item.location or None,
                          description=item.description or None, url=item.url or None)
        event.extra.append(ContentLine(name="SEQUENCE", value=str(max(0, int(item.sequence)))))
        built.append(event)
    calendar.events = built  # type: ignore[assignment]
    return fold(calendar.serialize())


def test_same_bytes_as_the_ics_library() -> None:
    odd = [
        replace(sample(1)[0], uid=booking_uid(90), location="", description="", url="",
                summary="a,b;c\\d\r\ne\rf\ng 😀" * 9),
        replace(sample(2)[1], uid=booking_uid(91), summary="", url="https://example.cn/a,b;c", sequence=-3),
    ]
    for events in ([], sample(30), odd):
        for language in ("zh_CN", "en"):
            for name in ("x", "测试日历, a;b\\c\nd" * 10):
                assert build_calendar(events, name=name, language=language) == ics_calendar(events, name=name, language=language)


# --- through the app -------------------------------------------------------------------------------


async def book(db, principal, day_offset: int = 0, hour: int = 9, purpose: str = PURPOSE) -> Booking:  # type: ignore[no-untyped-def]
    day = next_weekday(bookings.utcnow()) + timedelta(days=day_offset)
    async with db.session(write=True) as session:
        booking = await bookings.request_booking(
            session, principal, bookings.BookingInput(SEM, local(day, hour), local(day, hour + 1), purpose=purpose),
            max_open_requests=10,
        )
        await session.commit()
        return booking


async def act(db, principal, booking_id: int, action: str, reason: str = "") -> Booking:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        booking = await bookings.change_status(session, principal, booking_id, action, reason=reason)
        await session.commit()
        return booking


async def retime(db, booking_id: int, hours: int) -> None:  # type: ignore[no-untyped-def]
    """Move a booking (as a reschedule would): later times, version + 1."""
    async with db.session(write=True) as session:
        row = await session.get(Booking, booking_id)
        assert row is not None
        row.starts_at, row.ends_at = row.starts_at + timedelta(hours=hours), row.ends_at + timedelta(hours=hours)
        row.version += 1
        row.updated_at = bookings.utcnow()
        await session.commit()


@pytest.fixture
async def setup(imported, database_url: str):  # type: ignore[no-untyped-def]
    world = await build_world(imported)
    member, manager = world["member_a"], world["manager"]
    requested = await book(imported, member, 0, 9)
    approved = await book(imported, member, 0, 11)
    await act(imported, manager, approved.id, "approve")
    changed = await book(imported, member, 1, 9)
    await act(imported, manager, changed.id, "approve")
    await retime(imported, changed.id, 2)
    cancelled = await book(imported, member, 2, 9)
    await act(imported, member, cancelled.id, "cancel")
    other = await book(imported, world["member_b"], 3, 9, purpose="member b purpose")
    async with imported.session(write=True) as session:
        unit_id = (await session.execute(select(ManagingUnit.id).where(ManagingUnit.code == "WQ-TJMAT"))).scalar_one()
        tokens = {
            "user": await feeds.create_token(session, "user", member.user_id, created_by=member.user_id),
            "enterprise": await feeds.create_token(session, "enterprise", member.enterprise_id, created_by=member.user_id),
            "unit": await feeds.create_token(session, "unit", unit_id, created_by=manager.user_id),
            "other_user": await feeds.create_token(session, "user", world["member_b"].user_id, created_by=None),
        }
        cookies = {role: await accounts.start_session(session, world[role].user_id, "127.0.0.1", "pytest")
                   for role in ("member_a", "member_b", "manager")}
        await session.commit()
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)
    ids = {"requested": requested.id, "approved": approved.id, "changed": changed.id, "cancelled": cancelled.id,
           "other": other.id}
    return app, world, ids, tokens, cookies, unit_id


@pytest.fixture
async def client(setup) -> AsyncIterator[AsyncTestClient]:  # type: ignore[no-untyped-def]
    async with AsyncTestClient(setup[0]) as c:
        yield c


def url_of(kind: str, tokens: dict[str, str]) -> str:
    return f"/feeds/resources/{SEM}/calendar.ics" if kind == "public" else f"/feeds/{tokens[kind]}/calendar.ics"


async def test_every_feed_kind_is_valid_and_complete(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, _world, ids, tokens, _cookies, _unit = setup
    for kind in ("public", "user", "enterprise", "unit"):
        for lang in ("", "?lang=en"):
            response = await client.get(url_of(kind, tokens) + lang)
            assert response.status_code == 200, kind
            assert response.headers["content-type"] == "text/calendar; charset=utf-8"
            assert response.headers["etag"].startswith('"') and response.headers["last-modified"].endswith("GMT")
            text = response.content.decode("utf-8")
            check_ics(text)
            found = events_by_uid(text)
            mine = {name: booking_uid(i) for name, i in ids.items() if name != "other"}
            assert set(mine.values()) <= set(found)
            assert str(found[mine["requested"]]["STATUS"]) == "TENTATIVE"
            assert str(found[mine["approved"]]["STATUS"]) == "CONFIRMED"
            assert str(found[mine["cancelled"]]["STATUS"]) == "CANCELLED"
            assert int(found[mine["changed"]]["SEQUENCE"]) == 2  # approved, then re-timed
            # Other enterprises' bookings: only in the resource's and the unit's feeds.
            assert (booking_uid(ids["other"]) in found) == (kind in ("public", "unit"))
            if kind == "public":
                assert {str(e["SUMMARY"]) for e in found.values()} >= {"Booked" if lang else "已预约"}


async def test_changes_raise_sequence_and_cancel_keeps_uid(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, world, ids, tokens, _cookies, _unit = setup
    uid = booking_uid(ids["requested"])
    before = events_by_uid((await client.get(url_of("unit", tokens))).text)[uid]
    await act(setup[0].state.db, world["manager"], ids["requested"], "approve")
    middle = events_by_uid((await client.get(url_of("unit", tokens))).text)[uid]
    assert int(middle["SEQUENCE"]) > int(before["SEQUENCE"])
    assert str(middle["STATUS"]) == "CONFIRMED"
    await act(setup[0].state.db, world["member_a"], ids["requested"], "cancel")
    for kind in ("public", "user", "enterprise", "unit"):
        after = events_by_uid((await client.get(url_of(kind, tokens))).text)[uid]
        assert str(after["STATUS"]) == "CANCELLED" and int(after["SEQUENCE"]) > int(middle["SEQUENCE"])


async def test_only_the_latest_gone_bookings_stay(setup, client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Cancelled, rejected and expired bookings are kept to the most recently changed few;
    every active booking stays, whatever their number."""
    _app, world, ids, tokens, _cookies, _unit = setup
    monkeypatch.setattr(feeds, "GONE_SHOWN", 1)
    before = events_by_uid((await client.get(url_of("enterprise", tokens))).text)
    assert str(before[booking_uid(ids["cancelled"])]["STATUS"]) == "CANCELLED"
    await act(setup[0].state.db, world["member_a"], ids["approved"], "cancel")  # now the latest gone one
    after = events_by_uid((await client.get(url_of("enterprise", tokens))).text)
    assert booking_uid(ids["cancelled"]) not in after
    assert str(after[booking_uid(ids["approved"])]["STATUS"]) == "CANCELLED"
    for name in ("requested", "changed"):
        assert booking_uid(ids[name]) in after
    assert len(after) == len(before) - 1


async def test_public_feed_reveals_nobody(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, world, ids, tokens, _cookies, _unit = setup
    public = (await client.get(url_of("public", tokens))).text + (await client.get(url_of("public", tokens) + "?lang=en")).text
    unit = (await client.get(url_of("unit", tokens))).text
    unfolded = unit.replace("\r\n ", "")
    for secret in ("member_a Ltd", "member_b Ltd", "member_a", "member_b", PURPOSE, "member b purpose", "#"):
        assert secret not in public.replace("\r\n ", ""), secret
    for shown in ("member_a Ltd", "member_b Ltd", PURPOSE):
        assert shown in unfolded, shown
    assert "DESCRIPTION" not in public
    user_feed = (await client.get(url_of("other_user", tokens))).text
    assert booking_uid(ids["requested"]) not in user_feed and booking_uid(ids["other"]) in user_feed


async def test_wrong_rotated_and_revoked_tokens_get_404(setup, client) -> None:  # type: ignore[no-untyped-def]
    app, world, _ids, tokens, cookies, unit_id = setup
    for bad in ("x", "fsf_" + "A" * 43, tokens["user"][:-1]):
        response = await client.get(f"/feeds/{bad}/calendar.ics")
        assert response.status_code == 404 and response.content == b""
    assert (await client.get("/feeds/resources/calendar.ics")).status_code == 404  # the router's plain 404
    assert (await client.get("/feeds/resources/NO-SUCH/calendar.ics")).status_code == 404
    async with app.state.db.session(write=True) as session:
        new_user = await feeds.rotate_token(session, "user", world["member_a"].user_id, created_by=None)
        await feeds.revoke_tokens(session, "unit", unit_id)
        await session.commit()
    assert (await client.get(url_of("user", tokens))).status_code == 404  # the old, rotated token
    assert (await client.get(f"/feeds/{new_user}/calendar.ics")).status_code == 200
    revoked = await client.get(url_of("unit", tokens))
    assert revoked.status_code == 404 and revoked.content == b""
    # Another owner cannot manage the unit's or member_a's enterprise's feed.
    for key in (f"unit-{unit_id}", "enterprise-1", "x"):
        status = await post_form(client, f"/me/feeds/{key}/rotate", cookies["member_b"])
        assert status.status_code == 404


async def test_conditional_requests(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, world, ids, tokens, _cookies, _unit = setup
    for kind in ("public", "enterprise"):
        url = url_of(kind, tokens)
        first = await client.get(url)
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        same = await client.get(url, headers={"if-none-match": etag})
        assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
        assert (await client.get(url, headers={"if-none-match": f'W/{etag}, "other"'})).status_code == 304
        assert (await client.get(url, headers={"if-modified-since": modified})).status_code == 304
        later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
        assert (await client.get(url, headers={"if-modified-since": later})).status_code == 304
        assert (await client.get(url, headers={"if-none-match": '"stale"'})).status_code == 200
        head = await client.head(url)
        assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == etag
        other_lang = await client.get(url + "?lang=en", headers={"if-none-match": etag})
        assert other_lang.status_code == 200 and other_lang.headers["etag"] != etag
    url = url_of("enterprise", tokens)
    before = await client.get(url)
    await act(_app.state.db, world["manager"], ids["requested"], "approve")
    fresh = await client.get(url, headers={"if-none-match": before.headers["etag"]})
    assert fresh.status_code == 200 and fresh.headers["etag"] != before.headers["etag"]
    assert str(events_by_uid(fresh.text)[booking_uid(ids["requested"])]["STATUS"]) == "CONFIRMED"
    again = await client.get(url, headers={"if-none-match": fresh.headers["etag"]})
    assert again.status_code == 304


async def rename(db, model, where, **values) -> None:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        row = (await session.execute(select(model).where(where))).scalar_one()
        for name, value in values.items():
            setattr(row, name, value)
        await session.commit()


async def test_renames_reach_subscribers(setup, client) -> None:  # type: ignore[no-untyped-def]
    """A new resource, unit or customer name changes the ETag of every feed that shows it,
    so a client holding the old one gets the new name instead of 304."""
    app, _world, ids, tokens, _cookies, unit_id = setup
    db = app.state.db
    held = {kind: (await client.get(url_of(kind, tokens))).headers["etag"] for kind in ("public", "user", "enterprise", "unit")}

    async def refreshed(kind: str) -> str | None:
        answer = await client.get(url_of(kind, tokens), headers={"if-none-match": held[kind]})
        if answer.status_code == 304:
            return None
        held[kind] = answer.headers["etag"]
        return answer.text.replace("\r\n ", "")  # unfolded

    await rename(db, Resource, Resource.code == SEM, name_zh="改名后的电镜")
    for kind in ("public", "user", "enterprise", "unit"):
        text = await refreshed(kind)
        assert text is not None and "改名后的电镜" in text, kind
    await rename(db, ManagingUnit, ManagingUnit.id == unit_id, name_zh="改名后的中心")
    for kind in ("public", "user", "enterprise", "unit"):
        text = await refreshed(kind)
        assert text is not None and "改名后的中心" in text, kind
    # A customer's new name shows in the unit's feed; the others do not show it.
    booking = await client.get(url_of("unit", tokens))
    assert booking.status_code == 200
    async with db.session() as session:
        enterprise_id = (await session.execute(select(Booking.enterprise_id).where(Booking.id == ids["other"]))).scalar_one()
    await rename(db, Enterprise, Enterprise.id == enterprise_id, name="改名后的企业有限公司")
    text = await refreshed("unit")
    assert text is not None and "改名后的企业有限公司" in text
    assert await refreshed("public") is None
    assert await refreshed("unit") is None


async def post_form(client: AsyncTestClient, url: str, cookie: str):  # type: ignore[no-untyped-def]
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    page = await client.get("/me/feeds")
    token = page.cookies.get("fs_csrf") or client.cookies.get("fs_csrf")
    response = await client.post(url, headers={"x-csrftoken": token or ""}, follow_redirects=False)
    client.cookies.clear()
    return response


async def test_my_feeds_page(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, _world, _ids, _tokens, cookies, unit_id = setup
    client.cookies.set(SESSION_COOKIE, cookies["member_b"])
    first = await client.get("/me/feeds")  # member_b has a user token already; the enterprise feed is new
    assert first.status_code == 200
    shown = re.findall(r"fsf_[A-Za-z0-9_-]+", first.text)
    assert len(set(shown)) == 1 and "webcal://testserver.local/feeds/" in first.text
    assert "Outlook" in first.text and "Google" in first.text and "Apple" in first.text
    assert (await client.get(f"/feeds/{shown[0]}/calendar.ics")).status_code == 200
    second = await client.get("/me/feeds")
    assert not re.findall(r"fsf_[A-Za-z0-9_-]+", second.text)  # shown only once
    client.cookies.clear()

    rotated = await post_form(client, "/me/feeds/enterprise/rotate", cookies["member_b"])
    assert rotated.status_code == 200
    new = re.findall(r"fsf_[A-Za-z0-9_-]+", rotated.text)
    assert new and new[0] != shown[0]
    assert (await client.get(f"/feeds/{shown[0]}/calendar.ics")).status_code == 404
    assert (await client.get(f"/feeds/{new[0]}/calendar.ics")).status_code == 200
    revoked = await post_form(client, "/me/feeds/enterprise/revoke", cookies["member_b"])
    assert revoked.status_code == 303 and revoked.headers["location"] == "/me/feeds?revoked=enterprise"
    assert (await client.get(f"/feeds/{new[0]}/calendar.ics")).status_code == 404
    created = await post_form(client, "/me/feeds/enterprise/create", cookies["member_b"])
    assert created.status_code == 200 and re.findall(r"fsf_[A-Za-z0-9_-]+", created.text)

    client.cookies.set(SESSION_COOKIE, cookies["manager"])
    manager_page = await client.get("/me/feeds")
    assert f"/me/feeds/unit-{unit_id}/" in manager_page.text
    client.cookies.clear()


async def test_subscribe_links_on_pages(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, _world, _ids, _tokens, cookies, _unit = setup
    page = await client.get(f"/resources/{SEM}/calendar")
    assert f"/feeds/resources/{SEM}/calendar.ics" in page.text
    client.cookies.set(SESSION_COOKIE, cookies["member_a"])
    mine = await client.get("/me/bookings")
    assert 'href="/me/feeds"' in mine.text
    client.cookies.clear()


async def test_tokens_die_with_their_makers_rights(setup, client) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import delete

    from facility_share.db.models import RoleGrant, User

    app, world, _ids, tokens, _cookies, unit_id = setup
    assert (await client.get(url_of("unit", tokens))).status_code == 200
    assert (await client.get(url_of("enterprise", tokens))).status_code == 200
    async with app.state.db.session(write=True) as session:
        await session.execute(delete(RoleGrant).where(RoleGrant.user_id == world["manager"].user_id, RoleGrant.unit_id == unit_id))
        member = await session.get(User, world["member_a"].user_id)
        assert member is not None
        member.is_active = False
        await session.commit()
    for kind in ("unit", "enterprise", "user"):
        assert (await client.get(url_of(kind, tokens))).status_code == 404, kind
    assert (await client.get(url_of("other_user", tokens))).status_code == 200
