"""careplan_shared.metrics: off without a token, behind the token with one; requests counted by
route template (never the path), bounded method and status labels; the multiprocess directory."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from careplan_shared import metrics, problem
from careplan_shared.config import ConfigError

TOKEN = "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_app(env: dict[str, str] | None = None) -> Flask:
    app = Flask("metrics_test")
    problem.install(app)
    metrics.install(app, {metrics.TOKEN_VARIABLE: TOKEN} if env is None else env)

    @app.get("/v1/plans/<uuid:plan_id>")
    def plan(plan_id):
        return {"ok": True}

    return app


def scrape(client) -> dict:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}


def samples(family, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == name}


def test_off_without_a_token_no_metrics_route():
    app = make_app({})
    assert app.test_client().get("/metrics", headers=AUTH).status_code == 404


def test_needs_the_token():
    client = make_app().test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers=AUTH).status_code == 200


def test_requests_are_counted_by_route_template_never_the_path():
    client = make_app().test_client()
    plan_id = uuid.uuid4()
    before = samples(scrape(client)["careplan_http_requests"], "careplan_http_requests_total")
    assert client.get(f"/v1/plans/{plan_id}").status_code == 200
    assert client.get(f"/v1/nothing/{plan_id}").status_code == 404
    assert client.open(f"/v1/plans/{plan_id}", method="BREW").status_code == 405
    families = scrape(client)
    after = samples(families["careplan_http_requests"], "careplan_http_requests_total")
    key = (("method", "GET"), ("route", "/v1/plans/<uuid:plan_id>"), ("status", "200"))
    assert after[key] - before.get(key, 0) == 1
    assert after[(("method", "GET"), ("route", "(no route)"), ("status", "404"))] >= 1
    assert after[(("method", "other"), ("route", "(no route)"), ("status", "405"))] >= 1
    assert families["careplan_http_requests"].type == "counter"
    assert families["careplan_http_request_duration_seconds"].type == "histogram"
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert str(plan_id) not in text and "/v1/nothing" not in text


def test_collectors_are_read_at_each_scrape_and_a_failing_one_costs_only_its_own():
    from prometheus_client.core import GaugeMetricFamily

    app = make_app()
    reads = []

    def good():
        reads.append(1)
        yield GaugeMetricFamily("test_things_open", "things", value=len(reads))

    def bad():
        raise OSError("store down")

    metrics.add_collector(app, "good", good)
    metrics.add_collector(app, "bad", bad)
    client = app.test_client()
    scrape(client)
    families = scrape(client)
    assert samples(families["test_things_open"], "test_things_open") == {(): 2}
    success = samples(families["careplan_metrics_collector_success"], "careplan_metrics_collector_success")
    assert success == {(("collector", "good"),): 1, (("collector", "bad"),): 0}


def test_token_from_env(tmp_path: Path):
    assert metrics.token_from_env({}) is None
    assert metrics.token_from_env({metrics.TOKEN_VARIABLE: TOKEN}) == TOKEN
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert metrics.token_from_env({metrics.TOKEN_FILE_VARIABLE: str(path)}) == TOKEN
    for env in ({metrics.TOKEN_VARIABLE: "short"},
                {metrics.TOKEN_FILE_VARIABLE: str(tmp_path / "missing")},
                {metrics.TOKEN_VARIABLE: TOKEN, metrics.TOKEN_FILE_VARIABLE: str(path)}):
        with pytest.raises(ConfigError):
            metrics.token_from_env(env)


def test_multiprocess_directory_private_per_instance_and_emptied(tmp_path: Path):
    assert metrics.prepare_multiprocess("plan-service", tmp_path, 8081, {}) is None  # off
    env = {metrics.TOKEN_VARIABLE: TOKEN}
    path = metrics.prepare_multiprocess("plan-service", tmp_path, 8081, env)
    assert path == tmp_path / "metrics" / "plan-service-8081"
    assert env[metrics.MULTIPROC_VARIABLE] == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    (path / "counter_123.db").write_bytes(b"old")
    os.chmod(path, 0o755)
    assert metrics.prepare_multiprocess("plan-service", tmp_path, 8081, {metrics.TOKEN_VARIABLE: TOKEN}) == path
    assert list(path.iterdir()) == []
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    other = metrics.prepare_multiprocess("plan-service", tmp_path, 8091, {metrics.TOKEN_VARIABLE: TOKEN})
    assert other != path


def test_the_dashboard_and_the_readme_name_the_same_metrics():
    import json
    import re

    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "infra/grafana/careplan-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b((?:careplan|plan_service|notification)_[a-z_]+)", target["expr"])}
    readme = (root / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", readme, re.MULTILINE))
    base = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert base <= documented, base - documented
