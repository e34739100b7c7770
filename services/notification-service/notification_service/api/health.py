"""Liveness and readiness."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app

from careplan_shared.problem import problem

blp = Blueprint("health", __name__)
log = logging.getLogger("careplan.health")


@blp.get("/healthz")
def healthz():
    return {"status": "ok"}


@blp.get("/readyz")
def readyz():
    services = current_app.extensions["careplan"]
    checks: dict[str, object] = {}
    try:
        with services.notifications.store.transaction() as tx:
            checks["prompts"] = tx.count_prompts()
            checks["dead_letters"] = len(tx.dead_letters(1000))
        checks["store"] = "ok"
    except Exception as e:  # noqa: BLE001
        log.warning("store not reachable", extra={"error_type": type(e).__name__})
        return problem(503, "Service Unavailable", "the prompt store is not reachable",
                       checks={"store": "unreachable"})
    if services.consumer is not None:
        status = services.consumer.status()
        checks["consumer"] = status
        if status["last_error"]:
            return problem(503, "Service Unavailable", f"the {status['source']} source is not reachable",
                           checks=checks)
    return {"status": "ready", "checks": checks}
