"""Privacy of the logs: both services as real processes at LOG_LEVEL=DEBUG go through a whole
scenario with a unique synthetic marker in every free-text field, and through errors that echo
it back (422, 409, 400, 401); afterwards no log line of either process, nor anything logged in
this test process, holds the marker or a bearer token."""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token

pytestmark = pytest.mark.e2e

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")  # the start of any JWT (header {"...)


def test_no_plan_content_or_token_in_any_log(start_plan_service, start_notification_service, data_dir, caplog):
    caplog.set_level(logging.DEBUG)
    marker = f"ZQX-{uuid.uuid4()}"
    plan = start_plan_service(LOG_LEVEL="DEBUG")
    notifications = start_notification_service(LOG_LEVEL="DEBUG", PLAN_SERVICE_URL=plan.url,
                                               NOTIFICATION_TRANSPORT="feed", NOTIFICATION_TICK_SECONDS="1")
    key = load_or_create_dev_key(data_dir / "dev-signing.key")
    tokens = {
        "writer": mint_token(key, "epr-1", "integration", on_behalf_of="clin-7"),
        "coordinator": mint_token(key, "k1", "coordinator"),
        "patient": mint_token(key, "pat-zqx", "patient"),
        "forged": mint_token(b"not the key" * 3, "epr-1", "integration"),
    }

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[name]}", "X-Request-Id": f"t-{uuid.uuid4().hex[:8]}"}

    def post(plan_id: str, events, expect: int = 201, **headers: str) -> requests.Response:
        r = requests.post(f"{plan.url}/v1/plans/{plan_id}/events", json=events, timeout=10,
                          headers={**auth("writer"), **headers})
        assert r.status_code == expect, r.text
        return r

    r = requests.post(f"{plan.url}/v1/plans", headers=auth("writer"), timeout=10,
                      json={"patient_id": "pat-zqx", "service_level": "municipal", "age_band": "18-25"})
    assert r.status_code == 201, r.text
    plan_id = r.json()["plan_id"]
    # held and missed only once their time has come: scheduled an hour ago (the plan was opened now)
    soon = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    post(plan_id, [
        {"type": "CoordinatorAssigned", "coordinator_id": "k1", "name": f"{marker} koordinator",
         "service_level": "specialist"},
        {"type": "WhatMattersRecorded", "text": f"{marker} what matters", "language": "nb"},
        {"type": "GoalSet", "goal_id": "g1", "text": f"{marker} goal", "expressed_by": "patient"},
        {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral",
         "description": f"{marker} information", "adapted_how": f"{marker} adapted"},
        {"type": "ParticipantAdded", "participant_id": "r1", "kind": "relative", "name": f"{marker} mor",
         "relation": "mother"},
        {"type": "EvaluationScheduled", "evaluation_id": "e1", "scheduled_for": soon},
        {"type": "EvaluationHeld", "evaluation_id": "e1", "outcome": f"{marker} outcome",
         "patient_took_part": True, "participants": ["k1"]},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": soon,
         "place": f"{marker} place", "transport": f"{marker} bus", "companion": f"{marker} brother",
         "no_show_strategy": f"{marker} strategy"},
        {"type": "TriangleMeetingMissed", "meeting_id": "m1", "note": f"{marker} note"},
    ], **{"Idempotency-Key": "zqx-1"})
    post(plan_id, [{"type": "GoalRevised", "goal_id": "g1", "text": f"{marker} revised", "reason": marker}])

    # reads: the plan, the timeline, as of a time, the feed, the patient's own view
    for path, params in ((f"/v1/plans/{plan_id}", {}), (f"/v1/plans/{plan_id}/timeline", {"limit": 50}),
                         (f"/v1/plans/{plan_id}", {"as_of": datetime.now(timezone.utc).isoformat()})):
        r = requests.get(plan.url + path, params=params, headers=auth("writer"), timeout=10)
        assert r.status_code == 200 and marker in r.text, path  # the content is really there
    assert requests.get(f"{plan.url}/v1/plans/{plan_id}", headers=auth("patient"), timeout=10).status_code == 200
    assert requests.get(f"{plan.url}/v1/feed?after=0&limit=100", headers=auth("writer"), timeout=10).status_code == 200

    # the inbox: the missed meeting's follow-up carries the agreed strategy
    deadline = time.monotonic() + 30
    while True:
        r = requests.get(f"{notifications.url}/v1/prompts", params={"status": "all", "limit": 500},
                         headers=auth("coordinator"), timeout=10)
        assert r.status_code == 200, r.text
        follow_ups = [p for p in r.json()["items"] if p["reason"] == "no_show_follow_up"]
        if follow_ups or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert follow_ups and marker in follow_ups[0]["details"]["no_show_strategy"]
    prompt_id = follow_ups[0]["id"]
    assert requests.get(f"{notifications.url}/v1/prompts/{prompt_id}", headers=auth("coordinator"),
                        timeout=10).status_code == 200
    assert requests.post(f"{notifications.url}/v1/prompts/{prompt_id}/ack", headers=auth("coordinator"),
                         timeout=10).status_code == 200

    # errors that carry the marker in what they reject
    r = post(plan_id, [{"type": "GoalSet", "goal_id": "g2", "text": "x", "expressed_by": marker}], expect=422)
    r = post(plan_id, {"type": marker, "text": marker}, expect=422)
    r = post(plan_id, {"type": "EvaluationScheduled", "evaluation_id": "e9", "scheduled_for": marker}, expect=422)
    post(plan_id, {"type": "GoalSet", "goal_id": "g1", "text": f"{marker} again", "expressed_by": "patient"},
         expect=409)
    post(plan_id, {"type": "GoalAchieved", "goal_id": marker}, expect=422)  # a rule naming the bad id
    post(plan_id, [{"type": "WhatMattersRecorded", "text": marker, "language": "nb"}], expect=412,
         **{"If-Match": '"1"'})
    r = requests.post(f"{plan.url}/v1/plans/{plan_id}/events", timeout=10,
                      json=[{"type": "WhatMattersRecorded", "text": f"{marker} reused key", "language": "nb"}],
                      headers={**auth("writer"), "Idempotency-Key": "zqx-1"})
    assert 400 <= r.status_code < 500, r.text  # a key reused for another body
    r = requests.post(f"{plan.url}/v1/plans/{plan_id}/events", data=f'{{"type": "{marker}"', timeout=10,
                      headers={**auth("writer"), "Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    r = requests.get(f"{plan.url}/v1/plans/{plan_id}", params={"as_of": marker}, headers=auth("writer"), timeout=10)
    assert r.status_code == 422, r.text
    r = requests.post(f"{plan.url}/v1/plans", headers=auth("writer"), timeout=10,
                      json={"patient_id": marker, "service_level": marker, "age_band": marker})
    assert r.status_code == 422, r.text
    r = requests.get(f"{notifications.url}/v1/prompts", params={"status": marker}, headers=auth("coordinator"),
                     timeout=10)
    assert r.status_code == 422, r.text
    for url in (f"{plan.url}/v1/plans/{plan_id}", f"{notifications.url}/v1/prompts"):
        assert requests.get(url, headers=auth("forged"), timeout=10).status_code == 401
    r = requests.get(f"{plan.url}/v1/plans/{plan_id}", timeout=10,
                     headers={"Authorization": f"Bearer {marker}"})
    assert r.status_code == 401

    notifications.stop()
    plan.stop()
    server_logs = {"plan-service": plan.logs(), "notification-service": notifications.logs()}
    # the test's own HTTP client logs the URLs it requests (some carry the marker on purpose)
    ours = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("urllib3"))

    for name, text in server_logs.items():
        requests_logged = [line for line in text.splitlines() if '"msg": "request"' in line]
        assert len(requests_logged) >= 5, f"{name} logged no request lines: the grep would prove nothing"
        statuses = {int(m) for m in re.findall(r'"status": (\d+)', "\n".join(requests_logged))}
        assert {200, 401, 422} <= statuses, f"{name}: the failing requests were logged too ({statuses})"
    assert '"level": "debug"' in server_logs["notification-service"], "LOG_LEVEL=DEBUG took effect"
    assert {201, 409, 412} <= {int(m) for m in re.findall(r'"status": (\d+)', server_logs["plan-service"])}
    for name, text in {**server_logs, "test process": ours}.items():
        assert marker not in text, f"plan content in the {name} log:\n" + _lines_with(text, marker)
        for token in tokens.values():
            assert token not in text, f"a bearer token in the {name} log"
            assert token.split(".")[2] not in text, f"a token's signature in the {name} log"
        assert not JWT.search(text), f"something like a JWT in the {name} log:\n" + _lines_with(text, "eyJ")


def _lines_with(text: str, needle: str) -> str:
    return "\n".join(line for line in text.splitlines() if needle in line)[:3000]
