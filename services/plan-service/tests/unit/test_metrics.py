"""plan-service's /metrics (single process: the default registry): behind the token, requests
by route template (a plan id never in a label), group-commit batches, the relay's lag."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from careplan_shared.metrics import TOKEN_VARIABLE
from plan_service.adapters.positions import MemoryPositions
from plan_service.bootstrap import bootstrap
from plan_service.web.app import create_app
from plan_service.web.metrics import RelayLag

TOKEN = "plan-metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(config, monkeypatch):
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    return create_app(config)


def scrape(client) -> tuple[str, dict]:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict, family: str, sample: str, **labels: str) -> float:
    return sum(s.value for s in families[family].samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def test_not_public_without_the_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 30}).status_code == 401


def test_off_by_default(config, monkeypatch):
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    assert create_app(config).test_client().get("/metrics", headers=AUTH).status_code == 404


def test_requests_by_route_template_and_no_id_or_content_in_labels(client, open_plan, writer):
    _, before = scrape(client)
    plan_id = open_plan(patient_id="pat-metrics-1")
    response = client.post(f"/v1/plans/{plan_id}/events", headers=writer,
                           json=[{"type": "GoalSet", "goal_id": "g1", "text": "Secret words", "expressed_by": "patient"}])
    assert response.status_code in (200, 201), response.json
    assert client.get(f"/v1/plans/{plan_id}", headers=writer).status_code == 200
    text, after = scrape(client)
    route = {"route": "/v1/plans/<uuid:plan_id>", "method": "GET", "status": "200"}
    counted = "careplan_http_requests_total"
    assert value(after, "careplan_http_requests", counted, **route) - value(
        before, "careplan_http_requests", counted, **route) == 1
    assert value(after, "careplan_http_request_duration_seconds", "careplan_http_request_duration_seconds_count",
                 route="/v1/plans/<uuid:plan_id>", method="GET") >= 1
    for secret in (plan_id, "pat-metrics-1", "Secret words", "epr-1", "clin-7"):
        assert secret not in text
    labels = {v for f in after.values() for s in f.samples for v in s.labels.values()}
    assert not [v for v in labels if v.startswith("/") and "<" not in v and v not in ("/metrics",)
                and v.count("/") > 2], labels  # paths only as templates


def test_group_commit_batches_and_latency_are_observed(client, open_plan):
    _, before = scrape(client)
    open_plan()
    open_plan()
    _, after = scrape(client)
    assert after["plan_service_group_commit_batch_size"].type == "histogram"
    assert after["plan_service_group_commit_duration_seconds"].type == "histogram"
    for family in ("plan_service_group_commit_batch_size", "plan_service_group_commit_duration_seconds"):
        assert value(after, family, family + "_count") - value(before, family, family + "_count") >= 1
    assert "plan_service_relay_lag_events" not in after  # no relay configured (no Kafka)


class _Services:
    def __init__(self, plans, positions):
        self.plans = plans
        self.relay = type("RelayStub", (), {"positions": positions})()


def test_relay_position_head_and_lag(config, open_plan, app):
    plans = app.extensions["careplan"].plans
    open_plan()
    open_plan()
    positions = MemoryPositions()
    lag = RelayLag(config, _Services(plans, positions))  # type: ignore[arg-type]
    got = {f.name: f.samples[0].value for f in lag.families()}
    head = plans.recorder.max_notification_id()
    assert got["plan_service_relay_position"] == 0 and got["plan_service_relay_head_position"] == head
    assert got["plan_service_relay_lag_events"] == len(plans.integration_events(0, 100)) == 2
    oldest = plans.integration_events(0, 1)[0].recorded_at
    assert 0 < got["plan_service_relay_lag_seconds"] <= (datetime.now(timezone.utc) - oldest).total_seconds() + 1
    positions.save(head)
    got = {f.name: f.samples[0].value for f in lag.families()}
    assert got["plan_service_relay_lag_events"] == 0 and got["plan_service_relay_lag_seconds"] == 0


def test_without_kafka_no_relay_metrics(config):
    assert list(RelayLag(config, bootstrap(config)).families()) == []
