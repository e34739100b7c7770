"""The relay against the real broker and the real PostgreSQL: order, no gaps, crash, outage."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_shared.events import decode_event
from careplan_testing import BIN, ROOT, read_topic
from plan_service.bootstrap import bootstrap
from plan_service.config import Config

pytestmark = pytest.mark.integration
ACTOR = {"role": "clinician", "id": "clin-1"}


def pg_kafka_env(postgres_env: dict, bootstrap_servers: str, topic: str, **extra) -> dict[str, str]:
    return {**os.environ, **postgres_env, "PLAN_SERVICE_PERSISTENCE": "postgres",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers, "KAFKA_TOPIC": topic, **extra}


def decoded(records) -> list:
    return [decode_event(__import__("orjson").loads(r.value)) for r in records]


def first_seen_versions(events) -> dict[uuid.UUID, list[int]]:
    """Per plan, the versions in the order they first appeared (re-sends dropped)."""
    seen: dict[uuid.UUID, list[int]] = defaultdict(list)
    done: set[uuid.UUID] = set()
    for e in events:
        if e.event_id not in done:
            done.add(e.event_id)
            seen[e.plan_id].append(e.plan_version)
    return seen


def test_posted_events_reach_the_topic_in_order_per_plan(start_plan_service, data_dir, postgres_env,
                                                          kafka_bootstrap, kafka_topic):
    server = start_plan_service(**pg_kafka_env(postgres_env, kafka_bootstrap, kafka_topic))
    key = load_or_create_dev_key(data_dir / "dev-signing.key")
    auth = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration")}
    plan_ids = []
    for n in range(4):
        r = requests.post(f"{server.url}/v1/plans", headers=auth, timeout=10, json={
            "patient_id": f"pat-synth-{n}", "service_level": "specialist", "age_band": "15-17"})
        plan_ids.append(r.json()["plan_id"])
    for i in range(10):
        for plan_id in plan_ids:
            r = requests.post(f"{server.url}/v1/plans/{plan_id}/events", headers=auth, timeout=10,
                              json={"type": "InformationGiven", "information_id": f"i{i}",
                                    "topic": "rights", "form": "oral", "description": "d"})
            assert r.status_code == 201
    records = read_topic(kafka_bootstrap, kafka_topic, expected=44)
    events = decoded(records)
    assert len(events) == 44
    for record, event in zip(records, events, strict=False):
        assert record.key == str(event.plan_id).encode()
        assert dict(record.headers)["event_id"] == str(event.event_id).encode()
    partitions: dict[str, set[int]] = defaultdict(set)
    for record, event in zip(records, events, strict=False):
        partitions[str(event.plan_id)].add(record.partition)
    assert all(len(p) == 1 for p in partitions.values()), "one plan, one partition"
    by_plan = first_seen_versions(events)
    assert {str(p) for p in by_plan} == set(plan_ids)
    assert all(versions == list(range(1, 12)) for versions in by_plan.values())
    ready = requests.get(f"{server.url}/readyz", timeout=10).json()
    assert ready["checks"]["kafka"] == "ok" and ready["checks"]["relay"]["leader"] is True


def write_events(config: Config, plans: int, per_plan: int, stop_after: float | None = None) -> list[uuid.UUID]:
    app = bootstrap(config).plans
    ids = [app.open_plan(patient_id=f"pat-synth-{uuid.uuid4().hex[:8]}", service_level="municipal", age_band="18-25",
                         actor=ACTOR).plan_id for n in range(plans)]
    for i in range(per_plan - 1):
        for plan_id in ids:
            app.record(plan_id, [("WhatMattersRecorded", {"text": f"n{i}", "language": "nb"})], actor=ACTOR)
    app.close()
    return ids


def test_relay_killed_mid_stream_leaves_no_gap(tmp_path, postgres_env, kafka_bootstrap, kafka_topic):
    config = Config(data_dir=tmp_path, persistence="postgres", postgres=postgres_env)
    write_events(config, plans=20, per_plan=50)  # 1,000 events before the relay starts
    env = pg_kafka_env(postgres_env, kafka_bootstrap, kafka_topic, CAREPLAN_DATA_DIR=str(tmp_path),
                       PLAN_SERVICE_RELAY="off")
    log = open(tmp_path / "relay.log", "ab")

    def start_relay() -> subprocess.Popen:
        return subprocess.Popen([str(BIN / "plan-service"), "relay"], env=env, stdout=log, stderr=log)

    relay = start_relay()
    more = threading.Thread(target=write_events, args=(config, 20, 50))  # 1,000 more, meanwhile
    more.start()
    # kill it with SIGKILL while it is publishing
    deadline = time.monotonic() + 60
    while len(read_topic(kafka_bootstrap, kafka_topic, expected=300, timeout=2)) < 300:
        assert time.monotonic() < deadline, (tmp_path / "relay.log").read_text()[-2000:]
    relay.send_signal(signal.SIGKILL)
    relay.wait(timeout=10)
    more.join(timeout=120)
    relay = start_relay()
    try:
        records = read_topic(kafka_bootstrap, kafka_topic, expected=2000, timeout=120, distinct=True)
        events = decoded(records)
        ids = {e.event_id for e in events}
        assert len(ids) == 2000, f"{len(ids)} distinct events on the topic"
        by_plan = first_seen_versions(events)
        assert len(by_plan) == 40
        assert all(v == list(range(1, 51)) for v in by_plan.values()), "order per plan kept"
        print(f"\n{len(events)} records for 2000 events ({len(events) - 2000} re-sent after SIGKILL)")
    finally:
        relay.terminate()
        relay.wait(timeout=15)


def infra(script: str) -> None:
    subprocess.run([str(ROOT / "infra" / "kafka" / script)], check=True, capture_output=True, timeout=240)


def test_broker_outage_shows_in_readyz_and_the_relay_resumes(start_plan_service, data_dir, postgres_env,
                                                              kafka_bootstrap, kafka_topic):
    server = start_plan_service(**pg_kafka_env(postgres_env, kafka_bootstrap, kafka_topic))
    key = load_or_create_dev_key(data_dir / "dev-signing.key")
    auth = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration")}
    plan_id = requests.post(f"{server.url}/v1/plans", headers=auth, timeout=10, json={
        "patient_id": "pat-synth-1", "service_level": "municipal", "age_band": "18-25"}).json()["plan_id"]
    assert len(read_topic(kafka_bootstrap, kafka_topic, expected=1)) == 1
    infra("stop")
    try:
        ready = requests.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["kafka"] == "unreachable"
        for i in range(5):  # writes go on: the event store is the truth, Kafka follows
            r = requests.post(f"{server.url}/v1/plans/{plan_id}/events", headers=auth, timeout=10,
                              json={"type": "WhatMattersRecorded", "text": f"while down {i}"})
            assert r.status_code == 201
    finally:
        infra("start")
    events = decoded(read_topic(kafka_bootstrap, kafka_topic, expected=6, timeout=90, distinct=True))
    assert first_seen_versions(events)[uuid.UUID(plan_id)] == [1, 2, 3, 4, 5, 6]
    deadline = time.monotonic() + 30
    while requests.get(f"{server.url}/readyz", timeout=30).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
