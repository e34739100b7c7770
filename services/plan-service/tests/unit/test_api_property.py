"""Property: whatever is posted to /v1/plans/{id}/events, the API answers sensibly and the
store holds exactly the events of the accepted requests, in order.

Random sequences of requests (one event or a list of events each) mix valid events of every
type, over tiny id pools so the plan's rules trigger often, with invalid ones (unknown type,
missing fields, wrong JSON types, too long strings, bad enum values and datetimes, future
``occurred_at``, non-object items, empty lists), stale or malformed If-Match headers and
Idempotency-Keys (new, reused for another body, replayed with the same body).

Checked after every request:
- never a 5xx; every non-2xx answer is application/problem+json whose ``status`` is the code;
  a 422 has an ``errors`` map;
- the status is the one the request deserves: 400/422 for a bad body or header, 201 with the
  first answer byte for byte for a replay, 422 for a key reused for another body, 412 for a
  stale If-Match, and otherwise what the pure domain (a shadow IndividualPlan given the same
  commands) decides: 201, or 409/422 naming the refused event's index.
Now and then (and at the end) the plan is read back over HTTP, at the version the model expects.
At the end:
- the stored history (after PlanOpened) is exactly the events of the accepted, non-replayed
  requests, in order, with the fields that were posted; the version is 1 + their number;
- the stored plan (cached, rebuilt through snapshots, and from its events alone) has the
  shadow's state.
"""

from __future__ import annotations

import copy
import json
import traceback
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.application import project_aggregate
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from plan_service.api import schemas
from plan_service.domain.errors import Conflict, DomainError
from plan_service.domain.event_types import COMMANDS
from plan_service.domain.plan import IndividualPlan
from plan_service.domain.values import (
    CLOSE_REASONS,
    CONSENT_SCOPES,
    EXPRESSED_BY,
    INFORMATION_FORMS,
    INFORMATION_TOPICS,
    PARTICIPANT_KINDS,
    SERVICE_LEVELS,
)

PROBLEM = "application/problem+json"
WRITER_ACTOR = {"role": "clinician", "id": "clin-7", "via": "epr-1"}  # the `writer` fixture
OPENED = dict(service_level="municipal", age_band="18-25")
OPENED_AT = "2020-01-01T00:00:00+00:00"  # the plan (and its shadow) opened then

# -- what a valid event looks like: field -> (kind, required, nullable) --------------------

POOLS = {
    "coordinator_id": ["k1", "k2", "p1"],  # p1 is a relative when added: not a coordinator
    "goal_id": ["g1", "g2"],
    "information_id": ["i1"],
    "participant_id": ["p1", "p2"],
    "relative_id": ["p1", "p2"],
    "evaluation_id": ["e1"],
    "meeting_id": ["m1"],
}


@dataclass(frozen=True)
class F:
    kind: str  # id | text | short | enum | date | datetime | scheduled | from | until | bool | scope | names | language
    required: bool = False
    nullable: bool = True
    choices: tuple[str, ...] = ()


def _id() -> F:
    return F("id", required=True, nullable=False)


def _enum(choices: tuple[str, ...], required: bool = True) -> F:
    return F("enum", required=required, nullable=not required, choices=choices)


REQ_TEXT = F("text", required=True, nullable=False)
REQ_SHORT = F("short", required=True, nullable=False)
OPT_TEXT = F("text")
OPT_SHORT = F("short")
OPT_DATE = F("date")
REQ_SCHEDULED = F("scheduled", required=True, nullable=False)

SPEC: dict[str, dict[str, F]] = {
    "CoordinatorAssigned": {"coordinator_id": _id(), "name": OPT_SHORT,
                            "service_level": _enum(SERVICE_LEVELS, required=False)},
    "WhatMattersRecorded": {"text": REQ_TEXT, "language": F("language", nullable=False)},
    "GoalSet": {"goal_id": _id(), "text": REQ_TEXT, "expressed_by": _enum(EXPRESSED_BY),
                "target_date": OPT_DATE},
    "GoalRevised": {"goal_id": _id(), "text": OPT_TEXT, "target_date": OPT_DATE, "reason": OPT_TEXT},
    "GoalAchieved": {"goal_id": _id()},
    "GoalAbandoned": {"goal_id": _id(), "reason": OPT_TEXT},
    "InformationGiven": {"information_id": _id(), "topic": _enum(INFORMATION_TOPICS),
                         "form": _enum(INFORMATION_FORMS), "description": REQ_TEXT,
                         "adapted_how": OPT_TEXT},
    "ParticipantAdded": {"participant_id": _id(), "kind": _enum(PARTICIPANT_KINDS), "name": OPT_SHORT,
                         "relation": OPT_SHORT, "service_level": _enum(SERVICE_LEVELS, required=False)},
    "ParticipantRemoved": {"participant_id": _id(), "reason": OPT_TEXT},
    "RelativeConsentGiven": {"relative_id": _id(), "scope": F("scope", required=True, nullable=False),
                             "valid_from": F("from"), "valid_until": F("until"),
                             "given_how": _enum(("oral", "written"), required=False)},
    "RelativeConsentWithdrawn": {"relative_id": _id()},
    "EvaluationScheduled": {"evaluation_id": _id(), "scheduled_for": REQ_SCHEDULED},
    "EvaluationHeld": {"evaluation_id": _id(), "outcome": REQ_TEXT,
                       "patient_took_part": F("bool", required=True, nullable=False),
                       "participants": F("names", nullable=False)},
    "TriangleMeetingRequested": {"meeting_id": _id(),
                                 "requested_by": _enum(SERVICE_LEVELS + ("patient",), required=False),
                                 "reason": OPT_TEXT},
    "TriangleMeetingScheduled": {"meeting_id": _id(), "scheduled_for": REQ_SCHEDULED, "place": REQ_SHORT,
                                 "transport": OPT_SHORT, "companion": OPT_SHORT, "no_show_strategy": REQ_TEXT},
    "TriangleMeetingHeld": {"meeting_id": _id(), "outcome": OPT_TEXT},
    "TriangleMeetingMissed": {"meeting_id": _id(), "note": OPT_TEXT},
    "PlanClosed": {"reason": _enum(CLOSE_REASONS), "note": OPT_TEXT},
}
OCCURRED_AT = F("datetime")

# Instants far from any limit, so the shadow and the server agree whatever the clock says.
# The plan opened 2020-01-01: 1950 is a valid time the plan's rules refuse (before opening).
PAST = ["2024-03-01T12:00:00+01:00", "2021-06-01T08:00:00Z", "2020-01-01T00:00:00Z", "1950-06-01T00:00:00+01:00"]
_NOW = datetime.now(timezone.utc)


def _ahead(days: int) -> str:
    return (_NOW + timedelta(days=days)).isoformat()


SCHEDULED = PAST + [_ahead(30), _ahead(365)]  # up to 5 years ahead
CONSENT_FROM = PAST + [_ahead(30)]  # up to a year ahead
CONSENT_UNTIL = [_ahead(30), _ahead(3 * 365)]  # in the future, up to 10 years ahead
BEFORE_1900 = ["1899-12-31T23:59:59Z", "1900-01-01T00:00:00+01:00", "0001-01-01T00:00:00+14:00",
               "0278-06-01T00:00:00Z"]

VALID_VALUES = {
    "text": st.sampled_from(["Walk to the shop", "Være med hunden", "line one\nline two\ttabbed", "x" * 4000]),
    "short": st.sampled_from(["Synth Name", "Skole", "y" * 200]),
    "date": st.sampled_from(["2025-01-01", "2024-02-29", "1950-01-01", _ahead(100)[:10]]),
    "datetime": st.sampled_from(PAST),
    "scheduled": st.sampled_from(SCHEDULED),
    "from": st.sampled_from(CONSENT_FROM),
    "until": st.sampled_from(CONSENT_UNTIL),
    "bool": st.booleans(),
    "scope": st.lists(st.sampled_from(CONSENT_SCOPES), min_size=1, max_size=len(CONSENT_SCOPES)),
    "names": st.lists(st.sampled_from(["p1", "p2", "k1", "Synth Person"]), max_size=3),
    "language": st.sampled_from(["nb", "nn", "se", "en-GB"]),
}

# Values each kind must refuse (422), besides a missing required field and an unknown field.
WRONG_TYPES = [7, 1.5, True, ["x"], {"a": 1}]
BAD_DATETIMES = ["2024-02-30T10:00:00Z", "2024-03-01T12:00:00", "yesterday", "", 1700000000, [], {}, *BEFORE_1900]
CONTROL = ["a\x00b", "bell\x07", "del\x7f", "c1\x85"]
BAD_VALUES: dict[str, list[Any]] = {
    "id": ["", " ", "z" * 65, "two\nlines", "tab\tid"] + CONTROL + WRONG_TYPES,
    "text": ["", " \n\t ", "t" * 4001, "t" * 5000] + CONTROL + WRONG_TYPES,
    "short": ["", "   ", "s" * 201, "two\nlines"] + CONTROL + WRONG_TYPES,
    "enum": ["bogus", "MUNICIPAL", ""] + WRONG_TYPES,
    "date": ["2024-02-30", "1.2.2024", "", 20240101, ["2024-01-01"], {}, "0001-01-01", "1899-12-31",
             _ahead(6 * 366)[:10]],
    "datetime": BAD_DATETIMES,
    "scheduled": BAD_DATETIMES + [_ahead(6 * 366), "9999-12-31T23:59:59-14:00"],
    "from": BAD_DATETIMES + [_ahead(400)],
    "until": BAD_DATETIMES + ["2021-06-01T08:00:00Z", _ahead(11 * 366)],
    "bool": ["maybe", 2, [], {}, "x" * 4001, "yes", "true", "1", "on", "off", 1, 0],
    "scope": [[], ["bogus"], ["goals", "medication"], ["goals"] * (len(CONSENT_SCOPES) + 1), "goals",
              {"goals": True}, 7, [7], [None]],
    "names": [[""], ["n" * 201], ["x"] * 51, [7], "p1", {"p1": 1}],
    "language": ["NB!", "", "norwegian", 7, ["nb"]],
}
FUTURE = ["2999-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00", "2100-01-01T00:00:00+14:00"]
BAD_TYPES = ["Bogus", "PlanOpened", "goalset", "", 5, None, ["GoalSet"], {"t": 1}]
NOT_OBJECTS = [5, "GoalSet", None, [], [{"type": "GoalAchieved", "goal_id": "g1"}], True]
EVENT_TYPES = list(SPEC)
assert sorted(EVENT_TYPES) == sorted(COMMANDS) == sorted(schemas.EVENT_SCHEMAS)


@st.composite
def valid_event(draw: st.DrawFn, type_: str | None = None, **fixed: Any) -> dict[str, Any]:
    """A schema-valid event, of a random type unless given, with some fields ``fixed``."""
    if type_ is None:
        # PlanClosed ends the plan; keep it rarer than the rest.
        type_ = draw(st.sampled_from([t for t in EVENT_TYPES if t != "PlanClosed"] * 2 + ["PlanClosed"]))
    event: dict[str, Any] = {"type": type_, **fixed}
    for name, f in {**SPEC[type_], "occurred_at": OCCURRED_AT}.items():
        if name in fixed:
            continue
        if f.kind == "id":
            strategy = st.sampled_from(POOLS[name])
        elif f.kind == "enum":
            strategy = st.sampled_from(f.choices)
        elif name == "occurred_at":
            strategy = st.sampled_from(PAST)
        else:
            strategy = VALID_VALUES[f.kind]
        if f.required:
            event[name] = draw(strategy)
            continue
        presence = draw(st.sampled_from(["absent", "value", "value"] + (["null"] if f.nullable else [])))
        if presence == "value":
            event[name] = draw(strategy)
        elif presence == "null":
            event[name] = None
    return event


LIMITS = {"id": 64, "short": 200, "text": 4000}


@st.composite
def invalid_event(draw: st.DrawFn) -> Any:
    """An item the schema must refuse."""
    how = draw(st.sampled_from(["field"] * 3 + ["too_long"] * 2 + ["future"] * 2 + [
        "missing", "unknown_field", "type", "not_object"]))
    if how == "not_object":
        return draw(st.sampled_from(NOT_OBJECTS))
    if how == "too_long":  # one character (or list item) over the limit, or far over it
        kind = draw(st.sampled_from([*LIMITS, "names"]))
        type_ = draw(st.sampled_from([t for t in EVENT_TYPES
                                      if any(f.kind == kind for f in SPEC[t].values())]))
        event = draw(valid_event(type_))
        name = draw(st.sampled_from([n for n, f in SPEC[type_].items() if f.kind == kind]))
        if kind == "names":
            event[name] = draw(st.sampled_from([["x"] * 51, ["n" * 201]]))
        else:
            length = LIMITS[kind] + draw(st.sampled_from([1, 1, 500]))
            event[name] = draw(st.sampled_from(["x", "é", "\u2603"])) * length
        return event
    event = draw(valid_event())
    fields_ = SPEC[event["type"]]
    if how == "type":
        bad = draw(st.sampled_from(BAD_TYPES + ["<absent>"]))
        if bad == "<absent>":
            del event["type"]
        else:
            event["type"] = bad
    elif how == "missing":
        del event[draw(st.sampled_from([n for n, f in fields_.items() if f.required]))]
    elif how == "unknown_field":
        event[draw(st.sampled_from(["unexpected", "patient_id", "version", "Goal_id"]))] = draw(
            st.sampled_from(["x", 1, None]))
    elif how == "future":
        event["occurred_at"] = draw(st.sampled_from(FUTURE))
    else:
        name = draw(st.sampled_from([*fields_, "occurred_at"]))
        f = fields_.get(name, OCCURRED_AT)
        candidates = list(BAD_VALUES[f.kind])
        if not f.nullable:
            candidates.append(None)
        event[name] = draw(st.sampled_from(candidates))
    return event


def fitting(plan: IndividualPlan) -> list[tuple[str, dict[str, Any]]]:
    """(type, ids) of events whose ids suit the plan as it is (other fields may still not).

    Events that move something along come first: the generator leans to the first choices.
    """
    moves: list[tuple[str, dict[str, Any]]] = []
    starts: list[tuple[str, dict[str, Any]]] = []
    for meeting_id in POOLS["meeting_id"]:
        meeting = plan.triangle_meetings.get(meeting_id)
        if meeting is not None and meeting.status == "scheduled":
            moves += [("TriangleMeetingMissed", {"meeting_id": meeting_id}),
                      ("TriangleMeetingHeld", {"meeting_id": meeting_id})]
        if meeting is not None and meeting.status in ("requested", "missed"):
            moves.append(("TriangleMeetingScheduled", {"meeting_id": meeting_id}))
        if meeting is None:
            starts += [("TriangleMeetingRequested", {"meeting_id": meeting_id}),
                       ("TriangleMeetingScheduled", {"meeting_id": meeting_id})]
    for evaluation_id in POOLS["evaluation_id"]:
        evaluation = plan.evaluations.get(evaluation_id)
        if evaluation is None:
            starts.append(("EvaluationScheduled", {"evaluation_id": evaluation_id}))
        elif evaluation.status == "scheduled":
            moves += [("EvaluationHeld", {"evaluation_id": evaluation_id}),
                      ("EvaluationScheduled", {"evaluation_id": evaluation_id})]
    moves += [("RelativeConsentWithdrawn", {"relative_id": r}) for r, c in plan.consents.items()
              if c.withdrawn_at is None]
    for participant_id in POOLS["participant_id"]:
        participant = plan.participants.get(participant_id)
        if participant is None:
            kind = "relative" if participant_id == "p1" else "professional"
            starts.append(("ParticipantAdded", {"participant_id": participant_id, "kind": kind}))
        else:
            if participant.kind == "relative":
                moves.append(("RelativeConsentGiven", {"relative_id": participant_id}))
            moves.append(("ParticipantRemoved", {"participant_id": participant_id}))
    for goal_id in POOLS["goal_id"]:
        goal = plan.goals.get(goal_id)
        if goal is None:
            starts.append(("GoalSet", {"goal_id": goal_id}))
        elif goal.status == "active":
            moves += [(t, {"goal_id": goal_id}) for t in ("GoalRevised", "GoalAchieved", "GoalAbandoned")]
    starts += [("InformationGiven", {"information_id": i}) for i in POOLS["information_id"]
               if i not in plan.information]
    return moves + starts + [("WhatMattersRecorded", {}), ("CoordinatorAssigned", {})]


# Lists that fit together on a plan without their ids: several events accepted at once, and
# the state the other events need.
RECIPES: list[list[tuple[str, dict[str, Any]]]] = [
    [("ParticipantAdded", dict(participant_id="p1", kind="relative")),
     ("RelativeConsentGiven", dict(relative_id="p1", valid_from=None, valid_until=None, given_how="oral"))],
    [("GoalSet", dict(goal_id="g1")), ("GoalRevised", dict(goal_id="g1", text="Walk further"))],
    [("GoalSet", dict(goal_id="g2")), ("GoalAchieved", dict(goal_id="g2"))],
    [("EvaluationScheduled", dict(evaluation_id="e1")), ("EvaluationHeld", dict(evaluation_id="e1"))],
    [("TriangleMeetingRequested", dict(meeting_id="m1")),
     ("TriangleMeetingScheduled", dict(meeting_id="m1", no_show_strategy="Call home")),
     ("TriangleMeetingMissed", dict(meeting_id="m1"))],
    [("TriangleMeetingScheduled", dict(meeting_id="m1", no_show_strategy="Call home")),
     ("TriangleMeetingHeld", dict(meeting_id="m1"))],
    [("RelativeConsentWithdrawn", dict(relative_id="p1")), ("ParticipantRemoved", dict(participant_id="p1"))],
    [("InformationGiven", dict(information_id="i1")), ("WhatMattersRecorded", dict(text="Music"))],
]


@dataclass
class Body:
    raw: bytes
    valid: bool  # the schema accepts it
    is_list: bool = False
    invalid_items: frozenset[int] = frozenset()
    is_json: bool = True

    def items(self) -> list[dict[str, Any]]:
        posted = json.loads(self.raw)
        return posted if self.is_list else [posted]


@st.composite
def request_body(draw: st.DrawFn, plan: IndividualPlan) -> Body:
    shape = draw(st.sampled_from(["single"] * 12 + ["list"] * 12 + ["recipe"] * 6 + ["odd"] * 2 + ["close"]))
    if shape == "close":  # after this, the plan takes nothing more
        return Body(json.dumps(draw(valid_event("PlanClosed"))).encode(), valid=True)
    if shape == "recipe":
        recipe = draw(st.sampled_from(RECIPES))
        items = [draw(valid_event(type_, **fixed)) for type_, fixed in recipe]
        return Body(json.dumps(items).encode(), valid=True, is_list=True)
    if shape == "odd":
        odd = draw(st.sampled_from([[], "an event", 42, None, {}, b'{"type": "GoalSet", ', b"", b"\xff"]))
        if isinstance(odd, bytes):
            return Body(odd, valid=False, is_json=False)
        return Body(json.dumps(odd).encode(), valid=False, is_list=isinstance(odd, list))
    fit = fitting(plan)
    count = 1 if shape == "single" else draw(st.integers(1, 4))
    items, invalid = [], set()
    for index in range(count):
        what = draw(st.sampled_from(["fitting"] * 6 + ["random"] * 2 + ["invalid"] * 2))
        if what == "fitting":
            type_, ids = draw(st.sampled_from(fit))
            items.append(draw(valid_event(type_, **ids)))
        elif what == "random":
            items.append(draw(valid_event()))
        else:
            # A list posted as "one event" would be a list body: keep single bodies objects.
            bad = invalid_event() if shape == "list" else invalid_event().filter(lambda x: not isinstance(x, list))
            items.append(draw(bad))
            invalid.add(index)
    body = items[0] if shape == "single" else items
    return Body(json.dumps(body).encode(), valid=not invalid, is_list=shape == "list",
                invalid_items=frozenset(invalid))


DEFAULTS = {"language": "nb", "participants": []}


def convert(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A valid posted event -> (type, the fields its command gets), by the contract above."""
    fields_: dict[str, Any] = {}
    for name, f in {**SPEC[item["type"]], "occurred_at": OCCURRED_AT}.items():
        value = item.get(name, DEFAULTS.get(name))
        if value is not None and f.kind in ("datetime", "scheduled", "from", "until"):
            value = datetime.fromisoformat(value)
        elif value is not None and f.kind == "date":
            value = date.fromisoformat(value)
        fields_[name] = value
    return item["type"], fields_


# -- the shadow: the pure domain, given the same commands ---------------------------------

def expected_record(type_: str, fields_: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What the stored event must hold, from the fields the command got."""
    record = {k: v for k, v in fields_.items() if k in SPEC[type_]}
    if type_ == "RelativeConsentGiven":
        record["scope"] = sorted(set(record["scope"]))
        if record["valid_from"] is None:  # defaults to occurred_at
            del record["valid_from"]
    if fields_.get("occurred_at") is not None:
        record["occurred_at"] = fields_["occurred_at"]
    return type_, record


def stored_record(event: IndividualPlan.Event, like: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return type(event).__name__, {k: getattr(event, k, "<missing>") for k in like}


def shape(plan: IndividualPlan) -> dict[str, Any]:
    """The state, without the instants the server picks itself (default occurred_at)."""
    return {
        "version": plan.version,
        "service_levels": plan.service_levels,
        "coordinator": plan.coordinator,
        "what_matters": [(w.text, w.language) for w in plan.what_matters],
        "goals": {k: (g.text, g.expressed_by, g.target_date, g.status, g.revisions, g.closed_reason)
                  for k, g in plan.goals.items()},
        "information": {k: (i.topic, i.form, i.description, i.adapted_how) for k, i in plan.information.items()},
        "participants": {k: (p.kind, p.name, p.relation, p.service_level) for k, p in plan.participants.items()},
        "consents": {k: (c.scope, c.valid_until, c.withdrawn_at is None) for k, c in plan.consents.items()},
        "evaluations": {k: (e.scheduled_for, e.status, e.participants, e.outcome, e.patient_took_part)
                        for k, e in plan.evaluations.items()},
        "meetings": {k: (m.status, m.requested_by, m.scheduled_for, m.place, m.transport, m.companion,
                         m.no_show_strategy, m.times_missed, m.outcome)
                     for k, m in plan.triangle_meetings.items()},
        "closed": plan.closed and plan.closed["reason"],
    }


def decide(shadow: IndividualPlan, items: list[tuple[str, dict[str, Any]]]):
    """(plan after the items, None) when the domain accepts them all; else (None, (index, error))."""
    trial = copy.deepcopy(shadow)
    for index, (type_, fields_) in enumerate(items):
        fields_ = dict(fields_)
        meta = {"recorded_by": WRITER_ACTOR,
                "occurred_at": fields_.pop("occurred_at", None) or datetime.now(timezone.utc)}
        try:
            COMMANDS[type_](trial, **fields_, **meta)
        except DomainError as e:
            return None, (index, e)
    trial.collect_events()
    return trial, None


# -- the property -------------------------------------------------------------------------


@pytest.fixture
def unexpected_errors(app) -> list[str]:
    """Tracebacks of errors that became a 500 (the app's own handler logs only their type)."""
    caught: list[str] = []
    handler = app.error_handler_spec[None][None][Exception]

    def keep_traceback(error: Exception):
        caught.append(traceback.format_exc())
        return handler(error)

    app.register_error_handler(Exception, keep_traceback)
    return caught


def _assert_problem(response, context: str) -> dict[str, Any]:
    assert response.mimetype == PROBLEM, context
    problem = response.get_json(force=True)
    assert isinstance(problem, dict) and problem["status"] == response.status_code, context
    assert isinstance(problem.get("title"), str) and isinstance(problem.get("type"), str), context
    if response.status_code == 422:
        assert isinstance(problem.get("errors"), dict) and problem["errors"], context
    return problem


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_posted_events_are_stored_exactly_when_accepted(client, plans, writer, open_plan,
                                                        unexpected_errors, data):
    patient_id = f"pat-synth-{uuid.uuid4().hex[:8]}"
    plan_id = open_plan(patient_id=patient_id, occurred_at=OPENED_AT)
    plan_uuid = uuid.UUID(plan_id)
    url = f"/v1/plans/{plan_id}/events"
    nonce = uuid.uuid4().hex[:8]  # keys of one example never meet another example's
    shadow = IndividualPlan.open(**OPENED, patient_id=patient_id, recorded_by=WRITER_ACTOR,
                                 occurred_at=datetime.fromisoformat(OPENED_AT))
    shadow.collect_events()
    version = 1
    accepted: list[tuple[str, dict[str, Any]]] = []
    sent: list[tuple[Body, str | None, bool]] = []  # what was sent, with its key and if the key is well-formed
    answered: dict[str, tuple[bytes, bytes]] = {}  # key -> (body, the 201 answer it got)

    for step in range(data.draw(st.integers(1, 12), label="requests")):
        if data.draw(st.integers(0, 7), label="read first?") == 0:
            # Reads share the cached plan with writes: reading must neither change it nor lag.
            read = client.get(f"/v1/plans/{plan_id}", headers=writer)
            assert read.status_code == 200 and read.json["version"] == version, read.data
            assert {g["goal_id"]: g["status"] for g in read.json["goals"]} == {
                k: g.status for k, g in shadow.goals.items()}
            assert {m["meeting_id"]: (m["status"], m["times_missed"]) for m in read.json["triangle_meetings"]} == {
                k: (m.status, m.times_missed) for k, m in shadow.triangle_meetings.items()}
            assert sorted(p["participant_id"] for p in read.json["participants"]) == sorted(shadow.participants)
        earlier = [entry for entry in sent if entry[1] is not None]
        if earlier and data.draw(st.integers(0, 3), label="replay?") == 0:
            body, key, key_ok = data.draw(st.sampled_from(earlier), label="replay of")
        else:
            body = data.draw(request_body(shadow), label="body")
            key_choice = data.draw(st.sampled_from(["none"] * 6 + ["ka", "kb", "kc", "bad"]), label="key")
            key_ok = key_choice != "bad"
            if key_choice == "none":
                key = None
            elif key_choice == "bad":
                key = data.draw(st.sampled_from(["has space", "", "k" * 256, "tab\tkey"]), label="bad key")
            else:
                key = f"{nonce}-{key_choice}"
            sent.append((body, key, key_ok))
        if_match_choice = data.draw(st.sampled_from(
            ["none"] * 10 + ["right", "right-weak", "right-bare", "any", "stale", "bad"]), label="If-Match")
        headers = dict(writer)
        if if_match_choice == "right":
            headers["If-Match"] = f'"{version}"'
        elif if_match_choice == "right-weak":
            headers["If-Match"] = f'W/"{version}"'
        elif if_match_choice == "right-bare":
            headers["If-Match"] = str(version)
        elif if_match_choice == "stale":
            headers["If-Match"] = f'"{data.draw(st.sampled_from([version - 1, version + 1, 0, 99]))}"'
        elif if_match_choice == "any":  # RFC 9110: whatever the current version is
            headers["If-Match"] = "*"
        elif if_match_choice == "bad":
            headers["If-Match"] = data.draw(st.sampled_from(["abc", '"v1"', "**", "", "1,2"]))
        if key is not None:
            headers["Idempotency-Key"] = key

        response = client.post(url, data=body.raw, content_type="application/json", headers=headers)
        status = response.status_code
        context = (f"step {step}: {status} {response.data[:2000]!r}\nrequest {body.raw[:2000]!r}\n"
                   f"headers If-Match={headers.get('If-Match')!r} Idempotency-Key={key!r}")
        assert status < 500, context + "\n" + "\n".join(unexpected_errors)
        event(f"status {status}")
        if status >= 300:
            problem = _assert_problem(response, context)

        # The answer the request deserves.
        if not body.is_json:
            assert status == 400, context
            continue
        if not body.valid:
            assert status == 422 and problem["type"].endswith("/validation"), context
            if body.invalid_items:
                expected_keys = ({str(i) for i in body.invalid_items} if body.is_list else None)
                if expected_keys is not None:
                    assert set(problem["errors"]) == expected_keys, context
            continue
        items = [convert(item) for item in body.items()]  # what the plan's commands must get
        assert schemas.load_events(json.loads(body.raw)) == items
        if if_match_choice == "bad":
            assert status == 422 and "If-Match" in problem["errors"], context
            continue
        if key is not None and not key_ok:
            assert status == 422 and "Idempotency-Key" in problem["errors"], context
            continue
        if key in answered:
            first_body, first_answer = answered[key]
            if first_body == body.raw:
                assert status == 201, context
                assert response.data == first_answer, context
                assert response.headers.get("Idempotent-Replayed") == "true", context
            else:
                assert status == 422, context
                assert problem["errors"] == {"Idempotency-Key": ["already used for a different request"]}
            continue
        assert "Idempotent-Replayed" not in response.headers, context
        if if_match_choice == "stale":
            assert status == 412 and problem["current_version"] == version, context
            assert response.headers["ETag"] == f'"{version}"', context
            continue

        after, refused = decide(shadow, items)
        if refused is not None:
            index, error = refused
            assert status == (409 if isinstance(error, Conflict) else 422), context + f"\nshadow: {error!r}"
            assert problem["type"].endswith(("/plan-rule", "/plan-state")) and problem["index"] == index, context
            field_errors = problem["errors"][str(index)] if body.is_list else problem["errors"]
            assert field_errors == {error.field or "_schema": [error.message]}, context
            continue
        assert status == 201 and response.mimetype == "application/json", context
        answer = response.get_json()
        assert answer["plan_id"] == plan_id and answer["version"] == version + len(items), context
        assert [(e["version"], e["type"]) for e in answer["events"]] == [
            (version + 1 + i, type_) for i, (type_, _) in enumerate(items)], context
        assert response.headers["ETag"] == f'"{answer["version"]}"', context
        version += len(items)
        shadow = after
        accepted.extend(expected_record(type_, fields_) for type_, fields_ in items)
        if key is not None:
            answered[key] = (body.raw, response.data)

    # The store holds exactly the accepted events, in order.
    stored = list(plans.events.get(plan_uuid))
    assert type(stored[0]) is IndividualPlan.PlanOpened and stored[0].originator_version == 1
    assert [e.originator_version for e in stored] == list(range(1, len(stored) + 1))
    assert [stored_record(e, like) for e, (_, like) in zip(stored[1:], accepted, strict=False)] == accepted
    assert len(stored) - 1 == len(accepted)
    assert all(e.recorded_by == WRITER_ACTOR for e in stored[1:])
    assert version == 1 + len(accepted)

    # The plan read back (cached; rebuilt through snapshots; from the events alone; over HTTP)
    # is the shadow's plan.
    assert shape(plans.repository.get(plan_uuid)) == shape(shadow)
    assert shape(plans.repository.get(plan_uuid, version=version)) == shape(shadow)
    assert shape(project_aggregate(None, stored)) == shape(shadow)
    read = client.get(f"/v1/plans/{plan_id}", headers=writer)
    assert read.status_code == 200 and read.json["version"] == version
    assert read.headers["ETag"] == f'"{version}"'
    timeline = client.get(f"/v1/plans/{plan_id}/timeline?limit=200", headers=writer)
    assert timeline.status_code == 200
    assert [i["version"] for i in timeline.json["items"]] == list(range(version, 0, -1))
    assert not unexpected_errors, "\n".join(unexpected_errors)
    event(f"accepted events: {min(len(accepted) // 5 * 5, 20)}+")
