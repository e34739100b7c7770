"""plan-service's metrics read at scrape time (careplan_shared.metrics.add_collector): the
relay's stored position, the notification log's head and the lag between them, from the store,
so that they are right whichever process relays (a gunicorn worker holding the leader lock, or
`plan-service relay` elsewhere) and whichever answers the scrape. No plan id in any label.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from flask import Flask

from careplan_shared import metrics
from plan_service.application import integration
from plan_service.bootstrap import Services, positions_for
from plan_service.config import Config

LAG_COUNT_LIMIT = 10_000


class RelayLag:
    """Only where a relay is configured (Kafka): without one nothing is relayed."""

    def __init__(self, config: Config, services: Services):
        self.config, self.services = config, services
        self._positions: Any = None

    def positions(self) -> Any:
        if self.services.relay is not None:
            return self.services.relay.positions
        if self.config.kafka_bootstrap_servers is None:
            return None
        if self._positions is None:  # the relay runs elsewhere: its position is in the same store
            self._positions = positions_for(self.config, self.config.kafka_topic)
        return self._positions

    def families(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        positions = self.positions()
        if positions is None:
            return
        plans = self.services.plans
        position = positions.load()
        head = plans.recorder.max_notification_id() or 0
        # integration events after the position (the log also holds other notifications, which
        # the relay skips: head - position overstates the lag), counted up to LAG_COUNT_LIMIT
        behind = len(plans.recorder.select_notifications(start=position + 1, limit=LAG_COUNT_LIMIT,
                                                         topics=integration.PLAN_EVENT_TOPICS))
        oldest = plans.integration_events(position, 1) if behind else []  # the oldest not yet published
        age = (datetime.now(timezone.utc) - oldest[0].recorded_at).total_seconds() if oldest else 0.0
        for name, doc, value in (
                ("plan_service_relay_position", "The last notification-log position the relay published", position),
                ("plan_service_relay_head_position", "The notification log's newest position", head),
                ("plan_service_relay_lag_events",
                 f"Integration events not yet published (counted up to {LAG_COUNT_LIMIT})", behind),
                ("plan_service_relay_lag_seconds",
                 "Age of the oldest event not yet published (0: all published)", max(0.0, age))):
            yield GaugeMetricFamily(name, doc, value=value)


def install(app: Flask, config: Config, services: Services) -> None:
    """The scrape-time collectors (nothing when metrics are off)."""
    metrics.add_collector(app, "relay", RelayLag(config, services).families)
