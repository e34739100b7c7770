"""Unhandled errors are logged with the route template and the request id: never the path
(plan ids), the exception text or the traceback. Flask's own ``log_exception`` writes
"Exception on <path>"; both ways an error can go unhandled are covered."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from flask import Flask, request

from careplan_shared import logs, problem

ROUTE = "/v1/plans/<uuid:plan_id>/events"


def make_app(*, with_problem: bool) -> Flask:
    app = Flask("tiny")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    logs.install_request_logging(app)
    if with_problem:
        problem.install(app)

    @app.get(ROUTE)
    def events(plan_id):
        raise ValueError(f"content of plan {plan_id}")

    @app.get("/v1/plans/<uuid:plan_id>/later")
    def later(plan_id):
        return {"ok": True}

    @app.after_request
    def failing_hook(response):  # an error outside the views' handlers: Flask's log_exception
        if response.status_code == 200:
            raise RuntimeError(f"hook failed for {request.path}")
        return response

    return app


def lines(caplog) -> list[dict]:
    formatter = logs.JsonFormatter("test")
    return [json.loads(formatter.format(record)) for record in caplog.records]


@pytest.mark.parametrize("with_problem", [True, False])
@pytest.mark.parametrize("suffix,route", [("events", ROUTE), ("later", "/v1/plans/<uuid:plan_id>/later")])
def test_unhandled_errors_name_the_route_template_not_the_path(caplog, with_problem, suffix, route):
    caplog.set_level(logging.DEBUG)
    plan_id = str(uuid.uuid4())
    client = make_app(with_problem=with_problem).test_client()
    r = client.get(f"/v1/plans/{plan_id}/{suffix}", headers={"X-Request-Id": "req-123"})
    assert r.status_code == 500
    if with_problem:
        assert r.mimetype == "application/problem+json" and plan_id not in r.get_data(as_text=True)
        assert r.json == {"type": "about:blank", "title": "Internal Server Error", "status": 500,
                          "detail": "The server could not complete the request."}
    logged = lines(caplog)
    errors = [line for line in logged if line["msg"] == "unhandled error"]
    assert len(errors) == 1, logged
    assert errors[0]["route"] == route and errors[0]["request_id"] == "req-123"
    assert errors[0]["method"] == "GET" and errors[0]["level"] == "error"
    assert errors[0]["error_type"] in ("ValueError", "RuntimeError")
    text = json.dumps(logged) + "".join(r.getMessage() + str(r.exc_info) + str(r.exc_text) for r in caplog.records)
    assert plan_id not in text, "neither the path nor the exception text is logged"
    assert "Exception on" not in text
