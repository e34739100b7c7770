"""Schema migrations from the operator's side: `plan-service migrate` and `notification-service
migrate` run by several processes at once, and several instances of both services (plan-service
with several workers) started at once on a fresh PostgreSQL database, round after round: every
one boots and is ready (issue 15: before migrations, workers creating tables at once failed to
boot about every other time)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

from careplan_testing import BIN, ServerProcess, free_port, require_infra, wait_for

pytestmark = pytest.mark.e2e

ROUNDS = int(os.environ.get("CAREPLAN_MIGRATION_ROUNDS", "10"))
INSTANCES = 2
PLAN_WORKERS = 4
PLAN_VERSION_TABLE = "plan_service_schema_version"
NOTIFICATION_VERSION_TABLE = "notification_service_schema_version"
STORE_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # base64 of bytes 0..31: a test key


@pytest.fixture
def database_url() -> str:
    return require_infra("PostgreSQL", "CAREPLAN_TEST_DATABASE_URL")


class FreshSchema:
    """A new, empty schema of the test database; the services' settings pointing at it."""

    def __init__(self, url: str):
        import psycopg

        self.url, self.name = url, "m_" + uuid.uuid4().hex[:12]
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f'CREATE SCHEMA "{self.name}"')

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'DROP SCHEMA "{self.name}" CASCADE')

    def rows(self, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, options=f"-c search_path={self.name}") as db:
            return db.execute(sql).fetchall()

    def env(self) -> dict[str, str]:
        parts = urlsplit(self.url)
        # Both services in one database and schema, as docker-compose runs them.
        return {
            "PLAN_SERVICE_PERSISTENCE": "postgres", "PLAN_SERVICE_DATABASE_URL": self.url,
            "POSTGRES_SCHEMA": self.name,
            "NOTIFICATION_SERVICE_PERSISTENCE": "postgres",
            "NOTIFICATION_SERVICE_DATABASE_URL": f"postgresql://{parts.netloc}{parts.path}"
                                                 f"?options={quote(f'-csearch_path={self.name}')}",
            "NOTIFICATION_ENCRYPTION_KEY": STORE_KEY,
        }


@pytest.fixture
def fresh_schemas(database_url):
    made: list[FreshSchema] = []

    def make() -> FreshSchema:
        made.append(FreshSchema(database_url))
        return made[-1]

    yield make
    for schema in made:
        schema.drop()


def _clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("POSTGRES_", "PLAN_SERVICE_", "NOTIFICATION_", "KAFKA_"))}
    return {**env, "CAREPLAN_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING", **extra}


def test_several_migrate_processes_at_once_on_postgres(fresh_schemas, tmp_path):
    schema = fresh_schemas()
    env = _clean_env(tmp_path, **schema.env())
    commands = [[str(BIN / "plan-service"), "migrate"], [str(BIN / "notification-service"), "migrate"]] * 4
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in outcomes] == [0] * len(commands), outcomes
    assert all("revision" in out for _, out, _ in outcomes)
    tables = {r[0] for r in schema.rows("SELECT table_name FROM information_schema.tables "
                                        f"WHERE table_schema = '{schema.name}'")}
    assert {PLAN_VERSION_TABLE, NOTIFICATION_VERSION_TABLE} <= tables
    assert not {t for t in tables if "version" in t} - {PLAN_VERSION_TABLE, NOTIFICATION_VERSION_TABLE}
    assert sorted(schema.rows(f"SELECT version_num FROM {PLAN_VERSION_TABLE}")) == [("a0001",), ("e0001",)]
    assert schema.rows(f"SELECT version_num FROM {NOTIFICATION_VERSION_TABLE}") == [("n0003",)]
    # once more: nothing to do, the same revisions
    again = subprocess.run(commands[0], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "e0001" in again.stdout and "a0001" in again.stdout


def test_several_migrate_processes_at_once_on_sqlite(tmp_path):
    env = _clean_env(tmp_path / "var")
    commands = [[str(BIN / "plan-service"), "migrate"], [str(BIN / "notification-service"), "migrate"]] * 3
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in outcomes] == [0] * len(commands), outcomes
    assert all("revision" in out for _, out, _ in outcomes)


def _ready(url: str) -> bool:
    try:
        response = requests.get(url + "/readyz", timeout=5)
    except requests.RequestException:
        return False
    return response.status_code == 200 and response.json().get("status") == "ready"


def test_instances_with_several_workers_start_at_once_on_a_fresh_database(fresh_schemas, tmp_path):
    """Each round: a fresh schema; 2 plan-service instances x 4 workers and 2 notification-service
    instances (it runs one worker process: its consumer, clock and dispatcher run once per
    instance) started at the same moment; every one answers /healthz and /readyz."""
    started_at = time.monotonic()
    for round_ in range(ROUNDS):
        schema = fresh_schemas()
        data_dir = tmp_path / f"round-{round_}"
        data_dir.mkdir()
        env = _clean_env(data_dir, **schema.env(), PLAN_SERVICE_WORKERS=str(PLAN_WORKERS), PLAN_SERVICE_THREADS="2",
                         NOTIFICATION_WORKER="off")
        servers = []
        for i in range(INSTANCES):
            port = free_port()
            servers.append(ServerProcess([str(BIN / "plan-service"), "serve"],
                                         {**env, "PLAN_SERVICE_HOST": "127.0.0.1", "PLAN_SERVICE_PORT": str(port)},
                                         f"http://127.0.0.1:{port}", tmp_path / f"plan-{round_}-{i}.log"))
            port = free_port()
            servers.append(ServerProcess([str(BIN / "notification-service"), "serve"],
                                         {**env, "NOTIFICATION_SERVICE_HOST": "127.0.0.1",
                                          "NOTIFICATION_SERVICE_PORT": str(port)},
                                         f"http://127.0.0.1:{port}", tmp_path / f"notification-{round_}-{i}.log"))
        try:
            with ThreadPoolExecutor(len(servers)) as pool:  # all at once
                results = list(pool.map(lambda s: _start(s), servers))
            failed = [(s.command[0], error) for s, error in zip(servers, results, strict=False) if error]
            assert not failed, f"round {round_}: {failed}"
            for server in servers:
                deadline = time.monotonic() + 30
                while not _ready(server.url) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert _ready(server.url), f"round {round_}: {server.command[0]} not ready: {server.logs()[-2000:]}"
            # Every worker booted: a worker whose start-up fails makes gunicorn stop the master
            # ("Worker failed to boot"), so every master must still run once all have forked.
            for server in servers:
                workers = PLAN_WORKERS if "plan-service" in server.command[0] else 1
                assert wait_for(lambda s=server, n=workers: s.logs().count("Booting worker") >= n, 30), server.logs()
            for _ in range(2 * PLAN_WORKERS):
                assert all(_ready(server.url) for server in servers)
            for server in servers:
                assert server.proc.poll() is None, f"round {round_}: {server.logs()[-3000:]}"
                assert "Worker failed to boot" not in server.logs() and "Traceback" not in server.logs(), \
                    server.logs()[-3000:]
            assert sorted(schema.rows(f"SELECT version_num FROM {PLAN_VERSION_TABLE}")) == [("a0001",), ("e0001",)]
            assert schema.rows(f"SELECT version_num FROM {NOTIFICATION_VERSION_TABLE}") == [("n0003",)]
        finally:
            with ThreadPoolExecutor(len(servers)) as pool:
                list(pool.map(lambda s: s.stop(), servers))
    print(f"\n{ROUNDS} rounds of {INSTANCES}x{PLAN_WORKERS} plan-service workers and {INSTANCES} "
          f"notification-service instances: {time.monotonic() - started_at:.1f}s")


def _start(server: ServerProcess, timeout: float = 120.0) -> str | None:
    """ServerProcess.start, patient with a slow answer: on 2 cores a dozen processes booting
    at once can take over a second to answer /healthz."""
    log = open(server.log_path, "ab")
    server.proc = subprocess.Popen(server.command, env=server.env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return f"exited {server.proc.returncode}: {server.logs()[-2000:]}"
        try:
            if requests.get(server.url + "/healthz", timeout=5).status_code == 200:
                return None
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return f"not healthy after {timeout}s: {server.logs()[-2000:]}"
