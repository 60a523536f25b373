"""The settlement journey in a real browser (Chinese): finance opens a usage report, drafts a
settlement for a month of the demo's services, reads a subsidy line's explanation, approves the
settlement after confirming, and downloads the XLSX, which the test opens with openpyxl."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest

from tests.browser.test_booking_flow import check
from tests.browser.test_usage_flow import sign_in

pytestmark = pytest.mark.browser

FINANCE = "finance@demo.example.cn"


def month(back: int) -> str:
    """The month ``back`` months before the current one in Beijing time, e.g. ``2026-08``.

    The demo's services span the last four months; it approved the month before last and left
    last month as a draft, so three months back is free to settle."""
    from facility_share.db.models import utcnow

    today = (utcnow() + timedelta(hours=8)).date()
    index = today.year * 12 + today.month - 1 - back
    return f"{index // 12}-{index % 12 + 1:02d}"


def test_report_then_settle_explain_approve_and_download(browser, demo_data: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from openpyxl import load_workbook
    from playwright.sync_api import expect

    period = month(3)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=demo_data, accept_downloads=True)
    context.set_default_timeout(15_000)
    context.add_cookies([{"name": "lang", "value": "zh_CN", "url": demo_data}])
    page = context.new_page()
    try:
        # Finance opens the usage report of the month from the work menu.
        sign_in(page, FINANCE)
        page.get_by_role("navigation", name="我的工作台").get_by_role("link", name="财务").click()
        page.wait_for_url(re.compile(r"/finance$"))
        page.locator("main").get_by_role("link", name="使用情况报表").first.click()
        page.wait_for_url(re.compile(r"/finance/reports"))
        field = page.get_by_role("textbox", name="统计期间")
        field.fill(period)
        field.press("Enter")
        page.wait_for_url(re.compile(rf"period={period}"))
        expect(page.get_by_role("heading", level=1)).to_contain_text(period)
        check(page)

        # Then the settlements, and a draft for the same month.
        page.locator("main").get_by_role("link", name="结算", exact=True).first.click()
        page.wait_for_url(re.compile(r"/finance/settlements$"))
        expect(page.get_by_role("heading", level=1)).to_have_text("结算")
        check(page)
        page.get_by_role("link", name="起草结算").click()
        page.wait_for_url(re.compile(r"/finance/settlements/new$"))
        page.get_by_label(re.compile("^结算期间")).fill(period)
        expect(page.get_by_label(re.compile("^政策"))).to_have_value("wuqing-default")
        check(page)
        page.get_by_role("button", name="计算草稿").click()
        page.wait_for_url(re.compile(r"/finance/settlements/\d+\?done=draft$"))
        settlement_id = int(re.search(r"/finance/settlements/(\d+)", page.url).group(1))  # type: ignore[union-attr]
        expect(page.get_by_role("status").first).to_contain_text("草稿已计算完成")
        expect(page.locator(".settlement-status")).to_have_text("草稿")
        subsidy_rows = page.locator("#subsidy-lines tbody tr")
        expect(subsidy_rows.first).to_be_visible()
        total_text = page.locator("#subsidy-lines tfoot td.num strong").inner_text()
        check(page)

        # A subsidy line's explanation: the steps in Chinese and the enterprise's charges.
        first = subsidy_rows.first
        enterprise = first.locator("th").evaluate("el => el.firstChild.textContent").strip()
        first.get_by_role("link", name=re.compile("^计算说明")).click()
        page.wait_for_url(re.compile(rf"/finance/settlements/{settlement_id}/lines/\d+$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(enterprise)
        expect(page.get_by_role("heading", name="计算过程")).to_be_visible()
        expect(page.locator("ol.explanation-steps li").last).to_contain_text("核定金额")
        expect(page.get_by_role("heading", name="该企业本期间的费用")).to_be_visible()
        check(page)
        page.get_by_role("link", name="返回结算").click()
        page.wait_for_url(re.compile(rf"/finance/settlements/{settlement_id}"))

        # Approve: the confirmation first, then the settlement is final.
        page.get_by_role("button", name="批准结算").click()
        expect(page.locator("#err-approve")).to_contain_text("请勾选以确认")
        page.get_by_label(re.compile("^我已复核这些明细")).check()
        page.get_by_role("button", name="批准结算").click()
        page.wait_for_url(re.compile(r"done=approve$"))
        expect(page.get_by_role("status").first).to_contain_text("结算已批准")
        expect(page.locator(".settlement-status")).to_have_text("已批准")
        expect(page.get_by_role("button", name="重新计算")).to_have_count(0)
        check(page)

        # Download the workbook and read it.
        with page.expect_download() as info:
            page.get_by_role("link", name="下载 XLSX").click()
        download = info.value
        assert download.suggested_filename == f"settlement-{settlement_id}-{period}.xlsx"
        path = tmp_path / download.suggested_filename
        download.save_as(path)
        book = load_workbook(io.BytesIO(path.read_bytes()))
        assert book.sheetnames == ["概要", "企业补贴", "单位奖励"]
        summary = {row[0]: row[1] for row in book["概要"].iter_rows(values_only=True)}
        assert summary["结算期间"] == period and summary["状态"] == "已批准"
        sheet = book["企业补贴"]
        assert [c.value for c in sheet[1]][:3] == ["序号", "统一社会信用代码", "企业"]
        names = [row[2] for row in sheet.iter_rows(min_row=2, values_only=True) if row[2]]
        assert enterprise in names
        total = next(row for row in sheet.iter_rows(min_row=2, values_only=True) if row[0] == "合计")
        assert f"¥{total[7]:,.2f}" == total_text.replace(" ", "")
    finally:
        context.close()
