"""Both services as real processes: plan events posted to plan-service become prompts in the
coordinator's inbox. One contract suite, run over both transports: the HTTP feed (embedded
default) and Kafka (with plan-service on PostgreSQL and its relay)."""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    plan_url: str
    notifications: Any  # ServerProcess
    data_dir: Path
    transport: str
    restart: Any  # () -> new notification-service ServerProcess, same store
    kafka: tuple[str, str] | None = None  # (bootstrap, topic)

    def auth(self, role: str, sub: str, **kw: Any) -> dict[str, str]:
        key = load_or_create_dev_key(self.data_dir / "dev-signing.key")
        return {"Authorization": "Bearer " + mint_token(key, sub, role, **kw)}

    @property
    def writer(self) -> dict[str, str]:
        return self.auth("integration", "epr-1", on_behalf_of="clin-7")

    def open_plan(self, coordinator: str = "k1") -> str:
        r = requests.post(f"{self.plan_url}/v1/plans", headers=self.writer, timeout=10, json={
            "patient_id": f"pat-synth-{uuid.uuid4().hex[:6]}", "service_level": "municipal", "age_band": "18-25"})
        assert r.status_code == 201, r.text
        plan_id = r.json()["plan_id"]
        self.post(plan_id, {"type": "CoordinatorAssigned", "coordinator_id": coordinator,
                            "service_level": "specialist"})
        return plan_id

    def post(self, plan_id: str, events: Any) -> dict[str, Any]:
        r = requests.post(f"{self.plan_url}/v1/plans/{plan_id}/events", headers=self.writer, json=events,
                          timeout=10)
        assert r.status_code == 201, r.text
        return r.json()

    def inbox(self, coordinator: str = "k1", status: str = "open", url: str | None = None) -> list[dict]:
        r = requests.get(f"{url or self.notifications.url}/v1/prompts", params={"status": status, "limit": 500},
                         headers=self.auth("coordinator", coordinator), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def wait_for(self, predicate, timeout: float = 60.0, coordinator: str = "k1", status: str = "open"):
        deadline = time.monotonic() + timeout
        while True:
            items = self.inbox(coordinator, status)
            if predicate(items):
                return items
            if time.monotonic() > deadline:
                ready = {url: requests.get(f"{url}/readyz", timeout=10).text for url in
                         (self.plan_url, self.notifications.url)}
                logs = [line for line in self.notifications.logs().splitlines() if "careplan.http" not in line]
                raise AssertionError(f"not in the inbox within {timeout}s: {[i['reason'] for i in items]}\n"
                                     f"{ready}\n" + "\n".join(logs[-30:]))
            time.sleep(0.05)


@pytest.fixture(params=["feed", "kafka"])
def stack(request, start_plan_service, start_notification_service, data_dir):
    if request.param == "feed":
        plan = start_plan_service()
        env = {"PLAN_SERVICE_URL": plan.url, "NOTIFICATION_TRANSPORT": "feed", "NOTIFICATION_TICK_SECONDS": "1"}
        kafka = None
    else:
        postgres = request.getfixturevalue("postgres_env")
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        topic = request.getfixturevalue("kafka_topic")
        plan = start_plan_service(PLAN_SERVICE_PERSISTENCE="postgres", KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                                  KAFKA_TOPIC=topic, **postgres)
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic, "NOTIFICATION_TRANSPORT": "kafka",
               "NOTIFICATION_KAFKA_GROUP": f"test-{uuid.uuid4().hex[:8]}", "NOTIFICATION_TICK_SECONDS": "1",
               "PLAN_SERVICE_URL": plan.url}
        kafka = (bootstrap, topic)
    notifications = start_notification_service(**env)
    stack = Stack(plan.url, notifications, data_dir, request.param,
                  lambda: start_notification_service(**env), kafka)
    yield stack
    # stop the servers here, before the database schema and the topic go away
    stack.notifications.stop()
    plan.stop()


def meeting(meeting_id: str = "m1") -> dict[str, Any]:
    # Two hours ago (after the plan was opened): a meeting is recorded as missed only once its
    # time has come.
    return {"type": "TriangleMeetingScheduled", "meeting_id": meeting_id,
            "scheduled_for": (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat(),
            "place": "Kafeen ved biblioteket", "transport": "bussbillett", "companion": "storebror",
            "no_show_strategy": "Koordinator ringer samme dag, hjemmebesøk dagen etter"}


def test_missed_triangle_meeting_becomes_a_follow_up_with_the_agreed_strategy(stack):
    plan_id = stack.open_plan()
    # 18-25 with both service levels and no meeting yet: a triangle meeting is suggested
    stack.wait_for(lambda items: [i["reason"] for i in items] == ["triangle_meeting_suggested"])
    stack.post(plan_id, meeting())
    stack.wait_for(lambda items: items == [])  # scheduled: the suggestion resolved itself
    stack.post(plan_id, {"type": "TriangleMeetingMissed", "meeting_id": "m1"})
    [prompt] = stack.wait_for(lambda items: len(items) == 1)
    assert prompt["reason"] == "no_show_follow_up" and prompt["plan_id"] == plan_id
    assert prompt["details"]["no_show_strategy"] == "Koordinator ringer samme dag, hjemmebesøk dagen etter"
    assert stack.inbox("k2") == []  # another coordinator sees none of it
    ack = requests.post(f"{stack.notifications.url}/v1/prompts/{prompt['id']}/ack",
                        headers=stack.auth("coordinator", "k1"), timeout=10)
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    assert stack.inbox() == []


def test_consumer_killed_mid_stream_misses_nothing_and_repeats_nothing(stack):
    plans = [stack.open_plan() for _ in range(12)]
    for plan_id in plans:
        stack.post(plan_id, [meeting(), {"type": "TriangleMeetingMissed", "meeting_id": "m1"}])
    stack.wait_for(lambda items: len(items) >= 3, timeout=60, status="all")
    stack.notifications.stop(signal.SIGKILL)
    for plan_id in plans[:4]:  # more happens while it is down
        stack.post(plan_id, [meeting("m2"), {"type": "TriangleMeetingMissed", "meeting_id": "m2"}])
    stack.notifications = stack.restart()
    # per plan: the suggestion (resolved when m1 was scheduled) and one follow-up per missed meeting
    everything = stack.wait_for(lambda items: len(items) >= 12 * 2 + 4, timeout=90, status="all")
    time.sleep(1.5)  # a little longer, to catch any late duplicate
    everything = stack.inbox(status="all")
    keys = [(i["plan_id"], i["reason"], i["subject"]) for i in everything]
    assert len(keys) == len(set(keys)) == 12 * 2 + 4
    follow_ups = [i for i in everything if i["reason"] == "no_show_follow_up"]
    assert len(follow_ups) == 16 and all(i["status"] == "open" for i in follow_ups)


@pytest.mark.parametrize("stack", ["kafka"], indirect=True)  # the feed cannot carry poison
def test_a_poison_message_is_dead_lettered_and_the_next_event_processed(stack):
    from kafka import KafkaProducer

    bootstrap, topic = stack.kafka
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all")
    for value in (b"\x00not json at all", b'{"event_type": "PlanOpened", "schema_version": 9}'):
        producer.send(topic, key=b"poison", value=value).get(timeout=30)
    producer.close()
    plan_id = stack.open_plan()
    stack.post(plan_id, [meeting(), {"type": "TriangleMeetingMissed", "meeting_id": "m1"}])
    stack.wait_for(lambda items: any(i["reason"] == "no_show_follow_up" for i in items))
    ready = requests.get(f"{stack.notifications.url}/readyz", timeout=10).json()
    assert ready["checks"]["dead_letters"] == 2


def test_the_coordinator_is_told_by_webhook_signed_and_without_plan_content(start_plan_service,
                                                                           start_notification_service, data_dir):
    from careplan_testing import WebhookReceiver
    from notification_service.adapters.channels import verify_signature

    receiver = WebhookReceiver()
    try:
        plan = start_plan_service()
        notifications = start_notification_service(  # the feed, whatever KAFKA_* the run exports
            PLAN_SERVICE_URL=plan.url, NOTIFICATION_TRANSPORT="feed", NOTIFICATION_WEBHOOK_URL=receiver.url,
            NOTIFICATION_WEBHOOK_SECRET="e2e-secret", NOTIFICATION_PUBLIC_URL="https://inbox.example")
        stack = Stack(plan.url, notifications, data_dir, "feed", None)
        plan_id = stack.open_plan()
        stack.post(plan_id, [meeting(), {"type": "TriangleMeetingMissed", "meeting_id": "m1"}])
        deadline = time.monotonic() + 30
        while not any(b"no_show_follow_up" in body for _, body in receiver.received):
            assert time.monotonic() < deadline, notifications.logs()[-2000:]
            time.sleep(0.1)
        headers, body = next((h, b) for h, b in receiver.received if b"no_show_follow_up" in b)
        assert verify_signature(b"e2e-secret", headers["X-Careplan-Timestamp"], body, headers["X-Careplan-Signature"])
        assert body.decode().count("https://inbox.example/prompts/") == 1  # the prompt's page
        assert "Kafeen" not in body.decode() and "hjemmebesøk" not in body.decode()
    finally:
        receiver.close()
