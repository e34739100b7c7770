"""Copy on write (domain/plan.py): a version of the plan, once made, is never changed.

A command works on ``copy.copy(plan)``, which shares every container of the plan; each
``apply`` replaces what it changes. These tests fail on any in-place change, for every
registered event type: the version a command was decided on (the cached plan, which readers
hold) must come out of the command exactly as it went in, down to the identity and contents
of every container and value object. ``copy.deepcopy`` stays a copy that shares nothing
mutable, for callers that change a copy in place.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

import pytest

from plan_service.domain.errors import DomainError
from plan_service.domain.event_types import COMMANDS, REGISTRY
from plan_service.domain.plan import IndividualPlan, OrderedPMap, plain_state

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
META = {"recorded_by": {"role": "clinician", "id": "c1"}, "occurred_at": T0}


def meta(day: int) -> dict[str, Any]:
    return {"recorded_by": {"role": "clinician", "id": "c1"}, "occurred_at": T0 + timedelta(days=day)}


def full_plan() -> IndividualPlan:
    plan = IndividualPlan.open(patient_id="pat-synth-1", service_level="municipal", age_band="18-25", **META)
    plan.assign_coordinator(coordinator_id="k1", service_level="specialist", **META)
    plan.set_goal(goal_id="g1", text="x", expressed_by="patient", **META)
    plan.add_participant(participant_id="r1", kind="relative", **META)
    plan.give_relative_consent(relative_id="r1", scope=["goals"], given_how="oral", **META)
    plan.schedule_evaluation(evaluation_id="e1", scheduled_for=META["occurred_at"], **META)
    plan.hold_evaluation(evaluation_id="e1", outcome="ok", patient_took_part=True, participants=["k1"], **META)
    plan.record_what_matters(text="hund", language="nb", **META)
    return plan


# Every posted event type, each path of its apply (a consent withdrawn by removing the
# relative, a meeting scheduled with and without a request, a service level added by a
# coordinator and by a professional), in an order the plan's rules accept.
HISTORY: list[tuple[str, dict[str, Any]]] = [
    ("CoordinatorAssigned", dict(coordinator_id="k1", name="Kari", service_level="specialist")),
    ("CoordinatorAssigned", dict(coordinator_id="k2", service_level="municipal")),
    ("WhatMattersRecorded", dict(text="Å ha en hund", language="nb")),
    ("WhatMattersRecorded", dict(text="Jobb", language="nb")),
    ("GoalSet", dict(goal_id="g1", text="Komme i jobb", expressed_by="patient")),
    ("GoalSet", dict(goal_id="g2", text="Flytte", expressed_by="clinician")),
    ("GoalSet", dict(goal_id="g3", text="Sove", expressed_by="patient")),
    ("GoalRevised", dict(goal_id="g1", text="Deltidsjobb", reason="realistic")),
    ("GoalAchieved", dict(goal_id="g1")),
    ("GoalAbandoned", dict(goal_id="g2", reason="no longer wanted")),
    ("InformationGiven", dict(information_id="i1", topic="rights", form="oral", description="Retten til IP")),
    ("InformationGiven", dict(information_id="i2", topic="choices", form="both", description="Valg")),
    ("ParticipantAdded", dict(participant_id="r1", kind="relative", name="Mor", relation="mother")),
    ("ParticipantAdded", dict(participant_id="r2", kind="relative", name="Far", relation="father")),
    ("ParticipantAdded", dict(participant_id="pro1", kind="professional", service_level="other-level")),
    ("RelativeConsentGiven", dict(relative_id="r1", scope=["goals", "meetings"], given_how="oral")),
    ("RelativeConsentGiven", dict(relative_id="r2", scope=["goals"], given_how="written")),
    ("RelativeConsentWithdrawn", dict(relative_id="r2")),
    ("ParticipantRemoved", dict(participant_id="r1", reason="asked to leave")),  # withdraws r1's consent
    ("ParticipantRemoved", dict(participant_id="pro1")),
    ("EvaluationScheduled", dict(evaluation_id="e1", scheduled_for=T0 + timedelta(days=2))),
    ("EvaluationScheduled", dict(evaluation_id="e2", scheduled_for=T0 + timedelta(days=3))),
    ("EvaluationHeld", dict(evaluation_id="e1", outcome="Plan kept", patient_took_part=True, participants=["k2"])),
    ("TriangleMeetingRequested", dict(meeting_id="m1", requested_by="municipal")),
    ("TriangleMeetingScheduled", dict(meeting_id="m1", scheduled_for=T0 + timedelta(days=4), place="Kafé",
                                      no_show_strategy="Ring samme dag")),
    ("TriangleMeetingScheduled", dict(meeting_id="m2", scheduled_for=T0 + timedelta(days=5), place="Hjemme",
                                      no_show_strategy="Ring")),
    ("TriangleMeetingMissed", dict(meeting_id="m1", note="did not come")),
    ("TriangleMeetingScheduled", dict(meeting_id="m1", scheduled_for=T0 + timedelta(days=6), place="Skole",
                                      no_show_strategy="Hjemmebesøk")),
    ("TriangleMeetingHeld", dict(meeting_id="m1", outcome="agreed")),
    ("PlanClosed", dict(reason="goals_reached")),
]


def fingerprint(value: Any) -> Any:
    """Identity and contents of every container and value object reachable from ``value``:
    equal before and after only if nothing was changed in place (or swapped on the object)."""
    if isinstance(value, IndividualPlan):
        return ("plan", id(value), fingerprint(value.__dict__))
    if isinstance(value, Mapping):  # a dict, or the plan's persistent maps (OrderedPMap)
        return (type(value).__name__, id(value), tuple((k, fingerprint(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", id(value), tuple(fingerprint(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(fingerprint(v) for v in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, id(value),
                tuple((f.name, fingerprint(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, Enum):
        return ("value", type(value).__name__, value.value)
    if isinstance(value, (set, bytearray)) or hasattr(value, "__dict__"):
        raise AssertionError(f"plan state holds a {type(value).__name__}: extend fingerprint() to cover it")
    return ("value", type(value).__name__, value)  # str, int, bool, None, date, datetime, UUID


def opened() -> IndividualPlan:
    plan = IndividualPlan.open(patient_id="pat-synth-1", service_level="municipal", age_band="18-25", **meta(0))
    plan.collect_events()
    return plan


def test_history_covers_every_registered_event_type():
    assert {type_ for type_, _ in HISTORY} == set(COMMANDS)
    assert {entry.name for entry in REGISTRY.values() if entry.command} == set(COMMANDS)


def test_every_event_type_leaves_the_version_it_was_decided_on_untouched():
    plan = opened()
    for day, (type_, fields_) in enumerate(HISTORY, start=1):
        before = fingerprint(plan)
        work = copy.copy(plan)
        assert work.pending_events == [] and work.pending_events is not plan.pending_events
        COMMANDS[type_](work, **fields_, **meta(day))
        assert fingerprint(plan) == before, f"{type_} changed the version it was decided on in place"
        assert work.version == plan.version + 1
        work.collect_events()
        plan = work


def test_the_next_version_shares_everything_the_event_did_not_change():
    """What a command costs does not grow with the plan: a copy is one dict of attributes,
    and an event replaces at most a few containers, each with one new value object."""
    plan = opened()
    for day, (type_, fields_) in enumerate(HISTORY, start=1):
        work = copy.copy(plan)
        COMMANDS[type_](work, **fields_, **meta(day))
        replaced = [name for name, value in vars(work).items()
                    if name not in ("_version", "_modified_on", "_pending_events") and value is not vars(plan)[name]]
        assert len(replaced) <= 2, (type_, replaced)  # e.g. participants and consents
        for name in replaced:
            old, new = vars(plan)[name], vars(work)[name]
            if name in ("coordinator", "closed"):
                continue  # a small record, replaced whole
            if isinstance(new, Mapping) and isinstance(old, Mapping):
                changed = [k for k in new if k not in old or new[k] is not old[k]]
                assert len(changed) + len(set(old) - set(new)) <= 1, (type_, name, changed)
            elif isinstance(new, list) and isinstance(old, list):
                assert new[: len(old)] == old and all(a is b for a, b in zip(old, new, strict=False)), (type_, name)
        work.collect_events()
        plan = work


@pytest.mark.parametrize("step", range(len(HISTORY)))
def test_a_rejected_command_leaves_the_plan_as_it_was(step):
    """The same command twice, or a command the plan's state refuses: nothing of the version
    it was tried on (nor of the copy it was tried on) has changed."""
    plan = opened()
    for day, (type_, fields_) in enumerate(HISTORY[: step + 1], start=1):
        COMMANDS[type_](plan, **fields_, **meta(day))
    plan.collect_events()
    before = fingerprint(plan)
    work = copy.copy(plan)
    type_, fields_ = HISTORY[step]
    tries = [(type_, fields_), ("GoalAchieved", dict(goal_id="nope")), ("RelativeConsentWithdrawn", dict(relative_id="nope"))]
    for try_type, try_fields in tries:
        try:
            COMMANDS[try_type](work, **try_fields, **meta(len(HISTORY) + 5))
        except DomainError:
            pass
        else:  # accepted (e.g. a second WhatMattersRecorded): the version it was decided on still stands
            work.collect_events()
            work = copy.copy(plan)
    assert fingerprint(plan) == before


def test_deepcopy_equals_original_and_shares_nothing_mutable():
    plan = full_plan()
    clone = copy.deepcopy(plan)
    assert clone == plan and clone is not plan
    clone.goals["g1"].status = "abandoned"
    clone.consents["r1"].scope.append("meetings")
    clone.evaluations["e1"].participants.append("x")
    clone.service_levels.append("elsewhere")
    clone.coordinator["name"] = "changed"
    clone.what_matters.clear()
    clone.pending_events.clear()
    assert plan.goals["g1"].status == "active"
    assert plan.consents["r1"].scope == ["goals"]
    assert plan.evaluations["e1"].participants == ["k1"]
    assert plan.service_levels == ["municipal", "specialist"]
    assert plan.coordinator["name"] is None
    assert len(plan.what_matters) == 1 and len(plan.pending_events) == 8


@pytest.mark.parametrize("make_copy", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_commands_on_a_copy_leave_the_original_alone(make_copy):
    plan = full_plan()
    plan.collect_events()
    clone = make_copy(plan)
    assert clone == plan
    clone.achieve_goal(goal_id="g1", **META)
    clone.withdraw_relative_consent(relative_id="r1", **META)
    clone.remove_participant(participant_id="r1", **META)
    assert plan.goals["g1"].status == "active" and plan.consents["r1"].withdrawn_at is None
    assert "r1" in plan.participants and plan.pending_events == []
    assert plan.version == clone.version - 3
    assert [type(e).__name__ for e in clone.pending_events] == ["GoalAchieved", "RelativeConsentWithdrawn",
                                                               "ParticipantRemoved"]


def test_a_long_section_is_shared_not_copied():
    """The sections keyed by id are persistent maps: setting one entry shares the others."""
    plan = opened()
    for n in range(2_000):
        plan.give_information(information_id=f"i{n}", topic="rights", form="oral", description="x", **meta(1))
    plan.collect_events()
    work = copy.copy(plan)
    work.give_information(information_id="new", topic="rights", form="oral", description="x", **meta(2))
    assert isinstance(work.information, OrderedPMap) and len(work.information) == len(plan.information) + 1
    assert all(work.information[k] is v for k, v in plan.information.items())
    assert "new" not in plan.information


def test_maps_from_a_snapshot_are_plain_dicts_until_changed():
    plan = full_plan()
    plan.collect_events()
    state = plain_state(vars(plan))
    assert all(type(v) is dict for k, v in state.items() if k in ("goals", "consents", "evaluations"))
    loaded = object.__new__(IndividualPlan)
    loaded.__dict__ = {**state, "_pending_events": []}
    assert loaded == plan  # a dict equals an OrderedPMap with the same items
    before = fingerprint(loaded)
    work = copy.copy(loaded)
    work.achieve_goal(goal_id="g1", **META)
    assert fingerprint(loaded) == before and isinstance(work.goals, OrderedPMap) and type(work.consents) is dict


def test_sections_keep_the_order_entries_were_recorded_in():
    """Readers see goals, participants, ... in the order they were recorded, in every process:
    a bare hash map would list them in an order that changes with the process's hash seed."""
    ids = [f"goal-{n:02d}-{chr(122 - n % 26)}" for n in range(40)]
    plan = opened()
    for goal_id in ids:
        plan.set_goal(goal_id=goal_id, text="x", expressed_by="patient", target_date=None, **meta(1))
    plan.abandon_goal(goal_id=ids[3], reason=None, **meta(2))  # changing one keeps its place
    assert list(plan.goals) == ids
    plan.collect_events()
    loaded = object.__new__(IndividualPlan)  # from a snapshot: plain dicts, then changed again
    loaded.__dict__ = {**plain_state(vars(plan)), "_pending_events": []}
    work = copy.copy(loaded)
    work.set_goal(goal_id="goal-last", text="x", expressed_by="patient", target_date=None, **meta(3))
    assert list(work.goals) == [*ids, "goal-last"]
    for relative in ("r-z", "r-a", "r-m"):
        work.add_participant(participant_id=relative, kind="relative", name=None, relation=None,
                             service_level=None, **meta(3))
    work.remove_participant(participant_id="r-a", reason=None, **meta(4))
    assert [p for p in work.participants if p.startswith("r-")] == ["r-z", "r-m"]


def test_an_ordered_map_is_a_mapping_equal_to_its_dict():
    m = OrderedPMap().set("b", 1).set("a", 2).set("b", 3)
    assert list(m) == ["b", "a"] and m == {"a": 2, "b": 3} and dict(m) == {"b": 3, "a": 2}
    assert m.discard("missing") is m and list(m.discard("b")) == ["a"] and "b" in m
    assert OrderedPMap.of([("x", 1), ("y", 2)]) == {"x": 1, "y": 2}
