"""Snapshots of plans (PlanApplication._take_snapshots): taken of the plan just saved, at an
interval that grows with the plan, so that what they cost a write does not grow with the
plan's length, while a cold load still replays at most 1 / SNAPSHOT_SPACING of the plan
after its snapshot. Big plans' snapshots are stored off the commit path (SnapshotWriter)."""

from __future__ import annotations

from eventsourcing.application import project_aggregate

from plan_service.application.plans import SNAPSHOT_IN_BACKGROUND_FROM, SNAPSHOT_SPACING, snapshot_step
from plan_service.bootstrap import bootstrap
from plan_service.config import Config

ACTOR = {"role": "clinician", "id": "clin-1"}


def info(n: int | str) -> tuple[str, dict]:
    return ("InformationGiven", {"information_id": f"i{n}", "topic": "rights", "form": "oral",
                                 "description": "Retten til individuell plan"})


def test_the_interval_grows_with_the_plan_and_a_snapshot_is_never_far_behind():
    due = [v for v in range(1, 100_001) if v % snapshot_step(v, 100) == 0]
    first = 2 * SNAPSHOT_SPACING
    assert due[:first] == [100 * (i + 1) for i in range(first)]  # the configured interval at first
    assert len(due) <= first + 2 * SNAPSHOT_SPACING * 8  # then 2 x SNAPSHOT_SPACING per doubling of the plan
    for version in range(100, 100_001, 7):
        latest = max(v for v in due if v <= version)
        assert version - latest < max(100, version / SNAPSHOT_SPACING + 1), version
        # what snapshots cost a write: entries encoded per event, bounded whatever the length
        assert version / snapshot_step(version, 100) <= max(first, 2 * SNAPSHOT_SPACING), version


def test_snapshots_are_taken_of_the_saved_plan_at_the_due_versions(tmp_path):
    plans = bootstrap(Config(data_dir=tmp_path, persistence="memory", snapshot_interval=10)).plans
    plan_id = plans.open_plan(patient_id="pat-synth-1", service_level="municipal", age_band="18-25",
                              actor=ACTOR).plan_id
    for i in range(300):
        plans.record(plan_id, [info(i)], actor=ACTOR)
    plans.record(plan_id, [info("a"), info("b"), info("c")], actor=ACTOR)  # 302..304: none due
    plans.record(plan_id, [info(f"x{i}") for i in range(40)], actor=ACTOR)  # 305..344: 320 is due; taken at 344
    snapshots = list(plans.snapshots.get(plan_id))
    versions = [s.originator_version for s in snapshots]
    assert versions == [v for v in range(1, 302) if v % snapshot_step(v, 10) == 0] + [344]
    stored = list(plans.events.get(plan_id))
    for snapshot in snapshots:  # each is the plan as stored at its version
        assert snapshot.mutate(None) == project_aggregate(None, stored[: snapshot.originator_version])
    rebuilt = plans.repository.get(plan_id, version=344)
    assert rebuilt == plans.get_plan(plan_id) and len(rebuilt.information) == 343


def test_a_long_plan_is_snapshotted_off_the_commit_path(tmp_path):
    plans = bootstrap(Config(data_dir=tmp_path, persistence="memory", snapshot_interval=10)).plans
    plan_id = plans.open_plan(patient_id="pat-synth-1", service_level="municipal", age_band="18-25",
                              actor=ACTOR).plan_id
    for start in range(0, 1_400, 100):
        plans.record(plan_id, [info(start + i) for i in range(100)], actor=ACTOR)
    assert plans.snapshot_writer.drain(timeout=30)
    versions = [s.originator_version for s in plans.snapshots.get(plan_id)]
    assert versions[-1] >= SNAPSHOT_IN_BACKGROUND_FROM  # written by the SnapshotWriter's thread
    (last,) = plans.snapshots.get(plan_id, desc=True, limit=1)
    stored = list(plans.events.get(plan_id, lte=last.originator_version))
    assert last.mutate(None) == project_aggregate(None, stored)
    # written after the plan moved on: it still holds the version it was taken of
    assert plans.get_plan(plan_id).version == 1_401 > last.originator_version


def test_a_snapshot_that_cannot_be_stored_never_fails_the_write(tmp_path, monkeypatch, caplog):
    plans = bootstrap(Config(data_dir=tmp_path, persistence="memory", snapshot_interval=10)).plans
    plan_id = plans.open_plan(patient_id="pat-synth-1", service_level="municipal", age_band="18-25",
                              actor=ACTOR).plan_id

    def broken(*args, **kwargs):
        raise RuntimeError("the snapshot table is away")

    monkeypatch.setattr(plans.snapshots, "put", broken)
    for i in range(12):  # version 10 is due
        assert plans.record(plan_id, [info(i)], actor=ACTOR).version == i + 2
    assert [e.originator_version for e in plans.events.get(plan_id)] == list(range(1, 14))
    assert "could not store a snapshot" in caplog.text
