"""The FHIR R4 export of a plan (issue 12, item 1; contract .wip/fhir-mapping.md).

Plans are made by the real application (the API's test client, in-memory store); the export's
input is what a reader really gets: the plan as GET /v1/plans/{id} gives it and the timeline
entries, through the one projection (application/projection.py, application/timeline.py).
Every bundle made here is validated by HAPI FHIR's validator in ONE call (a module fixture).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from careplan_shared.auth import load_or_create_dev_key, mint_token
from fhir_validation import FhirValidatorUnavailable, errors, validate
from plan_service.adapters.fhir import systems
from plan_service.adapters.fhir.export import export_bundle
from plan_service.api import schemas
from plan_service.application import projection, timeline
from plan_service.config import Config
from plan_service.domain.plan import event_type
from plan_service.web.app import create_app

NOW = datetime.now(timezone.utc)
PATIENT = "pat-synth-fhir-1"
BIRTH = date(1999, 3, 14)
COORDINATOR, PROFESSIONAL, LEFT = "koord-kari-1", "pro-per-1", "pro-left-1"
RELATIVE, WITHDRAWN = "rel-randi-1", "rel-rune-1"
CLINICIAN = "clin-fhir-7"
RELATIVE_SCOPE = ["evaluations", "goals", "meetings"]


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def scenario() -> list[dict[str, Any]]:
    """Every kind of content a plan holds, in an order the plan's rules accept (opened 200 days ago)."""
    return [
        {"type": "CoordinatorAssigned", "coordinator_id": COORDINATOR, "name": "Kari Koordinator",
         "service_level": "municipal"},
        {"type": "ParticipantAdded", "participant_id": PROFESSIONAL, "kind": "professional",
         "name": "Per Fagperson", "service_level": "specialist"},
        {"type": "ParticipantAdded", "participant_id": LEFT, "kind": "professional", "name": "Lise Sluttet",
         "service_level": "municipal"},
        {"type": "ParticipantRemoved", "participant_id": LEFT, "reason": "Byttet jobb"},
        {"type": "ParticipantAdded", "participant_id": RELATIVE, "kind": "relative", "name": "Randi Pårørende",
         "relation": "Mor"},
        {"type": "ParticipantAdded", "participant_id": WITHDRAWN, "kind": "relative", "name": "Rune Bror",
         "relation": "Storebror"},
        {"type": "RelativeConsentGiven", "relative_id": RELATIVE, "scope": RELATIVE_SCOPE,
         "valid_until": ago(-365), "given_how": "oral"},
        {"type": "RelativeConsentGiven", "relative_id": WITHDRAWN, "scope": ["information", "what_matters"],
         "given_how": "written"},
        {"type": "RelativeConsentWithdrawn", "relative_id": WITHDRAWN},
        {"type": "WhatMattersRecorded", "text": "Å ha en jobb å gå til og en hund", "language": "nb"},
        {"type": "GoalSet", "goal_id": "g-job", "text": "Komme i deltidsjobb", "expressed_by": "patient",
         "target_date": ago(-180)[:10]},
        {"type": "GoalRevised", "goal_id": "g-job", "text": "Komme i deltidsjobb i butikk", "reason": "Mer konkret"},
        {"type": "GoalAchieved", "goal_id": "g-job"},
        {"type": "GoalSet", "goal_id": "g-move", "text": "Flytte til egen leilighet", "expressed_by": "clinician"},
        {"type": "GoalAbandoned", "goal_id": "g-move", "reason": "Vil bo hjemme et år til"},
        {"type": "GoalSet", "goal_id": "g-sleep", "text": "Sove bedre", "expressed_by": "patient",
         "target_date": ago(-60)[:10]},
        {"type": "InformationGiven", "information_id": "i-rights", "topic": "rights", "form": "oral",
         "description": "Retten til individuell plan og koordinator", "adapted_how": "Enkelt språk, med tolk"},
        {"type": "InformationGiven", "information_id": "i-help", "topic": "offered_help", "form": "written",
         "description": "Brosjyre om ruspoliklinikken"},
        {"type": "InformationGiven", "information_id": "i-choices", "topic": "choices", "form": "both",
         "description": "Valg mellom dagbehandling og poliklinikk"},
        {"type": "EvaluationScheduled", "evaluation_id": "e-spring", "scheduled_for": ago(100)},
        {"type": "EvaluationHeld", "evaluation_id": "e-spring", "outcome": "Planen videreføres",
         "patient_took_part": False, "participants": ["Fastlege Eva", "Sosionom Sam"]},
        {"type": "EvaluationScheduled", "evaluation_id": "e-autumn", "scheduled_for": ago(-30)},
        {"type": "TriangleMeetingRequested", "meeting_id": "m-asked", "requested_by": "patient",
         "reason": "Vil snakke om skole"},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m-next", "scheduled_for": ago(-14),
         "place": "Kafé ved NAV", "transport": "Bussbillett", "companion": "Storebror",
         "no_show_strategy": "Ring samme dag, så hjemmebesøk neste dag"},
        {"type": "TriangleMeetingRequested", "meeting_id": "m-held", "requested_by": "municipal"},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m-held", "scheduled_for": ago(60),
         "place": "DPS", "no_show_strategy": "Ring samme dag"},
        {"type": "TriangleMeetingHeld", "meeting_id": "m-held", "outcome": "Enige om oppfølging"},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m-missed", "scheduled_for": ago(40),
         "place": "Hjemme", "no_show_strategy": "Hjemmebesøk"},
        {"type": "TriangleMeetingMissed", "meeting_id": "m-missed", "note": "Kom ikke"},
    ]


# Values of sections the relative's consent (goals, meetings, evaluations) does not cover,
# and of the record: none may reach the relative's bundle.
HIDDEN_FROM_RELATIVE = [
    PATIENT, BIRTH.isoformat(), CLINICIAN, "epr-1", COORDINATOR, PROFESSIONAL, LEFT, RELATIVE, WITHDRAWN,
    "Kari Koordinator", "Per Fagperson", "Lise Sluttet", "Randi Pårørende", "Rune Bror", "Mor",
    "Å ha en jobb", "Hva er viktig", "Retten til individuell plan", "Enkelt språk", "Brosjyre", "Valg mellom",
    "Avsluttet etter", "Byttet jobb", systems.SID_PATIENT, systems.SID_PARTICIPANT,
    systems.SID_INFORMATION, systems.CS_CONSENT_SCOPE, systems.CS_CARE_TEAM_ROLE,
]


class Reader:
    """The plan application behind a test app, and the way each reader gets the plan."""

    def __init__(self, data_dir: Path):
        config = Config(data_dir=data_dir, persistence="memory", snapshot_interval=5)
        self.app = create_app(config)
        self.client = self.app.test_client()
        self.plans = self.app.extensions["careplan"].plans
        key = load_or_create_dev_key(config.signing_key_file)
        self.headers = lambda role, sub, **kw: {"Authorization": "Bearer " + mint_token(key, sub, role, **kw)}
        self.writer = self.headers("integration", "epr-1", on_behalf_of=CLINICIAN)

    def open(self, events: list[dict[str, Any]], patient: str = PATIENT) -> str:
        opened = self.client.post("/v1/plans", headers=self.writer, json={
            "patient_id": patient, "service_level": "municipal",
            "birth_date": BIRTH.isoformat(), "occurred_at": ago(200)})
        assert opened.status_code == 201, opened.json
        plan_id: str = opened.json["plan_id"]
        if events:
            written = self.client.post(f"/v1/plans/{plan_id}/events", headers=self.writer, json=events)
            assert written.status_code == 201, written.json
        return plan_id

    def record_as_patient(self, plan_id: str, patient: str, event: dict[str, Any]) -> None:
        written = self.client.post(f"/v1/plans/{plan_id}/events", headers=self.headers("patient", patient),
                                   json=event)
        assert written.status_code == 201, written.json

    def over_http(self, plan_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The plan and the timeline (oldest first) as the API gives them to a clinician: ISO strings."""
        plan = self.client.get(f"/v1/plans/{plan_id}", headers=self.writer)
        assert plan.status_code == 200, plan.json
        items: list[dict[str, Any]] = []
        before = None
        while True:
            page = self.client.get(f"/v1/plans/{plan_id}/timeline", headers=self.writer,
                                   query_string={"limit": 200, **({"before": before} if before else {})})
            assert page.status_code == 200, page.json
            items += page.json["items"]
            if (before := page.json["next_before"]) is None:
                return plan.json, items[::-1]

    def projected(self, plan_id: str, sections: frozenset[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The plan and the timeline entries (oldest first) through the projection itself, as the
        application makes them for these sections: entries hold datetime objects."""
        plan = self.plans.get_plan(uuid.UUID(plan_id))
        shown = json.loads(json.dumps(schemas.PlanOut(only=projection.plan_fields(sections)).dump(plan)))
        visible = projection.event_filter(sections)
        entries = [timeline.entry(e, sections) for e in self.plans.plan_events(uuid.UUID(plan_id))
                   if visible(event_type(e))]
        return shown, entries


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The plans (open, closed, just opened) and every reader's export of them."""
    reader = Reader(tmp_path_factory.mktemp("fhir-export"))
    full_id = reader.open(scenario())
    reader.record_as_patient(full_id, PATIENT, {"type": "WhatMattersRecorded", "text": "At mamma har det bra",
                                                "language": "nn"})
    closed_id = reader.open(scenario(), patient="pat-synth-fhir-2")
    closing = {"type": "PlanClosed", "reason": "goals_reached", "note": "Avsluttet etter felles samtale"}
    assert reader.client.post(f"/v1/plans/{closed_id}/events", headers=reader.writer,
                              json=closing).status_code == 201
    moved_id = reader.open([{"type": "PlanClosed", "reason": "moved"}], patient="pat-synth-fhir-3")
    new_id = reader.open([], patient="pat-synth-fhir-4")
    oslo = timezone(timedelta(hours=2))
    edge_id = reader.open([  # text with line breaks, tabs and edge spaces; times in another offset
        {"type": "WhatMattersRecorded", "text": " Første linje\n\tandre linje ", "language": "en-GB",
         "occurred_at": (NOW - timedelta(days=3)).astimezone(oslo).isoformat()},
        {"type": "GoalSet", "goal_id": " g 1 ", "text": "Mål\r\nmed\tfaner", "expressed_by": "patient"},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m/1", "scheduled_for": (NOW + timedelta(days=3)).astimezone(
            oslo).isoformat(), "place": "«Huset» & <kafé>", "no_show_strategy": "Ring\n2 ganger"},
    ], patient="pat-synth-fhir-5")

    inputs: dict[str, tuple[dict[str, Any], list[dict[str, Any]], str]] = {}
    for name, plan_id in (("full", full_id), ("closed", closed_id), ("moved", moved_id), ("new", new_id),
                          ("edge", edge_id)):
        plan, events = reader.over_http(plan_id)
        inputs[name] = plan, events, plan_id
    full_plan = reader.plans.get_plan(uuid.UUID(full_id))
    sections = full_plan.consented_sections(RELATIVE, datetime.now(timezone.utc))
    assert sections == frozenset(RELATIVE_SCOPE)
    plan, events = reader.projected(full_id, sections)
    inputs["relative"] = plan, events, full_id
    inputs["full, entries with datetimes"] = (*reader.projected(full_id, projection.FULL), full_id)

    now = datetime.now(timezone.utc)
    bundles = {name: export_bundle(plan, events, plan_id=plan_id, as_of=None, now=now)
               for name, (plan, events, plan_id) in inputs.items()}
    return {"inputs": inputs, "bundles": bundles, "now": now}


def resources(bundle: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if kind is None or e["resource"]["resourceType"] == kind]


def by_identifier(bundle: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {r["identifier"][0]["value"]: r for r in resources(bundle, kind)}


def references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


# -- what a full plan gives ---------------------------------------------------------------


def test_every_resource_kind_appears_for_a_full_plan_in_the_contracts_order(made):
    bundle = made["bundles"]["full"]
    plan_id = made["inputs"]["full"][2]
    assert bundle["type"] == "collection"
    assert bundle["identifier"] == {"system": systems.SID_PLAN, "value": plan_id}
    kinds = [r["resourceType"] for r in resources(bundle)]
    assert Counter(kinds) == {"Patient": 1, "CarePlan": 1, "CareTeam": 1, "RelatedPerson": 2,
                              "QuestionnaireResponse": 2, "Goal": 3, "Communication": 3, "Consent": 2,
                              "Appointment": 6, "Provenance": 31}
    assert kinds == sorted(kinds, key=["Patient", "CarePlan", "CareTeam", "RelatedPerson", "QuestionnaireResponse",
                                       "Goal", "Communication", "Consent", "Appointment", "Provenance"].index)
    patient, = resources(bundle, "Patient")
    assert patient["identifier"] == [{"system": systems.SID_PATIENT, "value": PATIENT}]
    assert patient["birthDate"] == BIRTH.isoformat()
    assert set(patient) == {"resourceType", "id", "identifier", "birthDate"}


def test_care_plan_and_care_team(made):
    bundle = made["bundles"]["full"]
    plan, _, _ = made["inputs"]["full"]
    care_plan, = resources(bundle, "CarePlan")
    care_team, = resources(bundle, "CareTeam")
    ref = {r["id"]: f"urn:uuid:{r['id']}" for r in resources(bundle)}
    assert (care_plan["status"], care_plan["intent"], care_plan["title"]) == ("active", "plan", "Individuell plan")
    assert care_plan["category"] == [{"text": "Individuell plan (IP)"}]
    assert care_plan["created"] == care_plan["period"]["start"] and "end" not in care_plan["period"]
    assert datetime.fromisoformat(care_plan["created"]) == datetime.fromisoformat(plan["opened_at"])
    assert care_plan["author"] == {"type": "Practitioner", "display": "Kari Koordinator",
                                   "identifier": {"system": systems.SID_PARTICIPANT, "value": COORDINATOR}}
    assert care_plan["careTeam"] == [{"reference": ref[care_team["id"]]}]
    assert [g["reference"] for g in care_plan["goal"]] == [ref[g["id"]] for g in resources(bundle, "Goal")]
    assert [a["reference"]["reference"] for a in care_plan["activity"]] == [
        ref[a["id"]] for a in resources(bundle, "Appointment")]
    latest = [q for q in resources(bundle, "QuestionnaireResponse") if q["language"] == "nn"]
    assert care_plan["supportingInfo"] == [{"reference": ref[latest[0]["id"]]}]
    assert "note" not in care_plan

    assert care_team["status"] == "active"
    roles = {}
    for p in care_team["participant"]:
        codes = {c["code"] for role in p["role"] for c in role["coding"]}
        member = p["member"]
        roles[member.get("identifier", {}).get("value") or member["reference"]] = codes
    relatives = {r["identifier"][0]["value"]: ref[r["id"]] for r in resources(bundle, "RelatedPerson")}
    assert roles == {COORDINATOR: {"coordinator", "municipal"}, PROFESSIONAL: {"professional", "specialist"},
                     relatives[RELATIVE]: {"relative"}, relatives[WITHDRAWN]: {"relative"}}
    assert LEFT not in json.dumps(care_team)
    randi = by_identifier(bundle, "RelatedPerson")[RELATIVE]
    assert randi["name"] == [{"text": "Randi Pårørende"}] and randi["relationship"] == [{"text": "Mor"}]
    assert randi["active"] is True


def test_goals_what_matters_and_information(made):
    bundle = made["bundles"]["full"]
    patient = f"urn:uuid:{resources(bundle, 'Patient')[0]['id']}"
    goals = by_identifier(bundle, "Goal")
    status = {gid: (g["lifecycleStatus"], g["achievementStatus"]["coding"][0]["code"]) for gid, g in goals.items()}
    assert status == {"g-job": ("completed", "achieved"), "g-move": ("cancelled", "not-achieved"),
                      "g-sleep": ("active", "in-progress")}
    job, move, sleep = goals["g-job"], goals["g-move"], goals["g-sleep"]
    assert job["description"] == {"text": "Komme i deltidsjobb i butikk"}
    assert job["target"] == [{"dueDate": ago(-180)[:10]}] and sleep["target"] == [{"dueDate": ago(-60)[:10]}]
    assert job["expressedBy"] == {"reference": patient} and "expressedBy" not in move
    assert job["extension"] == [{"url": systems.EXT_GOAL_REVISIONS, "valueInteger": 1}]
    assert move["statusReason"] == "Vil bo hjemme et år til" and "statusReason" not in job
    assert "target" not in move and job["startDate"] == NOW.date().isoformat()

    answers = resources(bundle, "QuestionnaireResponse")
    assert [(q["language"], q["item"][0]["answer"][0]["valueString"]) for q in answers] == [
        ("nb", "Å ha en jobb å gå til og en hund"), ("nn", "At mamma har det bra")]
    for q in answers:
        assert q["status"] == "completed" and q["item"][0]["text"] == "Hva er viktig for deg?"
        assert q["subject"] == q["author"] == q["source"] == {"reference": patient} and q["authored"]

    info = by_identifier(bundle, "Communication")
    media = {i: [c["coding"][0]["code"] for c in r["medium"]] for i, r in info.items()}
    assert media == {"i-rights": ["VERBAL"], "i-help": ["WRITTEN"], "i-choices": ["VERBAL", "WRITTEN"]}
    rights = info["i-rights"]
    assert rights["topic"] == {"coding": [{"system": systems.CS_INFORMATION_TOPIC, "code": "rights",
                                           "display": "Rettigheter"}], "text": "Rettigheter"}
    assert rights["payload"] == [{"contentString": "Retten til individuell plan og koordinator"}]
    assert rights["note"] == [{"text": "Enkelt språk, med tolk"}] and "note" not in info["i-help"]
    assert rights["recipient"] == [{"reference": patient}] and rights["status"] == "completed"


def test_consents(made):
    bundle = made["bundles"]["full"]
    consents = {c["provision"]["actor"][0]["reference"]["reference"]: c for c in resources(bundle, "Consent")}
    relatives = {r["identifier"][0]["value"]: f"urn:uuid:{r['id']}" for r in resources(bundle, "RelatedPerson")}
    randi, rune = consents[relatives[RELATIVE]], consents[relatives[WITHDRAWN]]
    assert (randi["status"], rune["status"]) == ("active", "inactive")
    assert randi["extension"] == [{"url": systems.EXT_CONSENT_GIVEN_HOW, "valueCode": "oral"}]
    assert rune["extension"][0]["valueCode"] == "written"
    assert [c["coding"][0]["code"] for c in randi["provision"]["code"]] == RELATIVE_SCOPE
    assert randi["provision"]["code"][1]["coding"][0]["display"] == "Mål"
    assert randi["provision"]["actor"][0]["role"]["coding"][0]["code"] == "FAMMEMB"
    assert datetime.fromisoformat(randi["provision"]["period"]["end"]) > made["now"]
    assert datetime.fromisoformat(rune["provision"]["period"]["end"]) <= made["now"]  # withdrawn
    assert randi["policyRule"]["coding"][0]["code"] == "OPTIN"
    assert randi["scope"]["coding"][0]["code"] == "patient-privacy"
    assert randi["category"][0]["coding"][0]["code"] == "59284-0"
    # past its end (the export's now, or as_of): inactive
    plan, events, plan_id = made["inputs"]["full"]
    later = export_bundle(plan, events, plan_id=plan_id, as_of=None, now=NOW + timedelta(days=400))
    assert {c["status"] for c in resources(later, "Consent")} == {"inactive"}
    earlier = export_bundle(plan, events, plan_id=plan_id, as_of=NOW + timedelta(days=400), now=NOW)
    assert {c["status"] for c in resources(earlier, "Consent")} == {"inactive"}
    assert earlier["timestamp"].startswith((NOW + timedelta(days=400)).date().isoformat())


def test_appointments(made):
    bundle = made["bundles"]["full"]
    patient = f"urn:uuid:{resources(bundle, 'Patient')[0]['id']}"
    evaluations = by_identifier(bundle, "Appointment")
    status = {i: a["status"] for i, a in evaluations.items()}
    assert status == {"e-spring": "fulfilled", "e-autumn": "booked", "m-asked": "proposed", "m-next": "booked",
                      "m-held": "fulfilled", "m-missed": "noshow"}
    kinds = {i: a["serviceType"][0]["coding"][0]["code"] for i, a in evaluations.items()}
    assert {i[0]: k for i, k in kinds.items()} == {"e": "evaluation", "m": "triangle-meeting"}
    for a in evaluations.values():
        if "start" in a:
            assert datetime.fromisoformat(a["end"]) - datetime.fromisoformat(a["start"]) == timedelta(minutes=60)
    spring = evaluations["e-spring"]
    assert spring["participant"] == [
        {"actor": {"reference": patient}, "status": "declined"},
        {"actor": {"display": "Fastlege Eva"}, "status": "accepted"},
        {"actor": {"display": "Sosionom Sam"}, "status": "accepted"}]
    assert spring["comment"] == "Planen videreføres"
    assert datetime.fromisoformat(spring["start"]) == datetime.fromisoformat(ago(100))
    asked = evaluations["m-asked"]
    assert "start" not in asked and "end" not in asked and asked["reasonCode"] == [{"text": "Vil snakke om skole"}]
    assert asked["extension"] == [{"url": systems.EXT_MEETING_REQUESTED_BY, "valueCode": "patient"}]
    upcoming = evaluations["m-next"]
    assert {e["url"]: e["valueString"] for e in upcoming["extension"]} == {
        systems.EXT_MEETING_TRANSPORT: "Bussbillett", systems.EXT_MEETING_COMPANION: "Storebror",
        systems.EXT_MEETING_NO_SHOW_STRATEGY: "Ring samme dag, så hjemmebesøk neste dag"}
    assert upcoming["patientInstruction"] == ("Transport: Bussbillett; Følge: Storebror; "
                                              "Hvis du ikke kommer: Ring samme dag, så hjemmebesøk neste dag")
    assert {"actor": {"type": "Location", "display": "Kafé ved NAV"}, "status": "accepted"} in upcoming["participant"]
    assert evaluations["m-held"]["comment"] == "Enige om oppfølging" and "comment" not in evaluations["m-missed"]
    assert evaluations["m-missed"]["participant"][0] == {"actor": {"reference": patient}, "status": "accepted"}


def test_one_provenance_per_event_naming_what_it_changed(made):
    bundle = made["bundles"]["full"]
    _, events, plan_id = made["inputs"]["full"]
    provenances = resources(bundle, "Provenance")
    assert [p["activity"]["coding"][0]["code"] for p in provenances] == [e["type"] for e in events]
    ids = {f"urn:uuid:{r['id']}": r for r in resources(bundle)}
    for p, event in zip(provenances, events, strict=True):
        assert p["entity"] == [{"role": "source", "what": {"identifier": {
            "system": systems.SID_EVENT, "value": f"{plan_id}:{event['version']}"}}}]
        assert datetime.fromisoformat(p["recorded"]) == datetime.fromisoformat(event["recorded_at"])
        assert datetime.fromisoformat(p["occurredDateTime"]) == datetime.fromisoformat(event["occurred_at"])
        assert p["activity"]["text"] == event["summary"]
        targets = [ids[t["reference"]]["resourceType"] for t in p["target"]]
        expected = {"PlanOpened": ["CarePlan"], "CoordinatorAssigned": ["CareTeam", "CarePlan"],
                    "WhatMattersRecorded": ["QuestionnaireResponse"], "InformationGiven": ["Communication"],
                    "RelativeConsentGiven": ["Consent"], "RelativeConsentWithdrawn": ["Consent"],
                    "ParticipantRemoved": ["CareTeam"]}.get(event["type"])
        if expected is None:
            expected = {"Goal": ["Goal"], "Evaluation": ["Appointment"], "Triangle": ["Appointment"]}.get(
                next((k for k in ("Goal", "Evaluation", "Triangle") if event["type"].startswith(k)), ""))
        if event["type"] == "ParticipantAdded":
            expected = ["RelatedPerson"] if event["details"]["kind"] == "relative" else ["CareTeam"]
        assert targets == expected, event["type"]
    by_patient = [p for p in provenances if p["activity"]["coding"][0]["code"] == "WhatMattersRecorded"][-1]
    assert by_patient["agent"] == [{"who": {"reference": f"urn:uuid:{resources(bundle, 'Patient')[0]['id']}",
                                            "type": "Patient", "display": "patient"}}]
    by_clinician = provenances[1]["agent"][0]["who"]
    assert by_clinician == {"type": "Practitioner", "display": "clinician",
                            "identifier": {"system": systems.SID_PARTICIPANT, "value": CLINICIAN}}
    # the n-th WhatMattersRecorded -> the n-th QuestionnaireResponse
    answers = [f"urn:uuid:{q['id']}" for q in resources(bundle, "QuestionnaireResponse")]
    assert [p["target"][0]["reference"] for p in provenances
            if p["activity"]["coding"][0]["code"] == "WhatMattersRecorded"] == answers


def test_closed_plans(made):
    closed = made["bundles"]["closed"]
    care_plan, = resources(closed, "CarePlan")
    assert care_plan["status"] == "completed" and care_plan["period"]["end"]
    assert care_plan["note"] == [{"text": "Avsluttet etter felles samtale"}]
    assert resources(closed, "CareTeam")[0]["status"] == "inactive"
    moved = made["bundles"]["moved"]
    care_plan, = resources(moved, "CarePlan")
    assert care_plan["status"] == "revoked" and "note" not in care_plan
    assert [r["resourceType"] for r in resources(moved)] == ["Patient", "CarePlan", "Provenance", "Provenance"]


def test_text_and_times_as_given(made):
    bundle = made["bundles"]["edge"]
    answer, = resources(bundle, "QuestionnaireResponse")
    assert answer["item"][0]["answer"] == [{"valueString": " Første linje\n\tandre linje "}]
    assert answer["language"] == "en-GB" and answer["authored"].endswith("+02:00")
    goal, = resources(bundle, "Goal")
    assert goal["identifier"][0]["value"] == " g 1 " and goal["description"]["text"] == "Mål\r\nmed\tfaner"
    meeting, = resources(bundle, "Appointment")
    assert meeting["participant"][1]["actor"]["display"] == "«Huset» & <kafé>"
    assert datetime.fromisoformat(meeting["end"]) - datetime.fromisoformat(meeting["start"]) == timedelta(hours=1)


def test_a_new_plan_gives_only_patient_careplan_and_its_opening(made):
    bundle = made["bundles"]["new"]
    assert [r["resourceType"] for r in resources(bundle)] == ["Patient", "CarePlan", "Provenance"]
    care_plan = resources(bundle, "CarePlan")[0]
    assert not {"careTeam", "goal", "activity", "supportingInfo", "author"} & set(care_plan)


# -- references and ids ---------------------------------------------------------------------


def test_every_reference_resolves_inside_its_bundle(made):
    for name, bundle in made["bundles"].items():
        full_urls = [e["fullUrl"] for e in bundle["entry"]]
        assert full_urls == [f"urn:uuid:{e['resource']['id']}" for e in bundle["entry"]], name
        assert len(set(full_urls)) == len(full_urls), name
        for url in full_urls:
            uuid.UUID(url.removeprefix("urn:uuid:"))
        refs = references([e["resource"] for e in bundle["entry"]])
        assert refs, name
        assert set(refs) <= set(full_urls), (name, set(refs) - set(full_urls))


def test_ids_are_stable_across_exports_and_inputs(made):
    plan, events, plan_id = made["inputs"]["full"]
    first = made["bundles"]["full"]
    again = export_bundle(json.loads(json.dumps(plan)), json.loads(json.dumps(events)), plan_id=plan_id,
                          as_of=None, now=NOW + timedelta(minutes=5))
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in first["entry"]]
    assert {**again, "timestamp": None} == {**first, "timestamp": None}
    # the timeline entries as the application makes them (datetime objects) give the same bundle
    assert made["bundles"]["full, entries with datetimes"] == first
    # and the ids are the contract's uuid5 in the plan's namespace
    patient, care_plan = resources(first)[:2]
    assert patient["id"] == str(uuid.uuid5(uuid.UUID(plan_id), "patient")) == systems.resource_id(plan_id, "patient")
    assert care_plan["id"] == str(uuid.uuid5(uuid.UUID(plan_id), "careplan"))
    goal = by_identifier(first, "Goal")["g-job"]
    assert goal["id"] == str(uuid.uuid5(uuid.UUID(plan_id), "goal/g-job"))
    # another plan with the same local ids: other ids
    other = made["bundles"]["closed"]
    assert not {e["fullUrl"] for e in other["entry"]} & {e["fullUrl"] for e in first["entry"]}


# -- a relative's bundle ---------------------------------------------------------------------


def test_a_relative_gets_only_what_their_consent_covers(made):
    bundle = made["bundles"]["relative"]
    plan, events, _ = made["inputs"]["relative"]
    assert not {"patient_id", "birth_date", "participants", "what_matters"} & set(plan)  # the projection's
    assert all("recorded_by" not in e for e in events)
    kinds = Counter(r["resourceType"] for r in resources(bundle))
    assert set(kinds) == {"Patient", "CarePlan", "Goal", "Appointment", "Provenance"}
    assert (kinds["Goal"], kinds["Appointment"]) == (3, 6)
    patient, = resources(bundle, "Patient")
    assert set(patient) == {"resourceType", "id"}
    care_plan, = resources(bundle, "CarePlan")
    assert not {"author", "careTeam", "supportingInfo", "note"} & set(care_plan)
    text = json.dumps(bundle, ensure_ascii=False)
    shown = [value for value in HIDDEN_FROM_RELATIVE if value in text]
    assert not shown, shown
    provenances = resources(bundle, "Provenance")
    assert {p["agent"][0]["who"]["display"] for p in provenances} == {"Helsetjenesten"}
    assert all(set(p["agent"][0]["who"]) == {"display"} for p in provenances)
    activities = {p["activity"]["coding"][0]["code"] for p in provenances}
    assert activities <= {"PlanOpened", "PlanClosed"} | {
        t for t in activities if t.startswith(("Goal", "Evaluation", "TriangleMeeting"))}
    assert len(provenances) == len(events)
    # what the consent covers does reach them
    assert "Komme i deltidsjobb i butikk" in text and "Kafé ved NAV" in text and "Fastlege Eva" in text


# -- nothing invented -------------------------------------------------------------------------

# the words of FHIR itself the mapping writes (codes of required bindings, reference types)
FHIR_WORDS = {"collection", "active", "inactive", "completed", "revoked", "plan", "permit", "source", "accepted",
              "declined", "Practitioner", "Patient", "Location", "Device", "Bundle"}


def strings(value: Any) -> list[tuple[str, Any]]:
    """Every (key, leaf) of a JSON value."""
    if isinstance(value, dict):
        return [(k, v) for k, v in value.items() if not isinstance(v, (dict, list))] + [
            leaf for v in value.values() if isinstance(v, (dict, list)) for leaf in strings(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in strings(v)]
    return []


def all_values(value: Any, keys: bool = False) -> set[Any]:
    if isinstance(value, dict):
        return {x for k, v in value.items() for x in all_values([k, v] if keys else v, keys)}
    if isinstance(value, (list, tuple, set, frozenset)):
        return {x for v in value for x in all_values(v, keys)}
    return {value}


def test_every_value_of_every_bundle_comes_from_its_input_or_the_contract(made):
    """No value is invented: each one is in the reader's input (a time: the same instant, or the
    contract's end 60 minutes later; a date: the day of an input time), a name of the contract
    (systems.py, the export's code tables), a word of FHIR, or an id the export derives."""
    from plan_service.adapters.fhir import export

    contract = {v for module in (systems, export) for v in all_values(
        [value for name, value in vars(module).items() if name.isupper()], keys=True) if isinstance(v, str)}
    for name, (plan, events, plan_id) in made["inputs"].items():
        given = {v for v in all_values(json.loads(json.dumps([plan, events], default=str))) if isinstance(v, str)}
        given |= {v.isoformat() for v in all_values([plan, events, [e["details"] for e in events]])
                  if isinstance(v, (date, datetime))}
        times = set()
        for v in given:
            try:
                times.add(datetime.fromisoformat(v))
            except ValueError:
                continue
        instants = {t for t in times if t.tzinfo is not None}
        days = {t.date().isoformat() for t in times}
        versions = {f"{plan_id}:{e['version']}" for e in events}
        for key, leaf in strings(made["bundles"][name]):
            if not isinstance(leaf, str) or leaf in given or leaf in contract or leaf in FHIR_WORDS:
                continue
            if key in ("id", "fullUrl") or key == "reference" and leaf.startswith("urn:uuid:"):
                continue  # derived ids (checked by the reference and id tests)
            if key == "patientInstruction" or leaf in versions:
                continue  # composed of input values (test_appointments) / the event's version
            if key == "timestamp":
                assert datetime.fromisoformat(leaf) == made["now"], name
                continue
            if len(leaf) == 10 and leaf in days:
                continue
            moment = datetime.fromisoformat(leaf)  # anything else must be a time of the input
            assert moment in instants or (key == "end" and moment - timedelta(minutes=60) in instants), (
                name, key, leaf)


# -- HAPI FHIR's validator --------------------------------------------------------------------


@pytest.fixture(scope="module")
def validated(made) -> dict[str, list[dict[str, str]]]:
    """Every bundle of this module, validated in one call (one JVM). A validator that cannot
    run fails the tests that need it (never a skip)."""
    try:
        return validate(made["bundles"])
    except FhirValidatorUnavailable as e:
        pytest.fail(f"the FHIR validator is needed and could not run: {e}")


@pytest.mark.integration
def test_hapi_finds_no_error_in_any_bundle(made, validated):
    assert set(validated) == set(made["bundles"])
    found = {name: errors(messages) for name, messages in validated.items() if errors(messages)}
    assert not found, "\n".join(f"{name}: [{m['severity']}] {m['location']}: {m['message']}"
                                for name, ms in found.items() for m in ms)
