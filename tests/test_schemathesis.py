"""Schemathesis over both OpenAPI documents, in process (each app's WSGI callable).

Every operation of plan-service and notification-service gets generated requests, valid and
invalid (positive and negative data; the coverage phase's boundary values; fuzzing), with a
bearer token that gets past authentication. Every built-in check runs, errors included: no 5xx,
each status documented, each body (problem+json too) and each documented header as the
document says, invalid input refused and valid input taken.

Part of the requests go to a plan (or prompt) that exists, so more than the 404 path runs:
two cases in three with a well-formed ``plan_id`` go to an existing plan (a fresh plan
for POST .../events, so the writes meet an open plan at version 1), a generated ``prompt_id``
by one of the coordinator's prompts.

Bounded for CI: SCHEMATHESIS_MAX_EXAMPLES (default 25) fuzzed cases per operation, plus the
coverage phase's cases, derandomized (the same requests every run), about 20 s. The long
version: ``make fuzz`` (2000 cases per operation, a fresh seed it prints; ``make fuzz SEED=N``
repeats a run; SCHEMATHESIS_SEED=N does the same here).

Turned down, not off: the auth-failure limit (generated requests would otherwise turn into
429s; tested on its own below) and, for the two plan writes, which statuses count as accepting
valid data (PLAN_RULE_STATUSES).
"""

from __future__ import annotations

import os
import tempfile
import uuid
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from schemathesis import Case

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_shared.authentication import AuthFailureLimiter, install_auth_failure_limit

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
SEED = os.environ.get("SCHEMATHESIS_SEED")

# Statuses a schema-valid request may still get. Beyond schemathesis's defaults (2xx, 401,
# 403, 404, 409, 429): a rule of the plan that no JSON schema can say (an event about a goal
# the plan does not have, `occurred_at` in the future, an age band that does not fit the date
# of birth) is 422; an If-Match that is not the plan's version is 412; an Idempotency-Key
# reused with another body is 422.
PLAN_RULE_STATUSES = ["2xx", "401", "403", "404", "409", "412", "422", "429"]


def _config(positive_overrides: dict[str, list[str]]) -> schemathesis.Config:
    settings: dict[str, Any] = {
        "suppress-health-check": ["all"],  # about generation speed, not about the API
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none",
                       "with-security-parameters": False,  # the token is given, not generated
                       "deterministic": SEED is None},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        "checks": {"enabled": True},
        "operations": [
            {"include-path": path, "checks": {"positive_data_acceptance": {"expected-statuses": statuses}}}
            for path, statuses in positive_overrides.items()
        ],
    }
    if SEED is not None:
        settings["seed"] = int(SEED)
    return schemathesis.Config.from_dict(settings)


def _no_auth_limit(app) -> None:
    # Generated requests fail authentication on purpose (no token, a generated one): with the
    # limit on, the in-process client (one address) would get only 429 after 20 of them. The
    # 401 -> 429 path is tested on its own below.
    install_auth_failure_limit(app, AuthFailureLimiter(limit=0))


def _document_only(create_app: Callable[..., Any], config: Any) -> Any:
    """The app without services: enough to serve /openapi.json at import time, touching no
    store (the requests go to the real app of each test's fixture)."""
    return create_app(config, SimpleNamespace())


def _pick(case: Case, name: str) -> bool:
    """Whether to send this case to an existing plan (prompt) instead of the generated id:
    two cases in three whose id is well-formed, chosen by a hash of the case, so the coverage
    phase (one id, many bodies) and fuzzing both reach existing ones, and the same every run."""
    value = (case.path_parameters or {}).get(name)
    if name == "plan_id":
        try:
            uuid.UUID(str(value))
        except ValueError:
            return False  # a malformed id stays as generated: its 404 is the point
    elif not isinstance(value, str) or not value:
        return False
    seen = repr((case.path_parameters, case.query, case.headers, case.body)).encode("utf-8", "surrogatepass")
    return zlib.crc32(seen) % 3 != 0


# -- plan-service ------------------------------------------------------------------------

PLAN_EVENTS = [
    {"type": "CoordinatorAssigned", "coordinator_id": "koord-1", "service_level": "municipal"},
    {"type": "WhatMattersRecorded", "text": "Å ha en jobb å gå til", "language": "nb"},
    {"type": "GoalSet", "goal_id": "g1", "text": "Komme i jobb", "expressed_by": "patient"},
    {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral",
     "description": "Retten til individuell plan"},
    {"type": "ParticipantAdded", "participant_id": "r1", "kind": "relative", "name": "Mor"},
    {"type": "RelativeConsentGiven", "relative_id": "r1", "scope": ["goals", "meetings"], "given_how": "written"},
    {"type": "EvaluationScheduled", "evaluation_id": "e1", "scheduled_for": "2027-01-15T10:00:00+01:00"},
    {"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": "2027-02-01T12:00:00+01:00",
     "place": "Kafé", "no_show_strategy": "Ring samme dag"},
]


@pytest.fixture(scope="module")
def plan_service(tmp_path_factory) -> dict[str, Any]:
    from plan_service.config import Config
    from plan_service.web.app import create_app

    config = Config(data_dir=tmp_path_factory.mktemp("plan-service"), persistence="memory")
    app = create_app(config)
    _no_auth_limit(app)
    key = load_or_create_dev_key(config.signing_key_file)
    integration = mint_token(key, "epr-1", "integration", on_behalf_of="clin-7")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {integration}"}
    patients = iter(range(1_000_000))

    def open_plan() -> tuple[str, str]:
        patient = f"pat-fuzz-{next(patients)}"
        response = client.post("/v1/plans", json={"patient_id": patient, "service_level": "municipal",
                                                  "age_band": "18-25"}, headers=auth)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["plan_id"], patient

    plan_id, patient = open_plan()
    response = client.post(f"/v1/plans/{plan_id}/events", json=PLAN_EVENTS, headers=auth)
    assert response.status_code == 201, response.get_json()
    return {"app": app, "plan_id": plan_id, "open_plan": open_plan, "integration": integration,
            "patient": mint_token(key, patient, "patient")}


def _plan_document():
    from plan_service.config import Config
    from plan_service.web.app import create_app

    app = _document_only(create_app, Config(data_dir=Path(tempfile.mkdtemp(prefix="careplan-openapi-")), persistence="memory"))
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=_config({
        "/v1/plans": PLAN_RULE_STATUSES, "/v1/plans/{plan_id}/events": PLAN_RULE_STATUSES,
        "/v1/plans/{plan_id}/fhir": PLAN_RULE_STATUSES}))


plan_schema = _plan_document()


@plan_schema.parametrize()
def test_plan_service_api(case: Case, plan_service) -> None:
    if _pick(case, "plan_id"):
        existing = plan_service["open_plan"]()[0] if case.method == "POST" else plan_service["plan_id"]
        case.path_parameters = {**case.path_parameters, "plan_id": existing}
    # The access log is for the patient (and the assigned coordinator): the plan's patient.
    token = plan_service["patient" if case.operation.path.endswith("/access-log") else "integration"]
    case.call_and_validate(app=plan_service["app"], headers={"Authorization": f"Bearer {token}"})


# -- notification-service ----------------------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def notification_service(tmp_path_factory) -> dict[str, Any]:
    from careplan_shared.events import IntegrationEvent, encode_event, event_id_for
    from notification_service.application.service import ManualClock
    from notification_service.bootstrap import bootstrap
    from notification_service.config import Config
    from notification_service.web.app import create_app

    config = Config(data_dir=tmp_path_factory.mktemp("notification-service"))
    clock = ManualClock(T0)
    services = bootstrap(config, clock=clock, with_workers=False)
    app = create_app(config, services)
    _no_auth_limit(app)
    key = load_or_create_dev_key(config.signing_key_file)

    # One plan whose coordinator is k1: a triangle meeting suggested (then resolved by the
    # scheduled meeting: its ack is 409) and a no-show follow-up (open).
    plan = uuid.uuid4()
    events = [("PlanOpened", dict(service_level="municipal", age_band="15-17", birth_date=None)),
              ("CoordinatorAssigned", dict(coordinator_id="k1", service_level="specialist")),
              ("TriangleMeetingScheduled", dict(meeting_id="m1", scheduled_for=T0, place="Kafé", transport=None,
                                                companion="mor", no_show_strategy="Ring samme dag")),
              ("TriangleMeetingMissed", dict(meeting_id="m1"))]
    for version, (event_type, payload) in enumerate(events, start=1):
        wire = encode_event(IntegrationEvent(event_id_for(plan, version), event_type, 1, plan, version, version,
                                             T0, T0, payload))
        services.notifications.handle("feed", 0, version, wire)
    coordinator = mint_token(key, "k1", "coordinator")
    inbox = app.test_client().get("/v1/prompts?status=all", headers={"Authorization": f"Bearer {coordinator}"})
    prompts = [item["id"] for item in inbox.get_json()["items"]]
    assert len(prompts) == 2, inbox.get_json()
    return {"app": app, "coordinator": coordinator, "prompts": prompts}


def _notification_document():
    from notification_service.config import Config
    from notification_service.web.app import create_app

    app = _document_only(create_app, Config(data_dir=Path(tempfile.mkdtemp(prefix="careplan-openapi-"))))
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=_config({}))


notification_schema = _notification_document()


@notification_schema.parametrize()
def test_notification_service_api(case: Case, notification_service) -> None:
    if _pick(case, "prompt_id"):
        prompts = notification_service["prompts"]
        which = zlib.crc32(repr(case.path_parameters).encode("utf-8", "surrogatepass")) % len(prompts)
        case.path_parameters = {**case.path_parameters, "prompt_id": prompts[which]}
    case.call_and_validate(app=notification_service["app"],
                           headers={"Authorization": f"Bearer {notification_service['coordinator']}"})


# -- the authentication errors, as documented --------------------------------------------

@pytest.mark.parametrize("service", ["plan_service", "notification_service"])
def test_auth_failures_are_401_then_429_as_documented(service, request) -> None:
    """A bad token is 401 with WWW-Authenticate; past the limit, 429 with Retry-After: bodies
    and headers as each operation documents them."""
    app = request.getfixturevalue(service)["app"]
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=_config({}))
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            install_auth_failure_limit(app, AuthFailureLimiter(limit=1, window_seconds=3600))
            path_parameters = {parameter.name: str(uuid.uuid4()) for parameter in operation.path_parameters}
            case = operation.Case(path_parameters=path_parameters, headers={"Authorization": "Bearer not-a-token"})
            for expected in (401, 429):
                response = case.call()
                assert response.status_code == expected, (operation.label, response.text)
                case.validate_response(response, checks=_doc_checks())
    finally:
        _no_auth_limit(app)


def _doc_checks() -> list:
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [status_code_conformance, content_type_conformance, response_schema_conformance,
            response_headers_conformance]


@pytest.mark.parametrize("service", ["plan_service", "notification_service"])
def test_every_error_is_documented_as_problem_json(service, request) -> None:
    """No `default` response, no flask-smorest `Error` schema, no application/json error. The
    FHIR write's errors about what was posted are OperationOutcomes (application/fhir+json),
    documented beside problem+json."""
    document = request.getfixturevalue(service)["app"].test_client().get("/openapi.json").get_json()
    assert "Error" not in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert "default" not in operation["responses"], (method, path)
            errors = {status for status in operation["responses"] if int(status) >= 400}
            assert {"401", "403", "429", "500"} <= errors, (method, path)
            for status in errors:
                documented = operation["responses"][status]
                if path.endswith("/fhir") and method == "post" and "$ref" not in documented:
                    assert set(documented["content"]) == {"application/fhir+json", "application/problem+json"}
                    continue
                name = documented["$ref"].rsplit("/", 1)[-1]
                response = document["components"]["responses"][name]
                assert response["content"] == {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/ProblemDetails"}}}, (method, path, status)
