"""Which event store the eventsourcing library uses: chosen by configuration, not by code."""

from __future__ import annotations

from plan_service.config import Config


def eventsourcing_env(config: Config) -> dict[str, str]:
    env: dict[str, str] = {}
    if config.aggregate_cache_size:
        env["AGGREGATE_CACHE_MAXSIZE"] = str(config.aggregate_cache_size)
    if config.persistence == "memory":
        env["PERSISTENCE_MODULE"] = "eventsourcing.popo"
    elif config.persistence == "sqlite":
        config.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        env["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
        env["SQLITE_DBNAME"] = str(config.sqlite_file)
        env["SQLITE_LOCK_TIMEOUT"] = "10"
    elif config.persistence == "postgres":
        env["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
        env.update(config.postgres)
    return env
