"""The plan's cheap structural copy is still a real copy: what the cache hands out is safe."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

from plan_service.domain.plan import IndividualPlan

META = {"recorded_by": {"role": "clinician", "id": "c1"}, "occurred_at": datetime(2026, 1, 5, tzinfo=timezone.utc)}


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


def test_copy_equals_original_and_shares_nothing_mutable():
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


def test_commands_on_a_copy_leave_the_original_alone():
    plan = full_plan()
    plan.collect_events()
    clone = copy.deepcopy(plan)
    clone.achieve_goal(goal_id="g1", **META)
    clone.withdraw_relative_consent(relative_id="r1", **META)
    assert plan.goals["g1"].status == "active" and plan.consents["r1"].withdrawn_at is None
    assert plan.version == clone.version - 2
