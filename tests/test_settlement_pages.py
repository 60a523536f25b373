"""The settlement pages without a browser: the list, the draft form and its bad input, a
settlement with its subsidy and award tables, a line's explanation (Chinese and English),
recompute, approve (confirmation and the reviewed digest), discard, and an approved settlement
refusing every change.

One SQLite demo site for the module (catalogue, policies, demo accounts and four months of
services, and the demo's settlements: the month before last approved, last month a draft).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select

from facility_share.accounts import services as accounts
from facility_share.db.models import Settlement, SettlementLine, utcnow
from facility_share.demo import DEMO_PASSWORD
from facility_share.settings import Settings
from facility_share.web.app import create_app
from tests.site import demo_site, query, run_in

HTML = {"Accept": "text/html,application/xhtml+xml"}
FINANCE = "finance@demo.example.cn"
ADMIN = "admin@demo.example.cn"
MANAGER = "manager.tjmat@demo.example.cn"
MEMBER = "chen@yunqi-bio.example.cn"
ZONE_OFFSET = timedelta(hours=8)


def month(back: int) -> str:
    """The month ``back`` months before the current one (district time), e.g. ``2026-08``."""
    today = (utcnow() + ZONE_OFFSET).date()
    index = today.year * 12 + today.month - 1 - back
    return f"{index // 12}-{index % 12 + 1:02d}"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return demo_site(tmp_path_factory, "settlement-pages")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


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


def settlement_count(settings: Settings) -> int:
    return query(settings, select(func.count(Settlement.id)))[0][0]


def stored(settings: Settings, settlement_id: int) -> tuple:  # type: ignore[type-arg]
    async def work(session):  # type: ignore[no-untyped-def]
        s = await session.get(Settlement, settlement_id)
        lines = (await session.execute(select(SettlementLine.id, SettlementLine.amount_fen, SettlementLine.steps)
                                       .where(SettlementLine.settlement_id == settlement_id).order_by(SettlementLine.id))).all()
        return (s.status, s.results_digest, s.computed_at, s.approved_at, s.note), [tuple(r) for r in lines]

    return run_in(settings, work, write=False)


def digest_on(page_text: str) -> str:
    found = re.search(r'name="results_digest" value="([0-9a-f]{64})"', page_text)
    assert found, "no digest in the approval form"
    return found.group(1)


def create(client: TestClient, period: str, **fields: str):  # type: ignore[no-untyped-def]
    return post(client, "/finance/settlements", {"period": period, "policy": "wuqing-default", **fields})


def new_draft(client: TestClient, period: str, **fields: str) -> int:
    response = create(client, period, **fields)
    assert response.status_code == 303, response.text[-3000:]
    found = re.match(r"^/finance/settlements/(\d+)\?done=draft$", response.headers["location"])
    assert found, response.headers["location"]
    return int(found.group(1))


# --- who may see the pages ------------------------------------------------------------------------


def test_only_finance_and_admins_see_the_settlement_pages(client: TestClient) -> None:
    client.cookies.clear()
    response = get(client, "/finance/settlements")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=%2Ffinance%2Fsettlements")
    for email in (MANAGER, MEMBER):
        sign_in(client, email)
        assert get(client, "/finance/settlements").status_code == 403
        assert get(client, "/finance/settlements/new").status_code == 403
        assert create(client, month(3)).status_code == 403
    for email in (FINANCE, ADMIN):
        sign_in(client, email)
        assert get(client, "/finance/settlements").status_code == 200


def test_the_demo_holds_one_approved_and_one_draft_settlement(client: TestClient) -> None:
    sign_in(client, FINANCE)
    page = get(client, "/finance/settlements")
    assert page.status_code == 200
    assert page.text.count('id="settlement-') >= 2
    for label, status in ((month(2), "已批准"), (month(1), "草稿")):
        row = re.search(rf'<tr id="settlement-\d+">(?:(?!</tr>).)*{label}(?:(?!</tr>).)*</tr>', page.text, re.S)
        assert row, label
        assert status in row.group(0) and "wuqing-default@2026.1" in row.group(0)


def test_the_list_has_an_empty_state(tmp_path_factory: pytest.TempPathFactory) -> None:
    bare = demo_site(tmp_path_factory, "settlement-empty", demo=False)

    async def finance_user(session):  # type: ignore[no-untyped-def]
        await accounts.create_user(session, email="f@t.example.cn", password=DEMO_PASSWORD, name="F", role="finance")

    run_in(bare, finance_user)
    with TestClient(app=create_app(bare)) as c:
        sign_in(c, "f@t.example.cn")
        page = get(c, "/finance/settlements")
        assert page.status_code == 200 and "还没有结算" in page.text
        form = get(c, "/finance/settlements/new")
        assert form.status_code == 200 and 'name="period"' in form.text and "wuqing-default@2026.1" in form.text


# --- the draft form -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"period": "2026-13"}, "period", "月份应为 01 至 12"),
        ({"period": "last year"}, "period", "请输入年份（2026）、季度（2026-Q3）或月份（2026-07）"),
        ({"policy": "no-such-policy"}, "policy", "请选择已载入的政策之一"),
        ({"subsidy_budget": "-5"}, "subsidy_budget", "请以元为单位填写预算"),
        ({"award_budget": "12.345"}, "award_budget", "请以元为单位填写预算"),
        ({"award_budget": "1000000000"}, "award_budget", "预算最多为 100,000,000 元"),
        ({"cutoff": "soon"}, "cutoff", "请填写截止日期和时间"),
        ({"cutoff": "2099-01-01T00:00"}, "cutoff", "截止时间不能晚于当前时间"),
        ({"cutoff": "2001-01-01T00:00"}, "cutoff", "截止时间早于期间开始"),
        ({"period": "2026", "policy": "wuqing-default@9.9"}, "policy", "请选择已载入的政策之一"),
    ],
)
def test_bad_input_redisplays_the_form_and_creates_nothing(client: TestClient, settings: Settings, fields, field, message) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, FINANCE)
    before = settlement_count(settings)
    request = {"period": month(3), "policy": "wuqing-default", **fields}
    response = post(client, "/finance/settlements", request)
    assert response.status_code == 400, response.text[-2000:]
    assert message in response.text
    assert f'id="f-{field}"' in response.text and 'aria-invalid="true"' in response.text
    # What was typed is kept.
    if "period" in fields:
        assert f'value="{fields["period"]}"' in response.text
    assert settlement_count(settings) == before


def test_a_period_overlapping_an_approved_one_is_a_conflict(client: TestClient, settings: Settings) -> None:
    sign_in(client, FINANCE)
    before = settlement_count(settings)
    response = create(client, month(2))  # the demo approved it
    assert response.status_code == 409
    assert "重叠" in response.text
    assert settlement_count(settings) == before


# --- review, explanation, recompute, approve, discard ----------------------------------------------------


def test_draft_read_a_line_recompute_and_approve(client: TestClient, settings: Settings) -> None:
    sign_in(client, FINANCE)
    settlement_id = new_draft(client, month(3), note="第三个月")
    page = get(client, f"/finance/settlements/{settlement_id}?done=draft")
    assert page.status_code == 200
    text = page.text
    assert "草稿已计算完成" in text and "企业补贴" in text and "单位奖励" in text
    assert 'id="subsidy-lines"' in text and 'id="award-lines"' in text
    assert "下载 XLSX" in text and f"/api/v1/finance/settlements/{settlement_id}/export?format=xlsx" in text
    digest = digest_on(text)
    assert digest in text  # shown in full next to the approval form

    # Each line links to its explanation; a subsidy line lists the enterprise's charges.
    links = re.findall(rf'href="/finance/settlements/{settlement_id}/lines/(\d+)"', text)
    assert links
    subsidy_table = text[text.index('id="subsidy-lines"'):text.index('id="award-lines"')]
    subsidy_line = re.search(rf'/finance/settlements/{settlement_id}/lines/(\d+)', subsidy_table)
    assert subsidy_line
    explanation = get(client, f"/finance/settlements/{settlement_id}/lines/{subsidy_line.group(1)}")
    assert explanation.status_code == 200
    assert "计算过程" in explanation.text and "核定金额" in explanation.text
    assert "该企业本期间的费用" in explanation.text and 'class="data-table counted-charges"' in explanation.text
    english = client.get(f"/finance/settlements/{settlement_id}/lines/{subsidy_line.group(1)}?lang=en", headers=HTML)
    assert "How it was computed" in english.text and "Amount:" in english.text
    award_table = text[text.index('id="award-lines"'):]
    award_line = re.search(rf'/finance/settlements/{settlement_id}/lines/(\d+)', award_table)
    assert award_line
    award_page = get(client, f"/finance/settlements/{settlement_id}/lines/{award_line.group(1)}")
    assert award_page.status_code == 200 and "分项得分" in award_page.text and "counted-charges" not in award_page.text
    assert get(client, f"/finance/settlements/{settlement_id}/lines/999999").status_code == 404

    # Recomputing with the same data: the same digest, said so.
    response = post(client, f"/finance/settlements/{settlement_id}/recompute")
    assert response.status_code == 303 and response.headers["location"].endswith("done=unchanged")
    assert digest_on(get(client, f"/finance/settlements/{settlement_id}").text) == digest

    # Approval needs the confirmation and the digest on the screen.
    response = post(client, f"/finance/settlements/{settlement_id}/approve", {"results_digest": digest})
    assert response.status_code == 400 and "请勾选以确认已复核全部明细" in response.text
    response = post(client, f"/finance/settlements/{settlement_id}/approve", {"results_digest": "0" * 64, "confirm": "1"})
    assert response.status_code == 409 and "请复核重新计算的明细后再批准" in response.text
    response = post(client, f"/finance/settlements/{settlement_id}/approve", {"confirm": "1"})
    assert response.status_code == 400
    assert stored(settings, settlement_id)[0][0] == "draft"
    response = post(client, f"/finance/settlements/{settlement_id}/approve", {"results_digest": digest, "confirm": "1"})
    assert response.status_code == 303 and response.headers["location"].endswith("done=approve")
    page = get(client, response.headers["location"])
    assert "结算已批准" in page.text and 'name="results_digest"' not in page.text
    assert "/recompute" not in page.text and "/discard" not in page.text
    assert stored(settings, settlement_id)[0][0] == "approved"

    # Every change to it is refused, and nothing moves.
    before = stored(settings, settlement_id)
    for action, data in (("recompute", {}), ("approve", {"results_digest": digest, "confirm": "1"}), ("discard", {"confirm": "1"})):
        response = post(client, f"/finance/settlements/{settlement_id}/{action}", data)
        assert response.status_code == 409, action
        assert "已批准的结算不可更改" in response.text
    assert create(client, month(3)).status_code == 409
    assert stored(settings, settlement_id) == before


def test_a_draft_can_be_discarded_after_confirming(client: TestClient, settings: Settings) -> None:
    sign_in(client, FINANCE)
    settlement_id = new_draft(client, month(4))
    response = post(client, f"/finance/settlements/{settlement_id}/discard")
    assert response.status_code == 400 and "请勾选以确认删除此草稿" in response.text
    assert stored(settings, settlement_id)[0][0] == "draft"
    response = post(client, f"/finance/settlements/{settlement_id}/discard", {"confirm": "1"})
    assert response.status_code == 303 and response.headers["location"] == f"/finance/settlements?done=discard&id={settlement_id}"
    assert f"草稿 #{settlement_id} 已删除" in get(client, response.headers["location"]).text
    assert get(client, f"/finance/settlements/{settlement_id}").status_code == 404
    assert post(client, f"/finance/settlements/{settlement_id}/discard", {"confirm": "1"}).status_code == 404


def test_budgets_and_cut_off_from_the_form(client: TestClient, settings: Settings) -> None:
    sign_in(client, FINANCE)
    period = month(1)
    cutoff = (utcnow() + ZONE_OFFSET - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    settlement_id = new_draft(client, period, subsidy_budget="1000", award_budget="0", cutoff=cutoff)

    async def work(session):  # type: ignore[no-untyped-def]
        return await session.get(Settlement, settlement_id)

    s = run_in(settings, work, write=False)
    assert s.subsidy_budget_fen == 100_000 and s.award_budget_fen == 0
    assert s.subsidy_total_fen <= 100_000 and s.award_total_fen == 0
    assert (s.cutoff_at + ZONE_OFFSET).strftime("%Y-%m-%dT%H:%M") == cutoff
    page = get(client, f"/finance/settlements/{settlement_id}")
    assert "按预算比例缩减" in page.text or s.subsidy_total_fen < 100_000
    post(client, f"/finance/settlements/{settlement_id}/discard", {"confirm": "1"})


def test_the_pages_speak_english(client: TestClient) -> None:
    sign_in(client, FINANCE, lang="en")
    page = get(client, "/finance/settlements")
    assert "Draft a settlement" in page.text and "Settlements" in page.text
    form = get(client, "/finance/settlements/new")
    assert "Compute the draft" in form.text and 'lang="en"' in form.text
    response = post(client, "/finance/settlements", {"period": "someday", "policy": "wuqing-default"})
    assert response.status_code == 400
    assert "Expected a year (2026), a quarter (2026-Q3) or a month (2026-07), got " in response.text
