"""Load generators of `make bench`, all compiled: wrk (HTTP, bench/wrk/careplan.lua) and
pgbench (PostgreSQL, bench/pg/insert_event.sql). Each run returns what it measured as a dict;
the Python here only starts them and reads their summaries."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk" / "careplan.lua"
INSERT_SQL = HERE / "pg" / "insert_event.sql"

# The table the raw INSERT+COMMIT baseline appends to: eventsourcing 9.5.6's stored_events.
STORED_EVENTS_DDL = """
CREATE TABLE {schema}.stored_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version));
CREATE UNIQUE INDEX ON {schema}.stored_events (notification_id ASC);
"""


class LoadError(RuntimeError):
    pass


def wrk(url: str, *, connections: int, seconds: float, method: str = "POST", plans: list[str] | None = None,
        token: str | None = None, body: str = "information", events: int = 1, rate: float = 0,
        answers: Path | None = None) -> dict:
    """One wrk run of whole ``seconds`` (wrk takes no fractions): ``connections`` connections,
    each on its own wrk thread (and so, with ``plans``, on its own plan). ``url`` may hold "%s"
    for the plan id. ``events``: events per request (a JSON list when more than one). ``rate``:
    requests per second across the connections, paced by the script (0: as fast as they can);
    the result's per_second says what was achieved. ``answers`` (with ``rate``): a file name
    prefix; each wrk thread appends "<time.monotonic() ms> <event_id>..." per answer of 201."""
    base, _, path = url.partition("://")[2].partition("/")
    env = {**os.environ, "BENCH_METHOD": method, "BENCH_PATH": "/" + path, "BENCH_PLANS": ",".join(plans or []),
           "BENCH_TOKEN": token or "", "BENCH_BODY": body, "BENCH_RUN": uuid.uuid4().hex[:8],
           "BENCH_EVENTS": str(events), "BENCH_RATE": str(rate), "BENCH_CONNECTIONS": str(connections),
           "BENCH_ANSWERS": str(answers or "")}
    command = ["wrk", "-t", str(connections), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(LUA), f"{url.partition('://')[0]}://{base}/"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH-JSON ")), None)
    if done.returncode != 0 or line is None:
        raise LoadError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}")
    r = json.loads(line.removeprefix("BENCH-JSON "))
    errors = sum(r["errors"].values())
    seconds_run = r["duration_us"] / 1e6
    return {"per_second": (r["requests"] - errors) / seconds_run, "requests": r["requests"], "errors": errors,
            "seconds": seconds_run,
            # by kind: connect, read, write, timeout, and each HTTP status >= 400 (wrk's "status" split up)
            "error_kinds": {**{k: v for k, v in r["errors"].items() if v and k != "status"},
                            **({f"HTTP {k}": v for k, v in r["statuses"].items()} or
                               ({"status": r["errors"]["status"]} if r["errors"]["status"] else {}))},
            **{k: v / 1000 for k, v in r["latency_us"].items()}}  # latency in ms


def pgbench(database_url: str, clients: int, seconds: float, schema: str) -> dict:
    """One pgbench run of bench/pg/insert_event.sql (INSERT+COMMIT of one ~300-byte event row)
    with ``clients`` connections (a thread each), into ``schema``.stored_events."""
    env = {**os.environ, "PGOPTIONS": f"-c search_path={schema}"}
    command = ["pgbench", "--no-vacuum", "-M", "prepared", "-c", str(clients), "-j", str(clients),
               "-T", f"{max(1, round(seconds))}", "-f", str(INSERT_SQL), database_url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    tps = re.search(r"^tps = ([0-9.]+)", done.stdout, re.M)
    latency = re.search(r"^latency average = ([0-9.]+) ms", done.stdout, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", done.stdout, re.M)
    if done.returncode != 0 or not tps:
        raise LoadError(f"pgbench failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}")
    return {"per_second": float(tps.group(1)), "mean": float(latency.group(1)) if latency else float("nan"),
            "errors": int(failed.group(1)) if failed else 0}
