"""Faults cost seconds, not minutes (issue 13): real processes, real faults, measured.

- PostgreSQL stopped under plan-service: every request answers 503 problem+json with
  Retry-After at once, /readyz within a second, and writes work again right after it is back.
- The Kafka broker SIGKILLed and started again: the relay and the consumer catch up within
  seconds of the broker being ready.
- notification-service SIGKILLed and started again (same port, so the same static group
  member): it resumes within seconds, not after the old member's session timeout.
- No gunicorn control socket is made under the home folder (or XDG_RUNTIME_DIR).

The faults are done to PRIVATE PostgreSQL and Kafka instances (infra/ scripts on other ports and
data dirs under /var/tmp), never to the shared ones the rest of the suite uses. Each test prints
what it measured; the bounds are generous (a busy CI machine), the targets are in the comments.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_testing import ROOT, free_port, require_infra

pytestmark = pytest.mark.e2e

TOPIC = "careplan.plan-events.v1"


def report(title: str, **measured: float) -> None:
    figures = ", ".join(f"{name} {value:.2f} s" for name, value in measured.items())
    print(f"\nfault test: {title}: {figures}", flush=True)


def _private_base(kind: str) -> Path:
    # Under /var/tmp, readable by the OS user "postgres" (the server's owner when we are root);
    # pytest's tmp_path is private to us.
    base = Path(tempfile.mkdtemp(prefix=f"careplan-faults-{kind}-", dir="/var/tmp"))
    base.chmod(0o755)
    return base


def _run(script: str, env: dict[str, str], timeout: float) -> None:
    done = subprocess.run([str(ROOT / script)], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


class PrivatePostgres:
    """A throwaway cluster of infra/postgres on a port and data dir of its own."""

    def __init__(self) -> None:
        self.base = _private_base("pg")
        self.port = free_port()
        self.env = {**os.environ, "PGPORT": str(self.port), "PG_DATA_DIR": str(self.base / "data")}
        self.url = f"postgresql://careplan:careplan@127.0.0.1:{self.port}/careplan_test"
        self._starting: subprocess.Popen | None = None

    def start(self) -> None:
        _run("infra/postgres/start", self.env, 180)

    def start_in_background(self) -> None:
        self._starting = subprocess.Popen([str(ROOT / "infra/postgres/start")], env=self.env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        _run("infra/postgres/stop", self.env, 120)

    def accepting(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def destroy(self) -> None:
        if self._starting is not None:
            self._starting.wait(120)
        subprocess.run([str(ROOT / "infra/postgres/stop")], env=self.env, capture_output=True, timeout=120)
        shutil.rmtree(self.base, ignore_errors=True)


class PrivateKafka:
    """A throwaway single-node broker of infra/kafka on ports and a state dir of its own (the
    jars are shared with the suite's broker when it has them)."""

    def __init__(self) -> None:
        self.base = _private_base("kafka")
        shared_libs = ROOT / "var" / "kafka" / "libs"
        if shared_libs.is_dir():
            (self.base / "libs").symlink_to(shared_libs)
        self.port, controller = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "KAFKA_VAR_DIR": str(self.base), "KAFKA_PORT": str(self.port),
                    "KAFKA_CONTROLLER_PORT": str(controller), "KAFKA_TOPICS": f"{TOPIC}:6"}
        self._starting: subprocess.Popen | None = None

    def start(self) -> None:
        _run("infra/kafka/start", self.env, 300)

    def start_in_background(self) -> None:
        self._starting = subprocess.Popen([str(ROOT / "infra/kafka/start")], env=self.env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_started(self) -> None:
        if self._starting is not None:
            assert self._starting.wait(300) == 0, "infra/kafka/start failed on the restart"
            self._starting = None

    def kill(self) -> None:
        pid = int((self.base / "kafka.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def ready(self) -> bool:
        """Serving the topic: every partition has a leader."""
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=[self.bootstrap], client_id="fault-test",
                                     request_timeout_ms=1000, bootstrap_timeout_ms=1000)
        except Exception:  # noqa: BLE001 - not listening yet
            return False
        try:
            [topic] = admin.describe_topics([TOPIC])
            partitions = topic.get("partitions") or []
            return len(partitions) == 6 and all(p.get("error_code") == 0 and p.get("leader_id", -1) >= 0 for p in partitions)
        except Exception:  # noqa: BLE001 - listening, not serving yet
            return False
        finally:
            admin.close()

    def destroy(self) -> None:
        if self._starting is not None:
            self._starting.wait(300)
        subprocess.run([str(ROOT / "infra/kafka/stop")], env=self.env, capture_output=True, timeout=120)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def private_kafka():
    require_infra("Kafka", "KAFKA_BOOTSTRAP_SERVERS")  # the suite's broker: its jars are there
    broker = PrivateKafka()
    try:
        broker.start()
        yield broker
    finally:
        broker.destroy()


@pytest.fixture
def private_postgres():
    require_infra("PostgreSQL", "CAREPLAN_TEST_DATABASE_URL")
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


class Client:
    def __init__(self, url: str, data_dir: Path):
        self.url = url
        key = load_or_create_dev_key(data_dir / "dev-signing.key")
        self.writer = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration", on_behalf_of="clin-7")}
        self.key = key

    def open_plan(self, coordinator: str) -> str:
        r = requests.post(f"{self.url}/v1/plans", headers=self.writer, timeout=10, json={
            "patient_id": f"pat-synth-{uuid.uuid4().hex[:6]}", "service_level": "municipal", "age_band": "18-25"})
        assert r.status_code == 201, r.text
        plan_id = r.json()["plan_id"]
        self.post(plan_id, {"type": "CoordinatorAssigned", "coordinator_id": coordinator, "service_level": "specialist"})
        return plan_id

    def post(self, plan_id: str, events: Any, timeout: float = 10.0) -> requests.Response:
        r = requests.post(f"{self.url}/v1/plans/{plan_id}/events", headers=self.writer, json=events, timeout=timeout)
        assert r.status_code == 201, r.text
        return r

    def follow_ups(self, notifications_url: str, coordinator: str) -> int:
        token = mint_token(self.key, coordinator, "coordinator")
        r = requests.get(f"{notifications_url}/v1/prompts", params={"status": "all", "limit": 500},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200, r.text
        return sum(1 for i in r.json()["items"] if i["reason"] == "no_show_follow_up")

    def relay(self) -> dict[str, Any]:
        try:
            body = requests.get(f"{self.url}/readyz", timeout=10).json()
        except requests.RequestException:
            return {}
        return body.get("checks", {}).get("relay", {})


def missed_meeting(meeting_id: str) -> list[dict[str, Any]]:
    return [{"type": "TriangleMeetingScheduled", "meeting_id": meeting_id,
             "scheduled_for": (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat(),
             "place": "Kafeen", "transport": "buss", "companion": "storebror",
             "no_show_strategy": "Koordinator ringer samme dag"},
            {"type": "TriangleMeetingMissed", "meeting_id": meeting_id}]


def timed(call):
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def assert_unavailable(response: requests.Response | None) -> None:
    assert response is not None, "no answer within 90 s"
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    assert response.headers.get("Retry-After"), response.headers


def test_postgres_outage_answers_503_at_once_and_writes_resume_when_it_is_back(
        private_postgres, start_plan_service, data_dir):
    plan = start_plan_service(PLAN_SERVICE_PERSISTENCE="postgres", PLAN_SERVICE_DATABASE_URL=private_postgres.url,
                              KAFKA_BOOTSTRAP_SERVERS="", PLAN_SERVICE_RELAY="off")
    client = Client(plan.url, data_dir)
    plan_id = client.open_plan("kp")
    client.post(plan_id, {"type": "WhatMattersRecorded", "text": "before"})

    def write(text: str) -> tuple[float, requests.Response | None]:
        return timed(lambda: _maybe(lambda: requests.post(
            f"{plan.url}/v1/plans/{plan_id}/events", headers=client.writer, timeout=90,
            json={"type": "WhatMattersRecorded", "text": text})))

    private_postgres.stop()
    stopped = time.monotonic()
    # Eight writes at once (one group-commit batch, then retried one by one), then reads,
    # writes and /readyz for the rest of an 8 s outage.
    with ThreadPoolExecutor(8) as pool:
        writes = list(pool.map(lambda i: write(f"during {i}"), range(8)))
    reads: list[tuple[float, requests.Response | None]] = []
    readies: list[tuple[float, requests.Response | None]] = []
    while time.monotonic() - stopped < 8:
        reads.append(timed(lambda: _maybe(lambda: requests.get(f"{plan.url}/v1/plans/{plan_id}",
                                                               headers=client.writer, timeout=90))))
        writes.append(write("x"))
        readies.append(timed(lambda: _maybe(lambda: requests.get(f"{plan.url}/readyz", timeout=90))))
        time.sleep(0.2)

    private_postgres.start_in_background()
    ready_at = written_at = None
    while written_at is None and time.monotonic() - stopped < 150:
        if ready_at is None and private_postgres.accepting():
            ready_at = time.monotonic()
        _, response = write("after")
        if response is not None and response.status_code == 201:
            written_at = time.monotonic()
            ready_at = ready_at or written_at
        else:
            writes.append((0.0, response))
        time.sleep(0.05)
    assert ready_at is not None and written_at is not None, "no write succeeded within 150 s of the stop"
    slowest = lambda answers: max((t for t, _ in answers), default=0.0)  # noqa: E731
    report("PostgreSQL stopped", slowest_write=slowest(writes), slowest_read=slowest(reads),
           slowest_readyz=slowest(readies), first_write_after_ready=written_at - ready_at)
    print("fault test: PostgreSQL stopped: statuses", sorted({(r.status_code if r is not None else "timeout")
                                                             for _, r in writes + reads}))
    for _, response in writes + reads:
        assert_unavailable(response)
    assert all(r is not None and r.status_code == 503 for _, r in readies)
    # targets: about 1 s, 1 s, and 1-2 s
    assert slowest(writes) <= 2.0 and slowest(reads) <= 2.0, "a request waited for the database"
    assert slowest(readies) <= 2.0, "/readyz waited for the database"
    assert written_at - ready_at <= 5.0, "writes did not resume soon after the database was back"
    assert requests.get(f"{plan.url}/readyz", timeout=10).status_code == 200


def _maybe(call) -> requests.Response | None:
    try:
        return call()
    except requests.RequestException:
        return None


def _kafka_stack(start_plan_service, start_notification_service, postgres_env: dict[str, str], broker: PrivateKafka,
                 data_dir: Path):
    plan = start_plan_service(PLAN_SERVICE_PERSISTENCE="postgres", KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
                              KAFKA_TOPIC=TOPIC, PLAN_SERVICE_RELAY="inline", **postgres_env)
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_TOPIC": TOPIC, "NOTIFICATION_TRANSPORT": "kafka",
           "NOTIFICATION_KAFKA_GROUP": f"faults-{uuid.uuid4().hex[:8]}", "PLAN_SERVICE_URL": plan.url}
    port = free_port()  # NOTIFICATION_KAFKA_INSTANCE_ID: the default, host name and port
    notifications = start_notification_service(port=port, **env)
    client = Client(plan.url, data_dir)
    coordinator = f"k-{uuid.uuid4().hex[:6]}"
    plans = [client.open_plan(coordinator) for _ in range(4)]
    for plan_id in plans:
        client.post(plan_id, missed_meeting("m1"))
    assert wait_until(lambda: client.follow_ups(notifications.url, coordinator) == 4, 60), notifications.logs()[-3000:]
    restart = lambda: start_notification_service(port=port, **env)  # noqa: E731 - same port: same member id
    return plan, notifications, client, coordinator, plans, restart


def wait_until(predicate, timeout: float, interval: float = 0.05) -> float | None:
    """The moment (monotonic) ``predicate`` first held, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    return None


def test_kafka_broker_killed_relay_and_consumer_catch_up_within_seconds_of_it_being_ready(
        private_kafka, postgres_env, start_plan_service, start_notification_service, data_dir):
    plan, notifications, client, coordinator, plans, _ = _kafka_stack(
        start_plan_service, start_notification_service, postgres_env, private_kafka, data_dir)

    private_kafka.kill()
    killed = time.monotonic()
    for plan_id in plans:  # written while the broker is gone: stored, published later
        client.post(plan_id, missed_meeting("m2"))
    time.sleep(2)
    private_kafka.start_in_background()
    ready = wait_until(private_kafka.ready, 240, interval=0.1)
    assert ready is not None, "the private broker did not come back"
    relayed = wait_until(lambda: (lambda r: r.get("leader") and r.get("lag_positions") == 0)(client.relay()), 60)
    consumed = wait_until(lambda: client.follow_ups(notifications.url, coordinator) == 8, 60)
    private_kafka.wait_started()
    assert relayed is not None, f"the relay did not catch up: {client.relay()}\n{plan.logs()[-3000:]}"
    assert consumed is not None, f"the consumer did not catch up\n{notifications.logs()[-3000:]}"
    report("Kafka broker SIGKILLed", broker_ready_after_kill=ready - killed,
           relay_caught_up_after_ready=relayed - ready, consumer_caught_up_after_ready=consumed - ready)
    assert relayed - ready <= 8.0 and consumed - ready <= 8.0  # target: 5 s (before issue 13: 10-12 s here)
    time.sleep(1)
    assert client.follow_ups(notifications.url, coordinator) == 8  # nothing lost, nothing twice


def test_notification_service_killed_and_restarted_resumes_at_once(
        private_kafka, postgres_env, start_plan_service, start_notification_service, data_dir):
    plan, notifications, client, coordinator, plans, restart = _kafka_stack(
        start_plan_service, start_notification_service, postgres_env, private_kafka, data_dir)

    notifications.stop(signal.SIGKILL)
    for plan_id in plans:  # published while it is down
        client.post(plan_id, missed_meeting("m2"))
    assert wait_until(lambda: (lambda r: r.get("leader") and r.get("lag_positions") == 0)(client.relay()), 30)
    started = time.monotonic()
    notifications = restart()
    healthy = time.monotonic()
    consumed = wait_until(lambda: client.follow_ups(notifications.url, coordinator) == 8, 60)
    assert consumed is not None, f"the restarted instance did not catch up\n{notifications.logs()[-3000:]}"
    report("notification-service SIGKILLed and restarted", process_start_to_healthy=healthy - started,
           caught_up_after_healthy=consumed - healthy)
    assert consumed - healthy <= 5.0  # target: 2 s
    time.sleep(1)
    assert client.follow_ups(notifications.url, coordinator) == 8


def test_gunicorn_makes_no_control_socket_under_the_home_folder(start_plan_service, start_notification_service,
                                                               tmp_path):
    home, runtime = tmp_path / "home", tmp_path / "runtime"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    # gunicorn's default: $XDG_RUNTIME_DIR/gunicorn.ctl, or $HOME/.gunicorn/gunicorn.ctl without it
    start_plan_service(HOME=str(home), XDG_RUNTIME_DIR="", KAFKA_BOOTSTRAP_SERVERS="")
    start_notification_service(HOME=str(home), XDG_RUNTIME_DIR=str(runtime), KAFKA_BOOTSTRAP_SERVERS="")
    assert not (home / ".gunicorn").exists()
    assert list(runtime.iterdir()) == []
