"""The use cases of notification-service.

- ``handle``: one integration event from a source (HTTP feed or Kafka). The view update, the
  prompts it creates or resolves, their deliveries and the source position are stored in ONE
  transaction, so a redelivered or replayed event changes nothing (exactly-once effect). An
  event that cannot be processed goes to the dead letters, with the reason, and the position
  moves on.
- ``tick``: the clock's turn: time-based rules for plans whose next check is due, and
  escalation of prompts not acknowledged in time.
- the inbox: list, read and acknowledge one's own prompts.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from marshmallow import ValidationError

from careplan_shared.events import UnknownEventType, decode_event
from notification_service.adapters.store import Prompt, Tx
from notification_service.domain.rules import Settings, desired_prompts, next_check
from notification_service.domain.view import OutOfOrder, PlanView, apply, is_redelivery

log = logging.getLogger("careplan.notifications")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime):
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        self._now = moment


class Store(Protocol):
    def transaction(self) -> Any: ...


class PromptNotFound(Exception):
    pass


class PromptClosed(Exception):
    """Acknowledging a prompt that resolved itself (the plan already shows it was dealt with)."""


@dataclass(frozen=True)
class Outcome:
    status: str  # processed | duplicate | dead_letter
    created: int = 0
    resolved: int = 0


class Notifications:
    def __init__(self, store: Store, settings: Settings | None = None, clock: Clock | None = None,
                 channels: tuple[str, ...] = ()):
        self.store = store
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        self.channels = channels
        self.processed = 0

    # -- events -------------------------------------------------------------------------

    def handle(self, source: str, part: int, position: int, raw: bytes | str | dict[str, Any]) -> Outcome:
        """One event, one transaction. An unexpected failure while processing it (a bug, not
        bad input) dead-letters the event in a second transaction, so the stream goes on."""
        now = self.clock.now()
        try:
            with self.store.transaction() as tx:
                done = tx.position(source, part)
                if done is not None and position <= done:
                    return Outcome("duplicate")
                outcome = self._apply(tx, source, part, position, raw, now, {})
                tx.set_position(source, part, position)
        except Exception as e:  # noqa: BLE001
            log.error("event processing failed", extra={"error_type": type(e).__name__, "position": position})
            with self.store.transaction() as tx:
                outcome = self._dead(tx, source, part, position, None, f"error: {type(e).__name__}", raw, now)
                tx.set_position(source, part, position)
        self.processed += 1
        return outcome

    def handle_batch(self, source: str, records: list[Any]) -> list[Outcome]:
        """Many events in one transaction (records have .part, .position, .raw): the same
        effects as one by one, at a fraction of the commits. Any failure: one by one."""
        now = self.clock.now()
        try:
            with self.store.transaction() as tx:
                done = tx.positions(source)
                outcomes = []
                views: dict[str, PlanView] = {}  # each plan read and written once per batch
                for r in records:
                    if r.position <= done.get(r.part, -1):
                        outcomes.append(Outcome("duplicate"))
                        continue
                    outcomes.append(self._apply(tx, source, r.part, r.position, r.raw, now, views, save=False))
                    done[r.part] = r.position
                for view in views.values():
                    self._save_view(tx, view, now)
                for part in {r.part for r in records}:
                    if part in done:
                        tx.set_position(source, part, done[part])
        except Exception:  # noqa: BLE001 - isolate the record that fails
            return [self.handle(source, r.part, r.position, r.raw) for r in records]
        self.processed += len(records)
        return outcomes

    def _apply(self, tx: Tx, source: str, part: int, position: int, raw: Any, now: datetime,
               views: dict[str, PlanView], save: bool = True) -> Outcome:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None
        try:
            data = json.loads(text) if text is not None else raw
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            event = decode_event(data)
        except (ValueError, ValidationError, UnknownEventType, TypeError) as e:
            return self._dead(tx, source, part, position, None, f"undecodable: {_reason(e)}", raw, now)
        plan_id = str(event.plan_id)
        view = views.get(plan_id)
        if view is None:
            stored = tx.load_view(plan_id)
            view = PlanView.from_json(stored) if stored else PlanView(plan_id)
        if is_redelivery(view, event):
            return Outcome("duplicate")
        try:
            apply(view, event)
        except (OutOfOrder, KeyError, TypeError) as e:
            views.pop(plan_id, None)  # the view may be half-changed: read it again from the store
            return self._dead(tx, source, part, position, str(event.event_id), f"unprocessable: {_reason(e)}",
                              raw, now)
        views[plan_id] = view
        created, resolved = self._reconcile(tx, view, now, save=save)
        return Outcome("processed", created, resolved)

    def _dead(self, tx: Tx, source: str, part: int, position: int, event_id: str | None, reason: str,
              raw: Any, now: datetime) -> Outcome:
        payload = raw if isinstance(raw, str) else raw.decode("utf-8", "replace") if isinstance(raw, bytes) \
            else json.dumps(raw, default=str)
        # Whatever arrived must be storable as text (lone surrogates, invalid UTF-8...).
        payload = payload.encode("utf-8", "replace").decode("utf-8")
        reason = reason.encode("utf-8", "replace").decode("utf-8")
        tx.dead_letter(source, part, position, event_id, reason, payload, now)
        log.warning("event dead-lettered", extra={"position": position, "reason": reason.split(":")[0]})
        return Outcome("dead_letter")

    def positions(self, source: str) -> dict[int, int]:
        with self.store.transaction() as tx:
            return tx.positions(source)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.store.transaction() as tx:
            return tx.dead_letters(limit)

    # -- rules --------------------------------------------------------------------------

    def _save_view(self, tx: Tx, view: PlanView, now: datetime) -> None:
        tx.save_view(view.plan_id, view.version, view.to_json(), next_check(view, now, self.settings))

    def _reconcile(self, tx: Tx, view: PlanView, now: datetime, save: bool = True) -> tuple[int, int]:
        """Make the stored prompts of this plan what the rules want now; save the view."""
        wanted = {(p.rule, p.subject): p for p in desired_prompts(view, now, self.settings)}
        existing = {(p.rule, p.subject): p for p in tx.prompts_of_plan(view.plan_id)}
        created = resolved = 0
        for key, spec in wanted.items():
            if key in existing:
                continue  # once created, never again: not after an ack, not after a restart
            prompt = Prompt(uuid.uuid4().hex, view.plan_id, spec.rule, spec.subject, view.coordinator_id,
                            "open", spec.due_at, spec.escalate_at, None, now, None, None, spec.details)
            tx.insert_prompt(prompt)
            for channel in self.channels:
                tx.enqueue_delivery(prompt.id, channel, "new", now)
            created += 1
        for key, prompt in existing.items():
            if prompt.status != "open":
                continue
            if key not in wanted:
                tx.resolve_prompt(prompt.id, now)
                resolved += 1
            elif prompt.recipient != view.coordinator_id:
                tx.set_recipient(prompt.id, view.coordinator_id)
        if save:
            self._save_view(tx, view, now)
        return created, resolved

    def tick(self, batch: int = 500) -> dict[str, int]:
        """Run the time-based rules where due, and escalate what was not acknowledged in time."""
        now = self.clock.now()
        checked = escalated = 0
        while True:
            with self.store.transaction() as tx:
                plan_ids = tx.views_due(now, batch)
                for plan_id in plan_ids:
                    self._reconcile(tx, PlanView.from_json(tx.load_view(plan_id)), now)
                checked += len(plan_ids)
            if len(plan_ids) < batch:
                break
        with self.store.transaction() as tx:
            for prompt in tx.to_escalate(now, 10_000):
                tx.mark_escalated(prompt.id, now)
                for channel in self.channels:
                    tx.enqueue_delivery(prompt.id, channel, "escalated", now)
                escalated += 1
        return {"checked": checked, "escalated": escalated}

    # -- the inbox ----------------------------------------------------------------------

    def inbox(self, recipient: str, status: str = "open", limit: int = 200) -> list[Prompt]:
        statuses = ("open", "acknowledged", "resolved") if status == "all" else (status,)
        with self.store.transaction() as tx:
            return tx.inbox(recipient, statuses, limit)

    def prompt_for(self, prompt_id: str, recipient: str) -> Prompt:
        with self.store.transaction() as tx:
            prompt = tx.prompt(prompt_id)
        if prompt is None or prompt.recipient != recipient:
            raise PromptNotFound(prompt_id)  # another coordinator's prompt does not exist for you
        return prompt

    def acknowledge(self, prompt_id: str, recipient: str) -> Prompt:
        with self.store.transaction() as tx:
            prompt = tx.prompt(prompt_id)
            if prompt is None or prompt.recipient != recipient:
                raise PromptNotFound(prompt_id)
            if prompt.status == "resolved":
                raise PromptClosed(prompt_id)
            if prompt.status == "open":
                tx.acknowledge(prompt_id, self.clock.now())
            return tx.prompt(prompt_id)


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return json.dumps(error.normalized_messages(), sort_keys=True)[:400]
    return f"{type(error).__name__}: {error}"[:400]
