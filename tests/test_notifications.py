"""E-mail notifications against a real SMTP server in the test process (aiosmtpd), on SQLite and
PostgreSQL: who gets which message, in which language, the approval's calendar attachment,
retries with backoff when the server refuses, and nothing at all for a rolled-back change."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from facility_share.bookings import services as bookings
from facility_share.db import Database
from facility_share.db.models import Job, User
from facility_share.jobs import enqueue
from facility_share.jobs.runner import Worker, load_handlers
from facility_share.notifications import messages
from facility_share.settings import load_settings
from tests.live import free_port
from tests.test_feeds import check_ics
from tests.world import build_world, local, next_weekday

load_handlers()

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
DAY = next_weekday(NOW)
SEM = "WQ-TJMAT-SEM01"  # needs the unit's approval


class Inbox:
    """An SMTP server's mailbox; ``refuse`` DATA commands are answered 451 (try again later)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refuse = 0
        self.refused = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        if self.refuse > 0:
            self.refuse -= 1
            self.refused += 1
            return "451 4.3.0 Mailbox busy, try again later"
        parsed = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for rcpt, message in self.messages if address in rcpt]


def subject(message: EmailMessage) -> str:
    # A long subject is folded onto the next line; unfolded, it keeps that line's leading space.
    return str(message["Subject"]).strip()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def setup(imported, smtp):  # type: ignore[no-untyped-def]
    inbox, port = smtp
    world = await build_world(imported)
    async with imported.session(write=True) as session:
        await session.execute(update(User).where(User.email == "a@a.example.cn").values(locale="en"))
        await session.commit()
    settings = load_settings({
        "FACILITY_SHARE_DATABASE_URL": imported.url, "FACILITY_SHARE_SMTP_HOST": "127.0.0.1", "FACILITY_SHARE_SMTP_PORT": str(port),
        "FACILITY_SHARE_SMTP_STARTTLS": "false", "FACILITY_SHARE_SMTP_FROM": "武清共享仪器平台 <noreply@share.example.cn>",
        "FACILITY_SHARE_PUBLIC_URL": "https://share.example.cn",
    })
    assert settings.email_backend == "smtp"
    return imported, world, inbox, Worker(imported, settings, periodic=[], backoff_base=60)


async def request(db: Database, world, hour: int = 9) -> int:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        booking = await bookings.request_booking(session, world["member_a"], bookings.BookingInput(
            SEM, local(DAY, hour), local(DAY, hour + 1), purpose="XRD 物相分析"), max_open_requests=10, now=NOW)
        await session.commit()
        return booking.id


async def decide(db: Database, world, booking_id: int, action: str, reason: str = "") -> None:  # type: ignore[no-untyped-def]
    async with db.session(write=True) as session:
        await bookings.change_status(session, world["manager"], booking_id, action, reason=reason, now=NOW)
        await session.commit()


def body(message: EmailMessage, kind: str = "plain") -> str:
    part = message.get_body((kind,))
    assert part is not None
    return part.get_content()


async def test_requests_go_to_the_units_managers_and_decisions_to_the_booker_each_in_their_language(setup) -> None:  # type: ignore[no-untyped-def]
    db, world, inbox, worker = setup
    booking_id = await request(db, world)
    await worker.drain()
    assert [rcpt for rcpt, _ in inbox.messages] == [["manager@t.example.cn"]]  # not the other unit's manager, not the booker
    (to_manager,) = inbox.to("manager@t.example.cn")
    assert subject(to_manager).startswith(f"新的预约申请 #{booking_id}：")
    assert to_manager["From"].addresses[0].addr_spec == "noreply@share.example.cn"
    assert to_manager["Content-Language"] == "zh-CN" and to_manager["Auto-Submitted"] == "auto-generated"
    text = body(to_manager)
    assert "Manager，您好：" in text and "member_a Ltd 申请预约" in text and "XRD 物相分析" in text
    assert "审批截止" in text and "https://share.example.cn/manage/requests" in text
    assert "https://share.example.cn/manage/requests" in body(to_manager, "html")

    await decide(db, world, booking_id, "approve")
    await worker.drain()
    (approved,) = inbox.to("a@a.example.cn")
    assert subject(approved).startswith(f"Booking #{booking_id} approved: ")
    assert approved["Content-Language"] == "en"
    text = body(approved)
    assert "Hello member_a," in text and "Your booking has been approved" in text
    assert f"{local(DAY, 9).astimezone(messages.ZoneInfo('Asia/Shanghai')):%Y-%m-%d} 09:00–10:00" in text
    (attachment,) = list(approved.iter_attachments())
    assert attachment.get_content_type() == "text/calendar" and attachment.get_param("method") == "PUBLISH"
    assert attachment.get_filename() == f"booking-{booking_id}.ics"
    ics = attachment.get_content()
    parsed = check_ics(ics)
    assert str(parsed["METHOD"]) == "PUBLISH"
    (event,) = parsed.walk("VEVENT")
    assert str(event["UID"]) == f"booking-{booking_id}@facility-share"
    assert event.decoded("DTSTART") == local(DAY, 9) and event.decoded("DTEND") == local(DAY, 10)
    assert str(event["STATUS"]) == "CONFIRMED" and int(event["SEQUENCE"]) == 1
    assert len(inbox.messages) == 2  # the managers hear nothing of the approval


async def test_rejection_with_its_reason_and_expiry_reach_the_booker(setup) -> None:  # type: ignore[no-untyped-def]
    db, world, inbox, worker = setup
    rejected = await request(db, world, 9)
    expiring = await request(db, world, 11)
    await decide(db, world, rejected, "reject", reason="设备检修 / under maintenance")
    async with db.session(write=True) as session:  # the deadline of the other one passes
        await session.execute(update(bookings.Booking).where(bookings.Booking.id == expiring)
                              .values(decision_deadline=datetime.now(UTC) - timedelta(minutes=1)))
        await enqueue(session, "bookings.expire", {})
        await session.commit()
    await worker.drain()
    subjects = sorted(subject(m) for m in inbox.to("a@a.example.cn"))
    assert subjects[0].startswith(f"Booking #{rejected} rejected: ")
    assert subjects[1].startswith(f"Booking request #{expiring} expired: ")
    (rejection,) = [m for m in inbox.to("a@a.example.cn") if "rejected" in subject(m)]
    assert "Reason: 设备检修 / under maintenance" in body(rejection)
    assert not list(rejection.iter_attachments())
    # A second sweep finds nothing to expire and notifies nobody again.
    async with db.session(write=True) as session:
        await enqueue(session, "bookings.expire", {})
        await session.commit()
    before = len(inbox.messages)
    await worker.drain()
    assert len(inbox.messages) == before


async def test_a_rolled_back_change_sends_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    db, world, inbox, worker = setup
    async with db.session(write=True) as session:
        await bookings.request_booking(session, world["member_a"], bookings.BookingInput(SEM, local(DAY, 9), local(DAY, 10)),
                                       max_open_requests=10, now=NOW)
        await session.rollback()
    assert await worker.drain() == 0
    assert inbox.messages == []


async def test_a_refused_send_is_retried_with_backoff_and_delivered_once(setup) -> None:  # type: ignore[no-untyped-def]
    db, world, inbox, worker = setup
    inbox.refuse = 2
    booking_id = await request(db, world)
    now = datetime.now(UTC) + timedelta(seconds=5)  # after the e-mail job is queued
    await worker.drain(now=now)  # notify, then the first send, refused
    async with db.session() as session:
        (job,) = (await session.execute(select(Job).where(Job.kind == "email.send"))).scalars()
    assert (job.status, job.attempts) == ("failed", 1) and "451" in job.last_error
    assert timedelta(seconds=30) <= job.run_at - now <= timedelta(seconds=60)  # backoff base 60 s, with jitter
    assert await worker.drain(now=now + timedelta(seconds=29)) == 0  # not yet
    await worker.drain(now=job.run_at)  # refused again: twice as long now
    async with db.session() as session:
        job2 = await session.get(Job, job.id)
    assert (job2.status, job2.attempts) == ("failed", 2)
    assert timedelta(seconds=60) <= job2.run_at - job.run_at <= timedelta(seconds=120)
    await worker.drain(now=job2.run_at)
    async with db.session() as session:
        job3 = await session.get(Job, job.id)
    assert (job3.status, job3.attempts) == ("done", 3)
    assert inbox.refused == 2 and len(inbox.messages) == 1
    (delivered,) = inbox.to("manager@t.example.cn")
    assert delivered["Message-ID"] == job3.result["message_id"] == job.payload["message_id"]
    assert f"#{booking_id}" in subject(delivered)


async def test_reminders_are_sent_once_before_the_slot(setup) -> None:  # type: ignore[no-untyped-def]
    db, world, inbox, worker = setup
    booking_id = await request(db, world)
    await decide(db, world, booking_id, "approve")
    await worker.drain()
    inbox.messages.clear()
    early = local(DAY, 9) - timedelta(hours=30)
    soon = local(DAY, 9) - timedelta(hours=20)
    for at in (early, soon, soon + timedelta(minutes=1), soon + timedelta(hours=2)):
        async with db.session(write=True) as session:
            await enqueue(session, "notifications.reminders", {})
            await session.commit()
        await worker.drain(now=at)
    (reminder,) = inbox.to("a@a.example.cn")
    assert subject(reminder).startswith("Reminder: ") and "09:00–10:00" in subject(reminder)
    assert "Your booking starts within 24 hours." in body(reminder)
    assert len(inbox.messages) == 1


async def test_a_charge_due_goes_to_the_enterprises_users(setup) -> None:  # type: ignore[no-untyped-def]
    from facility_share.usage import services as usage

    db, world, inbox, worker = setup
    booking_id = await request(db, world)
    await decide(db, world, booking_id, "approve")
    await worker.drain()
    inbox.messages.clear()
    async with db.session(write=True) as session:
        await usage.check_in(session, world["manager"], booking_id, now=local(DAY, 9))
        await session.commit()
    async with db.session(write=True) as session:
        _log, charge = await usage.check_out(session, world["manager"], booking_id, now=local(DAY, 10))
        await session.commit()
    await worker.drain()
    (due,) = inbox.to("a@a.example.cn")
    assert subject(due) == f"Charge #{charge.id} due: ¥{charge.total_fen // 100:,}.{charge.total_fen % 100:02d}"
    assert "https://share.example.cn/me/charges" in body(due)
    assert all("a@a.example.cn" in rcpt for rcpt, _ in inbox.messages)


async def test_an_approved_settlement_goes_to_finance(setup) -> None:  # type: ignore[no-untyped-def]
    from facility_share.finance import settlements
    from facility_share.finance.settlements import DraftRequest
    from tests.test_settlements import load_policies

    db, world, inbox, worker = setup
    await load_policies(db)
    async with db.session(write=True) as session:
        draft = await settlements.create_draft(session, world["finance"], DraftRequest("2026-Q3", "wuqing-default",
                                               cutoff_at=datetime(2026, 10, 15, tzinfo=UTC)), now=NOW)
        await session.commit()
    await worker.drain()
    assert inbox.messages == []  # a draft tells nobody
    async with db.session(write=True) as session:
        await settlements.approve(session, world["finance"], draft.id, now=NOW)
        await session.commit()
    await worker.drain()
    assert [rcpt for rcpt, _ in inbox.messages] == [["finance@t.example.cn"]]
    (approved,) = inbox.to("finance@t.example.cn")
    assert subject(approved) == f"结算 #{draft.id} 已批准：2026-Q3"
    assert "批准人：Finance" in body(approved) and f"https://share.example.cn/finance/settlements/{draft.id}" in body(approved)


def test_console_backend_logs_the_message_but_never_the_password(caplog) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import logging

    from facility_share.notifications.mailer import Outgoing, SmtpBackend, backend_for, build_email

    settings = load_settings({"FACILITY_SHARE_SMTP_PASSWORD": "hunter2-secret"})
    assert settings.email_backend == "console" and "hunter2" not in repr(settings)
    smtp = SmtpBackend(load_settings({"FACILITY_SHARE_SMTP_HOST": "mail.example.cn", "FACILITY_SHARE_SMTP_PASSWORD": "hunter2-secret"}))
    assert "hunter2" not in repr(smtp)
    outgoing = Outgoing(to="x@example.cn", to_name="小王", subject="测试", text="正文", html="<p>正文</p>", message_id="<1@example.cn>")
    with caplog.at_level(logging.INFO, logger="facility_share.notifications"):
        asyncio.run(backend_for(settings).send(build_email(outgoing, settings.smtp_from)))
    assert "测试" in caplog.text and "正文" in caplog.text and "hunter2" not in caplog.text


def test_every_message_is_written_in_both_languages() -> None:
    start = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    facts = messages.BookingFacts(
        id=12, status="approved", version=1, resource_code="R1", resource_name_zh="扫描电镜", resource_name_en="SEM", location_zh="A 楼",
        location_en="Building A", unit_name_zh="材料所", unit_name_en="Materials Institute", timezone="Asia/Shanghai",
        starts_at=start, ends_at=start + timedelta(hours=2), quantity=1, mode="self_operated", purpose="", enterprise_name="甲公司",
        booker_name="小李", reason="忙", decision_deadline=start - timedelta(hours=12), created_at=start, updated_at=start,
    )
    for event in ("booking.requested", "booking.approved", "booking.rejected", "booking.expired", "booking.reminder",
                  "booking.cancelled_by_unit", "booking.cancelled_by_enterprise", "booking.no_show"):
        zh = messages.booking_message(event, facts, recipient_name="张三", i18n=messages.language("zh_CN"), public_url="https://x")
        en = messages.booking_message(event, facts, recipient_name="Zhang", i18n=messages.language("en"), public_url="https://x")
        assert "扫描电镜" in zh.subject and "SEM" in en.subject and zh.subject != en.subject
        assert "2026-12-01 09:00–11:00" in zh.text and "2026-12-01 09:00–11:00" in en.text
        assert zh.html.startswith('<!DOCTYPE html><html lang="zh-CN">') and '<html lang="en">' in en.html
        assert "自主操作" in zh.text and "Self-operated" in en.text
    assert messages.language("fr").locale == "zh_CN" and messages.language(None).locale == "zh_CN"


async def test_a_cancellation_is_told_to_the_other_side_and_a_no_show_to_the_booker(setup) -> None:  # type: ignore[no-untyped-def]
    db, world, inbox, worker = setup
    by_unit, by_enterprise, missed = [await request(db, world, hour) for hour in (9, 11, 14)]
    for booking_id in (by_unit, by_enterprise, missed):
        await decide(db, world, booking_id, "approve")
    await worker.drain()
    inbox.messages.clear()

    await decide(db, world, by_unit, "cancel", reason="设备故障 / instrument fault")
    async with db.session(write=True) as session:
        await bookings.change_status(session, world["member_a"], by_enterprise, "cancel", now=NOW)
        await session.commit()
    async with db.session(write=True) as session:  # a no-show is recorded once the slot has begun
        await bookings.change_status(session, world["manager"], missed, "no_show", now=local(DAY, 15))
        await session.commit()
    await worker.drain()

    to_booker = {subject(m): m for m in inbox.to("a@a.example.cn")}  # member_a reads English
    (cancelled,) = [m for s, m in to_booker.items() if s.startswith(f"Booking #{by_unit} cancelled by the unit: ")]
    assert "Reason: 设备故障 / instrument fault" in body(cancelled) and "refunded in full" in body(cancelled)
    (no_show,) = [m for s, m in to_booker.items() if s.startswith(f"Booking #{missed} recorded as a no-show: ")]
    assert "contact the unit" in body(no_show)
    assert len(to_booker) == 2, "the booker is not told of their own cancellation"
    (to_manager,) = inbox.to("manager@t.example.cn")
    assert subject(to_manager).startswith(f"预约 #{by_enterprise} 已被member_a Ltd取消：")
    assert "该时段已重新开放" in body(to_manager) and "https://share.example.cn/manage/calendar" in body(to_manager)
    assert len(inbox.messages) == 3
    await worker.drain()  # nothing is sent twice
    assert len(inbox.messages) == 3
