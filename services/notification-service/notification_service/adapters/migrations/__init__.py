"""notification-service's versioned store schema (Alembic): `notification-service migrate` runs
it, and so does `serve`, once, before its worker starts. Opening a store in-process (tests, the
`dead-letters` command) migrates it too unless told not to; the served worker never does.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from careplan_shared.migrate import Database, upgrade

SCRIPTS = Path(__file__).parent
LOCK_KEY = zlib.crc32(b"careplan-migrate:notification-service")  # pg_advisory_lock: one migration at a time
VERSION_TABLE = "notification_service_schema_version"  # Alembic's version table, named for the service


def sqlite_database(path: Path) -> Database:
    return Database(sqlite_path=path, version_table=VERSION_TABLE)


def postgres_database(conninfo: str) -> Database:
    """The tables go where the connection's search_path puts them (as before migrations)."""
    return Database(conninfo=conninfo, lock_key=LOCK_KEY, version_table=VERSION_TABLE)


def migrate_database(database: Database) -> tuple[str, ...]:
    """Bring one store to the newest revision; returns the revision it is at."""
    return upgrade(SCRIPTS, database)


def database_for(config) -> Database:
    from careplan_shared.files import private_sqlite

    if config.persistence == "postgres":
        return postgres_database(config.database_url)
    # the default file lives in the service's own folder: that folder is made private too
    return sqlite_database(private_sqlite(config.sqlite_file, private_folder=config.sqlite_path is None))


def migrate(config) -> tuple[str, ...]:
    """Bring the configured store to the newest revision; returns the revision it is at."""
    return migrate_database(database_for(config))
