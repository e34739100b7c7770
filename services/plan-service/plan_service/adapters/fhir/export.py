"""The FHIR R4 export of an individual plan (issue 12): one Bundle of type "collection".

The mapping is the contract in .wip/fhir-mapping.md; the names of every system, code and
extension are in systems.py. Input is what ONE reader sees: the plan representation as GET
/v1/plans/{id} gives it to them, and their timeline entries. The export only maps: it shows
no value that is not in its input (the projection hides; a section absent from ``plan`` gives
no resource of its kind). Pure functions: no Flask, no I/O. The FHIR models (fhir.resources,
R4B) are imported on the first export, not when this module is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from plan_service.adapters.fhir import systems as s

__all__ = ["APPOINTMENT_MINUTES", "export_bundle"]

# The plan records when an evaluation or meeting starts, not how long it lasts; FHIR asks for
# an end with every start (app-2), so an Appointment is given this length.
APPOINTMENT_MINUTES = 60
UNKNOWN_RECORDER = "Helsetjenesten"  # a Provenance agent when the reader does not see who recorded
CAREPLAN_TITLE = "Individuell plan"
CAREPLAN_CATEGORY = "Individuell plan (IP)"
CONSENT_CATEGORY = {"system": s.LOINC, "code": "59284-0", "display": "Patient Consent"}
CONSENT_SCOPE = {"system": s.CS_CONSENT_SCOPE_HL7, "code": "patient-privacy", "display": "Privacy Consent"}
CONSENT_POLICY = {"system": s.CS_ACT_CODE, "code": "OPTIN", "display": "opt-in"}
FAMILY_MEMBER = {"system": s.CS_ROLE_CODE, "code": "FAMMEMB", "display": "family member"}
# the Provenance agent's reference type per recorder role (integration accounts are systems)
AGENT_TYPE = {"clinician": "Practitioner", "coordinator": "Practitioner",
              "integration": "Device"}
# Bundle entries in the contract's order
ORDER = ("Patient", "CarePlan", "CareTeam", "RelatedPerson", "QuestionnaireResponse", "Goal",
         "Communication", "Consent", "Appointment", "Provenance")


def export_bundle(plan: dict[str, Any], events: list[dict[str, Any]], *, plan_id: str,
                  as_of: datetime | None, now: datetime) -> dict[str, Any]:
    """The plan as a FHIR R4 Bundle (collection), JSON-ready, as this reader sees it.

    ``plan``: the reader's plan representation (schemas.PlanOut's fields their sections show);
    ``events``: the reader's timeline entries (application/timeline.entry), oldest first; times
    in either may be datetime objects or ISO strings. ``as_of`` (the plan as recorded then) or
    else ``now`` is the Bundle's timestamp and the moment a consent's end is compared with.
    """
    at = as_of or now
    return _Export(plan, events, str(plan_id), _aware(at)).bundle()


class _Export:
    def __init__(self, plan: dict[str, Any], events: list[dict[str, Any]], plan_id: str, at: datetime):
        self.plan, self.events, self.plan_id, self.at = plan, events, plan_id, at
        self.resources: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        self.patient = s.ref(self.id("patient"))

    # -- helpers ---------------------------------------------------------------------------

    def id(self, kind: str) -> str:
        return s.resource_id(self.plan_id, kind)

    def ref(self, kind: str) -> str | None:
        """The in-bundle reference of a resource of this kind, if the bundle holds it."""
        id_ = self.id(kind)
        return s.ref(id_) if id_ in self.ids else None

    def add(self, kind: str, resource: dict[str, Any]) -> None:
        resource["id"] = self.id(kind)
        self.ids.add(resource["id"])
        self.resources.append(resource)

    def details(self, event_type: str) -> Iterable[dict[str, Any]]:
        for event in self.events:
            if event.get("type") == event_type:
                yield event.get("details") or {}

    def last_detail(self, event_type: str, id_key: str, id_: str, field: str) -> Any:
        """``field`` of the last ``event_type`` event of this id (None when not shown)."""
        found = None
        for d in self.details(event_type):
            if d.get(id_key) == id_ and d.get(field) is not None:
                found = d[field]
        return found

    # -- the bundle --------------------------------------------------------------------------

    def bundle(self) -> dict[str, Any]:
        self.patient_resource()
        # ids of the resources the CarePlan and CareTeam point to come first
        for method in (self.related_persons, self.what_matters, self.goals, self.communications,
                       self.consents, self.appointments):
            method()
        self.care_team()
        self.care_plan()
        self.provenances()
        rank = {name: n for n, name in enumerate(ORDER)}
        ordered = sorted(self.resources, key=lambda r: rank[r["resourceType"]])  # stable
        bundle_cls = _model("Bundle")
        entry_cls = _model("Bundle", "BundleEntry")
        bundle = bundle_cls(
            type="collection",
            identifier={"system": s.SID_PLAN, "value": self.plan_id},
            timestamp=_instant(self.at),
            entry=[entry_cls(fullUrl=s.ref(r["id"]), resource=_model(r["resourceType"]).model_validate(r))
                   for r in ordered],
        )
        out: dict[str, Any] = bundle.model_dump(mode="json", exclude_none=True)
        return out

    def patient_resource(self) -> None:
        patient: dict[str, Any] = {"resourceType": "Patient"}
        if self.plan.get("patient_id"):
            patient["identifier"] = [{"system": s.SID_PATIENT, "value": self.plan["patient_id"]}]
        if self.plan.get("birth_date"):
            patient["birthDate"] = _date(self.plan["birth_date"])
        self.add("patient", patient)

    def care_plan(self) -> None:
        closed = self.plan.get("closed")
        status = "active"
        if closed:
            status = "completed" if closed.get("reason") == "goals_reached" else "revoked"
        care_plan: dict[str, Any] = {
            "resourceType": "CarePlan", "status": status, "intent": "plan",
            "category": [{"text": CAREPLAN_CATEGORY}], "title": CAREPLAN_TITLE, "subject": {"reference": self.patient},
        }
        period = _drop_none({"start": _time(self.plan.get("opened_at")),
                             "end": _time(closed.get("at")) if closed else None})
        if period:
            care_plan["period"] = period
        if self.plan.get("opened_at"):
            care_plan["created"] = _time(self.plan["opened_at"])
        coordinator = self.plan.get("coordinator")
        if coordinator:
            care_plan["author"] = _practitioner(coordinator["coordinator_id"], coordinator.get("name"))
        if care_team := self.ref("careteam"):
            care_plan["careTeam"] = [{"reference": care_team}]
        goals = [self.ref(f"goal/{g['goal_id']}") for g in self.plan.get("goals") or ()]
        if goals:
            care_plan["goal"] = [{"reference": r} for r in goals if r]
        what_matters = self.plan.get("what_matters") or ()
        if what_matters and (latest := self.ref(f"what-matters/{len(what_matters)}")):
            care_plan["supportingInfo"] = [{"reference": latest}]
        activities = [self.ref(f"evaluation/{e['evaluation_id']}") for e in self.plan.get("evaluations") or ()]
        activities += [self.ref(f"meeting/{m['meeting_id']}") for m in self.plan.get("triangle_meetings") or ()]
        if activities:
            care_plan["activity"] = [{"reference": {"reference": r}} for r in activities if r]
        note = (closed or {}).get("note")
        if note is None and closed:
            note = next((d["note"] for d in self.details("PlanClosed") if d.get("note")), None)
        if note:
            care_plan["note"] = [{"text": note}]
        self.add("careplan", care_plan)

    def care_team(self) -> None:
        members: list[dict[str, Any]] = []
        coordinator = self.plan.get("coordinator")
        if coordinator:
            members.append({"role": _roles("coordinator", coordinator.get("service_level")),
                            "member": _practitioner(coordinator["coordinator_id"], coordinator.get("name"))})
        for p in self.plan.get("participants") or ():
            if p.get("kind") == "relative":
                member: dict[str, Any] = {"role": _roles("relative", None),
                                          "member": {"reference": self.ref(f"related-person/{p['participant_id']}")}}
            else:
                member = {"role": _roles("professional", p.get("service_level")),
                          "member": _practitioner(p["participant_id"], p.get("name"))}
            if p.get("added_at"):
                member["period"] = {"start": _time(p["added_at"])}
            members.append(member)
        if not members:
            return  # no one in the plan, or the reader does not see who is
        care_team: dict[str, Any] = {
            "resourceType": "CareTeam", "status": "inactive" if self.plan.get("closed") else "active",
            "subject": {"reference": self.patient}, "participant": members,
        }
        if self.plan.get("opened_at"):
            care_team["period"] = {"start": _time(self.plan["opened_at"])}
        self.add("careteam", care_team)

    def related_persons(self) -> None:
        for p in self.plan.get("participants") or ():
            if p.get("kind") != "relative":
                continue
            person: dict[str, Any] = {
                "resourceType": "RelatedPerson",
                "identifier": [{"system": s.SID_PARTICIPANT, "value": p["participant_id"]}],
                "active": True, "patient": {"reference": self.patient},
            }
            if p.get("relation"):
                person["relationship"] = [{"text": p["relation"]}]
            if p.get("name"):
                person["name"] = [{"text": p["name"]}]
            self.add(f"related-person/{p['participant_id']}", person)

    def what_matters(self) -> None:
        for n, wm in enumerate(self.plan.get("what_matters") or (), start=1):
            answer: dict[str, Any] = {
                "resourceType": "QuestionnaireResponse", "status": "completed",
                "subject": {"reference": self.patient}, "author": {"reference": self.patient},
                "source": {"reference": self.patient},
                "item": [{"linkId": s.WHAT_MATTERS_LINK_ID, "text": s.WHAT_MATTERS_QUESTION,
                          "answer": [{"valueString": wm["text"]}]}],
            }
            if wm.get("language"):
                answer["language"] = wm["language"]
            if wm.get("recorded_at"):
                answer["authored"] = _time(wm["recorded_at"])
            self.add(f"what-matters/{n}", answer)

    def goals(self) -> None:
        for g in self.plan.get("goals") or ():
            lifecycle, achievement, display = s.GOAL_STATUS[g.get("status") or "active"]
            goal: dict[str, Any] = {
                "resourceType": "Goal",
                "identifier": [{"system": s.SID_GOAL, "value": g["goal_id"]}],
                "lifecycleStatus": lifecycle,
                "achievementStatus": {"coding": [{"system": s.CS_GOAL_ACHIEVEMENT, "code": achievement,
                                                  "display": display}]},
                "description": {"text": g["text"]},
                "subject": {"reference": self.patient},
            }
            if g.get("revisions") is not None:
                goal["extension"] = [{"url": s.EXT_GOAL_REVISIONS, "valueInteger": g["revisions"]}]
            if g.get("set_at"):
                goal["startDate"] = _date(g["set_at"])
            if g.get("target_date"):
                goal["target"] = [{"dueDate": _date(g["target_date"])}]
            if g.get("expressed_by") == "patient":
                goal["expressedBy"] = {"reference": self.patient}
            if g.get("status") == "abandoned":
                reason = g.get("closed_reason") or self.last_detail(
                    "GoalAbandoned", "goal_id", g["goal_id"], "reason")
                if reason:
                    goal["statusReason"] = reason
            self.add(f"goal/{g['goal_id']}", goal)

    def communications(self) -> None:
        for i in self.plan.get("information_given") or ():
            communication: dict[str, Any] = {
                "resourceType": "Communication",
                "identifier": [{"system": s.SID_INFORMATION, "value": i["information_id"]}],
                "status": "completed", "subject": {"reference": self.patient},
                "recipient": [{"reference": self.patient}],
                "payload": [{"contentString": i["description"]}],
            }
            if i.get("topic"):
                topic = s.coding(s.CS_INFORMATION_TOPIC, i["topic"], s.INFORMATION_TOPIC)
                communication["topic"] = _drop_none({"coding": [topic], "text": topic.get("display")})
            if i.get("form") in s.INFORMATION_FORM:
                communication["medium"] = [{"coding": [{"system": s.CS_PARTICIPATION_MODE, "code": code,
                                                         "display": display}]}
                                           for code, display in s.INFORMATION_FORM[i["form"]]]
            if i.get("given_at"):
                communication["sent"] = _time(i["given_at"])
            if i.get("adapted_how"):
                communication["note"] = [{"text": i["adapted_how"]}]
            self.add(f"communication/{i['information_id']}", communication)

    def consents(self) -> None:
        for c in self.plan.get("relative_consents") or ():
            relative = c["relative_id"]
            start, until, withdrawn = (_parse(c.get(k)) for k in ("valid_from", "valid_until", "withdrawn_at"))
            # withdrawn (a plan as of a time holds only what was recorded by then) or run out
            over = withdrawn is not None or (until is not None and until <= self.at)
            end = min((t for t in (until, withdrawn) if t is not None), default=None)
            if end is not None and start is not None and end < start:
                end = start  # withdrawn before it began: it never took effect (per-1: start <= end)
            actor = {"reference": self.ref(f"related-person/{relative}")} if self.ref(f"related-person/{relative}") \
                else {"identifier": {"system": s.SID_PARTICIPANT, "value": relative}}
            provision: dict[str, Any] = {"type": "permit", "actor": [{"role": {"coding": [FAMILY_MEMBER]},
                                                                       "reference": actor}]}
            period = _drop_none({"start": _instant(start), "end": _instant(end)})
            if period:
                provision["period"] = period
            if c.get("scope"):
                provision["code"] = [{"coding": [s.coding(s.CS_CONSENT_SCOPE, code, s.CONSENT_SCOPE)]}
                                     for code in c["scope"]]
            consent: dict[str, Any] = {
                "resourceType": "Consent", "status": "inactive" if over else "active",
                "scope": {"coding": [CONSENT_SCOPE]}, "category": [{"coding": [CONSENT_CATEGORY]}],
                "patient": {"reference": self.patient}, "policyRule": {"coding": [CONSENT_POLICY]},
                "provision": provision,
            }
            if c.get("given_how"):
                consent["extension"] = [{"url": s.EXT_CONSENT_GIVEN_HOW, "valueCode": c["given_how"]}]
            if c.get("given_at"):
                consent["dateTime"] = _time(c["given_at"])
            self.add(f"consent/{relative}", consent)

    def appointments(self) -> None:
        for e in self.plan.get("evaluations") or ():
            held = e.get("status") == "held"
            took_part = not (held and e.get("patient_took_part") is False)
            participants = [{"actor": {"reference": self.patient}, "status": "accepted" if took_part else "declined"}]
            participants += [{"actor": {"display": name}, "status": "accepted"} for name in e.get("participants") or ()]
            appointment = self.appointment(
                s.APPOINTMENT_EVALUATION, s.SID_EVALUATION, e["evaluation_id"],
                s.EVALUATION_STATUS.get(e.get("status") or "scheduled", "booked"), e.get("scheduled_for"),
                participants)
            if held and e.get("outcome"):
                appointment["comment"] = e["outcome"]
            self.add(f"evaluation/{e['evaluation_id']}", appointment)
        for m in self.plan.get("triangle_meetings") or ():
            participants = [{"actor": {"reference": self.patient}, "status": "accepted"}]
            if m.get("place"):
                participants.append({"actor": {"type": "Location", "display": m["place"]}, "status": "accepted"})
            appointment = self.appointment(
                s.APPOINTMENT_TRIANGLE_MEETING, s.SID_MEETING, m["meeting_id"],
                s.MEETING_STATUS.get(m.get("status") or "requested", "proposed"), m.get("scheduled_for"),
                participants)
            extensions = [{"url": url, value_type: m[key]} for key, url, value_type in (
                ("transport", s.EXT_MEETING_TRANSPORT, "valueString"),
                ("companion", s.EXT_MEETING_COMPANION, "valueString"),
                ("no_show_strategy", s.EXT_MEETING_NO_SHOW_STRATEGY, "valueString"),
                ("requested_by", s.EXT_MEETING_REQUESTED_BY, "valueCode")) if m.get(key)]
            if extensions:
                appointment["extension"] = extensions
            instruction = _wishes(m)
            if instruction:
                appointment["patientInstruction"] = instruction
            reason = self.last_detail("TriangleMeetingRequested", "meeting_id", m["meeting_id"], "reason")
            if reason:
                appointment["reasonCode"] = [{"text": reason}]
            if m.get("status") == "held" and m.get("outcome"):
                appointment["comment"] = m["outcome"]
            self.add(f"meeting/{m['meeting_id']}", appointment)

    def appointment(self, kind: str, system: str, local_id: str, status: str, start: Any,
                    participants: list[dict[str, Any]]) -> dict[str, Any]:
        appointment: dict[str, Any] = {
            "resourceType": "Appointment", "identifier": [{"system": system, "value": local_id}],
            "status": status, "serviceType": [{"coding": [s.coding(s.CS_APPOINTMENT_KIND, kind, s.APPOINTMENT_KIND)]}],
            "participant": participants,
        }
        begins = _parse(start)
        if begins is not None:
            appointment["start"] = _instant(begins)
            appointment["end"] = _instant(begins + timedelta(minutes=APPOINTMENT_MINUTES))
        return appointment

    # -- provenance ----------------------------------------------------------------------------

    def provenances(self) -> None:
        what_matters = 0
        for event in self.events:
            kind = event.get("type", "")
            if kind == "WhatMattersRecorded":
                what_matters += 1
            targets = [r for r in self.targets(kind, event.get("details") or {}, what_matters) if r]
            if not targets or event.get("version") is None or event.get("recorded_at") is None:
                continue
            activity: dict[str, Any] = {"coding": [{"system": s.CS_PLAN_EVENT, "code": kind}]}
            if event.get("summary"):
                activity["text"] = event["summary"]
            provenance: dict[str, Any] = {
                "resourceType": "Provenance", "target": [{"reference": r} for r in dict.fromkeys(targets)],
                "recorded": _instant(_parse(event["recorded_at"])), "activity": activity,
                "agent": [{"who": self.agent(event)}],
                "entity": [{"role": "source", "what": {"identifier": {
                    "system": s.SID_EVENT, "value": f"{self.plan_id}:{event['version']}"}}}],
            }
            if event.get("occurred_at"):
                provenance["occurredDateTime"] = _time(event["occurred_at"])
            self.add(f"provenance/{event['version']}", provenance)

    def targets(self, kind: str, d: dict[str, Any], what_matters: int) -> list[str | None]:
        """The in-bundle resources an event made or changed (None: not in the bundle)."""
        if kind in ("PlanOpened", "PlanClosed"):
            return [self.ref("careplan")]
        if kind == "CoordinatorAssigned":
            return [self.ref("careteam"), self.ref("careplan")]
        if kind == "WhatMattersRecorded":
            return [self.ref(f"what-matters/{what_matters}")]
        if kind.startswith("Goal"):
            return [self.ref(f"goal/{d.get('goal_id')}")]
        if kind == "InformationGiven":
            return [self.ref(f"communication/{d.get('information_id')}")]
        if kind == "ParticipantAdded":
            # a relative removed since has no RelatedPerson: the CareTeam is what the event changed
            return [self.ref(f"related-person/{d.get('participant_id')}") or self.ref("careteam")]
        if kind == "ParticipantRemoved":  # it also ends a removed relative's consent
            return [self.ref("careteam"), self.ref(f"consent/{d.get('participant_id')}")]
        if kind.startswith("RelativeConsent"):
            return [self.ref(f"consent/{d.get('relative_id')}")]
        if kind.startswith("Evaluation"):
            return [self.ref(f"evaluation/{d.get('evaluation_id')}")]
        if kind.startswith("TriangleMeeting"):
            return [self.ref(f"meeting/{d.get('meeting_id')}")]
        return []


    def agent(self, event: dict[str, Any]) -> dict[str, Any]:
        """Who recorded the event, when the reader sees it: the patient (the Patient), or a
        clinician, coordinator or system account by its id; else only "Helsetjenesten"."""
        recorded_by = event.get("recorded_by")
        if not recorded_by or not recorded_by.get("id"):
            return {"display": UNKNOWN_RECORDER}
        role = recorded_by.get("role", "")
        if role == "patient":
            return {"reference": self.patient, "type": "Patient", "display": role}
        return _drop_none({"type": AGENT_TYPE.get(role),
                           "identifier": {"system": s.SID_PARTICIPANT, "value": recorded_by["id"]},
                           "display": role or None})


# -- pure helpers ---------------------------------------------------------------------------


def _model(resource_type: str, name: str | None = None) -> Any:
    """fhir.resources' R4B model class (imported on first use)."""
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, name or resource_type)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _parse(value: Any) -> datetime | None:
    """A time given as a datetime or an ISO 8601 string (naive: UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {type(value).__name__}")
    return _aware(value)


def _time(value: Any) -> str | None:
    """A FHIR dateTime: the time as given (with its offset)."""
    parsed = _parse(value)
    return parsed.isoformat() if parsed is not None else None


def _instant(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _date(value: Any) -> str:
    """A FHIR date: a date as given, or the calendar day of a time as written (its own offset)."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _practitioner(participant_id: str, name: str | None) -> dict[str, Any]:
    return _drop_none({"type": "Practitioner", "identifier": {"system": s.SID_PARTICIPANT, "value": participant_id},
                       "display": name})


def _roles(role: str, service_level: str | None) -> list[dict[str, Any]]:
    roles = [{"coding": [s.coding(s.CS_CARE_TEAM_ROLE, role, s.CARE_TEAM_ROLE)]}]
    if service_level:
        roles.append({"coding": [s.coding(s.CS_SERVICE_LEVEL, service_level, s.SERVICE_LEVEL)]})
    return roles


def _wishes(meeting: dict[str, Any]) -> str | None:
    """The patient's wishes for a triangle meeting, in Norwegian (Appointment.patientInstruction)."""
    parts = [f"{label}: {meeting[key]}" for key, label in (
        ("transport", "Transport"), ("companion", "Følge"), ("no_show_strategy", "Hvis du ikke kommer"))
        if meeting.get(key)]
    return "; ".join(parts) if parts else None
