"""The public catalogue API, on SQLite and PostgreSQL, against the shipped catalogue."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from facility_share.settings import load_settings
from facility_share.web.app import create_app


@pytest.fixture
async def client(imported, database_url: str) -> AsyncIterator[AsyncTestClient]:
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=imported)
    async with AsyncTestClient(app) as c:
        yield c


async def codes(client: AsyncTestClient, **params) -> list[str]:  # type: ignore[no-untyped-def]
    response = await client.get("/api/v1/resources", params={"per_page": 100, **params})
    assert response.status_code == 200, response.text
    return [item["code"] for item in response.json()["items"]]


async def test_lists_at_least_40_instruments_and_4_workshops(client: AsyncTestClient) -> None:
    instruments = (await client.get("/api/v1/resources", params={"kind": "instrument"})).json()
    workshops = (await client.get("/api/v1/resources", params={"kind": "workshop"})).json()
    assert instruments["total"] >= 40 and workshops["total"] >= 4
    assert len(instruments["items"]) == 20 and instruments["pages"] == -(-instruments["total"] // 20)


async def test_search_by_chinese_substring_english_word_and_model(client: AsyncTestClient, loaded_catalog) -> None:
    chromatographs = await codes(client, q="色谱")
    assert chromatographs
    by_code = {r.code: r for r in loaded_catalog.resources}
    assert all("色谱" in (by_code[c].name_zh + " ".join(by_code[c].capabilities)) for c in chromatographs)

    sem = next(r for r in loaded_catalog.resources if r.kind == "instrument" and "microscope" in r.name_en.lower())
    assert sem.code in await codes(client, q="Microscope")  # English word, any case
    model = next(r for r in loaded_catalog.resources if r.kind == "instrument" and r.model)
    assert model.code in await codes(client, q=model.model)
    # Several words narrow the result (AND).
    assert set(await codes(client, q="色谱 质谱")) <= set(chromatographs)
    assert await codes(client, q="no-such-thing-xyz") == []
    # LIKE wildcards in the query are literal.
    assert await codes(client, q="%") == [] or all("%" in by_code[c].name_zh for c in await codes(client, q="%"))


async def test_filters(client: AsyncTestClient, loaded_catalog) -> None:
    by_code = {r.code: r for r in loaded_catalog.resources}
    analytical = await codes(client, category="01")
    assert analytical and all(by_code[c].category.startswith("01") for c in analytical)  # includes sub-categories
    leaf = by_code[analytical[0]].category
    assert set(await codes(client, category=leaf)) <= set(analytical)

    assert await codes(client, category="77") == []  # unknown: matches nothing
    unit = loaded_catalog.units[0].code
    assert all(loaded_catalog.resource_units[c] == unit for c in await codes(client, unit=unit))

    closed = await codes(client, open_for_sharing="false")
    assert closed and all(not by_code[c].open_for_sharing for c in closed)

    cheap = await client.get("/api/v1/resources", params={"max_price_fen": 20000, "per_page": 100})
    assert all(item["min_price_fen"] <= 20000 for item in cheap.json()["items"])

    some_location = next(r.location_zh for r in loaded_catalog.resources if r.location_zh)
    word = some_location[:4]
    assert all(word in by_code[c].location_zh for c in await codes(client, location=word))
    # Lines (bays) of workshops are listed only when asked for.
    assert all(by_code[c].kind != "line" for c in await codes(client))
    lines = await codes(client, kind="line")
    assert all(by_code[c].parent for c in lines)


async def test_sorting_and_paging(client: AsyncTestClient) -> None:
    by_value = (await client.get("/api/v1/resources", params={"sort": "-value", "per_page": 100})).json()["items"]
    values = [item["original_value_fen"] for item in by_value]
    assert values == sorted(values, reverse=True)
    page1 = await codes(client, per_page=5, page=1)
    page2 = await codes(client, per_page=5, page=2)
    assert len(page1) == 5 and not set(page1) & set(page2)


@pytest.mark.parametrize(
    "params",
    [{"page": 0}, {"per_page": 1000}, {"sort": "random"}, {"kind": "robot"}, {"max_price_fen": -1}, {"open_for_sharing": "perhaps"}, {"category": "0105;drop"}, {"unit": "wq test"}],
)
async def test_bad_parameters_get_400_in_the_error_shape(client: AsyncTestClient, params) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/api/v1/resources", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["message"]


async def test_resource_detail_has_fees_rules_and_hours(client: AsyncTestClient, loaded_catalog) -> None:
    record = next(r for r in loaded_catalog.resources if r.kind == "instrument")
    body = (await client.get(f"/api/v1/resources/{record.code}")).json()
    assert body["name_zh"] == record.name_zh
    assert [f["district_fen"] for f in body["fees"]] == [f.district for f in record.fees]
    assert body["booking_rules"]["slot_minutes"] == record.booking.slot_minutes
    assert len(body["opening_hours"]) == len(record.opening_hours)
    assert body["contact"]["name"]
    assert body["timezone"] == record.timezone


async def test_workshop_detail_lists_its_lines(client: AsyncTestClient, loaded_catalog) -> None:
    line = next(r for r in loaded_catalog.resources if r.kind == "line")
    body = (await client.get(f"/api/v1/resources/{line.parent}")).json()
    assert line.code in [l["code"] for l in body["lines"]]
    assert body["booking_rules"]["booking_unit"] in ("shift", "day")
    line_body = (await client.get(f"/api/v1/resources/{line.code}")).json()
    assert line_body["parent"]["code"] == line.parent


async def test_unknown_codes_are_404_in_the_error_shape(client: AsyncTestClient) -> None:
    for path in ("/api/v1/resources/NOPE-1", "/api/v1/units/NOPE", "/api/v1/nothing-here"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_units_and_categories(client: AsyncTestClient, loaded_catalog) -> None:
    units = (await client.get("/api/v1/units")).json()
    assert len(units) == len(loaded_catalog.units)
    assert sum(u["resource_count"] for u in units) == sum(1 for r in loaded_catalog.resources if r.kind != "line")
    unit = (await client.get(f"/api/v1/units/{units[0]['code']}")).json()
    assert len(unit["resources"]) == units[0]["resource_count"]
    tree = (await client.get("/api/v1/categories")).json()
    assert {"01", "90"} <= {node["code"] for node in tree}
    analytical = next(node for node in tree if node["code"] == "01")
    assert analytical["children"] and analytical["resource_count"] == sum(c["resource_count"] for c in analytical["children"])


async def test_export_in_national_layout(client: AsyncTestClient, loaded_catalog) -> None:
    response = await client.get("/api/v1/catalog/export.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert len(rows) == len(loaded_catalog.resources)
    for header in ("分类编码", "中文名称", "英文名称", "型号规格", "主要技术指标", "主要功能", "生产厂商", "产地国别", "原值（万元）", "启用日期", "安放地址", "联系人", "共享模式", "开放机时安排", "参考收费标准"):
        assert header in rows[0]
    json_rows = (await client.get("/api/v1/catalog/export.json")).json()
    assert json_rows == rows


async def test_healthz_and_openapi(client: AsyncTestClient, dialect: str) -> None:
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["dialect"] == dialect
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/resources" in schema["paths"]
    docs = await client.get("/schema/docs")
    assert docs.status_code == 200 and "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert (await client.get("/static/swagger-ui/swagger-ui-bundle.js")).status_code == 200


async def test_readyz_says_ready_only_with_the_schema_at_head(client: AsyncTestClient, imported, dialect: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from facility_share.db.migrate import head_revision

    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["migrations"] == {"current": head_revision(), "head": head_revision()}
    async with imported.session(write=True) as session:
        await session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        await session.commit()
    try:
        behind = await client.get("/readyz")
        assert behind.status_code == 503 and behind.headers["retry-after"] == "5"
        assert "db upgrade" in behind.json()["hint"]
        assert (await client.get("/healthz")).status_code == 200  # alive all the same
    finally:
        async with imported.session(write=True) as session:
            await session.execute(text(f"UPDATE alembic_version SET version_num = '{head_revision()}'"))
            await session.commit()
