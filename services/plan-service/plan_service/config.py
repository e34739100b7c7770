"""plan-service configuration: one typed object, built from environment variables."""

from __future__ import annotations

import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from careplan_shared.config import ConfigError
from careplan_shared.config import env_int as _int
from careplan_shared.pages.settings import LOGIN_VARIABLES, PagesSettings

PERSISTENCE_CHOICES = ("sqlite", "postgres", "memory")
RELAY_CHOICES = ("inline", "off")
# Every environment variable plan-service reads (besides the library's POSTGRES_* settings).
VARIABLES = (
    "CAREPLAN_DATA_DIR", "CAREPLAN_DEV_KEY_FILE", "PLAN_SERVICE_HOST", "PLAN_SERVICE_PORT",
    "PLAN_SERVICE_PERSISTENCE", "PLAN_SERVICE_SQLITE_PATH", "PLAN_SERVICE_DATABASE_URL",
    "PLAN_SERVICE_MAX_BODY_BYTES", "PLAN_SERVICE_SNAPSHOT_INTERVAL", "PLAN_SERVICE_WRITE_BATCH_MAX",
    "PLAN_SERVICE_CACHE_SIZE", "PLAN_SERVICE_WORKERS", "PLAN_SERVICE_THREADS", "LOG_LEVEL",
    "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC", "PLAN_SERVICE_RELAY",
    "PLAN_SERVICE_ENCRYPTION_KEY", "PLAN_SERVICE_ENCRYPTION_KEY_FILE",
    *(v for v in LOGIN_VARIABLES if not v.startswith("OIDC_")),  # the pages' sessions (pages/settings.py)
)
ENCRYPTION_KEY_SIZES = (16, 24, 32)  # AES-128/192/256 (eventsourcing.cryptography.AESCipher)
TRUTHY = ("y", "yes", "t", "true", "on", "1")


def postgres_env(env: Mapping[str, str]) -> dict[str, str]:
    """POSTGRES_* settings for the eventsourcing library, from PLAN_SERVICE_DATABASE_URL
    and/or POSTGRES_* variables (the latter win)."""
    settings: dict[str, str] = {}
    url = env.get("PLAN_SERVICE_DATABASE_URL")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            raise ConfigError("PLAN_SERVICE_DATABASE_URL must look like postgresql://user:pass@host:port/db")
        settings.update({
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or ""),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_DBNAME": parts.path.strip("/"),
        })
    settings.update({k: v for k, v in env.items() if k.startswith("POSTGRES_")})
    if settings.get("POSTGRES_ENABLE_DB_FUNCTIONS", "").lower() in TRUTHY:
        # eventsourcing 9.5.6's insert function skips the table lock: followers of the
        # notification log (relay, feed) can miss events. See PERFORMANCE.md.
        raise ConfigError("POSTGRES_ENABLE_DB_FUNCTIONS must stay off: it loses events for log followers")
    settings.setdefault("POSTGRES_POOL_SIZE", "10")
    # The library's wait for a connection from its pool (whole seconds): with the database
    # down, a request answers 503 after this, not after the outage (adapters/persistence.py).
    settings.setdefault("POSTGRES_CONNECT_TIMEOUT", "1")
    # A pooled connection is checked before use: one the server dropped (a restart) is
    # replaced instead of failing the request it was given to.
    settings.setdefault("POSTGRES_PRE_PING", "y")
    return settings


def validate_encryption_key(value: str, name: str = "PLAN_SERVICE_ENCRYPTION_KEY") -> str:
    """The key as the eventsourcing library wants it (standard base64 of 16, 24 or 32
    random bytes); errors name the variable, never the key."""
    key = value.strip()
    try:
        raw = binascii.a2b_base64(key.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ConfigError(f"{name} must be standard base64 (make one with "
                          "`plan-service new-encryption-key`)") from None
    if len(raw) not in ENCRYPTION_KEY_SIZES:
        raise ConfigError(f"{name} must decode to 16, 24 or 32 bytes (AES), got {len(raw)} "
                          "(make one with `plan-service new-encryption-key`)")
    return key


def encryption_key_from_env(env: Mapping[str, str]) -> str | None:
    """PLAN_SERVICE_ENCRYPTION_KEY, or the content of PLAN_SERVICE_ENCRYPTION_KEY_FILE."""
    value = env.get("PLAN_SERVICE_ENCRYPTION_KEY") or None
    path = env.get("PLAN_SERVICE_ENCRYPTION_KEY_FILE") or None
    if value and path:
        raise ConfigError("set PLAN_SERVICE_ENCRYPTION_KEY or PLAN_SERVICE_ENCRYPTION_KEY_FILE, not both")
    if path:
        try:
            value = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"PLAN_SERVICE_ENCRYPTION_KEY_FILE cannot be read: {type(e).__name__}") from None
        return validate_encryption_key(value, "PLAN_SERVICE_ENCRYPTION_KEY_FILE")
    return validate_encryption_key(value) if value else None


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8081
    data_dir: Path = Path("var")
    persistence: str = "sqlite"
    sqlite_path: Path | None = None
    postgres: dict[str, str] = field(default_factory=dict)
    dev_key_file: Path | None = None
    max_body_bytes: int = 256 * 1024
    snapshot_interval: int = 100
    write_batch_max: int = 64
    aggregate_cache_size: int = 10_000
    workers: int = 1
    threads: int = 8
    log_level: str = "INFO"
    oidc: dict[str, str] = field(default_factory=dict)  # OIDC_* settings: production token issuers
    pages: PagesSettings | None = None  # sessions and login of the pages; None: the defaults under data_dir
    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "careplan.plan-events.v1"
    relay: str = "off"
    # base64 AES key: event and snapshot payloads are encrypted at rest. Kept out of repr().
    encryption_key: str | None = field(default=None, repr=False)
    # Without a key: "auto" encrypts the embedded default (SQLite) with a key made on first run
    # beside the store (encryption_key_file); "off" stores plaintext (tests of older stores).
    encryption: str = "auto"

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path or self.data_dir / "plan-service" / "events.sqlite"

    @property
    def access_log_file(self) -> Path:
        """SQLite: the access log's own file, beside the event store."""
        return self.sqlite_file.with_name("access-log.sqlite")

    @property
    def embedded_key_file(self) -> Path:
        """Where the embedded default keeps the encryption key it made on first run."""
        return self.sqlite_file.with_name("encryption.key")

    @property
    def pages_settings(self) -> PagesSettings:
        return self.pages or PagesSettings.from_env({}, service="plan-service", data_dir=self.data_dir)

    @property
    def signing_key_file(self) -> Path:
        return self.dev_key_file or self.data_dir / "dev-signing.key"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        persistence = env.get("PLAN_SERVICE_PERSISTENCE", "sqlite")
        if persistence not in PERSISTENCE_CHOICES:
            raise ConfigError(f"PLAN_SERVICE_PERSISTENCE must be one of {', '.join(PERSISTENCE_CHOICES)}")
        kafka = env.get("KAFKA_BOOTSTRAP_SERVERS") or None
        relay = env.get("PLAN_SERVICE_RELAY") or ("inline" if kafka else "off")
        if relay not in RELAY_CHOICES:
            raise ConfigError(f"PLAN_SERVICE_RELAY must be one of {', '.join(RELAY_CHOICES)}")
        if relay == "inline" and not kafka:
            raise ConfigError("PLAN_SERVICE_RELAY=inline needs KAFKA_BOOTSTRAP_SERVERS")
        sqlite_path = env.get("PLAN_SERVICE_SQLITE_PATH")
        key_file = env.get("CAREPLAN_DEV_KEY_FILE")
        return cls(
            host=env.get("PLAN_SERVICE_HOST", "127.0.0.1"),
            port=_int(env, "PLAN_SERVICE_PORT", 8081, 0, 65535),
            data_dir=Path(env.get("CAREPLAN_DATA_DIR", "var")),
            persistence=persistence,
            sqlite_path=Path(sqlite_path) if sqlite_path else None,
            postgres=postgres_env(env) if persistence == "postgres" else {},
            dev_key_file=Path(key_file) if key_file else None,
            max_body_bytes=_int(env, "PLAN_SERVICE_MAX_BODY_BYTES", 256 * 1024, 1024, 64 * 2**20),
            snapshot_interval=_int(env, "PLAN_SERVICE_SNAPSHOT_INTERVAL", 100, 2, 100_000),
            write_batch_max=_int(env, "PLAN_SERVICE_WRITE_BATCH_MAX", 64, 1, 1000),
            aggregate_cache_size=_int(env, "PLAN_SERVICE_CACHE_SIZE", 10_000, 0, 10_000_000),
            workers=_int(env, "PLAN_SERVICE_WORKERS", 1, 1, 64),
            threads=_int(env, "PLAN_SERVICE_THREADS", 8, 1, 256),
            log_level=env.get("LOG_LEVEL", "INFO"),
            oidc={k: v for k, v in env.items() if k.startswith("OIDC_")},
            pages=PagesSettings.from_env(env, service="plan-service", data_dir=Path(env.get("CAREPLAN_DATA_DIR", "var"))),
            kafka_bootstrap_servers=kafka,
            kafka_topic=env.get("KAFKA_TOPIC", "careplan.plan-events.v1"),
            relay=relay,
            encryption_key=encryption_key_from_env(env),
        )
