"""The catalogue journey in a real browser: search, filter, detail, language switch."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

ACCESSIBILITY_CHECK = """
() => {
  const problems = [];
  for (const tag of ["main", "header", "nav", "footer"]) {
    if (!document.querySelector(tag)) problems.push(`no <${tag}> landmark`);
  }
  if (document.querySelectorAll("main").length !== 1) problems.push("more than one <main>");
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (["hidden", "submit", "button", "reset"].includes(el.type)) continue;
    const labelled = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!labelled) problems.push(`unlabelled control: ${el.outerHTML}`);
  }
  return problems;
}
"""


def check_accessibility(page) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate(ACCESSIBILITY_CHECK) == [], page.url


def result_total(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.locator("#result-count").get_attribute("data-total"))


def test_search_filter_detail_and_language(page, server_url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    # Home, in Chinese by default.
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", level=1)).to_have_text("查找武清区开放共享的大型仪器与车间")
    check_accessibility(page)

    # Search for chromatographs.
    page.get_by_label("搜索仪器与车间").fill("色谱")
    page.get_by_role("button", name="搜索", exact=True).click()
    page.wait_for_url(re.compile(r"/catalog\?q="))
    expect(page.locator(".card-title a", has_text=re.compile("^气相色谱仪$"))).to_have_count(1)
    assert result_total(page) > 0
    expect(page.get_by_label("关键词", exact=True)).to_have_value("色谱")
    check_accessibility(page)

    # The whole catalogue, then narrowed by a category from the select.
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="资源目录").click()
    page.wait_for_url(re.compile(r"/catalog$"))
    everything = result_total(page)
    page.get_by_label("分类", exact=True).select_option("0105")
    page.get_by_role("button", name="查询").click()
    page.wait_for_url(re.compile(r"category=0105"))
    narrowed = result_total(page)
    assert 0 < narrowed < everything
    categories = page.locator(".resource-card .facts div", has=page.locator("dt", has_text="分类")).locator("dd")
    assert set(categories.all_inner_texts()) == {"色谱仪器"}
    expect(page.get_by_label("分类", exact=True)).to_have_value("0105")

    # A resource's detail page with its fee table.
    page.locator(".card-title a", has_text=re.compile("^气相色谱仪$")).click()
    page.wait_for_url(re.compile(r"/resources/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("气相色谱仪")
    fees = page.locator("table.fee-table")
    expect(fees).to_be_visible()
    for header in ("服务项目", "校内/本单位", "区内企业", "区外用户"):
        expect(fees.get_by_role("columnheader", name=header)).to_be_visible()
    assert fees.locator("tbody tr").count() >= 1
    expect(page.get_by_role("heading", name="预约规则")).to_be_visible()
    check_accessibility(page)
    detail_url = page.url

    # Switch to English: the same page, English labels and the English name.
    page.get_by_role("link", name="English").click()
    page.wait_for_url(detail_url)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Gas chromatograph")
    expect(page.get_by_role("heading", name="Fees", exact=True)).to_be_visible()
    expect(fees.get_by_role("columnheader", name="District enterprises")).to_be_visible()
    expect(page.get_by_role("heading", name="Booking rules")).to_be_visible()

    # The choice is remembered by the cookie on the next page.
    page.get_by_role("link", name="Home", exact=True).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Find shared instruments and workshops in Wuqing")
    check_accessibility(page)

    # And back to Chinese.
    page.get_by_role("link", name="中文").click()
    page.wait_for_url(f"{server_url}/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", level=1)).to_have_text("查找武清区开放共享的大型仪器与车间")


def test_bad_price_shows_an_inline_error(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto("/catalog")
    page.get_by_label("最高起价（元）").fill("abc")
    page.get_by_role("button", name="查询").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("最高起价请填写不小于 0 的人民币金额")
    expect(page.get_by_label("最高起价（元）")).to_have_attribute("aria-invalid", "true")
    check_accessibility(page)


def test_unknown_resource_is_a_404_page(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    response = page.goto("/resources/WQ-NO-SUCH-THING")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("页面未找到")
    check_accessibility(page)
