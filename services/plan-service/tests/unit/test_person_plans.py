"""PersonPlans: the index of the plans a person was added to as a relative or assigned to as
coordinator (the pages list a relative's and a coordinator's plans from it)."""

from __future__ import annotations

import copy
import uuid

from eventsourcing.utils import resolve_topic

from plan_service.application import integration
from plan_service.domain.person_plans import AS_COORDINATOR, AS_RELATIVE, PersonPlans


def post(client, writer, plan_id, events):
    return client.post(f"/v1/plans/{plan_id}/events", json=events, headers=writer)


RELATIVE = {"type": "ParticipantAdded", "participant_id": "rel-x", "kind": "relative", "name": "Rita"}


def test_a_relative_added_and_a_coordinator_assigned_are_indexed(client, writer, open_plan, plans):
    plan_id = open_plan()
    assert plans.plans_of("rel-x") == ([], []) and plans.plans_of("k-x") == ([], [])
    response = post(client, writer, plan_id, [
        RELATIVE,
        {"type": "CoordinatorAssigned", "coordinator_id": "k-x"},
        {"type": "ParticipantAdded", "participant_id": "pro-x", "kind": "professional", "service_level": "specialist"},
    ])
    assert response.status_code == 201, response.json
    assert plans.plans_of("rel-x") == ([uuid.UUID(plan_id)], [])
    assert plans.plans_of("k-x") == ([], [uuid.UUID(plan_id)])
    assert plans.plans_of("pro-x") == ([], [])  # professionals are not indexed (no page lists their plans)


def test_plans_are_listed_in_the_order_the_person_joined_them_once_each(client, writer, open_plan, plans):
    first, second = open_plan(), open_plan()
    for plan_id in (second, first):
        assert post(client, writer, plan_id, [RELATIVE, {"type": "CoordinatorAssigned", "coordinator_id": "k-x"}]).status_code == 201
    # assigned again, removed and added again: still listed once
    assert post(client, writer, first, [{"type": "CoordinatorAssigned", "coordinator_id": "k-x", "name": "K"},
                                         {"type": "ParticipantRemoved", "participant_id": "rel-x"},
                                         RELATIVE]).status_code == 201
    assert plans.plans_of("rel-x") == ([uuid.UUID(second), uuid.UUID(first)], [])
    assert plans.plans_of("k-x")[1] == [uuid.UUID(second), uuid.UUID(first)]


def test_a_replaced_coordinator_leaves_the_list_a_removed_relative_stays(client, writer, open_plan, plans):
    plan_id = uuid.UUID(open_plan())
    post(client, writer, plan_id, [RELATIVE, {"type": "CoordinatorAssigned", "coordinator_id": "k-old"}])
    post(client, writer, plan_id, [{"type": "CoordinatorAssigned", "coordinator_id": "k-new"},
                                   {"type": "ParticipantRemoved", "participant_id": "rel-x"}])
    assert plans.plans_of("k-old") == ([], [])
    assert plans.plans_of("k-new") == ([], [plan_id])
    # the relative is told that access has ended, so the plan stays in their list
    assert plans.plans_of("rel-x") == ([plan_id], [])
    # handed over and back within one request: the last coordinator has it
    post(client, writer, plan_id, [{"type": "CoordinatorAssigned", "coordinator_id": "k-old"},
                                   {"type": "CoordinatorAssigned", "coordinator_id": "k-new"}])
    assert plans.plans_of("k-old") == ([], []) and plans.plans_of("k-new") == ([], [plan_id])


def test_a_refused_request_indexes_nothing(client, writer, open_plan, plans):
    plan_id = open_plan()
    response = post(client, writer, plan_id, [RELATIVE, {"type": "GoalAchieved", "goal_id": "nope"}])
    assert response.status_code == 422
    assert plans.plans_of("rel-x") == ([], [])
    # an idempotent replay stores nothing twice
    headers = {**writer, "Idempotency-Key": "add-rita"}
    for _ in range(2):
        assert client.post(f"/v1/plans/{plan_id}/events", json=RELATIVE, headers=headers).status_code == 201
    index = plans.repository.get(PersonPlans.id_for("rel-x"))
    assert index.version == 2  # created, joined once


def test_the_index_is_saved_with_the_plan_in_one_write(client, writer, open_plan, plans):
    plan_id = uuid.UUID(open_plan())
    saved = []
    original = plans.committer._save

    def spy(*objs):
        saved.append(sorted(type(o).__name__ for o in objs))
        return original(*objs)

    plans.committer._save = spy
    try:
        assert post(client, writer, plan_id, RELATIVE).status_code == 201
    finally:
        plans.committer._save = original
    assert saved == [["IndividualPlan", "PersonPlans"]]


def test_another_plans_write_to_the_same_index_is_not_a_conflict_of_this_plan(client, writer, open_plan, plans):
    """Two plans add the same relative at the same moment: both are stored (the second is
    decided again on the index as it then is), and each plan gets its event once."""
    first, second = uuid.UUID(open_plan()), uuid.UUID(open_plan())
    assert post(client, writer, first, RELATIVE).status_code == 201
    stale = copy.deepcopy(plans.repository.get(PersonPlans.id_for("rel-x"), version=1))  # before the first joined
    original = plans._person_plans
    calls = []

    def first_call_stale(person_id):
        calls.append(person_id)
        return stale if len(calls) == 1 else original(person_id)

    plans._person_plans = first_call_stale
    try:
        assert post(client, writer, second, RELATIVE).status_code == 201
    finally:
        plans._person_plans = original
    assert len(calls) == 2
    assert plans.plans_of("rel-x") == ([first, second], [])
    assert [type(e).__name__ for e in plans.plan_events(second)].count("ParticipantAdded") == 1


def test_a_conflict_on_the_plan_itself_is_still_a_concurrent_write(client, writer, open_plan, plans):
    plan_id = uuid.UUID(open_plan())
    read = copy.deepcopy(plans.get_plan(plan_id))
    assert post(client, writer, plan_id, {"type": "WhatMattersRecorded", "text": "first"}).status_code == 201
    from plan_service.application.plans import ConcurrentWrite

    try:
        plans.record(plan_id, [("ParticipantAdded", {"participant_id": "rel-x", "kind": "relative"})],
                     actor={"role": "clinician", "id": "clin-7"}, plan=read)
    except ConcurrentWrite:
        pass
    else:
        raise AssertionError("a write on a stale plan must not be stored")
    assert plans.plans_of("rel-x") == ([], [])


def test_the_index_has_explicit_topics_and_never_leaves_the_service(client, writer, open_plan, plans):
    classes = [PersonPlans, PersonPlans.Created, PersonPlans.PlanJoined, PersonPlans.PlanLeft]
    for cls in classes:
        assert "TOPIC" in vars(cls) and cls.TOPIC.startswith("careplan.PersonPlans")
        assert resolve_topic(cls.TOPIC) is cls
    assert not set(integration.PLAN_EVENT_TOPICS) & {cls.TOPIC for cls in classes}
    plan_id = open_plan()
    post(client, writer, plan_id, [RELATIVE, {"type": "CoordinatorAssigned", "coordinator_id": "k-x"}])
    feed = client.get("/v1/feed?after=0", headers=writer).json
    assert {item["event_type"] for item in feed["items"]} == {"PlanOpened", "ParticipantAdded", "CoordinatorAssigned"}


def test_the_index_object():
    index = PersonPlans.start("someone")
    assert index.id == PersonPlans.id_for("someone") != PersonPlans.id_for("someone else")
    plan = uuid.uuid4()
    assert index.joined(plan, AS_RELATIVE) and not index.joined(plan, AS_RELATIVE)
    assert index.as_relative() == [plan] and index.as_coordinator() == []
    assert not index.left(plan, AS_COORDINATOR) and index.left(plan, AS_RELATIVE)
    assert index.as_relative() == []
    try:
        index.joined(plan, "cousin")
    except ValueError:
        pass
    else:
        raise AssertionError("an unknown capacity is refused")
