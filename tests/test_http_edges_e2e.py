"""The HTTP edges of both services as real gunicorn processes: what gunicorn answers itself
(oversized headers and request lines, malformed HTTP) is problem+json with the apps' security
headers; every response carries CSP and HSTS; Swagger UI is pinned to local assets and never
calls the outside validator; one client guessing tokens does not lock out the valid clients
behind the same address (notification-service's own feed polling among them)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import time
import uuid

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_shared.web import SECURITY_HEADERS
from careplan_testing import wait_for

pytestmark = pytest.mark.e2e

API_CSP = "default-src 'none'; frame-ancestors 'none'"
SERVICES = ["plan", "notification"]


@pytest.fixture(params=SERVICES)
def service(request, start_plan_service, start_notification_service):
    """One service as its real process (notification-service pointed at a port nobody holds);
    ``service.api`` is a route of it that wants a token."""
    if request.param == "plan":
        server = start_plan_service()
        server.api = "/v1/feed"
    else:
        server = start_notification_service(PLAN_SERVICE_URL="http://127.0.0.1:9", NOTIFICATION_TRANSPORT="feed")
        server.api = "/v1/prompts"
    return server


def raw(url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is (no client library tidying it up); the parsed answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_secured(headers, docs: bool = False, asset: bool = False) -> None:
    headers = {k.lower(): v for k, v in headers.items()}
    for name, value in SECURITY_HEADERS.items():
        if not (docs and name == "Content-Security-Policy" or asset and name == "Cache-Control"):
            assert headers.get(name.lower()) == value, name
    assert headers["strict-transport-security"].startswith("max-age=")
    if not docs:
        assert headers["content-security-policy"].startswith(API_CSP)


def assert_problem(status: int, headers, body: bytes, expected: int, *, echoes: str = "") -> dict:
    assert status == expected, body[:300]
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/problem+json"
    assert_secured(headers)
    document = json.loads(body)
    assert document["status"] == expected and document["type"] == "about:blank"
    assert document["title"] and document["detail"]
    if echoes:
        assert echoes not in body.decode(), "the answer does not echo the request back"
    return document


@pytest.mark.parametrize("size", [10_000, 20_000])
def test_an_oversized_authorization_header_is_a_431_problem(service, size):
    token = "eyJ" + "a" * size
    r = requests.get(service.url + service.api, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    document = assert_problem(r.status_code, r.headers, r.content, 431, echoes="aaaaaaaa")
    assert "header" in document["detail"] and "8190 bytes" in document["detail"]
    assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200, "the server lives on"
    assert token[:40] not in service.logs()


def test_gunicorns_other_own_answers_are_problems_too(service):
    plan_id = str(uuid.uuid4())
    # a request line over 4094 bytes: 414
    r = requests.get(f"{service.url}/v1/plans/{plan_id}?q=" + "x" * 9000, timeout=10)
    document = assert_problem(r.status_code, r.headers, r.content, 414, echoes="xxxxxxxx")
    assert "request line" in document["detail"]
    # malformed request line, header name, HTTP version: 400
    for request in (f"GET /v1/plans/{plan_id} HTTP/1.1 extra\r\nHost: x\r\n\r\n".encode(),
                    f"GET /v1/plans/{plan_id} HTTP/1.1\r\nBad Header{plan_id}: 1\r\n\r\n".encode(),
                    f"GET /v1/plans/{plan_id} HTTP/7.1\r\nHost: x\r\n\r\n".encode()):
        assert_problem(*raw(service.url, request), 400, echoes=plan_id)
    # too many header fields: 431
    many = "".join(f"X-H{i}: {i}\r\n" for i in range(120))
    document = assert_problem(*raw(service.url, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode()), 431)
    assert "100" in document["detail"]
    assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200
    assert plan_id not in service.logs(), "gunicorn's log line names the error type, not the request"


def test_every_response_has_csp_and_hsts(service):
    paths = ["/healthz", "/readyz", "/openapi.json", "/docs/assets/swagger-ui-bundle.js",
             "/no/such/path", "/v1/plans", "/v1/prompts", "/v1/feed"]
    for path in paths:
        r = requests.get(service.url + path, timeout=10)
        assert_secured(r.headers, asset="/assets/" in path)  # Swagger UI's files may be cached
        if r.status_code >= 400:
            assert r.headers["Content-Type"] == "application/problem+json", path
    r = requests.delete(f"{service.url}/healthz", timeout=10)  # 405
    assert r.status_code == 405 and r.headers["Content-Type"] == "application/problem+json"
    assert_secured(r.headers)


def test_swagger_ui_runs_on_local_assets_only_and_never_calls_the_validator(service):
    r = requests.get(f"{service.url}/docs", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert_secured(r.headers, docs=True)
    csp = dict(part.strip().split(" ", 1) for part in r.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["img-src"] == "'self' data:" and csp["connect-src"] == "'self'"
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    assert inline, "the page bootstraps Swagger UI in an inline script"
    hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline}
    assert set(csp["script-src"].split()) == {"'self'"} | hashes, "inline scripts by hash, nothing else"
    assert "unsafe-inline" not in csp["script-src"] and "unsafe-eval" not in csp["script-src"]
    config = json.loads(re.search(r"var override_config = (\{.*?\});", r.text).group(1))
    assert config["validatorUrl"] == "none"
    for src in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        assert src.startswith("/docs/assets/"), src
        asset = requests.get(service.url + src, timeout=10)
        assert asset.status_code == 200 and asset.content


def test_a_guessing_client_does_not_lock_out_valid_clients_at_its_address(
        start_plan_service, start_notification_service, data_dir):
    plan = start_plan_service(CAREPLAN_AUTH_FAILURE_LIMIT="3", PLAN_SERVICE_WORKERS="1")
    notifications = start_notification_service(PLAN_SERVICE_URL=plan.url, NOTIFICATION_TRANSPORT="feed")
    assert wait_for(lambda: requests.get(f"{notifications.url}/readyz", timeout=5).status_code == 200, 20)
    key = load_or_create_dev_key(data_dir / "dev-signing.key")
    forged = {"Authorization": "Bearer " + mint_token(b"guess" * 7, "epr-1", "integration")}
    statuses = [requests.get(f"{plan.url}/v1/feed", headers=forged, timeout=10).status_code for _ in range(8)]
    assert statuses == [401] * 3 + [429] * 5
    r = requests.get(f"{plan.url}/v1/feed", headers=forged, timeout=10)
    assert r.headers["Content-Type"] == "application/problem+json" and int(r.headers["Retry-After"]) >= 1
    valid = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration")}
    assert requests.get(f"{plan.url}/v1/feed", headers=valid, timeout=10).status_code == 200
    time.sleep(2)  # notification-service polls the feed from 127.0.0.1 all along
    r = requests.get(f"{notifications.url}/readyz", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["consumer"]["last_error"] is None
