"""notification-service's store migrations (adapters/migrations) on SQLite and PostgreSQL: a
fresh store gets every table, a second run changes nothing, stores made by the code before
migrations (as first shipped, and with the later dead-letter columns) are taken over with
their rows, and a store opened without migrating (the served worker) creates nothing."""

from __future__ import annotations

import sqlite3

import pytest

from notification_service.adapters.migrations import (
    VERSION_TABLE,
    migrate_database,
    postgres_database,
    sqlite_database,
)
from notification_service.adapters.store import PostgresStore, SQLiteStore

pytestmark = pytest.mark.integration

HEAD = ("n0003",)
TABLES = {"plan_views", "prompts", "consumer_positions", "dead_letters", "store_meta", "deliveries", VERSION_TABLE}

# The schema of the first release (no dead_letters.status / resolved_at, no store_meta).
FIRST_RELEASE = [
    "CREATE TABLE plan_views (plan_id TEXT PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL, "
    "next_check_at TEXT)",
    "CREATE INDEX plan_views_next_check ON plan_views (next_check_at)",
    "CREATE TABLE prompts (id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, rule TEXT NOT NULL, subject TEXT NOT NULL, "
    "recipient TEXT, status TEXT NOT NULL, due_at TEXT NOT NULL, escalate_at TEXT, escalated_at TEXT, "
    "created_at TEXT NOT NULL, acknowledged_at TEXT, resolved_at TEXT, details TEXT NOT NULL, "
    "UNIQUE (plan_id, rule, subject))",
    "CREATE INDEX prompts_inbox ON prompts (recipient, status, due_at)",
    "CREATE INDEX prompts_escalation ON prompts (status, escalate_at)",
    "CREATE TABLE consumer_positions (source TEXT NOT NULL, part INTEGER NOT NULL, position BIGINT NOT NULL, "
    "PRIMARY KEY (source, part))",
    "CREATE TABLE dead_letters (id TEXT PRIMARY KEY, source TEXT NOT NULL, part INTEGER NOT NULL, "
    "position BIGINT NOT NULL, event_id TEXT, reason TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL)",
    "CREATE TABLE deliveries (id TEXT PRIMARY KEY, prompt_id TEXT NOT NULL, channel TEXT NOT NULL, "
    "kind TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at TEXT NOT NULL, "
    "last_error TEXT, created_at TEXT NOT NULL, UNIQUE (prompt_id, channel, kind))",
    "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)",
]
# What the code just before migrations added at start-up (AddColumn and the key check's table).
LAST_BEFORE_MIGRATIONS = FIRST_RELEASE + [
    "ALTER TABLE dead_letters ADD COLUMN status TEXT NOT NULL DEFAULT 'open'",
    "ALTER TABLE dead_letters ADD COLUMN resolved_at TEXT",
    "CREATE INDEX dead_letters_open ON dead_letters (status, source, part, position)",
    "CREATE TABLE store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
ROWS = [
    "INSERT INTO consumer_positions VALUES ('feed', 0, 41)",
    "INSERT INTO dead_letters (id, source, part, position, event_id, reason, payload, created_at) "
    "VALUES ('d1', 'feed', 0, 7, NULL, 'undecodable: x', 'not json', '2026-03-01T00:00:00.000000+00:00')",
]


class Target:
    """One fresh store: a SQLite file or a PostgreSQL schema."""

    def __init__(self, kind: str, tmp_path, postgres_env=None):
        self.kind = kind
        self.path = tmp_path / "prompts.sqlite"
        if kind == "postgres":
            env = postgres_env
            self.schema = env["POSTGRES_SCHEMA"]
            self.conninfo = (f"host={env['POSTGRES_HOST']} port={env['POSTGRES_PORT']} "
                             f"dbname={env['POSTGRES_DBNAME']} user={env['POSTGRES_USER']} "
                             f"password={env['POSTGRES_PASSWORD']} options=-csearch_path={self.schema}")

    def database(self):
        return postgres_database(self.conninfo) if self.kind == "postgres" else sqlite_database(self.path)

    def execute(self, statements: list[str]) -> list[tuple]:
        """Run statements on the store's own connection (as the old code did); the rows read."""
        if self.kind == "postgres":
            import psycopg

            connection = psycopg.connect(self.conninfo, autocommit=True)
        else:
            connection = sqlite3.connect(self.path, isolation_level=None)
        rows: list[tuple] = []
        try:
            for statement in statements:
                cursor = connection.execute(statement)
                if cursor.description:
                    rows.extend(tuple(r) for r in cursor.fetchall())
        finally:
            connection.close()
        return rows

    def tables(self) -> set[str]:
        if self.kind == "postgres":
            return {r[0] for r in self.execute([f"SELECT table_name FROM information_schema.tables "
                                                f"WHERE table_schema = '{self.schema}'"])}
        return {r[0] for r in self.execute(["SELECT name FROM sqlite_master WHERE type = 'table'"])}

    def open(self, **kwargs):
        if self.kind == "postgres":
            return PostgresStore(self.conninfo, **kwargs)
        return SQLiteStore(self.path, **kwargs)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path) -> Target:
    env = request.getfixturevalue("postgres_env") if request.param == "postgres" else None
    return Target(request.param, tmp_path, env)


def test_migrate_makes_every_table_and_a_second_run_changes_nothing(target):
    assert migrate_database(target.database()) == HEAD
    assert target.tables() == TABLES
    assert migrate_database(target.database()) == HEAD
    assert target.tables() == TABLES
    assert target.execute([f"SELECT version_num FROM {VERSION_TABLE}"]) == [("n0003",)]
    store = target.open(migrate=False)  # what the served worker does
    with store.transaction() as tx:
        assert {"status", "resolved_at"} <= tx.columns("dead_letters")
        assert "history" in tx.columns("prompts")  # n0003: the prompts' history (issue 13)
    store.close()


@pytest.mark.parametrize("old_schema", [FIRST_RELEASE, LAST_BEFORE_MIGRATIONS], ids=["first-release", "last-before"])
def test_a_store_made_before_migrations_is_taken_over_with_its_rows(target, old_schema):
    target.execute(old_schema + ROWS)
    for _ in range(2):  # a second start changes nothing
        store = target.open()  # in-process: migrates first
        with store.transaction() as tx:
            assert {"status", "resolved_at"} <= tx.columns("dead_letters")
            assert tx.count_dead_letters() == 1 and tx.dead_letters()[0]["status"] == "open"
            assert tx.positions("feed") == {0: 41}
        store.close()
    assert target.tables() == TABLES
    assert target.execute([f"SELECT version_num FROM {VERSION_TABLE}"]) == [("n0003",)]


def test_a_store_opened_without_migrating_creates_no_table(target):
    import psycopg

    with pytest.raises((sqlite3.OperationalError, psycopg.errors.UndefinedTable)):  # no such table
        target.open(migrate=False)
    assert target.tables() == set()
