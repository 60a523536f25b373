"""The booking pages without a browser: the public week calendar, the booking form with its
estimate and rule messages, my bookings, the approval queue and the unit calendar.

One SQLite database for the module with the catalogue and the demo accounts and bookings, set
up as an operator does it (``db upgrade``, ``catalog import``, ``demo load``).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from facility_share.bookings import pages as booking_pages
from facility_share.bookings import rules
from facility_share.db.models import Booking, Enterprise, Resource, User, utcnow
from facility_share.demo import DEMO_PASSWORD, ZONE
from facility_share.settings import Settings
from facility_share.web.app import create_app
from facility_share.web.i18n import I18n
from tests.site import demo_site, run_in

ROOT = Path(__file__).resolve().parent.parent
HTML = {"Accept": "text/html,application/xhtml+xml"}
SEM = "WQ-TJMAT-SEM01"  # capacity 1, 30-minute slots, minimum 60 minutes, 24 h ahead, approval
PILOT = "WQ-TJMAT-PILOT"  # capacity 3, booked by the shift
CHEN = "chen@yunqi-bio.example.cn"
LIU = "liu@gazelle-mat.example.cn"
WU = "wu@xinya.example.cn"  # unverified enterprise
MANAGER = "manager.tjmat@demo.example.cn"
ADMIN = "admin@demo.example.cn"
CUSTOMERS = ("天津云启生物科技有限公司", "天津瞪羚新材料科技有限公司", "北京远方检测技术有限公司", "天津微测科技有限公司",
             "陈思远", "刘佳", "周婷", "孙浩", "Yunqi", "Gazelle")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return demo_site(tmp_path_factory, "booking-pages")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def in_db(settings: Settings, work):  # type: ignore[no-untyped-def]
    """Run ``await work(session)`` in the module's database and commit."""
    return run_in(settings, work)


def start(client: TestClient, lang: str | None = None) -> None:
    client.cookies.clear()
    if lang:
        client.cookies.set("lang", lang)
    client.get("/login", headers=HTML)


def get(client: TestClient, url: str):  # type: ignore[no-untyped-def]
    return client.get(url, headers=HTML, follow_redirects=False)


def post(client: TestClient, url: str, data: dict | None = None, *, csrf: bool = True):  # type: ignore[no-untyped-def]
    form = dict(data or {})
    if csrf:
        form["_csrf_token"] = client.cookies.get("fs_csrf")
    return client.post(url, data=form, headers=HTML, follow_redirects=False)


def sign_in(client: TestClient, email: str, lang: str | None = None) -> None:
    start(client, lang)
    response = post(client, "/login", {"email": email, "password": DEMO_PASSWORD})
    assert response.status_code == 303, response.text[-1500:]


def monday_in(weeks: int) -> date:
    today = utcnow().astimezone(ZONE).date()
    return today - timedelta(days=today.weekday()) + timedelta(weeks=weeks)


def free_slots(client: TestClient, code: str = SEM, weeks: int = 2) -> list[dict[str, str]]:
    """The prefilled start/end of every free cell on a resource's calendar, ``weeks`` ahead
    (or the first week after it with any, should that week be a holiday week)."""
    for offset in range(weeks, weeks + 4):
        page = get(client, f"/resources/{code}/calendar?week={monday_in(offset).isoformat()}")
        assert page.status_code == 200
        links = re.findall(rf'href="(/resources/{code}/book\?[^"]+)"', page.text)
        slots = []
        for link in links:
            params = parse_qs(urlsplit(html_lib.unescape(link)).query)
            slots.append({"start": params["start"][0], "end": params["end"][0]})
        if slots:
            return slots
    raise AssertionError(f"{code} has no free time in four weeks")


def plus_minutes(local: str, minutes: int) -> str:
    return (datetime.fromisoformat(local) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M")


def book(client: TestClient, slot: dict[str, str], code: str = SEM, **extra: str):  # type: ignore[no-untyped-def]
    return post(client, f"/resources/{code}/book", {**slot, "action": "book", "purpose": "XRD of coatings", **extra})


def created_id(response) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 303, response.text[-3000:]
    location = response.headers["location"]
    assert location.startswith("/me/bookings?created=")
    return int(location.rsplit("=", 1)[1])


async def _status(session, booking_id: int) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    row = (await session.execute(select(Booking.status, Booking.decision_reason).where(Booking.id == booking_id))).one()
    return row[0], row[1]


def status_of(settings: Settings, booking_id: int) -> tuple[str, str]:
    return in_db(settings, lambda s: _status(s, booking_id))


# --- the public calendar ------------------------------------------------------------------------


def test_calendar_is_public_and_shows_no_customers(client: TestClient) -> None:
    start(client)
    weeks = []
    for offset in (0, 1):  # the demo's bookings fall into this week and the next
        page = get(client, f"/resources/{SEM}/calendar?week={monday_in(offset).isoformat()}")
        assert page.status_code == 200
        html = page.text
        for name in CUSTOMERS:
            assert name not in html, name
        assert "星期一" in html and "星期日" in html
        weeks.append(html)
    assert any('class="cell cell-full"' in html for html in weeks)  # the demo's requests hold their slots
    assert "已约满" in weeks[0] + weeks[1]
    html = weeks[1]
    assert 'class="cell cell-free"' in html and "可预约" in html
    assert f'href="/resources/{SEM}/calendar?week={monday_in(0).isoformat()}"' in html  # previous week
    assert f'href="/resources/{SEM}/calendar?week={monday_in(2).isoformat()}"' in html  # next week
    assert "08:30–09:00" in html and "不开放" in html  # weekends are closed
    link = re.search(rf'href="/resources/{SEM}/book\?start=([0-9T:-]+)&amp;end=([0-9T:-]+)"', html)
    assert link, "free cells link to the form"
    start_at, end_at = link.groups()
    assert end_at > start_at  # the minimum of an hour: two 30-minute slots


def test_calendar_marks_holidays_and_closures(client: TestClient) -> None:
    start(client)
    html = get(client, f"/resources/{SEM}/calendar?week=2026-12-28").text
    assert '<span class="day-flag flag-holiday">法定节假日</span>' in html  # 1 January
    assert "本周不开放" in html
    assert 'class="cell cell-free"' not in html  # the annual maintenance closure, then the holiday, then the weekend
    english = client.get(f"/resources/{SEM}/calendar?week=2026-12-30", headers={**HTML, "Cookie": "lang=en"}).text
    assert "Public holiday" in english and "December 28, 2026" in english


def test_shift_calendar_shows_remaining_places(client: TestClient) -> None:
    start(client)
    html = get(client, f"/resources/{PILOT}/calendar?week={monday_in(1).isoformat()}").text
    assert "白班" in html and "中班" in html and "16:00–24:00" in html
    assert "剩余 2" in html or "可预约" in html


def test_bad_week_is_400_and_shows_this_week(client: TestClient) -> None:
    start(client)
    for week in ("yesterday", "9999-12-31"):
        response = get(client, f"/resources/{SEM}/calendar?week={week}")
        assert response.status_code == 400
        assert "现显示本周" in response.text and "<main" in response.text
    assert get(client, "/resources/WQ-NO-SUCH/calendar").status_code == 404


def test_resource_page_links_to_the_calendar(client: TestClient) -> None:
    start(client)
    html = get(client, f"/resources/{SEM}").text
    assert f'href="/resources/{SEM}/calendar"' in html and "查看日历并预约" in html


# --- the booking form ----------------------------------------------------------------------------


def test_booking_form_estimates_then_books(client: TestClient, settings: Settings) -> None:
    sign_in(client, CHEN)
    slot = free_slots(client)[0]
    form = get(client, f"/resources/{SEM}/book?start={slot['start']}&end={slot['end']}")
    assert form.status_code == 200
    assert f'value="{slot["start"]}"' in form.text and 'type="datetime-local"' in form.text
    assert 'name="mode"' in form.text  # the SEM may be self-operated
    assert 'name="quantity"' not in form.text  # capacity 1
    assert "¥440.00" in form.text  # an hour at ¥400 plus ¥40 coating, district rate
    assert "按 30 分钟为一个时段预约机时" in form.text  # the rules, in words

    estimate = post(client, f"/resources/{SEM}/book", {**slot, "action": "estimate", "purpose": "形貌观察"})
    assert estimate.status_code == 200
    assert "¥440.00" in estimate.text and "按区内企业价" in estimate.text
    assert "形貌观察" in estimate.text  # what was typed stays

    booking_id = created_id(book(client, slot))
    mine = get(client, f"/me/bookings?created={booking_id}")
    assert mine.status_code == 200
    assert f"预约申请 #{booking_id} 已提交" in mine.text
    row = re.search(rf'<tr id="booking-{booking_id}"[^>]*>(.*?)</tr>', mine.text, re.S).group(1)
    assert "场发射扫描电子显微镜" in row and "待审批" in row and "¥440.00" in row
    assert slot["start"].replace("T", " ") in row  # local time
    assert status_of(settings, booking_id) == ("requested", "")
    assert slot not in free_slots(client)  # the time is held


def test_rule_violations_are_shown_translated(client: TestClient) -> None:
    sign_in(client, CHEN)
    slot = free_slots(client)[0]
    half_hour = {"start": slot["start"], "end": plus_minutes(slot["start"], 30)}
    response = book(client, half_hour)
    assert response.status_code == 400
    assert "预约时长为 30 分钟，最短为 60 分钟" in response.text
    assert 'value="XRD of coatings"' not in response.text and "XRD of coatings" in response.text  # kept in the textarea
    sunday = (monday_in(2) + timedelta(days=6)).isoformat()
    closed = book(client, {"start": f"{sunday}T09:00", "end": f"{sunday}T10:00"})
    assert closed.status_code == 400 and "该时间段不全在开放时间内" in closed.text
    soon = utcnow().astimezone(ZONE) + timedelta(hours=2)
    too_soon = book(client, {"start": soon.strftime("%Y-%m-%dT%H:00"), "end": (soon + timedelta(hours=1)).strftime("%Y-%m-%dT%H:00")})
    assert too_soon.status_code == 400 and "须至少提前 24 小时预约" in too_soon.text
    assert re.search(r"目前最早可从 \d{4}-\d{2}-\d{2} \d{2}:\d{2} 开始", too_soon.text)  # local time, not UTC ISO
    sign_in(client, CHEN, "en")
    english = book(client, half_hour)
    assert english.status_code == 400 and "the booking is 30 minutes; the minimum is 60 minutes" in english.text


def test_form_checks_its_fields(client: TestClient) -> None:
    sign_in(client, CHEN)
    response = post(client, f"/resources/{SEM}/book", {"start": "tomorrow", "end": "", "mode": "robot", "action": "book"})
    assert response.status_code == 400
    assert "请填写开始日期和时间" in response.text and "请从列表中选择操作方式" in response.text
    backwards = post(client, f"/resources/{SEM}/book", {"start": "2026-12-08T11:00", "end": "2026-12-08T10:00", "action": "estimate"})
    assert backwards.status_code == 400 and "结束时间必须晚于开始时间" in backwards.text


def test_double_booking_is_a_409_with_the_capacity_message(client: TestClient) -> None:
    sign_in(client, CHEN)
    slot = free_slots(client)[0]
    created_id(book(client, slot))
    sign_in(client, LIU)
    response = book(client, slot)
    assert response.status_code == 409
    assert "只剩 0 个" in response.text


def test_unverified_enterprise_cannot_book(client: TestClient) -> None:
    sign_in(client, WU)
    page = get(client, f"/resources/{SEM}/book")
    assert page.status_code == 200
    assert "您的企业正在等待认证" in page.text and 'name="start"' not in page.text
    slot = free_slots(client)[0]
    assert book(client, slot).status_code == 403
    mine = get(client, "/me/bookings")
    assert mine.status_code == 200 and "平台认证贵企业后即可预约" in mine.text


def test_booking_pages_need_the_right_role(client: TestClient) -> None:
    start(client)
    assert get(client, f"/resources/{SEM}/book").headers["location"].startswith("/login?next=")
    sign_in(client, MANAGER)
    assert get(client, f"/resources/{SEM}/book").status_code == 403
    assert get(client, "/me/bookings").status_code == 403
    sign_in(client, CHEN)
    assert get(client, "/manage/requests").status_code == 403
    sign_in(client, ADMIN)  # an admin may open it, but has no enterprise to book for
    page = get(client, f"/resources/{SEM}/book")
    assert page.status_code == 200 and "只有企业用户才能预约" in page.text


def test_booking_without_the_csrf_token_is_refused(client: TestClient) -> None:
    sign_in(client, CHEN)
    slot = free_slots(client)[0]
    response = post(client, f"/resources/{SEM}/book", {**slot, "action": "book"}, csrf=False)
    assert response.status_code == 403
    assert slot in free_slots(client)


# --- deciding and cancelling --------------------------------------------------------------------


def test_manager_approves_one_request_from_the_queue(client: TestClient, settings: Settings) -> None:
    sign_in(client, CHEN)
    booking_id = created_id(book(client, free_slots(client)[0]))
    sign_in(client, MANAGER)
    queue = get(client, "/manage/requests")
    assert queue.status_code == 200
    assert f'id="request-{booking_id}"' in queue.text and "天津云启生物科技有限公司" in queue.text
    assert "XRD of coatings" in queue.text and "¥440.00" in queue.text
    deadlines = re.findall(r'data-label="审批截止">([0-9: -]+)<', queue.text)
    assert deadlines == sorted(deadlines)  # the most urgent first
    approved = post(client, "/manage/requests/decide", {"ids": str(booking_id), "decision": "approve", "single": "1"})
    assert approved.status_code == 303 and approved.headers["location"] == "/manage/requests?approved=1"
    assert "已批准 1 个申请" in get(client, approved.headers["location"]).text
    assert status_of(settings, booking_id)[0] == "approved"
    sign_in(client, CHEN)
    row = re.search(rf'<tr id="booking-{booking_id}"[^>]*>(.*?)</tr>', get(client, "/me/bookings").text, re.S).group(1)
    assert "已批准" in row


def test_manager_decides_in_bulk_and_sees_per_item_errors(client: TestClient, settings: Settings) -> None:
    sign_in(client, CHEN)
    slots = free_slots(client, weeks=3)
    first = created_id(book(client, slots[0]))
    sign_in(client, LIU)
    second = created_id(book(client, free_slots(client, weeks=3)[0]))
    third = created_id(book(client, free_slots(client, weeks=3)[0]))
    sign_in(client, MANAGER)
    no_reason = post(client, "/manage/requests/decide", {"ids": [str(first), str(second)], "decision": "reject"})
    assert no_reason.status_code == 400 and "请填写驳回原因" in no_reason.text
    assert status_of(settings, first)[0] == "requested"
    nothing = post(client, "/manage/requests/decide", {"decision": "approve"})
    assert nothing.status_code == 400 and "请至少选择一个申请" in nothing.text

    both = post(client, "/manage/requests/decide", {"ids": [str(first), str(second)], "decision": "approve"})
    assert both.status_code == 303 and both.headers["location"] == "/manage/requests?approved=2"
    assert status_of(settings, first)[0] == status_of(settings, second)[0] == "approved"

    # One request is still open, one was approved already: the first succeeds, the second is reported.
    mixed = post(client, "/manage/requests/decide", {"ids": [str(third), str(first)], "decision": "reject", "reason": "设备检修"})
    assert mixed.status_code == 200
    assert "已审批 1 个申请" in mixed.text
    assert f'href="#request-{first}"' in mixed.text and "该预约状态为“已批准”" in mixed.text
    assert status_of(settings, third) == ("rejected", "设备检修")
    assert status_of(settings, first)[0] == "approved"
    sign_in(client, LIU)
    assert "设备检修" in get(client, "/me/bookings").text


def test_enterprise_cancels_its_request(client: TestClient, settings: Settings) -> None:
    sign_in(client, CHEN)
    booking_id = created_id(book(client, free_slots(client)[0]))
    mine = get(client, "/me/bookings")
    assert f'action="/bookings/{booking_id}/cancel"' in mine.text
    response = post(client, f"/bookings/{booking_id}/cancel", {"next": "/me/bookings", "reason": "样品未到"})
    assert response.status_code == 303 and response.headers["location"] == f"/me/bookings?cancelled={booking_id}"
    after = get(client, response.headers["location"])
    assert f"预约 #{booking_id} 已取消" in after.text
    assert f'action="/bookings/{booking_id}/cancel"' not in after.text
    assert status_of(settings, booking_id) == ("cancelled", "样品未到")
    again = post(client, f"/bookings/{booking_id}/cancel", {"next": "/me/bookings"})
    assert again.status_code == 409 and "不能再进行此操作" in again.text
    # An enterprise cannot approve, and another enterprise cannot even see the booking.
    assert post(client, f"/bookings/{booking_id}/approve").status_code in (403, 409)
    sign_in(client, LIU)
    assert post(client, f"/bookings/{booking_id}/cancel", {"next": "/me/bookings"}).status_code == 404
    assert post(client, f"/bookings/{booking_id}/explode").status_code == 404


def test_enterprise_cannot_approve_its_own_request(client: TestClient) -> None:
    sign_in(client, CHEN)
    booking_id = created_id(book(client, free_slots(client)[0]))
    response = post(client, f"/bookings/{booking_id}/approve")
    assert response.status_code == 403 and "只有管理单位可以进行此操作" in response.text
    post(client, f"/bookings/{booking_id}/cancel", {"next": "/me/bookings"})


def test_unit_calendar_shows_bookings_and_marks_them(client: TestClient, settings: Settings) -> None:
    async def started_booking(session):  # type: ignore[no-untyped-def]
        resource = (await session.execute(select(Resource).where(Resource.code == "WQ-TJMAT-UTM01"))).scalar_one()
        enterprise = (await session.execute(select(Enterprise).where(Enterprise.uscc == "91120222MA3AGYGL1F"))).scalar_one()
        user_id = (await session.execute(select(User.id).where(User.email == CHEN))).scalar_one()
        now = utcnow()
        booking = Booking(resource_id=resource.id, enterprise_id=enterprise.id, user_id=user_id,
                          starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1), status="approved",
                          purpose="拉伸试验", customer_class="district", estimate_fen=70000, created_at=now - timedelta(days=3),
                          updated_at=now - timedelta(days=2))
        session.add(booking)
        await session.flush()
        return booking.id

    running = in_db(settings, started_booking)
    sign_in(client, MANAGER)
    page = get(client, "/manage/calendar")
    assert page.status_code == 200
    assert "天津云启生物科技有限公司" in page.text and "WQ-TJMAT-UTM01" in page.text and "已批准" in page.text
    assert f'action="/bookings/{running}/complete"' in page.text and f'action="/bookings/{running}/no-show"' in page.text
    week = get(client, f"/manage/calendar?unit=WQ-TJMAT&week={monday_in(1).isoformat()}")
    assert week.status_code == 200 and "待审批" in week.text
    assert get(client, "/manage/calendar?unit=WQ-JGU-BIO").status_code == 404  # not this manager's unit
    without_reason = post(client, f"/bookings/{running}/cancel", {"next": "/manage/calendar"})
    assert without_reason.status_code == 400 and "请填写单位取消该预约的原因" in without_reason.text
    done = post(client, f"/bookings/{running}/complete", {"next": "/manage/calendar?unit=WQ-TJMAT"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/manage/calendar?unit=WQ-TJMAT&done=complete&booking={running}"
    assert "预约已标记为已完成" in get(client, done.headers["location"]).text
    assert status_of(settings, running)[0] == "completed"
    sign_in(client, ADMIN)
    assert get(client, "/manage/calendar?unit=WQ-JGU-BIO").status_code == 200  # admins see every unit


# --- messages, languages --------------------------------------------------------------------------


def test_every_rule_message_is_marked_and_translated() -> None:
    assert booking_pages.RULE_MESSAGES == rules.MESSAGES
    zh = I18n("zh_CN")
    for message in rules.MESSAGES.values():
        assert zh.gettext(message) != message, message


def test_violation_messages_are_rebuilt_from_the_service_detail() -> None:
    words = booking_pages.BookingWords(I18n("zh_CN"))
    item = {"rule": "granularity", "message": rules.MESSAGES["granularity"] % {"unit": "shift"}}
    assert words.violation(item, "Asia/Shanghai") == "预约须在整班次的边界开始和结束，请选择完整的班次"
    lead = {"rule": "lead_time", "message": str(rules.violation("lead_time", lead_hours=24, earliest="2026-12-01T01:30+00:00"))}
    assert words.violation(lead, "Asia/Shanghai") == "须至少提前 24 小时预约；目前最早可从 2026-12-01 09:30 开始"
    assert words.violation({"rule": "unknown", "message": "something new"}, "Asia/Shanghai") == "something new"


BOOKING_PAGES = {
    None: [f"/resources/{SEM}/calendar", f"/resources/{PILOT}/calendar", "/resources/WQ-JJKG-TEST-GC01/calendar",
           "/resources/WQ-DWGZ-PILOT-GMP/calendar", "/resources/WQ-DWGZ-PILOT-GMP-OSD/calendar"],
    CHEN: [f"/resources/{SEM}/book", f"/resources/{PILOT}/book", "/resources/WQ-JJKG-TEST-GC01/book", "/me/bookings",
           "/resources/WQ-DWGZ-PILOT-GMP/book", "/resources/WQ-DWGZ-PILOT-GMP-OSD/book",
           f"/resources/{SEM}/calendar"],
    WU: [f"/resources/{SEM}/book", "/me/bookings"],
    MANAGER: ["/manage/requests", "/manage/calendar", f"/manage/calendar?week={monday_in(1).isoformat()}"],
    ADMIN: ["/manage/requests", "/manage/calendar", "/me/bookings", f"/resources/{SEM}/book"],
}


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_every_booking_page_renders_in_both_languages(client: TestClient, lang: str) -> None:
    for email, urls in BOOKING_PAGES.items():
        if email:
            sign_in(client, email, lang)
        else:
            start(client, lang)
        for url in urls:
            response = get(client, url)
            assert response.status_code == 200, (email, url, response.status_code)
            html = response.text
            assert f'<html lang="{"zh-CN" if lang == "zh_CN" else "en"}">' in html
            if lang == "en":
                for chinese in ("预约", "审批", "日历", "可预约", "不开放"):
                    assert f">{chinese}<" not in html, (url, chinese)
            for control_id in re.findall(r'<(?:input|select|textarea)\b(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', html):
                assert f'for="{control_id}"' in html, (url, control_id)
            visible = re.findall(r'<(?:input|select|textarea)\b(?![^>]*type="hidden")', html)
            with_id = re.findall(r'<(?:input|select|textarea)\b(?![^>]*type="hidden")[^>]*\bid="', html)
            assert len(visible) == len(with_id), url
