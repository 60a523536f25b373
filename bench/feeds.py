"""Calendar feed benchmark: a 5,000-event feed, built versus answered from its stamp.

    .venv/bin/python bench/feeds.py [--events 5000] [--rounds 5]

1. Pure: ``build_calendar`` over 5,000 generated ``FeedEvent``s (build + serialise + fold).
2. Through the app on a throwaway SQLite database holding the shipped catalogue, one
   resource with 5,000 bookings inside the feed window:
   (a) ``GET /feeds/resources/{code}/calendar.ics`` answered in full (query, load, build,
       serialise), and
   (b) the same request with ``If-None-Match`` (the stamp query and a 304).
   Prints both medians and the ratio (b)/(a) (target <= 0.05).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from litestar.testing import AsyncTestClient  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from facility_share.accounts import services as accounts  # noqa: E402
from facility_share.catalog.files import load_catalog  # noqa: E402
from facility_share.catalog.importer import import_catalog  # noqa: E402
from facility_share.db import Database, migrate  # noqa: E402
from facility_share.db.models import Booking, Resource, User, utcnow  # noqa: E402
from facility_share.feeds.calendar import FeedEvent, booking_uid, build_calendar  # noqa: E402
from facility_share.settings import load_settings  # noqa: E402
from facility_share.web.app import create_app  # noqa: E402

CODE = "WQ-TJMAT-SEM01"
STATUSES = ("requested", "approved", "approved", "completed", "cancelled")


def median_time(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pure(events: int, rounds: int) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    items = [
        FeedEvent(uid=booking_uid(i), start=start + timedelta(hours=i), end=start + timedelta(hours=i + 1),
                  status=STATUSES[i % len(STATUSES)], sequence=i % 4, created=start, updated=start,
                  summary=f"场发射扫描电子显微镜（含能谱仪） {i}", location="天津市武清区 新材料研究院 2 号楼 105 室",
                  description="预约 #%d\n企业：天津某某新材料科技有限公司\n联系人：张三, 13800000000\n目的：镀层成分分析" % i,
                  url="https://share.example.cn/manage/calendar")
        for i in range(events)
    ]
    seconds = median_time(lambda: build_calendar(items, name="基准", language="zh_CN"), rounds)
    size = len(build_calendar(items, name="基准", language="zh_CN").encode())
    print(f"pure build_calendar, {events} events: {seconds * 1000:.0f} ms ({size / 1e6:.1f} MB)")


async def through_app(url: str, events: int, rounds: int) -> None:
    db = Database(url, null_pool=True)
    async with db.session(write=True) as session:
        await import_catalog(session, load_catalog(ROOT / "catalog"))
        await session.commit()
    async with db.session(write=True) as session:
        user = await accounts.register(session, accounts.Registration(
            email="bench@b.example.cn", password="bench-password-123", name="bench", uscc="91120222MA3AGYGL1F",
            enterprise_name="Bench Ltd"))
        resource_id = (await session.execute(select(Resource.id).where(Resource.code == CODE))).scalar_one()
        user_id = (await session.execute(select(User.id).where(User.email == "bench@b.example.cn"))).scalar_one()
        now = utcnow()
        first = now - timedelta(days=20)
        rows = [
            {"resource_id": resource_id, "enterprise_id": user.enterprise_id, "user_id": user_id,
             "starts_at": first + timedelta(minutes=45 * i), "ends_at": first + timedelta(minutes=45 * i + 30),
             "status": STATUSES[i % len(STATUSES)], "purpose": "bench", "version": i % 4,
             "created_at": now, "updated_at": now - timedelta(seconds=i)}
            for i in range(events)
        ]
        await session.execute(insert(Booking), rows)
        await session.commit()
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": url}), database=db)
    path = f"/feeds/resources/{CODE}/calendar.ics"
    async with AsyncTestClient(app) as client:
        full = await client.get(path)
        assert full.status_code == 200, full.status_code
        shown = full.text.count("BEGIN:VEVENT")
        etag = full.headers["etag"]
        full_times, cond_times = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            response = await client.get(path)
            full_times.append(time.perf_counter() - started)
            assert response.status_code == 200
            started = time.perf_counter()
            response = await client.get(path, headers={"if-none-match": etag})
            cond_times.append(time.perf_counter() - started)
            assert response.status_code == 304
    await db.dispose()
    full_s, cond_s = statistics.median(full_times), statistics.median(cond_times)
    print(f"app, SQLite, {shown} events in the feed:")
    print(f"  (a) full answer (query + build + serialise): {full_s * 1000:.0f} ms")
    print(f"  (b) conditional answer (stamp query + 304):  {cond_s * 1000:.1f} ms")
    ratio = cond_s / full_s
    print(f"  ratio (b)/(a) = {ratio:.4f} (target <= 0.05): {'OK' if ratio <= 0.05 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pure(args.events, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        migrate.upgrade(url)  # runs its own event loop
        asyncio.run(through_app(url, args.events, args.rounds))


if __name__ == "__main__":
    main()
