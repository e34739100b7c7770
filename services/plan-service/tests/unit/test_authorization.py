"""The authorisation matrix, generated from the policy table in code: every role x every
endpoint of both services x own/other plan. Then consent scope, expiry and withdrawal, and the
access log as the patient sees it."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta, timezone

import pytest

from notification_service.api.prompts import INBOX_ROLES
from plan_service.domain.policy import POLICY

# A plan with one caller of each kind who belongs to it ("own") and one who does not ("other").
CALLERS = {
    ("integration", "own"): "epr-1", ("integration", "other"): "epr-2",
    ("clinician", "own"): "clin-part", ("clinician", "other"): "clin-stranger",
    ("coordinator", "own"): "koord-1", ("coordinator", "other"): "koord-2",
    ("patient", "own"): "pat-own", ("patient", "other"): "pat-other",
    ("relative", "own"): "rel-ok", ("relative", "other"): "rel-none",
}
SETUP = [
    {"type": "CoordinatorAssigned", "coordinator_id": "koord-1", "service_level": "municipal"},
    {"type": "ParticipantAdded", "participant_id": "clin-part", "kind": "professional", "service_level": "specialist"},
    {"type": "ParticipantAdded", "participant_id": "rel-ok", "kind": "relative", "relation": "mother"},
    {"type": "ParticipantAdded", "participant_id": "rel-none", "kind": "relative", "relation": "uncle"},
    {"type": "RelativeConsentGiven", "relative_id": "rel-ok", "scope": ["goals", "meetings"], "given_how": "written"},
    {"type": "GoalSet", "goal_id": "g1", "text": "Synthetic goal", "expressed_by": "patient"},
    {"type": "WhatMattersRecorded", "text": "Synthetic private words"},
]
ENDPOINTS = {  # action -> (method, path template, body, status when allowed)
    "plan.read": ("get", "/v1/plans/{id}", None, 200),
    "timeline.read": ("get", "/v1/plans/{id}/timeline", None, 200),
    "plan.write": ("post", "/v1/plans/{id}/events", {"type": "WhatMattersRecorded", "text": "more"}, 201),
    "access_log.read": ("get", "/v1/plans/{id}/access-log", None, 200),
    "plan.create": ("post", "/v1/plans", {"patient_id": "pat-x", "service_level": "municipal", "age_band": "18-25"}, 201),
    "feed.read": ("get", "/v1/feed", None, 200),
}
assert set(ENDPOINTS) == set(POLICY), "every action in the table has an endpoint here"


def expected(action: str, role: str, which: str) -> bool:
    rule = POLICY[action].get(role)
    return rule == "any" or (rule is not None and which == "own")


@pytest.fixture
def plan(client, writer):
    response = client.post("/v1/plans", headers=writer, json={
        "patient_id": "pat-own", "service_level": "municipal", "age_band": "18-25"})
    plan_id = response.json["plan_id"]
    assert client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=SETUP).status_code == 201
    return plan_id


MATRIX = [(a, r, w) for a, (r, w) in itertools.product(ENDPOINTS, CALLERS)]


@pytest.mark.parametrize("action, role, which", MATRIX, ids=[f"{a}-{r}-{w}" for a, r, w in MATRIX])
def test_plan_service_matrix(client, token, plan, action, role, which):
    method, path, body, ok = ENDPOINTS[action]
    response = getattr(client, method)(path.format(id=plan), headers=token(role, CALLERS[(role, which)]), json=body)
    assert response.status_code == (ok if expected(action, role, which) else 403), response.get_data(as_text=True)


@pytest.fixture
def inbox_client(tmp_path):
    from notification_service.bootstrap import bootstrap
    from notification_service.config import Config
    from notification_service.web.app import create_app

    config = Config(data_dir=tmp_path / "n")
    return create_app(config, bootstrap(config, with_workers=False)).test_client(), config


@pytest.mark.parametrize("role", ["integration", "clinician", "coordinator", "patient", "relative"])
@pytest.mark.parametrize("method, path, ok", [("get", "/v1/prompts", 200), ("post", "/v1/prompts/{id}/ack", 404)])
def test_notification_service_matrix(inbox_client, role, method, path, ok):
    from careplan_shared.auth import load_or_create_dev_key, mint_token

    client, config = inbox_client
    headers = {"Authorization": "Bearer " + mint_token(load_or_create_dev_key(config.signing_key_file), "x", role)}
    response = getattr(client, method)(path.format(id="someone-elses"), headers=headers)
    # a coordinator gets their (empty) inbox, and 404 for a prompt that is not theirs
    assert response.status_code == (ok if role in INBOX_ROLES else 403)


# -- consent ------------------------------------------------------------------------------

def test_a_relative_sees_only_the_consented_sections(client, token, plan):
    relative = token("relative", "rel-ok")
    shown = client.get(f"/v1/plans/{plan}", headers=relative).json
    assert "goals" in shown and "triangle_meetings" in shown
    assert "what_matters" not in shown and "participants" not in shown and "patient_id" not in shown
    timeline = client.get(f"/v1/plans/{plan}/timeline", headers=relative).json["items"]
    assert {i["type"] for i in timeline} == {"GoalSet", "PlanOpened"}
    assert "Synthetic private words" not in str(timeline) + str(shown)


def test_withdrawal_takes_effect_on_the_next_request(client, token, writer, plan):
    relative = token("relative", "rel-ok")
    assert client.get(f"/v1/plans/{plan}", headers=relative).status_code == 200
    client.post(f"/v1/plans/{plan}/events", headers=token("patient", "pat-own"),
                json={"type": "RelativeConsentWithdrawn", "relative_id": "rel-ok"})
    assert client.get(f"/v1/plans/{plan}", headers=relative).status_code == 403
    assert client.get(f"/v1/plans/{plan}/timeline", headers=relative).status_code == 403


def test_expiry_takes_effect_without_any_event(client, token, plan):
    until = datetime.now(timezone.utc) + timedelta(seconds=1)
    patient = token("patient", "pat-own")
    response = client.post(f"/v1/plans/{plan}/events", headers=patient, json={
        "type": "RelativeConsentGiven", "relative_id": "rel-none", "scope": ["goals"],
        "valid_until": until.isoformat()})
    assert response.status_code == 201  # the patient gives consent themselves
    relative = token("relative", "rel-none")
    assert client.get(f"/v1/plans/{plan}", headers=relative).status_code == 200
    time.sleep(max(0.0, (until - datetime.now(timezone.utc)).total_seconds()) + 0.05)
    assert client.get(f"/v1/plans/{plan}", headers=relative).status_code == 403


def test_a_patient_records_only_their_own_words_and_consents(client, token, plan):
    patient = token("patient", "pat-own")
    ok = client.post(f"/v1/plans/{plan}/events", headers=patient,
                     json={"type": "WhatMattersRecorded", "text": "Mine own words"})
    assert ok.status_code == 201
    timeline = client.get(f"/v1/plans/{plan}/timeline?limit=1", headers=patient).json["items"]
    assert timeline[0]["recorded_by"] == {"role": "patient", "id": "pat-own"}
    refused = client.post(f"/v1/plans/{plan}/events", headers=patient,
                          json={"type": "GoalAchieved", "goal_id": "g1"})
    assert refused.status_code == 403 and "GoalAchieved" in refused.json["detail"]


# -- the access log -----------------------------------------------------------------------

def test_the_patient_sees_who_read_their_plan(client, token, plan):
    client.get(f"/v1/plans/{plan}", headers=token("clinician", "clin-part"))
    client.get(f"/v1/plans/{plan}/timeline", headers=token("coordinator", "koord-2"))  # refused
    client.get(f"/v1/plans/{plan}", headers=token("integration", "epr-1", on_behalf_of="clin-9"))
    log = client.get(f"/v1/plans/{plan}/access-log", headers=token("patient", "pat-own")).json["items"]
    whats = [(e["who"], e["what"], e["result"]) for e in log]
    assert ("clinician clin-part", "read the plan", "allowed") in whats
    assert ("coordinator koord-2", "tried to read the plan's timeline: not allowed", "denied") in whats
    assert ("clinician clin-9 (through the EPR system epr-1)", "read the plan", "allowed") in whats
    assert log == sorted(log, key=lambda e: -e["id"])  # newest first
    writes = [e for e in log if e["action"] == "write_events"]
    assert writes and writes[0]["result"] == "allowed"
    # the coordinator reads it too; a relative may not
    assert client.get(f"/v1/plans/{plan}/access-log", headers=token("coordinator", "koord-1")).status_code == 200
    assert client.get(f"/v1/plans/{plan}/access-log", headers=token("relative", "rel-ok")).status_code == 403
