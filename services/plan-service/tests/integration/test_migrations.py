"""plan-service's schema migrations (adapters/migrations) on SQLite and PostgreSQL: a fresh store
gets every table, a second run changes nothing, a store made before migrations existed is
taken over with its rows, and the service itself never creates a table."""

from __future__ import annotations

import sqlite3

import pytest
from eventsourcing.persistence import DatabaseError

from plan_service.adapters.migrations import VERSION_TABLE, migrate
from plan_service.adapters.persistence import eventsourcing_env
from plan_service.adapters.positions import postgres_conninfo
from plan_service.application.plans import PlanApplication
from plan_service.bootstrap import bootstrap
from plan_service.config import Config

pytestmark = pytest.mark.integration

ACTOR = {"role": "clinician", "id": "clin-1"}
HEADS = {"e0001", "a0001"}
SQLITE_TABLES = {"events": {"stored_events", "stored_snapshots", "careplan_relay_position", VERSION_TABLE},
                 "access_log": {"careplan_access_log", VERSION_TABLE}}
POSTGRES_TABLES = {"planservice_events", "planservice_snapshots", "careplan_relay_position",
                   "careplan_access_log", VERSION_TABLE}


@pytest.fixture(params=["sqlite", "postgres"])
def config(request, tmp_path) -> Config:
    if request.param == "postgres":
        return Config(data_dir=tmp_path, persistence="postgres", postgres=request.getfixturevalue("postgres_env"),
                      encryption="off")
    return Config(data_dir=tmp_path, persistence="sqlite", encryption="off")


def tables(config: Config) -> dict[str, set[str]]:
    if config.persistence == "sqlite":
        found = {}
        for name, path in (("events", config.sqlite_file), ("access_log", config.access_log_file)):
            with sqlite3.connect(path) as db:
                found[name] = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                        "AND name NOT LIKE 'sqlite_%'")}
        return found
    return {"postgres": {r[0] for r in _pg(config, "SELECT table_name FROM information_schema.tables "
                                                   "WHERE table_schema = %s", (config.postgres["POSTGRES_SCHEMA"],))}}


def expected_tables(config: Config) -> dict[str, set[str]]:
    return SQLITE_TABLES if config.persistence == "sqlite" else {"postgres": POSTGRES_TABLES}


def _pg(config: Config, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    schema = config.postgres["POSTGRES_SCHEMA"]
    with psycopg.connect(postgres_conninfo(config.postgres), options=f"-c search_path={schema}",
                         autocommit=True) as db:
        return db.execute(sql, params).fetchall() if sql.lstrip().upper().startswith("SELECT") else db.execute(sql)


def execute(config: Config, database: str, statements: list[str]) -> None:
    """Run DDL/DML on one of the store's databases as the old code did (its own connection)."""
    if config.persistence == "postgres":
        for statement in statements:
            _pg(config, statement)
        return
    path = config.sqlite_file if database == "events" else config.access_log_file
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)


def test_migrate_makes_every_table_and_a_second_run_changes_nothing(config):
    first = migrate(config)
    assert {r for heads in first.values() for r in heads} == HEADS
    assert tables(config) == expected_tables(config)
    assert migrate(config) == first  # nothing left to do
    assert tables(config) == expected_tables(config)
    services = bootstrap(config, migrate=False)  # what a served worker does: the store just works
    plan_id = services.plans.open_plan(patient_id="pat-synth-1", service_level="municipal", age_band="18-25", actor=ACTOR).plan_id
    assert services.plans.get_plan(plan_id).version == 1
    services.plans.close()


def test_the_service_never_creates_a_table(config):
    """A worker opens the store with migrate=False: on a store nobody migrated it finds no
    table and makes none (before migrations, every worker created them at once)."""
    assert eventsourcing_env(config)["CREATE_TABLE"] == "n"
    services = bootstrap(config, migrate=False)
    assert all(not found - {VERSION_TABLE} for found in tables(config).values())
    with pytest.raises(DatabaseError):  # no such table
        services.plans.open_plan(patient_id="pat-synth-2", service_level="municipal", age_band="18-25", actor=ACTOR)
    services.plans.close()


OLD_ACCESS_LOG = ("CREATE TABLE IF NOT EXISTS careplan_access_log (id {id_column}, "
                  "at TEXT NOT NULL, plan_id TEXT NOT NULL, subject TEXT NOT NULL, role TEXT NOT NULL, "
                  "on_behalf_of TEXT, action TEXT NOT NULL, result TEXT NOT NULL, status INTEGER NOT NULL)")
OLD_RELAY_POSITION = ("CREATE TABLE IF NOT EXISTS careplan_relay_position "
                      "(relay TEXT PRIMARY KEY, position BIGINT NOT NULL)")


def test_a_store_made_before_migrations_is_taken_over_with_its_rows(config):
    # The old code: the library made its tables when the application was constructed, the
    # adapters theirs with CREATE TABLE IF NOT EXISTS.
    old_env = {k: v for k, v in eventsourcing_env(config).items() if k != "CREATE_TABLE"}
    old = PlanApplication(old_env)
    plan_id = old.open_plan(patient_id="pat-synth-3", service_level="municipal", age_band="18-25", actor=ACTOR).plan_id
    old.close()
    sqlite = config.persistence == "sqlite"
    execute(config, "events", [OLD_RELAY_POSITION,
                               "INSERT INTO careplan_relay_position (relay, position) VALUES ('t', 1)"])
    execute(config, "access_log", [
        OLD_ACCESS_LOG.format(id_column="INTEGER PRIMARY KEY AUTOINCREMENT" if sqlite else "BIGSERIAL PRIMARY KEY"),
        "CREATE INDEX IF NOT EXISTS careplan_access_log_plan ON careplan_access_log (plan_id, id)",
        f"INSERT INTO careplan_access_log (at, plan_id, subject, role, on_behalf_of, action, result, status) "
        f"VALUES ('2026-03-01T00:00:00.000+00:00', '{plan_id}', 'clin-1', 'clinician', NULL, 'read_plan', "
        "'allowed', 200)"])

    assert {r for heads in migrate(config).values() for r in heads} == HEADS
    assert tables(config) == expected_tables(config)
    services = bootstrap(config, migrate=False)
    assert services.plans.get_plan(plan_id).version == 1
    assert [e.action for _, e in services.access_log.entries(str(plan_id))] == ["read_plan"]
    from plan_service.bootstrap import positions_for

    assert positions_for(config, "t").load() == 1
    services.plans.close()
