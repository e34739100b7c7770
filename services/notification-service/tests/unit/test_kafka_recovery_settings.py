"""How the consumer finds a broker back and keeps its partitions over a restart (issue 13)."""

from __future__ import annotations

import re
import socket

import kafka
import pytest

from careplan_shared.config import ConfigError
from notification_service.adapters.sources import KafkaSource
from notification_service.bootstrap import make_source
from notification_service.config import Config


class FakeConsumer:
    made: list[dict] = []

    def __init__(self, **kwargs):
        FakeConsumer.made.append(kwargs)

    def partitions_for_topic(self, topic):
        return {0, 1}

    def subscribe(self, topics, listener=None):
        pass

    def close(self, autocommit=True):
        pass


def test_the_instance_id_is_host_and_port_by_default_stable_and_can_be_off(tmp_path):
    base = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "CAREPLAN_DATA_DIR": str(tmp_path)}
    default = Config.from_env({**base, "NOTIFICATION_SERVICE_PORT": "8090"}).kafka_instance_id
    assert default == re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) + "-8090"
    assert Config.from_env({**base, "NOTIFICATION_SERVICE_PORT": "8090"}).kafka_instance_id == default
    assert Config.from_env({**base, "NOTIFICATION_SERVICE_PORT": "8091"}).kafka_instance_id != default
    assert Config.from_env({**base, "NOTIFICATION_KAFKA_INSTANCE_ID": "ns-a.1"}).kafka_instance_id == "ns-a.1"
    assert Config.from_env({**base, "NOTIFICATION_KAFKA_INSTANCE_ID": "off"}).kafka_instance_id is None
    with pytest.raises(ConfigError, match="NOTIFICATION_KAFKA_INSTANCE_ID"):
        Config.from_env({**base, "NOTIFICATION_KAFKA_INSTANCE_ID": "has space"})


def test_the_consumer_is_a_static_member_that_reconnects_within_a_second(monkeypatch, tmp_path):
    monkeypatch.setattr(kafka, "KafkaConsumer", FakeConsumer)
    FakeConsumer.made.clear()
    config = Config.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "CAREPLAN_DATA_DIR": str(tmp_path),
                              "NOTIFICATION_KAFKA_INSTANCE_ID": "ns-1"})
    source = make_source(config, b"k" * 32)
    assert isinstance(source, KafkaSource)
    source._connect()
    [settings] = FakeConsumer.made
    assert settings["group_instance_id"] == "ns-1"
    assert settings["reconnect_backoff_max_ms"] <= 1000 and settings["retry_backoff_ms"] <= 100
    assert settings["request_timeout_ms"] <= 10000 and settings["bootstrap_timeout_ms"] <= 5000
    assert settings["enable_auto_commit"] is False
