"""The ports the use cases depend on, declared here and implemented by the adapters
structurally (no adapter imports this module): the store (``PromptStore``: one
``StoreTransaction`` at a time), an event source and a delivery channel.

Every method the application, the API and the command line call on a transaction is declared
here; the store contract suite (tests/integration/test_store_contract.py) runs the same tests
against every implementation (in-memory, SQLite, PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from notification_service.domain.dead_letters import DeadLetter, DeadLetterStatus, OpenDeadLetter
from notification_service.domain.deliveries import DeliveryKind, DeliveryState, DeliveryStatus, DueDelivery, Message
from notification_service.domain.prompts import Prompt, PromptStatus
from notification_service.domain.records import Record


class StoreTransaction(Protocol):
    """Everything read and written in one transaction: all of it is kept, or none of it.
    Times are aware datetimes; prompts come back with UTC times."""

    # -- consumer positions: what of each source's partition is processed -----------------
    def position(self, source: str, part: int) -> int | None: ...

    def positions(self, source: str) -> dict[int, int]: ...

    def set_position(self, source: str, part: int, position: int) -> None: ...

    def set_positions(self, source: str, positions: Mapping[int, int]) -> None:
        """Many parts at once (a batch's last position in each)."""
        ...

    # -- plan views (PlanView.to_json), with the next moment the clock must look at them ---
    # The bulk forms (``load_views``, ``save_views``, ``prompts_of_plans``, ``insert_prompts``...)
    # do what the one-row forms do for many rows, in a few statements: a batch of events reads
    # and writes its plans once (one round trip per kind of write on PostgreSQL).
    def load_view(self, plan_id: str) -> dict[str, Any] | None:
        """The stored view; on PostgreSQL its row stays locked until the transaction ends."""
        ...

    def load_views(self, plan_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The stored views of these plans (absent: not stored), locked like ``load_view``."""
        ...

    def save_view(self, plan_id: str, version: int, state: dict[str, Any], next_check: datetime | None) -> None: ...

    def save_views(self, views: Sequence[tuple[str, int, dict[str, Any], datetime | None]]) -> None:
        """Many (plan_id, version, state, next_check) at once."""
        ...

    def postpone_check(self, plan_id: str, until: datetime) -> None: ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A part of the transaction undone alone if it raises (the rest goes on)."""
        ...

    def views_due(self, now: datetime, limit: int) -> list[str]:
        """Plan ids whose next check is at or before ``now``, earliest first."""
        ...

    # -- prompts ----------------------------------------------------------------------------
    def prompts_of_plan(self, plan_id: str) -> list[Prompt]: ...

    def prompts_of_plans(self, plan_ids: Collection[str]) -> dict[str, list[Prompt]]:
        """Each plan's prompts (a plan without any: absent)."""
        ...

    def insert_prompt(self, prompt: Prompt) -> None:
        """A new prompt; its id and its (plan_id, rule, subject) are unique (else it raises)."""
        ...

    def insert_prompts(self, prompts: Sequence[Prompt]) -> None: ...

    def resolve_prompt(self, prompt_id: str, at: datetime) -> None:
        """An open prompt resolves itself; an acknowledged or resolved one stays as it is."""
        ...

    def resolve_prompts(self, prompt_ids: Sequence[str], at: datetime) -> None: ...

    def set_recipient(self, prompt_id: str, recipient: str | None) -> None: ...

    def set_recipients(self, changes: Sequence[tuple[str, str | None]]) -> None:
        """Many (prompt_id, recipient) at once."""
        ...

    def set_histories(self, changes: Sequence[tuple[str, list[dict[str, Any]]]]) -> None:
        """Many (prompt_id, the prompt's whole history) at once (see domain.prompts.reassigned)."""
        ...

    def set_details(self, prompt_id: str, details: dict[str, Any]) -> None: ...

    def set_details_of(self, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Many (prompt_id, details) at once."""
        ...

    def prompt(self, prompt_id: str) -> Prompt | None: ...

    def inbox(self, recipient: str, statuses: tuple[PromptStatus, ...], limit: int) -> list[Prompt]:
        """The recipient's prompts in these statuses, soonest due first (then by id)."""
        ...

    def acknowledge(self, prompt_id: str, at: datetime) -> None:
        """An open prompt becomes acknowledged; any other stays as it is."""
        ...

    def to_escalate(self, now: datetime, limit: int) -> list[Prompt]:
        """Open prompts whose escalation time has come and that were not escalated yet."""
        ...

    def mark_escalated(self, prompt_id: str, at: datetime) -> None: ...

    def count_prompts(self) -> int: ...

    # -- dead letters -----------------------------------------------------------------------
    def dead_letter(self, source: str, part: int, position: int, event_id: str | None, reason: str,
                    payload: str, at: datetime) -> None:
        """Record an event that could not be processed (reason cut at 500 characters). The same
        event (``event_id``) dead-lettered again while open updates the open one's reason."""
        ...

    def dead_letters(self, limit: int = 100, status: DeadLetterStatus | None = DeadLetterStatus.OPEN
                     ) -> list[DeadLetter]:
        """Dead letters in this status (None: all), oldest first, without their payload."""
        ...

    def count_dead_letters(self, status: DeadLetterStatus = DeadLetterStatus.OPEN) -> int: ...

    def prompt_counts(self) -> list[tuple[str, str, bool, int]]:
        """(rule, status, escalated, how many) over every prompt (the metrics)."""
        ...

    def delivery_counts(self) -> list[tuple[str, str, int]]:
        """(channel, status, how many) over every delivery (the metrics)."""
        ...

    def open_dead_letters(self, limit: int) -> list[OpenDeadLetter]:
        """The open dead letters in position order, with their payload."""
        ...

    def resolve_dead_letter(self, letter_id: str, at: datetime) -> None: ...

    def resolve_dead_letters_of_event(self, event_id: str, at: datetime) -> None:
        """The event's open dead letters are resolved (a re-sent copy was applied)."""
        ...

    def dead_letter_failed(self, letter_id: str, reason: str) -> None:
        """A retry failed again: the letter stays open with the new reason."""
        ...

    # -- the delivery outbox ---------------------------------------------------------------
    def enqueue_delivery(self, prompt_id: str, channel: str, kind: DeliveryKind, at: datetime) -> None:
        """A pending delivery, due at ``at``; once per (prompt, channel, kind): again is a no-op."""
        ...

    def enqueue_deliveries(self, deliveries: Sequence[tuple[str, str, DeliveryKind]], at: datetime) -> None:
        """Many (prompt_id, channel, kind) at once, each as ``enqueue_delivery``."""
        ...

    def deliveries_due(self, now: datetime, limit: int) -> list[DueDelivery]:
        """Pending deliveries due at or before ``now``, earliest first."""
        ...

    def claim_deliveries(self, now: datetime, limit: int, until: datetime) -> list[DueDelivery]:
        """deliveries_due, claimed until ``until`` (their due time moves there): another
        dispatcher on the same store does not take them meanwhile; a claim that is never
        finished (delivery_done) lapses then."""
        ...

    def delivery_done(self, delivery_id: str, status: DeliveryStatus, attempts: int, error: str | None,
                      next_attempt: datetime | None) -> None:
        """An attempt's outcome; ``next_attempt`` None keeps the delivery's current due time."""
        ...

    def deliveries_of(self, prompt_id: str) -> list[DeliveryState]: ...


class PromptStore(Protocol):
    # the store's own trouble (unreachable, locked), not the event's: retried, never dead-lettered
    transient_errors: tuple[type[Exception], ...]

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        ...

    def close(self) -> None: ...


class Source(Protocol):
    """A transport of integration events (the HTTP feed, Kafka). A source whose ``fetch``
    itself waits for records (a long poll) says so with ``long_poll = True``: the consumer
    then asks again at once after an empty fetch instead of backing off."""

    name: str

    def fetch(self, positions: Callable[[], dict[int, int]]) -> list[Record]:
        """The next records after the stored positions (may wait briefly); raise if unreachable."""
        ...

    def processed(self, records: list[Record]) -> None:
        """Called after the records are stored (Kafka: commit offsets, for lag monitoring only)."""
        ...

    def close(self) -> None: ...


class Channel(Protocol):
    """A way to tell the coordinator (webhook, e-mail): one attempt per ``send``; a failed one
    raises ``DeliveryError``."""

    name: str

    def send(self, message: Message) -> None: ...
