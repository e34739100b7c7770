"""Fixtures shared by plan-service's test layers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from careplan_shared.auth import load_or_create_dev_key, mint_token
from plan_service.config import Config
from plan_service.web.app import create_app


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """In-memory event store, a fresh dev key: the unit layer."""
    return Config(data_dir=tmp_path, persistence="memory", snapshot_interval=5)


@pytest.fixture
def app(config: Config):
    return create_app(config)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def plans(app):
    """The PlanApplication behind the app, to look at what was really stored."""
    return app.extensions["careplan"].plans


@pytest.fixture
def token(config: Config) -> Callable[..., dict[str, str]]:
    """token(role, sub) -> Authorization header for that caller."""
    key = load_or_create_dev_key(config.signing_key_file)

    def make(role: str = "integration", sub: str = "epr-1", **kwargs) -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_token(key, sub, role, **kwargs)}

    return make


@pytest.fixture
def writer(token) -> dict[str, str]:
    return token("integration", "epr-1", on_behalf_of="clin-7")


@pytest.fixture
def open_plan(client, writer) -> Callable[..., str]:
    """open_plan(**fields) -> plan id (a synthetic patient by default)."""

    patients = iter(range(1, 1_000_000))

    def make(**fields) -> str:
        # A patient has one open plan: each call opens one for a new synthetic patient, opened
        # OPENED_DAYS_AGO so that SCENARIO's meetings and evaluations lie between then and now.
        body = {"patient_id": f"pat-synth-{next(patients)}", "service_level": "municipal",
                "age_band": "18-25", "occurred_at": ago(OPENED_DAYS_AGO)}
        body.update(fields)
        response = client.post("/v1/plans", json=body, headers=writer)
        assert response.status_code == 201, response.json
        return response.json["plan_id"]

    return make


OPENED_DAYS_AGO = 200


def ago(days: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()


def make_scenario() -> list[dict]:
    """One valid event of every posted type, in an order the plan's rules accept, for a plan
    opened OPENED_DAYS_AGO (times relative to now, so the rules about time hold any day)."""
    return [
        {"type": "CoordinatorAssigned", "coordinator_id": "koord-1", "name": "Kari Koordinator",
         "service_level": "municipal"},
        {"type": "WhatMattersRecorded", "text": "Å ha en jobb å gå til og en hund", "language": "nb"},
        {"type": "GoalSet", "goal_id": "g1", "text": "Komme i jobb", "expressed_by": "patient",
         "target_date": ago(-180)[:10]},
        {"type": "GoalRevised", "goal_id": "g1", "text": "Komme i deltidsjobb", "reason": "realistic"},
        {"type": "GoalSet", "goal_id": "g2", "text": "Flytte", "expressed_by": "clinician"},
        {"type": "GoalAbandoned", "goal_id": "g2", "reason": "no longer wanted"},
        {"type": "GoalAchieved", "goal_id": "g1"},
        {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral",
         "description": "Retten til individuell plan og koordinator", "adapted_how": "enkelt språk"},
        {"type": "ParticipantAdded", "participant_id": "r1", "kind": "relative", "name": "Mor",
         "relation": "mother"},
        {"type": "ParticipantAdded", "participant_id": "pro1", "kind": "professional",
         "name": "DPS-behandler", "service_level": "specialist"},
        {"type": "RelativeConsentGiven", "relative_id": "r1", "scope": ["goals", "meetings"],
         "valid_until": ago(-3 * 365), "given_how": "oral"},
        {"type": "RelativeConsentWithdrawn", "relative_id": "r1"},
        {"type": "ParticipantRemoved", "participant_id": "pro1", "reason": "treatment ended"},
        {"type": "EvaluationScheduled", "evaluation_id": "e1", "scheduled_for": ago(100)},
        {"type": "EvaluationHeld", "evaluation_id": "e1", "outcome": "Plan kept", "patient_took_part": True,
         "participants": ["koord-1", "r1"]},
        {"type": "TriangleMeetingRequested", "meeting_id": "m1", "requested_by": "municipal"},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": ago(60),
         "place": "Kafé ved NAV", "transport": "bussbillett", "companion": "storebror",
         "no_show_strategy": "Ring samme dag, så hjemmebesøk neste dag"},
        {"type": "TriangleMeetingMissed", "meeting_id": "m1", "note": "did not come"},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": ago(30),
         "place": "Hjemme", "no_show_strategy": "Ring samme dag"},
        {"type": "TriangleMeetingHeld", "meeting_id": "m1", "outcome": "agreed on follow-up"},
        {"type": "PlanClosed", "reason": "goals_reached"},
    ]


@pytest.fixture
def scenario() -> list[dict]:
    return make_scenario()
