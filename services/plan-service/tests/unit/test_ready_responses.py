"""Views that answer with a ready JSON response (serialised once by orjson, not dumped through
their flask-smorest response schema) send exactly the bytes the schema's dump would have given:
the same fields, in the same order, the same formats."""

from __future__ import annotations

import uuid

import orjson
from flask import url_for

from careplan_shared.web import JSON_OPTIONS
from plan_service.api import schemas
from plan_service.application import timeline as timeline_view


def dumped(schema, data) -> bytes:
    """What flask-smorest sent before: the schema's dump, through jsonify (the orjson provider)."""
    return orjson.dumps(schema.dump(data), option=JSON_OPTIONS)


def test_the_write_response_is_write_result_s_dump(client, writer, open_plan, scenario):
    plan_id = open_plan()
    for body in (scenario[0], scenario[1:4]):
        response = client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=body)
        assert response.status_code == 201 and response.mimetype == "application/json"
        sent = response.json
        assert response.get_data() == dumped(schemas.WriteResult(), {
            "plan_id": uuid.UUID(sent["plan_id"]), "version": sent["version"], "events": sent["events"]})
        assert list(sent) == ["plan_id", "version", "events"]
        assert all(list(e) == ["version", "type", "event_id"] for e in sent["events"])
        assert response.headers["Location"] == f"/v1/plans/{plan_id}"
        assert response.headers["ETag"] == f'"{sent["version"]}"'
    # a replay: the first answer, byte for byte
    headers = {**writer, "Idempotency-Key": "k-1"}
    first = client.post(f"/v1/plans/{plan_id}/events", headers=headers, json=scenario[4])
    again = client.post(f"/v1/plans/{plan_id}/events", headers=headers, json=scenario[4])
    assert first.status_code == again.status_code == 201
    assert again.get_data() == first.get_data() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_opening_a_plan_answers_the_same_way(client, writer):
    response = client.post("/v1/plans", headers=writer, json={
        "patient_id": "pat-synth-ready", "service_level": "municipal", "age_band": "18-25"})
    assert response.status_code == 201
    sent = response.json
    assert response.get_data() == dumped(schemas.WriteResult(), {**sent, "plan_id": uuid.UUID(sent["plan_id"])})
    assert response.headers["Location"] == f"/v1/plans/{sent['plan_id']}"


def test_a_script_root_is_kept_in_location(client, writer, open_plan, scenario):
    plan_id = open_plan()
    response = client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=scenario[0],
                           base_url="http://localhost/careplan")
    assert response.status_code == 201
    with client.application.test_request_context(base_url="http://localhost/careplan"):
        assert response.headers["Location"] == url_for("plans.Plan", plan_id=uuid.UUID(plan_id))
    assert response.headers["Location"] == f"/careplan/v1/plans/{plan_id}"


def test_the_timeline_is_timeline_page_s_dump(client, writer, token, open_plan, scenario, plans):
    plan_id = open_plan()
    # a relative with consent for goals and meetings, before it is withdrawn
    assert client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=scenario[:11]).status_code == 201
    for who, sections_of in ((writer, None), (token("relative", "r1"), "relative")):
        for query in ("?limit=5", "?limit=5&before=7", "?limit=200"):
            response = client.get(f"/v1/plans/{plan_id}/timeline{query}", headers=who)
            assert response.status_code == 200, response.json
            sent = response.json
            assert list(sent) == ["plan_id", "items", "next_before"]
            # the same page through the schema, from the stored events
            versions = [item["version"] for item in sent["items"]]
            events = {e.originator_version: e for e in plans.events.get(uuid.UUID(plan_id))}
            sections = _sections(client, who, plan_id) if sections_of else None
            entries = [timeline_view.entry(events[v], sections) if sections else timeline_view.entry(events[v])
                       for v in versions]
            assert response.get_data() == dumped(schemas.TimelinePage(), {
                "plan_id": uuid.UUID(plan_id), "items": entries, "next_before": sent["next_before"]})
        if sections_of:
            assert all("recorded_by" not in item for item in sent["items"])
        else:
            assert all("recorded_by" in item for item in sent["items"])


def _sections(client, who, plan_id):
    from plan_service.api.authorization import authorize

    with client.application.test_request_context(headers=who):
        return authorize("timeline.read", uuid.UUID(plan_id)).sections


def test_the_access_log_is_access_log_page_s_dump(client, writer, token, open_plan):
    plan_id = open_plan()
    patient = token("patient", "pat-synth-1")
    client.get(f"/v1/plans/{plan_id}", headers=writer)
    client.get(f"/v1/plans/{plan_id}", headers=token("patient", "someone-else"))
    client.get(f"/v1/plans/{plan_id}/timeline", headers=patient)
    response = client.get(f"/v1/plans/{plan_id}/access-log?limit=2", headers=patient)
    assert response.status_code == 200, response.json
    sent = response.json
    assert response.get_data() == dumped(schemas.AccessLogPage(), {**sent, "plan_id": uuid.UUID(plan_id)})
    assert sent["next_before"] is not None and len(sent["items"]) == 2


def test_the_feed_is_feed_page_s_dump(client, writer, token, open_plan, scenario):
    plan_id = open_plan()
    client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=scenario[:5])
    response = client.get("/v1/feed?after=0&limit=4", headers=token("integration", "notification-service"))
    assert response.status_code == 200, response.json
    sent = response.json
    assert len(sent["items"]) == 4
    assert response.get_data() == dumped(schemas.FeedPage(), sent)
