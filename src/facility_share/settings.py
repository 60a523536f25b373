"""Settings read from the environment, checked once at start-up.

Every setting is a ``FACILITY_SHARE_*`` variable. A missing or malformed value stops the
process with one line that names the variable and says what is expected, because an
operator reading a crash loop in a container log needs exactly that and nothing more.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from facility_share.errors import SettingsError

PREFIX = "FACILITY_SHARE_"
SUPPORTED_LOCALES = ("zh_CN", "en")
DEFAULT_SQLITE_PATH = Path("var") / "facility-share.sqlite3"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    secret_key: str
    timezone: str
    locale: str
    db_pool_size: int
    db_max_overflow: int
    catalog_dir: Path
    debug: bool
    # Cookies only over HTTPS: on in production, where a TLS proxy sits in front.
    secure_cookies: bool = False
    # How many undecided requests one enterprise may have open at once.
    max_open_requests: int = 10
    production: bool = False
    # Seconds between in-process expiry sweeps; 0 leaves them to `facility-share worker`.
    sweep_interval: int = 0

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(PREFIX + name, f"expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(PREFIX + name, f"must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(PREFIX + name, f"expected true or false, got {raw!r}")


def normalise_database_url(url: str) -> str:
    """Map the plain URL forms operators write to the async drivers this service uses.

    Raises:
        SettingsError: the URL names a database other than SQLite or PostgreSQL.
    """
    name = PREFIX + "DATABASE_URL"
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+asyncpg://") or url.startswith("sqlite+aiosqlite://"):
        return url
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    raise SettingsError(
        name,
        f"expected a sqlite:///path or postgresql://user@host/db URL, got {url.split('://')[0]!r}",
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting.

    Raises:
        SettingsError: naming the first variable that is malformed.
    """
    env = os.environ if env is None else env
    raw_url = env.get(PREFIX + "DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}"
    database_url = normalise_database_url(raw_url)

    secret_key = env.get(PREFIX + "SECRET_KEY", "")
    debug = _bool(env, "DEBUG", False)
    environment = env.get(PREFIX + "ENV") or "development"
    if environment not in ("development", "production"):
        raise SettingsError(PREFIX + "ENV", f"expected development or production, got {environment!r}")
    production = environment == "production"
    if not secret_key:
        if production:
            raise SettingsError(PREFIX + "SECRET_KEY", "must be set in production (32+ random characters)")
        # Development runs get a per-process key: sessions do not survive a restart, which is
        # the safe failure; production must set a stable one (checked above).
        secret_key = secrets.token_urlsafe(32)
    elif len(secret_key) < 32:
        raise SettingsError(PREFIX + "SECRET_KEY", "must be at least 32 characters long")

    timezone = env.get(PREFIX + "TIMEZONE") or "Asia/Shanghai"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(PREFIX + "TIMEZONE", f"unknown IANA timezone {timezone!r}, e.g. Asia/Shanghai") from None

    locale = env.get(PREFIX + "LOCALE") or "zh_CN"
    if locale not in SUPPORTED_LOCALES:
        raise SettingsError(PREFIX + "LOCALE", f"expected one of {', '.join(SUPPORTED_LOCALES)}, got {locale!r}")

    return Settings(
        database_url=database_url,
        secret_key=secret_key,
        timezone=timezone,
        locale=locale,
        db_pool_size=_int(env, "DB_POOL_SIZE", 10, minimum=1),
        db_max_overflow=_int(env, "DB_MAX_OVERFLOW", 20, minimum=0),
        catalog_dir=Path(env.get(PREFIX + "CATALOG_DIR") or "catalog"),
        debug=debug,
        secure_cookies=_bool(env, "SECURE_COOKIES", production),
        max_open_requests=_int(env, "MAX_OPEN_REQUESTS", 10, minimum=1),
        production=production,
        # The embedded SQLite mode has no separate worker, so the web process sweeps itself.
        sweep_interval=_int(env, "SWEEP_INTERVAL", 60 if database_url.startswith("sqlite") else 0, minimum=0),
    )
