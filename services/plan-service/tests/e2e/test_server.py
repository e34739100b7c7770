"""plan-service as a real process (gunicorn, SQLite file) driven over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[4]


def headers(data_dir: Path, role: str = "integration", sub: str = "epr-1", **kw) -> dict[str, str]:
    key = load_or_create_dev_key(data_dir / "dev-signing.key")
    return {"Authorization": "Bearer " + mint_token(key, sub, role, **kw)}


def open_plan(url: str, auth: dict[str, str], patient_id: str = "pat-synth-1") -> str:
    response = requests.post(f"{url}/v1/plans", headers=auth, timeout=10, json={
        "patient_id": patient_id, "service_level": "municipal", "age_band": "18-25"})
    assert response.status_code == 201, response.text
    return response.json()["plan_id"]


def test_scenario_over_http_and_data_survives_restart(start_plan_service, data_dir):
    server = start_plan_service()
    auth = headers(data_dir, on_behalf_of="clin-7")
    plan_id = open_plan(server.url, auth)
    response = requests.post(f"{server.url}/v1/plans/{plan_id}/events", headers=auth, timeout=10, json=[
        {"type": "WhatMattersRecorded", "text": "Å kunne gå på fotballtrening"},
        {"type": "GoalSet", "goal_id": "g1", "text": "Trene to ganger i uka", "expressed_by": "patient"},
    ])
    assert response.status_code == 201 and response.json()["version"] == 3
    server.stop()
    again = start_plan_service()
    plan = requests.get(f"{again.url}/v1/plans/{plan_id}", headers=auth, timeout=10)
    assert plan.status_code == 200 and plan.json()["version"] == 3
    assert plan.headers["ETag"] == '"3"'
    timeline = requests.get(f"{again.url}/v1/plans/{plan_id}/timeline", headers=auth, timeout=10).json()
    assert [i["type"] for i in timeline["items"]] == ["GoalSet", "WhatMattersRecorded", "PlanOpened"]


def test_idempotency_key_holds_across_a_server_restart(start_plan_service, data_dir):
    server = start_plan_service()
    auth = {**headers(data_dir), "Idempotency-Key": "epr-message-42"}
    plan_id = open_plan(server.url, headers(data_dir))
    event = {"type": "GoalSet", "goal_id": "g1", "text": "x", "expressed_by": "patient"}
    first = requests.post(f"{server.url}/v1/plans/{plan_id}/events", headers=auth, json=event, timeout=10)
    server.stop()
    again = start_plan_service()
    replay = requests.post(f"{again.url}/v1/plans/{plan_id}/events", headers=auth, json=event, timeout=10)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    plan = requests.get(f"{again.url}/v1/plans/{plan_id}", headers=auth, timeout=10).json()
    assert plan["version"] == 2


def test_two_real_servers_racing_on_one_plan(start_plan_service, data_dir):
    """Two server processes on one SQLite file, two clients posting to the same plan at the
    same moment: each request is answered 201 or 409, never 5xx, and the store holds exactly
    the events that were answered 201, in gap-free versions."""
    a, b = start_plan_service(), start_plan_service()
    auth = headers(data_dir)
    plan_id = open_plan(a.url, auth)
    statuses: list[int] = []
    lock = threading.Lock()

    def post(url: str, barrier: threading.Barrier, n: int) -> None:
        barrier.wait()
        r = requests.post(f"{url}/v1/plans/{plan_id}/events", headers=auth, timeout=30,
                          json={"type": "WhatMattersRecorded", "text": f"racer {n}"})
        with lock:
            statuses.append(r.status_code)

    rounds = 0
    while rounds < 200 and (rounds < 20 or 409 not in statuses):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=post, args=(url, barrier, rounds)) for url in (a.url, b.url)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rounds += 1
    assert set(statuses) <= {201, 409}, statuses
    assert 409 in statuses, "two real writers never collided in 200 rounds"
    timeline = requests.get(f"{a.url}/v1/plans/{plan_id}/timeline?limit=200", headers=auth, timeout=10).json()
    versions = [item["version"] for item in timeline["items"]]
    assert len(versions) == 1 + statuses.count(201)
    assert versions == list(range(len(versions), 0, -1))


def test_auth_over_http(start_plan_service, data_dir):
    server = start_plan_service()
    plan_id = open_plan(server.url, headers(data_dir), patient_id="pat-synth-5")
    assert requests.get(f"{server.url}/v1/plans/{plan_id}", timeout=10).status_code == 401
    own = requests.get(f"{server.url}/v1/plans/{plan_id}", timeout=10,
                       headers=headers(data_dir, "patient", "pat-synth-5"))
    assert own.status_code == 200
    other = requests.get(f"{server.url}/v1/plans/{plan_id}", timeout=10,
                         headers=headers(data_dir, "patient", "pat-synth-6"))
    assert other.status_code == 403 and other.headers["Content-Type"] == "application/problem+json"


def test_readme_curl_session_works_as_written(start_plan_service, data_dir, tmp_path):
    """The README's curl session, run by bash against a real server, exactly as written."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- curl-session -->\s*```bash\n(.*?)```", readme, re.S)
    assert match, "README has a curl session block"
    server = start_plan_service()
    env = {**os.environ, "CAREPLAN_DATA_DIR": str(data_dir), "PLAN": server.url,
           "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    script = "set -euo pipefail\n" + match.group(1)
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WhatMattersRecorded" in result.stdout and '"version":' in result.stdout
