"""The relay: notification log -> message broker, never skipping an event.

It reads integration events after the last position it recorded, publishes them, waits
until the broker acknowledged every one, and only then records the new position. A crash
between the ack and the record re-sends those events (same event_id): at-least-once on the
wire, never a gap. Only the instance holding the leader lock relays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from careplan_shared.events import IntegrationEvent
from plan_service.application.plans import PlanApplication

log = logging.getLogger("careplan.relay")


class Publisher(Protocol):
    def publish(self, events: Sequence[IntegrationEvent]) -> None:
        """Return only when the broker acknowledged every event; raise otherwise."""

    def close(self) -> None: ...


class PositionStore(Protocol):
    def load(self) -> int: ...

    def save(self, position: int) -> None: ...

    def acquire_leadership(self, timeout: float) -> bool:
        """True while this process is the one relay; non-blocking beyond ``timeout``."""

    def release_leadership(self) -> None: ...


class Relay:
    def __init__(self, plans: PlanApplication, publisher: Publisher, positions: PositionStore,
                 *, batch_size: int = 500, poll_interval: float = 0.02, max_backoff: float = 5.0):
        self.plans = plans
        self.publisher = publisher
        self.positions = positions
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.wakeup = threading.Event()
        self.is_leader = False
        self.last_error: str | None = None
        self.published = 0
        self.position = 0

    def step(self) -> int:
        """Publish one batch; return how many events went out. Only the leader calls this,
        so the position it last recorded is the stored one (read once, on taking the lead)."""
        events = self.plans.integration_events(self.position, self.batch_size)
        if not events:
            return 0
        self.publisher.publish(events)
        self.positions.save(events[-1].position)
        self.position = events[-1].position
        self.published += len(events)
        return len(events)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                if not self.is_leader:
                    self.is_leader = self.positions.acquire_leadership(timeout=1.0)
                    if not self.is_leader:
                        stop.wait(1.0)
                        continue
                    self.position = self.positions.load()
                    log.info("relay is leader", extra={"position": self.position})
                sent = self.step()
            except Exception as e:  # noqa: BLE001 - broker or store trouble: back off, retry
                self.last_error = type(e).__name__
                log.warning("relay step failed; retrying", extra={"error_type": self.last_error})
                # Give up leadership too: its connection may be what broke.
                self._release()
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.last_error = None
            backoff = 0.1
            if sent < self.batch_size:
                self.wakeup.wait(self.poll_interval)
                self.wakeup.clear()
        self._release()
        self.publisher.close()

    def _release(self) -> None:
        self.is_leader = False
        try:
            self.positions.release_leadership()
        except Exception as e:  # noqa: BLE001 - the connection is gone already: so is the lock
            log.warning("releasing the relay's leader lock failed (its connection is gone, and the lock "
                        "with it)", extra={"error_type": type(e).__name__})

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="relay", daemon=True)
        thread.start()
        return thread, stop

    def status(self) -> dict[str, object]:
        return {"leader": self.is_leader, "position": self.position,
                "published": self.published, "last_error": self.last_error}

