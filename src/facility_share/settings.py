"""Settings read from the environment, checked once at start-up.

Every setting is a ``FACILITY_SHARE_*`` variable. A missing or malformed value stops the
process with one line that names the variable and says what is expected, because an
operator reading a crash loop in a container log needs exactly that and nothing more.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    # PostgreSQL timeouts of the web service in seconds: opening a connection, one statement.
    # They bound how long a request can hang on a database that is unreachable or frozen; it
    # is then answered 503 with Retry-After.
    db_connect_timeout: int = 5
    db_command_timeout: int = 30
    # Logs: "json" (one object a line; the production default) or "text"; the service's level;
    # and whether every request gets an access line (the proxy usually logs them already).
    log_format: str = "text"
    log_level: str = "INFO"
    access_log: bool = False
    # Bearer token for /metrics; empty lets only direct callers on private networks read them.
    metrics_token: str = field(default="", repr=False)
    # Proxies whose X-Forwarded-For/-Proto uvicorn believes: addresses, networks, or "*".
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # Stripe: no secret key means offline mode (bank transfer or invoice, marked paid by the
    # unit). The keys never appear in a repr, a log line or an error message.
    stripe_secret_key: str = field(default="", repr=False)
    stripe_publishable_key: str = ""
    stripe_webhook_secret: str = field(default="", repr=False)
    # Another Stripe API address (a local Stripe peer in tests); empty means Stripe's own.
    stripe_api_base: str = ""
    # Payment methods the Stripe account has enabled: card always, alipay and wechat_pay if set.
    stripe_payment_methods: tuple[str, ...] = ("card",)
    # Share of an advance refunded when a booking is cancelled later than the resource allows.
    late_cancellation_refund_percent: int = 50
    # E-mail notifications: "console" logs each message (development), "smtp" sends it. The
    # password never appears in a repr, a log line or an error message.
    email_backend: str = "console"
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = True
    smtp_from: str = "facility-share <noreply@localhost>"
    # Hours before a booking's start that its reminder goes out; 0 sends none.
    reminder_hours: int = 24
    # The address people open the service at, for links in e-mails.
    public_url: str = "http://127.0.0.1:8000"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def stripe_enabled(self) -> bool:
        return bool(self.stripe_secret_key)


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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _operations_settings(env: Mapping[str, str], production: bool) -> dict[str, object]:
    """Database timeouts, logging, the metrics token and the proxies trusted for forwarded
    addresses (``FACILITY_SHARE_FORWARDED_ALLOW_IPS``, else uvicorn's own
    ``FORWARDED_ALLOW_IPS``, else loopback only).

    Raises:
        SettingsError: naming the malformed variable.
    """
    log_format = (env.get(PREFIX + "LOG_FORMAT") or ("json" if production else "text")).strip().lower()
    if log_format not in ("json", "text"):
        raise SettingsError(PREFIX + "LOG_FORMAT", f"expected json or text, got {log_format!r}")
    log_level = (env.get(PREFIX + "LOG_LEVEL") or "INFO").strip().upper()
    if log_level not in LOG_LEVELS:
        raise SettingsError(PREFIX + "LOG_LEVEL", f"expected one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    token = env.get(PREFIX + "METRICS_TOKEN") or ""
    if token and (len(token) < 16 or not token.isascii() or not token.isprintable() or " " in token):
        raise SettingsError(PREFIX + "METRICS_TOKEN", "expected 16+ printable ASCII characters without spaces, or empty")
    name = PREFIX + "FORWARDED_ALLOW_IPS"
    forwarded = (env.get(name) or env.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1").strip()
    if forwarded != "*":
        for item in forwarded.split(","):
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise SettingsError(name, f"expected * or comma-separated addresses or networks, got {item.strip()!r}") from None
    return {
        "db_connect_timeout": _int(env, "DB_CONNECT_TIMEOUT", 5, minimum=1),
        "db_command_timeout": _int(env, "DB_COMMAND_TIMEOUT", 30, minimum=1),
        "log_format": log_format,
        "log_level": log_level,
        "access_log": _bool(env, "ACCESS_LOG", False),
        "metrics_token": token,
        "forwarded_allow_ips": forwarded,
    }


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

    stripe = _stripe_settings(env)
    late_refund = _int(env, "LATE_CANCELLATION_REFUND_PERCENT", 50, minimum=0)
    if late_refund > 100:
        raise SettingsError(PREFIX + "LATE_CANCELLATION_REFUND_PERCENT", f"expected a percentage 0–100, got {late_refund}")
    return Settings(
        database_url=database_url,
        secret_key=secret_key,
        timezone=timezone,
        locale=locale,
        db_pool_size=_int(env, "DB_POOL_SIZE", 10, minimum=1),
        db_max_overflow=_int(env, "DB_MAX_OVERFLOW", 20, minimum=0),
        **_operations_settings(env, production),
        catalog_dir=Path(env.get(PREFIX + "CATALOG_DIR") or "catalog"),
        debug=debug,
        secure_cookies=_bool(env, "SECURE_COOKIES", production),
        max_open_requests=_int(env, "MAX_OPEN_REQUESTS", 10, minimum=1),
        production=production,
        # The embedded SQLite mode has no separate worker, so the web process sweeps itself.
        sweep_interval=_int(env, "SWEEP_INTERVAL", 60 if database_url.startswith("sqlite") else 0, minimum=0),
        late_cancellation_refund_percent=late_refund,
        **stripe,
        **_email_settings(env),
    )


def _email_settings(env: Mapping[str, str]) -> dict[str, object]:
    """The notification settings: the e-mail backend (smtp when a host is set, else console),
    SMTP server and sender, the reminder lead time and the public address for links.

    Raises:
        SettingsError: an unknown backend, smtp without a host, or a malformed value.
    """
    host = (env.get(PREFIX + "SMTP_HOST") or "").strip()
    backend = (env.get(PREFIX + "EMAIL_BACKEND") or ("smtp" if host else "console")).strip().lower()
    if backend not in ("smtp", "console"):
        raise SettingsError(PREFIX + "EMAIL_BACKEND", f"expected smtp or console, got {backend!r}")
    if backend == "smtp" and not host:
        raise SettingsError(PREFIX + "SMTP_HOST", "set the SMTP server's host name to send e-mail (or use the console backend)")
    port = _int(env, "SMTP_PORT", 587, minimum=1)
    if port > 65535:
        raise SettingsError(PREFIX + "SMTP_PORT", f"expected a port 1–65535, got {port}")
    sender = (env.get(PREFIX + "SMTP_FROM") or "facility-share <noreply@localhost>").strip()
    if "@" not in sender:
        raise SettingsError(PREFIX + "SMTP_FROM", "expected an address such as 平台 <noreply@share.example.cn>")
    public_url = (env.get(PREFIX + "PUBLIC_URL") or "http://127.0.0.1:8000").strip().rstrip("/")
    if not public_url.startswith(("http://", "https://")):
        raise SettingsError(PREFIX + "PUBLIC_URL", "expected an http:// or https:// address, e.g. https://share.example.cn")
    return {
        "email_backend": backend,
        "smtp_host": host,
        "smtp_port": port,
        "smtp_user": (env.get(PREFIX + "SMTP_USER") or "").strip(),
        "smtp_password": env.get(PREFIX + "SMTP_PASSWORD") or "",
        "smtp_starttls": _bool(env, "SMTP_STARTTLS", True),
        "smtp_from": sender,
        "reminder_hours": _int(env, "REMINDER_HOURS", 24, minimum=0),
        "public_url": public_url,
    }


STRIPE_METHODS = ("card", "alipay", "wechat_pay")


def _stripe_settings(env: Mapping[str, str]) -> dict[str, object]:
    """The Stripe keys: all three or none (offline mode). Messages never echo a key.

    Raises:
        SettingsError: a key is missing, or one has the wrong kind of prefix.
    """
    names = {"stripe_secret_key": "STRIPE_SECRET_KEY", "stripe_publishable_key": "STRIPE_PUBLISHABLE_KEY",
             "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET"}
    prefixes = {"stripe_secret_key": ("sk_", "rk_"), "stripe_publishable_key": ("pk_",), "stripe_webhook_secret": ("whsec_",)}
    values = {key: (env.get(PREFIX + name) or "").strip() for key, name in names.items()}
    if any(values.values()):
        for key, name in names.items():
            if not values[key]:
                raise SettingsError(PREFIX + name, "set all three Stripe keys (secret, publishable, webhook secret) or none")
            if not values[key].startswith(prefixes[key]):
                raise SettingsError(PREFIX + name, f"expected a key starting with {' or '.join(prefixes[key])}")
    api_base = (env.get(PREFIX + "STRIPE_API_BASE") or "").strip().rstrip("/")
    if api_base and not api_base.startswith(("http://", "https://")):
        raise SettingsError(PREFIX + "STRIPE_API_BASE", "expected an http:// or https:// address")
    methods = ["card"]
    for method in (env.get(PREFIX + "STRIPE_PAYMENT_METHODS") or "card").split(","):
        method = method.strip()
        if method and method not in STRIPE_METHODS:
            raise SettingsError(PREFIX + "STRIPE_PAYMENT_METHODS", f"expected some of {', '.join(STRIPE_METHODS)}, got {method!r}")
        if method and method not in methods:
            methods.append(method)
    return {**values, "stripe_api_base": api_base, "stripe_payment_methods": tuple(methods)}
