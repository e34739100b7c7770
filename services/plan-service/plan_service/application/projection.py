"""What a reader may see of a plan: ONE projection by sections, used by every read path (the
plan, its timeline, and what later reads the plan: the FHIR export, the pages).

A reader is given a set of sections. A relative gets the sections their current consent
covers (values.CONSENT_SCOPES); everyone else who may read the plan gets ``FULL``, which adds
``RECORD``: the parts of the record no consent covers: who the patient is (patient id, date
of birth, age band, service levels), who recorded each change, and notes written on closing.
Anything not named here is not shown: a new field or event type stays hidden from relatives
until it is given a section.
"""

from __future__ import annotations

from typing import Any, Callable

from plan_service.domain.values import CONSENT_SCOPES

RECORD = "record"
FULL: frozenset[str] = frozenset(CONSENT_SCOPES) | {RECORD}
# Shown to every reader of the plan: the plan exists, its version, when it was opened and
# changed, and whether (why, when) it was closed.
ALWAYS = "always"

# plan representation field -> the section that shows it
PLAN_FIELDS: dict[str, str] = {
    "id": ALWAYS, "version": ALWAYS, "opened_at": ALWAYS, "updated_at": ALWAYS, "closed": ALWAYS,
    "patient_id": RECORD, "service_levels": RECORD, "age_band": RECORD, "birth_date": RECORD,
    "what_matters": "what_matters", "goals": "goals", "information_given": "information",
    "participants": "participants", "relative_consents": "participants", "coordinator": "participants",
    "evaluations": "evaluations", "triangle_meetings": "meetings",
}

# event type -> the section that shows the event (its details, unless EVENT_FIELDS says more)
EVENT_SECTIONS: dict[str, str] = {
    "PlanOpened": ALWAYS, "PlanClosed": ALWAYS,
    "WhatMattersRecorded": "what_matters", "GoalSet": "goals", "GoalRevised": "goals",
    "GoalAchieved": "goals", "GoalAbandoned": "goals", "InformationGiven": "information",
    "ParticipantAdded": "participants", "ParticipantRemoved": "participants",
    "CoordinatorAssigned": "participants", "RelativeConsentGiven": "participants",
    "RelativeConsentWithdrawn": "participants", "EvaluationScheduled": "evaluations",
    "EvaluationHeld": "evaluations", "TriangleMeetingRequested": "meetings",
    "TriangleMeetingScheduled": "meetings", "TriangleMeetingHeld": "meetings",
    "TriangleMeetingMissed": "meetings",
}
# Fields of an event shown by another section than the event's own.
EVENT_FIELDS: dict[str, dict[str, str]] = {
    "PlanOpened": {"patient_id": RECORD, "service_level": RECORD, "age_band": RECORD, "birth_date": RECORD},
    "PlanClosed": {"reason": ALWAYS, "note": RECORD},
}
# Who recorded an event (clinicians' and coordinators' ids) belongs to the record.
RECORDED_BY = RECORD


def shows(section: str, sections: frozenset[str]) -> bool:
    return section == ALWAYS or section in sections


def plan_fields(sections: frozenset[str]) -> tuple[str, ...] | None:
    """The plan representation's fields these sections show (None: all of them)."""
    if sections >= FULL:
        return None
    return tuple(name for name, section in PLAN_FIELDS.items() if shows(section, sections))


def event_visible(event_type: str, sections: frozenset[str]) -> bool:
    section = EVENT_SECTIONS.get(event_type)
    return section is not None and shows(section, sections)


def event_filter(sections: frozenset[str]) -> Callable[[str], bool] | None:
    """A test on event types for the timeline (None: every event is shown)."""
    if sections >= FULL:
        return None
    return lambda event_type: event_visible(event_type, sections)


def event_details(event_type: str, details: dict[str, Any], sections: frozenset[str]) -> dict[str, Any]:
    """The fields of one event these sections show (the event itself must be visible)."""
    own = EVENT_SECTIONS.get(event_type)
    if own is None or not shows(own, sections):
        return {}
    special = EVENT_FIELDS.get(event_type, {})
    return {k: v for k, v in details.items() if shows(special.get(k, own), sections)}


def shows_recorded_by(sections: frozenset[str]) -> bool:
    return shows(RECORDED_BY, sections)
