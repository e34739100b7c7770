"""Timeline entries: each stored plan event with a short summary a person can read.

An entry is made from the event's projected details only (projection.py): a summary cannot
show what the reader's sections hide, because it never sees it.
"""

from __future__ import annotations

from typing import Any, Callable

from plan_service.application import projection
from plan_service.domain.plan import IndividualPlan, event_type

_META = {"originator_id", "originator_version", "timestamp", "recorded_by", "occurred_at",
         "originator_topic"}


def _clip(text: str | None, length: int = 80) -> str:
    if not text:
        return ""
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value)


SUMMARIES: dict[str, Callable[[Any], str]] = {
    "PlanOpened": lambda e: "Individual plan opened"
    + (f" in the {e.service_level} service" if e.service_level else ""),
    "CoordinatorAssigned": lambda e: f"Coordinator assigned: {e.name or e.coordinator_id}",
    "WhatMattersRecorded": lambda e: f"What matters to me: “{_clip(e.text)}”",
    "GoalSet": lambda e: f"Goal set ({e.expressed_by}): {_clip(e.text)}",
    "GoalRevised": lambda e: f"Goal revised: {_clip(e.text) or 'new target date'}",
    "GoalAchieved": lambda e: f"Goal {e.goal_id} achieved",
    "GoalAbandoned": lambda e: f"Goal {e.goal_id} abandoned",
    "InformationGiven": lambda e: f"Information given ({e.form}) about {e.topic.replace('_', ' ')}",
    "ParticipantAdded": lambda e: f"{e.kind.capitalize()} added to the plan: {e.name or e.participant_id}",
    "ParticipantRemoved": lambda e: f"Participant {e.participant_id} removed from the plan",
    "RelativeConsentGiven": lambda e: (
        f"Consent given for relative {e.relative_id} to see: {', '.join(e.scope).replace('_', ' ')}"
        + (f" (until {_when(e.valid_until)})" if e.valid_until else "")),
    "RelativeConsentWithdrawn": lambda e: f"Consent for relative {e.relative_id} withdrawn",
    "EvaluationScheduled": lambda e: f"Evaluation of the plan scheduled for {_when(e.scheduled_for)}",
    "EvaluationHeld": lambda e: "Evaluation of the plan held"
    + (" with the patient" if e.patient_took_part else " without the patient"),
    "TriangleMeetingRequested": lambda e: "Triangle meeting requested",
    "TriangleMeetingScheduled": lambda e: f"Triangle meeting scheduled for {_when(e.scheduled_for)} at {e.place}",
    "TriangleMeetingHeld": lambda e: "Triangle meeting held",
    "TriangleMeetingMissed": lambda e: "Triangle meeting missed: follow-up as agreed",
    "PlanClosed": lambda e: f"Plan closed ({e.reason.replace('_', ' ')})",
}


class _Shown:
    """The projected details as attributes; a hidden field reads as None."""

    def __init__(self, details: dict[str, Any]):
        self.__dict__.update(details)

    def __getattr__(self, name: str) -> None:
        return None


def entry(event: IndividualPlan.Event, sections: frozenset[str] = projection.FULL) -> dict[str, Any]:
    """One timeline entry as these sections show it (the event type must be visible to them)."""
    name = event_type(event)
    details = projection.event_details(
        name, {k: v for k, v in event.__dict__.items() if k not in _META}, sections)
    item = {
        "version": event.originator_version,
        "type": name,
        "summary": SUMMARIES[name](_Shown(details)),
        "occurred_at": event.occurred_at,
        "recorded_at": event.timestamp,
        "details": details,
    }
    if projection.shows_recorded_by(sections):
        item["recorded_by"] = event.recorded_by
    return item
