"""Settings come from the environment; a bad one stops start-up with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from facility_share.errors import SettingsError
from facility_share.settings import load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite+aiosqlite:///var/facility-share.sqlite3"
    assert settings.timezone == "Asia/Shanghai"
    assert settings.locale == "zh_CN"
    assert len(settings.secret_key) >= 32


def test_plain_postgres_url_uses_asyncpg() -> None:
    settings = load_settings({"FACILITY_SHARE_DATABASE_URL": "postgresql://u@db/fs"})
    assert settings.database_url == "postgresql+asyncpg://u@db/fs"
    assert not settings.is_sqlite


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("DATABASE_URL", "mysql://x@y/z", "sqlite"),
        ("TIMEZONE", "Mars/Olympus", "unknown IANA timezone"),
        ("LOCALE", "fr_FR", "zh_CN"),
        ("SECRET_KEY", "short", "32 characters"),
        ("DB_POOL_SIZE", "ten", "whole number"),
        ("DB_POOL_SIZE", "0", "at least 1"),
        ("DEBUG", "maybe", "true or false"),
    ],
)
def test_malformed_settings_name_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({f"FACILITY_SHARE_{variable}": value})
    assert caught.value.variable == f"FACILITY_SHARE_{variable}"
    assert fragment in str(caught.value)


def test_production_needs_a_secret_key() -> None:
    with pytest.raises(SettingsError, match="FACILITY_SHARE_SECRET_KEY"):
        load_settings({"FACILITY_SHARE_ENV": "production"})


def test_bad_setting_stops_the_server_with_one_line() -> None:
    env = {**os.environ, "FACILITY_SHARE_TIMEZONE": "Nowhere/Land"}
    result = subprocess.run(
        [sys.executable, "-m", "facility_share", "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "FACILITY_SHARE_TIMEZONE" in lines[0], result.stderr
