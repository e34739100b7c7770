"""Each rule as a function of the plan's view and the time (table-driven, moving clock)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from notification_service.domain import rules
from notification_service.domain.rules import Settings, desired_prompts, next_check
from notification_service.domain.view import OutOfOrder, PlanView, apply, is_redelivery

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
S = Settings()
DAY = timedelta(days=1)


def view(**kw) -> PlanView:
    base = dict(plan_id="p", version=1, opened_at=T0, age_band="26-64", service_levels=["municipal"],
                coordinator_id="k1")
    base.update(kw)
    return PlanView(**base)


def keys(prompts) -> list[tuple[str, str]]:
    return [(p.rule, p.subject) for p in prompts]


# -- evaluations ------------------------------------------------------------------------

EVAL_AT = T0 + 30 * DAY


@pytest.mark.parametrize("now, held, expected", [
    (EVAL_AT - 2 * DAY, None, []),                              # not yet its day
    (EVAL_AT - timedelta(hours=8), None, [("evaluation_due", "e1")]),  # its day (Oslo) has begun
    (EVAL_AT + DAY, None, [("evaluation_due", "e1")]),           # due, not held
    (EVAL_AT + DAY, EVAL_AT, []),                                # held: nothing to do
])
def test_evaluation_due(now, held, expected):
    v = view(evaluations={"e1": {"scheduled_for": EVAL_AT, "held_at": held}})
    prompts = rules.evaluation_due(v, now, S)
    assert keys(prompts) == expected
    if prompts:
        assert prompts[0].due_at == EVAL_AT and prompts[0].escalate_at == EVAL_AT + S.evaluation_grace


@pytest.mark.parametrize("now, last, pending, expected", [
    (T0 + 179 * DAY, None, False, []),
    (T0 + 180 * DAY, None, False, [("evaluation_suggested", "since 2026-03-02")]),
    (T0 + 200 * DAY, T0 + 100 * DAY, False, []),                 # evaluated 100 days in
    (T0 + 281 * DAY, T0 + 100 * DAY, False, [("evaluation_suggested", "since 2026-06-10")]),
    (T0 + 200 * DAY, None, True, []),                            # one is scheduled already
])
def test_evaluation_suggested_after_the_interval(now, last, pending, expected):
    evaluations = {"e9": {"scheduled_for": now + DAY, "held_at": None}} if pending else {}
    v = view(last_evaluation_at=last, evaluations=evaluations)
    assert keys(rules.evaluation_suggested(v, now, S)) == expected


def test_evaluation_interval_is_configurable():
    v = view()
    assert rules.evaluation_suggested(v, T0 + 31 * DAY, Settings(evaluation_interval=30 * DAY))
    assert not rules.evaluation_suggested(v, T0 + 31 * DAY, S)


# -- triangle meetings ------------------------------------------------------------------

BOTH = ["municipal", "specialist"]


@pytest.mark.parametrize("age_band, birth_date, levels, meetings, expected", [
    ("18-25", None, BOTH, {}, True),
    ("15-17", None, BOTH, {}, True),
    ("26-64", None, BOTH, {}, False),
    ("0-14", None, BOTH, {}, False),
    ("18-25", None, ["municipal"], {}, False),
    (None, date(2011, 3, 1), BOTH, {}, True),     # turned 15 the day before T0
    (None, date(2011, 3, 3), BOTH, {}, False),    # 14 until tomorrow
    (None, date(2000, 3, 3), BOTH, {}, True),     # 25 until tomorrow
    (None, date(2000, 3, 1), BOTH, {}, False),    # 26
    ("18-25", None, BOTH, {"m1": {"status": "requested"}}, True),
    ("18-25", None, BOTH, {"m1": {"status": "scheduled"}}, False),
    ("18-25", None, BOTH, {"m1": {"status": "held"}}, False),
    ("18-25", None, BOTH, {"m1": {"status": "missed"}}, False),
])
def test_triangle_meeting_suggested(age_band, birth_date, levels, meetings, expected):
    v = view(age_band=age_band, birth_date=birth_date, service_levels=levels,
             both_levels_since=T0 if len(levels) == 2 else None, meetings=meetings)
    assert bool(rules.triangle_meeting_suggested(v, T0, S)) is expected


def missed_view(times: int = 1, status: str = "missed") -> PlanView:
    return view(meetings={"m1": {"status": status, "scheduled_for": T0, "place": "Kafé",
                                  "transport": "buss", "companion": "bror",
                                  "no_show_strategy": "Ring samme dag", "times_missed": times,
                                  "missed_at": T0 + timedelta(hours=3)}})


def test_no_show_follow_up_carries_the_strategy_and_is_due_the_same_day():
    [prompt] = rules.no_show_follow_up(missed_view(), T0, S)
    assert prompt.rule == "no_show_follow_up" and prompt.subject == "m1#1"
    assert prompt.details["no_show_strategy"] == "Ring samme dag"
    local_due = prompt.due_at.astimezone(S.tz)
    assert local_due.date() == (T0 + timedelta(hours=3)).astimezone(S.tz).date()
    assert (local_due.hour, local_due.minute) == (23, 59)
    assert prompt.escalate_at == prompt.due_at


@pytest.mark.parametrize("status, expected", [("missed", 1), ("scheduled", 0), ("held", 0)])
def test_no_show_follow_up_only_while_missed(status, expected):
    assert len(rules.no_show_follow_up(missed_view(status=status), T0, S)) == expected


def test_each_miss_is_its_own_follow_up():
    assert keys(rules.no_show_follow_up(missed_view(times=2), T0, S)) == [("no_show_follow_up", "m1#2")]


# -- information and consent ------------------------------------------------------------

@pytest.mark.parametrize("infos, expected", [
    ({"i1": ("rights", "oral", 0)}, ["i1"]),
    ({"i1": ("rights", "written", 0)}, []),
    ({"i1": ("rights", "both", 0)}, []),
    ({"i1": ("rights", "oral", 0), "i2": ("rights", "written", 1)}, []),
    ({"i1": ("rights", "oral", 1), "i2": ("rights", "written", 0)}, ["i1"]),   # written came first
    ({"i1": ("rights", "oral", 0), "i2": ("choices", "written", 1)}, ["i1"]),  # another topic
])
def test_written_information_due(infos, expected):
    v = view(information={k: {"topic": t, "form": f, "given_at": T0 + d * DAY} for k, (t, f, d) in infos.items()})
    prompts = rules.written_information_due(v, T0 + 5 * DAY, S)
    assert [p.subject for p in prompts] == expected
    assert all(p.due_at == T0 + S.written_information_after for p in prompts if p.subject == "i1"
               and infos["i1"][2] == 0)


UNTIL = T0 + 60 * DAY


@pytest.mark.parametrize("now, withdrawn, until, expected", [
    (UNTIL - 15 * DAY, False, UNTIL, 0),
    (UNTIL - 14 * DAY, False, UNTIL, 1),
    (UNTIL - DAY, False, UNTIL, 1),
    (UNTIL, False, UNTIL, 0),          # expired
    (UNTIL - DAY, True, UNTIL, 0),     # withdrawn
    (UNTIL - DAY, False, None, 0),     # open-ended
])
def test_consent_expiring(now, withdrawn, until, expected):
    v = view(consents={"r1": {"valid_until": until, "withdrawn": withdrawn}})
    assert len(rules.consent_expiring(v, now, S)) == expected


# -- the whole set, the clock, the view ---------------------------------------------------

def test_a_closed_plan_needs_no_prompts():
    v = missed_view()
    assert desired_prompts(v, T0, S)
    v.closed = True
    assert desired_prompts(v, T0, S) == [] and next_check(v, T0, S) is None


def test_next_check_is_the_next_moment_the_answer_can_change():
    v = view(evaluations={"e1": {"scheduled_for": EVAL_AT, "held_at": None}},
             consents={"r1": {"valid_until": UNTIL, "withdrawn": False}})
    first = next_check(v, T0, S)
    assert first == EVAL_AT.astimezone(S.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    assert next_check(v, first, S) == UNTIL - S.consent_warning
    # moving the clock across each checkpoint changes the answer
    assert not desired_prompts(v, first - timedelta(seconds=1), S)
    assert keys(desired_prompts(v, first, S)) == [("evaluation_due", "e1")]


def test_view_round_trips_through_json():
    v = missed_view()
    v.birth_date = date(2008, 5, 1)
    v.consents = {"r1": {"valid_until": UNTIL, "withdrawn": False}}
    assert PlanView.from_json(v.to_json()) == v


def test_view_refuses_gaps_and_spots_redeliveries(stream):
    s = stream()
    v = PlanView(str(s.plan_id))
    opened = s.event("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None)
    apply(v, opened)
    assert is_redelivery(v, opened)
    s.event("GoalAchieved", goal_id="g1")  # version 2 never arrives
    with pytest.raises(OutOfOrder):
        apply(v, s.event("GoalAchieved", goal_id="g1"))


def test_view_follows_a_plan(stream):
    s = stream()
    v = PlanView(str(s.plan_id))
    for e in [
        s.event("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None),
        s.event("CoordinatorAssigned", coordinator_id="k1", service_level=None),
        s.event("ParticipantAdded", participant_id="pro", kind="professional", service_level="specialist"),
        s.event("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=T0, place="Kafé", transport=None,
                companion=None, no_show_strategy="Ring"),
        s.event("TriangleMeetingMissed", meeting_id="m1", at=T0 + timedelta(hours=1)),
    ]:
        apply(v, e)
    assert v.coordinator_id == "k1" and v.service_levels == ["municipal", "specialist"]
    assert v.both_levels_since == T0
    assert v.meetings["m1"]["status"] == "missed" and v.meetings["m1"]["times_missed"] == 1
    assert keys(desired_prompts(v, T0 + timedelta(hours=2), S)) == [("no_show_follow_up", "m1#1")]
