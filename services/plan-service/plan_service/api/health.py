"""Readiness of plan-service: the event store, the access log, and Kafka and the relay when
configured."""

from __future__ import annotations

from typing import Any

from flask import current_app

from careplan_shared.health import UNREACHABLE, blueprint, probe_all

STUCK_SECONDS = 10  # an access-log write under way this long: the store is not answering


def readiness() -> dict[str, Any]:
    services = current_app.extensions["careplan"]
    # The store and the broker are asked at once, each bounded (careplan_shared.health): the
    # answer comes within a second even while one of them hangs.
    probes: dict[str, Any] = {"event_store": lambda: services.plans.recorder.max_notification_id() or 0}
    if services.kafka_health is not None:
        probes["kafka"] = services.kafka_health.check
    answers = probe_all(probes, owner=id(services))
    head = answers["event_store"]
    checks: dict[str, Any] = {"event_store": UNREACHABLE if head == UNREACHABLE else "ok"}
    # No read is shown without its access-log entry: a log that cannot be written means not ready.
    log = services.access_log.status()
    stuck = (log.get("write_under_way_seconds") or 0) > STUCK_SECONDS
    checks["access_log"] = UNREACHABLE if log.get("last_error") or stuck else "ok"
    checks["access_log_writer"] = log
    if services.kafka_health is not None:
        checks["kafka"] = "ok" if answers["kafka"] is True else UNREACHABLE
    if services.relay is not None:
        status = services.relay.status()
        if head != UNREACHABLE and status["leader"]:
            status["lag_positions"] = max(0, head - int(status["position"]))
        checks["relay"] = status
    return checks


blp = blueprint(readiness)
