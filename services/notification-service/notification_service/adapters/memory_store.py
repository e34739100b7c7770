"""An in-memory store with the SQL store's behaviour (application.ports.PromptStore), for the
use cases' unit tests: no files, no database.

A transaction works on a copy-on-write snapshot of the committed tables: a table is copied the
first time the transaction writes to it, rows are replaced and never changed in place, and the
changed tables become the committed ones when the block ends (nothing of them if it raises).
Transactions run one at a time (like SQLite's single writer); one inside another in the same
thread is refused, as it would wait for itself with a real store.

Like the SQL store, times are kept as fixed-width UTC text (so they compare and come back the
same way) and views and prompt details as JSON text (so state that JSON cannot hold fails here
as it would there).
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from notification_service.adapters.store import from_ts, ts
from notification_service.domain.dead_letters import DeadLetter, DeadLetterStatus, OpenDeadLetter
from notification_service.domain.deliveries import DeliveryKind, DeliveryState, DeliveryStatus, DueDelivery
from notification_service.domain.prompts import Prompt, PromptStatus, Reason

Row = dict[str, Any]
TABLES = ("positions", "views", "prompts", "dead_letters", "deliveries")


class DuplicateKey(ValueError):
    """A row whose unique key is taken (the SQL stores raise their IntegrityError)."""


class MemoryStore:
    transient_errors: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self._tables: dict[str, dict[Any, Row]] = {name: {} for name in TABLES}
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._order = itertools.count()  # insertion order: the tie-break where SQL's order is open

    @contextmanager
    def transaction(self) -> Iterator[MemoryTx]:
        if self._owner == threading.get_ident():
            raise RuntimeError("a transaction inside a transaction of the same thread")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                tx = MemoryTx(self._tables, self._order)
                yield tx
                self._tables = {**self._tables, **tx.changed}  # commit; if the block raised: dropped
            finally:
                self._owner = None

    def close(self) -> None:
        pass


def _prompt(row: Row) -> Prompt:
    return Prompt(
        id=row["id"], plan_id=row["plan_id"], rule=Reason(row["rule"]), subject=row["subject"],
        recipient=row["recipient"], status=PromptStatus(row["status"]), due_at=_at(row["due_at"]),
        escalate_at=from_ts(row["escalate_at"]), escalated_at=from_ts(row["escalated_at"]),
        created_at=_at(row["created_at"]), acknowledged_at=from_ts(row["acknowledged_at"]),
        resolved_at=from_ts(row["resolved_at"]), details=json.loads(row["details"]),
        history=json.loads(row.get("history") or "[]"))


def _at(text: str) -> datetime:
    """A NOT NULL time column."""
    moment = from_ts(text)
    if moment is None:
        raise ValueError("a required time is missing")
    return moment


class MemoryTx:
    """One transaction of a MemoryStore: implements application.ports.StoreTransaction."""

    def __init__(self, committed: dict[str, dict[Any, Row]], order: Iterator[int]):
        self._committed = committed
        self._order = order
        self.changed: dict[str, dict[Any, Row]] = {}

    def _read(self, table: str) -> dict[Any, Row]:
        return self.changed.get(table, self._committed[table])

    def _write(self, table: str) -> dict[Any, Row]:
        if table not in self.changed:
            self.changed[table] = dict(self._committed[table])  # the rows themselves are never changed
        return self.changed[table]

    def _update(self, table: str, key: Any, **values: Any) -> None:
        row = self._read(table).get(key)
        if row is not None:
            self._write(table)[key] = {**row, **values}

    # positions
    def position(self, source: str, part: int) -> int | None:
        row = self._read("positions").get((source, part))
        return row["position"] if row else None

    def positions(self, source: str) -> dict[int, int]:
        return {part: row["position"] for (s, part), row in self._read("positions").items() if s == source}

    def set_position(self, source: str, part: int, position: int) -> None:
        self._write("positions")[(source, part)] = {"position": position}

    def set_positions(self, source: str, positions: Mapping[int, int]) -> None:
        for part, position in positions.items():
            self.set_position(source, part, position)

    # plan views
    def load_view(self, plan_id: str) -> dict[str, Any] | None:
        row = self._read("views").get(plan_id)
        return json.loads(row["state"]) if row else None

    def load_views(self, plan_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        return {plan_id: view for plan_id in plan_ids if (view := self.load_view(plan_id)) is not None}

    def save_view(self, plan_id: str, version: int, state: dict[str, Any], next_check: datetime | None) -> None:
        self._write("views")[plan_id] = {"version": version, "state": json.dumps(state),
                                         "next_check_at": ts(next_check)}

    def save_views(self, views: Sequence[tuple[str, int, dict[str, Any], datetime | None]]) -> None:
        for plan_id, version, state, next_check in views:
            self.save_view(plan_id, version, state, next_check)

    def postpone_check(self, plan_id: str, until: datetime) -> None:
        self._update("views", plan_id, next_check_at=ts(until))

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        before = dict(self.changed)  # tables are replaced, never changed in place, once written
        try:
            yield
        except BaseException:
            self.changed = {name: dict(rows) for name, rows in before.items()}
            raise

    def views_due(self, now: datetime, limit: int) -> list[str]:
        due = [(row["next_check_at"], plan_id) for plan_id, row in self._read("views").items()
               if row["next_check_at"] is not None and row["next_check_at"] <= ts(now)]
        return [plan_id for _, plan_id in sorted(due, key=lambda d: d[0])[:limit]]

    # prompts
    def _prompts(self, keep: Any, order: Any = None, limit: int | None = None) -> list[Prompt]:
        rows = [row for row in self._read("prompts").values() if keep(row)]
        if order is not None:
            rows.sort(key=lambda row: (order(row), row["seq"]))
        return [_prompt(row) for row in rows[:limit]]

    def prompts_of_plan(self, plan_id: str) -> list[Prompt]:
        return self._prompts(lambda row: row["plan_id"] == plan_id)

    def prompts_of_plans(self, plan_ids: Collection[str]) -> dict[str, list[Prompt]]:
        wanted = set(plan_ids)
        found: dict[str, list[Prompt]] = {}
        for prompt in self._prompts(lambda row: row["plan_id"] in wanted):
            found.setdefault(prompt.plan_id, []).append(prompt)
        return found

    def insert_prompts(self, prompts: Sequence[Prompt]) -> None:
        for prompt in prompts:
            self.insert_prompt(prompt)

    def resolve_prompts(self, prompt_ids: Sequence[str], at: datetime) -> None:
        for prompt_id in prompt_ids:
            self.resolve_prompt(prompt_id, at)

    def set_recipients(self, changes: Sequence[tuple[str, str | None]]) -> None:
        for prompt_id, recipient in changes:
            self.set_recipient(prompt_id, recipient)

    def set_histories(self, changes: Sequence[tuple[str, list[dict[str, Any]]]]) -> None:
        for prompt_id, history in changes:
            self._update("prompts", prompt_id, history=json.dumps(history))

    def set_details_of(self, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        for prompt_id, details in changes:
            self.set_details(prompt_id, details)

    def insert_prompt(self, prompt: Prompt) -> None:
        rows = self._read("prompts")
        key = (prompt.plan_id, str(prompt.rule), prompt.subject)
        if prompt.id in rows or any((r["plan_id"], r["rule"], r["subject"]) == key for r in rows.values()):
            raise DuplicateKey("a prompt with this id or (plan, rule, subject) exists")
        self._write("prompts")[prompt.id] = {
            "id": prompt.id, "plan_id": prompt.plan_id, "rule": str(prompt.rule), "subject": prompt.subject,
            "recipient": prompt.recipient, "status": str(prompt.status), "due_at": ts(prompt.due_at),
            "escalate_at": ts(prompt.escalate_at), "escalated_at": ts(prompt.escalated_at),
            "created_at": ts(prompt.created_at), "acknowledged_at": ts(prompt.acknowledged_at),
            "resolved_at": ts(prompt.resolved_at), "details": json.dumps(prompt.details),
            "history": json.dumps(prompt.history), "seq": next(self._order)}

    def _is(self, prompt_id: str, status: PromptStatus) -> bool:
        row = self._read("prompts").get(prompt_id)
        return row is not None and row["status"] == status

    def resolve_prompt(self, prompt_id: str, at: datetime) -> None:
        if self._is(prompt_id, PromptStatus.OPEN):
            self._update("prompts", prompt_id, status=str(PromptStatus.RESOLVED), resolved_at=ts(at))

    def set_recipient(self, prompt_id: str, recipient: str | None) -> None:
        self._update("prompts", prompt_id, recipient=recipient)

    def set_details(self, prompt_id: str, details: dict[str, Any]) -> None:
        self._update("prompts", prompt_id, details=json.dumps(details))

    def prompt(self, prompt_id: str) -> Prompt | None:
        row = self._read("prompts").get(prompt_id)
        return _prompt(row) if row else None

    def inbox(self, recipient: str, statuses: tuple[PromptStatus, ...], limit: int) -> list[Prompt]:
        wanted = {str(status) for status in statuses}
        return self._prompts(lambda row: row["recipient"] == recipient and row["status"] in wanted,
                             order=lambda row: (row["due_at"], row["id"]), limit=limit)

    def acknowledge(self, prompt_id: str, at: datetime) -> None:
        if self._is(prompt_id, PromptStatus.OPEN):
            self._update("prompts", prompt_id, status=str(PromptStatus.ACKNOWLEDGED), acknowledged_at=ts(at))

    def to_escalate(self, now: datetime, limit: int) -> list[Prompt]:
        return self._prompts(
            lambda row: (row["status"] == PromptStatus.OPEN and row["escalate_at"] is not None
                         and row["escalate_at"] <= ts(now) and row["escalated_at"] is None),
            order=lambda row: row["escalate_at"], limit=limit)

    def mark_escalated(self, prompt_id: str, at: datetime) -> None:
        self._update("prompts", prompt_id, escalated_at=ts(at))

    def count_prompts(self) -> int:
        return len(self._read("prompts"))

    # dead letters
    def dead_letter(self, source: str, part: int, position: int, event_id: str | None, reason: str,
                    payload: str, at: datetime) -> None:
        if event_id is not None:
            for letter_id, row in self._read("dead_letters").items():
                if row["event_id"] == event_id and row["status"] == DeadLetterStatus.OPEN:
                    self.dead_letter_failed(letter_id, reason)
                    return
        letter_id = uuid.uuid4().hex
        self._write("dead_letters")[letter_id] = {
            "id": letter_id, "source": source, "part": part, "position": position, "event_id": event_id,
            "reason": reason[:500], "payload": payload, "created_at": ts(at), "status": str(DeadLetterStatus.OPEN),
            "resolved_at": None, "seq": next(self._order)}

    def _letters(self, status: DeadLetterStatus | None, order: Any) -> list[Row]:
        rows = [row for row in self._read("dead_letters").values() if status is None or row["status"] == status]
        return sorted(rows, key=lambda row: (order(row), row["seq"]))

    def dead_letters(self, limit: int = 100, status: DeadLetterStatus | None = DeadLetterStatus.OPEN
                     ) -> list[DeadLetter]:
        rows = self._letters(status, lambda r: (r["created_at"], r["source"], r["part"], r["position"]))
        return [DeadLetter(source=r["source"], part=r["part"], position=r["position"], event_id=r["event_id"],
                           reason=r["reason"], created_at=r["created_at"], status=r["status"],
                           resolved_at=r["resolved_at"]) for r in rows[:limit]]

    def count_dead_letters(self, status: DeadLetterStatus = DeadLetterStatus.OPEN) -> int:
        return sum(1 for row in self._read("dead_letters").values() if row["status"] == status)

    def prompt_counts(self) -> list[tuple[str, str, bool, int]]:
        counts = Counter((str(r["rule"]), str(r["status"]), r["escalated_at"] is not None)
                         for r in self._read("prompts").values())
        return [(rule, status, escalated, n) for (rule, status, escalated), n in counts.items()]

    def delivery_counts(self) -> list[tuple[str, str, int]]:
        counts = Counter((r["channel"], str(r["status"])) for r in self._read("deliveries").values())
        return [(channel, status, n) for (channel, status), n in counts.items()]

    def open_dead_letters(self, limit: int) -> list[OpenDeadLetter]:
        rows = self._letters(DeadLetterStatus.OPEN, lambda r: (r["source"], r["part"], r["position"], r["created_at"]))
        return [OpenDeadLetter(id=r["id"], source=r["source"], part=r["part"], position=r["position"],
                               event_id=r["event_id"], payload=r["payload"]) for r in rows[:limit]]

    def resolve_dead_letter(self, letter_id: str, at: datetime) -> None:
        self._update("dead_letters", letter_id, status=str(DeadLetterStatus.RESOLVED), resolved_at=ts(at))

    def resolve_dead_letters_of_event(self, event_id: str, at: datetime) -> None:
        for letter_id, row in list(self._read("dead_letters").items()):
            if row["event_id"] == event_id and row["status"] == DeadLetterStatus.OPEN:
                self.resolve_dead_letter(letter_id, at)

    def dead_letter_failed(self, letter_id: str, reason: str) -> None:
        self._update("dead_letters", letter_id, reason=reason[:500])

    # delivery outbox
    def enqueue_delivery(self, prompt_id: str, channel: str, kind: DeliveryKind, at: datetime) -> None:
        key = (prompt_id, channel, str(kind))
        if any((r["prompt_id"], r["channel"], r["kind"]) == key for r in self._read("deliveries").values()):
            return
        delivery_id = uuid.uuid4().hex
        self._write("deliveries")[delivery_id] = {
            "id": delivery_id, "prompt_id": prompt_id, "channel": channel, "kind": str(kind),
            "status": str(DeliveryStatus.PENDING), "attempts": 0, "next_attempt_at": ts(at), "last_error": None,
            "created_at": ts(at), "seq": next(self._order)}

    def enqueue_deliveries(self, deliveries: Sequence[tuple[str, str, DeliveryKind]], at: datetime) -> None:
        for prompt_id, channel, kind in deliveries:
            self.enqueue_delivery(prompt_id, channel, kind, at)

    def deliveries_due(self, now: datetime, limit: int) -> list[DueDelivery]:
        rows = sorted((r for r in self._read("deliveries").values()
                       if r["status"] == DeliveryStatus.PENDING and r["next_attempt_at"] <= ts(now)),
                      key=lambda r: (r["next_attempt_at"], r["seq"]))
        return [DueDelivery(id=r["id"], prompt_id=r["prompt_id"], channel=r["channel"], kind=DeliveryKind(r["kind"]),
                            attempts=r["attempts"]) for r in rows[:limit]]

    def claim_deliveries(self, now: datetime, limit: int, until: datetime) -> list[DueDelivery]:
        due = self.deliveries_due(now, limit)
        for delivery in due:
            self._update("deliveries", delivery["id"], next_attempt_at=ts(until))
        return due

    def delivery_done(self, delivery_id: str, status: DeliveryStatus, attempts: int, error: str | None,
                      next_attempt: datetime | None) -> None:
        row = self._read("deliveries").get(delivery_id)
        if row is not None:
            self._update("deliveries", delivery_id, status=str(status), attempts=attempts, last_error=error,
                         next_attempt_at=ts(next_attempt) if next_attempt is not None else row["next_attempt_at"])

    def deliveries_of(self, prompt_id: str) -> list[DeliveryState]:
        rows = sorted((r for r in self._read("deliveries").values() if r["prompt_id"] == prompt_id),
                      key=lambda r: (r["created_at"], r["seq"]))
        return [DeliveryState(channel=r["channel"], kind=DeliveryKind(r["kind"]), status=DeliveryStatus(r["status"]),
                              attempts=r["attempts"], last_error=r["last_error"]) for r in rows]
