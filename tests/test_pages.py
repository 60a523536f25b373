"""The server-rendered catalogue pages and the language switch, without a browser.

One SQLite database for the module, migrated and loaded with the repository's catalogue, the
same way an operator does it (``db upgrade`` then ``catalog import``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from litestar.testing import TestClient

from facility_share.cli import run_import
from facility_share.db import migrate
from facility_share.settings import load_settings
from facility_share.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
HTML = {"Accept": "text/html,application/xhtml+xml"}
GC = "WQ-JJKG-TEST-GC01"  # 气相色谱仪 / Gas chromatograph, per-sample fees
WORKSHOP = "WQ-TJMAT-PILOT"  # booked by the shift


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path = tmp_path_factory.mktemp("pages") / "t.sqlite3"
    settings = load_settings({"FACILITY_SHARE_DATABASE_URL": f"sqlite:///{path}"})
    migrate.upgrade(settings.database_url)
    asyncio.run(run_import(settings, ROOT / "catalog"))
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def get(client: TestClient, url: str, lang: str | None = None, **kwargs):  # type: ignore[no-untyped-def]
    headers = dict(HTML)
    if lang:
        headers["Cookie"] = f"lang={lang}"
    client.cookies.clear()
    return client.get(url, headers=headers, **kwargs)


def total(html: str) -> int:
    match = re.search(r'data-total="(\d+)"', html)
    assert match, "the result count is missing"
    return int(match.group(1))


def codes(html: str) -> list[str]:
    return re.findall(r'<a href="/resources/([A-Z0-9-]+)">', html)


# --- home and language ----------------------------------------------------------------------


def test_home_in_chinese_by_default(client: TestClient) -> None:
    response = get(client, "/")
    assert response.status_code == 200
    html = response.text
    assert '<html lang="zh-CN">' in html
    assert "武清区大型仪器与共享车间开放平台" in html
    assert "<main" in html and 'href="#main"' in html
    assert 'action="/catalog"' in html and 'name="q"' in html
    assert "/catalog?category=01" in html  # a top-level category links to a filtered list
    assert "/units/WQ-JJKG-TEST" in html
    assert "区级补贴" in html
    assert 'href="/lang/en?next=/"' in html


def test_home_in_english_from_the_cookie(client: TestClient) -> None:
    html = get(client, "/", lang="en").text
    assert '<html lang="en">' in html
    assert "Wuqing Shared Instruments &amp; Workshops" in html
    assert "Large instruments" in html and "District subsidies" in html
    assert 'href="/lang/zh_CN?next=/"' in html
    assert "武清区大型仪器与共享车间开放平台" not in html


def test_query_parameter_overrides_the_cookie(client: TestClient) -> None:
    html = get(client, "/catalog?lang=en", lang="zh_CN").text
    assert '<html lang="en">' in html


def test_language_switch_sets_a_cookie_and_goes_back(client: TestClient) -> None:
    response = client.get("/lang/en", params={"next": "/catalog?q=GC&page=2"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/catalog?q=GC&page=2"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("lang=en;")
    assert "Max-Age=31536000" in cookie and "Path=/" in cookie
    assert "samesite=lax" in cookie.lower()


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/", "/\\evil.example", "evil", ""])
def test_language_switch_never_redirects_off_site(client: TestClient, target: str) -> None:
    response = client.get(f"/lang/en?next={quote(target, safe='')}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_language_switch_refuses_unknown_languages(client: TestClient) -> None:
    assert client.get("/lang/xx", follow_redirects=False).status_code == 400
    response = get(client, "/lang/fr?next=/", follow_redirects=False)
    assert response.status_code == 400
    assert "<main" in response.text  # the HTML error page for browsers


# --- the catalogue list ------------------------------------------------------------------------


def test_search_finds_chromatographs(client: TestClient) -> None:
    response = get(client, "/catalog?q=色谱")
    assert response.status_code == 200
    assert "气相色谱仪" in response.text
    assert GC in codes(response.text)
    assert 'value="色谱"' in response.text  # the form keeps what was typed


def test_filters_narrow_the_list(client: TestClient) -> None:
    everything = total(get(client, "/catalog").text)
    chromatographs = get(client, "/catalog?category=0105").text
    assert 0 < total(chromatographs) < everything
    assert GC in codes(chromatographs)
    assert '<option value="0105" selected>' in chromatographs
    analytical = total(get(client, "/catalog?category=01").text)  # a parent includes its children
    assert total(chromatographs) <= analytical < everything

    workshops = get(client, "/catalog?kind=workshop").text
    assert 0 < total(workshops) < everything
    assert "badge-instrument" not in workshops
    assert WORKSHOP in codes(workshops)
    assert "承接能力" in workshops  # capacity is shown for workshops

    unit = get(client, "/catalog?unit=WQ-JJKG-TEST").text
    assert 0 < total(unit) < everything and GC in codes(unit)

    cheap = get(client, "/catalog?max_price=100").text
    assert total(cheap) < everything
    assert GC not in codes(cheap)  # its cheapest district rate is ¥180
    assert total(get(client, "/catalog?max_price=180").text) > 0
    assert GC in codes(get(client, "/catalog?q=GC01&max_price=180.00").text)

    located = get(client, "/catalog?location=理化检测楼").text
    assert 0 < total(located) < everything

    assert total(get(client, "/catalog?open=1").text) <= everything


def test_cards_show_prices_in_the_locale(client: TestClient) -> None:
    zh = get(client, f"/catalog?q={GC}").text
    assert "起价 ¥180.00" in zh and "区内企业价" in zh
    en = get(client, f"/catalog?q={GC}", lang="en").text
    assert "From ¥180.00" in en and "Gas chromatograph" in en
    shift = get(client, f"/catalog?q={WORKSHOP}").text
    assert "/班" in shift


def test_empty_result_says_so(client: TestClient) -> None:
    response = get(client, "/catalog?q=zzzz-no-such-thing")
    assert response.status_code == 200
    assert total(response.text) == 0
    assert "没有符合筛选条件的仪器或车间" in response.text


def test_pagination_keeps_the_filters(client: TestClient) -> None:
    html = get(client, "/catalog?kind=instrument&sort=-price").text
    if total(html) <= 20:
        pytest.skip("the catalogue has a single page of instruments")
    assert 'href="/catalog?kind=instrument&amp;sort=-price&amp;page=2"' in html
    second = get(client, "/catalog?kind=instrument&sort=-price&page=2").text
    assert 'aria-current="page">2<' in second
    assert 'href="/catalog?kind=instrument&amp;sort=-price"' in second  # page 1 without page=1
    assert set(codes(second)).isdisjoint(codes(html))


@pytest.mark.parametrize("price", ["abc", "-5", "1.234", "1e999", "NaN"])
def test_bad_price_rerenders_the_form_with_a_message(client: TestClient, price: str) -> None:
    response = get(client, f"/catalog?q=GC&max_price={quote(price)}")
    assert response.status_code == 400
    html = response.text
    assert "最高起价请填写不小于 0 的人民币金额" in html
    assert 'aria-invalid="true"' in html and 'id="err-max_price"' in html
    assert 'value="GC"' in html  # what was typed is kept
    assert "<main" in html and 'name="max_price"' in html
    english = get(client, f"/catalog?max_price={quote(price)}", lang="en")
    assert english.status_code == 400
    assert "Enter the maximum price as an amount in yuan" in english.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("category=9999", "没有这个分类编号"),
        ("unit=NOPE", "没有这个管理单位编号"),
        ("kind=robot", "请从列表中选择类型"),
        ("sort=random", "请从列表中选择排序方式"),
        ("page=abc", "页码必须是不小于 1 的整数"),
        ("page=0", "页码必须是不小于 1 的整数"),
        ("q=" + "x" * 201, "搜索内容最多 200 个字"),
        ("location=" + "x" * 101, "所在地点最多 100 个字"),
    ],
)
def test_other_bad_filters_are_400_with_a_message(client: TestClient, query: str, message: str) -> None:
    response = get(client, f"/catalog?{query}")
    assert response.status_code == 400
    assert message in response.text


def test_every_form_control_has_a_label(client: TestClient) -> None:
    for url in ("/", "/catalog", "/catalog?max_price=abc"):
        html = get(client, url).text
        ids = re.findall(r'<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"', html)
        controls = re.findall(r"<(?:input|select|textarea)\b", html)
        assert len(ids) == len(controls), f"{url}: a form control has no id"
        for control_id in ids:
            assert f'<label for="{control_id}"' in html, f"{url}: #{control_id} has no label"


# --- detail pages ------------------------------------------------------------------------------


def test_resource_detail_shows_the_fee_table(client: TestClient) -> None:
    response = get(client, f"/resources/{GC}")
    assert response.status_code == 200
    html = response.text
    assert "<h1>气相色谱仪</h1>" in html
    assert "收费标准" in html
    for label in ("校内/本单位", "区内企业", "区外用户"):
        assert f">{label}</th>" in html
    assert "¥100.00" in html and "¥180.00" in html and "¥220.00" in html  # internal / district / external
    assert "每样" in html
    assert "美国" in html  # country of origin
    assert "¥560,000.00" in html  # original value
    assert "2016年5月18日" in html
    assert "分析仪器 › 色谱仪器" in html
    assert "法定节假日不开放" in html and "调休" in html
    assert "星期一" in html and "不开放" in html  # Sunday is closed
    assert "022-82178800" in html and 'href="/units/WQ-JJKG-TEST"' in html


def test_resource_detail_in_english(client: TestClient) -> None:
    html = get(client, f"/resources/{GC}", lang="en").text
    assert "<h1>Gas chromatograph</h1>" in html
    assert "Fees" in html and "District enterprises" in html and "per sample" in html
    assert "United States" in html and "May 18, 2016" in html
    assert "Monday" in html and "Booking rules" in html


def test_workshop_detail_shows_shifts_and_booking_rules(client: TestClient) -> None:
    html = get(client, f"/resources/{WORKSHOP}").text
    assert "共享车间" in html
    assert "白班 08:00–16:00" in html and "中班 16:00–24:00" in html
    assert "每班" in html
    assert "法定节假日照常" in html  # this workshop does not follow the working calendar
    assert "可同时承接 3 个预约" in html


def test_lines_link_to_their_workshop_and_back(client: TestClient) -> None:
    lines = client.get("/api/v1/resources?kind=line&per_page=1").json()["items"]
    if not lines:
        pytest.skip("the catalogue has no workshop lines")
    line = lines[0]["code"]
    html = get(client, f"/resources/{line}").text
    parent = re.search(r'class="parent-link">所属车间：\s*<a href="/resources/([A-Z0-9-]+)">', html)
    assert parent, "a line links to its workshop"
    workshop = get(client, f"/resources/{parent.group(1)}").text
    assert f'href="/resources/{line}"' in workshop


def test_unknown_resource_is_an_html_404(client: TestClient) -> None:
    response = get(client, "/resources/WQ-NO-SUCH-THING")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "页面未找到" in response.text and "<main" in response.text
    english = get(client, "/resources/WQ-NO-SUCH-THING", lang="en")
    assert english.status_code == 404 and "Page not found" in english.text


def test_units_pages(client: TestClient) -> None:
    listing = get(client, "/units")
    assert listing.status_code == 200 and 'href="/units/WQ-JJKG-TEST"' in listing.text
    unit = get(client, "/units/WQ-JJKG-TEST")
    assert unit.status_code == 200
    assert "天津京津科技谷检验检测研究院" in unit.text and GC in codes(unit.text)
    assert "12120222MB1K77307R" in unit.text and "022-82178800" in unit.text
    english = get(client, "/units/WQ-JJKG-TEST", lang="en").text
    assert "Jing-Jin Science Valley Institute of Inspection and Testing</h1>" in english
    missing = get(client, "/units/WQ-NOPE")
    assert missing.status_code == 404 and "页面未找到" in missing.text


def test_static_stylesheet_is_served(client: TestClient) -> None:
    response = client.get("/static/site.css")
    assert response.status_code == 200
    assert "PingFang SC" in response.text and ":focus-visible" in response.text


def test_catalogue_search_for_resources_free_in_a_window(client) -> None:  # type: ignore[no-untyped-def]
    """The reverse availability search: which resources are free for a whole time window;
    the page lists exactly what the JSON API finds."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from tests.world import next_weekday

    zone = ZoneInfo("Asia/Shanghai")
    day = next_weekday(datetime.now(UTC), weekday=2)
    for start, end in (("09:00", "10:00"), ("02:00", "03:00")):
        api = client.get("/api/v1/availability/search", params={
            "start": datetime.fromisoformat(f"{day}T{start}").replace(tzinfo=zone).isoformat(),
            "end": datetime.fromisoformat(f"{day}T{end}").replace(tzinfo=zone).isoformat(),
        })
        assert api.status_code == 200, api.text
        expected = {r["code"] for r in api.json()}
        page = client.get("/catalog", params={"free_from": f"{day}T{start}", "free_to": f"{day}T{end}", "open": "1"})
        assert page.status_code == 200
        import re

        shown = set(re.findall(r"/resources/(WQ-[A-Z0-9-]+)", page.text))
        assert shown and shown <= expected
        if start == "09:00":
            assert "WQ-TJMAT-SEM01" in expected
        else:
            # At night only the round-the-clock resources are open.
            assert "WQ-TJMAT-SEM01" not in expected and "WQ-TJMAT-SEM01" not in page.text
            assert 0 < len(expected) < 10
    bad = client.get("/catalog", params={"free_from": f"{day}T10:00", "free_to": f"{day}T09:00"})
    assert bad.status_code == 400
