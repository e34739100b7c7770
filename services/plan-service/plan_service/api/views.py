"""What a caller may see of a plan: sections for relatives; access-log entries in plain words."""

from __future__ import annotations

from typing import Any, Callable

from plan_service.adapters.access_log import AccessEntry
from plan_service.api.access import ALL_SECTIONS

# plan representation field -> the consent section that covers it
FIELD_SECTIONS = {
    "what_matters": "what_matters", "goals": "goals", "information_given": "information",
    "participants": "participants", "relative_consents": "participants", "coordinator": "participants",
    "evaluations": "evaluations", "triangle_meetings": "meetings",
}
ALWAYS = ("id", "version", "opened_at", "updated_at", "closed")
EVENT_SECTIONS = {
    "WhatMattersRecorded": "what_matters", "GoalSet": "goals", "GoalRevised": "goals",
    "GoalAchieved": "goals", "GoalAbandoned": "goals", "InformationGiven": "information",
    "ParticipantAdded": "participants", "ParticipantRemoved": "participants",
    "CoordinatorAssigned": "participants", "RelativeConsentGiven": "participants",
    "RelativeConsentWithdrawn": "participants", "EvaluationScheduled": "evaluations",
    "EvaluationHeld": "evaluations", "TriangleMeetingRequested": "meetings",
    "TriangleMeetingScheduled": "meetings", "TriangleMeetingHeld": "meetings",
    "TriangleMeetingMissed": "meetings", "PlanOpened": None, "PlanClosed": None,
}


def visible_fields(sections: frozenset[str]) -> tuple[str, ...] | None:
    """The plan fields these sections show (None: all of them)."""
    if sections >= ALL_SECTIONS:
        return None
    return ALWAYS + tuple(f for f, section in FIELD_SECTIONS.items() if section in sections)


def event_filter(sections: frozenset[str]) -> Callable[[Any], bool] | None:
    if sections >= ALL_SECTIONS:
        return None
    return lambda event: EVENT_SECTIONS.get(type(event).__name__) in sections or \
        EVENT_SECTIONS.get(type(event).__name__, "x") is None


WHAT = {
    "read_plan": "read the plan", "read_plan_as_of": "read an earlier version of the plan",
    "read_timeline": "read the plan's timeline", "read_access_log": "read this access log",
    "write_events": "recorded changes in the plan", "open_plan": "opened the plan",
}


def access_entry(entry_id: int, e: AccessEntry) -> dict[str, Any]:
    who = f"{e.role} {e.subject}"
    if e.on_behalf_of:
        who = f"clinician {e.on_behalf_of} (through the EPR system {e.subject})"
    what = WHAT.get(e.action, e.action)
    if e.result != "allowed":
        what = f"tried to {what.replace('read ', 'read ', 1)}: {e.result}"
    return {"id": entry_id, "at": e.at, "who": who, "role": e.role, "subject": e.subject,
            "on_behalf_of": e.on_behalf_of, "action": e.action, "what": what, "result": e.result}
