"""notification-service's metrics read at scrape time (careplan_shared.metrics.add_collector):
from the store, so that they are right whichever process or instance answers the scrape, and
the consumer's lag from the broker (or plan-service's feed). No label holds a plan id, a
patient id, a recipient or plan content: reasons, channels, sources and partitions only.

The store is read with aggregate queries of this module (counts by rule, status and channel)
rather than new methods of the store port: monitoring reads, nothing the application needs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from careplan_shared import metrics
from notification_service.bootstrap import Services
from notification_service.config import Config
from notification_service.domain.deliveries import DeliveryStatus
from notification_service.domain.prompts import PromptStatus, Reason

FEED_TIMEOUT_SECONDS = 2.0
KAFKA_TIMEOUT_MS = 2000


@dataclass
class StoreCounts:
    open_by_reason: Counter[str] = field(default_factory=Counter)
    escalated_by_reason: Counter[str] = field(default_factory=Counter)
    dead_letters_open: int = 0
    deliveries: Counter[tuple[str, str]] = field(default_factory=Counter)  # (channel, status)


def store_counts(tx: Any) -> StoreCounts:
    """Counts from one store transaction (the store's grouped counts); read only."""
    counts = StoreCounts()
    for rule, status, escalated, n in tx.prompt_counts():
        if status == PromptStatus.OPEN:
            counts.open_by_reason[rule] += n
        if escalated:
            counts.escalated_by_reason[rule] += n
    for channel, status, n in tx.delivery_counts():
        counts.deliveries[(channel, status)] += n
    counts.dead_letters_open = tx.count_dead_letters()
    return counts


def store_families(services: Services) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    with services.notifications.store.transaction() as tx:
        counts = store_counts(tx)
    reasons = sorted({*map(str, Reason), *counts.open_by_reason, *counts.escalated_by_reason})
    prompts = GaugeMetricFamily("notification_prompts_open", "Prompts open (waiting for the coordinator), by reason",
                                labels=("reason",))
    escalated = CounterMetricFamily("notification_prompt_escalations",
                                    "Prompts escalated (reminded again) since the store was made, by reason",
                                    labels=("reason",))
    for reason in reasons:
        prompts.add_metric([reason], counts.open_by_reason[reason])
        escalated.add_metric([reason], counts.escalated_by_reason[reason])
    yield prompts
    yield escalated
    yield GaugeMetricFamily("notification_dead_letters_open",
                            "Dead-lettered events not yet resolved (`notification-service dead-letters`)",
                            value=counts.dead_letters_open)
    channels = sorted({*services.config.channels, *(channel for channel, _ in counts.deliveries)})
    sent = CounterMetricFamily("notification_channel_deliveries",
                               "Prompts delivered through a channel (webhook, email)", labels=("channel",))
    failed = CounterMetricFamily("notification_channel_delivery_failures",
                                 "Deliveries given up (refused for good, or out of attempts), by channel",
                                 labels=("channel",))
    pending = GaugeMetricFamily("notification_channel_deliveries_pending",
                                "Deliveries waiting for their first or next attempt, by channel", labels=("channel",))
    for channel in channels:
        sent.add_metric([channel], counts.deliveries[(channel, DeliveryStatus.SENT)])
        failed.add_metric([channel], counts.deliveries[(channel, DeliveryStatus.FAILED)])
        pending.add_metric([channel], counts.deliveries[(channel, DeliveryStatus.PENDING)])
    yield from (sent, failed, pending)


class ConsumerLag:
    """Per partition: the broker's end offset minus the next offset the stored position asks
    for (Kafka), or plan-service's feed head minus the stored position (one lag, partition 0).
    Read at scrape time with a client of its own: the consumer's is busy in its thread."""

    def __init__(self, config: Config, services: Services):
        self.config, self.services = config, services
        self._lock = threading.Lock()
        self._kafka: Any = None

    def families(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        consumer = self.services.consumer
        if consumer is None:  # NOTIFICATION_WORKER=off: nothing consumes here
            return
        source = consumer.source.name
        stored = self.services.notifications.positions(source)
        lag = self._kafka_lag(stored) if source == "kafka" else self._feed_lag(consumer.source, stored)
        family = GaugeMetricFamily("notification_consumer_lag_events",
                                   "Events in the source not yet handled, by source and partition",
                                   labels=("source", "partition"))
        for partition, behind in sorted(lag.items()):
            family.add_metric([source, str(partition)], behind)
        yield family

    def _feed_lag(self, feed: Any, stored: dict[int, int]) -> dict[int, int]:
        import requests

        position = stored.get(0, 0)
        response = requests.get(
            f"{feed.base_url}/v1/feed", params={"after": position, "limit": 1},
            headers={"Authorization": f"Bearer {feed.token()}"}, timeout=FEED_TIMEOUT_SECONDS)
        response.raise_for_status()
        return {0: max(0, int(response.json()["last_position"]) - position)}

    def _kafka_lag(self, stored: dict[int, int]) -> dict[int, int]:
        from kafka import TopicPartition

        with self._lock:  # a KafkaConsumer is not thread-safe; scrapes may come together
            try:
                client = self._kafka_client()
                partitions = [TopicPartition(self.config.kafka_topic, p)
                              for p in sorted(client.partitions_for_topic(self.config.kafka_topic) or ())]
                ends = client.end_offsets(partitions, timeout_ms=KAFKA_TIMEOUT_MS)
                unstored = [tp for tp in partitions if tp.partition not in stored]
                starts = client.beginning_offsets(unstored, timeout_ms=KAFKA_TIMEOUT_MS) if unstored else {}
            except Exception:
                self.close()
                raise
        return {tp.partition: max(0, ends[tp] - (stored[tp.partition] + 1 if tp.partition in stored else starts[tp]))
                for tp in partitions}

    def _kafka_client(self) -> Any:
        if self._kafka is None:
            from kafka import KafkaConsumer

            assert self.config.kafka_bootstrap_servers is not None  # transport kafka demands it
            self._kafka = KafkaConsumer(bootstrap_servers=self.config.kafka_bootstrap_servers.split(","),
                                        client_id="notification-service-metrics", enable_auto_commit=False,
                                        request_timeout_ms=5000)
        return self._kafka

    def close(self) -> None:
        if self._kafka is not None:
            try:
                self._kafka.close(autocommit=False)
            finally:
                self._kafka = None


def install(app: Flask, config: Config, services: Services) -> None:
    """The scrape-time collectors (nothing when metrics are off)."""
    metrics.add_collector(app, "notification_store", lambda: store_families(services))
    metrics.add_collector(app, "consumer_lag", ConsumerLag(config, services).families)
