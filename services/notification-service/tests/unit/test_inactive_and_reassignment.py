"""Issue 13: plans that go quiet (``plan_inactive``) and prompts that follow a new coordinator,
with the move in the prompt's history. Table tests of the rule as a function of the view and the
time; the application on the in-memory store and on SQLite (durable history); the API, the
pages and the settings."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_shared.config import ConfigError
from notification_service.adapters.memory_store import MemoryStore
from notification_service.adapters.store import SQLiteStore
from notification_service.application.service import Notifications, PromptNotFound
from notification_service.bootstrap import bootstrap
from notification_service.config import Config
from notification_service.domain import rules
from notification_service.domain.prompts import Reason
from notification_service.domain.rules import Settings, desired_prompts, next_check, recipient_for
from notification_service.domain.view import PlanView, apply, apply_late, skip
from notification_service.web.app import create_app

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # as the conftest's clock and events
DAY, MICRO = timedelta(days=1), timedelta(microseconds=1)
S = Settings()
QUIET = 90 * DAY


def view(**kw) -> PlanView:
    base = dict(plan_id="p", version=2, opened_at=T0, age_band="26-64", service_levels=["municipal"],
                coordinator_id="k1", last_event_at=T0)
    base.update(kw)
    return PlanView(**base)


def keys(prompts) -> list[tuple[str, str]]:
    return [(p.rule, p.subject) for p in prompts]


# -- the rule -------------------------------------------------------------------------------

SINCE_T0 = [("plan_inactive", "since 2026-03-02T09:00:00+00:00")]


@pytest.mark.parametrize("now, last, closed, expected", [
    (T0 + QUIET - MICRO, T0, False, []),                 # not before the threshold
    (T0 + QUIET, T0, False, SINCE_T0),                   # at exactly the threshold
    (T0 + 300 * DAY, T0, False, SINCE_T0),               # long after: the same prompt (same key)
    (T0 + QUIET, T0 + DAY, False, []),                   # something recorded a day later
    (T0 + DAY + QUIET, T0 + DAY, False, [("plan_inactive", "since 2026-03-03T09:00:00+00:00")]),  # a new quiet period
    (T0 + 300 * DAY, T0, True, []),                      # a closed plan: never
    (T0 + 300 * DAY, None, False, []),                   # no event time known (a view from before)
])
def test_plan_inactive(now, last, closed, expected):
    v = view(last_event_at=last, closed=closed)
    assert keys(p for p in desired_prompts(v, now, S) if p.rule == "plan_inactive") == expected
    if expected:
        [spec] = rules.plan_inactive(v, now, S)
        assert spec.due_at == last + QUIET and spec.escalate_at is None
        assert spec.details == {"last_event_at": last.isoformat(), "inactive_days": 90}


def test_the_threshold_is_a_setting():
    assert rules.plan_inactive(view(), T0 + 30 * DAY, Settings(inactive_after=30 * DAY))
    assert not rules.plan_inactive(view(), T0 + 30 * DAY, S)


@pytest.mark.parametrize("now, expected", [
    (T0 + DAY, T0 + QUIET),          # the plan is looked at again when it has been quiet for 90 days
    (T0 + QUIET, T0 + 180 * DAY),    # once passed: the next moment (the evaluation interval here)
])
def test_next_check_comes_when_the_plan_goes_quiet(now, expected):
    assert next_check(view(), now, S) == expected


def test_next_check_of_a_closed_plan_is_none():
    assert next_check(view(closed=True), T0, S) is None


@pytest.mark.parametrize("coordinator, rule, expected", [
    ("k1", Reason.PLAN_INACTIVE, "k1"),
    (None, Reason.PLAN_INACTIVE, "koordinerende-enhet"),   # nobody else will ever look at it
    (None, Reason.EVALUATION_DUE, None),                    # the others wait for a coordinator, as before
])
def test_who_is_prompted(coordinator, rule, expected):
    assert recipient_for(view(coordinator_id=coordinator), rule, S) == expected
    if expected == "koordinerende-enhet":
        assert recipient_for(view(coordinator_id=None), rule, Settings(unassigned_recipient="ke-1")) == "ke-1"


# -- the view: the last event's time --------------------------------------------------------

def test_every_event_moves_the_last_event_time_and_a_late_one_never_moves_it_back(stream):
    s = stream()
    v = PlanView(str(s.plan_id))
    apply(v, s.event("PlanOpened", T0, service_level="municipal", age_band="26-64", birth_date=None))
    assert v.last_event_at == T0
    apply(v, s.event("WhatMattersRecorded", T0 + 5 * DAY, language="nb"))  # a type the rules have no use for
    assert v.last_event_at == T0 + 5 * DAY
    late = s.event("WhatMattersRecorded", T0 + 2 * DAY, language="nb")
    skip(v, late.plan_version)
    apply_late(v, late)  # applied late (a retried dead letter), recorded earlier: no move back
    assert v.last_event_at == T0 + 5 * DAY
    assert PlanView.from_json(v.to_json()).last_event_at == T0 + 5 * DAY
    assert PlanView.from_json({k: val for k, val in v.to_json().items() if k != "last_event_at"}
                              ).last_event_at is None  # a view stored before the field: no prompt


# -- the application ------------------------------------------------------------------------

@pytest.fixture
def service(clock):
    return Notifications(MemoryStore(), Settings(), clock)


def feed(service, *events):
    return [service.handle("feed", 0, e["position"], e) for e in events]


def plan(s, clock, coordinator="k1"):
    events = [s.wire("PlanOpened", clock.now(), service_level="municipal", age_band="26-64", birth_date=None)]
    if coordinator:
        events.append(s.wire("CoordinatorAssigned", clock.now(), coordinator_id=coordinator, service_level=None))
    return events


def inactive(service, recipient="k1", status="open"):
    return [p for p in service.inbox(recipient, status) if p.rule == "plan_inactive"]


def test_a_quiet_plan_prompts_its_coordinator_by_time_alone_and_new_activity_resolves_it(service, stream, clock):
    s = stream()
    feed(service, *plan(s, clock))
    clock.advance(QUIET - MICRO)
    service.tick()
    assert inactive(service) == []
    clock.advance(MICRO)
    assert service.tick()["checked"] == 1  # the view was due exactly then
    [first] = inactive(service)
    assert first.subject == "since 2026-03-02T09:00:00+00:00" and first.due_at == T0 + QUIET
    feed(service, s.wire("WhatMattersRecorded", clock.now(), language="nb"))  # anything recorded resolves it
    assert inactive(service) == [] and [p.id for p in inactive(service, status="resolved")] == [first.id]
    clock.advance(QUIET)  # a second quiet period: a new prompt
    service.tick()
    [second] = inactive(service)
    assert second.id != first.id and second.subject == f"since {(T0 + QUIET).isoformat()}"


def test_a_closed_plan_is_never_prompted(service, stream, clock):
    s = stream()
    feed(service, *plan(s, clock), s.wire("PlanClosed", clock.now(), reason="finished"))
    clock.advance(5 * QUIET)
    service.tick()
    assert service.inbox("k1", "all") == []


def test_a_quiet_plan_without_a_coordinator_prompts_the_unassigned_inbox(stream, clock):
    service = Notifications(MemoryStore(), Settings(unassigned_recipient="ke-oslo"), clock)
    s = stream()
    feed(service, *plan(s, clock, coordinator=None))
    clock.advance(QUIET)
    service.tick()
    [prompt] = inactive(service, "ke-oslo")
    assert prompt.recipient == "ke-oslo" and prompt.history == []
    # a coordinator is assigned: new activity resolves it, and it moves to the coordinator
    feed(service, s.wire("CoordinatorAssigned", clock.now(), coordinator_id="k1", service_level=None))
    assert service.inbox("ke-oslo", "all") == []
    [moved] = inactive(service, "k1", "resolved")
    assert moved.id == prompt.id and [(h["from"], h["to"]) for h in moved.history] == [("ke-oslo", "k1")]


def test_a_new_coordinator_takes_over_the_open_prompts_and_the_history_shows_the_move(service, stream, clock):
    s = stream()
    feed(service, *plan(s, clock), s.wire("InformationGiven", clock.now(), information_id="i1",
                                          topic="rights", form="oral"))
    [prompt] = service.inbox("k1")
    assert prompt.history == []
    clock.advance(DAY)
    feed(service, s.wire("CoordinatorAssigned", clock.now(), coordinator_id="k2", service_level=None))
    assert service.inbox("k1", "all") == []
    with pytest.raises(PromptNotFound):
        service.prompt_for(prompt.id, "k1")
    moved = service.prompt_for(prompt.id, "k2")
    assert moved.history == [{"kind": "reassigned", "at": (T0 + DAY).isoformat(), "from": "k1", "to": "k2"}]
    feed(service, s.wire("CoordinatorAssigned", clock.now(), coordinator_id="k2", service_level=None))
    assert len(service.prompt_for(prompt.id, "k2").history) == 1  # the same coordinator again: no move


def test_the_history_is_stored_durably(tmp_path, stream, clock):
    path = tmp_path / "prompts.sqlite"
    service = Notifications(SQLiteStore(path), Settings(), clock)
    s = stream()
    feed(service, *plan(s, clock), s.wire("InformationGiven", clock.now(), information_id="i1",
                                          topic="rights", form="oral"),
         s.wire("CoordinatorAssigned", clock.now(), coordinator_id="k2", service_level=None))
    [prompt] = Notifications(SQLiteStore(path), Settings(), clock).inbox("k2")  # a new process
    assert [(h["kind"], h["from"], h["to"], h["at"]) for h in prompt.history] == [
        ("reassigned", "k1", "k2", T0.isoformat())]


# -- the API and the pages ------------------------------------------------------------------

def test_the_api_and_the_page_show_the_reason_and_the_history(tmp_path, stream, clock):
    config = Config(data_dir=tmp_path)
    services = bootstrap(config, clock=clock, with_workers=False)
    app = create_app(config, services)
    s = stream()
    feed(services.notifications, *plan(s, clock))
    clock.advance(QUIET)
    services.notifications.tick()
    feed(services.notifications, s.wire("CoordinatorAssigned", T0, coordinator_id="k2", service_level=None))
    # (recorded at T0, as if it had been stuck: the plan is still quiet, the prompt moves)
    key = load_or_create_dev_key(config.signing_key_file)
    client = app.test_client()
    k1, k2 = ({"Authorization": "Bearer " + mint_token(key, who, "coordinator")} for who in ("k1", "k2"))
    [item] = client.get("/v1/prompts", headers=k2).json["items"]
    assert item["reason"] == "plan_inactive" and "Nobody has recorded anything" in item["reason_text"]
    assert item["history"] == [{"kind": "reassigned", "at": (T0 + QUIET).isoformat(), "from": "k1", "to": "k2"}]
    assert client.get(f"/v1/prompts/{item['id']}", headers=k1).status_code == 404
    assert client.get(f"/v1/prompts/{item['id']}", headers=k2).json["history"] == item["history"]

    pages = app.test_client()
    login = pages.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.get_data(as_text=True)).group(1)
    pages.post("/login/dev", data={"csrf_token": csrf, "subject": "k2", "role": "coordinator"})
    page = pages.get(f"/prompts/{item['id']}").get_data(as_text=True)  # bokmål by default
    assert "<h1>Ingenting registrert i planen på lenge</h1>" in page
    assert "Ingen har registrert noe i denne planen på 90 dager." in page and "Sist registrert i planen" in page
    assert "Historikk" in page and "flyttet fra k1 til k2 (ny koordinator)" in page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    pages.post("/language", data={"csrf_token": csrf, "lang": "en", "next": "/"})
    page = pages.get(f"/prompts/{item['id']}").get_data(as_text=True)
    assert "Nothing recorded in the plan for a long time" in page
    assert "Nobody has recorded anything in this plan for 90 days." in page
    assert "moved from k1 to k2 (a new coordinator)" in page
    assert 'value="plan_inactive"' in pages.get("/").get_data(as_text=True)  # the reason filter offers it


# -- the settings ---------------------------------------------------------------------------

@pytest.mark.parametrize("env, days, recipient", [
    ({}, 90, "koordinerende-enhet"),
    ({"NOTIFICATION_INACTIVE_DAYS": "30"}, 30, "koordinerende-enhet"),
    ({"NOTIFICATION_INACTIVE_DAYS": "", "NOTIFICATION_UNASSIGNED_RECIPIENT": " ke-oslo "}, 90, "ke-oslo"),
])
def test_settings(env, days, recipient):
    config = Config.from_env(env)
    assert config.rules.inactive_after == timedelta(days=days) and config.rules.unassigned_recipient == recipient


@pytest.mark.parametrize("env, message", [
    ({"NOTIFICATION_INACTIVE_DAYS": "0"}, "NOTIFICATION_INACTIVE_DAYS must be between 1 and 3650"),
    ({"NOTIFICATION_INACTIVE_DAYS": "3651"}, "NOTIFICATION_INACTIVE_DAYS must be between 1 and 3650"),
    ({"NOTIFICATION_INACTIVE_DAYS": "ninety"}, "NOTIFICATION_INACTIVE_DAYS must be an integer"),
    ({"NOTIFICATION_UNASSIGNED_RECIPIENT": "  "}, "NOTIFICATION_UNASSIGNED_RECIPIENT"),
    ({"NOTIFICATION_UNASSIGNED_RECIPIENT": "koordinerende enhet"}, "no spaces"),
])
def test_bad_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)
