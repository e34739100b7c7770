"""Value objects held in the plan's state. Plain dataclasses so snapshots can store them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

# The contract's vocabularies, written once (careplan_shared/vocabulary.py); re-exported here
# for the plan's own modules.
from careplan_shared.vocabulary import (
    AGE_BANDS,
    CONSENT_SCOPES,
    EXPRESSED_BY,
    INFORMATION_FORMS,
    INFORMATION_TOPICS,
    PARTICIPANT_KINDS,
    SERVICE_LEVELS,
    AgeBand,
)

__all__ = [
    "AGE_BANDS", "CLOSE_REASONS", "CONSENT_GIVEN_HOW", "CONSENT_SCOPES", "EXPRESSED_BY", "INFORMATION_FORMS",
    "INFORMATION_TOPICS", "PARTICIPANT_KINDS", "SERVICE_LEVELS", "AgeBand", "Consent", "Evaluation",
    "EvaluationStatus", "Goal", "GoalStatus", "InformationRecord", "MeetingStatus", "Participant",
    "TriangleMeeting", "WhatMatters", "age_band_for",
]


class GoalStatus(StrEnum):
    ACTIVE = "active"
    ACHIEVED = "achieved"
    ABANDONED = "abandoned"


class EvaluationStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"


class MeetingStatus(StrEnum):
    REQUESTED = "requested"
    SCHEDULED = "scheduled"
    HELD = "held"
    MISSED = "missed"


# How a patient gave a relative's consent: recorded by the patient in the service ("digital"),
# or by a clinician from what the patient said ("oral") or signed ("written").
CONSENT_GIVEN_HOW = ("digital", "oral", "written")
CLOSE_REASONS = ("goals_reached", "patient_request", "moved", "transferred", "deceased", "other")


def age_band_for(birth_date: date, on: date) -> str:
    years = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    return AgeBand.of_age(years).value


@dataclass
class Goal:
    goal_id: str
    text: str
    expressed_by: str
    target_date: date | None
    status: str = GoalStatus.ACTIVE
    set_at: datetime | None = None
    revisions: int = 0
    closed_reason: str | None = None


@dataclass
class InformationRecord:
    information_id: str
    topic: str
    form: str
    description: str
    adapted_how: str | None
    given_at: datetime


@dataclass
class Participant:
    participant_id: str
    kind: str
    name: str | None
    relation: str | None
    service_level: str | None
    added_at: datetime


@dataclass
class Consent:
    relative_id: str
    scope: list[str]
    valid_from: datetime
    valid_until: datetime | None
    given_at: datetime
    withdrawn_at: datetime | None = None
    given_how: str | None = None

    def covers(self, section: str, at: datetime) -> bool:
        return (
            self.withdrawn_at is None
            and section in self.scope
            and self.valid_from <= at
            and (self.valid_until is None or at < self.valid_until)
        )


@dataclass
class Evaluation:
    evaluation_id: str
    scheduled_for: datetime
    status: str = EvaluationStatus.SCHEDULED
    held_at: datetime | None = None
    participants: list[str] = field(default_factory=list)
    outcome: str | None = None
    patient_took_part: bool | None = None


@dataclass
class TriangleMeeting:
    meeting_id: str
    status: str  # MeetingStatus
    requested_by: str | None = None
    scheduled_for: datetime | None = None
    place: str | None = None
    transport: str | None = None
    companion: str | None = None
    no_show_strategy: str | None = None
    times_missed: int = 0
    outcome: str | None = None


@dataclass
class WhatMatters:
    text: str
    language: str
    recorded_at: datetime
