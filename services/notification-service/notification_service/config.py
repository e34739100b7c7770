"""notification-service configuration: one typed object, built from environment variables."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from careplan_shared.config import ConfigError, env_choice, env_int
from careplan_shared.pages.settings import LOGIN_VARIABLES, PagesSettings
from notification_service.adapters.crypto import decode_key
from notification_service.domain.rules import Settings

VARIABLES = (
    "CAREPLAN_DATA_DIR", "CAREPLAN_DEV_KEY_FILE", "NOTIFICATION_SERVICE_HOST", "NOTIFICATION_SERVICE_PORT",
    "NOTIFICATION_SERVICE_PERSISTENCE", "NOTIFICATION_SERVICE_SQLITE_PATH", "NOTIFICATION_SERVICE_DATABASE_URL",
    "NOTIFICATION_TRANSPORT", "PLAN_SERVICE_URL", "NOTIFICATION_FEED_TOKEN", "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_TOPIC", "NOTIFICATION_KAFKA_GROUP", "NOTIFICATION_KAFKA_INSTANCE_ID", "NOTIFICATION_TICK_SECONDS",
    "NOTIFICATION_PUBLIC_URL",
    "NOTIFICATION_PLAN_PAGES_URL",
    "NOTIFICATION_EVALUATION_INTERVAL_DAYS", "NOTIFICATION_EVALUATION_GRACE_DAYS",
    "NOTIFICATION_WRITTEN_INFO_DAYS", "NOTIFICATION_CONSENT_WARNING_DAYS", "NOTIFICATION_NO_SHOW_GRACE_HOURS",
    "NOTIFICATION_INACTIVE_DAYS", "NOTIFICATION_UNASSIGNED_RECIPIENT",
    "NOTIFICATION_TIMEZONE", "NOTIFICATION_WEBHOOK_URL", "NOTIFICATION_WEBHOOK_SECRET",
    "NOTIFICATION_SMTP_HOST", "NOTIFICATION_SMTP_PORT", "NOTIFICATION_SMTP_SENDER",
    "NOTIFICATION_EMAIL_ADDRESS_TEMPLATE", "NOTIFICATION_WORKER", "LOG_LEVEL",
    "NOTIFICATION_ENCRYPTION_KEY", "NOTIFICATION_ENCRYPTION_KEY_FILE",
    *(v for v in LOGIN_VARIABLES if not v.startswith("OIDC_")),  # the pages' sessions (pages/settings.py)
)


INSTANCE_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,249}")


def kafka_instance_id(env: Mapping[str, str], port: int) -> str | None:
    """The consumer's static group membership id (adapters/sources.py): NOTIFICATION_KAFKA_INSTANCE_ID,
    by default this host's name and the service's port (stable across restarts, different for
    every instance on a host); "off": a dynamic member."""
    value = env.get("NOTIFICATION_KAFKA_INSTANCE_ID")
    if value is None:
        value = re.sub(r"[^A-Za-z0-9._-]", "-", f"{socket.gethostname()}-{port}")[-249:]
    value = value.strip()
    if value.lower() == "off":
        return None
    if not INSTANCE_ID_PATTERN.fullmatch(value) or value in (".", ".."):
        raise ConfigError("NOTIFICATION_KAFKA_INSTANCE_ID must be 1-249 of A-Z a-z 0-9 . _ - (or \"off\"), "
                          "and different for every instance in the group")
    return value


def encryption_key_from_env(env: Mapping[str, str]) -> str | None:
    """NOTIFICATION_ENCRYPTION_KEY, or the content of NOTIFICATION_ENCRYPTION_KEY_FILE: standard
    base64 of 16, 24 or 32 random bytes. Errors name the variable, never the key."""
    value = env.get("NOTIFICATION_ENCRYPTION_KEY") or None
    path = env.get("NOTIFICATION_ENCRYPTION_KEY_FILE") or None
    if value and path:
        raise ConfigError("set NOTIFICATION_ENCRYPTION_KEY or NOTIFICATION_ENCRYPTION_KEY_FILE, not both")
    name = "NOTIFICATION_ENCRYPTION_KEY"
    if path:
        name += "_FILE"
        try:
            value = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{name} cannot be read: {type(e).__name__}") from None
    if value is None:
        return None
    try:
        decode_key(value)
    except ValueError as e:
        raise ConfigError(f"{name} {e} (make one with: python -c \"import base64, os; "
                          "print(base64.b64encode(os.urandom(32)).decode())\")") from None
    return value.strip()


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8082
    data_dir: Path = Path("var")
    persistence: str = "sqlite"
    sqlite_path: Path | None = None
    database_url: str | None = None
    dev_key_file: Path | None = None
    transport: str = "feed"
    plan_service_url: str = "http://127.0.0.1:8081"
    plan_pages_url: str | None = None  # base of the inbox's links to a plan's page; None: plan_service_url
    feed_token: str | None = None
    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "careplan.plan-events.v1"
    kafka_group: str = "notification-service"
    kafka_instance_id: str | None = None  # static group membership; None: dynamic
    tick_seconds: int = 30
    public_url: str = "http://127.0.0.1:8082"
    rules: Settings = field(default_factory=Settings)
    webhook_url: str | None = None
    webhook_secret: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "careplan@localhost"
    email_address_template: str | None = None
    worker: bool = True  # consume, tick and dispatch inside the service process
    log_level: str = "INFO"
    oidc: dict[str, str] = field(default_factory=dict)  # OIDC_* settings: production token issuers
    pages: PagesSettings | None = None  # sessions and login of the pages; None: the defaults under data_dir
    # base64 AES key for the store's plan content; none: a key file made under the data dir.
    encryption_key: str | None = field(default=None, repr=False)

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path or self.data_dir / "notification-service" / "prompts.sqlite"

    @property
    def store_key_file(self) -> Path:
        """The embedded default's store key (0600, in the service's 0700 folder)."""
        return self.data_dir / "notification-service" / "store-encryption.key"

    @property
    def pages_settings(self) -> PagesSettings:
        return self.pages or PagesSettings.from_env({}, service="notification-service", data_dir=self.data_dir)

    @property
    def signing_key_file(self) -> Path:
        return self.dev_key_file or self.data_dir / "dev-signing.key"

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(name for name, on in (("webhook", self.webhook_url), ("email", self.smtp_host)) if on)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        kafka = env.get("KAFKA_BOOTSTRAP_SERVERS") or None
        transport = env_choice(env, "NOTIFICATION_TRANSPORT", "kafka" if kafka else "feed", ("feed", "kafka"))
        if transport == "kafka" and not kafka:
            raise ConfigError("NOTIFICATION_TRANSPORT=kafka needs KAFKA_BOOTSTRAP_SERVERS")
        persistence = env_choice(env, "NOTIFICATION_SERVICE_PERSISTENCE", "sqlite", ("sqlite", "postgres"))
        database_url = env.get("NOTIFICATION_SERVICE_DATABASE_URL") or None
        if persistence == "postgres" and not (database_url and urlsplit(database_url).scheme.startswith("postgres")):
            raise ConfigError("NOTIFICATION_SERVICE_DATABASE_URL must be postgresql://... for postgres")
        webhook, secret = env.get("NOTIFICATION_WEBHOOK_URL") or None, env.get("NOTIFICATION_WEBHOOK_SECRET") or None
        if webhook and not secret:
            raise ConfigError("NOTIFICATION_WEBHOOK_SECRET is needed to sign webhook bodies")
        timezone = env.get("NOTIFICATION_TIMEZONE", "Europe/Oslo")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"NOTIFICATION_TIMEZONE {timezone!r} is not a known time zone") from None
        unassigned = env.get("NOTIFICATION_UNASSIGNED_RECIPIENT", "koordinerende-enhet").strip()
        if not unassigned or len(unassigned) > 200 or not unassigned.isprintable() or any(c.isspace() for c in unassigned):
            raise ConfigError("NOTIFICATION_UNASSIGNED_RECIPIENT must be an inbox (coordinator) id: "
                              "1-200 printable characters, no spaces")
        days = lambda name, default: timedelta(days=env_int(env, name, default, 0, 3650))  # noqa: E731
        sqlite_path, key_file = env.get("NOTIFICATION_SERVICE_SQLITE_PATH"), env.get("CAREPLAN_DEV_KEY_FILE")
        plan_service_url = env.get("PLAN_SERVICE_URL", "http://127.0.0.1:8081")
        plan_pages_url = (env.get("NOTIFICATION_PLAN_PAGES_URL") or "").strip().rstrip("/") or None
        if plan_pages_url and (urlsplit(plan_pages_url).scheme not in ("http", "https") or not urlsplit(plan_pages_url).netloc):
            raise ConfigError("NOTIFICATION_PLAN_PAGES_URL must be an http(s) URL, e.g. https://plan.example.no")
        return cls(
            host=env.get("NOTIFICATION_SERVICE_HOST", "127.0.0.1"),
            port=env_int(env, "NOTIFICATION_SERVICE_PORT", 8082, 0, 65535),
            data_dir=Path(env.get("CAREPLAN_DATA_DIR", "var")),
            persistence=persistence,
            sqlite_path=Path(sqlite_path) if sqlite_path else None,
            database_url=database_url,
            dev_key_file=Path(key_file) if key_file else None,
            transport=transport,
            plan_service_url=plan_service_url,
            plan_pages_url=plan_pages_url,
            feed_token=env.get("NOTIFICATION_FEED_TOKEN") or None,
            kafka_bootstrap_servers=kafka,
            kafka_topic=env.get("KAFKA_TOPIC", "careplan.plan-events.v1"),
            kafka_group=env.get("NOTIFICATION_KAFKA_GROUP", "notification-service"),
            kafka_instance_id=kafka_instance_id(env, env_int(env, "NOTIFICATION_SERVICE_PORT", 8082, 0, 65535)),
            tick_seconds=env_int(env, "NOTIFICATION_TICK_SECONDS", 30, 1, 86400),
            public_url=env.get("NOTIFICATION_PUBLIC_URL", "http://127.0.0.1:8082"),
            rules=Settings(
                evaluation_interval=days("NOTIFICATION_EVALUATION_INTERVAL_DAYS", 180),
                evaluation_grace=days("NOTIFICATION_EVALUATION_GRACE_DAYS", 14),
                written_information_after=days("NOTIFICATION_WRITTEN_INFO_DAYS", 7),
                consent_warning=days("NOTIFICATION_CONSENT_WARNING_DAYS", 14),
                no_show_grace=timedelta(hours=env_int(env, "NOTIFICATION_NO_SHOW_GRACE_HOURS", 0, 0, 720)),
                inactive_after=timedelta(days=env_int(env, "NOTIFICATION_INACTIVE_DAYS", 90, 1, 3650)),
                unassigned_recipient=unassigned,
                timezone=timezone,
            ),
            webhook_url=webhook,
            webhook_secret=secret,
            smtp_host=env.get("NOTIFICATION_SMTP_HOST") or None,
            smtp_port=env_int(env, "NOTIFICATION_SMTP_PORT", 25, 1, 65535),
            smtp_sender=env.get("NOTIFICATION_SMTP_SENDER", "careplan@localhost"),
            email_address_template=env.get("NOTIFICATION_EMAIL_ADDRESS_TEMPLATE") or None,
            worker=env_choice(env, "NOTIFICATION_WORKER", "on", ("on", "off")) == "on",
            log_level=env.get("LOG_LEVEL", "INFO"),
            oidc={k: v for k, v in env.items() if k.startswith("OIDC_")},
            pages=PagesSettings.from_env(env, service="notification-service", data_dir=Path(env.get("CAREPLAN_DATA_DIR", "var"))),
            encryption_key=encryption_key_from_env(env),
        )
