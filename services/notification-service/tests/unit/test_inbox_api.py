"""The inbox over HTTP (Flask test client): roles, isolation, acknowledgement, problem+json."""

from __future__ import annotations

import pytest

from careplan_shared.auth import load_or_create_dev_key, mint_token
from notification_service.bootstrap import bootstrap
from notification_service.config import Config
from notification_service.web.app import create_app


@pytest.fixture
def setup(tmp_path, clock, stream):
    config = Config(data_dir=tmp_path)
    services = bootstrap(config, clock=clock, with_workers=False)
    client = create_app(config, services).test_client()
    key = load_or_create_dev_key(config.signing_key_file)

    def auth(role: str, sub: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_token(key, sub, role)}

    s = stream()
    for e in (s.wire("PlanOpened", service_level="municipal", age_band="15-17", birth_date=None),
              s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist"),
              s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now(), place="Kafé",
                     transport=None, companion="mor", no_show_strategy="Ring samme dag"),
              s.wire("TriangleMeetingMissed", meeting_id="m1")):
        services.notifications.handle("feed", 0, e["position"], e)
    return client, auth, s


def test_coordinator_sees_the_follow_up_with_the_strategy(setup):
    client, auth, s = setup
    response = client.get("/v1/prompts?status=open", headers=auth("coordinator", "k1"))
    assert response.status_code == 200
    [prompt] = response.json["items"]
    assert prompt["reason"] == "no_show_follow_up" and prompt["plan_id"] == str(s.plan_id)
    assert prompt["details"]["no_show_strategy"] == "Ring samme dag"
    assert "follow up" in prompt["reason_text"] and prompt["escalated"] is False
    assert prompt["plan_url"].endswith(f"/v1/plans/{s.plan_id}")


def test_another_coordinator_sees_nothing_of_it(setup):
    client, auth, _ = setup
    prompt_id = client.get("/v1/prompts", headers=auth("coordinator", "k1")).json["items"][0]["id"]
    other = auth("coordinator", "k2")
    assert client.get("/v1/prompts", headers=other).json["items"] == []
    for response in (client.get(f"/v1/prompts/{prompt_id}", headers=other),
                     client.post(f"/v1/prompts/{prompt_id}/ack", headers=other)):
        assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_acknowledge(setup):
    client, auth, _ = setup
    k1 = auth("coordinator", "k1")
    prompt_id = client.get("/v1/prompts", headers=k1).json["items"][0]["id"]
    first = client.post(f"/v1/prompts/{prompt_id}/ack", headers=k1)
    assert first.status_code == 200 and first.json["status"] == "acknowledged"
    assert client.post(f"/v1/prompts/{prompt_id}/ack", headers=k1).status_code == 200
    assert client.get("/v1/prompts", headers=k1).json["items"] == []
    assert [p["id"] for p in client.get("/v1/prompts?status=acknowledged", headers=k1).json["items"]] == [prompt_id]


@pytest.mark.parametrize("role", ["integration", "clinician", "patient", "relative"])
def test_only_coordinators_have_an_inbox(setup, role):
    client, auth, _ = setup
    response = client.get("/v1/prompts", headers=auth(role, "k1"))
    assert response.status_code == 403 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eA=="}])
def test_no_valid_token_is_401(setup, headers):
    client, _, _ = setup
    assert client.get("/v1/prompts", headers=headers).status_code == 401
    assert client.post("/v1/prompts/x/ack", headers=headers).status_code == 401


@pytest.mark.parametrize("query, field", [("status=closed", "status"), ("limit=0", "limit"),
                                          ("limit=x", "limit"), ("colour=red", "colour")])
def test_bad_query_is_422_naming_the_field(setup, query, field):
    client, auth, _ = setup
    response = client.get(f"/v1/prompts?{query}", headers=auth("coordinator", "k1"))
    assert response.status_code == 422 and field in response.json["errors"]


def test_health_docs_and_unknown_routes(setup):
    client, _, _ = setup
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz").json
    assert ready["status"] == "ready" and ready["checks"]["prompts"] == 2  # the suggestion (resolved) and the follow-up
    assert "/v1/prompts/{prompt_id}/ack" in client.get("/openapi.json").json["paths"]
    assert client.get("/docs").status_code == 200
    assert client.get("/v1/elsewhere").status_code == 404


def test_readiness_counts_every_open_dead_letter(setup, clock):
    client, _, _ = setup
    services = client.application.extensions["careplan"]
    with services.notifications.store.transaction() as tx:  # more than any listing shows at once
        for position in range(1, 1202):
            tx.dead_letter("kafka", 1, position, None, "undecodable: test", "x", clock.now())
    assert client.get("/readyz").json["checks"]["dead_letters"] == 1201
    with services.notifications.store.transaction() as tx:
        tx._q("UPDATE dead_letters SET status = 'resolved' WHERE position > 1")
    assert client.get("/readyz").json["checks"]["dead_letters"] == 1
