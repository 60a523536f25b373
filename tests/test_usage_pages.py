"""The usage pages without a browser: the manager's usage screen (check-in/out, walk-ins,
corrections and their history, mark paid, agent keys), the sharing figures, and the
enterprise's charges, usage and ratings.

One SQLite database for the module with the catalogue and the demo data (four months of
finished services with charges and ratings), set up as an operator does it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select

from facility_share.cli import run_import
from facility_share.db import Database, migrate
from facility_share.db.models import AgentKey, Booking, Charge, Enterprise, Rating, Resource, UsageLog, User, utcnow
from facility_share.demo import DEMO_PASSWORD, load_demo
from facility_share.settings import Settings, load_settings
from facility_share.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
HTML = {"Accept": "text/html,application/xhtml+xml"}
SEM = "WQ-TJMAT-SEM01"
TGA = "WQ-TJMAT-TGA01"
UNIT = "WQ-TJMAT"
CHEN = "chen@yunqi-bio.example.cn"
LIU = "liu@gazelle-mat.example.cn"
MANAGER = "manager.tjmat@demo.example.cn"
OTHER_MANAGER = "manager.jgu@demo.example.cn"
FINANCE = "finance@demo.example.cn"
ADMIN = "admin@demo.example.cn"
YUNQI = "91120222MA3AGYGL1F"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("usage-pages") / "t.sqlite3"
    settings = load_settings({"FACILITY_SHARE_DATABASE_URL": f"sqlite:///{path}"})
    migrate.upgrade(settings.database_url)
    asyncio.run(run_import(settings, ROOT / "catalog"))
    asyncio.run(load_demo(settings))
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def in_db(settings: Settings, work):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        database = Database(settings.database_url, null_pool=True)
        try:
            async with database.session(write=True) as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await database.dispose()

    return asyncio.run(run())


def get(client: TestClient, url: str):  # type: ignore[no-untyped-def]
    return client.get(url, headers=HTML, follow_redirects=False)


def post(client: TestClient, url: str, data: dict | None = None):  # type: ignore[no-untyped-def]
    form = {**(data or {}), "_csrf_token": client.cookies.get("fs_csrf")}
    return client.post(url, data=form, headers=HTML, follow_redirects=False)


def sign_in(client: TestClient, email: str, lang: str | None = None) -> None:
    client.cookies.clear()
    if lang:
        client.cookies.set("lang", lang)
    client.get("/login", headers=HTML)
    response = post(client, "/login", {"email": email, "password": DEMO_PASSWORD})
    assert response.status_code == 303, response.text[-1500:]


def approved_booking(settings: Settings, *, code: str = SEM, email: str = CHEN, mode: str = "staff_operated",
                     starts_in: timedelta = timedelta(minutes=-30), hours: int = 1) -> int:
    """An approved booking starting around now (inserted directly, as the browser test does)."""

    async def work(session):  # type: ignore[no-untyped-def]
        resource = (await session.execute(select(Resource).where(Resource.code == code))).scalar_one()
        user = (await session.execute(select(User).where(User.email == email))).scalar_one()
        start = (utcnow() + starts_in).replace(second=0, microsecond=0)
        booking = Booking(resource_id=resource.id, enterprise_id=user.enterprise_id, user_id=user.id, starts_at=start,
                          ends_at=start + timedelta(hours=hours), exclusive=resource.capacity == 1, mode=mode,
                          status="approved", purpose="usage page test", customer_class="district", estimate_fen=0)
        session.add(booking)
        await session.flush()
        return booking.id

    return in_db(settings, work)


def booking_state(settings: Settings, booking_id: int) -> tuple[str, list[Charge]]:
    async def work(session):  # type: ignore[no-untyped-def]
        status = (await session.execute(select(Booking.status).where(Booking.id == booking_id))).scalar_one()
        charges = list((await session.execute(select(Charge).where(Charge.booking_id == booking_id))).scalars())
        return status, charges

    return in_db(settings, work)


def usage_count(settings: Settings) -> int:
    async def work(session):  # type: ignore[no-untyped-def]
        return (await session.execute(select(func.count(UsageLog.id)))).scalar_one()

    return in_db(settings, work)


def start_day(settings: Settings, booking_id: int) -> str:
    """The district-local day a booking starts on (a booking of a few hours ago started
    yesterday when the test runs soon after midnight in Tianjin)."""

    async def work(session):  # type: ignore[no-untyped-def]
        return (await session.execute(select(Booking.starts_at).where(Booking.id == booking_id))).scalar_one()

    starts_at = in_db(settings, work)
    return starts_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date().isoformat()


def check_in_and_out(client: TestClient, booking_id: int, samples: str = "4", *, day: str = "") -> None:
    page = get(client, f"/manage/usage?unit={UNIT}" + (f"&day={day}" if day else ""))
    assert page.status_code == 200
    assert f'action="/manage/usage/bookings/{booking_id}/check-in"' in page.text
    response = post(client, f"/manage/usage/bookings/{booking_id}/check-in", {"unit": UNIT, "day": day, "operator": "张工"})
    assert response.status_code == 303, response.text[-2000:]
    page = get(client, response.headers["location"])
    assert f'action="/manage/usage/bookings/{booking_id}/check-out"' in page.text
    response = post(client, f"/manage/usage/bookings/{booking_id}/check-out", {"unit": UNIT, "day": day, "samples": samples})
    assert response.status_code == 303, response.text[-2000:]


# --- the manager's usage screen ---------------------------------------------------------------


def test_manager_checks_a_booking_in_and_out(client: TestClient, settings: Settings) -> None:
    booking_id = approved_booking(settings)
    sign_in(client, MANAGER)
    check_in_and_out(client, booking_id, "4")
    status, charges = booking_state(settings, booking_id)
    assert status == "completed"
    assert len(charges) == 1 and charges[0].status == "unpaid" and charges[0].total_fen > 0
    page = get(client, f"/manage/usage?unit={UNIT}&done=check-out")
    assert "已完成" in page.text and f'id="charge-{charges[0].id}"' in page.text
    # Checking out twice is refused with a message on the page.
    again = post(client, f"/manage/usage/bookings/{booking_id}/check-out", {"unit": UNIT, "samples": "1"})
    assert again.status_code == 409
    assert "没有进行中的使用" in again.text


def test_bad_samples_on_check_out_rerender_with_a_message(client: TestClient, settings: Settings) -> None:
    booking_id = approved_booking(settings, code=TGA)
    sign_in(client, MANAGER, "en")
    assert post(client, f"/manage/usage/bookings/{booking_id}/check-in", {"unit": UNIT}).status_code == 303
    response = post(client, f"/manage/usage/bookings/{booking_id}/check-out", {"unit": UNIT, "samples": "many"})
    assert response.status_code == 400
    assert "whole number from 0 to 100000" in response.text
    assert booking_state(settings, booking_id)[0] == "approved"


def test_walk_in_with_bad_input_rerenders_and_records_nothing(client: TestClient, settings: Settings) -> None:
    sign_in(client, MANAGER)
    before = usage_count(settings)
    response = post(client, "/manage/usage/walk-ins", {
        "unit": UNIT, "resource": SEM, "start": "2026-13-01T09:00", "end": "yesterday", "samples": "-3", "mode": "staff_operated",
    })
    assert response.status_code == 400
    assert 'aria-invalid="true"' in response.text
    assert "请按“2026-12-01 09:00”的格式填写开始时间" in response.text or "开始" in response.text
    assert usage_count(settings) == before
    # A resource of another unit is refused too.
    response = post(client, "/manage/usage/walk-ins", {
        "unit": UNIT, "resource": "WQ-JGU-BIO-FCM01", "start": "2026-01-05T09:00", "end": "2026-01-05T10:00", "samples": "0",
    })
    assert response.status_code == 400
    assert usage_count(settings) == before


def test_walk_in_is_recorded_and_charged(client: TestClient, settings: Settings) -> None:
    sign_in(client, MANAGER)
    day = (utcnow() - timedelta(days=2)).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date()
    before = usage_count(settings)
    response = post(client, "/manage/usage/walk-ins", {
        "unit": UNIT, "resource": SEM, "uscc": YUNQI.lower(), "start": f"{day}T10:00", "end": f"{day}T11:30", "samples": "2",
        "operator": "王工", "mode": "staff_operated",
    })
    assert response.status_code == 303, response.text[-2000:]
    assert usage_count(settings) == before + 1
    page = get(client, response.headers["location"])
    assert "临时使用已记录" in page.text or "已记录" in page.text


def test_correction_creates_a_new_version_visible_in_history(client: TestClient, settings: Settings) -> None:
    booking_id = approved_booking(settings, code="WQ-TJMAT-XRD01")
    sign_in(client, MANAGER, "en")
    check_in_and_out(client, booking_id, "1")

    async def current(session):  # type: ignore[no-untyped-def]
        from facility_share.usage.services import current_versions

        return (await session.execute(select(UsageLog).where(UsageLog.booking_id == booking_id, current_versions()))).scalar_one()

    log = in_db(settings, current)
    zone = __import__("zoneinfo").ZoneInfo("Asia/Shanghai")
    start = log.started_at.astimezone(zone) - timedelta(minutes=30)
    end = start + timedelta(hours=2)
    # Without a reason: refused, nothing recorded.
    response = post(client, f"/manage/usage/{log.id}/correct", {
        "unit": UNIT, "start": start.strftime("%Y-%m-%dT%H:%M"), "end": end.strftime("%Y-%m-%dT%H:%M"), "samples": "3", "reason": "",
    })
    assert response.status_code == 400 and "Say why the record is corrected" in response.text
    response = post(client, f"/manage/usage/{log.id}/correct", {
        "unit": UNIT, "start": start.strftime("%Y-%m-%dT%H:%M"), "end": end.strftime("%Y-%m-%dT%H:%M"), "samples": "3",
        "reason": "operator forgot the warm-up",
    })
    assert response.status_code == 303, response.text[-2000:]
    newer = in_db(settings, current)
    assert newer.id != log.id and newer.samples == 3
    history = get(client, f"/manage/usage/{newer.id}/history")
    assert history.status_code == 200
    assert "operator forgot the warm-up" in history.text
    assert "Version 3" in history.text and "Current" in history.text  # check-in, check-out, correction
    _status, charges = booking_state(settings, booking_id)
    assert sorted(c.status for c in charges) == ["unpaid", "void"]
    # Correcting an old version is refused.
    stale = post(client, f"/manage/usage/{log.id}/correct", {
        "unit": UNIT, "start": start.strftime("%Y-%m-%dT%H:%M"), "end": end.strftime("%Y-%m-%dT%H:%M"), "samples": "3",
        "reason": "again",
    })
    assert stale.status_code == 409 and "not the current version" in stale.text


def test_history_of_another_units_session_is_404(client: TestClient, settings: Settings) -> None:
    async def some_log(session):  # type: ignore[no-untyped-def]
        return (await session.execute(
            select(UsageLog.id).join(Resource, UsageLog.resource_id == Resource.id).where(Resource.code == SEM).limit(1)
        )).scalar_one()

    log_id = in_db(settings, some_log)
    sign_in(client, OTHER_MANAGER)
    missing = get(client, f"/manage/usage/{log_id}/history")
    assert missing.status_code == 404
    # The error page speaks the reader's language; the API keeps its English message.
    assert f"您所管理的单位中没有使用记录 #{log_id}。" in missing.text, missing.text[-800:]
    sign_in(client, OTHER_MANAGER, lang="en")
    assert f"No usage record {log_id} in the units you manage." in get(client, f"/manage/usage/{log_id}/history").text


def test_mark_paid(client: TestClient, settings: Settings) -> None:
    booking_id = approved_booking(settings, code=SEM, starts_in=timedelta(hours=-3))
    sign_in(client, MANAGER)
    check_in_and_out(client, booking_id, day=start_day(settings, booking_id))
    charge = booking_state(settings, booking_id)[1][0]
    response = post(client, f"/manage/charges/{charge.id}/mark-paid", {"unit": UNIT, "method": "bank_transfer", "reference": ""})
    assert response.status_code == 400
    assert "请填写" in response.text or "转账" in response.text
    response = post(client, f"/manage/charges/{charge.id}/mark-paid",
                    {"unit": UNIT, "method": "bank_transfer", "reference": "WQ-TEST-001"})
    assert response.status_code == 303
    paid = booking_state(settings, booking_id)[1][0]
    assert paid.status == "paid" and paid.payment_reference == "WQ-TEST-001"
    again = post(client, f"/manage/charges/{charge.id}/mark-paid", {"unit": UNIT, "method": "cash", "reference": "x"})
    assert again.status_code == 409


def test_agent_key_is_shown_once(client: TestClient, settings: Settings) -> None:
    sign_in(client, MANAGER, "en")
    page = get(client, "/manage/agent-keys")
    assert page.status_code == 200 and "XRD" in page.text
    assert post(client, "/manage/agent-keys", {"unit": UNIT, "resource": SEM, "name": ""}).status_code == 400
    response = post(client, "/manage/agent-keys", {"unit": UNIT, "resource": SEM, "name": "SEM-PC-01"})
    assert response.status_code == 201
    key = re.search(r'value="(fsa_[^"]+)"', response.text)
    assert key is not None
    assert response.headers.get("cache-control") == "no-store"
    later = get(client, "/manage/agent-keys")
    assert key.group(1) not in later.text and "SEM-PC-01" in later.text

    async def key_id(session):  # type: ignore[no-untyped-def]
        return (await session.execute(select(AgentKey.id).where(AgentKey.name == "SEM-PC-01"))).scalar_one()

    revoked = post(client, f"/manage/agent-keys/{in_db(settings, key_id)}/revoke", {"unit": UNIT})
    assert revoked.status_code == 303
    assert "Revoked" in get(client, revoked.headers["location"]).text


# --- the enterprise ----------------------------------------------------------------------------


def test_enterprise_sees_its_charges_and_not_others(client: TestClient, settings: Settings) -> None:
    async def charges_of(session):  # type: ignore[no-untyped-def]
        rows = (await session.execute(
            select(Charge.id, Enterprise.uscc).join(Enterprise, Charge.enterprise_id == Enterprise.id).where(Charge.status != "void")
        )).all()
        return [cid for cid, uscc in rows if uscc == YUNQI], [cid for cid, uscc in rows if uscc != YUNQI]

    own, others = in_db(settings, charges_of)
    assert own and others
    sign_in(client, CHEN)
    page = get(client, "/me/charges")
    assert page.status_code == 200
    shown = {int(x) for x in re.findall(r'id="charge-(\d+)"', page.text)}
    assert shown and shown <= set(own)
    assert not shown & set(others)
    assert "合计" in page.text and "元" in page.text  # the lines and the Chinese explanation
    english = client.get("/me/charges", headers=HTML, cookies={"lang": "en"})
    assert "yuan" in english.text
    usage = get(client, "/me/usage")
    assert usage.status_code == 200 and "使用记录 #" in usage.text


def test_rating_once(client: TestClient, settings: Settings) -> None:
    booking_id = approved_booking(settings, code=TGA, starts_in=timedelta(hours=-5))
    sign_in(client, MANAGER)
    check_in_and_out(client, booking_id, day=start_day(settings, booking_id))
    sign_in(client, CHEN)
    bookings_page = get(client, "/me/bookings")
    assert f'href="/bookings/{booking_id}/rate"' in bookings_page.text
    form = get(client, f"/bookings/{booking_id}/rate")
    assert form.status_code == 200 and 'type="radio"' in form.text
    assert post(client, f"/bookings/{booking_id}/rate", {"stars": "9"}).status_code == 400
    response = post(client, f"/bookings/{booking_id}/rate", {"stars": "4", "comment": "数据可靠"})
    assert response.status_code == 303
    shown = get(client, response.headers["location"])
    assert "数据可靠" in shown.text and 'type="radio"' not in shown.text
    again = post(client, f"/bookings/{booking_id}/rate", {"stars": "1"})
    assert again.status_code == 409

    async def stars(session):  # type: ignore[no-untyped-def]
        return list((await session.execute(select(Rating.stars).where(Rating.booking_id == booking_id))).scalars())

    assert in_db(settings, stars) == [4]
    assert "★★★★☆" in get(client, "/me/bookings").text
    # Another enterprise cannot rate or even see it.
    sign_in(client, LIU)
    assert get(client, f"/bookings/{booking_id}/rate").status_code == 404
    assert post(client, f"/bookings/{booking_id}/rate", {"stars": "5"}).status_code == 404


def test_rating_a_booking_not_completed_is_refused(client: TestClient, settings: Settings) -> None:
    booking_id = approved_booking(settings, code=TGA, starts_in=timedelta(days=3))
    sign_in(client, CHEN)
    assert get(client, f"/bookings/{booking_id}/rate").status_code == 409
    assert post(client, f"/bookings/{booking_id}/rate", {"stars": "5"}).status_code == 409


def test_self_check_in_and_out_from_my_bookings(client: TestClient, settings: Settings) -> None:
    booking_id = approved_booking(settings, code=SEM, mode="self_operated", starts_in=timedelta(minutes=5), hours=1)
    sign_in(client, CHEN)
    page = get(client, "/me/bookings")
    assert f'action="/me/bookings/{booking_id}/check-in"' in page.text
    response = post(client, f"/me/bookings/{booking_id}/check-in")
    assert response.status_code == 303
    page = get(client, response.headers["location"])
    assert f'action="/me/bookings/{booking_id}/check-out"' in page.text
    response = post(client, f"/me/bookings/{booking_id}/check-out", {"samples": "2"})
    assert response.status_code == 303
    assert booking_state(settings, booking_id)[0] == "completed"
    # A staff-operated booking is not checked in by the enterprise.
    staff = approved_booking(settings, code="WQ-TJMAT-UTM01", starts_in=timedelta(minutes=5))
    refused = post(client, f"/me/bookings/{staff}/check-in")
    assert refused.status_code == 403 and "由管理单位签到" in refused.text


# --- figures -----------------------------------------------------------------------------------


def test_figures_for_manager_and_finance(client: TestClient) -> None:
    sign_in(client, MANAGER)
    page = get(client, "/manage/figures")
    assert page.status_code == 200
    assert "<svg" in page.text and "共享率" in page.text
    assert "WQ-TJMAT-SEM01" in page.text and "WQ-JGU-BIO" not in page.text
    sign_in(client, FINANCE, "en")
    page = get(client, "/manage/figures?start=2026-01-01&end=2026-12-31")
    assert page.status_code == 200 and "Sharing rate" in page.text and "WQ-JGU-BIO" in page.text
    bad = get(client, "/manage/figures?start=soon")
    assert bad.status_code == 400 and "Enter the first day as a date" in bad.text
    sign_in(client, CHEN)
    assert get(client, "/manage/figures").status_code == 403


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_every_usage_page_renders_in_both_languages(client: TestClient, settings: Settings, lang: str) -> None:
    async def completed_of_chen(session):  # type: ignore[no-untyped-def]
        user = (await session.execute(select(User).where(User.email == CHEN))).scalar_one()
        booking = (await session.execute(
            select(Booking.id).where(Booking.enterprise_id == user.enterprise_id, Booking.status == "completed").limit(1)
        )).scalar_one()
        log = (await session.execute(
            select(UsageLog.id).join(Resource, UsageLog.resource_id == Resource.id).where(Resource.code == SEM).limit(1)
        )).scalar_one()
        return booking, log

    booking_id, log_id = in_db(settings, completed_of_chen)
    marker = 'lang="zh-CN"' if lang == "zh_CN" else 'lang="en"'
    pages = {
        MANAGER: ["/manage/usage", f"/manage/usage?unit={UNIT}&day=2026-03-02", f"/manage/usage/{log_id}/history",
                  "/manage/agent-keys", "/manage/figures"],
        FINANCE: ["/manage/figures"],
        ADMIN: ["/manage/usage", "/manage/figures", "/me/charges"],
        CHEN: ["/me/charges", "/me/usage", f"/bookings/{booking_id}/rate", "/me/bookings"],
    }
    for email, urls in pages.items():
        sign_in(client, email, lang)
        for url in urls:
            response = get(client, url)
            assert response.status_code == 200, (email, url, response.text[-1500:])
            assert marker in response.text
            for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", response.text):
                if 'type="hidden"' in control or 'type="submit"' in control:
                    continue
                found = re.search(r'id="([^"]+)"', control)
                assert found and f'for="{found.group(1)}"' in response.text, (url, control)
    # Navigation links by role.
    sign_in(client, MANAGER, lang)
    home = get(client, "/")
    assert 'href="/manage/usage"' in home.text and 'href="/manage/figures"' in home.text
    sign_in(client, CHEN, lang)
    assert 'href="/me/charges"' in get(client, "/").text


def test_usage_pages_need_the_right_role(client: TestClient) -> None:
    sign_in(client, CHEN)
    for url in ("/manage/usage", "/manage/agent-keys", "/manage/usage/1/history"):
        assert get(client, url).status_code == 403
    sign_in(client, FINANCE)
    assert get(client, "/manage/usage").status_code == 403
    client.cookies.clear()
    response = get(client, "/me/charges")
    assert response.status_code == 303 and "/login" in response.headers["location"]
