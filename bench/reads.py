"""Read-path benchmark (in process, Flask test client, SQLite files): the first timeline page
of a plan with 10,000 events, and what the access log costs on that read (an entry is durable,
group-committed, before the page leaves).

Prints a table; asserts nothing. Usage: .venv/bin/python bench/reads.py [--events N] [--reads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args()
    config = Config(data_dir=Path(tempfile.mkdtemp(prefix="careplan-reads-")), log_level="WARNING")
    app = create_app(config)
    services = app.extensions["careplan"]
    plans = services.plans
    plan_id = plans.open_plan(patient_id="pat-synth", service_level="municipal", age_band="18-25",
                              actor=ACTOR).plan_id
    batch = [("WhatMattersRecorded", {"text": "noe som betyr noe", "language": "nb"})] * 100
    while plans.get_plan(plan_id).version < args.events:
        plans.record(plan_id, list(batch), actor=ACTOR)
    client = app.test_client()
    headers = {"Authorization": "Bearer " + mint_token(load_or_create_dev_key(config.signing_key_file),
                                                        "pat-synth", "patient")}
    url = f"/v1/plans/{plan_id}/timeline?limit=50"
    real_log = services.access_log

    def measure() -> list[float]:
        times = []
        for _ in range(args.reads):
            started = time.perf_counter()
            response = client.get(url, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        return times

    rows = []
    for label, log in (("with access log", real_log), ("without access log", NoAccessLog())) * 2:
        services.access_log = log
        measure()  # warm
        times = measure()
        rows.append((label, statistics.median(times), percentile(times, 99)))
    services.access_log = real_log
    print(f"\nGET first timeline page (50 entries) of a plan with {plans.get_plan(plan_id).version:,} events,"
          f" {args.reads} reads each, ms (in process, SQLite)")
    print("| run | median | p99 |\n|---|---:|---:|")
    for label, median, p99 in rows:
        print(f"| {label} | {median:.3f} | {p99:.3f} |")


if __name__ == "__main__":
    main()
