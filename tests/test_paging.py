"""Paging of the list pages: the helper on its own, the pager in both languages, and real lists
longer than a page on SQLite and PostgreSQL (a unit's unpaid charges, an enterprise's bookings,
the admin's accounts)."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from facility_share.accounts import services as accounts
from facility_share.accounts.auth import SESSION_COOKIE
from facility_share.db.models import Booking, Charge, ManagingUnit, Resource, User, utcnow
from facility_share.settings import load_settings
from facility_share.web import paging
from facility_share.web.app import create_app
from facility_share.web.i18n import I18n
from tests.world import PASSWORD, build_world

TEMPLATES = Path(paging.__file__).resolve().parent / "templates"
HTML = {"accept": "text/html,application/xhtml+xml"}


# --- the helper ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "abc", "0", "-1", "1.5", "2e3", "１２", "9" * 50, "0x10", "3; drop"])
def test_a_bad_page_value_is_page_one(raw: str | None) -> None:
    assert paging.page_number({"page": raw} if raw is not None else {}) == 1


def test_page_numbers_are_read_per_list() -> None:
    params = {"page": " 3 ", "recent_page": "2", "charges_page": "x"}
    assert paging.page_number(params) == 3
    assert paging.page_number(params, "recent_page") == 2
    assert paging.page_number(params, "charges_page") == 1
    assert paging.page_number(None) == 1


def test_rows_and_row_numbers_of_a_page() -> None:
    page = paging.paginate(135, 2, size=20)
    assert (page.number, page.pages, page.offset, page.first, page.last) == (2, 7, 20, 21, 40)
    assert page.has_previous and page.has_next
    last = paging.paginate(135, 7, size=20)
    assert (last.offset, last.first, last.last, last.has_next) == (120, 121, 135, False)
    exact = paging.paginate(40, 2, size=20)
    assert (exact.pages, exact.first, exact.last, exact.has_next) == (2, 21, 40, False)


def test_page_numbers_are_clamped_to_the_pages_there_are() -> None:
    assert paging.paginate(135, 99, size=20).number == 7
    assert paging.paginate(135, 0, size=20).number == 1
    assert paging.paginate(135, -5, size=20).number == 1
    empty = paging.paginate(0, 4, size=20)
    assert (empty.number, empty.pages, empty.offset, empty.first, empty.last) == (1, 1, 0, 0, 0)
    assert not empty.has_previous and not empty.has_next and empty.previous_url == empty.next_url == ""
    with pytest.raises(ValueError):
        paging.paginate(10, 1, size=0)


def test_links_keep_the_other_parameters_and_the_anchor() -> None:
    params = [("status", "unverified"), ("q", "天津 a&b"), ("page", "3"), ("lang", "en"), ("done", "granted"),
              ("tag", "x"), ("tag", "y")]
    page = paging.paginate(135, 3, size=20, path="/admin/enterprises", params=params, anchor="enterprises", drop=("done",))
    kept = "status=unverified&q=%E5%A4%A9%E6%B4%A5+a%26b&tag=x&tag=y"
    assert page.next_url == f"/admin/enterprises?{kept}&page=4#enterprises"
    assert page.previous_url == f"/admin/enterprises?{kept}&page=2#enterprises"
    # Page 1 carries no page parameter; "here" has no anchor (a form's way back).
    assert page.first_url == f"/admin/enterprises?{kept}#enterprises"
    assert page.last_url == f"/admin/enterprises?{kept}&page=7#enterprises"
    assert page.here == f"/admin/enterprises?{kept}&page=3"
    alone = paging.paginate(50, 2, size=20, path="/me/usage")
    assert (alone.previous_url, alone.next_url) == ("/me/usage", "/me/usage?page=3")


def test_two_lists_on_one_page_page_independently() -> None:
    query = {"unit": "WQ-TJMAT", "day": "2026-12-01", "recent_page": "2", "charges_page": "5"}
    recent = paging.paginate(60, paging.page_number(query, "recent_page"), size=25, name="recent_page",
                             path="/manage/usage", params=query, anchor="recent")
    charges = paging.paginate(300, paging.page_number(query, "charges_page"), size=25, name="charges_page",
                              path="/manage/usage", params=query, anchor="charges")
    assert recent.next_url == "/manage/usage?unit=WQ-TJMAT&day=2026-12-01&charges_page=5&recent_page=3#recent"
    assert charges.previous_url == "/manage/usage?unit=WQ-TJMAT&day=2026-12-01&recent_page=2&charges_page=4#charges"


def render_pager(page: paging.Page, locale: str, label: str = "") -> str:
    i18n = I18n(locale)
    environment = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)
    template = environment.from_string('{% from "_pager.html" import pager with context %}{{ pager(page, label) }}')
    return template.render(page=page, label=label, _=i18n.gettext)


def test_the_pager_in_both_languages() -> None:
    page = paging.paginate(135, 2, size=20, path="/manage/usage", params={"unit": "WQ-TJMAT"}, anchor="charges")
    chinese = render_pager(page, "zh_CN", "未付款费用")
    assert "第 21–40 条，共 135 条" in chinese and "上一页" in chinese and "下一页" in chinese
    assert 'aria-label="分页：未付款费用"' in chinese and "<nav" in chinese
    assert 'href="/manage/usage?unit=WQ-TJMAT#charges" rel="prev"' in chinese
    assert 'href="/manage/usage?unit=WQ-TJMAT&amp;page=3#charges" rel="next"' in chinese
    english = render_pager(page, "en", "Unpaid charges")
    assert "21–40 of 135" in english and ">Previous<" in english and ">Next<" in english
    assert 'aria-label="Pages: Unpaid charges"' in english and "Last page" in english
    assert render_pager(paging.paginate(20, 1, size=20), "en").strip() == ""  # one page: no pager


# --- lists longer than a page, on both databases -----------------------------------------------------


@pytest.fixture
async def world(imported):  # type: ignore[no-untyped-def]
    return await build_world(imported)


@pytest.fixture
async def client(imported, world, database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[no-untyped-def]
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)
    async with AsyncTestClient(app) as c:
        yield c


async def signed_in(client: AsyncTestClient, db, world, role: str, lang: str = "en") -> None:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        cookie = await accounts.start_session(session, world[role].user_id, "127.0.0.1", "pytest")
        await session.commit()
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    client.cookies.set("lang", lang)


async def every_page(client: AsyncTestClient, url: str) -> list[str]:
    """The pages of a list, from ``url`` following its "next" links to the last."""
    pages = []
    while url:
        response = await client.get(url, headers=HTML, follow_redirects=False)
        assert response.status_code == 200, (url, response.text[-2000:])
        pages.append(response.text)
        found = re.search(r'<a href="([^"]+)" rel="next">', response.text)
        url = html.unescape(found.group(1)) if found else ""
        assert len(pages) < 50, "the pages never end"
    return pages


async def post(client: AsyncTestClient, url: str, data: dict[str, str]):  # type: ignore[no-untyped-def]
    if not client.cookies.get("fs_csrf"):
        await client.get("/", headers=HTML)
    return await client.post(url, data={**data, "_csrf_token": client.cookies.get("fs_csrf")}, headers=HTML,
                             follow_redirects=False)


async def resources_of(db, unit_code: str) -> list[Resource]:  # type: ignore[no-untyped-def]
    async with db.session() as session:
        return list((await session.execute(
            select(Resource).join(ManagingUnit, Resource.unit_id == ManagingUnit.id)
            .where(ManagingUnit.code == unit_code, Resource.retired_at.is_(None)).order_by(Resource.code)
        )).scalars())


async def test_manager_sees_the_total_of_every_unpaid_charge_and_reaches_the_last(imported, world, client) -> None:  # type: ignore[no-untyped-def]
    own, other = await resources_of(imported, "WQ-TJMAT"), await resources_of(imported, "WQ-JGU-BIO")
    enterprise = world.enterprise_ids["member_a"]
    now = utcnow()
    amounts = [10_000 + 137 * i for i in range(57)]  # more than two pages of 25
    async with imported.session(write=True) as session:
        charges = []
        for i, amount in enumerate(amounts):
            # Some charges share a service date: the id keeps their order stable across pages.
            charges.append(Charge(resource_id=own[i % len(own)].id, enterprise_id=enterprise, customer_class="district",
                                  service_date=now - timedelta(days=i // 3), total_fen=amount))
        # Neither another unit's charge nor a paid or void one counts.
        session.add_all([
            *charges,
            Charge(resource_id=other[0].id, enterprise_id=enterprise, customer_class="district", service_date=now, total_fen=99_900),
            Charge(resource_id=own[0].id, enterprise_id=enterprise, customer_class="district", service_date=now, total_fen=88_800,
                   status="paid", paid_fen=88_800),
            Charge(resource_id=own[0].id, enterprise_id=enterprise, customer_class="district", service_date=now, total_fen=77_700,
                   status="void"),
        ])
        await session.commit()
        oldest = max(charges, key=lambda c: (now - c.service_date, -c.id)).id
    total = sum(amounts)
    yuan = f"¥{total // 100:,}.{total % 100:02d}"

    await signed_in(client, imported, world, "manager")
    pages = await every_page(client, "/manage/usage?unit=WQ-TJMAT&recent_page=abc#charges")
    assert len(pages) == 3
    for text in pages:
        assert f"57 unpaid charges, {yuan} in all." in text
    shown = [int(i) for text in pages for i in re.findall(r'<tr id="charge-(\d+)"', text)]
    assert sorted(shown) == sorted(c.id for c in charges) and len(shown) == 57
    assert shown[-1] == oldest
    assert "51–57 of 57" in pages[-1]
    assert 'name="charges_page" value="3"' in pages[-1]  # its forms come back to the last page

    # Marking a charge paid from the last page comes back to it.
    response = await post(client, f"/manage/charges/{oldest}/mark-paid",
                          {"unit": "WQ-TJMAT", "day": "", "charges_page": "3", "method": "cash", "reference": "R-1"})
    assert response.status_code == 303, response.text[-2000:]
    assert response.headers["location"] == "/manage/usage?unit=WQ-TJMAT&charges_page=3&done=paid#charges"
    response = await client.get(response.headers["location"], headers=HTML)
    assert "56 unpaid charges" in response.text and "51–56 of 56" in response.text
    # A page past the end is the last one; a bad value is the first; the other list's page is kept.
    response = await client.get("/manage/usage?unit=WQ-TJMAT&charges_page=99&recent_page=2", headers=HTML)
    assert response.status_code == 200 and "51–56 of 56" in response.text
    assert 'href="/manage/usage?unit=WQ-TJMAT&amp;recent_page=2&amp;charges_page=2#charges" rel="prev"' in response.text
    response = await client.get("/manage/usage?unit=WQ-TJMAT&charges_page=-3", headers=HTML)
    assert response.status_code == 200 and "1–25 of 56" in response.text

    await signed_in(client, imported, world, "manager", "zh_CN")
    response = await client.get("/manage/usage?unit=WQ-TJMAT&charges_page=2", headers=HTML)
    assert "第 26–50 条，共 56 条" in response.text and 'aria-label="分页：未付款费用"' in response.text

    # The enterprise's own figures cover every charge too (59 not void: three pages of cards).
    await signed_in(client, imported, world, "member_a")
    pages = await every_page(client, "/me/charges")
    assert len(pages) == 3
    oldest_fen = next(c.total_fen for c in charges if c.id == oldest)
    unpaid, paid = total + 99_900 - oldest_fen, 88_800 + oldest_fen
    assert all(f"¥{unpaid // 100:,}.{unpaid % 100:02d}" in text and "57 unpaid charges" in text for text in pages)
    assert all(f"¥{paid // 100:,}.{paid % 100:02d}" in text for text in pages)


async def test_an_enterprise_sees_all_its_bookings_across_pages_and_no_others(imported, world, client) -> None:  # type: ignore[no-untyped-def]
    own = await resources_of(imported, "WQ-TJMAT")
    start = (utcnow() - timedelta(days=200)).replace(minute=0, second=0, microsecond=0)
    ids: dict[str, list[int]] = {"member_a": [], "member_b": []}
    async with imported.session(write=True) as session:
        for i in range(61):
            member = "member_b" if i % 10 == 0 else "member_a"
            user_id = world[member].user_id
            resource = own[i % len(own)]
            begins = start + timedelta(days=i // 2, hours=i % 2 * 3)
            booking = Booking(resource_id=resource.id, enterprise_id=world.enterprise_ids[member], user_id=user_id,
                              starts_at=begins, ends_at=begins + timedelta(hours=1), exclusive=resource.capacity == 1,
                              mode="staff_operated", status="completed", purpose="paging", customer_class="district",
                              estimate_fen=0)
            session.add(booking)
            await session.flush()
            ids[member].append(booking.id)
        await session.commit()
    assert len(ids["member_a"]) == 54

    await signed_in(client, imported, world, "member_a")
    pages = await every_page(client, "/me/bookings?page=0")
    shown = [int(i) for text in pages for i in re.findall(r'<tr id="booking-(\d+)"', text)]
    assert len(pages) == 3 and len(shown) == len(set(shown)) == 54
    assert set(shown) == set(ids["member_a"]) and not set(shown) & set(ids["member_b"])
    assert "51–54 of 54" in pages[-1]
    response = await client.get("/me/bookings?page=abc", headers=HTML)
    assert response.status_code == 200 and "1–25 of 54" in response.text
    # A notice about a booking on another page still finds it, and is not carried to other pages.
    response = await client.get(f"/me/bookings?cancelled={ids['member_a'][0]}", headers=HTML)
    assert f"Booking #{ids['member_a'][0]} was cancelled." in response.text
    assert 'href="/me/bookings?page=2#bookings" rel="next"' in response.text
    response = await client.get(f"/me/bookings?cancelled={ids['member_b'][0]}", headers=HTML)
    assert f"Booking #{ids['member_b'][0]} was" not in response.text


async def test_cancelling_from_a_later_page_of_my_bookings_comes_back_to_it(imported, world, client) -> None:  # type: ignore[no-untyped-def]
    own = await resources_of(imported, "WQ-TJMAT")
    start = (utcnow() + timedelta(days=20)).replace(minute=0, second=0, microsecond=0)
    ids = []
    async with imported.session(write=True) as session:
        for i in range(30):
            resource = own[i % len(own)]
            begins = start + timedelta(days=i)
            booking = Booking(resource_id=resource.id, enterprise_id=world.enterprise_ids["member_a"],
                              user_id=world["member_a"].user_id, starts_at=begins, ends_at=begins + timedelta(hours=1),
                              exclusive=resource.capacity == 1, mode="staff_operated", status="requested", purpose="paging",
                              customer_class="district", estimate_fen=0, decision_deadline=begins - timedelta(days=1))
            session.add(booking)
            await session.flush()
            ids.append(booking.id)
        await session.commit()
    await signed_in(client, imported, world, "member_a")
    page = await client.get("/me/bookings?page=2", headers=HTML)
    assert "26–30 of 30" in page.text and '<input type="hidden" name="next" value="/me/bookings?page=2">' in page.text
    # Newest first: the first booked is on the second page.
    assert f'<tr id="booking-{ids[0]}"' in page.text
    response = await post(client, f"/bookings/{ids[0]}/cancel", {"next": "/me/bookings?page=2", "reason": "plans changed"})
    assert response.status_code == 303 and response.headers["location"] == f"/me/bookings?page=2&cancelled={ids[0]}"
    page = await client.get(response.headers["location"], headers=HTML)
    assert f"Booking #{ids[0]} was cancelled." in page.text and "26–30 of 30" in page.text


async def test_admin_pages_through_a_filtered_list_of_accounts(imported, world, client) -> None:  # type: ignore[no-untyped-def]
    async with imported.session(write=True) as session:
        for i in range(63):
            await accounts.create_user(session, email=f"pager{i:02d}@paging.example.cn", password=PASSWORD, name=f"Pager {i:02d}",
                                       role="finance")
        await session.commit()
        everyone = len((await session.execute(select(User.id))).all())
    await signed_in(client, imported, world, "admin")
    pages = await every_page(client, "/admin/users?q=paging.example&lang=en")
    assert len(pages) == 2
    assert "1–50 of 63" in pages[0] and "51–63 of 63" in pages[1]
    emails = [e for text in pages for e in re.findall(r"pager\d\d@paging\.example\.cn", text)]
    assert sorted(set(emails)) == [f"pager{i:02d}@paging.example.cn" for i in range(63)]
    assert 'href="/admin/users?q=paging.example#users" rel="prev"' in pages[1]
    response = await client.get("/admin/users?page=99999999999", headers=HTML)
    assert response.status_code == 200 and f"1–50 of {everyone}" in response.text
    # The enterprises list pages with its filter (only three enterprises: one page, no pager).
    response = await client.get("/admin/enterprises?status=verified&page=7", headers=HTML)
    assert response.status_code == 200 and "member_a Ltd" in response.text and 'rel="next"' not in response.text
