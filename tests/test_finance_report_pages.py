"""The finance pages without a browser: the finance home, the usage report page (period picker,
views, charts drawn as inline SVG, downloads), both languages, bad periods, and who may see them.

One SQLite demo site for the module (the catalogue and four months of finished services).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from facility_share.db.models import Enterprise, ManagingUnit, PolicyVersion, Settlement, SettlementLine, utcnow
from facility_share.demo import DEMO_PASSWORD
from facility_share.settings import Settings
from facility_share.web.app import create_app
from tests.site import demo_site, run_in

HTML = {"Accept": "text/html,application/xhtml+xml"}
FINANCE = "finance@demo.example.cn"
ADMIN = "admin@demo.example.cn"
MANAGER = "manager.tjmat@demo.example.cn"
MEMBER = "chen@yunqi-bio.example.cn"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return demo_site(tmp_path_factory, "finance-report-pages")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def sign_in(client: TestClient, email: str | None, lang: str | None = None) -> None:
    client.cookies.clear()
    if lang:
        client.cookies.set("lang", lang)
    if email is None:
        return
    client.get("/login", headers=HTML)
    response = client.post("/login", data={"email": email, "password": DEMO_PASSWORD, "_csrf_token": client.cookies.get("fs_csrf")},
                           headers=HTML, follow_redirects=False)
    assert response.status_code == 303, response.text[-1000:]


def get(client: TestClient, url: str):  # type: ignore[no-untyped-def]
    return client.get(url, headers=HTML, follow_redirects=False)


def this_quarter() -> str:
    today = utcnow().astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date()
    return f"{today.year}-Q{(today.month - 1) // 3 + 1}"


def test_who_may_open_the_finance_pages(client: TestClient) -> None:
    for url in ("/finance", "/finance/reports", "/finance/reports?period=2026"):
        sign_in(client, None)
        response = get(client, url)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
        for email in (MEMBER, MANAGER):
            sign_in(client, email)
            assert get(client, url).status_code == 403, (email, url)
        for email in (FINANCE, ADMIN):
            sign_in(client, email)
            assert get(client, url).status_code == 200, (email, url)
    sign_in(client, MANAGER)
    assert 'href="/finance"' not in get(client, "/manage/figures").text
    sign_in(client, FINANCE)
    assert 'href="/finance"' in get(client, "/manage/figures").text


def test_the_finance_home_links_reports_and_settlements(client: TestClient) -> None:
    sign_in(client, FINANCE)
    page = get(client, "/finance")
    assert page.status_code == 200
    assert '<a href="/finance" aria-current="page">财务</a>' in page.text
    assert 'href="/finance/reports"' in page.text and 'href="/finance/settlements"' in page.text
    assert f'href="/finance/reports?period={this_quarter()}"' in page.text
    assert "使用情况报表" in page.text


def test_the_report_page_shows_totals_charts_tables_and_downloads(client: TestClient) -> None:
    sign_in(client, FINANCE)
    page = get(client, "/finance/reports")
    assert page.status_code == 200
    text = page.text
    quarter = this_quarter()
    assert f'value="{quarter}"' in text
    for heading in ("各管理单位利用率", "各月机时", "按企业类别的补贴发放", "按评价等级的奖励"):
        assert heading in text
    # Four months of demo services: utilisation bars and monthly columns, drawn here with no script.
    assert text.count('<svg class="report-chart"') == 2
    assert "<script" not in text
    assert "本期间没有已批准结算发放的补贴。" in text and "本期间没有已批准结算发放的奖励。" in text
    assert "WQ-TJMAT" in text and "有效机时" in text
    # Download links to the API in the page's language.
    for fmt in ("csv", "xlsx", "json"):
        assert f"format={fmt}" in text
    link = re.search(r'href="(/api/v1/finance/reports\?[^"]*format=csv[^"]*)"', text)
    assert link is not None
    response = client.get(link.group(1).replace("&amp;", "&"))
    assert response.status_code == 200 and response.content.startswith(b"\xef\xbb\xbf")
    assert "attachment" in response.headers["content-disposition"]


@pytest.mark.parametrize(
    ("view", "headers"),
    [
        ("unit", ["单位代码", "管理单位", "仪器设备数", "已发放奖励"]),
        ("resource", ["仪器编号", "仪器或车间", "开放共享", "额定机时"]),
        ("enterprise", ["统一社会信用代码", "企业", "企业类别", "已发放补贴"]),
        ("month", ["月份", "单位代码", "天数", "利用率"]),
    ],
)
def test_each_view_has_its_table(client: TestClient, view: str, headers: list[str]) -> None:
    sign_in(client, FINANCE)
    page = get(client, f"/finance/reports?period=2026&view={view}")
    assert page.status_code == 200
    table = page.text.split('class="data-table report-table"', 1)[1]
    for header in headers:
        assert f">{header}</th>" in table
    assert f'view={view}#table-title" aria-current="page">' in page.text
    assert table.count("<tr>") > 2


def test_english_follows_the_language_switch(client: TestClient) -> None:
    sign_in(client, FINANCE, lang="en")
    page = get(client, "/finance/reports?period=2026&view=enterprise")
    assert page.status_code == 200
    for words in ("Usage reports", "Utilisation by managing unit", "Hours by month", "Subsidy granted by enterprise class",
                  "Award by grade", ">Enterprise class</th>", "Tianjin Yunqi Biotech", ">Eaglet<"):
        assert words in page.text, words
    assert "lang=en" in page.text  # the downloads come in English too


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("period=2026-Q7", "季度只能是 Q1 至 Q4。"),
        ("period=next+year", "请输入年份（2026）、季度（2026-Q3）、月份（2026-07）或日期范围"),
        ("period=2026-13", "月份应为 01 至 12。"),
        ("first=2026-09-01&last=2026-08-01", "结束日期不能早于开始日期。"),
        ("first=2026-09-01", "请同时填写开始日期和结束日期。"),
        ("period=2026&view=everything", "请选择所列视图之一。"),
    ],
)
def test_a_bad_period_is_explained(client: TestClient, query: str, message: str) -> None:
    sign_in(client, FINANCE)
    page = get(client, f"/finance/reports?{query}")
    assert page.status_code == 400
    assert message in page.text
    assert 'class="error-summary"' in page.text
    field = re.search(r'href="#(r-\w+)"', page.text.split('class="error-summary"', 1)[1]).group(1)  # type: ignore[union-attr]
    assert f'id="{field}"' in page.text
    if field != "r-view":
        assert 'aria-invalid="true"' in page.text


def test_a_range_of_days_from_the_two_date_fields(client: TestClient) -> None:
    sign_in(client, FINANCE)
    page = get(client, "/finance/reports?first=2026-08-15&last=2026-10-14&view=month")
    assert page.status_code == 200
    assert "2026-08-15..2026-10-14" in page.text
    assert "2026-08-15 至 2026-10-14（共 61 天，北京时间）" in page.text
    assert page.text.count(">WQ-TJMAT</td>") == 3  # August, September and October rows of the unit
    exact = get(client, "/finance/reports?first=2026-07-01&last=2026-09-30")
    assert exact.status_code == 200 and "<h1>使用情况报表 <span class=\"muted\">2026-Q3</span></h1>" in exact.text


def test_subsidy_and_award_charts_from_an_approved_settlement(client: TestClient, settings: Settings) -> None:
    async def settle(session):  # type: ignore[no-untyped-def]
        policy = PolicyVersion(code="report-page-test", version="1", effective_from=date(2026, 1, 1), digest="1" * 64, document={
            "subsidy": {"classes": {"eaglet": {"name_zh": "雏鹰企业", "name_en": "Eaglet enterprise"},
                                    "gazelle": {"name_zh": "瞪羚企业", "name_en": "Gazelle enterprise"}}},
            "award": {"grades": [{"code": "excellent", "name_zh": "优秀", "name_en": "Excellent"},
                                 {"code": "good", "name_zh": "良好", "name_en": "Good"}]},
        })
        session.add(policy)
        await session.flush()
        settlement = Settlement(period_label="2025-Q3", period_kind="quarter", period_start=date(2025, 7, 1), period_end=date(2025, 10, 1),
                                policy_version_id=policy.id, cutoff_at=datetime(2025, 10, 10, tzinfo=UTC))
        session.add(settlement)
        await session.flush()
        enterprises = (await session.execute(select(Enterprise).order_by(Enterprise.uscc))).scalars().all()
        units = (await session.execute(select(ManagingUnit).order_by(ManagingUnit.code))).scalars().all()
        lines = [("subsidy", enterprises[0], "eaglet", 1_234_500), ("subsidy", enterprises[1], "gazelle", 300_000),
                 ("subsidy", enterprises[2], "eaglet", 5_500), ("award", units[0], "excellent", 9_000_000),
                 ("award", units[1], "good", 4_000_000)]
        for position, (kind, subject, category, amount) in enumerate(lines):
            session.add(SettlementLine(settlement_id=settlement.id, kind=kind, position=position, subject_id=subject.id,
                                       subject_code=getattr(subject, "uscc", None) or subject.code, subject_name="x",
                                       category=category, amount_fen=amount))
        await session.flush()
        settlement.status, settlement.approved_at = "approved", datetime(2025, 10, 12, tzinfo=UTC)

    run_in(settings, settle)
    sign_in(client, FINANCE)
    page = get(client, "/finance/reports?period=2025-08")
    assert page.status_code == 200
    text = page.text
    assert text.count('<svg class="report-chart"') == 3  # utilisation, subsidy and award (no usage in 2025)
    assert "本期间没有使用记录。" in text
    assert "雏鹰企业" in text and "瞪羚企业" in text and "优秀" in text and "良好" in text
    assert "¥12,400.00 · 2" in text  # two eaglet lines: 12 345.00 + 55.00 yuan
    assert "¥90,000.00 · 1" in text
    assert "2025-Q3" in text  # the settlement counted
    sign_in(client, FINANCE, lang="en")
    english = get(client, "/finance/reports?period=2025")
    assert "Eaglet enterprise" in english.text and "Excellent" in english.text
