"""plan-service's versioned schema (Alembic): `plan-service migrate` runs it, and so does
`serve`, once, in the gunicorn master before the workers fork. The service itself never creates
a table (the library's CREATE_TABLE is off).

Two branches: `events` (the eventsourcing library's tables and the relay's position) and
`access_log`. On SQLite they live in two files (events.sqlite, access-log.sqlite), each with its
own version table and file lock; on PostgreSQL both in POSTGRES_SCHEMA, under one advisory lock.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from careplan_shared.files import private_sqlite
from careplan_shared.migrate import Database, upgrade
from plan_service.config import Config

SCRIPTS = Path(__file__).parent
LOCK_KEY = zlib.crc32(b"careplan-migrate:plan-service")  # pg_advisory_lock: one migration at a time
VERSION_TABLE = "plan_service_schema_version"  # Alembic's version table, named for the service


def databases(config: Config) -> dict[str, tuple[Database, str]]:
    """name -> (database, Alembic target) for the configured store; none in memory."""
    from plan_service.adapters.persistence import store_env

    if config.persistence == "memory":
        return {}
    library_env = store_env(config)  # SQLite: makes the file 0600 in a 0700 folder
    if config.persistence == "sqlite":
        return {"events": (Database(sqlite_path=config.sqlite_file, version_table=VERSION_TABLE,
                                    attributes={"library_env": library_env}), "events@head"),
                "access_log": (Database(sqlite_path=private_sqlite(config.access_log_file),
                                        version_table=VERSION_TABLE), "access_log@head")}
    from plan_service.adapters.positions import postgres_conninfo

    database = Database(conninfo=postgres_conninfo(config.postgres), schema=config.postgres.get("POSTGRES_SCHEMA", ""),
                        lock_key=LOCK_KEY, version_table=VERSION_TABLE, attributes={"library_env": library_env})
    return {"postgres": (database, "heads")}


def migrate(config: Config) -> dict[str, tuple[str, ...]]:
    """Bring the configured store to the newest revision; returns the revisions per database."""
    return {name: upgrade(SCRIPTS, database, target) for name, (database, target) in databases(config).items()}
