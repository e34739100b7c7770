"""Fixtures for every layer: real server processes on 127.0.0.1, real PostgreSQL and Kafka."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from careplan_testing import BIN, ServerProcess, free_port, require_infra


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


def _starter(command: str, port_variable: str, host_variable: str, data_dir: Path, tmp_path: Path):
    started: list[ServerProcess] = []

    def start(port: int | None = None, **extra_env: str) -> ServerProcess:
        for attempt in range(3):
            chosen = port or free_port()
            env = {**os.environ, "CAREPLAN_DATA_DIR": str(data_dir), port_variable: str(chosen),
                   host_variable: "127.0.0.1", **extra_env}
            server = ServerProcess([str(BIN / command), "serve"], env, f"http://127.0.0.1:{chosen}",
                                   tmp_path / f"{command}-{chosen}.log")
            started.append(server)
            try:
                return server.start()
            except RuntimeError as e:
                # A free port can be taken (e.g. by an outgoing connection) before we bind it.
                if port or "already in use" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return start, started


@pytest.fixture
def start_plan_service(data_dir: Path, tmp_path: Path) -> Iterator:
    """start_plan_service(**env) -> a running plan-service on a free port (SQLite by default)."""
    start, started = _starter("plan-service", "PLAN_SERVICE_PORT", "PLAN_SERVICE_HOST", data_dir, tmp_path)
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_notification_service(data_dir: Path, tmp_path: Path) -> Iterator:
    """start_notification_service(**env) -> a running notification-service on a free port."""
    start, started = _starter("notification-service", "NOTIFICATION_SERVICE_PORT", "NOTIFICATION_SERVICE_HOST",
                              data_dir, tmp_path)
    yield start
    for server in started:
        server.stop()


# -- real infrastructure (started by scripts/test from infra/) -----------------------------

@pytest.fixture
def postgres_env() -> Iterator[dict[str, str]]:
    """POSTGRES_* settings pointing at a fresh schema of the test database, dropped after."""
    import uuid
    from urllib.parse import urlsplit

    import psycopg

    url = require_infra("PostgreSQL", "CAREPLAN_TEST_DATABASE_URL")
    parts = urlsplit(url)
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{schema}"')
    yield {
        "POSTGRES_HOST": parts.hostname or "127.0.0.1", "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "", "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_DBNAME": parts.path.strip("/"), "POSTGRES_SCHEMA": schema,
    }
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def kafka_bootstrap() -> str:
    return require_infra("Kafka", "KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic (6 partitions, like careplan.plan-events.v1) for one test."""
    import uuid

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    name = f"test.plan-events.{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="tests")
    admin.create_topics([NewTopic(name, num_partitions=6, replication_factor=1)])
    _wait_for_partitions(kafka_bootstrap, name, 6)
    try:
        yield name
    finally:
        _delete_topic(admin, name)


def _wait_for_partitions(bootstrap: str, name: str, count: int) -> None:
    """create_topics returns when the controller has the topic, not when every broker's
    metadata shows its partitions: a consumer that joins in between is assigned nothing."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), client_id="tests")
    try:
        deadline = time.monotonic() + 30
        while len(consumer.partitions_for_topic(name)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {name} has no {count} partitions after 30 s")
            time.sleep(0.2)
    finally:
        consumer.close()


def _delete_topic(admin, name: str) -> None:
    """Best effort: a test that restarted the broker may leave it still electing a leader.
    A leftover test topic harms nothing; a teardown error would hide the test's result."""
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                admin.delete_topics([name])
                return
            except Exception:  # noqa: BLE001
                if time.monotonic() > deadline:
                    return
                time.sleep(1)
    finally:
        admin.close()
