"""Hardening (issue 9) over HTTP: each finding of the review, as a request that must now be
answered with the right 4xx problem (naming the field) and change nothing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from plan_service.config import Config
from plan_service.web.app import create_app

PROBLEM = "application/problem+json"


def soon(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def problem_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["status"] == status and body["title"]
    return body


def history(plans, plan_id: str) -> list[str]:
    return [type(e).__name__ for e in plans.events.get(uuid.UUID(plan_id))]


def post(client, plan_id, headers, body):
    return client.post(f"/v1/plans/{plan_id}/events", headers=headers, json=body)


# -- who may do what --------------------------------------------------------------------


def test_a_coordinator_cannot_open_a_plan(client, token):
    response = client.post("/v1/plans", headers=token("coordinator", "koord-1"),
                           json={"patient_id": "pat-c", "service_level": "municipal", "age_band": "18-25"})
    problem_of(response, 403)


def test_a_patient_has_one_open_plan_until_it_is_closed(client, writer, token, plans, open_plan):
    first = open_plan(patient_id="pat-one")
    again = client.post("/v1/plans", headers=writer,
                        json={"patient_id": "pat-one", "service_level": "specialist", "age_band": "18-25"})
    problem = problem_of(again, 409)
    assert problem["open_plan_id"] == first and "patient_id" in problem["errors"]
    assert problem["type"].endswith("/open-plan-exists")
    assert post(client, first, writer, {"type": "PlanClosed", "reason": "transferred"}).status_code == 201
    second = client.post("/v1/plans", headers=writer,
                         json={"patient_id": "pat-one", "service_level": "specialist", "age_band": "18-25"})
    assert second.status_code == 201 and second.json["plan_id"] != first
    # the refused attempt told the caller the plan exists: it is in the patient's access log
    log = client.get(f"/v1/plans/{first}/access-log", headers=token("patient", "pat-one")).json["items"]
    assert any(e["action"] == "open_plan" and e["result"] == "rejected" for e in log), log
    # another patient is not held up by it
    assert client.post("/v1/plans", headers=writer, json={
        "patient_id": "pat-two", "service_level": "municipal", "age_band": "18-25"}).status_code == 201


@pytest.mark.parametrize("fields", [
    {"type": "RelativeConsentGiven", "relative_id": "r1", "scope": ["goals"], "given_how": "oral"},
    {"type": "RelativeConsentWithdrawn", "relative_id": "r1"},
])
def test_consent_is_not_recorded_by_the_bare_system_account(client, token, writer, plans, open_plan, fields):
    plan_id = open_plan()
    post(client, plan_id, writer, [
        {"type": "ParticipantAdded", "participant_id": "r1", "kind": "relative"},
        {"type": "RelativeConsentGiven", "relative_id": "r1", "scope": ["goals"], "given_how": "written"}])
    before = history(plans, plan_id)
    problem = problem_of(post(client, plan_id, token("integration", "epr-1"), fields), 403)
    assert "on_behalf_of" in problem["detail"]
    assert history(plans, plan_id) == before


def test_consent_records_how_it_was_given(client, token, writer, open_plan):
    plan_id = open_plan(patient_id="pat-how")
    post(client, plan_id, writer, [{"type": "ParticipantAdded", "participant_id": "r1", "kind": "relative"},
                                   {"type": "ParticipantAdded", "participant_id": "r2", "kind": "relative"}])
    missing = post(client, plan_id, writer, {"type": "RelativeConsentGiven", "relative_id": "r1", "scope": ["goals"]})
    assert "given_how" in problem_of(missing, 422)["errors"]
    assert post(client, plan_id, writer, {"type": "RelativeConsentGiven", "relative_id": "r1",
                                          "scope": ["goals"], "given_how": "written"}).status_code == 201
    assert post(client, plan_id, token("patient", "pat-how"), {
        "type": "RelativeConsentGiven", "relative_id": "r2", "scope": ["goals"]}).status_code == 201
    consents = {c["relative_id"]: c["given_how"] for c in
                client.get(f"/v1/plans/{plan_id}", headers=writer).json["relative_consents"]}
    assert consents == {"r1": "written", "r2": "digital"}


# -- the access log ---------------------------------------------------------------------


def test_a_patient_token_claiming_on_behalf_of_is_logged_as_the_patient(client, token, open_plan):
    plan_id = open_plan(patient_id="pat-obo")
    patient = token("patient", "pat-obo", on_behalf_of="clin-7")
    assert client.get(f"/v1/plans/{plan_id}", headers=patient).status_code == 200
    log = client.get(f"/v1/plans/{plan_id}/access-log", headers=patient).json["items"]
    reads = [e for e in log if e["action"] == "read_plan"]
    assert reads and reads[0]["who"] == "patient pat-obo" and reads[0]["on_behalf_of"] is None
    assert all("clin-7" not in e["who"] for e in log)


def test_no_access_log_entry_for_a_plan_that_does_not_exist(app, client, writer, token):
    log = app.extensions["careplan"].access_log
    for _ in range(5):
        ghost = uuid.uuid4()
        assert client.get(f"/v1/plans/{ghost}", headers=writer).status_code == 404
        assert client.get(f"/v1/plans/{ghost}/timeline", headers=token("relative", "r1")).status_code == 404
        assert post(client, ghost, writer, {"type": "WhatMattersRecorded", "text": "x"}).status_code == 404
        assert log.entries(str(ghost)) == []
    assert len(log._rows) == 0


def test_a_refused_write_reads_in_plain_words(client, token, open_plan):
    plan_id = open_plan(patient_id="pat-words")
    client.post(f"/v1/plans/{plan_id}/events", headers=token("coordinator", "koord-9"),
                json={"type": "WhatMattersRecorded", "text": "x"})
    log = client.get(f"/v1/plans/{plan_id}/access-log", headers=token("patient", "pat-words")).json["items"]
    assert any(e["what"] == "tried to record changes in the plan: not allowed" for e in log), log


# -- contract: numbers, booleans, characters, If-Match ------------------------------------


@pytest.fixture
def sqlite_client(tmp_path, token):
    """The embedded default's store: where an oversized integer reached the driver."""
    app = create_app(Config(data_dir=tmp_path, persistence="sqlite"))
    return app.test_client()


@pytest.mark.parametrize("path, field", [
    ("/v1/plans/{id}/timeline?before=99999999999999999999", "before"),
    ("/v1/plans/{id}/timeline?before=9223372036854775808", "before"),
    ("/v1/feed?after=9223372036854775808", "after"),
    ("/v1/plans/{id}/access-log?before=9223372036854775808", "before"),
])
def test_oversized_integers_are_422_not_500(sqlite_client, tmp_path, path, field):
    from careplan_shared.auth import load_or_create_dev_key, mint_token

    key = load_or_create_dev_key(tmp_path / "dev-signing.key")
    writer = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration", on_behalf_of="clin-7")}
    patient = {"Authorization": "Bearer " + mint_token(key, "pat-big", "patient")}
    opened = sqlite_client.post("/v1/plans", headers=writer, json={
        "patient_id": "pat-big", "service_level": "municipal", "age_band": "18-25"})
    headers = patient if "access-log" in path else writer
    response = sqlite_client.get(path.format(id=opened.json["plan_id"]), headers=headers)
    assert field in problem_of(response, 422)["errors"]


def test_the_last_feed_position_is_refused_not_overflowed(sqlite_client, tmp_path):
    from careplan_shared.auth import load_or_create_dev_key, mint_token

    key = load_or_create_dev_key(tmp_path / "dev-signing.key")
    writer = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration")}
    response = sqlite_client.get("/v1/feed?after=9223372036854775807", headers=writer)
    assert "after" in problem_of(response, 422)["errors"]


def test_a_lone_surrogate_is_refused_where_json_lets_it_in(client, writer):
    """The request-schema parser takes JSON escapes such as \\ud800 (orjson would not): they are
    refused by the fields' validation, not by an encoder deep inside (500)."""
    body = '{"patient_id": "\\ud800", "service_level": "municipal", "age_band": "18-25"}'
    response = client.post("/v1/plans", headers=writer, data=body, content_type="application/json")
    assert "patient_id" in problem_of(response, 422)["errors"]


@pytest.mark.parametrize("claims", [{"sub": "clin-\ud800"}, {"on_behalf_of": "clin-\ud800"},
                                    {"on_behalf_of": "clin\x00-7"}, {"sub": "two\nlines"}])
def test_ids_in_tokens_are_one_line_of_text(client, config, claims):
    """Such an id would reach the access log, which no store can write: the token is refused."""
    import json

    from joserfc import jws, jwt
    from joserfc.jwk import OctKey

    from careplan_shared.auth import load_or_create_dev_key, mint_token

    key = OctKey.import_key(load_or_create_dev_key(config.signing_key_file))
    token = jwt.decode(mint_token(key.raw_value, "epr-1", "integration", on_behalf_of="clin-7"), key).claims
    token.update(claims)
    # jwt.encode would refuse a lone surrogate (it writes UTF-8); JSON's \u escapes carry it
    signed = jws.serialize_compact({"alg": "HS256", "typ": "JWT"}, json.dumps(token).encode(), key)
    response = client.get("/v1/feed", headers={"Authorization": "Bearer " + signed})
    problem_of(response, 401)


@pytest.mark.parametrize("value", ["yes", "1", 1, "on", 0, "off", "true", "false", None])
def test_booleans_are_json_true_or_false_only(client, writer, plans, open_plan, value):
    plan_id = open_plan()
    post(client, plan_id, writer, {"type": "EvaluationScheduled", "evaluation_id": "e1",
                                   "scheduled_for": soon(-1)})
    before = history(plans, plan_id)
    response = post(client, plan_id, writer, {"type": "EvaluationHeld", "evaluation_id": "e1",
                                              "outcome": "ok", "patient_took_part": value})
    assert "patient_took_part" in problem_of(response, 422)["errors"]
    assert history(plans, plan_id) == before


@pytest.mark.parametrize("field, value", [
    ("text", "nul\x00inside"), ("text", "bell\x07"), ("text", "c1\x9b"), ("text", " \n "),
    ("goal_id", "two\nlines"), ("goal_id", "tab\there"), ("goal_id", "  "),
])
def test_control_characters_and_blank_text_are_refused(client, writer, plans, open_plan, field, value):
    plan_id = open_plan()
    event = {"type": "GoalSet", "goal_id": "g1", "text": "Walk", "expressed_by": "patient", field: value}
    assert field in problem_of(post(client, plan_id, writer, event), 422)["errors"]
    assert history(plans, plan_id) == ["PlanOpened"]


def test_line_breaks_in_free_text_are_kept(client, writer, open_plan):
    plan_id = open_plan()
    text = "Første linje\nAndre linje\tmed tab"
    assert post(client, plan_id, writer, {"type": "WhatMattersRecorded", "text": text}).status_code == 201
    assert client.get(f"/v1/plans/{plan_id}", headers=writer).json["what_matters"][0]["text"] == text


def test_if_match_star_means_any_current_version(client, writer, plans, open_plan):
    plan_id = open_plan()
    response = client.post(f"/v1/plans/{plan_id}/events", headers={**writer, "If-Match": "*"},
                           json={"type": "WhatMattersRecorded", "text": "Music"})
    assert response.status_code == 201 and response.json["version"] == 2


# -- times --------------------------------------------------------------------------------


@pytest.mark.parametrize("body, field", [
    ({"occurred_at": "0001-01-01T00:00:00+00:00"}, "occurred_at"),
    ({"occurred_at": "0278-05-01T00:00:00Z"}, "occurred_at"),
    ({"occurred_at": "1899-12-31T23:00:00Z"}, "occurred_at"),
    ({"birth_date": "1899-12-31", "age_band": None}, "birth_date"),
    ({"occurred_at": soon(2)}, "occurred_at"),
])
def test_a_plan_is_not_opened_at_an_impossible_time(client, writer, body, field):
    response = client.post("/v1/plans", headers=writer, json={
        "patient_id": f"pat-{uuid.uuid4().hex[:6]}", "service_level": "municipal", "age_band": "18-25", **body})
    assert field in problem_of(response, 422)["errors"]


SETUP = [
    {"type": "ParticipantAdded", "participant_id": "r1", "kind": "relative"},
    {"type": "EvaluationScheduled", "evaluation_id": "e-future", "scheduled_for": soon(10)},
    {"type": "TriangleMeetingScheduled", "meeting_id": "m-future", "scheduled_for": soon(10),
     "place": "Skolen", "no_show_strategy": "Ring hjem"},
]


@pytest.mark.parametrize("event, status, field", [
    ({"type": "TriangleMeetingMissed", "meeting_id": "m-future"}, 422, "occurred_at"),
    ({"type": "TriangleMeetingHeld", "meeting_id": "m-future"}, 422, "occurred_at"),
    ({"type": "EvaluationHeld", "evaluation_id": "e-future", "outcome": "ok", "patient_took_part": True},
     422, "occurred_at"),
    ({"type": "RelativeConsentGiven", "relative_id": "r1", "scope": ["goals"], "given_how": "oral",
      "valid_until": soon(-1)}, 422, "valid_until"),
    ({"type": "RelativeConsentGiven", "relative_id": "r1", "scope": ["goals"], "given_how": "oral",
      "valid_from": "3000-01-01T00:00:00Z"}, 422, "valid_from"),
    ({"type": "TriangleMeetingScheduled", "meeting_id": "m2", "scheduled_for": "1990-05-01T10:00:00Z",
      "place": "Skolen", "no_show_strategy": "Ring hjem"}, 422, "scheduled_for"),
    ({"type": "EvaluationScheduled", "evaluation_id": "e2", "scheduled_for": "2999-01-01T10:00:00Z"},
     422, "scheduled_for"),
    ({"type": "GoalSet", "goal_id": "g1", "text": "   ", "expressed_by": "patient"}, 422, "text"),
    ({"type": "CoordinatorAssigned", "coordinator_id": "r1"}, 422, "coordinator_id"),
    ({"type": "WhatMattersRecorded", "text": "Musikk", "occurred_at": "1990-01-01T00:00:00Z"}, 422,
     "occurred_at"),
    ({"type": "GoalSet", "goal_id": "g1", "text": "x", "expressed_by": "patient", "target_date": "0001-01-01"},
     422, "target_date"),
])
def test_what_a_clinician_would_expect_to_be_refused(client, writer, plans, open_plan, event, status, field):
    plan_id = open_plan()
    assert post(client, plan_id, writer, SETUP).status_code == 201
    before = history(plans, plan_id)
    problem = problem_of(post(client, plan_id, writer, event), status)
    assert field in problem["errors"], problem
    assert history(plans, plan_id) == before


def test_one_status_per_kind_of_mistake(client, writer, open_plan):
    """Something the plan does not have: 422 plan-rule. A state that forbids it: 409 plan-state."""
    plan_id = open_plan()
    post(client, plan_id, writer, [{"type": "GoalSet", "goal_id": "g1", "text": "x", "expressed_by": "patient"},
                                   {"type": "GoalAchieved", "goal_id": "g1"}])
    unknown = [post(client, plan_id, writer, e) for e in (
        {"type": "GoalAchieved", "goal_id": "g9"}, {"type": "TriangleMeetingHeld", "meeting_id": "m9"},
        {"type": "EvaluationHeld", "evaluation_id": "e9", "outcome": "x", "patient_took_part": True},
        {"type": "RelativeConsentWithdrawn", "relative_id": "r9"})]
    assert {(r.status_code, r.json["type"].rsplit("/", 1)[1]) for r in unknown} == {(422, "plan-rule")}
    state = post(client, plan_id, writer, {"type": "GoalAchieved", "goal_id": "g1"})
    assert (state.status_code, state.json["type"].rsplit("/", 1)[1]) == (409, "plan-state")
