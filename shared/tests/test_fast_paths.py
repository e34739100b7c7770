"""The request path's cheaper pieces give what the plain ones gave: the security headers hook
keeps a header a view set itself (as setdefault did) and adds each missing one once; jsonify and
json_response send orjson's bytes as the JSON provider made them; the request log's line is
json.dumps(entry, ensure_ascii=False) with datetime's own millisecond timestamp."""

from __future__ import annotations

import json
import logging
import random
import uuid
from datetime import date, datetime, timezone

import orjson
from flask import Flask, Response, jsonify

from careplan_shared import logs, web


def make_app() -> Flask:
    app = Flask("tiny")
    web.install(app)

    @app.get("/own")
    def own():
        return Response("{}", mimetype="application/json",
                        headers={"x-frame-options": "SAMEORIGIN", "Cache-Control": "max-age=60"})

    @app.get("/plain")
    def plain():
        return jsonify({"at": datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc), "id": uuid.UUID(int=7),
                        "day": date(2026, 1, 2), 3: "non-str key", "text": "æøå ✓"})

    @app.get("/ready")
    def ready():
        return web.json_response({"a": [1, 2.5, None, True]}, 201, {"ETag": '"3"'})

    return app


def test_a_header_the_view_set_is_kept_and_each_missing_one_added_once():
    client = make_app().test_client()
    r = client.get("/own")
    assert r.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert r.headers.getlist("Cache-Control") == ["max-age=60"]
    for name, value in web.SECURITY_HEADERS.items():
        if name not in ("X-Frame-Options", "Cache-Control"):
            assert r.headers.getlist(name) == [value]
    r = client.get("/plain")
    assert all(r.headers.getlist(name) == [value] for name, value in web.SECURITY_HEADERS.items())


def test_jsonify_and_json_response_send_the_provider_s_bytes():
    app = make_app()
    client = app.test_client()
    r = client.get("/plain")
    assert r.mimetype == "application/json"
    with app.app_context():
        assert r.get_data() == app.json.dumps({
            "at": datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc), "id": uuid.UUID(int=7),
            "day": date(2026, 1, 2), 3: "non-str key", "text": "æøå ✓"}).encode()
    assert r.json == {"at": "2026-01-02T03:04:05.006000+00:00", "id": str(uuid.UUID(int=7)), "day": "2026-01-02",
                      "3": "non-str key", "text": "æøå ✓"}
    r = client.get("/ready")
    assert (r.status_code, r.mimetype, r.headers["ETag"]) == (201, "application/json", '"3"')
    assert r.get_data() == orjson.dumps({"a": [1, 2.5, None, True]})
    assert r.headers["Content-Security-Policy"] == web.API_CSP


def _record(created: float, **extra) -> logging.LogRecord:
    record = logging.LogRecord("careplan.http", logging.INFO, __file__, 1, "request", (), None)
    record.created = created
    record.__dict__.update(extra)
    return record


def test_the_log_line_is_what_json_dumps_made():
    formatter = logs.JsonFormatter("plan-service")
    extra = {"request_id": "abc", "method": "POST", "route": "/v1/plans/<uuid:plan_id>/events", "status": 201,
             "duration_ms": 3.21, "role": "integration", "url": "http://ø.example/✓", "ignored": "not a safe key"}
    line = formatter.format(_record(1_796_000_000.123456, **extra))
    entry = {"ts": "2026-11-30T00:53:20.123+00:00", "level": "info", "logger": "careplan.http",
             "service": "plan-service", "msg": "request",
             **{k: v for k, v in extra.items() if k in logs.SAFE_KEYS}}
    assert line == json.dumps(entry, ensure_ascii=False)


def test_the_timestamp_is_datetime_s_to_the_millisecond():
    formatter = logs.JsonFormatter("test")
    rng = random.Random(7)
    moments = [rng.uniform(0, 4e9) for _ in range(20_000)]
    moments += [s + f for s in (0, 1, 1_700_000_000) for f in (0.0, 0.0004, 0.0005, 0.9994, 0.9995, 0.9999995, 0.99999949)]
    for created in moments:
        expected = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")
        assert formatter._timestamp(created) == expected, created
