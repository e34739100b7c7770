"""`make bench` (bench/run starts PostgreSQL and Kafka, then this): every figure of issue 11, each
measured side by side with its baseline in the same run, ROUNDS rounds, medians printed as
Markdown tables with the targets' ratios next to them.

Load comes from compiled generators: wrk (bench/wrk/careplan.lua, one thread per connection) and
pgbench (bench/pg/insert_event.sql); wrk paces itself where a figure needs a fixed rate. The
only Python clients are probes that measure one request at a time. The Kafka figures call bench/prompts.py and bench/relay.py,
the in-process timeline figure bench/reads.py. Progress goes to stderr, tables to stdout.

Environment: CAREPLAN_TEST_DATABASE_URL (required), KAFKA_BOOTSTRAP_SERVERS (else the Kafka tables
are skipped), BENCH_ROUNDS (3), BENCH_SECONDS (5, per wrk/pgbench run), BENCH_PROMPT_SAMPLES (100
per round), BENCH_RELAY_SECONDS (8 s of sending at 1,000 events/s per round), BENCH_REPLAY_EVENTS
(20,000 per round), BENCH_ONLY (comma list of parts: throughput,
length, prompt, relay, replay, timeline), PLAN_SERVICE_WORKERS / PLAN_SERVICE_THREADS (both
servers, as for `plan-service serve`), BENCH_INFRA (what bench/run started or reused).
"""

from __future__ import annotations

import atexit
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import load  # noqa: E402  (bench/, the script's own folder)

from careplan_testing import ServerProcess, free_port  # noqa: E402
from plan_service.api.schemas import MAX_EVENTS_PER_REQUEST  # noqa: E402
from plan_service.config import Config  # noqa: E402

DB_URL = os.environ.get("CAREPLAN_TEST_DATABASE_URL", "")
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", "3")))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
PROMPT_SAMPLES = int(os.environ.get("BENCH_PROMPT_SAMPLES", "100"))
REPLAY_EVENTS = int(os.environ.get("BENCH_REPLAY_EVENTS", "20000"))
RELAY_SECONDS = float(os.environ.get("BENCH_RELAY_SECONDS", "8"))  # of sending at 1,000/s, per round
PARTS = ("throughput", "length", "prompt", "relay", "replay", "timeline")
ONLY = [p for p in os.environ.get("BENCH_ONLY", ",".join(PARTS)).split(",") if p]
LEVELS = (1, 4, 16)
LONG_PLAN = 5_000
TIMELINE_PLAN = 10_000
# plan-service's gunicorn workers, for every server of the run (bench/prompts.py and bench/relay.py
# take them as an argument): PLAN_SERVICE_WORKERS, as `plan-service serve` reads it.
WORKERS = Config.from_env({k: v for k, v in os.environ.items() if k == "PLAN_SERVICE_WORKERS"}).workers
PY = Path(sys.executable)
BIN = PY.parent
STARTED = time.monotonic()

# Targets (../shared/PERFORMANCE.md, issue 11).
T_ECHO, T_RAW, T_LENGTH = 0.5, 0.6, 0.9
T_PROMPT_P99, T_RELAY_P99, T_REPLAY, T_TIMELINE_P99 = 200.0, 100.0, 20_000.0, 20.0


# ---------------------------------------------------------------------------------------------
# output

def progress(message: str) -> None:
    elapsed = int(time.monotonic() - STARTED)
    print(f"[{elapsed // 60:2d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


def table(title: str, header: list[str], rows: list[list[str]], notes: str = "") -> None:
    print(f"\n### {title}\n")
    if notes:
        print(notes + "\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def rate(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def ms(x: float | None) -> str:
    if x is None:
        return "–"
    if math.isinf(x):
        return "unbounded (the service fell behind the rate)"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def each(values: list[float], fmt: Callable[[float | None], str] = rate) -> str:
    return " / ".join(fmt(v) for v in values)


def errs(results: list[dict]) -> str:
    """Failed requests over the rounds, with their kinds (HTTP statuses, socket errors)."""
    total, kinds = 0, {}
    for x in results:
        total += x["errors"]
        for kind, n in x.get("error_kinds", {}).items():
            kinds[kind] = kinds.get(kind, 0) + n
    return str(total) + (f" ({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items()))})" if kinds else "")


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def verdict(value: float | None, target: float, at_least: bool = True) -> str:
    if value is None:
        return "not measured"
    return "met" if (value >= target if at_least else value <= target) else "**missed**"


SUMMARY: list[list[str]] = []


# ---------------------------------------------------------------------------------------------
# what the run creates, removed at the end: PostgreSQL schemas, Kafka topics, servers

SCHEMAS: list[str] = []
TOPICS: list[str] = []
SERVERS: list[ServerProcess] = []


def new_schema(prefix: str = "bench_") -> str:
    name = prefix + uuid.uuid4().hex[:10]
    with psycopg.connect(DB_URL, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{name}"')
    SCHEMAS.append(name)
    return name


def postgres_settings(schema: str) -> dict[str, str]:
    return {"PLAN_SERVICE_DATABASE_URL": DB_URL, "POSTGRES_SCHEMA": schema}


def clean_up() -> None:
    made = sys.modules.get("relay")  # bench/relay.py (and bench/prompts.py through it), if used
    if made is not None:
        SERVERS.extend(made.SERVERS)
        SCHEMAS.extend(made.SCHEMAS)
        TOPICS.extend(made.TOPICS)
    for server in SERVERS:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - stopping what is left at exit: go on with the rest
            pass
    if SCHEMAS and DB_URL:
        try:
            with psycopg.connect(DB_URL, autocommit=True) as db:
                for schema in SCHEMAS:
                    db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception as e:  # noqa: BLE001 - leftovers are harmless; say so and finish
            progress(f"could not drop the bench schemas: {type(e).__name__}")
    if TOPICS and KAFKA:
        try:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=KAFKA.split(","))
            admin.delete_topics(TOPICS)
            admin.close()
        except Exception as e:  # noqa: BLE001 - leftovers are harmless; say so and finish
            progress(f"could not delete the bench topics: {type(e).__name__}")


# ---------------------------------------------------------------------------------------------
# servers, tokens, plans

class Bench:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="careplan-bench-"))
        self.key_file = self.tmp / "dev-signing.key"
        self.session = requests.Session()
        self._token: str | None = None

    def env(self, name: str, **extra: str) -> dict[str, str]:
        data = self.tmp / name
        n = 1
        while name != "tokens" and data.exists():  # each server its own folder (and log)
            n += 1
            data = self.tmp / f"{name}-{n}"
        data.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if k not in ("KAFKA_BOOTSTRAP_SERVERS", "PLAN_SERVICE_RELAY", "KAFKA_TOPIC")
               and not k.startswith("POSTGRES_")}
        return {**env, "CAREPLAN_DATA_DIR": str(data), "CAREPLAN_DEV_KEY_FILE": str(self.key_file),
                "LOG_LEVEL": "WARNING", **extra}

    def start(self, name: str, command: list[str], env: dict[str, str], port: int) -> ServerProcess:
        server = ServerProcess(command, env, f"http://127.0.0.1:{port}", Path(env["CAREPLAN_DATA_DIR"]) / "server.log")
        SERVERS.append(server)
        return server.start(timeout=60)

    def plan_service(self, persistence: str) -> ServerProcess:
        port = free_port()
        extra = {"PLAN_SERVICE_PORT": str(port), "PLAN_SERVICE_PERSISTENCE": persistence}
        if persistence == "postgres":
            extra.update(postgres_settings(new_schema()))
        return self.start(f"plan-{persistence}", [str(BIN / "plan-service"), "serve"],
                          self.env(f"plan-{persistence}", **extra), port)

    def echo(self) -> ServerProcess:
        port = free_port()
        return self.start("echo", [str(PY), str(ROOT / "bench" / "echo_app.py")],
                          self.env("echo", BENCH_ECHO_PORT=str(port)), port)

    def token(self, *args: str) -> str:
        done = subprocess.run([str(BIN / "plan-service"), "token", *args], env=self.env("tokens"),
                              capture_output=True, text=True, check=True)
        return done.stdout.strip()

    @property
    def writer(self) -> str:
        """The brief's dev token: the EPR integration writing on behalf of clinician clin-7."""
        if self._token is None:
            self._token = self.token("--role", "integration", "--sub", "epr-1", "--on-behalf-of", "clin-7")
        return self._token

    def open_plans(self, server: ServerProcess, n: int, patient: str | None = None) -> list[str]:
        ids = []
        for _ in range(n):
            r = self.session.post(f"{server.url}/v1/plans", headers={"Authorization": f"Bearer {self.writer}"}, json={
                "patient_id": patient or f"pat-synth-{uuid.uuid4().hex[:12]}", "service_level": "municipal",
                "age_band": "18-25"})
            r.raise_for_status()
            ids.append(r.json()["plan_id"])
        return ids

    def fill(self, server: ServerProcess, plan_id: str, events: int) -> None:
        """Add InformationGiven events, as many per request as the API takes, to ``events``."""
        sent = 0
        while sent < events:
            n = min(MAX_EVENTS_PER_REQUEST, events - sent)
            body = [{"type": "InformationGiven", "information_id": f"p{sent + i}", "topic": "rights", "form": "both",
                     "description": "Informert om retten til individuell plan og koordinator; brosjyre gitt.",
                     "adapted_how": "tolk til stede"} for i in range(n)]
            r = self.session.post(f"{server.url}/v1/plans/{plan_id}/events", json=body,
                                  headers={"Authorization": f"Bearer {self.writer}"}, timeout=120)
            if r.status_code != 201:
                raise RuntimeError(f"filling a plan: {r.status_code} {r.text[:300]}")
            sent += n


# ---------------------------------------------------------------------------------------------
# the header

def command_version(command: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20)
        found = re.search(pattern, out.stdout + out.stderr) if out.returncode in (0, 1) else None
        return found.group(1) if found else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def header() -> None:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = "?"
    try:
        kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        memory = f"{kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    with psycopg.connect(DB_URL) as db:
        pg = {k: db.execute(f"SHOW {k}").fetchone()[0] for k in ("server_version", "fsync", "synchronous_commit")}
    pom = ROOT / "infra" / "kafka" / "pom.xml"
    kafka = re.search(r"<kafka\.version>([^<]+)<", pom.read_text()) if pom.exists() else None
    commit = command_version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], r"(\S+)")
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    config = Config.from_env({k: v for k, v in os.environ.items() if k in ("PLAN_SERVICE_WORKERS", "PLAN_SERVICE_THREADS")})
    wrk = command_version(["wrk", "-v"], r"wrk (?:debian/)?([0-9][^ ]*)")
    pgbench = command_version(["pgbench", "--version"], r"\) ([0-9.]+)")
    versions = ", ".join(f"{name} {package_version(name)}" for name in ("eventsourcing", "flask", "gunicorn", "psycopg",
                                                                        "kafka-python"))
    print("## make bench\n")
    print(f"- run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}"
          f"{' with uncommitted changes' if dirty else ''}")
    print(f"- machine: {os.cpu_count()} cores ({cpu}), {memory} RAM, {platform.system()} {platform.release()}; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print(f"- versions: Python {platform.python_version()}, PostgreSQL {pg['server_version']} "
          f"(fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}), "
          f"Kafka {kafka.group(1) if kafka else '?'} (infra/kafka), wrk {wrk}, pgbench {pgbench}; {versions}")
    print(f"- infrastructure: {os.environ.get('BENCH_INFRA', 'not started by bench/run')}")
    print(f"- servers: gunicorn gthread (careplan_shared.server), {config.workers} worker(s) x {config.threads} threads "
          "for plan-service and for the echo alike (PLAN_SERVICE_WORKERS / PLAN_SERVICE_THREADS); plan-service "
          "otherwise on its defaults (SQLite encrypted at rest as the embedded default is, PostgreSQL without a "
          "key), without a relay in tables 1-4 and 8")
    print(f"- method: {ROUNDS} rounds; each round measures every subject of a table once, in an order rotated each "
          f"round; {SECONDS:g} s per wrk or pgbench run; the tables show the median of the rounds and each round; "
          "ratios are the median of the per-round ratios. wrk and pgbench run on the same cores as the servers.")


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------------------------------
# 1-3: raw INSERT+COMMIT, the echo, POST /events at 1, 4, 16

def throughput(bench: Bench) -> None:
    raw_schema = new_schema("bench_raw_")
    with psycopg.connect(DB_URL, autocommit=True) as db:
        db.execute(load.STORED_EVENTS_DDL.format(schema=f'"{raw_schema}"'))
    progress("starting the echo, plan-service on PostgreSQL and plan-service on SQLite")
    echo, on_pg, on_sqlite = bench.echo(), bench.plan_service("postgres"), bench.plan_service("sqlite")
    token = bench.writer

    def post(server: ServerProcess) -> Callable[[int, float], dict]:
        def run(c: int, seconds: float) -> dict:
            plans = bench.open_plans(server, c)  # each connection its own fresh plan
            return load.wrk(f"{server.url}/v1/plans/%s/events", connections=c, seconds=seconds, plans=plans,
                            token=token)
        return run

    subjects: dict[str, Callable[[int, float], dict]] = {
        "raw": lambda c, seconds: load.pgbench(DB_URL, c, seconds, raw_schema),
        "echo": lambda c, seconds: load.wrk(f"{echo.url}/echo", connections=c, seconds=seconds, token=token),
        "postgres": post(on_pg),
        "sqlite": post(on_sqlite),
    }
    progress("warming up (2 s each at 16 connections, not counted)")
    for name, run in subjects.items():
        try:
            run(16, 2)
        except load.LoadError as e:
            progress(f"warm-up of {name} failed: {e}")
    results: dict[str, dict[int, list[dict]]] = {name: {c: [] for c in LEVELS} for name in subjects}
    names = list(subjects)
    for r in range(ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]
        for c in LEVELS:
            for name in order:
                try:
                    result = subjects[name](c, SECONDS)
                except (load.LoadError, requests.RequestException, subprocess.TimeoutExpired) as e:
                    progress(f"{name} at {c}: failed: {e}")
                    continue
                results[name][c].append({**result, "round": r})
                progress(f"round {r + 1}/{ROUNDS}, {c:2d} clients, {name:8s}: {result['per_second']:8,.0f}/s"
                         + (f", p99 {result['p99']:.1f} ms" if "p99" in result else "")
                         + (f", errors {result.get('error_kinds') or result['errors']}" if result.get("errors") else ""))
                time.sleep(0.5)
    for server in (echo, on_pg, on_sqlite):
        server.stop()

    def per_second(name: str, c: int) -> list[float]:
        return [x["per_second"] for x in results[name][c]]

    def per_round_ratio(name: str, base: str, c: int) -> list[float]:
        by_round = {x["round"]: x["per_second"] for x in results[base][c]}
        return [x["per_second"] / by_round[x["round"]] for x in results[name][c] if by_round.get(x["round"])]

    table("1. Raw INSERT+COMMIT of a ~300-byte event row (pgbench), rows/s",
          ["clients", "median /s", "rounds /s", "mean latency ms", "failed"],
          [[str(c), rate(med(per_second("raw", c))), each(per_second("raw", c)),
            ms(med([x["mean"] for x in results["raw"][c]])), str(sum(x["errors"] for x in results["raw"][c]))]
           for c in LEVELS],
          "The durable-append limit: each transaction one INSERT into a table shaped like eventsourcing's "
          "stored_events, then COMMIT (fsync on); pgbench -M prepared, one thread per client.")
    table("2. Bare Flask JSON echo under the same gunicorn configuration, requests/s",
          ["connections", "median /s", "rounds /s", "p50 ms", "p99 ms", "non-2xx/errors"],
          [[str(c), rate(med(per_second("echo", c))), each(per_second("echo", c)),
            ms(med([x["p50"] for x in results["echo"][c]])), ms(med([x["p99"] for x in results["echo"][c]])),
            errs(results["echo"][c])] for c in LEVELS],
          "bench/echo_app.py: parse the same ~300-byte JSON body, answer it as JSON (201); wrk, one thread per connection.")
    rows = []
    for store in ("postgres", "sqlite"):
        for c in LEVELS:
            to_echo, to_raw = per_round_ratio(store, "echo", c), per_round_ratio(store, "raw", c)
            target = (f"POST/echo ≥ {T_ECHO}, POST/raw ≥ {T_RAW} (stretch)" if (store, c) == ("postgres", 16) else "")
            rows.append([store, str(c), rate(med(per_second(store, c))), each(per_second(store, c)),
                         ms(med([x["p50"] for x in results[store][c]])), ms(med([x["p99"] for x in results[store][c]])),
                         errs(results[store][c]), ratio(med(to_echo)), ratio(med(to_raw)),
                         target])
    table("3. POST /v1/plans/{id}/events, one InformationGiven per request, requests/s",
          ["store", "connections", "median /s", "rounds /s", "p50 ms", "p99 ms", "non-2xx/errors", "POST/echo",
           "POST/raw", "target"], rows,
          "wrk, one thread per connection, each connection appending to its own plan, opened through the API "
          "before the run (a fresh plan per connection per run); plan-service without a relay. POST/echo and "
          "POST/raw: the same number of connections/clients, per-round ratio.")
    pg_echo, pg_raw = med(per_round_ratio("postgres", "echo", 16)), med(per_round_ratio("postgres", "raw", 16))
    SUMMARY.append(["POST /events (PostgreSQL) / echo, 16 connections", ratio(pg_echo), f"≥ {T_ECHO}",
                    verdict(pg_echo, T_ECHO)])
    SUMMARY.append(["POST /events (PostgreSQL) / raw INSERT+COMMIT, 16 (stretch)", ratio(pg_raw), f"≥ {T_RAW}",
                    verdict(pg_raw, T_RAW)])


# ---------------------------------------------------------------------------------------------
# 4: one connection, a fresh plan against a plan of 5,000 events

def length(bench: Bench) -> None:
    progress("plan length: starting plan-service on PostgreSQL")
    server = bench.plan_service("postgres")
    long_plans = bench.open_plans(server, ROUNDS)
    for i, plan_id in enumerate(long_plans):
        progress(f"filling plan {i + 1}/{ROUNDS} to {LONG_PLAN:,} events ({MAX_EVENTS_PER_REQUEST} per POST)")
        bench.fill(server, plan_id, LONG_PLAN - 1)  # + PlanOpened
    url = f"{server.url}/v1/plans/%s/events"
    results: dict[str, list[dict]] = {"fresh": [], "long": []}
    for r in range(ROUNDS):
        plans = {"fresh": bench.open_plans(server, 1)[0], "long": long_plans[r]}
        a, b = ("fresh", "long") if r % 2 == 0 else ("long", "fresh")
        halves: dict[str, list[dict]] = {"fresh": [], "long": []}
        for name in (a, b, b, a):  # ABBA, half the time each: a drift in the machine's load hits both alike
            halves[name].append(load.wrk(url, connections=1, seconds=math.ceil(SECONDS / 2), plans=[plans[name]],
                                         token=bench.writer))
            time.sleep(0.5)  # wrk leaves its last request in flight: let it finish before the next run on the plan
        for name, parts in halves.items():
            kinds: dict[str, int] = {}
            for x in parts:
                for kind, n in x["error_kinds"].items():
                    kinds[kind] = kinds.get(kind, 0) + n
            result = {"per_second": sum(x["requests"] - x["errors"] for x in parts) / sum(x["seconds"] for x in parts),
                      "errors": sum(x["errors"] for x in parts), "error_kinds": kinds,
                      "p50": statistics.mean(x["p50"] for x in parts), "p99": statistics.mean(x["p99"] for x in parts)}
            results[name].append(result)
            progress(f"round {r + 1}/{ROUNDS}, one connection, {name:5s} plan: {result['per_second']:6,.0f}/s, "
                     f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms"
                     + (f", errors {result['error_kinds']}" if result["errors"] else ""))
    server.stop()
    ratios = [long["per_second"] / fresh["per_second"] for long, fresh in zip(results["long"], results["fresh"], strict=True)]
    rows = [[label, rate(med([x["per_second"] for x in results[name]])), each([x["per_second"] for x in results[name]]),
             ms(med([x["p50"] for x in results[name]])), ms(med([x["p99"] for x in results[name]])),
             errs(results[name]), ratio(med(ratios)) if name == "long" else "",
             f"≥ {T_LENGTH}" if name == "long" else ""]
            for name, label in (("fresh", "a fresh plan"), ("long", f"a plan of {LONG_PLAN:,} events"))]
    table("4. One connection appending to a fresh plan and to a plan of 5,000 events (PostgreSQL), requests/s",
          ["plan", "median /s", "rounds /s", "p50 ms", "p99 ms", "non-2xx/errors", "5,000-event/fresh", "target"], rows,
          f"The long plans were filled through the API ({MAX_EVENTS_PER_REQUEST} InformationGiven per POST) before "
          "the rounds, one per round; a fresh plan per round; each round runs them ABBA (half the time each, rounded up, "
          "A alternating between rounds); p50 and p99 are the means of the two halves.")
    SUMMARY.append(["one connection: 5,000-event plan / fresh plan", ratio(med(ratios)), f"≥ {T_LENGTH}",
                    verdict(med(ratios), T_LENGTH)])


# ---------------------------------------------------------------------------------------------
# 8: the first timeline page of a plan of 10,000 events

def timeline(bench: Bench) -> None:
    import reads

    rows = []
    progress("timeline over HTTP: starting plan-service on PostgreSQL")
    server = bench.plan_service("postgres")
    patient = f"pat-synth-{uuid.uuid4().hex[:12]}"
    plan_id = bench.open_plans(server, 1, patient=patient)[0]
    progress(f"filling a plan to {TIMELINE_PLAN:,} events")
    bench.fill(server, plan_id, TIMELINE_PLAN - 1)
    token = bench.token("--role", "patient", "--sub", patient)
    url = f"{server.url}/v1/plans/{plan_id}/timeline"
    load.wrk(url, connections=1, seconds=2, method="GET", token=token, body="none")  # warm-up
    http = []
    for r in range(ROUNDS):
        result = load.wrk(url, connections=1, seconds=SECONDS, method="GET", token=token, body="none")
        http.append(result)
        progress(f"round {r + 1}/{ROUNDS}, timeline over HTTP: p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms")
    server.stop()
    p99_http = med([x["p99"] for x in http])
    rows.append(["HTTP, wrk 1 connection, PostgreSQL, patient's token", f"{TIMELINE_PLAN:,}",
                 ms(med([x["p50"] for x in http])), ms(p99_http), each([x["p99"] for x in http], ms),
                 rate(med([x["per_second"] for x in http])), errs(http),
                 f"p99 ≤ {T_TIMELINE_P99:g} ms"])
    progress(f"timeline in process (bench/reads.py): building a plan of {TIMELINE_PLAN:,} events")
    inproc = reads.first_page_rounds(TIMELINE_PLAN, reads=300, rounds=ROUNDS, progress=progress)
    p99_inproc = med([x["p99"] for x in inproc["rounds"]])
    rows.append(["in process, Flask test client (bench/reads.py), SQLite", f"{inproc['events']:,}",
                 ms(med([x["p50"] for x in inproc["rounds"]])), ms(p99_inproc),
                 each([x["p99"] for x in inproc["rounds"]], ms), "", "0", f"p99 ≤ {T_TIMELINE_P99:g} ms"])
    table("8. First timeline page (50 entries, with its access-log entry) of a plan of 10,000 events, ms",
          ["how", "events", "p50 ms", "p99 ms", "rounds p99", "reads/s", "non-2xx", "target"], rows,
          "Sequential reads by the patient; every read writes its access-log entry before the page leaves.")
    SUMMARY.append(["first timeline page, 10,000 events, p99 ms (HTTP)", ms(p99_http), f"≤ {T_TIMELINE_P99:g}",
                    verdict(p99_http, T_TIMELINE_P99, at_least=False)])


# ---------------------------------------------------------------------------------------------
# 5-7: via Kafka, calling bench/prompts.py and bench/relay.py

def kafka_modules():
    import prompts
    import relay

    return prompts, relay


def prompt_latency(bench: Bench) -> None:
    prompts, _ = kafka_modules()
    rate_per_second = 200
    rows, p50s, p95s, p99s = [], [], [], []
    for r in range(ROUNDS):
        x = prompts.post_to_prompt("kafka", rate_per_second, PROMPT_SAMPLES, bench.tmp, plan_workers=WORKERS)
        p50s.append(x["p50"])
        p95s.append(x["p95"])
        p99s.append(x["p99"])
        rows.append([f"round {r + 1}", str(x["samples"]), ms(x["p50"]), ms(x["p95"]), ms(x["p99"]), ms(x["max"]),
                     f"{rate(x['load_per_second'])} (p99 {ms(x['load_p99'])} ms, {x['load_errors']} errors)", ""])
        progress(f"round {r + 1}/{ROUNDS}, POST -> prompt via Kafka at {rate_per_second}/s: p50 {x['p50']:.1f} ms, "
                 f"p99 {x['p99']:.1f} ms, load achieved {x['load_per_second']:.0f}/s")
    rows.append(["**median of rounds**", "", ms(med(p50s)), ms(med(p95s)), ms(med(p99s)), "", "",
                 f"p99 ≤ {T_PROMPT_P99:g} ms"])
    table(f"5. POST TriangleMeetingMissed -> follow-up prompt in the coordinator's inbox, via Kafka, under "
          f"{rate_per_second} events/s of other writes, ms",
          ["round", "samples", "p50", "p95", "p99", "max", "background load achieved/s", "target"], rows,
          f"bench/prompts.py post_to_prompt('kafka'): plan-service (PostgreSQL, inline relay, {WORKERS} worker(s)) and "
          "notification-service (Kafka consumer, SQLite prompt store). wrk posts the background load "
          f"(InformationGiven, 8 connections each writing to 25 plans in turn, paced to {rate_per_second}/s by "
          "bench/wrk/careplan.lua) while a probe posts TriangleMeetingScheduled, then TriangleMeetingMissed, and polls "
          "GET /v1/prompts every 10 ms until the follow-up is there: the time from sending the POST to seeing the "
          "prompt.")
    SUMMARY.append(["POST -> prompt via Kafka at 200/s, p99 ms", ms(med(p99s)), f"≤ {T_PROMPT_P99:g}",
                    verdict(med(p99s), T_PROMPT_P99, at_least=False)])


def relay_lag(bench: Bench) -> None:
    _, relay = kafka_modules()
    target_rate = 1000
    modes = ("inline", "process")
    rows, by_mode = [], {m: {"relay": [], "recorded": []} for m in modes}
    for r in range(ROUNDS):
        for mode in (modes if r % 2 == 0 else modes[::-1]):
            x = relay.bench_lag(target_rate, RELAY_SECONDS, bench.tmp, mode, workers=WORKERS)
            by_mode[mode]["relay"].append(x["relay_p99"])
            by_mode[mode]["recorded"].append(x["p99"])
            rows.append([f"round {r + 1}", mode, rate(x["achieved"]),
                         f"{min(x['arrived'], x['expected']):,}/{x['expected']:,}",
                         f"{ms(x['relay_p50'])} / {ms(x['relay_p95'])} / {ms(x['relay_p99'])}",
                         f"{ms(x['p50'])} / {ms(x['p99'])}", f"{ms(x['post_p50'])} / {ms(x['post_p99'])}", ""])
            progress(f"round {r + 1}/{ROUNDS}, relay lag at {target_rate}/s, relay {mode}: achieved "
                     f"{x['achieved']:.0f}/s, answered->topic p99 {x['relay_p99']:.1f} ms, recorded->topic p99 "
                     f"{x['p99']:.1f} ms")
    for mode in modes:
        rows.append([f"**median of rounds**, {mode}", mode, "", "", f"p99 {ms(med(by_mode[mode]['relay']))}",
                     f"p99 {ms(med(by_mode[mode]['recorded']))}", "", f"p99 ≤ {T_RELAY_P99:g} ms"])
    table(f"6. Relay lag at {target_rate:,} events/s: an event's commit -> the event on the Kafka topic, ms",
          ["round", "relay", "achieved events/s", "arrived/committed", "answered -> topic p50 / p95 / p99 (relay lag)",
           "recorded -> topic p50 / p99", "POST p50 / p99", "target"], rows,
          f"bench/relay.py bench_lag: plan-service (PostgreSQL, {WORKERS} worker(s), 8 threads) taking "
          f"{RELAY_SECONDS:g} s of InformationGiven from wrk, 5 events a POST, 8 connections, paced to "
          f"{target_rate // 5} POSTs/s; the relay inline (a thread of the worker, the default) or in a process of its "
          "own (`plan-service relay`, woken by PostgreSQL NOTIFY); a Kafka consumer in the harness notes each arrival. "
          "Relay lag: from the POST's answer reaching wrk (its events are committed by then; wrk writes the time on the "
          "same monotonic clock) to the arrival. Recorded -> topic: from the event's recorded_at (stamped before the "
          "commit) to the arrival, the relay lag plus the write's own time. Achieved below 1,000/s: plan-service could "
          "not take more on this machine, and the figure is for the rate achieved.")
    for mode in modes:
        value = med(by_mode[mode]["relay"])
        SUMMARY.append([f"relay lag at 1,000/s (answered -> topic), relay {mode}, p99 ms", ms(value),
                        f"≤ {T_RELAY_P99:g}", verdict(value, T_RELAY_P99, at_least=False)])


def replay(bench: Bench) -> None:
    prompts, _ = kafka_modules()
    stores = ["sqlite", "postgres"]
    rows, by_store = [], {}
    for r in range(ROUNDS):
        for store in (stores if r % 2 == 0 else stores[::-1]):
            x = prompts.replay_kafka(REPLAY_EVENTS, bench.tmp, store=store)
            by_store.setdefault(store, []).append(x)
            progress(f"round {r + 1}/{ROUNDS}, replay into {store}: {x['per_second']:,.0f} events/s"
                     + (f", {x['per_cpu_second']:,.0f} per CPU-second" if x.get("per_cpu_second") else ""))
    for store, results in by_store.items():
        speeds = [x["per_second"] for x in results]
        per_cpu = [x["per_cpu_second"] for x in results if x.get("per_cpu_second")]
        rows.append([store, f"{results[0]['events']:,}", each([x["seconds"] for x in results], lambda v: f"{v:.2f}"),
                     rate(med(speeds)), each(speeds), rate(med(per_cpu)) if per_cpu else "–", f"≥ {T_REPLAY:,.0f}/s"])
    table("7. notification-service replaying a Kafka topic from offset 0 into a fresh store, events/s",
          ["prompt store", "events", "rounds seconds", "median events/s", "rounds events/s",
           "events per consumer CPU-second", "target"], rows,
          "bench/prompts.py replay_kafka: synthetic integration events already on a fresh topic (6 partitions), "
          "consumed and applied into a fresh prompt store (encrypted, as the service's is); a fresh consumer group "
          "each round. Events per CPU-second: of the consumer's own CPU, less sensitive to a shared machine.")
    for store, results in by_store.items():
        value = med([x["per_second"] for x in results])
        SUMMARY.append([f"notification-service replay into {store}, events/s", rate(value), f"≥ {T_REPLAY:,.0f}",
                        verdict(value, T_REPLAY)])


# ---------------------------------------------------------------------------------------------

def main() -> int:
    if not DB_URL:
        print("CAREPLAN_TEST_DATABASE_URL is not set: run `make bench` (bench/run)", file=sys.stderr)
        return 2
    atexit.register(clean_up)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    header()
    bench = Bench()
    parts: dict[str, Callable[[Bench], None]] = {
        "throughput": throughput, "length": length, "prompt": prompt_latency, "relay": relay_lag, "replay": replay,
        "timeline": timeline}
    failed = []
    for name in PARTS:
        if name not in ONLY:
            continue
        if name in ("prompt", "relay", "replay") and not KAFKA:
            print(f"\n### {name}: skipped (no KAFKA_BOOTSTRAP_SERVERS)")
            continue
        try:
            parts[name](bench)
        except Exception as e:  # noqa: BLE001 - one broken figure must not cost the others: report it, go on
            failed.append(name)
            progress(f"{name}: FAILED: {type(e).__name__}: {e}")
            print(f"\n### {name}: failed ({type(e).__name__}: {str(e)[:300]})")
        finally:
            for server in SERVERS:
                server.stop()
    table("Summary: the targets of issue 11", ["figure", "measured (median of rounds)", "target", ""], SUMMARY)
    elapsed = int(time.monotonic() - STARTED)
    print(f"\n(took {elapsed // 60} min {elapsed % 60:02d} s; load average at the end {os.getloadavg()[0]:.2f}"
          f"{'; failed: ' + ', '.join(failed) if failed else ''})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
