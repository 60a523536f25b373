"""The command line: users, tokens, sweeps and the demo, against a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from facility_share.cli import main
from facility_share.db import Database, migrate
from facility_share.db.models import Booking, RoleGrant, User


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("FACILITY_SHARE_DATABASE_URL", url)
    migrate.upgrade("sqlite+aiosqlite:///" + str(tmp_path / "cli.sqlite3"))
    return "sqlite+aiosqlite:///" + str(tmp_path / "cli.sqlite3")


def scalar(url: str, statement):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        db = Database(url, null_pool=True)
        try:
            async with db.session() as session:
                return (await session.execute(statement)).scalar_one_or_none()
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_users_create_reads_the_password_from_stdin(env: str) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["catalog", "import", "catalog"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["users", "create", "M@Example.cn", "--role", "unit_manager", "--unit", "WQ-TJMAT"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert scalar(env, select(User.email).where(User.email == "m@example.cn")) == "m@example.cn"
    assert scalar(env, select(func.count()).select_from(RoleGrant)) == 1
    # The token command prints a token once.
    result = runner.invoke(main, ["users", "token", "m@example.cn", "--name", "script"])
    assert result.exit_code == 0 and result.output.strip().startswith("fst_")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["users", "create", "x@example.cn", "--role", "wizard"], "password123456\n", "Invalid value for '--role'"),
        (["users", "create", "x@example.cn", "--role", "unit_manager"], "password123456\n", "--unit"),
        (["users", "create", "x@example.cn", "--role", "unit_manager", "--unit", "NOPE"], "password123456\n", "no managing unit"),
        (["users", "create", "x@example.cn", "--role", "finance"], "short\n", "at least 10 characters"),
        (["users", "create", "x@example.cn", "--role", "finance"], "", "standard input"),
        (["users", "create", "x@example.cn", "--role", "enterprise_member", "--enterprise", "91120222MA3AGYGL1X"],
         "password123456\n", "统一社会信用代码"),
    ],
)
def test_users_create_refuses_bad_input_clearly_and_creates_nothing(env: str, args, stdin, message) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, args, input=stdin)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert scalar(env, select(func.count()).select_from(User)) == 0


def test_demo_load_twice_and_sweep(env: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "load"])
    assert first.exit_code == 0, first.output
    assert "admin@demo.example.cn" in first.output and "fsa_" in first.output
    bookings = scalar(env, select(func.count()).select_from(Booking))
    second = runner.invoke(main, ["demo", "load"])
    assert second.exit_code == 0 and scalar(env, select(func.count()).select_from(Booking)) == bookings
    assert "fsa_" not in second.output  # the key is shown once
    sweep = runner.invoke(main, ["bookings", "sweep"])
    assert sweep.exit_code == 0 and "request(s)" in sweep.output and "no-show(s)" in sweep.output
