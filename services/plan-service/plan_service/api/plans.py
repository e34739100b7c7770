"""/v1/plans: open a plan, post its events, read it (now or as of a time), its timeline."""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

import orjson
from flask import Response, current_app, make_response, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import fields

from careplan_shared.web import json_response
from plan_service.api import schemas, views
from plan_service.api.authorization import Access, requires
from plan_service.application import projection
from plan_service.application import timeline as timeline_view
from plan_service.application.idempotency import fingerprint
from plan_service.application.plans import EventRejected, Idempotency, Outcome, PlanApplication
from plan_service.domain import policy

blp = Blueprint("plans", __name__, url_prefix="/v1/plans",
                description="Individual plans: events in, current state and timeline out")

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,10})"?\s*$')
ANY_VERSION = "*"

IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False,
                      "schema": {"type": "string", "pattern": _KEY.pattern},
                      "description": "A replay returns the first response and stores nothing new"}
IF_MATCH_HEADER = {"name": "If-Match", "in": "header", "required": False,
                   "schema": {"type": "string", "pattern": r'^\s*(\*|(W/)?"?\d{1,10}"?)\s*$'},
                   "description": 'The plan version (ETag) the events were decided on, e.g. "7": 412 when '
                                  "stale. `*`: whatever the current version is"}


def _plans() -> PlanApplication:
    return current_app.extensions["careplan"].plans


def _require_json() -> None:
    if request.mimetype != "application/json":
        abort(415, message="send the body as application/json")


def json_only(view: Any) -> Any:
    """415 for a body that is not JSON, before its fields are read (else: 422, all missing)."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _require_json()
        return view(*args, **kwargs)

    return checked


def _json_body() -> Any:
    _require_json()
    raw = request.get_data(cache=True)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        abort(400, message="the body is not valid JSON", errors={"_body": [str(e)]})


def idempotency(principal_subject: str) -> Idempotency | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _KEY.match(key):
        abort(422, message="Idempotency-Key must be 1-255 visible ASCII characters",
              errors={"Idempotency-Key": ["1-255 visible ASCII characters"]})
    return Idempotency(principal_subject, key,
                       fingerprint(request.method, request.path, request.get_data(cache=True)))


def expected_version() -> int | None:
    value = request.headers.get("If-Match")
    if value is None or value.strip() == ANY_VERSION:  # RFC 9110: any current version
        return None
    match = _ETAG.match(value)
    if not match:
        abort(422, message='If-Match must be a plan version, e.g. "7"',
              errors={"If-Match": ['a plan version such as "7"']})
    assert match is not None  # abort() raised otherwise
    return int(match.group(1))


def _plan_url(plan_id: uuid.UUID) -> str:
    """url_for("plans.Plan", plan_id=...), without building it through the URL map."""
    return f"{request.script_root}{blp.url_prefix}/{plan_id}"


_EVENT_REF = tuple(schemas.EventRef().fields)  # version, type, event_id


def write_response(outcome: Outcome) -> Response:
    """201 with schemas.WriteResult's fields, serialised once (outcome.events are event refs
    already in their JSON form: version, type, event_id)."""
    headers = {"ETag": f'"{outcome.version}"', "Location": _plan_url(outcome.plan_id)}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    body = {"plan_id": str(outcome.plan_id), "version": outcome.version,
            "events": [{k: e[k] for k in _EVENT_REF if k in e} for e in outcome.events]}
    return json_response(body, 201, headers)


@functools.lru_cache(maxsize=64)
def plan_out(only: tuple[str, ...] | None) -> schemas.PlanOut:
    """One PlanOut per set of fields shown (a few: by the sections of the policy), made once:
    making a schema costs more than dumping a plan with it. Dumping keeps no state in it."""
    return schemas.PlanOut(only=only)


@blp.route("")
class Plans(MethodView):
    @requires("plan.create")
    @json_only
    @blp.arguments(schemas.OpenPlan)
    @blp.response(201, schemas.WriteResult, headers={"Location": {"schema": {"type": "string"}}})
    @blp.doc(parameters=[IDEMPOTENCY_HEADER], security=[{"bearer": []}])
    def post(self, args: dict[str, Any], access: Access):
        """Open an individual plan (records PlanOpened)"""
        principal = access.principal
        outcome = _plans().open_plan(actor=principal.actor, idempotency=idempotency(principal.subject),
                                     **args)
        return write_response(outcome)


@blp.route("/<uuid:plan_id>")
class Plan(MethodView):
    @requires("plan.read")
    @blp.arguments(schemas.PlanQuery, location="query", unknown=None)
    @blp.response(200, schemas.PlanOut, description="a relative gets only the sections their consent covers")
    @blp.doc(security=[{"bearer": []}])
    def get(self, args: dict[str, Any], plan_id: uuid.UUID, access: Access):
        """The plan as it stands now, or as it was recorded at `as_of` (a relative: only the
        sections their current consent covers)"""
        plan = _plans().get_plan(plan_id, as_of=args["as_of"]) if args["as_of"] else access.plan
        assert plan is not None  # the route names a plan, so requires() loaded it
        body = plan_out(projection.plan_fields(access.sections)).dump(plan)
        # a Response passes flask-smorest's dumping untouched: the fields are already chosen
        return make_response(body, 200, {"ETag": f'"{plan.version}"'})


@blp.route("/<uuid:plan_id>/events")
class PlanEvents(MethodView):
    @requires("plan.write")
    @blp.response(201, schemas.WriteResult)
    @blp.doc(
        parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER],
        security=[{"bearer": []}],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/PlanEvent"},
                {"type": "array", "minItems": 1, "maxItems": schemas.MAX_EVENTS_PER_REQUEST,
                 "items": {"$ref": "#/components/schemas/PlanEvent"}},
            ]}}},
        },
    )
    def post(self, plan_id: uuid.UUID, access: Access):
        """Append one event or a list of events, atomically (all or none)"""
        principal = access.principal
        body = _json_body()
        items = schemas.load_events(body)
        refused = policy.refused_types(access.caller, [t for t, _ in items])
        if refused:
            abort(403, message=f"the role {principal.role} records "
                               f"{', '.join(policy.recordable_by(principal.role))}; not {', '.join(refused)}")
        expected = expected_version()
        try:
            outcome = _plans().record(plan_id, items, actor=principal.actor,
                                      expected_version=expected,
                                      idempotency=idempotency(principal.subject), plan=access.plan,
                                      allowed=access.allows("plan.write"))
        except EventRejected as e:
            e.in_list = isinstance(body, list)
            raise
        return write_response(outcome)


@blp.route("/<uuid:plan_id>/timeline")
class Timeline(MethodView):
    @requires("timeline.read")
    @blp.arguments(schemas.TimelineQuery, location="query", unknown=None)
    @blp.response(200, schemas.TimelinePage)
    @blp.doc(security=[{"bearer": []}])
    def get(self, args: dict[str, Any], plan_id: uuid.UUID, access: Access):
        """What happened in the plan, newest first, one page at a time"""
        events, next_before = _plans().timeline(plan_id, before=args["before"], limit=args["limit"],
                                                visible=projection.event_filter(access.sections))
        return json_response({"plan_id": str(plan_id),
                              "items": [_timeline_item(timeline_view.entry(e, access.sections)) for e in events],
                              "next_before": next_before})


@blp.route("/<uuid:plan_id>/access-log")
class AccessLog(MethodView):
    @requires("access_log.read")
    @blp.arguments(schemas.TimelineQuery, location="query", unknown=None)
    @blp.response(200, schemas.AccessLogPage)
    @blp.doc(security=[{"bearer": []}])
    def get(self, args: dict[str, Any], plan_id: uuid.UUID, access: Access):
        """Who read or changed this plan, when, in what role (newest first): for the patient
        and the coordinator (pasientjournalloven § 18)"""
        log = current_app.extensions["careplan"].access_log
        rows = log.entries(str(plan_id), limit=args["limit"] + 1, before=args["before"])
        more = len(rows) > args["limit"]
        rows = rows[: args["limit"]]
        # views.access_entry gives schemas.AccessEntryOut's fields, in their JSON form
        return json_response({"plan_id": str(plan_id), "items": [views.access_entry(i, e) for i, e in rows],
                              "next_before": rows[-1][0] if more and rows else None})


# schemas.TimelineEntry's fields in its order, and which are times (dumped with isoformat())
_TIMELINE_FIELDS = tuple((name, isinstance(field, fields.DateTime))
                         for name, field in schemas.TimelineEntry().fields.items())


def _timeline_item(entry: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry as schemas.TimelineEntry dumps it, without the schema: its fields in its
    order, a field the entry lacks left out, times as isoformat(); the rest is already JSON."""
    return {name: (value.isoformat() if is_time and value is not None else value)
            for name, is_time in _TIMELINE_FIELDS if (value := entry.get(name, _ABSENT)) is not _ABSENT}


_ABSENT = object()


def register_event_schemas(spec: Any) -> None:
    """Put every posted event type in the OpenAPI document, with `type` as discriminator."""
    refs = {}
    for name, schema in schemas.EVENT_SCHEMAS.items():
        spec.components.schema(name, schema=type(schema))
        refs[name] = f"#/components/schemas/{name}"
    spec.components.schema("PlanEvent", {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    })
