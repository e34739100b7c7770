"""The relay's producer and the readiness check find a restarted broker within a second (issue 13)."""

from __future__ import annotations

import kafka

from plan_service.adapters.kafka import KafkaPublisher
from plan_service.bootstrap import build_relay
from plan_service.config import Config


class FakeProducer:
    made: list[dict] = []

    def __init__(self, **kwargs):
        FakeProducer.made.append(kwargs)

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


def test_the_producer_backs_off_at_most_a_second_and_gives_up_in_seconds(monkeypatch):
    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    FakeProducer.made.clear()
    publisher = KafkaPublisher("k:9092")
    publisher.publish([])
    [settings] = FakeProducer.made
    assert settings["reconnect_backoff_max_ms"] <= 1000
    assert settings["bootstrap_timeout_ms"] <= 5000 and settings["max_block_ms"] <= 5000
    assert settings["request_timeout_ms"] + settings["linger_ms"] <= settings["delivery_timeout_ms"] <= 10000
    assert settings["acks"] == "all" and settings["enable_idempotence"] is True
    assert publisher.ack_timeout > settings["delivery_timeout_ms"] / 1000


def test_the_relay_retries_at_least_every_second(tmp_path):
    config = Config(data_dir=tmp_path, persistence="memory", kafka_bootstrap_servers="k:9092")
    from plan_service.application.plans import PlanApplication

    relay = build_relay(config, PlanApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    assert relay.max_backoff <= 1.0
