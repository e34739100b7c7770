"""FHIR R4 end to end, over HTTP against a real plan-service process: a plan lives through a
realistic history, partly posted as FHIR resources by the EPR integration; every bundle any
reader gets (the integration, the patient, the coordinator, a relative, the plan as it was)
and every OperationOutcome validates with ZERO errors in HAPI FHIR's validator (the reference
implementation, infra/fhir, all in one JVM call); what was posted as FHIR comes back in the
export with every value; a relative's bundle holds only what their consent covers.

The validator's warnings and information messages are written to
artifacts/fhir-validation.txt (one line each, counted), for the note."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token
from fhir_validation import assert_valid
from plan_service.adapters.fhir import systems

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
FHIR_JSON = "application/fhir+json"
PATIENT = "pat-synth-fhir-e2e"
RELATIVE, OTHER_RELATIVE = "rel-fhir-a", "rel-fhir-b"
COORDINATOR = "koord-fhir"


def at(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def patient_ref() -> dict:
    return {"identifier": {"system": systems.SID_PATIENT, "value": PATIENT}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A plan-service process with one plan through its whole history; the readers' tokens."""
    from careplan_testing import BIN, ServerProcess, free_port

    data = tmp_path_factory.mktemp("fhir-e2e")
    port = free_port()
    server = ServerProcess([str(BIN / "plan-service"), "serve"],
                           {**os.environ, "CAREPLAN_DATA_DIR": str(data), "PLAN_SERVICE_PORT": str(port),
                            "LOG_LEVEL": "WARNING"}, f"http://127.0.0.1:{port}", data / "plan.log").start()
    key = load_or_create_dev_key(data / "dev-signing.key")

    def auth(role: str, sub: str, **kw) -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_token(key, sub, role, **kw)}

    epr = auth("integration", "epr-1", on_behalf_of="clin-7")
    home_due = at(200)[:10]
    http = requests.Session()
    opened = http.post(f"{server.url}/v1/plans", headers=epr, json={
        "patient_id": PATIENT, "service_level": "municipal", "birth_date": "2007-05-17",
        "occurred_at": at(-300)})
    assert opened.status_code == 201, opened.text
    plan_id = opened.json()["plan_id"]

    def events(*items: dict) -> None:
        r = http.post(f"{server.url}/v1/plans/{plan_id}/events", headers=epr, json=list(items))
        assert r.status_code == 201, r.text

    def fhir(resource: dict, status: int = 201) -> requests.Response:
        r = http.post(f"{server.url}/v1/plans/{plan_id}/fhir", headers={**epr, "Content-Type": FHIR_JSON},
                      data=json.dumps(resource))
        assert r.status_code == status, r.text
        return r

    events(
        {"type": "CoordinatorAssigned", "coordinator_id": COORDINATOR, "name": "Kari Koordinator",
         "service_level": "municipal"},
        {"type": "WhatMattersRecorded", "text": "Å ha en hund og en jobb å gå til", "language": "nb"},
        {"type": "ParticipantAdded", "participant_id": "pro-dps", "kind": "professional", "name": "DPS-behandler",
         "service_level": "specialist"},
        {"type": "ParticipantAdded", "participant_id": RELATIVE, "kind": "relative", "name": "Mor",
         "relation": "mor"},
        {"type": "ParticipantAdded", "participant_id": OTHER_RELATIVE, "kind": "relative", "name": "Bror"},
        {"type": "RelativeConsentGiven", "relative_id": RELATIVE, "scope": ["goals", "meetings"],
         "valid_until": at(2 * 365), "given_how": "oral"},
        {"type": "RelativeConsentGiven", "relative_id": OTHER_RELATIVE, "scope": ["what_matters"],
         "given_how": "written"},
        {"type": "RelativeConsentWithdrawn", "relative_id": OTHER_RELATIVE},
        {"type": "GoalSet", "goal_id": "g-home", "text": "Bo for meg selv", "expressed_by": "patient",
         "target_date": home_due},
        {"type": "GoalRevised", "goal_id": "g-home", "text": "Bo i egen leilighet med oppfølging"},
        {"type": "GoalSet", "goal_id": "g-move", "text": "Flytte til byen", "expressed_by": "clinician"},
        {"type": "GoalAbandoned", "goal_id": "g-move", "reason": "ville heller bli"},
        {"type": "InformationGiven", "information_id": "i-rights", "topic": "rights", "form": "oral",
         "description": "Retten til individuell plan og koordinator", "adapted_how": "enkelt språk, tolk"},
        {"type": "InformationGiven", "information_id": "i-help", "topic": "offered_help", "form": "both",
         "description": "Tilbud om ambulant team"},
        {"type": "EvaluationScheduled", "evaluation_id": "e1", "scheduled_for": at(-100)},
        {"type": "EvaluationHeld", "evaluation_id": "e1", "outcome": "Planen holdes", "patient_took_part": True,
         "participants": ["Kari Koordinator", "Mor"]},
        {"type": "TriangleMeetingRequested", "meeting_id": "m1", "requested_by": "specialist",
         "reason": "overgang til voksen"},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": at(-60), "place": "Kafé ved NAV",
         "transport": "bussbillett", "companion": "storebror", "no_show_strategy": "Ring samme dag"},
        {"type": "TriangleMeetingMissed", "meeting_id": "m1", "note": "kom ikke"},
    )
    before_fhir = at(0)
    # The EPR posts FHIR: a goal achieved, information given in writing, an evaluation booked,
    # the missed meeting held after all, all in one transaction.
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Goal"}, "resource": {
            "resourceType": "Goal", "identifier": [{"system": systems.SID_GOAL, "value": "g-school"}],
            "lifecycleStatus": "active", "description": {"text": "Fullføre videregående"},
            "subject": patient_ref(), "expressedBy": patient_ref() | {"type": "Patient"},
            "target": [{"dueDate": at(300)[:10]}]}},
        {"request": {"method": "POST", "url": "Communication"}, "resource": {
            "resourceType": "Communication", "identifier": [{"system": systems.SID_INFORMATION, "value": "i-choices"}],
            "status": "completed", "subject": patient_ref(), "sent": at(-1),
            "topic": {"coding": [{"system": systems.CS_INFORMATION_TOPIC, "code": "choices"}]},
            "medium": [{"coding": [{"system": systems.CS_PARTICIPATION_MODE, "code": "WRITTEN"}]}],
            "payload": [{"contentString": "Brosjyre om valg av behandlingssted"}],
            "note": [{"text": "lest sammen"}]}},
        {"request": {"method": "POST", "url": "Appointment"}, "resource": {
            "resourceType": "Appointment", "identifier": [{"system": systems.SID_EVALUATION, "value": "e2"}],
            "status": "booked", "start": at(40), "end": at(40.05),
            "serviceType": [{"coding": [{"system": systems.CS_APPOINTMENT_KIND, "code": "evaluation"}]}],
            "participant": [{"actor": patient_ref() | {"type": "Patient"}, "status": "accepted"}]}},
    ]}
    posted = fhir(transaction)
    # A resource is the whole of it, as FHIR's PUT: the goal as it is, now achieved.
    fhir({"resourceType": "Goal", "identifier": [{"system": systems.SID_GOAL, "value": "g-home"}],
          "lifecycleStatus": "completed", "achievementStatus": {"coding": [{
              "system": systems.CS_GOAL_ACHIEVEMENT, "code": "achieved"}]},
          "description": {"text": "Bo i egen leilighet med oppfølging"}, "subject": patient_ref(),
          "expressedBy": patient_ref() | {"type": "Patient"}, "target": [{"dueDate": home_due}]})
    invalid = fhir({"resourceType": "Goal", "lifecycleStatus": "bogus", "description": {"text": "x"},
                    "subject": patient_ref()}, status=422)
    readers = {"integration": epr, "patient": auth("patient", PATIENT), "coordinator": auth("coordinator", COORDINATOR),
               "relative": auth("relative", RELATIVE)}
    yield {"url": server.url, "plan_id": plan_id, "readers": readers, "before_fhir": before_fhir,
           "posted": transaction, "write": posted.json(), "invalid": invalid.json(), "http": http}
    server.stop()


def export(served, reader: str, **query) -> dict:
    r = served["http"].get(f"{served['url']}/v1/plans/{served['plan_id']}/fhir", headers=served["readers"][reader],
                           params=query)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(FHIR_JSON), r.text
    return r.json()


def test_every_bundle_and_outcome_validates_in_hapi_with_zero_errors(served):
    resources = {f"bundle-{reader}.json": export(served, reader) for reader in served["readers"]}
    resources["bundle-integration-as-of.json"] = export(served, "integration", as_of=served["before_fhir"])
    resources["operation-outcome.json"] = served["invalid"]
    resources["posted-transaction.json"] = served["posted"]
    result = assert_valid(resources)  # fails listing every error of every resource
    counted = Counter(f"[{m['severity']}] {m['message'][:160]}" for messages in result.values() for m in messages)
    report = ROOT / "artifacts" / "fhir-validation.txt"
    report.parent.mkdir(exist_ok=True)
    report.write_text("".join(f"{n:4d} x {line}\n" for line, n in counted.most_common()), encoding="utf-8")


def entries(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def by_identifier(bundle: dict, kind: str, value: str) -> dict:
    found = [r for r in entries(bundle, kind) if any(i["value"] == value for i in r.get("identifier", []))]
    assert len(found) == 1, (kind, value)
    return found[0]


def test_what_was_posted_as_fhir_comes_back_with_every_value(served):
    assert [e["type"] for e in served["write"]["events"]] == ["GoalSet", "InformationGiven", "EvaluationScheduled"]
    bundle = export(served, "integration")
    goal = by_identifier(bundle, "Goal", "g-school")
    posted_goal = served["posted"]["entry"][0]["resource"]
    assert goal["description"]["text"] == posted_goal["description"]["text"]
    assert goal["target"][0]["dueDate"] == posted_goal["target"][0]["dueDate"]
    assert goal["lifecycleStatus"] == "active" and goal["expressedBy"]["reference"].startswith("urn:uuid:")
    communication = by_identifier(bundle, "Communication", "i-choices")
    assert communication["payload"][0]["contentString"] == "Brosjyre om valg av behandlingssted"
    assert communication["note"][0]["text"] == "lest sammen"
    assert communication["topic"]["coding"][0]["code"] == "choices"
    assert [c["code"] for m in communication["medium"] for c in m["coding"]] == ["WRITTEN"]
    appointment = by_identifier(bundle, "Appointment", "e2")
    assert appointment["status"] == "booked"
    assert datetime.fromisoformat(appointment["start"]) == datetime.fromisoformat(
        served["posted"]["entry"][2]["resource"]["start"])
    home = by_identifier(bundle, "Goal", "g-home")
    assert home["lifecycleStatus"] == "completed" and home["achievementStatus"]["coding"][0]["code"] == "achieved"


def test_the_invalid_post_says_what_and_where(served):
    issues = served["invalid"]["issue"]
    expressions = {x for i in issues for x in i.get("expression", [])}
    assert {"Goal.identifier", "Goal.lifecycleStatus"} <= expressions, issues


def test_a_relatives_export_holds_only_what_the_consent_covers(served):
    bundle = export(served, "relative")
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Goal", "Appointment"} <= kinds
    assert not kinds & {"QuestionnaireResponse", "Communication", "Consent", "RelatedPerson", "CareTeam"}
    # meetings are covered, evaluations are not
    kinds_of_appointments = {c["code"] for a in entries(bundle, "Appointment") for s in a["serviceType"]
                             for c in s["coding"]}
    assert kinds_of_appointments == {"triangle-meeting"}
    text = json.dumps(bundle, ensure_ascii=False)
    for hidden in (PATIENT, "2007-05-17", "hund", "Retten til individuell plan", "Brosjyre", COORDINATOR, "clin-7",
                   "epr-1", "Bror", "DPS-behandler"):
        assert hidden not in text, hidden
    assert "Bo i egen leilighet" in text and "Kafé ved NAV" in text
