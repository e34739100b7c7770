"""The individual plan (individuell plan) as an event-sourced aggregate.

Each public method is a use of the plan: it checks the rules against the current state and
only then triggers its event. Events say what happened (past tense) and carry who recorded
it (``recorded_by``) and when it happened clinically (``occurred_at``); the library stamps
the recording time (``timestamp``) itself.

Every class has an explicit, stable TOPIC: stored events name these strings, never the
Python module path, so moving or renaming a class cannot orphan a stored event.

Copy on write: a version of the plan, once made, is never changed. A command works on
``copy.copy(plan)`` (a new object sharing every container of the old one), and every
``apply`` REPLACES each container it changes with a new one (``_put``, ``_without``,
``_appended``) and each value object it changes with a new one (``dataclasses.replace``); it
never mutates a container or value object in place. So the cached plan is never touched by a
command, a rejected command leaves it as it was, and a reader holding a version sees exactly
that version. tests/unit/test_plan_copy.py fails on any in-place change, for every registered
event type.

The sections keyed by id (goals, information, participants, ...) are persistent maps that
keep the order entries were added in, as a dict does (``OrderedPMap``: pyrsistent's ``PMap``
for the entries and a ``PVector`` for the order; equal to a dict with the same items): a new
version with one entry set shares the rest with the old one, so a command costs the same
whatever the plan's length (a dict copied per event cost 60 us at 5,000 entries and 1.7 ms at
50,000; a set here a few microseconds at any size). The order is what readers see (goals,
participants, ... in the order they were recorded): a bare ``PMap`` iterates in hash order,
which differs from process to process. A plan loaded from a snapshot holds plain dicts until
an event changes them (``_put`` turns a dict into an OrderedPMap once, in its order);
snapshots store plain dicts (``plain_state``), so their stored form is what it always was.
The short lists (what matters, service levels) are copied whole when they grow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, ClassVar, TypeVar

from eventsourcing.domain import Aggregate
from pyrsistent import PMap, PVector, pmap, pvector

from plan_service.domain.errors import Conflict, Forbidden, Invalid
from plan_service.domain.values import (
    AGE_BANDS,
    CONSENT_GIVEN_HOW,
    CONSENT_SCOPES,
    Consent,
    Evaluation,
    EvaluationStatus,
    Goal,
    GoalStatus,
    InformationRecord,
    MeetingStatus,
    Participant,
    TriangleMeeting,
    WhatMatters,
    age_band_for,
)

Actor = dict[str, str]  # {"role": ..., "id": ...[, "via": integration account]}

# No clinical or scheduled time of a plan lies before this (a typo such as year 0001 or 278
# would otherwise travel to every consumer of the plan's events).
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
# A scheduled time or a consent's start may lie this much before the plan was opened (the
# same day, in any time zone), no more.
OPENING_TOLERANCE = timedelta(days=1)
# A meeting or evaluation can be recorded as held (or missed) this much before its
# scheduled time (it started a little early), not earlier.
HELD_TOLERANCE = timedelta(hours=1)


def _topic(name: str) -> str:
    return f"careplan.IndividualPlan.{name}"


K = TypeVar("K")
V = TypeVar("V")


class OrderedPMap(Mapping[K, V]):
    """An immutable mapping that iterates in insertion order, as a dict does; ``set`` and
    ``discard`` return a new one sharing the rest (``discard`` copies the order: it is rare,
    a participant removed)."""

    __slots__ = ("_entries", "_order")

    def __init__(self, entries: PMap[K, V] | None = None, order: PVector[K] | None = None):
        self._entries: PMap[K, V] = entries if entries is not None else pmap()
        self._order: PVector[K] = order if order is not None else pvector()

    @classmethod
    def of(cls, items: Iterable[tuple[K, V]]) -> OrderedPMap[K, V]:
        entries = dict(items)
        return cls(pmap(entries), pvector(entries))

    def __getitem__(self, key: K) -> V:
        return self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"OrderedPMap({dict(self.items())!r})"

    def set(self, key: K, value: V) -> OrderedPMap[K, V]:
        order = self._order if key in self._entries else self._order.append(key)
        return OrderedPMap(self._entries.set(key, value), order)

    def discard(self, key: K) -> OrderedPMap[K, V]:
        if key not in self._entries:
            return self
        return OrderedPMap(self._entries.discard(key), pvector(k for k in self._order if k != key))


def _persistent(mapping: Mapping[K, V]) -> OrderedPMap[K, V]:
    return mapping if isinstance(mapping, OrderedPMap) else OrderedPMap.of(mapping.items())


def _put(mapping: Mapping[K, V], key: K, value: V) -> OrderedPMap[K, V]:
    """A new map: ``mapping`` with ``key`` set to ``value``, sharing the rest (``mapping`` is
    left as it is)."""
    return _persistent(mapping).set(key, value)


def _without(mapping: Mapping[K, V], key: K) -> OrderedPMap[K, V]:
    """A new map: ``mapping`` without ``key`` (``mapping`` is left as it is)."""
    return _persistent(mapping).discard(key)


def plain_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """An aggregate's state (``vars``, a snapshot's ``state``) with its persistent maps as
    plain dicts, in their order: what a snapshot stores (JSON, as it always has)."""
    return {name: dict(value) if isinstance(value, OrderedPMap) else value for name, value in state.items()}


def _appended(sequence: Sequence[V], value: V) -> list[V]:
    """A new list: ``sequence`` and then ``value`` (``sequence`` is left as it is)."""
    return [*sequence, value]


class IndividualPlan(Aggregate):
    TOPIC = "careplan.IndividualPlan"

    class Event(Aggregate.Event):
        TOPIC: ClassVar[str]  # set on every event class (see the module's docstring)
        recorded_by: Actor
        occurred_at: datetime

    class Created(Event, Aggregate.Created):
        TOPIC = _topic("Created")

    # -- events -----------------------------------------------------------------------

    class PlanOpened(Created):
        TOPIC = _topic("PlanOpened")
        patient_id: str
        service_level: str
        age_band: str | None
        birth_date: date | None

    class CoordinatorAssigned(Event):
        TOPIC = _topic("CoordinatorAssigned")
        coordinator_id: str
        name: str | None
        service_level: str | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.coordinator = {
                "coordinator_id": self.coordinator_id,
                "name": self.name,
                "service_level": self.service_level,
            }
            if self.service_level:
                plan._involve(self.service_level)

    class WhatMattersRecorded(Event):
        TOPIC = _topic("WhatMattersRecorded")
        text: str
        language: str

        def apply(self, plan: IndividualPlan) -> None:
            plan.what_matters = _appended(plan.what_matters, WhatMatters(self.text, self.language, self.occurred_at))

    class GoalSet(Event):
        TOPIC = _topic("GoalSet")
        goal_id: str
        text: str
        expressed_by: str
        target_date: date | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.goals = _put(plan.goals, self.goal_id, Goal(
                self.goal_id, self.text, self.expressed_by, self.target_date, set_at=self.occurred_at
            ))

    class GoalRevised(Event):
        TOPIC = _topic("GoalRevised")
        goal_id: str
        text: str | None
        target_date: date | None
        reason: str | None

        def apply(self, plan: IndividualPlan) -> None:
            goal = plan.goals[self.goal_id]
            plan.goals = _put(plan.goals, self.goal_id, replace(
                goal,
                text=self.text if self.text is not None else goal.text,
                target_date=self.target_date if self.target_date is not None else goal.target_date,
                revisions=goal.revisions + 1,
            ))

    class GoalAchieved(Event):
        TOPIC = _topic("GoalAchieved")
        goal_id: str

        def apply(self, plan: IndividualPlan) -> None:
            plan.goals = _put(plan.goals, self.goal_id, replace(plan.goals[self.goal_id], status=GoalStatus.ACHIEVED))

    class GoalAbandoned(Event):
        TOPIC = _topic("GoalAbandoned")
        goal_id: str
        reason: str | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.goals = _put(plan.goals, self.goal_id, replace(
                plan.goals[self.goal_id], status=GoalStatus.ABANDONED, closed_reason=self.reason))

    class InformationGiven(Event):
        TOPIC = _topic("InformationGiven")
        information_id: str
        topic: str
        form: str
        description: str
        adapted_how: str | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.information = _put(plan.information, self.information_id, InformationRecord(
                self.information_id, self.topic, self.form, self.description,
                self.adapted_how, self.occurred_at,
            ))

    class ParticipantAdded(Event):
        TOPIC = _topic("ParticipantAdded")
        participant_id: str
        kind: str
        name: str | None
        relation: str | None
        service_level: str | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.participants = _put(plan.participants, self.participant_id, Participant(
                self.participant_id, self.kind, self.name, self.relation,
                self.service_level, self.occurred_at,
            ))
            if self.service_level:
                plan._involve(self.service_level)

    class ParticipantRemoved(Event):
        TOPIC = _topic("ParticipantRemoved")
        participant_id: str
        reason: str | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.participants = _without(plan.participants, self.participant_id)
            # A relative who is no longer in the plan keeps no access through an old consent.
            consent = plan.consents.get(self.participant_id)
            if consent and consent.withdrawn_at is None:
                plan.consents = _put(plan.consents, self.participant_id, replace(consent, withdrawn_at=self.occurred_at))

    class RelativeConsentGiven(Event):
        TOPIC = _topic("RelativeConsentGiven")
        relative_id: str
        scope: list[str]
        valid_from: datetime
        valid_until: datetime | None
        # How the patient gave it: "digital" (the patient recorded it), "oral" or "written"
        # (a clinician recorded what the patient said or signed). None in events stored
        # before this was recorded.
        given_how: str | None = None

        def apply(self, plan: IndividualPlan) -> None:
            plan.consents = _put(plan.consents, self.relative_id, Consent(
                self.relative_id, list(self.scope), self.valid_from, self.valid_until,
                self.occurred_at, given_how=self.given_how,
            ))

    class RelativeConsentWithdrawn(Event):
        TOPIC = _topic("RelativeConsentWithdrawn")
        relative_id: str

        def apply(self, plan: IndividualPlan) -> None:
            plan.consents = _put(plan.consents, self.relative_id,
                                 replace(plan.consents[self.relative_id], withdrawn_at=self.occurred_at))

    class EvaluationScheduled(Event):
        TOPIC = _topic("EvaluationScheduled")
        evaluation_id: str
        scheduled_for: datetime

        def apply(self, plan: IndividualPlan) -> None:
            plan.evaluations = _put(plan.evaluations, self.evaluation_id, Evaluation(self.evaluation_id, self.scheduled_for))

    class EvaluationHeld(Event):
        TOPIC = _topic("EvaluationHeld")
        evaluation_id: str
        participants: list[str]
        outcome: str
        patient_took_part: bool

        def apply(self, plan: IndividualPlan) -> None:
            plan.evaluations = _put(plan.evaluations, self.evaluation_id, replace(
                plan.evaluations[self.evaluation_id], status=EvaluationStatus.HELD, held_at=self.occurred_at,
                participants=list(self.participants), outcome=self.outcome,
                patient_took_part=self.patient_took_part,
            ))

    class TriangleMeetingRequested(Event):
        TOPIC = _topic("TriangleMeetingRequested")
        meeting_id: str
        requested_by: str | None
        reason: str | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.triangle_meetings = _put(plan.triangle_meetings, self.meeting_id, TriangleMeeting(
                self.meeting_id, MeetingStatus.REQUESTED, requested_by=self.requested_by
            ))

    class TriangleMeetingScheduled(Event):
        TOPIC = _topic("TriangleMeetingScheduled")
        meeting_id: str
        scheduled_for: datetime
        place: str
        transport: str | None
        companion: str | None
        no_show_strategy: str

        def apply(self, plan: IndividualPlan) -> None:
            meeting = plan.triangle_meetings.get(self.meeting_id) or TriangleMeeting(
                self.meeting_id, MeetingStatus.SCHEDULED)
            plan.triangle_meetings = _put(plan.triangle_meetings, self.meeting_id, replace(
                meeting, status=MeetingStatus.SCHEDULED, scheduled_for=self.scheduled_for, place=self.place,
                transport=self.transport, companion=self.companion, no_show_strategy=self.no_show_strategy,
            ))

    class TriangleMeetingHeld(Event):
        TOPIC = _topic("TriangleMeetingHeld")
        meeting_id: str
        outcome: str | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.triangle_meetings = _put(plan.triangle_meetings, self.meeting_id, replace(
                plan.triangle_meetings[self.meeting_id], status=MeetingStatus.HELD, outcome=self.outcome))

    class TriangleMeetingMissed(Event):
        TOPIC = _topic("TriangleMeetingMissed")
        meeting_id: str
        note: str | None

        def apply(self, plan: IndividualPlan) -> None:
            meeting = plan.triangle_meetings[self.meeting_id]
            plan.triangle_meetings = _put(plan.triangle_meetings, self.meeting_id, replace(
                meeting, status=MeetingStatus.MISSED, times_missed=meeting.times_missed + 1))

    class PlanClosed(Event):
        TOPIC = _topic("PlanClosed")
        reason: str
        note: str | None

        def apply(self, plan: IndividualPlan) -> None:
            plan.closed = {"reason": self.reason, "at": self.occurred_at}

    # -- construction -----------------------------------------------------------------

    def __init__(
        self,
        patient_id: str,
        service_level: str,
        age_band: str | None,
        birth_date: date | None,
        recorded_by: Actor,
        occurred_at: datetime,
    ):
        self.patient_id = patient_id
        self.opened_by = recorded_by.get("id")
        self.opened_at = occurred_at
        self.opened_service_level = service_level
        self.service_levels: list[str] = [service_level]
        self.age_band = age_band
        self.birth_date = birth_date
        self.coordinator: dict[str, Any] | None = None
        self.what_matters: list[WhatMatters] = []
        # Read-only maps: OrderedPMap, or a plain dict right after a load from a snapshot (see above).
        self.goals: Mapping[str, Goal] = OrderedPMap()
        self.information: Mapping[str, InformationRecord] = OrderedPMap()
        self.participants: Mapping[str, Participant] = OrderedPMap()
        self.consents: Mapping[str, Consent] = OrderedPMap()
        self.evaluations: Mapping[str, Evaluation] = OrderedPMap()
        self.triangle_meetings: Mapping[str, TriangleMeeting] = OrderedPMap()
        self.closed: dict[str, Any] | None = None

    @classmethod
    def open(
        cls,
        *,
        patient_id: str,
        service_level: str,
        recorded_by: Actor,
        occurred_at: datetime,
        age_band: str | None = None,
        birth_date: date | None = None,
    ) -> IndividualPlan:
        if age_band is None and birth_date is None:
            raise Invalid("give the patient's date of birth or age band", "age_band")
        if occurred_at < EARLIEST:
            raise Invalid(f"must not be before {EARLIEST.year}", "occurred_at")
        if birth_date is not None:
            if birth_date < EARLIEST.date():
                raise Invalid(f"must not be before {EARLIEST.year}", "birth_date")
            if birth_date > occurred_at.date():
                raise Invalid("date of birth is after the plan was opened", "birth_date")
            derived = age_band_for(birth_date, occurred_at.date())
            if age_band is not None and age_band != derived:
                raise Invalid(f"age band does not match date of birth ({derived})", "age_band")
            age_band = derived
        if age_band not in AGE_BANDS:
            raise Invalid("unknown age band", "age_band")
        return cls._create(
            cls.PlanOpened,
            patient_id=patient_id,
            service_level=service_level,
            age_band=age_band,
            birth_date=birth_date,
            recorded_by=recorded_by,
            occurred_at=occurred_at,
        )

    def __copy__(self) -> IndividualPlan:
        """The next version to work on: a new object sharing every container of this one (the
        cost does not grow with the plan), with no pending events. Commands on it leave this
        version as it is, because no ``apply`` changes a container in place (module docstring)."""
        clone = object.__new__(type(self))
        state = self.__dict__.copy()
        state["_pending_events"] = []
        clone.__dict__ = state
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> IndividualPlan:
        """A structural copy that shares nothing mutable, cheaper than generic deepcopy. Not on
        the write path (that is ``copy.copy``): for callers that want to change a copy in place.
        State is containers of value objects whose fields are immutable, apart from a few
        lists, which are copied too.
        """
        clone = object.__new__(type(self))
        state = self.__dict__.copy()
        for name, value in state.items():
            if isinstance(value, Mapping):  # an OrderedPMap becomes a dict (same order): the copy's own
                state[name] = {k: _copy_value(v) for k, v in value.items()}
            elif isinstance(value, list):
                state[name] = [_copy_value(v) for v in value]
        clone.__dict__ = state
        return clone

    # -- who is who in the plan (for the access policy, domain/policy.py) --------------

    def is_patient(self, who: str) -> bool:
        return self.patient_id == who

    def is_coordinator(self, who: str) -> bool:
        return bool(self.coordinator and self.coordinator["coordinator_id"] == who)

    def takes_part(self, who: str) -> bool:
        """A professional participant, the coordinator, or the clinician who opened the plan."""
        participant = self.participants.get(who)
        return ((participant is not None and participant.kind == "professional")
                or self.is_coordinator(who) or who == self.opened_by)

    def consented_sections(self, relative: str, at: datetime) -> frozenset[str]:
        """The sections a relative's consent covers at ``at`` (none once withdrawn, expired,
        or the relative no longer takes part)."""
        consent = self.consents.get(relative)
        participant = self.participants.get(relative)
        if consent is None or participant is None or participant.kind != "relative":
            return frozenset()
        return frozenset(s for s in consent.scope if consent.covers(s, at))

    def _involve(self, service_level: str) -> None:
        if service_level not in self.service_levels:
            self.service_levels = _appended(self.service_levels, service_level)

    # -- commands: check, then trigger ------------------------------------------------

    def _trigger(self, event_class: type[Event], **kwargs: Any) -> None:
        if self.closed is not None:
            raise Conflict("the plan is closed; no events can be added")
        if kwargs["occurred_at"] < self.opened_at:
            raise Invalid("happened before the plan was opened "
                          f"({self.opened_at.isoformat()})", "occurred_at")
        self.trigger_event(event_class, **kwargs)

    def _not_before_opening(self, moment: datetime, field: str) -> None:
        if moment < self.opened_at - OPENING_TOLERANCE:
            raise Invalid(f"is before the plan was opened ({self.opened_at.date().isoformat()})", field)

    @staticmethod
    def _not_before_scheduled(scheduled_for: datetime, occurred_at: datetime, what: str) -> None:
        if occurred_at < scheduled_for - HELD_TOLERANCE:
            raise Invalid(f"{what} is scheduled for {scheduled_for.isoformat()}; it cannot be "
                          "recorded as having happened before then", "occurred_at")

    def assign_coordinator(self, *, coordinator_id: str, name: str | None = None,
                           service_level: str | None = None, **meta: Any) -> None:
        if coordinator_id == self.patient_id:
            raise Invalid("the patient cannot be their own coordinator", "coordinator_id")
        participant = self.participants.get(coordinator_id)
        if participant is not None and participant.kind == "relative":
            raise Invalid(f"{coordinator_id} takes part as a relative; a coordinator is a professional",
                          "coordinator_id")
        self._trigger(self.CoordinatorAssigned, coordinator_id=coordinator_id, name=name,
                     service_level=service_level, **meta)

    def record_what_matters(self, *, text: str, language: str, **meta: Any) -> None:
        if not text.strip():
            raise Invalid("what matters must not be empty", "text")
        self._trigger(self.WhatMattersRecorded, text=text, language=language, **meta)

    def set_goal(self, *, goal_id: str, text: str, expressed_by: str,
                 target_date: date | None = None, **meta: Any) -> None:
        _require_text(text, "text")
        if goal_id in self.goals:
            raise Conflict(f"goal {goal_id} already exists", "goal_id")
        self._trigger(self.GoalSet, goal_id=goal_id, text=text, expressed_by=expressed_by,
                     target_date=target_date, **meta)

    def _active_goal(self, goal_id: str, doing: str) -> Goal:
        goal = self.goals.get(goal_id)
        if goal is None:
            raise Invalid(f"the plan has no goal {goal_id}", "goal_id")
        if goal.status != GoalStatus.ACTIVE:
            raise Conflict(f"goal {goal_id} is {goal.status} and cannot be {doing}", "goal_id")
        return goal

    def revise_goal(self, *, goal_id: str, text: str | None = None,
                    target_date: date | None = None, reason: str | None = None, **meta: Any) -> None:
        self._active_goal(goal_id, "revised")
        if text is None and target_date is None:
            raise Invalid("a revision changes the text or the target date", "text")
        if text is not None:
            _require_text(text, "text")
        self._trigger(self.GoalRevised, goal_id=goal_id, text=text, target_date=target_date,
                     reason=reason, **meta)

    def achieve_goal(self, *, goal_id: str, **meta: Any) -> None:
        self._active_goal(goal_id, "achieved")
        self._trigger(self.GoalAchieved, goal_id=goal_id, **meta)

    def abandon_goal(self, *, goal_id: str, reason: str | None = None, **meta: Any) -> None:
        self._active_goal(goal_id, "abandoned")
        self._trigger(self.GoalAbandoned, goal_id=goal_id, reason=reason, **meta)

    def give_information(self, *, information_id: str, topic: str, form: str, description: str,
                         adapted_how: str | None = None, **meta: Any) -> None:
        _require_text(description, "description")
        if information_id in self.information:
            raise Conflict(f"information {information_id} is already recorded", "information_id")
        self._trigger(self.InformationGiven, information_id=information_id, topic=topic, form=form,
                     description=description, adapted_how=adapted_how, **meta)

    def add_participant(self, *, participant_id: str, kind: str, name: str | None = None,
                        relation: str | None = None, service_level: str | None = None,
                        **meta: Any) -> None:
        if participant_id in self.participants:
            raise Conflict(f"participant {participant_id} already takes part", "participant_id")
        if kind == "professional" and service_level is None:
            raise Invalid("a professional participant needs a service level", "service_level")
        self._trigger(self.ParticipantAdded, participant_id=participant_id, kind=kind, name=name,
                     relation=relation, service_level=service_level, **meta)

    def remove_participant(self, *, participant_id: str, reason: str | None = None,
                           **meta: Any) -> None:
        if participant_id not in self.participants:
            raise Invalid(f"{participant_id} is not a participant of the plan", "participant_id")
        self._trigger(self.ParticipantRemoved, participant_id=participant_id, reason=reason, **meta)

    def give_relative_consent(self, *, relative_id: str, scope: list[str],
                              valid_from: datetime | None = None,
                              valid_until: datetime | None = None,
                              given_how: str | None = None, **meta: Any) -> None:
        given_how = _consent_given_how(meta["recorded_by"], given_how)
        participant = self.participants.get(relative_id)
        if participant is None or participant.kind != "relative":
            raise Invalid(f"{relative_id} is not a relative taking part in the plan", "relative_id")
        unknown = sorted(set(scope) - set(CONSENT_SCOPES))
        if not scope or unknown:
            raise Invalid(f"scope must name sections of {', '.join(CONSENT_SCOPES)}", "scope")
        valid_from = valid_from or meta["occurred_at"]
        self._not_before_opening(valid_from, "valid_from")
        if valid_until is not None and valid_until <= valid_from:
            raise Invalid("valid_until must be after valid_from", "valid_until")
        if valid_until is not None and valid_until <= meta["occurred_at"]:
            raise Invalid("the consent had already ended when it was given", "valid_until")
        self._trigger(self.RelativeConsentGiven, relative_id=relative_id,
                     scope=sorted(set(scope)), valid_from=valid_from,
                     valid_until=valid_until, given_how=given_how, **meta)

    def withdraw_relative_consent(self, *, relative_id: str, **meta: Any) -> None:
        _may_record_consent(meta["recorded_by"])
        consent = self.consents.get(relative_id)
        if consent is None:
            raise Invalid(f"no consent was given for {relative_id}", "relative_id")
        if consent.withdrawn_at is not None:
            raise Conflict(f"the consent for {relative_id} is already withdrawn", "relative_id")
        self._trigger(self.RelativeConsentWithdrawn, relative_id=relative_id, **meta)

    def schedule_evaluation(self, *, evaluation_id: str, scheduled_for: datetime,
                            **meta: Any) -> None:
        existing = self.evaluations.get(evaluation_id)
        if existing is not None and existing.status == EvaluationStatus.HELD:
            raise Conflict(f"evaluation {evaluation_id} was already held", "evaluation_id")
        self._not_before_opening(scheduled_for, "scheduled_for")
        self._trigger(self.EvaluationScheduled, evaluation_id=evaluation_id,
                     scheduled_for=scheduled_for, **meta)

    def hold_evaluation(self, *, evaluation_id: str, outcome: str, patient_took_part: bool,
                        participants: list[str] | None = None, **meta: Any) -> None:
        evaluation = self.evaluations.get(evaluation_id)
        if evaluation is None:
            raise Invalid(f"evaluation {evaluation_id} was never scheduled", "evaluation_id")
        if evaluation.status == EvaluationStatus.HELD:
            raise Conflict(f"evaluation {evaluation_id} was already held", "evaluation_id")
        _require_text(outcome, "outcome")
        self._not_before_scheduled(evaluation.scheduled_for, meta["occurred_at"],
                                   f"evaluation {evaluation_id}")
        self._trigger(self.EvaluationHeld, evaluation_id=evaluation_id, outcome=outcome,
                     patient_took_part=patient_took_part, participants=list(participants or []),
                     **meta)

    def request_triangle_meeting(self, *, meeting_id: str, requested_by: str | None = None,
                                 reason: str | None = None, **meta: Any) -> None:
        if meeting_id in self.triangle_meetings:
            raise Conflict(f"triangle meeting {meeting_id} already exists", "meeting_id")
        self._trigger(self.TriangleMeetingRequested, meeting_id=meeting_id,
                     requested_by=requested_by, reason=reason, **meta)

    def schedule_triangle_meeting(self, *, meeting_id: str, scheduled_for: datetime, place: str,
                                  no_show_strategy: str, transport: str | None = None,
                                  companion: str | None = None, **meta: Any) -> None:
        meeting = self.triangle_meetings.get(meeting_id)
        if meeting is not None and meeting.status == MeetingStatus.HELD:
            raise Conflict(f"triangle meeting {meeting_id} was already held", "meeting_id")
        if not no_show_strategy.strip():
            raise Invalid("agree a strategy for a no-show before the meeting", "no_show_strategy")
        _require_text(place, "place")
        self._not_before_opening(scheduled_for, "scheduled_for")
        self._trigger(self.TriangleMeetingScheduled, meeting_id=meeting_id,
                     scheduled_for=scheduled_for, place=place, transport=transport,
                     companion=companion, no_show_strategy=no_show_strategy, **meta)

    def _scheduled_meeting(self, meeting_id: str, occurred_at: datetime) -> TriangleMeeting:
        meeting = self.triangle_meetings.get(meeting_id)
        if meeting is None:
            raise Invalid(f"the plan has no triangle meeting {meeting_id}", "meeting_id")
        if meeting.status != MeetingStatus.SCHEDULED or meeting.scheduled_for is None:
            raise Conflict(f"triangle meeting {meeting_id} is not scheduled ({meeting.status})",
                           "meeting_id")
        self._not_before_scheduled(meeting.scheduled_for, occurred_at, f"triangle meeting {meeting_id}")
        return meeting

    def hold_triangle_meeting(self, *, meeting_id: str, outcome: str | None = None,
                              **meta: Any) -> None:
        self._scheduled_meeting(meeting_id, meta["occurred_at"])
        self._trigger(self.TriangleMeetingHeld, meeting_id=meeting_id, outcome=outcome, **meta)

    def miss_triangle_meeting(self, *, meeting_id: str, note: str | None = None,
                              **meta: Any) -> None:
        self._scheduled_meeting(meeting_id, meta["occurred_at"])
        self._trigger(self.TriangleMeetingMissed, meeting_id=meeting_id, note=note, **meta)

    def close(self, *, reason: str, note: str | None = None, **meta: Any) -> None:
        self._trigger(self.PlanClosed, reason=reason, note=note, **meta)


def _require_text(text: str, field: str) -> None:
    if not text.strip():
        raise Invalid("must not be blank", field)


def _may_record_consent(recorded_by: Actor) -> str:
    """Consent is the patient's to give (Råd 11): the patient records it, or a named clinician
    records what the patient said or signed. A system account alone may not. -> the role."""
    role = recorded_by.get("role", "")
    if role not in ("patient", "clinician", "coordinator"):
        raise Forbidden("consent is the patient's to give: the patient records it, or the clinician "
                        "who received it (on_behalf_of) records how it was given")
    return role


def _consent_given_how(recorded_by: Actor, given_how: str | None) -> str:
    if _may_record_consent(recorded_by) == "patient":
        return "digital"
    if given_how not in CONSENT_GIVEN_HOW or given_how == "digital":
        raise Invalid("say how the patient gave it: oral or written", "given_how")
    return given_how


def _copy_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    params = getattr(value, "__dataclass_params__", None)
    if params is not None and not params.frozen:
        clone = object.__new__(type(value))
        clone.__dict__ = {k: list(v) if isinstance(v, list) else v for k, v in value.__dict__.items()}
        return clone
    return value  # str, int, bool, date, datetime, UUID, frozen events: immutable


def event_type(event: IndividualPlan.Event) -> str:
    """The public name of a stored plan event (its class name, stable with its TOPIC)."""
    return type(event).__name__
