"""GET and POST /v1/plans/{id}/fhir through the app: the same access rules and access log as
the other reads and writes, a relative's bundle holds only what the consent covers, and
whatever is wrong with posted FHIR comes back as an OperationOutcome saying what and where,
with nothing stored."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from plan_service.adapters.fhir import systems

FHIR_JSON = "application/fhir+json"
RELATIVE = "rel-fhir-1"


@pytest.fixture
def plan(client, writer, open_plan):
    """A plan with a goal, information, a relative with consent to goals only, an evaluation."""
    plan_id = open_plan(patient_id="pat-synth-fhir")
    events = [
        {"type": "CoordinatorAssigned", "coordinator_id": "koord-1", "name": "Kari"},
        {"type": "WhatMattersRecorded", "text": "WHAT-MARK hunden min", "language": "nb"},
        {"type": "GoalSet", "goal_id": "g1", "text": "GOAL-MARK jobb", "expressed_by": "patient"},
        {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral",
         "description": "INFO-MARK rettigheter"},
        {"type": "ParticipantAdded", "participant_id": RELATIVE, "kind": "relative", "name": "Mor"},
        {"type": "RelativeConsentGiven", "relative_id": RELATIVE, "scope": ["goals"], "given_how": "oral"},
        {"type": "EvaluationScheduled", "evaluation_id": "e1",
         "scheduled_for": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()},
    ]
    response = client.post(f"/v1/plans/{plan_id}/events", json=events, headers=writer)
    assert response.status_code == 201, response.json
    return plan_id


def bundle_of(response) -> dict:
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == FHIR_JSON
    body = json.loads(response.data)
    assert body["resourceType"] == "Bundle" and body["type"] == "collection"
    return body


def kinds(bundle: dict) -> set[str]:
    return {e["resource"]["resourceType"] for e in bundle["entry"]}


def last_log_entry(app, plan_id: str):
    return app.extensions["careplan"].access_log.entries(str(plan_id), limit=1)[0][1]


def outcome_of(response, status: int) -> list[dict]:
    assert response.status_code == status, response.data[:500]
    assert response.mimetype == FHIR_JSON
    body = json.loads(response.data)
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def test_the_patient_reads_the_whole_plan_as_a_bundle_and_the_read_is_logged(app, client, token, plan):
    response = client.get(f"/v1/plans/{plan}/fhir", headers=token("patient", "pat-synth-fhir"))
    bundle = bundle_of(response)
    assert response.headers["ETag"] == '"8"'
    assert {"Patient", "CarePlan", "CareTeam", "RelatedPerson", "QuestionnaireResponse", "Goal", "Communication",
            "Consent", "Appointment", "Provenance"} <= kinds(bundle)
    text = json.dumps(bundle)
    assert "pat-synth-fhir" in text and "WHAT-MARK" in text and "INFO-MARK" in text
    entry = last_log_entry(app, plan)
    assert (entry.action, entry.result, entry.subject) == ("read_plan_fhir", "allowed", "pat-synth-fhir")


def test_a_relatives_bundle_holds_only_what_the_consent_covers(client, token, plan):
    bundle = bundle_of(client.get(f"/v1/plans/{plan}/fhir", headers=token("relative", RELATIVE)))
    assert "Goal" in kinds(bundle)
    assert not kinds(bundle) & {"QuestionnaireResponse", "Communication", "Appointment", "Consent", "RelatedPerson",
                                "CareTeam"}
    text = json.dumps(bundle)
    assert "GOAL-MARK" in text
    for hidden in ("pat-synth-fhir", "WHAT-MARK", "INFO-MARK", "koord-1", "clin-7", "epr-1"):
        assert hidden not in text, hidden


def test_after_withdrawal_the_relative_gets_nothing_and_the_attempt_is_logged(app, client, token, writer, plan):
    response = client.post(f"/v1/plans/{plan}/events", json={"type": "RelativeConsentWithdrawn",
                                                            "relative_id": RELATIVE}, headers=writer)
    assert response.status_code == 201
    response = client.get(f"/v1/plans/{plan}/fhir", headers=token("relative", RELATIVE))
    assert response.status_code == 403 and b"GOAL-MARK" not in response.data
    entry = last_log_entry(app, plan)
    assert (entry.action, entry.result) == ("read_plan_fhir", "denied")


def test_as_of_exports_the_plan_as_it_was_recorded_then(app, client, writer, plan):
    before = datetime.now(timezone.utc).isoformat()
    response = client.post(f"/v1/plans/{plan}/events", json={"type": "GoalSet", "goal_id": "g-later",
                                                            "text": "LATER-MARK", "expressed_by": "clinician"},
                           headers=writer)
    assert response.status_code == 201
    then = bundle_of(client.get(f"/v1/plans/{plan}/fhir", query_string={"as_of": before}, headers=writer))
    now = bundle_of(client.get(f"/v1/plans/{plan}/fhir", headers=writer))
    assert "LATER-MARK" not in json.dumps(then) and "LATER-MARK" in json.dumps(now)
    assert last_log_entry(app, plan).action == "read_plan_fhir"
    client.get(f"/v1/plans/{plan}/fhir", query_string={"as_of": before}, headers=writer)
    assert last_log_entry(app, plan).action == "read_plan_fhir_as_of"


def test_an_unknown_plan_is_404_and_a_stranger_403(client, token, plan):
    assert client.get(f"/v1/plans/{uuid.uuid4()}/fhir", headers=token()).status_code == 404
    assert client.get(f"/v1/plans/{plan}/fhir", headers=token("patient", "pat-synth-other")).status_code == 403
    assert client.get(f"/v1/plans/{plan}/fhir").status_code == 401


def goal(goal_id: str, text: str, **more) -> dict:
    return {"resourceType": "Goal", "identifier": [{"system": systems.SID_GOAL, "value": goal_id}],
            "lifecycleStatus": "active", "description": {"text": text},
            "subject": {"identifier": {"system": systems.SID_PATIENT, "value": "pat-synth-fhir"}}, **more}


def version(plans, plan_id: str) -> int:
    return plans.get_plan(uuid.UUID(plan_id)).version


def test_a_posted_goal_becomes_a_plan_event_and_comes_back_in_the_export(client, writer, plans, plan):
    response = client.post(f"/v1/plans/{plan}/fhir", data=json.dumps(goal("g-fhir", "FHIR-GOAL-MARK")),
                           content_type=FHIR_JSON, headers=writer)
    assert response.status_code == 201, response.data
    assert [e["type"] for e in response.json["events"]] == ["GoalSet"]
    assert plans.get_plan(uuid.UUID(plan)).goals["g-fhir"].text == "FHIR-GOAL-MARK"
    assert "FHIR-GOAL-MARK" in json.dumps(bundle_of(client.get(f"/v1/plans/{plan}/fhir", headers=writer)))
    again = client.post(f"/v1/plans/{plan}/fhir", data=json.dumps(goal("g-fhir", "FHIR-GOAL-MARK")),
                        content_type=FHIR_JSON, headers=writer)
    assert again.status_code == 200 and again.json["events"] == []  # already so: nothing to record


def test_an_invalid_resource_is_an_operation_outcome_with_its_path_and_nothing_is_stored(client, writer, plans, plan):
    before = version(plans, plan)
    no_identifier = {k: v for k, v in goal("g-x", "x").items() if k != "identifier"}
    issues = outcome_of(client.post(f"/v1/plans/{plan}/fhir", json=no_identifier, headers=writer), 422)
    assert any("Goal.identifier" in i.get("expression", []) for i in issues), issues
    issues = outcome_of(client.post(f"/v1/plans/{plan}/fhir", json={"resourceType": "Patient"}, headers=writer), 422)
    assert issues[0]["code"] == "not-supported"
    assert version(plans, plan) == before


def test_a_bundle_is_all_or_nothing(client, writer, plans, plan):
    before = version(plans, plan)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": goal("g-ok", "OK"), "request": {"method": "POST", "url": "Goal"}},
        {"resource": {**goal("g-bad", "bad"), "lifecycleStatus": "bogus"}, "request": {"method": "POST", "url": "Goal"}},
    ]}
    issues = outcome_of(client.post(f"/v1/plans/{plan}/fhir", json=bundle, headers=writer), 422)
    assert any(x.startswith("Bundle.entry[1]") for i in issues for x in i.get("expression", [])), issues
    assert version(plans, plan) == before and "g-ok" not in plans.get_plan(uuid.UUID(plan)).goals
    # a rule of the plan refusing the second entry: the first is not stored either
    changed = {"resourceType": "Communication", "identifier": [{"system": systems.SID_INFORMATION, "value": "i1"}],
               "status": "completed", "topic": {"coding": [{"system": systems.CS_INFORMATION_TOPIC, "code": "choices"}]},
               "medium": [{"coding": [{"system": systems.CS_PARTICIPATION_MODE, "code": "WRITTEN"}]}],
               "payload": [{"contentString": "something else"}],
               "subject": {"identifier": {"system": systems.SID_PATIENT, "value": "pat-synth-fhir"}}}
    bundle["entry"][1] = {"resource": changed, "request": {"method": "PUT", "url": "Communication"}}
    response = client.post(f"/v1/plans/{plan}/fhir", json=bundle, headers=writer)
    issues = outcome_of(response, response.status_code)
    assert response.status_code in (409, 422) and issues[0]["expression"] == ["Bundle.entry[1].resource"], issues
    assert version(plans, plan) == before and "g-ok" not in plans.get_plan(uuid.UUID(plan)).goals


def test_wrong_body_type_json_and_a_stale_if_match(client, writer, plans, plan):
    assert client.post(f"/v1/plans/{plan}/fhir", data="x", content_type="text/plain", headers=writer).status_code == 415
    issues = outcome_of(client.post(f"/v1/plans/{plan}/fhir", data="{not json", content_type=FHIR_JSON,
                                    headers=writer), 400)
    assert issues[0]["code"] == "structure"
    response = client.post(f"/v1/plans/{plan}/fhir", data=json.dumps(goal("g-late", "x")), content_type=FHIR_JSON,
                           headers={**writer, "If-Match": '"1"'})
    outcome_of(response, 412)
    assert response.headers["ETag"] == f'"{version(plans, plan)}"'


def test_roles_are_checked_as_for_post_events(client, token, plans, plan):
    before = version(plans, plan)
    response = client.post(f"/v1/plans/{plan}/fhir", json=goal("g-rel", "x"), headers=token("relative", RELATIVE))
    assert response.status_code == 403
    response = client.post(f"/v1/plans/{plan}/fhir", json=goal("g-pat", "x"),
                           headers=token("patient", "pat-synth-fhir"))
    assert response.status_code == 403 and outcome_of(response, 403)[0]["code"] == "forbidden"
    assert version(plans, plan) == before
