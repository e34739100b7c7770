"""The use cases of notification-service.

- ``handle``: one integration event from a source (HTTP feed or Kafka). The view update, the
  prompts it creates or resolves, their deliveries and the source position are stored in ONE
  transaction, so a redelivered or replayed event changes nothing (exactly-once effect). An
  event that cannot be processed goes to the dead letters, with the reason, and the position
  moves on; so does its plan's view (it records the version it skipped), so one bad event never
  stops a plan's later prompts.
- ``retry_dead_letters``: after a fix, the open dead letters again, in position order, applied
  late onto the current view; resolved, or left open with the new reason.
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
from enum import StrEnum
from typing import Any, Protocol

from marshmallow import ValidationError

from careplan_shared.events import IntegrationEvent, UnknownEventType, decode_event
from notification_service.application.ports import PromptStore, StoreTransaction
from notification_service.domain.dead_letters import DeadLetter, DeadLetterStatus, OpenDeadLetter
from notification_service.domain.deliveries import DeliveryKind
from notification_service.domain.errors import StoreUnreadable
from notification_service.domain.prompts import Prompt, PromptStatus
from notification_service.domain.records import Record
from notification_service.domain.rules import Settings, desired_prompts, next_check
from notification_service.domain.view import (
    OutOfOrder,
    PlanView,
    apply,
    apply_late,
    is_late,
    is_redelivery,
    skip,
)

log = logging.getLogger("careplan.notifications")

# A plan_version the store's INTEGER column holds on both engines (PostgreSQL: 32 bits).
MAX_PLAN_VERSION = 2**31 - 1
# Errors that are the event's (or a rule's) and not a bug: their message goes into the reason.
EXPECTED = (OutOfOrder, KeyError, TypeError, ValueError, OverflowError)
RECHECK_AFTER_FAILURE = timedelta(days=1)
ALL = "all"  # the inbox in every status


class Undecodable(Exception):
    pass


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


class PromptNotFound(Exception):
    pass


class PromptClosed(Exception):
    """Acknowledging a prompt that resolved itself (the plan already shows it was dealt with)."""


class OutcomeStatus(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"  # already in the store (redelivered) or in the plan's view (re-sent)
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    created: int = 0
    resolved: int = 0


class Notifications:
    def __init__(self, store: PromptStore, settings: Settings | None = None, clock: Clock | None = None,
                 channels: tuple[str, ...] = ()):
        self.store = store
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        self.channels = channels
        self.processed = 0

    # -- events -------------------------------------------------------------------------

    def handle(self, source: str, part: int, position: int, raw: bytes | str | dict[str, Any]) -> Outcome:
        """One event, one transaction. An unexpected failure while processing it (a bug, not
        bad input) dead-letters the event in a second transaction, moving its plan's view past
        it, so the stream and the plan go on. The store's own trouble (unreachable, locked, a
        wrong key) is raised: nothing is dead-lettered, the consumer retries."""
        now = self.clock.now()
        try:
            with self.store.transaction() as tx:
                done = tx.position(source, part)
                if done is not None and position <= done:
                    return Outcome(OutcomeStatus.DUPLICATE)
                outcome = self._apply(tx, source, part, position, raw, now, {})
                tx.set_position(source, part, position)
        except self._fatal():
            raise
        except Exception as e:  # noqa: BLE001
            log.error("event processing failed", extra={"error_type": type(e).__name__, "position": position})
            outcome = self._isolate(source, part, position, raw, now, f"error: {type(e).__name__}")
        self.processed += 1
        return outcome

    def handle_batch(self, source: str, records: list[Record]) -> list[Outcome]:
        """Many events in one transaction: the same
        effects as one by one, at a fraction of the commits. Any failure: one by one."""
        now = self.clock.now()
        try:
            with self.store.transaction() as tx:
                done = tx.positions(source)
                outcomes = []
                views: dict[str, PlanView] = {}  # each plan read and written once per batch
                for r in records:
                    if r.position <= done.get(r.part, -1):
                        outcomes.append(Outcome(OutcomeStatus.DUPLICATE))
                        continue
                    outcomes.append(self._apply(tx, source, r.part, r.position, r.raw, now, views, save=False))
                    done[r.part] = r.position
                for view in views.values():
                    self._save_view(tx, view, now)
                for part in {r.part for r in records}:
                    if part in done:
                        tx.set_position(source, part, done[part])
        except self._fatal():
            raise
        except Exception:  # noqa: BLE001 - isolate the record that fails
            return [self.handle(source, r.part, r.position, r.raw) for r in records]
        self.processed += len(records)
        return outcomes

    def _fatal(self) -> tuple[type[Exception], ...]:
        return (StoreUnreadable, *getattr(self.store, "transient_errors", ()))

    def _apply(self, tx: StoreTransaction, source: str, part: int, position: int, raw: Any, now: datetime,
               views: dict[str, PlanView], save: bool = True) -> Outcome:
        try:
            event = _decode(raw)
        except Undecodable as e:
            outcome = self._dead(tx, source, part, position, None, f"undecodable: {e}", raw, now)
            where = _plan_and_version(raw)
            if where is not None:  # its plan moves past it too: its next events are not "out of order"
                view, _ = self._view(tx, where[0], views)
                if where[1] > view.version:
                    skip(view, where[1])
                    views[where[0]] = view
                    if save:
                        self._save_view(tx, view, now)
            return outcome
        plan_id = str(event.plan_id)
        view, copy = self._view(tx, plan_id, views)
        if is_redelivery(view, event):
            return Outcome(OutcomeStatus.DUPLICATE)
        late = is_late(view, event)  # skipped earlier; here again (a re-sent copy): apply it now
        try:
            apply_late(view, event) if late else apply(view, event)
        except Exception as e:  # noqa: BLE001 - any failure: this event only, never its plan
            view = PlanView.from_json(copy) if copy is not None else PlanView(plan_id)  # may be half-changed
            if not late:
                skip(view, event.plan_version)
            views[plan_id] = view
            self._dead(tx, source, part, position, str(event.event_id), _failure(e), raw, now)
            self._reconcile(tx, view, now, save=save)
            return Outcome(OutcomeStatus.DEAD_LETTER)
        views[plan_id] = view
        if late:
            tx.resolve_dead_letters_of_event(str(event.event_id), now)
        created, resolved = self._reconcile(tx, view, now, save=save)
        return Outcome(OutcomeStatus.PROCESSED, created, resolved)

    def _view(self, tx: StoreTransaction, plan_id: str, views: dict[str, PlanView]
              ) -> tuple[PlanView, dict[str, Any] | None]:
        """The plan's view, and a copy of its state to fall back to if an event fails halfway."""
        view = views.get(plan_id)
        if view is not None:
            return view, view.to_json()
        stored = tx.load_view(plan_id)
        return (PlanView.from_json(stored), stored) if stored else (PlanView(plan_id), None)

    def _isolate(self, source: str, part: int, position: int, raw: Any, now: datetime, reason: str) -> Outcome:
        """After a failure that rolled the event's transaction back: dead-letter it and move its
        plan's view past it (without the rules, which may be what failed). If even that fails,
        dead-letter it alone, as before."""
        try:
            with self.store.transaction() as tx:
                try:
                    event = _decode(raw)
                except Undecodable:
                    event = None
                if event is not None:
                    view, _ = self._view(tx, str(event.plan_id), {})
                    if not view.reflects(event.plan_version) and not is_late(view, event):
                        skip(view, event.plan_version)
                        self._save_view(tx, view, now)
                outcome = self._dead(tx, source, part, position, str(event.event_id) if event else None,
                                     reason, raw, now)
                tx.set_position(source, part, position)
            return outcome
        except self._fatal():
            raise
        except Exception as e:  # noqa: BLE001
            log.error("moving past a failed event failed", extra={"error_type": type(e).__name__,
                                                                  "position": position})
        with self.store.transaction() as tx:
            outcome = self._dead(tx, source, part, position, None, reason, raw, now)
            tx.set_position(source, part, position)
        return outcome

    def _dead(self, tx: StoreTransaction, source: str, part: int, position: int, event_id: str | None, reason: str,
              raw: Any, now: datetime) -> Outcome:
        payload = raw if isinstance(raw, str) else raw.decode("utf-8", "replace") if isinstance(raw, bytes) \
            else json.dumps(raw, default=str)
        # Whatever arrived must be storable as text (lone surrogates, invalid UTF-8...).
        payload = payload.encode("utf-8", "replace").decode("utf-8")
        reason = reason.encode("utf-8", "replace").decode("utf-8")
        tx.dead_letter(source, part, position, event_id, reason, payload, now)
        log.warning("event dead-lettered", extra={"position": position, "reason": reason.split(":")[0]})
        return Outcome(OutcomeStatus.DEAD_LETTER)

    # -- dead letters -------------------------------------------------------------------

    def retry_dead_letters(self, limit: int = 100_000) -> dict[str, int]:
        """The open dead letters again, in position order, each in its own transaction: decoded,
        applied late onto the plan's current view (an event the view already reflects is not
        applied twice), prompts reconciled, marked resolved; one that fails again stays open
        with its new reason."""
        now = self.clock.now()
        with self.store.transaction() as tx:
            letters = tx.open_dead_letters(limit)
        resolved = failing = 0
        for letter in letters:
            try:
                with self.store.transaction() as tx:
                    reason = self._retry(tx, letter, now)
                    if reason is None:
                        tx.resolve_dead_letter(letter["id"], now)
                    else:
                        tx.dead_letter_failed(letter["id"], reason)
            except self._fatal():
                raise
            except Exception as e:  # noqa: BLE001 - this one stays open; the next may work
                reason = f"error: {type(e).__name__}"
                with self.store.transaction() as tx:
                    tx.dead_letter_failed(letter["id"], reason)
            if reason is None:
                resolved += 1
            else:
                failing += 1
                log.warning("dead letter still failing", extra={"position": letter["position"],
                                                                "reason": reason.split(":")[0]})
        return {"retried": len(letters), "resolved": resolved, "still_failing": failing}

    def _retry(self, tx: StoreTransaction, letter: OpenDeadLetter, now: datetime) -> str | None:
        """None when the letter's event is now in its plan's view; else why not."""
        try:
            event = _decode(letter["payload"])
        except Undecodable as e:
            return f"undecodable: {e}"
        view, _ = self._view(tx, str(event.plan_id), {})
        if view.reflects(event.plan_version):
            return None  # a re-sent copy was applied meanwhile: nothing to do twice
        try:
            apply_late(view, event)  # the version check is not the gate: the view moved past it
        except Exception as e:  # noqa: BLE001 - nothing of the half-changed view is saved
            return _failure(e)
        self._reconcile(tx, view, now)
        return None

    def positions(self, source: str) -> dict[int, int]:
        with self.store.transaction() as tx:
            return tx.positions(source)

    def dead_letters(self, limit: int = 100, status: DeadLetterStatus | None = DeadLetterStatus.OPEN
                     ) -> list[DeadLetter]:
        with self.store.transaction() as tx:
            return tx.dead_letters(limit, status)

    def open_dead_letter_count(self) -> int:
        with self.store.transaction() as tx:
            return tx.count_dead_letters(DeadLetterStatus.OPEN)

    # -- rules --------------------------------------------------------------------------

    def _save_view(self, tx: StoreTransaction, view: PlanView, now: datetime) -> None:
        try:
            check = next_check(view, now, self.settings)
        except Exception as e:  # noqa: BLE001 - look again tomorrow rather than lose the update
            log.warning("next check failed", extra={"error_type": type(e).__name__})
            check = now + RECHECK_AFTER_FAILURE
        tx.save_view(view.plan_id, view.version, view.to_json(), check)

    def _reconcile(self, tx: StoreTransaction, view: PlanView, now: datetime, save: bool = True) -> tuple[int, int]:
        """Make the stored prompts of this plan what the rules want now; save the view."""
        failed: set[str] = set()

        def rule_failed(rule: str, error: Exception) -> None:
            failed.add(rule)
            _rule_failed(rule, error)

        wanted = {(p.rule, p.subject): p for p in desired_prompts(view, now, self.settings, rule_failed)}
        existing = {(p.rule, p.subject): p for p in tx.prompts_of_plan(view.plan_id)}
        created = resolved = 0
        for key, spec in wanted.items():
            if key in existing:
                continue  # once created, never again: not after an ack, not after a restart
            prompt = Prompt(uuid.uuid4().hex, view.plan_id, spec.rule, spec.subject, view.coordinator_id,
                            PromptStatus.OPEN, spec.due_at, spec.escalate_at, None, now, None, None, spec.details)
            tx.insert_prompt(prompt)
            for channel in self.channels:
                tx.enqueue_delivery(prompt.id, channel, DeliveryKind.NEW, now)
            created += 1
        for key, prompt in existing.items():
            if prompt.recipient != view.coordinator_id:
                # Every prompt of the plan, whatever its status, is the current coordinator's: a
                # former one no longer reads the plan's wishes and strategy in their inbox.
                tx.set_recipient(prompt.id, view.coordinator_id)
            if prompt.status != PromptStatus.OPEN:
                continue
            if key not in wanted:
                if prompt.rule in failed:
                    continue  # the rule could not say this time: an open prompt is kept, not resolved
                tx.resolve_prompt(prompt.id, now)
                resolved += 1
            else:
                if prompt.details != wanted[key].details:  # e.g. a late event filled in the strategy
                    tx.set_details(prompt.id, wanted[key].details)
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
                    self._tick_one(tx, plan_id, now)
                checked += len(plan_ids)
            if len(plan_ids) < batch:
                break
        with self.store.transaction() as tx:
            for prompt in tx.to_escalate(now, 10_000):
                tx.mark_escalated(prompt.id, now)
                for channel in self.channels:
                    tx.enqueue_delivery(prompt.id, channel, DeliveryKind.ESCALATED, now)
                escalated += 1
        return {"checked": checked, "escalated": escalated}

    def _tick_one(self, tx: StoreTransaction, plan_id: str, now: datetime) -> None:
        """One plan's turn; a plan whose view cannot be read does not stop the others."""
        try:
            with tx.savepoint():  # its failure undoes this plan's part only (PostgreSQL too)
                data = tx.load_view(plan_id)
                assert data is not None  # views_due lists stored views only
                self._reconcile(tx, PlanView.from_json(data), now)
        except self._fatal():
            raise
        except Exception as e:  # noqa: BLE001
            log.warning("time-based rules failed for a plan", extra={"error_type": type(e).__name__})
            tx.postpone_check(plan_id, now + RECHECK_AFTER_FAILURE)

    # -- the inbox ----------------------------------------------------------------------

    def inbox(self, recipient: str, status: PromptStatus | str = PromptStatus.OPEN, limit: int = 200
              ) -> list[Prompt]:
        """The recipient's prompts in one status, or in any (``"all"``)."""
        statuses = tuple(PromptStatus) if status == ALL else (PromptStatus(status),)
        with self.store.transaction() as tx:
            return tx.inbox(recipient, statuses, limit)

    def prompt_for(self, prompt_id: str, recipient: str) -> Prompt:
        with self.store.transaction() as tx:
            prompt = tx.prompt(prompt_id)
        if prompt is None or prompt.recipient != recipient:
            raise PromptNotFound(prompt_id)  # another coordinator's prompt does not exist for you
        return prompt

    def plan_view(self, prompt: Prompt) -> PlanView | None:
        """What this service knows of the prompt's plan (for its page), None if nothing."""
        with self.store.transaction() as tx:
            data = tx.load_view(prompt.plan_id)
        return PlanView.from_json(data) if data is not None else None

    def acknowledge(self, prompt_id: str, recipient: str) -> Prompt:
        with self.store.transaction() as tx:
            prompt = tx.prompt(prompt_id)
            if prompt is None or prompt.recipient != recipient:
                raise PromptNotFound(prompt_id)
            if prompt.status == PromptStatus.RESOLVED:
                raise PromptClosed(prompt_id)
            if prompt.status == PromptStatus.OPEN:
                tx.acknowledge(prompt_id, self.clock.now())
            return tx.prompt(prompt_id) or prompt  # (it is there: read in this transaction)


def _decode(raw: Any) -> IntegrationEvent:
    """bytes (Kafka), text (a dead letter's payload) or a JSON object (the feed) -> an event."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None
    try:
        data = json.loads(text) if text is not None else raw
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        event = decode_event(data)
    except (ValueError, ValidationError, UnknownEventType, TypeError, RecursionError) as e:
        raise Undecodable(_reason(e)) from None
    if event.plan_version > MAX_PLAN_VERSION:
        raise Undecodable(f"plan_version above {MAX_PLAN_VERSION}")
    return event


def _plan_and_version(raw: Any) -> tuple[str, int] | None:
    """The plan and version an event that does not decode says it belongs to, if it says so
    readably (a bad payload in a good envelope); None otherwise."""
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
        plan_id, version = str(uuid.UUID(str(data["plan_id"]))), data["plan_version"]
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_PLAN_VERSION:
        return None
    return plan_id, version


def _failure(error: Exception) -> str:
    """The dead letter's reason: the message of an expected error; only the type of a bug."""
    if isinstance(error, EXPECTED):
        return f"unprocessable: {_reason(error)}"
    return f"error: {type(error).__name__}"


def _rule_failed(rule: str, error: Exception) -> None:
    log.warning("a rule failed for a plan and was skipped", extra={"reason": rule, "error_type": type(error).__name__})


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return json.dumps(error.normalized_messages(), sort_keys=True)[:400]
    return f"{type(error).__name__}: {error}"[:400]
