"""Relay benchmarks on the real PostgreSQL and Kafka (start them: infra/*/start).

1. throughput: events already in the store, how fast the relay publishes them (acks=all);
2. lag: plan-service (gunicorn, PostgreSQL) taking events at a fixed rate from wrk; the time
   from each event's recording to its arrival at a Kafka consumer.

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
from datetime import datetime
from pathlib import Path

import orjson
import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
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

# What this module and bench/prompts.py made: bench/suite.py stops and drops them at exit.
SCHEMAS: list[str] = []
TOPICS: list[str] = []
SERVERS: list[ServerProcess] = []


def start(server: ServerProcess) -> ServerProcess:
    SERVERS.append(server)
    return server.start()


def fresh_schema() -> dict[str, str]:
    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(DB_URL, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{schema}"')
    SCHEMAS.append(schema)
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
    TOPICS.append(name)
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


def bench_lag(rate: int, seconds: float, tmp: Path, relay_mode: str, workers: int = 1,
              events_per_request: int = 5, connections: int = 8) -> dict[str, float]:
    """plan-service (PostgreSQL, relay ``inline`` in its workers or in a ``process`` of its own)
    taking ``rate`` events/s from wrk (bench/wrk/careplan.lua, paced; ``events_per_request``
    InformationGiven a POST, ``connections`` connections each on its own plan) for ``seconds``;
    a Kafka consumer in this process notes when each event arrives on the topic. Two lags per
    event: ``relay_*``, from the POST's answer reaching wrk (its events are committed by then;
    wrk notes the time on the same monotonic clock) to the arrival: the relay lag, as a client
    sees it; and ``p*``, from the event's ``recorded_at`` (stamped when the command is decided,
    before the commit) to the arrival: that plus the time the write took.
    ``workers``: plan-service's gunicorn workers; with 2 or more, most commits happen in a
    worker that does not relay, and wake the leader through PostgreSQL NOTIFY."""
    import load
    from kafka import KafkaConsumer

    pg = fresh_schema()
    topic = fresh_topic()
    port = free_port()
    env = {**os.environ, **pg, "PLAN_SERVICE_PERSISTENCE": "postgres", "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
           "KAFKA_TOPIC": topic, "CAREPLAN_DATA_DIR": str(tmp), "PLAN_SERVICE_PORT": str(port),
           "PLAN_SERVICE_THREADS": "8", "PLAN_SERVICE_WORKERS": str(workers),
           "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING")}
    relay_process = None
    if relay_mode == "process":
        env["PLAN_SERVICE_RELAY"] = "off"
        relay_process = subprocess.Popen([str(BIN / "plan-service"), "relay"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = start(ServerProcess([str(BIN / "plan-service"), "serve"], env, f"http://127.0.0.1:{port}",
                                 tmp / f"bench-{port}.log"))
    token = mint_token(load_or_create_dev_key(tmp / "dev-signing.key"), "bench", "integration")
    session = requests.Session()
    plan_ids = [session.post(f"{server.url}/v1/plans", headers={"Authorization": "Bearer " + token}, json={
        "patient_id": f"pat-synth-{uuid.uuid4().hex[:8]}", "service_level": "municipal", "age_band": "18-25"}
    ).json()["plan_id"] for _ in range(connections)]
    lags: list[float] = []  # recorded -> arrived
    arrived: dict[str, float] = {}  # event id -> time.monotonic() ms of its arrival
    consumer = KafkaConsumer(topic, bootstrap_servers=[KAFKA], group_id=None, auto_offset_reset="latest",
                             enable_auto_commit=False, fetch_max_wait_ms=5)
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)  # assigned: from here on, every new record is read
    done = threading.Event()

    def consume() -> None:
        while not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now, now_ms = time.time(), time.monotonic() * 1000
                for r in records:
                    event = orjson.loads(r.value)
                    lags.append((now - datetime.fromisoformat(event["recorded_at"]).timestamp()) * 1000)
                    arrived[event["event_id"]] = now_ms

    reader = threading.Thread(target=consume)
    reader.start()
    answers = tmp / f"answers-{uuid.uuid4().hex[:6]}-"
    try:
        posted = load.wrk(f"{server.url}/v1/plans/%s/events", connections=connections, seconds=seconds,
                          plans=plan_ids, token=token, events=events_per_request, rate=rate / events_per_request,
                          answers=answers)
        expected = (posted["requests"] - posted["errors"]) * events_per_request
        deadline = time.monotonic() + 30
        while len(lags) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        done.set()
        reader.join()
        consumer.close()
        server.stop()
        if relay_process:
            relay_process.terminate()
            relay_process.wait(10)
    if not lags:
        raise RuntimeError("no event arrived on the topic")
    after_answer = []  # the POST's answer (its events committed) -> arrived
    for file in tmp.glob(answers.name + "*"):
        for line in file.read_text().splitlines():
            at, *event_ids = line.split()
            after_answer += [arrived[e] - float(at) for e in event_ids if e in arrived]
        file.unlink()
    return {"rate": rate, "achieved": posted["per_second"] * events_per_request, "expected": expected,
            "arrived": len(lags), "post_p50": posted["p50"], "post_p99": posted["p99"],
            "post_errors": posted["errors"], "p50": statistics.median(lags), "p95": percentile(lags, 95),
            "p99": percentile(lags, 99), "max": max(lags),
            "relay_p50": statistics.median(after_answer) if after_answer else None,
            "relay_p95": percentile(after_answer, 95) if after_answer else None,
            "relay_p99": percentile(after_answer, 99) if after_answer else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rates", default="200,1000", help="events/s")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--relay", default="inline,process", help="inline, process or both")
    parser.add_argument("--plan-workers", default="1,2", help="plan-service gunicorn workers")
    args = parser.parse_args()
    tmp = Path(f"/tmp/careplan-bench-{os.getpid()}")
    tmp.mkdir(exist_ok=True)

    t = bench_throughput(args.events) if args.events else {"events": 0, "seconds": 1, "per_second": 0}
    print("\nrelay throughput (PostgreSQL notification log -> Kafka, acks=all, idempotent)")
    print("| events | seconds | events/s |\n|---:|---:|---:|")
    print(f"| {t['events']:,} | {t['seconds']:.2f} | {t['per_second']:,.0f} |")

    print("\nevent recorded -> on the Kafka topic (plan-service on PostgreSQL, wrk paced), ms")
    print("| relay | workers | target events/s | achieved/s | arrived | recorded -> topic p50 / p99 | "
          "answered -> topic p50 / p99 | POST p50 / p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    runs = [(m, int(w), int(r)) for m in args.relay.split(",") for w in args.plan_workers.split(",")
            for r in args.rates.split(",")]
    for mode, workers, rate in runs:
        r = bench_lag(rate, args.seconds, tmp, mode, workers)
        print(f"| {mode} | {workers} | {rate} | {r['achieved']:.0f} | {r['arrived']}/{r['expected']} | "
              f"{r['p50']:.1f} / {r['p99']:.1f} | {r['relay_p50']:.1f} / {r['relay_p99']:.1f} | "
              f"{r['post_p50']:.1f} / {r['post_p99']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
