"""PlanApplication: the use cases of plan-service over the event-sourced IndividualPlan."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, cast

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder

from careplan_shared.events import IntegrationEvent
from plan_service.application import integration, transcodings
from plan_service.application.committer import GroupCommitter
from plan_service.application.idempotency import IdempotencyRecord
from plan_service.domain.errors import DomainError, PlanNotFound
from plan_service.domain.event_types import COMMANDS
from plan_service.domain.patient_plans import PatientPlans
from plan_service.domain.person_plans import AS_COORDINATOR, AS_RELATIVE, PersonPlans
from plan_service.domain.plan import IndividualPlan, event_type


class VersionMismatch(Exception):
    """If-Match named a version that is not the plan's current one (-> 412)."""

    def __init__(self, current: int):
        super().__init__(f"the plan is at version {current}")
        self.current = current


class ConcurrentWrite(Exception):
    """Another writer changed the plan between our read and our write (-> 409)."""


class _IndexConflict(Exception):
    """The write collided with another on an index (or on the plan: told apart by the caller)."""

    def __init__(self, plan_version: int):
        super().__init__("concurrent write")
        self.plan_version = plan_version


INDEX_RETRIES = 3


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was first used for a different request (-> 422)."""


class EventRejected(Exception):
    """One event of a posted list broke a rule; nothing of the list was stored."""

    in_list = False  # set by the API: the events were posted as a JSON list

    def __init__(self, index: int, error: DomainError):
        super().__init__(error.message)
        self.index = index
        self.error = error


@dataclass(frozen=True)
class Idempotency:
    caller: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Outcome:
    """What a write did: enough to answer the request again, byte for byte, on a replay."""

    plan_id: uuid.UUID
    version: int
    events: list[dict[str, Any]]
    created: bool
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"plan_id": str(self.plan_id), "version": self.version,
                "events": self.events, "created": self.created}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(uuid.UUID(data["plan_id"]), data["version"], data["events"], data["created"], True)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class PlanApplication(Application):
    name = "PlanService"
    snapshotting_intervals = {IndividualPlan: 100}

    def __init__(self, env: dict[str, str] | None = None, *, write_batch_max: int = 64,
                 clock: Callable[[], datetime] = _now):
        super().__init__(env)
        self.committer = GroupCommitter(self.save, max_batch=write_batch_max)
        self.clock = clock

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcodings.register(transcoder)

    # -- writes -------------------------------------------------------------------------

    def open_plan(self, *, patient_id: str, service_level: str, actor: dict[str, str],
                  age_band: str | None = None, birth_date: date | None = None,
                  occurred_at: datetime | None = None,
                  idempotency: Idempotency | None = None) -> Outcome:
        if idempotency and (replay := self._replay(idempotency)):
            return replay
        index = self._patient_plans(patient_id) or PatientPlans.start(patient_id)
        try:
            plan = IndividualPlan.open(
                patient_id=patient_id, service_level=service_level, age_band=age_band,
                birth_date=birth_date, recorded_by=actor, occurred_at=occurred_at or self.clock(),
            )
            index.opened(plan.id)
        except DomainError as e:
            raise EventRejected(0, e) from None
        try:
            return self._commit(plan, index, created=True, idempotency=idempotency)
        except ConcurrentWrite:
            # Most likely another plan for this patient was opened at the same moment.
            current = self._patient_plans(patient_id)
            if current is not None and current.open_plan_id is not None:
                try:
                    current.opened(plan.id)
                except DomainError as e:
                    raise EventRejected(0, e) from None
            raise

    def record(self, plan_id: uuid.UUID, items: list[tuple[str, dict[str, Any]]], *,
               actor: dict[str, str], expected_version: int | None = None,
               idempotency: Idempotency | None = None, plan: IndividualPlan | None = None) -> Outcome:
        """Append one or more events to a plan, all or none. ``plan``: the plan as just read
        (e.g. for the access check), to save loading it again; it is copied, never changed.

        The indexes an event changes (PatientPlans on closing, PersonPlans when a relative is
        added or a coordinator assigned) are saved in the same atomic write. Another plan's
        write to the same person's index at the same moment is not a conflict of this plan:
        the write is decided again on the plan as it is (it has not moved), a few times."""
        for attempt in range(INDEX_RETRIES + 1):
            try:
                return self._record_once(plan_id, items, actor=actor, expected_version=expected_version,
                                         idempotency=idempotency, plan=plan)
            except _IndexConflict as conflict:
                if attempt == INDEX_RETRIES or self._load(plan_id, copy=False).version != conflict.plan_version:
                    raise ConcurrentWrite() from None
                plan = None  # load it again, with the indexes as they are now
        raise AssertionError("unreachable")

    def _record_once(self, plan_id: uuid.UUID, items: list[tuple[str, dict[str, Any]]], *,
                     actor: dict[str, str], expected_version: int | None,
                     idempotency: Idempotency | None, plan: IndividualPlan | None) -> Outcome:
        if idempotency and (replay := self._replay(idempotency)):
            return replay
        plan = copy.deepcopy(plan) if plan is not None else self._load(plan_id)
        if expected_version is not None and plan.version != expected_version:
            raise VersionMismatch(plan.version)
        read_version = plan.version
        coordinator_before = plan.coordinator["coordinator_id"] if plan.coordinator else None
        for index, (type_, fields) in enumerate(items):
            fields = dict(fields)
            meta = {"recorded_by": actor, "occurred_at": fields.pop("occurred_at", None) or self.clock()}
            try:
                COMMANDS[type_](plan, **fields, **meta)
            except DomainError as e:
                raise EventRejected(index, e) from None
        others: list[Any] = []
        if plan.closed is not None and any(isinstance(e, IndividualPlan.PlanClosed) for e in plan.pending_events):
            patient_plans = self._patient_plans(plan.patient_id)
            if patient_plans is not None and patient_plans.open_plan_id == plan.id:
                patient_plans.closed(plan.id)
                others.append(patient_plans)
        others.extend(self._person_plans_changed(plan, coordinator_before))
        try:
            return self._commit(plan, *others, created=False, idempotency=idempotency)
        except ConcurrentWrite:
            if others:
                raise _IndexConflict(read_version) from None
            raise

    def _person_plans_changed(self, plan: IndividualPlan, coordinator_before: str | None) -> list[PersonPlans]:
        """The PersonPlans indexes the plan's pending events change (relatives added,
        coordinators assigned or replaced), changed."""
        changed: dict[str, PersonPlans] = {}

        def index_of(person: str, create: bool) -> PersonPlans | None:
            found = changed.get(person) or self._person_plans(person)
            if found is None and create:
                found = PersonPlans.start(person)
            return found

        coordinator = coordinator_before
        for event in plan.pending_events:
            if isinstance(event, IndividualPlan.CoordinatorAssigned):
                if coordinator is not None and coordinator != event.coordinator_id:
                    previous = index_of(coordinator, create=False)
                    if previous is not None and previous.left(plan.id, AS_COORDINATOR):
                        changed[coordinator] = previous
                new = index_of(event.coordinator_id, create=True)
                assert new is not None  # create=True
                if new.joined(plan.id, AS_COORDINATOR):
                    changed[event.coordinator_id] = new
                coordinator = event.coordinator_id
            elif isinstance(event, IndividualPlan.ParticipantAdded) and event.kind == AS_RELATIVE:
                relative = index_of(event.participant_id, create=True)
                assert relative is not None
                if relative.joined(plan.id, AS_RELATIVE):
                    changed[event.participant_id] = relative
        return list(changed.values())

    def _patient_plans(self, patient_id: str) -> PatientPlans | None:
        """The patient's plan index; None for a patient whose plans predate it (or who has none)."""
        try:
            return self.repository.get(PatientPlans.id_for(patient_id))
        except AggregateNotFoundError:
            return None

    def _person_plans(self, person_id: str) -> PersonPlans | None:
        try:
            return self.repository.get(PersonPlans.id_for(person_id))
        except AggregateNotFoundError:
            return None

    def _commit(self, plan: IndividualPlan, *others: Any, created: bool,
                idempotency: Idempotency | None) -> Outcome:
        outcome = Outcome(
            plan.id, plan.version,
            [integration.event_ref(cast(IndividualPlan.Event, e)) for e in plan.pending_events], created,
        )
        objs: list[Any] = [plan, *others]
        if idempotency:
            objs.append(IdempotencyRecord.create(
                idempotency.caller, idempotency.key, idempotency.fingerprint, outcome.as_dict()))
        try:
            self.committer.save(*objs)
        except IntegrityError:
            # Either the plan moved on under us, or the same key raced in: tell them apart.
            if idempotency and (replay := self._replay(idempotency)):
                return replay
            raise ConcurrentWrite() from None
        return outcome

    def _replay(self, idempotency: Idempotency) -> Outcome | None:
        try:
            record: IdempotencyRecord = self.repository.get(IdempotencyRecord.id_for(idempotency.caller, idempotency.key))
        except AggregateNotFoundError:
            return None
        if record.fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReused()
        return Outcome.from_dict(record.outcome)

    # -- reads --------------------------------------------------------------------------

    def _load(self, plan_id: uuid.UUID, version: int | None = None, copy: bool = True) -> IndividualPlan:
        try:
            plan: object = self.repository.get(plan_id, version=version, deepcopy_from_cache=copy)
        except AggregateNotFoundError:
            raise PlanNotFound(plan_id) from None
        if not isinstance(plan, IndividualPlan):
            raise PlanNotFound(plan_id)
        return plan

    def open_plan_of(self, patient_id: str) -> uuid.UUID | None:
        """The patient's open plan (the PatientPlans index), if any."""
        index = self._patient_plans(patient_id)
        return index.open_plan_id if index is not None else None

    def plans_of(self, person_id: str) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """The plans the person was added to as a relative, and those they coordinate (the
        PersonPlans index: where they were put; the policy says what they may see now)."""
        index = self._person_plans(person_id)
        if index is None:
            return [], []
        return index.as_relative(), index.as_coordinator()

    def get_plan(self, plan_id: uuid.UUID, as_of: datetime | None = None) -> IndividualPlan:
        """For reading only: the cached plan itself, not a copy (commands go through ``record``)."""
        if as_of is None:
            return self._load(plan_id, copy=False)
        return self._load(plan_id, version=self.version_at(plan_id, as_of))

    def version_at(self, plan_id: uuid.UUID, as_of: datetime) -> int:
        """The plan's version as recorded at ``as_of`` (recording time, not clinical time)."""
        before: int | None = None
        while True:
            page = cast(list[IndividualPlan.Event], list(self.events.get(plan_id, desc=True, lte=before, limit=500)))
            if not page:
                raise PlanNotFound(plan_id)
            for event in page:
                if event.timestamp <= as_of:
                    return event.originator_version
            before = page[-1].originator_version - 1
            if before < 1:
                raise PlanNotFound(plan_id)

    def timeline(self, plan_id: uuid.UUID, *, before: int | None = None, limit: int = 50,
                 visible: Callable[[str], bool] | None = None) -> tuple[list[IndividualPlan.Event], int | None]:
        """Newest first; the second value is the cursor for the next page, if any. With a
        test on event types (a relative's consented sections), pages are filled from older
        events."""
        lte = before - 1 if before is not None else None
        chosen: list[IndividualPlan.Event] = []
        while True:
            events = cast(list[IndividualPlan.Event], list(self.events.get(plan_id, desc=True, lte=lte, limit=limit + 1)))
            if not events and before is None and lte is None:
                raise PlanNotFound(plan_id)
            for event in events:
                if visible is None or visible(event_type(event)):
                    chosen.append(event)
                    if len(chosen) > limit:
                        break
            if len(chosen) > limit or len(events) <= limit:
                break
            lte = events[-1].originator_version - 1
        more = len(chosen) > limit
        chosen = chosen[:limit]
        return chosen, (chosen[-1].originator_version if more and chosen else None)

    def integration_events(self, after: int, limit: int) -> list[IntegrationEvent]:
        """Integration events after a log position, in log order."""
        notifications = self.recorder.select_notifications(
            start=after + 1, limit=limit, topics=integration.PLAN_EVENT_TOPICS)
        return [
            integration.to_integration_event(cast(IndividualPlan.Event, self.mapper.to_domain_event(n)), n.id)
            for n in notifications
        ]

    def feed(self, after: int, limit: int) -> tuple[list[IntegrationEvent], int]:
        """Integration events after a position; and the log's last position."""
        return self.integration_events(after, limit), self.recorder.max_notification_id() or 0

    def plan_events(self, plan_id: uuid.UUID) -> Iterable[IndividualPlan.Event]:
        return cast(Iterable[IndividualPlan.Event], self.events.get(plan_id))


__all__ = [
    "ConcurrentWrite", "EventRejected", "Idempotency", "IdempotencyKeyReused", "Outcome",
    "PlanApplication", "VersionMismatch", "event_type",
]
