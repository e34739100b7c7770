"""Issue 13, end to end with real processes: a plan that goes quiet prompts its coordinator by
the passing of time alone, new activity resolves it, a second quiet period is a new prompt; a
plan without a coordinator prompts the unassigned inbox; a closed plan never; and a new
coordinator takes over the plan's prompts, the move shown in their history.

Nobody waits 90 days: notification-service's clock is moved. No setting of the service moves
its clock (production must not have one), so this test starts the real `notification-service
serve` with a `sitecustomize` on its PYTHONPATH that shifts SystemClock.now by the number of
seconds in a file the test writes. plan-service keeps the real time: events are recorded now.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token

pytestmark = pytest.mark.e2e

DAY = 86400
SITECUSTOMIZE = '''
import os
from datetime import datetime, timedelta, timezone

from notification_service.application import service as _service

_OFFSET_FILE = os.environ["CAREPLAN_TEST_CLOCK_OFFSET_FILE"]


def _now(self):
    try:
        with open(_OFFSET_FILE) as f:
            offset = float(f.read().strip() or 0)
    except OSError:
        offset = 0.0
    return datetime.now(timezone.utc) + timedelta(seconds=offset)


_service.SystemClock.now = _now
'''


class Stack:
    def __init__(self, plan_url: str, notify_url: str, data_dir: Path, offset_file: Path):
        self.plan_url, self.notify_url, self.offset_file = plan_url, notify_url, offset_file
        self.key = load_or_create_dev_key(data_dir / "dev-signing.key")

    def move_clock(self, seconds: float) -> None:
        self.offset_file.write_text(str(seconds))

    def auth(self, role: str, sub: str, **kw: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_token(self.key, sub, role, **kw)}

    def post(self, plan_id: str, events: Any) -> None:
        r = requests.post(f"{self.plan_url}/v1/plans/{plan_id}/events", json=events, timeout=10,
                          headers=self.auth("integration", "epr-1", on_behalf_of="clin-7"))
        assert r.status_code == 201, r.text

    def open_plan(self, coordinator: str | None) -> str:
        r = requests.post(f"{self.plan_url}/v1/plans", timeout=10, headers=self.auth("integration", "epr-1",
                                                                                      on_behalf_of="clin-7"),
                          json={"patient_id": f"pat-synth-{uuid.uuid4().hex[:6]}", "service_level": "municipal",
                                "age_band": "18-25"})
        assert r.status_code == 201, r.text
        plan_id = r.json()["plan_id"]
        if coordinator:
            self.post(plan_id, {"type": "CoordinatorAssigned", "coordinator_id": coordinator,
                                "service_level": "specialist"})
        return plan_id

    def inbox(self, who: str, status: str = "open") -> list[dict]:
        r = requests.get(f"{self.notify_url}/v1/prompts", params={"status": status, "limit": 500},
                         headers=self.auth("coordinator", who), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def one(self, who: str, prompt_id: str) -> requests.Response:
        return requests.get(f"{self.notify_url}/v1/prompts/{prompt_id}", headers=self.auth("coordinator", who),
                            timeout=10)

    def wait_for(self, who: str, predicate, status: str = "open", timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            items = self.inbox(who, status)
            if predicate(items):
                return items
            if time.monotonic() > deadline:
                raise AssertionError(f"{who}: not within {timeout}s: {[(i['reason'], i['plan_id']) for i in items]}")
            time.sleep(0.1)


def quiet(items: list[dict], plan_id: str) -> list[dict]:
    return [i for i in items if i["reason"] == "plan_inactive" and i["plan_id"] == plan_id]


@pytest.fixture
def stack(start_plan_service, start_notification_service, data_dir, tmp_path):
    hook = tmp_path / "clock-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    offset_file = tmp_path / "clock-offset"
    offset_file.write_text("0")
    plan = start_plan_service()
    notifications = start_notification_service(
        PLAN_SERVICE_URL=plan.url, NOTIFICATION_TRANSPORT="feed", NOTIFICATION_TICK_SECONDS="1",
        PYTHONPATH=str(hook), CAREPLAN_TEST_CLOCK_OFFSET_FILE=str(offset_file))
    yield Stack(plan.url, notifications.url, data_dir, offset_file)
    notifications.stop()
    plan.stop()


def test_quiet_plans_are_prompted_by_time_and_prompts_follow_a_new_coordinator(stack):
    started = time.monotonic()
    active = stack.open_plan("k1")
    unassigned = stack.open_plan(None)
    closed = stack.open_plan("k1")
    stack.post(closed, {"type": "PlanClosed", "reason": "goals_reached"})
    # the events are in: 18-25 in both service levels, so a triangle meeting is suggested
    [suggestion] = stack.wait_for("k1", lambda items: [i["plan_id"] for i in items] == [active])

    stack.move_clock(89 * DAY)  # not yet: a few ticks go by without a prompt
    time.sleep(3)
    assert quiet(stack.inbox("k1", "all"), active) == [] and stack.inbox("koordinerende-enhet", "all") == []

    stack.move_clock(90 * DAY + 2)  # the threshold passes: the tick alone makes the prompts
    [first] = quiet(stack.wait_for("k1", lambda items: quiet(items, active)), active)
    assert first["subject"].startswith("since ") and first["details"]["inactive_days"] == 90
    [orphan] = stack.wait_for("koordinerende-enhet", lambda items: quiet(items, unassigned))
    assert orphan["plan_id"] == unassigned
    time.sleep(2)  # a closed plan is never prompted
    assert [i for i in stack.inbox("k1", "all") if i["plan_id"] == closed and i["reason"] == "plan_inactive"] == []

    # back to the real time; a new coordinator is recorded: new activity resolves the quiet
    # prompt, and every prompt of the plan moves to the new coordinator, the move in its history
    stack.move_clock(0)
    stack.post(active, {"type": "CoordinatorAssigned", "coordinator_id": "k2", "service_level": "specialist"})
    stack.wait_for("k2", lambda items: [i["id"] for i in items] == [suggestion["id"]])
    assert stack.inbox("k1", "all") == [i for i in stack.inbox("k1", "all") if i["plan_id"] == closed]
    for prompt_id in (suggestion["id"], first["id"]):
        assert stack.one("k1", prompt_id).status_code == 404  # the old coordinator no longer sees it
        moved = stack.one("k2", prompt_id)
        assert moved.status_code == 200
        [entry] = moved.json()["history"]
        assert entry["kind"] == "reassigned" and (entry["from"], entry["to"]) == ("k1", "k2") and entry["at"]
    assert stack.one("k2", first["id"]).json()["status"] == "resolved"

    stack.move_clock(90 * DAY + 2)  # a second quiet period: a new prompt, for the new coordinator
    [second] = quiet(stack.wait_for("k2", lambda items: quiet(items, active)), active)
    assert second["id"] != first["id"] and second["subject"] != first["subject"]
    assert second["history"] == []
    assert time.monotonic() - started < 120
