"""The HTTP API through Flask's test client, on the in-memory store."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from careplan_shared.events import decode_event
from careplan_shared.problem import PROBLEM_JSON


def stored(plans, plan_id: str) -> list[str]:
    return [type(e).__name__ for e in plans.events.get(uuid.UUID(plan_id))]


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status and body["title"]
    return body


# -- opening a plan ---------------------------------------------------------------------


def test_open_plan_returns_201_location_etag_and_event(client, writer, plans):
    response = client.post("/v1/plans", headers=writer, json={
        "patient_id": "pat-synth-9", "service_level": "specialist", "birth_date": "2008-03-01"})
    assert response.status_code == 201
    plan_id = response.json["plan_id"]
    assert response.headers["Location"] == f"/v1/plans/{plan_id}"
    assert response.headers["ETag"] == '"1"'
    assert response.json["events"][0]["type"] == "PlanOpened"
    plan = client.get(f"/v1/plans/{plan_id}", headers=writer).json
    assert plan["patient_id"] == "pat-synth-9"
    assert plan["birth_date"] == "2008-03-01" and plan["age_band"] in ("15-17", "18-25")
    assert stored(plans, plan_id) == ["PlanOpened"]


@pytest.mark.parametrize("body, field", [
    ({"service_level": "municipal", "age_band": "18-25"}, "patient_id"),
    ({"patient_id": "p", "service_level": "hospital", "age_band": "18-25"}, "service_level"),
    ({"patient_id": "p", "service_level": "municipal", "age_band": "12-13"}, "age_band"),
    ({"patient_id": "p", "service_level": "municipal"}, "age_band"),
    ({"patient_id": "p", "service_level": "municipal", "birth_date": "not-a-date"}, "birth_date"),
    ({"patient_id": "p", "service_level": "municipal", "birth_date": "2999-01-01"}, "birth_date"),
    ({"patient_id": 5, "service_level": "municipal", "age_band": "18-25"}, "patient_id"),
    ({"patient_id": "p", "service_level": "municipal", "age_band": "18-25", "extra": 1}, "extra"),
    ({"patient_id": "p", "service_level": "municipal", "age_band": "18-25",
      "occurred_at": "2999-01-01T00:00:00+00:00"}, "occurred_at"),
    ({"patient_id": "p", "service_level": "municipal", "age_band": "18-25",
      "occurred_at": "2025-01-01T00:00:00"}, "occurred_at"),
])
def test_open_plan_rejects_bad_fields_by_name(client, writer, plans, body, field):
    response = client.post("/v1/plans", headers=writer, json=body)
    problem = assert_problem(response, 422)
    assert field in problem["errors"], problem
    assert plans.recorder.max_notification_id() in (None, 0)


# -- posting events ---------------------------------------------------------------------


def test_every_event_type_one_request_each(client, writer, plans, open_plan, scenario):
    plan_id = open_plan()
    for version, event in enumerate(scenario, start=2):
        response = client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=event)
        assert response.status_code == 201, (event["type"], response.json)
        assert response.json["version"] == version
        assert response.headers["ETag"] == f'"{version}"'
    assert stored(plans, plan_id) == ["PlanOpened"] + [e["type"] for e in scenario]
    plan = client.get(f"/v1/plans/{plan_id}", headers=writer).json
    assert plan["closed"]["reason"] == "goals_reached"
    assert {g["goal_id"]: g["status"] for g in plan["goals"]} == {"g1": "achieved", "g2": "abandoned"}
    assert plan["service_levels"] == ["municipal", "specialist"]
    assert plan["triangle_meetings"][0]["status"] == "held"
    assert plan["triangle_meetings"][0]["times_missed"] == 1
    assert plan["relative_consents"][0]["withdrawn_at"] is not None
    assert plan["evaluations"][0]["status"] == "held"
    # and the recorder is the clinician the EPR acted for
    timeline = client.get(f"/v1/plans/{plan_id}/timeline", headers=writer).json
    assert timeline["items"][0]["recorded_by"] == {"role": "clinician", "id": "clin-7", "via": "epr-1"}


def test_a_list_is_appended_atomically(client, writer, plans, open_plan, scenario):
    plan_id = open_plan()
    response = client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=scenario)
    assert response.status_code == 201
    assert [e["version"] for e in response.json["events"]] == list(range(2, 2 + len(scenario)))
    assert len(stored(plans, plan_id)) == 1 + len(scenario)


def test_one_bad_event_in_a_list_stores_nothing(client, writer, plans, open_plan):
    plan_id = open_plan()
    events = [
        {"type": "GoalSet", "goal_id": "g1", "text": "x", "expressed_by": "patient"},
        {"type": "GoalAchieved", "goal_id": "g1"},
        {"type": "GoalRevised", "goal_id": "g1", "text": "y"},  # achieved: cannot be revised
    ]
    problem = assert_problem(client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=events), 409)
    assert problem["index"] == 2 and "goal_id" in problem["errors"]["2"]
    assert stored(plans, plan_id) == ["PlanOpened"]


def test_schema_errors_name_each_field_and_index(client, writer, plans, open_plan):
    plan_id = open_plan()
    response = client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=[
        {"type": "GoalSet", "goal_id": "g1", "text": "ok", "expressed_by": "patient"},
        {"type": "GoalSet", "goal_id": 7, "expressed_by": "someone"},
        {"type": "Teleported"},
        "not an object",
    ])
    problem = assert_problem(response, 422)
    errors = problem["errors"]
    assert set(errors) == {"1", "2", "3"}
    assert set(errors["1"]) == {"goal_id", "text", "expressed_by"}
    assert "type" in errors["2"]
    assert stored(plans, plan_id) == ["PlanOpened"]


@pytest.mark.parametrize("event, status, field", [
    ({"type": "GoalAchieved", "goal_id": "nope"}, 422, "goal_id"),
    # one status per kind of mistake: what the plan does not have is 422, like an unknown goal
    ({"type": "RelativeConsentWithdrawn", "relative_id": "r9"}, 422, "relative_id"),
    ({"type": "TriangleMeetingMissed", "meeting_id": "m9"}, 422, "meeting_id"),
    ({"type": "EvaluationHeld", "evaluation_id": "e9", "outcome": "x", "patient_took_part": True}, 422,
     "evaluation_id"),
    ({"type": "RelativeConsentGiven", "relative_id": "r9", "scope": ["goals"], "given_how": "oral"}, 422,
     "relative_id"),
    ({"type": "RelativeConsentGiven", "relative_id": "r9", "scope": ["diagnoses"]}, 422, "scope"),
    ({"type": "ParticipantAdded", "participant_id": "x", "kind": "professional"}, 422, "service_level"),
    ({"type": "PlanOpened", "patient_id": "p"}, 422, "type"),
    ({"type": "WhatMattersRecorded", "text": "x" * 4001}, 422, "text"),
    ({"type": "WhatMattersRecorded", "text": "hei", "occurred_at": "tomorrow"}, 422, "occurred_at"),
    ({"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": "2027-01-01T10:00:00Z",
      "place": "x"}, 422, "no_show_strategy"),
])
def test_rule_and_shape_errors(client, writer, plans, open_plan, event, status, field):
    plan_id = open_plan()
    problem = assert_problem(client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=event), status)
    assert field in problem["errors"]
    assert stored(plans, plan_id) == ["PlanOpened"]


def test_no_event_after_the_plan_is_closed(client, writer, plans, open_plan):
    plan_id = open_plan()
    client.post(f"/v1/plans/{plan_id}/events", headers=writer, json={"type": "PlanClosed", "reason": "moved"})
    response = client.post(f"/v1/plans/{plan_id}/events", headers=writer,
                           json={"type": "WhatMattersRecorded", "text": "still here"})
    assert_problem(response, 409)
    assert stored(plans, plan_id) == ["PlanOpened", "PlanClosed"]


@pytest.mark.parametrize("data, content_type, status", [
    (b"{not json", "application/json", 400),
    (b'{"type": "GoalAchieved"', "application/json", 400),
    (b"type=GoalSet", "application/x-www-form-urlencoded", 415),
    (b"[]", "application/json", 422),
    (b"42", "application/json", 422),
    (b"null", "application/json", 422),
])
def test_malformed_bodies(client, writer, plans, open_plan, data, content_type, status):
    plan_id = open_plan()
    response = client.post(f"/v1/plans/{plan_id}/events", headers=writer, data=data,
                           content_type=content_type)
    assert_problem(response, status)
    assert stored(plans, plan_id) == ["PlanOpened"]


def test_oversized_body_is_413(client, writer, plans, open_plan, config):
    plan_id = open_plan()
    big = {"type": "WhatMattersRecorded", "text": "x" * (config.max_body_bytes + 10)}
    assert_problem(client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=big), 413)
    assert stored(plans, plan_id) == ["PlanOpened"]


def test_too_many_events_in_one_request(client, writer, open_plan):
    plan_id = open_plan()
    events = [{"type": "WhatMattersRecorded", "text": f"t{i}"} for i in range(101)]
    assert "_body" in assert_problem(client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=events),
                                     422)["errors"]


def test_unknown_plan_is_404(client, writer):
    missing = uuid.uuid4()
    event = {"type": "WhatMattersRecorded", "text": "x"}
    assert_problem(client.post(f"/v1/plans/{missing}/events", headers=writer, json=event), 404)
    assert_problem(client.get(f"/v1/plans/{missing}", headers=writer), 404)
    assert_problem(client.get(f"/v1/plans/{missing}/timeline", headers=writer), 404)
    assert_problem(client.get("/v1/plans/not-a-uuid", headers=writer), 404)


# -- If-Match and Idempotency-Key -------------------------------------------------------


def test_stale_if_match_is_412_and_stores_nothing(client, writer, plans, open_plan):
    plan_id = open_plan()
    event = {"type": "WhatMattersRecorded", "text": "x"}
    ok = client.post(f"/v1/plans/{plan_id}/events", headers={**writer, "If-Match": '"1"'}, json=event)
    assert ok.status_code == 201
    stale = client.post(f"/v1/plans/{plan_id}/events", headers={**writer, "If-Match": '"1"'}, json=event)
    problem = assert_problem(stale, 412)
    assert problem["current_version"] == 2 and stale.headers["ETag"] == '"2"'
    assert_problem(client.post(f"/v1/plans/{plan_id}/events", headers={**writer, "If-Match": "abc"},
                               json=event), 422)
    assert stored(plans, plan_id) == ["PlanOpened", "WhatMattersRecorded"]


def test_idempotency_key_replay_returns_first_response(client, writer, plans, open_plan):
    plan_id = open_plan()
    headers = {**writer, "Idempotency-Key": "epr-msg-0001"}
    event = {"type": "GoalSet", "goal_id": "g1", "text": "x", "expressed_by": "patient"}
    first = client.post(f"/v1/plans/{plan_id}/events", headers=headers, json=event)
    again = client.post(f"/v1/plans/{plan_id}/events", headers=headers, json=event)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stored(plans, plan_id) == ["PlanOpened", "GoalSet"]
    # the same key for another body is refused, naming the header
    other = client.post(f"/v1/plans/{plan_id}/events", headers=headers,
                        json={"type": "GoalAchieved", "goal_id": "g1"})
    assert "Idempotency-Key" in assert_problem(other, 422)["errors"]
    # keys are per caller: test_idempotency_keys_are_scoped_to_the_caller


def test_idempotency_keys_are_scoped_to_the_caller(client, token, plans, open_plan):
    plan_id = open_plan()
    event = {"type": "WhatMattersRecorded", "text": "x"}
    for sub in ("epr-1", "epr-2"):
        headers = {**token("integration", sub), "Idempotency-Key": "same-key"}
        assert client.post(f"/v1/plans/{plan_id}/events", headers=headers, json=event).status_code == 201
    assert stored(plans, plan_id).count("WhatMattersRecorded") == 2


def test_idempotent_open_plan(client, writer, plans):
    headers = {**writer, "Idempotency-Key": "open-1"}
    body = {"patient_id": "pat-synth-2", "service_level": "municipal", "age_band": "26-64"}
    first = client.post("/v1/plans", headers=headers, json=body)
    again = client.post("/v1/plans", headers=headers, json=body)
    assert first.json == again.json and first.headers["Location"] == again.headers["Location"]
    assert len(list(plans.recorder.select_notifications(start=1, limit=100, topics=[
        "careplan.IndividualPlan.PlanOpened"]))) == 1


def test_bad_idempotency_key_is_422(client, writer, open_plan):
    plan_id = open_plan()
    response = client.post(f"/v1/plans/{plan_id}/events", headers={**writer, "Idempotency-Key": "a b"},
                           json={"type": "WhatMattersRecorded", "text": "x"})
    assert "Idempotency-Key" in assert_problem(response, 422)["errors"]


# -- reads ------------------------------------------------------------------------------


def test_timeline_newest_first_with_cursor(client, writer, open_plan):
    plan_id = open_plan()
    events = [{"type": "WhatMattersRecorded", "text": f"Ting nummer {i}"} for i in range(12)]
    client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=events)
    seen, before = [], None
    while True:
        query = "?limit=5" + (f"&before={before}" if before else "")
        page = client.get(f"/v1/plans/{plan_id}/timeline{query}", headers=writer).json
        seen += [item["version"] for item in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == list(range(13, 0, -1))
    first = client.get(f"/v1/plans/{plan_id}/timeline?limit=1", headers=writer).json["items"][0]
    assert first["summary"] == "What matters to me: “Ting nummer 11”"
    assert first["type"] == "WhatMattersRecorded" and first["details"]["language"] == "nb"
    assert_problem(client.get(f"/v1/plans/{plan_id}/timeline?limit=0", headers=writer), 422)
    assert_problem(client.get(f"/v1/plans/{plan_id}/timeline?limit=x", headers=writer), 422)
    assert_problem(client.get(f"/v1/plans/{plan_id}/timeline?bogus=1", headers=writer), 422)


def test_every_timeline_entry_has_a_summary(client, writer, open_plan, scenario):
    plan_id = open_plan()
    client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=scenario)
    items = client.get(f"/v1/plans/{plan_id}/timeline?limit=200", headers=writer).json["items"]
    assert len(items) == len(scenario) + 1
    assert all(item["summary"] and "None" not in item["summary"] for item in items)


def test_as_of_shows_the_plan_as_it_was(client, writer, open_plan):
    plan_id = open_plan()
    client.post(f"/v1/plans/{plan_id}/events", headers=writer,
                json={"type": "GoalSet", "goal_id": "g1", "text": "x", "expressed_by": "patient"})
    time.sleep(0.01)
    between = datetime.now(timezone.utc)
    time.sleep(0.01)
    client.post(f"/v1/plans/{plan_id}/events", headers=writer, json={"type": "GoalAchieved", "goal_id": "g1"})
    then = client.get(f"/v1/plans/{plan_id}", headers=writer, query_string={"as_of": between.isoformat()})
    assert then.status_code == 200 and then.json["version"] == 2
    assert then.json["goals"][0]["status"] == "active"
    now = client.get(f"/v1/plans/{plan_id}", headers=writer).json
    assert now["version"] == 3 and now["goals"][0]["status"] == "achieved"
    before_open = (between - timedelta(days=1)).isoformat()
    assert_problem(client.get(f"/v1/plans/{plan_id}", headers=writer, query_string={"as_of": before_open}), 404)
    assert_problem(client.get(f"/v1/plans/{plan_id}", headers=writer, query_string={"as_of": "yesterday"}), 422)


def test_as_of_across_snapshots(client, writer, open_plan, config):
    plan_id = open_plan()
    marks = []
    for i in range(3 * config.snapshot_interval):
        client.post(f"/v1/plans/{plan_id}/events", headers=writer,
                    json={"type": "InformationGiven", "information_id": f"i{i}", "topic": "rights",
                          "form": "written", "description": "d"})
        marks.append(datetime.now(timezone.utc))
        time.sleep(0.002)
    for i in (0, config.snapshot_interval, 2 * config.snapshot_interval + 1):
        plan = client.get(f"/v1/plans/{plan_id}", headers=writer, query_string={"as_of": marks[i].isoformat()}).json
        assert len(plan["information_given"]) == i + 1


def test_feed_gives_shared_envelopes_in_log_order(client, writer, token, open_plan, scenario):
    plan_id = open_plan()
    client.post(f"/v1/plans/{plan_id}/events", headers={**writer, "Idempotency-Key": "k"}, json=scenario)
    feed = token("integration", "notification-service")
    page = client.get("/v1/feed?after=0&limit=1000", headers=feed).json
    events = [decode_event(item) for item in page["items"]]
    assert [e.plan_version for e in events] == list(range(1, len(scenario) + 2))
    assert [e.position for e in events] == sorted(e.position for e in events)
    assert page["last_position"] >= events[-1].position
    # free text in the patient's own words stays in plan-service
    flat = str(page["items"])
    assert "Å ha en jobb" not in flat and "Komme i jobb" not in flat
    scheduled = next(e for e in events if e.event_type == "TriangleMeetingScheduled")
    assert scheduled.payload["no_show_strategy"].startswith("Ring samme dag")
    rest = client.get(f"/v1/feed?after={events[3].position}&limit=2", headers=feed).json["items"]
    assert [i["plan_version"] for i in rest] == [5, 6]
    assert_problem(client.get("/v1/feed?after=-1", headers=feed), 422)


# -- authentication and roles -----------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4Iiwicm9sZSI6ImNsaW5pY2lhbiJ9.",
])
def test_missing_or_invalid_token_is_401(client, open_plan, authorization):
    plan_id = open_plan()
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("get", f"/v1/plans/{plan_id}"), ("get", f"/v1/plans/{plan_id}/timeline"),
                         ("post", "/v1/plans"), ("get", "/v1/feed")):
        response = getattr(client, method)(path, headers=headers)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_and_foreign_tokens_are_401(client, open_plan, config):
    from joserfc import jwk, jwt

    plan_id = open_plan()
    from careplan_shared.auth import load_or_create_dev_key, mint_token

    key = load_or_create_dev_key(config.signing_key_file)
    expired = mint_token(key, "c1", "clinician", ttl_seconds=-120)
    foreign = mint_token(b"another key entirely, 32 bytes!!", "c1", "clinician")
    no_role = jwt.encode({"alg": "HS256"}, {"sub": "c1", "iss": "careplan-dev", "aud": "careplan",
                                            "exp": int(time.time()) + 60}, jwk.OctKey.import_key(key))
    for bad in (expired, foreign, no_role):
        assert_problem(client.get(f"/v1/plans/{plan_id}", headers={"Authorization": f"Bearer {bad}"}), 401)


# -- the rest of the surface ------------------------------------------------------------


def test_openapi_documents_every_event_type(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    mapping = spec["components"]["schemas"]["PlanEvent"]["discriminator"]["mapping"]
    assert len(mapping) == 18 and "TriangleMeetingMissed" in mapping
    assert "/v1/plans/{plan_id}/events" in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and b"swagger-ui" in docs.data
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_health_and_unknown_routes(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json["status"] == "ready"
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.delete("/v1/plans"), 405)


def test_security_headers_and_request_id(client):
    response = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-Id"] == "abc-123"
