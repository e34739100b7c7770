"""notification-service benchmarks, over each transport (start PostgreSQL and Kafka first for
the Kafka rows: infra/postgres/start, infra/kafka/start).

1. replay: integration events already waiting (a plan-service feed, or a Kafka topic from
   offset 0), processed by the consumer into a fresh store; events per second.
2. POST -> prompt: both services running; while a background load posts plan events at a
   fixed rate, a probe posts TriangleMeetingMissed and polls the coordinator's inbox until the
   follow-up is there; the time from sending the POST to seeing the prompt.

Prints tables; asserts nothing. Usage: .venv/bin/python bench/prompts.py [--events N] [--rate R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "services/notification-service/tests"))
sys.path.insert(0, str(ROOT / "bench"))
from relay import KAFKA, fresh_schema, fresh_topic, percentile  # noqa: E402

from careplan_shared.auth import load_or_create_dev_key, mint_token  # noqa: E402
from careplan_testing import BIN, ServerProcess, free_port  # noqa: E402
from conftest import PlanStream  # noqa: E402  (synthetic integration events)
from notification_service.adapters.sources import FeedSource, KafkaSource  # noqa: E402
from notification_service.adapters.store import SQLiteStore  # noqa: E402
from notification_service.application.consumer import Consumer  # noqa: E402
from notification_service.application.service import Notifications  # noqa: E402
from plan_service.bootstrap import bootstrap as plan_bootstrap  # noqa: E402
from plan_service.config import Config as PlanConfig  # noqa: E402

ACTOR = {"role": "clinician", "id": "bench"}


def synthetic_plans(n_events: int) -> list[dict]:
    """Wire events of many plans: open, coordinator, then meetings scheduled and missed."""
    events: list[dict] = []
    while len(events) < n_events:
        s = PlanStream()
        events += [s.wire("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None),
                   s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist")]
        for m in range(4):
            events += [s.wire("TriangleMeetingScheduled", meeting_id=f"m{m}", scheduled_for=s_at(),
                              place="x", transport=None, companion=None, no_show_strategy="Ring"),
                       s.wire("TriangleMeetingMissed", meeting_id=f"m{m}")]
    return events[:n_events]


def s_at():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def drain(consumer: Consumer, total: int, timeout: float = 300) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while consumer.handled < total and time.monotonic() < deadline:
        consumer.step()
    return time.perf_counter() - started


def replay_kafka(n_events: int, tmp: Path) -> dict[str, float]:
    from kafka import KafkaProducer

    topic = fresh_topic()
    producer = KafkaProducer(bootstrap_servers=[KAFKA], acks="all", linger_ms=5, batch_size=256 * 1024)
    for e in synthetic_plans(n_events):
        producer.send(topic, key=e["plan_id"].encode(), value=orjson.dumps(e))
    producer.flush()
    producer.close()
    notifications = Notifications(SQLiteStore(tmp / f"replay-{topic}.sqlite"))
    consumer = Consumer(KafkaSource(KAFKA, topic, group_id=f"bench-{uuid.uuid4().hex[:6]}"), notifications)
    while consumer.step() == 0:  # join the group and get the first records
        pass
    seconds = drain(consumer, n_events)
    consumer.source.close()
    return {"events": consumer.handled, "seconds": seconds, "per_second": consumer.handled / seconds}


def replay_feed(n_events: int, tmp: Path) -> dict[str, float]:
    data = tmp / f"feed-{uuid.uuid4().hex[:6]}"
    app = plan_bootstrap(PlanConfig(data_dir=data)).plans
    written = 0
    while written < n_events:
        plan_id = app.open_plan(patient_id=f"pat-synth-{uuid.uuid4().hex[:8]}", service_level="municipal",
                                age_band="18-25",
                                actor=ACTOR).plan_id
        items = [("CoordinatorAssigned", {"coordinator_id": "k1", "service_level": "specialist"})]
        for m in range(9):
            items += [("TriangleMeetingScheduled", {"meeting_id": f"m{m}", "scheduled_for": s_at(), "place": "x",
                                                    "no_show_strategy": "Ring"}),
                      ("TriangleMeetingMissed", {"meeting_id": f"m{m}"})]
        app.record(plan_id, items, actor=ACTOR)
        written += 1 + len(items)
    app.close()
    port = free_port()
    server = ServerProcess([str(BIN / "plan-service"), "serve"],
                           {**os.environ, "CAREPLAN_DATA_DIR": str(data), "PLAN_SERVICE_PORT": str(port),
                            "LOG_LEVEL": "WARNING"}, f"http://127.0.0.1:{port}", tmp / "feed-plan.log").start()
    key = load_or_create_dev_key(data / "dev-signing.key")
    token = mint_token(key, "bench", "integration")
    notifications = Notifications(SQLiteStore(data / "replay.sqlite"))
    consumer = Consumer(FeedSource(server.url, lambda: token, batch=1000), notifications)
    seconds = drain(consumer, written)
    server.stop()
    return {"events": consumer.handled, "seconds": seconds, "per_second": consumer.handled / seconds}


def post_to_prompt(transport: str, rate: int, samples: int, tmp: Path) -> dict[str, float]:
    data = tmp / f"latency-{transport}-{uuid.uuid4().hex[:6]}"
    data.mkdir()
    plan_port, notification_port = free_port(), free_port()
    base = {**os.environ, "CAREPLAN_DATA_DIR": str(data), "LOG_LEVEL": "WARNING"}
    plan_env = {**base, "PLAN_SERVICE_PORT": str(plan_port), "PLAN_SERVICE_THREADS": "16"}
    notification_env = {**base, "NOTIFICATION_SERVICE_PORT": str(notification_port),
                        "PLAN_SERVICE_URL": f"http://127.0.0.1:{plan_port}"}
    if transport == "kafka":
        topic = fresh_topic()
        plan_env.update(PLAN_SERVICE_PERSISTENCE="postgres", KAFKA_BOOTSTRAP_SERVERS=KAFKA, KAFKA_TOPIC=topic,
                        **fresh_schema())
        notification_env.update(NOTIFICATION_TRANSPORT="kafka", KAFKA_BOOTSTRAP_SERVERS=KAFKA, KAFKA_TOPIC=topic,
                                NOTIFICATION_KAFKA_GROUP=f"bench-{uuid.uuid4().hex[:6]}")
    plan = ServerProcess([str(BIN / "plan-service"), "serve"], plan_env, f"http://127.0.0.1:{plan_port}",
                         data / "plan.log").start()
    notif = ServerProcess([str(BIN / "notification-service"), "serve"], notification_env,
                          f"http://127.0.0.1:{notification_port}", data / "notification.log").start()
    key = load_or_create_dev_key(data / "dev-signing.key")
    writer = {"Authorization": "Bearer " + mint_token(key, "epr", "integration")}
    coordinator = {"Authorization": "Bearer " + mint_token(key, "k-probe", "coordinator")}
    session = requests.Session()

    def new_plan(coordinator_id: str) -> str:
        plan_id = session.post(f"{plan.url}/v1/plans", headers=writer, json={
            "patient_id": f"pat-synth-{uuid.uuid4().hex[:8]}", "service_level": "municipal",
            "age_band": "26-64"}).json()["plan_id"]
        session.post(f"{plan.url}/v1/plans/{plan_id}/events", headers=writer,
                     json={"type": "CoordinatorAssigned", "coordinator_id": coordinator_id})
        return plan_id

    load_plans = [new_plan("k-load") for _ in range(40)]
    stop = threading.Event()
    sent = [0]

    def background() -> None:
        local = requests.Session()
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            while not stop.is_set():
                delay = started + sent[0] / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                plan_id = load_plans[sent[0] % len(load_plans)]
                pool.submit(local.post, f"{plan.url}/v1/plans/{plan_id}/events", headers=writer,
                            json={"type": "WhatMattersRecorded", "text": "load"})
                sent[0] += 1

    loader = threading.Thread(target=background)
    loader.start()
    latencies = []
    try:
        time.sleep(2)  # let the load settle
        for _ in range(samples):
            plan_id = new_plan("k-probe")
            session.post(f"{plan.url}/v1/plans/{plan_id}/events", headers=writer, json={
                "type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": s_at().isoformat(),
                "place": "x", "no_show_strategy": "Ring"})
            t0 = time.perf_counter()
            session.post(f"{plan.url}/v1/plans/{plan_id}/events", headers=writer,
                         json={"type": "TriangleMeetingMissed", "meeting_id": "m1"})
            while True:
                items = session.get(f"{notif.url}/v1/prompts", headers=coordinator).json()["items"]
                if any(p["plan_id"] == plan_id for p in items):
                    latencies.append((time.perf_counter() - t0) * 1000)
                    break
                if time.perf_counter() - t0 > 30:
                    break
                time.sleep(0.005)
    finally:
        stop.set()
        loader.join()
        notif.stop()
        plan.stop()
    return {"transport": transport, "rate": rate, "samples": len(latencies),
            "p50": statistics.median(latencies), "p99": percentile(latencies, 99), "max": max(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--transports", default="feed,kafka")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="careplan-bench-"))
    transports = args.transports.split(",")

    print("\nreplay: events waiting, processed into a fresh SQLite prompt store")
    print("| transport | events | seconds | events/s |\n|---|---:|---:|---:|")
    for transport in transports:
        r = (replay_feed if transport == "feed" else replay_kafka)(args.events, tmp)
        print(f"| {transport} | {r['events']:,} | {r['seconds']:.2f} | {r['per_second']:,.0f} |")

    print(f"\nPOST TriangleMeetingMissed -> follow-up visible in the inbox, ms, under {args.rate} events/s of other load")
    print("| transport | samples | p50 | p99 | max |\n|---|---:|---:|---:|---:|")
    for transport in transports:
        r = post_to_prompt(transport, args.rate, args.samples, tmp)
        print(f"| {transport} | {r['samples']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} |")


if __name__ == "__main__":
    main()
