"""notification-service benchmarks, over each transport (start PostgreSQL and Kafka first for
the Kafka rows: infra/postgres/start, infra/kafka/start).

1. replay: integration events already waiting (a plan-service feed, or a Kafka topic from
   offset 0), processed by the consumer into a fresh store (SQLite, or PostgreSQL in a fresh
   schema); events per second, from the first batch handed over to the last event stored.
2. POST -> prompt: both services running; while wrk posts plan events at a fixed rate (the
   background load, paced by bench/wrk/careplan.lua), a probe posts TriangleMeetingMissed and polls the coordinator's inbox until the
   follow-up is there; the time from sending the POST to seeing the prompt. plan-service runs
   with --plan-workers gunicorn workers (2 or more: the relay leads in one of them and the
   others' commits wake it across processes).

Prints tables; asserts nothing. Usage: .venv/bin/python bench/prompts.py [--events N] [--rate R]
[--samples S] [--transports feed,kafka] [--stores sqlite,postgres] [--plan-workers 1,2]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "services/notification-service/tests"))
sys.path.insert(0, str(ROOT / "bench"))
import load  # noqa: E402
from relay import DB_URL, KAFKA, fresh_schema, fresh_topic, percentile, start  # noqa: E402

from careplan_shared.auth import load_or_create_dev_key, mint_token  # noqa: E402
from careplan_testing import BIN, ServerProcess, free_port  # noqa: E402
from conftest import PlanStream  # noqa: E402  (synthetic integration events)
from notification_service.adapters.sources import FeedSource, KafkaSource  # noqa: E402
from notification_service.adapters.store import PostgresStore, SQLiteStore  # noqa: E402
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


@contextmanager
def service_gc():
    """The garbage collection the service runs its consumer with (bootstrap.tune_gc), for the
    replay only: put back afterwards."""
    try:
        from notification_service.bootstrap import tune_gc
    except ImportError:  # a version of the service without it (comparing before/after): Python's own
        yield
        return
    threshold = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def prompt_store(store: str, tmp: Path, name: str):
    """A fresh prompt store: a SQLite file, or a fresh schema of the test PostgreSQL; encrypted
    as the service's own is (bootstrap always gives it a cipher)."""
    from notification_service.adapters.crypto import Cipher

    cipher = Cipher(os.urandom(32))
    if store == "postgres":
        pg = fresh_schema()
        return PostgresStore(f"host={pg['POSTGRES_HOST']} port={pg['POSTGRES_PORT']} dbname={pg['POSTGRES_DBNAME']} "
                             f"user={pg['POSTGRES_USER']} password={pg['POSTGRES_PASSWORD']} "
                             f"options=-csearch_path={pg['POSTGRES_SCHEMA']}", cipher=cipher)
    return SQLiteStore(tmp / f"{name}.sqlite", cipher)


def replay_kafka(n_events: int, tmp: Path, store: str = "sqlite") -> dict[str, float]:
    from kafka import KafkaProducer

    topic = fresh_topic()
    producer = KafkaProducer(bootstrap_servers=[KAFKA], acks="all", linger_ms=5, batch_size=256 * 1024)
    for e in synthetic_plans(n_events):
        producer.send(topic, key=e["plan_id"].encode(), value=orjson.dumps(e))
    producer.flush()
    producer.close()
    notifications = Notifications(prompt_store(store, tmp, f"replay-{topic}"))
    consumer = Consumer(KafkaSource(KAFKA, topic, group_id=f"bench-{uuid.uuid4().hex[:6]}"), notifications)
    with service_gc():
        while consumer.step() == 0:  # join the group and get the first records (not timed: the group join)
            pass
        first = consumer.handled  # ...nor counted
        cpu = time.process_time()
        seconds = drain(consumer, n_events)
        cpu = time.process_time() - cpu
    consumer.source.close()
    notifications.store.close()
    timed = consumer.handled - first
    return {"events": consumer.handled, "seconds": seconds, "per_second": timed / seconds,
            "per_cpu_second": timed / cpu if cpu else 0.0}


def replay_feed(n_events: int, tmp: Path, store: str = "sqlite") -> dict[str, float]:
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
    server = start(ServerProcess([str(BIN / "plan-service"), "serve"],
                                 {**os.environ, "CAREPLAN_DATA_DIR": str(data), "PLAN_SERVICE_PORT": str(port),
                                  "LOG_LEVEL": "WARNING"}, f"http://127.0.0.1:{port}", tmp / "feed-plan.log"))
    key = load_or_create_dev_key(data / "dev-signing.key")
    token = mint_token(key, "bench", "integration")
    notifications = Notifications(prompt_store(store, data, "replay"))
    consumer = Consumer(FeedSource(server.url, lambda: token, batch=1000), notifications)
    with service_gc():
        cpu = time.process_time()
        seconds = drain(consumer, written)
        cpu = time.process_time() - cpu
    server.stop()
    notifications.store.close()
    return {"events": consumer.handled, "seconds": seconds, "per_second": consumer.handled / seconds,
            "per_cpu_second": consumer.handled / cpu if cpu else 0.0}


def post_to_prompt(transport: str, rate: int, samples: int, tmp: Path, plan_workers: int = 1) -> dict[str, float]:
    data = tmp / f"latency-{transport}-{uuid.uuid4().hex[:6]}"
    data.mkdir()
    plan_port, notification_port = free_port(), free_port()
    base = {**os.environ, "CAREPLAN_DATA_DIR": str(data), "LOG_LEVEL": "WARNING"}
    plan_env = {**base, "PLAN_SERVICE_PORT": str(plan_port), "PLAN_SERVICE_THREADS": "16",
                "PLAN_SERVICE_WORKERS": str(plan_workers)}
    notification_env = {**base, "NOTIFICATION_SERVICE_PORT": str(notification_port),
                        "PLAN_SERVICE_URL": f"http://127.0.0.1:{plan_port}"}
    if transport == "kafka":
        topic = fresh_topic()
        plan_env.update(PLAN_SERVICE_PERSISTENCE="postgres", KAFKA_BOOTSTRAP_SERVERS=KAFKA, KAFKA_TOPIC=topic,
                        **fresh_schema())
        notification_env.update(NOTIFICATION_TRANSPORT="kafka", KAFKA_BOOTSTRAP_SERVERS=KAFKA, KAFKA_TOPIC=topic,
                                NOTIFICATION_KAFKA_GROUP=f"bench-{uuid.uuid4().hex[:6]}")
    plan = start(ServerProcess([str(BIN / "plan-service"), "serve"], plan_env, f"http://127.0.0.1:{plan_port}",
                               data / "plan.log"))
    notif = start(ServerProcess([str(BIN / "notification-service"), "serve"], notification_env,
                                f"http://127.0.0.1:{notification_port}", data / "notification.log"))
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

    # The background load: 8 connections, each writing to 25 plans in turn (200 plans, one event
    # a second each at 200/s): many plans, as an EPR integration writes, not a few that grow
    # by 25 events a second (notification-service reads and writes a plan's whole view for
    # each of its events: README, "Benchmarks").
    connections = 8
    load_plans = [new_plan("k-load") for _ in range(connections * 25)]
    duration = max(20, round(samples * 0.3))
    background: dict = {}

    def run_load() -> None:  # wrk, paced: InformationGiven "both" (written: no prompt of its own)
        try:
            background.update(load.wrk(f"{plan.url}/v1/plans/%s/events", connections=connections, seconds=duration,
                                       plans=load_plans, token=writer["Authorization"].removeprefix("Bearer "),
                                       rate=rate))
        except Exception as e:  # noqa: BLE001 - reported with the figures
            background["error"] = f"{type(e).__name__}: {e}"

    loader = threading.Thread(target=run_load)
    loader.start()
    latencies = []
    try:
        time.sleep(2)  # let the load settle
        while len(latencies) < samples and loader.is_alive():
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
                time.sleep(0.01)
    finally:
        loader.join()
        notif.stop()
        plan.stop()
    if "error" in background:
        raise RuntimeError(f"the background load failed: {background['error']}")
    if not latencies:
        raise RuntimeError("no prompt arrived")
    return {"transport": transport, "rate": rate, "samples": len(latencies), "plan_workers": plan_workers,
            "load_per_second": background["per_second"], "load_errors": background["errors"],
            "load_p99": background["p99"],
            "p50": statistics.median(latencies), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
            "max": max(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--transports", default="feed,kafka")
    parser.add_argument("--stores", default="sqlite,postgres" if DB_URL else "sqlite",
                        help="prompt stores to replay into")
    parser.add_argument("--plan-workers", default="1,2", help="plan-service gunicorn workers for POST -> prompt")
    parser.add_argument("--skip", default="", help="replay or prompt")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="careplan-bench-"))
    transports = args.transports.split(",")

    if "replay" not in args.skip:
        print("\nreplay: events waiting, processed into a fresh prompt store (events/s of the consumer's own CPU "
              "beside: the machine is shared)")
        print("| transport | store | events | seconds | events/s | events/CPU-s |\n|---|---|---:|---:|---:|---:|")
        for transport in transports:
            for store in args.stores.split(","):
                r = (replay_feed if transport == "feed" else replay_kafka)(args.events, tmp, store)
                print(f"| {transport} | {store} | {r['events']:,} | {r['seconds']:.2f} | {r['per_second']:,.0f} "
                      f"| {r['per_cpu_second']:,.0f} |", flush=True)

    if "prompt" not in args.skip:
        print(f"\nPOST TriangleMeetingMissed -> follow-up visible in the inbox, ms, under {args.rate} events/s of other "
              "load")
        print("| transport | plan-service workers | load achieved/s | samples | p50 | p95 | p99 | max |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|")
        for transport in transports:
            for workers in (int(w) for w in args.plan_workers.split(",")):
                r = post_to_prompt(transport, args.rate, args.samples, tmp, workers)
                print(f"| {transport} | {workers} | {r['load_per_second']:.0f} | {r['samples']} | {r['p50']:.1f} "
                      f"| {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
