"""Value objects held in the plan's state. Plain dataclasses so snapshots can store them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

SERVICE_LEVELS = ("municipal", "specialist")
AGE_BANDS = ("0-14", "15-17", "18-25", "26-64", "65+")
EXPRESSED_BY = ("patient", "clinician")
INFORMATION_TOPICS = ("offered_help", "rights", "choices", "other")
INFORMATION_FORMS = ("oral", "written", "both")
PARTICIPANT_KINDS = ("relative", "professional")
# Sections of a plan a relative's consent can cover (Råd 11: scope agreed with the patient).
CONSENT_SCOPES = ("what_matters", "goals", "information", "participants", "evaluations", "meetings")
# How a patient gave a relative's consent: recorded by the patient in the service ("digital"),
# or by a clinician from what the patient said ("oral") or signed ("written").
CONSENT_GIVEN_HOW = ("digital", "oral", "written")
CLOSE_REASONS = ("goals_reached", "patient_request", "moved", "transferred", "deceased", "other")


def age_band_for(birth_date: date, on: date) -> str:
    years = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    if years < 15:
        return "0-14"
    if years < 18:
        return "15-17"
    if years <= 25:
        return "18-25"
    if years < 65:
        return "26-64"
    return "65+"


@dataclass
class Goal:
    goal_id: str
    text: str
    expressed_by: str
    target_date: date | None
    status: str = "active"  # active | achieved | abandoned
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
    status: str = "scheduled"  # scheduled | held
    held_at: datetime | None = None
    participants: list[str] = field(default_factory=list)
    outcome: str | None = None
    patient_took_part: bool | None = None


@dataclass
class TriangleMeeting:
    meeting_id: str
    status: str  # requested | scheduled | held | missed
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
