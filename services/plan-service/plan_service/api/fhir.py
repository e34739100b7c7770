"""/v1/plans/{id}/fhir: the plan as an HL7 FHIR R4 Bundle, and FHIR resources from the EPR
turned into plan events (adapters/fhir: the mapping, README "FHIR").

The same access rules and access log as the plan's other reads and writes: a read is the
policy's ``plan.read`` (logged as ``read_plan_fhir``), built only from what the reader's
sections show (the projection, as GET /v1/plans/{id} and the timeline); a write is
``plan.write``, the posted resources become the same events POST /events takes, checked by the
same schemas, roles and rules, all or nothing. Anything wrong with what was posted is answered
with an OperationOutcome that says what and where (422; 403 and 409 likewise), never a 500.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError

from careplan_shared.web import json_response
from plan_service.adapters.fhir.export import export_bundle
from plan_service.api import plans as plans_api
from plan_service.api import schemas
from plan_service.api.authorization import Access, requires
from plan_service.application import projection
from plan_service.application import timeline as timeline_view
from plan_service.application.plans import (
    ConcurrentWrite,
    EventRejected,
    IdempotencyKeyReused,
    PlanApplication,
    VersionMismatch,
)
from plan_service.domain import policy
from plan_service.domain.errors import Conflict, Forbidden

FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = (FHIR_JSON, "application/json")

blp = Blueprint("fhir", __name__, url_prefix="/v1/plans",
                description="HL7 FHIR R4: the plan as a Bundle; Goal, Consent, Communication and Appointment "
                            "resources (or a transaction Bundle of them) in")

_FHIR_RESOURCE = {"type": "object", "required": ["resourceType"],
                  "properties": {"resourceType": {"type": "string", "enum": ["Goal", "Consent", "Communication",
                                                                              "Appointment", "Bundle"]}},
                  "additionalProperties": True}
_OPERATION_OUTCOME = {"type": "object", "required": ["resourceType", "issue"], "properties": {
    "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
    "issue": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["severity", "code"],
                                                        "properties": {
                                                            "severity": {"type": "string"}, "code": {"type": "string"},
                                                            "diagnostics": {"type": "string"},
                                                            "expression": {"type": "array",
                                                                           "items": {"type": "string"}}}}}}}


def _fhir_or_problem(description: str) -> dict[str, Any]:
    """An error of the FHIR write: an OperationOutcome for what was posted, problem+json for
    what is checked before the body is read (the token, the role, the plan)."""
    return {"description": description, "content": {
        FHIR_JSON: {"schema": _OPERATION_OUTCOME},
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}


_WRITE_ERRORS = {
    "400": _fhir_or_problem("The body is not JSON (an OperationOutcome)"),
    "403": _fhir_or_problem("Not allowed: the role may not write this plan (problem+json) or record what the "
                            "resources would record (an OperationOutcome)"),
    "409": _fhir_or_problem("A rule of the plan's state, or another write first (an OperationOutcome)"),
    "412": _fhir_or_problem("If-Match is stale (an OperationOutcome), with the current ETag"),
    "422": _fhir_or_problem("What is wrong with the posted resources, and where (an OperationOutcome)"),
}


def _plans() -> PlanApplication:
    return current_app.extensions["careplan"].plans


def _fhir_response(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return current_app.response_class(orjson.dumps(body), status=status, headers=headers, mimetype=FHIR_JSON)


def _outcome(status: int, issues: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Response:
    return _fhir_response(_ingest().operation_outcome(issues), status, headers)


def _ingest() -> Any:
    """adapters.fhir.ingest, imported on the first FHIR write, not with the app: it loads
    fhir.resources' models (about a quarter of a second, a third of the app's import) that
    no other request needs. export.py loads its own the same way."""
    from plan_service.adapters.fhir import ingest

    return ingest


def _issue(code: str, diagnostics: str, expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return issue


def _field_issues(errors: Any, where: str, origins: list[str]) -> list[dict[str, Any]]:
    """A ValidationError's messages (by event index, then field) as issues, each at the
    resource the event came from."""
    issues: list[dict[str, Any]] = []
    by_index = errors if isinstance(errors, dict) and all(str(k).isdigit() for k in errors) else {"0": errors}
    for index, messages in by_index.items():
        at = origins[int(index)] if int(index) < len(origins) else where
        if isinstance(messages, dict):
            for field, texts in messages.items():
                for text in texts if isinstance(texts, list) else [texts]:
                    issues.append(_issue("invalid", f"{field}: {text}", at))
        else:
            issues.append(_issue("invalid", str(messages), at))
    return issues


@blp.route("/<uuid:plan_id>/fhir")
class PlanFhir(MethodView):
    @requires("plan.read", logged_as="read_plan_fhir")
    @blp.arguments(schemas.PlanQuery, location="query", unknown=None)
    @blp.response(200, description="A FHIR R4 Bundle (type collection), application/fhir+json: only what the "
                                   "reader may see (a relative: what their consent covers)",
                  content_type=FHIR_JSON)
    @blp.doc(security=[{"bearer": []}])
    def get(self, args: dict[str, Any], plan_id: uuid.UUID, access: Access):
        """The plan as a FHIR R4 Bundle, now or as it was recorded at `as_of`"""
        plans = _plans()
        as_of = args["as_of"]
        plan = plans.get_plan(plan_id, as_of=as_of) if as_of else access.plan
        assert plan is not None  # the route names a plan, so requires() loaded it
        shown = plans_api.plan_out(projection.plan_fields(access.sections)).dump(plan)
        events = [timeline_view.entry(e, access.sections)
                  for e in plans.history(plan_id, up_to=plan.version,
                                         visible=projection.event_filter(access.sections))]
        bundle = export_bundle(shown, events, plan_id=str(plan_id), as_of=as_of, now=datetime.now(timezone.utc))
        return _fhir_response(bundle, 200, {"ETag": f'"{plan.version}"'})

    @requires("plan.write")
    @blp.response(201, schemas.WriteResult, description="The events recorded (200: nothing to change)")
    @blp.doc(
        security=[{"bearer": []}],
        parameters=[plans_api.IDEMPOTENCY_HEADER, plans_api.IF_MATCH_HEADER],
        requestBody={"required": True, "content": {t: {"schema": _FHIR_RESOURCE} for t in ACCEPTED_TYPES}},
        responses=_WRITE_ERRORS,
    )
    def post(self, plan_id: uuid.UUID, access: Access):
        """A Goal, Consent, Communication or Appointment, or a transaction Bundle of them, as
        plan events: all or none"""
        if request.mimetype not in ACCEPTED_TYPES:
            abort(415, message=f"send the body as {FHIR_JSON} (or application/json)")
        try:
            body = orjson.loads(request.get_data(cache=True))
        except orjson.JSONDecodeError as e:
            return _outcome(400, [_issue("structure", f"the body is not valid JSON: {e}")])
        assert access.plan is not None  # the route names a plan, so requires() loaded it
        current = plans_api.plan_out(None).dump(access.plan)
        ingest = _ingest()
        try:
            items = ingest.events_from_fhir(body, current, load=schemas.load_events)
        except ingest.FhirInvalid as e:
            return _outcome(422, e.issues)
        origins = [getattr(item, "origin", None) or _resource_path(body) for item in items]
        if not items:
            return json_response({"plan_id": str(plan_id), "version": access.plan.version, "events": []},
                                           200, {"ETag": f'"{access.plan.version}"'})
        try:
            loaded = schemas.load_events([{"type": type_, **fields} for type_, fields in items])
        except ValidationError as e:
            return _outcome(422, _field_issues(e.normalized_messages(), _resource_path(body), origins))
        principal = access.principal
        refused = policy.refused_types(access.caller, [t for t, _ in loaded])
        if refused:
            return _outcome(403, [_issue("forbidden", f"the role {principal.role} records "
                                                      f"{', '.join(policy.recordable_by(principal.role))}; "
                                                      f"not {', '.join(refused)}", _resource_path(body))])
        try:
            outcome = _plans().record(plan_id, loaded, actor=principal.actor,
                                      expected_version=plans_api.expected_version(),
                                      idempotency=plans_api.idempotency(principal.subject), plan=access.plan,
                                      allowed=access.allows("plan.write"))
        except EventRejected as e:
            error = e.error
            at = origins[e.index] if 0 <= e.index < len(origins) else _resource_path(body)
            status = 403 if isinstance(error, Forbidden) else 409 if isinstance(error, Conflict) else 422
            code = "forbidden" if status == 403 else "conflict" if status == 409 else "business-rule"
            field = f"{error.field}: " if error.field else ""
            return _outcome(status, [_issue(code, f"{items[e.index][0]} {field}{error.message}. Nothing was stored.",
                                            at)])
        except VersionMismatch as e:
            return _outcome(412, [_issue("conflict", f"If-Match is stale: the plan is at version {e.current}. "
                                                     "Nothing was stored.")], {"ETag": f'"{e.current}"'})
        except ConcurrentWrite:
            return _outcome(409, [_issue("conflict", "Another write to this plan was stored first. Nothing was "
                                                     "stored; read the plan again and retry.")])
        except IdempotencyKeyReused:
            return _outcome(422, [_issue("duplicate", "This Idempotency-Key was already used for a different "
                                                      "request.")])
        return plans_api.write_response(outcome)


def _resource_path(body: Any) -> str:
    kind = body.get("resourceType") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) and kind.isalpha() else "Resource"
