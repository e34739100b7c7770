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
    checks = {}
    try:
        current_app.extensions["careplan"].plans.recorder.max_notification_id()
        checks["event_store"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        log.warning("event store not reachable", extra={"error_type": type(e).__name__})
        return problem(503, "Service Unavailable", "the event store is not reachable",
                       checks={"event_store": "unreachable"})
    return {"status": "ready", "checks": checks}
