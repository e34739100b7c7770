"""RFC 9457 problem details for Flask apps: every error leaves as application/problem+json.

A 422 carries ``errors``: a map from field (nested for nested input) to messages.
A 5xx never carries a stack trace or the exception text; it is logged with the request id.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException, InternalServerError

from careplan_shared.logs import install_error_logging, log_unhandled

PROBLEM_JSON = "application/problem+json"
SERVER_ERROR_DETAIL = "The server could not complete the request."


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_errors(data: dict[str, Any]) -> dict[str, Any] | None:
    """webargs reports {location: {field: [msg]}}; clients want {field: [msg]}."""
    messages = data.get("errors") or data.get("messages")
    if not isinstance(messages, dict):
        return None
    if set(messages) <= {"json", "query", "headers", "path", "view_args", "form", "files"}:
        flat: dict[str, Any] = {}
        for location_errors in messages.values():
            if isinstance(location_errors, dict):
                flat.update(location_errors)
            else:
                flat["_body"] = location_errors
        return flat
    return messages


def handle_http_exception(error: HTTPException) -> Response:
    data = getattr(error, "data", None) or {}
    status = error.code or 500
    detail = data.get("message") or (error.description if status < 500 else None)
    if status == 422 and not detail:
        detail = "The request body or parameters are not valid; see errors."
    if status >= 500 and not detail:
        detail = SERVER_ERROR_DETAIL
    headers = {k: v for k, v in error.get_headers() if k in ("Allow", "WWW-Authenticate", "Retry-After")}
    headers.update(data.get("headers") or {})
    extra = {k: v for k, v in data.items() if k not in ("message", "errors", "messages", "headers", "exc", "schema")}
    return problem(
        status,
        error.name,
        detail,
        type_=data.get("type", "about:blank"),
        errors=_field_errors(data),
        headers=headers,
        **{k: v for k, v in extra.items() if k != "type"},
    )


def handle_unexpected(error: Exception) -> Response:
    # The exception text may hold request content: log the type and route template only,
    # with the request id.
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log_unhandled(error)
    # InternalServerError().name, not .name on the class: that is a property object, which
    # no JSON encoder takes (and the 500 then came from Flask's fallback, logging the path).
    return problem(500, InternalServerError().name, SERVER_ERROR_DETAIL)


def install(app: Flask) -> None:
    """Route every error of the app, expected or not, through problem+json (and logs naming
    the route template, not the path)."""
    install_error_logging(app)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
