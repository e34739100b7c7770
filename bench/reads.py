"""Read-path benchmark (in process, Flask test client, SQLite files): the first timeline page
of a plan with 10,000 events, and what the access log costs on that read (an entry is durable,
group-committed, before the page leaves).

Prints a table; asserts nothing. Usage: .venv/bin/python bench/reads.py [--events N] [--reads N]
`make bench` (bench/suite.py) calls first_page_rounds() for its timeline table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from careplan_shared.auth import load_or_create_dev_key, mint_token
from plan_service.config import Config
from plan_service.web.app import create_app

ACTOR = {"role": "clinician", "id": "bench"}


class NoAccessLog:
    """For comparison only: what the read costs without writing its entry."""

    def append(self, entry) -> None:
        pass

    def keep(self, entries) -> None:
        pass


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class TimelineReads:
    """A plan-service app in process (SQLite in a fresh folder) with one plan of ``events``
    events, and its patient's token."""

    def __init__(self, events: int):
        config = Config(data_dir=Path(tempfile.mkdtemp(prefix="careplan-reads-")), log_level="WARNING")
        self.app = create_app(config)
        self.services = self.app.extensions["careplan"]
        plans = self.services.plans
        self.plan_id = plans.open_plan(patient_id="pat-synth", service_level="municipal", age_band="18-25",
                                       actor=ACTOR).plan_id
        batch = [("WhatMattersRecorded", {"text": "noe som betyr noe", "language": "nb"})] * 100
        while plans.get_plan(self.plan_id).version < events:
            plans.record(self.plan_id, list(batch), actor=ACTOR)
        self.version = plans.get_plan(self.plan_id).version
        self.client = self.app.test_client()
        self.headers = {"Authorization": "Bearer " + mint_token(load_or_create_dev_key(config.signing_key_file),
                                                                "pat-synth", "patient")}
        self.url = f"/v1/plans/{self.plan_id}/timeline?limit=50"
        self.real_log = self.services.access_log

    def measure(self, reads: int, access_log: bool = True) -> list[float]:
        """``reads`` sequential reads of the first page, ms each (after as many to warm up)."""
        self.services.access_log = self.real_log if access_log else NoAccessLog()
        try:
            times = []
            for i in range(2 * reads):
                started = time.perf_counter()
                response = self.client.get(self.url, headers=self.headers)
                if i >= reads:
                    times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            return times
        finally:
            self.services.access_log = self.real_log


def first_page_rounds(events: int = 10_000, reads: int = 300, rounds: int = 3,
                      progress: Callable[[str], None] = lambda _: None) -> dict:
    """For `make bench`: ``rounds`` rounds of ``reads`` reads each, with the access log;
    p50 and p99 per round, in ms."""
    bench = TimelineReads(events)
    results = []
    for r in range(rounds):
        times = bench.measure(reads)
        results.append({"p50": statistics.median(times), "p99": percentile(times, 99), "reads": len(times)})
        progress(f"timeline in process, round {r + 1}: p50 {results[-1]['p50']:.2f} ms, p99 {results[-1]['p99']:.2f} ms")
    return {"events": bench.version, "rounds": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args()
    bench = TimelineReads(args.events)
    rows = []
    for label, with_log in (("with access log", True), ("without access log", False)) * 2:
        times = bench.measure(args.reads, with_log)
        rows.append((label, statistics.median(times), percentile(times, 99)))
    print(f"\nGET first timeline page (50 entries) of a plan with {bench.version:,} events,"
          f" {args.reads} reads each, ms (in process, SQLite)")
    print("| run | median | p99 |\n|---|---:|---:|")
    for label, median, p99 in rows:
        print(f"| {label} | {median:.3f} | {p99:.3f} |")


if __name__ == "__main__":
    main()
