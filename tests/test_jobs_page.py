"""/admin/jobs: administrators see failed and dead jobs with their errors and queue them again;
nobody else sees the page."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from sqlalchemy import insert, select

from facility_share.db.models import Job, utcnow
from facility_share.settings import Settings
from facility_share.web.app import create_app
from tests.site import demo_site, query, run_in
from tests.test_account_pages import ADMIN, MANAGER, get, post, sign_in


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # No in-process worker: the jobs stay as the test puts them.
    return dataclasses.replace(demo_site(tmp_path_factory, "jobs-page"), sweep_interval=0)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def add_jobs(settings: Settings) -> dict[str, int]:
    async def work(session):  # type: ignore[no-untyped-def]
        ids = {}
        for status, error in (("dead", "Traceback …\nSMTPRecipientsRefused: 550 no such user"), ("failed", "451 try again later"),
                              ("done", ""), ("queued", "")):
            row = await session.execute(insert(Job).values(
                kind="email.send", payload={"to": f"{status}@example.cn"}, run_at=utcnow(), status=status, attempts=3 if status == "dead" else 1,
                max_attempts=3, last_error=error, created_at=utcnow()).returning(Job.id))
            ids[status] = row.scalar_one()
        return ids

    return run_in(settings, work)


def test_admins_see_failing_jobs_and_queue_them_again(client: TestClient, settings: Settings) -> None:
    ids = add_jobs(settings)
    sign_in(client, ADMIN, "zh_CN")
    page = get(client, "/admin/jobs")
    assert page.status_code == 200
    assert "后台任务" in page.text and "550 no such user" in page.text and "451 try again later" in page.text
    assert "dead@example.cn" in page.text and "done@example.cn" not in page.text  # failed and dead by default
    waiting = get(client, "/admin/jobs?status=waiting")
    assert "queued@example.cn" in waiting.text and "dead@example.cn" not in waiting.text
    assert get(client, "/admin/jobs?status=nonsense").status_code == 200  # falls back with a message

    response = post(client, f"/admin/jobs/{ids['dead']}/retry", {"status": "dead"})
    assert response.status_code == 303 and response.headers["location"] == f"/admin/jobs?status=dead&done={ids['dead']}"
    (job,) = [row[0] for row in query(settings, select(Job).where(Job.id == ids["dead"]))]
    assert (job.status, job.attempts, job.finished_at) == ("queued", 0, None) and "550" in job.last_error
    assert f"任务 {ids['dead']} 已重新排队" in get(client, response.headers["location"]).text

    assert post(client, f"/admin/jobs/{ids['done']}/retry").status_code == 409
    assert post(client, "/admin/jobs/999999/retry").status_code == 404


def test_the_jobs_page_is_for_administrators_only(client: TestClient) -> None:
    sign_in(client, MANAGER)
    assert get(client, "/admin/jobs").status_code == 403
    assert post(client, "/admin/jobs/1/retry").status_code == 403
