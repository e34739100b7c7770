"""The write path's cost against the plan's length, in process: commands per second through
``PlanApplication.record`` for a fresh plan and for a plan that already holds 5,000 events.

One thread, one InformationGiven per command (the event `make bench` posts), the store's real
durable write (group committer, fsync on). Two ways in:
- ``record``: what the use case costs by itself;
- ``check + record``: what a POST does before it: the access check loads the plan
  (``get_plan``; cache-only for writes where the application offers it) and hands it to
  ``record``.
SQLite in a temporary folder always; PostgreSQL when ``infra/postgres/env`` (or DATABASE_URL)
names a server, in a schema made for the run and dropped after. Each round runs each plan for
``--seconds`` in short alternating slices (fresh, long, long, fresh, ...: load from elsewhere
hits both alike), three rounds, the median printed; the ratio long/fresh is per round, then
its median (target: >= 0.9). CPU time per command (the process's, the committer included) is
printed too: it says what the write costs the service, and is less sensitive to load from
other processes than the rates.

    .venv/bin/python bench/write_path.py [--seconds 1.5] [--rounds 3] [--events 5000] [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACTOR = {"role": "clinician", "id": "clin-bench"}
DESCRIPTION = ("Informert muntlig og skriftlig om retten til individuell plan og koordinator, "
               "og om hva planen kan brukes til; brosjyre gitt.")


def information(n: int, prefix: str) -> tuple[str, dict]:
    return ("InformationGiven", {"information_id": f"{prefix}-{n}", "topic": "rights", "form": "both",
                                 "description": DESCRIPTION, "adapted_how": "tolk til stede, enkel norsk"})


def database_url() -> str | None:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    script = ROOT / "infra" / "postgres" / "env"
    try:
        out = subprocess.run([str(script)], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("export DATABASE_URL="):
            return line.partition("=")[2].strip()
    return None


def postgres_reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - no server: the PostgreSQL rows are left out, with a note
        return False


class Store:
    """One PlanApplication on a store made for the run."""

    def __init__(self, kind: str, tmp: Path, url: str | None):
        from plan_service.bootstrap import bootstrap
        from plan_service.config import Config, postgres_env

        self.kind, self.url, self.schema = kind, url, None
        if kind == "postgres":
            import psycopg

            self.schema = "bench_wp_" + uuid.uuid4().hex[:10]
            with psycopg.connect(url, autocommit=True) as db:
                db.execute(f'CREATE SCHEMA "{self.schema}"')
            settings = postgres_env({"PLAN_SERVICE_DATABASE_URL": url, "POSTGRES_SCHEMA": self.schema})
            config = Config(data_dir=tmp / kind, persistence="postgres", postgres=settings)
        else:
            config = Config(data_dir=tmp / kind, persistence="sqlite")
        self.app = bootstrap(config, with_relay=False).plans
        self.patients = 0
        # The write path's access check: cache-only where the application offers it.
        self.cache_only = "fresh" in inspect.signature(self.app.get_plan).parameters

    def open_plan(self) -> uuid.UUID:
        self.patients += 1
        return self.app.open_plan(patient_id=f"pat-bench-{uuid.uuid4().hex[:8]}", service_level="municipal",
                                  age_band="18-25", actor=ACTOR).plan_id

    def fill(self, plan_id: uuid.UUID, events: int) -> None:
        done = 0
        while done < events:
            n = min(100, events - done)
            self.app.record(plan_id, [information(done + i, "fill") for i in range(n)], actor=ACTOR)
            done += n

    def run(self, plan_id: uuid.UUID, seconds: float, checked: bool) -> tuple[int, float, float]:
        """Commands for ``seconds``: (how many, wall seconds, CPU seconds of the whole process,
        the committer's thread included)."""
        app, prefix = self.app, uuid.uuid4().hex[:8]
        get = (lambda: app.get_plan(plan_id, fresh=False)) if self.cache_only else (lambda: app.get_plan(plan_id))
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        deadline = start + seconds
        while True:
            if checked:
                app.record(plan_id, [information(n, prefix)], actor=ACTOR, plan=get())
            else:
                app.record(plan_id, [information(n, prefix)], actor=ACTOR)
            n += 1
            now = time.perf_counter()
            if now >= deadline:
                return n, now - start, time.process_time() - cpu

    def close(self) -> None:
        self.app.close()
        if self.schema:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as db:
                db.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


SLICE = 0.25  # seconds: fresh and long alternate in slices this short, so load from elsewhere hits both alike


def measure(store: Store, events: int, rounds: int, seconds: float) -> list[list[str]]:
    long_plan = store.open_plan()
    started = time.perf_counter()
    store.fill(long_plan, events)
    print(f"  {store.kind}: filled a plan with {events} events in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    rows = []
    for checked in (False, True):
        rates: dict[str, list[float]] = {"fresh": [], "long": []}
        cpu_ms: dict[str, list[float]] = {"fresh": [], "long": []}
        ratios, cpu_ratios = [], []
        for _ in range(rounds):
            plans = {"fresh": store.open_plan(), "long": long_plan}
            for plan_id in plans.values():
                store.run(plan_id, 0.2, checked)  # warm: cached, connections open
            totals = {name: [0, 0.0, 0.0] for name in plans}
            order = ["fresh", "long", "long", "fresh"]
            for i in range(max(1, round(2 * seconds / SLICE))):
                name = order[i % 4]
                n, wall, cpu = store.run(plans[name], SLICE, checked)
                totals[name][0] += n
                totals[name][1] += wall
                totals[name][2] += cpu
            for name, (n, wall, cpu) in totals.items():
                rates[name].append(n / wall)
                cpu_ms[name].append(1000 * cpu / n)
            ratios.append(rates["long"][-1] / rates["fresh"][-1])
            cpu_ratios.append(cpu_ms["fresh"][-1] / cpu_ms["long"][-1])
        way = "check + record" if checked else "record"
        if checked and store.cache_only:
            way += " (cache-only check)"
        rows.append([store.kind, way,
                     " / ".join(f"{x:.0f}" for x in rates["fresh"]), f"{statistics.median(rates['fresh']):.0f}",
                     " / ".join(f"{x:.0f}" for x in rates["long"]), f"{statistics.median(rates['long']):.0f}",
                     f"{statistics.median(ratios):.2f}",
                     f"{statistics.median(cpu_ms['fresh']):.2f} / {statistics.median(cpu_ms['long']):.2f}",
                     f"{statistics.median(cpu_ratios):.2f}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per column and round (default 1.5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=5000, help="events in the long plan (default 5000)")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()

    url = database_url()
    kinds = [k for k in args.stores.split(",") if k]
    notes = []
    if "postgres" in kinds and not (url and postgres_reachable(url)):
        kinds.remove("postgres")
        notes.append("PostgreSQL left out: infra/postgres/env names no reachable server (infra/postgres/start)")
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="careplan-write-path-") as tmp:
        for kind in kinds:
            store = Store(kind, Path(tmp), url)
            try:
                rows += measure(store, args.events, args.rounds, args.seconds)
            finally:
                store.close()

    header = ["store", "way in", "fresh plan /s, per round", "fresh /s (median)",
              f"{args.events}-event plan /s, per round", f"{args.events}-event /s (median)", "long / fresh",
              "CPU ms per command, fresh / long", "long / fresh by CPU"]
    print(f"\n### Write path: commands/s through PlanApplication.record, one thread "
          f"(median of {args.rounds} rounds, {args.seconds:g} s per column and round,\n"
          f"fresh and long alternating in {SLICE:g} s slices)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nTarget: long / fresh >= 0.9 (a command costs in proportion to the events it adds). 'long / fresh by CPU' is")
    print("the fresh plan's CPU time per command over the long plan's (process CPU, the committer thread included): less")
    print("sensitive to load from other processes than the rates, which wait for the store's fsync as well.")
    for note in notes:
        print(f"Note: {note}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
