"""The event-store contract: the same tests against every real store (SQLite file here;
PostgreSQL joins the parametrisation when it is configured)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from plan_service.application.plans import (
    Idempotency,
    PlanApplication,
    VersionMismatch,
)

pytestmark = pytest.mark.integration

ACTOR = {"role": "clinician", "id": "clin-1"}


def open_plan(app: PlanApplication, **kwargs) -> uuid.UUID:
    """A plan for a new synthetic patient (a patient has one open plan)."""
    return app.open_plan(patient_id=f"pat-synth-{uuid.uuid4().hex[:8]}", service_level="municipal", age_band="18-25",
                         actor=ACTOR, **kwargs).plan_id


def note(text: str) -> tuple[str, dict]:
    return ("WhatMattersRecorded", {"text": text, "language": "nb"})


def test_events_and_snapshots_survive_a_restart(make_app):
    app = make_app()
    plan_id = open_plan(app)
    for i in range(25):  # crosses two snapshot intervals
        app.record(plan_id, [note(f"n{i}")], actor=ACTOR)
    before = app.get_plan(plan_id)
    restarted = make_app()
    after = restarted.get_plan(plan_id)
    assert after.version == before.version == 26
    assert [w.text for w in after.what_matters] == [f"n{i}" for i in range(25)]
    assert list(restarted.snapshots.get(plan_id)), "snapshots were stored"


def test_idempotency_survives_a_restart(make_app):
    app = make_app()
    plan_id = open_plan(app)
    key = Idempotency("epr-1", "msg-1", "fp-1")
    first = app.record(plan_id, [note("once")], actor=ACTOR, idempotency=key)
    replay = make_app().record(plan_id, [note("once")], actor=ACTOR, idempotency=key)
    assert replay.replayed and replay.as_dict() == first.as_dict()
    assert make_app().get_plan(plan_id).version == 2


def test_two_instances_same_plan_second_writer_conflicts(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    plan_a, plan_b = a.get_plan(plan_id), b.get_plan(plan_id)
    plan_a.record_what_matters(text="a", language="nb", recorded_by=ACTOR, occurred_at=plan_a.opened_at)
    plan_b.record_what_matters(text="b", language="nb", recorded_by=ACTOR, occurred_at=plan_b.opened_at)
    a.committer.save(plan_a)
    with pytest.raises(Exception) as raised:
        b.committer.save(plan_b)
    assert type(raised.value).__name__ == "IntegrityError"
    stored = [getattr(e, "text", None) for e in make_app().events.get(plan_id)]
    assert stored == [None, "a"]


def test_application_maps_a_lost_race_to_concurrent_write(make_app):
    a, b = make_app(), make_app()
    plan_id = open_plan(a)
    b.get_plan(plan_id)  # b caches version 1
    a.record(plan_id, [note("a")], actor=ACTOR)
    # b's stale view is fast-forwarded, so a plain write succeeds...
    assert b.record(plan_id, [note("b")], actor=ACTOR).version == 3
    # ...and one that names the version it decided on is refused.
    with pytest.raises(VersionMismatch):
        b.record(plan_id, [note("c")], actor=ACTOR, expected_version=2)


def test_group_commit_many_plans_from_many_threads(make_app):
    app = make_app()
    plan_ids = [open_plan(app) for _ in range(40)]

    def write(plan_id: uuid.UUID) -> int:
        for i in range(5):
            app.record(plan_id, [note(f"t{i}")], actor=ACTOR)
        return app.get_plan(plan_id).version

    with ThreadPoolExecutor(16) as pool:
        versions = list(pool.map(write, plan_ids))
    assert versions == [6] * 40
    assert app.committer.batches < app.committer.items, "concurrent writes were grouped"
    positions = [n.id for n in app.recorder.select_notifications(start=1, limit=10_000)]
    assert positions == list(range(1, len(positions) + 1)), "the log has no gaps"


def test_concurrent_writers_on_one_plan_each_get_their_own_answer(make_app, concurrently):
    app, other = make_app(), make_app()
    plan_id = open_plan(app)

    def write(n: int, i: int) -> None:
        (app if n % 2 else other).record(plan_id, [note(f"w{n}-{i}")], actor=ACTOR)

    results = concurrently(8, 10, write)
    stored = list(make_app().events.get(plan_id))
    assert len(stored) == 1 + results.count("ok")
    assert [e.originator_version for e in stored] == list(range(1, len(stored) + 1))
    assert results.count("ok") >= 10  # every round somebody wins


def test_feed_positions_are_ordered_and_skip_nothing(make_app):
    app = make_app()
    plan_ids = [open_plan(app) for _ in range(3)]
    for i in range(10):
        for plan_id in plan_ids:
            app.record(plan_id, [note(f"{i}")], actor=ACTOR,
                       idempotency=Idempotency("epr", f"{plan_id}-{i}", "fp"))
    seen, after = [], 0
    while True:
        events, last = app.feed(after, 7)
        if not events:
            break
        seen += events
        after = events[-1].position
    assert len(seen) == 33
    assert [e.position for e in seen] == sorted({e.position for e in seen})
    for plan_id in plan_ids:
        assert [e.plan_version for e in seen if e.plan_id == plan_id] == list(range(1, 12))
