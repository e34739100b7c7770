"""The relay: notification log -> message broker, never skipping an event.

It reads integration events after the last position it recorded, publishes them, waits
until the broker acknowledged every one, and only then records the new position. A crash
between the ack and the record re-sends those events (same event_id): at-least-once on the
wire, never a gap. Only the instance holding the leader lock relays.

It wakes when a commit happens instead of waiting for its next poll: the group committer calls
``wakeup.set`` after each batch it stored. In the relay's own process that wakes it directly;
in any other process (another gunicorn worker or instance, while this one leads) it sends the
store's commit signal (PostgreSQL NOTIFY, adapters/positions.py), which the leader LISTENs to.
A wake-up is only a hint to look now: the relay reads from its recorded position either way,
and keeps polling every ``poll_interval`` as the fallback. The poll stays short even with a
commit signal: in a busy gunicorn worker a NOTIFY passes three threads that each wait for the
GIL (the sender in the committing worker, the listener and the relay in the leading one), and
there the poll is sometimes first; a relay in a process of its own (`plan-service relay`) is
woken by the signal within milliseconds (bench/relay.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from careplan_shared.events import IntegrationEvent
from plan_service.application.plans import PlanApplication

log = logging.getLogger("careplan.relay")

# -- metrics (issue 13): what this process's relay did. Its position, the head and the lag are
# read from the store at scrape time (plan_service/web/metrics.py), whichever process relays.
PUBLISHED = Counter("plan_service_relay_published_events", "Integration events the relay published (acknowledged)")
STEP_FAILURES = Counter("plan_service_relay_step_failures", "Relay steps that failed (broker or store trouble)")
LEADER = Gauge("plan_service_relay_leader", "1 while this process holds the relay's leader lock",
               multiprocess_mode="livesum")


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


class CommitSignal(Protocol):
    """A wake-up that crosses processes (PostgresCommitSignal)."""

    def send(self) -> None:
        """Never blocks: a commit happened (delivered after it, to whoever listens)."""

    def start_listening(self, on_signal: Callable[[], None]) -> threading.Event:
        """Call ``on_signal`` for each signal, in a thread, until the returned event is set."""


class Wakeup:
    """``set`` after a commit: wakes this process's relay at once, and the leading relay in
    any other process through the commit signal (not sent while this process leads: then
    nobody else relays)."""

    def __init__(self, relay: Relay, signal: CommitSignal | None):
        self._relay, self._signal = relay, signal
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()
        if self._signal is not None and not self._relay.is_leader:
            self._signal.send()

    def set_here(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()


class Relay:
    def __init__(self, plans: PlanApplication, publisher: Publisher, positions: PositionStore,
                 *, batch_size: int = 500, poll_interval: float = 0.02, min_step_interval: float = 0.005,
                 max_backoff: float = 5.0, signal: CommitSignal | None = None):
        self.plans = plans
        self.publisher = publisher
        self.positions = positions
        self.batch_size = batch_size
        # Woken by every group commit (of every process): steps at most this often, so that a
        # burst of commits goes out in one step (one read, one flush to the broker, one
        # position) instead of one step each; it adds at most this much to an event's lag.
        self.min_step_interval = min_step_interval
        self.max_backoff = max_backoff
        # The store's commit signal, if it has one (PostgreSQL): wake-ups from other processes.
        make_signal: Any = getattr(positions, "commit_signal", None)
        self.signal: CommitSignal | None = signal if signal is not None else make_signal() if make_signal else None
        self.poll_interval = poll_interval
        self.wakeup = Wakeup(self, self.signal)
        self._listening: threading.Event | None = None
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
        PUBLISHED.inc(len(events))  # metrics
        return len(events)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        last_step = 0.0
        while not stop.is_set():
            try:
                if not self.is_leader:
                    self.is_leader = self.positions.acquire_leadership(timeout=1.0)
                    if not self.is_leader:
                        stop.wait(1.0)
                        continue
                    LEADER.set(1)  # metrics
                    self.position = self.positions.load()
                    log.info("relay is leader", extra={"position": self.position})
                    if self.signal is not None and self._listening is None:
                        self._listening = self.signal.start_listening(self.wakeup.set_here)
                spacing = last_step + self.min_step_interval - time.monotonic()
                if spacing > 0:
                    stop.wait(spacing)
                last_step = time.monotonic()
                sent = self.step()
            except Exception as e:  # noqa: BLE001 - broker or store trouble: back off, retry
                self.last_error = type(e).__name__
                STEP_FAILURES.inc()  # metrics
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
        LEADER.set(0)  # metrics
        if self._listening is not None:
            self._listening.set()
            self._listening = None
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

