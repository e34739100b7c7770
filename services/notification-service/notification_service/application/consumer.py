"""One consumer loop for every transport: fetch records, handle each, back off when idle or
when the source fails. What was processed is known from the store, not from the transport."""

from __future__ import annotations

import logging
import threading
from typing import Any

from notification_service.application.ports import Source
from notification_service.application.service import Notifications

log = logging.getLogger("careplan.consumer")


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
            self.notifications.handle_batch(self.source.name, records)
            self.source.processed(records)
        self.handled += len(records)
        return len(records)

    def run(self, stop: threading.Event) -> None:
        idle, backoff = self.idle_wait, 0.2
        while not stop.is_set():
            try:
                count = self.step()
            except Exception as e:  # noqa: BLE001 - source or store trouble: wait and retry
                self.last_error = type(e).__name__
                log.warning("consumer step failed; retrying", extra={"error_type": self.last_error})
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.last_error, backoff = None, 0.2
            if count:
                idle = self.idle_wait
            else:
                stop.wait(idle)
                idle = min(idle * 2, self.max_idle_wait)
        self.source.close()

    def status(self) -> dict[str, Any]:
        return {"source": self.source.name, "handled": self.handled, "last_error": self.last_error}
