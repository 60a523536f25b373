"""The administrator's view of the job queue (``/admin/jobs``): what is waiting, failing or
dead, with the last error, and a button that queues a failed or dead job again."""

from __future__ import annotations

from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy import func, select, update

from facility_share.db.models import Job, utcnow
from facility_share.errors import Conflict, NotFound
from facility_share.web.deps import DbSession, Lang, RecordId
from facility_share.web.render import render

# Which jobs a filter shows; "attention" (failed and dead) is what an administrator acts on.
FILTERS = {
    "attention": ("failed", "dead"),
    "waiting": ("queued", "running", "failed"),
    "dead": ("dead",),
    "queued": ("queued",),
    "running": ("running",),
    "failed": ("failed",),
}
MAX_ROWS = 200


class JobPages(Controller):
    path = "/admin/jobs"
    include_in_schema = False
    opt = {"access": "admin"}

    @get("/", name="admin-jobs", cache=False)
    async def jobs(self, request: Request, db_session: DbSession, i18n: Lang) -> Template:
        show = request.query_params.get("status") or "attention"
        error = ""
        if show not in FILTERS:
            error, show = i18n.gettext("Choose a status from the list."), "attention"
        counts = dict((await db_session.execute(select(Job.status, func.count()).group_by(Job.status))).all())
        rows = (await db_session.execute(
            select(Job).where(Job.status.in_(FILTERS[show])).order_by(Job.run_at.desc(), Job.id.desc()).limit(MAX_ROWS)
        )).scalars().all()
        return render(request, i18n, "jobs/admin_jobs.html", rows=rows, counts=counts, show=show, filters=list(FILTERS),
                      error=error, done=request.query_params.get("done", ""), now=utcnow(), max_rows=MAX_ROWS)

    @post("/{job_id:int}/retry", name="admin-jobs-retry")
    async def retry(self, request: Request, db_session: DbSession, i18n: Lang, job_id: RecordId) -> Redirect:
        """Queue a failed or dead job again now, with a fresh count of attempts (its last error is kept)."""
        changed = await db_session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(("failed", "dead")))
            .values(status="queued", run_at=utcnow(), attempts=0, finished_at=None, locked_by=None, locked_until=None)
            .returning(Job.id)
        )
        if changed.first() is None:
            job = await db_session.get(Job, job_id)
            if job is None:
                raise NotFound(f"no job {job_id}")
            raise Conflict(f"job {job_id} is {job.status}; only failed and dead jobs can be retried")
        await db_session.commit()
        show = (await request.form()).get("status") or "attention"
        return Redirect("/admin/jobs?" + urlencode({"status": show if show in FILTERS else "attention", "done": str(job_id)}),
                        status_code=303)
