"""Readiness of notification-service: its store, and the event source it consumes."""

from __future__ import annotations

from typing import Any

from flask import current_app

from careplan_shared.health import blueprint, probe
from notification_service.domain.dead_letters import DeadLetterStatus


def readiness() -> dict[str, Any]:
    services = current_app.extensions["careplan"]

    def counts() -> dict[str, int]:
        with services.notifications.store.transaction() as tx:
            # open dead letters: events not in their plan's view until `dead-letters retry`
            return {"prompts": tx.count_prompts(), "dead_letters": tx.count_dead_letters(DeadLetterStatus.OPEN)}

    result = probe("store", counts, owner=id(services))  # bounded: /readyz answers within a second
    checks: dict[str, Any] = {"store": "unreachable"} if result == "unreachable" else {"store": "ok", **result}
    if services.consumer is not None:
        status = services.consumer.status()
        checks["consumer"] = status
        checks["source"] = "unreachable" if status["last_error"] else "ok"
    return checks


blp = blueprint(readiness)
