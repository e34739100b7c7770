"""The IndividualPlan aggregate on its own: every event, every rule. No Flask, no app.

Commands are called with the meta the application adds (``recorded_by``, ``occurred_at``).
All ids are synthetic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.utils import resolve_topic

from plan_service.application.plans import PlanApplication
from plan_service.domain.errors import Conflict, DomainError, Forbidden, Invalid
from plan_service.domain.event_types import COMMANDS
from plan_service.domain.plan import IndividualPlan
from plan_service.domain.values import (
    Consent,
    Evaluation,
    Goal,
    InformationRecord,
    Participant,
    TriangleMeeting,
    WhatMatters,
    age_band_for,
)

ACTOR = {"role": "clinician", "id": "c1"}
T0 = datetime(2024, 6, 15, 10, 0, tzinfo=timezone.utc)  # the plan is opened
T1 = T0 + timedelta(days=1)  # the command under test happens


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def meta(when: datetime = T1) -> dict[str, Any]:
    return {"recorded_by": ACTOR, "occurred_at": when}


def open_plan(**overrides: Any) -> IndividualPlan:
    kwargs: dict[str, Any] = dict(patient_id="pat-synth-1", service_level="municipal",
                                  age_band="18-25", recorded_by=ACTOR, occurred_at=T0)
    kwargs.update(overrides)
    return IndividualPlan.open(**kwargs)


Step = tuple[str, dict[str, Any]]  # (posted event type, command fields)


def run(plan: IndividualPlan, steps: list[Step], when: datetime = T0) -> IndividualPlan:
    """Apply steps through COMMANDS (the posted-type -> command table) and drop their events."""
    for type_, fields_ in steps:
        COMMANDS[type_](plan, **fields_, **meta(when))
    plan.collect_events()
    return plan


def given(steps: list[Step]) -> IndividualPlan:
    plan = open_plan()
    plan.collect_events()
    return run(plan, steps)


def state(plan: IndividualPlan) -> dict[str, Any]:
    """Everything the aggregate holds, except its not-yet-saved events."""
    return copy.deepcopy({k: v for k, v in vars(plan).items() if k != "_pending_events"})


# Reusable setup steps (synthetic ids).
GOAL_G1: Step = ("GoalSet", dict(goal_id="g1", text="Walk to the shop", expressed_by="patient"))
RELATIVE_P1: Step = ("ParticipantAdded", dict(participant_id="p1", kind="relative",
                                              name="Synth Relative", relation="mother"))
PROFESSIONAL_P2: Step = ("ParticipantAdded", dict(participant_id="p2", kind="professional",
                                                  service_level="specialist"))
CONSENT_P1: Step = ("RelativeConsentGiven", dict(relative_id="p1", given_how="oral", scope=["goals"]))
EVAL_E1: Step = ("EvaluationScheduled", dict(evaluation_id="e1", scheduled_for=T0))
HOLD_E1: Step = ("EvaluationHeld", dict(evaluation_id="e1", outcome="ok", patient_took_part=True))
REQUEST_M1: Step = ("TriangleMeetingRequested", dict(meeting_id="m1", requested_by="patient"))
SCHEDULE_M1: Step = ("TriangleMeetingScheduled", dict(meeting_id="m1", scheduled_for=T0,
                                                      place="School", no_show_strategy="Call home"))
HOLD_M1: Step = ("TriangleMeetingHeld", dict(meeting_id="m1"))
MISS_M1: Step = ("TriangleMeetingMissed", dict(meeting_id="m1"))
CLOSE: Step = ("PlanClosed", dict(reason="goals_reached"))


def _goal(status: str) -> list[Step]:
    done = {"achieved": ("GoalAchieved", dict(goal_id="g1")),
            "abandoned": ("GoalAbandoned", dict(goal_id="g1", reason="no longer relevant"))}
    return [GOAL_G1, done[status]]


# -- opening --------------------------------------------------------------------------


def test_open_records_plan_opened_with_its_fields():
    plan = open_plan(birth_date=date(2000, 1, 2), age_band=None, service_level="specialist")

    (event,) = plan.pending_events
    assert type(event) is IndividualPlan.PlanOpened
    assert event.originator_id == plan.id and event.originator_version == 1 == plan.version
    assert (event.patient_id, event.service_level, event.age_band, event.birth_date) == (
        "pat-synth-1", "specialist", "18-25", date(2000, 1, 2))
    assert event.recorded_by == ACTOR and event.occurred_at == T0
    assert plan.patient_id == "pat-synth-1"
    assert plan.opened_at == T0
    assert plan.opened_service_level == "specialist"
    assert plan.service_levels == ["specialist"]
    assert (plan.age_band, plan.birth_date) == ("18-25", date(2000, 1, 2))
    assert plan.coordinator is None and plan.closed is None
    assert plan.what_matters == [] and plan.goals == {} and plan.information == {}
    assert plan.participants == {} and plan.consents == {} and plan.evaluations == {}
    assert plan.triangle_meetings == {}
    assert [type(e) for e in plan.collect_events()] == [IndividualPlan.PlanOpened]
    assert plan.pending_events == []


def test_open_with_age_band_only():
    plan = open_plan(age_band="65+")
    assert plan.age_band == "65+" and plan.birth_date is None
    assert plan.pending_events[0].age_band == "65+"
    assert plan.pending_events[0].birth_date is None


@pytest.mark.parametrize(
    ("overrides", "field_"),
    [
        pytest.param(dict(age_band=None, birth_date=None), "age_band", id="neither-age-band-nor-birth-date"),
        pytest.param(dict(age_band=None, birth_date=T0.date() + timedelta(days=1)), "birth_date",
                     id="born-after-opening"),
        pytest.param(dict(age_band="18-25", birth_date=date(2010, 6, 15)), "age_band",
                     id="age-band-contradicts-birth-date"),
        pytest.param(dict(age_band="99-100"), "age_band", id="unknown-age-band"),
    ],
)
def test_open_rejects(overrides, field_):
    with pytest.raises(Invalid) as raised:
        open_plan(**overrides)
    assert raised.value.field == field_


@pytest.mark.parametrize(
    ("birth_date", "band"),
    [
        (date(2024, 6, 15), "0-14"),   # born the day the plan is opened
        (date(2010, 6, 15), "0-14"),   # turns 14 today
        (date(2009, 6, 16), "0-14"),   # 15 tomorrow: still 14
        (date(2009, 6, 15), "15-17"),  # turns 15 today
        (date(2006, 6, 16), "15-17"),  # 18 tomorrow: still 17
        (date(2006, 6, 15), "18-25"),  # turns 18 today
        (date(1998, 6, 16), "18-25"),  # 26 tomorrow: still 25
        (date(1998, 6, 15), "26-64"),  # turns 26 today
        (date(1959, 6, 16), "26-64"),  # 65 tomorrow
        (date(1959, 6, 15), "65+"),
    ],
)
def test_age_band_is_derived_from_birth_date(birth_date, band):
    assert age_band_for(birth_date, T0.date()) == band
    plan = open_plan(age_band=None, birth_date=birth_date)
    assert plan.age_band == band
    assert plan.pending_events[0].age_band == band
    # The matching band may be given too.
    assert open_plan(age_band=band, birth_date=birth_date).age_band == band


def test_age_band_uses_the_opening_date():
    # 1 March birthday, opened 28 February of a leap year: not yet 15.
    opened = datetime(2024, 2, 28, 12, tzinfo=timezone.utc)
    assert open_plan(age_band=None, birth_date=date(2009, 3, 1), occurred_at=opened).age_band == "0-14"
    # Born 29 February: 15 on 1 March in a common year.
    opened = datetime(2023, 3, 1, 12, tzinfo=timezone.utc)
    assert open_plan(age_band=None, birth_date=date(2008, 2, 29), occurred_at=opened).age_band == "15-17"
    opened = datetime(2023, 2, 28, 12, tzinfo=timezone.utc)
    assert open_plan(age_band=None, birth_date=date(2008, 2, 29), occurred_at=opened).age_band == "0-14"


# -- every event type: the command triggers the right event and changes the state ----------


@dataclass
class EventCase:
    type_: str
    fields_: dict[str, Any]
    event: dict[str, Any]  # the event's attributes
    observe: Callable[[IndividualPlan], Any]  # the part of the state the event changes...
    observed: Any  # ...and what it must be afterwards
    setup: list[Step] = field(default_factory=list)


EVENT_CASES = [
    EventCase(
        "CoordinatorAssigned",
        dict(coordinator_id="k1", name="Synth Coordinator", service_level="specialist"),
        dict(coordinator_id="k1", name="Synth Coordinator", service_level="specialist"),
        lambda p: (p.coordinator, p.service_levels),
        ({"coordinator_id": "k1", "name": "Synth Coordinator", "service_level": "specialist"},
         ["municipal", "specialist"]),
    ),
    EventCase(
        "WhatMattersRecorded",
        dict(text="Being with my dog", language="nb"),
        dict(text="Being with my dog", language="nb"),
        lambda p: p.what_matters,
        [WhatMatters("Being with my dog", "nb", T1)],
    ),
    EventCase(
        "GoalSet",
        dict(goal_id="g1", text="Walk to the shop", expressed_by="patient", target_date=date(2024, 9, 1)),
        dict(goal_id="g1", text="Walk to the shop", expressed_by="patient", target_date=date(2024, 9, 1)),
        lambda p: p.goals,
        {"g1": Goal("g1", "Walk to the shop", "patient", date(2024, 9, 1), "active", T1, 0, None)},
    ),
    EventCase(
        "GoalRevised",
        dict(goal_id="g1", text="Walk to the park", target_date=date(2024, 12, 1), reason="progress"),
        dict(goal_id="g1", text="Walk to the park", target_date=date(2024, 12, 1), reason="progress"),
        lambda p: p.goals,
        {"g1": Goal("g1", "Walk to the park", "patient", date(2024, 12, 1), "active", T0, 1, None)},
        setup=[GOAL_G1],
    ),
    EventCase(
        "GoalAchieved",
        dict(goal_id="g1"),
        dict(goal_id="g1"),
        lambda p: p.goals,
        {"g1": Goal("g1", "Walk to the shop", "patient", None, "achieved", T0, 0, None)},
        setup=[GOAL_G1],
    ),
    EventCase(
        "GoalAbandoned",
        dict(goal_id="g1", reason="moved away"),
        dict(goal_id="g1", reason="moved away"),
        lambda p: p.goals,
        {"g1": Goal("g1", "Walk to the shop", "patient", None, "abandoned", T0, 0, "moved away")},
        setup=[GOAL_G1],
    ),
    EventCase(
        "InformationGiven",
        dict(information_id="i1", topic="rights", form="both", description="Right to a coordinator",
             adapted_how="Easy language"),
        dict(information_id="i1", topic="rights", form="both", description="Right to a coordinator",
             adapted_how="Easy language"),
        lambda p: p.information,
        {"i1": InformationRecord("i1", "rights", "both", "Right to a coordinator", "Easy language", T1)},
    ),
    EventCase(
        "ParticipantAdded",
        dict(participant_id="p1", kind="relative", name="Synth Relative", relation="mother"),
        dict(participant_id="p1", kind="relative", name="Synth Relative", relation="mother",
             service_level=None),
        lambda p: (p.participants, p.service_levels),
        ({"p1": Participant("p1", "relative", "Synth Relative", "mother", None, T1)}, ["municipal"]),
    ),
    EventCase(
        "ParticipantRemoved",
        dict(participant_id="p1", reason="asked to leave"),
        dict(participant_id="p1", reason="asked to leave"),
        lambda p: p.participants,
        {},
        setup=[RELATIVE_P1],
    ),
    EventCase(
        "RelativeConsentGiven",
        dict(relative_id="p1", given_how="oral", scope=["what_matters", "goals", "goals"], valid_until=at(90)),
        # The scope is stored once per section, sorted; valid_from defaults to occurred_at.
        dict(relative_id="p1", given_how="oral", scope=["goals", "what_matters"], valid_from=T1, valid_until=at(90)),
        lambda p: p.consents,
        {"p1": Consent("p1", ["goals", "what_matters"], T1, at(90), T1, None, "oral")},
        setup=[RELATIVE_P1],
    ),
    EventCase(
        "RelativeConsentWithdrawn",
        dict(relative_id="p1"),
        dict(relative_id="p1"),
        lambda p: p.consents,
        {"p1": Consent("p1", ["goals"], T0, None, T0, withdrawn_at=T1, given_how="oral")},
        setup=[RELATIVE_P1, CONSENT_P1],
    ),
    EventCase(
        "EvaluationScheduled",
        dict(evaluation_id="e1", scheduled_for=at(30)),
        dict(evaluation_id="e1", scheduled_for=at(30)),
        lambda p: p.evaluations,
        {"e1": Evaluation("e1", at(30), "scheduled", None, [], None, None)},
    ),
    EventCase(
        "EvaluationHeld",
        dict(evaluation_id="e1", outcome="Going well", patient_took_part=True, participants=["p1", "k1"]),
        dict(evaluation_id="e1", outcome="Going well", patient_took_part=True, participants=["p1", "k1"]),
        lambda p: p.evaluations,
        {"e1": Evaluation("e1", T0, "held", T1, ["p1", "k1"], "Going well", True)},
        setup=[EVAL_E1],
    ),
    EventCase(
        "TriangleMeetingRequested",
        dict(meeting_id="m1", requested_by="patient", reason="school trouble"),
        dict(meeting_id="m1", requested_by="patient", reason="school trouble"),
        lambda p: p.triangle_meetings,
        {"m1": TriangleMeeting("m1", "requested", requested_by="patient")},
    ),
    EventCase(
        "TriangleMeetingScheduled",
        dict(meeting_id="m1", scheduled_for=at(7), place="School", transport="Taxi", companion="Aunt",
             no_show_strategy="Call home"),
        dict(meeting_id="m1", scheduled_for=at(7), place="School", transport="Taxi", companion="Aunt",
             no_show_strategy="Call home"),
        lambda p: p.triangle_meetings,
        {"m1": TriangleMeeting("m1", "scheduled", requested_by=None, scheduled_for=at(7), place="School",
                               transport="Taxi", companion="Aunt", no_show_strategy="Call home")},
    ),
    EventCase(
        "TriangleMeetingHeld",
        dict(meeting_id="m1", outcome="Agreed on a plan"),
        dict(meeting_id="m1", outcome="Agreed on a plan"),
        lambda p: p.triangle_meetings,
        {"m1": TriangleMeeting("m1", "held", requested_by="patient", scheduled_for=T0, place="School",
                               no_show_strategy="Call home", outcome="Agreed on a plan")},
        setup=[REQUEST_M1, SCHEDULE_M1],
    ),
    EventCase(
        "TriangleMeetingMissed",
        dict(meeting_id="m1", note="Did not come"),
        dict(meeting_id="m1", note="Did not come"),
        lambda p: p.triangle_meetings,
        {"m1": TriangleMeeting("m1", "missed", scheduled_for=T0, place="School",
                               no_show_strategy="Call home", times_missed=1)},
        setup=[SCHEDULE_M1],
    ),
    EventCase(
        "PlanClosed",
        dict(reason="moved", note="Moved to another municipality"),
        dict(reason="moved", note="Moved to another municipality"),
        lambda p: p.closed,
        {"reason": "moved", "at": T1},
    ),
]


def test_every_posted_event_type_has_a_case():
    assert sorted(c.type_ for c in EVENT_CASES) == sorted(COMMANDS)


@pytest.mark.parametrize("case", EVENT_CASES, ids=[c.type_ for c in EVENT_CASES])
def test_command_triggers_its_event(case: EventCase):
    plan = given(case.setup)
    version = plan.version

    COMMANDS[case.type_](plan, **case.fields_, **meta())

    assert [type(e).__name__ for e in plan.pending_events] == [case.type_]
    (event,) = plan.collect_events()
    assert type(event) is getattr(IndividualPlan, case.type_)
    assert isinstance(event, IndividualPlan.Event)
    assert event.originator_id == plan.id
    assert event.originator_version == version + 1 == plan.version
    assert event.recorded_by == ACTOR
    assert event.occurred_at == T1
    for name, value in case.event.items():
        assert getattr(event, name) == value, name
    assert plan.pending_events == []
    assert case.observe(plan) == case.observed


def test_several_commands_queue_events_in_order():
    plan = given([])
    plan.set_goal(goal_id="g1", text="a", expressed_by="clinician", **meta())
    plan.achieve_goal(goal_id="g1", **meta())
    plan.close(reason="goals_reached", **meta())
    assert [type(e) for e in plan.pending_events] == [
        IndividualPlan.GoalSet, IndividualPlan.GoalAchieved, IndividualPlan.PlanClosed]
    assert [e.originator_version for e in plan.pending_events] == [2, 3, 4]


def test_revision_may_change_only_the_target_date():
    plan = given([GOAL_G1])
    plan.revise_goal(goal_id="g1", target_date=date(2025, 1, 1), **meta())
    (event,) = plan.collect_events()
    assert (event.text, event.target_date, event.reason) == (None, date(2025, 1, 1), None)
    goal = plan.goals["g1"]
    assert (goal.text, goal.target_date, goal.revisions) == ("Walk to the shop", date(2025, 1, 1), 1)
    plan.revise_goal(goal_id="g1", text="Walk further", **meta())
    assert (goal.text, goal.target_date, goal.revisions) == ("Walk to the shop", date(2025, 1, 1), 1)  # copy on write
    goal = plan.goals["g1"]
    assert (goal.text, goal.target_date, goal.revisions) == ("Walk further", date(2025, 1, 1), 2)


def test_consent_valid_from_given_explicitly():
    plan = given([RELATIVE_P1])
    plan.give_relative_consent(relative_id="p1", scope=["meetings"], given_how="oral", valid_from=at(10),
                               valid_until=at(20), **meta())
    (event,) = plan.collect_events()
    assert (event.valid_from, event.valid_until) == (at(10), at(20))
    assert plan.consents["p1"] == Consent("p1", ["meetings"], at(10), at(20), T1, given_how="oral")


def test_evaluation_held_without_participants_records_an_empty_list():
    plan = given([EVAL_E1])
    plan.hold_evaluation(evaluation_id="e1", outcome="ok", patient_took_part=False, **meta())
    (event,) = plan.collect_events()
    assert event.participants == [] and event.patient_took_part is False
    assert plan.evaluations["e1"].patient_took_part is False


def test_evaluation_may_be_rescheduled_until_held():
    plan = given([EVAL_E1])
    plan.schedule_evaluation(evaluation_id="e1", scheduled_for=at(60), **meta())
    assert plan.evaluations["e1"] == Evaluation("e1", at(60))


def test_scheduling_a_requested_meeting_keeps_who_asked():
    plan = given([REQUEST_M1, SCHEDULE_M1])
    meeting = plan.triangle_meetings["m1"]
    assert (meeting.status, meeting.requested_by, meeting.place) == ("scheduled", "patient", "School")


def test_meeting_may_be_rescheduled_after_each_miss_and_counts_them():
    plan = given([REQUEST_M1, SCHEDULE_M1, MISS_M1, SCHEDULE_M1, MISS_M1, SCHEDULE_M1])
    meeting = plan.triangle_meetings["m1"]
    assert (meeting.status, meeting.times_missed) == ("scheduled", 2)
    plan.hold_triangle_meeting(meeting_id="m1", outcome="Finally", **meta())
    assert meeting.status == "scheduled"  # copy on write: the version held before is unchanged
    meeting = plan.triangle_meetings["m1"]
    assert (meeting.status, meeting.times_missed, meeting.outcome) == ("held", 2, "Finally")
    assert [type(e) for e in plan.collect_events()] == [IndividualPlan.TriangleMeetingHeld]


def test_service_levels_grow_with_coordinator_and_professionals():
    plan = given([])
    assert plan.service_levels == ["municipal"]
    plan.assign_coordinator(coordinator_id="k1", **meta())  # no service level: no change
    assert plan.service_levels == ["municipal"]
    plan.add_participant(participant_id="p1", kind="relative", **meta())
    assert plan.service_levels == ["municipal"]
    plan.add_participant(participant_id="p2", kind="professional", service_level="municipal", **meta())
    assert plan.service_levels == ["municipal"]  # not twice
    plan.add_participant(participant_id="p3", kind="professional", service_level="specialist", **meta())
    assert plan.service_levels == ["municipal", "specialist"]
    plan.assign_coordinator(coordinator_id="k2", service_level="specialist", **meta())
    assert plan.service_levels == ["municipal", "specialist"]
    # Removing the professional does not forget that the service level took part.
    plan.remove_participant(participant_id="p3", **meta())
    assert plan.service_levels == ["municipal", "specialist"]


def test_coordinator_brings_in_a_service_level():
    plan = open_plan(service_level="specialist")
    plan.assign_coordinator(coordinator_id="k1", service_level="municipal", **meta())
    assert plan.service_levels == ["specialist", "municipal"]


def test_removing_a_relative_ends_their_consent():
    plan = given([RELATIVE_P1, CONSENT_P1])
    assert plan.consents["p1"].covers("goals", T1)
    plan.remove_participant(participant_id="p1", reason="patient asked", **meta(at(5)))
    consent = plan.consents["p1"]
    assert consent.withdrawn_at == at(5)
    assert not consent.covers("goals", at(6))
    assert [type(e) for e in plan.collect_events()] == [IndividualPlan.ParticipantRemoved]


def test_removing_a_relative_keeps_an_earlier_withdrawal():
    plan = given([RELATIVE_P1, CONSENT_P1])
    plan.withdraw_relative_consent(relative_id="p1", **meta(at(2)))
    plan.remove_participant(participant_id="p1", **meta(at(5)))
    assert plan.consents["p1"].withdrawn_at == at(2)


def test_removing_a_professional_touches_no_consent():
    plan = given([RELATIVE_P1, CONSENT_P1, PROFESSIONAL_P2])
    plan.remove_participant(participant_id="p2", **meta())
    assert plan.consents["p1"].withdrawn_at is None
    assert list(plan.participants) == ["p1"]


def test_relative_may_be_added_again_and_consent_given_again():
    plan = given([RELATIVE_P1, CONSENT_P1, ("ParticipantRemoved", dict(participant_id="p1")), RELATIVE_P1])
    plan.give_relative_consent(relative_id="p1", scope=["meetings"], given_how="written", **meta(at(9)))
    consent = plan.consents["p1"]
    assert (consent.scope, consent.withdrawn_at, consent.given_at) == (["meetings"], None, at(9))


# -- Consent.covers -------------------------------------------------------------------

_CONSENT = dict(relative_id="p1", given_how="oral", scope=["goals", "meetings"], valid_from=at(10),
                valid_until=at(20), given_at=at(1))


@pytest.mark.parametrize(
    ("changes", "section", "when", "covered"),
    [
        ({}, "goals", at(10), True),                          # from valid_from, inclusive
        ({}, "meetings", at(15), True),
        ({}, "goals", at(10) - timedelta(seconds=1), False),  # not yet valid
        ({}, "goals", at(20) - timedelta(seconds=1), True),
        ({}, "goals", at(20), False),                         # valid_until is exclusive
        ({}, "what_matters", at(15), False),                  # outside the scope
        ({}, "evaluations", at(15), False),
        ({"valid_until": None}, "goals", at(10_000), True),   # open-ended
        ({"valid_until": None}, "goals", at(9), False),
        ({"withdrawn_at": at(12)}, "goals", at(11), False),   # withdrawn: covers nothing any more
        ({"withdrawn_at": at(12)}, "goals", at(15), False),
        ({"scope": []}, "goals", at(15), False),
    ],
)
def test_consent_covers(changes, section, when, covered):
    assert Consent(**{**_CONSENT, **changes}).covers(section, when) is covered


# -- every rule: the command is refused and nothing changes ------------------------------


@dataclass
class Refusal:
    id: str
    setup: list[Step]
    type_: str
    fields_: dict[str, Any]
    error: type[DomainError]
    field_: str | None


_MEETING_NEW = dict(meeting_id="m1", scheduled_for=at(7), place="School", no_show_strategy="Call")

REFUSALS = [
    # A closed plan takes no more events, whatever they are.
    *[
        Refusal(f"closed-{type_}", [GOAL_G1, RELATIVE_P1, EVAL_E1, SCHEDULE_M1, CLOSE], type_, fields_,
                Conflict, None)
        for type_, fields_ in [
            ("CoordinatorAssigned", dict(coordinator_id="k1")),
            ("WhatMattersRecorded", dict(text="x", language="nb")),
            ("GoalSet", dict(goal_id="g2", text="x", expressed_by="patient")),
            ("GoalRevised", dict(goal_id="g1", text="x")),
            ("GoalAchieved", dict(goal_id="g1")),
            ("GoalAbandoned", dict(goal_id="g1")),
            ("InformationGiven", dict(information_id="i1", topic="rights", form="oral", description="x")),
            ("ParticipantAdded", dict(participant_id="p2", kind="relative")),
            ("ParticipantRemoved", dict(participant_id="p1")),
            ("RelativeConsentGiven", dict(relative_id="p1", given_how="oral", scope=["goals"])),
            ("EvaluationScheduled", dict(evaluation_id="e2", scheduled_for=at(3))),
            ("EvaluationHeld", dict(evaluation_id="e1", outcome="x", patient_took_part=True)),
            ("TriangleMeetingRequested", dict(meeting_id="m2")),
            ("TriangleMeetingScheduled", dict(_MEETING_NEW, meeting_id="m2")),
            ("TriangleMeetingHeld", dict(meeting_id="m1")),
            ("TriangleMeetingMissed", dict(meeting_id="m1")),
            ("PlanClosed", dict(reason="other")),
        ]
    ],
    Refusal("closed-consent-withdrawn", [RELATIVE_P1, CONSENT_P1, CLOSE],
            "RelativeConsentWithdrawn", dict(relative_id="p1"), Conflict, None),
    # What matters.
    Refusal("what-matters-empty", [], "WhatMattersRecorded", dict(text="", language="nb"), Invalid, "text"),
    Refusal("what-matters-blank", [], "WhatMattersRecorded", dict(text=" \n\t", language="nb"),
            Invalid, "text"),
    # Goals.
    Refusal("duplicate-goal", [GOAL_G1], "GoalSet", dict(goal_id="g1", text="again", expressed_by="patient"),
            Conflict, "goal_id"),
    *[
        Refusal(f"duplicate-goal-after-{status}", _goal(status), "GoalSet",
                dict(goal_id="g1", text="again", expressed_by="patient"), Conflict, "goal_id")
        for status in ("achieved", "abandoned")
    ],
    Refusal("revise-unknown-goal", [GOAL_G1], "GoalRevised", dict(goal_id="g2", text="x"), Invalid, "goal_id"),
    Refusal("achieve-unknown-goal", [GOAL_G1], "GoalAchieved", dict(goal_id="g2"), Invalid, "goal_id"),
    Refusal("abandon-unknown-goal", [], "GoalAbandoned", dict(goal_id="g1"), Invalid, "goal_id"),
    *[
        Refusal(f"{type_}-{status}-goal", _goal(status), type_, dict(goal_id="g1", **extra),
                Conflict, "goal_id")
        for status in ("achieved", "abandoned")
        for type_, extra in [("GoalRevised", {"text": "x"}), ("GoalRevised", {"target_date": date(2025, 1, 1)}),
                             ("GoalAchieved", {}), ("GoalAbandoned", {})]
    ],
    Refusal("revise-without-change", [GOAL_G1], "GoalRevised", dict(goal_id="g1", reason="why"),
            Invalid, "text"),
    # Information.
    Refusal("duplicate-information",
            [("InformationGiven", dict(information_id="i1", topic="rights", form="oral", description="a"))],
            "InformationGiven", dict(information_id="i1", topic="choices", form="written", description="b"),
            Conflict, "information_id"),
    # Participants.
    Refusal("duplicate-participant", [RELATIVE_P1], "ParticipantAdded",
            dict(participant_id="p1", kind="professional", service_level="municipal"), Conflict, "participant_id"),
    Refusal("professional-without-service-level", [], "ParticipantAdded",
            dict(participant_id="p2", kind="professional"), Invalid, "service_level"),
    Refusal("remove-unknown-participant", [RELATIVE_P1], "ParticipantRemoved", dict(participant_id="p2"),
            Invalid, "participant_id"),
    Refusal("remove-participant-twice", [RELATIVE_P1, ("ParticipantRemoved", dict(participant_id="p1"))],
            "ParticipantRemoved", dict(participant_id="p1"), Invalid, "participant_id"),
    # Relatives' consent.
    Refusal("consent-for-non-participant", [], "RelativeConsentGiven", dict(relative_id="p1", given_how="oral", scope=["goals"]),
            Invalid, "relative_id"),
    Refusal("consent-for-professional", [PROFESSIONAL_P2], "RelativeConsentGiven",
            dict(relative_id="p2", given_how="oral", scope=["goals"]), Invalid, "relative_id"),
    Refusal("consent-for-removed-relative", [RELATIVE_P1, ("ParticipantRemoved", dict(participant_id="p1"))],
            "RelativeConsentGiven", dict(relative_id="p1", given_how="oral", scope=["goals"]), Invalid, "relative_id"),
    Refusal("consent-empty-scope", [RELATIVE_P1], "RelativeConsentGiven", dict(relative_id="p1", given_how="oral", scope=[]),
            Invalid, "scope"),
    Refusal("consent-unknown-scope", [RELATIVE_P1], "RelativeConsentGiven",
            dict(relative_id="p1", given_how="oral", scope=["goals", "medication"]), Invalid, "scope"),
    Refusal("consent-until-equals-from", [RELATIVE_P1], "RelativeConsentGiven",
            dict(relative_id="p1", given_how="oral", scope=["goals"], valid_from=at(5), valid_until=at(5)), Invalid, "valid_until"),
    Refusal("consent-until-before-from", [RELATIVE_P1], "RelativeConsentGiven",
            dict(relative_id="p1", given_how="oral", scope=["goals"], valid_from=at(5), valid_until=at(4)), Invalid, "valid_until"),
    Refusal("consent-until-before-occurred-at", [RELATIVE_P1], "RelativeConsentGiven",
            dict(relative_id="p1", given_how="oral", scope=["goals"], valid_until=T1), Invalid, "valid_until"),  # from defaults to T1
    Refusal("withdraw-never-given", [RELATIVE_P1], "RelativeConsentWithdrawn", dict(relative_id="p1"),
            Invalid, "relative_id"),
    Refusal("withdraw-twice", [RELATIVE_P1, CONSENT_P1, ("RelativeConsentWithdrawn", dict(relative_id="p1"))],
            "RelativeConsentWithdrawn", dict(relative_id="p1"), Conflict, "relative_id"),
    Refusal("withdraw-after-removal", [RELATIVE_P1, CONSENT_P1, ("ParticipantRemoved", dict(participant_id="p1"))],
            "RelativeConsentWithdrawn", dict(relative_id="p1"), Conflict, "relative_id"),
    # Evaluations.
    Refusal("hold-unscheduled-evaluation", [], "EvaluationHeld",
            dict(evaluation_id="e1", outcome="x", patient_took_part=True), Invalid, "evaluation_id"),
    Refusal("hold-evaluation-twice", [EVAL_E1, HOLD_E1], "EvaluationHeld",
            dict(evaluation_id="e1", outcome="again", patient_took_part=False), Conflict, "evaluation_id"),
    Refusal("reschedule-held-evaluation", [EVAL_E1, HOLD_E1], "EvaluationScheduled",
            dict(evaluation_id="e1", scheduled_for=at(60)), Conflict, "evaluation_id"),
    # Triangle meetings.
    Refusal("request-existing-meeting", [REQUEST_M1], "TriangleMeetingRequested", dict(meeting_id="m1"),
            Conflict, "meeting_id"),
    Refusal("request-scheduled-meeting", [SCHEDULE_M1], "TriangleMeetingRequested", dict(meeting_id="m1"),
            Conflict, "meeting_id"),
    Refusal("hold-requested-meeting", [REQUEST_M1], "TriangleMeetingHeld", dict(meeting_id="m1"),
            Conflict, "meeting_id"),
    Refusal("miss-requested-meeting", [REQUEST_M1], "TriangleMeetingMissed", dict(meeting_id="m1"),
            Conflict, "meeting_id"),
    Refusal("hold-unknown-meeting", [SCHEDULE_M1], "TriangleMeetingHeld", dict(meeting_id="m2"),
            Invalid, "meeting_id"),
    Refusal("miss-unknown-meeting", [], "TriangleMeetingMissed", dict(meeting_id="m1"), Invalid, "meeting_id"),
    Refusal("hold-meeting-twice", [SCHEDULE_M1, HOLD_M1], "TriangleMeetingHeld", dict(meeting_id="m1"),
            Conflict, "meeting_id"),
    Refusal("miss-held-meeting", [SCHEDULE_M1, HOLD_M1], "TriangleMeetingMissed", dict(meeting_id="m1"),
            Conflict, "meeting_id"),
    Refusal("hold-missed-meeting", [SCHEDULE_M1, MISS_M1], "TriangleMeetingHeld", dict(meeting_id="m1"),
            Conflict, "meeting_id"),
    Refusal("miss-missed-meeting", [SCHEDULE_M1, MISS_M1], "TriangleMeetingMissed", dict(meeting_id="m1"),
            Conflict, "meeting_id"),
    Refusal("schedule-held-meeting", [REQUEST_M1, SCHEDULE_M1, HOLD_M1], "TriangleMeetingScheduled",
            _MEETING_NEW, Conflict, "meeting_id"),
    Refusal("empty-no-show-strategy", [], "TriangleMeetingScheduled", dict(_MEETING_NEW, no_show_strategy=""),
            Invalid, "no_show_strategy"),
    Refusal("blank-no-show-strategy", [REQUEST_M1], "TriangleMeetingScheduled",
            dict(_MEETING_NEW, no_show_strategy="   "), Invalid, "no_show_strategy"),
    # Hardening (issue 9): what a clinician would expect to be refused.
    Refusal("goal-blank-text", [], "GoalSet", dict(goal_id="g1", text=" \n ", expressed_by="patient"),
            Invalid, "text"),
    Refusal("goal-revised-to-blank", [GOAL_G1], "GoalRevised", dict(goal_id="g1", text="  "), Invalid, "text"),
    Refusal("coordinator-is-a-relative", [RELATIVE_P1], "CoordinatorAssigned", dict(coordinator_id="p1"),
            Invalid, "coordinator_id"),
    Refusal("coordinator-is-the-patient", [], "CoordinatorAssigned", dict(coordinator_id="pat-synth-1"),
            Invalid, "coordinator_id"),
    Refusal("evaluation-held-before-its-time", [("EvaluationScheduled", dict(evaluation_id="e1",
                                                                             scheduled_for=at(30)))],
            "EvaluationHeld", dict(evaluation_id="e1", outcome="x", patient_took_part=True), Invalid, "occurred_at"),
    Refusal("meeting-held-before-its-time", [("TriangleMeetingScheduled", _MEETING_NEW)],
            "TriangleMeetingHeld", dict(meeting_id="m1"), Invalid, "occurred_at"),
    Refusal("meeting-missed-before-its-time", [("TriangleMeetingScheduled", _MEETING_NEW)],
            "TriangleMeetingMissed", dict(meeting_id="m1"), Invalid, "occurred_at"),
    Refusal("meeting-scheduled-in-1990", [], "TriangleMeetingScheduled",
            dict(_MEETING_NEW, scheduled_for=datetime(1990, 5, 1, 10, tzinfo=timezone.utc)),
            Invalid, "scheduled_for"),
    Refusal("evaluation-scheduled-before-opening", [], "EvaluationScheduled",
            dict(evaluation_id="e1", scheduled_for=at(-30)), Invalid, "scheduled_for"),
    Refusal("consent-already-ended", [RELATIVE_P1], "RelativeConsentGiven",
            dict(relative_id="p1", given_how="oral", scope=["goals"], valid_from=at(1), valid_until=at(2)),
            Invalid, "valid_until"),
    Refusal("consent-starting-before-opening", [RELATIVE_P1], "RelativeConsentGiven",
            dict(relative_id="p1", given_how="oral", scope=["goals"], valid_from=at(-30)), Invalid, "valid_from"),
    Refusal("consent-recorded-by-clinician-without-how", [RELATIVE_P1], "RelativeConsentGiven",
            dict(relative_id="p1", scope=["goals"]), Invalid, "given_how"),
    Refusal("consent-recorded-by-clinician-as-digital", [RELATIVE_P1], "RelativeConsentGiven",
            dict(relative_id="p1", scope=["goals"], given_how="digital"), Invalid, "given_how"),
]


@pytest.mark.parametrize("type_, fields_", [
    ("RelativeConsentGiven", dict(relative_id="p1", scope=["goals"], given_how="oral")),
    ("RelativeConsentWithdrawn", dict(relative_id="p1")),
])
def test_consent_is_not_recorded_by_a_bare_system_account(type_, fields_):
    plan = given([RELATIVE_P1, CONSENT_P1] if type_ == "RelativeConsentWithdrawn" else [RELATIVE_P1])
    before = state(plan)
    with pytest.raises(Forbidden):
        COMMANDS[type_](plan, **fields_, recorded_by={"role": "integration", "id": "epr-1"}, occurred_at=T1)
    assert state(plan) == before and plan.pending_events == []


def test_a_patient_records_their_own_consent_as_given_digitally():
    plan = given([RELATIVE_P1])
    plan.give_relative_consent(relative_id="p1", scope=["goals"], recorded_by={"role": "patient", "id": "pat-synth-1"},
                               occurred_at=T1)
    assert plan.consents["p1"].given_how == "digital"
    plan.withdraw_relative_consent(relative_id="p1", recorded_by={"role": "patient", "id": "pat-synth-1"},
                                   occurred_at=at(2))
    assert plan.consents["p1"].withdrawn_at == at(2)


@pytest.mark.parametrize("type_, fields_", [
    ("WhatMattersRecorded", dict(text="x", language="nb")),
    ("GoalSet", dict(goal_id="g9", text="x", expressed_by="patient")),
    ("PlanClosed", dict(reason="other")),
])
def test_nothing_happens_before_the_plan_was_opened(type_, fields_):
    plan = given([])
    with pytest.raises(Invalid) as raised:
        COMMANDS[type_](plan, **fields_, **meta(at(-1)))
    assert raised.value.field == "occurred_at" and plan.pending_events == []


@pytest.mark.parametrize("overrides, field_", [
    (dict(occurred_at=datetime(1, 1, 1, tzinfo=timezone.utc)), "occurred_at"),
    (dict(occurred_at=datetime(278, 6, 1, tzinfo=timezone.utc)), "occurred_at"),
    (dict(birth_date=date(1899, 12, 31), age_band=None), "birth_date"),
])
def test_a_plan_is_not_opened_before_1900(overrides, field_):
    with pytest.raises(Invalid) as raised:
        open_plan(**overrides)
    assert raised.value.field == field_


@pytest.mark.parametrize("case", REFUSALS, ids=[r.id for r in REFUSALS])
def test_rule_refuses_and_changes_nothing(case: Refusal):
    plan = given(case.setup)
    before, version = state(plan), plan.version

    with pytest.raises(case.error) as raised:
        COMMANDS[case.type_](plan, **case.fields_, **meta(at(3)))

    assert type(raised.value) is case.error
    assert raised.value.field == case.field_
    assert raised.value.message and str(raised.value) == raised.value.message
    assert plan.pending_events == [] and plan.collect_events() == []
    assert plan.version == version
    assert state(plan) == before


def test_failed_command_keeps_earlier_pending_events_only():
    plan = given([])
    plan.set_goal(goal_id="g1", text="a", expressed_by="patient", **meta())
    with pytest.raises(Conflict):
        plan.set_goal(goal_id="g1", text="b", expressed_by="patient", **meta())
    assert [(type(e), e.text) for e in plan.pending_events] == [(IndividualPlan.GoalSet, "a")]
    assert plan.version == 2 and plan.goals["g1"].text == "a"


def test_every_refused_event_type_is_covered():
    assert {r.type_ for r in REFUSALS if r.id.startswith("closed-")} == set(COMMANDS)


# -- topics ---------------------------------------------------------------------------

EVENT_CLASSES = [
    cls for cls in vars(IndividualPlan).values()
    if isinstance(cls, type) and issubclass(cls, IndividualPlan.Event) and cls is not IndividualPlan.Event
]


def test_every_event_class_has_an_explicit_stable_unique_topic():
    names = {cls.__name__ for cls in EVENT_CLASSES}
    assert names >= set(COMMANDS) | {"PlanOpened", "Created"}
    topics = []
    for cls in EVENT_CLASSES:
        assert "TOPIC" in vars(cls), f"{cls.__name__} has no TOPIC of its own"
        assert cls.TOPIC == f"careplan.IndividualPlan.{cls.__name__}"
        assert resolve_topic(cls.TOPIC) is cls
        topics.append(cls.TOPIC)
    assert len(topics) == len(set(topics))
    assert IndividualPlan.TOPIC == "careplan.IndividualPlan" not in topics
    assert resolve_topic(IndividualPlan.TOPIC) is IndividualPlan


def test_commands_table_names_existing_event_classes():
    for type_, command in COMMANDS.items():
        assert issubclass(getattr(IndividualPlan, type_), IndividualPlan.Event)
        assert callable(command)
    assert "PlanOpened" not in COMMANDS


# -- reconstruction from stored events --------------------------------------------------

FULL_HISTORY: list[Step] = [
    ("CoordinatorAssigned", dict(coordinator_id="k1", name="Synth", service_level="specialist")),
    ("WhatMattersRecorded", dict(text="My dog", language="nb")),
    ("GoalSet", dict(goal_id="g1", text="Walk", expressed_by="patient", target_date=date(2024, 9, 1))),
    ("GoalRevised", dict(goal_id="g1", text="Walk far", target_date=date(2024, 10, 1), reason="progress")),
    ("GoalSet", dict(goal_id="g2", text="Sleep", expressed_by="clinician")),
    ("GoalAchieved", dict(goal_id="g1")),
    ("GoalAbandoned", dict(goal_id="g2", reason="not relevant")),
    ("InformationGiven", dict(information_id="i1", topic="rights", form="oral", description="d",
                              adapted_how="Interpreter")),
    RELATIVE_P1,
    PROFESSIONAL_P2,
    ("RelativeConsentGiven", dict(relative_id="p1", given_how="oral", scope=["goals", "meetings"], valid_from=at(1),
                                  valid_until=at(100))),
    ("RelativeConsentWithdrawn", dict(relative_id="p1")),
    ("RelativeConsentGiven", dict(relative_id="p1", given_how="oral", scope=["what_matters"])),
    ("ParticipantRemoved", dict(participant_id="p1", reason="asked")),
    EVAL_E1,
    ("EvaluationHeld", dict(evaluation_id="e1", outcome="ok", patient_took_part=True, participants=["p2"])),
    REQUEST_M1,
    SCHEDULE_M1,
    MISS_M1,
    SCHEDULE_M1,
    ("TriangleMeetingHeld", dict(meeting_id="m1", outcome="agreed")),
    ("PlanClosed", dict(reason="goals_reached", note="done")),
]


def _popo_app() -> PlanApplication:
    return PlanApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})


def _build(app: PlanApplication, steps: list[Step], snapshot_after: int | None = None):
    """Apply and save the steps one by one; the state after each version, by version."""
    plan = open_plan(birth_date=date(2008, 2, 29), age_band=None)
    states = {}
    for index, (type_, fields_) in enumerate([(None, {}), *steps]):
        if type_ is not None:
            COMMANDS[type_](plan, **fields_, **meta(at(index)))
        app.save(plan)
        states[plan.version] = state(plan)
        if plan.version == snapshot_after:
            app.take_snapshot(plan.id)
    return plan, states


def test_full_history_covers_every_event_type():
    assert {type_ for type_, _ in FULL_HISTORY} == set(COMMANDS)


@pytest.mark.parametrize("snapshot_after", [None, 1, 10, len(FULL_HISTORY) + 1],
                         ids=["no-snapshot", "snapshot-at-1", "snapshot-midway", "snapshot-at-end"])
def test_stored_events_reconstruct_an_equal_plan(snapshot_after):
    app = _popo_app()
    plan, states = _build(app, FULL_HISTORY, snapshot_after)
    assert plan.version == len(FULL_HISTORY) + 1

    stored = list(app.events.get(plan.id))
    assert [type(e).__name__ for e in stored] == ["PlanOpened"] + [t for t, _ in FULL_HISTORY]
    assert [r.topic for r in app.events.recorder.select_events(plan.id)] == [type(e).TOPIC for e in stored]
    if snapshot_after is not None:
        (snapshot,) = app.snapshots.get(plan.id)
        assert snapshot.originator_version == snapshot_after

    copy_ = app.repository.get(plan.id)
    assert type(copy_) is IndividualPlan
    assert state(copy_) == state(plan) == states[plan.version]
    assert copy_.closed == {"reason": "goals_reached", "at": at(len(FULL_HISTORY))}
    assert copy_.consents["p1"].withdrawn_at == at(14)
    assert copy_.triangle_meetings["m1"].times_missed == 1
    assert copy_.age_band == "15-17"  # born 29 Feb 2008, opened 15 Jun 2024
    # Every earlier version, too (from the snapshot where one applies).
    for version, expected in states.items():
        assert state(app.repository.get(plan.id, version=version)) == expected, version


def test_snapshot_then_more_events_reconstructs_an_equal_plan():
    app = _popo_app()
    plan, _ = _build(app, FULL_HISTORY[:12])
    app.take_snapshot(plan.id)
    for index, (type_, fields_) in enumerate(FULL_HISTORY[12:]):
        COMMANDS[type_](plan, **fields_, **meta(at(50 + index)))
    app.save(plan)

    (snapshot,) = app.snapshots.get(plan.id)
    assert snapshot.originator_version == 13
    copy_ = app.repository.get(plan.id)
    assert state(copy_) == state(plan)
    assert copy_.version == len(FULL_HISTORY) + 1

    # And the reconstructed plan keeps obeying the rules.
    with pytest.raises(Conflict):
        copy_.assign_coordinator(coordinator_id="k9", **meta())
    assert copy_.pending_events == []


def test_reconstructed_plan_accepts_further_commands():
    app = _popo_app()
    plan, _ = _build(app, FULL_HISTORY[:5])
    app.take_snapshot(plan.id)
    copy_ = app.repository.get(plan.id)
    copy_.revise_goal(goal_id="g2", text="Sleep well", **meta())
    with pytest.raises(Conflict):
        copy_.set_goal(goal_id="g1", text="again", expressed_by="patient", **meta())
    app.save(copy_)
    again = app.repository.get(plan.id)
    assert again.goals["g2"].text == "Sleep well" and again.goals["g2"].revisions == 1
    assert state(again) == state(copy_)
