"""The error responses of both OpenAPI documents, as the services really send them.

flask-smorest documents every error as its own ``Error {code, status, message}`` in
``application/json`` (with ``additionalProperties: false``), adds a ``default`` response of that
shape to every operation and a 422 of it to every ``@blp.arguments``. Our errors leave through
``careplan_shared.problem`` as ``application/problem+json`` (RFC 9457). ``document_problems(api)``,
called right after ``Api(app)`` and before any blueprint is registered, puts that in the document:

- a ``ProblemDetails`` schema and, for every 4xx/5xx status, a response component in
  problem+json under flask-smorest's own names (``UNPROCESSABLE_ENTITY``, ``NOT_FOUND``, ...),
  replacing the ones it registered, so its automatic 422 (and any ``@blp.alt_response(404,
  "NOT_FOUND")``) point at the real body; 401 documents ``WWW-Authenticate``, 429 ``Retry-After``
  and 412 ``ETag``;
- no ``default`` response: each operation lists the statuses it can give, so a client (and a
  schema check) knows every one of them;
- an apispec plugin that gives each operation the errors it can give, from what it declares
  (``ERROR_RULES``). A status the view documents itself (``@blp.alt_response``) is left as it is.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from typing import Any

from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow.common import make_schema_key
from flask_smorest import Api

from careplan_shared.problem import PROBLEM_JSON

SCHEMA_NAME = "ProblemDetails"

PROBLEM_DETAILS: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details. Handlers may add members (e.g. `index`, "
                   "`current_version`); clients must ignore members they do not know.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference",
                 "description": "Identifies the kind of problem; `about:blank` when the status says it all",
                 "example": "https://careplan.example/problems/validation"},
        "title": {"type": "string", "description": "The status in words", "example": "Unprocessable Content"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599, "description": "The HTTP status"},
        "detail": {"type": "string", "description": "What went wrong with this request, for a person"},
        "errors": {
            "type": "object",
            "description": "Field -> messages. Nested input gives nested objects: a list of events "
                           "is keyed by the event's index (\"0\", \"1\", ...), a list field by the item's.",
            "additionalProperties": {"anyOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "object"},
            ]},
            "example": {"service_level": ["Must be one of: municipal, specialist."]},
        },
        "index": {"type": "integer", "minimum": 0,
                  "description": "For a rule of the plan: which event of the posted list broke it"},
        "current_version": {"type": "integer", "minimum": 0,
                            "description": "For a stale If-Match: the plan's version now"},
        "open_plan_id": {"type": "string", "format": "uuid",
                         "description": "For a second plan of the same patient: the open one"},
    },
    "additionalProperties": True,
}

_PROBLEM_REF = {"$ref": f"#/components/schemas/{SCHEMA_NAME}"}

# What each status means in these services, for the documents' readers.
DESCRIPTIONS: dict[int, str] = {
    400: "Bad Request: the body is not valid JSON",
    401: "Unauthorized: no valid bearer token",
    403: "Forbidden: the caller's role may not do this (on this resource)",
    404: "Not Found: no such resource, or not one the caller may know of",
    409: "Conflict: the current state forbids it, or another write came first; nothing was stored",
    412: "Precondition Failed: If-Match is stale (`current_version` and `ETag` give the version now); "
         "nothing was stored",
    413: "Content Too Large: the body is over the size limit",
    415: "Unsupported Media Type: send the body as application/json",
    422: "Unprocessable Content: `errors` names each bad field (body, query or header) and why; "
         "nothing was stored",
    429: "Too Many Requests: too many failed authentications from this client; `Retry-After` says "
         "when it is under the limit again",
    500: "Internal Server Error: never expected; the cause is logged, not sent",
    503: "Service Unavailable: the access log cannot be written just now, so nothing is shown; "
         "`Retry-After` says when to try again",
}

HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "The scheme to authenticate with: "
                                              "`Bearer realm=\"careplan\"`",
                               "required": True, "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until this client may try again",
                          "required": True, "schema": {"type": "integer", "minimum": 1}}},
    503: {"Retry-After": {"description": "Seconds until it is worth trying again",
                          "required": False, "schema": {"type": "integer", "minimum": 1}}},
    412: {"ETag": {"description": "The plan's version now, e.g. `\"7\"`",
                   "required": True, "schema": {"type": "string"}}},
}

_WRITES = frozenset({"post", "put", "patch", "delete"})
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _has_security(operation: dict[str, Any], _: str, __: str) -> bool:
    return bool(operation.get("security"))


def _has_path_parameter(_: dict[str, Any], path: str, __: str) -> bool:
    return "{" in path


def _has_body(operation: dict[str, Any], _: str, __: str) -> bool:
    return "requestBody" in operation


def _has_input(operation: dict[str, Any], _: str, __: str) -> bool:
    """A body, or query or header parameters: each can be invalid (422)."""
    return _has_body(operation, _, __) or any(
        isinstance(p, dict) and p.get("in") in ("query", "header") for p in operation.get("parameters", ()))


def _has_if_match(operation: dict[str, Any], _: str, __: str) -> bool:
    return any(isinstance(p, dict) and p.get("in") == "header" and str(p.get("name", "")).lower() == "if-match"
               for p in operation.get("parameters", ()))


def _is_write(_: dict[str, Any], __: str, method: str) -> bool:
    return method in _WRITES


def _reads_one(_: dict[str, Any], path: str, method: str) -> bool:
    """A read of one resource: refused with 503 when its access log cannot be written."""
    return method == "get" and "{" in path


def _always(*_: Any) -> bool:
    return True


# (does the operation declare this?, the statuses it can then give), read from the code:
# careplan_shared.authentication (401 no or bad token, 429 after repeated failures) and each service's
# policy (403); an unknown plan or prompt (404, and a path that does not parse as one);
# _json_body / webargs (400 not JSON, 415 not application/json), MAX_CONTENT_LENGTH (413);
# marshmallow, webargs and header checks (422); the plan's rules, a concurrent writer, a
# resolved prompt (409); a stale If-Match (412); an access log that cannot be written before a
# read shows anything (503). 500 is never meant to happen, but if it does
# it is problem+json too.
ERROR_RULES: tuple[tuple[Callable[[dict[str, Any], str, str], bool], tuple[int, ...]], ...] = (
    (_has_security, (401, 403, 429)),
    (_has_path_parameter, (404,)),
    (_has_body, (400, 413, 415)),
    (_has_input, (422,)),
    (_is_write, (409,)),
    (_has_if_match, (412,)),
    (_reads_one, (503,)),
    (_always, (500,)),
)


def errors_for(operation: dict[str, Any], path: str, method: str) -> list[int]:
    """The error statuses an operation can give, by ERROR_RULES, in order."""
    statuses = {status for applies, given in ERROR_RULES if applies(operation, path, method) for status in given}
    return sorted(statuses)


def response_name(status: int) -> str:
    """flask-smorest's name of the response component for a status (e.g. NOT_FOUND)."""
    return http.HTTPStatus(status).name


def problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status) or http.HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}},
    }
    if status in HEADERS:
        response["headers"] = {name: dict(header) for name, header in HEADERS[status].items()}
    return response


class ProblemResponses(BasePlugin):
    """Adds each operation's error responses (by reference) as apispec builds its path."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None,
                         **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict) or method.lower() not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            documented = {str(status) for status in responses}
            for status in errors_for(operation, path or "", method.lower()):
                if str(status) not in documented:
                    responses[str(status)] = response_name(status)


def document_problems(api: Api) -> None:
    """Document problem+json errors in ``api``'s OpenAPI document. Call it right after
    ``Api(app)``, before registering blueprints (their operations are documented as they come)."""
    spec: APISpec = api.spec
    spec.components.schema(SCHEMA_NAME, PROBLEM_DETAILS)
    # Same names as flask-smorest's lazily registered responses: registering again replaces them.
    for status in http.HTTPStatus:
        if status >= 400:
            spec.components.response(status.name, problem_response(status), lazy=True)
    spec.components.response(api.DEFAULT_ERROR_RESPONSE_NAME or "DEFAULT_ERROR", {
        "description": "Any other error", "content": {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}}},
        lazy=True)
    # Instance attribute over flask-smorest's class default: no `default` response on operations.
    api.DEFAULT_ERROR_RESPONSE_NAME = None
    # Its `Error` schema was registered with those responses; nothing refers to it any more.
    error_schema_name = api.ma_plugin.converter.refs.pop(make_schema_key(api.ERROR_SCHEMA()), None)
    if error_schema_name:
        spec.components.schemas.pop(error_schema_name, None)
    plugin = ProblemResponses()
    plugin.init_spec(spec)
    assert isinstance(spec.plugins, list)  # flask-smorest gives the spec a list of plugins
    spec.plugins.append(plugin)
