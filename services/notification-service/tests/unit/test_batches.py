"""A fetched batch is decoded, applied and written at once (views per plan in memory, bulk
writes, one transaction), with exactly the effects of handling its events one by one: the same
views, prompts, dead letters and positions, whatever the batches are cut into, whatever fails
in them. Plus the pieces that made it fast: the view's JSON, the prompt ids, the consumer's
long poll."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notification_service.adapters import memory_store
from notification_service.adapters.memory_store import MemoryStore
from notification_service.application import service as service_module
from notification_service.application.consumer import Consumer
from notification_service.application.service import ManualClock, Notifications
from notification_service.domain import view as view_module
from notification_service.domain.records import Record
from notification_service.domain.rules import Settings
from notification_service.domain.view import PlanView, _decode, _decode_any, _encode, _encode_any

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def plan_events(stream, kinds: list[str], plan_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """One plan's events, of these kinds, in order."""
    s = stream(plan_id)
    events = [s.wire("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None)]
    meeting = itertools.count()
    for kind in kinds:
        if kind == "coordinator":
            events.append(s.wire("CoordinatorAssigned", coordinator_id=f"k{next(meeting) % 2}", service_level="specialist"))
        elif kind == "meeting":
            m = f"m{next(meeting)}"
            events += [s.wire("TriangleMeetingScheduled", meeting_id=m, scheduled_for=T0 + DAY, place="x",
                              transport=None, companion=None, no_show_strategy="Ring"),
                       s.wire("TriangleMeetingMissed", meeting_id=m)]
        elif kind == "information":
            events.append(s.wire("InformationGiven", information_id=f"i{next(meeting)}", topic="rights", form="oral"))
        elif kind == "evaluation":
            e = f"e{next(meeting)}"
            events += [s.wire("EvaluationScheduled", evaluation_id=e, scheduled_for=T0 - DAY),
                       s.wire("EvaluationHeld", evaluation_id=e, patient_took_part=True)]
        elif kind == "unused":
            events.append(s.wire("WhatMattersRecorded", language="nb"))
        elif kind == "orphan":  # refers to a meeting never seen: dead-lettered, the plan goes on
            events.append(s.wire("TriangleMeetingMissed", meeting_id="never"))
    return events


def snapshot(service: Notifications) -> dict[str, Any]:
    """Everything stored, without what is random (ids)."""
    tables = service.store._tables  # type: ignore[attr-defined]
    return {
        "positions": dict(tables["positions"]),
        "views": {k: (v["version"], json.loads(v["state"]), v["next_check_at"]) for k, v in tables["views"].items()},
        "prompts": sorted((p["plan_id"], p["rule"], p["subject"], p["recipient"], p["status"], p["due_at"],
                           p["escalate_at"], p["created_at"], p["resolved_at"], p["details"])
                          for p in tables["prompts"].values()),
        "dead_letters": sorted((d["source"], d["part"], d["position"], d["event_id"], d["reason"], d["status"])
                               for d in tables["dead_letters"].values()),
        "deliveries": sorted((d["channel"], d["kind"], d["status"]) for d in tables["deliveries"].values()),
    }


def service_on(clock: ManualClock) -> Notifications:
    return Notifications(MemoryStore(), Settings(), clock, channels=("webhook",))


KINDS = st.lists(st.sampled_from(["coordinator", "meeting", "information", "evaluation", "unused", "orphan"]),
                 max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=st.lists(KINDS, min_size=1, max_size=4), cuts=st.lists(st.integers(1, 12), max_size=6),
       redeliver=st.booleans(), garbage=st.booleans())
def test_batches_cut_anywhere_store_what_one_by_one_stores(stream, plans, cuts, redeliver, garbage):
    events = [e for kinds in plans for e in plan_events(stream, kinds)]
    records = [Record(0, i + 1, e) for i, e in enumerate(events)]
    if garbage:  # a poison record in the middle (not even JSON)
        records.insert(len(records) // 2, Record(0, 0, b"{not json"))
        records = [Record(0, i + 1, r.raw) for i, r in enumerate(records)]
    clock = ManualClock(T0)
    one, many = service_on(clock), service_on(clock)
    single = [one.handle("feed", r.part, r.position, r.raw).status for r in records]
    batched: list[str] = []
    start = 0
    for cut in itertools.chain(cuts, [len(records)]):
        batch = records[start:start + cut]
        batched += [o.status for o in many.handle_batch("feed", batch)]
        if redeliver and batch:
            many.handle_batch("feed", batch)  # the same batch again: nothing changes
        start += cut
        if start >= len(records):
            break
    assert batched == single
    assert snapshot(many) == snapshot(one)


def test_an_unexpected_failure_costs_its_own_event_only(stream, monkeypatch):
    """A bug (here: in reconciling one plan) fails that event; the events before it are kept
    as one run, the event is dead-lettered, the batch goes on after it."""
    clock = ManualClock(T0)
    bad_plan = uuid.uuid4()
    events = (plan_events(stream, ["coordinator", "meeting"]) + plan_events(stream, ["coordinator"], bad_plan)
              + plan_events(stream, ["coordinator", "meeting"]))
    records = [Record(0, i + 1, e) for i, e in enumerate(events)]
    real = Notifications._reconcile

    def reconcile(self, work, view):
        if view.plan_id == str(bad_plan) and view.coordinator_id is not None:
            raise RuntimeError("a bug")
        return real(self, work, view)

    monkeypatch.setattr(Notifications, "_reconcile", reconcile)
    runs: list[tuple[int, int]] = []
    real_run = Notifications._run

    def counted(self, source, records, decoded, start, end, now):
        runs.append((start, end))
        return real_run(self, source, records, decoded, start, end, now)

    monkeypatch.setattr(Notifications, "_run", counted)
    many = service_on(clock)
    outcomes = [o.status for o in many.handle_batch("feed", records)]
    bad = next(i for i, e in enumerate(events) if e["plan_id"] == str(bad_plan) and e["event_type"] == "CoordinatorAssigned")
    assert outcomes[bad] == "dead_letter" and outcomes.count("dead_letter") == 1
    assert runs == [(0, len(records)), (0, bad), (bad + 1, len(records))]
    assert many.positions("feed") == {0: len(records)}
    assert [d["event_id"] for d in many.dead_letters()] == [events[bad]["event_id"]]
    with many.store.transaction() as tx:
        assert PlanView.from_json(tx.load_view(str(bad_plan))).skipped == [[2, 2]]  # moved past it
    one = service_on(clock)
    for r in records:
        one.handle("feed", r.part, r.position, r.raw)
    assert snapshot(many) == snapshot(one)


def test_a_failure_storing_a_batch_leaves_nothing_and_goes_one_by_one(stream, monkeypatch):
    clock = ManualClock(T0)
    events = plan_events(stream, ["coordinator", "meeting", "meeting"])
    records = [Record(0, i + 1, e) for i, e in enumerate(events)]
    store = MemoryStore()
    many = Notifications(store, Settings(), clock, channels=("webhook",))
    calls = {"n": 0}

    real_insert = memory_store.MemoryTx.insert_prompts

    def flaky(self, prompts):
        calls["n"] += 1
        if calls["n"] == 1:  # the batch's one bulk insert fails once (a deadlock, say)
            raise RuntimeError("the store refused the batch")
        return real_insert(self, prompts)

    monkeypatch.setattr(memory_store.MemoryTx, "insert_prompts", flaky)
    outcomes = many.handle_batch("feed", records)
    assert [o.status for o in outcomes] == ["processed"] * len(records)
    one = service_on(clock)
    for r in records:
        one.handle("feed", r.part, r.position, r.raw)
    assert snapshot(many) == snapshot(one)


def test_a_view_half_changed_by_a_failing_event_is_rebuilt_as_it_was(stream, monkeypatch):
    """No copy of the view is made before each event; one that fails halfway is undone by
    making the view again from the stored state and the batch's earlier changes."""
    clock = ManualClock(T0)
    events = plan_events(stream, ["coordinator", "meeting", "information", "meeting"])
    real = view_module._HANDLERS["InformationGiven"]

    def half(view, payload, event):
        view.meetings.clear()
        view.coordinator_id = "someone else"
        raise RuntimeError("halfway")

    monkeypatch.setitem(view_module._HANDLERS, "InformationGiven", half)
    many, one = service_on(clock), service_on(clock)
    records = [Record(0, i + 1, e) for i, e in enumerate(events)]
    many.handle_batch("feed", records[:2])  # part of the plan stored before: rebuilt from it
    many.handle_batch("feed", records[2:])
    for r in records:
        one.handle("feed", r.part, r.position, r.raw)
    monkeypatch.setitem(view_module._HANDLERS, "InformationGiven", real)
    assert snapshot(many) == snapshot(one)
    with many.store.transaction() as tx:
        view = PlanView.from_json(tx.load_view(events[0]["plan_id"]))
    assert view.coordinator_id == "k0" and set(view.meetings) == {"m1", "m3"}


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4), st.sampled_from(["$dt", "$d", "$$x", "$"]),
              st.datetimes(timezones=st.just(timezone.utc)), st.dates(),
              st.sampled_from(list(view_module.MeetingStatus))),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.text(max_size=3), st.sampled_from(["$dt", "$d", "$$", "$a"])),
                                            inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(JSONISH)
def test_the_views_fast_json_is_the_general_one(value):
    assert _encode(value) == _encode_any(value)
    encoded = _encode(value)
    assert _decode(encoded) == _decode_any(encoded)


def test_a_view_comes_back_as_it_was_saved(stream):
    clock = ManualClock(T0)
    service = service_on(clock)
    events = plan_events(stream, ["coordinator", "meeting", "information", "evaluation"])
    service.handle_batch("feed", [Record(0, i + 1, e) for i, e in enumerate(events)])
    with service.store.transaction() as tx:
        state = tx.load_view(events[0]["plan_id"])
    view = PlanView.from_json(state)
    assert view.to_json() == state and view.birth_date is None and isinstance(view.opened_at, datetime)
    assert PlanView(plan_id="p", birth_date=date(2000, 1, 2)).to_json()["birth_date"] == {"$d": "2000-01-02"}


class Source:
    """A source whose fetch takes ``wait`` seconds and returns nothing."""

    name = "test"

    def __init__(self, long_poll: bool, wait: float):
        self.long_poll, self.wait, self.fetches = long_poll, wait, 0

    def fetch(self, positions):
        self.fetches += 1
        threading.Event().wait(self.wait)
        return []

    def processed(self, records):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("long_poll, wait, at_least, at_most", [
    (True, 0.1, 8, 11),     # a long poll that waited: asked again at once (~10 in 1 s)
    (True, 0.0, 2, 6),      # one that came back at once, empty: the consumer waits (no busy loop)
    (False, 0.0, 2, 6),     # a plain poll (the feed): waits 0.05, 0.1, 0.2, 0.4 s...
])
def test_the_consumer_asks_again_at_once_only_after_a_long_poll(long_poll, wait, at_least, at_most):
    source = Source(long_poll, wait)
    consumer = Consumer(source, Notifications(MemoryStore()), idle_wait=0.05, max_idle_wait=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    threading.Event().wait(1.0)
    stop.set()
    thread.join(5)
    assert at_least <= source.fetches <= at_most


def test_a_service_gc_setting_is_made_once_the_worker_starts():
    import gc

    from notification_service.bootstrap import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (10_000, 10, 10) and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_outcomes_are_shared_values():
    assert service_module._PROCESSED_OUTCOMES[(1, 0)] == service_module.Outcome(service_module.OutcomeStatus.PROCESSED, 1, 0)
