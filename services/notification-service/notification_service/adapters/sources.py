"""The two transports behind one interface: plan-service's HTTP feed and the Kafka topic."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import requests

from notification_service.domain.records import Record

log = logging.getLogger("careplan.sources")


class FeedSource:
    """Polls GET {plan_service}/v1/feed?after=N (the embedded default)."""

    name = "feed"
    long_poll = False  # fetch answers at once: the consumer waits between empty fetches

    def __init__(self, base_url: str, token: Callable[[], str], batch: int = 500, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.token, self.batch, self.timeout = token, batch, timeout
        self._session = requests.Session()

    def fetch(self, positions: Callable[[], dict[int, int]]) -> list[Record]:
        after = positions().get(0, 0)
        response = self._session.get(
            f"{self.base_url}/v1/feed", params={"after": after, "limit": self.batch},
            headers={"Authorization": f"Bearer {self.token()}"}, timeout=self.timeout)
        response.raise_for_status()
        return [Record(0, int(item["position"]), item) for item in response.json()["items"]]

    def processed(self, records: list[Record]) -> None:
        pass

    def close(self) -> None:
        self._session.close()


class TopicNotReady(RuntimeError):
    """The topic is missing or its partitions are not known yet; the consumer tries again."""


class KafkaSource:
    """A member of the consumer group; offsets come from the store (seek on assignment),
    and are committed to Kafka only so that lag can be monitored."""

    name = "kafka"
    # fetch itself waits for records (poll() up to poll_ms, returning as soon as records are
    # there): the consumer asks again at once instead of backing off. 500 ms bounds how long
    # a stop (or a rebalance's turn) waits on an idle topic.
    long_poll = True

    def __init__(self, bootstrap_servers: str, topic: str, group_id: str = "notification-service",
                 poll_ms: int = 500, max_records: int = 2000, instance_id: str | None = None):
        self.bootstrap_servers, self.topic, self.group_id, self.poll_ms = bootstrap_servers, topic, group_id, poll_ms
        # Static membership (KIP-345): the group knows this instance by this id across restarts.
        # A restarted instance (killed, or stopped and started) is given its partitions back at
        # once, without a rebalance and without waiting for its old session to time out (10 s).
        # The price: a static member does not leave the group when it stops, so the partitions of
        # an instance stopped for good move to the others after the session timeout, as after a
        # crash. None: a dynamic member (leaves on close; a restart waits for the old session).
        self.instance_id = instance_id
        self.max_records = max_records
        self._consumer: Any = None
        self._positions: Callable[[], dict[int, int]] | None = None
        self.commit_failures = 0  # offset commits (for lag monitoring) that failed
        self.close_failures = 0  # consumers that did not close cleanly

    def _connect(self) -> Any:
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        source = self

        class SeekToStored(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                stored = source._positions() if source._positions else {}
                for tp in assigned:
                    if tp.partition in stored:
                        source._consumer.seek(tp, stored[tp.partition] + 1)
                    else:
                        source._consumer.seek_to_beginning(tp)

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers.split(","),
            group_id=self.group_id,
            client_id="notification-service",
            enable_auto_commit=False,  # the truth is the position stored with the prompts
            auto_offset_reset="earliest",
            # Latency: the broker answers a fetch as soon as it has one byte for it
            # (fetch_min_bytes=1, the default; a larger minimum would hold events back to
            # fill it); fetch_max_wait_ms only bounds how long an idle fetch waits at the
            # broker, so it costs no latency; 100 ms (ten idle fetches a second) instead of 50.
            fetch_min_bytes=1,
            fetch_max_wait_ms=100,
            # a member that died is replaced within seconds, not the broker default's 45 s
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            group_instance_id=self.instance_id,
            # A broker that went away (killed, restarted) is asked again within a second of it
            # listening (kafka-python's reconnect back-off otherwise doubles up to 30 s); a
            # request it never answers ends after 10 s, and a new consumer that finds no broker
            # gives up its bootstrap after 5 s (the consumer loop then tries again).
            reconnect_backoff_ms=50,
            reconnect_backoff_max_ms=1000,
            retry_backoff_ms=100,
            request_timeout_ms=10000,
            bootstrap_timeout_ms=5000,
            # Throughput when there is a backlog (a replay from offset 0): up to this many
            # records per poll become one batch, one transaction in the store (a commit and
            # its fsync per 2,000 events instead of per 500); a live stream's batches are
            # as small as what arrived. The default fetch sizes (1 MiB a partition) already
            # bring more than that per round trip.
            max_poll_records=self.max_records,
            # a topic (or partitions) that appears after the consumer joined is assigned within
            # seconds, not after the default 5 minutes: until then the group holds no partition
            metadata_max_age_ms=5000,
        )
        # Join the group only once the topic's partitions are known: a member that joins
        # before then is assigned nothing, and stays so until the next rebalance.
        try:
            partitions = consumer.partitions_for_topic(self.topic)
        except Exception:
            consumer.close(autocommit=False)
            raise
        if not partitions:
            consumer.close(autocommit=False)
            raise TopicNotReady(f"Kafka topic {self.topic!r} does not exist or has no partitions yet")
        self._consumer = consumer
        consumer.subscribe([self.topic], listener=SeekToStored())
        return consumer

    def fetch(self, positions: Callable[[], dict[int, int]]) -> list[Record]:
        self._positions = positions
        consumer = self._consumer or self._connect()
        try:
            batches = consumer.poll(timeout_ms=self.poll_ms)
        except Exception:
            self.close()
            raise
        records = [Record(tp.partition, r.offset, r.value) for tp, rs in batches.items() for r in rs]
        return sorted(records, key=lambda r: (r.part, r.position))

    def processed(self, records: list[Record]) -> None:
        try:
            self._consumer.commit_async()
        except Exception as e:  # noqa: BLE001 - monitoring only: the store holds the positions
            self.commit_failures += 1
            log.info("offset commit for monitoring failed", extra={"error_type": type(e).__name__})

    def close(self) -> None:
        """Leave the group. A failure to close cleanly (the broker already gone, say) loses
        nothing: positions live in the store, and the next connection starts from them."""
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception as e:  # noqa: BLE001 - see above; counted and logged, not raised
                self.close_failures += 1
                log.warning("closing the Kafka consumer failed", extra={"error_type": type(e).__name__})
            self._consumer = None
