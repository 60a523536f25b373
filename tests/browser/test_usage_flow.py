"""The service journey in a real browser (Chinese): the unit's manager checks an approved booking
of today in and out on the usage screen with a samples count; the enterprise sees the new
charge with its lines and explanation, and rates the service once."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.browser.test_booking_flow import PASSWORD, check

pytestmark = pytest.mark.browser

MANAGER = "manager.tjmat@demo.example.cn"
MEMBER = "chen@yunqi-bio.example.cn"
RESOURCE = "WQ-TJMAT-SEM01"


def approved_booking_today(database_url: str) -> int:
    """An approved booking of today on the SEM for the demo's Yunqi member, started half an hour
    ago, written straight into the server's database (the demo has none on today)."""
    from sqlalchemy import select

    from facility_share.db import Database
    from facility_share.db.models import Booking, Resource, User, utcnow

    async def run() -> int:
        database = Database(database_url, null_pool=True)
        try:
            async with database.session(write=True) as session:
                resource = (await session.execute(select(Resource).where(Resource.code == RESOURCE))).scalar_one()
                user = (await session.execute(select(User).where(User.email == MEMBER))).scalar_one()
                start = (utcnow() - timedelta(minutes=30)).replace(second=0, microsecond=0)
                booking = Booking(resource_id=resource.id, enterprise_id=user.enterprise_id, user_id=user.id, starts_at=start,
                                  ends_at=start + timedelta(hours=1), exclusive=True, mode="staff_operated", status="approved",
                                  purpose="扫描电镜观察 / SEM imaging", customer_class="district", estimate_fen=0)
                session.add(booking)
                await session.commit()
                return booking.id
        finally:
            await database.dispose()

    # Playwright's sync API marks this thread's event loop as running: use another thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()


def sign_in(page, email: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/login")
    page.get_by_label("电子邮箱").fill(email)
    page.get_by_label("密码").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"/(me|manage|admin)"))


def test_check_in_out_then_charge_and_rating(browser, demo_data: str, server_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from facility_share.settings import load_settings

    database_url = load_settings({"FACILITY_SHARE_DATABASE_URL": server_env["FACILITY_SHARE_DATABASE_URL"]}).database_url
    booking_id = approved_booking_today(database_url)

    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=demo_data)
    context.set_default_timeout(10_000)
    context.add_cookies([{"name": "lang", "value": "zh_CN", "url": demo_data}])
    page = context.new_page()
    try:
        # The manager opens the usage screen from the work menu: today's booking is there.
        sign_in(page, MANAGER)
        page.get_by_role("navigation", name="我的工作台").get_by_role("link", name="用量").click()
        page.wait_for_url(re.compile(r"/manage/usage"))
        expect(page.get_by_role("heading", level=1)).to_have_text("使用记录")
        row = page.locator(f"#booking-{booking_id}")
        expect(row).to_contain_text("未签到")
        check(page)
        row.get_by_label("操作人").fill("张工")
        row.get_by_role("button", name=re.compile("^签到")).click()
        page.wait_for_url(re.compile(r"done=check-in"))
        expect(page.get_by_role("status").first).to_contain_text("已签到")
        row = page.locator(f"#booking-{booking_id}")
        expect(row).to_contain_text("进行中")
        row.get_by_label("实测样品数").fill("5")
        row.get_by_role("button", name=re.compile("^签退")).click()
        page.wait_for_url(re.compile(r"done=check-out"))
        expect(page.get_by_role("status").first).to_contain_text("已生成费用")
        expect(page.locator(f"#booking-{booking_id}")).to_contain_text("5 个样品")
        check(page)
        page.get_by_role("button", name="退出登录").click()
        page.wait_for_url(re.compile(r"/$"))

        # The enterprise sees the charge and rates the service.
        sign_in(page, MEMBER)
        page.get_by_role("navigation", name="我的工作台").get_by_role("link", name="费用").click()
        page.wait_for_url(re.compile(r"/me/charges$"))
        charge = page.locator(".charge-card").filter(has_text=f"预约 #{booking_id}")
        expect(charge).to_have_count(1)
        expect(charge.locator(".badge")).to_have_text("未付款")
        expect(charge.locator("tfoot")).to_contain_text("¥")
        check(page)
        charge.get_by_role("link", name="评价此次服务").click()
        page.wait_for_url(re.compile(rf"/bookings/{booking_id}/rate$"))
        page.get_by_role("radio", name=re.compile(r"^4 星")).check()
        page.get_by_label("意见（选填）").fill("操作规范，出图清晰。")
        check(page)
        page.get_by_role("button", name="提交评价").click()
        page.wait_for_url(re.compile(r"done=1"))
        expect(page.get_by_role("status").first).to_contain_text("评价已保存")
        expect(page.locator(".rating-comment")).to_have_text("操作规范，出图清晰。")
        expect(page.locator("input[type=radio]")).to_have_count(0)
        # My bookings shows the stars instead of the link to rate.
        page.goto("/me/bookings")
        expect(page.locator(f"#booking-{booking_id} .stars")).to_have_text("★★★★☆")
    finally:
        context.close()
