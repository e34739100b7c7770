"""Relay benchmarks on the real PostgreSQL and Kafka (start them: infra/*/start).

1. throughput: events already in the store, how fast the relay publishes them (acks=all);
2. lag: plan-service (gunicorn, PostgreSQL, inline relay) taking POSTs at a fixed rate; the
   time from sending the POST to the event arriving at a Kafka consumer, per event.

Prints tables; asserts nothing. Usage: .venv/bin/python bench/relay.py [--events N] [--rates 200,1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from careplan_shared.auth import load_or_create_dev_key, mint_token  # noqa: E402
from careplan_testing import BIN, ServerProcess, free_port  # noqa: E402
from plan_service.adapters.kafka import KafkaPublisher  # noqa: E402
from plan_service.adapters.positions import PostgresPositions, postgres_conninfo  # noqa: E402
from plan_service.application.relay import Relay  # noqa: E402
from plan_service.bootstrap import bootstrap  # noqa: E402
from plan_service.config import Config  # noqa: E402

DB_URL = os.environ.get("CAREPLAN_TEST_DATABASE_URL",
                        "postgresql://careplan:careplan@127.0.0.1:55432/careplan_test")
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
ACTOR = {"role": "clinician", "id": "bench"}


def fresh_schema() -> dict[str, str]:
    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(DB_URL, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{schema}"')
    return {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": DB_URL.rsplit(":", 1)[1].split("/")[0],
            "POSTGRES_USER": "careplan", "POSTGRES_PASSWORD": "careplan",
            "POSTGRES_DBNAME": DB_URL.rsplit("/", 1)[1], "POSTGRES_SCHEMA": schema}


def fresh_topic() -> str:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    name = f"bench.plan-events.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=[KAFKA])
    admin.create_topics([NewTopic(name, 6, 1)])
    admin.close()
    return name


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_throughput(n_events: int) -> dict[str, float]:
    pg = fresh_schema()
    config = Config(data_dir=Path("/tmp"), persistence="postgres", postgres=pg)
    app = bootstrap(config).plans
    plans = [app.open_plan(patient_id=f"pat-synth-{i}", service_level="municipal", age_band="18-25",
                           actor=ACTOR).plan_id for i in range(100)]
    per_plan = n_events // len(plans) - 1
    batch = [("WhatMattersRecorded", {"text": "bench", "language": "nb"})] * 10
    for plan_id in plans:
        for _ in range(per_plan // 10):
            app.record(plan_id, list(batch), actor=ACTOR)
    total = len(list(app.recorder.select_notifications(start=1, limit=10**7)))
    topic = fresh_topic()
    relay = Relay(app, KafkaPublisher(KAFKA, topic),
                  PostgresPositions(postgres_conninfo(pg), pg["POSTGRES_SCHEMA"], topic))
    relay.positions.acquire_leadership(1)
    started = time.perf_counter()
    while relay.step():
        pass
    elapsed = time.perf_counter() - started
    relay.publisher.close()
    relay.positions.release_leadership()
    return {"events": total, "seconds": elapsed, "per_second": total / elapsed}


def bench_lag(rate: int, seconds: float, tmp: Path, relay_mode: str) -> dict[str, float]:
    from kafka import KafkaConsumer

    pg = fresh_schema()
    topic = fresh_topic()
    port = free_port()
    env = {**os.environ, **pg, "PLAN_SERVICE_PERSISTENCE": "postgres", "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
           "KAFKA_TOPIC": topic, "CAREPLAN_DATA_DIR": str(tmp), "PLAN_SERVICE_PORT": str(port),
           "PLAN_SERVICE_THREADS": "16", "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING")}
    relay_process = None
    if relay_mode == "process":
        env["PLAN_SERVICE_RELAY"] = "off"
        relay_process = subprocess.Popen([str(BIN / "plan-service"), "relay"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = ServerProcess([str(BIN / "plan-service"), "serve"], env, f"http://127.0.0.1:{port}",
                           tmp / f"bench-{port}.log").start()
    auth = {"Authorization": "Bearer " + mint_token(load_or_create_dev_key(tmp / "dev-signing.key"),
                                                    "bench", "integration")}
    session = requests.Session()
    plan_ids = [session.post(f"{server.url}/v1/plans", headers=auth, json={
        "patient_id": f"pat-synth-{i}", "service_level": "municipal", "age_band": "18-25"}).json()["plan_id"]
        for i in range(50)]
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    arrived: dict[str, float] = {}
    consumer = KafkaConsumer(topic, bootstrap_servers=[KAFKA], group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False, fetch_max_wait_ms=5)
    consumer.poll(timeout_ms=500)
    done = threading.Event()

    def consume() -> None:
        while not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for r in records:
                    arrived.setdefault(dict(r.headers)["event_id"].decode(), now)

    reader = threading.Thread(target=consume)
    reader.start()
    local = threading.local()

    def post(i: int) -> None:
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        t0 = time.perf_counter()
        r = s.post(f"{server.url}/v1/plans/{plan_ids[i % len(plan_ids)]}/events", headers=auth,
                   json={"type": "WhatMattersRecorded", "text": "bench"})
        if r.status_code == 201:
            event_id = r.json()["events"][0]["event_id"]
            answered[event_id] = time.perf_counter()
            sent[event_id] = t0

    total = int(rate * seconds)
    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, i)
    achieved = total / (time.perf_counter() - started)
    deadline = time.monotonic() + 30
    while len(set(sent) - set(arrived)) and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    reader.join()
    consumer.close()
    server.stop()
    if relay_process:
        relay_process.terminate()
        relay_process.wait(10)
    lags = [(arrived[e] - t0) * 1000 for e, t0 in sent.items() if e in arrived]
    responses = [(answered[e] - t0) * 1000 for e, t0 in sent.items()]
    after = [(arrived[e] - answered[e]) * 1000 for e in sent if e in arrived]
    return {"post_p50": statistics.median(responses), "post_p99": percentile(responses, 99),
            "relay_p50": statistics.median(after), "relay_p99": percentile(after, 99),
            "rate": rate, "achieved": achieved, "posted": len(sent), "arrived": len(lags),
            "p50": statistics.median(lags), "p95": percentile(lags, 95), "p99": percentile(lags, 99),
            "max": max(lags)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rates", default="200,1000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--relay", default="inline,process", help="inline, process or both")
    args = parser.parse_args()
    tmp = Path(f"/tmp/careplan-bench-{os.getpid()}")
    tmp.mkdir(exist_ok=True)

    t = bench_throughput(args.events) if args.events else {"events": 0, "seconds": 1, "per_second": 0}
    print("\nrelay throughput (PostgreSQL notification log -> Kafka, acks=all, idempotent)")
    print("| events | seconds | events/s |\n|---:|---:|---:|")
    print(f"| {t['events']:,} | {t['seconds']:.2f} | {t['per_second']:,.0f} |")

    print("\nPOST -> event on the Kafka topic (plan-service on PostgreSQL, gunicorn 1 worker), ms")
    print("| relay | target rate/s | achieved/s | events | p50 | p95 | p99 | max "
          "| POST answered p50 / p99 | answer -> topic p50 / p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in args.relay.split(","):
        for rate in (int(r) for r in args.rates.split(",")):
            r = bench_lag(rate, args.seconds, tmp, mode)
            print(f"| {mode} | {rate} | {r['achieved']:.0f} | {r['arrived']}/{r['posted']} | {r['p50']:.1f} | "
                  f"{r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['post_p50']:.1f} / {r['post_p99']:.1f} | "
                  f"{r['relay_p50']:.1f} / {r['relay_p99']:.1f} |")


if __name__ == "__main__":
    main()
