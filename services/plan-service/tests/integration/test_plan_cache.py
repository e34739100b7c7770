"""The plan cache and the write path (application/plans.py's docstring), on every real store:

- a write on a warm cache reads nothing from the store before its commit (also with an
  Idempotency-Key, also when it takes a snapshot);
- the cached plan a reader holds is never changed: a command works on a copy, a rejected one
  leaves it as it was, a newer version is a new object; readers see exactly one version;
- a stale cache (another instance wrote) is caught by the store at commit; the write is decided
  once more on the plan as stored (the caller's access check asked again), or answered 412
  when it named a version (If-Match); a refusal is never decided on a stale plan;
- reads see what another instance wrote.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from typing import Any

import pytest

from plan_service.application.idempotency import IdempotencyRecord
from plan_service.application.plans import (
    ConcurrentWrite,
    EventRejected,
    Idempotency,
    IdempotencyKeyReused,
    PlanApplication,
    VersionMismatch,
)

pytestmark = pytest.mark.integration

ACTOR = {"role": "clinician", "id": "clin-1"}


def open_plan(app: PlanApplication) -> uuid.UUID:
    return app.open_plan(patient_id=f"pat-synth-{uuid.uuid4().hex[:8]}", service_level="municipal",
                         age_band="18-25", actor=ACTOR).plan_id


def note(text: str) -> tuple[str, dict[str, Any]]:
    return ("WhatMattersRecorded", {"text": text, "language": "nb"})


def info(n: int | str) -> tuple[str, dict[str, Any]]:
    return ("InformationGiven", {"information_id": f"i{n}", "topic": "rights", "form": "oral",
                                 "description": "Retten til individuell plan"})


def stored_texts(app: PlanApplication, plan_id: uuid.UUID) -> list[str | None]:
    return [getattr(e, "text", None) for e in app.events.get(plan_id)]


class Reads:
    """Counts the SELECTs of events and snapshots an application makes."""

    def __init__(self, app: PlanApplication, monkeypatch: pytest.MonkeyPatch):
        self.count = 0
        recorders = [app.recorder] + ([app.snapshots.recorder] if app.snapshots is not None else [])
        for recorder in recorders:
            original = recorder.select_events

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.count += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(recorder, "select_events", counted)


def test_a_write_on_a_warm_cache_reads_nothing_before_its_commit(make_app, monkeypatch):
    app = make_app()
    plan_id = open_plan(app)
    app.get_plan(plan_id)
    reads = Reads(app, monkeypatch)
    for i in range(12):  # crosses the snapshot interval (10): the snapshot is taken from the cache
        held = app.get_plan(plan_id, fresh=False)
        key = Idempotency("epr-1", f"k-{plan_id}-{i}", "fp") if i % 2 else None
        outcome = app.record(plan_id, [info(i)], actor=ACTOR, plan=held, idempotency=key)
        assert outcome.version == held.version + 1
        assert app.get_plan(plan_id, fresh=False).version == outcome.version  # the saved version is cached
        assert len(held.information) == held.version - 1  # the held version is as it was
    assert reads.count == 0
    assert [s.originator_version for s in app.snapshots.get(plan_id)] == [10]


def test_the_snapshot_taken_from_the_cache_is_the_stored_plan(make_app):
    app = make_app()
    plan_id = open_plan(app)
    for i in range(9):
        app.record(plan_id, [info(i)], actor=ACTOR)
    app.record(plan_id, [info("x"), note("a"), info("y")], actor=ACTOR)  # version 10 inside a write of three
    (snapshot,) = app.snapshots.get(plan_id)
    assert snapshot.originator_version == 10
    restarted = make_app()
    assert restarted.get_plan(plan_id) == app.get_plan(plan_id)
    assert restarted.repository.get(plan_id, version=10) == make_app().repository.get(plan_id, version=10)
    assert sorted(restarted.repository.get(plan_id, version=10).information) == sorted(
        [f"i{i}" for i in range(9)])


def test_a_command_never_changes_the_cached_plan(make_app):
    app = make_app()
    plan_id = open_plan(app)
    app.record(plan_id, [("GoalSet", {"goal_id": "g1", "text": "Jobb", "expressed_by": "patient"})], actor=ACTOR)
    held = app.get_plan(plan_id, fresh=False)
    before = copy.deepcopy(held)
    with pytest.raises(EventRejected):  # the first event is fine, the second is refused: nothing stored
        app.record(plan_id, [("GoalAchieved", {"goal_id": "g1"}), ("GoalAchieved", {"goal_id": "g1"})],
                   actor=ACTOR, plan=held)
    assert app.get_plan(plan_id, fresh=False) is held and held == before
    assert held.goals["g1"].status == "active"
    app.record(plan_id, [("GoalAchieved", {"goal_id": "g1"})], actor=ACTOR, plan=held)
    assert held == before and held.goals["g1"].status == "active"  # still the version it was
    assert app.get_plan(plan_id).goals["g1"].status == "achieved"


def test_a_plan_changed_in_place_without_being_saved_is_not_trusted(make_app):
    app = make_app()
    plan_id = open_plan(app)
    cached = app.get_plan(plan_id)
    cached.record_what_matters(text="never saved", language="nb", recorded_by=ACTOR, occurred_at=cached.opened_at)
    assert app.get_plan(plan_id, fresh=False).what_matters == []
    assert app.record(plan_id, [note("saved")], actor=ACTOR).version == 2
    assert stored_texts(app, plan_id) == [None, "saved"]


def test_reads_see_what_another_instance_wrote(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    held = b.get_plan(plan_id)
    a.record(plan_id, [note("via a")], actor=ACTOR)
    assert b.get_plan(plan_id, fresh=False) is held  # a write's access check: the cache as it is
    read = b.get_plan(plan_id)
    assert read is not held and read.version == 2 and [w.text for w in read.what_matters] == ["via a"]
    assert held.version == 1 and held.what_matters == []  # a reader holding it saw one version
    assert b.get_plan(plan_id, fresh=False) is read


def test_a_stale_cache_is_caught_at_commit_and_the_command_decided_again(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    stale = b.get_plan(plan_id)
    a.record(plan_id, [note("a")], actor=ACTOR)
    asked: list[int] = []

    def allowed(plan) -> bool:
        asked.append(plan.version)
        return True

    outcome = b.record(plan_id, [note("b")], actor=ACTOR, plan=stale, allowed=allowed)
    assert outcome.version == 3 and asked == [2]
    assert stored_texts(a, plan_id) == [None, "a", "b"]
    assert stale.version == 1 and stale.what_matters == []


def test_without_the_access_check_a_stale_write_is_409_and_the_next_try_succeeds(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    stale = b.get_plan(plan_id)
    a.record(plan_id, [note("a")], actor=ACTOR)
    with pytest.raises(ConcurrentWrite):
        b.record(plan_id, [note("b")], actor=ACTOR, plan=stale)
    assert stored_texts(a, plan_id) == [None, "a"]
    again = b.get_plan(plan_id, fresh=False)  # the conflict brought the cache up to date
    assert again.version == 2
    assert b.record(plan_id, [note("b")], actor=ACTOR, plan=again).version == 3


def test_the_access_check_is_asked_again_and_can_refuse(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    stale = b.get_plan(plan_id)
    a.record(plan_id, [("CoordinatorAssigned", {"coordinator_id": "k2"})], actor=ACTOR)
    with pytest.raises(ConcurrentWrite):
        b.record(plan_id, [note("b")], actor=ACTOR, plan=stale,
                 allowed=lambda plan: plan.coordinator is None)  # e.g. "only while unassigned"
    assert stored_texts(a, plan_id) == [None, None]


def test_a_plan_loaded_by_record_itself_is_decided_again_without_a_check(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    b.get_plan(plan_id)
    a.record(plan_id, [note("a")], actor=ACTOR)
    assert b.record(plan_id, [note("b")], actor=ACTOR).version == 3


def test_if_match_is_judged_against_the_store_not_a_stale_cache(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    stale = b.get_plan(plan_id)
    a.record(plan_id, [note("a")], actor=ACTOR)
    # The client read version 2 (through a): b's cache (1) is behind, not the client.
    assert b.record(plan_id, [note("b")], actor=ACTOR, expected_version=2, plan=stale,
                    allowed=lambda plan: True).version == 3
    # A version that is no longer current: 412 with the current version.
    with pytest.raises(VersionMismatch) as raised:
        b.record(plan_id, [note("c")], actor=ACTOR, expected_version=2)
    assert raised.value.current == 3
    # Found stale only at commit: b holds version 3 as current, a wrote 4 meanwhile.
    held = b.get_plan(plan_id, fresh=False)
    a.record(plan_id, [note("d")], actor=ACTOR)
    with pytest.raises(VersionMismatch) as raised:
        b.record(plan_id, [note("e")], actor=ACTOR, expected_version=3, plan=held, allowed=lambda plan: True)
    assert raised.value.current == 4
    assert stored_texts(a, plan_id) == [None, "a", "b", "d"]


def test_a_rule_is_never_applied_to_a_stale_plan(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    b.get_plan(plan_id)
    a.record(plan_id, [("GoalSet", {"goal_id": "g9", "text": "Jobb", "expressed_by": "patient"})], actor=ACTOR)
    # b's cache knows no goal g9: the refusal is checked against the store first.
    assert b.record(plan_id, [("GoalAchieved", {"goal_id": "g9"})], actor=ACTOR).version == 3
    with pytest.raises(EventRejected):  # refused on the newest version: the answer stands
        b.record(plan_id, [("GoalAchieved", {"goal_id": "g9"})], actor=ACTOR)


def test_an_idempotent_replay_is_found_without_a_read_before_the_write(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    key = Idempotency("epr-1", "msg-1", "fp-1")
    first = a.record(plan_id, [note("once")], actor=ACTOR, idempotency=key)
    b.get_plan(plan_id)
    for app in (a, b):  # a: its cache is current (the command is accepted, the commit collides); b: stale
        replay = app.record(plan_id, [note("once")], actor=ACTOR, idempotency=key)
        assert replay.replayed and replay.as_dict() == first.as_dict()
        # a replay wins over an If-Match that is no longer current, and over a refusal
        assert app.record(plan_id, [note("once")], actor=ACTOR, idempotency=key, expected_version=1).replayed
        assert app.record(plan_id, [("GoalAchieved", {"goal_id": "none"})], actor=ACTOR, idempotency=key).replayed
        with pytest.raises(IdempotencyKeyReused):  # the same key, another request: 422, nothing stored
            app.record(plan_id, [note("other")], actor=ACTOR,
                       idempotency=Idempotency("epr-1", "msg-1", "fp-other"))
    assert stored_texts(a, plan_id) == [None, "once"]
    assert a._cached(IdempotencyRecord.id_for("epr-1", "msg-1")) is None  # records do not fill the cache


def test_the_cache_never_goes_back_to_an_older_version(make_app):
    app = make_app()
    plan_id = open_plan(app)
    old = app.get_plan(plan_id)
    app.record(plan_id, [note("a")], actor=ACTOR)
    new = app.get_plan(plan_id, fresh=False)
    app.repository.cache.put(plan_id, old)  # e.g. a load that read the store just before the commit
    assert app.get_plan(plan_id, fresh=False) is new


def test_readers_holding_the_plan_see_one_version_while_it_is_written(make_app):
    app = make_app()
    plan_id = open_plan(app)
    stop = threading.Event()
    errors: list[str] = []

    def write(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                app.record(plan_id, [info(f"{n}-{i}"), info(f"{n}-{i}b")], actor=ACTOR,
                           plan=app.get_plan(plan_id, fresh=False), allowed=lambda plan: True)
            except ConcurrentWrite:
                pass
            i += 1

    writers = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for t in writers:
        t.start()
    held = app.get_plan(plan_id)
    held_information = dict(held.information)
    deadline = time.monotonic() + 1.5
    reads = 0
    while time.monotonic() < deadline:
        for fresh in (True, False):
            plan = app.get_plan(plan_id, fresh=fresh)
            # two events a write: a version and its sections always agree
            if len(plan.information) != plan.version - 1 or plan.pending_events:
                errors.append(f"version {plan.version} with {len(plan.information)} records")
            reads += 1
    stop.set()
    for t in writers:
        t.join()
    assert not errors, errors[:5]
    assert reads > 10 and app.get_plan(plan_id).version > 5
    assert held.information == held_information and len(held.information) == held.version - 1
    versions = [e.originator_version for e in app.events.get(plan_id)]
    assert versions == list(range(1, len(versions) + 1))


def test_two_instances_writing_one_plan_lose_nothing(make_app, concurrently):
    """As the API writes: the access check's cached plan, and the check asked again."""
    apps = [make_app(), make_app()]
    plan_id = open_plan(apps[0])

    def write(n: int, i: int) -> None:
        app = apps[n % 2]
        app.record(plan_id, [note(f"w{n}-{i}")], actor=ACTOR, plan=app.get_plan(plan_id, fresh=False),
                   allowed=lambda plan: True)

    results = concurrently(6, 8, write)
    stored = list(make_app().events.get(plan_id))
    assert len(stored) == 1 + results.count("ok")
    assert [e.originator_version for e in stored] == list(range(1, len(stored) + 1))
    assert results.count("ok") >= 8
    texts = [getattr(e, "text", None) for e in stored[1:]]
    assert len(set(texts)) == len(texts)  # no write stored twice
