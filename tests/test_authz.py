"""The authorisation matrix: every route × every role (and anonymous) gets exactly the intended
allow/deny, and an enterprise can never read or change another enterprise's booking."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from facility_share.accounts import services as accounts
from facility_share.accounts.auth import ACCESS_LEVELS, SESSION_COOKIE, allowed
from facility_share.bookings import services as bookings
from facility_share.settings import load_settings
from facility_share.web.app import create_app
from tests.world import ROLES, build_world, local, next_weekday

ANONYMOUS = "anonymous"
SAMPLE_PATH_VALUES = {
    "code": "WQ-TJMAT-SEM01",
    "locale": "en",
    "role": "finance",
    "action": "cancel",
    "file_path": "site.css",
}


def all_routes(app: Litestar) -> list[tuple[str, str, str | None]]:
    """(method, path template, declared access) for every HTTP route of the app."""
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods):
                if method in ("HEAD", "OPTIONS"):
                    continue
                found.append((method, route.path, handler.opt.get("access")))
    return found


def test_every_route_declares_an_access_level() -> None:
    app = create_app(load_settings({}))
    undeclared = [
        (method, path) for method, path, access in all_routes(app)
        if access is None and not path.startswith("/schema")
    ]
    assert undeclared == []
    assert {access for _m, _p, access in all_routes(app)} <= {*ACCESS_LEVELS, None}


@pytest.fixture
async def setup(imported, database_url: str):  # type: ignore[no-untyped-def]
    world = await build_world(imported)
    day = next_weekday(bookings.utcnow())
    async with imported.session(write=True) as session:
        booking = await bookings.request_booking(
            session, world["member_a"],
            bookings.BookingInput("WQ-TJMAT-SEM01", local(day, 9), local(day, 10)), max_open_requests=10,
        )
        sessions = {role: await accounts.start_session(session, world[role].user_id, "127.0.0.1", "pytest") for role in ROLES}
        await session.commit()
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)
    return app, world, booking.id, sessions


@pytest.fixture
async def client(setup) -> AsyncIterator[AsyncTestClient]:  # type: ignore[no-untyped-def]
    app, *_ = setup
    async with AsyncTestClient(app) as c:
        yield c


def fill(path: str, booking_id: int, ids: dict[str, int]) -> str:
    def value(match: re.Match[str]) -> str:
        name, kind = match.group(1), match.group(2)
        if name == "booking_id":
            return str(booking_id)
        if name in ids:
            return str(ids[name])
        return SAMPLE_PATH_VALUES.get(name, "1" if kind == "int" else "x")

    return re.sub(r"\{(\w+):(\w+)\}", value, path)


async def call(client: AsyncTestClient, method: str, url: str, role: str, world, sessions) -> int:  # type: ignore[no-untyped-def]
    headers = {"accept": "application/json"}
    cookies = {}
    if role != ANONYMOUS:
        if url.startswith("/api/"):
            headers["authorization"] = f"Bearer {world.tokens[role]}"
        else:
            cookies[SESSION_COOKIE] = sessions[role]
    client.cookies.clear()
    if method not in ("GET", "HEAD") and not url.startswith("/api/"):
        # Forms carry the CSRF token; get one as a browser would.
        first = await client.get("/")
        token = first.cookies.get("fs_csrf") or client.cookies.get("fs_csrf")
        if token:
            headers["x-csrftoken"] = token
            cookies["fs_csrf"] = token
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value)
    response = await client.request(method, url, headers=headers, json={} if method != "GET" else None,
                                    follow_redirects=False)
    client.cookies.clear()
    return response.status_code


async def test_matrix(setup, client) -> None:  # type: ignore[no-untyped-def]
    app, world, booking_id, sessions = setup
    ids = {"user_id": world["member_b"].user_id, "enterprise_id": world.enterprise_ids["member_b"],
           "token_id": 999_999, "qualification_id": 999_999}
    problems = []
    for method, path, access in all_routes(app):
        if path.startswith(("/schema", "/static")) or access is None:
            continue
        url = fill(path, booking_id, ids)
        for role in (ANONYMOUS, *ROLES):
            principal = None if role == ANONYMOUS else world[role]
            status = await call(client, method, url, role, world, sessions)
            if allowed(principal, access):
                if status in (401, 403) or (status == 303 and role != ANONYMOUS and method == "GET" and "/login" in url):
                    problems.append(f"{role} denied {method} {url} ({access}): {status}")
            else:
                # Agent routes take instrument keys only: every user is "not signed in" there.
                expected = {401, 303} if role == ANONYMOUS or access == "agent" else {403}
                if status not in expected:
                    problems.append(f"{role} not denied {method} {url} ({access}): {status}")
            assert status < 500, f"{role} {method} {url}: {status}"
    assert problems == []


async def test_enterprises_cannot_touch_each_others_bookings(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, world, booking_id, _sessions = setup
    other = {"authorization": f"Bearer {world.tokens['member_b']}"}
    owner = {"authorization": f"Bearer {world.tokens['member_a']}"}
    for guess in (booking_id, booking_id + 1, booking_id + 7):
        response = await client.get(f"/api/v1/bookings/{guess}", headers=other)
        assert response.status_code == 404
        assert "member_a" not in response.text
        response = await client.post(f"/api/v1/bookings/{guess}/cancel", headers=other, json={})
        assert response.status_code == 404
    listing = (await client.get("/api/v1/bookings", headers=other)).json()
    assert listing["total"] == 0
    assert (await client.get(f"/api/v1/bookings/{booking_id}", headers=owner)).json()["status"] == "requested"


async def test_state_changing_api_calls_ignore_session_cookies(setup, client) -> None:  # type: ignore[no-untyped-def]
    """The API is exempt from CSRF checks, so a cookie must not authenticate a change there."""
    _app, _world, booking_id, sessions = setup
    client.cookies.set(SESSION_COOKIE, sessions["member_a"])
    response = await client.post(f"/api/v1/bookings/{booking_id}/cancel", json={})
    assert response.status_code == 401
    response = await client.get(f"/api/v1/bookings/{booking_id}")
    assert response.status_code == 200


async def test_revoked_and_unknown_tokens_are_refused(setup, client, imported) -> None:  # type: ignore[no-untyped-def]
    _app, world, _booking_id, _sessions = setup
    headers = {"authorization": f"Bearer {world.tokens['member_a']}"}
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    tokens = (await client.get("/api/v1/me/tokens", headers=headers)).json()
    assert all("token" not in t and "hash" not in str(t) for t in tokens)
    response = await client.delete(f"/api/v1/me/tokens/{tokens[0]['id']}", headers=headers)
    assert response.status_code == 204
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    assert (await client.get("/api/v1/me", headers={"authorization": "Bearer fst_guessed"})).status_code == 401


async def test_another_users_token_cannot_be_revoked(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, world, _booking_id, _sessions = setup
    b_headers = {"authorization": f"Bearer {world.tokens['member_b']}"}
    b_token_id = (await client.get("/api/v1/me/tokens", headers=b_headers)).json()[0]["id"]
    a_headers = {"authorization": f"Bearer {world.tokens['member_a']}"}
    assert (await client.delete(f"/api/v1/me/tokens/{b_token_id}", headers=a_headers)).status_code == 404
    assert (await client.get("/api/v1/me", headers=b_headers)).status_code == 200


async def test_new_token_is_shown_once_and_works(setup, client) -> None:  # type: ignore[no-untyped-def]
    _app, world, _booking_id, _sessions = setup
    headers = {"authorization": f"Bearer {world.tokens['manager']}"}
    created = (await client.post("/api/v1/me/tokens", headers=headers, json={"name": "lab script", "days": 30})).json()
    assert created["token"].startswith("fst_") and len(created["token"]) > 40
    me = (await client.get("/api/v1/me", headers={"authorization": f"Bearer {created['token']}"})).json()
    assert me["email"] == "manager@t.example.cn"
    listed = (await client.get("/api/v1/me/tokens", headers=headers)).json()
    assert all("token" not in t for t in listed)
    assert timedelta(days=29) < (
        __import__("datetime").datetime.fromisoformat(created["expires_at"]) - __import__("datetime").datetime.fromisoformat(created["created_at"])
    ) <= timedelta(days=30)
