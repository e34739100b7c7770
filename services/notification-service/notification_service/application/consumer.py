"""One consumer loop for every transport: fetch records, handle each, back off when idle or
when the source fails. What was processed is known from the store, not from the transport."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prometheus_client import Counter, Histogram

from notification_service.application.ports import Source
from notification_service.application.service import Notifications

log = logging.getLogger("careplan.consumer")

# -- metrics (issue 13): what this process's consumer did; the lag is read at scrape time
# (notification_service/web/metrics.py).
HANDLED = Counter("notification_consumer_events", "Integration events the consumer handled (stored)")
BATCH_SECONDS = Histogram("notification_consumer_batch_duration_seconds",
                          "Time to handle one fetched batch of events (store transaction included)",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
STEP_FAILURES = Counter("notification_consumer_step_failures",
                        "Consumer steps that failed (source or store trouble); retried")


class Consumer:
    def __init__(self, source: Source, notifications: Notifications, *, idle_wait: float = 0.05,
                 max_idle_wait: float = 0.5, max_backoff: float = 10.0):
        self.source = source
        self.notifications = notifications
        self.idle_wait, self.max_idle_wait, self.max_backoff = idle_wait, max_idle_wait, max_backoff
        self.last_error: str | None = None
        self.handled = 0

    def step(self) -> int:
        records = self.source.fetch(lambda: self.notifications.positions(self.source.name))
        if records:
            started = time.perf_counter()  # metrics
            self.notifications.handle_batch(self.source.name, records)
            BATCH_SECONDS.observe(time.perf_counter() - started)  # metrics
            self.source.processed(records)
        self.handled += len(records)
        HANDLED.inc(len(records))  # metrics
        return len(records)

    def run(self, stop: threading.Event) -> None:
        """Fetch and handle until stopped. Between empty fetches it waits (idle_wait, doubling
        up to max_idle_wait) unless the source waited for records itself (Kafka's poll is a
        long poll): then it asks again at once, so an event that arrives while the consumer
        is idle is handled as soon as the broker hands it over, not after a back-off."""
        long_poll = getattr(self.source, "long_poll", False)
        idle, backoff = self.idle_wait, 0.2
        while not stop.is_set():
            started = time.monotonic()
            try:
                count = self.step()
            except Exception as e:  # noqa: BLE001 - source or store trouble: wait and retry
                self.last_error = type(e).__name__
                STEP_FAILURES.inc()  # metrics
                log.warning("consumer step failed; retrying", extra={"error_type": self.last_error})
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.last_error, backoff = None, 0.2
            if count or (long_poll and time.monotonic() - started >= self.idle_wait):
                idle = self.idle_wait  # records, or the source already waited: at once
            else:
                stop.wait(idle)  # (a long poll that came back early and empty: no busy loop)
                idle = min(idle * 2, self.max_idle_wait)
        self.source.close()

    def status(self) -> dict[str, Any]:
        return {"source": self.source.name, "handled": self.handled, "last_error": self.last_error}
