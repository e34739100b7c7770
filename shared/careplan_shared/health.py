"""/healthz (the process answers) and /readyz (what it depends on answers), for both services.

Each service gives a ``readiness()`` returning its checks; a check whose value is the string
"unreachable" makes /readyz a 503 problem naming it.

/readyz answers within about a second whatever its dependencies do (issue 13): each dependency
check runs in a thread of its own and is waited for at most ``PROBE_TIMEOUT`` seconds (checks
started together share that deadline); one that has not answered by then is "unreachable". A
check still under way from an earlier /readyz is waited for again instead of started twice, so
a hanging database never gathers threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from flask import Blueprint

from careplan_shared.problem import problem

log = logging.getLogger("careplan.health")
PROBE_TIMEOUT = 0.8  # seconds: every check of one /readyz together, so that it answers within 1 s
UNREACHABLE = "unreachable"


def blueprint(readiness: Callable[[], dict[str, Any]]) -> Blueprint:
    blp = Blueprint("health", __name__)

    @blp.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @blp.get("/readyz")
    def readyz():
        checks = readiness()
        failing = sorted(name for name, value in checks.items() if value == UNREACHABLE)
        if failing:
            return problem(503, "Service Unavailable", f"not reachable: {', '.join(failing)}", checks=checks,
                           headers={"Retry-After": "2"})
        return {"status": "ready", "checks": checks}

    return blp


class _Run:
    """One check, running in its own thread; its answer once it is done."""

    def __init__(self, name: str, check: Callable[[], Any]):
        self.name, self.check = name, check
        self.done = threading.Event()
        self.result: Any = UNREACHABLE
        self.thread = threading.Thread(target=self._run, name=f"readyz-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.check()
        except Exception as e:  # noqa: BLE001 - any failure means not ready
            log.warning("dependency not reachable", extra={"reason": self.name, "error_type": type(e).__name__})
            self.result = UNREACHABLE
        finally:
            self.done.set()


_running: dict[tuple[str, Hashable], _Run] = {}
_running_lock = threading.Lock()


def probe_all(checks: dict[str, Callable[[], Any]], *, owner: Hashable = None,
              timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Run the checks at once; each one's answer, or "unreachable" for a failure or for one not
    done within ``timeout`` seconds. ``owner`` tells apart the same name in two apps of one process."""
    runs: dict[str, _Run] = {}
    with _running_lock:
        for name, check in checks.items():
            key = (name, owner)
            run = _running.get(key)
            if run is None or run.done.is_set():
                run = _running[key] = _Run(name, check)
            runs[name] = run
    deadline = time.monotonic() + timeout
    results: dict[str, Any] = {}
    for name, run in runs.items():
        if run.done.wait(max(0.0, deadline - time.monotonic())):
            results[name] = run.result
        else:
            log.warning("dependency did not answer in time", extra={"reason": name, "timeout_seconds": timeout})
            results[name] = UNREACHABLE
    return results


def probe(name: str, check: Callable[[], Any], *, owner: Hashable = None, timeout: float = PROBE_TIMEOUT) -> Any:
    """Run one dependency check (bounded by ``timeout``); its failure is logged by type only and
    reported as unreachable."""
    return probe_all({name: check}, owner=owner, timeout=timeout)[name]
