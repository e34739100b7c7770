"""Readiness of plan-service: the event store, the access log, and Kafka and the relay when
configured."""

from __future__ import annotations

from typing import Any

from flask import current_app

from careplan_shared.health import blueprint, probe

STUCK_SECONDS = 10  # an access-log write under way this long: the store is not answering


def readiness() -> dict[str, Any]:
    services = current_app.extensions["careplan"]
    head = probe("event_store", lambda: services.plans.recorder.max_notification_id() or 0)
    checks: dict[str, Any] = {"event_store": "unreachable" if head == "unreachable" else "ok"}
    # No read is shown without its access-log entry: a log that cannot be written means not ready.
    log = services.access_log.status()
    stuck = (log.get("write_under_way_seconds") or 0) > STUCK_SECONDS
    checks["access_log"] = "unreachable" if log.get("last_error") or stuck else "ok"
    checks["access_log_writer"] = log
    if services.kafka_health is not None:
        checks["kafka"] = "ok" if services.kafka_health.check() else "unreachable"
    if services.relay is not None:
        status = services.relay.status()
        if head != "unreachable" and status["leader"]:
            status["lag_positions"] = max(0, head - int(status["position"]))
        checks["relay"] = status
    return checks


blp = blueprint(readiness)
