"""The event types of an individual plan: ONE registry, keyed by the event class.

For each type: the plan's command that records it, its payload as posted (the API builds the
request schema from it), the section of the plan it belongs to (what a relative's consent must
cover to see it), the fields shown by another section than the event's own, its timeline
summary (translatable: a template and its values), and the roles that may record it. The API's
request schemas, the timeline, the consent projection, the wire contract and
notification-service read what is here; a test fails when a type lacks any of them. A new
event type: its class and command in plan.py and one entry here; then the two other parties
of the contract, which tests/test_event_registry.py asks for by name: its wire schema
(careplan_shared/events/v1.py, data-minimised by hand on purpose) and notification-service's
handling of it (or its word that it has no use for it).

An event type this registry does not know is refused on write and shown to nobody on read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from plan_service.domain.plan import IndividualPlan
from plan_service.domain.values import (
    CLOSE_REASONS,
    CONSENT_SCOPES,
    EXPRESSED_BY,
    INFORMATION_FORMS,
    INFORMATION_TOPICS,
    PARTICIPANT_KINDS,
    SERVICE_LEVELS,
)

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


class Kind(StrEnum):
    """What kind of value a posted field holds; the API turns each into its validation."""

    ID = "id"  # an id from the EPR: one line, 1-64 characters
    SHORT = "short"  # one line of text, up to 200 characters
    TEXT = "text"  # free text, line breaks allowed, up to 4000 characters
    CHOICE = "choice"  # one of ``choices``
    CHOICES = "choices"  # a non-empty list of ``choices``
    NAMES = "names"  # a list of up to 50 short texts (default: none)
    LANGUAGE = "language"  # a language tag, default "nb"
    BOOL = "bool"  # JSON true or false
    TARGET_DATE = "target_date"  # a calendar day, up to 5 years ahead
    SCHEDULED = "scheduled"  # a time from 1900, up to 5 years ahead
    CONSENT_START = "consent_start"  # a time up to a year ahead
    CONSENT_END = "consent_end"  # a time in the future, up to 10 years ahead


@dataclass(frozen=True)
class Field:
    """A field of an event as it is posted (the request's payload)."""

    kind: Kind
    required: bool = False
    choices: tuple[str, ...] = ()
    description: str | None = None


def required(kind: Kind, choices: tuple[str, ...] = (), description: str | None = None) -> Field:
    return Field(kind, True, choices, description)


def optional(kind: Kind, choices: tuple[str, ...] = (), description: str | None = None) -> Field:
    return Field(kind, False, choices, description)


ID = required(Kind.ID)


@dataclass(frozen=True)
class EventType:
    event: type[IndividualPlan.Event]
    section: str
    summary: Callable[[Any], Message]  # from the event's shown fields (hidden ones read as None)
    recorders: frozenset[str] = STAFF  # roles that may record it (besides what the policy says)
    command: Callable[..., None] | None = None  # None: recorded another way (PlanOpened)
    fields: Mapping[str, str] = field(default_factory=dict)  # field -> another section than `section`
    payload: Mapping[str, Field] = field(default_factory=dict)  # what is posted (PlanOpened: POST /v1/plans)

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
              command=E.assign_coordinator,
              payload={"coordinator_id": ID, "name": optional(Kind.SHORT),
                       "service_level": optional(Kind.CHOICE, SERVICE_LEVELS)}),
    EventType(E.WhatMattersRecorded, "what_matters",
              lambda e: Message("What matters to me: “{text}”", {"text": clip(e.text)}),
              recorders=STAFF_AND_PATIENT, command=E.record_what_matters,
              payload={"text": required(Kind.TEXT, description="In the patient's own words («Hva er viktig for deg?»)"),
                       "language": optional(Kind.LANGUAGE)}),
    EventType(E.GoalSet, "goals",
              lambda e: Message("Goal set ({by}): {text}", {"by": e.expressed_by, "text": clip(e.text)}),
              command=E.set_goal,
              payload={"goal_id": ID, "text": required(Kind.TEXT), "expressed_by": required(Kind.CHOICE, EXPRESSED_BY),
                       "target_date": optional(Kind.TARGET_DATE)}),
    EventType(E.GoalRevised, "goals",
              lambda e: Message("Goal revised: {text}", {"text": clip(e.text)}) if e.text
              else Message("Goal revised: new target date"),
              command=E.revise_goal,
              payload={"goal_id": ID, "text": optional(Kind.TEXT), "target_date": optional(Kind.TARGET_DATE),
                       "reason": optional(Kind.TEXT)}),
    EventType(E.GoalAchieved, "goals", lambda e: Message("Goal {goal} achieved", {"goal": e.goal_id}),
              command=E.achieve_goal, payload={"goal_id": ID}),
    EventType(E.GoalAbandoned, "goals", lambda e: Message("Goal {goal} abandoned", {"goal": e.goal_id}),
              command=E.abandon_goal, payload={"goal_id": ID, "reason": optional(Kind.TEXT)}),
    EventType(E.InformationGiven, "information",
              lambda e: Message("Information given ({form}) about {topic}", {"form": e.form, "topic": words(e.topic)}),
              command=E.give_information,
              payload={"information_id": ID, "topic": required(Kind.CHOICE, INFORMATION_TOPICS),
                       "form": required(Kind.CHOICE, INFORMATION_FORMS), "description": required(Kind.TEXT),
                       "adapted_how": optional(Kind.TEXT)}),
    EventType(E.ParticipantAdded, "participants",
              lambda e: Message("{kind} added to the plan: {who}",
                                {"kind": (e.kind or "").capitalize(), "who": e.name or e.participant_id}),
              command=E.add_participant,
              payload={"participant_id": ID, "kind": required(Kind.CHOICE, PARTICIPANT_KINDS),
                       "name": optional(Kind.SHORT), "relation": optional(Kind.SHORT),
                       "service_level": optional(Kind.CHOICE, SERVICE_LEVELS)}),
    EventType(E.ParticipantRemoved, "participants",
              lambda e: Message("Participant {who} removed from the plan", {"who": e.participant_id}),
              command=E.remove_participant, payload={"participant_id": ID, "reason": optional(Kind.TEXT)}),
    EventType(E.RelativeConsentGiven, "participants",
              lambda e: Message("Consent given for relative {who} to see: {scope} (until {until})",
                                {"who": e.relative_id, "scope": words(", ".join(e.scope or ())),
                                 "until": when(e.valid_until)}) if e.valid_until
              else Message("Consent given for relative {who} to see: {scope}",
                           {"who": e.relative_id, "scope": words(", ".join(e.scope or ()))}),
              recorders=STAFF_AND_PATIENT, command=E.give_relative_consent,
              payload={"relative_id": ID, "scope": required(Kind.CHOICES, CONSENT_SCOPES),
                       "valid_from": optional(Kind.CONSENT_START, description="Default: when it was given"),
                       "valid_until": optional(Kind.CONSENT_END, description="In the future, at most 10 years "
                                                                              "ahead; none: until withdrawn"),
                       "given_how": optional(Kind.CHOICE, ("oral", "written"), description=(
                           "How the patient gave it, when a clinician records it (oral or written; required "
                           "then). A patient recording it needs none."))}),
    EventType(E.RelativeConsentWithdrawn, "participants",
              lambda e: Message("Consent for relative {who} withdrawn", {"who": e.relative_id}),
              recorders=STAFF_AND_PATIENT, command=E.withdraw_relative_consent, payload={"relative_id": ID}),
    EventType(E.EvaluationScheduled, "evaluations",
              lambda e: Message("Evaluation of the plan scheduled for {at}", {"at": when(e.scheduled_for)}),
              command=E.schedule_evaluation,
              payload={"evaluation_id": ID, "scheduled_for": required(Kind.SCHEDULED)}),
    EventType(E.EvaluationHeld, "evaluations",
              lambda e: Message("Evaluation of the plan held with the patient") if e.patient_took_part
              else Message("Evaluation of the plan held without the patient"),
              command=E.hold_evaluation,
              payload={"evaluation_id": ID, "outcome": required(Kind.TEXT), "patient_took_part": required(Kind.BOOL),
                       "participants": optional(Kind.NAMES)}),
    EventType(E.TriangleMeetingRequested, "meetings", lambda e: Message("Triangle meeting requested"),
              command=E.request_triangle_meeting,
              payload={"meeting_id": ID, "requested_by": optional(Kind.CHOICE, (*SERVICE_LEVELS, "patient")),
                       "reason": optional(Kind.TEXT)}),
    EventType(E.TriangleMeetingScheduled, "meetings",
              lambda e: Message("Triangle meeting scheduled for {at} at {place}",
                                {"at": when(e.scheduled_for), "place": e.place}),
              command=E.schedule_triangle_meeting,
              payload={"meeting_id": ID, "scheduled_for": required(Kind.SCHEDULED), "place": required(Kind.SHORT),
                       "transport": optional(Kind.SHORT), "companion": optional(Kind.SHORT),
                       "no_show_strategy": required(Kind.TEXT, description=(
                           "What to do if the young person does not come, agreed in advance"))}),
    EventType(E.TriangleMeetingHeld, "meetings", lambda e: Message("Triangle meeting held"),
              command=E.hold_triangle_meeting, payload={"meeting_id": ID, "outcome": optional(Kind.TEXT)}),
    EventType(E.TriangleMeetingMissed, "meetings",
              lambda e: Message("Triangle meeting missed: follow-up as agreed"),
              command=E.miss_triangle_meeting, payload={"meeting_id": ID, "note": optional(Kind.TEXT)}),
    EventType(E.PlanClosed, ALWAYS, lambda e: Message("Plan closed ({reason})", {"reason": words(e.reason)}),
              command=E.close, fields={"reason": ALWAYS, "note": RECORD},
              payload={"reason": required(Kind.CHOICE, CLOSE_REASONS), "note": optional(Kind.TEXT)}),
)

REGISTRY: dict[type[IndividualPlan.Event], EventType] = {t.event: t for t in _TYPES}
BY_NAME: dict[str, EventType] = {t.name: t for t in _TYPES}
# The posted event ``type`` -> the plan's command that records it (PlanOpened is not posted:
# a plan is opened by POST /v1/plans, once).
COMMANDS: dict[str, Callable[..., None]] = {t.name: t.command for t in _TYPES if t.command is not None}


def of(event: Any) -> EventType | None:
    """The registry's entry for a stored event; None for a type it does not know."""
    return REGISTRY.get(type(event))
