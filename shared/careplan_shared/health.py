"""/healthz (the process answers) and /readyz (what it depends on answers), for both services.

Each service gives a ``readiness()`` returning its checks; a check whose value is the string
"unreachable" makes /readyz a 503 problem naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint

from careplan_shared.problem import problem

log = logging.getLogger("careplan.health")


def blueprint(readiness: Callable[[], dict[str, Any]]) -> Blueprint:
    blp = Blueprint("health", __name__)

    @blp.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @blp.get("/readyz")
    def readyz():
        checks = readiness()
        failing = sorted(name for name, value in checks.items() if value == "unreachable")
        if failing:
            return problem(503, "Service Unavailable", f"not reachable: {', '.join(failing)}", checks=checks)
        return {"status": "ready", "checks": checks}

    return blp


def probe(name: str, check: Callable[[], Any]) -> Any:
    """Run one dependency check; its failure is logged by type only and reported as unreachable."""
    try:
        return check()
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        log.warning("dependency not reachable", extra={"reason": name, "error_type": type(e).__name__})
        return "unreachable"
