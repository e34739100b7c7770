"""Every FHIR naming system, code table and extension URL of the plan, written once: the export
(export.py) and the ingest (ingest.py) both use these. Constants and tiny pure helpers only."""

from __future__ import annotations

import uuid
from typing import Any

BASE = "https://careplan.github.io/fhir"

# -- identifier systems -----------------------------------------------------------------
SID_PLAN = f"{BASE}/sid/plan-id"
SID_PATIENT = f"{BASE}/sid/patient-id"
SID_GOAL = f"{BASE}/sid/goal-id"
SID_INFORMATION = f"{BASE}/sid/information-id"
SID_PARTICIPANT = f"{BASE}/sid/participant-id"  # relatives, professionals and the coordinator
SID_EVALUATION = f"{BASE}/sid/evaluation-id"
SID_MEETING = f"{BASE}/sid/meeting-id"
SID_EVENT = f"{BASE}/sid/event-id"  # f"{plan_id}:{version}"

# -- our code systems, each code with its Norwegian display -------------------------------
CS_INFORMATION_TOPIC = f"{BASE}/CodeSystem/information-topic"
CS_CONSENT_SCOPE = f"{BASE}/CodeSystem/consent-scope"
CS_APPOINTMENT_KIND = f"{BASE}/CodeSystem/appointment-kind"
CS_SERVICE_LEVEL = f"{BASE}/CodeSystem/service-level"
CS_CARE_TEAM_ROLE = f"{BASE}/CodeSystem/care-team-role"
CS_PLAN_EVENT = f"{BASE}/CodeSystem/plan-event"  # codes: the event type names, e.g. "GoalSet"

INFORMATION_TOPIC = {
    "offered_help": "Tilbudt hjelp",
    "rights": "Rettigheter",
    "choices": "Valg",
    "other": "Annet",
}
CONSENT_SCOPE = {
    "what_matters": "Hva er viktig for meg",
    "goals": "Mål",
    "information": "Informasjon",
    "participants": "Deltakere",
    "evaluations": "Evalueringer",
    "meetings": "Trekantmøter",
}
APPOINTMENT_EVALUATION = "evaluation"
APPOINTMENT_TRIANGLE_MEETING = "triangle-meeting"
APPOINTMENT_KIND = {
    APPOINTMENT_EVALUATION: "Evaluering av individuell plan",
    APPOINTMENT_TRIANGLE_MEETING: "Trekantmøte",
}
SERVICE_LEVEL = {
    "municipal": "Kommunehelsetjenesten",
    "specialist": "Spesialisthelsetjenesten",
}
CARE_TEAM_ROLE = {
    "coordinator": "Koordinator",
    "professional": "Fagperson",
    "relative": "Pårørende",
}

# -- extensions ---------------------------------------------------------------------------
EXT_CONSENT_GIVEN_HOW = f"{BASE}/StructureDefinition/consent-given-how"  # valueCode oral|written|digital
EXT_MEETING_TRANSPORT = f"{BASE}/StructureDefinition/meeting-transport"  # valueString
EXT_MEETING_COMPANION = f"{BASE}/StructureDefinition/meeting-companion"  # valueString
EXT_MEETING_NO_SHOW_STRATEGY = f"{BASE}/StructureDefinition/meeting-no-show-strategy"  # valueString
EXT_MEETING_REQUESTED_BY = f"{BASE}/StructureDefinition/meeting-requested-by"  # valueCode
EXT_GOAL_REVISIONS = f"{BASE}/StructureDefinition/goal-revisions"  # valueInteger, export only

# -- HL7 terminology used by the mapping ----------------------------------------------------
CS_GOAL_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"
CS_PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
CS_CONSENT_SCOPE_HL7 = "http://terminology.hl7.org/CodeSystem/consentscope"
CS_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CS_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
LOINC = "http://loinc.org"

# Goal status (ours) -> (lifecycleStatus, achievementStatus code, its display)
GOAL_STATUS = {
    "active": ("active", "in-progress", "In Progress"),
    "achieved": ("completed", "achieved", "Achieved"),
    "abandoned": ("cancelled", "not-achieved", "Not Achieved"),
}
# Information form (ours) -> v3-ParticipationMode codes (code, display)
MODE_VERBAL = ("VERBAL", "verbal")
MODE_WRITTEN = ("WRITTEN", "written")
INFORMATION_FORM = {
    "oral": (MODE_VERBAL,),
    "written": (MODE_WRITTEN,),
    "both": (MODE_VERBAL, MODE_WRITTEN),
}
# Appointment.status per our status
EVALUATION_STATUS = {"scheduled": "booked", "held": "fulfilled"}
MEETING_STATUS = {"requested": "proposed", "scheduled": "booked", "held": "fulfilled", "missed": "noshow"}

WHAT_MATTERS_LINK_ID = "what-matters"
WHAT_MATTERS_QUESTION = "Hva er viktig for deg?"


def resource_id(plan_id: str, kind: str) -> str:
    """The stable id of a plan's resource: uuid5 in the plan's namespace of "<kind>" or
    "<kind>/<local id>" (e.g. "patient", "goal/g1", "provenance/7")."""
    return str(uuid.uuid5(uuid.UUID(str(plan_id)), kind))


def ref(id_: str) -> str:
    """The in-bundle reference (and fullUrl) of a resource id."""
    return f"urn:uuid:{id_}"


def coding(system: str, code: str, table: dict[str, str] | None = None) -> dict[str, Any]:
    """A Coding dict, with the display from ``table`` when the code is in it."""
    out: dict[str, Any] = {"system": system, "code": code}
    if table is not None and code in table:
        out["display"] = table[code]
    return out


def code_of(codings: Any, system: str) -> str | None:
    """The first code of ``system`` among a list of Coding dicts (None if none)."""
    for c in codings or ():
        if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str):
            return str(c["code"])
    return None
