"""Usage reports against a hand-built quarter on SQLite and PostgreSQL: every view's numbers, the
period parser, the CSV, XLSX and JSON files (byte for byte the same when run twice), the API's
authorisation, and the command line.

The quarter 2026-Q3 (local dates, Asia/Shanghai; 92 days). member_a (A) is internal to WQ-TJMAT,
the third enterprise (C) related to it; member_b (B) is external everywhere, and so are A and C at
WQ-JGU-BIO.

    session (local time)                               min   class     charge (fen)
    S1  SEM01  B  Tue 7 Jul 09:00–11:00               120   external  84 000 paid            rated 4
    S2  SEM01  A  Wed 8 Jul 13:30–14:30                60   internal  22 000 unpaid          rated 5
    S3  SEM01  C  Wed 5 Aug 09:00–10:30                90   related   64 000 paid, 14 000 refunded
    S4  SEM01  —  Thu 6 Aug 09:00–09:30 (own use)      30   internal  —
    S5  SEM01  B  Thu 6 Aug 13:30–16:30, corrected     120   external  124 000 void; 84 000 unpaid
                  to 13:30–15:30
    S6  XRD01  B  Wed 30 Sep 23:00–23:50               50   external  30 000 marked paid before payment sums were kept
    S10 FCM01  A  Mon 20 Jul 10:00–12:45              165   external  55 000 paid            rated 3 (walk-in)
    S11 FCM01  C  Wed 2 Sep 10:00:00.5–10:59:59.9      59   external  —   (59.99 minutes floor to 59)
    not counted: SEM01 30 Jun 23:30 and XRD01 1 Oct 00:10 (outside), an open session on SEM01
    no-shows: SEM01 B 12 Aug (counted), FCM01 A 2 Oct (outside)

    WQ-TJMAT  6 sessions, 470 min = external 290 + related 90 + internal 90; served A, B, C (external B)
              income 254 000 + 30 000; paid 84 000 + 50 000 + 30 000; external income 168 000 + 30 000
    WQ-JGU-BIO 2 sessions, 224 min, all external; served A and C; income 55 000, all paid

Settlements: 2026-Q3 approved (subsidy B 10 000 and C 5 000, class eaglet; award WQ-TJMAT 20 000
good, WQ-JGU-BIO 0 poor), 2026 approved (subsidy B 1 000; award WQ-TJMAT 3 000 excellent), 2026-Q2
approved and a 2026-Q3 draft (neither counted).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from facility_share.accounts import services as accounts
from facility_share.db import Database, migrate
from facility_share.db.models import (
    Booking,
    Charge,
    ManagingUnit,
    PolicyVersion,
    Rating,
    Resource,
    Settlement,
    SettlementLine,
    UnitRelation,
    UsageLog,
)
from facility_share.errors import InvalidInput
from facility_share.finance import exports, reports
from facility_share.finance.report_pages import bar_chart, column_chart, nice_ceiling, quick_periods
from facility_share.settings import load_settings
from facility_share.web.app import create_app
from tests.world import ZONE, build_world

SEM, XRD, FCM = "WQ-TJMAT-SEM01", "WQ-TJMAT-XRD01", "WQ-JGU-BIO-FCM01"
TJMAT, JGU = "WQ-TJMAT", "WQ-JGU-BIO"
THIRD_USCC = "91120222MA0000001Y"
RECORDED = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)
Q3_DAYS = 92


def at(day: date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second, micro), tzinfo=ZONE).astimezone(UTC)


# --- the period parser (pure) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "label", "kind", "start", "end"),
    [
        ("2026", "2026", "year", date(2026, 1, 1), date(2027, 1, 1)),
        (" 2026-Q3 ", "2026-Q3", "quarter", date(2026, 7, 1), date(2026, 10, 1)),
        ("2026-q4", "2026-Q4", "quarter", date(2026, 10, 1), date(2027, 1, 1)),
        ("2026-07", "2026-07", "month", date(2026, 7, 1), date(2026, 8, 1)),
        ("2026-7", "2026-07", "month", date(2026, 7, 1), date(2026, 8, 1)),
        ("2026-12", "2026-12", "month", date(2026, 12, 1), date(2027, 1, 1)),
        ("2026-07-01..2026-09-15", "2026-07-01..2026-09-15", "range", date(2026, 7, 1), date(2026, 9, 16)),
        ("2026-07-01 ~ 2026-07-01", "2026-07-01..2026-07-01", "range", date(2026, 7, 1), date(2026, 7, 2)),
        ("2026-07-15", "2026-07-15..2026-07-15", "range", date(2026, 7, 15), date(2026, 7, 16)),
        ("2025-12-01/2026-02-28", "2025-12-01..2026-02-28", "range", date(2025, 12, 1), date(2026, 3, 1)),
        # A range that is exactly a quarter, month or year is named as one.
        ("2026-07-01..2026-09-30", "2026-Q3", "quarter", date(2026, 7, 1), date(2026, 10, 1)),
        ("2026-02-01 to 2026-02-28", "2026-02", "month", date(2026, 2, 1), date(2026, 3, 1)),
        ("2024-01-01..2024-12-31", "2024", "year", date(2024, 1, 1), date(2025, 1, 1)),
    ],
)
def test_periods_that_parse(raw: str, label: str, kind: str, start: date, end: date) -> None:
    period = reports.parse_report_period(raw)
    assert (period.label, period.kind, period.start, period.end) == (label, kind, start, end)
    assert reports.parse_report_period(period.label) == period  # the label reads back as itself


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        ("", "missing", "give a year"),
        (None, "missing", "give a year"),
        ("last quarter", "format", "is not a period"),
        ("2026-Q5", "quarter", "Q1 to Q4"),
        ("2026-Q0", "quarter", "Q1 to Q4"),
        ("2026-13", "month", "01 to 12"),
        ("2026-00", "month", "01 to 12"),
        ("1999", "year", "between 2000 and 2100"),
        ("2101-Q1", "year", "between 2000 and 2100"),
        ("2026-02-30", "day", "is not a date"),
        ("2026-09-01..2026-08-31", "order", "comes before"),
        ("2001-01-01..2026-12-31", "length", "ten years"),
        ("1999-12-31..2000-01-02", "year", "between the years 2000 and 2100"),
        ("2026-07-01..", "format", "is not a period"),
        ("9" * 500, "format", "is not a period"),
    ],
)
def test_periods_that_do_not(raw: str | None, reason: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        reports.parse_report_period(raw)
    assert caught.value.message.startswith("period: ")
    assert words in caught.value.message
    assert caught.value.detail == {"field": "period", "reason": reason}
    assert len(caught.value.message) < 200  # a long input is not echoed whole


def test_months_of_a_period_are_clipped_to_it() -> None:
    assert reports.period_months(reports.parse_report_period("2026-Q3")) == [
        ("2026-07", date(2026, 7, 1), date(2026, 8, 1)),
        ("2026-08", date(2026, 8, 1), date(2026, 9, 1)),
        ("2026-09", date(2026, 9, 1), date(2026, 10, 1)),
    ]
    assert reports.period_months(reports.parse_report_period("2025-12-20..2026-01-10")) == [
        ("2025-12", date(2025, 12, 20), date(2026, 1, 1)),
        ("2026-01", date(2026, 1, 1), date(2026, 1, 11)),
    ]
    assert len(reports.period_months(reports.parse_report_period("2026"))) == 12


def test_views_formats_and_languages_are_checked() -> None:
    assert reports.check_view(None, default="unit") == "unit"
    with pytest.raises(InvalidInput, match="view: expected one of unit, resource, enterprise, month"):
        reports.check_view("units")
    with pytest.raises(InvalidInput, match="format: expected json, csv or xlsx"):
        exports.check_format("pdf")
    with pytest.raises(InvalidInput, match="lang: expected zh_CN or en"):
        exports.check_language("fr")


def test_exact_numbers_are_rounded_half_up_only_when_written() -> None:
    assert str(exports.decimal_half_up(Fraction(1, 8), 2)) == "0.13"
    assert str(exports.decimal_half_up(Fraction(5, 1000), 2)) == "0.01"
    assert str(exports.decimal_half_up(Fraction(4, 7), 4)) == "0.5714"
    assert exports.hours_text(59) == "0.98" and exports.hours_text(90) == "1.50"
    assert exports.yuan_text(123456) == "1234.56" and exports.yuan_text(5) == "0.05"


def test_any_workbook_is_written_with_the_given_time_only() -> None:
    import zipfile

    def book() -> openpyxl.Workbook:
        workbook = openpyxl.Workbook()
        workbook.active["A1"] = "结算"
        return workbook

    stamp = datetime(2026, 10, 5, 2, 0, 7, tzinfo=UTC)
    first = exports.workbook_bytes(book(), stamp)
    assert exports.workbook_bytes(book(), stamp) == first
    archive = zipfile.ZipFile(io.BytesIO(first))
    assert {info.date_time for info in archive.infolist()} == {(2026, 10, 5, 10, 0, 6)}  # district time, 2-second steps
    core = archive.read("docProps/core.xml").decode()
    assert core.count("2026-10-05T02:00:07Z") == 2  # created and modified
    assert openpyxl.load_workbook(io.BytesIO(first)).active["A1"].value == "结算"


def test_chart_geometry() -> None:
    chart = bar_chart([("A", "a", Fraction(1, 2), "50%"), ("B", "b", 2, "200%"), ("C", "c", 0, "0%")], fill="#000", reference=1)
    widths = [b.width for b in chart.bars]
    assert widths == [chart.plot_width / 4, chart.plot_width, 0]
    assert chart.reference_x == chart.label_width + chart.plot_width / 2
    assert chart.height == 16 + 3 * chart.row_height
    low = bar_chart([("A", "a", Fraction(1, 20), "5%"), ("B", "b", Fraction(1, 40), "2.5%")], fill="#000", reference=1)
    assert [b.width for b in low.bars] == [low.plot_width, low.plot_width / 2] and low.reference_x is None
    empty = bar_chart([("A", "a", 0, "0")], fill="#000")
    assert empty.bars[0].width == 0 and empty.reference_x is None
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 10, 11, 99, 101)] == [1, 1, 5, 10, 10, 20, 100, 200]
    columns = column_chart([("07", [(600, "#1", "x"), (300, "#2", "y")]), ("08", [(0, "#1", "x"), (0, "#2", "y")])])
    first = columns.columns[0].segments
    assert [s.height for s in first] == [columns.plot_height * 10 / 20, columns.plot_height * 5 / 20]  # 15 h under a 20 h axis
    assert first[0].y + first[0].height == columns.top + columns.plot_height  # stacked from the baseline
    assert columns.columns[1].segments == []
    assert [t.text for t in columns.ticks] == ["0", "5", "10", "15", "20"]
    many = column_chart([(f"{m:02d}", [(60, "#1", "x")]) for m in range(1, 37)])
    assert sum(1 for c in many.columns if c.label) == 12


def test_quick_periods() -> None:
    quick = [value for value, _label in quick_periods(date(2026, 8, 15))]
    assert quick[:5] == ["2026", "2025", "2026-Q1", "2026-Q2", "2026-Q3"]
    assert quick[-6:] == ["2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08"]
    assert all(reports.parse_report_period(value) for value in quick)


# --- whole minutes, on both databases -----------------------------------------------------------


async def test_whole_minutes_floor_as_python_does(db) -> None:  # type: ignore[no-untyped-def]
    from facility_share.db.models import Category

    base = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
    spans = [
        (base, base + timedelta(minutes=60)),
        (base.replace(microsecond=900_000), base + timedelta(minutes=30, microseconds=100_000)),  # 29.987 → 29
        (base.replace(microsecond=500_000), base + timedelta(minutes=59, seconds=59, microseconds=900_000)),  # 59.99 → 59
        (base, base + timedelta(seconds=59, microseconds=999_999)),  # 0
        (base.replace(microsecond=1), base + timedelta(minutes=1, microseconds=1)),  # exactly 1
        (base, base + timedelta(days=3, minutes=7, seconds=30)),
    ]
    async with db.session(write=True) as session:
        unit = ManagingUnit(code="WQ-M", name_zh="单位", name_en="Unit", kind="institute")
        category = Category(code="01", name_zh="类", name_en="Class")
        session.add_all([unit, category])
        await session.flush()
        resource = Resource(code="WQ-M-1", kind="instrument", unit_id=unit.id, category_id=category.id, name_zh="仪器", name_en="I")
        session.add(resource)
        await session.flush()
        logs = [UsageLog(resource_id=resource.id, started_at=a, ended_at=b, source="manager") for a, b in spans]
        session.add_all(logs)
        await session.commit()
        minutes = reports.whole_minutes(session, UsageLog.started_at, UsageLog.ended_at)
        got = (await session.execute(select(UsageLog.id, minutes).order_by(UsageLog.id))).all()
        total = (await session.execute(select(func.sum(minutes)))).scalar_one()
    assert [m for _id, m in got] == [int((b - a).total_seconds() // 60) for a, b in spans] == [60, 29, 59, 0, 1, 4327]
    assert all(type(m) is int for _id, m in got)  # whole numbers from the database, not fractions of minutes
    assert int(total) == 4476  # the sum of the floors (fractional minutes would sum to 4479.48)


# --- the quarter, on both databases --------------------------------------------------------------


class Quarter:
    """Writes the records of the docstring's quarter straight into the tables."""

    def __init__(self, session, world) -> None:  # type: ignore[no-untyped-def]
        self.session, self.world = session, world
        self.resources: dict[str, int] = {}

    async def resource(self, code: str) -> int:
        if code not in self.resources:
            self.resources[code] = (await self.session.execute(select(Resource.id).where(Resource.code == code))).scalar_one()
        return self.resources[code]

    async def usage(self, code: str, enterprise: int | None, start: datetime, end: datetime | None, *, booking: int | None = None,
                    supersedes: UsageLog | None = None) -> UsageLog:
        log = UsageLog(resource_id=await self.resource(code), enterprise_id=enterprise, booking_id=booking, started_at=start, ended_at=end,
                       source="manager", recorded_at=RECORDED, supersedes_id=supersedes.id if supersedes else None,
                       reason="corrected" if supersedes else "")
        self.session.add(log)
        await self.session.flush()
        log.session_id = supersedes.session_id if supersedes else log.id
        await self.session.flush()
        return log

    async def booking(self, code: str, member: str, start: datetime, minutes: int, status: str = "completed") -> int:
        booking = Booking(resource_id=await self.resource(code), enterprise_id=self.world.enterprise_ids[member],
                          user_id=self.world[member].user_id, starts_at=start, ends_at=start + timedelta(minutes=minutes),
                          status=status, customer_class="district", created_at=RECORDED, updated_at=RECORDED)
        self.session.add(booking)
        await self.session.flush()
        return booking.id

    async def charge(self, log: UsageLog, fen: int, status: str = "unpaid", *, paid: int = 0, refunded: int = 0) -> None:
        self.session.add(Charge(kind="service", usage_log_id=log.id, booking_id=log.booking_id, resource_id=log.resource_id,
                                enterprise_id=log.enterprise_id, service_date=log.started_at, customer_class="district",
                                total_fen=fen, status=status, paid_fen=paid, refunded_fen=refunded, created_at=RECORDED,
                                updated_at=RECORDED))

    async def rating(self, code: str, member: str, stars: int, *, booking: int | None = None, walk_in: UsageLog | None = None) -> None:
        self.session.add(Rating(booking_id=booking, usage_session_id=walk_in.session_id if walk_in else None,
                                resource_id=await self.resource(code), enterprise_id=self.world.enterprise_ids[member],
                                user_id=self.world[member].user_id, stars=stars, created_at=RECORDED))

    async def settlement(self, label: str, kind: str, start: date, end: date, lines: list[tuple[str, int, str, str, int]], *,
                         approve: bool, policy_id: int) -> None:
        s = Settlement(period_label=label, period_kind=kind, period_start=start, period_end=end, policy_version_id=policy_id,
                       cutoff_at=RECORDED, subsidy_total_fen=sum(x[4] for x in lines if x[0] == "subsidy"),
                       award_total_fen=sum(x[4] for x in lines if x[0] == "award"))
        self.session.add(s)
        await self.session.flush()
        for position, (line_kind, subject_id, code, category, amount) in enumerate(lines):
            self.session.add(SettlementLine(settlement_id=s.id, kind=line_kind, position=position, subject_id=subject_id, subject_code=code,
                                            subject_name=code, category=category, amount_fen=amount, before_budget_fen=amount))
        await self.session.flush()
        if approve:
            s.status, s.approved_at = "approved", RECORDED + timedelta(days=1)
            await self.session.flush()


@pytest.fixture
async def quarter(imported):  # type: ignore[no-untyped-def]
    db = imported
    world = await build_world(db)
    async with db.session(write=True) as session:
        units = dict((await session.execute(select(ManagingUnit.code, ManagingUnit.id).where(ManagingUnit.code.in_((TJMAT, JGU))))).all())
        a, b = world.enterprise_ids["member_a"], world.enterprise_ids["member_b"]
        user = await accounts.register(session, accounts.Registration(
            email="c@c.example.cn", password="correct horse battery", name="third", uscc=THIRD_USCC, enterprise_name="Group sister Ltd"))
        c = user.enterprise_id
        world.enterprise_ids["third"] = c
        session.add(UnitRelation(enterprise_id=a, unit_id=units[TJMAT], relation="internal"))
        session.add(UnitRelation(enterprise_id=c, unit_id=units[TJMAT], relation="related"))
        await session.flush()
        q = Quarter(session, world)

        b1 = await q.booking(SEM, "member_b", at(date(2026, 7, 7), 9), 120)
        s1 = await q.usage(SEM, b, at(date(2026, 7, 7), 9), at(date(2026, 7, 7), 11), booking=b1)
        await q.charge(s1, 84_000, "paid", paid=84_000)
        await q.rating(SEM, "member_b", 4, booking=b1)
        b2 = await q.booking(SEM, "member_a", at(date(2026, 7, 8), 13, 30), 60)
        s2 = await q.usage(SEM, a, at(date(2026, 7, 8), 13, 30), at(date(2026, 7, 8), 14, 30), booking=b2)
        await q.charge(s2, 22_000)
        await q.rating(SEM, "member_a", 5, booking=b2)
        s3 = await q.usage(SEM, c, at(date(2026, 8, 5), 9), at(date(2026, 8, 5), 10, 30))
        await q.charge(s3, 64_000, "paid", paid=64_000, refunded=14_000)
        await q.usage(SEM, None, at(date(2026, 8, 6), 9), at(date(2026, 8, 6), 9, 30))
        s5 = await q.usage(SEM, b, at(date(2026, 8, 6), 13, 30), at(date(2026, 8, 6), 16, 30))
        await q.charge(s5, 124_000, "void")
        s5b = await q.usage(SEM, b, at(date(2026, 8, 6), 13, 30), at(date(2026, 8, 6), 15, 30), supersedes=s5)
        await q.charge(s5b, 84_000)
        s6 = await q.usage(XRD, b, at(date(2026, 9, 30), 23), at(date(2026, 9, 30), 23, 50))
        await q.charge(s6, 30_000, "paid")  # marked paid before payment sums were kept: paid_fen 0
        s10 = await q.usage(FCM, a, at(date(2026, 7, 20), 10), at(date(2026, 7, 20), 12, 45))
        await q.charge(s10, 55_000, "paid", paid=55_000)
        await q.rating(FCM, "member_a", 3, walk_in=s10)
        await q.usage(FCM, c, at(date(2026, 9, 2), 10, 0, 0, 500_000), at(date(2026, 9, 2), 10, 59, 59, 900_000))
        # Outside the quarter by a few minutes, and a session still open.
        outside = await q.usage(SEM, b, at(date(2026, 6, 30), 23, 30), at(date(2026, 6, 30), 23, 59))
        await q.charge(outside, 20_000)
        await q.usage(XRD, b, at(date(2026, 10, 1), 0, 10), at(date(2026, 10, 1), 1))
        await q.usage(SEM, b, at(date(2026, 9, 10), 9), None)
        await q.booking(SEM, "member_b", at(date(2026, 8, 12), 14), 60, status="no_show")
        await q.booking(FCM, "member_a", at(date(2026, 10, 2), 9), 60, status="no_show")

        policy = PolicyVersion(code="wuqing-default", version="t1", effective_from=date(2026, 1, 1), digest="0" * 64, document={
            "subsidy": {"classes": {"eaglet": {"name_zh": "雏鹰企业", "name_en": "Eaglet enterprise"}}},
            "award": {"grades": [{"code": "excellent", "name_zh": "优秀", "name_en": "Excellent"},
                                 {"code": "good", "name_zh": "良好", "name_en": "Good"},
                                 {"code": "poor", "name_zh": "较差", "name_en": "Poor"}]},
        })
        session.add(policy)
        await session.flush()
        q3 = [("subsidy", b, "B", "eaglet", 10_000), ("subsidy", c, "C", "eaglet", 5_000),
              ("award", units[TJMAT], TJMAT, "good", 20_000), ("award", units[JGU], JGU, "poor", 0)]
        await q.settlement("2026-Q3", "quarter", date(2026, 7, 1), date(2026, 10, 1), q3, approve=True, policy_id=policy.id)
        await q.settlement("2026", "year", date(2026, 1, 1), date(2027, 1, 1),
                           [("subsidy", b, "B", "eaglet", 1_000), ("award", units[TJMAT], TJMAT, "excellent", 3_000)],
                           approve=True, policy_id=policy.id)
        await q.settlement("2026-Q2", "quarter", date(2026, 4, 1), date(2026, 7, 1), [("subsidy", b, "B", "eaglet", 99_000)],
                           approve=True, policy_id=policy.id)
        await q.settlement("2026-Q3", "quarter", date(2026, 7, 1), date(2026, 10, 1), [("subsidy", b, "B", "eaglet", 77_000)],
                           approve=False, policy_id=policy.id)
        await session.commit()
    return db, world


async def q3_report(db: Database, period: str = "2026-Q3") -> reports.UsageReport:
    async with db.session() as session:
        return await reports.build_report(session, reports.parse_report_period(period))


def row(report: reports.UsageReport, view: str, **labels: object) -> reports.Row:
    found = [r for r in report.views[view].rows if all(r.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (view, labels, len(found))
    return found[0]


def figures(m: reports.Measures) -> tuple:
    return (m.sessions, m.effective_minutes, m.external_minutes, m.related_minutes, m.internal_minutes, m.enterprises_served,
            m.external_enterprises, m.income_fen, m.paid_income_fen, m.external_income_fen, m.no_shows, m.ratings, m.rating_sum,
            m.granted_fen)


async def test_the_resource_view_by_hand(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    report = await q3_report(db)
    sem = row(report, "resource", resource_code=SEM)
    assert sem.labels["unit_code"] == TJMAT and sem.labels["open_for_sharing"] is True
    assert figures(sem.measures) == (5, 420, 240, 90, 90, 3, 1, 254_000, 134_000, 168_000, 1, 2, 9, 0)
    assert sem.measures.sharing_rate == Fraction(240, 420)
    assert sem.measures.rated_hours == Fraction(1400 * Q3_DAYS, 365)
    assert sem.measures.utilisation == Fraction(420, 60) / Fraction(1400 * Q3_DAYS, 365)
    assert sem.measures.average_rating == Fraction(9, 2)
    xrd = row(report, "resource", resource_code=XRD)
    assert figures(xrd.measures) == (1, 50, 50, 0, 0, 1, 1, 30_000, 30_000, 30_000, 0, 0, 0, 0)
    assert xrd.measures.average_rating is None
    fcm = row(report, "resource", resource_code=FCM)
    assert figures(fcm.measures) == (2, 224, 224, 0, 0, 2, 2, 55_000, 55_000, 55_000, 0, 1, 3, 0)
    quiet = row(report, "resource", resource_code="WQ-TJMAT-UTM01")
    assert figures(quiet.measures) == (0,) * 14 and quiet.measures.sharing_rate is None
    keys = [(r.labels["unit_code"], r.labels["resource_code"]) for r in report.views["resource"].rows]
    assert keys == sorted(keys) and len(keys) > 50


async def test_the_unit_view_by_hand(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    report = await q3_report(db)
    tjmat = row(report, "unit", unit_code=TJMAT)
    assert (tjmat.labels["resources"], tjmat.labels["open_resources"]) == (5, 5)
    assert figures(tjmat.measures) == (6, 470, 290, 90, 90, 3, 1, 284_000, 164_000, 198_000, 1, 2, 9, 23_000)
    # SEM01, XRD01, TGA01, UTM01 at 1400 h a year and the pilot workshop at 2000, for 92 days.
    assert tjmat.measures.rated_hour_days == (4 * 1400 + 2000) * Q3_DAYS
    assert tjmat.measures.utilisation == Fraction(470 * 365, (4 * 1400 + 2000) * Q3_DAYS * 60)
    assert tjmat.measures.sharing_rate == Fraction(290, 470)
    jgu = row(report, "unit", unit_code=JGU)
    assert figures(jgu.measures) == (2, 224, 224, 0, 0, 2, 2, 55_000, 55_000, 55_000, 0, 1, 3, 0)
    others = [r for r in report.views["unit"].rows if r.labels["unit_code"] not in (TJMAT, JGU)]
    assert others and all(r.measures.sessions == 0 and r.measures.granted_fen == 0 for r in others)
    assert [r.labels["unit_code"] for r in report.views["unit"].rows] == sorted(r.labels["unit_code"] for r in report.views["unit"].rows)
    t = report.totals
    assert (t.sessions, t.effective_minutes, t.external_minutes, t.related_minutes, t.internal_minutes) == (8, 694, 514, 90, 90)
    assert (t.enterprises_served, t.external_enterprises, t.income_fen, t.no_shows) == (3, 3, 339_000, 1)
    assert (report.subsidy_total_fen, report.award_total_fen) == (16_000, 23_000)


async def test_the_enterprise_view_by_hand(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    report = await q3_report(db)
    a = row(report, "enterprise", uscc="91120222MA3AGYGL1F")
    b = row(report, "enterprise", uscc="91120222MAW7WKKH6D")
    c = row(report, "enterprise", uscc=THIRD_USCC)
    assert figures(a.measures) == (2, 225, 165, 0, 60, 0, 0, 77_000, 55_000, 0, 0, 2, 8, 0)
    assert (a.labels["resources_used"], a.labels["units_used"], a.labels["enterprise_class"]) == (2, 2, "eaglet")
    assert figures(b.measures) == (3, 290, 290, 0, 0, 0, 0, 198_000, 114_000, 0, 1, 1, 4, 11_000)
    assert (b.labels["resources_used"], b.labels["units_used"]) == (2, 1)
    assert figures(c.measures) == (2, 149, 59, 90, 0, 0, 0, 64_000, 50_000, 0, 0, 0, 0, 5_000)
    assert (c.labels["resources_used"], c.labels["units_used"], c.labels["enterprise_class"]) == (2, 2, "")
    assert len(report.views["enterprise"].rows) == 3  # enterprises with nothing in the period are left out
    assert [r.labels["uscc"] for r in report.views["enterprise"].rows] == sorted([THIRD_USCC, "91120222MA3AGYGL1F", "91120222MAW7WKKH6D"])


async def test_the_month_view_by_hand(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    report = await q3_report(db)
    july, august, september = (row(report, "month", unit_code=TJMAT, month=m) for m in ("2026-07", "2026-08", "2026-09"))
    assert figures(july.measures) == (2, 180, 120, 0, 60, 2, 1, 106_000, 84_000, 84_000, 0, 2, 9, 0)
    assert figures(august.measures) == (3, 240, 120, 90, 30, 2, 1, 148_000, 50_000, 84_000, 1, 0, 0, 0)
    # The session at 23:00 on 30 September (15:00 UTC) is September's, by the district's clock.
    assert figures(september.measures) == (1, 50, 50, 0, 0, 1, 1, 30_000, 30_000, 30_000, 0, 0, 0, 0)
    assert (july.labels["days"], august.labels["days"], september.labels["days"]) == (31, 31, 30)
    assert july.measures.rated_hour_days == (4 * 1400 + 2000) * 31
    jgu = [row(report, "month", unit_code=JGU, month=m).measures for m in ("2026-07", "2026-08", "2026-09")]
    assert [(m.effective_minutes, m.enterprises_served) for m in jgu] == [(165, 1), (0, 0), (59, 1)]
    units = len(report.views["unit"].rows)
    assert len(report.views["month"].rows) == 3 * units
    monthly = reports.monthly_totals(report)
    assert [(label, m.effective_minutes, m.external_minutes) for label, m in monthly] == [
        ("2026-07", 345, 285), ("2026-08", 240, 120), ("2026-09", 109, 109)]


async def test_settlements_counted_and_granted_by_category(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    report = await q3_report(db)
    assert [(s.label, s.subsidy_fen, s.award_fen) for s in report.settlements] == [("2026", 1_000, 3_000), ("2026-Q3", 15_000, 20_000)]
    assert [(c.kind, c.category, c.lines, c.amount_fen, c.name_zh) for c in report.categories] == [
        ("award", "excellent", 1, 3_000, "优秀"), ("award", "good", 1, 20_000, "良好"), ("award", "poor", 1, 0, "较差"),
        ("subsidy", "eaglet", 3, 16_000, "雏鹰企业"),
    ]
    # Q2 overlaps neither July nor the quarter; the year settlement overlaps a single month too.
    july = await q3_report(db, "2026-07")
    assert (july.subsidy_total_fen, july.award_total_fen) == (16_000, 23_000)
    june = await q3_report(db, "2026-06")
    assert (june.subsidy_total_fen, june.award_total_fen) == (100_000, 3_000)
    empty = await q3_report(db, "2025")
    assert (empty.settlements, empty.categories, empty.subsidy_total_fen) == ((), (), 0)
    assert empty.data_as_of >= datetime(2025, 1, 1, tzinfo=UTC)


async def test_a_report_is_the_same_twice_and_stamped_with_its_data(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    first, second = await q3_report(db), await q3_report(db)
    assert first.data_as_of == second.data_as_of >= RECORDED + timedelta(days=1)
    assert exports.to_json(first) == exports.to_json(second)
    assert exports.to_csv(first, "enterprise") == exports.to_csv(second, "enterprise")
    assert exports.to_xlsx(first) == exports.to_xlsx(second)
    assert exports.to_xlsx(first, lang="en") == exports.to_xlsx(second, lang="en")


async def test_csv(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    report = await q3_report(db)
    data = exports.to_csv(report, "unit")
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    head = rows[0]
    assert head[:4] == ["单位代码", "管理单位", "仪器设备数", "开放共享数"]
    assert {"有效机时", "对外服务机时", "内部机时", "共享率", "利用率", "服务企业数", "收入", "爽约次数", "平均评分", "已发放奖励"} <= set(head)
    tjmat = dict(zip(head, next(r for r in rows if r[0] == TJMAT), strict=True))
    assert (tjmat["有效机时"], tjmat["对外服务机时"], tjmat["内部机时"], tjmat["关联单位机时"]) == ("7.83", "4.83", "1.50", "1.50")
    assert (tjmat["共享率"], tjmat["收入"], tjmat["已收款"], tjmat["已发放奖励"]) == ("0.6170", "2840.00", "1640.00", "230.00")
    assert (tjmat["平均评分"], tjmat["服务企业数"], tjmat["爽约次数"]) == ("4.50", "3", "1")
    assert tjmat["利用率"] == str(exports.decimal_half_up(Fraction(470 * 365, 7600 * 92 * 60), 4))
    english = list(csv.reader(io.StringIO(exports.to_csv(report, "enterprise", lang="en").decode("utf-8-sig"))))
    assert english[0][:3] == ["USCC", "Enterprise", "Enterprise class"]
    b = next(r for r in english if r[0] == "91120222MAW7WKKH6D")
    assert b[2] == "Eaglet" and b[-1] == "110.00"
    months = list(csv.reader(io.StringIO(exports.to_csv(report, "month").decode("utf-8-sig"))))
    assert months[0][:4] == ["月份", "单位代码", "管理单位", "天数"] and len(months) == 1 + len(report.views["month"].rows)


async def test_json(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    report = await q3_report(db)
    body = json.loads(exports.to_json(report))
    assert body["period"] == {"label": "2026-Q3", "kind": "quarter", "first_day": "2026-07-01", "last_day": "2026-09-30",
                              "days": 92, "timezone": "Asia/Shanghai"}
    assert list(body["views"]) == ["unit", "resource", "enterprise", "month"]
    unit = next(r for r in body["views"]["unit"]["rows"] if r["unit_code"] == TJMAT)
    assert (unit["effective_minutes"], unit["external_minutes"], unit["income_fen"], unit["award_granted_fen"]) == (470, 290, 284_000, 23_000)
    assert unit["effective_hours"] == 470 / 60 and unit["sharing_rate"] == 290 / 470 and unit["average_rating"] == 4.5
    assert unit["unit_name_en"]
    assert body["totals"]["subsidy_granted_fen"] == 16_000 and body["totals"]["external_enterprises"] == 3
    assert body["views"]["unit"]["columns"][0] == {"key": "unit_code", "label": "单位代码", "kind": "code"}
    assert [s["label"] for s in body["settlements"]] == ["2026", "2026-Q3"]
    one = json.loads(exports.to_json(report, view="enterprise", lang="en"))
    assert list(one["views"]) == ["enterprise"] and one["views"]["enterprise"]["title"] == "By enterprise"
    b = next(r for r in one["views"]["enterprise"]["rows"] if r["uscc"] == "91120222MAW7WKKH6D")
    assert (b["subsidy_granted_fen"], b["no_shows"], b["enterprise_class"]) == (11_000, 1, "eaglet")


async def test_xlsx(quarter) -> None:  # type: ignore[no-untyped-def]
    db, _world = quarter
    report = await q3_report(db)
    book = openpyxl.load_workbook(io.BytesIO(exports.to_xlsx(report)))
    assert book.sheetnames == ["概要", "按管理单位", "按仪器或车间", "按企业", "按月份"]
    summary = book["概要"]
    assert (summary["A1"].value, summary["B1"].value) == ("使用情况报表", "2026-Q3")
    labels = {summary.cell(row=r, column=1).value: summary.cell(row=r, column=2) for r in range(1, summary.max_row + 1)}
    assert labels["开始日期"].value == "2026-07-01" and labels["结束日期"].value == "2026-09-30" and labels["天数"].value == 92
    assert labels["数据截至"].value == report.data_as_of.astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S")
    assert labels["已发放补贴"].value == 160 and labels["已发放补贴"].number_format == "#,##0.00"
    assert book.properties.created == book.properties.modified == report.data_as_of.astimezone(UTC).replace(tzinfo=None)

    units = book["按管理单位"]
    head = [c.value for c in units[1]]
    assert head[:2] == ["单位代码", "管理单位"] and "收入" in head and "共享率" in head
    assert units.freeze_panes == "A2" and units["A1"].font.bold
    tjmat = next(r for r in units.iter_rows(min_row=2) if r[0].value == TJMAT)
    income = tjmat[head.index("收入")]
    assert income.value == 2840 and income.number_format == "#,##0.00"
    rate = tjmat[head.index("共享率")]
    assert rate.value == pytest.approx(290 / 470, abs=1e-12) and rate.number_format == "0.00%"
    hours = tjmat[head.index("有效机时")]
    assert hours.value == pytest.approx(470 / 60) and hours.number_format == "#,##0.00"
    assert tjmat[head.index("已发放奖励")].value == 230
    assert units.column_dimensions["B"].width > units.column_dimensions["A"].width  # Chinese names are wider
    assert book["按月份"].max_row == 1 + len(report.views["month"].rows)

    english = openpyxl.load_workbook(io.BytesIO(exports.to_xlsx(report, views=["enterprise"], lang="en")))
    assert english.sheetnames == ["Summary", "By enterprise"]
    assert [c.value for c in english["By enterprise"][1]][:3] == ["USCC", "Enterprise", "Enterprise class"]


# --- the API -------------------------------------------------------------------------------------


async def test_the_api_for_each_role(quarter, database_url: str) -> None:  # type: ignore[no-untyped-def]
    db, world = quarter
    app = create_app(load_settings({"FACILITY_SHARE_DATABASE_URL": database_url}), database=db)
    async with AsyncTestClient(app) as client:
        def auth(role: str) -> dict[str, str]:
            return {"authorization": f"Bearer {world.tokens[role]}"}

        params = {"period": "2026-Q3", "view": "unit"}
        for role in ("finance", "admin"):
            response = await client.get("/api/v1/finance/reports", params=params, headers=auth(role))
            assert response.status_code == 200, (role, response.text[:300])
            assert response.headers["content-type"].startswith("application/json")
            body = response.json()
            assert list(body["views"]) == ["unit"]
            assert next(r for r in body["views"]["unit"]["rows"] if r["unit_code"] == TJMAT)["income_fen"] == 284_000
        for role in ("member_a", "manager", "other_manager", "unverified"):
            assert (await client.get("/api/v1/finance/reports", params=params, headers=auth(role))).status_code == 403, role
        assert (await client.get("/api/v1/finance/reports", params=params)).status_code == 401

        csv_response = await client.get("/api/v1/finance/reports", params={"period": "2026-Q3", "format": "csv", "view": "month"},
                                        headers=auth("finance"))
        assert csv_response.status_code == 200
        assert csv_response.headers["content-type"] == "text/csv; charset=utf-8"
        assert csv_response.headers["content-disposition"] == 'attachment; filename="usage-report-2026-Q3-month.csv"'
        assert csv_response.content.startswith(b"\xef\xbb\xbf\xe6\x9c\x88\xe4\xbb\xbd")  # BOM, 月份
        again = await client.get("/api/v1/finance/reports", params={"period": "2026-Q3", "format": "csv", "view": "month"},
                                 headers=auth("finance"))
        assert again.content == csv_response.content
        xlsx = await client.get("/api/v1/finance/reports", params={"period": "2026-07-01..2026-09-30", "format": "xlsx", "lang": "en"},
                                headers=auth("admin"))
        assert xlsx.status_code == 200 and xlsx.headers["content-disposition"].endswith('filename="usage-report-2026-Q3.xlsx"')
        assert openpyxl.load_workbook(io.BytesIO(xlsx.content)).sheetnames[0] == "Summary"

        for bad, message in (
            ({"period": "2026-Q5"}, "Q1 to Q4"),
            ({}, "give a year"),
            ({"period": "2026", "format": "pdf"}, "format: expected json, csv or xlsx"),
            ({"period": "2026", "view": "everything"}, "view: expected one of"),
            ({"period": "2026", "lang": "fr"}, "lang: expected zh_CN or en"),
            ({"period": "2026-10-01..2026-09-01"}, "comes before"),
        ):
            response = await client.get("/api/v1/finance/reports", params=bad, headers=auth("finance"))
            assert response.status_code == 400, bad
            assert message in response.json()["error"]["message"]


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.sqlite3"
    monkeypatch.setenv("FACILITY_SHARE_DATABASE_URL", f"sqlite:///{path}")
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")

    async def one_session() -> None:
        database = Database(f"sqlite+aiosqlite:///{path}", null_pool=True)
        try:
            async with database.session(write=True) as session:
                unit = ManagingUnit(code="WQ-T", name_zh="测试单位", name_en="Test unit", kind="institute")
                session.add(unit)
                await session.flush()
                from facility_share.db.models import Category

                category = Category(code="01", name_zh="分析仪器", name_en="Analytical")
                session.add(category)
                await session.flush()
                resource = Resource(code="WQ-T-1", kind="instrument", unit_id=unit.id, category_id=category.id, name_zh="仪器",
                                    name_en="Instrument", rated_hours_per_year=1460)
                session.add(resource)
                await session.flush()
                session.add(UsageLog(resource_id=resource.id, started_at=at(date(2026, 7, 1), 9), ended_at=at(date(2026, 7, 1), 12),
                                     source="manager", recorded_at=RECORDED))
                await session.commit()
        finally:
            await database.dispose()

    asyncio.run(one_session())
    return tmp_path


def test_the_command_writes_each_format(cli_database: Path) -> None:
    runner = CliRunner()
    target = cli_database / "q3.xlsx"
    result = runner.invoke(main_command(), ["finance", "report", "--period", "2026-Q3", "--format", "xlsx", "-o", str(target)])
    assert result.exit_code == 0, result.output
    book = openpyxl.load_workbook(target)
    assert book.sheetnames == ["概要", "按管理单位", "按仪器或车间", "按企业", "按月份"]
    unit = [c.value for c in list(book["按管理单位"].iter_rows(min_row=2))[0]]
    assert unit[:2] == ["WQ-T", "测试单位"] and 3.0 in unit  # three hours
    again = cli_database / "again.xlsx"
    assert runner.invoke(main_command(), ["finance", "report", "--period", "2026-Q3", "--format", "xlsx", "-o", str(again)]).exit_code == 0
    assert again.read_bytes() == target.read_bytes()

    result = runner.invoke(main_command(), ["finance", "report", "--period", "2026-07", "--format", "csv", "--view", "resource", "--lang", "en"])
    assert result.exit_code == 0
    lines = result.stdout_bytes.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("Resource code,Instrument or workshop,Unit code") and lines[1].startswith("WQ-T-1,Instrument,WQ-T,Yes,1,3.00")
    result = runner.invoke(main_command(), ["finance", "report", "--period", "2026", "--format", "json", "-o", str(cli_database / "y.json")])
    assert result.exit_code == 0
    assert json.loads((cli_database / "y.json").read_text())["totals"]["effective_minutes"] == 180

    bad = runner.invoke(main_command(), ["finance", "report", "--period", "2026-Q5", "-o", str(cli_database / "x.xlsx")])
    assert bad.exit_code == 1 and "Q1 to Q4" in bad.output and not (cli_database / "x.xlsx").exists()
    no_file = runner.invoke(main_command(), ["finance", "report", "--period", "2026"])
    assert no_file.exit_code == 1 and "XLSX workbook is binary" in no_file.output


def main_command():  # type: ignore[no-untyped-def]
    from facility_share.cli import main

    return main
