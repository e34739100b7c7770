"""FHIR R4 resources posted by an EPR integration -> plan events (issue 12, contract:
.wip/fhir-mapping.md, section "Ingest"; the inverse of export.py).

``events_from_fhir(body, plan)`` maps a Goal, Consent, Communication or Appointment, or a
transaction Bundle of them, to the (event type, fields) pairs POST /v1/plans/{id}/events takes,
in the JSON form that ``schemas.load_events`` accepts. It only maps: the plan's own rules (the
domain) answer the rest as they do for JSON. Whatever is wrong at the FHIR level is collected as
OperationOutcome issues with a FHIRPath expression, and any issue means no events at all
(``FhirInvalid``).

Diagnostics name elements, codes and ids, never posted free text (health information: the
issues may be logged).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any

import pydantic
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.relatedperson import RelatedPerson
from marshmallow import ValidationError

from plan_service.adapters.fhir.systems import (
    APPOINTMENT_EVALUATION,
    APPOINTMENT_KIND,
    APPOINTMENT_TRIANGLE_MEETING,
    CONSENT_SCOPE,
    CS_APPOINTMENT_KIND,
    CS_CONSENT_SCOPE,
    CS_GOAL_ACHIEVEMENT,
    CS_INFORMATION_TOPIC,
    CS_PARTICIPATION_MODE,
    EVALUATION_STATUS,
    EXT_CONSENT_GIVEN_HOW,
    EXT_MEETING_COMPANION,
    EXT_MEETING_NO_SHOW_STRATEGY,
    EXT_MEETING_REQUESTED_BY,
    EXT_MEETING_TRANSPORT,
    GOAL_STATUS,
    INFORMATION_FORM,
    INFORMATION_TOPIC,
    MEETING_STATUS,
    SID_EVALUATION,
    SID_GOAL,
    SID_INFORMATION,
    SID_MEETING,
    SID_PARTICIPANT,
    SID_PATIENT,
    resource_id,
)

__all__ = ["ACCEPTED", "FhirInvalid", "Ingested", "events_from_fhir", "operation_outcome"]

Issue = dict[str, Any]
Events = list[tuple[str, dict[str, Any]]]

# The resources accepted alone or as entries of a transaction Bundle.
ACCEPTED: dict[str, type[pydantic.BaseModel]] = {
    "Goal": Goal, "Consent": Consent, "Communication": Communication, "Appointment": Appointment}
# Accepted as a transaction entry only: the relative a Consent of the same bundle names.
BUNDLE_ONLY: dict[str, type[pydantic.BaseModel]] = {"RelatedPerson": RelatedPerson}
METHODS = ("POST", "PUT")
# move to systems.py with the value sets below
BUNDLE_TYPES = ("document", "message", "transaction", "transaction-response", "batch", "batch-response",
                "history", "searchset", "collection")

# The codes FHIR R4 defines for the statuses read here: a code outside these is invalid ("value"),
# a FHIR code the plan has no state for is "not-supported". (FHIR's own value sets, used by the
# ingest only: move to systems.py if the export comes to need them.)
GOAL_LIFECYCLE = ("proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                  "entered-in-error", "rejected")
CONSENT_STATUS = ("draft", "proposed", "active", "rejected", "inactive", "entered-in-error")
COMMUNICATION_STATUS = ("preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                        "entered-in-error", "unknown")
APPOINTMENT_STATUS = ("proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
                      "entered-in-error", "checked-in", "waitlist")
# goal-achievement codes that contradict lifecycleStatus "completed" (achieved, in this plan)
NOT_ACHIEVED = ("not-achieved", "no-progress", "not-attainable")


class FhirInvalid(Exception):
    """The posted FHIR content cannot be recorded; ``issues`` are OperationOutcome.issue dicts."""

    def __init__(self, issues: list[Issue]):
        # The message counts; it never repeats the issues (they may end up in a log).
        super().__init__(f"{len(issues)} FHIR issue(s)")
        self.issues = issues


class Ingested(tuple[str, dict[str, Any]]):
    """One (event type, fields) pair, as POST /v1/plans/{id}/events takes it, that also says
    where it came from: ``origin``, the FHIRPath of its resource ("Goal",
    "Bundle.entry[2].resource"), for the plan's answer to point at."""

    origin: str

    def __new__(cls, type_: str, fields: dict[str, Any], origin: str) -> Ingested:
        item = super().__new__(cls, (type_, fields))
        item.origin = origin
        return item


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """A valid R4 OperationOutcome of ``issues`` (one informational issue when there are none:
    FHIR requires at least one)."""
    issue = issues or [_issue("informational", "no issues", severity="information")]
    outcome = OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": issue})
    return outcome.model_dump(mode="json", by_alias=True, exclude_none=True)


def events_from_fhir(body: Any, plan: dict[str, Any], *, now: datetime | None = None,
                     load: Callable[[Any], Any] | None = None) -> Events:
    """The events that bring ``plan`` (its full JSON representation, as GET /v1/plans/{id} gives
    it to staff) to the state the posted FHIR content describes, in order; [] when it already is
    in that state. ``now`` (default: the clock) decides whether a consent has run out.
    Each pair is an ``Ingested`` (its ``origin``: the resource it came from). ``load``: the
    JSON API's loader of a posted event (the API passes ``schemas.load_events``), so that a
    field it refuses is reported at the FHIR element it came from; it raises marshmallow's
    ValidationError. Raises FhirInvalid with every issue found."""
    ingest = _Ingest(plan, now or datetime.now(timezone.utc), load)
    ingest.body(body)
    if ingest.issues:
        raise FhirInvalid(ingest.issues)
    events = ingest.first + ingest.events
    return [Ingested(e.type, e.fields, e.origin) for e in events]


# -- issues -----------------------------------------------------------------------------------


def _issue(code: str, diagnostics: str, expression: str | None = None, *, severity: str = "error") -> Issue:
    out: Issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        out["expression"] = [expression]
    return out


_ELEMENT = re.compile(r"_?[A-Za-z][A-Za-z0-9_]*")
_PYDANTIC_CODES = {"missing": "required", "extra_forbidden": "structure", "model_type": "structure",
                   "model_attributes_type": "structure", "dict_type": "structure", "list_type": "structure"}


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a FHIRPath under ``prefix`` ("Goal", "Bundle.entry[1].resource")."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _ELEMENT.fullmatch(part):
            name = "resourceType" if part == "resource_type" else part.removesuffix("__ext").lstrip("_")
            out += "." + name
        # anything else is a validator's own label (e.g. "function-after[...]"), not an element
    return out


def _pydantic_issues(error: pydantic.ValidationError, prefix: str) -> list[Issue]:
    issues = []
    for e in error.errors(include_url=False, include_input=False):
        message = " ".join(str(e["msg"]).split())
        issues.append(_issue(_PYDANTIC_CODES.get(e["type"], "value"), message, _path(prefix, tuple(e["loc"]))))
    return issues


# -- reading helpers ----------------------------------------------------------------------------


_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _c(value: Any) -> str:
    """A posted code (or id) as a diagnostic shows it: only when it looks like one, never free text."""
    return str(value) if isinstance(value, str) and _CODE.fullmatch(value) else "(not a code)" if value else "(none)"


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date | datetime) else None


def _moment(value: Any) -> datetime | None:
    """A datetime from the plan's JSON form (ISO string) or from a parsed FHIR value."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _day(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _by_id(plan: dict[str, Any], section: str, key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in _list(plan.get(section)) if isinstance(item, dict) and key in item}


@dataclass
class _Event:
    type: str
    fields: dict[str, Any]
    paths: dict[str, str]  # field -> the FHIR element it came from (for load_events' errors)
    origin: str = ""  # the FHIRPath of the resource


@dataclass
class _Resource:
    """One posted resource: its data (parsed by fhir.resources, dumped as Python values) and
    the FHIRPath of its root ("Goal" or "Bundle.entry[2].resource")."""

    type: str
    data: dict[str, Any]
    at: str
    full_url: str | None = None


@dataclass
class _Ingest:
    plan: dict[str, Any]
    now: datetime
    load: Callable[[Any], Any] | None = None
    issues: list[Issue] = field(default_factory=list)
    first: list[_Event] = field(default_factory=list)  # relatives added: other entries may name them
    events: list[_Event] = field(default_factory=list)
    seen: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, local id) -> where first
    bundle_relatives: dict[str, str] = field(default_factory=dict)  # fullUrl / RelatedPerson/<id> -> participant id

    def __post_init__(self) -> None:
        self.plan_id = str(self.plan.get("id") or "")
        self.goals = _by_id(self.plan, "goals", "goal_id")
        self.information = _by_id(self.plan, "information_given", "information_id")
        self.participants = _by_id(self.plan, "participants", "participant_id")
        self.consents = _by_id(self.plan, "relative_consents", "relative_id")
        self.evaluations = _by_id(self.plan, "evaluations", "evaluation_id")
        self.meetings = _by_id(self.plan, "triangle_meetings", "meeting_id")
        # the plan's own resource ids (export.py's), so that exported resources can be posted back
        self.own_ids: dict[str, tuple[str, str | None]] = {}
        if self.plan_id:
            try:
                self.own_ids[resource_id(self.plan_id, "patient")] = ("Patient", None)
                for pid, p in self.participants.items():
                    if p.get("kind") == "relative":
                        self.own_ids[resource_id(self.plan_id, f"related-person/{pid}")] = ("RelatedPerson", pid)
            except ValueError:
                pass  # not a UUID: no plan of ours; the references are then read without it

    def problem(self, code: str, diagnostics: str, expression: str) -> None:
        self.issues.append(_issue(code, diagnostics, expression))

    # -- the body ----------------------------------------------------------------------------

    def body(self, body: Any) -> None:
        if not isinstance(body, dict):
            self.issues.append(_issue("structure", "expected one FHIR resource: a JSON object with a resourceType"))
            return
        kind = body.get("resourceType")
        if not isinstance(kind, str) or not kind:
            self.issues.append(_issue("required", "a FHIR resource names its resourceType"))
            return
        if kind == "Bundle":
            self.bundle(body)
            return
        if kind not in ACCEPTED:
            self.problem("not-supported", f"a {_c(kind)} is not accepted: post a Goal, Consent, Communication or "
                                          "Appointment, or a transaction Bundle of them",
                         kind if kind.isalpha() else "Resource")
            return
        resource = self.parse(body, kind, kind)
        if resource is not None:
            self.resource(resource)

    def parse(self, data: dict[str, Any], kind: str, at: str, full_url: str | None = None) -> _Resource | None:
        model = (ACCEPTED | BUNDLE_ONLY)[kind]
        try:
            parsed = model.model_validate(data)
        except pydantic.ValidationError as e:
            self.issues.extend(_pydantic_issues(e, at))
            return None
        if getattr(parsed, "modifierExtension", None):
            self.problem("not-supported", "modifier extensions are not understood here", f"{at}.modifierExtension")
            return None
        dumped = parsed.model_dump(mode="python", by_alias=True, exclude_none=True)
        return _Resource(kind, dumped, at, full_url)

    def bundle(self, body: dict[str, Any]) -> None:
        entries = body.get("entry")
        envelope = dict(body)
        if isinstance(entries, list):  # the envelope alone; each resource is read on its own below
            envelope["entry"] = [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
                                 for e in entries]
        try:
            Bundle.model_validate(envelope)
        except pydantic.ValidationError as e:
            self.issues.extend(_pydantic_issues(e, "Bundle"))
        kind = body.get("type")
        if isinstance(kind, str) and kind != "transaction":
            self.problem("not-supported" if kind in BUNDLE_TYPES else "value",
                         f"a Bundle of type {_c(kind)} is not accepted: post a transaction", "Bundle.type")
        resources: list[_Resource] = []
        for index, entry in enumerate(_list(entries)):
            if not isinstance(entry, dict):
                continue  # the envelope's validation said so
            at = f"Bundle.entry[{index}]"
            request = entry.get("request")
            if not isinstance(request, dict):
                self.problem("required", "a transaction entry has a request (method POST or PUT)", f"{at}.request")
            elif isinstance(request.get("method"), str) and request["method"] not in METHODS:
                self.problem("not-supported", f"request method {_c(request['method'])} is not accepted: POST or PUT",
                             f"{at}.request.method")
            data = entry.get("resource")
            if not isinstance(data, dict):
                self.problem("required", "a transaction entry holds a resource", f"{at}.resource")
                continue
            kind = data.get("resourceType")
            if kind not in ACCEPTED and kind not in BUNDLE_ONLY:
                self.problem("not-supported", f"an entry of type {_c(kind)} is not accepted: Goal, Consent, "
                                              "Communication, Appointment (and the RelatedPerson a Consent "
                                              "names)", f"{at}.resource")
                continue
            full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            resource = self.parse(data, kind, f"{at}.resource", full_url)
            if resource is not None:
                resources.append(resource)
        for resource in resources:  # first: the relatives the Consents may reference
            if resource.type == "RelatedPerson":
                pid = self.identifier(resource, SID_PARTICIPANT, "participant", report=False)
                if pid is not None:
                    if resource.full_url:
                        self.bundle_relatives[resource.full_url] = pid
                    if isinstance(resource.data.get("id"), str):
                        self.bundle_relatives[f"RelatedPerson/{resource.data['id']}"] = pid
        for resource in resources:
            self.resource(resource)

    def resource(self, r: _Resource) -> None:
        before = len(self.issues)
        made: list[_Event] = []
        {"Goal": self.goal, "Consent": self.consent, "Communication": self.communication,
         "Appointment": self.appointment, "RelatedPerson": self.related_person}[r.type](r, made)
        for event in made:
            event.origin = r.at
        if len(self.issues) == before:
            self.check(made, r)
        if r.type == "RelatedPerson":
            self.first.extend(made)
        else:
            self.events.extend(made)

    def check(self, made: list[_Event], r: _Resource) -> None:
        """Each event as the JSON API will load it: its field errors at the FHIR elements."""
        if self.load is None:
            return
        for event in made:
            try:
                self.load({"type": event.type, **event.fields})
            except ValidationError as e:
                messages = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
                for name, problem in messages.items():
                    where = event.paths.get(str(name), r.at)
                    self.problem("value", f"{_words(problem)} ({event.type}.{name})", where)

    # -- shared readings -------------------------------------------------------------------------

    def identifier(self, r: _Resource, system: str, what: str, *, report: bool = True) -> str | None:
        for index, ident in enumerate(_list(r.data.get("identifier"))):
            if _dict(ident).get("system") == system:
                value = ident.get("value")
                if isinstance(value, str) and value:
                    return value
                if report:
                    self.problem("required", f"the {what} id is the identifier's value", f"{r.at}.identifier[{index}].value")
                return None
        if report:
            self.problem("required", f"the {what} id: an identifier with system {system}", f"{r.at}.identifier")
        return None

    def once(self, kind: str, local_id: str, r: _Resource, where: str) -> bool:
        first = self.seen.setdefault((kind, local_id), r.at)
        if first != r.at:
            self.problem("value", f"{kind} {_c(local_id)} is also posted at {first}: one resource per {kind}", where)
            return False
        return True

    def ref_type(self, reference: dict[str, Any]) -> str | None:
        """The resource type a Reference points to, as far as it says: "Patient", "Location",
        ..., "participant" (a participant-id identifier), or None when it cannot be told."""
        if isinstance(reference.get("type"), str):
            return str(reference["type"])
        system = _dict(reference.get("identifier")).get("system")
        if system == SID_PATIENT:
            return "Patient"
        if system == SID_PARTICIPANT:
            return "participant"
        target = reference.get("reference")
        if not isinstance(target, str) or not target:
            return None
        if target.startswith("urn:uuid:"):
            own = self.own_ids.get(target.removeprefix("urn:uuid:"))
            if own:
                return own[0]
            return "RelatedPerson" if target in self.bundle_relatives else None
        if target.startswith("#"):
            return None
        parts = target.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2]
        if len(parts) >= 4 and parts[-2] == "_history" and parts[-4][:1].isupper():
            return parts[-4]
        return None

    def the_patient(self, reference: Any, where: str) -> None:
        """A subject/patient element: it must be the plan's patient, as far as it says."""
        reference = _dict(reference)
        if not reference:
            return  # FHIR's cardinality is the model's to check
        kind = self.ref_type(reference)
        if kind is not None and kind != "Patient":
            self.problem("value", f"this plan's records are about its patient, not a {kind}", where)
            return
        ident = _dict(reference.get("identifier"))
        patient_id = self.plan.get("patient_id")
        if ident.get("system") == SID_PATIENT and patient_id and ident.get("value") != patient_id:
            self.problem("value", "this is not the plan's patient (identifier patient-id)", f"{where}.identifier.value")

    def time(self, value: Any, where: str) -> str | None:
        """A dateTime element as the API's aware ISO time; a date alone (or a partial one) is refused."""
        if value is None:
            return None
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.isoformat()
        self.problem("value", "give a date and a time with its offset (e.g. 2025-03-01T10:00:00+01:00)", where)
        return None

    def extensions(self, r: _Resource, urls: dict[str, tuple[str, str]]) -> dict[str, tuple[Any, str]]:
        """Our extensions on the resource: {url: (value, its path)} for the given url -> (value[x], name)."""
        found: dict[str, tuple[Any, str]] = {}
        for index, ext in enumerate(_list(r.data.get("extension"))):
            url = _dict(ext).get("url")
            if url not in urls:
                continue  # an extension the plan does not know: ignored (it is not a modifier)
            element, name = urls[url]
            where = f"{r.at}.extension[{index}]"
            if url in found:
                self.problem("value", f"the {name} extension is given twice", where)
            elif element not in ext:
                self.problem("value", f"the {name} extension holds a {element}", where)
            else:
                found[url] = (ext[element], f"{where}.{element}")
        return found

    def code(self, concepts: list[Any], system: str, table: tuple[str, ...], where: str, what: str, *,
             single: bool = False) -> str | None:
        """The code of ``system`` among the CodeableConcept(s) at ``where`` (one when ``single``);
        reports a missing or unknown one."""
        for i, concept in enumerate(concepts):
            for j, c in enumerate(_list(_dict(concept).get("coding"))):
                if _dict(c).get("system") != system:
                    continue
                at = f"{where}.coding[{j}].code" if single else f"{where}[{i}].coding[{j}].code"
                code = c.get("code")
                if code not in table:
                    self.problem("value", f"unknown {what} code {_c(code)}: one of {', '.join(table)}", at)
                    return None
                return str(code)
        self.problem("required", f"the {what}: a coding of system {system}", where)
        return None

    def failed(self, before: int) -> bool:
        """Issues since ``before``: the resource gives no events (and all of the body gives none)."""
        return len(self.issues) > before

    # -- Goal ------------------------------------------------------------------------------------

    def goal(self, r: _Resource, out: list[_Event]) -> None:
        d, at, before = r.data, r.at, len(self.issues)
        goal_id = self.identifier(r, SID_GOAL, "goal")
        text = _dict(d.get("description")).get("text")
        if not text:
            self.problem("required", "the goal in words: description.text", f"{at}.description.text")
        self.the_patient(d.get("subject"), f"{at}.subject")
        status = self.goal_status(d, at)
        expressed_by = self.expressed_by(d.get("expressedBy"), f"{at}.expressedBy")
        targets = _list(d.get("target"))
        if len(targets) > 1:
            self.problem("not-supported", "a goal here has one target (a due date)", f"{at}.target[1]")
        target = _dict(targets[0]) if targets else {}
        for element in sorted(set(target) - {"dueDate", "id", "extension"}):
            self.problem("not-supported", "a goal's target here is a due date (dueDate) only", f"{at}.target[0].{element}")
        target_date = _iso(target.get("dueDate"))
        started = self.goal_start(d.get("startDate"), f"{at}.startDate")
        if self.failed(before) or goal_id is None or not self.once("goal", goal_id, r, f"{at}.identifier"):
            return
        paths = {"goal_id": f"{at}.identifier", "text": f"{at}.description.text", "expressed_by": f"{at}.expressedBy",
                 "target_date": f"{at}.target[0].dueDate", "reason": f"{at}.statusReason", "occurred_at": f"{at}.startDate"}
        reason = d.get("statusReason")
        existing = self.goals.get(goal_id)
        if existing is None:
            fields: dict[str, Any] = {"goal_id": goal_id, "text": text, "expressed_by": expressed_by}
            if target_date:
                fields["target_date"] = target_date
            if started:
                fields["occurred_at"] = started
            out.append(_Event("GoalSet", fields, paths))
        else:
            was = existing.get("status")
            if existing.get("expressed_by") != expressed_by:
                self.problem("not-supported", f"goal {_c(goal_id)} was expressed by the {existing.get('expressed_by')}; "
                                              "that cannot be changed", f"{at}.expressedBy")
            if target_date is None and existing.get("target_date"):
                self.problem("not-supported", f"goal {_c(goal_id)} has a target date; it can be changed, not removed",
                             f"{at}.target")
            if was != "active" and status == "active":
                self.problem("not-supported", f"goal {_c(goal_id)} is {was}; a closed goal cannot be reopened: set a new goal",
                             f"{at}.lifecycleStatus")
            if self.failed(before):
                return
            revised: dict[str, Any] = {}
            if text != existing.get("text"):
                revised["text"] = text
            if target_date is not None and target_date != existing.get("target_date"):
                revised["target_date"] = target_date
            if revised:  # of a closed goal: the plan answers (a closed goal is not revised)
                out.append(_Event("GoalRevised", {"goal_id": goal_id, **revised}, paths))
            if status == was:
                return
        if status == "achieved":
            out.append(_Event("GoalAchieved", {"goal_id": goal_id}, paths))
        elif status == "abandoned":
            out.append(_Event("GoalAbandoned", {"goal_id": goal_id, **({"reason": reason} if reason else {})}, paths))

    def goal_status(self, d: dict[str, Any], at: str) -> str | None:
        """lifecycleStatus (and achievementStatus) -> the goal's status in the plan."""
        lifecycle = d.get("lifecycleStatus")
        status = {fhir: ours for ours, (fhir, _, _) in GOAL_STATUS.items()}.get(str(lifecycle))
        if status is None:
            self.problem("not-supported" if lifecycle in GOAL_LIFECYCLE else "value",
                         f"lifecycleStatus {_c(lifecycle)}: a goal here is active, completed (achieved) or cancelled "
                         "(abandoned)", f"{at}.lifecycleStatus")
            return None
        for j, c in enumerate(_list(_dict(d.get("achievementStatus")).get("coding"))):
            if _dict(c).get("system") != CS_GOAL_ACHIEVEMENT:
                continue
            achievement = c.get("code")
            if (lifecycle == "completed" and achievement in NOT_ACHIEVED) or (
                    lifecycle == "cancelled" and achievement == "achieved"):
                self.problem("value", f"achievementStatus {_c(achievement)} contradicts lifecycleStatus {lifecycle}",
                             f"{at}.achievementStatus.coding[{j}].code")
                return None
            if lifecycle == "active" and achievement == "achieved":
                return "achieved"
            break
        return status

    def expressed_by(self, reference: Any, where: str) -> str | None:
        if reference is None:
            return "clinician"
        kind = self.ref_type(_dict(reference))
        if kind is None:
            self.problem("value", "say who expressed the goal: a Reference to the Patient (type Patient, Patient/<id> "
                                  "or the plan's Patient) or to a Practitioner; none for a clinician", where)
            return None
        return "patient" if kind == "Patient" else "clinician"

    def goal_start(self, start: Any, where: str) -> str | None:
        """startDate -> when the goal was set: midnight UTC of that day (the opening, when the plan
        was opened later that day); today or none: None (now). A day ahead is refused later."""
        day = _day(start)
        if day is None or day == self.now.date():
            return None
        moment = datetime.combine(day, time(), timezone.utc)
        opened = _moment(self.plan.get("opened_at"))
        if opened is not None and day < self.now.date():
            if day < opened.astimezone(timezone.utc).date():
                self.problem("value", "the goal starts before the plan was opened", where)
                return None
            moment = max(moment, opened)
        return moment.isoformat()

    # -- Communication -----------------------------------------------------------------------------

    def communication(self, r: _Resource, out: list[_Event]) -> None:
        d, at, before = r.data, r.at, len(self.issues)
        information_id = self.identifier(r, SID_INFORMATION, "information")
        status = d.get("status")
        if status != "completed":
            self.problem("not-supported" if status in COMMUNICATION_STATUS else "value",
                         f"status {_c(status)}: the plan records information that was given (completed)", f"{at}.status")
        self.the_patient(d.get("subject"), f"{at}.subject")
        for i, recipient in enumerate(_list(d.get("recipient"))):
            self.the_patient(recipient, f"{at}.recipient[{i}]")
        topic = self.code([d["topic"]] if "topic" in d else [], CS_INFORMATION_TOPIC, tuple(INFORMATION_TOPIC),
                          f"{at}.topic", "information topic", single=True)
        form = self.information_form(_list(d.get("medium")), f"{at}.medium")
        payloads = _list(d.get("payload"))
        description = _dict(payloads[0]).get("contentString") if payloads else None
        if not description:
            self.problem("required", "what was told: payload[0].contentString",
                         f"{at}.payload[0].contentString" if payloads else f"{at}.payload")
        if len(payloads) > 1:
            self.problem("not-supported", "the information here is one text (payload[0].contentString)", f"{at}.payload[1]")
        notes = _list(d.get("note"))
        if len(notes) > 1:
            self.problem("not-supported", "how it was adapted is one note here", f"{at}.note[1]")
        adapted_how = _dict(notes[0]).get("text") if notes else None
        sent = self.time(d.get("sent"), f"{at}.sent")
        if self.failed(before) or information_id is None or not self.once("information", information_id, r,
                                                                           f"{at}.identifier"):
            return
        fields: dict[str, Any] = {"information_id": information_id, "topic": topic, "form": form,
                                  "description": description}
        if adapted_how:
            fields["adapted_how"] = adapted_how
        existing = self.information.get(information_id)
        if existing is not None and all(existing.get(k) == fields.get(k) for k in (
                "topic", "form", "description", "adapted_how")) and (
                sent is None or _moment(existing.get("given_at")) == _moment(sent)):
            return  # recorded as posted; any other content: the plan answers (it is not changed)
        if sent:
            fields["occurred_at"] = sent
        out.append(_Event("InformationGiven", fields, {
            "information_id": f"{at}.identifier", "topic": f"{at}.topic", "form": f"{at}.medium",
            "description": f"{at}.payload[0].contentString", "adapted_how": f"{at}.note[0].text",
            "occurred_at": f"{at}.sent"}))

    def information_form(self, media: list[Any], where: str) -> str | None:
        modes: set[str] = set()
        for i, medium in enumerate(media):
            for j, c in enumerate(_list(_dict(medium).get("coding"))):
                if _dict(c).get("system") != CS_PARTICIPATION_MODE:
                    continue
                if c.get("code") not in ("VERBAL", "WRITTEN"):
                    self.problem("not-supported", f"medium {_c(c.get('code'))}: information is given orally (VERBAL) "
                                                  "and/or in writing (WRITTEN)", f"{where}[{i}].coding[{j}].code")
                    return None
                modes.add(str(c["code"]))
        by_modes = {frozenset(code for code, _ in codes): form for form, codes in INFORMATION_FORM.items()}
        form = by_modes.get(frozenset(modes))
        if form is None:
            self.problem("required", f"how it was given: medium VERBAL and/or WRITTEN of {CS_PARTICIPATION_MODE}", where)
        return form

    # -- Consent -----------------------------------------------------------------------------------

    def consent(self, r: _Resource, out: list[_Event]) -> None:
        d, at, before = r.data, r.at, len(self.issues)
        p_at = f"{at}.provision"
        status = d.get("status")
        if status not in ("active", "inactive"):
            self.problem("not-supported" if status in CONSENT_STATUS else "value",
                         f"status {_c(status)}: a relative's consent here is active or inactive (withdrawn or ended)",
                         f"{at}.status")
        self.the_patient(d.get("patient"), f"{at}.patient")
        provision = _dict(d.get("provision"))
        if not provision:
            self.problem("required", "the provision says who (actor) may see what (code) when (period)", p_at)
            return
        if provision.get("type", "permit") != "permit":
            self.problem("not-supported", "a consent here permits (type permit)", f"{p_at}.type")
        for nested in ("provision", "data", "dataPeriod", "securityLabel", "purpose", "class", "action"):
            if nested in provision:
                self.problem("not-supported", f"provision.{nested} is not supported: the plan's consent is for sections "
                                              "of the plan (provision.code)", f"{p_at}.{nested}")
        actors = _list(provision.get("actor"))
        relative_id = self.relative(_dict(actors[0]).get("reference") if actors else None,
                                    f"{p_at}.actor[0].reference" if actors else f"{p_at}.actor")
        if len(actors) > 1:
            self.problem("not-supported", "a Consent here is for one relative", f"{p_at}.actor[1]")
        scope = self.consent_scope(_list(provision.get("code")), f"{p_at}.code")
        period = _dict(provision.get("period"))
        start = self.time(period.get("start"), f"{p_at}.period.start")
        end = self.time(period.get("end"), f"{p_at}.period.end")
        given_how, how_at = None, f"{at}.extension"
        ext = self.extensions(r, {EXT_CONSENT_GIVEN_HOW: ("valueCode", "consent-given-how")})
        if EXT_CONSENT_GIVEN_HOW in ext:
            given_how, how_at = ext[EXT_CONSENT_GIVEN_HOW]
        given_at = self.time(d.get("dateTime"), f"{at}.dateTime")
        if self.failed(before) or relative_id is None or not self.once("consent", relative_id, r, f"{p_at}.actor[0]"):
            return
        paths = {"relative_id": f"{p_at}.actor[0].reference", "scope": f"{p_at}.code", "valid_from": f"{p_at}.period.start",
                 "valid_until": f"{p_at}.period.end", "given_how": how_at, "occurred_at": f"{at}.dateTime"}

        def give(until: str | None) -> bool:
            if given_how == "digital":  # as it is, a consent the patient gave in the service is fine
                self.problem("value", "digital means the patient recorded it in the service; a consent recorded "
                                      "through the EPR was given oral or written", how_at)
                return False
            out.append(_Event("RelativeConsentGiven", _given(relative_id, scope, start, until, given_how, given_at), paths))
            return True

        end_at = _moment(end)
        existing = self.consents.get(relative_id)
        if status == "active":
            if existing is not None and existing.get("withdrawn_at") is None \
                    and sorted(set(existing.get("scope") or ())) == scope \
                    and _moment(existing.get("valid_until")) == end_at \
                    and (start is None or _moment(existing.get("valid_from")) == _moment(start)) \
                    and (given_how is None or existing.get("given_how") == given_how):
                return  # in force as posted
            give(end)
            return
        # inactive: withdrawn, or ended. A period.end that has passed is when it ended.
        ended = end if end_at is not None and end_at <= self.now else None
        if existing is None:
            # never given in the plan: given (until period.end if that lies ahead), then withdrawn
            given_first = _moment(given_at) or self.now
            if end_at is not None and ended and end_at < given_first:
                self.problem("value", "the consent ends before it was given", f"{p_at}.period.end")
                return
            if not give(None if ended else end):
                return
        else:
            until_at = _moment(existing.get("valid_until"))
            if existing.get("withdrawn_at") is not None or (until_at is not None and until_at <= self.now):
                return  # no longer in force already
            given_moment = _moment(existing.get("given_at"))
            if end_at is not None and ended and given_moment is not None and end_at < given_moment:
                self.problem("value", "the consent cannot end before it was given", f"{p_at}.period.end")
                return
        fields: dict[str, Any] = {"relative_id": relative_id}
        if ended:
            fields["occurred_at"] = ended
        out.append(_Event("RelativeConsentWithdrawn", fields, {**paths, "occurred_at": f"{p_at}.period.end"}))

    def consent_scope(self, codes: list[Any], where: str) -> list[str]:
        scope: set[str] = set()
        unknown = False
        for i, concept in enumerate(codes):
            for j, c in enumerate(_list(_dict(concept).get("coding"))):
                if _dict(c).get("system") != CS_CONSENT_SCOPE:
                    continue
                if c.get("code") in CONSENT_SCOPE:
                    scope.add(str(c["code"]))
                else:
                    unknown = True
                    self.problem("value", f"unknown consent scope {_c(c.get('code'))}: one of {', '.join(CONSENT_SCOPE)}",
                                 f"{where}[{i}].coding[{j}].code")
        if not scope and not unknown:
            self.problem("required", f"what the relative may see: provision.code with codings of {CS_CONSENT_SCOPE}", where)
        return sorted(scope)

    def relative(self, reference: Any, where: str) -> str | None:
        """The participant id of the relative a provision.actor.reference names."""
        reference = _dict(reference)
        ident = _dict(reference.get("identifier"))
        if ident.get("system") == SID_PARTICIPANT and isinstance(ident.get("value"), str) and ident["value"]:
            return str(ident["value"])
        target = reference.get("reference")
        if isinstance(target, str):
            if target in self.bundle_relatives:
                return self.bundle_relatives[target]
            own = self.own_ids.get(target.removeprefix("urn:uuid:").removeprefix("RelatedPerson/"))
            if own and own[0] == "RelatedPerson":
                return own[1]
        self.problem("required", f"name the relative: an identifier with system {SID_PARTICIPANT}, or a reference to a "
                                 "RelatedPerson of this bundle or of the plan", where)
        return None

    # -- RelatedPerson (transaction entries only) -------------------------------------------------

    def related_person(self, r: _Resource, out: list[_Event]) -> None:
        d, at, before = r.data, r.at, len(self.issues)
        pid = self.identifier(r, SID_PARTICIPANT, "participant")
        self.the_patient(d.get("patient"), f"{at}.patient")
        if d.get("active") is False:
            self.problem("not-supported", "an inactive RelatedPerson: remove the participant with a ParticipantRemoved "
                                          "event", f"{at}.active")
        names = _list(d.get("name"))
        name = None
        if names:
            first = _dict(names[0])
            name = first.get("text") or " ".join([*_list(first.get("given")), first.get("family") or ""]).strip() or None
        relations = _list(d.get("relationship"))
        relation = None
        if relations:
            concept = _dict(relations[0])
            relation = concept.get("text") or next(
                (c["display"] for c in _list(concept.get("coding")) if _dict(c).get("display")), None)
        if self.failed(before) or pid is None or not self.once("participant", pid, r, f"{at}.identifier"):
            return
        existing = self.participants.get(pid)
        if existing is None:
            fields: dict[str, Any] = {"participant_id": pid, "kind": "relative"}
            if name:
                fields["name"] = name
            if relation:
                fields["relation"] = relation
            out.append(_Event("ParticipantAdded", fields, {
                "participant_id": f"{at}.identifier", "name": f"{at}.name[0]", "relation": f"{at}.relationship[0]"}))
            return
        if existing.get("kind") != "relative":
            self.problem("value", f"participant {_c(pid)} takes part as a {existing.get('kind')}, not as a relative",
                         f"{at}.identifier")
        for key, value, where in (("name", name, f"{at}.name[0]"), ("relation", relation, f"{at}.relationship[0]")):
            if value is not None and value != existing.get(key):
                self.problem("not-supported", f"participant {_c(pid)}'s {key} cannot be changed here", where)

    # -- Appointment -------------------------------------------------------------------------------

    def appointment(self, r: _Resource, out: list[_Event]) -> None:
        kind = self.code(_list(r.data.get("serviceType")), CS_APPOINTMENT_KIND, tuple(APPOINTMENT_KIND),
                         f"{r.at}.serviceType", "appointment kind")
        if kind == APPOINTMENT_EVALUATION:
            self.evaluation(r, out)
        elif kind == APPOINTMENT_TRIANGLE_MEETING:
            self.meeting(r, out)

    def appointment_status(self, r: _Resource, table: dict[str, str], what: str) -> str | None:
        status = r.data.get("status")
        ours = {fhir: ours for ours, fhir in table.items()}.get(str(status))
        if ours is None:
            self.problem("not-supported" if status in APPOINTMENT_STATUS else "value",
                         f"status {_c(status)}: {what} here is {', '.join(table.values())}", f"{r.at}.status")
        return ours

    def start(self, r: _Resource, what: str) -> str | None:
        if r.data.get("start") is None:
            self.problem("required", f"when the {what} is: start", f"{r.at}.start")
            return None
        return self.time(r.data["start"], f"{r.at}.start")

    def appointment_participants(self, r: _Resource) -> tuple[dict[str, Any] | None, list[dict[str, Any]],
                                                  list[tuple[dict[str, Any], str]]]:
        """Appointment.participant -> (the Patient's, the Locations', the others' with their paths)."""
        patient, places, others = None, [], []
        for i, p in enumerate(_list(r.data.get("participant"))):
            actor = _dict(_dict(p).get("actor"))
            where = f"{r.at}.participant[{i}]"
            kind = self.ref_type(actor) if actor else None
            if kind == "Patient":
                self.the_patient(actor, f"{where}.actor")
                patient = patient or p
            elif kind == "Location":
                places.append(p)
            else:
                others.append((p, where))
        return patient, places, others

    def evaluation(self, r: _Resource, out: list[_Event]) -> None:
        d, at, before = r.data, r.at, len(self.issues)
        evaluation_id = self.identifier(r, SID_EVALUATION, "evaluation")
        ours = self.appointment_status(r, EVALUATION_STATUS, "an evaluation")
        start = self.start(r, "evaluation")
        patient, _, others = self.appointment_participants(r)
        held: dict[str, Any] = {}
        if ours == "held":
            if not d.get("comment"):
                self.problem("required", "the outcome of a held evaluation: comment", f"{at}.comment")
            if patient is None:
                self.problem("required", "whether the patient took part: a participant that is the Patient "
                                         "(status accepted, or declined)", f"{at}.participant")
            names = []
            for p, where in others:
                display = _dict(p.get("actor")).get("display")
                if not display:
                    self.problem("required", "the plan records who took part by name: actor.display",
                                 f"{where}.actor.display")
                names.append(display)
            held = {"outcome": d.get("comment"), "patient_took_part": _dict(patient).get("status") != "declined",
                    "participants": names}
        if self.failed(before) or evaluation_id is None or not self.once("evaluation", evaluation_id, r,
                                                                          f"{at}.identifier"):
            return
        paths = {"evaluation_id": f"{at}.identifier", "scheduled_for": f"{at}.start", "outcome": f"{at}.comment",
                 "patient_took_part": f"{at}.participant", "participants": f"{at}.participant"}
        existing = self.evaluations.get(evaluation_id)
        was = existing.get("status") if existing else None
        if was == ours == "held":
            return  # held: what was held is not changed
        if existing is None or was == "held" or _moment(existing.get("scheduled_for")) != _moment(start):
            out.append(_Event("EvaluationScheduled", {"evaluation_id": evaluation_id, "scheduled_for": start}, paths))
        if ours == "held":
            out.append(_Event("EvaluationHeld", {"evaluation_id": evaluation_id, **held}, paths))

    def meeting(self, r: _Resource, out: list[_Event]) -> None:
        d, at, before = r.data, r.at, len(self.issues)
        meeting_id = self.identifier(r, SID_MEETING, "meeting")
        ours = self.appointment_status(r, MEETING_STATUS, "a triangle meeting")
        paths = {"meeting_id": f"{at}.identifier", "scheduled_for": f"{at}.start", "place": f"{at}.participant",
                 "outcome": f"{at}.comment", "note": f"{at}.comment", "reason": f"{at}.reasonCode[0].text"}
        wishes: dict[str, Any] = {}
        ext = self.extensions(r, {url: (element, url.rsplit("/", 1)[-1]) for url, element in (
            (EXT_MEETING_TRANSPORT, "valueString"), (EXT_MEETING_COMPANION, "valueString"),
            (EXT_MEETING_NO_SHOW_STRATEGY, "valueString"), (EXT_MEETING_REQUESTED_BY, "valueCode"))})
        for url, name in ((EXT_MEETING_TRANSPORT, "transport"), (EXT_MEETING_COMPANION, "companion"),
                          (EXT_MEETING_NO_SHOW_STRATEGY, "no_show_strategy"), (EXT_MEETING_REQUESTED_BY, "requested_by")):
            if url in ext:
                wishes[name], paths[name] = ext[url]
        reasons = _list(d.get("reasonCode"))
        reason = _dict(reasons[0]).get("text") if reasons else None
        scheduled: dict[str, Any] = {}
        if ours in ("scheduled", "held", "missed"):
            start = self.start(r, "meeting")
            _, places, _ = self.appointment_participants(r)
            place = next((_dict(p.get("actor"))["display"] for p in places if _dict(p.get("actor")).get("display")), None)
            if not place:
                self.problem("required", "where the meeting is: a participant whose actor is a Location with a display",
                             f"{at}.participant")
            if not wishes.get("no_show_strategy"):
                self.problem("required", "what to do if the patient does not come, agreed in advance: the extension "
                                         f"{EXT_MEETING_NO_SHOW_STRATEGY}", f"{at}.extension")
            scheduled = {"scheduled_for": start, "place": place, "no_show_strategy": wishes.get("no_show_strategy")}
            scheduled.update({k: wishes[k] for k in ("transport", "companion") if wishes.get(k)})
        if self.failed(before) or meeting_id is None or not self.once("meeting", meeting_id, r, f"{at}.identifier"):
            return
        existing = self.meetings.get(meeting_id)
        was = existing.get("status") if existing else None
        if existing is None and (ours == "requested" or wishes.get("requested_by") or reason):
            requested = {"meeting_id": meeting_id, **{k: v for k, v in (
                ("requested_by", wishes.get("requested_by")), ("reason", reason)) if v}}
            out.append(_Event("TriangleMeetingRequested", requested, paths))
        elif ours == "requested" and was != "requested":
            out.append(_Event("TriangleMeetingRequested", {"meeting_id": meeting_id}, paths))  # the plan answers
        if ours == "requested" or was == ours == "held":
            return  # a held meeting is not changed
        same = existing is not None and _moment(existing.get("scheduled_for")) == _moment(scheduled["scheduled_for"]) \
            and all(existing.get(k) == scheduled.get(k) for k in ("place", "transport", "companion", "no_show_strategy"))
        if was == ours and same:
            return
        if not (was == "scheduled" and same):
            out.append(_Event("TriangleMeetingScheduled", {"meeting_id": meeting_id, **scheduled}, paths))
        comment = {"outcome" if ours == "held" else "note": d["comment"]} if d.get("comment") else {}
        if ours == "held":
            out.append(_Event("TriangleMeetingHeld", {"meeting_id": meeting_id, **comment}, paths))
        elif ours == "missed":
            out.append(_Event("TriangleMeetingMissed", {"meeting_id": meeting_id, **comment}, paths))


def _given(relative_id: str, scope: list[str], start: str | None, end: str | None, given_how: Any,
           given_at: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"relative_id": relative_id, "scope": sorted(set(scope))}
    for key, value in (("valid_from", start), ("valid_until", end), ("given_how", given_how), ("occurred_at", given_at)):
        if value is not None:
            fields[key] = value
    return fields


def _words(messages: Any) -> str:
    """marshmallow's messages (a list, or a dict of them for list items) as one line."""
    if isinstance(messages, dict):
        return "; ".join(f"[{k}] {_words(v)}" for k, v in messages.items())
    if isinstance(messages, list):
        return " ".join(str(m) for m in messages)
    return str(messages)
