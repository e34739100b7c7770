"""Versioned schema migrations (Alembic), the same machinery for both services.

A store is brought to the newest revision by ``upgrade``: on PostgreSQL under a session-level
advisory lock (a fixed key per service) held on the migration connection for the whole
upgrade, on SQLite under an exclusive file lock beside the database file. Processes that start
at once queue on the lock; the ones after the first find nothing left to do. A service runs
this once before it serves (the gunicorn master, before the workers fork), never per worker or
per request.

Each service keeps its revisions inside its package (``<service>/adapters/migrations``); their
``env.py`` calls ``run_env()``. The connection, the lock and the Alembic configuration are made
here, so no alembic.ini is needed.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIGRATE_LOCK_SUFFIX = ".migrate-lock"


@dataclass(frozen=True)
class Database:
    """Where one set of revisions lives: a SQLite file, or a PostgreSQL database (and schema)."""
    sqlite_path: Path | None = None
    conninfo: str | None = None  # libpq key=value string or postgresql:// URL
    schema: str = ""  # PostgreSQL: search_path and the schema of the version table
    lock_key: int = 0  # PostgreSQL: pg_advisory_lock key, fixed per service
    # One per service: both services may share a database and schema (docker-compose does).
    version_table: str = "alembic_version"
    attributes: dict[str, Any] = field(default_factory=dict, compare=False)  # for the revisions

    def __str__(self) -> str:  # never the password
        return f"sqlite {self.sqlite_path.name}" if self.sqlite_path else f"postgresql schema {self.schema or '(default)'}"


def upgrade(script_location: Path, database: Database, target: str = "heads") -> tuple[str, ...]:
    """Bring ``database`` to ``target`` (default: the newest revision of every branch) and
    return the revisions it is at. A no-op (one query) when it is there already."""
    with _locked(database) as connection:
        current = _current(connection, database)
        if not _reached(script_location, current, target):
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(script_location))
            cfg.attributes.update(database.attributes, connection=connection, version_table=database.version_table,
                                  version_table_schema=database.schema or None)
            command.upgrade(cfg, target)
            if connection.in_transaction():
                connection.commit()
            current = _current(connection, database)
    return current


def run_env() -> None:
    """The body of each service's alembic env.py: migrate on the connection ``upgrade`` made."""
    from alembic import context

    attributes = context.config.attributes
    context.configure(connection=attributes["connection"], target_metadata=None,
                      version_table=attributes["version_table"],
                      version_table_schema=attributes.get("version_table_schema"),
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


@functools.cache
def _heads(script_location: Path, target: str) -> frozenset[str] | None:
    """The revisions ``target`` names (``heads``, or ``<branch>@head``); None: cannot tell."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(script_location))
    if target == "heads":
        return frozenset(scripts.get_heads())
    if target.endswith("@head"):
        return frozenset(script.revision for script in scripts.get_revisions(target))
    return None


def _reached(script_location: Path, current: tuple[str, ...], target: str) -> bool:
    wanted = _heads(script_location, target)
    return wanted is not None and wanted <= set(current)


def _current(connection: Any, database: Database) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": database.version_table,
                                                          "version_table_schema": database.schema or None})
    heads = tuple(sorted(context.get_current_heads()))
    if connection.in_transaction():
        connection.commit()
    return heads


def _engine(database: Database) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    if database.sqlite_path is not None:
        return create_engine(f"sqlite:///{database.sqlite_path}", poolclass=NullPool,
                             connect_args={"timeout": 30})
    import psycopg

    conninfo = database.conninfo
    assert conninfo is not None  # a database without a SQLite path is PostgreSQL
    options: dict[str, Any] = {"options": f"-c search_path={database.schema}"} if database.schema else {}
    return create_engine("postgresql+psycopg://", poolclass=NullPool,
                         creator=lambda: psycopg.connect(conninfo, connect_timeout=10, **options))


@contextmanager
def _locked(database: Database) -> Iterator[Any]:
    from sqlalchemy import text

    engine = _engine(database)
    try:
        if database.sqlite_path is not None:
            lock_path = database.sqlite_path.with_name(database.sqlite_path.name + MIGRATE_LOCK_SUFFIX)
            with os.fdopen(os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
                with engine.connect() as connection:
                    yield connection
            return
        with engine.connect() as connection:
            # Session-level: held across the upgrade's transactions; released by the unlock,
            # or by the server when this connection ends (also if the process dies).
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": database.lock_key})
            connection.commit()
            try:
                yield connection
            finally:
                if connection.in_transaction():
                    connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": database.lock_key})
                connection.commit()
    finally:
        engine.dispose()
