"""Property: for any plan history and any consent scope, no value outside the scope reaches a
relative by any endpoint (the plan now and as of a time, every timeline page, the access log,
the feed, a refused write), and what the scope covers does reach them.

Every value a plan holds is a marker naming its section (``goals~3f9a…``); the patient's
identity, date of birth and the recorders' ids are markers of the record, which no consent
covers. A response may show a marker only if the relative's scope covers its section.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plan_service.domain.values import CONSENT_SCOPES

RECORD_KEYS = {"patient_id", "birth_date", "age_band", "service_levels", "recorded_by"}


def ago(days: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()


def section_events(section: str, m: str) -> list[dict]:
    """Events of one section, every free value a marker of that section."""
    mk = f"{section}~{m}"
    if section == "what_matters":
        return [{"type": "WhatMattersRecorded", "text": f"{mk}-words"}]
    if section == "goals":
        return [{"type": "GoalSet", "goal_id": f"{mk}-g1", "text": f"{mk}-goal", "expressed_by": "patient"},
                {"type": "GoalRevised", "goal_id": f"{mk}-g1", "text": f"{mk}-revised", "reason": f"{mk}-why"},
                {"type": "GoalSet", "goal_id": f"{mk}-g2", "text": f"{mk}-goal2", "expressed_by": "clinician"},
                {"type": "GoalAbandoned", "goal_id": f"{mk}-g2", "reason": f"{mk}-dropped"},
                {"type": "GoalSet", "goal_id": f"{mk}-g3", "text": f"{mk}-goal3", "expressed_by": "patient"},
                {"type": "GoalAchieved", "goal_id": f"{mk}-g3"}]
    if section == "information":
        return [{"type": "InformationGiven", "information_id": f"{mk}-i1", "topic": "rights", "form": "oral",
                 "description": f"{mk}-told", "adapted_how": f"{mk}-adapted"}]
    if section == "participants":
        return [{"type": "CoordinatorAssigned", "coordinator_id": f"{mk}-koord", "name": f"{mk}-kname"},
                {"type": "ParticipantAdded", "participant_id": f"{mk}-pro", "kind": "professional",
                 "name": f"{mk}-proname", "service_level": "specialist"},
                {"type": "ParticipantAdded", "participant_id": f"{mk}-aunt", "kind": "relative",
                 "name": f"{mk}-auntname", "relation": f"{mk}-aunt-rel"},
                {"type": "ParticipantRemoved", "participant_id": f"{mk}-pro", "reason": f"{mk}-left"}]
    if section == "evaluations":
        return [{"type": "EvaluationScheduled", "evaluation_id": f"{mk}-e1", "scheduled_for": ago(20)},
                {"type": "EvaluationHeld", "evaluation_id": f"{mk}-e1", "outcome": f"{mk}-outcome",
                 "patient_took_part": True, "participants": [f"{mk}-attendee"]}]
    assert section == "meetings"
    return [{"type": "TriangleMeetingRequested", "meeting_id": f"{mk}-m1", "reason": f"{mk}-asked"},
            {"type": "TriangleMeetingScheduled", "meeting_id": f"{mk}-m1", "scheduled_for": ago(10),
             "place": f"{mk}-place", "transport": f"{mk}-bus", "companion": f"{mk}-brother",
             "no_show_strategy": f"{mk}-strategy"},
            {"type": "TriangleMeetingMissed", "meeting_id": f"{mk}-m1", "note": f"{mk}-absent"},
            {"type": "TriangleMeetingScheduled", "meeting_id": f"{mk}-m1", "scheduled_for": ago(5),
             "place": f"{mk}-place2", "no_show_strategy": f"{mk}-strategy2"},
            {"type": "TriangleMeetingHeld", "meeting_id": f"{mk}-m1", "outcome": f"{mk}-agreed"}]


@st.composite
def histories(draw):
    sections = draw(st.lists(st.sampled_from(CONSENT_SCOPES), unique=True))
    scope = draw(st.lists(st.sampled_from(CONSENT_SCOPES), min_size=1, unique=True))
    return {
        "sections": sections,
        "scope": scope,
        "consent_first": draw(st.booleans()),  # consent given before or after the content
        "closed": draw(st.booleans()),
        "end": draw(st.sampled_from(["current", "current", "withdrawn", "removed"])),
        "birth_year": draw(st.integers(1950, 2005)),
        "page": draw(st.integers(1, 4)),
    }


def markers_in(text: str) -> set[str]:
    import re

    return set(re.findall(r"(what_matters|goals|information|participants|evaluations|meetings|record)~", text))


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(h=histories())
def test_no_value_outside_the_consent_reaches_a_relative(client, token, h):
    m = uuid.uuid4().hex[:8]
    relative_id = f"participants~{m}-rel"  # the relative's own id is part of the participants section
    patient_id = f"record~{m}-patient"
    writer = token("integration", "epr-1", on_behalf_of=f"record~{m}-clin")
    opened = client.post("/v1/plans", headers=writer, json={
        "patient_id": patient_id, "service_level": "municipal", "occurred_at": ago(200),
        "birth_date": date(h["birth_year"], 3, 14).isoformat()})
    assert opened.status_code == 201, opened.json
    plan_id = opened.json["plan_id"]

    content = [e for s in h["sections"] for e in section_events(s, m)]
    consent = [{"type": "ParticipantAdded", "participant_id": relative_id, "kind": "relative"},
               {"type": "RelativeConsentGiven", "relative_id": relative_id, "scope": h["scope"],
                "given_how": "written", "valid_until": ago(-400)}]
    events = consent + content if h["consent_first"] else content + consent
    if h["closed"]:
        events.append({"type": "PlanClosed", "reason": "moved", "note": f"record~{m}-closing-note"})
    elif h["end"] == "withdrawn":
        events.append({"type": "RelativeConsentWithdrawn", "relative_id": relative_id})
    elif h["end"] == "removed":
        events.append({"type": "ParticipantRemoved", "participant_id": relative_id})
    response = client.post(f"/v1/plans/{plan_id}/events", headers=writer, json=events)
    assert response.status_code == 201, response.json
    access_ended = not h["closed"] and h["end"] != "current"

    relative = token("relative", relative_id)
    seen: list[str] = []
    plan = client.get(f"/v1/plans/{plan_id}", headers=relative)
    as_of = client.get(f"/v1/plans/{plan_id}", headers=relative, query_string={"as_of": ago(0)})
    seen += [plan.get_data(as_text=True), as_of.get_data(as_text=True)]
    before, pages = None, []
    while True:
        query = {"limit": h["page"], **({"before": before} if before else {})}
        page = client.get(f"/v1/plans/{plan_id}/timeline", headers=relative, query_string=query)
        seen.append(page.get_data(as_text=True))
        if page.status_code != 200:
            break
        pages.append(page.json)
        before = page.json["next_before"]
        if before is None:
            break
    for refused in (client.get(f"/v1/plans/{plan_id}/access-log", headers=relative),
                    client.get("/v1/feed", headers=relative),
                    client.post(f"/v1/plans/{plan_id}/events", headers=relative,
                                json={"type": "WhatMattersRecorded", "text": "not mine to write"})):
        assert refused.status_code == 403
        seen.append(refused.get_data(as_text=True))

    everything = "\n".join(seen)
    shown = markers_in(everything)
    allowed = set() if access_ended else set(h["scope"])
    assert shown <= allowed, f"outside the scope {sorted(allowed)}: {sorted(shown - allowed)}"
    if access_ended:
        assert plan.status_code == 403 and as_of.status_code == 403 and not pages
        return
    assert plan.status_code == 200 and as_of.status_code == 200
    # No record keys anywhere: not in the plan, not in any timeline entry or its details.
    for body in [plan.json, as_of.json, *pages]:
        assert not RECORD_KEYS & _keys(body), sorted(RECORD_KEYS & _keys(body))
    # the date of birth, not its year alone: "1950" can be the microseconds of a timestamp
    assert date(h["birth_year"], 3, 14).isoformat() not in json.dumps(plan.json)
    # What the scope covers does reach them (the projection is not simply empty).
    assert shown == set(h["scope"]) & set(h["sections"]) | ({"participants"} & set(h["scope"]))
    timeline = [item for p in pages for item in p["items"]]
    assert [i["version"] for i in timeline] == sorted((i["version"] for i in timeline), reverse=True)
    assert timeline[-1]["type"] == "PlanOpened" and timeline[-1]["details"] == {}


def test_the_property_runs_over_every_registered_event_type():
    """A new event type must be given values here (a section's events, the consent, opening
    and closing), or this fails: the projection is checked for every type there is."""
    from plan_service.domain.event_types import BY_NAME

    generated = {e["type"] for s in CONSENT_SCOPES for e in section_events(s, "x")}
    generated |= {"PlanOpened", "ParticipantAdded", "RelativeConsentGiven", "RelativeConsentWithdrawn",
                  "ParticipantRemoved", "PlanClosed"}
    assert generated == set(BY_NAME)


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()
