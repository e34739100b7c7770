"""FHIR R4 ingest (issue 12, item 2; contract .wip/fhir-mapping.md, "Ingest"): posted Goal,
Consent, Communication and Appointment resources (alone or in a transaction Bundle) -> the plan
events POST /v1/plans/{id}/events takes, or FhirInvalid with OperationOutcome issues at FHIRPaths.

Every list of events made here is loaded by schemas.load_events (the JSON API's own loader);
the round trip at the end records them in a real plan (SQLite) and exports it again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from careplan_shared.auth import Principal
from plan_service.adapters.fhir import systems as s
from plan_service.adapters.fhir.ingest import FhirInvalid, events_from_fhir, operation_outcome
from plan_service.api import schemas

NOW = datetime.now(timezone.utc).replace(microsecond=0)
PLAN_ID = str(uuid.UUID("00000000-0000-4000-8000-00000000f12e"))
PATIENT = "pat-synth-fhir-9"
PATIENT_REF = {"reference": s.ref(s.resource_id(PLAN_ID, "patient"))}
RELATIVE = "rel-synth-1"


def at(days: float) -> str:
    """An ISO time ``days`` from now (negative: in the past)."""
    return (NOW + timedelta(days=days)).isoformat()


def plan(**sections: Any) -> dict[str, Any]:
    """A plan as GET /v1/plans/{id} gives it to staff (schemas.PlanOut's JSON form), opened 200 days ago."""
    out: dict[str, Any] = {
        "id": PLAN_ID, "version": 3, "patient_id": PATIENT, "opened_at": at(-200), "service_levels": ["municipal"],
        "coordinator": None, "what_matters": [], "goals": [], "information_given": [],
        "participants": [{"participant_id": RELATIVE, "kind": "relative", "name": "Mor", "relation": "Mor",
                          "service_level": None, "added_at": at(-150)}],
        "relative_consents": [], "evaluations": [], "triangle_meetings": [], "closed": None}
    out.update(sections)
    return out


def ingest(body: Any, current: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """events_from_fhir, checked: whatever it gives, the JSON API's loader takes."""
    items = events_from_fhir(body, current or plan(), now=NOW, load=schemas.load_events)
    if items:
        schemas.load_events([{"type": t, **f} for t, f in items])
    return [(t, f) for t, f in items]


def issues_of(body: Any, current: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with pytest.raises(FhirInvalid) as raised:
        events_from_fhir(body, current or plan(), now=NOW, load=schemas.load_events)
    issues = raised.value.issues
    OperationOutcome.model_validate(operation_outcome(issues))
    return issues


def where(issues: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(i["code"], (i.get("expression") or [None])[0]) for i in issues]


# -- resources -----------------------------------------------------------------------------------


def goal(goal_id: str = "g1", status: str = "active", **extra: Any) -> dict[str, Any]:
    out = {"resourceType": "Goal", "identifier": [{"system": s.SID_GOAL, "value": goal_id}],
           "lifecycleStatus": status, "description": {"text": "Komme i deltidsjobb"},
           "subject": PATIENT_REF, "expressedBy": PATIENT_REF}
    out.update(extra)
    return out


def communication(info_id: str = "i1", modes: tuple[str, ...] = ("VERBAL",), **extra: Any) -> dict[str, Any]:
    out = {"resourceType": "Communication", "identifier": [{"system": s.SID_INFORMATION, "value": info_id}],
           "status": "completed", "subject": PATIENT_REF, "recipient": [PATIENT_REF],
           "topic": {"coding": [s.coding(s.CS_INFORMATION_TOPIC, "rights", s.INFORMATION_TOPIC)]},
           "medium": [{"coding": [{"system": s.CS_PARTICIPATION_MODE, "code": m}]} for m in modes],
           "payload": [{"contentString": "Retten til individuell plan"}], "sent": at(-3)}
    out.update(extra)
    return out


def consent(status: str = "active", actor: dict[str, Any] | None = None, scope: tuple[str, ...] = ("meetings", "goals"),
            period: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    out = {"resourceType": "Consent", "status": status,
           "scope": {"coding": [{"system": s.CS_CONSENT_SCOPE_HL7, "code": "patient-privacy"}]},
           "category": [{"coding": [{"system": s.LOINC, "code": "59284-0"}]}],
           "patient": PATIENT_REF, "dateTime": at(-2),
           "extension": [{"url": s.EXT_CONSENT_GIVEN_HOW, "valueCode": "oral"}],
           "provision": {"type": "permit",
                         "actor": [{"role": {"coding": [{"system": s.CS_ROLE_CODE, "code": "FAMMEMB"}]},
                                    "reference": actor or {"identifier": {"system": s.SID_PARTICIPANT,
                                                                          "value": RELATIVE}}}],
                         "code": [{"coding": [s.coding(s.CS_CONSENT_SCOPE, c)]} for c in scope]}}
    if period:
        out["provision"]["period"] = period  # type: ignore[index]
    out.update(extra)
    return out


def appointment(kind: str, local_id: str, status: str, start: str | None = None, **extra: Any) -> dict[str, Any]:
    system = s.SID_EVALUATION if kind == s.APPOINTMENT_EVALUATION else s.SID_MEETING
    out: dict[str, Any] = {
        "resourceType": "Appointment", "identifier": [{"system": system, "value": local_id}], "status": status,
        "serviceType": [{"coding": [s.coding(s.CS_APPOINTMENT_KIND, kind, s.APPOINTMENT_KIND)]}],
        "participant": [{"actor": PATIENT_REF, "status": "accepted"}]}
    if start:
        out["start"] = start
        out["end"] = (datetime.fromisoformat(start) + timedelta(hours=1)).isoformat()
    out.update(extra)
    return out


def meeting(meeting_id: str = "m1", status: str = "booked", start: str | None = None, place: str = "Kafé ved NAV",
            **extra: Any) -> dict[str, Any]:
    out = appointment(s.APPOINTMENT_TRIANGLE_MEETING, meeting_id, status, start or at(-10), **extra)
    out["participant"].append({"actor": {"type": "Location", "display": place}, "status": "accepted"})
    out.setdefault("extension", [
        {"url": s.EXT_MEETING_TRANSPORT, "valueString": "Bussbillett"},
        {"url": s.EXT_MEETING_COMPANION, "valueString": "Storebror"},
        {"url": s.EXT_MEETING_NO_SHOW_STRATEGY, "valueString": "Ring samme dag"}])
    return out


SCHEDULED = {"place": "Kafé ved NAV", "transport": "Bussbillett", "companion": "Storebror",
             "no_show_strategy": "Ring samme dag"}


def transaction(*resources: dict[str, Any], full_urls: tuple[str | None, ...] = ()) -> dict[str, Any]:
    entries = []
    for n, r in enumerate(resources):
        entry: dict[str, Any] = {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
        if n < len(full_urls) and full_urls[n]:
            entry["fullUrl"] = full_urls[n]
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def stored_goal(status: str = "active", **extra: Any) -> dict[str, Any]:
    return {"goal_id": "g1", "text": "Komme i deltidsjobb", "expressed_by": "patient", "target_date": None,
            "status": status, "set_at": at(-20), "revisions": 0, **extra}


# -- Goal ------------------------------------------------------------------------------------------


def test_a_new_goal_is_set_with_its_values():
    day = (NOW - timedelta(days=30)).date().isoformat()
    due = (NOW + timedelta(days=90)).date().isoformat()
    assert ingest(goal(startDate=day, target=[{"dueDate": due}])) == [
        ("GoalSet", {"goal_id": "g1", "text": "Komme i deltidsjobb", "expressed_by": "patient", "target_date": due,
                     "occurred_at": f"{day}T00:00:00+00:00"})]
    # no expressedBy, or a Practitioner's: the clinician's goal; startDate today: set now
    clinician = goal(expressedBy={"reference": "Practitioner/p1"}, startDate=NOW.date().isoformat())
    assert ingest(clinician) == [("GoalSet", {"goal_id": "g1", "text": "Komme i deltidsjobb", "expressed_by": "clinician"})]
    no_one = goal()
    del no_one["expressedBy"]
    assert ingest(no_one)[0][1]["expressed_by"] == "clinician"


def test_a_new_goal_posted_closed_is_set_then_closed():
    assert [t for t, _ in ingest(goal(status="completed"))] == ["GoalSet", "GoalAchieved"]
    achieved = {"coding": [{"system": s.CS_GOAL_ACHIEVEMENT, "code": "achieved"}]}
    assert [t for t, _ in ingest(goal(achievementStatus=achieved))] == ["GoalSet", "GoalAchieved"]
    assert ingest(goal(status="cancelled", statusReason="Vil vente"))[1] == (
        "GoalAbandoned", {"goal_id": "g1", "reason": "Vil vente"})


def test_an_existing_goal_gets_the_events_that_bring_it_to_the_posted_state():
    current = plan(goals=[stored_goal()])
    assert ingest(goal(), current) == []  # as it is
    assert ingest(goal(description={"text": "Jobb i butikk"}), current) == [
        ("GoalRevised", {"goal_id": "g1", "text": "Jobb i butikk"})]
    due = (NOW + timedelta(days=60)).date().isoformat()
    assert ingest(goal(status="cancelled", target=[{"dueDate": due}]), current) == [
        ("GoalRevised", {"goal_id": "g1", "target_date": due}), ("GoalAbandoned", {"goal_id": "g1"})]
    assert ingest(goal(status="completed"), plan(goals=[stored_goal("achieved")])) == []
    # a closed goal is not reopened; who expressed it and its target date stay
    assert where(issues_of(goal(), plan(goals=[stored_goal("achieved")]))) == [
        ("not-supported", "Goal.lifecycleStatus")]
    clinician = goal()
    del clinician["expressedBy"]
    assert where(issues_of(clinician, current)) == [("not-supported", "Goal.expressedBy")]
    assert where(issues_of(goal(), plan(goals=[stored_goal(target_date=due)]))) == [("not-supported", "Goal.target")]


# -- Communication ----------------------------------------------------------------------------------


@pytest.mark.parametrize("modes, form", [(("VERBAL",), "oral"), (("WRITTEN",), "written"),
                                         (("VERBAL", "WRITTEN"), "both")])
def test_a_communication_is_information_given(modes, form):
    assert ingest(communication(modes=modes, note=[{"text": "Enkelt språk"}])) == [
        ("InformationGiven", {"information_id": "i1", "topic": "rights", "form": form,
                              "description": "Retten til individuell plan", "adapted_how": "Enkelt språk",
                              "occurred_at": at(-3)})]


def test_information_already_recorded_as_posted_gives_nothing():
    stored = {"information_id": "i1", "topic": "rights", "form": "oral", "description": "Retten til individuell plan",
              "adapted_how": None, "given_at": at(-3)}
    assert ingest(communication(), plan(information_given=[stored])) == []
    # other content for the same id: the plan answers (it is not changed)
    assert [t for t, _ in ingest(communication(modes=("WRITTEN",)), plan(information_given=[stored]))] == [
        "InformationGiven"]


# -- Consent -----------------------------------------------------------------------------------------


def test_a_consent_is_given_for_the_relative_it_names():
    period = {"start": at(-1), "end": at(365)}
    expected = ("RelativeConsentGiven", {"relative_id": RELATIVE, "scope": ["goals", "meetings"], "valid_from": at(-1),
                                         "valid_until": at(365), "given_how": "oral", "occurred_at": at(-2)})
    assert ingest(consent(period=period)) == [expected]
    # the relative as the plan's own RelatedPerson (as exported), by urn:uuid or RelatedPerson/<id>
    own = s.resource_id(PLAN_ID, f"related-person/{RELATIVE}")
    for reference in (s.ref(own), f"RelatedPerson/{own}"):
        assert ingest(consent(actor={"reference": reference}, period=period)) == [expected]


def test_an_existing_consent_moves_to_the_posted_state():
    stored = {"relative_id": RELATIVE, "scope": ["goals", "meetings"], "valid_from": at(-2), "valid_until": None,
              "given_at": at(-2), "withdrawn_at": None, "given_how": "oral"}
    current = plan(relative_consents=[stored])
    assert ingest(consent(), current) == []
    assert ingest(consent(scope=("goals",)), current)[0][1]["scope"] == ["goals"]  # given again: replaces it
    assert ingest(consent(status="inactive"), current) == [("RelativeConsentWithdrawn", {"relative_id": RELATIVE})]
    ended = {"start": at(-2), "end": at(-1)}  # withdrawn when it says it ended
    assert ingest(consent(status="inactive", period=ended), current) == [
        ("RelativeConsentWithdrawn", {"relative_id": RELATIVE, "occurred_at": at(-1)})]
    assert ingest(consent(status="inactive"), plan(relative_consents=[{**stored, "withdrawn_at": at(-1)}])) == []
    assert ingest(consent(status="inactive"), plan(relative_consents=[{**stored, "valid_until": at(-1)}])) == []
    # one the patient gave in the service ("digital"): fine as it is, but not given through the EPR
    digital = consent(extension=[{"url": s.EXT_CONSENT_GIVEN_HOW, "valueCode": "digital"}])
    assert ingest(digital, plan(relative_consents=[{**stored, "given_how": "digital"}])) == []
    assert where(issues_of(digital)) == [("value", "Consent.extension[0].valueCode")]


def test_a_consent_the_plan_never_had_posted_as_ended_is_given_then_withdrawn():
    assert ingest(consent(status="inactive", period={"start": at(-2), "end": at(-1)})) == [
        ("RelativeConsentGiven", {"relative_id": RELATIVE, "scope": ["goals", "meetings"], "valid_from": at(-2),
                                  "given_how": "oral", "occurred_at": at(-2)}),
        ("RelativeConsentWithdrawn", {"relative_id": RELATIVE, "occurred_at": at(-1)})]


# -- Appointment ----------------------------------------------------------------------------------------


def test_an_evaluation_is_scheduled_and_held():
    evaluation = appointment(s.APPOINTMENT_EVALUATION, "e1", "booked", at(20))
    assert ingest(evaluation) == [("EvaluationScheduled", {"evaluation_id": "e1", "scheduled_for": at(20)})]
    stored = {"evaluation_id": "e1", "scheduled_for": at(20), "status": "scheduled", "held_at": None,
              "participants": [], "outcome": None, "patient_took_part": None}
    assert ingest(evaluation, plan(evaluations=[stored])) == []
    assert ingest(appointment(s.APPOINTMENT_EVALUATION, "e1", "booked", at(21)), plan(evaluations=[stored])) == [
        ("EvaluationScheduled", {"evaluation_id": "e1", "scheduled_for": at(21)})]
    held = appointment(s.APPOINTMENT_EVALUATION, "e2", "fulfilled", at(-5), comment="Planen videreføres")
    held["participant"][0]["status"] = "declined"
    held["participant"].append({"actor": {"display": "Fastlege Eva"}, "status": "accepted"})
    assert ingest(held) == [
        ("EvaluationScheduled", {"evaluation_id": "e2", "scheduled_for": at(-5)}),
        ("EvaluationHeld", {"evaluation_id": "e2", "outcome": "Planen videreføres", "patient_took_part": False,
                            "participants": ["Fastlege Eva"]})]
    was_held = {**stored, "evaluation_id": "e2", "scheduled_for": at(-5), "status": "held"}
    assert ingest(held, plan(evaluations=[was_held])) == []


def test_a_triangle_meeting_is_requested_scheduled_held_or_missed():
    requested_by = {"url": s.EXT_MEETING_REQUESTED_BY, "valueCode": "specialist"}
    proposed = appointment(s.APPOINTMENT_TRIANGLE_MEETING, "m1", "proposed", extension=[requested_by],
                           reasonCode=[{"text": "Faller ut av behandling"}])
    assert ingest(proposed) == [("TriangleMeetingRequested", {"meeting_id": "m1", "requested_by": "specialist",
                                                              "reason": "Faller ut av behandling"})]
    requested = {"meeting_id": "m1", "status": "requested", "requested_by": "specialist", "scheduled_for": None,
                 "place": None, "transport": None, "companion": None, "no_show_strategy": None, "times_missed": 0,
                 "outcome": None}
    assert ingest(proposed, plan(triangle_meetings=[requested])) == []
    booked = meeting(start=at(-10))
    assert ingest(booked, plan(triangle_meetings=[requested])) == [
        ("TriangleMeetingScheduled", {"meeting_id": "m1", "scheduled_for": at(-10), **SCHEDULED})]
    scheduled = {**requested, "status": "scheduled", "scheduled_for": at(-10), **SCHEDULED}
    assert ingest(booked, plan(triangle_meetings=[scheduled])) == []
    assert ingest(meeting(status="fulfilled", comment="Avtalt oppfølging"), plan(triangle_meetings=[scheduled])) == [
        ("TriangleMeetingHeld", {"meeting_id": "m1", "outcome": "Avtalt oppfølging"})]
    assert ingest(meeting(status="noshow", comment="Kom ikke"), plan(triangle_meetings=[scheduled])) == [
        ("TriangleMeetingMissed", {"meeting_id": "m1", "note": "Kom ikke"})]
    missed = {**scheduled, "status": "missed", "times_missed": 1}
    assert ingest(meeting(status="noshow"), plan(triangle_meetings=[missed])) == []
    assert ingest(meeting(start=at(-1), place="Hjemme"), plan(triangle_meetings=[missed])) == [
        ("TriangleMeetingScheduled", {"meeting_id": "m1", "scheduled_for": at(-1), **SCHEDULED, "place": "Hjemme"})]
    # a new meeting posted as held: scheduled, then held
    assert [t for t, _ in ingest(meeting(status="fulfilled"))] == ["TriangleMeetingScheduled", "TriangleMeetingHeld"]


# -- Bundle -------------------------------------------------------------------------------------------------


def test_a_transaction_gives_its_entries_events_in_order_the_relatives_first():
    person = {"resourceType": "RelatedPerson", "identifier": [{"system": s.SID_PARTICIPANT, "value": "rel-new"}],
              "active": True, "patient": PATIENT_REF, "name": [{"text": "Far"}], "relationship": [{"text": "Far"}]}
    bundle = transaction(goal(), consent(actor={"reference": "urn:uuid:rp-1"}), communication(),
                         appointment(s.APPOINTMENT_EVALUATION, "e1", "booked", at(20)), person,
                         full_urls=(None, None, None, None, "urn:uuid:rp-1"))
    items = events_from_fhir(bundle, plan(), now=NOW)
    assert [t for t, _ in items] == ["ParticipantAdded", "GoalSet", "RelativeConsentGiven", "InformationGiven",
                                     "EvaluationScheduled"]
    assert items[0][1] == {"participant_id": "rel-new", "kind": "relative", "name": "Far", "relation": "Far"}
    assert items[2][1]["relative_id"] == "rel-new"
    assert [item.origin for item in items] == [  # type: ignore[attr-defined]
        "Bundle.entry[4].resource", *(f"Bundle.entry[{n}].resource" for n in range(4))]
    assert events_from_fhir(goal(), plan(), now=NOW)[0].origin == "Goal"  # type: ignore[attr-defined]
    schemas.load_events([{"type": t, **f} for t, f in items])
    assert ingest({"resourceType": "Bundle", "type": "transaction"}) == []


# -- invalid ------------------------------------------------------------------------------------------------


def _without(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != key}


INVALID = {
    "goal without identifier": (_without(goal(), "identifier"), [("required", "Goal.identifier")]),
    "goal with a bogus lifecycleStatus": (goal(status="bogus"), [("value", "Goal.lifecycleStatus")]),
    "goal proposed": (goal(status="proposed"), [("not-supported", "Goal.lifecycleStatus")]),
    "goal with an unknown element": (goal(colour="blue"), [("structure", "Goal.colour")]),
    "goal without description": (_without(goal(), "description"), [("required", "Goal.description")]),
    "goal of another patient": (goal(subject={"identifier": {"system": s.SID_PATIENT, "value": "pat-other"}}),
                                [("value", "Goal.subject.identifier.value")]),
    "goal text too long": (goal(description={"text": "x" * 4001}), [("value", "Goal.description.text")]),
    "goal starting in the future": (goal(startDate=(NOW + timedelta(days=3)).date().isoformat()),
                                    [("value", "Goal.startDate")]),
    "a patient": ({"resourceType": "Patient"}, [("not-supported", "Patient")]),
    "not a resource": ([goal()], [("structure", None)]),
    "a bundle of no FHIR type": ({**transaction(goal()), "type": "pile"}, [("value", "Bundle.type")]),
    "a collection bundle": ({**transaction(goal()), "type": "collection"}, [("not-supported", "Bundle.type")]),
    "an invalid second entry": (transaction(goal(), _without(goal("g2"), "description")),
                                [("required", "Bundle.entry[1].resource.description")]),
    "a bogus status in entry 2": (transaction(goal(), goal("g2", "bogus")),
                                  [("value", "Bundle.entry[1].resource.lifecycleStatus")]),
    "a patient entry": (transaction(goal(), {"resourceType": "Patient"}),
                        [("not-supported", "Bundle.entry[1].resource")]),
    "a delete": ({"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": goal(), "request": {"method": "DELETE", "url": "Goal/1"}}]},
                 [("not-supported", "Bundle.entry[0].request.method")]),
    "the same goal twice": (transaction(goal(), goal()), [("value", "Bundle.entry[1].resource.identifier")]),
    "unknown topic": (communication(topic={"coding": [{"system": s.CS_INFORMATION_TOPIC, "code": "gossip"}]}),
                      [("value", "Communication.topic.coding[0].code")]),
    "electronic medium": (communication(modes=("ELECTRONIC",)), [("not-supported", "Communication.medium[0].coding[0].code")]),
    "a day without a time": (communication(sent=NOW.date().isoformat()), [("value", "Communication.sent")]),
    "information sent in the future": (communication(sent=at(2)), [("value", "Communication.sent")]),
    "unknown consent scope": (consent(scope=("goals", "diary")), [("value", "Consent.provision.code[1].coding[0].code")]),
    "consent for nobody named": (consent(actor={"reference": "urn:uuid:unknown"}),
                                 [("required", "Consent.provision.actor[0].reference")]),
    "consent draft": (consent(status="draft"), [("not-supported", "Consent.status")]),
    "consent ending in the past is given": (consent(period={"end": at(-1)}), [("value", "Consent.provision.period.end")]),
    "a cancelled meeting": (meeting(status="cancelled"), [("not-supported", "Appointment.status")]),
    "a meeting nowhere": ({**meeting(), "participant": [{"actor": PATIENT_REF, "status": "accepted"}]},
                          [("required", "Appointment.participant")]),
    "a meeting without a no-show plan": (meeting(extension=[]), [("required", "Appointment.extension")]),
    "a held evaluation without outcome": (appointment(s.APPOINTMENT_EVALUATION, "e1", "fulfilled", at(-1)),
                                          [("required", "Appointment.comment")]),
    "an appointment of no kind": (_without(appointment(s.APPOINTMENT_EVALUATION, "e1", "booked", at(1)), "serviceType"),
                                  [("required", "Appointment.serviceType")]),
}


@pytest.mark.parametrize("body, expected", INVALID.values(), ids=INVALID.keys())
def test_invalid_content_is_refused_with_its_paths(body, expected):
    assert where(issues_of(body)) == expected


def test_all_or_nothing_and_every_issue_at_once():
    issues = issues_of(transaction(goal(), goal("g2", "bogus"), {"resourceType": "Patient"}, communication("i9", ())))
    assert where(issues) == [
        ("not-supported", "Bundle.entry[2].resource"),
        ("value", "Bundle.entry[1].resource.lifecycleStatus"),
        ("required", "Bundle.entry[3].resource.medium"),
    ]


def test_issues_and_their_outcome_never_repeat_posted_text():
    secret = "Hemmelig helseopplysning"
    with pytest.raises(FhirInvalid) as raised:
        events_from_fhir(transaction(goal(description={"text": secret + "x" * 4000}), goal("g2", f"{secret} x"),
                                     communication(status=secret)), plan(), now=NOW, load=schemas.load_events)
    outcome = operation_outcome(raised.value.issues)
    assert secret not in str(outcome) and secret not in str(raised.value)
    assert outcome["resourceType"] == "OperationOutcome"
    assert all(i["severity"] == "error" and i["diagnostics"] for i in outcome["issue"])


def test_an_operation_outcome_is_valid_r4_even_without_issues():
    for issues in ([], issues_of(goal(status="bogus"))):
        outcome = operation_outcome(issues)
        assert OperationOutcome.model_validate(outcome).issue
        assert outcome["resourceType"] == "OperationOutcome"


# -- round trip: FHIR -> events -> a real plan -> export -> the same values ------------------------------------


@pytest.fixture
def plans(tmp_path):
    from plan_service.bootstrap import bootstrap
    from plan_service.config import Config

    services = bootstrap(Config(data_dir=tmp_path), with_relay=False)  # SQLite in tmp_path
    yield services.plans
    services.plans.close()


def test_round_trip_keeps_every_value_and_posting_the_export_back_changes_nothing(plans):
    from plan_service.adapters.fhir.export import export_bundle
    from plan_service.application import timeline

    epr = Principal("epr-1", "integration", on_behalf_of="clin-7").actor  # a consent needs the clinician
    opened = plans.open_plan(patient_id=PATIENT, service_level="municipal", age_band="18-25", actor=epr,
                             occurred_at=datetime.fromisoformat(at(-200)))
    plan_id = opened.plan_id

    def current() -> dict[str, Any]:
        return schemas.PlanOut().dump(plans.get_plan(plan_id))

    def record(body: dict[str, Any]) -> None:
        body = _swap(body, PATIENT_REF, patient)  # this plan's Patient
        items = events_from_fhir(body, current(), now=datetime.now(timezone.utc))
        plans.record(plan_id, schemas.load_events([{"type": t, **f} for t, f in items]), actor=epr)

    own = s.ref(s.resource_id(str(plan_id), "patient"))
    patient = {"reference": own}
    start_day = (NOW - timedelta(days=30)).date().isoformat()
    due = (NOW + timedelta(days=90)).date().isoformat()
    person = {"resourceType": "RelatedPerson", "identifier": [{"system": s.SID_PARTICIPANT, "value": RELATIVE}],
              "active": True, "patient": patient, "name": [{"text": "Randi"}], "relationship": [{"text": "Mor"}]}
    posted = [
        person,
        goal("g-job", startDate=start_day, target=[{"dueDate": due}]),
        _without(goal("g-move", "cancelled", statusReason="Vil bo hjemme"), "expressedBy"),
        communication("i-rights", ("VERBAL", "WRITTEN"), note=[{"text": "Med tolk"}]),
        consent(actor={"reference": "urn:uuid:rp-randi"}, period={"start": at(-1), "end": at(300)}),
        appointment(s.APPOINTMENT_EVALUATION, "e-1", "booked", at(-20)),
        appointment(s.APPOINTMENT_TRIANGLE_MEETING, "m-1", "proposed",
                    extension=[{"url": s.EXT_MEETING_REQUESTED_BY, "valueCode": "patient"}]),
    ]
    record(transaction(*posted, full_urls=("urn:uuid:rp-randi",)))
    # later: the evaluation held without the patient, the meeting scheduled and held, the goal achieved
    held = appointment(s.APPOINTMENT_EVALUATION, "e-1", "fulfilled", at(-20), comment="Planen videreføres")
    held["participant"][0]["status"] = "declined"
    held["participant"].append({"actor": {"display": "Fastlege Eva"}, "status": "accepted"})
    requested_by = {"url": s.EXT_MEETING_REQUESTED_BY, "valueCode": "patient"}
    booked = meeting("m-1", start=at(-5))
    booked["extension"].append(requested_by)
    record(transaction(held, booked))
    record(transaction(meeting("m-1", "fulfilled", start=at(-5), comment="Avtalt oppfølging",
                               extension=[*booked["extension"]]),
                       goal("g-job", "completed", startDate=start_day, target=[{"dueDate": due}])))

    shown = current()
    entries = [timeline.entry(e) for e in plans.history(plan_id)]
    bundle = export_bundle(shown, entries, plan_id=str(plan_id), as_of=None, now=datetime.now(timezone.utc))
    exported = {(r["resourceType"], (r.get("identifier") or [{}])[0].get("value")): r
                for r in (e["resource"] for e in bundle["entry"])}

    g = exported[("Goal", "g-job")]
    assert (g["lifecycleStatus"], g["description"]["text"], g["startDate"], g["target"], g["expressedBy"]) == (
        "completed", "Komme i deltidsjobb", start_day, [{"dueDate": due}], patient)
    g = exported[("Goal", "g-move")]
    assert (g["lifecycleStatus"], g["statusReason"], "expressedBy" in g) == ("cancelled", "Vil bo hjemme", False)
    c = exported[("Communication", "i-rights")]
    assert [m["coding"][0]["code"] for m in c["medium"]] == ["VERBAL", "WRITTEN"]
    assert (c["topic"]["coding"][0]["code"], c["payload"], c["note"], _same_time(c["sent"], at(-3))) == (
        "rights", [{"contentString": "Retten til individuell plan"}], [{"text": "Med tolk"}], True)
    r = exported[("RelatedPerson", RELATIVE)]
    assert (r["name"], r["relationship"]) == ([{"text": "Randi"}], [{"text": "Mor"}])
    consents = [e for e in exported.values() if e["resourceType"] == "Consent"]
    assert len(consents) == 1
    k = consents[0]
    assert k["status"] == "active" and k["extension"] == [{"url": s.EXT_CONSENT_GIVEN_HOW, "valueCode": "oral"}]
    assert [code["coding"][0]["code"] for code in k["provision"]["code"]] == ["goals", "meetings"]
    assert _same_time(k["provision"]["period"]["start"], at(-1)) and _same_time(k["provision"]["period"]["end"], at(300))
    assert _same_time(k["dateTime"], at(-2))
    assert k["provision"]["actor"][0]["reference"] == {"reference": s.ref(s.resource_id(str(plan_id),
                                                                                        f"related-person/{RELATIVE}"))}
    e = exported[("Appointment", "e-1")]
    assert (e["status"], e["comment"], _same_time(e["start"], at(-20))) == ("fulfilled", "Planen videreføres", True)
    assert e["participant"] == [{"actor": patient, "status": "declined"},
                                {"actor": {"display": "Fastlege Eva"}, "status": "accepted"}]
    m = exported[("Appointment", "m-1")]
    assert (m["status"], m["comment"], _same_time(m["start"], at(-5))) == ("fulfilled", "Avtalt oppfølging", True)
    assert {x["url"]: x.get("valueString") or x.get("valueCode") for x in m["extension"]} == {
        s.EXT_MEETING_TRANSPORT: "Bussbillett", s.EXT_MEETING_COMPANION: "Storebror",
        s.EXT_MEETING_NO_SHOW_STRATEGY: "Ring samme dag", s.EXT_MEETING_REQUESTED_BY: "patient"}
    assert {"actor": {"type": "Location", "display": "Kafé ved NAV"}, "status": "accepted"} in m["participant"]

    # the export posted back as a transaction (the kinds ingest takes): nothing to change
    back = [e for e in bundle["entry"] if e["resource"]["resourceType"] in ("Goal", "Consent", "Communication",
                                                                           "Appointment", "RelatedPerson")]
    again = {"resourceType": "Bundle", "type": "transaction",
             "entry": [{**e, "request": {"method": "PUT", "url": e["resource"]["resourceType"]}} for e in back]}
    assert events_from_fhir(again, current(), now=datetime.now(timezone.utc)) == []


def _swap(value: Any, old: Any, new: Any) -> Any:
    if value == old:
        return new
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return value


def _same_time(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)
