"""The booking journey in a real browser, in Chinese and in English: an enterprise member books
a free slot from a resource's calendar, the unit's manager approves it in the queue, and the
enterprise sees it approved."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

PASSWORD = "demo-password-2026"
MEMBER = "chen@yunqi-bio.example.cn"
MANAGER = "manager.tjmat@demo.example.cn"
RESOURCE = "WQ-TJMAT-SEM01"

WORDS = {
    "zh_CN": {
        "lang": "zh-CN", "email": "电子邮箱", "password": "密码", "sign_in": "登录", "sign_out": "退出登录",
        "calendar": "查看日历并预约", "next_week": "下一周", "estimate": "计算费用", "purpose": "用途",
        "send": "提交预约申请", "requested": "待审批", "approved": "已批准", "approve": "批准",
        "queue": "待审批预约", "my_bookings": "我的预约", "sent": "已提交", "approved_notice": "已批准 1 个申请",
    },
    "en": {
        "lang": "en", "email": "E-mail address", "password": "Password", "sign_in": "Sign in", "sign_out": "Sign out",
        "calendar": "Calendar & booking", "next_week": "Next week", "estimate": "Estimate the fee", "purpose": "Purpose",
        "send": "Send the booking request", "requested": "Awaiting approval", "approved": "Approved", "approve": "Approve",
        "queue": "Requests to approve", "my_bookings": "My bookings", "sent": "was sent", "approved_notice": "1 request approved.",
    },
}

ACCESSIBILITY_CHECK = """
() => {
  const problems = [];
  for (const tag of ["main", "header", "nav", "footer"]) {
    if (!document.querySelector(tag)) problems.push(`no <${tag}> landmark`);
  }
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (["hidden", "submit", "button", "reset"].includes(el.type)) continue;
    const labelled = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!labelled) problems.push(`unlabelled control: ${el.outerHTML}`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push("the page scrolls sideways");
  return problems;
}
"""


def check(page) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate(ACCESSIBILITY_CHECK) == [], page.url


def sign_in(page, email: str, w: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    page.goto("/login")
    page.get_by_label(w["email"]).fill(email)
    page.get_by_label(w["password"]).fill(PASSWORD)
    page.locator("main").get_by_role("button", name=w["sign_in"]).click()
    page.wait_for_url(re.compile(r"/(me|manage|admin)"))


def sign_out(page, w: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("button", name=w["sign_out"]).click()
    page.wait_for_url(re.compile(r"/$"))


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_book_approve_and_see_it_approved(browser, demo_data: str, lang: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    w = WORDS[lang]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=demo_data)
    context.set_default_timeout(10_000)
    context.add_cookies([{"name": "lang", "value": lang, "url": demo_data}])
    page = context.new_page()
    try:
        # The enterprise member signs in and opens the resource's calendar from its page.
        sign_in(page, MEMBER, w)
        expect(page.locator("html")).to_have_attribute("lang", w["lang"])
        page.goto(f"/resources/{RESOURCE}")
        page.get_by_role("link", name=w["calendar"]).click()
        page.wait_for_url(re.compile(rf"/resources/{RESOURCE}/calendar"))
        check(page)
        # Two weeks ahead (past the lead time, clear of the demo's bookings), or later after a holiday week.
        for weeks_ahead in range(1, 6):
            next_week = page.get_by_role("link", name=w["next_week"])
            target = next_week.get_attribute("href")
            next_week.click()
            page.wait_for_url(re.compile(re.escape(target) + "$"))
            if weeks_ahead >= 2 and page.locator("td.cell-free a").count():
                break
        page.locator("td.cell-free a").first.click()
        page.wait_for_url(re.compile(rf"/resources/{RESOURCE}/book\?start="))
        start = page.locator("#f-start").input_value()
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", start)

        # The estimate before sending, then the request.
        page.get_by_label(w["purpose"]).fill("SEM imaging of coatings")
        page.get_by_role("button", name=w["estimate"]).click()
        expect(page.locator(".estimate-amount")).to_contain_text("¥")
        expect(page.get_by_label(w["purpose"])).to_have_value("SEM imaging of coatings")
        check(page)
        page.get_by_role("button", name=w["send"]).click()
        page.wait_for_url(re.compile(r"/me/bookings\?created=\d+"))
        booking_id = page.url.rsplit("=", 1)[1]
        expect(page.get_by_role("status").first).to_contain_text(w["sent"])
        row = page.locator(f"#booking-{booking_id}")
        expect(row.locator(".status")).to_have_text(w["requested"])
        check(page)
        sign_out(page, w)

        # The unit's manager approves it in the queue.
        sign_in(page, MANAGER, w)
        page.get_by_role("navigation", name=re.compile("我的工作台|My work")).get_by_role("link", name=re.compile("审批|Approvals")).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(w["queue"])
        request_row = page.locator(f"#request-{booking_id}")
        expect(request_row).to_contain_text("SEM imaging of coatings")
        check(page)
        request_row.get_by_role("button", name=re.compile(rf"^{w['approve']}")).click()
        page.wait_for_url(re.compile(r"approved=1"))
        expect(page.get_by_role("status").first).to_contain_text(w["approved_notice"])
        expect(page.locator(f"#request-{booking_id}")).to_have_count(0)
        sign_out(page, w)

        # The enterprise sees it approved.
        sign_in(page, MEMBER, w)
        page.get_by_role("link", name=w["my_bookings"], exact=True).first.click()
        page.wait_for_url(re.compile(r"/me/bookings$"))
        expect(page.locator(f"#booking-{booking_id} .status")).to_have_text(w["approved"])
    finally:
        context.close()
