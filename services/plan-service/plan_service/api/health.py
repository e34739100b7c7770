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
        head = services.plans.recorder.max_notification_id() or 0
        checks["event_store"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        log.warning("event store not reachable", extra={"error_type": type(e).__name__})
        head = None
        checks["event_store"] = "unreachable"
    if services.kafka_health is not None:
        checks["kafka"] = "ok" if services.kafka_health.check() else "unreachable"
    if services.relay is not None:
        status = services.relay.status()
        if head is not None and status["leader"]:
            status["lag_positions"] = max(0, head - int(status["position"]))
        checks["relay"] = status
    failing = sorted(name for name, value in checks.items() if value == "unreachable")
    if failing:
        return problem(503, "Service Unavailable", f"not reachable: {', '.join(failing)}",
                       checks=checks)
    return {"status": "ready", "checks": checks}
