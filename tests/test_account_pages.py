"""The account pages without a browser: sign in and out, registration, the profile, tokens,
the admin pages and the managers' qualification page.

One SQLite database for the module, set up as an operator does it (``db upgrade``, ``catalog
import``, ``demo load``), so the demo accounts sign in with the demo password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select
from stdnum.cn import uscc as uscc_number

from facility_share.accounts.auth import SESSION_COOKIE
from facility_share.db.models import Enterprise, User
from facility_share.demo import DEMO_PASSWORD
from facility_share.settings import Settings, load_settings
from facility_share.web.app import create_app
from tests.site import demo_site, query

ROOT = Path(__file__).resolve().parent.parent
HTML = {"Accept": "text/html,application/xhtml+xml"}
CHEN = "chen@yunqi-bio.example.cn"  # verified enterprise (云启生物)
WU = "wu@xinya.example.cn"  # unverified enterprise (新芽创新)
MANAGER = "manager.tjmat@demo.example.cn"  # manages WQ-TJMAT
ADMIN = "admin@demo.example.cn"
FINANCE = "finance@demo.example.cn"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return demo_site(tmp_path_factory, "account-pages")


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def fresh_uscc(seed: str) -> str:
    """A valid 统一社会信用代码 (seed: 7 characters of the code's alphabet)."""
    body = "91120222MA" + seed
    return body + uscc_number.calc_check_digit(body)


def start(client: TestClient, lang: str | None = None) -> None:
    """Forget every cookie (a new browser), keep a language, and get a CSRF cookie."""
    client.cookies.clear()
    if lang:
        client.cookies.set("lang", lang)
    client.get("/login", headers=HTML)


def token(client: TestClient) -> str:
    value = client.cookies.get("fs_csrf")
    if not value:
        client.get("/login", headers=HTML)
        value = client.cookies.get("fs_csrf")
    assert value, "the CSRF cookie is set on the first page"
    return value


def post(client: TestClient, url: str, data: dict | None = None, **kwargs):  # type: ignore[no-untyped-def]
    form = {"_csrf_token": token(client), **(data or {})}
    return client.post(url, data=form, headers=HTML, follow_redirects=False, **kwargs)


def get(client: TestClient, url: str, **kwargs):  # type: ignore[no-untyped-def]
    return client.get(url, headers=HTML, follow_redirects=False, **kwargs)


def sign_in(client: TestClient, email: str, lang: str | None = None, password: str = DEMO_PASSWORD):  # type: ignore[no-untyped-def]
    start(client, lang)
    response = post(client, "/login", {"email": email, "password": password})
    assert response.status_code == 303, response.text[-2000:]
    return response


# --- signing in and out -----------------------------------------------------------------------


def test_sign_in_sets_a_safe_session_cookie(client: TestClient) -> None:
    start(client)
    page = get(client, "/login")
    assert page.status_code == 200
    assert 'name="_csrf_token"' in page.text and 'autocomplete="current-password"' in page.text
    response = post(client, "/login", {"email": CHEN, "password": DEMO_PASSWORD})
    assert response.status_code == 303
    assert response.headers["location"] == "/me/bookings"  # enterprise members land on their bookings
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "max-age=1209600" in lowered  # 14 days
    assert "secure" not in lowered  # FACILITY_SHARE_SECURE_COOKIES is off in development
    me = get(client, "/me")
    assert me.status_code == 200 and "陈思远" in me.text and "天津云启生物科技有限公司" in me.text
    assert ">雏鹰<" in me.text and "已认证" in me.text


def test_session_cookie_is_secure_when_configured(settings: Settings) -> None:
    secure = load_settings({"FACILITY_SHARE_DATABASE_URL": settings.database_url, "FACILITY_SHARE_SECURE_COOKIES": "true"})
    with TestClient(app=create_app(secure), base_url="https://testserver.local") as https:
        https.get("/login", headers=HTML)
        response = post(https, "/login", {"email": ADMIN, "password": DEMO_PASSWORD})
        assert response.status_code == 303
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
        assert "secure" in cookie.lower()


def test_sign_in_goes_to_next_only_on_this_site(client: TestClient) -> None:
    start(client)
    response = post(client, "/login", {"email": MANAGER, "password": DEMO_PASSWORD, "next": "/me/tokens"})
    assert response.headers["location"] == "/me/tokens"
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        start(client)
        response = post(client, "/login", {"email": MANAGER, "password": DEMO_PASSWORD, "next": target})
        assert response.status_code == 303
        assert response.headers["location"] == "/manage/requests", target


def test_protected_page_sends_anonymous_people_to_sign_in_and_back(client: TestClient) -> None:
    start(client)
    response = get(client, "/me/tokens")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fme%2Ftokens"
    page = get(client, "/login?next=/me/tokens")
    assert 'name="next" value="/me/tokens"' in page.text
    assert client.get("/me", headers={"accept": "application/json"}, follow_redirects=False).status_code == 401


def test_wrong_password_rerenders_with_401_and_keeps_the_email(client: TestClient) -> None:
    start(client)
    response = post(client, "/login", {"email": FINANCE, "password": "not the password"})
    assert response.status_code == 401
    assert "电子邮箱或密码错误" in response.text
    assert f'value="{FINANCE}"' in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    unknown = post(client, "/login", {"email": "nobody@example.cn", "password": "whatever-it-is"})
    assert unknown.status_code == 401 and "电子邮箱或密码错误" in unknown.text  # same answer for unknown accounts
    start(client, "en")
    assert "Wrong e-mail or password." in post(client, "/login", {"email": FINANCE, "password": "nope-nope-nope"}).text


def test_empty_sign_in_form_is_400(client: TestClient) -> None:
    start(client)
    response = post(client, "/login", {"email": "", "password": ""})
    assert response.status_code == 400
    assert "请填写电子邮箱" in response.text and "请填写密码" in response.text
    assert 'aria-invalid="true"' in response.text


def test_sixth_wrong_password_is_throttled(client: TestClient) -> None:
    email = "sun@weice-tech.example.cn"
    start(client)
    for _attempt in range(5):
        assert post(client, "/login", {"email": email, "password": "wrong password!"}).status_code == 401
    throttled = post(client, "/login", {"email": email, "password": "wrong password!"})
    assert throttled.status_code == 429
    assert "登录失败次数过多" in throttled.text and "15 分钟" in throttled.text
    assert throttled.headers["retry-after"] == "900"
    # Even the right password waits now.
    assert post(client, "/login", {"email": email, "password": DEMO_PASSWORD}).status_code == 429


def test_sign_out_ends_the_session_on_the_server(client: TestClient) -> None:
    sign_in(client, CHEN)
    old = client.cookies.get(SESSION_COOKIE)
    assert old and get(client, "/me").status_code == 200
    response = post(client, "/logout")
    assert response.status_code == 303 and response.headers["location"] == "/"
    deleted = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    assert "max-age=0" in deleted.lower() or "expires=thu, 01 jan 1970" in deleted.lower()
    # The old cookie, replayed, opens nothing.
    client.cookies.clear()
    replay = client.get("/me", headers=HTML, cookies={SESSION_COOKIE: old}, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/login")


def test_forms_without_the_csrf_token_are_refused(client: TestClient) -> None:
    sign_in(client, CHEN)
    for url, data in (
        ("/login", {"email": CHEN, "password": DEMO_PASSWORD}),
        ("/logout", {}),
        ("/me/tokens", {"name": "no token"}),
        ("/register", {"name": "x"}),
    ):
        response = client.post(url, data=data, headers=HTML, follow_redirects=False)
        assert response.status_code == 403, url
    wrong = client.post("/logout", data={"_csrf_token": "forged"}, headers=HTML, follow_redirects=False)
    assert wrong.status_code == 403
    assert get(client, "/me").status_code == 200  # still signed in


# --- registration --------------------------------------------------------------------------------


def registration(**changes: str) -> dict[str, str]:
    form = {
        "name": "赵测试", "email": "zhao@page-test.example.cn", "phone": "022-12345678",
        "password": "a long enough password", "password2": "a long enough password",
        "enterprise_name": "天津页面测试科技有限公司", "uscc": fresh_uscc("PAGE002"),
    }
    form.update(changes)
    return form


def test_register_with_a_wrong_check_digit_is_400_and_creates_nothing(client: TestClient, settings: Settings) -> None:
    start(client)
    good = fresh_uscc("AB12CD3")
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    response = post(client, "/register", registration(email="bad-uscc@page-test.example.cn", uscc=bad))
    assert response.status_code == 400
    html = response.text
    assert "统一社会信用代码无效" in html and "校验码" in html
    assert 'id="err-uscc"' in html and 'aria-describedby="err-uscc' in html
    assert 'value="bad-uscc@page-test.example.cn"' in html and 'value="赵测试"' in html  # what was typed stays
    assert 'type="password" value=' not in html  # passwords are never echoed back
    assert query(settings, select(func.count()).select_from(User).where(User.email == "bad-uscc@page-test.example.cn")) == [(0,)]
    assert query(settings, select(func.count()).select_from(Enterprise).where(Enterprise.uscc == bad)) == [(0,)]
    start(client, "en")
    english = post(client, "/register", registration(email="bad-uscc@page-test.example.cn", uscc=bad))
    assert english.status_code == 400 and "This unified social credit code is not valid" in english.text


def test_register_checks_the_other_fields(client: TestClient) -> None:
    start(client)
    response = post(client, "/register", registration(password2="something else entirely", phone="call me"))
    assert response.status_code == 400
    assert "两次输入的密码不一致" in response.text and "电话号码只能包含数字" in response.text
    short = post(client, "/register", registration(password="short", password2="short"))
    assert short.status_code == 400 and "密码至少需要 10 个字符" in short.text
    taken = post(client, "/register", registration(email=CHEN))
    assert taken.status_code == 409 and "该电子邮箱已注册账号" in taken.text
    known = post(client, "/register", registration(email="new@page-test.example.cn", uscc="91120222MA3AGYGL1F"))
    assert known.status_code == 409 and "该企业已注册" in known.text


def test_register_signs_in_and_explains_verification(client: TestClient, settings: Settings) -> None:
    start(client)
    response = post(client, "/register", registration())
    assert response.status_code == 303 and response.headers["location"] == "/me?registered=1"
    assert SESSION_COOKIE in response.headers.get("set-cookie", "")
    me = get(client, "/me?registered=1")
    assert me.status_code == 200
    assert "欢迎，赵测试" in me.text and "您的企业正在等待认证" in me.text and "暂不能预约" in me.text
    assert "待认证" in me.text
    book = get(client, "/resources/WQ-TJMAT-SEM01/book")
    assert book.status_code == 200 and "您的企业正在等待认证" in book.text and 'name="start"' not in book.text
    rows = query(settings, select(Enterprise.name, Enterprise.verified_at).where(Enterprise.uscc == fresh_uscc("PAGE002")))
    assert rows == [("天津页面测试科技有限公司", None)]


# --- tokens ---------------------------------------------------------------------------------------


def test_token_is_shown_once_and_can_be_revoked(client: TestClient) -> None:
    sign_in(client, MANAGER)
    created = post(client, "/me/tokens", {"name": "lab LIMS", "days": "30"})
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    value = re.search(r'id="new-token" class="token-value" type="text" value="(fst_[^"]+)"', created.text).group(1)
    assert "只显示这一次" in created.text
    assert client.get("/api/v1/me", headers={"authorization": f"Bearer {value}"}).json()["email"] == MANAGER
    listing = get(client, "/me/tokens")
    assert value not in listing.text and value[:12] in listing.text and "lab LIMS" in listing.text
    token_id = re.search(r'action="/me/tokens/(\d+)/revoke"', listing.text).group(1)
    revoked = post(client, f"/me/tokens/{token_id}/revoke")
    assert revoked.status_code == 303 and revoked.headers["location"] == f"/me/tokens?revoked={token_id}"
    after = get(client, revoked.headers["location"])
    assert "令牌已撤销" in after.text and "已撤销" in after.text
    assert client.get("/api/v1/me", headers={"authorization": f"Bearer {value}"}).status_code == 401
    # Another user's token is not found, whatever its number.
    sign_in(client, CHEN)
    assert post(client, f"/me/tokens/{token_id}/revoke").status_code == 404


def test_token_form_checks_its_fields(client: TestClient) -> None:
    sign_in(client, CHEN)
    response = post(client, "/me/tokens", {"name": "", "days": "99999"})
    assert response.status_code == 400
    assert "请为令牌起一个" in response.text and "有效期为 1–3660 天" in response.text
    assert "fst_" not in response.text


# --- administration ------------------------------------------------------------------------------


def test_admin_verifies_an_enterprise_and_its_member_can_book(client: TestClient, settings: Settings) -> None:
    sign_in(client, ADMIN)
    listing = get(client, "/admin/enterprises")
    assert listing.status_code == 200
    names = re.findall(r'<a href="/admin/enterprises/(\d+)">([^<]+)</a>', listing.text)
    unverified = {name for _id, name in names[:2]}
    assert "天津新芽创新科技有限公司" in unverified  # unverified first
    only = get(client, "/admin/enterprises?status=unverified")
    assert "天津云启生物科技有限公司" not in only.text and "天津新芽创新科技有限公司" in only.text
    found = get(client, f"/admin/enterprises?q={quote('新芽')}")
    assert "天津新芽创新科技有限公司" in found.text and "天津云启生物科技有限公司" not in found.text
    enterprise_id = next(i for i, name in names if name == "天津新芽创新科技有限公司")

    page = get(client, f"/admin/enterprises/{enterprise_id}")
    assert page.status_code == 200 and "状态历史" in page.text and "wu@xinya.example.cn" in page.text
    for label in ("无", "雏鹰", "瞪羚", "领军培育", "领军"):
        assert f">{label}</option>" in page.text
    missing = post(client, f"/admin/enterprises/{enterprise_id}", {"verified": "1", "tier": "gazelle", "effective_from": "2026-11-01"})
    assert missing.status_code == 400 and "请说明变更原因" in missing.text
    bad_tier = post(client, f"/admin/enterprises/{enterprise_id}", {"tier": "unicorn", "effective_from": "2026-11-01", "reason": "x"})
    assert bad_tier.status_code == 400 and "请从列表中选择梯度等级" in bad_tier.text
    saved = post(client, f"/admin/enterprises/{enterprise_id}", {
        "verified": "1", "registered_in_district": "1", "tech_sme": "1", "tier": "gazelle",
        "controller": "吴新芽", "effective_from": "2026-11-01", "reason": "已核对营业执照",
    })
    assert saved.status_code == 303 and saved.headers["location"] == f"/admin/enterprises/{enterprise_id}?saved=1"
    after = get(client, saved.headers["location"])
    assert "状态已保存" in after.text and "2026-11-01" in after.text and "吴新芽" in after.text
    assert after.text.count("<th scope=\"row\">20") >= 2  # the registration row and the new one
    verified = query(settings, select(Enterprise.verified_at, Enterprise.tier).where(Enterprise.id == int(enterprise_id)))
    assert verified[0][0] is not None and verified[0][1] == "gazelle"

    sign_in(client, WU)
    form = get(client, "/resources/WQ-TJMAT-SEM01/book")
    assert form.status_code == 200 and 'name="start"' in form.text and "等待认证" not in form.text


def test_admin_grants_and_revokes_roles(client: TestClient) -> None:
    sign_in(client, ADMIN)
    page = get(client, "/admin/users")
    assert page.status_code == 200 and "manager.tjmat@demo.example.cn" in page.text and "WQ-TJMAT" in page.text
    no_unit = post(client, "/admin/users/grant", {"email": "liu@gazelle-mat.example.cn", "role": "unit_manager"})
    assert no_unit.status_code == 400 and "单位管理员须对应一个管理单位" in no_unit.text
    nobody = post(client, "/admin/users/grant", {"email": "nobody@example.cn", "role": "finance"})
    assert nobody.status_code == 400 and "没有使用该电子邮箱的账号" in nobody.text
    granted = post(client, "/admin/users/grant", {"email": "liu@gazelle-mat.example.cn", "role": "unit_manager", "unit": "WQ-JGU-BIO"})
    assert granted.status_code == 303
    listing = get(client, granted.headers["location"])
    assert "角色已授予" in listing.text and "单位管理员 · WQ-JGU-BIO" in listing.text
    user_id = re.search(r'action="/admin/users/(\d+)/revoke"', listing.text).group(1)
    revoked = post(client, f"/admin/users/{user_id}/revoke", {"role": "unit_manager", "unit": "WQ-JGU-BIO"})
    assert revoked.status_code == 303
    assert "单位管理员 · WQ-JGU-BIO" not in get(client, "/admin/users?q=liu").text
    again = post(client, f"/admin/users/{user_id}/revoke", {"role": "unit_manager", "unit": "WQ-JGU-BIO"})
    assert again.status_code == 404 and "该用户没有这个角色" in again.text


# --- qualifications ----------------------------------------------------------------------------


def test_manager_grants_and_revokes_qualifications(client: TestClient) -> None:
    sign_in(client, MANAGER)
    page = get(client, "/manage/qualifications")
    assert page.status_code == 200
    assert "chen@yunqi-bio.example.cn" in page.text and "WQ-TJMAT-SEM01" in page.text  # from the demo
    assert 'value="WQ-TJMAT-XRD01"' in page.text and 'value="WQ-JGU-BIO' not in page.text  # own units only
    other_unit = post(client, "/manage/qualifications", {"email": CHEN, "resource": "WQ-JJKG-TEST-GC01", "valid_until": "2027-06-30"})
    assert other_unit.status_code == 404 and "请选择您所管理单位的仪器或车间" in other_unit.text
    unknown = post(client, "/manage/qualifications", {"email": "nobody@example.cn", "resource": "WQ-TJMAT-UTM01", "valid_until": "2027-06-30"})
    assert unknown.status_code == 404 and "没有使用该电子邮箱的账号" in unknown.text
    past = post(client, "/manage/qualifications", {"email": CHEN, "resource": "WQ-TJMAT-UTM01", "valid_until": "2020-01-01"})
    assert past.status_code == 400 and "该日期已过" in past.text
    granted = post(client, "/manage/qualifications", {"email": CHEN, "resource": "WQ-TJMAT-UTM01", "valid_until": "2027-06-30", "note": "拉伸培训"})
    assert granted.status_code == 303
    listing = get(client, granted.headers["location"])
    assert "资格已授予" in listing.text and "拉伸培训" in listing.text
    qualification_id = re.search(r'action="/manage/qualifications/(\d+)/revoke"', listing.text).group(1)
    assert post(client, f"/manage/qualifications/{qualification_id}/revoke").status_code == 303
    assert "资格已撤销" in get(client, "/manage/qualifications?done=revoked").text
    sign_in(client, "manager.jgu@demo.example.cn")
    assert post(client, f"/manage/qualifications/{qualification_id}/revoke").status_code == 404


# --- every page, both languages ---------------------------------------------------------------


PAGES = {
    None: ["/login", "/register"],
    CHEN: ["/me", "/me/tokens"],
    MANAGER: ["/me", "/manage/qualifications"],
    FINANCE: ["/me", "/me/tokens"],
    ADMIN: ["/me", "/admin/enterprises", "/admin/enterprises/1", "/admin/users", "/manage/qualifications"],
}


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_every_account_page_renders_in_both_languages(client: TestClient, lang: str) -> None:
    for email, urls in PAGES.items():
        if email:
            sign_in(client, email, lang)
        else:
            start(client, lang)
        for url in urls:
            response = get(client, url)
            assert response.status_code == 200, (email, url, response.status_code)
            html = response.text
            assert f'<html lang="{"zh-CN" if lang == "zh_CN" else "en"}">' in html
            assert "<main" in html and "</html>" in html
            if lang == "en":
                assert "登录" not in html and "退出登录" not in html, url
            # Every visible control has a label.
            for control_id in re.findall(r'<(?:input|select|textarea)\b(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', html):
                assert f'for="{control_id}"' in html, (url, control_id)
            visible = re.findall(r'<(?:input|select|textarea)\b(?![^>]*type="hidden")', html)
            with_id = re.findall(r'<(?:input|select|textarea)\b(?![^>]*type="hidden")[^>]*\bid="', html)
            assert len(visible) == len(with_id), url


def test_header_shows_the_signed_in_person_and_their_links(client: TestClient) -> None:
    start(client)
    anonymous = get(client, "/").text
    assert 'href="/login"' in anonymous and 'href="/register"' in anonymous and 'action="/logout"' not in anonymous
    sign_in(client, CHEN)
    member = get(client, "/").text
    assert "陈思远" in member and 'action="/logout"' in member and ">我的预约<" in member
    assert ">审批<" not in member and ">管理<" not in member
    sign_in(client, MANAGER)
    manager = get(client, "/").text
    assert ">审批<" in manager and ">单位日历<" in manager and ">资格<" in manager and ">我的预约<" not in manager
    sign_in(client, ADMIN)
    assert ">管理<" in get(client, "/").text


def test_admin_enterprise_page_has_a_plain_title_and_one_history_table(client: TestClient) -> None:
    """The page's <title> is text only, and each section (and its id) appears once."""
    sign_in(client, ADMIN)
    listing = get(client, "/admin/enterprises")
    enterprise_id = re.findall(r'<a href="/admin/enterprises/(\d+)">', listing.text)[0]
    page = get(client, f"/admin/enterprises/{enterprise_id}")
    assert page.status_code == 200
    title = re.search(r"<title>(.*?)</title>", page.text, re.S)
    assert title and "<" not in title.group(1)
    assert page.text.count('id="history-title"') == 1
    ids = re.findall(r'\sid="([^"]+)"', page.text)
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
