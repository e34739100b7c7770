"""The delivery outbox: each new or escalated prompt reaches each channel, retried with back-off,
signed, and never once it no longer matters."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from careplan_testing import WebhookReceiver as Receiver
from notification_service.adapters.channels import WebhookChannel, verify_signature
from notification_service.adapters.memory_store import MemoryStore
from notification_service.application.dispatcher import MAX_ATTEMPTS, Dispatcher
from notification_service.application.service import Notifications
from notification_service.domain.rules import Settings

SECRET = b"test-webhook-secret"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def setup(clock, receiver):
    notifications = Notifications(MemoryStore(), Settings(), clock, channels=("webhook",))
    dispatcher = Dispatcher(notifications, {"webhook": WebhookChannel(receiver.url, SECRET)},
                            "https://careplan.example")
    return notifications, dispatcher


def missed(notifications, stream, clock, coordinator="k1"):
    s = stream()
    for e in (s.wire("PlanOpened", service_level="municipal", age_band="26-64", birth_date=None),
              s.wire("CoordinatorAssigned", coordinator_id=coordinator, service_level=None),
              s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now(), place="Kafé Synth",
                     transport=None, companion=None, no_show_strategy="Ring Synth-mor samme dag"),
              s.wire("TriangleMeetingMissed", meeting_id="m1")):
        notifications.handle("feed", 0, e["position"], e)
    return s


def test_a_new_prompt_is_delivered_signed_with_a_link_and_no_plan_content(setup, receiver, stream, clock):
    notifications, dispatcher = setup
    s = missed(notifications, stream, clock)
    assert dispatcher.step() == 1 and dispatcher.step() == 0
    [(headers, body)] = receiver.received
    assert verify_signature(SECRET, headers["X-Careplan-Timestamp"], body, headers["X-Careplan-Signature"])
    message = json.loads(body)
    [prompt] = notifications.inbox("k1")
    assert message["link"] == f"https://careplan.example/prompts/{prompt.id}"
    assert message["reason"] == "no_show_follow_up" and message["plan_id"] == str(s.plan_id)
    assert headers["Idempotency-Key"] == message["delivery_id"]
    assert "Synth" not in body.decode()  # neither the place nor the strategy leaves the service


def test_retries_with_back_off_then_delivers(setup, receiver, stream, clock):
    notifications, dispatcher = setup
    receiver.statuses = [503, 500]
    missed(notifications, stream, clock)
    dispatcher.step()
    assert dispatcher.step() == 0  # not yet: backing off
    clock.advance(timedelta(hours=1))
    dispatcher.step()
    clock.advance(timedelta(hours=1))
    dispatcher.step()
    assert len(receiver.received) == 3
    keys = {h["Idempotency-Key"] for h, _ in receiver.received}
    assert len(keys) == 1  # the same delivery each time: the receiver can deduplicate
    prompt_id = notifications.inbox("k1")[0].id
    with notifications.store.transaction() as tx:
        [delivery] = tx.deliveries_of(prompt_id)
    assert (delivery["status"], delivery["attempts"]) == ("sent", 3)


def test_a_permanent_refusal_is_not_retried(setup, receiver, stream, clock):
    notifications, dispatcher = setup
    receiver.statuses = [400]
    missed(notifications, stream, clock)
    dispatcher.step()
    clock.advance(timedelta(days=1))
    assert dispatcher.step() == 0 and len(receiver.received) == 1


def test_gives_up_after_max_attempts(setup, receiver, stream, clock):
    notifications, dispatcher = setup
    receiver.statuses = [500] * (MAX_ATTEMPTS + 5)
    missed(notifications, stream, clock)
    for _ in range(MAX_ATTEMPTS + 3):
        dispatcher.step()
        clock.advance(timedelta(days=1))
    assert len(receiver.received) == MAX_ATTEMPTS


def test_a_prompt_acknowledged_before_delivery_is_not_sent(setup, receiver, stream, clock):
    notifications, dispatcher = setup
    missed(notifications, stream, clock)
    notifications.acknowledge(notifications.inbox("k1")[0].id, "k1")
    dispatcher.step()
    assert receiver.received == []


def test_escalation_is_delivered_as_escalated(setup, receiver, stream, clock):
    notifications, dispatcher = setup
    missed(notifications, stream, clock)
    dispatcher.step()
    clock.advance(timedelta(days=1))
    notifications.tick()
    dispatcher.step()
    assert [json.loads(b)["escalated"] for _, b in receiver.received] == [False, True]
