"""Security headers on every response (CSP and HSTS included); the Swagger UI page gets a
policy that lets only its own local assets and its inline script (by hash) run, and its config
never calls the outside validator. gunicorn's own error answers are problem+json with the same
headers (unit level here; tests/test_http_edges_e2e.py checks real processes)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from types import SimpleNamespace

import pytest
from flask import Flask
from flask_smorest import Api, Blueprint, abort
from gunicorn.http import errors

from careplan_shared import logs, problem, server, web

STRICT = "default-src 'none'; frame-ancestors 'none'"


def make_app() -> Flask:
    app = Flask("tiny")
    app.config.update(API_TITLE="tiny", API_VERSION="1", **web.swagger_ui_config())
    web.install(app)
    logs.install_request_logging(app)
    api = Api(app)
    problem.install(app)
    blp = Blueprint("things", __name__)

    @blp.route("/things/<int:n>")
    def thing(n):
        if n == 0:
            abort(404, message="no thing 0")
        if n == 1:
            raise RuntimeError("boom")
        return {"n": n}

    api.register_blueprint(blp)
    web.install_swagger_assets(app)
    return app


@pytest.fixture
def client():
    return make_app().test_client()


def test_security_headers_name_csp_and_hsts():
    assert web.SECURITY_HEADERS["Content-Security-Policy"].startswith(STRICT)
    assert re.fullmatch(r"max-age=\d{7,}", web.SECURITY_HEADERS["Strict-Transport-Security"])


@pytest.mark.parametrize("path", ["/things/2", "/things/0", "/things/1", "/nothing", "/openapi.json",
                                  "/docs/assets/swagger-ui-bundle.js"])
def test_every_response_has_csp_and_hsts(client, path):
    r = client.get(path)
    assert r.headers["Content-Security-Policy"] == web.SECURITY_HEADERS["Content-Security-Policy"]
    assert r.headers["Strict-Transport-Security"] == web.SECURITY_HEADERS["Strict-Transport-Security"]
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"


def test_swagger_ui_page_policy_allows_its_inline_script_by_hash_only(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data()
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.DOTALL)
    assert len(scripts) == 1 and b"SwaggerUIBundle" in scripts[0]
    digest = base64.b64encode(hashlib.sha256(scripts[0]).digest()).decode()
    policy = dict(part.strip().split(" ", 1) for part in r.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["img-src"] == "'self' data:" and policy["connect-src"] == "'self'"
    assert "http" not in r.headers["Content-Security-Policy"], "no outside host"
    assert r.headers["Strict-Transport-Security"] and r.headers["X-Frame-Options"] == "DENY"


def test_swagger_ui_never_calls_the_outside_validator(client):
    assert web.swagger_ui_config()["OPENAPI_SWAGGER_UI_CONFIG"]["validatorUrl"] == "none"
    page = client.get("/docs").get_data(as_text=True)
    config = json.loads(re.search(r"var override_config = (\{.*?\});", page).group(1))
    assert config == {"validatorUrl": "none"}
    assert "validator.swagger.io" not in page


def test_docs_csp_hashes_every_inline_script_and_no_external_one():
    page = b'<script src="/docs/assets/a.js"></script><script>one()</script><script>two()</script>'
    policy = web.docs_csp(page)
    for body in (b"one()", b"two()"):
        assert base64.b64encode(hashlib.sha256(body).digest()).decode() in policy
    assert policy.count("'sha256-") == 2
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]


# -- gunicorn's own answers ------------------------------------------------------------------

CFG = SimpleNamespace(limit_request_fields=100, limit_request_field_size=8190, limit_request_line=4094)
SECRET = "eyJsecret-token-or-plan-id"


@pytest.mark.parametrize("exc,status", [
    (errors.LimitRequestHeaders("limit request headers fields size"), 431),
    (errors.LimitRequestHeaders("limit request headers fields"), 431),
    (errors.LimitRequestHeaders("max buffer headers"), 431),
    (errors.LimitRequestLine(9000, 4094), 414),
    (errors.InvalidRequestLine(f"GET /v1/plans/{SECRET} x"), 400),
    (errors.InvalidRequestMethod(SECRET), 400),
    (errors.InvalidHTTPVersion(SECRET), 400),
    (errors.InvalidHeader(f"Authorization: Bearer {SECRET}"), 400),
    (errors.InvalidHeaderName(SECRET), 400),
    (errors.ObsoleteFolding(SECRET), 400),
    (errors.InvalidChunkSize(SECRET), 400),
    (errors.InvalidSchemeHeaders(), 400),
    (errors.ExpectationFailed(SECRET), 417),
    (errors.UnsupportedTransferCoding(SECRET), 501),
    (errors.ForbiddenProxyRequest(SECRET), 403),
    (errors.InvalidResponseHeader(SECRET), 500),
    (ValueError(SECRET), 500),
])
def test_gunicorn_errors_become_problems_that_quote_nothing(exc, status):
    got, title, detail = server.gunicorn_problem(exc, CFG)
    assert got == status and title and detail
    response = server.problem_response(got, title, detail)
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == f"HTTP/1.1 {status} {title}"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "application/problem+json" and headers["Connection"] == "close"
    assert int(headers["Content-Length"]) == len(body)
    for name, value in web.SECURITY_HEADERS.items():
        assert headers[name] == value
    assert json.loads(body) == {"type": "about:blank", "title": title, "status": status, "detail": detail}
    assert SECRET not in response.decode("latin-1")


def test_serve_runs_the_problem_worker(monkeypatch):
    from gunicorn.workers.gthread import ThreadWorker

    ran = {}
    monkeypatch.setattr(server._Gunicorn, "run", lambda self: ran.update(self._settings))
    server.serve(lambda: None, host="127.0.0.1", port=0, workers=1, threads=2, ready_message="ready")
    assert ran["worker_class"] is server.ProblemThreadWorker
    assert issubclass(server.ProblemThreadWorker, ThreadWorker) and "handle_error" in vars(server.ProblemThreadWorker)
