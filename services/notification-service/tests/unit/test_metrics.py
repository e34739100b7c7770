"""notification-service's /metrics (single process): behind the token; prompts open by reason,
escalations, dead letters and channel deliveries read from the store at scrape time (in memory
and SQLite alike); the consumer's lag; no plan id, recipient or content in any label."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from careplan_shared.metrics import TOKEN_VARIABLE
from notification_service.adapters.memory_store import MemoryStore
from notification_service.application.service import Notifications
from notification_service.bootstrap import bootstrap, make_store
from notification_service.config import Config
from notification_service.domain.deliveries import DeliveryKind, DeliveryStatus
from notification_service.domain.rules import Settings
from notification_service.web.app import create_app
from notification_service.web.metrics import ConsumerLag, store_counts

TOKEN = "notification-metrics-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def no_show(stream, clock):
    s = stream()
    return s, [s.wire("PlanOpened", service_level="municipal", age_band="15-17", birth_date=None),
               s.wire("CoordinatorAssigned", coordinator_id="k-secret", service_level="specialist"),
               s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now(), place="Kafé Hemmelig",
                      transport=None, companion="mor", no_show_strategy="Ring samme dag"),
               s.wire("TriangleMeetingMissed", meeting_id="m1")]


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryStore()
    return make_store(Config(data_dir=tmp_path))


def test_store_counts(store, clock, stream):
    notifications = Notifications(store, Settings(), clock, channels=("webhook",))
    s, events = no_show(stream, clock)
    for e in events:
        notifications.handle("feed", 0, e["position"], e)
    after = max(e["position"] for e in events) + 1  # (positions grow across the test session)
    notifications.handle("feed", 0, after, b"not json")  # dead-lettered
    with store.transaction() as tx:
        prompts = tx.prompts_of_plan(str(s.plan_id))
        [prompt] = [p for p in prompts if p.rule == "no_show_follow_up"]
        tx.mark_escalated(prompt.id, clock.now())
        due = tx.deliveries_due(clock.now() + timedelta(days=1), 10)
        tx.delivery_done(due[0]["id"], DeliveryStatus.SENT, 1, None, None)
        tx.enqueue_delivery(prompt.id, "webhook", DeliveryKind.ESCALATED, clock.now())
    with store.transaction() as tx:
        counts = store_counts(tx)
    expected = Counter(str(p.rule) for p in prompts if p.status == "open")
    assert counts.open_by_reason == expected and expected["no_show_follow_up"] == 1
    assert counts.escalated_by_reason == {"no_show_follow_up": 1}
    assert counts.dead_letters_open == 1
    assert counts.deliveries == {("webhook", "sent"): 1, ("webhook", "pending"): len(due)}


@pytest.fixture
def served(tmp_path, clock, stream, monkeypatch):
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    config = Config(data_dir=tmp_path)
    services = bootstrap(config, clock=clock, with_workers=False)
    return create_app(config, services).test_client(), services


def test_not_public_without_the_token(served):
    client, _ = served
    assert client.get("/metrics").status_code == 401


def test_scrape_names_types_and_no_ids(served, clock, stream):
    client, services = served
    s, events = no_show(stream, clock)
    for e in events:
        services.notifications.handle("feed", 0, e["position"], e)
    assert client.get("/v1/prompts/does-not-exist", headers=AUTH).status_code in (401, 404)
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    types = {name: f.type for name, f in families.items()}
    assert types["notification_prompts_open"] == "gauge"
    assert types["notification_prompt_escalations"] == "counter"
    assert types["notification_dead_letters_open"] == "gauge"
    assert types["careplan_http_requests"] == "counter"
    opened = {s.labels["reason"]: s.value for s in families["notification_prompts_open"].samples}
    assert opened["no_show_follow_up"] == 1 and opened["evaluation_due"] == 0
    assert "notification_consumer_lag_events" not in families  # no consumer in this process
    routes = {s.labels["route"] for s in families["careplan_http_requests"].samples}
    assert "/v1/prompts/<prompt_id>" in routes or "/v1/prompts/<string:prompt_id>" in routes, routes
    for secret in (str(s.plan_id), "k-secret", "Kafé", "does-not-exist"):
        assert secret not in text


class _Feed:
    name = "feed"
    base_url = "http://plan-service.invalid"

    @staticmethod
    def token() -> str:
        return "t"


def test_feed_lag_is_one_value(monkeypatch, tmp_path, clock):
    config = Config(data_dir=tmp_path)
    services = bootstrap(config, clock=clock, with_workers=False)
    services.consumer = type("ConsumerStub", (), {"source": _Feed()})()  # type: ignore[assignment]
    with services.notifications.store.transaction() as tx:
        tx.set_position("feed", 0, 40)
    asked = {}

    class Answer:
        def raise_for_status(self):
            pass

        def json(self):
            return {"items": [], "last_position": 47}

    def get(url, params, headers, timeout):
        asked.update(url=url, params=params)
        return Answer()

    monkeypatch.setattr("requests.get", get)
    [family] = ConsumerLag(config, services).families()
    assert [(s.labels, s.value) for s in family.samples] == [({"source": "feed", "partition": "0"}, 7)]
    assert asked == {"url": "http://plan-service.invalid/v1/feed", "params": {"after": 40, "limit": 1}}
