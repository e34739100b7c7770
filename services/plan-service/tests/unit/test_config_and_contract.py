"""Configuration from the environment, and the integration-event contract."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from marshmallow import ValidationError

from careplan_shared.events import UnknownEventType, decode_event, encode_event
from careplan_shared.events.registry import PAYLOAD_SCHEMAS
from plan_service.application.integration import PLAN_EVENT_TYPES, to_integration_event
from plan_service.application.plans import PlanApplication
from plan_service.config import Config, ConfigError


def test_config_defaults_and_overrides():
    assert Config.from_env({}).port == 8081
    config = Config.from_env({"PLAN_SERVICE_PORT": "9000", "CAREPLAN_DATA_DIR": "/tmp/x",
                              "PLAN_SERVICE_PERSISTENCE": "memory", "POSTGRES_DBNAME": "db"})
    assert (config.port, config.persistence, config.postgres) == (9000, "memory", {})
    assert config.sqlite_file == Path("/tmp/x/plan-service/events.sqlite")
    assert config.signing_key_file == Path("/tmp/x/dev-signing.key")
    assert (config.relay, config.kafka_bootstrap_servers) == ("off", None)


def test_postgres_from_url_and_variables():
    config = Config.from_env({"PLAN_SERVICE_PERSISTENCE": "postgres", "POSTGRES_POOL_SIZE": "20",
                              "PLAN_SERVICE_DATABASE_URL": "postgresql://u:p%40ss@db.local:6543/plans"})
    assert config.postgres["POSTGRES_HOST"] == "db.local" and config.postgres["POSTGRES_PORT"] == "6543"
    assert config.postgres["POSTGRES_PASSWORD"] == "p@ss" and config.postgres["POSTGRES_DBNAME"] == "plans"
    assert config.postgres["POSTGRES_POOL_SIZE"] == "20"


def test_kafka_turns_the_inline_relay_on():
    config = Config.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"})
    assert config.relay == "inline" and config.kafka_topic == "careplan.plan-events.v1"
    assert Config.from_env({"KAFKA_BOOTSTRAP_SERVERS": "x:1", "PLAN_SERVICE_RELAY": "off"}).relay == "off"


@pytest.mark.parametrize("env", [
    {"PLAN_SERVICE_PORT": "eighty"}, {"PLAN_SERVICE_PORT": "70000"},
    {"PLAN_SERVICE_PERSISTENCE": "mongo"}, {"PLAN_SERVICE_WRITE_BATCH_MAX": "0"},
    {"PLAN_SERVICE_RELAY": "inline"}, {"PLAN_SERVICE_RELAY": "sometimes"},
    {"POSTGRES_ENABLE_DB_FUNCTIONS": "y", "PLAN_SERVICE_PERSISTENCE": "postgres"},
    {"PLAN_SERVICE_DATABASE_URL": "mysql://x/y", "PLAN_SERVICE_PERSISTENCE": "postgres"},
])
def test_config_errors_name_the_variable(env):
    named = [k for k in env if k != "PLAN_SERVICE_PERSISTENCE"] or list(env)
    with pytest.raises(ConfigError, match=named[0]):
        Config.from_env(env)


def test_every_plan_event_type_has_a_v1_schema():
    assert set(PLAN_EVENT_TYPES) == {name for name, _ in PAYLOAD_SCHEMAS}
    assert len(PLAN_EVENT_TYPES) == 19


def test_every_scenario_event_round_trips_through_the_contract(scenario):
    app = PlanApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    actor = {"role": "clinician", "id": "c1"}
    from plan_service.api.schemas import load_events

    outcome = app.open_plan(patient_id="pat-synth-1", service_level="municipal",
                            birth_date=datetime(2009, 5, 1).date(), actor=actor,
                            occurred_at=datetime.now(timezone.utc) - timedelta(days=200))
    app.record(outcome.plan_id, load_events(scenario), actor=actor)
    for position, event in enumerate(app.plan_events(outcome.plan_id), start=1):
        wire = encode_event(to_integration_event(event, position))
        back = decode_event(wire)
        assert back.event_type == type(event).__name__
        assert back.plan_version == event.originator_version
        assert set(wire["payload"]) == set(PAYLOAD_SCHEMAS[(back.event_type, 1)]().fields)
        assert "text" not in wire["payload"] and "patient_id" not in wire["payload"]


def test_decode_rejects_bad_envelopes():
    good = {"event_id": str(uuid.uuid4()), "event_type": "GoalAchieved", "schema_version": 1,
            "plan_id": str(uuid.uuid4()), "plan_version": 2, "position": 5,
            "occurred_at": datetime.now(timezone.utc).isoformat(),
            "recorded_at": datetime.now(timezone.utc).isoformat(), "payload": {"goal_id": "g1"}}
    assert decode_event(good).payload == {"goal_id": "g1"}
    with pytest.raises(UnknownEventType):
        decode_event({**good, "event_type": "GoalTeleported"})
    with pytest.raises(UnknownEventType):
        decode_event({**good, "schema_version": 9})
    with pytest.raises(ValidationError):
        decode_event({**good, "payload": {}})
    with pytest.raises(ValidationError):
        decode_event({**good, "plan_version": "two"})
