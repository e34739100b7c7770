"""The event types of an individual plan: ONE registry, keyed by the event class.

For each type: the plan's command that records it, the section of the plan it belongs to (what
a relative's consent must cover to see it), the fields shown by another section than the
event's own, its timeline summary (translatable: a template and its values), and the roles
that may record it. The API's request schemas, the timeline, the consent projection, the wire
contract and notification-service read what is here; a test fails when a type lacks any of
them. A new event type: its class and command in plan.py, one entry here, then its request
schema (api/schemas.py) and wire schema (careplan_shared/events/v1.py), which the tests demand.

An event type this registry does not know is refused on write and shown to nobody on read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from plan_service.domain.plan import IndividualPlan
from plan_service.domain.values import CONSENT_SCOPES

# Sections: the six a consent can cover, and two that no consent covers.
RECORD = "record"  # who the patient is, who recorded each change, notes on closing
ALWAYS = "always"  # that the plan exists, was opened, was closed (and why)
SECTIONS = (*CONSENT_SCOPES, RECORD, ALWAYS)
FULL: frozenset[str] = frozenset(CONSENT_SCOPES) | {RECORD}  # what everyone but a relative sees

STAFF = frozenset({"integration", "clinician", "coordinator"})
STAFF_AND_PATIENT = STAFF | {"patient"}


@dataclass(frozen=True)
class Message:
    """Text a person reads, ready for translation: ``template`` is the message id (English),
    ``values`` fill its ``{placeholders}``."""

    template: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def format(self, template: str | None = None) -> str:
        return (template or self.template).format(**self.values)


@dataclass(frozen=True)
class EventType:
    event: type[IndividualPlan.Event]
    section: str
    summary: Callable[[Any], Message]  # from the event's shown fields (hidden ones read as None)
    recorders: frozenset[str] = STAFF  # roles that may record it (besides what the policy says)
    command: Callable[..., None] | None = None  # None: recorded another way (PlanOpened)
    fields: Mapping[str, str] = field(default_factory=dict)  # field -> another section than `section`

    @property
    def name(self) -> str:
        return self.event.__name__

    def field_section(self, name: str) -> str:
        return self.fields.get(name, self.section)


def clip(text: str | None, length: int = 80) -> str:
    if not text:
        return ""
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def when(value: datetime | date | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else str(value)


def words(value: str | None) -> str:
    return (value or "").replace("_", " ")


E = IndividualPlan
_TYPES = (
    EventType(E.PlanOpened, ALWAYS,
              lambda e: Message("Individual plan opened in the {level} service", {"level": e.service_level})
              if e.service_level else Message("Individual plan opened"),
              fields={"patient_id": RECORD, "service_level": RECORD, "age_band": RECORD, "birth_date": RECORD}),
    EventType(E.CoordinatorAssigned, "participants",
              lambda e: Message("Coordinator assigned: {who}", {"who": e.name or e.coordinator_id}),
              command=E.assign_coordinator),
    EventType(E.WhatMattersRecorded, "what_matters",
              lambda e: Message("What matters to me: “{text}”", {"text": clip(e.text)}),
              recorders=STAFF_AND_PATIENT, command=E.record_what_matters),
    EventType(E.GoalSet, "goals",
              lambda e: Message("Goal set ({by}): {text}", {"by": e.expressed_by, "text": clip(e.text)}),
              command=E.set_goal),
    EventType(E.GoalRevised, "goals",
              lambda e: Message("Goal revised: {text}", {"text": clip(e.text)}) if e.text
              else Message("Goal revised: new target date"),
              command=E.revise_goal),
    EventType(E.GoalAchieved, "goals", lambda e: Message("Goal {goal} achieved", {"goal": e.goal_id}),
              command=E.achieve_goal),
    EventType(E.GoalAbandoned, "goals", lambda e: Message("Goal {goal} abandoned", {"goal": e.goal_id}),
              command=E.abandon_goal),
    EventType(E.InformationGiven, "information",
              lambda e: Message("Information given ({form}) about {topic}", {"form": e.form, "topic": words(e.topic)}),
              command=E.give_information),
    EventType(E.ParticipantAdded, "participants",
              lambda e: Message("{kind} added to the plan: {who}",
                                {"kind": (e.kind or "").capitalize(), "who": e.name or e.participant_id}),
              command=E.add_participant),
    EventType(E.ParticipantRemoved, "participants",
              lambda e: Message("Participant {who} removed from the plan", {"who": e.participant_id}),
              command=E.remove_participant),
    EventType(E.RelativeConsentGiven, "participants",
              lambda e: Message("Consent given for relative {who} to see: {scope} (until {until})",
                                {"who": e.relative_id, "scope": words(", ".join(e.scope or ())),
                                 "until": when(e.valid_until)}) if e.valid_until
              else Message("Consent given for relative {who} to see: {scope}",
                           {"who": e.relative_id, "scope": words(", ".join(e.scope or ()))}),
              recorders=STAFF_AND_PATIENT, command=E.give_relative_consent),
    EventType(E.RelativeConsentWithdrawn, "participants",
              lambda e: Message("Consent for relative {who} withdrawn", {"who": e.relative_id}),
              recorders=STAFF_AND_PATIENT, command=E.withdraw_relative_consent),
    EventType(E.EvaluationScheduled, "evaluations",
              lambda e: Message("Evaluation of the plan scheduled for {at}", {"at": when(e.scheduled_for)}),
              command=E.schedule_evaluation),
    EventType(E.EvaluationHeld, "evaluations",
              lambda e: Message("Evaluation of the plan held with the patient") if e.patient_took_part
              else Message("Evaluation of the plan held without the patient"),
              command=E.hold_evaluation),
    EventType(E.TriangleMeetingRequested, "meetings", lambda e: Message("Triangle meeting requested"),
              command=E.request_triangle_meeting),
    EventType(E.TriangleMeetingScheduled, "meetings",
              lambda e: Message("Triangle meeting scheduled for {at} at {place}",
                                {"at": when(e.scheduled_for), "place": e.place}),
              command=E.schedule_triangle_meeting),
    EventType(E.TriangleMeetingHeld, "meetings", lambda e: Message("Triangle meeting held"),
              command=E.hold_triangle_meeting),
    EventType(E.TriangleMeetingMissed, "meetings",
              lambda e: Message("Triangle meeting missed: follow-up as agreed"),
              command=E.miss_triangle_meeting),
    EventType(E.PlanClosed, ALWAYS, lambda e: Message("Plan closed ({reason})", {"reason": words(e.reason)}),
              command=E.close, fields={"reason": ALWAYS, "note": RECORD}),
)

REGISTRY: dict[type[IndividualPlan.Event], EventType] = {t.event: t for t in _TYPES}
BY_NAME: dict[str, EventType] = {t.name: t for t in _TYPES}
# The posted event ``type`` -> the plan's command that records it (PlanOpened is not posted:
# a plan is opened by POST /v1/plans, once).
COMMANDS: dict[str, Callable[..., None]] = {t.name: t.command for t in _TYPES if t.command is not None}


def of(event: Any) -> EventType | None:
    """The registry's entry for a stored event; None for a type it does not know."""
    return REGISTRY.get(type(event))
