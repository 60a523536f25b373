from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, CheckConstraint, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from facility_share.db.models._base import Base, utcnow

# queued: waiting for its run_at; running: claimed by a worker until locked_until (the lease);
# failed: an attempt failed, retried at run_at (backoff); done: finished; dead: gave up after
# max_attempts, kept for an administrator to read and retry.
JOB_STATUSES = ("queued", "running", "failed", "done", "dead")


class Job(Base):
    """One unit of background work in the database's own queue (see ``facility_share.jobs``).

    ``dedupe_key`` is unique: enqueueing a key twice keeps the first job, so "each expiry and
    each reminder exactly once" and "each periodic sweep once per tick" are held by the
    database, however many workers or web processes enqueue. ``attempts`` counts claims; with
    ``locked_by`` it fences a worker whose lease ran out: finishing requires both to still be
    the ones it claimed with.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN {JOB_STATUSES}", name="status_known"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts_sane"),
        UniqueConstraint("dedupe_key", name="uq_jobs_dedupe_key"),
        # Claiming reads the due jobs of a status in run_at order; the lease scan reads
        # running jobs by locked_until.
        Index("ix_jobs_status_run_at", "status", "run_at"),
        Index("ix_jobs_status_locked_until", "status", "locked_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    status: Mapped[str] = mapped_column(String(8), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    last_error: Mapped[str] = mapped_column(Text, default="")
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    # What the handler reported, e.g. the Message-ID of a sent e-mail.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC())
