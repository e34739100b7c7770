"""Fixtures of plan-service's integration tests."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from plan_service.application.plans import ConcurrentWrite, PlanApplication
from plan_service.bootstrap import bootstrap
from plan_service.config import Config


@pytest.fixture(params=["sqlite", "postgres"])
def make_app(request, tmp_path):
    """make_app() -> a PlanApplication on the store; call again for a second instance or a
    restart on the same data."""
    if request.param == "postgres":
        postgres = request.getfixturevalue("postgres_env")
        config = Config(data_dir=tmp_path, persistence="postgres", snapshot_interval=10,
                        postgres={**postgres, "POSTGRES_POOL_SIZE": "10"})
    else:
        config = Config(data_dir=tmp_path, persistence="sqlite", snapshot_interval=10)
    apps: list[PlanApplication] = []

    def make() -> PlanApplication:
        app = bootstrap(config).plans
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def write_concurrently(writers: int, rounds: int, write: Callable[[int, int], object]) -> list[str]:
    """``writers`` threads, started together, each calling ``write(writer, round)`` ``rounds``
    times: "ok" for each that returned, "conflict" for each ConcurrentWrite (409)."""
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(writers)

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(rounds):
            try:
                write(n, i)
                outcome = "ok"
            except ConcurrentWrite:
                outcome = "conflict"
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture
def concurrently() -> Callable[[int, int, Callable[[int, int], object]], list[str]]:
    """write_concurrently, for the tests of two instances writing one plan."""
    return write_concurrently
