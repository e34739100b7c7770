"""One bad event never stops a plan's prompts: it is dead-lettered, the plan's view moves past
it (remembering the version it skipped), and `retry_dead_letters` applies it later, after a fix,
without letting an old event override a newer one."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from notification_service.adapters.crypto import Cipher, StoreUnreadable
from notification_service.adapters.memory_store import MemoryStore
from notification_service.adapters.store import SQLiteStore
from notification_service.application.service import Notifications
from notification_service.domain import rules as rules_module
from notification_service.domain import view as view_module
from notification_service.domain.records import Record
from notification_service.domain.rules import Settings
from notification_service.domain.view import PlanView

DAY = timedelta(days=1)
KEY = Cipher(bytes(range(32)))


@pytest.fixture
def store():
    return MemoryStore()  # the use cases; the wrong-key test below needs the encrypted SQLite store


@pytest.fixture
def service(store, clock):
    return Notifications(store, Settings(), clock)


def run(service, path: str, events: list[dict], part: int = 0) -> list[str]:
    """Feed events one by one (`handle`) or as one batch (`handle_batch`); their outcomes."""
    if path == "batch":
        return [o.status for o in service.handle_batch("feed", [Record(part, e["position"], e) for e in events])]
    return [service.handle("feed", part, e["position"], e).status for e in events]


def view_of(store, s) -> PlanView:
    with store.transaction() as tx:
        return PlanView.from_json(tx.load_view(str(s.plan_id)))


def missed_meeting(s, clock, meeting="m1", strategy="Ring før ti"):
    return [s.wire("TriangleMeetingScheduled", meeting_id=meeting, scheduled_for=clock.now(), place="Kafé",
                   transport="buss", companion="bror", no_show_strategy=strategy),
            s.wire("TriangleMeetingMissed", meeting_id=meeting, at=clock.now())]


def broken_for(monkeypatch, event_type: str, error: Exception, when=lambda payload: True):
    real = view_module._HANDLERS[event_type]

    def handler(view, payload, event):
        if when(payload):
            view.closed = True  # half-changed before failing: must leave no trace
            raise error
        return real(view, payload, event)

    monkeypatch.setitem(view_module._HANDLERS, event_type, handler)
    return lambda: monkeypatch.setitem(view_module._HANDLERS, event_type, real)


OPENED = dict(service_level="municipal", age_band="18-25", birth_date=None)


@pytest.mark.parametrize("path", ["single", "batch"])
@pytest.mark.parametrize("opened_at", [
    datetime(1, 1, 1, tzinfo=timezone.utc),
    datetime(278, 5, 17, tzinfo=timezone.utc),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # year 0 in UTC
    datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc),
])
def test_a_plan_opened_at_an_extreme_time_keeps_prompting(service, store, stream, clock, path, opened_at):
    s = stream()
    events = [s.wire("PlanOpened", at=opened_at, **OPENED),
              s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist"),
              s.wire("InformationGiven", information_id="i1", topic="rights", form="oral"),
              *missed_meeting(s, clock)]
    assert "dead_letter" not in run(service, path, events)
    assert "no_show_follow_up" in [p.rule for p in service.inbox("k1")]
    assert service.dead_letters() == []
    assert view_of(store, s).version == 5
    clock.advance(30 * DAY)
    service.tick()  # and the clock's turn does not fail on it either
    assert {p.rule for p in service.inbox("k1", "all")} >= {"no_show_follow_up", "written_information_due"}


@pytest.mark.parametrize("moment", [datetime(1, 1, 1, tzinfo=timezone.utc),
                                    datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc)])
def test_extreme_times_in_every_rule_create_prompts_instead_of_errors(service, stream, clock, moment):
    s = stream()
    events = [s.wire("PlanOpened", **{**OPENED, "birth_date": moment.date()}),
              s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist"),
              s.wire("EvaluationScheduled", evaluation_id="e1", scheduled_for=moment),
              s.wire("RelativeConsentGiven", relative_id="r1", scope=["goals"], valid_from=None, valid_until=moment),
              s.wire("InformationGiven", information_id="i1", topic="rights", form="oral", at=moment),
              s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=moment, place="x", transport=None,
                     companion=None, no_show_strategy="Ring"),
              s.wire("TriangleMeetingMissed", meeting_id="m1", at=moment)]
    assert set(run(service, "single", events)) == {"processed"}
    assert "no_show_follow_up" in [p.rule for p in service.inbox("k1", "all")]


@pytest.mark.parametrize("path", ["single", "batch"])
def test_a_failing_event_is_dead_lettered_and_its_plan_goes_on(service, store, stream, clock, monkeypatch, path):
    broken_for(monkeypatch, "InformationGiven", RuntimeError("a bug"))
    s = stream()
    events = [s.wire("PlanOpened", **OPENED),
              s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None),
              s.wire("InformationGiven", information_id="i1", topic="rights", form="oral"),
              *missed_meeting(s, clock)]
    assert run(service, path, events) == ["processed", "processed", "dead_letter", "processed", "processed"]
    assert [p.rule for p in service.inbox("k1")] == ["no_show_follow_up"]
    [dead] = service.dead_letters()
    assert dead["reason"] == "error: RuntimeError" and dead["status"] == "open"
    view = view_of(store, s)
    assert view.version == 5 and view.skipped == [[3, 3]]
    assert view.closed is False  # what the failing handler changed before raising is gone


@pytest.mark.parametrize("path", ["single", "batch"])
def test_the_isssue_reported_stops_nothing_any_more(service, store, stream, clock, monkeypatch, path):
    """The report: the event after a bad one dead-lettered (ValueError), then every later one
    'OutOfOrder: plan version 3 after 1'. Any error type in any event: only that event."""
    s = stream()
    events = [s.wire("PlanOpened", **OPENED), s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None),
              *missed_meeting(s, clock)]
    broken_for(monkeypatch, "CoordinatorAssigned", ValueError("year 0 is out of range"))
    assert run(service, path, events) == ["processed", "dead_letter", "processed", "processed"]
    assert service.dead_letters()[0]["reason"] == "unprocessable: ValueError: year 0 is out of range"
    # the follow-up exists (no coordinator to show it to until the assignment is retried)
    with store.transaction() as tx:
        assert [p.rule for p in tx.prompts_of_plan(str(s.plan_id))] == ["no_show_follow_up"]


def test_a_rule_that_fails_is_skipped_and_the_event_kept(service, store, stream, clock, monkeypatch, caplog):
    def broken_rule(view, now, settings):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(rules_module, "RULES", (broken_rule, *rules_module.RULES))
    s = stream()
    with caplog.at_level(logging.WARNING, "careplan.notifications"):
        outcomes = run(service, "batch", [s.wire("PlanOpened", **OPENED),
                                          s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None),
                                          *missed_meeting(s, clock, strategy="MARKER-STRATEGY")])
    assert set(outcomes) == {"processed"}
    assert [p.rule for p in service.inbox("k1")] == ["no_show_follow_up"]
    assert view_of(store, s).version == 4
    warnings = [r for r in caplog.records if r.getMessage() == "a rule failed for a plan and was skipped"]
    assert warnings and {(r.reason, r.error_type) for r in warnings} == {("broken_rule", "OverflowError")}
    assert "MARKER" not in caplog.text


def test_retry_applies_the_dead_letter_after_the_fix(service, store, stream, clock, monkeypatch):
    s = stream()
    restore = broken_for(monkeypatch, "CoordinatorAssigned", KeyError("coordinator_id"))
    run(service, "batch", [s.wire("PlanOpened", **OPENED),
                           s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist"),
                           *missed_meeting(s, clock)])
    assert service.inbox("k1") == [] and service.open_dead_letter_count() == 1
    assert service.retry_dead_letters() == {"retried": 1, "resolved": 0, "still_failing": 1}  # not fixed yet
    restore()
    assert service.retry_dead_letters() == {"retried": 1, "resolved": 1, "still_failing": 0}
    assert [p.rule for p in service.inbox("k1")] == ["no_show_follow_up"]
    assert service.open_dead_letter_count() == 0
    [resolved] = service.dead_letters(status="resolved")
    assert resolved["resolved_at"] is not None
    view = view_of(store, s)
    assert view.skipped == [] and view.version == 4 and "specialist" in view.service_levels
    assert service.retry_dead_letters() == {"retried": 0, "resolved": 0, "still_failing": 0}


def test_one_that_fails_again_stays_open_with_its_new_reason(service, stream, monkeypatch):
    s = stream()
    broken_for(monkeypatch, "CoordinatorAssigned", RuntimeError("first"))
    run(service, "single", [s.wire("PlanOpened", **OPENED),
                            s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None)])
    broken_for(monkeypatch, "CoordinatorAssigned", OverflowError("second"))
    assert service.retry_dead_letters()["still_failing"] == 1
    [dead] = service.dead_letters()
    assert dead["reason"] == "unprocessable: OverflowError: second" and dead["status"] == "open"


def test_a_late_coordinator_assignment_does_not_override_a_newer_one(service, stream, clock, monkeypatch):
    s = stream()
    restore = broken_for(monkeypatch, "CoordinatorAssigned", RuntimeError("a bug"),
                         when=lambda p: p["coordinator_id"] == "k-old")
    run(service, "single", [s.wire("PlanOpened", **OPENED),
                            s.wire("CoordinatorAssigned", coordinator_id="k-old", service_level="specialist"),
                            s.wire("CoordinatorAssigned", coordinator_id="k-new", service_level=None),
                            *missed_meeting(s, clock)])
    restore()
    assert service.retry_dead_letters()["resolved"] == 1
    assert service.inbox("k-old") == []
    assert [p.rule for p in service.inbox("k-new")] == ["no_show_follow_up"]


def test_a_late_meeting_arrangement_fills_in_the_strategy_and_keeps_the_newer_status(
        service, store, stream, clock, monkeypatch):
    s = stream()
    restore = broken_for(monkeypatch, "TriangleMeetingScheduled", TypeError("a bug"))
    run(service, "single", [s.wire("PlanOpened", **OPENED),
                            s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist"),
                            s.wire("TriangleMeetingRequested", meeting_id="m1"),
                            *missed_meeting(s, clock, strategy="Hjemmebesøk")])
    [prompt] = service.inbox("k1")
    assert prompt.rule == "no_show_follow_up" and prompt.details["no_show_strategy"] is None
    restore()
    assert service.retry_dead_letters()["resolved"] == 1
    [prompt] = service.inbox("k1")  # the same prompt, now with what was agreed
    assert prompt.details["no_show_strategy"] == "Hjemmebesøk" and prompt.details["place"] == "Kafé"
    assert view_of(store, s).meetings["m1"]["status"] == "missed"


def test_events_after_a_missing_one_are_retried_in_position_order(service, stream, clock, monkeypatch):
    """The scheduling fails, so the miss refers to a meeting the view never saw: both are dead
    letters; the retry applies them in order and the follow-up appears."""
    s = stream()
    restore = broken_for(monkeypatch, "TriangleMeetingScheduled", RuntimeError("a bug"))
    statuses = run(service, "single", [s.wire("PlanOpened", **OPENED),
                                       s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None),
                                       *missed_meeting(s, clock),
                                       s.wire("InformationGiven", information_id="i1", topic="rights", form="oral")])
    assert statuses == ["processed", "processed", "dead_letter", "dead_letter", "processed"]
    assert service.dead_letters()[1]["reason"].startswith("unprocessable: OutOfOrder")
    restore()
    assert service.retry_dead_letters() == {"retried": 2, "resolved": 2, "still_failing": 0}
    assert [p.rule for p in service.inbox("k1")] == ["no_show_follow_up", "written_information_due"]


def test_an_event_already_in_the_view_is_not_applied_twice(service, store, stream, clock, monkeypatch):
    s = stream()
    restore = broken_for(monkeypatch, "TriangleMeetingMissed", RuntimeError("a bug"))
    events = [s.wire("PlanOpened", **OPENED), s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None),
              *missed_meeting(s, clock)]
    run(service, "single", events)
    restore()
    # a re-sent copy at a new position: applied late, and its dead letter resolved with it
    assert service.handle("kafka", 3, 1, events[-1]).status == "processed"
    assert service.handle("kafka", 3, 2, events[-1]).status == "duplicate"
    assert service.open_dead_letter_count() == 0
    with store.transaction() as tx:  # dead-lettered again by hand: the retry must not count the miss again
        tx.dead_letter("kafka", 3, 3, events[-1]["event_id"], "again, by hand", json.dumps(events[-1]), clock.now())
    assert service.retry_dead_letters()["resolved"] == 1
    assert view_of(store, s).meetings["m1"]["times_missed"] == 1
    assert [p.subject for p in service.inbox("k1")] == ["m1#1"]


@pytest.mark.parametrize("path", ["single", "batch"])
def test_a_version_gap_moves_past_and_is_remembered(service, store, stream, path):
    s = stream()
    opened = s.wire("PlanOpened", **OPENED)
    s.wire("GoalAchieved", goal_id="g1")  # version 2 never arrives
    late = s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None)
    after = s.wire("InformationGiven", information_id="i1", topic="rights", form="oral")
    assert run(service, path, [opened, late, after]) == ["processed", "dead_letter", "processed"]
    assert view_of(store, s).skipped == [[2, 3]]
    assert service.retry_dead_letters()["resolved"] == 1
    view = view_of(store, s)
    assert view.skipped == [[2, 2]] and view.coordinator_id == "k1"
    assert [p.rule for p in service.inbox("k1")] == ["written_information_due"]


def test_an_absurd_plan_version_is_refused_and_the_plan_goes_on(service, store, stream):
    s = stream()
    opened = s.wire("PlanOpened", **OPENED)
    bogus = s.wire("InformationGiven", information_id="i1", topic="rights", form="oral")
    bogus["plan_version"] = 2**40
    s.version = 1
    assert run(service, "single", [opened, bogus, s.wire("CoordinatorAssigned", coordinator_id="k1",
                                                         service_level=None)]) == [
        "processed", "dead_letter", "processed"]
    assert service.dead_letters()[0]["reason"].startswith("undecodable: plan_version above")
    assert view_of(store, s).version == 2


def test_ids_that_look_like_the_views_own_markers_do_not_break_it(service, store, stream, clock):
    s = stream()
    events = [s.wire("PlanOpened", **OPENED), s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None),
              s.wire("ParticipantAdded", participant_id="$dt", kind="professional", service_level="specialist"),
              s.wire("TriangleMeetingScheduled", meeting_id="$d", scheduled_for=clock.now(), place="x",
                     transport=None, companion=None, no_show_strategy="Ring"),
              s.wire("TriangleMeetingMissed", meeting_id="$d"),
              s.wire("RelativeConsentGiven", relative_id="$$x", scope=[], valid_from=None, valid_until=None)]
    assert set(run(service, "single", events)) == {"processed"}
    view = view_of(store, s)
    assert view.professionals == {"$dt": "specialist"} and set(view.meetings) == {"$d"}
    assert set(view.consents) == {"$$x"}
    assert [p.subject for p in service.inbox("k1")] == ["$d#1"]


def test_a_wrong_key_stops_processing_instead_of_dead_lettering(tmp_path, stream, clock):
    path = tmp_path / "prompts.sqlite"
    first = Notifications(SQLiteStore(path, KEY), Settings(), clock)
    s = stream()
    opened = s.wire("PlanOpened", **OPENED)
    first.handle("feed", 0, opened["position"], opened)
    with pytest.raises(StoreUnreadable):  # refused at start-up
        SQLiteStore(path, Cipher(bytes(32)))
    with first.store.transaction() as tx:  # even without the start-up check
        tx._q("DELETE FROM store_meta")
    other = Notifications(SQLiteStore(path, Cipher(bytes(32))), Settings(), clock)
    nxt = s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None)
    with pytest.raises(StoreUnreadable):
        other.handle("feed", 0, nxt["position"], nxt)
    with pytest.raises(StoreUnreadable):
        other.handle_batch("feed", [Record(0, nxt["position"], nxt)])
    assert first.open_dead_letter_count() == 0 and first.positions("feed") == {0: opened["position"]}


def test_the_clock_goes_on_for_other_plans_when_one_plan_fails(service, store, stream, clock, monkeypatch):
    plans = [stream(), stream()]
    for s in plans:
        run(service, "single", [s.wire("PlanOpened", **OPENED),
                                s.wire("CoordinatorAssigned", coordinator_id="k1", service_level=None),
                                s.wire("EvaluationScheduled", evaluation_id="e1", scheduled_for=clock.now() + DAY)])
    with store.transaction() as tx:  # one plan's stored view is damaged
        tx.save_view(str(plans[0].plan_id), 3, {"plan_id": 1, "nonsense": True}, clock.now() + DAY)
    clock.advance(2 * DAY)
    assert service.tick()["checked"] == 2
    assert [p.plan_id for p in service.inbox("k1")] == [str(plans[1].plan_id)]
    assert service.tick()["checked"] == 0  # the damaged one is looked at again later, not in a loop
