"""plan-service configuration: one typed object, built from environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

PERSISTENCE_CHOICES = ("sqlite", "postgres", "memory")


class ConfigError(ValueError):
    pass


def _int(env: Mapping[str, str], name: str, default: int, low: int = 0, high: int = 2**31) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


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

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path or self.data_dir / "plan-service" / "events.sqlite"

    @property
    def signing_key_file(self) -> Path:
        return self.dev_key_file or self.data_dir / "dev-signing.key"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        persistence = env.get("PLAN_SERVICE_PERSISTENCE", "sqlite")
        if persistence not in PERSISTENCE_CHOICES:
            raise ConfigError(f"PLAN_SERVICE_PERSISTENCE must be one of {', '.join(PERSISTENCE_CHOICES)}")
        sqlite_path = env.get("PLAN_SERVICE_SQLITE_PATH")
        key_file = env.get("CAREPLAN_DEV_KEY_FILE")
        return cls(
            host=env.get("PLAN_SERVICE_HOST", "127.0.0.1"),
            port=_int(env, "PLAN_SERVICE_PORT", 8081, 0, 65535),
            data_dir=Path(env.get("CAREPLAN_DATA_DIR", "var")),
            persistence=persistence,
            sqlite_path=Path(sqlite_path) if sqlite_path else None,
            postgres={k: v for k, v in env.items() if k.startswith("POSTGRES_")},
            dev_key_file=Path(key_file) if key_file else None,
            max_body_bytes=_int(env, "PLAN_SERVICE_MAX_BODY_BYTES", 256 * 1024, 1024, 64 * 2**20),
            snapshot_interval=_int(env, "PLAN_SERVICE_SNAPSHOT_INTERVAL", 100, 2, 100_000),
            write_batch_max=_int(env, "PLAN_SERVICE_WRITE_BATCH_MAX", 64, 1, 1000),
            aggregate_cache_size=_int(env, "PLAN_SERVICE_CACHE_SIZE", 10_000, 0, 10_000_000),
            workers=_int(env, "PLAN_SERVICE_WORKERS", 1, 1, 64),
            threads=_int(env, "PLAN_SERVICE_THREADS", 8, 1, 256),
            log_level=env.get("LOG_LEVEL", "INFO"),
        )
