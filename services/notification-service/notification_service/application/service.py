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
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Protocol

from marshmallow import ValidationError

from careplan_shared.events import IntegrationEvent, UnknownEventType, decode_event
from notification_service.application.decoding import fast_decode, parse_json
from notification_service.application.ports import PromptStore, StoreTransaction
from notification_service.domain.dead_letters import DeadLetter, DeadLetterStatus, OpenDeadLetter
from notification_service.domain.deliveries import DeliveryKind
from notification_service.domain.errors import StoreUnreadable
from notification_service.domain.prompts import Prompt, PromptStatus, Reason, reassigned
from notification_service.domain.records import Record
from notification_service.domain.rules import Settings, desired_prompts, next_check, recipient_for
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


# Enum members read once for the per-event paths (a member looked up on its class is slow in 3.11).
_OPEN, _RESOLVED, _NEW = PromptStatus.OPEN, PromptStatus.RESOLVED, DeliveryKind.NEW
_PROCESSED = OutcomeStatus.PROCESSED


class _Failed(Exception):
    """A run of records failed: at ``index`` (that record's processing), or None (storing)."""

    def __init__(self, index: int | None):
        super().__init__(index)
        self.index = index


_APPLY, _LATE, _SKIP = "apply", "late", "skip"  # what changed a view (see _Work.rebuild)


class _Work:
    """What one transaction reads and writes for a run of events (a fetched batch, one event,
    one plan's turn of the clock): each plan's view and prompts are read once (in bulk for the
    plans known up front), kept in memory while the events are applied in order, and written
    once, in bulk, by ``Notifications._flush``. Nothing here is stored until then.

    No copy of a view is made before each event: if an event fails halfway through its view,
    ``rebuild`` makes the view again from the stored state and the changes this work already
    applied to it, which are deterministic and succeed again."""

    def __init__(self, tx: StoreTransaction, now: datetime):
        self.tx, self.now = tx, now
        self._stored: dict[str, dict[str, Any] | None] = {}  # as read (None: no view stored yet)
        self._prompts: dict[str, dict[tuple[Reason, str], Prompt]] = {}  # plan -> (rule, subject) -> prompt
        self._changes: dict[str, list[tuple[str, Any]]] = {}  # plan -> what changed its view, in order
        self.views: dict[str, PlanView] = {}
        self.touched: dict[str, PlanView] = {}  # views to save
        self.created: dict[str, Prompt] = {}  # new prompts by id, written as they are at the end
        self.resolved: list[str] = []  # stored prompts resolved
        self.recipients: dict[str, str | None] = {}  # stored prompts' new recipients
        self.histories: dict[str, list[dict[str, Any]]] = {}  # stored prompts' new histories
        self.details: dict[str, dict[str, Any]] = {}  # stored prompts' new details

    def preload(self, plan_ids: Collection[str]) -> None:
        """Read these plans' views and prompts, in one query each."""
        missing = [plan_id for plan_id in plan_ids if plan_id not in self._stored]
        if not missing:
            return
        views = self.tx.load_views(missing)
        prompts = self.tx.prompts_of_plans(missing)
        for plan_id in missing:
            self._stored[plan_id] = views.get(plan_id)
            self._prompts[plan_id] = {(p.rule, p.subject): p for p in prompts.get(plan_id, ())}

    def stored(self, plan_id: str) -> bool:
        return self._stored.get(plan_id) is not None

    def view(self, plan_id: str) -> PlanView:
        view = self.views.get(plan_id)
        if view is None:
            self.preload([plan_id])
            view = self.views[plan_id] = self._as_stored(plan_id)
        return view

    def _as_stored(self, plan_id: str) -> PlanView:
        state = self._stored[plan_id]
        return PlanView.from_json(state) if state is not None else PlanView(plan_id)

    def applied(self, plan_id: str, how: str, what: Any) -> None:
        self._changes.setdefault(plan_id, []).append((how, what))

    def skip(self, view: PlanView, version: int) -> None:
        skip(view, version)
        self.applied(view.plan_id, _SKIP, version)
        self.touch(view)

    def rebuild(self, plan_id: str) -> PlanView:
        """The plan's view as it was before the change that just failed halfway."""
        view = self._as_stored(plan_id)
        for how, what in self._changes.get(plan_id, ()):
            if how == _APPLY:
                apply(view, what)
            elif how == _LATE:
                apply_late(view, what)
            else:
                skip(view, what)
        self.views[plan_id] = view
        if plan_id in self.touched:
            self.touched[plan_id] = view
        return view

    def touch(self, view: PlanView) -> None:
        self.touched[view.plan_id] = view

    def prompts_of(self, plan_id: str) -> dict[tuple[Reason, str], Prompt]:
        self.preload([plan_id])
        return self._prompts[plan_id]

    def insert(self, prompt: Prompt) -> None:
        self.prompts_of(prompt.plan_id)[(prompt.rule, prompt.subject)] = prompt
        self.created[prompt.id] = prompt

    def resolve(self, prompt: Prompt) -> None:
        prompt.status, prompt.resolved_at = _RESOLVED, self.now
        if prompt.id not in self.created:
            self.resolved.append(prompt.id)

    def set_recipient(self, prompt: Prompt, recipient: str | None) -> None:
        """Move the prompt to another recipient; the move goes into its history."""
        prompt.history = [*prompt.history, reassigned(self.now, prompt.recipient, recipient)]
        prompt.recipient = recipient
        if prompt.id not in self.created:
            self.recipients[prompt.id] = recipient
            self.histories[prompt.id] = prompt.history

    def set_details(self, prompt: Prompt, details: dict[str, Any]) -> None:
        prompt.details = details
        if prompt.id not in self.created:
            self.details[prompt.id] = details


# Outcomes are values (frozen): the common ones are made once.
_DUPLICATE_OUTCOME = Outcome(OutcomeStatus.DUPLICATE)
_DEAD_LETTER_OUTCOME = Outcome(OutcomeStatus.DEAD_LETTER)
_PROCESSED_OUTCOMES = {(created, resolved): Outcome(OutcomeStatus.PROCESSED, created, resolved)
                       for created in range(4) for resolved in range(4)}


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
                work = _Work(tx, now)
                outcome = self._apply(work, source, part, position, raw, _decoded(raw))
                self._flush(work)
                tx.set_position(source, part, position)
        except self._fatal():
            raise
        except Exception as e:  # noqa: BLE001
            log.error("event processing failed", extra={"error_type": type(e).__name__, "position": position})
            outcome = self._isolate(source, part, position, raw, now, f"error: {type(e).__name__}")
        self.processed += 1
        return outcome

    def handle_batch(self, source: str, records: list[Record]) -> list[Outcome]:
        """Many events in one transaction, with the same effects as one by one: the batch is
        decoded first, its plans' views and prompts are read in one go, the events are applied
        in memory in order, and everything is written at the end in a few bulk statements,
        with the positions, in the same transaction.

        An event that fails unexpectedly (a bug, not bad input: that is dead-lettered in line)
        rolls the transaction back; the events before it are then stored as one run, the event
        itself alone (``handle``: dead-lettered if it fails again) and the batch goes on after
        it. A failure while writing, which no single event can be blamed for: one by one."""
        now = self.clock.now()
        decoded = [_decoded(r.raw) for r in records]  # pure: no store, nothing to undo
        outcomes: list[Outcome] = []
        start = 0
        while start < len(records):
            try:
                outcomes += self._run(source, records, decoded, start, len(records), now)
                break
            except _Failed as failure:
                at = failure.index
            if at is None:
                outcomes += [self.handle(source, r.part, r.position, r.raw) for r in records[start:]]
                break
            if at > start:
                try:
                    outcomes += self._run(source, records, decoded, start, at, now)
                except _Failed:
                    outcomes += [self.handle(source, r.part, r.position, r.raw) for r in records[start:at]]
            r = records[at]
            outcomes.append(self.handle(source, r.part, r.position, r.raw))
            start = at + 1
        return outcomes

    def _run(self, source: str, records: list[Record], decoded: list[Any], start: int, end: int,
             now: datetime) -> list[Outcome]:
        """records[start:end] in one transaction; _Failed(index) if one of them failed (nothing
        kept), _Failed(None) if storing them failed."""
        outcomes: list[Outcome] = []
        try:
            with self.store.transaction() as tx:
                done = tx.positions(source)
                moved: dict[int, int] = {}
                work = _Work(tx, now)
                plans = [_plan_of(d) for d in decoded[start:end]]
                work.preload({plan for plan in plans if plan is not None})
                for index in range(start, end):
                    r = records[index]
                    if r.position <= done.get(r.part, -1):
                        outcomes.append(_DUPLICATE_OUTCOME)
                        continue
                    try:
                        outcomes.append(self._apply(work, source, r.part, r.position, r.raw, decoded[index],
                                                    plans[index - start]))
                    except self._fatal():
                        raise
                    except Exception as e:  # noqa: BLE001 - this record's: the caller isolates it
                        raise _Failed(index) from e
                    done[r.part] = moved[r.part] = r.position
                self._flush(work)
                tx.set_positions(source, moved)
        except _Failed:
            raise
        except self._fatal():
            raise
        except Exception as e:  # noqa: BLE001 - writing (or committing) failed: no record to blame
            log.warning("storing a batch failed; one by one", extra={"error_type": type(e).__name__})
            raise _Failed(None) from e
        self.processed += end - start
        return outcomes

    def _fatal(self) -> tuple[type[Exception], ...]:
        return (StoreUnreadable, *getattr(self.store, "transient_errors", ()))

    def _apply(self, work: _Work, source: str, part: int, position: int, raw: Any, decoded: Any,
               plan_id: str | None = None) -> Outcome:
        """One event onto its plan's view in ``work``; its prompts reconciled (in ``work``).
        ``plan_id``: str(event.plan_id) if the caller has it already."""
        tx, now = work.tx, work.now
        if isinstance(decoded, Undecodable):
            outcome = self._dead(tx, source, part, position, None, f"undecodable: {decoded}", raw, now)
            where = _plan_and_version(raw)
            if where is not None:  # its plan moves past it too: its next events are not "out of order"
                view = work.view(where[0])
                if where[1] > view.version:
                    work.skip(view, where[1])
            return outcome
        if isinstance(decoded, Exception):
            raise decoded  # decoding failed unexpectedly (a bug): isolated like any other failure
        event: IntegrationEvent = decoded
        plan_id = plan_id or str(event.plan_id)
        view = work.view(plan_id)
        if is_redelivery(view, event):
            return _DUPLICATE_OUTCOME
        late = is_late(view, event)  # skipped earlier; here again (a re-sent copy): apply it now
        try:
            apply_late(view, event) if late else apply(view, event)
        except Exception as e:  # noqa: BLE001 - any failure: this event only, never its plan
            view = work.rebuild(plan_id)  # the view may be half-changed: as it was before this event
            if not late:
                work.skip(view, event.plan_version)
            self._dead(tx, source, part, position, str(event.event_id), _failure(e), raw, now)
            self._reconcile(work, view)
            return _DEAD_LETTER_OUTCOME
        work.applied(plan_id, _LATE if late else _APPLY, event)
        if late:
            tx.resolve_dead_letters_of_event(str(event.event_id), now)
        created, resolved = self._reconcile(work, view)
        return _PROCESSED_OUTCOMES.get((created, resolved)) or Outcome(_PROCESSED, created, resolved)

    def _flush(self, work: _Work) -> None:
        """Write what ``work`` changed: views, new prompts, changed prompts, deliveries."""
        tx, now = work.tx, work.now
        tx.save_views([(view.plan_id, view.version, view.to_json(), self._next_check(view, now))
                       for view in work.touched.values()])
        tx.insert_prompts(list(work.created.values()))
        tx.resolve_prompts(work.resolved, now)
        tx.set_recipients(list(work.recipients.items()))
        if work.histories:
            tx.set_histories(list(work.histories.items()))
        tx.set_details_of(list(work.details.items()))
        tx.enqueue_deliveries([(prompt_id, channel, _NEW) for prompt_id in work.created
                               for channel in self.channels], now)

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
                    work = _Work(tx, now)
                    view = work.view(str(event.plan_id))
                    if not view.reflects(event.plan_version) and not is_late(view, event):
                        work.skip(view, event.plan_version)
                        self._flush(work)
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
                    work = _Work(tx, now)
                    reason = self._retry(work, letter)
                    if reason is None:
                        tx.resolve_dead_letter(letter["id"], now)
                    else:
                        tx.dead_letter_failed(letter["id"], reason)
                    self._flush(work)
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

    def _retry(self, work: _Work, letter: OpenDeadLetter) -> str | None:
        """None when the letter's event is now in its plan's view; else why not."""
        try:
            event = _decode(letter["payload"])
        except Undecodable as e:
            return f"undecodable: {e}"
        view = work.view(str(event.plan_id))
        if view.reflects(event.plan_version):
            return None  # a re-sent copy was applied meanwhile: nothing to do twice
        try:
            apply_late(view, event)  # the version check is not the gate: the view moved past it
        except Exception as e:  # noqa: BLE001 - nothing of the half-changed view is saved (not touched)
            return _failure(e)
        self._reconcile(work, view)
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

    def _next_check(self, view: PlanView, now: datetime) -> datetime | None:
        try:
            return next_check(view, now, self.settings)
        except Exception as e:  # noqa: BLE001 - look again tomorrow rather than lose the update
            log.warning("next check failed", extra={"error_type": type(e).__name__})
            return now + RECHECK_AFTER_FAILURE

    def _reconcile(self, work: _Work, view: PlanView) -> tuple[int, int]:
        """Make the plan's prompts (in ``work``) what the rules want now; the view is saved
        when ``work`` is flushed."""
        now = work.now
        failed: set[str] = set()

        def rule_failed(rule: str, error: Exception) -> None:
            failed.add(rule)
            _rule_failed(rule, error)

        wanted = {(p.rule, p.subject): p for p in desired_prompts(view, now, self.settings, rule_failed)}
        existing = dict(work.prompts_of(view.plan_id))  # as they were before this reconciliation
        created = resolved = 0
        for key, spec in wanted.items():
            if key in existing:
                continue  # once created, never again: not after an ack, not after a restart
            work.insert(Prompt(_new_id(), view.plan_id, spec.rule, spec.subject,
                               recipient_for(view, spec.rule, self.settings),
                               _OPEN, spec.due_at, spec.escalate_at, None, now, None, None, spec.details))
            created += 1
        for key, prompt in existing.items():
            recipient = recipient_for(view, prompt.rule, self.settings)
            if prompt.recipient != recipient:
                # Every prompt of the plan, whatever its status, is the current coordinator's: a
                # former one no longer reads the plan's wishes and strategy in their inbox. The
                # move is in the prompt's history (who from, who to, when).
                work.set_recipient(prompt, recipient)
            if prompt.status != _OPEN:
                continue
            if key not in wanted:
                if prompt.rule in failed:
                    continue  # the rule could not say this time: an open prompt is kept, not resolved
                work.resolve(prompt)
                resolved += 1
            elif prompt.details != wanted[key].details:  # e.g. a late event filled in the strategy
                work.set_details(prompt, wanted[key].details)
        work.touch(view)
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
                tx.enqueue_deliveries([(prompt.id, channel, DeliveryKind.ESCALATED) for channel in self.channels], now)
                escalated += 1
        return {"checked": checked, "escalated": escalated}

    def _tick_one(self, tx: StoreTransaction, plan_id: str, now: datetime) -> None:
        """One plan's turn; a plan whose view cannot be read does not stop the others."""
        try:
            with tx.savepoint():  # its failure undoes this plan's part only (PostgreSQL too)
                work = _Work(tx, now)
                work.preload([plan_id])
                assert work.stored(plan_id)  # views_due lists stored views only
                self._reconcile(work, work.view(plan_id))
                self._flush(work)
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


def _new_id() -> str:
    return uuid.uuid4().hex




def _decoded(raw: Any) -> Any:
    """The event, the Undecodable error, or any other error decoding raised (a bug: re-raised
    where the event is applied, so that it is isolated like any failure of that event)."""
    try:
        return _decode(raw)
    except Exception as e:  # noqa: BLE001 - kept, not swallowed: see above
        return e


def _plan_of(decoded: Any) -> str | None:
    return str(decoded.plan_id) if isinstance(decoded, IntegrationEvent) else None


def _decode(raw: Any) -> IntegrationEvent:
    """bytes (Kafka), text (a dead letter's payload) or a JSON object (the feed) -> an event.
    The fast path (decoding.py) first; where it is not certain, decode_event decides."""
    data = parse_json(raw) if isinstance(raw, bytes | str) else raw
    event = fast_decode(data) if data is not None else None
    if event is not None and event.plan_version <= MAX_PLAN_VERSION:
        return event
    return _decode_checked(raw)


def _decode_checked(raw: Any) -> IntegrationEvent:
    """json and decode_event (marshmallow): the authority on what an event is, and on why not."""
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
