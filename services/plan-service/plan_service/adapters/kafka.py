"""Kafka: the relay's publisher and the readiness check (kafka-python 3.0.x)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from careplan_shared.events import IntegrationEvent, encode_event

log = logging.getLogger("careplan.kafka")
PLAN_EVENTS_TOPIC = "careplan.plan-events.v1"

# How a client notices a broker gone and finds it back (issue 13: after a broker was killed the
# relay and the consumer came back 25-49 s later). kafka-python's reconnect back-off doubles up
# to 30 s by default: capped at 1 s, a client asks a restarted broker again within a second of
# it listening. Requests to a broker that does not answer end in seconds, and so does the
# bootstrap of a new client (30 s by default) when no broker answers at all.
RECONNECT = {"reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 1000, "retry_backoff_ms": 100}
PRODUCER_RECOVERY = {
    **RECONNECT,
    "max_block_ms": 5000,  # send() waiting for metadata (no broker): fail, and the relay retries
    "request_timeout_ms": 5000,
    "bootstrap_timeout_ms": 5000,
    # an event not acknowledged in time fails its publish (the relay retries it with a fresh
    # producer) instead of being retried inside the producer for the default 2 minutes
    "delivery_timeout_ms": 10000,
    "metadata_max_age_ms": 5000,  # a partition's new leader is learnt within seconds
}


def message(event: IntegrationEvent) -> dict[str, Any]:
    """Key = plan id, so all of one plan's events land in one partition, in order."""
    return {
        "key": str(event.plan_id).encode(),
        "value": orjson.dumps(encode_event(event)),
        "headers": [("event_id", str(event.event_id).encode()),
                    ("event_type", event.event_type.encode()),
                    ("schema_version", str(event.schema_version).encode())],
    }


class KafkaPublisher:
    def __init__(self, bootstrap_servers: str, topic: str = PLAN_EVENTS_TOPIC,
                 client_id: str = "plan-service-relay", ack_timeout: float = 12.0):
        self.bootstrap_servers, self.topic = bootstrap_servers, topic
        self.client_id, self.ack_timeout = client_id, ack_timeout
        self._producer: Any = None

    def _connect(self) -> Any:
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap_servers.split(","),
                client_id=self.client_id,
                # acknowledged only once every in-sync replica has the record: an event the
                # relay records as published survives the loss of the partition leader
                acks="all",
                enable_idempotence=True,  # no duplicates or reordering from our own retries
                # publish() hands over a whole step's events and then flushes, which sends
                # every batch at once whatever linger says: the linger only keeps the sender
                # thread from shipping the first events alone while the rest are still being
                # appended (one request per partition per step instead of several). It never
                # delays a step: flush() does not wait for it.
                linger_ms=5,
                # up to a whole step (500 events of ~0.5 KiB) per partition in one batch,
                # instead of the default 16 KiB (~30 events) and many requests when catching up
                batch_size=256 * 1024,
                **PRODUCER_RECOVERY,
            )
        return self._producer

    def publish(self, events: Sequence[IntegrationEvent]) -> None:
        try:
            producer = self._connect()
            futures = [producer.send(self.topic, **message(e)) for e in events]
            producer.flush(timeout=self.ack_timeout)
            for future in futures:
                future.get(timeout=self.ack_timeout)  # raises if not acknowledged
        except Exception:
            self.close()  # start the next attempt with a fresh producer session
            raise

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception as e:  # noqa: BLE001 - closing a broken producer: it is dropped anyway
                log.warning("closing the Kafka producer failed", extra={"error_type": type(e).__name__})
            self._producer = None


class KafkaHealth:
    """Is the broker reachable? One small metadata request, with a short timeout."""

    def __init__(self, bootstrap_servers: str, timeout_ms: int = 800):
        self.bootstrap_servers, self.timeout_ms = bootstrap_servers, timeout_ms
        self._lock = threading.Lock()

    def check(self) -> bool:
        from kafka import KafkaAdminClient

        with self._lock:
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers.split(","),
                    client_id="plan-service-readyz",
                    request_timeout_ms=self.timeout_ms,
                    bootstrap_timeout_ms=self.timeout_ms,
                    **RECONNECT,
                )
            except Exception:  # noqa: BLE001 - no broker answered
                return False
            try:
                admin.describe_cluster()
                return True
            except Exception:  # noqa: BLE001
                return False
            finally:
                admin.close()
