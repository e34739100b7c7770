"""What a review found could lose, resurrect or misdirect prompts, each now a test: a failing rule
does not resolve its prompts; an undecodable event does not stop its plan's next one; a late
consent does not outlive the relative's removal; a former coordinator keeps no plan content."""

from __future__ import annotations

from datetime import timedelta

import pytest

from notification_service.adapters.memory_store import MemoryStore
from notification_service.application.service import ManualClock, Notifications
from notification_service.domain import rules
from notification_service.domain import view as view_module
from notification_service.domain.prompts import PromptStatus
from notification_service.domain.rules import Settings


@pytest.fixture
def service(clock: ManualClock):
    return Notifications(MemoryStore(), Settings(), clock)


@pytest.fixture
def s(stream):
    return stream()


@pytest.fixture
def T0(clock: ManualClock):
    return clock.now()


def feed(service: Notifications, *events) -> list[str]:
    return [service.handle("feed", 0, e["position"], e).status for e in events]


def test_a_failing_rule_leaves_its_open_prompts_open(service, s, T0, monkeypatch):
    feed(service, s.wire("PlanOpened", service_level="municipal", age_band="26-64", birth_date=None),
         s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="municipal"),
         s.wire("EvaluationScheduled", evaluation_id="e1", scheduled_for=T0))
    assert [(p.rule, p.status) for p in service.inbox("k1")] == [("evaluation_due", PromptStatus.OPEN)]

    def evaluation_due(view, now, settings):  # the same rule, now with a bug
        raise RuntimeError("a bug")

    monkeypatch.setattr(rules, "RULES", tuple(evaluation_due if r is rules.evaluation_due else r for r in rules.RULES))
    feed(service, s.wire("GoalSet", goal_id="g1", expressed_by="patient", target_date=None))
    assert [(p.rule, p.status) for p in service.inbox("k1", "all")] == [("evaluation_due", PromptStatus.OPEN)]


def test_an_undecodable_event_does_not_stop_its_plans_next_event(service, s, T0):
    opened = s.wire("PlanOpened", service_level="municipal", age_band="26-64", birth_date=None)
    assigned = s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="municipal")
    bad = s.wire("TriangleMeetingRequested", meeting_id="m1")
    bad["payload"].pop("meeting_id")  # a good envelope, a payload this consumer cannot read
    statuses = feed(service, opened, assigned, bad,
                    s.wire("EvaluationScheduled", evaluation_id="e1", scheduled_for=T0))
    assert statuses == ["processed", "processed", "dead_letter", "processed"]
    assert [p.rule for p in service.inbox("k1")] == ["evaluation_due"]


def test_a_late_consent_does_not_outlive_the_relatives_removal(service, s, T0, monkeypatch):
    real = view_module._HANDLERS["RelativeConsentGiven"]

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(view_module._HANDLERS, "RelativeConsentGiven", broken)
    feed(service, s.wire("PlanOpened", service_level="municipal", age_band="26-64", birth_date=None),
         s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="municipal"),
         s.wire("ParticipantAdded", participant_id="r1", kind="relative", service_level=None),
         s.wire("RelativeConsentGiven", relative_id="r1", scope=["goals"], valid_from=T0,
                valid_until=T0 + timedelta(days=20)),
         s.wire("ParticipantRemoved", participant_id="r1"))
    monkeypatch.setitem(view_module._HANDLERS, "RelativeConsentGiven", real)  # fixed
    assert service.retry_dead_letters()["resolved"] == 1
    service.clock.advance(timedelta(days=7))
    service.tick()
    assert [p.rule for p in service.inbox("k1", "all") if p.rule == "consent_expiring"] == []


def test_a_former_coordinator_keeps_no_prompt_of_the_plan(service, s, T0):
    feed(service, s.wire("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None),
         s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="municipal"),
         s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=T0, place="Kafé X", transport="buss",
                companion="bror", no_show_strategy="Ring samme dag"),
         s.wire("TriangleMeetingMissed", meeting_id="m1"))
    [prompt] = service.inbox("k1")
    service.acknowledge(prompt.id, "k1")
    feed(service, s.wire("CoordinatorAssigned", coordinator_id="k2", service_level="municipal"))
    assert service.inbox("k1", "all") == []
    assert [p.rule for p in service.inbox("k2", "all")] == ["no_show_follow_up"]
