"""The application: events in, prompts out, exactly once; the clock; the inbox. On the in-memory
store (the store contract suite shows SQLite and PostgreSQL behave the same)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from notification_service.adapters.memory_store import MemoryStore
from notification_service.application.service import Notifications, PromptClosed, PromptNotFound
from notification_service.domain.rules import Settings

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def service(store, clock):
    return Notifications(store, Settings(), clock, channels=("webhook",))


def feed(service, *events):
    return [service.handle("feed", 0, e["position"], e) for e in events]


def young_plan(s, coordinator="k1", both_levels=True):
    """A 19-year-old's plan with a coordinator, in both service levels unless told otherwise."""
    events = [
        s.wire("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None),
        s.wire("CoordinatorAssigned", coordinator_id=coordinator, service_level=None),
    ]
    if both_levels:
        events.append(s.wire("ParticipantAdded", participant_id="dps-1", kind="professional",
                             service_level="specialist"))
    return events


def test_missed_triangle_meeting_prompts_the_coordinator_with_the_strategy(service, stream, clock):
    s = stream()
    feed(service, *young_plan(s))
    assert [p.rule for p in service.inbox("k1")] == ["triangle_meeting_suggested"]
    feed(service, s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now() + DAY,
                         place="Kafé", transport="buss", companion="bror", no_show_strategy="Ring, så hjemmebesøk"))
    assert service.inbox("k1") == []  # scheduled: the suggestion resolved itself
    assert [p.rule for p in service.inbox("k1", "resolved")] == ["triangle_meeting_suggested"]
    clock.advance(DAY + HOUR)
    feed(service, s.wire("TriangleMeetingMissed", meeting_id="m1", at=clock.now()))
    [prompt] = service.inbox("k1")
    assert prompt.rule == "no_show_follow_up" and prompt.recipient == "k1"
    assert prompt.details["no_show_strategy"] == "Ring, så hjemmebesøk"
    assert prompt.due_at.astimezone(Settings().tz).date() == clock.now().astimezone(Settings().tz).date()


def test_redelivery_and_replay_change_nothing(service, stream, store):
    s = stream()
    events = young_plan(s) + [s.wire("InformationGiven", information_id="i1", topic="rights", form="oral")]
    feed(service, *events)
    before = service.inbox("k1", "all")
    # the same positions again (a redelivery), and the same events at new positions (a relay re-send)
    assert {o.status for o in feed(service, *events)} == {"duplicate"}
    for offset, e in enumerate(events, start=100):
        assert service.handle("kafka", 3, offset, e).status == "duplicate"
    assert service.inbox("k1", "all") == before
    assert len(before) == 2


def test_a_prompt_resolves_itself_when_the_plan_shows_it_was_done(service, stream, clock):
    s = stream()
    feed(service, *young_plan(s, both_levels=False),
         s.wire("EvaluationScheduled", evaluation_id="e1", scheduled_for=clock.now() + 3 * DAY))
    assert service.inbox("k1") == []
    clock.advance(3 * DAY)
    assert service.tick()["checked"] == 1
    [prompt] = service.inbox("k1")
    assert prompt.rule == "evaluation_due"
    feed(service, s.wire("EvaluationHeld", evaluation_id="e1", patient_took_part=True, at=clock.now()))
    assert service.inbox("k1") == [] and service.inbox("k1", "resolved")[0].id == prompt.id


def test_overdue_evaluation_escalates_once(service, stream, clock, store):
    s = stream()
    feed(service, *young_plan(s, both_levels=False), s.wire("EvaluationScheduled", evaluation_id="e1", scheduled_for=clock.now()))
    [prompt] = service.inbox("k1")
    clock.advance(Settings().evaluation_grace - HOUR)
    assert service.tick()["escalated"] == 0
    clock.advance(2 * HOUR)
    assert service.tick()["escalated"] == 1
    assert service.tick()["escalated"] == 0
    assert service.inbox("k1")[0].escalated_at is not None
    with store.transaction() as tx:
        assert [(d["kind"], d["status"]) for d in tx.deliveries_of(prompt.id)] == [
            ("new", "pending"), ("escalated", "pending")]


def test_no_show_follow_up_escalates_if_not_acknowledged_the_same_day(service, stream, clock):
    s = stream()
    feed(service, *young_plan(s),
         s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now(), place="Kafé",
                transport=None, companion=None, no_show_strategy="Ring"),
         s.wire("TriangleMeetingMissed", meeting_id="m1", at=clock.now()))
    acked_plan = stream()
    feed(service, *young_plan(acked_plan, coordinator="k2"),
         acked_plan.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now(), place="x",
                         transport=None, companion=None, no_show_strategy="Ring"),
         acked_plan.wire("TriangleMeetingMissed", meeting_id="m1", at=clock.now()))
    service.acknowledge(service.inbox("k2")[0].id, "k2")
    clock.advance(DAY)
    assert service.tick()["escalated"] == 1
    assert service.inbox("k1")[0].escalated_at is not None
    assert service.inbox("k2", "acknowledged")[0].escalated_at is None


def test_a_restart_neither_loses_nor_repeats_a_prompt(store, stream, clock):
    first = Notifications(store, Settings(), clock)
    s = stream()
    feed(first, *young_plan(s, both_levels=False), s.wire("RelativeConsentGiven", relative_id="r1", scope=["goals"],
                                           valid_from=None, valid_until=clock.now() + 20 * DAY))
    clock.advance(7 * DAY)
    restarted = Notifications(store, Settings(), clock)  # e.g. after a crash
    restarted.tick()
    [prompt] = restarted.inbox("k1")
    assert prompt.rule == "consent_expiring"
    restarted.acknowledge(prompt.id, "k1")
    again = Notifications(store, Settings(), clock)
    clock.advance(HOUR)
    again.tick()
    assert again.inbox("k1") == [] and len(again.inbox("k1", "all")) == 1


@pytest.mark.parametrize("poison", [b"not json", b"[1, 2]", b'{"event_type": "PlanOpened"}',
                                    {"event_id": "x"}, "\udcff"])
def test_poison_goes_to_dead_letters_and_the_next_event_is_processed(service, stream, poison):
    s = stream()
    assert service.handle("kafka", 0, 0, poison).status == "dead_letter"
    opened = s.wire("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None)
    assert service.handle("kafka", 0, 1, opened).status == "processed"
    [dead] = service.dead_letters()
    assert dead["position"] == 0 and dead["reason"].startswith("undecodable")


def test_an_event_out_of_order_is_dead_lettered(service, stream):
    s = stream()
    feed(service, s.wire("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None))
    s.wire("GoalAchieved", goal_id="g1")  # version 2 lost
    late = s.wire("GoalAchieved", goal_id="g1")
    outcome = service.handle("feed", 0, late["position"], late)
    assert outcome.status == "dead_letter"
    assert service.dead_letters()[0]["reason"].startswith("unprocessable")


def test_inbox_is_per_coordinator_and_follows_reassignment(service, stream):
    s = stream()
    feed(service, *young_plan(s))
    [prompt] = service.inbox("k1")
    assert service.inbox("k2") == []
    with pytest.raises(PromptNotFound):
        service.prompt_for(prompt.id, "k2")
    with pytest.raises(PromptNotFound):
        service.acknowledge(prompt.id, "k2")
    feed(service, s.wire("CoordinatorAssigned", coordinator_id="k2", service_level=None))
    assert service.inbox("k1") == [] and service.inbox("k2")[0].id == prompt.id


def test_acknowledge_is_idempotent_and_refused_once_resolved(service, stream, clock):
    s = stream()
    feed(service, *young_plan(s))
    [prompt] = service.inbox("k1")
    assert service.acknowledge(prompt.id, "k1").status == "acknowledged"
    assert service.acknowledge(prompt.id, "k1").status == "acknowledged"
    other = stream()
    feed(service, *young_plan(other))
    [second] = service.inbox("k1")
    feed(service, other.wire("PlanClosed", reason="moved"))
    with pytest.raises(PromptClosed):
        service.acknowledge(second.id, "k1")


def test_inbox_is_sorted_by_due_time(service, stream, clock):
    for days in (5, 1, 3):
        s = stream()
        feed(service, *young_plan(s, both_levels=False), s.wire("EvaluationScheduled", evaluation_id="e1",
                                                 scheduled_for=clock.now() - days * DAY))
    dues = [p.due_at for p in service.inbox("k1")]
    assert dues == sorted(dues) and len(dues) == 3


def test_a_batch_has_the_same_effect_as_one_by_one(stream, clock):
    from notification_service.domain.records import Record

    s = stream()
    events = young_plan(s) + [s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now(),
                                     place="x", transport=None, companion=None, no_show_strategy="Ring"),
                              s.wire("TriangleMeetingMissed", meeting_id="m1")]
    records = [Record(0, e["position"], e) for e in events]
    one = Notifications(MemoryStore(), Settings(), clock)
    many = Notifications(MemoryStore(), Settings(), clock)
    for r in records:
        one.handle("feed", r.part, r.position, r.raw)
    many.handle_batch("feed", records[:2])
    many.handle_batch("feed", records)  # overlapping redelivery
    strip = lambda ps: [(p.rule, p.subject, p.status) for p in ps]  # noqa: E731
    assert strip(one.inbox("k1", "all")) == strip(many.inbox("k1", "all"))
    assert many.positions("feed") == {0: events[-1]["position"]}


def test_a_bug_while_processing_dead_letters_only_that_event(service, stream, monkeypatch):
    from notification_service.domain import view as view_module
    from notification_service.domain.records import Record

    s = stream()
    events = young_plan(s)
    real = view_module._HANDLERS["CoordinatorAssigned"]

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(view_module._HANDLERS, "CoordinatorAssigned", broken)
    outcomes = service.handle_batch("feed", [Record(0, e["position"], e) for e in events])
    # the plan goes on past the bad event: the next one of the same plan is processed
    assert [o.status for o in outcomes] == ["processed", "dead_letter", "processed"]
    monkeypatch.setitem(view_module._HANDLERS, "CoordinatorAssigned", real)
    assert service.dead_letters()[0]["reason"] == "error: RuntimeError"
    assert service.positions("feed") == {0: events[-1]["position"]}
    assert service.inbox("k1") == []  # its prompt has no coordinator yet
    assert service.retry_dead_letters() == {"retried": 1, "resolved": 1, "still_failing": 0}
    assert [p.rule for p in service.inbox("k1")] == ["triangle_meeting_suggested"]
